import { troupeError, type ErrorCode } from '../core/errors.ts';
import type { ActorHistory, ActorWrite, EventRecord, Journal } from './journal.ts';

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

  /** Counts against `failNextReads` like `read`: a replica's catch-up read fails the same way. */
  readFrom(kind: string, key: string, afterSeq: number, limit: number): Promise<EventRecord[]> {
    if (this.readFailures > 0) {
      this.readFailures--;
      return Promise.reject(troupeError('ERR_JOURNAL_READ', 'injected read failure', { kind, key, injected: true }));
    }
    return this.inner.readFrom(kind, key, afterSeq, limit);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * Test double that holds the writes of chosen actors: a held write never reaches the inner
 * journal (so it is never committed) and its promise stays pending until `release()`. With it a
 * test can stop time between "the actor handed its write to the journal" and "the write is
 * durable", and check that nothing was acknowledged in between, without racing the disk.
 * It has no `writeMany`, so the actor host writes each actor separately and a held write holds
 * back no other actor's replies.
 *
 * @example
 *   const journal = new HoldingJournal(new MemoryJournal(), (w) => w.key.startsWith('held-'));
 *   // ... a write for held-1 stays pending; journal.held lists it
 *   journal.release(); // passes the held writes on, in order
 */
export class HoldingJournal implements Journal {
  readonly held: Array<{ write: ActorWrite; pass: () => void }> = [];

  constructor(
    readonly inner: Journal,
    private readonly holds: (w: ActorWrite) => boolean,
    private readonly onHold: (w: ActorWrite) => void = () => undefined,
  ) {}

  write(w: ActorWrite): Promise<void> {
    if (!this.holds(w)) return this.inner.write(w);
    return new Promise<void>((resolve, reject) => {
      this.held.push({ write: w, pass: () => this.inner.write(w).then(resolve, reject) });
      this.onHold(w);
    });
  }

  /** Passes every held write on to the inner journal, in the order they arrived. */
  release(): void {
    for (const h of this.held.splice(0)) h.pass();
  }

  read(kind: string, key: string): Promise<ActorHistory> {
    return this.inner.read(kind, key);
  }

  readFrom(kind: string, key: string, afterSeq: number, limit: number): Promise<EventRecord[]> {
    return this.inner.readFrom(kind, key, afterSeq, limit);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
