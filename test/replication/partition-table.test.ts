import { describe, expect, it } from 'vitest';
import { HashRing } from '../../src/cluster/ring.ts';
import { PARTITIONS, PartitionTable, partitionOf } from '../../src/replication/partition-table.ts';

const members = (ids: number[]) => ids.map((id) => ({ id, address: `mem:${id}` }));

describe('partitions', () => {
  it.each([
    // Golden values: a key's partition is where its log lives, so it must never change.
    ['k1', 498],
    ['cart:42', 156],
    ['alice', 542],
  ])('partitionOf(%s) = %i, forever', (key, p) => {
    expect(partitionOf(key)).toBe(p);
  });

  it('spreads keys over the partitions evenly', () => {
    const counts = new Array<number>(PARTITIONS).fill(0);
    for (let i = 0; i < 200_000; i++) counts[partitionOf(`user-${i}`)]!++;
    const mean = 200_000 / PARTITIONS;
    expect(Math.min(...counts)).toBeGreaterThan(mean * 0.7);
    expect(Math.max(...counts)).toBeLessThan(mean * 1.3);
  });

  it('every node computes the same table from the same ring, in any member order', () => {
    const a = new PartitionTable(new HashRing(members([1, 2, 3, 4])));
    const b = new PartitionTable(new HashRing(members([4, 2, 1, 3])));
    for (let p = 0; p < PARTITIONS; p++) expect(a.replicasOf(p)).toEqual(b.replicasOf(p));
  });

  it('R distinct nodes per partition, capped by the cluster size', () => {
    const three = new PartitionTable(new HashRing(members([1, 2, 3, 4, 5])), { replicas: 3 });
    const two = new PartitionTable(new HashRing(members([1, 2])), { replicas: 3 });
    for (let p = 0; p < PARTITIONS; p++) {
      expect(new Set(three.replicasOf(p)).size).toBe(3);
      expect(new Set(two.replicasOf(p)).size).toBe(2);
    }
  });

  it('primaries spread over nodes within the ring balance; a join moves about 1/N of primaries', () => {
    const before = new PartitionTable(new HashRing(members([1, 2, 3])));
    const after = new PartitionTable(new HashRing(members([1, 2, 3, 4])));
    for (const id of [1, 2, 3]) expect(before.placementOf(id).primary.length).toBeGreaterThan(PARTITIONS / 3 / 1.4);
    let moved = 0;
    for (let p = 0; p < PARTITIONS; p++) if (before.primaryOf(p) !== after.primaryOf(p)) moved++;
    // Every primary that moved moved to the newcomer.
    for (let p = 0; p < PARTITIONS; p++) if (before.primaryOf(p) !== after.primaryOf(p)) expect(after.primaryOf(p)).toBe(4);
    expect(moved / PARTITIONS).toBeGreaterThan(0.25 * 0.6);
    expect(moved / PARTITIONS).toBeLessThan(0.25 * 1.4);
  });

  it('replicas go to different zones where possible', () => {
    // Nodes 1 and 2 on host a, 3 and 4 on host b, 5 on host c.
    const zones = new Map([
      [1, 'a'],
      [2, 'a'],
      [3, 'b'],
      [4, 'b'],
      [5, 'c'],
    ]);
    const table = new PartitionTable(new HashRing(members([1, 2, 3, 4, 5])), { replicas: 3, zones });
    for (let p = 0; p < PARTITIONS; p++) {
      expect(new Set(table.replicasOf(p).map((id) => zones.get(id))).size).toBe(3);
    }
    // Two zones, three replicas: both zones used, one twice.
    const twoZones = new PartitionTable(new HashRing(members([1, 2, 3])), {
      replicas: 3,
      zones: new Map([
        [1, 'a'],
        [2, 'a'],
        [3, 'b'],
      ]),
    });
    for (let p = 0; p < PARTITIONS; p++) expect(twoZones.replicasOf(p)).toContain(3);
  });

  it.each([
    [{ replicas: 0 }, 'options.replicas'],
    [{ replicas: 1.5 }, 'options.replicas'],
    [{ partitions: 0 }, 'options.partitions'],
  ])('refuses %o naming the option', (options, name) => {
    expect(() => new PartitionTable(new HashRing(members([1])), options)).toThrow(name);
  });
});
