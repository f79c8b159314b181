import { statfsSync } from 'node:fs';
import { isTroupeError, troupeError, type ErrorCode, type TroupeError } from '../core/errors.ts';

/** errno / LMDB return codes that mean "no room", whatever the platform's symbolic name. */
const ENOSPC = 28;
const EDQUOT = 122;
const EIO = 5;
const MDB_MAP_FULL = -30792;

/**
 * Below this many free bytes an EIO from a commit counts as a full disk. LMDB reports a short
 * `pwrite` (the file system ran out mid-write) as EIO, not ENOSPC, so the errno alone cannot
 * tell a full disk from a failing one; the free space at the time of the failure can.
 */
export const FULL_DISK_FREE_BYTES = 1024 * 1024;

export interface StorageFailure {
  /** errno or LMDB code when the cause carried one. */
  errno?: number | string;
  message: string;
}

/**
 * Pure classification: which catalog code a failed LMDB write maps to. `freeBytes` is the
 * space available on the environment's file system when the failure was seen (undefined when
 * it could not be measured).
 *
 * @example
 *   classifyWriteFailure({ errno: 28, message: 'No space left on device' }, undefined) // 'ERR_STORAGE_FULL'
 *   classifyWriteFailure({ errno: 5, message: 'Input/output error' }, 0)              // 'ERR_STORAGE_FULL'
 *   classifyWriteFailure({ errno: 5, message: 'Input/output error' }, 10e9)           // 'ERR_JOURNAL_WRITE'
 */
export function classifyWriteFailure(f: StorageFailure, freeBytes: number | undefined): ErrorCode {
  const e = f.errno;
  if (e === ENOSPC || e === EDQUOT || e === MDB_MAP_FULL || e === 'ENOSPC' || e === 'EDQUOT') return 'ERR_STORAGE_FULL';
  if (/MDB_MAP_FULL|No space left|quota exceeded/i.test(f.message)) return 'ERR_STORAGE_FULL';
  if ((e === EIO || e === 'EIO') && freeBytes !== undefined && freeBytes < FULL_DISK_FREE_BYTES) return 'ERR_STORAGE_FULL';
  return 'ERR_JOURNAL_WRITE';
}

function describeCause(cause: unknown): StorageFailure {
  if (cause instanceof Error) {
    const errno = (cause as { code?: unknown }).code;
    return typeof errno === 'number' || typeof errno === 'string' ? { errno, message: cause.message } : { message: cause.message };
  }
  return { message: String(cause) };
}

function freeBytesAt(path: string): number | undefined {
  try {
    const s = statfsSync(path);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

/** True for lmdb-js's "Commit failed" rejection (the LMDB transaction failed), as opposed to a callback's own throw. */
export function isCommitFailure(error: unknown): boolean {
  const commitError = (error as { commitError?: unknown } | null)?.commitError;
  return commitError !== undefined && typeof (commitError as Promise<unknown>).then === 'function';
}

/**
 * lmdb-js rejects every write of a failed commit with a generic "Commit failed" error whose
 * `commitError` promise rejects with the real cause (an Error with a numeric `code`). Reading it
 * also marks it handled: nobody else does, and an unhandled rejection would end the process.
 */
export function commitCause(error: unknown, wait: (ms: number) => Promise<void>): Promise<unknown> {
  if (!isCommitFailure(error)) return Promise.resolve(error);
  const commitError = (error as { commitError: Promise<unknown> }).commitError;
  // lmdb-js rejects it in the same callback that rejected the write, so it is settled by now;
  // the race only guards against a version where it is not.
  return Promise.race([
    commitError.then(
      () => error,
      (cause: unknown) => cause,
    ),
    wait(100).then(() => error),
  ]);
}

/** Maps a failed write to the catalog; errors we raised ourselves pass through unchanged. */
export function toWriteError(cause: unknown, path: string, what: string, details: Record<string, unknown> = {}): TroupeError {
  if (isTroupeError(cause)) return cause;
  const failure = describeCause(cause);
  const code = classifyWriteFailure(failure, failure.errno === EIO || failure.errno === 'EIO' ? freeBytesAt(path) : undefined);
  const message =
    code === 'ERR_STORAGE_FULL' ? `${what} failed: storage is full (${failure.message})` : `${what} failed: ${failure.message}`;
  return troupeError(code, message, {
    ...details,
    path,
    cause: failure.message,
    ...(failure.errno === undefined ? {} : { errno: failure.errno }),
  });
}

export function toReadError(cause: unknown, path: string, what: string, details: Record<string, unknown> = {}): TroupeError {
  if (isTroupeError(cause)) return cause;
  const failure = describeCause(cause);
  return troupeError('ERR_JOURNAL_READ', `${what} failed: ${failure.message}`, {
    ...details,
    path,
    cause: failure.message,
    ...(failure.errno === undefined ? {} : { errno: failure.errno }),
  });
}
