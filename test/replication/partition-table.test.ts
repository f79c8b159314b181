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
    [{ replicas: 0 }, 'options.replicas must be an integer in [1, 7] (got 0)'],
    [{ replicas: 1.5 }, 'options.replicas must be an integer in [1, 7] (got 1.5)'],
    [{ replicas: 8 }, 'options.replicas must be an integer in [1, 7] (got 8)'],
    [{ partitions: 0 }, 'options.partitions must be an integer in [1, 65536] (got 0)'],
    [{ partitions: 65_537 }, 'options.partitions must be an integer in [1, 65536] (got 65537)'],
  ])('refuses %o naming the option', (options, message) => {
    expect(() => new PartitionTable(new HashRing(members([1])), options)).toThrow(message);
  });

  it.each([
    [{ replicas: 1 }, 1],
    [{ replicas: 7 }, 7],
    [{ partitions: 1 }, 1],
    [{ partitions: 65_536 }, 65_536],
  ])('accepts the bounds: %o', (options, n) => {
    const table = new PartitionTable(new HashRing(members([1, 2, 3, 4, 5, 6, 7])), options);
    if ('replicas' in options) expect(table.replicasOf(0)).toHaveLength(n);
    else expect(table.partitions).toBe(n);
  });

  it('an empty ring proposes nothing, and the last partition exists, the one past it does not', () => {
    const empty = new PartitionTable(new HashRing([]), { partitions: 4 });
    expect(empty.replicasOf(3)).toEqual([]);
    expect(empty.primaryOf(0)).toBeUndefined();
    const table = new PartitionTable(new HashRing(members([1, 2])), { partitions: 4 });
    expect(table.replicasOf(3)).toHaveLength(2);
    expect(table.replicasOf(4)).toEqual([]);
  });

  it('placementOf: the partitions a node leads, and those it only holds a copy of', () => {
    const table = new PartitionTable(new HashRing(members([1, 2, 3, 4])), { replicas: 2 });
    const { primary, replica } = table.placementOf(2);
    for (const p of primary) expect(table.primaryOf(p)).toBe(2);
    for (const p of replica) expect(table.replicasOf(p)[1]).toBe(2); // R = 2: the other copy
    expect(primary.length + replica.length).toBe([...Array(PARTITIONS).keys()].filter((p) => table.replicasOf(p).includes(2)).length);
    expect(primary.length).toBeGreaterThan(0);
    expect(replica.length).toBeGreaterThan(0);
  });

  it('zones: a node without a label is a zone of its own; more replicas than zones fill in clockwise order', () => {
    const ring = new HashRing(members([1, 2, 3]));
    const unlabelled = new PartitionTable(ring, { replicas: 3, zones: new Map() });
    const plain = new PartitionTable(ring, { replicas: 3 });
    for (let p = 0; p < PARTITIONS; p++) expect(unlabelled.replicasOf(p)).toEqual(plain.replicasOf(p));
    const oneZone = new PartitionTable(ring, {
      replicas: 2,
      zones: new Map([
        [1, 'a'],
        [2, 'a'],
        [3, 'a'],
      ]),
    });
    for (let p = 0; p < PARTITIONS; p++) expect(oneZone.replicasOf(p)).toEqual(plain.replicasOf(p).slice(0, 2));
  });
  it('tables and ring layouts are shared between equal rings, never between different ones (the caches)', () => {
    const ring = (ids: number[], zone?: (id: number) => string, virtualNodes?: number) =>
      new HashRing(
        ids.map((id) => ({ id, address: `a:${id}`, ...(zone && { zone: zone(id) }) })),
        virtualNodes === undefined ? {} : { virtualNodes },
      );
    const sets = (t: PartitionTable) => Array.from({ length: t.partitions }, (_, p) => t.replicasOf(p).join(','));
    const plain = sets(new PartitionTable(ring([1, 2, 3, 4])));
    // Equal members (other addresses, other order): the same table.
    expect(sets(new PartitionTable(new HashRing([4, 3, 2, 1].map((id) => ({ id, address: `b:${id}` })))))).toEqual(plain);
    // Zones, R, P and the virtual-node count each change the table.
    const zoned = new PartitionTable(ring([1, 2, 3, 4], (id) => (id <= 2 ? 'x' : 'y')), { replicas: 2 });
    for (let p = 0; p < zoned.partitions; p++) expect(new Set(zoned.replicasOf(p).map((id) => (id <= 2 ? 'x' : 'y'))).size).toBe(2);
    const regrouped = new PartitionTable(ring([1, 2, 3, 4], (id) => (id % 2 ? 'x' : 'y')), { replicas: 2 });
    for (let p = 0; p < regrouped.partitions; p++) expect(new Set(regrouped.replicasOf(p).map((id) => (id % 2 ? 'x' : 'y'))).size).toBe(2);
    expect(new PartitionTable(ring([1, 2, 3, 4]), { replicas: 2 }).replicasOf(0)).toHaveLength(2);
    expect(new PartitionTable(ring([1, 2, 3, 4]), { partitions: 64 }).partitions).toBe(64);
    const fewer = ring([1, 2, 3, 4], undefined, 8);
    const more = ring([1, 2, 3, 4]);
    const differs = Array.from({ length: 200 }, (_, i) => `k${i}`).some((k) => fewer.ownerOf(k).id !== more.ownerOf(k).id);
    expect(differs).toBe(true);
    expect(sets(new PartitionTable(fewer))).not.toEqual(plain);
  });
});
