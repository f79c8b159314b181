import { invalidOption, troupeError, type TroupeError } from '../core/errors.ts';
import { systemClock, type Clock, type TimerHandle } from '../core/clock.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { ActorWrite } from '../persistence/journal.ts';
import { REPLICATION_BOOT_KEY, acquireEnv, flushedNow, releaseEnv, type LmdbEnv } from '../persistence/lmdb-env.ts';
import { LmdbJournal } from '../persistence/lmdb-journal.ts';
import { commitCause, isCommitFailure, toReadError, toWriteError } from '../persistence/storage-errors.ts';
import { truncateHistory, type EpochStart, type Position } from './epoch.ts';
import type { LogEntry } from './messages.ts';
import {
  applyFailed,
  badAgainstStored,
  badApplyArgs,
  badApplyTarget,
  badEntriesAfterBase,
  badEntriesRange,
  badInstall,
  badPersistShape,
  badTruncateArgs,
  badTruncateTarget,
  baseAt,
  metaAfterPersist,
  type PersistChange,
} from './partition-store-checks.ts';
import { baseOf, emptyPartitionMeta, type InstallResult, type PartitionMeta, type PartitionSnapshot, type PartitionStore } from './partition-store.ts';
import { PARTITIONS, partitionOf } from './partition-table.ts';

export interface LmdbPartitionStoreOptions {
  /** The node's LMDB environment directory: the one its `LmdbJournal` opens. */
  path: string;
  /** 'flush' (default): `persist` resolves once on disk; 'commit': once committed (survives a process crash, not a power cut). */
  durability?: 'commit' | 'flush';
  /** Milliseconds `close()` waits for lmdb-js to finish; 10 s, as `LmdbJournal` waits. */
  closeTimeoutMs?: number;
  /** Partition count keys map to (`partitionOf`), as the replication driver's; default PARTITIONS. */
  partitions?: number;
  clock?: Clock;
  logger?: Logger;
}

// A seq above any real one, as the exclusive end of a partition's key range.
const MAX_SEQ = Number.MAX_SAFE_INTEGER;

// Flat, as the journal stores its records: the epoch as two numbers, then what the entry has.
type StoredEntry = [term: number, node: number, data?: readonly ActorWrite[], start?: EpochStart];

/**
 * The durable `PartitionStore`: partition logs in the `plog` database and their metadata in
 * `pmeta`, in the node's LMDB environment beside the actor tables (see lmdb-env.ts), so that
 * `apply` moves entries into the actor tables and records the new applied point in one LMDB
 * transaction. Each call is one lmdb-js child transaction, queued without waiting: calls take
 * effect in call order, calls issued together commit together (one fsync), and a call that fails
 * its checks inside the transaction is rolled back alone.
 *
 * Hot path: an append (`persist` without `truncateAfter`) reads nothing. Its checks against what
 * the partition holds use `known`, this store's copy of each partition's meta as the
 * transactions executed so far left it (filled by one point read on a partition's first use);
 * a failed commit clears it, so the next transaction reads the truth back from `pmeta`.
 *
 * `applied` is the store's own: `apply` moves it, and `persist` keeps the stored value whatever
 * `meta.applied` says (a meta built before an `apply` resolved would otherwise move it back,
 * and the next `apply` would write those entries' events twice).
 *
 * @example
 *   const store = new LmdbPartitionStore({ path: 'data/node-1' });
 *   const metas = await store.loadAll();               // what the node held when it stopped
 *   await store.persist(7, { entries, meta });          // append, then store the meta
 *   await store.apply(7, meta.commit);                  // committed entries into the actor tables
 *   await store.actors.read('cart', 'c1');
 *   await store.close();
 */

/** How often a 'commit' store fsyncs in the background, ms: an OS crash loses at most this much. */
export const backgroundSyncMs = 100;

export class LmdbPartitionStore implements PartitionStore {
  readonly path: string;
  readonly durability: 'commit' | 'flush';
  readonly partitions: number;
  readonly actors: LmdbJournal;
  private readonly env: LmdbEnv;
  private readonly closeTimeoutMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly known = new Map<number, PartitionMeta>();
  private closed = false;
  private closing: Promise<void> | undefined;
  private inFlight = 0;
  private drained: (() => void) | undefined;
  private syncTimer: TimerHandle | undefined;
  private syncing: Promise<void> | undefined;

  /** Opens (or joins, in this thread) the environment at `options.path`; throws on a bad option. */
  constructor(options: LmdbPartitionStoreOptions) {
    if (options === null || typeof options !== 'object') throw invalidOption('options', 'must be an object', options);
    if (typeof options.path !== 'string' || options.path.length === 0) {
      throw invalidOption('options.path', 'must be a non-empty string', options.path);
    }
    const durability = options.durability ?? 'flush';
    if (durability !== 'flush' && durability !== 'commit') throw invalidOption('options.durability', "must be 'flush' or 'commit'", durability);
    const closeTimeoutMs = options.closeTimeoutMs ?? 10_000;
    if (!Number.isSafeInteger(closeTimeoutMs) || closeTimeoutMs < 1) {
      throw invalidOption('options.closeTimeoutMs', 'must be a positive integer', closeTimeoutMs);
    }
    const partitions = options.partitions ?? PARTITIONS;
    if (!Number.isSafeInteger(partitions) || partitions < 1) throw invalidOption('options.partitions', 'must be a positive integer', partitions);
    this.partitions = partitions;
    this.path = options.path;
    this.durability = durability;
    this.closeTimeoutMs = closeTimeoutMs;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    try {
      // 'commit' (the 'replicated' durability): commits without fsync, synced in the background.
      this.env = acquireEnv(this.path, { noSync: durability === 'commit' });
    } catch (e) {
      throw toReadError(e, this.path, 'opening the partition store');
    }
    if (durability === 'commit') this.armSync();
    try {
      this.actors = new LmdbJournal({ type: 'lmdb', path: this.path, durability }, { clock: this.clock, logger: this.logger });
    } catch (e) {
      void releaseEnv(this.env, this.closeTimeoutMs, (fn, ms) => this.arm(fn, ms));
      throw e;
    }
    // lmdb-js reports a failed commit to 'aftercommit' listeners (without a txnId) before it runs
    // the next transaction's callbacks, and before any promise reaction could: `known` may hold
    // the failed transaction's changes, and the next one must not build on them.
    this.env.root.on('aftercommit', (event: { txnId?: unknown }) => {
      if (event?.txnId === undefined) this.known.clear();
    });
  }

  loadAll(): Promise<Map<number, PartitionMeta>> {
    if (this.closed) return Promise.reject(this.stopped());
    try {
      this.env.root.resetReadTxn();
      const out = new Map<number, PartitionMeta>();
      for (const { key, value } of this.env.pmeta.getRange({ start: 0, end: MAX_SEQ })) out.set(key as number, value as PartitionMeta);
      return Promise.resolve(out);
    } catch (e) {
      return Promise.reject(toReadError(e, this.path, 'partition meta read'));
    }
  }

  persist(p: number, change: PersistChange): Promise<void> {
    if (this.closed) return Promise.reject(this.stopped());
    const bad = badPersistShape(p, change);
    if (bad) return Promise.reject(bad);
    const { plog, pmeta } = this.env;
    return this.commit(
      () => {
        const stored = this.metaInTxn(p);
        const wrong = badAgainstStored(p, change, stored);
        if (wrong) throw wrong;
        const { truncateAfter } = change;
        if (truncateAfter !== undefined) {
          for (const k of plog.getKeys({ start: [p, truncateAfter + 1], end: [p, MAX_SEQ] })) void plog.remove(k);
        }
        if (change.entries) for (const e of change.entries) void plog.put([p, e.seq], toStored(e));
        const next = metaAfterPersist(change.meta, stored);
        void pmeta.put(p, next);
        this.known.set(p, next); // last: a throw above aborts this child and leaves `known` as it was
      },
      `persist of partition ${p}`,
      { p },
    );
  }

  entries(p: number, after: number, limit: number): Promise<LogEntry[]> {
    if (this.closed) return Promise.reject(this.stopped());
    const bad = badEntriesRange(p, after, limit);
    if (bad) return Promise.reject(bad);
    try {
      this.env.root.resetReadTxn();
      const below = badEntriesAfterBase(p, after, (this.env.pmeta.get(p) as PartitionMeta | undefined) ?? emptyPartitionMeta());
      if (below) return Promise.reject(below);
      const out: LogEntry[] = [];
      for (const { key, value } of this.env.plog.getRange({ start: [p, after + 1], end: [p, MAX_SEQ], limit })) {
        out.push(toEntry((key as [number, number])[1], value as StoredEntry));
      }
      return Promise.resolve(out);
    } catch (e) {
      return Promise.reject(toReadError(e, this.path, `entries read of partition ${p}`, { p }));
    }
  }

  apply(p: number, upTo: number): Promise<number> {
    if (this.closed) return Promise.reject(this.stopped());
    const bad = badApplyArgs(p, upTo);
    if (bad) return Promise.reject(bad);
    const { plog, pmeta } = this.env;
    return this.commit(
      () => {
        const stored = this.metaInTxn(p);
        if (upTo <= stored.applied) return stored.applied;
        const beyond = badApplyTarget(p, upTo, stored);
        if (beyond) throw beyond;
        // Read first, then write: the actor writes go to other databases, but a cursor that
        // outlives writes in its own transaction is not worth the doubt.
        const range = [...plog.getRange({ start: [p, stored.applied + 1], end: [p, upTo + 1] })];
        let seq = stored.applied;
        for (const { key, value } of range) {
          seq++;
          if ((key as [number, number])[1] !== seq) throw applyFailed(p, seq, 'the entry is missing from the log');
          const [term, node, data] = value as StoredEntry;
          if (data === undefined) continue; // a start entry opens an epoch and writes no actor
          if (!Array.isArray(data)) throw applyFailed(p, seq, 'the entry data is not an array of actor writes');
          for (const w of data) {
            try {
              this.actors.applyInTransaction({ ...w, epoch: { term, node } });
            } catch (e) {
              throw applyFailed(p, seq, e); // aborts the whole child: the tables keep the applied prefix
            }
          }
        }
        if (seq !== upTo) throw applyFailed(p, seq + 1, 'the entry is missing from the log');
        // The caller applies only what it knows committed; the record learns that commit point too.
        const next: PartitionMeta = { ...stored, applied: upTo, commit: Math.max(stored.commit, upTo) };
        void pmeta.put(p, next);
        this.known.set(p, next);
        return upTo;
      },
      `apply of partition ${p}`,
      { p, upTo },
    );
  }

  truncatePrefix(p: number, upTo: number): Promise<Position> {
    if (this.closed) return Promise.reject(this.stopped());
    const bad = badTruncateArgs(p, upTo);
    if (bad) return Promise.reject(bad);
    const { plog, pmeta } = this.env;
    return this.commit(
      () => {
        const stored = this.metaInTxn(p);
        const base = baseOf(stored);
        if (upTo <= base.seq) return base;
        const beyond = badTruncateTarget(p, upTo, stored);
        if (beyond) throw beyond;
        for (const k of [...plog.getKeys({ start: [p, base.seq + 1], end: [p, upTo + 1] })]) void plog.remove(k);
        const next: PartitionMeta = { ...stored, base: baseAt(stored, upTo) };
        void pmeta.put(p, next);
        this.known.set(p, next);
        return next.base!;
      },
      `prefix truncation of partition ${p}`,
      { p, upTo },
    );
  }

  snapshot(p: number): Promise<PartitionSnapshot> {
    if (this.closed) return Promise.reject(this.stopped());
    if (!Number.isSafeInteger(p) || p < 0) return Promise.reject(troupeError('ERR_JOURNAL_READ', 'p must be a non-negative integer', {}));
    // Read inside a (writeless) child transaction: queued after every apply issued before it, so
    // the actor rows are exactly those of the applied point it reports.
    return this.commit(
      () => {
        const stored = this.metaInTxn(p);
        const actors = this.actors.imagesInTransaction((_kind, key) => partitionOf(key, this.partitions) === p);
        return { base: baseAt(stored, stored.applied), history: truncateHistory(stored.history, stored.applied), actors };
      },
      `snapshot of partition ${p}`,
      { p },
    );
  }

  install(p: number, snap: PartitionSnapshot, meta: PartitionMeta): Promise<InstallResult> {
    if (this.closed) return Promise.reject(this.stopped());
    const bad = badInstall(p, snap, meta);
    if (bad) return Promise.reject(bad);
    const foreign = snap.actors.findIndex((a) => partitionOf(a.key, this.partitions) !== p);
    if (foreign >= 0) return Promise.reject(troupeError('ERR_JOURNAL_WRITE', `snap.actors[${foreign}] belongs to another partition than ${p}`, { p }));
    const { plog, pmeta } = this.env;
    return this.commit(
      () => {
        const stored = this.metaInTxn(p);
        if (stored.applied >= snap.base.seq) return { installed: false, applied: stored.applied };
        for (const a of this.actors.imagesInTransaction((_kind, key) => partitionOf(key, this.partitions) === p)) {
          this.actors.replaceInTransaction(a.kind, a.key, undefined);
        }
        for (const a of snap.actors) this.actors.replaceInTransaction(a.kind, a.key, a);
        for (const k of [...plog.getKeys({ start: [p, 0], end: [p, MAX_SEQ] })]) void plog.remove(k);
        const b = snap.base;
        const next: PartitionMeta = { ...meta, history: truncateHistory(snap.history, b.seq), last: b, base: b, applied: b.seq, commit: Math.max(meta.commit, b.seq) };
        void pmeta.put(p, next);
        this.known.set(p, next);
        return { installed: true, applied: b.seq };
      },
      `snapshot install of partition ${p}`,
      { p, base: snap.base.seq },
    );
  }

  /** Every `backgroundSyncMs`, an fsync of what committed since the last one. */
  private armSync(): void {
    this.syncTimer = this.clock.setTimeout(() => {
      this.syncTimer = undefined;
      if (this.closed) return;
      void this.syncInBackground().then(() => {
        if (!this.closed) this.armSync();
      });
    }, backgroundSyncMs);
  }

  /** fsync of what committed since the last one ('commit' durability: commits do not sync). */
  private syncInBackground(): Promise<void> {
    if (this.syncing !== undefined) return this.syncing;
    const done = new Promise<void>((resolve) =>
      // lmdb-js has `sync` on the root (mdb_env_sync in its thread pool); its types omit it.
      (this.env.root as unknown as { sync(cb: (error: unknown) => void): void }).sync((error: unknown) => {
        if (error) this.logger.warn({ err: error, path: this.path }, 'background sync of the partition store failed');
        resolve();
      }),
    );
    this.syncing = done.finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  /** Waits for the calls in flight, closes `actors`, then releases this store's handle on the environment. */
  lastBoot(): string | undefined {
    const v = this.env.meta.get(REPLICATION_BOOT_KEY) as unknown;
    return typeof v === 'string' ? v : undefined;
  }

  /** Synced at once whatever the durability: the next start compares against it. */
  async recordBoot(bootId: string): Promise<void> {
    if (this.closed) throw this.stopped();
    await this.env.meta.put(REPLICATION_BOOT_KEY, bootId);
    if (this.durability === 'commit') await this.syncInBackground();
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.closing = (async () => {
      if (this.inFlight > 0) await new Promise<void>((r) => (this.drained = r));
      if (this.durability === 'commit') {
        if (this.syncTimer !== undefined) this.clock.clearTimeout(this.syncTimer);
        await this.syncInBackground(); // a graceful stop leaves everything on disk
      }
      await this.actors.close();
      const clean = await releaseEnv(this.env, this.closeTimeoutMs, (fn, ms) => this.arm(fn, ms));
      if (!clean) this.logger.warn({ path: this.path }, 'lmdb environment did not close in time');
    })();
    return this.closing;
  }

  /** Partition `p`'s meta as the transactions executed so far left it; call inside a write transaction. */
  private metaInTxn(p: number): PartitionMeta {
    let meta = this.known.get(p);
    if (meta === undefined) {
      meta = (this.env.pmeta.get(p) as PartitionMeta | undefined) ?? emptyPartitionMeta();
      this.known.set(p, meta);
    }
    return meta;
  }

  /**
   * Queues `body` as one child transaction and resolves with its result per the durability
   * setting. A throw in `body` aborts only that child; a failed commit rejects every call in it.
   */
  private commit<T>(body: () => T, what: string, details: Record<string, unknown>): Promise<T> {
    let committed: Promise<T>;
    try {
      committed = this.env.root.childTransaction(body) as Promise<T>;
    } catch (e) {
      return Promise.reject(toWriteError(e, this.path, what, details));
    }
    this.inFlight++;
    // Taken now, not after the commit: it must be the flush of *this* call's transaction.
    const flushed = this.durability === 'flush' ? flushedNow(this.env) : undefined;
    return committed.then(
      async (result) => {
        if (flushed) await flushed;
        this.env.lastCommitFailed = false;
        this.settled();
        return result;
      },
      async (e: unknown) => {
        if (isCommitFailure(e)) {
          this.env.lastCommitFailed = true;
          this.known.clear();
        }
        const cause = await commitCause(e, (ms) => new Promise((r) => this.arm(r, ms)));
        this.settled();
        throw toWriteError(cause, this.path, what, details);
      },
    );
  }

  private settled(): void {
    if (--this.inFlight === 0 && this.drained) this.drained();
  }

  private stopped(): TroupeError {
    return troupeError('ERR_STOPPED', 'partition store is closed', { path: this.path });
  }

  private arm(fn: () => void, ms: number): () => void {
    const t = this.clock.setTimeout(fn, ms);
    return () => this.clock.clearTimeout(t);
  }
}

function toStored(e: LogEntry): StoredEntry {
  const data = e.data as readonly ActorWrite[] | undefined;
  if (e.start !== undefined) return [e.epoch.term, e.epoch.node, data, e.start];
  return data === undefined ? [e.epoch.term, e.epoch.node] : [e.epoch.term, e.epoch.node, data];
}

function toEntry(seq: number, v: StoredEntry): LogEntry {
  const epoch = { term: v[0], node: v[1] };
  if (v[3] !== undefined) return v[2] === undefined ? { seq, epoch, start: v[3] } : { seq, epoch, start: v[3], data: v[2] };
  return v[2] === undefined ? { seq, epoch } : { seq, epoch, data: v[2] };
}
