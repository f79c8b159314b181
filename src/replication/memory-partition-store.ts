import { troupeError } from '../core/errors.ts';
import type { ActorWrite, DueActor } from '../persistence/journal.ts';
import { epochAfter, fenced } from '../persistence/journal-checks.ts';
import { MemoryJournal } from '../persistence/memory-journal.ts';
import { truncateHistory, ZERO_EPOCH, type Epoch, type Position } from './epoch.ts';
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

export interface MemoryPartitionStoreOptions {
  /** The actor tables; a fresh `MemoryJournal` when absent (then `close()` closes it too). */
  actors?: MemoryJournal;
  /** Partition count keys map to (`partitionOf`), as the replication driver's; default PARTITIONS. */
  partitions?: number;
}

/**
 * A `PartitionStore` in this thread's memory: the twin of `LmdbPartitionStore` that tests and
 * nodes without a data directory use (the contract suite in test/replication runs against both).
 * Every call joins one queue, so calls take effect in call order even though `apply` has to read
 * the actor tables first; each checks everything before it changes anything.
 *
 * `applied` is the store's own: `apply` moves it, and `persist` keeps the stored value whatever
 * `meta.applied` says. A driver that persists a meta built before its last `apply` resolved would
 * otherwise move it back, and the next `apply` would write those entries' events twice.
 *
 * @example
 *   const store = new MemoryPartitionStore();
 *   const e = { term: 1, node: 1 };
 *   const entry = { seq: 1, epoch: e, data: [{ kind: 'cart', key: 'c1', events: [{ seq: 1, v: 1, event: 'tea' }] }] };
 *   await store.persist(7, { entries: [entry], meta: { ...emptyPartitionMeta(), promised: e, last: { epoch: e, seq: 1 }, commit: 1 } });
 *   await store.apply(7, 1);
 *   await store.actors.read('cart', 'c1'); // { events: [{ seq: 1, v: 1, event: 'tea' }], … }
 */
export class MemoryPartitionStore implements PartitionStore {
  readonly actors: MemoryJournal;
  readonly durability = 'commit' as const;
  /** Counted, for tests of who waits for a sync; nothing to flush in memory. */
  syncs = 0;

  sync(): Promise<void> {
    this.syncs++;
    return Promise.resolve();
  }
  readonly partitions: number;
  private readonly ownsActors: boolean;
  private readonly metas = new Map<number, PartitionMeta>();
  /** Entry seq s of partition p sits at index s - base - 1 (logs start after the base and have no holes). */
  private readonly logs = new Map<number, LogEntry[]>();
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(options: MemoryPartitionStoreOptions = {}) {
    this.ownsActors = options.actors === undefined;
    this.actors = options.actors ?? new MemoryJournal();
    this.partitions = options.partitions ?? PARTITIONS;
  }

  loadAll(): Promise<Map<number, PartitionMeta>> {
    return this.queue(() => {
      const out = new Map<number, PartitionMeta>();
      for (const [p, meta] of this.metas) out.set(p, { ...meta });
      return out;
    });
  }

  persist(p: number, change: PersistChange): Promise<void> {
    return this.queue(() => {
      const stored = this.metas.get(p) ?? emptyPartitionMeta();
      const bad = badPersistShape(p, change) ?? badAgainstStored(p, change, stored);
      if (bad) throw bad;
      let log = this.logs.get(p);
      if (log === undefined) this.logs.set(p, (log = []));
      const base = baseOf(stored).seq;
      if (change.truncateAfter !== undefined && change.truncateAfter - base < log.length) log.length = change.truncateAfter - base;
      if (change.entries) for (const e of change.entries) log.push(e);
      this.metas.set(p, metaAfterPersist(change.meta, stored));
    });
  }

  entries(p: number, after: number, limit: number): Promise<LogEntry[]> {
    return this.queue(() => {
      const stored = this.metas.get(p) ?? emptyPartitionMeta();
      const bad = badEntriesRange(p, after, limit) ?? badEntriesAfterBase(p, after, stored);
      if (bad) throw bad;
      const base = baseOf(stored).seq;
      return (this.logs.get(p) ?? []).slice(after - base, after - base + limit);
    });
  }

  truncatePrefix(p: number, upTo: number): Promise<Position> {
    return this.queue(() => {
      const bad = badApplyArgs(p, upTo);
      if (bad) throw bad;
      const stored = this.metas.get(p) ?? emptyPartitionMeta();
      const base = baseOf(stored);
      if (upTo <= base.seq) return base;
      const beyond = badTruncateTarget(p, upTo, stored);
      if (beyond) throw beyond;
      const next = baseAt(stored, upTo);
      const log = this.logs.get(p) ?? [];
      this.logs.set(p, log.slice(upTo - base.seq));
      this.metas.set(p, { ...stored, base: next });
      return next;
    });
  }

  snapshot(p: number): Promise<PartitionSnapshot> {
    return this.queue(() => {
      const stored = this.metas.get(p) ?? emptyPartitionMeta();
      const applied = stored.applied;
      const base = baseAt(stored, applied);
      const actors = this.actors.images((_kind, key) => partitionOf(key, this.partitions) === p);
      return { base, history: truncateHistory(stored.history, applied), actors };
    });
  }

  install(p: number, snap: PartitionSnapshot, meta: PartitionMeta): Promise<InstallResult> {
    return this.queue(() => {
      const bad = badInstall(p, snap, meta) ?? badForeignActor(p, snap, this.partitions);
      if (bad) throw bad;
      const stored = this.metas.get(p) ?? emptyPartitionMeta();
      if (stored.applied >= snap.base.seq) return { installed: false, applied: stored.applied };
      for (const a of this.actors.images((_kind, key) => partitionOf(key, this.partitions) === p)) this.actors.replace(a.kind, a.key, undefined);
      for (const a of snap.actors) this.actors.replace(a.kind, a.key, a);
      this.logs.set(p, []);
      this.metas.set(p, metaAfterInstall(meta, snap));
      return { installed: true, applied: snap.base.seq };
    });
  }

  actorKeys(kind: string, ps: ReadonlySet<number>, after: string | undefined, limit: number): Promise<string[]> {
    const bad = badActorKeysArgs(kind, ps, after, limit);
    if (bad) return Promise.reject(bad);
    return this.queue(() => {
      const keys: string[] = [];
      // `images` with a selector that keeps nothing: a walk over the keys, no rows copied.
      this.actors.images((k, key) => {
        if (k === kind && (after === undefined || key > after) && ps.has(partitionOf(key, this.partitions))) keys.push(key);
        return false;
      });
      return pageOf(keys, limit);
    });
  }

  dueActors(ps: ReadonlySet<number>, before: number, limit: number): Promise<DueActor[]> {
    return this.queue(async () => {
      const all = await this.actors.dueActors(before, Number.MAX_SAFE_INTEGER);
      return all.filter((a) => ps.has(partitionOf(a.key, this.partitions))).slice(0, Math.max(0, limit));
    });
  }

  apply(p: number, upTo: number): Promise<number> {
    return this.queue(async () => {
      const bad = badApplyArgs(p, upTo);
      if (bad) throw bad;
      const stored = this.metas.get(p) ?? emptyPartitionMeta();
      if (upTo <= stored.applied) return stored.applied;
      const beyond = badApplyTarget(p, upTo, stored);
      if (beyond) throw beyond;
      const log = this.logs.get(p) ?? [];
      const base = baseOf(stored).seq;
      const writes: ActorWrite[] = [];
      const seqs: number[] = [];
      for (let seq = stored.applied + 1; seq <= upTo; seq++) {
        const entry = log[seq - base - 1]!;
        if (entry.data === undefined) continue; // a start entry opens an epoch and writes no actor
        for (const w of entry.data as readonly ActorWrite[]) {
          writes.push({ ...w, epoch: entry.epoch });
          seqs.push(seq);
        }
      }
      // MemoryJournal has no transaction: check every write against the tables first, so a
      // refused apply leaves them exactly as they were (the applied prefix, nothing more).
      const refused = await this.firstRefused(writes);
      if (refused) throw applyFailed(p, seqs[refused.index]!, refused.error);
      const results = await this.actors.writeMany(writes);
      const failed = results.findIndex((r) => r !== null);
      if (failed >= 0) throw applyFailed(p, seqs[failed]!, results[failed]);
      this.metas.set(p, { ...stored, applied: upTo, commit: Math.max(stored.commit, upTo) });
      return upTo;
    });
  }

  private boot: string | undefined;

  lastBoot(): string | undefined {
    return this.boot;
  }

  private lives: ReadonlyMap<number, number> = new Map();

  knownLives(): ReadonlyMap<number, number> {
    return this.lives;
  }

  recordLives(lives: ReadonlyMap<number, number>): Promise<void> {
    return this.queue(() => {
      this.lives = new Map(lives);
    });
  }

  probeWrite(): Promise<void> {
    return this.queue(() => undefined);
  }

  recordBoot(bootId: string): Promise<void> {
    return this.queue(() => {
      this.boot = bootId;
    });
  }

  close(): Promise<void> {
    if (this.closed) return this.tail.then(noop);
    const closing = this.queue(async () => {
      if (this.ownsActors) await this.actors.close();
    });
    this.closed = true; // after queueing: calls made before close() still run
    return closing;
  }

  /** Runs `op` after every earlier call has settled; a failed call does not stop the queue. */
  private queue<T>(op: () => T | Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', 'partition store is closed'));
    const run = this.tail.then(op);
    this.tail = run.then(noop, noop);
    return run;
  }

  /** The first write `MemoryJournal` would refuse, by its own rules (fence, continuity, snapshot), replayed on a scratch head per actor. */
  private async firstRefused(writes: readonly ActorWrite[]): Promise<{ index: number; error: Error } | undefined> {
    const heads = new Map<string, { last: number; epoch: Epoch }>();
    for (let i = 0; i < writes.length; i++) {
      const w = writes[i]!;
      const refuse = (message: string) => ({ index: i, error: troupeError('ERR_JOURNAL_WRITE', message) });
      if (w === null || typeof w !== 'object' || typeof w.kind !== 'string' || typeof w.key !== 'string' || !Array.isArray(w.events)) {
        return refuse('an actor write must have a kind, a key and an events array');
      }
      const id = JSON.stringify([w.kind, w.key]);
      let head = heads.get(id);
      if (head === undefined) {
        const h = await this.actors.read(w.kind, w.key);
        head = { last: h.events[h.events.length - 1]?.seq ?? h.snapshot?.seq ?? 0, epoch: h.epoch ?? ZERO_EPOCH };
      }
      const stale = fenced(w, head.epoch);
      if (stale) return { index: i, error: stale };
      for (let j = 0; j < w.events.length; j++) {
        if (w.events[j]?.seq !== head.last + 1 + j) return refuse(`event seq ${w.events[j]?.seq} does not follow ${head.last + j} for ${w.kind}/${w.key}`);
      }
      const last = head.last + w.events.length;
      if (w.snapshot && w.snapshot.seq > last) return refuse(`snapshot seq ${w.snapshot.seq} is past the last event ${last} for ${w.kind}/${w.key}`);
      heads.set(id, { last, epoch: epochAfter(w, head.epoch) });
    }
    return undefined;
  }
}

function noop(): void {}
