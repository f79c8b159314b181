import { troupeError, type TroupeError } from '../core/errors.ts';
import { compareEpoch, type Epoch } from '../replication/epoch.ts';
import type { ActorWrite } from './journal.ts';

/**
 * The checks every journal makes the same way, so `MemoryJournal` and `LmdbJournal` cannot
 * drift apart on them: the epoch fence (a write's third outcome) and the `readFrom` arguments.
 */

/** Why `write.epoch` is malformed, or undefined when it is absent or well formed. */
export function badEpoch(w: ActorWrite): string | undefined {
  const e = w.epoch;
  if (e === undefined) return undefined;
  if (e === null || typeof e !== 'object' || !isCount(e.term) || !isCount(e.node)) {
    return 'write.epoch must have non-negative integer term and node';
  }
  return undefined;
}

/**
 * `ERR_STALE_EPOCH` when the write comes from an epoch below the one the actor already holds:
 * a newer primary took the actor over, so nothing of this write may land (Kafka's leader-epoch
 * fence; REPLICATION.md I1/I3). A write without an epoch is single-node and never fenced.
 */
export function fenced(w: ActorWrite, stored: Epoch): TroupeError | undefined {
  if (w.epoch === undefined || compareEpoch(w.epoch, stored) >= 0) return undefined;
  return troupeError(
    'ERR_STALE_EPOCH',
    `write for ${w.kind}/${w.key} from epoch (${w.epoch.term},${w.epoch.node}) is below the actor's epoch (${stored.term},${stored.node})`,
    { kind: w.kind, key: w.key, epoch: { term: w.epoch.term, node: w.epoch.node }, stored: { term: stored.term, node: stored.node } },
  );
}

/** The epoch an actor holds after an accepted write: the write's own when it is higher. */
export function epochAfter(w: ActorWrite, stored: Epoch): Epoch {
  return w.epoch !== undefined && compareEpoch(w.epoch, stored) > 0 ? { term: w.epoch.term, node: w.epoch.node } : stored;
}

/** `ERR_JOURNAL_READ` naming the bad `readFrom` argument, or undefined. */
export function badReadRange(kind: string, key: string, afterSeq: number, limit: number): TroupeError | undefined {
  if (!isCount(afterSeq)) return troupeError('ERR_JOURNAL_READ', 'afterSeq must be a non-negative integer', { kind, key, afterSeq });
  if (!isCount(limit) || limit < 1) return troupeError('ERR_JOURNAL_READ', 'limit must be a positive integer', { kind, key, limit });
  return undefined;
}

function isCount(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0;
}

/**
 * Why `write.tombstone` or `write.due` is malformed, or undefined. A tombstone must name one of
 * the write's own events (the journal deletes what lies under it), and a snapshot in the same
 * write may not lie under it either.
 */
export function badTombstone(w: ActorWrite): string | undefined {
  if (w.due !== undefined && w.due !== null && !isCount(w.due)) return 'write.due must be null or a non-negative integer (wall ms)';
  const t = w.tombstone;
  if (t === undefined) return undefined;
  const first = w.events[0]?.seq;
  if (!isCount(t) || first === undefined || t < first || t > first + w.events.length - 1)
    return `write.tombstone must be the seq of one of the write's events (got ${String(t)})`;
  if (w.snapshot !== undefined && w.snapshot.seq < t) return `write.snapshot seq ${w.snapshot.seq} is under the tombstone ${t}`;
  return undefined;
}
