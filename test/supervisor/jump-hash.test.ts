import { describe, expect, it } from 'vitest';
import { hash32 } from '../../src/core/hash.ts';
import { jumpHash } from '../../src/supervisor/jump-hash.ts';
import { slotOf } from '../../src/supervisor/placement.ts';

const keys = Array.from({ length: 100_000 }, (_, i) => `session-${i}`);

describe('jumpHash', () => {
  it.each([1, 2, 3, 4, 8, 16])('spreads 100k keys evenly over %i slots (each within 5% of the mean)', (slots) => {
    const counts = new Array<number>(slots).fill(0);
    for (const k of keys) counts[jumpHash(hash32(k), slots)]!++;
    const mean = keys.length / slots;
    for (const c of counts) expect(Math.abs(c - mean) / mean).toBeLessThan(0.05);
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
    expect(Math.abs(moved - ideal) / ideal).toBeLessThan(0.05);
  });

  it('is deterministic and in range', () => {
    for (let h = 0; h < 1000; h++) {
      const b = jumpHash(h * 2654435761, 7);
      expect(b).toBe(jumpHash(h * 2654435761, 7));
      expect(b).toBeGreaterThanOrEqual(0);
      expect(b).toBeLessThan(7);
    }
  });

  it('rejects a bucket count below 1', () => {
    expect(() => jumpHash(1, 0)).toThrow(RangeError);
  });

  it('slotOf uses one slot without hashing', () => {
    expect(slotOf('anything', 1)).toBe(0);
  });
});
