import { troupeError, type TroupeError } from '../core/errors.ts';
import { compareEpoch, epochAt, sameEpoch, truncateHistory, type Epoch, type Position } from './epoch.ts';
import type { LogEntry } from './messages.ts';
import { baseOf, type PartitionMeta, type PartitionSnapshot } from './partition-store.ts';
import { partitionOf } from './partition-table.ts';

/**
 * The checks every `PartitionStore` makes the same way, so `MemoryPartitionStore` and
 * `LmdbPartitionStore` cannot drift apart on them (as `journal-checks.ts` does for journals).
 * Shape checks need nothing stored; `badAgainstStored` needs the partition's stored meta, and the
 * LMDB store runs it inside the write transaction, where that meta is exact.
 */

export interface PersistChange {
  truncateAfter?: number;
  entries?: readonly LogEntry[];
  meta: PartitionMeta;
}

/** `ERR_JOURNAL_WRITE` naming the malformed argument of `persist`, or undefined. */
export function badPersistShape(p: number, change: PersistChange): TroupeError | undefined {
  const bad = (message: string): TroupeError => troupeError('ERR_JOURNAL_WRITE', message, { p });
  if (!isCount(p)) return troupeError('ERR_JOURNAL_WRITE', 'p must be a non-negative integer', {});
  if (change === null || typeof change !== 'object') return bad('change must be an object');
  const { truncateAfter, entries } = change;
  if (truncateAfter !== undefined && !isCount(truncateAfter)) return bad('change.truncateAfter must be a non-negative integer');
  if (entries !== undefined) {
    if (!Array.isArray(entries)) return bad('change.entries must be an array');
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as LogEntry | null;
      const at = `change.entries[${i}]`;
      if (e === null || typeof e !== 'object') return bad(`${at} must be an object`);
      if (!isCount(e.seq) || e.seq < 1) return bad(`${at}.seq must be a positive integer`);
      if (i > 0 && e.seq !== entries[i - 1]!.seq + 1) return bad(`${at}.seq ${e.seq} does not follow ${entries[i - 1]!.seq}`);
      if (!isEpoch(e.epoch)) return bad(`${at}.epoch must have non-negative integer term and node`);
      // One primary per epoch writes one sequence, and epochs only grow along a log (I1, I4).
      if (i > 0 && compareEpoch(e.epoch, entries[i - 1]!.epoch) < 0) return bad(`${at}.epoch is below the epoch of the entry before it`);
      if (e.data !== undefined && !Array.isArray(e.data)) return bad(`${at}.data must be an array of actor writes`);
      if (e.start !== undefined) {
        const s = e.start as LogEntry['start'] | null;
        if (s === null || typeof s !== 'object' || !isEpoch(s!.epoch) || !Array.isArray(s!.sets)) {
          return bad(`${at}.start must have an epoch and sets`);
        }
        if (!sameEpoch(s!.epoch, e.epoch) || s!.startSeq !== e.seq) return bad(`${at}.start must name the entry's own epoch and seq`);
      }
    }
  }
  const m = change.meta as PartitionMeta | null;
  if (m === null || typeof m !== 'object') return bad('change.meta must be an object');
  if (!isEpoch(m.promised)) return bad('change.meta.promised must have non-negative integer term and node');
  if (!Array.isArray(m.history)) return bad('change.meta.history must be an array');
  if (m.last === null || typeof m.last !== 'object' || !isEpoch(m.last.epoch) || !isCount(m.last.seq)) {
    return bad('change.meta.last must have an epoch and a non-negative integer seq');
  }
  if (!isCount(m.commit)) return bad('change.meta.commit must be a non-negative integer');
  if (!isCount(m.applied)) return bad('change.meta.applied must be a non-negative integer');
  if (m.applied > m.commit) return bad(`change.meta.applied ${m.applied} is past change.meta.commit ${m.commit}`);
  if (typeof m.clean !== 'boolean') return bad('change.meta.clean must be a boolean');
  return undefined;
}

/**
 * `ERR_JOURNAL_WRITE` when the change does not fit what partition `p` holds: entries must
 * continue the log (after the truncation point, if any), no applied entry may be truncated (the
 * actor tables hold exactly the applied prefix), and `meta.last` must describe the resulting log.
 */
export function badAgainstStored(p: number, change: PersistChange, stored: PartitionMeta): TroupeError | undefined {
  const { truncateAfter, meta } = change;
  const entries = change.entries ?? [];
  if (truncateAfter !== undefined && truncateAfter < stored.applied) {
    return troupeError(
      'ERR_JOURNAL_WRITE',
      `change.truncateAfter ${truncateAfter} is below the applied point ${stored.applied} of partition ${p}: applied entries are in the actor tables and cannot be truncated`,
      { p, truncateAfter, applied: stored.applied },
    );
  }
  const base = truncateAfter === undefined ? stored.last.seq : Math.min(truncateAfter, stored.last.seq);
  const first = entries[0];
  if (first !== undefined) {
    if (first.seq !== base + 1) {
      return troupeError('ERR_JOURNAL_WRITE', `change.entries[0].seq ${first.seq} does not follow ${base}, the end of partition ${p}'s log`, {
        p,
        expected: base + 1,
        got: first.seq,
      });
    }
    const before: Epoch = base === stored.last.seq ? stored.last.epoch : epochAt(stored.history, base);
    if (compareEpoch(first.epoch, before) < 0) {
      return troupeError('ERR_JOURNAL_WRITE', `change.entries[0].epoch is below the epoch of entry ${base} of partition ${p}`, { p });
    }
  }
  const end = base + entries.length;
  if (meta.last.seq !== end) {
    return troupeError('ERR_JOURNAL_WRITE', `change.meta.last.seq ${meta.last.seq} is not ${end}, where partition ${p}'s log ends after this change`, {
      p,
      expected: end,
      got: meta.last.seq,
    });
  }
  const lastEntry = entries[entries.length - 1];
  if (lastEntry !== undefined && !sameEpoch(meta.last.epoch, lastEntry.epoch)) {
    return troupeError('ERR_JOURNAL_WRITE', `change.meta.last.epoch is not the epoch of the last entry of partition ${p}`, { p });
  }
  if (meta.commit < stored.applied) {
    return troupeError('ERR_JOURNAL_WRITE', `change.meta.commit ${meta.commit} is below the applied point ${stored.applied} of partition ${p}`, {
      p,
      commit: meta.commit,
      applied: stored.applied,
    });
  }
  return undefined;
}

/** `ERR_JOURNAL_WRITE` when `apply(p, upTo)` asks for entries the partition cannot apply yet, or undefined. */
export function badApplyTarget(p: number, upTo: number, stored: PartitionMeta): TroupeError | undefined {
  if (upTo > stored.last.seq) {
    return troupeError('ERR_JOURNAL_WRITE', `apply up to ${upTo} is past the end ${stored.last.seq} of partition ${p}'s log`, {
      p,
      upTo,
      last: stored.last.seq,
    });
  }
  return undefined;
}

/** `ERR_JOURNAL_WRITE` naming the bad argument of `apply` or `truncatePrefix`, or undefined. */
export function badApplyArgs(p: number, upTo: number): TroupeError | undefined {
  if (!isCount(p)) return troupeError('ERR_JOURNAL_WRITE', 'p must be a non-negative integer', {});
  if (!isCount(upTo)) return troupeError('ERR_JOURNAL_WRITE', 'upTo must be a non-negative integer', { p });
  return undefined;
}

/** `ERR_JOURNAL_READ` naming the bad argument of `entries`, or undefined. */
export function badEntriesRange(p: number, after: number, limit: number): TroupeError | undefined {
  if (!isCount(p)) return troupeError('ERR_JOURNAL_READ', 'p must be a non-negative integer', {});
  if (!isCount(after)) return troupeError('ERR_JOURNAL_READ', 'after must be a non-negative integer', { p, after });
  if (!isCount(limit) || limit < 1) return troupeError('ERR_JOURNAL_READ', 'limit must be a positive integer', { p, limit });
  return undefined;
}

/** `ERR_JOURNAL_READ` naming the bad argument of `actorKeys`, or undefined. */
export function badActorKeysArgs(kind: string, ps: ReadonlySet<number>, after: string | undefined, limit: number): TroupeError | undefined {
  if (typeof kind !== 'string' || kind === '') return troupeError('ERR_JOURNAL_READ', 'kind must be a non-empty string', {});
  if (!(ps instanceof Set)) return troupeError('ERR_JOURNAL_READ', 'ps must be a Set of partitions', { kind });
  if (after !== undefined && typeof after !== 'string') return troupeError('ERR_JOURNAL_READ', 'after must be a key (string) or undefined', { kind });
  if (!isCount(limit) || limit < 1) return troupeError('ERR_JOURNAL_READ', 'limit must be a positive integer', { kind, limit });
  return undefined;
}

/**
 * The stored meta after a persist: `applied` and `base` are the store's own, moved by `apply`,
 * `truncatePrefix` and `install` alone (see the stores).
 */
export function metaAfterPersist(meta: PartitionMeta, stored: PartitionMeta): PartitionMeta {
  const { base: _ignored, ...rest } = meta;
  const next: PartitionMeta = rest.applied === stored.applied ? rest : { ...rest, applied: stored.applied };
  return stored.base === undefined ? next : { ...next, base: stored.base };
}

/**
 * `entries(p, after)` below the log's base: those entries were truncated (every member held them,
 * the actor tables have them). ERR_JOURNAL_READ with `truncated: true`: the caller sends a
 * partition snapshot instead (see `isTruncatedRead`).
 */
export function badEntriesAfterBase(p: number, after: number, stored: PartitionMeta): TroupeError | undefined {
  const base = baseOf(stored).seq;
  if (after >= base) return undefined;
  return troupeError('ERR_JOURNAL_READ', `entries after ${after} of partition ${p} were truncated: its log starts after ${base} (send a snapshot)`, {
    p,
    after,
    base,
    truncated: true,
  });
}

/** True for the error `entries` rejects with when the entries asked for were truncated. */
export function isTruncatedRead(e: unknown): boolean {
  const x = e as { code?: unknown; details?: { truncated?: unknown } } | null;
  return x?.code === 'ERR_JOURNAL_READ' && x.details?.truncated === true;
}

/** `ERR_JOURNAL_WRITE` when `truncatePrefix(p, upTo)` would delete entries not yet applied (the actor tables lack them). */
export function badTruncateTarget(p: number, upTo: number, stored: PartitionMeta): TroupeError | undefined {
  if (upTo <= stored.applied) return undefined;
  return troupeError(
    'ERR_JOURNAL_WRITE',
    `truncatePrefix upTo ${upTo} is past the applied point ${stored.applied} of partition ${p}: only applied entries may be truncated`,
    { p, upTo, applied: stored.applied },
  );
}

/** The base after truncating through `upTo` (the epoch comes from the history, which is kept whole). */
export function baseAt(stored: PartitionMeta, upTo: number): Position {
  const base = baseOf(stored);
  if (upTo <= base.seq) return base;
  return { epoch: upTo === stored.last.seq ? stored.last.epoch : epochAt(stored.history, upTo), seq: upTo };
}

/** `ERR_JOURNAL_WRITE` naming the malformed part of `install(p, snap, meta)`, or undefined. */
export function badInstall(p: number, snap: PartitionSnapshot, meta: PartitionMeta): TroupeError | undefined {
  const bad = (message: string): TroupeError => troupeError('ERR_JOURNAL_WRITE', message, { p });
  if (!isCount(p)) return troupeError('ERR_JOURNAL_WRITE', 'p must be a non-negative integer', {});
  if (snap === null || typeof snap !== 'object') return bad('snap must be an object');
  const b = snap.base as Position | null;
  if (b === null || typeof b !== 'object' || !isEpoch(b.epoch) || !isCount(b.seq)) return bad('snap.base must have an epoch and a non-negative integer seq');
  if (!Array.isArray(snap.history)) return bad('snap.history must be an array');
  if (!Array.isArray(snap.actors)) return bad('snap.actors must be an array');
  for (let i = 0; i < snap.actors.length; i++) {
    const a = snap.actors[i];
    if (a === null || typeof a !== 'object' || typeof a.kind !== 'string' || typeof a.key !== 'string') return bad(`snap.actors[${i}] must have a kind and a key`);
    if (!isCount(a.lastSeq) || !Array.isArray(a.events) || !Array.isArray(a.replies)) {
      return bad(`snap.actors[${i}] must have a lastSeq, an events array and a replies array`);
    }
  }
  return badPersistShape(p, { meta: { ...meta, commit: Math.max(meta.commit, b.seq), applied: 0 } });
}

/** The `ERR_JOURNAL_WRITE` an `apply` rejects with when an entry's actor write fails its checks. */
export function applyFailed(p: number, seq: number, cause: unknown): TroupeError {
  const c = cause as { code?: unknown; message?: unknown } | null;
  const why = typeof c?.message === 'string' ? c.message : String(cause);
  return troupeError('ERR_JOURNAL_WRITE', `applying entry ${seq} of partition ${p} failed: ${why}`, {
    p,
    seq,
    ...(typeof c?.code === 'string' ? { cause: c.code } : {}),
  });
}

function isEpoch(e: unknown): e is Epoch {
  return e !== null && typeof e === 'object' && isCount((e as Epoch).term) && isCount((e as Epoch).node);
}

function isCount(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0;
}

/** `ERR_JOURNAL_WRITE` when an actor of `snap` belongs to another partition than `p` (of `partitions`), or undefined. */
export function badForeignActor(p: number, snap: PartitionSnapshot, partitions: number): TroupeError | undefined {
  const i = snap.actors.findIndex((a) => partitionOf(a.key, partitions) !== p);
  return i < 0 ? undefined : troupeError('ERR_JOURNAL_WRITE', `snap.actors[${i}] belongs to another partition than ${p}`, { p });
}

/** A partition's meta once `snap` is installed over it: the log starts (empty) at the snapshot's base, applied there. */
export function metaAfterInstall(meta: PartitionMeta, snap: PartitionSnapshot): PartitionMeta {
  const b = snap.base;
  return { ...meta, history: truncateHistory(snap.history, b.seq), last: b, base: b, applied: b.seq, commit: Math.max(meta.commit, b.seq) };
}
