/**
 * Handoff on join and graceful leave (replication/handoff.ts), in-process: whole nodes on one
 * simulated clock over a memory network (sim-cluster.ts), R=3, W=2, clients incrementing
 * counters through every node. Every figure is simulated time.
 *
 * - A fourth node joins under load: each partition that moves to it is learned (snapshot + log)
 *   while its old primary keeps serving, sealed, fenced and served by the joiner; nothing
 *   acknowledged is lost, I1 holds, and no request waits long during the join (the point of the
 *   learner: today's cold takeover made each moved partition's first requests wait for a fetch
 *   of the whole partition inside the fence).
 * - The learner counts at most `maxLearning` (8) partitions at once.
 * - A graceful leave (drain) under load: the leaver's partitions all move, by handoff, while
 *   requests keep being answered.
 * - A join after the old primaries truncated their logs: the learners install snapshots.
 * - A learner whose fetch and then fence fail (messages to it lost) fences again unasked, so an
 *   idle partition still moves.
 * - A lost seal answer: the old primary serves again after the seal timeout; a learner that dies
 *   after its seal: the old primary serves again within that timeout. Nothing is lost.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { HashRing } from '../../src/cluster/ring.ts';
import { handoffDefaults } from '../../src/replication/handoff.ts';
import { PartitionTable, partitionOf } from '../../src/replication/partition-table.ts';
import type { ReplicationDriver } from '../../src/replication/replication-driver.ts';
import { R_REPL } from '../../src/replication/wire.ts';
import { checkCounters, checkEpochClaims } from '../helpers/history.ts';
import { addressOf, SimNodeCluster } from './sim-cluster.ts';

const tableOf = (ids: readonly number[]) => new PartitionTable(new HashRing(ids.map((id) => ({ id, address: addressOf(id) }))));
const driverOf = (c: SimNodeCluster, id: number) => (c.node(id) as unknown as { replication: { driver: ReplicationDriver } }).replication.driver;

let c: SimNodeCluster | undefined;
afterEach(async () => {
  await c?.stop();
  c = undefined;
});

/** Final counts read through every node in `via`; they must agree. */
async function finalCounts(cl: SimNodeCluster, via: readonly number[], keys: readonly string[]): Promise<Map<string, number>> {
  const reads = [];
  for (const v of via) reads.push(await cl.readCounts(v, keys));
  for (const [i, r] of reads.entries()) expect(Object.fromEntries(r), `counts through node ${via[i]}`).toEqual(Object.fromEntries(reads[0]!));
  return reads[0]!;
}

/** True once node `id` serves every partition in `ps` as an established primary. */
function serves(cl: SimNodeCluster, id: number, ps: readonly number[]): boolean {
  const ready = new Set(
    driverOf(cl, id)
      .describe()
      .filter((d) => d.role === 'primary' && d.ready === true)
      .map((d) => d.p as number),
  );
  return ps.every((p) => ready.has(p));
}

/** The slowest acknowledged-or-not operation that started in [from, to) (simulated ms). */
function slowest(cl: SimNodeCluster, from: number, to: number): number {
  return Math.max(0, ...cl.history.ops.filter((o) => o.start >= from && o.start < to).map((o) => o.end - o.start));
}

describe('handoff (simulated clock, memory network)', () => {
  it('a fourth node joins under load: moved partitions are learned, sealed and served by the joiner; nothing lost; no request waits long', async () => {
    const keys = Array.from({ length: 64 }, (_, i) => `hj-${i}`);
    c = await SimNodeCluster.start({ seed: 23 });
    const cl = c;
    const clients = [cl.startClients({ keys, perNode: 3 })];
    await cl.runFor(1_500);
    const moved = [...new Set(keys.map((k) => partitionOf(k)))].filter((p) => tableOf([1, 2, 3]).primaryOf(p) !== tableOf([1, 2, 3, 4]).primaryOf(p));
    expect(moved.length).toBeGreaterThan(3);
    const joinAt = cl.clock.now();
    await cl.join(4);
    clients.push(cl.startClients({ keys, perNode: 3, via: [4] }));
    const tookMs = await cl.runUntil(() => serves(cl, 4, moved), 10_000, 'the joiner serves every moved partition');
    const doneAt = cl.clock.now();
    await cl.runFor(500);
    for (const h of clients) await h.stop();

    const finals = await finalCounts(cl, [1, 2, 3, 4], keys);
    expect(checkCounters(cl.history, finals)).toEqual([]);
    expect(checkEpochClaims(cl.epochClaims())).toEqual([]);
    const stats = driverOf(cl, 4).stats();
    // The moved partitions came by handoff — most of them: a request that reaches the joiner
    // before its old primary's offer (rings converge by gossip) still fences cold, as before.
    expect(stats.handoffsCompleted).toBeGreaterThanOrEqual(Math.ceil(moved.length * 0.75));
    expect(cl.lines.some((l) => l.node === 4 && /^handoff: took over \d+ partitions/.test(l.msg))).toBe(true);
    // The point of the learner: during the join, no request waited for a partition's transfer.
    const worst = slowest(cl, joinAt, doneAt);
    const failed = cl.history.ops.filter((o) => o.start >= joinAt && o.outcome !== 'ok').map((o) => o.error);
    console.info(
      `join: joiner served ${moved.length} moved partitions ${tookMs} ms after it was up; slowest request during the join ${worst} ms; ` +
        `not acknowledged: ${JSON.stringify(failed)}; ${JSON.stringify({ started: stats.handoffsStarted, completed: stats.handoffsCompleted, timedOut: stats.handoffsTimedOut })}`,
    );
    expect(worst).toBeLessThan(300);
    expect(failed).toEqual([]);
  });

  it('a join after the old primaries truncated their logs: the learners install snapshots, and every moved partition comes by handoff', async () => {
    const keys = Array.from({ length: 64 }, (_, i) => `hx-${i}`);
    c = await SimNodeCluster.start({ seed: 3 });
    const cl = c;
    const clients = cl.startClients({ keys, perNode: 3 });
    // Past the truncation period (replicationDefaults.truncateEveryMs, 10 s): logs start at a snapshot.
    await cl.runFor(11_000);
    const moved = [...new Set(keys.map((k) => partitionOf(k)))].filter((p) => tableOf([1, 2, 3]).primaryOf(p) !== tableOf([1, 2, 3, 4]).primaryOf(p));
    const joinAt = cl.clock.now();
    await cl.join(4);
    await cl.runUntil(() => serves(cl, 4, moved), 5_000, 'the joiner serves every moved partition');
    await cl.runFor(300);
    await clients.stop();
    const finals = await finalCounts(cl, [1, 2, 3, 4], keys);
    expect(checkCounters(cl.history, finals)).toEqual([]);
    expect(checkEpochClaims(cl.epochClaims())).toEqual([]);
    // The old primaries answered the learners' fetches with snapshots: a snapshot taken at the
    // commit point of the fetch, past the commit point the offer named, is as good (it was
    // refused once as "did not have entries", and those partitions fell back to a cold fence).
    expect(cl.lines.filter((l) => l.at >= joinAt && /^partition \d+: snapshot sent to node 4 \(fetch\)/.test(l.msg)).length).toBeGreaterThan(0);
    expect(cl.lines.filter((l) => l.node === 4 && /^partition \d+: learning from node \d+ stopped/.test(l.msg)).map((l) => l.msg)).toEqual([]);
    const stats = driverOf(cl, 4).stats();
    expect(stats.handoffsCompleted).toBe(stats.handoffsStarted);
    expect(stats.handoffsCompleted).toBeGreaterThanOrEqual(Math.ceil(moved.length * 0.75));
  });

  it('a learner whose fetch and then fence fail fences again unasked: an idle moved partition still moves, without any request', async () => {
    const keys = Array.from({ length: 16 }, (_, i) => `hf-${i}`);
    c = await SimNodeCluster.start({ seed: 13 });
    const cl = c;
    const clients = cl.startClients({ keys, perNode: 1 });
    await cl.runFor(500);
    await clients.stop(); // from here on nothing asks for these partitions: no lazy fence will help
    const moved = [...new Set(keys.map((k) => partitionOf(k)))].filter((p) => tableOf([1, 2, 3]).primaryOf(p) !== tableOf([1, 2, 3, 4]).primaryOf(p));
    expect(moved.length).toBeGreaterThan(0);
    // For 8 s node 4 hears only offers: its fetch goes unanswered (it gives up after
    // learnPageTimeoutMs, 5 s), then its fence finds no quorum.
    const off = cl.net.intercept((m) => {
      const payload = m.payload as unknown[];
      if (m.to !== addressOf(4) || payload[0] !== R_REPL || !Array.isArray(payload[1])) return;
      const msgs = payload[1] as Array<{ type?: string }>;
      for (let i = msgs.length - 1; i >= 0; i--) if (msgs[i]?.type !== 'offer') msgs.splice(i, 1);
      if (msgs.length === 0) return 'drop';
    });
    await cl.join(4);
    await cl.runFor(8_000);
    off();
    expect(cl.lines.filter((l) => l.node === 4 && /^partition \d+: fence abandoned/.test(l.msg)).length).toBeGreaterThan(0);
    // That failed fence deposed the old primaries (their replicas promised it), so nobody leads
    // these partitions now; the joiner retries its fence (backing off from 1-2 s) until it holds.
    await cl.runUntil(() => serves(cl, 4, moved), 5_000, 'the joiner serves every moved partition');
    const finals = await finalCounts(cl, [1, 2, 3, 4], keys);
    expect(checkCounters(cl.history, finals)).toEqual([]);
    expect(checkEpochClaims(cl.epochClaims())).toEqual([]);
  });

  it(`at most ${handoffDefaults.maxLearning} partitions learn at once on the joiner, and the limit is reached`, async () => {
    // Many keys: about a quarter of ~400 partitions in use move to the joiner.
    const keys = Array.from({ length: 600 }, (_, i) => `hr-${i}`);
    c = await SimNodeCluster.start({ seed: 5 });
    const cl = c;
    const clients = cl.startClients({ keys, perNode: 4 });
    await cl.runFor(3_000);
    const started = cl.join(4);
    let peak = 0;
    let joined = false;
    started.then(() => (joined = true), () => (joined = true));
    const sample = () => {
      if (cl.nodes.has(4)) peak = Math.max(peak, driverOf(cl, 4).stats().learning);
      return joined && cl.nodes.has(4) && driverOf(cl, 4).stats().learning === 0 && driverOf(cl, 4).stats().handoffsStarted > 0;
    };
    await cl.runUntil(sample, 20_000, 'every handoff to the joiner done');
    await started;
    await clients.stop();
    const stats = driverOf(cl, 4).stats();
    console.info(`rate limit: peak ${peak} learning at once; ${stats.handoffsStarted} handoffs started, ${stats.handoffsCompleted} completed`);
    expect(stats.handoffsStarted).toBeGreaterThan(handoffDefaults.maxLearning);
    expect(peak).toBe(handoffDefaults.maxLearning);
  });

  it('a graceful leave (drain) under load: the leaver’s partitions all move by handoff, requests keep being answered, nothing lost', async () => {
    const keys = Array.from({ length: 64 }, (_, i) => `hl-${i}`);
    c = await SimNodeCluster.start({ seed: 31, ids: [1, 2, 3, 4] });
    const cl = c;
    const survivors = [1, 3, 4];
    const clients = cl.startClients({ keys, perNode: 3, via: survivors });
    await cl.runFor(1_500);
    const led = driverOf(cl, 2).leads();
    expect(led).toBeGreaterThan(3);
    const ledPs = new Set(driverOf(cl, 2).describe().filter((d) => d.role === 'primary').map((d) => d.p as number));
    const leaveAt = cl.clock.now();
    const drained = cl.node(2).drain();
    await cl.settle(drained, 10_000);
    const tookMs = cl.clock.now() - leaveAt;
    await cl.runFor(500);
    await clients.stop();

    const finals = await finalCounts(cl, survivors, keys);
    expect(checkCounters(cl.history, finals)).toEqual([]);
    expect(checkEpochClaims(cl.epochClaims())).toEqual([]);
    // It led nothing when it stopped (no drain timeout), and the survivors took its partitions by handoff.
    expect(cl.lines.some((l) => l.node === 2 && /^drained: every partition handed off/.test(l.msg))).toBe(true);
    const completed = survivors.reduce((n, id) => n + driverOf(cl, id).stats().handoffsCompleted, 0);
    expect(completed).toBe(led);
    const worst = slowest(cl, leaveAt, leaveAt + tookMs);
    // Requests in flight toward the leaver when the others' rings dropped it are answered too:
    // it drains (a graceful leaver is not a dead node whose asks have an unknown outcome).
    const failed = cl.history.ops.filter((o) => o.start >= leaveAt - 20 && o.outcome !== 'ok').map((o) => o.error);
    const answered = cl.history.ops.filter((o) => o.start >= leaveAt && o.end <= leaveAt + tookMs && o.outcome === 'ok').length;
    // The handoff itself is quick (tens of ms): requests for the leaver's own partitions that
    // started before it finished were answered, by the leaver or by their new primaries.
    const handedAt = cl.lines.find((l) => l.node === 2 && /^drained:/.test(l.msg))!.at;
    const duringHandoff = cl.history.ops.filter((o) => o.start >= leaveAt && o.start < handedAt && ledPs.has(partitionOf(o.key)));
    console.info(
      `drain: ${led} partitions handed off in ${handedAt - leaveAt} ms, stopped after ${tookMs} ms; ${answered} requests answered meanwhile ` +
        `(${duringHandoff.length} for the leaver's partitions during the handoff), slowest ${worst} ms; not acknowledged: ${JSON.stringify(failed)}`,
    );
    expect(duringHandoff.length).toBeGreaterThan(0);
    expect(duringHandoff.every((o) => o.outcome === 'ok')).toBe(true);
    expect(answered).toBeGreaterThan(50);
    expect(worst).toBeLessThan(300);
    expect(failed).toEqual([]);
  });

  /**
   * Starts a join of node 4 whose first `sealed` answer is dropped on the way (and, with `kill`,
   * node 4 dies at that moment). Resolves with the sealed partition, its old primary and when.
   */
  async function joinLosingFirstSeal(cl: SimNodeCluster, kill: boolean) {
    let sealed: { p: number; by: number; at: number } | undefined;
    const off = cl.net.intercept((m) => {
      if (sealed !== undefined || m.to !== addressOf(4)) return;
      const payload = m.payload as unknown[];
      if (!Array.isArray(payload) || !Array.isArray(payload[1])) return;
      const answer = (payload[1] as Array<{ type?: string; p?: number }>).find((x) => x?.type === 'sealed');
      if (answer === undefined) return;
      sealed = { p: answer.p!, by: m.from.id, at: cl.clock.now() };
      return 'drop';
    });
    const joining = cl.join(4).catch(() => undefined);
    await cl.runUntil(() => sealed !== undefined, 10_000, 'a seal answered to the learner');
    off();
    if (kill) cl.kill(4);
    return { ...sealed!, joining };
  }

  /** Node `id` serves partition `p` as an established primary (not sealed). */
  const servesAgain = (cl: SimNodeCluster, id: number, p: number) =>
    driverOf(cl, id)
      .describe()
      .some((d) => d.p === p && d.role === 'primary' && d.ready === true);

  it('a seal answer is lost: the old primary serves again after the seal timeout (counted), the learner later takes over, nothing lost', async () => {
    const keys = Array.from({ length: 32 }, (_, i) => `hs-${i}`);
    c = await SimNodeCluster.start({ seed: 41 });
    const cl = c;
    const clients = cl.startClients({ keys, perNode: 2, via: [1, 2, 3] });
    await cl.runFor(1_000);
    const sealed = await joinLosingFirstSeal(cl, false);
    const old = driverOf(cl, sealed.by);
    expect(servesAgain(cl, sealed.by, sealed.p)).toBe(false); // sealed: holding its requests
    await cl.runUntil(() => old.stats().handoffsTimedOut > 0, handoffDefaults.sealTimeoutMs + 500, 'the seal timed out');
    const timedOutAt = cl.clock.now();
    expect(timedOutAt - sealed.at).toBeGreaterThanOrEqual(handoffDefaults.sealTimeoutMs - 10);
    await cl.runUntil(() => servesAgain(cl, sealed.by, sealed.p), 50, 'the old primary serves the partition again');
    // The learner heard nothing, gives up its seal wait and fences (old and new sets jointly).
    await cl.settle(sealed.joining, 10_000);
    await cl.runUntil(() => servesAgain(cl, 4, sealed.p), 5_000, 'the learner serves the partition at last');
    await cl.runFor(300);
    await clients.stop();
    const finals = await finalCounts(cl, [1, 2, 3, 4], keys);
    expect(checkCounters(cl.history, finals)).toEqual([]);
    expect(checkEpochClaims(cl.epochClaims())).toEqual([]);
    const servedAfter = cl.history.ops.filter((o) => o.outcome === 'ok' && o.start > timedOutAt && partitionOf(o.key) === sealed.p).length;
    console.info(`seal lost: partition ${sealed.p} sealed by node ${sealed.by} at ${sealed.at}, timed out at ${timedOutAt}; ${servedAfter} requests for it answered after`);
  });

  it('the learner dies right after its seal: the old primary serves again within the seal timeout, nothing lost', async () => {
    const keys = Array.from({ length: 32 }, (_, i) => `hs-${i}`);
    c = await SimNodeCluster.start({ seed: 41 });
    const cl = c;
    const clients = cl.startClients({ keys, perNode: 2, via: [1, 2, 3] });
    await cl.runFor(1_000);
    const sealed = await joinLosingFirstSeal(cl, true);
    // Whichever comes first — the seal timeout, or membership declaring node 4 down (the
    // partition moves back) — the held requests go on within the seal timeout.
    const tookMs = await cl.runUntil(() => servesAgain(cl, sealed.by, sealed.p), handoffDefaults.sealTimeoutMs + 200, 'the old primary serves again');
    await cl.settle(sealed.joining, 10_000);
    await cl.untilDown(4, [1, 2, 3]);
    await cl.runFor(500);
    await clients.stop();
    const finals = await finalCounts(cl, [1, 2, 3], keys);
    expect(checkCounters(cl.history, finals)).toEqual([]);
    expect(checkEpochClaims(cl.epochClaims())).toEqual([]);
    const ps = cl.history.ops.filter((o) => partitionOf(o.key) === sealed.p && o.start >= sealed.at);
    const ok = ps.filter((o) => o.outcome === 'ok');
    const failed = new Set(ps.filter((o) => o.outcome !== 'ok').map((o) => o.error));
    console.info(`learner died: partition ${sealed.p} served again by node ${sealed.by} ${tookMs} ms after the seal; ${ok.length} of ${ps.length} requests for it since answered; other outcomes: ${JSON.stringify([...failed])}`);
    expect(ok.filter((o) => o.start >= sealed.at + tookMs).length).toBeGreaterThan(0);
    expect(Math.max(...ok.map((o) => o.end - o.start))).toBeLessThanOrEqual(handoffDefaults.sealTimeoutMs + 300);
    // Requests the clients' routers had sent to the dead proposed primary have an unknown outcome
    // (as for any crash); nothing waited out its deadline or found the partition unavailable.
    expect([...failed].filter((e) => e !== 'ERR_NODE_UNREACHABLE')).toEqual([]);
  });
});
