/**
 * Replication and failover of whole nodes, in-process: three `TroupeNode`s (replicated, R=3,
 * W=2) over one `MemoryNetwork` on one `SimulatedClock` (see sim-cluster.ts). Clients increment
 * 60 counters through every node while the test kills a node, partitions the network, or
 * duplicates and delays replication frames; afterwards the history checker (Jepsen-style:
 * acknowledged ≤ final ≤ acknowledged + unknown, no count returned twice) and I1 from the nodes'
 * own `primary in epoch` log lines must hold. Every figure below is simulated time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { InFlight } from '../../src/cluster/memory-network.ts';
import { partitionOf } from '../../src/replication/partition-table.ts';
import { R_REPL } from '../../src/replication/wire.ts';
import { checkCounters, checkEpochClaims, type EpochClaim, type Operation } from '../helpers/history.ts';
import { addressOf, seededRandom, SimNodeCluster } from './sim-cluster.ts';

const KEYS = Array.from({ length: 60 }, (_, i) => `k-${i}`);
/** Every key served again within this long after its primary is declared down (simulated ms). */
const SERVED_AGAIN_MS = 3_000;
/** A reply already on its way when the network is cut still arrives: latency is 1 ms a hop. */
const IN_FLIGHT_MS = 5;

/** Every cluster's epoch claims, for the I1 check across scenarios (the last test). */
const claimsByScenario = new Map<string, EpochClaim[]>();
let cluster: SimNodeCluster | undefined;
/** Run after each test, before its cluster stops. */
const afterCurrent: Array<() => void> = [];

async function fresh(name: string, seed: number, extra: Parameters<typeof SimNodeCluster.start>[0] = {}): Promise<SimNodeCluster> {
  cluster = await SimNodeCluster.start({ seed, ...extra });
  const c = cluster;
  claimsByScenario.set(name, []);
  // Read at the end of the scenario, whatever it threw.
  afterCurrent.push(() => claimsByScenario.set(name, c.epochClaims()));
  return c;
}

afterEach(async () => {
  afterCurrent.splice(0).forEach((f) => f());
  await cluster?.stop();
  cluster = undefined;
});

/** Keys per node that `via` proposes as their partition's primary. */
function keysByOwner(c: SimNodeCluster, via: number): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const k of KEYS) {
    const o = c.ownerOf(k, via);
    out.set(o, [...(out.get(o) ?? []), k]);
  }
  return out;
}

/** The history's operations through one node whose acknowledgement arrived within (from, to]. */
const ackedVia = (ops: readonly Operation[], via: number, from: number, to: number) =>
  ops.filter((o) => o.via === via && o.outcome === 'ok' && o.end > from && o.end <= to);

/** Final counts read through every node in `via`; they must agree (the checker gets one copy). */
async function finalCounts(c: SimNodeCluster, via: readonly number[]): Promise<Map<string, number>> {
  const reads = [];
  for (const v of via) reads.push(await c.readCounts(v, KEYS));
  for (const r of reads.slice(1)) expect(Object.fromEntries(r)).toEqual(Object.fromEntries(reads[0]!));
  return reads[0]!;
}

describe('replicated counters on three in-process nodes (simulated clock, memory network)', () => {
  it('a node killed under load: nothing acknowledged is lost, and its keys are served again within seconds of the down', async () => {
    const c = await fresh('kill', 1);
    const owners = keysByOwner(c, 1);
    const victim = 3;
    const victimKeys = owners.get(victim)!;
    // About a third of the keys each (the ring places 1024 partitions; 60 keys is a small sample).
    expect(victimKeys.length).toBeGreaterThanOrEqual(12);
    expect(victimKeys.length).toBeLessThanOrEqual(28);

    const clients = c.startClients({ keys: KEYS, perNode: 3 });
    await c.runFor(800);
    const inFlightBefore = c.history.ops.length;
    const killAt = c.clock.now();
    c.kill(victim);
    const downAt = await c.untilDown(victim, [1, 2]);

    // Probe every key through the survivors at once: each is served again, state included.
    const probes = await c.settle(Promise.all(KEYS.map((k, i) => c.readKey(1 + (i % 2), k, 5_000))), 6_000);
    const servedAfterDown = Math.max(...probes.filter((_, i) => victimKeys.includes(KEYS[i]!)).map((r) => r.at - downAt));
    await c.runFor(1_000); // and keep writing
    await clients.stop();

    const finals = await finalCounts(c, [1, 2]);
    expect(checkCounters(c.history, finals)).toEqual([]);
    const ops = c.history.ops;
    // The load was real: increments acknowledged before the kill and, on the victim's keys, after the down.
    expect(inFlightBefore).toBeGreaterThan(100);
    expect(ops.filter((o) => o.outcome === 'ok' && victimKeys.includes(o.key) && o.start > downAt).length).toBeGreaterThan(50);
    expect(servedAfterDown).toBeLessThanOrEqual(SERVED_AGAIN_MS);
    console.info(
      `kill: down declared ${downAt - killAt} ms after the kill; every key of node ${victim} served again ${servedAfterDown} ms after the down; ` +
        `${JSON.stringify(c.history.counts())}`,
    );
  });

  it('partition {1,2}|{3}: the minority acknowledges nothing, nothing acknowledged is lost, and node 3 returns without serving stale state', async () => {
    const c = await fresh('partition', 2);
    const ledBy3 = keysByOwner(c, 1).get(3)!;
    const clients = c.startClients({ keys: KEYS, perNode: 3 });
    // The dangerous writes: through node 3 to the partitions it leads when the cut comes (short
    // timeouts, so they keep coming during the partition rather than wait on one ask).
    const minority = c.startClients({ keys: ledBy3, perNode: 2, via: [3], timeoutMs: 300 });
    await c.runFor(600);
    const cutAt = c.clock.now();
    c.net.partition([addressOf(1), addressOf(2)], [addressOf(3)]);
    await c.untilDown(3, [1, 2]);
    await c.runFor(1_500); // the majority keeps serving every key; node 3's clients keep trying
    const healAt = c.clock.now();
    c.net.heal();
    await c.runUntil(() => [1, 2, 3].every((id) => c.upIds(c.node(id)).join() === '1,2,3'), 15_000, 'all three up everywhere after the heal');
    await c.runFor(1_000);
    await clients.stop();
    await minority.stop();

    const ops = c.history.ops;
    // Node 3's clients did try during the partition, its own partitions included, and node 3
    // acknowledged none of it.
    const tried = ops.filter((o) => o.via === 3 && o.start >= cutAt && o.start < healAt);
    expect(tried.filter((o) => ledBy3.includes(o.key)).length).toBeGreaterThan(10);
    expect(ackedVia(ops, 3, cutAt + IN_FLIGHT_MS, healAt)).toEqual([]);
    // The majority served all keys meanwhile, node 3's former keys included.
    const servedDuring = new Set(ops.filter((o) => o.via !== 3 && o.outcome === 'ok' && o.start > cutAt && o.end <= healAt).map((o) => o.key));
    expect(servedDuring.size).toBeGreaterThan(KEYS.length * 0.9);

    // Through node 3 as well: it reads the latest counts, never its copy from before the cut.
    const finals = await finalCounts(c, [1, 2, 3]);
    expect(checkCounters(c.history, finals)).toEqual([]);
    expect(ops.filter((o) => o.via === 3 && o.outcome === 'ok' && o.start > healAt).length).toBeGreaterThan(0);
  });

  it('duplicated, delayed and reordered replication frames change nothing', async () => {
    const c = await fresh('duplicates', 3);
    const fault = seededRandom(33);
    const faults = { duplicated: 0, delayed: 0 };
    c.net.intercept((m: InFlight) => {
      if (!Array.isArray(m.payload) || m.payload[0] !== R_REPL) return undefined;
      const r = fault();
      if (r < 0.25) return void faults.duplicated++, 'duplicate';
      // Up to 15 ms late on a 1 ms link: later frames overtake it.
      if (r < 0.5) return void faults.delayed++, { delay: 1 + Math.floor(fault() * 15) };
      return undefined;
    });
    const clients = c.startClients({ keys: KEYS, perNode: 3 });
    await c.runFor(1_200);
    // Nothing failed so far: every increment was acknowledged.
    const before = c.history.ops.length;
    expect(c.history.counts()).toMatchObject({ failed: 0, unknown: 0 });
    // What the replicas hold is checked too: the primary of a third of the keys dies, and the
    // survivors must hold every write it acknowledged (frames still duplicated and delayed).
    c.kill(3);
    await c.untilDown(3, [1, 2]);
    await c.runFor(500);
    await clients.stop();

    expect(faults.duplicated).toBeGreaterThan(100);
    expect(faults.delayed).toBeGreaterThan(100);
    const finals = await finalCounts(c, [1, 2]);
    expect(checkCounters(c.history, finals)).toEqual([]);
    expect(c.history.ops.slice(before).filter((o) => o.outcome === 'ok').length).toBeGreaterThan(100);
  });

  it('with two of three nodes dead, a write to the survivor’s partitions fails with ERR_PARTITION_UNAVAILABLE and is never acknowledged', async () => {
    const c = await fresh('two-dead', 6);
    const owners = keysByOwner(c, 3);
    const led = [owners.get(3)![0]!, owners.get(1)![0]!, owners.get(2)![0]!];
    const suspectWindow = owners.get(3)![1]!;
    expect(new Set([...led, suspectWindow].map((k) => partitionOf(k))).size).toBe(4);
    // Established and written first: each partition has an epoch whose set is {1,2,3}, W=2.
    for (const k of [...led, suspectWindow]) await c.settle(c.incr(3, k));
    expect(c.history.counts()).toEqual({ ok: 4, failed: 0, unknown: 0 });

    c.kill(1);
    c.kill(2);
    // Before the downs, node 3 still leads its partitions with the set {1,2,3}: a write there is
    // appended locally and shipped, but no second copy commits, so it is never acknowledged.
    await c.settle(c.incr(3, suspectWindow, 1_000));
    expect(c.history.ops.at(-1)).toMatchObject({ key: suspectWindow, outcome: 'unknown', error: 'ERR_ASK_TIMEOUT' });
    // Alone, node 3 gets no confirmation of its suspicions: the down takes the longest suspicion timeout.
    await c.untilDown(1, [3], 12_000);
    await c.untilDown(2, [3], 12_000);
    // Node 3 now proposes itself for every partition but cannot fence: q = |S| − W + 1 = 2
    // promises of the set {1,2,3} are needed and only its own answers. The write waits for an
    // established primary for `holdMs` (5 s), then is refused before anything is appended: a
    // known failure. An ask timeout shorter than that ends first, as ERR_ASK_TIMEOUT (unknown).
    const before = c.history.ops.length;
    const startedAt = c.clock.now();
    await c.settle(Promise.all(led.map((k) => c.incr(3, k, 8_000))), 9_000);
    const refused = c.history.ops.slice(before);
    expect(refused.map((o) => [o.outcome, o.error])).toEqual(led.map(() => ['failed', 'ERR_PARTITION_UNAVAILABLE']));
    for (const o of refused) expect(o.end - startedAt).toBeLessThan(8_000);
    await c.settle(c.incr(3, led[0]!, 1_000));
    expect(c.history.ops.at(-1)).toMatchObject({ outcome: 'unknown', error: 'ERR_ASK_TIMEOUT' });
    expect(c.history.counts()).toEqual({ ok: 4, failed: 3, unknown: 2 });
  });

  it('one seed run twice gives the same history and the same epochs', async () => {
    const run = async () => {
      const c = await fresh('determinism', 5);
      const clients = c.startClients({ keys: KEYS, perNode: 2 });
      await c.runFor(400);
      c.kill(3);
      await c.untilDown(3, [1, 2]);
      await c.runFor(800);
      await clients.stop();
      const result = { ops: c.history.ops.map((o) => ({ ...o })), claims: c.epochClaims(), finals: await c.readCounts(1, KEYS) };
      await c.stop();
      return result;
    };
    const first = await run();
    const second = await run();
    expect(first.ops.length).toBeGreaterThan(100);
    expect(first.claims.length).toBeGreaterThan(0);
    expect(second.ops).toEqual(first.ops);
    expect(second.claims).toEqual(first.claims);
    expect(second.finals).toEqual(first.finals);
  });

  it('I1 from the nodes’ logs, in every scenario above: no epoch claimed twice, epochs increase per partition and per node', () => {
    expect([...claimsByScenario.keys()]).toEqual(['kill', 'partition', 'duplicates', 'two-dead', 'determinism']);
    for (const [name, claims] of claimsByScenario) {
      expect(claims.length, name).toBeGreaterThan(0);
      expect(checkEpochClaims(claims), name).toEqual([]);
    }
    // Failover shows in the logs: after the kill, survivors claimed later epochs of node 3's partitions.
    const kill = claimsByScenario.get('kill')!;
    const victims = new Set(kill.filter((cl) => cl.node === 3).map((cl) => cl.p));
    expect(kill.some((cl) => cl.node !== 3 && victims.has(cl.p) && cl.epoch.term > 1)).toBe(true);
  });
});

describe('checkEpochClaims (I1 from logs)', () => {
  const claim = (node: number, p: number, term: number, en = node, at = 0): EpochClaim => ({ at, node, p, epoch: { term, node: en }, startSeq: 1 });
  it.each([
    { name: 'increasing epochs, several partitions', claims: [claim(1, 7, 1), claim(2, 8, 1), claim(2, 7, 2), claim(1, 7, 3)], problems: 0 },
    { name: 'one epoch claimed by two nodes', claims: [claim(1, 7, 1), claim(2, 7, 1, 1)], problems: 3 },
    { name: 'a node reusing its epoch', claims: [claim(1, 7, 1), claim(1, 7, 1)], problems: 2 },
    { name: 'a node going back', claims: [claim(1, 7, 3), claim(1, 7, 2)], problems: 1 },
    { name: 'a later claim below an earlier one of another node', claims: [claim(2, 7, 3), claim(1, 7, 2)], problems: 1 },
    { name: 'same term, lower node id, later', claims: [claim(2, 7, 3), claim(1, 7, 3)], problems: 1 },
  ])('$name', ({ claims, problems }) => {
    expect(checkEpochClaims(claims)).toHaveLength(problems);
  });

  it.each([
    { name: 'a later claim below an earlier one of another node (a late acknowledgement)', claims: [claim(2, 7, 3), claim(1, 7, 2)], problems: 0 },
    { name: 'one epoch claimed by two nodes', claims: [claim(1, 7, 1), claim(2, 7, 1, 1)], problems: 2 },
    { name: 'a node going back', claims: [claim(1, 7, 3), claim(1, 7, 2)], problems: 1 },
  ])('without the order across nodes (real processes): $name', ({ claims, problems }) => {
    expect(checkEpochClaims(claims, { crossNode: false })).toHaveLength(problems);
  });
});
