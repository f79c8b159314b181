import type { ActorWrite, Journal } from '../persistence/journal.ts';
import type { Epoch, EpochHistory, Position } from './epoch.ts';
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
}

export function emptyPartitionMeta(): PartitionMeta {
  return { promised: { term: 0, node: 0 }, history: [], last: { epoch: { term: 0, node: 0 }, seq: 0 }, commit: 0, applied: 0, clean: true };
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
  /** Stored entries of `p` with seq > after, ascending, at most `limit` (persisted ones only). */
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
  /** The actor tables (snapshot, events, recorded replies per actor): what activation reads. */
  readonly actors: Journal;
  /** 'commit' or 'flush': what a resolved `persist` promises. */
  readonly durability: 'commit' | 'flush';
  close(): Promise<void>;
}
