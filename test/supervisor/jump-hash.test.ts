import { describe, expect, it } from 'vitest';
import { hash32 } from '../../src/core/hash.ts';
import { jumpHash } from '../../src/supervisor/jump-hash.ts';
import { slotOf } from '../../src/supervisor/placement.ts';

/** Keys per property check. The mutation run (vitest.mutation.config.ts) sets fewer through
 *  TROUPE_PROPERTY_RUNS; statistical tolerances widen by √(100,000 / keys) to stay as strict. */
const KEY_COUNT = Number(process.env.TROUPE_PROPERTY_RUNS ?? 100_000);
const keys = Array.from({ length: KEY_COUNT }, (_, i) => `session-${i}`);
const TOLERANCE = 0.05 * Math.sqrt(100_000 / KEY_COUNT);

describe('jumpHash', () => {
  it.each([1, 2, 3, 4, 8, 16])('spreads the keys evenly over %i slots (each within 5% of the mean at 100k keys)', (slots) => {
    const counts = new Array<number>(slots).fill(0);
    for (const k of keys) counts[jumpHash(hash32(k), slots)]!++;
    const mean = keys.length / slots;
    for (const c of counts) expect(Math.abs(c - mean) / mean).toBeLessThan(TOLERANCE);
  });

  it.each([
    { from: 1, to: 2 },
    { from: 2, to: 3 },
    { from: 4, to: 5 },
    { from: 8, to: 9 },
  ])('growing $from → $to slots moves ≈1/$to of keys, all into the new slot', ({ from, to }) => {
    let moved = 0;
    for (const k of keys) {
      const a = jumpHash(hash32(k), from);
      const b = jumpHash(hash32(k), to);
      if (a !== b) {
        moved++;
        expect(b).toBe(to - 1);
      }
    }
    const ideal = keys.length / to;
    expect(Math.abs(moved - ideal) / ideal).toBeLessThan(TOLERANCE);
  });

  it('is deterministic and in range', () => {
    for (let h = 0; h < 1000; h++) {
      const b = jumpHash(h * 2654435761, 7);
      expect(b).toBe(jumpHash(h * 2654435761, 7));
      expect(b).toBeGreaterThanOrEqual(0);
      expect(b).toBeLessThan(7);
    }
  });

  it('rejects a bucket count below 1, naming it', () => {
    expect(() => jumpHash(1, 0)).toThrow(new RangeError('buckets must be an integer >= 1 (got 0)'));
    // Not only a wrong answer: with Infinity or NaN the loop would never end.
    for (const bad of [Infinity, NaN, 2.5, -1]) expect(() => jumpHash(1, bad)).toThrow(RangeError);
  });

  // Worker placement must not change between releases (src/core/hash.ts): these pin the exact
  // sequence, which the statistical tests above cannot (any uniform sequence passes them).
  it.each([
    { key: 'cart:1', slots: [0, 0, 0, 0, 0, 0, 100] },
    { key: 'cart:2', slots: [0, 0, 2, 2, 2, 53, 689] },
    { key: 'user-42', slots: [0, 1, 1, 3, 8, 62, 214] },
    { key: 'session-99999', slots: [0, 1, 2, 5, 10, 10, 569] },
    { key: '', slots: [0, 1, 2, 2, 2, 34, 568] },
  ])('places $key on the same slots in every release', ({ key, slots }) => {
    expect([1, 2, 3, 7, 16, 100, 1000].map((n) => jumpHash(hash32(key), n))).toEqual(slots);
  });

  it('keeps a key whose first draw is the smallest (fmix32 = 0) in slot 0', () => {
    // 0x61c88647 + 0x9e3779b9 wraps to 0 and fmix32(0) = 0: r must be 1/2^32, not 0 or below.
    for (const slots of [1, 2, 7, 1000]) expect(jumpHash(0x61c88647, slots)).toBe(0);
  });

  it('slotOf uses one slot without hashing', () => {
    expect(slotOf('anything', 1)).toBe(0);
  });
});
