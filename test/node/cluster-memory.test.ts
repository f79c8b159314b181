import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryNetwork } from '../../src/cluster/memory-network.ts';
import { systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';
import { R_ASK, R_REPLY } from '../../src/cluster/remote-protocol.ts';

const fixtures = new URL('../fixtures/actors.ts', import.meta.url).href;
const probeFixture = new URL('../fixtures/pollution-probe.ts', import.meta.url).href;

/** A payload with a real own `__proto__` key (an object literal would set the prototype instead). */
const pollution = (): Record<string, unknown> => JSON.parse('{"__proto__": {"polluted": 1}, "constructor": {"prototype": {"polluted": 1}}}');

/** Re-checks `check` on every turn of the event loop until it holds; rejects at the deadline. */
async function eventually(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** Resolves when `check` holds, re-checking on every membership change; rejects at the deadline. */
function until(nodes: TroupeNode[], check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const offs: Array<() => void> = [];
    const done = (e?: Error) => {
      clearTimeout(timer);
      offs.forEach((off) => off());
      e ? reject(e) : resolve();
    };
    const timer = setTimeout(() => done(new Error(`not within ${timeoutMs} ms: ${what}`)), timeoutMs);
    for (const n of nodes) offs.push(n.membership!.onMemberChanged(() => check() && done()));
    if (check()) done();
  });
}

/** A one-worker node without HTTP on the in-memory network, at address mem:<id>. */
function startMemoryNode(net: MemoryNetwork, id: number, seeds: string[]): Promise<TroupeNode> {
  return TroupeNode.start({
    id,
    modules: [fixtures, probeFixture],
    workers: 1,
    http: false,
    log: silentLogger,
    logLevel: 'silent',
    cluster: { transport: net.transport({ id, incarnation: 1, address: `mem:${id}` }), seeds },
  });
}

const upIds = (n: TroupeNode) => n.membership!.upMembers().map((m) => m.id);

describe('three nodes over the in-memory network', () => {
  const net = new MemoryNetwork({ clock: systemClock, seed: 3, latency: 1 });
  const nodes: TroupeNode[] = [];

  beforeAll(async () => {
    for (const id of [1, 2, 3]) {
      nodes.push(await startMemoryNode(net, id, ['mem:1']));
    }
    await until(nodes, () => nodes.every((n) => upIds(n).join() === '1,2,3'), 10_000, 'all three see 1,2,3');
  });
  afterAll(async () => {
    for (const n of nodes) await n.stop();
  });

  const keys = Array.from({ length: 60 }, (_, i) => `key-${i}`);

  it('every node computes the same owner for every key, and keys spread over all nodes', () => {
    const owners = keys.map((k) => nodes[0]!.clusterRouter!.ownerOf(k).id);
    for (const n of nodes) expect(keys.map((k) => n.clusterRouter!.ownerOf(k).id)).toEqual(owners);
    expect(new Set(owners).size).toBe(3);
  });

  it('asks from every node reach the one owner (each key counts to 3)', async () => {
    for (const n of nodes) await Promise.all(keys.map((k) => n.ask('counter', k, { command: 'incr' })));
    for (const n of nodes) {
      const got = (await Promise.all(keys.map((k) => n.ask('counter', k, { command: 'get' })))) as Array<{ n: number }>;
      expect(got.every((r) => r.n === 3)).toBe(true);
    }
    const remote = nodes.reduce((sum, n) => sum + n.clusterRouter!.stats().servedRemote, 0);
    expect(remote).toBeGreaterThan(0);
  });

  it('an actor on one node asks an actor owned by another node', async () => {
    const out = (await Promise.all(
      keys.slice(0, 20).map((k) => nodes[1]!.ask('relay', k, { command: 'relay', input: { to: `relayed-${k}` } })),
    )) as Array<{ n: number }>;
    expect(out.every((r) => r.n === 1)).toBe(true);
  });

  it('tells reach remote owners in order', async () => {
    const key = keys.find((k) => nodes[0]!.clusterRouter!.ownerOf(k).id === 3)!;
    for (let i = 0; i < 50; i++) nodes[0]!.tell('recorder', key, { command: 'add', input: { v: i } });
    const state = (await nodes[0]!.ask('recorder', key, { command: 'get' })) as { entries: number[] };
    expect(state.entries).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('an ask in flight to a node that becomes unreachable is rerouted to the new owner (with an id), or fails as unknown (without)', async () => {
    const key = keys.find((k) => nodes[0]!.clusterRouter!.ownerOf(k).id === 3)!;
    const other = keys.find((k) => k !== key && nodes[0]!.clusterRouter!.ownerOf(k).id === 3)!;
    const { n } = (await nodes[0]!.ask('counter', key, { command: 'get' })) as { n: number };
    net.partition(['mem:3'], ['mem:1', 'mem:2']);
    const started = Date.now();
    const reply = nodes[0]!.ask('counter', key, { command: 'incr', id: 'in-flight-1' }, { timeoutMs: 8_000 });
    // No id: node 3 might have applied it before it went away, so it is not sent twice.
    const unknown = nodes[0]!.ask('counter', other, { command: 'incr' }, { timeoutMs: 8_000 });
    const unknownFailed = expect(unknown).rejects.toMatchObject({ code: 'ERR_NODE_UNREACHABLE', details: { outcome: 'unknown' } });
    await until(nodes.slice(0, 2), () => nodes.slice(0, 2).every((n) => upIds(n).join() === '1,2'), 5_000, 'node 3 down on 1 and 2');
    expect(Date.now() - started).toBeLessThan(3_000); // lan profile: down within 1.5 s (+ slack for a loaded box)
    // Node 3's counter comes back on its new primary from the replicated log, state included.
    await expect(reply).resolves.toEqual({ n: n + 1 });
    await unknownFailed;
    expect(nodes[0]!.clusterRouter!.stats().rerouted).toBeGreaterThan(0);
    const newOwner = nodes[0]!.clusterRouter!.ownerOf(key).id;
    expect([1, 2]).toContain(newOwner);
    net.heal();
    await until(nodes, () => nodes.every((n) => upIds(n).join() === '1,2,3'), 10_000, 'node 3 back after heal');
  });

  /** `Object.prototype` is clean in this thread and in every node's worker thread. */
  async function expectNoPollution(): Promise<void> {
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(Object.prototype)).toEqual([]);
    for (const [i, n] of nodes.entries()) {
      // A key this node owns, so the probe runs in this node's own worker.
      const key = Array.from({ length: 100 }, (_, j) => `probe-${j}`).find((k) => n.clusterRouter!.ownerOf(k).id === i + 1)!;
      await expect(n.ask('probe', key, { command: 'polluted' })).resolves.toMatchObject({ polluted: null, prototypeKeys: [] });
    }
  }

  it('malformed actor payloads from a peer are counted and dropped; the node keeps serving', async () => {
    const rogue = net.transport({ id: 9, incarnation: 1, address: 'mem:9' });
    const replies: unknown[] = [];
    rogue.onMessage((_from, payload) => replies.push(payload));
    expect(Object.keys(pollution())).toEqual(['__proto__', 'constructor']); // the key really exists...
    expect(Object.keys(structuredClone(pollution()))).toEqual(['__proto__', 'constructor']); // ...and survives the network's clone
    const before = nodes[0]!.clusterRouter!.stats().badPayloads;
    for (const p of [[10, 'x'], pollution(), 'junk', [12, 'no-id', true, null], [11, 7, 'k', 'incr', {}, null, 0]]) {
      rogue.send('mem:1', p, 'actor');
    }
    // Well-formed asks whose input carries the pollution into each node's worker thread.
    for (const owner of [1, 2, 3]) {
      const key = keys.find((k) => nodes[0]!.clusterRouter!.ownerOf(k).id === owner)!;
      rogue.send('mem:1', [R_ASK, owner, 'counter', key, 'incr', pollution(), null, 2_000, 0], 'actor');
    }
    // Deliveries are clock timers of the in-memory network: wait for the count and the three replies.
    await eventually(() => nodes[0]!.clusterRouter!.stats().badPayloads >= before + 5, 2_000, 'five bad payloads counted');
    await eventually(() => replies.length >= 3, 5_000, 'replies to the three polluted asks');
    expect(nodes[0]!.clusterRouter!.stats().badPayloads).toBe(before + 5);
    expect(replies.map((r) => (r as unknown[])[0]).sort()).toEqual([R_REPLY, R_REPLY, R_REPLY]);
    await expectNoPollution();
    await rogue.close();
    await expect(nodes[0]!.ask('counter', 'after-rogue', { command: 'incr' })).resolves.toEqual({ n: 1 });
  });

  it('garbage membership messages from a peer change nothing and crash nothing', async () => {
    const rogue = net.transport({ id: 8, incarnation: 1, address: 'mem:8' });
    let seed = 42;
    const rnd = () => (seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32;
    const junk = (): unknown => [null, -1, 1e308, 'x', [], {}, [1, 'a'], { id: 'x' }, pollution()][Math.floor(rnd() * 9)];
    const types = ['ping', 'ack', 'ping-req', 'nack', 'gossip', 'join', 'join-ack', 'sync', 'leave', 'bogus', undefined];
    for (let i = 0; i < 300; i++) {
      const msg: Record<string, unknown> = { proto: 'swim', type: types[Math.floor(rnd() * types.length)] };
      for (const f of ['seq', 'target', 'updates', 'members', 'from', 'incarnation']) if (rnd() < 0.6) msg[f] = junk();
      if (rnd() < 0.3) msg.updates = [{ id: Math.floor(rnd() * 2000) - 500, address: junk(), incarnation: junk(), status: junk() }];
      rogue.send(`mem:${1 + (i % 3)}`, msg, 'system');
    }
    // The network delivers each link in order, so a bad actor payload sent last is counted only
    // after every garbage message before it was handled: then nothing more can change.
    const bad = nodes.map((n) => n.clusterRouter!.stats().badPayloads);
    for (const id of [1, 2, 3]) rogue.send(`mem:${id}`, 'end-of-garbage', 'actor');
    await eventually(
      () => nodes.every((n, i) => n.clusterRouter!.stats().badPayloads === bad[i]! + 1),
      3_000,
      'every node handled the garbage',
    );
    await rogue.close();
    await expectNoPollution();
    // No phantom member from the garbage's updates, and the three real ones are all up.
    for (const n of nodes) {
      expect([...n.membership!.state.members.keys()].sort((a, b) => a - b)).toEqual([1, 2, 3]);
      expect(upIds(n)).toEqual([1, 2, 3]);
    }
    await expect(nodes[2]!.ask('counter', 'after-garbage', { command: 'incr' })).resolves.toEqual({ n: 1 });
  });

  it('an ask to an unknown command on a remote owner comes back as the named error', async () => {
    const key = keys.find((k) => nodes[0]!.clusterRouter!.ownerOf(k).id !== 1)!;
    await expect(nodes[0]!.ask('counter', key, { command: 'incr', input: { by: 'x' } })).rejects.toMatchObject({
      code: 'ERR_INVALID_INPUT',
    });
  });
});

describe('node ids', () => {
  it('Snowflake ids keep growing across a restart, even with the wall clock stepped back', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { SimulatedClock } = await import('../../src/core/clock.ts');
    const dir = mkdtempSync(join(tmpdir(), 'troupe-ids-'));
    const clock = new SimulatedClock(0, Date.UTC(2026, 0, 1));
    const start = () =>
      TroupeNode.start({ id: 7, modules: [fixtures], workers: 1, http: false, dataDir: dir, clock, log: silentLogger, logLevel: 'silent' });
    try {
      const a = await start();
      const first = a.ids.next();
      const { decodeSnowflake } = await import('../../src/cluster/snowflake.ts');
      expect(decodeSnowflake(first).nodeId).toBe(7);
      await a.stop();
      clock.stepWall(-60_000); // the machine's clock jumped back a minute
      const b = await start();
      const second = b.ids.next();
      await b.stop();
      expect(second > first).toBe(true);
      expect(b.identity.incarnation).toBe(a.identity.incarnation + 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('joining', () => {
  it('a node joining through a seed serves nothing until it has joined', async () => {
    const net = new MemoryNetwork({ clock: systemClock, seed: 5, latency: 1 });
    const start = (id: number, seeds: string[]) => startMemoryNode(net, id, seeds);
    let joinerStarted = false;
    // The seed is not there yet: the joiner's attempts reach nobody. Its second attempt comes a
    // join-retry interval after the first; by then it would have served if it served alone.
    let attempts = 0;
    const stopCounting = net.intercept((m) => {
      if (m.from.id === 5 && m.to === 'mem:6') attempts++;
    });
    const joiner = start(5, ['mem:6']).then((n) => ((joinerStarted = true), n));
    await eventually(() => attempts >= 2, 5_000, 'two join attempts to the absent seed');
    stopCounting();
    expect(joinerStarted).toBe(false);
    const seed = await start(6, []);
    const node5 = await joiner;
    try {
      expect(node5.membership!.upMembers().map((m) => m.id)).toEqual([5, 6]);
      await node5.ask('counter', 'j', { command: 'incr' });
      await expect(seed.ask('counter', 'j', { command: 'get' })).resolves.toEqual({ n: 1 });
    } finally {
      await node5.stop();
      await seed.stop();
    }
  });
});
