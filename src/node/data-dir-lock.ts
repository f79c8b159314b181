import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, mkdir, open, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { systemClock, type Clock } from '../core/clock.ts';
import { troupeError, type TroupeError } from '../core/errors.ts';

/** The lock file in a node's data directory. */
export const LOCK_FILE = 'troupe.lock';
/** Held only while a stale lock is being replaced, so two processes never delete each other's fresh lock. */
const TAKEOVER_FILE = 'troupe.lock.takeover';
/** ms after which a takeover file is itself stale: a takeover takes a few ms, so its holder died mid-way. */
const TAKEOVER_STALE_MS = 10_000;
/** Rounds of link → inspect → take over before giving up on a lock that keeps changing hands. */
const ATTEMPTS = 4;

/** What the lock file holds: enough to tell a live holder from a dead one. */
export interface LockRecord {
  pid: number;
  /** Random per acquisition: release() removes the file only while it is still ours. */
  token: string;
  host: string;
  /**
   * The holder's start time in clock ticks since boot (`/proc/<pid>/stat` field 22), where the
   * platform has it: a pid reused by another process (a container restarted as pid 1) has a
   * different start time, so its lock is recognised as stale.
   */
  started?: string;
}

/**
 * An exclusive lock on a node's data directory, held from `NodeIdentity.load` to the node's stop.
 * Two nodes on one directory would both append to one journal and diverge; the second is refused
 * with ERR_DATA_DIR_IN_USE.
 *
 * Node has no flock, so the lock is a file created atomically: the record is written to a file of
 * our own and hard-linked to `troupe.lock` (link fails with EEXIST if the lock exists, and the
 * lock is never visible half-written). A lock whose holder is dead (ESRCH for its pid, or the pid
 * now belongs to a process with another start time) is stale: a SIGKILLed node leaves one, and
 * the next start replaces it. Replacing happens under a second exclusive file, re-checking the
 * lock there, so of two processes that both found it stale only one removes it, and neither ever
 * removes a lock the other has just taken. A lock taken on another host (a shared file system)
 * cannot be checked and counts as held.
 *
 * @example
 *   const lock = await lockDataDir('data/node-1'); // ERR_DATA_DIR_IN_USE if a live node has it
 *   try { ... } finally { await lock.release(); }
 */
export async function lockDataDir(dataDir: string, clock: Clock = systemClock): Promise<DataDirLock> {
  const dir = resolve(dataDir);
  await mkdir(dir, { recursive: true });
  const lockPath = join(dir, LOCK_FILE);
  const record: LockRecord = { pid: process.pid, token: randomBytes(12).toString('hex'), host: hostname() };
  const started = await processStart(process.pid);
  if (started !== undefined) record.started = started;
  const mine = join(dir, `${LOCK_FILE}.${record.token}`);
  await writeFile(mine, JSON.stringify(record));
  try {
    let holder: LockRecord | undefined;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      if (await createExclusive(mine, lockPath)) return new DataDirLock(dir, lockPath, record);
      const seen = await readLock(lockPath);
      if (seen === 'missing') continue; // released between our link and our read: try again
      if (seen !== 'unreadable' && (await isLive(seen))) throw inUse(dir, seen);
      holder = seen === 'unreadable' ? undefined : seen;
      await takeOver(dir, lockPath, seen, clock);
    }
    throw inUse(dir, holder, 'the lock changed hands while this process tried to take it');
  } finally {
    await unlink(mine).catch(() => undefined);
  }
}

export class DataDirLock {
  private released = false;

  /** @internal */
  constructor(
    readonly dir: string,
    readonly path: string,
    readonly record: LockRecord,
  ) {
    heldLocks.add(this);
    ensureExitHook();
  }

  /** Removes the lock file if it is still ours. Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    heldLocks.delete(this);
    const seen = await readLock(this.path);
    if (typeof seen === 'object' && seen.token === this.record.token) await unlink(this.path).catch(() => undefined);
  }

  /** @internal Synchronous release for process exit, when no promise will run. */
  releaseSync(): void {
    if (this.released) return;
    this.released = true;
    heldLocks.delete(this);
    try {
      const seen = JSON.parse(readFileSync(this.path, 'utf8')) as LockRecord;
      if (seen.token === this.record.token) unlinkSync(this.path);
    } catch {
      // Gone or unreadable: nothing of ours to remove.
    }
  }
}

/**
 * Whether the holder of a lock still runs. Unknown counts as live: refusing a start is
 * recoverable (the message names the file), two nodes on one journal are not.
 */
export async function isLive(holder: LockRecord): Promise<boolean> {
  if (holder.host !== hostname()) return true;
  try {
    process.kill(holder.pid, 0);
  } catch (e) {
    // EPERM: the pid exists but belongs to another user.
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  if (holder.started === undefined) return true;
  const started = await processStart(holder.pid);
  return started === undefined || started === holder.started;
}

/** The holder of the lock in `dataDir`, if the directory is locked by a live process. */
export async function liveHolder(dataDir: string): Promise<LockRecord | undefined> {
  const seen = await readLock(join(resolve(dataDir), LOCK_FILE));
  if (typeof seen !== 'object') return undefined;
  return (await isLive(seen)) ? seen : undefined;
}

export function inUse(dir: string, holder: LockRecord | undefined, why?: string): TroupeError {
  const who =
    holder === undefined
      ? 'another process'
      : `pid ${holder.pid}${holder.host !== hostname() ? ` on host ${holder.host}` : holder.pid === process.pid ? ' (this process)' : ''}`;
  return troupeError(
    'ERR_DATA_DIR_IN_USE',
    `data directory ${dir} is in use by ${who}${why ? ` (${why})` : ''}; stop that node, or use another --data-dir`,
    { path: dir, ...(holder && { pid: holder.pid, host: holder.host }) },
  );
}

/** Links our record to the lock path; false when a lock is already there. */
async function createExclusive(mine: string, lockPath: string): Promise<boolean> {
  try {
    await link(mine, lockPath);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // A file system without hard links: an exclusive create. A reader may then see the file
    // empty for a moment; takeOver re-reads it before removing anything.
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw e;
  }
  let handle;
  try {
    handle = await open(lockPath, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    await handle.writeFile(await readFile(mine));
  } finally {
    await handle.close();
  }
  return true;
}

async function readLock(path: string): Promise<LockRecord | 'missing' | 'unreadable'> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw e;
  }
  try {
    const r = JSON.parse(text) as Partial<LockRecord>;
    if (Number.isInteger(r.pid) && typeof r.token === 'string' && typeof r.host === 'string') return r as LockRecord;
  } catch {
    // fall through
  }
  // Torn by a crash mid-write (the lock is not fsynced: it only has to outlive a process).
  return 'unreadable';
}

/** Removes a stale lock, under the takeover file, only if it is still the one found stale. */
async function takeOver(dir: string, lockPath: string, stale: LockRecord | 'unreadable', clock: Clock): Promise<void> {
  const guard = join(dir, TAKEOVER_FILE);
  let handle;
  try {
    handle = await open(guard, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // Another process is replacing the lock right now; if it died doing so, clear its guard.
    const s = await stat(guard).catch(() => undefined);
    if (s !== undefined && clock.wallNow() - s.mtimeMs > TAKEOVER_STALE_MS) await unlink(guard).catch(() => undefined);
    return;
  }
  try {
    await handle.close();
    const now = await readLock(lockPath);
    const same = stale === 'unreadable' ? now === 'unreadable' : typeof now === 'object' && now.token === stale.token;
    if (same) await unlink(lockPath).catch(() => undefined);
  } finally {
    await unlink(guard).catch(() => undefined);
  }
}

/** A process's start time in clock ticks since boot, from /proc (Linux); undefined elsewhere. */
async function processStart(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19]; // field 22 overall: field 3 is fields[0]
  } catch {
    return undefined;
  }
}

// A node that exits without stop() (process.exit after a fatal error) leaves no lock behind.
const heldLocks = new Set<DataDirLock>();
let exitHooked = false;
function ensureExitHook(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.once('exit', () => {
    for (const lock of [...heldLocks]) lock.releaseSync();
  });
}
