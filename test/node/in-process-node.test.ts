/**
 * Whole nodes in one process: three `TroupeNode`s with in-process actors over one
 * `MemoryNetwork`, all driven by ONE `SimulatedClock`. Nothing here waits for real time: the
 * clock moves one membership tick at a time, and between ticks the test yields one event-loop
 * turn so that the actors' microtasks (journal reads and writes, turns, replies) run. Real
 * timers armed by anything under test are counted and must stay at zero.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryNetwork } from '../../src/cluster/memory-network.ts';
import { LAN_PROFILE } from '../../src/cluster/membership-profiles.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { loadActorModules } from '../../src/actors/registry.ts';
import { InProcessActors } from '../../src/node/in-process-actors.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';
import { slotOf } from '../../src/supervisor/placement.ts';

const fixtures = new URL('../fixtures/actors.ts', import.meta.url).href;

/** The lan profile's documented down bound (test/cluster/detection-bound.test.ts holds the profile to it). */
const LAN_CLAIM_MS = 1460;
const TICK = LAN_PROFILE.tickInterval;

const clock = new SimulatedClock(0, Date.UTC(2026, 0, 1));
const net = new MemoryNetwork({ clock, seed: 11, latency: 1 });
const nodes = new Map<number, TroupeNode>();
const node = (id: number) => nodes.get(id)!;

/** One real event-loop turn: every microtask queued so far (and those they queue) has run. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Advances simulated time tick by tick until `done()` holds; returns the simulated ms it took. */
async function runUntil(done: () => boolean, maxMs: number, what: string): Promise<number> {
  const start = clock.now();
  await turn();
  while (!done()) {
    if (clock.now() - start >= maxMs) throw new Error(`not within ${maxMs} simulated ms: ${what}`);
    clock.advance(TICK);
    await turn();
  }
  return clock.now() - start;
}

/** The promise's outcome, reached by moving simulated time only. */
async function settle<T>(p: Promise<T>, maxMs = 10_000): Promise<T> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await runUntil(() => settled, maxMs, 'promise settled');
  return p;
}

/** Node ids whose first message is on the network (a joining node has sent its join). */
const spoke = new Set<number>();
net.intercept((m) => void spoke.add(m.from.id));

/**
 * Starts a node with in-process actors at mem:<id>. Module loading is real I/O, so simulated
 * time stays put until the node has spoken: where it is in its start never depends on how fast
 * this machine imports a file.
 */
async function start(id: number, seeds: string[]): Promise<{ started: Promise<TroupeNode> }> {
  const started = TroupeNode.start({
    id,
    modules: [fixtures],
    actors: 'in-process',
    workers: 2,
    http: false,
    clock,
    log: silentLogger,
    cluster: { transport: net.transport({ id, incarnation: 1, address: `mem:${id}` }), seeds },
  });
  started.then(
    (n) => nodes.set(id, n),
    () => undefined,
  );
  while (!spoke.has(id) && !nodes.has(id)) await turn();
  return { started }; // wrapped: an async function would wait for the start itself
}

const upIds = (n: TroupeNode) => n.membership!.upMembers().map((m) => m.id);
const ownerOf = (key: string, via = 1) => node(via).clusterRouter!.ownerOf(key).id;
const keys = Array.from({ length: 30 }, (_, i) => `k-${i}`);
/** The counter the relay test increments once more. */
let relayTarget = '';

/** Resident counters per node, summed over its hosts. */
async function residentCounters(id: number): Promise<number> {
  const hosts = (await node(id).actors.stats()) as Array<{ byKind: Record<string, number> }>;
  return hosts.reduce((sum, h) => sum + (h.byKind.counter ?? 0), 0);
}

/** Real timers armed while the nodes run (by anyone: the clock under test must arm none). */
const realTimers: string[] = [];
const realSetTimeout = globalThis.setTimeout;
const realSetInterval = globalThis.setInterval;
let realStart = 0;

describe('three in-process nodes on one simulated clock over the memory network', () => {
  let joinedAfterMs = 0;

  beforeAll(async () => {
    realStart = performance.now();
    const record =
      <F extends (...a: never[]) => unknown>(real: F, name: string) =>
      (...a: Parameters<F>) => {
        realTimers.push(`${name}: ${new Error().stack?.split('\n').slice(2, 5).join(' | ')}`);
        return real(...a);
      };
    globalThis.setTimeout = record(realSetTimeout, 'setTimeout') as unknown as typeof setTimeout;
    globalThis.setInterval = record(realSetInterval, 'setInterval') as unknown as typeof setInterval;

    await start(1, []);
    const joining = [(await start(2, ['mem:1'])).started, (await start(3, ['mem:1'])).started];
    joinedAfterMs = await runUntil(
      () => nodes.size === 3 && [...nodes.values()].every((n) => upIds(n).join() === '1,2,3'),
      5_000,
      'all three started and see 1,2,3',
    );
    await Promise.all(joining);
  });

  afterAll(async () => {
    // A graceful stop gossips the leave and waits for it on the clock: keep time moving.
    await settle(Promise.all([...nodes.values()].map((n) => n.stop())), 10_000).finally(() => {
      globalThis.setTimeout = realSetTimeout;
      globalThis.setInterval = realSetInterval;
    });
  });

  it('forms membership by advancing the simulated clock, with in-process actors and no threads', () => {
    for (const n of nodes.values()) {
      expect(upIds(n)).toEqual([1, 2, 3]);
      expect(n.actors).toBeInstanceOf(InProcessActors);
      expect(n.actors.workers).toBe(2);
    }
    // A join is a round trip plus gossip: a few ticks of simulated time, not a wait.
    expect(joinedAfterMs).toBeGreaterThan(0);
    expect(joinedAfterMs).toBeLessThan(2_000);
  });

  it('answers asks through any node from the key’s one owner', async () => {
    const owners = keys.map((k) => ownerOf(k));
    for (const n of nodes.values()) expect(keys.map((k) => n.clusterRouter!.ownerOf(k).id)).toEqual(owners);
    expect(new Set(owners)).toEqual(new Set([1, 2, 3]));

    for (const n of nodes.values()) await settle(Promise.all(keys.map((k) => n.ask('counter', k, { command: 'incr' }))));
    for (const n of nodes.values()) {
      const got = (await settle(Promise.all(keys.map((k) => n.ask('counter', k, { command: 'get' }))))) as Array<{ n: number }>;
      expect(got.map((r) => r.n)).toEqual(keys.map(() => 3));
    }
    // Each counter was activated once, on its owner, and nowhere else.
    for (const id of [1, 2, 3]) expect(await residentCounters(id)).toBe(owners.filter((o) => o === id).length);
    const servedRemote = [...nodes.values()].reduce((sum, n) => sum + n.clusterRouter!.stats().servedRemote, 0);
    expect(servedRemote).toBeGreaterThan(0);
  });

  it('an actor asks an actor owned by another node (host → router → network → host)', async () => {
    const target = (relayTarget = keys.find((k) => ownerOf(k) === 3)!);
    const relayKey = Array.from({ length: 100 }, (_, i) => `relay-${i}`).find((k) => ownerOf(k) === 1)!;
    await expect(settle(node(2).ask('relay', relayKey, { command: 'relay', input: { to: target } }))).resolves.toEqual({ n: 4 });
  });

  it('a node whose links are cut is down at both survivors within the lan bound, and its keys are served again with their state', async () => {
    const downAt = new Map<number, number>();
    const offs = [1, 2].map((id) =>
      node(id).membership!.onMemberChanged((c) => {
        if (c.member.id === 3 && c.member.status === 'down' && !downAt.has(id)) downAt.set(id, clock.now());
      }),
    );
    const lost = keys.filter((k) => ownerOf(k) === 3);
    const kept = keys.filter((k) => ownerOf(k) !== 3);
    expect(lost.length).toBeGreaterThan(1);

    net.partition(['mem:3'], ['mem:1', 'mem:2']);
    const cutAt = clock.now();
    // Sent after the cut, before anyone knows. With a message id it waits, then follows the key
    // to its new owner (a second delivery would answer from the recorded reply). Without one
    // its outcome is unknown once node 3 is gone (node 3 may have applied it), so it fails
    // rather than risk applying it twice.
    const inFlight = node(1).ask('counter', lost[0]!, { command: 'incr', id: 'in-flight-1' }, { timeoutMs: 5_000 });
    const unknown = node(1).ask('counter', lost[1]!, { command: 'incr' }, { timeoutMs: 5_000 });
    const unknownOutcome = unknown.then(
      () => 'resolved',
      (e: { code?: string; details?: { outcome?: string } }) => `${e.code}/${e.details?.outcome}`,
    );
    await runUntil(() => downAt.size === 2, 3 * LAN_CLAIM_MS, 'node 3 down at nodes 1 and 2');
    offs.forEach((off) => off());
    for (const id of [1, 2]) {
      const elapsed = downAt.get(id)! - cutAt;
      expect(elapsed, `node ${id}`).toBeLessThanOrEqual(LAN_CLAIM_MS);
      expect(elapsed, `node ${id}`).toBeGreaterThanOrEqual(LAN_PROFILE.suspicionTimeout);
    }

    // Failover: node 3's counters come back on their new primaries from the replicated logs,
    // state included (3 increments each, one more for the relay test's target).
    const before = (k: string) => (k === relayTarget ? 4 : 3);
    await expect(settle(inFlight)).resolves.toEqual({ n: before(lost[0]!) + 1 });
    await expect(settle(unknownOutcome)).resolves.toBe('ERR_NODE_UNREACHABLE/unknown');
    expect(node(1).clusterRouter!.stats().rerouted).toBeGreaterThan(0);
    for (const k of lost) expect([1, 2]).toContain(ownerOf(k, 2));
    const after = (await settle(Promise.all(lost.map((k) => node(2).ask('counter', k, { command: 'incr' }))))) as Array<{ n: number }>;
    expect(after.map((r) => r.n)).toEqual(lost.map((k) => before(k) + (k === lost[0] ? 2 : 1)));
    // Keys that never lived on node 3 keep their state.
    const still = (await settle(Promise.all(kept.map((k) => node(1).ask('counter', k, { command: 'get' }))))) as Array<{ n: number }>;
    expect(still.map((r) => r.n)).toEqual(kept.map(() => 3));
  });

  it('never waited for real time: no real timer armed, seconds simulated in well under a second', () => {
    expect(realTimers).toEqual([]);
    const simulated = clock.now();
    const real = performance.now() - realStart;
    expect(simulated).toBeGreaterThan(LAN_CLAIM_MS);
    expect(real).toBeLessThan(simulated);
  });
});

describe('InProcessActors', () => {
  async function actors(extra: Partial<ConstructorParameters<typeof InProcessActors>[0]> = {}) {
    const sim = new SimulatedClock();
    const a = new InProcessActors({
      registry: await loadActorModules([fixtures]),
      journal: { type: 'memory' },
      clock: sim,
      log: silentLogger,
      node: 1,
      ...extra,
    });
    await a.start();
    return { a, sim };
  }

  it('places keys on its hosts as worker threads are placed (slotOf), each activated once', async () => {
    const { a } = await actors({ workers: 3 });
    const many = Array.from({ length: 60 }, (_, i) => `p-${i}`);
    await Promise.all(many.map((k) => a.ask('counter', k, { command: 'incr' })));
    await Promise.all(many.map((k) => a.ask('counter', k, { command: 'incr' })));
    const hosts = (await a.stats()) as Array<{ slot: number; byKind: Record<string, number>; journal: { type: string } }>;
    expect(hosts.map((h) => h.byKind.counter ?? 0)).toEqual([0, 1, 2].map((slot) => many.filter((k) => slotOf(k, 3) === slot).length));
    expect(hosts.map((h) => h.journal.type)).toEqual(['memory', 'memory', 'memory']);
    expect(many.every((k) => a.slotOf(k) === slotOf(k, 3))).toBe(true);
    await a.stop();
  });

  it('hands out copies, as a thread boundary does: a caller that mutates a reply does not reach the actor', async () => {
    const { a } = await actors();
    await a.ask('recorder', 'r', { command: 'add', input: { v: 1 } });
    const state = (await a.ask('recorder', 'r', { command: 'get' })) as { entries: number[] };
    state.entries.push(99);
    await expect(a.ask('recorder', 'r', { command: 'get' })).resolves.toEqual({ entries: [1], n: 1 });
    await a.stop();
  });

  it('an input a thread could not receive fails that ask alone with ERR_NOT_SERIALIZABLE', async () => {
    const { a } = await actors();
    await expect(a.ask('counter', 'c', { command: 'incr', input: { by: () => 1 } })).rejects.toMatchObject({
      code: 'ERR_NOT_SERIALIZABLE',
    });
    await expect(a.ask('counter', 'c', { command: 'incr' })).resolves.toEqual({ n: 1 });
    await a.stop();
  });

  it('times asks on the injected clock', async () => {
    const { a, sim } = await actors();
    void a.ask('tiny', 't', { command: 'hang' }).catch(() => undefined);
    await turn(); // activated, and busy with `hang`: the next message waits in its mailbox of one
    let outcome: unknown;
    a.ask('tiny', 't', { command: 'get' }, { timeoutMs: 100 }).catch((e: { code: string }) => (outcome = e.code));
    sim.advance(99);
    await turn();
    expect(outcome).toBeUndefined();
    sim.advance(1);
    await turn();
    expect(outcome).toBe('ERR_ASK_TIMEOUT');
    await a.stop();
  });

  it('sends keys the ring gives another node upstream, and keeps its own keys local', async () => {
    const upstreamKeys: string[] = [];
    const upstream = {
      tell: () => undefined,
      ask: () => Promise.reject(new Error('unused')),
      askRaw: (_kind: string, key: string) => (upstreamKeys.push(key), Promise.resolve({ n: 42 })),
    };
    // One host: with more, a key of another slot goes upstream too, as from a worker thread.
    const { a } = await actors({ workers: 1, upstream });
    a.placement(
      [
        { id: 1, address: 'mem:1' },
        { id: 2, address: 'mem:2' },
      ],
      1,
    );
    const ring = new (await import('../../src/cluster/ring.ts')).HashRing([
      { id: 1, address: 'mem:1' },
      { id: 2, address: 'mem:2' },
    ]);
    // The ring places partitions; a key goes where its partition's primary is.
    const { PartitionTable, partitionOf } = await import('../../src/replication/partition-table.ts');
    const table = new PartitionTable(ring);
    const names = Array.from({ length: 100 }, (_, i) => `o-${i}`);
    const mine = names.filter((k) => table.primaryOf(partitionOf(k)) === 1);
    const theirs = names.find((k) => table.primaryOf(partitionOf(k)) === 2)!;
    await expect(a.ask('relay', mine[0]!, { command: 'relay', input: { to: theirs } })).resolves.toEqual({ n: 42 });
    await expect(a.ask('relay', mine[0]!, { command: 'relay', input: { to: mine[1] } })).resolves.toEqual({ n: 1 });
    expect(upstreamKeys).toEqual([theirs]);
    await a.stop();
  });

  it('stop fails what is pending with ERR_STOPPED and refuses new asks', async () => {
    const { a } = await actors();
    const hanging = a.ask('tiny', 'h', { command: 'hang' });
    await turn();
    await a.stop();
    await expect(hanging).rejects.toMatchObject({ code: 'ERR_STOPPED' });
    await expect(a.ask('counter', 'x', { command: 'incr' })).rejects.toMatchObject({ code: 'ERR_STOPPED' });
  });

  it.each([
    { name: 'an unknown value', options: { actors: 'fibers' }, message: "options.actors must be 'threads' or 'in-process'" },
    {
      name: 'thread heap limits in-process',
      options: { actors: 'in-process', resourceLimits: { maxOldGenerationSizeMb: 64 } },
      message: "options.resourceLimits applies to worker threads only, not to actors: 'in-process'",
    },
    {
      name: 'a thread restart policy in-process',
      options: { actors: 'in-process', restart: { maxRestarts: 1 } },
      message: "options.restart restarts worker threads only, not actors: 'in-process'",
    },
  ])('TroupeNode.start refuses $name, naming the option', async ({ options, message }) => {
    const started = TroupeNode.start({ modules: [fixtures], http: false, log: silentLogger, ...(options as object) });
    await expect(started).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining(message) });
  });
});
