import { describe, expect, it } from 'vitest';
import { DEFAULT_VIRTUAL_NODES, HashRing, type RingMember } from '../../src/cluster/ring.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import { hash32 } from '../../src/core/hash.ts';

const member = (id: number): RingMember => ({ id, address: `10.0.0.${id}:7401` });
const members = (ids: number[]) => ids.map(member);
/** Keys per property check. The mutation run (vitest.mutation.config.ts) sets fewer through
 *  TROUPE_PROPERTY_RUNS; `widen` scales a statistical margin by √(100,000 / keys) to stay as strict. */
const KEY_COUNT = Number(process.env.TROUPE_PROPERTY_RUNS ?? 100_000);
const KEYS = Array.from({ length: KEY_COUNT }, (_, i) => `session:${i}`);
const widen = (margin: number) => margin * Math.sqrt(100_000 / KEY_COUNT);

/** Deterministic Fisher-Yates, so "any order" is many orders but the test is repeatable. */
function shuffle<T>(items: readonly T[], seed: number): T[] {
  const a = items.slice();
  let s = seed;
  for (let i = a.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function owners(ring: HashRing, keys: readonly string[]): Int32Array {
  const out = new Int32Array(keys.length);
  keys.forEach((k, i) => (out[i] = ring.ownerOf(k).id));
  return out;
}

// Exact tests first: under mutation testing a mutant is killed by the first failing test, and
// these fail in milliseconds where the property tests below take seconds.
describe('HashRing', () => {
  it('throws ERR_NO_NODES on an empty ring', () => {
    const ring = new HashRing([]);
    for (const call of [() => ring.ownerOf('x'), () => ring.replicasOf('x', 2), () => ring.ownerOfHash(1)]) {
      let caught: unknown;
      try {
        call();
      } catch (e) {
        caught = e;
      }
      expect(isTroupeError(caught, 'ERR_NO_NODES')).toBe(true);
      expect((caught as Error).message).toBe('the hash ring has no members');
    }
  });

  it.each([
    { name: 'duplicate id', args: [members([1, 1])], message: 'members must not repeat a node id (id 1 appears twice)' },
    { name: 'id out of range', args: [[{ id: 1024, address: 'a' }]], message: 'members[0].id must be an integer in 0..1023 (got 1024)' },
    { name: 'empty address', args: [[{ id: 1, address: '' }]], message: 'members[0].address must be a non-empty string (got "")' },
    {
      name: 'bad vnodes',
      args: [members([1]), { virtualNodes: 0 }],
      message: 'options.virtualNodes must be an integer in 1..65536 (got 0)',
    },
    { name: 'bad epoch', args: [members([1]), { epoch: -1 }], message: 'options.epoch must be a non-negative integer (got -1)' },
  ])('validates its options: $name', ({ args, message }) => {
    expect(() => new HashRing(...(args as [RingMember[], object?]))).toThrow(message);
  });

  it('validates r in replicasOf', () => {
    expect(() => new HashRing(members([1])).replicasOf('k', 0)).toThrow('r must be a positive integer (got 0)');
  });

  it('carries its epoch and answers membership questions', () => {
    const ring = new HashRing(members([9, 4]), { epoch: 12, virtualNodes: 16 });
    expect(ring.epoch).toBe(12);
    expect(ring.size).toBe(2);
    expect(ring.members.map((m) => m.id)).toEqual([4, 9]);
    expect(ring.has(9)).toBe(true);
    expect(ring.has(5)).toBe(false);
  });

  // Ring positions must not move between releases (src/core/hash.ts): nodes of different
  // versions route by them. These pin the exact placement; the statistical tests above pass for
  // any uniform placement.
  it.each([
    { key: 'cart:1', vnodes16: [1, 2, 3], vnodesDefault: [4, 5, 2] },
    { key: 'cart:2', vnodes16: [4, 1, 2], vnodesDefault: [4, 2, 3] },
    { key: 'user-42', vnodes16: [5, 4, 2], vnodesDefault: [1, 2, 3] },
    { key: 'session:99999', vnodes16: [4, 2, 5], vnodesDefault: [3, 4, 5] },
    { key: '', vnodes16: [2, 5, 4], vnodesDefault: [1, 2, 3] },
  ])('places $key on the same replicas in every release', ({ key, vnodes16, vnodesDefault }) => {
    const ids = (ring: HashRing) => ring.replicasOf(key, 3).map((m) => m.id);
    const small = new HashRing(members([1, 2, 3, 4, 5]), { virtualNodes: 16 });
    expect(ids(small)).toEqual(vnodes16);
    expect(small.ownerOf(key).id).toBe(vnodes16[0]);
    expect(ids(new HashRing(members([1, 2, 3, 4, 5])))).toEqual(vnodesDefault);
  });

  it('gives a key that hashes exactly onto a virtual node to that node', () => {
    const ring = new HashRing(members([4, 9, 300]), { virtualNodes: 32 });
    for (const id of [4, 9, 300]) {
      for (let i = 0; i < 32; i++) expect(ring.ownerOfHash(hash32(`${id}#${i}`)).id).toBe(id);
    }
  });

  it('wraps a hash past the last position to the first one', () => {
    const ring = new HashRing(members([1, 2, 3, 4, 5]), { virtualNodes: 16 });
    const first = ring.ownerOfHash(0);
    expect(ring.ownerOfHash(0xffff_ffff)).toEqual(first);
    expect(ring.ownerOfHash(-1)).toEqual(first); // read as the unsigned 0xffffffff
    // Walks that start near the end must wrap too: every replica set holds all five members.
    for (const key of KEYS.slice(0, 500)) {
      expect(new Set(ring.replicasOf(key, 5).map((m) => m?.id))).toEqual(new Set([1, 2, 3, 4, 5]));
    }
  });

  it('walks past a member it has already met to find the next distinct one', () => {
    // With two members the walk from a key usually meets more positions of the owner before
    // the other member's first; those must be skipped, not counted.
    const ring = new HashRing(members([1, 2]), { virtualNodes: 64 });
    for (const key of KEYS.slice(0, 200)) {
      const ids = ring.replicasOf(key, 2).map((m) => m.id);
      expect(ids.sort()).toEqual([1, 2]);
      expect(ring.replicasOf(key, 1)).toEqual([ring.ownerOf(key)]);
    }
  });

  it.each([
    { name: 'not an array', args: ['10.0.0.1'], message: 'members must be an array (got "10.0.0.1")' },
    { name: 'a null member', args: [[null]], message: 'members[0] must be an object { id, address } (got null)' },
    { name: 'a number as member', args: [[member(1), 7]], message: 'members[1] must be an object { id, address } (got 7)' },
    { name: 'a negative id', args: [[{ id: -1, address: 'a' }]], message: 'members[0].id must be an integer in 0..1023 (got -1)' },
    { name: 'a fractional id', args: [[{ id: 1.5, address: 'a' }]], message: 'members[0].id must be an integer in 0..1023 (got 1.5)' },
    { name: 'a numeric address', args: [[{ id: 1, address: 7401 }]], message: 'members[0].address must be a non-empty string (got 7401)' },
    {
      name: 'vnodes over 65536',
      args: [members([1]), { virtualNodes: 65_537 }],
      message: 'options.virtualNodes must be an integer in 1..65536 (got 65537)',
    },
    {
      name: 'fractional vnodes',
      args: [members([1]), { virtualNodes: 1.5 }],
      message: 'options.virtualNodes must be an integer in 1..65536 (got 1.5)',
    },
    { name: 'a fractional epoch', args: [members([1]), { epoch: 1.5 }], message: 'options.epoch must be a non-negative integer (got 1.5)' },
    {
      name: 'an unsafe epoch',
      args: [members([1]), { epoch: 2 ** 53 }],
      message: 'options.epoch must be a non-negative integer (got 9007199254740992)',
    },
  ])('refuses $name', ({ args, message }) => {
    expect(() => new HashRing(...(args as [RingMember[], object?]))).toThrow(message);
  });

  it.each([
    { name: 'the smallest ring options', ids: [0], options: { virtualNodes: 1, epoch: 0 } },
    { name: 'the largest id and vnode count', ids: [1023], options: { virtualNodes: 65_536 } },
  ])('accepts $name', ({ ids, options }) => {
    const ring = new HashRing(members(ids), options);
    expect(ring.ownerOf('k').id).toBe(ids[0]);
    expect(ring.virtualNodes).toBe(options.virtualNodes);
  });

  it('defaults to DEFAULT_VIRTUAL_NODES and epoch 0', () => {
    const ring = new HashRing(members([1]));
    expect(ring.virtualNodes).toBe(DEFAULT_VIRTUAL_NODES);
    expect(ring.epoch).toBe(0);
  });

  it('keeps its own copy of the members', () => {
    const input = [
      { id: 1, address: '10.0.0.1:7401' },
      { id: 2, address: '10.0.0.2:7401' },
    ];
    const ring = new HashRing(input, { virtualNodes: 8 });
    input[0]!.id = 7;
    input[0]!.address = 'moved';
    expect(ring.members).toEqual(members([1, 2]));
    expect(ring.has(7)).toBe(false);
  });

  it.each([
    { name: 'an id below all', id: 0, has: false },
    { name: 'the first id', id: 2, has: true },
    { name: 'a middle id', id: 5, has: true },
    { name: 'a gap', id: 6, has: false },
    { name: 'the last id', id: 11, has: true },
    { name: 'an id above all', id: 12, has: false },
  ])('has: $name', ({ id, has }) => {
    expect(new HashRing(members([11, 2, 5, 8]), { virtualNodes: 4 }).has(id)).toBe(has);
  });
});

describe('HashRing properties', () => {
  it('gives every node the same owner for the same membership, whatever the input order', () => {
    const ids = [3, 17, 42, 99, 512, 1023, 0, 7];
    const reference = owners(new HashRing(members(ids)), KEYS.slice(0, 20_000));
    for (let seed = 1; seed <= 10; seed++) {
      const ring = new HashRing(shuffle(members(ids), seed));
      expect(owners(ring, KEYS.slice(0, 20_000))).toEqual(reference);
    }
  });

  it('keeps replica sets identical across input orders too', () => {
    const ids = [1, 2, 3, 4, 5];
    const a = new HashRing(members(ids));
    const b = new HashRing(shuffle(members(ids), 99));
    for (const key of KEYS.slice(0, 2000)) expect(b.replicasOf(key, 3)).toEqual(a.replicasOf(key, 3));
  });

  it.each([
    { name: '3 nodes', nodes: 3, tolerance: 0.25 },
    { name: '10 nodes', nodes: 10, tolerance: 0.3 },
    { name: '50 nodes', nodes: 50, tolerance: 0.4 },
  ])('balances keys over nodes: $name within ±$tolerance of the mean', ({ nodes, tolerance }) => {
    const ring = new HashRing(members(Array.from({ length: nodes }, (_, i) => i)));
    const counts = new Map<number, number>();
    for (const k of KEYS) {
      const id = ring.ownerOf(k).id;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    const mean = KEYS.length / nodes;
    expect(counts.size).toBe(nodes);
    for (const c of counts.values()) expect(Math.abs(c - mean) / mean).toBeLessThanOrEqual(tolerance);
  });

  /** Keys that changed owner when `joiner` joined `before`; asserts they all went to the joiner. */
  function movedOnJoin(before: number[], joiner: number, virtualNodes: number): number {
    const old = owners(new HashRing(members(before), { virtualNodes, epoch: 1 }), KEYS);
    const next = owners(new HashRing(members([...before, joiner]), { virtualNodes, epoch: 2 }), KEYS);
    let moved = 0;
    for (let i = 0; i < KEYS.length; i++) {
      if (old[i] === next[i]) continue;
      moved++;
      if (next[i] !== joiner) throw new Error(`key ${KEYS[i]} moved from ${old[i]} to ${next[i]}, not to the joiner`);
    }
    return moved;
  }
  const range = (n: number, step = 1) => Array.from({ length: n }, (_, i) => i * step);

  // A node's share of the ring has a relative spread of ~1/√V (random vnode placement), so
  // "≤ 1.1× the ideal 1/N" holds for every single join with the default 1024 vnodes; with 128
  // it holds on average over joins, and a single join stays within ~4σ.
  it.each([
    { name: '3 → 4 nodes', before: [1, 2, 3] },
    { name: '9 → 10 nodes', before: range(9) },
    { name: '49 → 50 nodes', before: range(49, 3) },
  ])('a join moves ≤ 1.1× the ideal 1/N of keys, all to the joiner, at the default vnodes: $name', ({ before }) => {
    const ideal = KEYS.length / (before.length + 1);
    for (const joiner of [500, 777, 1000, 1023]) {
      const moved = movedOnJoin(before, joiner, DEFAULT_VIRTUAL_NODES);
      expect(moved).toBeGreaterThan((1 - widen(0.2)) * ideal);
      expect(moved).toBeLessThanOrEqual((1 + widen(0.1)) * ideal);
    }
  });

  it.each([
    { name: '3 → 4 nodes', before: [1, 2, 3] },
    { name: '49 → 50 nodes', before: range(49, 3) },
  ])('a join moves 1/N of keys on average, all to the joiner, at 128 vnodes: $name', ({ before }) => {
    const ideal = KEYS.length / (before.length + 1);
    const ratios = range(12).map((i) => movedOnJoin(before, 600 + i * 31, 128) / ideal);
    const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
    expect(mean).toBeLessThanOrEqual(1 + widen(0.1));
    expect(mean).toBeGreaterThanOrEqual(1 - widen(0.1));
    for (const r of ratios) expect(r).toBeLessThanOrEqual(1 + widen(0.4));
  });

  it.each([
    { name: '4 → 3 nodes', before: [1, 2, 3, 4], leaver: 2 },
    { name: '50 → 49 nodes', before: Array.from({ length: 50 }, (_, i) => i), leaver: 17 },
  ])("a leave moves only the leaver's keys: $name", ({ before, leaver }) => {
    const old = owners(new HashRing(members(before)), KEYS);
    const next = owners(new HashRing(members(before.filter((id) => id !== leaver))), KEYS);
    let moved = 0;
    for (let i = 0; i < KEYS.length; i++) {
      if (old[i] === next[i]) continue;
      moved++;
      expect(old[i]).toBe(leaver);
    }
    expect(moved).toBe(old.filter((id) => id === leaver).length);
  });

  it('returns replica sets of distinct nodes, owner first, capped at the ring size', () => {
    const ring = new HashRing(members([5, 6, 7, 8, 9]));
    for (const key of KEYS.slice(0, 5000)) {
      const r3 = ring.replicasOf(key, 3);
      expect(r3).toHaveLength(3);
      expect(new Set(r3.map((m) => m.id)).size).toBe(3);
      expect(r3[0]).toEqual(ring.ownerOf(key));
    }
    expect(ring.replicasOf('k', 10)).toHaveLength(5);
  });

  it('keeps a replica set stable when a node outside it leaves', () => {
    const ids = [1, 2, 3, 4, 5, 6];
    const ring = new HashRing(members(ids));
    // One ring per possible leaver, built once: building one per key made this the slowest test.
    const without = new Map(ids.map((leaver) => [leaver, new HashRing(members(ids.filter((id) => id !== leaver)))]));
    for (const key of KEYS.slice(0, 2000)) {
      const set = ring.replicasOf(key, 2).map((m) => m.id);
      const outsider = ids.find((id) => !set.includes(id))!;
      expect(
        without
          .get(outsider)!
          .replicasOf(key, 2)
          .map((m) => m.id),
      ).toEqual(set);
    }
  });
});
