import { describe, expect, it } from 'vitest';
import {
  compareEpoch,
  comparePosition,
  endOfEpoch,
  epochAt,
  everySetHas,
  fenceQuorum,
  matchPoint,
  truncateHistory,
  type Epoch,
  type EpochHistory,
} from '../../src/replication/epoch.ts';

const e = (term: number, node: number): Epoch => ({ term, node });
const set = { members: [1, 2, 3], w: 2 };
// Log A: epoch (1,1) wrote 1..10, epoch (2,2) wrote 11..20.
const A: EpochHistory = [
  { epoch: e(1, 1), startSeq: 1, sets: [set] },
  { epoch: e(2, 2), startSeq: 11, sets: [set] },
];
// Log B: the same epoch (1,1) up to 14 (a deposed primary's tail 11..14), then nothing.
const B: EpochHistory = [{ epoch: e(1, 1), startSeq: 1, sets: [set] }];

describe('epochs and positions', () => {
  it.each([
    ['higher term wins', e(2, 1), e(1, 9), 1],
    ['same term: higher node wins', e(3, 2), e(3, 1), 1],
    ['equal', e(3, 2), e(3, 2), 0],
    ['lower term loses', e(1, 9), e(2, 1), -1],
  ])('compareEpoch: %s', (_, a, b, sign) => {
    expect(Math.sign(compareEpoch(a, b))).toBe(sign);
  });

  it.each([
    ['a later epoch beats a longer log', { epoch: e(2, 1), seq: 3 }, { epoch: e(1, 1), seq: 99 }, 1],
    ['same epoch: the longer log', { epoch: e(2, 1), seq: 5 }, { epoch: e(2, 1), seq: 4 }, 1],
    ['equal', { epoch: e(2, 1), seq: 5 }, { epoch: e(2, 1), seq: 5 }, 0],
  ])('comparePosition: %s', (_, a, b, sign) => {
    expect(Math.sign(comparePosition(a, b))).toBe(sign);
  });

  it.each([
    [0, e(0, 0)],
    [1, e(1, 1)],
    [10, e(1, 1)],
    [11, e(2, 2)],
    [500, e(2, 2)],
  ])('epochAt(A, %i)', (seq, epoch) => {
    expect(epochAt(A, seq)).toEqual(epoch);
  });

  it.each([
    ['an epoch followed by another ends before it', A, 20, e(1, 1), 10],
    ['the last epoch ends at the last entry', A, 20, e(2, 2), 20],
    ['an epoch the log never had', A, 20, e(3, 3), -1],
  ])('endOfEpoch: %s', (_, h, last, epoch, end) => {
    expect(endOfEpoch(h, last, epoch)).toBe(end);
  });

  it.each([
    // B's tail 11..14 of epoch (1,1) diverges from A's 11.. of epoch (2,2): they share 1..10.
    ['a deposed tail is cut at its epoch end, not at a watermark', A, 20, B, 14, 10],
    ['symmetric', B, 14, A, 20, 10],
    ['a shorter log of the same epoch is a prefix', B, 4, B, 14, 4],
    ['nothing in common', A, 20, [{ epoch: e(5, 5), startSeq: 1, sets: [set] }], 3, 0],
    ['an empty log', [], 0, A, 20, 0],
  ])('matchPoint: %s', (_, a, aLast, b, bLast, point) => {
    expect(matchPoint(a as EpochHistory, aLast as number, b as EpochHistory, bLast as number)).toBe(point);
  });

  it('truncateHistory drops epochs that start past the cut', () => {
    expect(truncateHistory(A, 10)).toEqual([A[0]]);
    expect(truncateHistory(A, 11)).toBe(A);
    expect(truncateHistory(A, 0)).toEqual([]);
  });

  it.each([
    [{ members: [1, 2, 3], w: 2 }, 2],
    [{ members: [1, 2, 3], w: 3 }, 1],
    [{ members: [1, 2, 3], w: 1 }, 3],
    [{ members: [1, 2], w: 2 }, 1],
  ])('fenceQuorum(%o) = %i: no W-set can form without one of them', (s, q) => {
    expect(fenceQuorum(s)).toBe(q);
  });

  it('everySetHas needs the count in every set (joint sets)', () => {
    const joint = [
      { members: [1, 2, 3], w: 2 },
      { members: [2, 3, 4], w: 2 },
    ];
    expect(
      everySetHas(
        joint,
        (s) => s.w,
        (n) => n === 1 || n === 2,
      ),
    ).toBe(false); // {2,3,4} has only 2
    expect(
      everySetHas(
        joint,
        (s) => s.w,
        (n) => n === 2 || n === 3,
      ),
    ).toBe(true);
  });
});
