import type { ErrorRecord } from '../core/errors.ts';

/**
 * The event journal: the only way actor state outlives the memory of a thread. An actor's
 * history is a snapshot (optional) plus the events after it; replaying `apply` over them
 * rebuilds the state. Implementations: `MemoryJournal` (tests, the default of a node without
 * a data directory) and `LmdbJournal` (durable).
 *
 * Contract (tested against every implementation in test/persistence/journal-contract.test.ts):
 * - `write` resolves only when the write is durable by the journal's durability setting, and
 *   rejects with a TroupeError (`ERR_JOURNAL_WRITE`, `ERR_STORAGE_FULL`) otherwise; a rejected
 *   write is not visible to a later `read` (all of it or none of it).
 * - writes for one actor are applied in call order; `events[i].seq` continue the actor's log
 *   without gaps (a gap or overlap rejects with `ERR_JOURNAL_WRITE`).
 * - `read` returns the latest snapshot and every event after it, ascending, and the recorded
 *   replies of the most recent message ids (bounded per actor).
 */
export interface Journal {
  write(w: ActorWrite): Promise<void>;
  /**
   * Several actors' writes at once (one transaction where the store has them). Never rejects:
   * resolves with one entry per write, `null` when that write is durable, else its error (a
   * failed write is not applied; the others are independent of it). Optional: without it the
   * caller uses `write` for each.
   */
  writeMany?(writes: readonly ActorWrite[]): Promise<Array<Error | null>>;
  read(kind: string, key: string): Promise<ActorHistory>;
  close(): Promise<void>;
}

export interface EventRecord {
  /** Position in the actor's log, starting at 1. */
  seq: number;
  /** Schema version of `event`; `defineActor({ upcasters })` lifts old versions on read. */
  v: number;
  event: unknown;
}

export interface SnapshotRecord {
  /** The state after applying events 1..seq. */
  seq: number;
  v: number;
  state: unknown;
}

/** The recorded outcome of a message id, so a retry returns it instead of applying twice. */
export interface RecordedReply {
  msgId: string;
  ok: boolean;
  value?: unknown;
  error?: ErrorRecord;
  /**
   * `messageFingerprint(command, input)` of the message that recorded it: a retry must match
   * it, else the id was reused for another message (ERR_IDEMPOTENCY_MISMATCH). Absent in
   * records written before fingerprints existed; those answer any retry, as they always did.
   */
  fingerprint?: string;
}

export interface ActorWrite {
  kind: string;
  key: string;
  events: EventRecord[];
  snapshot?: SnapshotRecord;
  replies?: RecordedReply[];
  /**
   * The actor's state after these events (a reference; states are immutable). A hint a journal
   * may keep instead of the events, as if it were a snapshot: `MemoryJournal` does, so it holds
   * one state per actor rather than a growing list of events. Durable journals ignore it.
   */
  latest?: SnapshotRecord;
}

export interface ActorHistory {
  snapshot?: SnapshotRecord;
  events: EventRecord[];
  replies: RecordedReply[];
}

/** Serializable journal choice, sent to worker threads which build their own instance. */
export type JournalConfig =
  | { type: 'memory' }
  | {
      type: 'lmdb';
      /** Directory of the node's LMDB environment. */
      path: string;
      /** 'flush': a write is durable when on disk (lmdb `flushed`); 'commit': when committed. */
      durability?: 'flush' | 'commit';
      /** Recorded replies kept per actor for retry dedupe. */
      recentReplies?: number;
    };
