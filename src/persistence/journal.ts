import type { ErrorRecord } from '../core/errors.ts';
import type { Epoch } from '../replication/epoch.ts';

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
 * - `read` returns the latest snapshot and every event after it, ascending, the recorded
 *   replies of the most recent message ids (bounded per actor), and the actor's epoch.
 * - `readFrom` returns the stored events past a seq, whether or not a snapshot covers them
 *   (unless the journal compacts on snapshot): what a replica catching up reads.
 * - A write has three outcomes: durable (resolves), failed (rejects with a storage error), or
 *   fenced: its `epoch` is below the one stored for the actor, so a newer primary owns the
 *   actor; it rejects with `ERR_STALE_EPOCH` and nothing of it is applied. A write without an
 *   epoch is never fenced and leaves the stored epoch as it is; one with a higher epoch raises it.
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
  /**
   * The actor's stored events with `seq > afterSeq`, ascending, at most `limit` (a positive
   * integer); `[]` past the end. Rejects with `ERR_JOURNAL_READ` on a bad argument.
   *
   * @example
   *   let after = 0;
   *   for (let page; (page = await journal.readFrom('cart', 'c1', after, 500)).length > 0; ) {
   *     ship(page);
   *     after = page[page.length - 1].seq;
   *   }
   */
  readFrom(kind: string, key: string, afterSeq: number, limit: number): Promise<EventRecord[]>;
  /**
   * Actors whose earliest pending reminder (`ActorWrite.due`) is at or before `before` (wall
   * ms), ascending by due, at most `limit`: what a node wakes so their reminders fire
   * (docs/sessions-lifecycle.md). Optional: a journal without it (a worker's port to a
   * replicated node) leaves the waking to the node.
   */
  dueActors?(before: number, limit: number): Promise<DueActor[]>;
  close(): Promise<void>;
}

/** An actor with a reminder due (see `Journal.dueActors`). */
export interface DueActor {
  kind: string;
  key: string;
  due: number;
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
   * The epoch of the primary that wrote this. Below the actor's stored epoch the write is
   * fenced (`ERR_STALE_EPOCH`, nothing applied); above it, it becomes the stored epoch.
   * Absent: not fenced, the stored epoch stays (single-node writes).
   */
  epoch?: Epoch;
  /**
   * The seq of a tombstone among `events` (a deleted session, src/actors/system-records.ts):
   * the actor's log starts over there. Everything stored for the actor below that seq (events,
   * the snapshot) is deleted in the same transaction, and events of this write below it are not
   * stored; the head (last seq, epoch) and the recorded replies stay, so seqs continue and a
   * retried message id still gets its reply instead of applying to the fresh session.
   */
  tombstone?: number;
  /**
   * The actor's earliest pending reminder after this write, wall ms; `null`: none is pending;
   * absent: unchanged. Kept in an index (`dueActors`) that replicates with the write.
   */
  due?: number | null;
}

export interface ActorHistory {
  snapshot?: SnapshotRecord;
  events: EventRecord[];
  replies: RecordedReply[];
  /** The highest epoch a write for this actor carried; absent when none did (read it as ZERO_EPOCH). */
  epoch?: Epoch;
}

/** Serializable journal choice, sent to worker threads which build their own instance. */
export type JournalConfig =
  | { type: 'memory' }
  /**
   * The node's main thread serves the journal (replicated clusters): workers send their reads
   * and writes over their port to the `journalService` given to the `Supervisor` (or to
   * `InProcessActors`, whose hosts call it directly). See src/supervisor/port-journal.ts.
   */
  | { type: 'node' }
  | {
      type: 'lmdb';
      /** Directory of the node's LMDB environment. */
      path: string;
      /** 'flush': a write is durable when on disk (lmdb `flushed`); 'commit': when committed. */
      durability?: 'flush' | 'commit';
      /** Recorded replies kept per actor for retry dedupe. */
      recentReplies?: number;
    };
