import { constants as fsc } from 'node:fs';
import { copyFile, mkdir, open as openFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { systemClock } from '../core/clock.ts';
import { invalidOption, isTroupeError, troupeError, type TroupeError } from '../core/errors.ts';
import { lockDataDir } from '../node/data-dir-lock.ts';
import type { JournalConfig } from './journal.ts';
import { acquireEnv, releaseEnv, REPLICATION_BOOT_KEY, RESTORED_FROM_BACKUP, type LmdbEnv } from './lmdb-env.ts';
import { toReadError, toWriteError } from './storage-errors.ts';

export interface BackupOptions {
  /**
   * Rewrite the copy without free pages (LMDB's MDB_CP_COMPACT): smaller, slower, and it
   * holds its read transaction longer. Default false.
   */
  compact?: boolean;
}

export interface RestoreOptions {
  /** Replace an environment already at `toPath`. Default false: restoring over live data is refused. */
  overwrite?: boolean;
}

const DATA_FILE = 'data.mdb';
const LOCK_FILE = 'lock.mdb';

/**
 * Hot, consistent backup of a node's LMDB environment while it serves writes. LMDB copies the
 * environment under one read transaction (`mdb_env_copy2`, run off the JS thread by lmdb-js's
 * `backup`), so the copy is exactly the state of one commit: every write acknowledged before
 * the call is in it, and no write is in it by halves. Writers are blocked only while the meta
 * page is read.
 *
 * The source must be a troupe journal (see "How troupe recognises its own directories" below);
 * anything else is refused with ERR_NOT_A_DATA_DIR and nothing is created there.
 *
 * @example
 *   await backup({ type: 'lmdb', path: 'data/node-1' }, 'backups/node-1-2024-05-01');
 *   // later, with the node stopped:
 *   await restore('backups/node-1-2024-05-01', 'data/node-1');
 */
export async function backup(config: JournalConfig, toDir: string, options: BackupOptions = {}): Promise<void> {
  if (config.type !== 'lmdb') throw invalidOption('config.type', "must be 'lmdb' to back up", config.type);
  if (typeof config.path !== 'string' || config.path.length === 0) {
    throw invalidOption('config.path', 'must be a non-empty string', config.path);
  }
  const path = resolve(config.path);
  // Checked before LMDB sees the path: lmdb-js creates a missing directory and an empty
  // environment in it, and crashes the process on a file that is not LMDB.
  const why = await notAJournal(path);
  if (why !== undefined) throw notADataDir(dataDirFlag(path, 'config.path'), why, path);
  let env: LmdbEnv;
  try {
    // Through the thread's shared handle, not a read-only one of its own: lmdb-js shares the
    // native environment within a process, and closing a second handle while a journal in this
    // process writes to it crashed the process. (So an LMDB environment that is not troupe's gets
    // troupe's empty databases added before the marker check below refuses it.)
    env = acquireEnv(path);
  } catch (e) {
    throw toReadError(e, path, 'opening the environment for backup');
  }
  try {
    if (env.meta.get(JOURNAL_FORMAT_KEY) === undefined) {
      throw notADataDir(dataDirFlag(path, 'config.path'), 'an LMDB environment, but not a troupe journal (no journal-format marker)', path);
    }
    await backupEnv(env, toDir, options);
  } finally {
    await releaseEnv(env, 10_000, (fn, ms) => {
      const t = systemClock.setTimeout(fn, ms);
      return () => systemClock.clearTimeout(t);
    });
  }
}

/**
 * A restored store is behind what its node acknowledged since the backup: replication must not
 * count it in a fencing quorum until a primary has caught it up (REPLICATION.md, Unclean
 * replicas). The replication driver reads this mark at start.
 */
async function markRestored(dir: string): Promise<void> {
  const env = acquireEnv(dir);
  try {
    await env.meta.put(REPLICATION_BOOT_KEY, RESTORED_FROM_BACKUP);
  } finally {
    await releaseEnv(env, 10_000, (fn, ms) => {
      const t = systemClock.setTimeout(fn, ms);
      return () => systemClock.clearTimeout(t);
    });
  }
}

/** Copies an open environment into `toDir` (created if missing; must not hold a backup yet). */
export async function backupEnv(env: LmdbEnv, toDir: string, options: BackupOptions = {}): Promise<void> {
  if (typeof toDir !== 'string' || toDir.length === 0) throw invalidOption('toDir', 'must be a non-empty string', toDir);
  const dir = resolve(toDir);
  if (await exists(join(dir, DATA_FILE))) {
    throw troupeError('ERR_JOURNAL_WRITE', `--to ${dir} already holds a backup (${DATA_FILE}); choose a new directory`, { path: dir });
  }
  try {
    await mkdir(dir, { recursive: true });
    // The environment is a directory, so LMDB writes <dir>/data.mdb itself.
    await env.root.backup(dir, options.compact ?? false);
    await fsyncPath(join(dir, DATA_FILE));
    await fsyncPath(dir);
  } catch (e) {
    throw toWriteError(e, dir, `backup of ${env.path} to ${dir}`);
  }
}

/**
 * Puts a backup in place as the journal directory `toPath` (a node's `<data dir>/journal`), before
 * the node opens it. Refused while a node holds the data directory's lock, and the lock is held
 * while the copy runs so no node starts on a half-restored directory. The file is copied beside
 * the target and renamed, so a crash mid-restore leaves no half-copied environment; the stale
 * LMDB lock file is removed (LMDB rebuilds it on open).
 */
export async function restore(fromDir: string, toPath: string, options: RestoreOptions = {}): Promise<void> {
  if (typeof fromDir !== 'string' || fromDir.length === 0) throw invalidOption('fromDir', 'must be a non-empty string', fromDir);
  if (typeof toPath !== 'string' || toPath.length === 0) throw invalidOption('toPath', 'must be a non-empty string', toPath);
  const from = resolve(fromDir);
  const source = join(from, DATA_FILE);
  const why = await notAJournal(from);
  if (why !== undefined) throw notADataDir(`--from ${from}`, why.replace(/^no troupe journal there/, 'not a troupe backup'), from);
  const dir = resolve(toPath);
  const target = join(dir, DATA_FILE);
  // First the lock: a running node is the more important refusal, and holding it keeps a node
  // from starting on a half-restored directory.
  const lock = await lockDataDir(dataDirOf(dir));
  const partial = target + '.restoring';
  try {
    if (!options.overwrite && (await exists(target))) {
      throw troupeError(
        'ERR_JOURNAL_WRITE',
        `${dataDirFlag(dir, 'toPath')} already holds an environment (${target}); to replace it pass { overwrite: true } (CLI: troupe restore --force)`,
        { path: dir },
      );
    }
    await mkdir(dir, { recursive: true });
    await copyFile(source, partial, fsc.COPYFILE_FICLONE);
    await fsyncPath(partial);
    await rm(join(dir, LOCK_FILE), { force: true });
    await rename(partial, target);
    await fsyncPath(dir);
    await markRestored(dir);
  } catch (e) {
    await rm(partial, { force: true }).catch(() => undefined);
    if (isTroupeError(e)) throw e;
    throw toWriteError(e, dir, `restore of ${fromDir} to ${dir}`);
  } finally {
    await lock.release();
  }
}

/*
 * How troupe recognises its own directories (checked before LMDB opens anything):
 *
 * - A journal is an LMDB environment directory: `data.mdb` whose first page is LMDB's meta page
 *   (the magic 0xBEEFC0DE right after the page header), and whose `meta` database holds the
 *   journal-format marker `["troupe", "journal-format"]`, which LmdbJournal writes when it first
 *   opens an environment (lmdb-journal.ts, FORMAT_KEY).
 * - A node's data directory is one whose `journal/` is such a journal. `identity.json` beside it
 *   is not required: a directory just restored has none until its node first starts.
 * - A backup is a directory holding such a `data.mdb` (what `backup` writes), nothing else.
 *   `restore` checks the file and its magic only: opening the copy to read the marker would
 *   write LMDB's lock file into the backup (which may sit on read-only media).
 */
const JOURNAL_DIR = 'journal'; // a node's journal lives in <data dir>/journal (troupe-node.ts JOURNAL_DIR)
const JOURNAL_FORMAT_KEY = ['troupe', 'journal-format'];
const LMDB_MAGIC = 0xbeefc0de;

/** Why `dir` holds no LMDB environment, or undefined when it does. Creates nothing. */
async function notAJournal(dir: string): Promise<string | undefined> {
  const file = join(dir, DATA_FILE);
  let head: Buffer;
  try {
    const handle = await openFile(file, 'r');
    try {
      head = Buffer.alloc(64);
      const { bytesRead } = await handle.read(head, 0, 64, 0);
      head = head.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return `no troupe journal there (expected ${file})`;
    if (code === 'EISDIR') return `${file} is a directory, not an LMDB file`;
    throw toReadError(e, file, 'reading the journal header');
  }
  // The page header is 16 bytes in LMDB 0.9 and 24 in the format lmdb-js writes.
  const magicAt = (offset: number): boolean => head.length >= offset + 4 && head.readUInt32LE(offset) === LMDB_MAGIC;
  if (!magicAt(16) && !magicAt(24)) return `${file} is not an LMDB file`;
  return undefined;
}

/** The node's data directory for a journal path: the parent of `<data dir>/journal`. */
function dataDirOf(journalPath: string): string {
  return basename(journalPath) === JOURNAL_DIR ? dirname(journalPath) : journalPath;
}

/** How the user named the directory: `--data-dir D` for a node's journal, else the API option and path. */
function dataDirFlag(journalPath: string, option: string): string {
  return basename(journalPath) === JOURNAL_DIR ? `--data-dir ${dirname(journalPath)}` : `${option} ${journalPath}`;
}

function notADataDir(flag: string, why: string, path: string): TroupeError {
  return troupeError('ERR_NOT_A_DATA_DIR', `${flag}: ${why}`, { path });
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await openFile(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
