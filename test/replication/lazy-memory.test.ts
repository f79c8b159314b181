/**
 * `lazy` durability through whole nodes, in-process (sim-cluster.ts): the reply leaves after the
 * primary's own commit while replication goes on in the background. With the primary's
 * replication frames cut (membership still sees everyone), a lazy cluster acknowledges a write a
 * replicated one does not; once that primary dies, its unreplicated writes are gone, and a
 * token naming them gets ERR_TOKEN_LOST — never the older state. Simulated time throughout.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { InFlight } from '../../src/cluster/memory-network.ts';
import { partitionOf } from '../../src/replication/partition-table.ts';
import { parseTokens } from '../../src/replication/token.ts';
import { R_REPL } from '../../src/replication/wire.ts';
import { defineActor } from '../../src/actors/define-actor.ts';
import { MemoryNetwork } from '../../src/cluster/memory-network.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { TroupeNode, type Durability } from '../../src/node/troupe-node.ts';
import { fenceQuorum } from '../../src/replication/epoch.ts';
import { fenceWriteQuorum, settleRuleOf } from '../../src/replication/settle-rule.ts';
import type { ReplicationDriver } from '../../src/replication/replication-driver.ts';
import { addressOf, SimNodeCluster } from './sim-cluster.ts';

const KEYS = Array.from({ length: 60 }, (_, i) => `k-${i}`);

let cluster: SimNodeCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

/**
 * A cluster whose node 1 leads `key`, one committed increment on it (so its epoch is established
 * on the replicas), then node 1's replication frames dropped: its writes reach no replica.
 */
async function cutOffPrimary(durability: Durability, seed: number) {
  const c = (cluster = await SimNodeCluster.start({ seed, durability }));
  const key = KEYS.find((k) => c.ownerOf(k, 1) === 1)!;
  let token: string | undefined;
  const incr = (timeoutMs: number) => c.node(1).ask('counter', key, { command: 'incr' }, { timeoutMs, onToken: (t) => (token = t) });
  expect(await c.settle(incr(2_000))).toEqual({ n: 1 });
  // Let the commit point of that first write reach the replicas (the next append carries it).
  await c.runFor(50);
  const heal = c.net.intercept((m: InFlight) =>
    m.from.address === addressOf(1) && Array.isArray(m.payload) && m.payload[0] === R_REPL ? 'drop' : undefined,
  );
  return { c, key, incr, heal, token: () => token };
}

describe('lazy durability on three in-process nodes (simulated clock, memory network)', () => {
  it('with its replicas cut off, a replicated primary acknowledges nothing', async () => {
    const { c, incr } = await cutOffPrimary('replicated', 31);
    await expect(c.settle(incr(500))).rejects.toMatchObject({ code: 'ERR_ASK_TIMEOUT' });
  });

  it('a lazy primary acknowledges after its own commit; after its death that write is gone and its token gets ERR_TOKEN_LOST', async () => {
    const { c, key, incr, token } = await cutOffPrimary('lazy', 31);
    const before = parseTokens(token()!, 1024).get(partitionOf(key))!;
    // Acknowledged at once although no replica has it (replicated would time out, above).
    expect(await c.settle(incr(500))).toEqual({ n: 2 });
    expect(await c.settle(incr(500))).toEqual({ n: 3 });
    const lazy = token()!;
    const acked = parseTokens(lazy, 1024).get(partitionOf(key))!;
    expect(acked.epoch).toEqual(before.epoch);
    expect(acked.seq).toBeGreaterThan(before.seq);

    c.kill(1);
    await c.untilDown(1, [2, 3]);
    // The write the token names never left node 1: the survivors say so, naming the error.
    const via = c.ownerOf(key, 2) === 2 ? 3 : 2; // through the other survivor: one hop, the token travels
    const read = c.node(via).ask('counter', key, { command: 'get' }, { timeoutMs: 5_000, token: lazy });
    await expect(c.settle(read, 6_000)).rejects.toMatchObject({ code: 'ERR_TOKEN_LOST', message: expect.stringMatching(/lazy/) });
    // Without the token the survivors serve the last replicated state: the documented loss of lazy.
    expect((await c.settle(c.readKey(via, key))).n).toBe(1);
  });
});

describe('lazy: an activation never reads older state than was acknowledged', () => {
  it('with the replicas cut off, a reloaded actor waits for its lazy writes to reach W copies (bounded), not serving the older state', async () => {
    const { c, key, incr, heal } = await cutOffPrimary('lazy', 34);
    expect(await c.settle(incr(500))).toEqual({ n: 2 });
    // The actor leaves memory (as after a restart or a stale-partition reload): its next message activates it from the tables.
    c.node(1).actors.reloadPartitions([partitionOf(key)], 1024);
    const read = c.node(1).ask('counter', key, { command: 'get' }, { timeoutMs: 7_000 });
    await expect(c.settle(read, 8_000)).rejects.toMatchObject({
      code: 'ERR_PARTITION_UNAVAILABLE',
      message: expect.stringMatching(/lazy/),
    });
    // Once replication resumes (the resend timer ships the tail), the write reaches the commit point and the actor reads it.
    heal();
    expect(await c.settle(c.node(1).ask('counter', key, { command: 'get' }, { timeoutMs: 3_000 }))).toEqual({ n: 2 });
  });
});

describe('per-kind durability and W (defineActor durability, writeQuorum)', () => {
  const definition = { kind: 'k', initial: () => ({}), apply: (s: object) => s, commands: {} };
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['an unknown durability', { durability: 'flush' }, /^k\.durability must be 'replicated', 'replicated\+flush' or 'lazy'/],
    ['writeQuorum 0', { writeQuorum: 0 }, /^k\.writeQuorum must be a positive integer/],
    ['a fractional writeQuorum', { writeQuorum: 1.5 }, /^k\.writeQuorum must be a positive integer/],
    ['lazy with a writeQuorum', { durability: 'lazy', writeQuorum: 2 }, /^k\.writeQuorum has no effect with durability 'lazy'/],
  ];
  it.each(bad)('defineActor refuses %s with ERR_INVALID_OPTION naming it', (_name, extra, message) => {
    expect(() => defineActor({ ...definition, ...extra } as Parameters<typeof defineActor>[0])).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringMatching(message) }),
    );
  });

  it("a node refuses lazy without a cluster, and a kind's replicated+flush on a node that does not flush, naming the option", async () => {
    await expect(
      TroupeNode.start({ modules: [durabilityActors], actors: 'in-process', http: false, durability: 'lazy', log: silentLogger }),
    ).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringMatching(/^options\.durability replicates across a cluster/),
    });
    const net = new MemoryNetwork({ clock: new SimulatedClock(0) });
    const start = TroupeNode.start({
      modules: [flushKindActors],
      actors: 'in-process',
      http: false,
      log: silentLogger,
      cluster: { transport: net.transport({ id: 1, incarnation: 1, address: 'mem:1' }) },
    });
    await expect(start).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringMatching(/^flushedCounter\.durability 'replicated\+flush' needs/),
    });
  });

  it('settles each write by its kind: lazy at one copy, a W of its own at that many, else at the commit point', () => {
    const node = { durability: 'replicated' as const, writeQuorum: 2 };
    expect(settleRuleOf(undefined, node)).toEqual({ type: 'commit' });
    expect(settleRuleOf({ durability: 'lazy' }, node)).toEqual({ type: 'copies', copies: 1 });
    expect(settleRuleOf({ writeQuorum: 3 }, node)).toEqual({ type: 'copies', copies: 3 });
    expect(settleRuleOf({ writeQuorum: 2 }, node)).toEqual({ type: 'commit' });
    expect(settleRuleOf({ durability: 'replicated' }, { durability: 'lazy', writeQuorum: 2 })).toEqual({ type: 'commit' });
    expect(settleRuleOf(undefined, { durability: 'lazy', writeQuorum: 2 })).toEqual({ type: 'copies', copies: 1 });
  });

  it('fences with the smallest W of any non-lazy kind: |S| − W + 1 promises', () => {
    expect(fenceWriteQuorum(2, [], 'replicated')).toBe(2);
    expect(fenceWriteQuorum(2, [{ writeQuorum: 3 }], 'replicated')).toBe(2);
    expect(fenceWriteQuorum(2, [{ writeQuorum: 1 }], 'replicated')).toBe(1);
    expect(fenceWriteQuorum(2, [{ durability: 'lazy' }], 'replicated')).toBe(2);
    // On a lazy node a kind is lazy unless it says otherwise.
    expect(fenceWriteQuorum(2, [{ writeQuorum: 1 }], 'lazy')).toBe(2);
    expect(fenceWriteQuorum(2, [{ durability: 'replicated', writeQuorum: 1 }], 'lazy')).toBe(1);
    expect(fenceQuorum({ members: [1, 2, 3], w: 2 })).toBe(2);
    expect(fenceQuorum({ members: [1, 2, 3], w: 2, fw: 1 })).toBe(3);
  });

  it("one entry with a lazy and a replicated kind's writes: with the replicas cut off, only the lazy write settles", async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 32, modules: [durabilityActors] }));
    const key = KEYS.find((k) => c.ownerOf(k, 1) === 1)!;
    // A read establishes the partition on node 1 (nothing written).
    expect(await c.settle(c.node(1).ask('counter', key, { command: 'get' }, { timeoutMs: 2_000 }))).toEqual({ n: 0 });
    const p = partitionOf(key);
    const lastBefore = driverOf(c, 1)
      .describe()
      .find((d) => d.p === p)!.last as number;
    c.net.intercept((m: InFlight) =>
      m.from.address === addressOf(1) && Array.isArray(m.payload) && m.payload[0] === R_REPL ? 'drop' : undefined,
    );
    // The driver's own writes (an actor host hands a drain's writes over together), in one turn: one entry.
    const write = (kind: string) => driverOf(c, 1).write({ kind, key: `${key}`, events: [{ seq: 1, v: 1, event: { by: 1 } }] });
    const replicated = write('counter');
    const lazy = write('lazyCounter');
    let replicatedSettled = false;
    replicated.then(
      () => (replicatedSettled = true),
      () => (replicatedSettled = true),
    );
    await c.settle(lazy, 500);
    await c.runFor(500);
    expect(replicatedSettled).toBe(false);
    expect(
      driverOf(c, 1)
        .describe()
        .find((d) => d.p === p)!.last,
    ).toBe(lastBefore + 1);
  });

  it('a kind acknowledged at one copy makes the fence need every member: its write is never lost, the partition waits', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 33, modules: [oneCopyActors] }));
    const key = KEYS.find((k) => c.ownerOf(k, 1) === 1)!;
    const ask = (via: number, command: string, timeoutMs: number) => c.node(via).ask('oneCopyCounter', key, { command }, { timeoutMs });
    expect(await c.settle(ask(1, 'incr', 2_000))).toEqual({ n: 1 });
    await c.runFor(50);
    c.net.intercept((m: InFlight) =>
      m.from.address === addressOf(1) && Array.isArray(m.payload) && m.payload[0] === R_REPL ? 'drop' : undefined,
    );
    // Acknowledged on node 1 alone, as writeQuorum 1 allows.
    expect(await c.settle(ask(1, 'incr', 500))).toEqual({ n: 2 });
    c.kill(1);
    await c.untilDown(1, [2, 3]);
    // Two of three promises would let a survivor serve n = 1: the acknowledged n = 2 lost. It needs all three.
    await expect(c.settle(ask(2, 'get', 7_000), 8_000)).rejects.toMatchObject({ code: 'ERR_PARTITION_UNAVAILABLE' });
  });
});

const durabilityActors = new URL('../fixtures/durability-actors.ts', import.meta.url).href;
const flushKindActors = new URL('../fixtures/flush-kind-actors.ts', import.meta.url).href;
const oneCopyActors = new URL('../fixtures/one-copy-actors.ts', import.meta.url).href;

/** Node `id`'s replication driver (the node keeps it private; tests reach in). */
function driverOf(c: SimNodeCluster, id: number) {
  return (c.node(id) as unknown as { replication: { driver: ReplicationDriver } }).replication.driver;
}
