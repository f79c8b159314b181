/**
 * The I1 checker over nodes' "primary in epoch" lines (test/helpers/history.ts), table-driven:
 * what it must flag and what it must let through — notably a late claim whose start entry was
 * written before the higher epoch was claimed (simulator seed 3248: a node whose traffic was held
 * learns late that its start entry committed).
 */
import { describe, expect, it } from 'vitest';
import { checkEpochClaims, type EpochClaim } from './history.ts';

const claim = (at: number, node: number, term: number, writtenAt?: number, p = 7): EpochClaim => ({
  at,
  node,
  p,
  epoch: { term, node },
  startSeq: 1,
  ...(writtenAt !== undefined && { writtenAt }),
});

describe('checkEpochClaims (I1)', () => {
  it.each<[string, EpochClaim[], RegExp | null]>([
    ['increasing epochs across nodes', [claim(10, 1, 1), claim(20, 2, 2), claim(30, 1, 3)], null],
    ['the same epoch claimed twice', [claim(10, 1, 1), { ...claim(20, 2, 1), epoch: { term: 1, node: 1 } }], /claimed by node 1 and again by node 2|names node 1/],
    ['an epoch naming another node', [{ ...claim(10, 1, 1), epoch: { term: 1, node: 2 } }], /which names node 2/],
    ['one node going back in its own epochs', [claim(10, 1, 2), claim(20, 1, 1)], /node 1 claimed \(1,1\) after \(2,1\)/],
    ['a lower epoch claimed later, write time unknown', [claim(10, 2, 2), claim(20, 1, 1)], /node 1 claimed \(1,1\) \(its start entry written at an unknown time\) after node 2/],
    ['a lower epoch claimed later, its start entry written after the higher claim', [claim(10, 2, 2), claim(20, 1, 1, 15)], /written at 15\) after node 2 claimed \(2,2\) at 10/],
    ['a lower epoch claimed later, its start entry written before the higher claim (a late acknowledgement)', [claim(10, 2, 2), claim(20, 1, 1, 5)], null],
    ['other partitions do not order each other', [claim(10, 2, 2, undefined, 1), claim(20, 1, 1, undefined, 2)], null],
  ])('%s', (_, claims, flagged) => {
    const out = checkEpochClaims(claims);
    if (flagged === null) expect(out).toEqual([]);
    else expect(out.join('\n')).toMatch(flagged);
  });

  it('crossNode: false checks only each node’s own order and uniqueness', () => {
    expect(checkEpochClaims([claim(10, 2, 2), claim(20, 1, 1)], { crossNode: false })).toEqual([]);
    expect(checkEpochClaims([claim(10, 1, 2), claim(20, 1, 1)], { crossNode: false })).toHaveLength(1);
  });
});
