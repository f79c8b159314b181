import { describe, expect, it } from 'vitest';
import { DEFAULT_VIRTUAL_NODES, HashRing, type RingMember } from '../../src/cluster/ring.ts';
import { isTroupeError } from '../../src/core/errors.ts';

const member = (id: number): RingMember => ({ id, address: `10.0.0.${id}:7401` });
const members = (ids: number[]) => ids.map(member);
const KEYS = Array.from({ length: 100_000 }, (_, i) => `session:${i}`);

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

describe('HashRing', () => {
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
      expect(moved).toBeGreaterThan(0.8 * ideal);
      expect(moved).toBeLessThanOrEqual(1.1 * ideal);
    }
  });

  it.each([
    { name: '3 → 4 nodes', before: [1, 2, 3] },
    { name: '49 → 50 nodes', before: range(49, 3) },
  ])('a join moves 1/N of keys on average, all to the joiner, at 128 vnodes: $name', ({ before }) => {
    const ideal = KEYS.length / (before.length + 1);
    const ratios = range(12).map((i) => movedOnJoin(before, 600 + i * 31, 128) / ideal);
    const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
    expect(mean).toBeLessThanOrEqual(1.1);
    expect(mean).toBeGreaterThanOrEqual(0.9);
    for (const r of ratios) expect(r).toBeLessThanOrEqual(1.4);
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
    const ring = new HashRing(members([1, 2, 3, 4, 5, 6]));
    for (const key of KEYS.slice(0, 2000)) {
      const set = ring.replicasOf(key, 2).map((m) => m.id);
      const outsider = [1, 2, 3, 4, 5, 6].find((id) => !set.includes(id))!;
      const smaller = new HashRing(members([1, 2, 3, 4, 5, 6].filter((id) => id !== outsider)));
      expect(smaller.replicasOf(key, 2).map((m) => m.id)).toEqual(set);
    }
  });

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
});
