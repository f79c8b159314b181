import { invalidOption, troupeError, type ErrorRecord, type TroupeError } from '../core/errors.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { ActorHistory, ActorWrite, DueActor, EventRecord, Journal, JournalConfig, RecordedReply, SnapshotRecord } from './journal.ts';
import { acquireEnv, flushedNow, releaseEnv, type LmdbEnv } from './lmdb-env.ts';
import { commitCause, isCommitFailure, toReadError, toWriteError } from './storage-errors.ts';
import { backupEnv, type BackupOptions } from './backup.ts';
import { badEpoch, badReadRange, badTombstone, epochAfter, fenced } from './journal-checks.ts';
import { ZERO_EPOCH, type Epoch } from '../replication/epoch.ts';
import type { ActorImage } from '../replication/partition-store.ts';

export type LmdbJournalConfig = Extract<JournalConfig, { type: 'lmdb' }>;

/** What an `LmdbJournal` adds to its serializable `JournalConfig`; each default says why. */
export interface LmdbJournalOptions {
  /**
   * Delete the events a snapshot covers (seq ≤ snapshot.seq) in the snapshot's own
   * transaction. Default false: replication ships the log and truncates a prefix only once
   * every replica holds it, so deleting must be the caller's explicit choice.
   */
  compactOnSnapshot?: boolean;
  /** Initial LMDB map size in bytes; lmdb-js grows the map on demand, see `LmdbEnvOptions`. */
  mapSize?: number;
  /** Milliseconds `close()` waits for lmdb-js to finish; 10 s (a commit plus an fsync under load). */
  closeTimeoutMs?: number;
  clock?: Clock;
  logger?: Logger;
  /**
   * TEST HOOK: given lmdb-js's `flushed` promise of a 'flush' write's transaction, returns what
   * the write waits for before it resolves. Tests wrap it to see that the acknowledgement
   * follows the flush, or to hold the flush. Default: the promise itself.
   */
  awaitFlush?: (flushed: Promise<void>) => Promise<void>;
}

/** The lmdb JournalConfig with its defaults applied. */
export interface ResolvedLmdbConfig {
  path: string;
  /** 'flush': acknowledged once on disk (default); 'commit': once committed (survives a process crash, not a power cut). */
  durability: 'flush' | 'commit';
  /** Recorded replies kept per actor: 128, enough to dedupe retries of a long pipelined burst. */
  recentReplies: number;
}

export const lmdbJournalDefaults = {
  durability: 'flush', // an ack means the write survives power loss
  recentReplies: 128, // retries arrive within seconds; 128 covers a full mailbox turn budget many times
  closeTimeoutMs: 10_000, // a slow fsync under load, with margin
} as const;

/** Validates an lmdb JournalConfig, naming the bad option (`config.durability must be …`). */
export function resolveLmdbConfig(config: LmdbJournalConfig): ResolvedLmdbConfig {
  if (typeof config.path !== 'string' || config.path.length === 0) {
    throw invalidOption('config.path', 'must be a non-empty string', config.path);
  }
  const durability = config.durability ?? lmdbJournalDefaults.durability;
  if (durability !== 'flush' && durability !== 'commit') {
    throw invalidOption('config.durability', "must be 'flush' or 'commit'", durability);
  }
  const recentReplies = config.recentReplies ?? lmdbJournalDefaults.recentReplies;
  if (!Number.isSafeInteger(recentReplies) || recentReplies < 0) {
    throw invalidOption('config.recentReplies', 'must be a non-negative integer', recentReplies);
  }
  return { path: config.path, durability, recentReplies };
}

// A seq above any real one, as the exclusive end of an actor's key range.
const MAX_SEQ = Number.MAX_SAFE_INTEGER;
// LMDB's key limit is 1978 bytes; leave room for the seq and the ordered-binary delimiters.
const MAX_KEY_BYTES = 1900;
// Meta keys the journal owns are arrays, so they never collide with string names.
const FORMAT_KEY = ['troupe', 'journal-format'];
const FORMAT = 1;

type StoredEvent = [v: number, event: unknown];
type StoredSnapshot = [seq: number, v: number, state: unknown];
// The fingerprint was added later: records of 4 elements have none (any retry matches them).
type StoredReply = [msgId: string, ok: boolean, value: unknown, error: ErrorRecord | undefined, fingerprint?: string];
// The epoch was added later, flat (two numbers, not an object: one head is read per write).
// Records of 2 elements have none and read as ZERO_EPOCH; builds that predate it read the
// first two elements and ignore the rest, so the format number stays 1.
type StoredHead = [lastSeq: number, lastReply: number, term?: number, node?: number];

/**
 * The durable journal: one LMDB environment per node, one `LmdbJournal` per worker thread.
 * Each `write` is one LMDB child transaction queued with lmdb-js's async `childTransaction`, so
 * the writes of all actors of a thread issued before the write thread picks them up commit in
 * one LMDB transaction (one fsync), while each stays all-or-nothing: a write that fails its
 * checks is rolled back alone. Nothing here commits synchronously.
 *
 * Durability: lmdb-js commits with `overlappingSync` (its default off Windows), so a commit is
 * visible before its fsync. 'commit' resolves at the commit; 'flush' also waits for lmdb-js's
 * `flushed` promise of the write's own transaction, taken when the write is queued. Continuity
 * (`seq` follows the stored log) is checked inside the transaction against the `heads` record,
 * so it holds across threads and reopenings, not just within this instance.
 *
 * @example
 *   const journal = new LmdbJournal({ type: 'lmdb', path: 'data/node-1' });
 *   await journal.write({ kind: 'cart', key: 'c1', events: [{ seq: 1, v: 1, event: { add: 'apple' } }] });
 *   const { snapshot, events, replies } = await journal.read('cart', 'c1');
 *   await journal.close();
 */
export class LmdbJournal implements Journal {
  readonly path: string;
  readonly durability: 'flush' | 'commit';
  readonly recentReplies: number;
  private readonly compactOnSnapshot: boolean;
  private readonly closeTimeoutMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly awaitFlush: (flushed: Promise<void>) => Promise<void>;
  private readonly env: LmdbEnv;
  private closed = false;
  private closing: Promise<void> | undefined;
  private inFlight = 0;
  private drained: (() => void) | undefined;

  /** Opens (or joins, in this thread) the environment at `config.path`; throws on a bad config. */
  constructor(config: LmdbJournalConfig, options: LmdbJournalOptions = {}) {
    const resolved = resolveLmdbConfig(config);
    this.path = resolved.path;
    this.durability = resolved.durability;
    this.recentReplies = resolved.recentReplies;
    this.compactOnSnapshot = options.compactOnSnapshot ?? false;
    this.closeTimeoutMs = options.closeTimeoutMs ?? lmdbJournalDefaults.closeTimeoutMs;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.awaitFlush = options.awaitFlush ?? ((flushed) => flushed);
    try {
      this.env = acquireEnv(this.path, options.mapSize === undefined ? {} : { mapSize: options.mapSize });
    } catch (e) {
      throw toReadError(e, this.path, 'opening the journal');
    }
    this.checkFormat();
  }

  /** Like the constructor, but reports a bad config or an unopenable environment by rejecting. */
  static open(config: LmdbJournalConfig, options: LmdbJournalOptions = {}): Promise<LmdbJournal> {
    try {
      return Promise.resolve(new LmdbJournal(config, options));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  write(w: ActorWrite): Promise<void> {
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', 'journal is closed', { path: this.path }));
    const invalid = checkWrite(w);
    if (invalid) return Promise.reject(invalid);
    return this.commit(() => this.apply(w), `journal write for ${w.kind}/${w.key}`, { kind: w.kind, key: w.key });
  }

  read(kind: string, key: string): Promise<ActorHistory> {
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', 'journal is closed', { path: this.path }));
    const invalid = checkActorKey(kind, key, 'ERR_JOURNAL_READ');
    if (invalid) return Promise.reject(invalid);
    try {
      const { root, snapshots, events, replies } = this.env;
      // lmdb-js reuses a read snapshot for up to a timer tick; a write another thread just
      // acknowledged (an actor moving between threads) must be visible, so start from the latest.
      root.resetReadTxn();
      // One read transaction: the snapshot, its events and the replies come from one commit.
      const transaction = root.useReadTransaction();
      try {
        const history: ActorHistory = { events: [], replies: [] };
        const epoch = storedEpoch(this.env.heads.get([kind, key], { transaction }) as StoredHead | undefined);
        if (epoch !== undefined) history.epoch = epoch;
        const snap = snapshots.get([kind, key], { transaction }) as StoredSnapshot | undefined;
        if (snap) history.snapshot = { seq: snap[0], v: snap[1], state: snap[2] };
        const from = snap ? snap[0] + 1 : 1;
        for (const { key: k, value } of events.getRange({ start: [kind, key, from], end: [kind, key, MAX_SEQ], transaction })) {
          history.events.push(toEventRecord(k, value as StoredEvent));
        }
        const recent = replies.getRange({
          start: [kind, key, MAX_SEQ],
          end: [kind, key, 0],
          reverse: true,
          limit: this.recentReplies,
          transaction,
        });
        for (const { value } of recent) history.replies.push(toRecordedReply(value as StoredReply));
        history.replies.reverse();
        return Promise.resolve(history);
      } finally {
        transaction.done();
      }
    } catch (e) {
      return Promise.reject(toReadError(e, this.path, `journal read of ${kind}/${key}`, { kind, key }));
    }
  }

  /** A range read on `events`: the stored events past `afterSeq`, whether or not a snapshot covers them. */
  readFrom(kind: string, key: string, afterSeq: number, limit: number): Promise<EventRecord[]> {
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', 'journal is closed', { path: this.path }));
    const invalid = checkActorKey(kind, key, 'ERR_JOURNAL_READ') ?? badReadRange(kind, key, afterSeq, limit);
    if (invalid) return Promise.reject(invalid);
    try {
      this.env.root.resetReadTxn();
      const out: EventRecord[] = [];
      for (const { key: k, value } of this.env.events.getRange({ start: [kind, key, afterSeq + 1], end: [kind, key, MAX_SEQ], limit })) {
        out.push(toEventRecord(k, value as StoredEvent));
      }
      return Promise.resolve(out);
    } catch (e) {
      return Promise.reject(toReadError(e, this.path, `journal read of ${kind}/${key}`, { kind, key }));
    }
  }

  /** The whole stored log from `fromSeq` on: `readFrom(kind, key, fromSeq - 1, limit)`, for tools and tests. */
  readEvents(kind: string, key: string, fromSeq = 1, limit = MAX_SEQ): Promise<EventRecord[]> {
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 0) {
      return Promise.reject(troupeError('ERR_JOURNAL_READ', 'fromSeq must be a non-negative integer', { kind, key }));
    }
    return this.readFrom(kind, key, Math.max(0, fromSeq - 1), limit);
  }

  /** A range read on `dueAt`: actors whose earliest reminder is due at or before `before`. */
  dueActors(before: number, limit: number): Promise<DueActor[]> {
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', 'journal is closed', { path: this.path }));
    try {
      this.env.root.resetReadTxn();
      return Promise.resolve(this.dueRange(before, limit));
    } catch (e) {
      return Promise.reject(toReadError(e, this.path, 'reminder index read', {}));
    }
  }

  /** `dueActors` without the read transaction reset (a partition store filters it, inside or outside one). */
  dueRange(before: number, limit: number, select?: (key: string) => boolean): DueActor[] {
    const out: DueActor[] = [];
    if (limit < 1) return out;
    // The end is exclusive, and [before + 1] sorts after every [before, kind, key].
    for (const { key: k } of this.env.dueAt.getRange({ start: [0], end: [Math.floor(before) + 1] })) {
      const [due, kind, key] = k as [number, string, string];
      if (select !== undefined && !select(key)) continue;
      out.push({ kind, key, due });
      if (out.length >= limit) break;
    }
    return out;
  }

  /** A node metadata value (incarnation, Snowflake last timestamp, …), or undefined. */
  getMeta<T = unknown>(name: string): Promise<T | undefined> {
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', 'journal is closed', { path: this.path }));
    const invalid = checkMetaName(name, 'ERR_JOURNAL_READ');
    if (invalid) return Promise.reject(invalid);
    try {
      this.env.root.resetReadTxn();
      return Promise.resolve(this.env.meta.get(name) as T | undefined);
    } catch (e) {
      return Promise.reject(toReadError(e, this.path, `meta read of ${name}`, { name }));
    }
  }

  /** Stores a node metadata value with the journal's durability; visible to `getMeta` once resolved. */
  putMeta(name: string, value: unknown): Promise<void> {
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', 'journal is closed', { path: this.path }));
    const invalid = checkMetaName(name, 'ERR_JOURNAL_WRITE');
    if (invalid) return Promise.reject(invalid);
    return this.commit(
      () => {
        void this.env.meta.put(name, value);
      },
      `meta write of ${name}`,
      { name },
    );
  }

  /** Hot, consistent copy of the whole environment into `toDir` (see `backup.ts`). */
  backup(toDir: string, options: BackupOptions = {}): Promise<void> {
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', 'journal is closed', { path: this.path }));
    return backupEnv(this.env, toDir, options);
  }

  /** Waits for the writes in flight, then releases this thread's handle on the environment. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.closing = (async () => {
      if (this.inFlight > 0) await new Promise<void>((r) => (this.drained = r));
      const clean = await releaseEnv(this.env, this.closeTimeoutMs, (fn, ms) => {
        const t = this.clock.setTimeout(fn, ms);
        return () => this.clock.clearTimeout(t);
      });
      if (!clean) this.logger.warn({ path: this.path }, 'lmdb environment did not close in time');
    })();
    return this.closing;
  }

  /**
   * Queues `body` as one child transaction and resolves per the durability setting. A throw in
   * `body` aborts only that child; a failed commit rejects every write in the batch.
   */
  private commit(body: () => void, what: string, details: Record<string, unknown>): Promise<void> {
    let committed: Promise<unknown>;
    try {
      committed = this.env.root.childTransaction(body);
    } catch (e) {
      return Promise.reject(toWriteError(e, this.path, what, details));
    }
    this.inFlight++;
    const failed = (e: unknown): Promise<never> => {
      // A rejected child (our own check, an unencodable value) leaves the commit itself fine.
      if (isCommitFailure(e)) this.env.lastCommitFailed = true;
      return commitCause(e, (ms) => this.sleep(ms)).then((cause) => {
        this.settled();
        throw toWriteError(cause, this.path, what, details);
      });
    };
    if (this.durability === 'commit') return committed.then(() => this.succeeded(), failed);
    // Taken now, not after the commit: it must be the flush of *this* write's transaction.
    const flushed = this.awaitFlush(flushedNow(this.env));
    return committed.then(() => flushed.then(() => this.succeeded()), failed);
  }

  private succeeded(): void {
    this.env.lastCommitFailed = false;
    this.settled();
  }

  private settled(): void {
    if (--this.inFlight === 0 && this.drained) this.drained();
  }

  /**
   * Several actors' writes in one LMDB transaction (one callback, no child transactions).
   * All-or-nothing per write: `apply` checks continuity before its first put, and every value
   * is encoded once up front, so a put cannot fail half-way through a write.
   */
  writeMany(writes: readonly ActorWrite[]): Promise<Array<Error | null>> {
    const results: Array<Error | null> = new Array(writes.length).fill(null);
    if (this.closed) return Promise.resolve(results.map(() => troupeError('ERR_STOPPED', 'journal is closed', { path: this.path })));
    const pending: number[] = [];
    for (let i = 0; i < writes.length; i++) {
      const w = writes[i]!;
      const invalid = checkWrite(w) ?? this.unencodable(w);
      if (invalid) results[i] = invalid;
      else pending.push(i);
    }
    if (pending.length === 0) return Promise.resolve(results);
    let committed: Promise<unknown>;
    try {
      committed = this.env.root.transaction(() => {
        for (const i of pending) {
          try {
            this.apply(writes[i]!);
          } catch (e) {
            results[i] = toWriteError(e, this.path, `journal write for ${writes[i]!.kind}/${writes[i]!.key}`, {});
          }
        }
      });
    } catch (e) {
      const error = toWriteError(e, this.path, 'journal batch', {});
      return Promise.resolve(results.map((r) => r ?? error));
    }
    this.inFlight++;
    const flushed = this.durability === 'flush' ? this.awaitFlush(flushedNow(this.env)) : undefined;
    return committed.then(
      () =>
        (flushed ?? Promise.resolve()).then(() => {
          this.succeeded();
          return results;
        }),
      (e: unknown) => {
        if (isCommitFailure(e)) this.env.lastCommitFailed = true;
        return commitCause(e, (ms) => this.sleep(ms)).then((cause) => {
          this.settled();
          const error = toWriteError(cause, this.path, 'journal batch', {});
          return results.map((r) => r ?? error);
        });
      },
    );
  }

  /**
   * One write with every check `write` makes, run inside a write transaction the caller already
   * holds on this journal's environment (an `LmdbPartitionStore.apply` applying many entries at
   * once). Throws the write's TroupeError when it fails a check; the caller's (child)
   * transaction must then abort, since earlier writes of the same transaction stay otherwise.
   */
  applyInTransaction(w: ActorWrite): void {
    if (this.closed) throw troupeError('ERR_STOPPED', 'journal is closed', { path: this.path });
    const invalid = checkWrite(w) ?? this.unencodable(w);
    if (invalid) throw invalid;
    this.apply(w);
  }

  /**
   * Inside a write transaction the caller holds: every stored actor `select` picks, as `read`
   * returns it plus its last seq (a replication partition snapshot). Scans `heads` (one record
   * per actor): rare, so a scan is fine.
   */
  imagesInTransaction(select: (kind: string, key: string) => boolean): ActorImage[] {
    const { heads } = this.env;
    const picked: Array<[string, string, StoredHead]> = [];
    for (const { key: k, value } of heads.getRange({})) {
      const [kind, key] = k as [string, string];
      if (select(kind, key)) picked.push([kind, key, value as StoredHead]);
    }
    return picked.map(([kind, key, head]) => this.imageOf(kind, key, head));
  }

  /**
   * As `imagesInTransaction`, for the listed actors only, by point reads instead of a scan (the
   * caller keeps its own index of them); an actor with no record is left out.
   */
  imagesOfInTransaction(actors: Iterable<readonly [kind: string, key: string]>): ActorImage[] {
    const out: ActorImage[] = [];
    for (const [kind, key] of actors) {
      const head = this.env.heads.get([kind, key]) as StoredHead | undefined;
      if (head !== undefined) out.push(this.imageOf(kind, key, head));
    }
    return out;
  }

  private imageOf(kind: string, key: string, head: StoredHead): ActorImage {
    const { snapshots, events, replies } = this.env;
    const image: ActorImage = { kind, key, lastSeq: head[0], events: [], replies: [] };
    const epoch = storedEpoch(head);
    if (epoch !== undefined) image.epoch = epoch;
    const snap = snapshots.get([kind, key]) as StoredSnapshot | undefined;
    if (snap) image.snapshot = { seq: snap[0], v: snap[1], state: snap[2] };
    const due = this.env.due.get([kind, key]) as number | undefined;
    if (due !== undefined) image.due = due;
    for (const { key: ek, value } of events.getRange({ start: [kind, key, snap ? snap[0] + 1 : 1], end: [kind, key, MAX_SEQ] })) {
      image.events.push(toEventRecord(ek, value as StoredEvent));
    }
    const recent = replies.getRange({ start: [kind, key, MAX_SEQ], end: [kind, key, 0], reverse: true, limit: this.recentReplies });
    for (const { value } of recent) image.replies.push(toRecordedReply(value as StoredReply));
    image.replies.reverse();
    return image;
  }

  /**
   * Inside a write transaction the caller holds: replaces every row of actor (kind, key) by
   * `image` (none: the actor is removed). A replica installing a partition snapshot.
   */
  replaceInTransaction(kind: string, key: string, image: ActorImage | undefined): void {
    const invalid = checkActorKey(kind, key, 'ERR_JOURNAL_WRITE');
    if (invalid) throw invalid;
    const { events, snapshots, replies, heads } = this.env;
    for (const k of [...events.getKeys({ start: [kind, key, 0], end: [kind, key, MAX_SEQ] })]) void events.remove(k);
    for (const k of [...replies.getKeys({ start: [kind, key, 0], end: [kind, key, MAX_SEQ] })]) void replies.remove(k);
    void snapshots.remove([kind, key]);
    void heads.remove([kind, key]);
    this.setDue(kind, key, image?.due ?? null);
    if (image === undefined) return;
    if (image.snapshot) void snapshots.put([kind, key], [image.snapshot.seq, image.snapshot.v, image.snapshot.state] satisfies StoredSnapshot);
    for (const e of image.events) void events.put([kind, key, e.seq], [e.v, e.event] satisfies StoredEvent);
    let n = 0;
    for (const r of image.replies) {
      const stored: StoredReply = [r.msgId, r.ok, r.value, r.error];
      if (r.fingerprint !== undefined) stored.push(r.fingerprint);
      void replies.put([kind, key, ++n], stored);
    }
    const e = image.epoch;
    void heads.put([kind, key], (e === undefined ? [image.lastSeq, n] : [image.lastSeq, n, e.term, e.node]) satisfies StoredHead);
  }

  /** Moves actor (kind, key) in the reminder index (`due` null: out of it). Inside a write transaction. */
  private setDue(kind: string, key: string, due: number | null): void {
    const { due: byActor, dueAt } = this.env;
    const old = byActor.get([kind, key]) as number | undefined;
    if (old === (due ?? undefined)) return;
    if (old !== undefined) void dueAt.remove([old, kind, key]);
    if (due === null) void byActor.remove([kind, key]);
    else {
      void byActor.put([kind, key], due);
      void dueAt.put([due, kind, key], null);
    }
  }

  /** A value msgpack cannot encode, found before the transaction so no write is half-applied. */
  private unencodable(w: ActorWrite): TroupeError | undefined {
    const encoder = (this.env.events as unknown as { encoder: { encode(v: unknown): unknown } }).encoder;
    try {
      for (const e of w.events) encoder.encode(e.event);
      if (w.snapshot) encoder.encode(w.snapshot.state);
      if (w.replies) for (const r of w.replies) encoder.encode(r.value);
    } catch (e) {
      return troupeError('ERR_JOURNAL_WRITE', `${w.kind}/${w.key}: a value cannot be encoded: ${(e as Error).message}`, {
        kind: w.kind,
        key: w.key,
      });
    }
    return undefined;
  }

  /** Runs inside the write transaction: checks continuity against what is committed, then writes. */
  private apply(w: ActorWrite): void {
    const { kind, key } = w;
    const { events, snapshots, replies, heads } = this.env;
    const actor = [kind, key];
    // One point read instead of range scans: cursor work dominated the write path.
    const head = heads.get(actor) as StoredHead | undefined;
    const stored = storedEpoch(head) ?? ZERO_EPOCH;
    // Fenced before the continuity check: a deposed primary must learn it was replaced, not
    // that its seqs are off (they are, since the new primary wrote past them).
    const stale = fenced(w, stored);
    if (stale) throw stale;
    const last = head ? head[0] : 0;
    const first = w.events[0];
    if (first && first.seq !== last + 1) {
      throw troupeError('ERR_JOURNAL_WRITE', `event seq ${first.seq} does not follow ${last} for ${kind}/${key}`, {
        kind,
        key,
        expected: last + 1,
        got: first.seq,
      });
    }
    const newLast = w.events.length > 0 ? w.events[w.events.length - 1]!.seq : last;
    if (w.snapshot && w.snapshot.seq > newLast) {
      throw troupeError('ERR_JOURNAL_WRITE', `snapshot seq ${w.snapshot.seq} is past the log's last seq ${newLast} for ${kind}/${key}`, {
        kind,
        key,
        last: newLast,
        got: w.snapshot.seq,
      });
    }
    const tomb = w.tombstone;
    if (tomb !== undefined) {
      // A deleted session: what is stored under the tombstone goes in this transaction.
      for (const k of [...events.getKeys({ start: [kind, key, 0], end: [kind, key, tomb] })]) void events.remove(k);
      void snapshots.remove(actor);
    }
    for (const e of w.events) if (tomb === undefined || e.seq >= tomb) void events.put([kind, key, e.seq], [e.v, e.event] satisfies StoredEvent);
    if (w.due !== undefined) this.setDue(kind, key, w.due);
    if (w.snapshot) {
      const s = w.snapshot;
      void snapshots.put(actor, [s.seq, s.v, s.state] satisfies StoredSnapshot);
      if (this.compactOnSnapshot) {
        for (const k of events.getKeys({ start: [kind, key, 0], end: [kind, key, s.seq + 1] })) void events.remove(k);
      }
    }
    let n = head ? head[1] : 0;
    if (w.replies) {
      for (const r of w.replies) {
        const stored: StoredReply = [r.msgId, r.ok, r.value, r.error];
        if (r.fingerprint !== undefined) stored.push(r.fingerprint);
        void replies.put([kind, key, ++n], stored);
        // One out for one in keeps the bound without a scan. (If recentReplies shrinks between
        // opens, older entries stay behind; `read` returns only the newest recentReplies.)
        if (n > this.recentReplies) void replies.remove([kind, key, n - this.recentReplies]);
      }
    }
    const epoch = epochAfter(w, stored);
    const hadEpoch = head !== undefined && head.length >= 4;
    const keepsEpoch = hadEpoch || w.epoch !== undefined;
    if (!head || newLast !== last || n !== head[1] || epoch !== stored || keepsEpoch !== hadEpoch) {
      void heads.put(actor, (keepsEpoch ? [newLast, n, epoch.term, epoch.node] : [newLast, n]) satisfies StoredHead);
    }
  }

  private checkFormat(): void {
    let format: unknown;
    try {
      format = this.env.meta.get(FORMAT_KEY);
    } catch (e) {
      throw toReadError(e, this.path, 'opening the journal');
    }
    if (format === undefined) {
      this.commit(() => void this.env.meta.put(FORMAT_KEY, FORMAT), 'journal format marker', {}).catch((e: TroupeError) =>
        this.logger.warn({ path: this.path, err: e }, 'could not record the journal format'),
      );
    } else if (format !== FORMAT) {
      throw troupeError('ERR_JOURNAL_READ', `journal at ${this.path} has format ${String(format)}, this build reads ${FORMAT}`, {
        path: this.path,
        format,
      });
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => this.clock.setTimeout(r, ms));
  }
}

function toEventRecord(k: unknown, value: StoredEvent): EventRecord {
  return { seq: (k as [string, string, number])[2], v: value[0], event: value[1] };
}

/** The epoch a heads record holds; undefined for a record without one (no write carried one, or an older build). */
function storedEpoch(head: StoredHead | undefined): Epoch | undefined {
  return head !== undefined && head.length >= 4 ? { term: head[2]!, node: head[3]! } : undefined;
}

function toRecordedReply(value: StoredReply): RecordedReply {
  const r: RecordedReply = { msgId: value[0], ok: value[1] };
  if (value[2] !== undefined) r.value = value[2];
  if (value[3] !== undefined) r.error = value[3];
  if (typeof value[4] === 'string') r.fingerprint = value[4];
  return r;
}

function checkActorKey(kind: unknown, key: unknown, code: 'ERR_JOURNAL_WRITE' | 'ERR_JOURNAL_READ'): TroupeError | undefined {
  if (typeof kind !== 'string' || kind.length === 0) return troupeError(code, 'kind must be a non-empty string', { kind });
  if (typeof key !== 'string') return troupeError(code, 'key must be a string', { kind });
  // ordered-binary keys delimit array elements with NUL.
  if (kind.includes('\u0000') || key.includes('\u0000')) return troupeError(code, 'kind and key must not contain NUL', { kind });
  if (Buffer.byteLength(kind) + Buffer.byteLength(key) > MAX_KEY_BYTES) {
    return troupeError(code, `kind and key together must be at most ${MAX_KEY_BYTES} bytes`, { kind });
  }
  return undefined;
}

function checkMetaName(name: unknown, code: 'ERR_JOURNAL_WRITE' | 'ERR_JOURNAL_READ'): TroupeError | undefined {
  if (typeof name !== 'string' || name.length === 0 || name.includes('\u0000') || Buffer.byteLength(name) > MAX_KEY_BYTES) {
    return troupeError(code, `meta name must be a non-empty string without NUL, at most ${MAX_KEY_BYTES} bytes`, {});
  }
  return undefined;
}

/** Shape checks that need no transaction; continuity with the stored log is checked inside it. */
function checkWrite(w: ActorWrite): TroupeError | undefined {
  if (w === null || typeof w !== 'object') return troupeError('ERR_JOURNAL_WRITE', 'write must be an object', {});
  const bad = checkActorKey(w.kind, w.key, 'ERR_JOURNAL_WRITE');
  if (bad) return bad;
  const at = { kind: w.kind, key: w.key };
  if (!Array.isArray(w.events)) return troupeError('ERR_JOURNAL_WRITE', 'write.events must be an array', at);
  for (let i = 0; i < w.events.length; i++) {
    const e = w.events[i]!;
    if (!Number.isSafeInteger(e?.seq) || e.seq < 1)
      return troupeError('ERR_JOURNAL_WRITE', `write.events[${i}].seq must be a positive integer`, at);
    if (!Number.isSafeInteger(e.v)) return troupeError('ERR_JOURNAL_WRITE', `write.events[${i}].v must be an integer`, at);
    if (i > 0 && e.seq !== w.events[i - 1]!.seq + 1) {
      return troupeError('ERR_JOURNAL_WRITE', `write.events[${i}].seq ${e.seq} does not follow ${w.events[i - 1]!.seq}`, at);
    }
  }
  const malformed = badEpoch(w) ?? badTombstone(w);
  if (malformed !== undefined) return troupeError('ERR_JOURNAL_WRITE', malformed, at);
  const s: SnapshotRecord | undefined = w.snapshot;
  if (s !== undefined && (s === null || !Number.isSafeInteger(s.seq) || s.seq < 0 || !Number.isSafeInteger(s.v))) {
    return troupeError('ERR_JOURNAL_WRITE', 'write.snapshot must have integer seq and v', at);
  }
  if (w.replies !== undefined) {
    if (!Array.isArray(w.replies)) return troupeError('ERR_JOURNAL_WRITE', 'write.replies must be an array', at);
    for (let i = 0; i < w.replies.length; i++) {
      const r = w.replies[i]!;
      if (typeof r?.msgId !== 'string' || r.msgId.length === 0 || typeof r.ok !== 'boolean') {
        return troupeError('ERR_JOURNAL_WRITE', `write.replies[${i}] must have a msgId string and an ok boolean`, at);
      }
    }
  }
  return undefined;
}
