/**
 * A node cut off from the rest of a five-node cluster, in-process (simulated clock, memory
 * network). Its membership marks the other four down; its ring then holds itself alone. Before
 * the majority rule (TroupeNode's `placeWhenJoined`) it proposed itself as the only replica of
 * the partitions it never held, fenced them with its own promise and acknowledged writes with one
 * copy — which the majority's log later overrode, or which overrode the majority's.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { HashRing } from '../../src/cluster/ring.ts';
import { partitionOf, PartitionTable } from '../../src/replication/partition-table.ts';
import { addressOf, SimNodeCluster } from './sim-cluster.ts';

let cluster: SimNodeCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

describe('an isolated node of five', () => {
  it('acknowledges nothing for partitions it never held, and the majority loses nothing', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 5, ids: [1, 2, 3, 4, 5] }));
    const table = new PartitionTable(new HashRing(c.node(1).membership!.upMembers()));
    // Keys whose replica sets leave node 5 out: it holds no history of their partitions.
    const keys = Array.from({ length: 400 }, (_, i) => `iso-${i}`)
      .filter((k) => !table.replicasOf(partitionOf(k, table.partitions)).includes(5))
      .slice(0, 10);
    expect(keys).toHaveLength(10);
    for (const k of keys) await c.settle(c.ask(1, 'counter', k, 'incr', 2_000));
    const cut = c.net.intercept((m) => (m.from.address === addressOf(5) || m.to === addressOf(5) ? 'drop' : undefined));
    await c.runUntil(() => c.upIds(c.node(5)).join() === '5', 60_000, 'node 5 sees only itself');
    // Through the isolated node: refused or timed out, never acknowledged.
    const outcomes = await Promise.all(keys.map((k) => c.settle(c.ask(5, 'counter', k, 'incr', 2_000).then(() => 'ok', (e: { code?: string }) => e.code ?? 'error'), 5_000)));
    expect(outcomes.filter((o) => o === 'ok')).toEqual([]);
    // The majority goes on, and after the heal nothing it acknowledged is lost.
    for (const k of keys) await c.settle(c.ask(1, 'counter', k, 'incr', 2_000));
    cut();
    await c.runUntil(() => [1, 2, 3, 4, 5].every((n) => c.upIds(c.node(n)).length === 5), 15_000, 'healed');
    await c.runFor(3_000);
    for (const via of [1, 5]) {
      const finals = await c.readCounts(via, keys);
      for (const k of keys) expect(finals.get(k), `${k} through node ${via}`).toBe(2);
    }
  }, 60_000);
});
