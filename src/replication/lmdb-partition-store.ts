import type { Database } from 'lmdb';
import { invalidOption, troupeError, type TroupeError } from '../core/errors.ts';
import { systemClock, type Clock, type TimerHandle } from '../core/clock.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { ActorWrite, DueActor } from '../persistence/journal.ts';
import { MEMBER_LIVES_KEY, REPLICATION_BOOT_KEY, STORAGE_PROBE_KEY, acquireEnv, flushedNow, releaseEnv, type LmdbEnv } from '../persistence/lmdb-env.ts';
import { LmdbJournal } from '../persistence/lmdb-journal.ts';
import { commitCause, isCommitFailure, toReadError, toWriteError } from '../persistence/storage-errors.ts';
import { truncateHistory, type EpochStart, type Position } from './epoch.ts';
import type { LogEntry } from './messages.ts';
import {
  applyFailed,
  badActorKeysArgs,
  badForeignActor,
  badAgainstStored,
  badApplyArgs,
  badApplyTarget,
  badEntriesAfterBase,
  badEntriesRange,
  badInstall,
  badPersistShape,
  badTruncateTarget,
  baseAt,
  metaAfterInstall,
  metaAfterPersist,
  type PersistChange,
} from './partition-store-checks.ts';
import { baseOf, emptyPartitionMeta, pageOf, type InstallResult, type PartitionMeta, type PartitionSnapshot, type PartitionStore } from './partition-store.ts';
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

/** The partition index's database: a key per actor in the actor tables, no value worth reading. */
export const ACTOR_INDEX_DB = 'pactors';
/** `meta` key: the partition count the index was built with (another count maps keys elsewhere). */
export const ACTOR_INDEX_KEY = 'replication.actorIndex';
type IndexKey = [p: number, kind: string, key: string];

// Where JavaScript's string order (UTF-16 code units: `<`, `sort`, `pageOf`) and the index's
// (UTF-8 bytes, i.e. code points) can disagree: only between a surrogate and U+E000–U+FFFF.
const ORDER_IN_DOUBT = /[\uD800-\uFFFF]/;

/**
 * The durable `PartitionStore`: partition logs in the `plog` database and their metadata in
 * `pmeta`, in the node's LMDB environment beside the actor tables (see lmdb-env.ts), so that
 * `apply` moves entries into the actor tables and records the new applied point in one LMDB
 * transaction. Calls are queued without waiting and take effect in call order; every call issued
 * before lmdb-js's write thread picks them up (in practice: all partitions' calls of one
 * event-loop turn, and more under load) runs in **one group**: one transaction callback, one
 * LMDB nested transaction, each touched partition's meta record written once at its end, one
 * commit (one fsync). Each call keeps its own outcome:
 *
 * ```
 *   group = [persist p1, persist p2 (refused), apply p1, persist p3]
 *   ├─ nested txn: each call checks against `known` first; a refused call writes nothing and
 *   │              rejects alone; the others write; then one pmeta put per touched partition
 *   └─ a call that throws half-way through its writes (an unencodable value, an LMDB error)
 *      aborts the nested txn: `known` is restored and every call of the group runs again in
 *      a nested txn of its own (the per-call isolation of old, paid only when it is needed)
 * ```
 *
 * (Per call, a nested transaction with its own meta rewrite cost a replicated write five nested
 * transactions across the cluster; they were a quarter of a node's CPU, bench/RESULTS.md.)
 *
 * Partition index: the actor tables are keyed `[kind, key]`, so finding partition p's actors
 * meant walking every actor of the node, and a join runs ~85 `snapshot`s per old primary back to
 * back (bench/RESULTS.md, rebalance). The `pactors` database holds one key `[p, kind, key]` per
 * actor in the tables (p = `partitionOf(key, partitions)`), put when `apply` or `install` first
 * writes the actor and removed when `install` removes it, in the same transaction; `snapshot` and
 * `actorKeys` read partition p's range of it only. Actors are never deleted otherwise. A store
 * that has actors the index lacks (built before it, or written by a single-node `LmdbJournal`
 * on the same directory) gets it rebuilt at open (`ensureActorIndex`): one scan, logged; so does
 * a store whose `actors` journal was written directly while open, at its next index read.
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

/** What `probeWrite` stores and removes: 64 KiB. */
const probeBytes = Buffer.alloc(64 * 1024);

export class LmdbPartitionStore implements PartitionStore {
  readonly path: string;
  readonly durability: 'commit' | 'flush';
  readonly partitions: number;
  readonly actors: LmdbJournal;
  private readonly env: LmdbEnv;
  private readonly index: Database;
  private readonly closeTimeoutMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly known = new Map<number, PartitionMeta>();
  // `known` as the running nested transaction found it, per partition it changed (rollback)…
  private readonly undo = new Map<number, PartitionMeta | undefined>();
  // …and the partitions whose `pmeta` record it must write before it commits.
  private readonly dirty = new Set<number>();
  // The group queued in lmdb-js whose callback has not run yet: new calls join it.
  private open: Group | undefined;
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
    try {
      // Before anything of this store or its journal is queued: a synchronous transaction must
      // not wait behind asynchronous ones of this thread.
      this.index = this.env.root.openDB(ACTOR_INDEX_DB, {});
      this.ensureActorIndex();
    } catch (e) {
      void releaseEnv(this.env, this.closeTimeoutMs, (fn, ms) => this.arm(fn, ms));
      throw toReadError(e, this.path, 'building the partition index of the actor tables');
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
    const { plog } = this.env;
    return this.commit(
      () => {
        const stored = this.metaInTxn(p);
        const wrong = badAgainstStored(p, change, stored);
        if (wrong) throw new Refusal(wrong);
        const { truncateAfter } = change;
        if (truncateAfter !== undefined) {
          for (const k of plog.getKeys({ start: [p, truncateAfter + 1], end: [p, MAX_SEQ] })) void plog.remove(k);
        }
        if (change.entries) for (const e of change.entries) void plog.put([p, e.seq], toStored(e));
        this.setKnown(p, metaAfterPersist(change.meta, stored));
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
    const { plog } = this.env;
    return this.commit(
      () => {
        const stored = this.metaInTxn(p);
        if (upTo <= stored.applied) return stored.applied;
        const beyond = badApplyTarget(p, upTo, stored);
        if (beyond) throw new Refusal(beyond);
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
              throw applyFailed(p, seq, e); // aborts the group's nested txn: the tables keep the applied prefix
            }
            // A point read per write; the put only for an actor new to the tables.
            const ik: IndexKey = [partitionOf(w.key, this.partitions), w.kind, w.key];
            if (!this.index.doesExist(ik)) void this.index.put(ik, true);
          }
        }
        if (seq !== upTo) throw applyFailed(p, seq + 1, 'the entry is missing from the log');
        // The caller applies only what it knows committed; the record learns that commit point too.
        this.setKnown(p, { ...stored, applied: upTo, commit: Math.max(stored.commit, upTo) });
        return upTo;
      },
      `apply of partition ${p}`,
      { p, upTo },
    );
  }

  truncatePrefix(p: number, upTo: number): Promise<Position> {
    if (this.closed) return Promise.reject(this.stopped());
    const bad = badApplyArgs(p, upTo);
    if (bad) return Promise.reject(bad);
    const { plog } = this.env;
    return this.commit(
      () => {
        const stored = this.metaInTxn(p);
        const base = baseOf(stored);
        if (upTo <= base.seq) return base;
        const beyond = badTruncateTarget(p, upTo, stored);
        if (beyond) throw new Refusal(beyond);
        for (const k of [...plog.getKeys({ start: [p, base.seq + 1], end: [p, upTo + 1] })]) void plog.remove(k);
        const next: PartitionMeta = { ...stored, base: baseAt(stored, upTo) };
        this.setKnown(p, next);
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
        this.indexInTxn();
        const actors = this.actors.imagesOfInTransaction(this.indexedActors(p).map(([, kind, key]) => [kind, key] as const));
        return { base: baseAt(stored, stored.applied), history: truncateHistory(stored.history, stored.applied), actors };
      },
      `snapshot of partition ${p}`,
      { p },
      true,
    );
  }

  actorKeys(kind: string, ps: ReadonlySet<number>, after: string | undefined, limit: number): Promise<string[]> {
    if (this.closed) return Promise.reject(this.stopped());
    const bad = badActorKeysArgs(kind, ps, after, limit);
    if (bad) return Promise.reject(bad);
    // In a (writeless) child transaction, as `snapshot`: after every apply issued before it.
    return this.commit(
      () => {
        this.indexInTxn();
        const keys: string[] = [];
        for (const p of ps) if (Number.isSafeInteger(p) && p >= 0) this.indexedKeys(p, kind, after, limit, keys);
        return pageOf(keys, limit);
      },
      `keys of ${kind}`,
      { kind },
      true,
    );
  }

  dueActors(ps: ReadonlySet<number>, before: number, limit: number): Promise<DueActor[]> {
    if (this.closed) return Promise.reject(this.stopped());
    // In a (writeless) child transaction, as `actorKeys`: after every apply issued before it, so
    // a partition just established here is read with what its fence applied.
    return this.commit(
      () => this.actors.dueRange(before, limit, (key) => ps.has(partitionOf(key, this.partitions))),
      'reminder index read',
      {},
      true,
    );
  }

  install(p: number, snap: PartitionSnapshot, meta: PartitionMeta): Promise<InstallResult> {
    if (this.closed) return Promise.reject(this.stopped());
    const bad = badInstall(p, snap, meta) ?? badForeignActor(p, snap, this.partitions);
    if (bad) return Promise.reject(bad);
    const { plog } = this.env;
    return this.commit(
      () => {
        const stored = this.metaInTxn(p);
        if (stored.applied >= snap.base.seq) return { installed: false, applied: stored.applied };
        this.indexInTxn(); // every actor of p goes, indexed or not
        for (const ik of this.indexedActors(p)) {
          this.actors.replaceInTransaction(ik[1], ik[2], undefined);
          void this.index.remove(ik);
        }
        for (const a of snap.actors) {
          this.actors.replaceInTransaction(a.kind, a.key, a);
          void this.index.put([p, a.kind, a.key] satisfies IndexKey, true);
        }
        for (const k of [...plog.getKeys({ start: [p, 0], end: [p, MAX_SEQ] })]) void plog.remove(k);
        this.setKnown(p, metaAfterInstall(meta, snap));
        return { installed: true, applied: snap.base.seq };
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

  sync(): Promise<void> {
    if (this.durability === 'flush' || this.closed) return Promise.resolve();
    // A sync already running may have started before the caller's commit: sync once more after it.
    return (this.syncing ?? Promise.resolve()).then(() => this.syncInBackground());
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

  knownLives(): ReadonlyMap<number, number> {
    return livesFrom(this.env.meta.get(MEMBER_LIVES_KEY) as unknown);
  }

  async recordLives(lives: ReadonlyMap<number, number>): Promise<void> {
    if (this.closed) throw this.stopped();
    await this.commit(() => void this.env.meta.put(MEMBER_LIVES_KEY, [...lives]), 'record of member lives', {});
  }

  async probeWrite(): Promise<void> {
    if (this.closed) throw this.stopped();
    // A few pages' worth, so a disk with room for a tiny commit only still counts as full.
    await this.commit(() => void this.env.meta.put(STORAGE_PROBE_KEY, probeBytes), 'probe write', {});
    await this.commit(() => void this.env.meta.remove(STORAGE_PROBE_KEY), 'probe write', {});
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

  /**
   * At open: rebuilds the partition index unless it was built for this partition count and holds
   * as many actors as the tables. Synchronous: calls must not run before it.
   */
  private ensureActorIndex(): void {
    if (this.env.meta.get(ACTOR_INDEX_KEY) === this.partitions && this.indexComplete()) return;
    const started = this.clock.now();
    const actors = this.env.root.transactionSync(() => this.rebuildIndex());
    this.logger.info({ path: this.path, actors, ms: Math.round(this.clock.now() - started) }, 'built the partition index of the actor tables');
  }

  /**
   * Whether the index holds every actor of the tables: two O(1) counts, which see the running
   * transaction's writes. Outside this store the tables only ever gain actors (the journal never
   * deletes one), so equal counts mean the same actors.
   */
  private indexComplete(): boolean {
    const count = (db: Database) => (db.getStats() as { entryCount: number }).entryCount;
    return count(this.index) === count(this.env.heads);
  }

  /**
   * Inside a transaction, before the index is read: actors written to `actors` directly while
   * this store is open (a test, a tool) are indexed too, by a rebuild. In a read-only call a
   * rebuild that throws half-way stays half-done; the counts then differ and the next one redoes it.
   */
  private indexInTxn(): void {
    if (!this.indexComplete()) {
      const actors = this.rebuildIndex();
      this.logger.warn({ path: this.path, actors }, 'rebuilt the partition index: actors were written around the partition store');
    }
  }

  /** Inside a write transaction: the index anew from the tables' actor heads; returns the actor count. */
  private rebuildIndex(): number {
    const { heads, meta } = this.env;
    for (const k of [...this.index.getKeys({})]) void this.index.remove(k);
    // Read first, then write, as `apply` does.
    const actors = [...heads.getKeys({})] as Array<[kind: string, key: string]>;
    for (const [kind, key] of actors) void this.index.put([partitionOf(key, this.partitions), kind, key] satisfies IndexKey, true);
    void meta.put(ACTOR_INDEX_KEY, this.partitions);
    return actors.length;
  }

  /** Partition `p`'s actors, `[p, kind, key]` ascending by kind then key; call inside a transaction. */
  private indexedActors(p: number): IndexKey[] {
    return [...this.index.getKeys({ start: [p], end: [p + 1] })] as IndexKey[];
  }

  /**
   * Adds to `out` the keys of `kind` in partition `p` after `after`: at least the first `limit`
   * of them in JavaScript order, more only where the index's order may differ from it.
   */
  private indexedKeys(p: number, kind: string, after: string | undefined, limit: number, out: string[]): void {
    // From `after` itself when byte order cannot put a key greater in JavaScript order before it.
    const start = after !== undefined && !ORDER_IN_DOUBT.test(after) ? [p, kind, after] : [p, kind];
    let taken = 0;
    let inOrder = true;
    for (const k of this.index.getKeys({ start, end: [p + 1] })) {
      const [, kd, key] = k as IndexKey;
      if (kd !== kind) break;
      if (after !== undefined && !(key > after)) continue;
      out.push(key);
      if (inOrder && ORDER_IN_DOUBT.test(key)) inOrder = false;
      // Keys free of doubtful characters compare the same both ways: the rest sort after them.
      if (++taken >= limit && inOrder) break;
    }
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

  /** Sets partition `p`'s meta for the rest of the group; its `pmeta` record is written once, at the group's end. */
  private setKnown(p: number, next: PartitionMeta): void {
    if (!this.undo.has(p)) this.undo.set(p, this.known.get(p));
    this.known.set(p, next);
    this.dirty.add(p);
  }

  /** Inside the nested transaction whose calls changed them: one `pmeta` put per changed partition. */
  private writeDirtyMetas(): void {
    for (const p of this.dirty) void this.env.pmeta.put(p, this.known.get(p));
    this.dirty.clear();
    this.undo.clear();
  }

  /** The nested transaction was aborted: `known` goes back to what it committed. */
  private rollbackKnown(): void {
    for (const [p, meta] of this.undo) {
      if (meta === undefined) this.known.delete(p);
      else this.known.set(p, meta);
    }
    this.undo.clear();
    this.dirty.clear();
  }

  /**
   * Queues `body` in the open group (or opens one) and resolves with its result per the
   * durability setting once the group's transaction committed. `body` throws a `Refusal` when its
   * checks fail before it wrote anything; any other throw means it may have written part of its
   * change (`readOnly`: it writes nothing, so any throw is a refusal). A failed commit rejects
   * every call of the transaction.
   */
  private commit<T>(body: () => T, what: string, details: Record<string, unknown>, readOnly = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const call: Call = { body, readOnly, what, details, outcome: undefined, resolve: resolve as (value: unknown) => void, reject };
      if (this.open !== undefined) {
        this.open.calls.push(call);
        return;
      }
      const group: Group = { calls: [call] };
      let committed: Promise<unknown>;
      try {
        committed = this.env.root.transaction(() => this.runGroup(group));
      } catch (e) {
        reject(toWriteError(e, this.path, what, details));
        return;
      }
      this.open = group;
      this.inFlight++;
      // Taken now, not after the commit: it must be the flush of *this* group's transaction
      // (calls joining the group later run in that same transaction).
      const flushed = this.durability === 'flush' ? flushedNow(this.env) : undefined;
      committed.then(
        async () => {
          if (flushed) await flushed;
          this.env.lastCommitFailed = false;
          this.settled();
          for (const c of group.calls) {
            const o = c.outcome;
            if (o?.ok) c.resolve(o.value);
            else c.reject(toWriteError(o === undefined ? new Error('the call did not run') : o.error, this.path, c.what, c.details));
          }
        },
        async (e: unknown) => {
          if (isCommitFailure(e)) {
            this.env.lastCommitFailed = true;
            this.known.clear();
          }
          const cause = await commitCause(e, (ms) => new Promise((r) => this.arm(r, ms)));
          this.settled();
          for (const c of group.calls) c.reject(toWriteError(cause, this.path, c.what, c.details));
        },
      );
    });
  }

  /**
   * The group's transaction callback: every call in one nested transaction; if one throws
   * half-way, that transaction is aborted and each call runs again in a nested transaction of
   * its own, so the others keep their outcome and the thrower leaves nothing behind.
   */
  private runGroup(group: Group): void {
    if (this.open === group) this.open = undefined; // later calls open the next group
    const { root } = this.env;
    try {
      void root.childTransaction(() => {
        for (const call of group.calls) runCall(call);
        this.writeDirtyMetas();
      });
      return;
    } catch {
      this.rollbackKnown();
    }
    for (const call of group.calls) {
      call.outcome = undefined;
      try {
        void root.childTransaction(() => {
          runCall(call);
          this.writeDirtyMetas();
        });
      } catch (e) {
        this.rollbackKnown();
        call.outcome = { ok: false, error: e };
      }
    }
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

/** A call's own checks refused it before it wrote anything: it fails alone, the group goes on. */
class Refusal {
  constructor(readonly error: TroupeError) {}
}

/** One store call waiting in a group, and how it ended inside the transaction. */
interface Call {
  body: () => unknown;
  readOnly: boolean;
  what: string;
  details: Record<string, unknown>;
  outcome: { ok: true; value: unknown } | { ok: false; error: unknown } | undefined;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** The calls that run in one transaction callback, in call order. */
interface Group {
  calls: Call[];
}

/** Runs one call inside a write transaction; rethrows only what may have left a partial write. */
function runCall(call: Call): void {
  try {
    call.outcome = { ok: true, value: call.body() };
  } catch (e) {
    if (e instanceof Refusal) call.outcome = { ok: false, error: e.error };
    else if (call.readOnly) call.outcome = { ok: false, error: e };
    else throw e;
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

/** The stored [id, incarnation] pairs, each checked: a malformed pair is skipped, never trusted. */
function livesFrom(v: unknown): Map<number, number> {
  const out = new Map<number, number>();
  if (!Array.isArray(v)) return out;
  for (const pair of v as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2) continue;
    const [id, incarnation] = pair as unknown[];
    if (Number.isInteger(id) && (id as number) >= 0 && (id as number) <= 1023 && Number.isSafeInteger(incarnation) && (incarnation as number) >= 0) out.set(id as number, incarnation as number);
  }
  return out;
}
