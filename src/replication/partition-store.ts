import type { ActorWrite, DueActor, EventRecord, Journal, RecordedReply, SnapshotRecord } from '../persistence/journal.ts';
import { EMPTY_POSITION, type Epoch, type EpochHistory, type Position } from './epoch.ts';
import type { LogEntry } from './messages.ts';

/**
 * What a node keeps of one partition's replication, besides the log entries themselves.
 * Partitions never written have no record (read them as `emptyPartitionMeta()`).
 */
export interface PartitionMeta {
  /** The highest epoch this node promised (it refuses appends and prepares below it). */
  promised: Epoch;
  /** Epoch history of the log: every epoch's start entry, ascending by startSeq. */
  history: EpochHistory;
  /** Where the log ends. */
  last: Position;
  /** Highest seq known committed on W replicas (may lag after a restart: that is safe). */
  commit: number;
  /** Entries ≤ applied have been applied to the actor tables. Always ≤ commit. */
  applied: number;
  /** False while this store may have lost acknowledged entries (REPLICATION.md, Unclean replicas). */
  clean: boolean;
  /**
   * Where the log starts: the last entry deleted by `truncatePrefix` (or installed by a snapshot);
   * the log holds base.seq + 1 .. last. Absent: seq 0 (nothing truncated; records written before
   * truncation existed). Like `applied`, the store owns it: `persist` keeps the stored value.
   */
  base?: Position;
}

/** The first `limit` of `keys` in ascending order (`actorKeys`' page). */
export function pageOf(keys: string[], limit: number): string[] {
  return keys.sort().slice(0, Math.max(0, limit));
}

export function emptyPartitionMeta(): PartitionMeta {
  return { promised: { term: 0, node: 0 }, history: [], last: { epoch: { term: 0, node: 0 }, seq: 0 }, commit: 0, applied: 0, clean: true };
}

/** Where a partition's log starts (seq 0 when nothing was ever truncated). */
export function baseOf(meta: PartitionMeta): Position {
  return meta.base ?? EMPTY_POSITION;
}

/**
 * One actor as the actor tables hold it: what `Journal.read` returns (the latest snapshot, the
 * events after it, the most recent recorded replies, the epoch) plus where its log ends. A
 * partition snapshot carries one per actor, recorded replies included (I6 across truncation).
 */
export interface ActorImage {
  kind: string;
  key: string;
  /** The seq of the actor's last event (or of its snapshot when no event follows it). */
  lastSeq: number;
  snapshot?: SnapshotRecord;
  events: EventRecord[];
  replies: RecordedReply[];
  epoch?: Epoch;
  /** The actor's earliest pending reminder, wall ms (`ActorWrite.due`): the index of actors to wake travels with the image. */
  due?: number;
}

/**
 * A partition's applied state at one log position, for a member whose log is behind the base of
 * the log it must catch up from: the actor tables' rows of the partition's actors, the position
 * they hold (`base`: the applied point, so every entry ≤ base.seq is in them), and the epoch
 * history (kept whole: matching logs by epoch needs it, and it is small).
 */
export interface InstallResult {
  /** False: the store had applied through the snapshot's base already, and nothing changed. */
  installed: boolean;
  applied: number;
}

export interface PartitionSnapshot {
  base: Position;
  history: EpochHistory;
  actors: ActorImage[];
}

/**
 * The data of a log entry that carries actor writes: one turn batch's `ActorWrite`s for actors
 * of this partition. A start entry (it opens an epoch) carries `start` and no data.
 */
export type EntryData = readonly ActorWrite[];

/**
 * A node's replicated partition logs and the actor tables built from them (the main thread
 * owns it; worker threads reach it through the node's journal service).
 *
 * The rule that keeps truncation simple: **the actor tables hold exactly the applied prefix of
 * every partition's log, and only committed entries are applied.** A divergent tail (a deposed
 * primary's unacknowledged entries) is therefore only ever in the log, never in the actor tables,
 * and truncating it touches the log alone.
 *
 * Ordering: calls for one partition take effect in call order (a `persist` issued after another
 * commits after it), so the driver never awaits one write before queuing the next.
 *
 * Implementations: `MemoryPartitionStore` (tests, nodes without a data directory) and
 * `LmdbPartitionStore` (the `plog` and `pmeta` databases of the node's environment, beside the
 * actor tables, so `apply` is one LMDB transaction).
 */
export interface PartitionStore {
  /** Every partition with a stored record, as it was at the last durable `persist`/`apply`. */
  loadAll(): Promise<Map<number, PartitionMeta>>;
  /**
   * One atomic change of partition `p`: drop entries with seq > `truncateAfter` (if given),
   * then append `entries` (contiguous, continuing the log), then store `meta`. Resolves when
   * durable by the store's durability ('commit': committed; 'flush': on disk). Rejects with a
   * storage error (ERR_JOURNAL_WRITE, ERR_STORAGE_FULL) and then nothing of it is applied.
   */
  persist(p: number, change: { truncateAfter?: number; entries?: readonly LogEntry[]; meta: PartitionMeta }): Promise<void>;
  /**
   * Stored entries of `p` with seq > after, ascending, at most `limit` (persisted ones only).
   * With `after` below the base the entries are gone: rejects with ERR_JOURNAL_READ whose
   * details say `truncated: true` and give `base` (see `isTruncatedRead`): send a snapshot.
   */
  entries(p: number, after: number, limit: number): Promise<LogEntry[]>;
  /**
   * Applies the actor writes of entries (applied, upTo] of `p` to the actor tables and records
   * `applied = upTo`, in one transaction. The caller passes only a committed `upTo` (only
   * committed entries ever reach the actor tables: that keeps truncation log-only); the stored
   * commit point rises to it. Idempotent: entries at or below the stored `applied` are skipped,
   * so a crash between two applies never applies one twice. Resolves with the new applied point.
   * Entry epochs reach the actor tables (`ActorWrite.epoch`). `persist` never moves `applied`:
   * the store owns it.
   */
  apply(p: number, upTo: number): Promise<number>;
  /**
   * Deletes the log's entries with seq ≤ `upTo` and records `base = (epoch of entry upTo, upTo)`
   * (I5: the caller passes a point every member of the current set holds). Only applied entries
   * may go (`upTo` ≤ applied, else ERR_JOURNAL_WRITE): the actor tables hold them. At or below
   * the stored base it changes nothing. Resolves with the base afterwards. Not on the hot path:
   * the driver calls it in batches.
   */
  truncatePrefix(p: number, upTo: number): Promise<Position>;
  /**
   * The partition's applied state, read in one consistent view after every call queued before
   * it: base = the applied point. Lists the actors of the actor tables whose key falls in
   * partition `p` (of `partitions`), so it scans them: rare (a member far behind), keep it so.
   */
  snapshot(p: number): Promise<PartitionSnapshot>;
  /**
   * Replaces partition `p` by `snap` in one transaction: every actor of the partition in the
   * actor tables is removed and `snap.actors` written, the log emptied, and the meta becomes
   * `meta` with base = last = applied = snap.base (commit at least that). Skipped when the store
   * already applied through snap.base.seq (a late or duplicated transfer must not move it back).
   * Resolves with whether it was installed and the applied point afterwards (≥ snap.base.seq).
   */
  install(p: number, snap: PartitionSnapshot, meta: PartitionMeta): Promise<InstallResult>;
  /**
   * Keys of actor kind `kind` in the actor tables whose partition (of `partitions`) is in `ps`,
   * ascending, those after `after` only, at most `limit`: what a new primary activates at once
   * for kinds defined with `remember: true`. Scans the actor tables' keys, so it is paged and
   * off the hot path (once per partition a node comes to lead).
   */
  actorKeys(kind: string, ps: ReadonlySet<number>, after: string | undefined, limit: number): Promise<string[]>;
  /**
   * Actors of partitions in `ps` whose earliest pending reminder is due at or before `before`
   * (wall ms), ascending by due, at most `limit`: what the node wakes so their reminders fire on
   * the primary (src/node/reminders.ts). An index read, not a scan of the actor tables.
   */
  dueActors(ps: ReadonlySet<number>, before: number, limit: number): Promise<DueActor[]>;
  /** Partition count the store maps keys with (`partitionOf(key, partitions)`), as the driver does. */
  readonly partitions: number;
  /** The actor tables (snapshot, events, recorded replies per actor): what activation reads. */
  readonly actors: Journal;
  /** 'commit' or 'flush': what a resolved `persist` promises. */
  readonly durability: 'commit' | 'flush';
  /**
   * Resolves once everything committed before the call is on disk (a 'flush' store: at once).
   * The driver calls it when a partition's only copy is its own: with no replica to survive an
   * OS crash, `replicated` falls back to `flush` (REPLICATION.md).
   */
  sync(): Promise<void>;
  /**
   * The OS boot the store's last commit was made under (REPLICATION.md, Unclean replicas): a
   * store that commits without fsync may have lost its last commits when the boot changed.
   * `recordBoot` stores the current one, durably.
   */
  lastBoot(): string | undefined;
  recordBoot(bootId: string): Promise<void>;
  /**
   * Member id → the highest incarnation this node has known that id at, as `recordLives` last
   * stored it (empty for a new store). Membership starts from it, so a node that restarts still
   * tells a replaced host under an old id that its id lived before (join-ack's `earlier`).
   */
  knownLives(): ReadonlyMap<number, number>;
  recordLives(lives: ReadonlyMap<number, number>): Promise<void>;
  /**
   * A small real write and its removal, nothing else changed: resolves once the store takes
   * writes again, rejects as `persist` would (ERR_STORAGE_FULL on a full disk). A node whose disk
   * filled up asks it before it leads partitions again (src/node/storage-guard.ts).
   */
  probeWrite(): Promise<void>;
  close(): Promise<void>;
}
