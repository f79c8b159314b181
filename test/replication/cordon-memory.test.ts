/**
 * A node whose disk fills up, in-process (simulated clock, memory network, `SimDisk` stores that
 * refuse every write with ERR_STORAGE_FULL while "full"). Before the storage guard
 * (src/node/storage-guard.ts) the partitions the full node led stayed unavailable for as long as
 * its disk stayed full: it was alive and the ring's owner, so nobody else fenced them (the chaos
 * suite's scenario 7). Now it cordons itself: every ring leaves it out, the next replica of each
 * partition takes over, and once a probe write goes through it ends the cordon and leads again.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { checkCounters, checkEpochClaims } from '../helpers/history.ts';
import { SimDisk } from '../sim/sim-disk.ts';
import { SimNodeCluster } from './sim-cluster.ts';

let cluster: SimNodeCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

const FULL = 3;

describe('a node whose disk is full', () => {
  it('cordons itself: the others lead its partitions while it is full, and it leads again once space returns', async () => {
    // One disk per node. Its faults are switched on and off by hand here (`failWrites` with an
    // infinite or a past deadline), so its clock can stand still.
    const disks = new Map([1, 2, FULL].map((id) => [id, new SimDisk({ now: () => 0 })]));
    const c = (cluster = await SimNodeCluster.start({ seed: 11, ids: [1, 2, FULL], partitionStore: (id) => disks.get(id)!.open() }));
    // Keys node 3 leads: their first writes must go through its disk.
    const keys = Array.from({ length: 300 }, (_, i) => `full-${i}`)
      .filter((k) => c.ownerOf(k, 1) === FULL)
      .slice(0, 12);
    expect(keys).toHaveLength(12);
    for (const k of keys) await c.settle(c.incr(1, k));
    expect(c.history.counts()).toEqual({ ok: 12, failed: 0, unknown: 0 });

    disks.get(FULL)!.failWrites(Number.POSITIVE_INFINITY, 'ERR_STORAGE_FULL');
    // The first write through node 3's disk is refused with a clear error…
    await c.settle(c.incr(1, keys[0]!));
    // (Its outcome is unknown: the primary may have shipped the entry before its own persist failed.)
    expect(c.history.ops.at(-1)).toMatchObject({ error: 'ERR_STORAGE_FULL' });
    // …and node 3 cordons itself: every member leaves it off the ring, though it stays alive.
    await c.runUntil(() => [1, 2, FULL].every((n) => c.node(n).membership!.member(FULL)?.cordoned === true), 2_000, 'node 3 cordoned everywhere');
    for (const n of [1, 2, FULL]) {
      expect(c.node(n).membership!.member(FULL)?.status).toBe('alive');
      expect(c.upIds(c.node(n))).toEqual([1, 2]);
    }
    // Every key is acknowledged again through nodes 1 and 2 — and through node 3's gateway,
    // which forwards — while its disk stays full.
    const fullSince = c.clock.now();
    await c.runUntil(() => keys.every((k) => c.ownerOf(k, 1) !== FULL), 1_000, 'placement moved off node 3');
    for (const via of [1, 2, FULL]) {
      for (const k of keys) await c.settle(c.incr(via, k), 5_000);
    }
    const whileFull = c.history.ops.filter((o) => o.start >= fullSince);
    expect(whileFull.filter((o) => o.outcome !== 'ok'), 'refused while node 3 was full and cordoned').toEqual([]);
    expect(disks.get(FULL)!.refused).toBeGreaterThan(0);

    // Space returns: the cordon ends within a probe, and node 3 leads partitions again.
    disks.get(FULL)!.failWrites(0);
    await c.runUntil(() => [1, 2, FULL].every((n) => c.upIds(c.node(n)).join() === '1,2,3'), 3_000, 'node 3 back on every ring');
    await c.runUntil(() => keys.some((k) => c.ownerOf(k, 1) === FULL), 1_000, 'node 3 proposed again');
    for (const k of keys) await c.settle(c.incr(FULL, k), 5_000);
    const finals = await c.readCounts(FULL, keys);
    expect(checkCounters(c.history, finals)).toEqual([]);
    expect(checkEpochClaims(c.epochClaims())).toEqual([]);
    // Every count is its acknowledged increments, the refused one's key plus that one or not.
    const acked = (k: string) => c.history.ops.filter((o) => o.key === k && o.outcome === 'ok').length;
    for (const k of keys.slice(1)) expect(finals.get(k), k).toBe(acked(k));
    expect([acked(keys[0]!), acked(keys[0]!) + 1]).toContain(finals.get(keys[0]!));
  }, 60_000);
});
