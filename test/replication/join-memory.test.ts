/**
 * A node joins, then another leaves, under load, in-process: three replicated nodes (R=3, W=2)
 * on one simulated clock over a memory network (sim-cluster.ts), clients incrementing 64
 * counters through every node. A fourth node joins: the ring gives it about 1/4 of the 1024
 * partitions, and on each one's first use after the change it fences it (Prepare to the old and
 * the new set, recovers the highest log, writes a start entry) and the old primary is deposed.
 * Then one of the first three leaves gracefully (what SIGTERM does) under the same load.
 *
 * After each step, with the clients stopped: the final counts read through every live node
 * agree and pass the history checker (acknowledged ≤ final ≤ acknowledged + unknown, no count
 * returned twice), every key is served, about 1/N of the partitions changed primary — all to
 * the joiner, or all away from the leaver — and the nodes' own `primary in epoch` lines show
 * exactly those primaries taking over and keep I1. Every figure below is simulated time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashRing } from '../../src/cluster/ring.ts';
import { PartitionTable, partitionOf, PARTITIONS } from '../../src/replication/partition-table.ts';
import type { ReplicationDriver } from '../../src/replication/replication-driver.ts';
import { checkCounters, checkEpochClaims, type EpochClaim } from '../helpers/history.ts';
import { addressOf, SimNodeCluster } from './sim-cluster.ts';

const KEYS = Array.from({ length: 64 }, (_, i) => `join-${i}`);
const USED = [...new Set(KEYS.map((k) => partitionOf(k)))];
const JOINER = 4;
const LEAVER = 2;
/** The survivor the leaver's replication reaches late. */
const LAGGING = 1;
/** Concurrent clients per node. */
const PER_NODE = 3;
/** Every key served again within this long after the ring changed (simulated ms; a fence is one round). */
const SERVED_AGAIN_MS = 1_000;

/** The proposed primaries for an up set, computed as every node's router does (HashRing → PartitionTable). */
const tableOf = (ids: readonly number[]) => new PartitionTable(new HashRing(ids.map((id) => ({ id, address: addressOf(id) }))));

/** Partitions (of `among`) whose proposed primary differs between two tables, with the old and new one. */
function movedBetween(
  before: PartitionTable,
  after: PartitionTable,
  among: readonly number[],
): Array<{ p: number; from: number; to: number }> {
  return among
    .filter((p) => before.primaryOf(p) !== after.primaryOf(p))
    .map((p) => ({ p, from: before.primaryOf(p)!, to: after.primaryOf(p)! }));
}

const ALL = Array.from({ length: PARTITIONS }, (_, p) => p);

let c: SimNodeCluster;
/** When the join began, how long until every node held the joiner up, and until every key was served through every node (simulated ms). */
let joined: { at: number; upIn: number; servedIn: number } | undefined;
/** Running clients per node they go through. */
const clients = new Map<number, { stop(): Promise<void> }>();

function startClients(via: readonly number[]): void {
  for (const v of via) clients.set(v, c.startClients({ keys: KEYS, perNode: PER_NODE, via: [v] }));
}

async function stopClients(): Promise<void> {
  for (const [v, handle] of [...clients]) {
    clients.delete(v);
    await handle.stop();
  }
}

/** Final counts read through every node in `via` (the cluster quiet); they must agree (the checker gets one copy). */
async function finalCounts(via: readonly number[]): Promise<Map<string, number>> {
  const reads = [];
  for (const v of via) reads.push(await c.readCounts(v, KEYS));
  for (const [i, r] of reads.entries())
    expect(Object.fromEntries(r), `counts through node ${via[i]}`).toEqual(Object.fromEntries(reads[0]!));
  return reads[0]!;
}

/** Every key read through each node of `via` at once; resolves with the slowest read's time after `since`. */
async function everyKeyServed(via: readonly number[], since: number): Promise<number> {
  const reads = via.flatMap((v) => KEYS.map((k) => c.readKey(v, k, 5_000)));
  const got = await c.settle(Promise.all(reads), 6_000);
  return Math.max(...got.map((r) => r.at - since));
}

/** Each partition's log base (entries up to it truncated) on node `id`. */
function basesOn(id: number): Map<number, number> {
  const driver = (c.node(id) as unknown as { replication: { driver: ReplicationDriver } }).replication.driver;
  return new Map(driver.describe().map((d) => [d.p as number, d.base as number]));
}

/** Lets the load run until every partition in `moved` is truncated on its old primary; resolves with the simulated ms that took. */
async function runUntilTruncated(moved: ReadonlyArray<{ p: number; from: number }>, maxMs: number): Promise<number> {
  const start = c.clock.now();
  // Checked every 100 ms, not every step: describe() walks every partition of a node.
  const truncated = () => moved.every(({ p, from }) => (basesOn(from).get(p) ?? 0) > 0);
  while (!truncated()) {
    if (c.clock.now() - start >= maxMs)
      throw new Error(`not within ${maxMs} simulated ms: the old primaries truncated partitions ${moved.map((m) => m.p)}`);
    await c.runFor(100);
  }
  return c.clock.now() - start;
}

/**
 * What the nodes logged about the partitions the test uses since the ring change began
 * (`since`): each partition in `moved` was claimed by its new primary (the fence happened, on
 * the node the ring chose), and once every node held the new ring (`agreed`) every claim is by
 * the partition's proposed primary in `table`. Before that a node still on the old ring may
 * rightly fence a partition it still believes it leads (the fence decides, and the next one
 * deposes it).
 */
function claimsAfter(
  since: number,
  agreed: number,
  table: PartitionTable,
  moved: ReadonlyArray<{ p: number; to: number }>,
): { claims: EpochClaim[]; wrongNode: string[]; missing: number[] } {
  const claims = c.epochClaims().filter((cl) => cl.at >= since && USED.includes(cl.p));
  const wrongNode = claims
    .filter((cl) => cl.at > agreed && cl.node !== table.primaryOf(cl.p))
    .map((cl) => `partition ${cl.p} claimed by node ${cl.node} at ${cl.at}, proposed ${table.primaryOf(cl.p)}`);
  const missing = moved.filter((m) => !claims.some((cl) => cl.p === m.p && cl.node === m.to)).map((m) => m.p);
  return { claims, wrongNode, missing };
}

beforeAll(async () => {
  c = await SimNodeCluster.start({ seed: 17 });
});

afterAll(async () => {
  await stopClients().catch(() => undefined);
  await c?.stop();
});

describe('a fourth node joins under load, then one of the first three leaves (simulated clock, memory network)', () => {
  const three = tableOf([1, 2, 3]);
  const four = tableOf([1, 2, 3, JOINER]);
  const afterLeave = tableOf([1, 3, JOINER]);

  it('join: nothing acknowledged is lost, every key is served through every node, and about 1/4 of the partitions move, all to the joiner', async () => {
    // The test's tables are the routers' (else the share below would be about something else).
    for (const via of [1, 2, 3]) expect(KEYS.filter((k) => c.ownerOf(k, via) !== three.primaryOf(partitionOf(k)))).toEqual([]);
    startClients([1, 2, 3]);
    // Long enough that the logs the joiner recovers from were truncated: its fences must go
    // through a partition snapshot, then the entries after it.
    const willMove = movedBetween(three, four, USED);
    const truncatedAt = await runUntilTruncated(willMove, 20_000);
    const ackedBefore = c.history.counts().ok;
    const joinAt = c.clock.now();
    const upIn = await c.join(JOINER);
    for (const via of [1, 2, 3, JOINER]) expect(KEYS.filter((k) => c.ownerOf(k, via) !== four.primaryOf(partitionOf(k)))).toEqual([]);
    startClients([JOINER]);
    const servedIn = await everyKeyServed([1, 2, 3, JOINER], joinAt);
    joined = { at: joinAt, upIn, servedIn };
    await c.runFor(1_000); // and keep writing
    await stopClients();

    const finals = await finalCounts([1, 2, 3, JOINER]);
    expect(checkCounters(c.history, finals)).toEqual([]);

    // About 1/N of all partitions changed primary, every one of them to the joiner (consistent
    // hashing: a join takes only from the others, it never shuffles them among themselves).
    const moved = movedBetween(three, four, ALL);
    expect(moved.filter((m) => m.to !== JOINER)).toEqual([]);
    expect(moved.length / PARTITIONS).toBeGreaterThan(0.2);
    expect(moved.length / PARTITIONS).toBeLessThan(0.3);
    // The test's keys sample the same: about a quarter of their partitions, all to the joiner.
    const movedUsed = movedBetween(three, four, USED);
    expect(movedUsed.filter((m) => m.to !== JOINER)).toEqual([]);
    expect(movedUsed.length / USED.length).toBeGreaterThan(0.1);
    expect(movedUsed.length / USED.length).toBeLessThan(0.4);

    // The joiner recovered through snapshots: a fetch from a truncated source sends one.
    const viaSnapshot = c.lines.filter(
      (l) => l.at >= joinAt && l.node !== JOINER && l.msg.endsWith(`snapshot sent to node ${JOINER} (fetch)`),
    );
    expect(viaSnapshot.length).toBeGreaterThan(0);

    // The logs agree: the joiner fenced each moved partition, and nobody else claimed one after the join.
    const { claims, wrongNode, missing } = claimsAfter(joinAt, joinAt + upIn, four, movedUsed);
    expect(wrongNode).toEqual([]);
    expect(missing).toEqual([]);
    expect(checkEpochClaims(c.epochClaims())).toEqual([]);

    // The load was real on both sides of the join, and the joiner served the moved keys.
    const movedKeys = KEYS.filter((k) => movedUsed.some((m) => m.p === partitionOf(k)));
    const ops = c.history.ops;
    expect(ackedBefore).toBeGreaterThan(200);
    expect(ops.filter((o) => o.outcome === 'ok' && o.start > joinAt + upIn && movedKeys.includes(o.key)).length).toBeGreaterThan(30);
    expect(ops.filter((o) => o.outcome === 'ok' && o.via === JOINER).length).toBeGreaterThan(20);
    const stale = ops.filter((o) => o.start >= joinAt && o.error === 'ERR_STALE_EPOCH').length;
    console.info(
      `join: load ran ${truncatedAt} ms until the old primaries truncated; ${viaSnapshot.length} fetches went through a snapshot; ` +
        `node ${JOINER} up everywhere ${upIn} ms after its start; every key served through every node ${servedIn} ms after it; ` +
        `${moved.length}/${PARTITIONS} partitions moved (${movedUsed.length}/${USED.length} of the test's), ${claims.length} epochs claimed since, ` +
        `${stale} writes ended ERR_STALE_EPOCH; ${JSON.stringify(c.history.counts())}`,
    );
  });

  it('join: the partitions that moved are served again within a second of the joiner being up everywhere (no fence waits out its timeout)', () => {
    expect(joined, 'the join test ran').toBeDefined();
    const { at, upIn, servedIn } = joined!;
    // Why a partition was slow, from the nodes' logs: a fence that gave up (fenceTimeoutMs, 1.5 s) delays its keys by that much.
    const abandoned = c.lines
      .filter((l) => l.at >= at && l.at <= at + servedIn && /fence abandoned/.test(l.msg))
      .map((l) => `${l.at - at} ms, node ${l.node}: ${l.msg}`);
    expect(servedIn, `fences abandoned meanwhile:\n${abandoned.join('\n')}`).toBeLessThan(upIn + SERVED_AGAIN_MS);
  });

  it('graceful leave of one of the first three under the same load: nothing acknowledged is lost, and exactly the leaver’s partitions move', async () => {
    const survivors = [1, 3, JOINER];
    // Node 1 hears the leaver late: where it succeeds the leaver it lacks the last acknowledged
    // entries (they committed on the third member) and must recover them from a peer.
    c.net.setLink(addressOf(LEAVER), addressOf(LAGGING), { latency: 30 });
    const laggingTakes = KEYS.filter((k) => four.primaryOf(partitionOf(k)) === LEAVER && afterLeave.primaryOf(partitionOf(k)) === LAGGING);
    expect(laggingTakes.length).toBeGreaterThan(0);
    startClients([1, 2, 3, JOINER]);
    await c.runFor(800);
    // The leaver's gateway closes first (its clients finish what they sent), then it drains.
    await clients.get(LEAVER)!.stop();
    clients.delete(LEAVER);
    const leaveAt = c.clock.now();
    const stopped = c.node(LEAVER).stop();
    await c.runUntil(
      () => survivors.every((id) => c.upIds(c.node(id)).join() === survivors.join()),
      3_000,
      `node ${LEAVER} gone from every ring`,
    );
    const goneIn = c.clock.now() - leaveAt;
    for (const via of survivors) expect(KEYS.filter((k) => c.ownerOf(k, via) !== afterLeave.primaryOf(partitionOf(k)))).toEqual([]);
    const servedIn = await everyKeyServed(survivors, leaveAt);
    await c.runFor(1_000);
    await stopClients();
    await c.settle(stopped, 10_000);

    const finals = await finalCounts(survivors);
    expect(checkCounters(c.history, finals)).toEqual([]);

    // Exactly the leaver's partitions changed primary (about 1/4 of them), spread over the others.
    const moved = movedBetween(four, afterLeave, ALL);
    expect(moved.map((m) => m.p)).toEqual(four.placementOf(LEAVER).primary);
    expect(moved.length / PARTITIONS).toBeGreaterThan(0.2);
    expect(moved.length / PARTITIONS).toBeLessThan(0.3);
    expect(new Set(moved.map((m) => m.to))).toEqual(new Set(survivors));
    const movedUsed = movedBetween(four, afterLeave, USED);
    expect(movedUsed.length / USED.length).toBeGreaterThan(0.1);
    expect(movedUsed.length / USED.length).toBeLessThan(0.4);

    const { claims, wrongNode, missing } = claimsAfter(leaveAt, leaveAt + goneIn, afterLeave, movedUsed);
    expect(wrongNode).toEqual([]);
    expect(missing).toEqual([]);
    expect(checkEpochClaims(c.epochClaims())).toEqual([]);

    const movedKeys = KEYS.filter((k) => movedUsed.some((m) => m.p === partitionOf(k)));
    const ops = c.history.ops;
    expect(ops.filter((o) => o.outcome === 'ok' && o.start > leaveAt + goneIn && movedKeys.includes(o.key)).length).toBeGreaterThan(50);
    // No failure detector involved: the leaver announced itself gone.
    expect(servedIn).toBeLessThan(goneIn + SERVED_AGAIN_MS);
    console.info(
      `leave: node ${LEAVER} gone from every ring ${goneIn} ms after its stop began; every key served through every survivor ${servedIn} ms after it; ` +
        `${moved.length}/${PARTITIONS} partitions moved (${movedUsed.length}/${USED.length} of the test's), ${claims.length} epochs claimed since; ${JSON.stringify(c.history.counts())}`,
    );
  });
});
