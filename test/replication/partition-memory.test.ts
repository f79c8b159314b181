/**
 * One-way and asymmetric network partitions under writes, on three in-process nodes (replicated,
 * R=3, W=2) over one `MemoryNetwork` on one `SimulatedClock` (sim-cluster.ts). The symmetric
 * {1,2}|{3} split is in failover-memory.test.ts; here a link drops frames in one direction only
 * (`MemoryNetwork.setLink(from, to, { blocked: true })`: what is sent from `from` to `to` is
 * lost, the other direction is delivered):
 *
 *   - 1→2 dropped, 2→1 delivered;
 *   - the primary deaf: node 1 still sends to 2 and 3 but hears neither (2→1 and 3→1 dropped),
 *     so its appends arrive and their `appended` answers never come back;
 *   - 2→3 dropped while every replication frame may arrive twice or late (reordered).
 *
 * After each: the history checker (acknowledged ≤ final ≤ acknowledged + unknown, no count
 * returned twice) with the final counts read through every node — and again through the two
 * others after node 1 is killed, so the replicas' contents are checked, not only their log ends —
 * I1 from the nodes' own `primary in epoch` lines (`checkEpochClaims`), and the logs converged: for every partition in
 * use, every node ends its log at the same position (seq and epoch), the primary committed it and
 * every replica all but its last entry (whose commit point travels with the next append).
 * Every figure is simulated time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { InFlight } from '../../src/cluster/memory-network.ts';
import type { TroupeNode } from '../../src/node/troupe-node.ts';
import { partitionOf } from '../../src/replication/partition-table.ts';
import type { ReplicationDriver } from '../../src/replication/replication-driver.ts';
import { R_REPL } from '../../src/replication/wire.ts';
import { checkCounters, checkEpochClaims, type Operation } from '../helpers/history.ts';
import { addressOf, seededRandom, SimNodeCluster } from './sim-cluster.ts';

const KEYS = Array.from({ length: 60 }, (_, i) => `ow-${i}`);
const IDS = [1, 2, 3];
/** Frames already on the wire when a link is cut still arrive (1 ms a hop; `setLink` drops at send). */
const IN_FLIGHT_MS = 5;
/** Long enough for membership to do whatever it will about the cut: the lan profile's down bound is 1.46 s. */
const CUT_MS = 4_000;

let cluster: SimNodeCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

const driverOf = (n: TroupeNode) => (n as unknown as { replication: { driver: ReplicationDriver } }).replication.driver;

/** Each node's view of every other as `id:status`, for the report. */
const views = (c: SimNodeCluster) =>
  IDS.map(
    (id) =>
      `${id} sees ${IDS.filter((o) => o !== id)
        .map((o) => `${o}:${c.node(id).membership!.member(o)?.status}`)
        .join(',')}`,
  ).join('; ');

/** Operations through any node acknowledged within (from, to] whose key is in `keys`. */
const acked = (ops: readonly Operation[], from: number, to: number, keys?: readonly string[]) =>
  ops.filter((o) => o.outcome === 'ok' && o.end > from && o.end <= to && (keys === undefined || keys.includes(o.key)));

/**
 * For every partition the keys live in, every node's log ends at the same (epoch, seq) and is
 * committed (see below); returns what differs. One more increment per key goes first: a partition
 * that only moved back after the heal is fenced by it, and its append carries the commit point.
 */
async function divergence(c: SimNodeCluster): Promise<string[]> {
  for (const k of KEYS) await c.settle(c.incr(1 + (KEYS.indexOf(k) % 3), k));
  // A digest period and a bit: replicas take the last commit point from the primary's digest.
  await c.runFor(1_200);
  const partitions = new Set(KEYS.map((k) => partitionOf(k)));
  const byNode = IDS.map(
    (id) =>
      new Map(
        driverOf(c.node(id))
          .describe()
          .map((d) => [d.p as number, d]),
      ),
  );
  const out: string[] = [];
  for (const p of partitions) {
    const rows = byNode.map((m) => m.get(p));
    const ends = rows.map((r) => (r === undefined ? 'none' : `${r.last}`));
    const commits = rows.map((r) => (r === undefined ? 'none' : `${r.commit}`));
    // The last entry's epoch: every node promised the serving epoch, and the log end is its entry.
    const epochs = rows.map((r) => (r === undefined ? 'none' : JSON.stringify(r.epoch)));
    if (new Set(ends).size > 1 || new Set(epochs).size > 1)
      out.push(`partition ${p}: log ends ${ends.join('/')} in epochs ${epochs.join('/')}`);
    // The primary committed its whole log, and every replica too: appends carry the commit point,
    // and once the load stops the next anti-entropy digest does.
    const primary = rows.findIndex((r) => r?.role === 'primary');
    const committed = rows.every((r) => r !== undefined && r.commit === r.last);
    if (primary < 0 || !committed)
      out.push(`partition ${p}: committed ${commits.join('/')} of ${ends.join('/')}, primary node ${primary + 1}`);
  }
  return out;
}

/** Final counts read through every node; they must agree. */
async function finalCounts(c: SimNodeCluster): Promise<Map<string, number>> {
  const reads = [];
  for (const id of IDS) reads.push(await c.readCounts(id, KEYS));
  for (const r of reads.slice(1)) expect(Object.fromEntries(r)).toEqual(Object.fromEntries(reads[0]!));
  return reads[0]!;
}

/**
 * Clients through every node, the links in `cut` dropped one way for CUT_MS, then healed, and
 * the clients stopped once every node sees the others up again.
 */
async function underOneWayCut(c: SimNodeCluster, cut: Array<[from: number, to: number]>) {
  const clients = c.startClients({ keys: KEYS, perNode: 3, timeoutMs: 1_000 });
  await c.runFor(600);
  const cutAt = c.clock.now();
  for (const [from, to] of cut) c.net.setLink(addressOf(from), addressOf(to), { blocked: true });
  await c.runFor(CUT_MS);
  const duringCut = views(c);
  const healAt = c.clock.now();
  c.net.heal();
  await c.runUntil(() => IDS.every((id) => c.upIds(c.node(id)).join() === '1,2,3'), 15_000, 'all three up everywhere after the heal');
  // Writes go on after the heal until plenty were acknowledged: the cluster serves again.
  await c.runUntil(() => acked(c.history.ops, healAt, c.clock.now()).length >= 200, 10_000, '200 increments acknowledged after the heal');
  await clients.stop();
  return { cutAt, healAt, duringCut };
}

/** The checks every scenario ends with, after its own (which look at the history during the cut). */
async function checkHealed(c: SimNodeCluster, cutAt: number, healAt: number): Promise<void> {
  // The load was real on both sides of the cut.
  expect(acked(c.history.ops, 0, cutAt).length).toBeGreaterThan(100);
  expect(acked(c.history.ops, healAt, c.clock.now()).length).toBeGreaterThan(100);
  expect(await divergence(c)).toEqual([]);
  const finals = await finalCounts(c);
  expect(checkCounters(c.history, finals)).toEqual([]);
  // What the replicas hold counts too, not only their log ends: node 1, the primary of about a
  // third of the keys, dies, and the others must serve every key with the same count.
  c.kill(1);
  await c.untilDown(1, [2, 3]);
  const survivors = [await c.readCounts(2, KEYS), await c.readCounts(3, KEYS)];
  for (const r of survivors) expect(Object.fromEntries(r)).toEqual(Object.fromEntries(finals));
  expect(checkEpochClaims(c.epochClaims())).toEqual([]);
}

describe('one-way partitions under writes (simulated clock, memory network)', () => {
  it('1→2 dropped, 2→1 delivered: nothing acknowledged is lost, one primary per epoch, the logs converge after the heal', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 21 }));
    const { cutAt, healAt, duringCut } = await underOneWayCut(c, [[1, 2]]);
    await checkHealed(c, cutAt, healAt);
    // With W=2 of 3 every partition keeps a quorum that hears itself (1 and 3, or 2 and 3): writes go on during the cut.
    const during = acked(c.history.ops, cutAt + IN_FLIGHT_MS, healAt);
    console.info(
      `one-way 1→2: ${during.length} increments acknowledged during the ${CUT_MS} ms cut; membership at its end: ${duringCut}; ${JSON.stringify(c.history.counts())}`,
    );
    expect(new Set(during.map((o) => o.key)).size).toBeGreaterThan(KEYS.length * 0.9);
    // The driver's lag statistic saw every peer's confirmations.
    for (const id of IDS) {
      const lag = driverOf(c.node(id)).stats().lag;
      expect(Object.keys(lag).sort(), `node ${id}'s peers`).toEqual(IDS.filter((o) => o !== id).map(String));
      for (const f of Object.values(lag)) expect(f.count).toBeGreaterThan(0);
    }
  });

  it('the primary deaf (1 sends to 2 and 3, hears neither): it acknowledges nothing after the cut, the others take its keys, nothing is lost', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 22 }));
    const ledBy1 = KEYS.filter((k) => c.ownerOf(k, 1) === 1);
    expect(ledBy1.length).toBeGreaterThan(10);
    const { cutAt, healAt, duringCut } = await underOneWayCut(c, [
      [2, 1],
      [3, 1],
    ]);
    const ops = c.history.ops;
    // Node 1's appends reach its replicas but no `appended` comes back: nothing of its keys
    // commits, whatever it believes, so nothing of theirs is acknowledged through it — nor
    // through 2 and 3 until they have fenced node 1 out (their forwards to it are lost).
    const through1 = ops.filter((o) => o.via === 1 && o.outcome === 'ok' && o.start > cutAt && o.end <= healAt);
    expect(through1).toEqual([]);
    // …and the majority serves node 1's keys under a new epoch meanwhile.
    const servedBy23 = new Set(acked(ops, cutAt + IN_FLIGHT_MS, healAt, ledBy1).map((o) => o.key));
    console.info(
      `deaf primary: ${servedBy23.size}/${ledBy1.length} of node 1's keys served by 2 and 3 during the cut; membership at its end: ${duringCut}; ${JSON.stringify(c.history.counts())}`,
    );
    expect(servedBy23.size).toBe(ledBy1.length);
    const claims = c.epochClaims().filter((cl) => cl.at > cutAt && cl.at <= healAt);
    expect(claims.some((cl) => cl.node !== 1 && ledBy1.some((k) => partitionOf(k) === cl.p))).toBe(true);
    await checkHealed(c, cutAt, healAt);
  });

  it('2→3 dropped while replication frames are duplicated and reordered: the same checks hold', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 23 }));
    const fault = seededRandom(2323);
    const faults = { duplicated: 0, delayed: 0 };
    c.net.intercept((m: InFlight) => {
      if (!Array.isArray(m.payload) || m.payload[0] !== R_REPL) return undefined;
      const r = fault();
      if (r < 0.2) return (void faults.duplicated++, 'duplicate');
      // Up to 12 ms late on a 1 ms link: later frames overtake it.
      if (r < 0.4) return (void faults.delayed++, { delay: 1 + Math.floor(fault() * 12) });
      return undefined;
    });
    const { cutAt, healAt, duringCut } = await underOneWayCut(c, [[2, 3]]);
    await checkHealed(c, cutAt, healAt);
    console.info(
      `one-way 2→3 with faults: ${JSON.stringify(faults)}; membership at the cut's end: ${duringCut}; ${JSON.stringify(c.history.counts())}`,
    );
    expect(faults.duplicated).toBeGreaterThan(100);
    expect(faults.delayed).toBeGreaterThan(100);
  });
});
