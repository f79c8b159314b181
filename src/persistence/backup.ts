import { constants as fsc } from 'node:fs';
import { copyFile, mkdir, open as openFile, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { systemClock } from '../core/clock.ts';
import { invalidOption, troupeError } from '../core/errors.ts';
import type { JournalConfig } from './journal.ts';
import { acquireEnv, releaseEnv, type LmdbEnv } from './lmdb-env.ts';
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
  let env: LmdbEnv;
  try {
    env = acquireEnv(config.path);
  } catch (e) {
    throw toReadError(e, config.path, 'opening the environment for backup');
  }
  try {
    await backupEnv(env, toDir, options);
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
    throw troupeError('ERR_JOURNAL_WRITE', `backup target ${dir} already holds ${DATA_FILE}`, { path: dir });
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
 * Puts a backup in place as the data directory `toPath`, before the node opens it. The file is
 * copied beside the target and renamed, so a crash mid-restore leaves no half-copied
 * environment; the stale lock file is removed (LMDB rebuilds it on open).
 */
export async function restore(fromDir: string, toPath: string, options: RestoreOptions = {}): Promise<void> {
  if (typeof fromDir !== 'string' || fromDir.length === 0) throw invalidOption('fromDir', 'must be a non-empty string', fromDir);
  if (typeof toPath !== 'string' || toPath.length === 0) throw invalidOption('toPath', 'must be a non-empty string', toPath);
  const source = join(resolve(fromDir), DATA_FILE);
  const dir = resolve(toPath);
  const target = join(dir, DATA_FILE);
  if (!(await exists(source))) throw troupeError('ERR_JOURNAL_READ', `no backup at ${fromDir} (missing ${DATA_FILE})`, { path: fromDir });
  if (!options.overwrite && (await exists(target))) {
    throw troupeError(
      'ERR_JOURNAL_WRITE',
      `${dir} already holds an environment; to replace it pass { overwrite: true } (CLI: troupe restore --force)`,
      { path: dir },
    );
  }
  const partial = target + '.restoring';
  try {
    await mkdir(dir, { recursive: true });
    await copyFile(source, partial, fsc.COPYFILE_FICLONE);
    await fsyncPath(partial);
    await rm(join(dir, LOCK_FILE), { force: true });
    await rename(partial, target);
    await fsyncPath(dir);
  } catch (e) {
    await rm(partial, { force: true }).catch(() => undefined);
    throw toWriteError(e, dir, `restore of ${fromDir} to ${dir}`);
  }
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
