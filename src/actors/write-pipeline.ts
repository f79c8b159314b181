import type { ActorWrite, Journal } from '../persistence/journal.ts';
import type { ActorCell, HeldReply } from './actor-cell.ts';
import type { Envelope } from './envelope.ts';

/** One actor turn's write and the replies that wait for it. */
export interface PendingWrite {
  cell: ActorCell;
  write: ActorWrite;
  held: HeldReply[] | null;
}

/** What the pipeline tells its owner when a write settles. Bound once, called per settled write. */
export interface WritePipelineCallbacks {
  /** The write these replies waited for is durable: send them. */
  released(cell: ActorCell, held: HeldReply[]): void;
  /** The write these replies waited for failed: answer them with `error`. */
  failed(cell: ActorCell, held: HeldReply[], error: unknown): void;
  /** The actor's write failed: its memory holds events the journal refused. */
  writeFailed(cell: ActorCell, error: unknown): void;
  /** This write is durable (called before its replies are released). */
  durable?(cell: ActorCell, write: ActorWrite): void;
}

const noError = () => null;

/**
 * Turns' writes on their way to the journal, and the replies that wait for them.
 *
 * A turn's events and recorded replies join one batch per microtask (one `writeMany` for all
 * actors); its replies are held until that write is durable, and so is any later reply of the
 * same actor, which saw that state. Writes of one actor settle in order, so holding a reply
 * behind the actor's last write is enough. "Durable" here is the journal's promise; a replicated
 * pipeline can replace it with "committed on W" without the host noticing.
 *
 *   turn ends ─ submit ─▶ batch ─ microtask ─▶ journal.writeMany ─▶ settle ─▶ released / failed
 *
 * Per-actor bookkeeping lives on the cell (`held`, `lastWrite`, `inflightWrites`, `onSettled`),
 * so the hot path allocates nothing beyond the write and its `PendingWrite`.
 */
export class WritePipeline {
  private batch: PendingWrite[] = [];
  private flushQueued = false;
  /** Flushes handed to the journal and not yet settled. */
  private readonly flushes = new Set<Promise<void>>();
  private readonly flushBound = () => this.flush();

  constructor(
    private readonly journal: Journal,
    private readonly on: WritePipelineCallbacks,
  ) {}

  /**
   * Holds a reply when it depends on a write not yet durable (this turn's, or one in flight)
   * or must stay behind a reply already held; returns false when it can be sent now.
   */
  hold(cell: ActorCell, env: Envelope, ok: boolean, value: unknown): boolean {
    if (cell.pendingEvents === null && cell.pendingReplies === null && cell.inflightWrites === 0 && cell.held === null) return false;
    (cell.held ??= []).push({ env, ok, value });
    return true;
  }

  /**
   * Ends a turn that wrote nothing: its held replies go now, unless an earlier write of the
   * actor is still in flight (they saw that state, so they wait for it too).
   */
  releaseAfterLastWrite(cell: ActorCell, held: HeldReply[]): void {
    const last = cell.lastWrite;
    if (last === null) return this.on.released(cell, held);
    if (last.held === null) last.held = held;
    else for (const h of held) last.held.push(h);
  }

  /** Queues a turn's write with the replies that wait for it; the batch goes out in a microtask. */
  submit(cell: ActorCell, write: ActorWrite, held: HeldReply[] | null): void {
    const pending: PendingWrite = { cell, write, held };
    cell.inflightWrites++;
    cell.lastWrite = pending;
    this.batch.push(pending);
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushBound);
    }
  }

  /** Hands the batch to the journal: `writeMany` where it has it, else one `write` each. */
  flush(): void {
    this.flushQueued = false;
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    const journal = this.journal;
    let results: Promise<ReadonlyArray<unknown>>;
    try {
      results = journal.writeMany
        ? journal.writeMany(batch.map((p) => p.write))
        : Promise.all(batch.map((p) => journal.write(p.write).then(noError, (e: unknown) => e ?? new Error('write failed'))));
    } catch (e) {
      results = Promise.resolve(batch.map(() => e));
    }
    const settled = results.then(
      (errors) => batch.forEach((p, i) => this.settle(p, errors[i] ?? null)),
      (e: unknown) => batch.forEach((p) => this.settle(p, e ?? new Error('write failed'))),
    );
    this.flushes.add(settled);
    void settled.finally(() => this.flushes.delete(settled));
  }

  /** Flushes what is queued and resolves once every write handed to the journal has settled. */
  async drain(): Promise<void> {
    this.flush();
    await Promise.all(this.flushes);
  }

  private settle(p: PendingWrite, error: unknown): void {
    const { cell } = p;
    cell.inflightWrites--;
    if (cell.lastWrite === p) cell.lastWrite = null;
    if (error === null) {
      this.on.durable?.(cell, p.write);
      if (p.held !== null) this.on.released(cell, p.held);
    } else {
      if (p.held !== null) this.on.failed(cell, p.held, error);
      this.on.writeFailed(cell, error);
    }
    if (cell.inflightWrites === 0 && cell.onSettled !== null) {
      const next = cell.onSettled;
      cell.onSettled = null;
      next();
    }
  }
}
