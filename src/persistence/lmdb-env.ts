import { resolve } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';

/**
 * The node's LMDB environment as this thread sees it: one environment per node process,
 * opened once per thread. lmdb-js shares the native environment between the threads of a
 * process, but each `open()` gets its own write queue, so every journal, backup and tool in
 * a thread goes through `acquireEnv` and shares one handle (reference counted).
 *
 * ```
 * environment (data.mdb)
 * ├─ events     [kind, key, seq]  → [v, event]            ascending per actor
 * ├─ snapshots  [kind, key]       → [seq, v, state]       latest only
 * ├─ replies    [kind, key, n]    → [msgId, ok, value, error]   n grows per actor; each new
 * │                                                        one removes n - recentReplies
 * ├─ heads      [kind, key]       → [lastSeq, lastReplyN, term?, node?]  where each log ends
 * │                                                        and the actor's epoch (absent in
 * │                                                        older records: epoch zero); one
 * │                                                        point read per write, no cursor
 * ├─ meta       name              → value                 node metadata (incarnation, …)
 * ├─ plog       [p, seq]          → [term, node, data?, start?]   partition p's replicated log:
 * │                                                        entry seq written in epoch
 * │                                                        (term, node); data: the turn's
 * │                                                        ActorWrites; start: an epoch's
 * │                                                        opening (LmdbPartitionStore)
 * ├─ due        [kind, key]       → wall ms               an actor's earliest pending reminder
 * ├─ dueAt      [due, kind, key]  → null                  the same, ordered by due: what a
 * │                                                        node wakes (docs/sessions-lifecycle.md)
 * └─ pmeta      p                 → PartitionMeta         promise, epoch history, last, commit,
 *                                                          applied, clean: one record per
 *                                                          partition, written in the same
 *                                                          transaction as its plog change
 * ```
 */
export interface LmdbEnv {
  readonly path: string;
  readonly root: RootDatabase;
  readonly events: Database;
  readonly snapshots: Database;
  readonly replies: Database;
  readonly heads: Database;
  readonly meta: Database;
  readonly plog: Database;
  readonly pmeta: Database;
  readonly due: Database;
  readonly dueAt: Database;
  /** Set when the last commit failed (say, disk full), cleared by the next one that succeeds. */
  lastCommitFailed: boolean;
}

/**
 * `meta` key: the OS boot a replicated store last committed under (replication's unclean rule),
 * or RESTORED_FROM_BACKUP after `troupe restore`: either way the replication driver compares it
 * at start and marks the store's partitions unclean when it may have lost acknowledged commits.
 */
export const REPLICATION_BOOT_KEY = 'replication.boot';
/** Membership's known lives (`PartitionStore.knownLives`): [id, incarnation] pairs. */
export const MEMBER_LIVES_KEY = 'membership.lives';
/** Where `LmdbPartitionStore.probeWrite` writes, and removes, its probe. */
export const STORAGE_PROBE_KEY = 'storage.probe';
export const RESTORED_FROM_BACKUP = 'restored-from-backup';

export interface LmdbEnvOptions {
  /**
   * Initial map size in bytes. lmdb-js grows the map by itself when a transaction needs more
   * pages (its `mdb_page_alloc` doubles the map), so this only saves a few remaps; the disk is
   * the real limit and surfaces as ERR_STORAGE_FULL. Ignored when the environment is already
   * open in this thread.
   */
  mapSize?: number;
  /**
   * Commit without fsync (LMDB's MDB_NOSYNC): a commit costs ~0.06 ms instead of ~2.5 ms here,
   * and the owner syncs in the background (`root.sync`). A process crash loses nothing (the
   * page cache holds every commit); an OS crash or power loss may lose the last unsynced
   * commits. Only replication's 'replicated' durability asks for it, where W copies on other
   * hosts stand in for the disk. Ignored when the environment is already open in this thread.
   */
  noSync?: boolean;
}

interface Held {
  env: LmdbEnv;
  refs: number;
}

// Per thread: module state is per worker, which is exactly the sharing we want.
const held = new Map<string, Held>();

export function acquireEnv(path: string, options: LmdbEnvOptions = {}): LmdbEnv {
  const abs = resolve(path);
  const h = held.get(abs);
  if (h) {
    h.refs++;
    return h.env;
  }
  const root = open({
    path: abs,
    maxDbs: 12,
    // Why off: with event-turn batching lmdb-js queues a hidden "batch start" write whose
    // promise nobody holds; when a commit fails (disk full) that promise rejects unhandled and
    // takes the process down. Transactions still batch: every `transaction()` queued before the
    // write thread picks them up runs in the same LMDB transaction.
    eventTurnBatching: false,
    ...(options.mapSize === undefined ? {} : { mapSize: options.mapSize }),
    ...(options.noSync === true && { noSync: true }),
  });
  const env: LmdbEnv = {
    path: abs,
    root,
    events: root.openDB('events', {}),
    snapshots: root.openDB('snapshots', {}),
    replies: root.openDB('replies', {}),
    heads: root.openDB('heads', {}),
    meta: root.openDB('meta', {}),
    plog: root.openDB('plog', {}),
    pmeta: root.openDB('pmeta', {}),
    due: root.openDB('due', {}),
    dueAt: root.openDB('dueAt', {}),
    lastCommitFailed: false,
  };
  held.set(abs, { env, refs: 1 });
  return env;
}

/**
 * Drops one reference; the last one closes the environment (lmdb-js waits for its queued
 * writes). Resolves `false` when lmdb-js did not finish within `timeoutMs`, a safety net: its
 * close waits on promises that a failed commit can leave pending forever.
 */
export function releaseEnv(env: LmdbEnv, timeoutMs: number, arm: (fn: () => void, ms: number) => () => void): Promise<boolean> {
  const h = held.get(env.path);
  if (!h || h.env !== env) return Promise.resolve(true);
  if (--h.refs > 0) return Promise.resolve(true);
  held.delete(env.path);
  return new Promise<boolean>((resolveClose) => {
    const disarm = arm(() => resolveClose(false), timeoutMs);
    // lmdb-js's close waits for the flush of the last transaction, which never comes when that
    // commit failed; an empty transaction commits without writing a page (so even on a full
    // disk) and becomes the last one.
    const settled = env.lastCommitFailed ? env.root.transaction(() => undefined).then(noop, noop) : Promise.resolve();
    void settled
      .then(() => env.root.close())
      .then(
        () => {
          disarm();
          resolveClose(true);
        },
        () => {
          disarm();
          resolveClose(true);
        },
      );
  });
}

function noop(): void {}

/**
 * Resolves once the transaction holding the writes queued so far is flushed to disk. Must be
 * called right after queueing: lmdb-js's `flushed` reads its current flush promise lazily, so
 * a later call would wait for a later transaction (correct, but a whole batch slower).
 */
export function flushedNow(env: LmdbEnv): Promise<void> {
  return new Promise<void>((resolveFlush) => {
    env.root.flushed.then(
      () => resolveFlush(),
      () => resolveFlush(),
    );
  });
}
