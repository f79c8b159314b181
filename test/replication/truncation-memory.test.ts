/**
 * Bounded partition logs (REPLICATION.md I5, issue 7 "truncation"), on three in-process nodes over
 * the memory network and the simulated clock (see sim-cluster.ts): under a sustained write load
 * every node's log of every partition stays within a few hundred entries; a node cut off long
 * enough for the others to truncate past its position catches up through a partition snapshot
 * after the heal; failover afterwards serves every key with its state, and a message id retried
 * after truncation gets its recorded reply (I6). Figures are simulated time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { TroupeNode } from '../../src/node/troupe-node.ts';
import { partitionOf } from '../../src/replication/partition-table.ts';
import type { ReplicationDriver } from '../../src/replication/replication-driver.ts';
import { checkCounters, checkEpochClaims } from '../helpers/history.ts';
import { addressOf, SimNodeCluster } from './sim-cluster.ts';

/** A log of one partition on one node never holds more than this many entries (last − base). */
const BOUND = 600;

let cluster: SimNodeCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

const driverOf = (n: TroupeNode) => (n as unknown as { replication: { driver: ReplicationDriver } }).replication.driver;

interface LogSize {
  node: number;
  p: number;
  last: number;
  base: number;
}

/** Every node's log of every partition it holds. */
function logSizes(c: SimNodeCluster, ids: readonly number[]): LogSize[] {
  return ids.flatMap((node) =>
    driverOf(c.node(node))
      .describe()
      .map((d) => ({ node, p: d.p as number, last: d.last as number, base: d.base as number })),
  );
}

const longest = (sizes: readonly LogSize[]) => Math.max(0, ...sizes.map((s) => s.last - s.base));

describe('bounded partition logs (simulated clock, memory network)', () => {
  it('under a sustained write load with every replica up, every node’s log of every partition stays bounded while thousands of entries are written', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 11 }));
    // Few keys, so each partition's log takes thousands of entries.
    const keys = ['t-0', 't-1', 't-2', 't-3'];
    const clients = c.startClients({ keys, perNode: 3 });
    let worst = 0;
    for (let i = 0; i < 40; i++) {
      await c.runFor(200);
      worst = Math.max(worst, longest(logSizes(c, [1, 2, 3])));
    }
    await clients.stop();
    const sizes = logSizes(c, [1, 2, 3]).filter((s) => keys.some((k) => partitionOf(k) === s.p));
    const written = Math.max(...sizes.map((s) => s.last));
    const total = sizes.filter((s) => s.node === 1).reduce((n, s) => n + s.last, 0);
    console.info(`bounded logs: ${total} entries written over ${keys.length} partitions (up to ${written} in one); longest log at any sample ${worst} entries`);
    expect(total).toBeGreaterThan(3_000);
    expect(written).toBeGreaterThan(1_000);
    expect(worst).toBeLessThanOrEqual(BOUND);
    // Every node truncated, the replicas included (they follow the primary's announced point).
    for (const id of [1, 2, 3]) expect(driverOf(c.node(id)).stats().truncations, `node ${id}`).toBeGreaterThan(0);
    const finals = await c.readCounts(1, keys);
    expect(checkCounters(c.history, finals)).toEqual([]);
  });

  it('a node cut off until the others truncated past it catches up from snapshots; failover afterwards serves every key with its state and recorded replies', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 12 }));
    const keys = Array.from({ length: 24 }, (_, i) => `s-${i}`);
    // One message with an id per key, answered before anything is truncated.
    const recorded = new Map<string, unknown>();
    for (const k of keys) {
      const start = c.clock.now();
      const reply = await c.settle(c.node(1).ask('counter', k, { command: 'incr', id: `first-${k}` }, { timeoutMs: 2_000 }));
      recorded.set(k, reply);
      c.history.record({ key: k, value: (reply as { n: number }).n, outcome: 'ok', start, end: c.clock.now(), via: 1 });
    }
    const clients = c.startClients({ keys, perNode: 3, via: [1, 2] });
    await c.runFor(300);
    const positionOf3 = new Map(logSizes(c, [3]).map((s) => [s.p, s.last]));

    c.net.partition([addressOf(1), addressOf(2)], [addressOf(3)]);
    await c.untilDown(3, [1, 2]);
    // The majority writes on until its logs of node 3's partitions start past where node 3's end.
    await c.runUntil(
      () => [...positionOf3].every(([p, last]) => logSizes(c, [1, 2]).some((s) => s.p === p && s.base > last)),
      20_000,
      'the majority truncated past node 3’s position in every partition it held',
    );
    c.net.heal();
    await c.runUntil(() => [1, 2, 3].every((id) => c.upIds(c.node(id)).join() === '1,2,3'), 15_000, 'all three up after the heal');
    await c.runFor(1_500);
    await clients.stop();

    const installed = c.lines.filter((l) => l.node === 3 && /snapshot installed/.test(l.msg)).map((l) => l.fields.p as number);
    const sent = c.lines.filter((l) => /snapshot sent to node 3/.test(l.msg));
    console.info(
      `cut off: node 3 installed ${installed.length} partition snapshots (${sent.filter((l) => /fetch/.test(l.msg)).length} for its own fences, ` +
        `${sent.filter((l) => !/fetch/.test(l.msg)).length} from primaries); longest log now ${longest(logSizes(c, [1, 2, 3]))}`,
    );
    expect(installed.length).toBeGreaterThan(0);
    // Node 3 holds every partition of the keys again, applied where the others are.
    const finals = await c.readCounts(3, keys);
    expect(checkCounters(c.history, finals)).toEqual([]);

    // Failover after truncation: the primary of most keys dies; the others serve them from their
    // actor tables (node 3's came from snapshots), state and recorded replies included.
    c.kill(2);
    await c.untilDown(2, [1, 3]);
    const after = await c.readCounts(1, keys);
    expect(Object.fromEntries(after)).toEqual(Object.fromEntries(finals));
    const servedBy3 = keys.filter((k) => c.ownerOf(k, 1) === 3 && installed.includes(partitionOf(k)));
    expect(servedBy3.length).toBeGreaterThan(0);
    for (const k of keys) {
      const retried = await c.settle(c.node(1 + 2 * (keys.indexOf(k) % 2)).ask('counter', k, { command: 'incr', id: `first-${k}` }, { timeoutMs: 2_000 }));
      expect(retried, k).toEqual(recorded.get(k));
    }
    // The retries applied nothing.
    expect(Object.fromEntries(await c.readCounts(3, keys))).toEqual(Object.fromEntries(finals));
    expect(checkEpochClaims(c.epochClaims())).toEqual([]);
  });
});
