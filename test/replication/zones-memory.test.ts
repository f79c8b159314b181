/**
 * Zone labels end to end, in-process: three whole nodes (sim-cluster.ts), two of them on one
 * "host" (zone `hostA`), R=2. Each node is given only its own label; the others' reach it through
 * membership gossip, and every partition's copies land in two different zones — so the death of
 * hostA (both of its nodes) leaves one copy of every partition on hostB.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { TroupeNode } from '../../src/node/troupe-node.ts';
import type { ReplicationDriver } from '../../src/replication/replication-driver.ts';
import { SimNodeCluster } from './sim-cluster.ts';

const ZONES: Record<number, string> = { 1: 'hostA', 2: 'hostA', 3: 'hostB' };
const KEYS = Array.from({ length: 80 }, (_, i) => `z-${i}`);

const driverOf = (n: TroupeNode) => (n as unknown as { replication: { driver: ReplicationDriver } }).replication.driver;

let cluster: SimNodeCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

describe('zones', () => {
  it('gossips each node its peers’ zones, and no partition keeps both copies in one zone', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 11, zones: ZONES, replicas: 2 }));
    // Learned, not configured: each node was started with its own label only.
    for (const viewer of [1, 2, 3]) {
      for (const id of [1, 2, 3]) expect(c.node(viewer).membership!.member(id)?.zone, `node ${viewer}'s view of ${id}`).toBe(ZONES[id]);
    }
    for (const k of KEYS) await c.settle(c.ask(1, 'counter', k, 'incr', 2_000));

    // Where each written partition's log actually is: the nodes whose copy holds entries.
    const holders = new Map<number, number[]>();
    for (const id of [1, 2, 3]) {
      for (const d of driverOf(c.node(id)).describe()) {
        if ((d.last as number) > 0) holders.set(d.p as number, [...(holders.get(d.p as number) ?? []), id]);
        // Every node's proposed set for the partition spans both zones too.
        const proposed = d.proposed as number[];
        expect(new Set(proposed.map((n) => ZONES[n])).size, `node ${id}'s proposed set ${proposed} of p${d.p}`).toBe(2);
      }
    }
    expect(holders.size).toBeGreaterThan(40);
    for (const [p, nodes] of holders) {
      expect(nodes.length, `copies of p${p}`).toBe(2);
      expect(new Set(nodes.map((n) => ZONES[n])).size, `p${p} held by ${nodes}`).toBe(2);
    }
    // The unlabelled placement (R=2 over three nodes) would have put about a third of the
    // partitions on nodes 1 and 2 together: node 3 now holds every one.
    for (const nodes of holders.values()) expect(nodes).toContain(3);
  });
});
