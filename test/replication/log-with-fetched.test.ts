/**
 * A candidate's log after its fetch (replication-driver.ts, `logWithFetched`): own entries up to
 * the match point stay, fetched ones follow. When nothing is fetched but the own log ran past the
 * match point (a divergent tail, lower by epoch than the source's shorter log), the log ends at
 * the match point — 5-node simulator seed 5098 had it keep the old end, which the store refused
 * on every fence from then on.
 */
import { describe, expect, it } from 'vitest';
import type { Epoch } from '../../src/replication/epoch.ts';
import { createReplicaState } from '../../src/replication/replica.ts';
import { logWithFetched } from '../../src/replication/replication-driver.ts';

const e = (term: number, node: number): Epoch => ({ term, node });
const S = [{ members: [1, 2, 3], w: 2 }];
/** Own log: epoch (1,1) from seq 1, epoch (2,1) from seq 10, ending at 14 in (2,1). */
const own = createReplicaState(7, {
  promised: e(2, 1),
  last: { epoch: e(2, 1), seq: 14 },
  history: [
    { epoch: e(1, 1), startSeq: 1, sets: S },
    { epoch: e(2, 1), startSeq: 10, sets: S },
  ],
  commit: 12,
});

describe('logWithFetched', () => {
  it.each([
    ['nothing fetched, own tail past the match point: the log ends at the match point', 13, [], { epoch: e(2, 1), seq: 13 }, 2],
    ['nothing fetched, match point in an earlier epoch: that epoch, and the later start goes', 9, [], { epoch: e(1, 1), seq: 9 }, 1],
    ['nothing fetched, nothing to cut: the log end stays', 14, [], { epoch: e(2, 1), seq: 14 }, 2],
    ['fetched entries of a later epoch: the log ends at the last one', 12, [{ seq: 13, epoch: e(3, 2), start: { epoch: e(3, 2), startSeq: 13, sets: S } }, { seq: 14, epoch: e(3, 2) }], { epoch: e(3, 2), seq: 14 }, 3],
  ] as const)('%s', (_, after, got, last, epochs) => {
    const r = logWithFetched(own, after, got);
    expect(r.last).toEqual(last);
    expect(r.history).toHaveLength(epochs);
  });
});
