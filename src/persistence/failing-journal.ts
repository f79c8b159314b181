import { troupeError, type ErrorCode } from '../core/errors.ts';
import type { ActorHistory, ActorWrite, Journal } from './journal.ts';

/**
 * Test double that injects storage failures around any journal. A write it fails never reaches
 * the inner journal, so, as with a real failed commit, nothing of it is visible to `read`.
 *
 * @example
 *   const journal = new FailingJournal(new MemoryJournal());
 *   journal.failNextWrites(2, 'ERR_STORAGE_FULL'); // the next two writes reject
 *   journal.setFull(true);                         // every write rejects until setFull(false)
 */
export class FailingJournal implements Journal {
  private failures: ErrorCode[] = [];
  private full = false;
  private readFailures = 0;
  /** Writes that reached the inner journal / that this wrapper rejected. */
  passed = 0;
  injected = 0;

  constructor(readonly inner: Journal) {}

  /** The next `n` writes reject with `code` (after any failures already queued). */
  failNextWrites(n: number, code: ErrorCode = 'ERR_JOURNAL_WRITE'): void {
    for (let i = 0; i < n; i++) this.failures.push(code);
  }

  /** While full, every write rejects with ERR_STORAGE_FULL, as LmdbJournal does on a full disk. */
  setFull(full: boolean): void {
    this.full = full;
  }

  /** The next `n` reads reject with ERR_JOURNAL_READ. */
  failNextReads(n: number): void {
    this.readFailures += n;
  }

  write(w: ActorWrite): Promise<void> {
    const code = this.full ? 'ERR_STORAGE_FULL' : this.failures.shift();
    if (code !== undefined) {
      this.injected++;
      const message = code === 'ERR_STORAGE_FULL' ? 'storage is full (injected)' : `injected ${code}`;
      return Promise.reject(troupeError(code, message, { kind: w.kind, key: w.key, injected: true }));
    }
    this.passed++;
    return this.inner.write(w);
  }

  read(kind: string, key: string): Promise<ActorHistory> {
    if (this.readFailures > 0) {
      this.readFailures--;
      return Promise.reject(troupeError('ERR_JOURNAL_READ', 'injected read failure', { kind, key, injected: true }));
    }
    return this.inner.read(kind, key);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
