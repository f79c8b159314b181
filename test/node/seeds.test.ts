import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryNetwork } from '../../src/cluster/memory-network.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { joinDefaults, TroupeNode, type NodeOptions } from '../../src/node/troupe-node.ts';

const fixtures = new URL('../fixtures/actors.ts', import.meta.url).href;

/** A logger whose lines the test can read and wait for. */
function capturingLogger() {
  const lines: Array<{ level: number; msg: string; [k: string]: unknown }> = [];
  const events = new EventEmitter();
  const log = pino({ level: 'info' }, { write: (s: string) => (lines.push(JSON.parse(s)), events.emit('line')) });
  /** Resolves with the first line matching `test`, waiting for it up to `timeoutMs` of real time. */
  const line = (test: RegExp, timeoutMs = 15_000) =>
    new Promise<(typeof lines)[number]>((resolve, reject) => {
      const check = () => {
        const hit = lines.find((l) => test.test(l.msg));
        if (!hit) return;
        clearTimeout(timer);
        events.off('line', check);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        events.off('line', check);
        reject(new Error(`no log line matching ${test} within ${timeoutMs} ms: ${lines.map((l) => l.msg).join(' | ')}`));
      }, timeoutMs);
      events.on('line', check);
      check();
    });
  return { log, lines, line };
}

const started: Array<{ node: Promise<TroupeNode>; clock: SimulatedClock }> = [];
afterEach(async () => {
  // A leave waits on the simulated clock: keep it moving while the nodes stop.
  for (const { node, clock } of started.splice(0))
    await settled(
      clock,
      node.then((n) => n.stop()),
    ).catch(() => undefined);
});

/** A node on the in-memory network at mem:<id>, its gateway on a free port. Not awaited: it may wait for seeds. */
function startNode(net: MemoryNetwork, clock: SimulatedClock, id: number, seeds: string[], extra: Partial<NodeOptions> = {}) {
  const logger = capturingLogger();
  const node = TroupeNode.start({
    id,
    modules: [fixtures],
    workers: 1,
    http: { port: 0 },
    clock,
    log: logger.log,
    logLevel: 'silent',
    ...extra,
    cluster: { transport: net.transport({ id, incarnation: 1, address: `mem:${id}` }), seeds, ...extra.cluster },
  });
  started.push({ node, clock });
  let resolved = false;
  void node.then(
    () => (resolved = true),
    () => undefined,
  );
  return { node, ...logger, isStarted: () => resolved };
}

/** Moves simulated time in small steps, letting real I/O (worker replies, HTTP) run between them. */
async function advance(clock: SimulatedClock, ms: number, step = 100): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(step);
    await new Promise((r) => setImmediate(r));
  }
}

/** Keeps simulated time moving until `p` settles (a remote ask travels on the in-memory network's timers). */
async function settled<T>(clock: SimulatedClock, p: Promise<T>): Promise<T> {
  let done = false;
  const watched = p.finally(() => (done = true));
  watched.catch(() => undefined); // the caller sees the rejection through the return value
  for (let i = 0; i < 10_000 && !done; i++) {
    clock.advance(10);
    await new Promise((r) => setTimeout(r, 1));
  }
  return watched;
}

const add = (clock: SimulatedClock, url: string, key: string) =>
  settled(clock, fetch(`${url}/actors/recorder/${key}/add`, { method: 'POST', body: '{"v":1}' }));

describe('a node given seeds', () => {
  it('never serves alone: it keeps trying, warns every 10 s, and answers 503 ERR_NO_NODES until it joins', async () => {
    const clock = new SimulatedClock(0);
    const net = new MemoryNetwork({ clock, seed: 11, latency: 1 });
    const joiner = startNode(net, clock, 5, ['mem:6']);
    const joining = await joiner.line(/^joining the cluster through seeds mem:6/);
    const url = joining.http as string;

    await advance(clock, 65_000); // twice the old 30 s after which it served alone
    expect(joiner.isStarted()).toBe(false);
    const warnings = joiner.lines.filter((l) => l.msg.startsWith('still waiting for seeds mem:6'));
    expect(warnings.length).toBe(Math.floor(65_000 / joinDefaults.waitingWarningMs));
    expect(warnings[0]).toMatchObject({ level: 40, waitedS: 10 });
    expect(warnings.at(-1)!.msg).toContain('(60 s); not serving');
    expect(joiner.lines.some((l) => /serving alone/.test(l.msg))).toBe(false);

    const refused = await add(clock, url, 'k1');
    expect(refused.status).toBe(503);
    expect((await refused.json()).error).toMatchObject({ code: 'ERR_NO_NODES', message: expect.stringContaining('seeds mem:6') });

    // The seed comes up: the joiner's next attempt gets in, and only then does it serve.
    const seed = startNode(net, clock, 6, []);
    await seed.node;
    for (let i = 0; i < 100 && !joiner.isStarted(); i++) await advance(clock, 200);
    const node5 = await joiner.node;
    expect(node5.membership!.upMembers().map((m) => m.id)).toEqual([5, 6]);
    expect((await add(clock, url, 'k1')).status).toBe(200);
    // No more warnings once joined.
    const count = joiner.lines.filter((l) => l.msg.startsWith('still waiting')).length;
    await advance(clock, 30_000, 1_000);
    expect(joiner.lines.filter((l) => l.msg.startsWith('still waiting')).length).toBe(count);
  }, 60_000);

  it('with allowSolo serves alone once joinTimeoutMs has passed without a seed', async () => {
    const clock = new SimulatedClock(0);
    const net = new MemoryNetwork({ clock, seed: 12, latency: 1 });
    const joiner = startNode(net, clock, 5, ['mem:6'], { cluster: { allowSolo: true, joinTimeoutMs: 20_000 } });
    const url = (await joiner.line(/^joining the cluster/)).http as string;
    await advance(clock, 19_000);
    expect(joiner.isStarted()).toBe(false);
    await advance(clock, 1_100);
    await joiner.node;
    expect(joiner.lines.some((l) => l.level === 40 && /serving alone/.test(l.msg))).toBe(true);
    expect((await add(clock, url, 'solo')).status).toBe(200);
  }, 60_000);

  it('stop() while waiting for seeds makes start() reject with ERR_STOPPED', async () => {
    const clock = new SimulatedClock(0);
    const net = new MemoryNetwork({ clock, seed: 13, latency: 1 });
    const abort = new AbortController();
    const joiner = startNode(net, clock, 5, ['mem:6'], { signal: abort.signal });
    await joiner.line(/^joining the cluster/);
    abort.abort();
    await expect(settled(clock, joiner.node)).rejects.toMatchObject({ code: 'ERR_STOPPED' });
  }, 30_000);
});
