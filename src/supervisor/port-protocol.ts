import type { MessagePort } from 'node:worker_threads';
import type { ErrorRecord } from '../core/errors.ts';

/**
 * What travels over a worker's long-lived MessagePort. Envelopes are packed into one flat array
 * per batch (one `postMessage`, one structured clone of primitives) instead of an object per
 * message; each record starts with its op code:
 *
 *   OP_MSG     op kind key command input askId msgId   (askId 0 = tell)
 *   OP_REPLY   op askId ok value                       (value = ErrorRecord when !ok)
 *   OP_CONTROL op askId name arg                       (main → worker: stats, stop, ...)
 *   OP_EVENT   op name data                            (worker → main: ready, escalated)
 */
export const OP_MSG = 0;
export const OP_REPLY = 1;
export const OP_CONTROL = 2;
export const OP_EVENT = 3;

export interface BatchHandlers {
  msg(kind: string, key: string, command: string, input: unknown, askId: number, msgId: string | undefined): void;
  reply(askId: number, ok: boolean, value: unknown): void;
  control(askId: number, name: string, arg: unknown): void;
  event(name: string, data: unknown): void;
}

export function decodeBatch(batch: unknown[], h: BatchHandlers): void {
  let i = 0;
  const n = batch.length;
  while (i < n) {
    switch (batch[i]) {
      case OP_MSG:
        h.msg(
          batch[i + 1] as string,
          batch[i + 2] as string,
          batch[i + 3] as string,
          batch[i + 4],
          batch[i + 5] as number,
          batch[i + 6] as string | undefined,
        );
        i += 7;
        break;
      case OP_REPLY:
        h.reply(batch[i + 1] as number, batch[i + 2] === 1, batch[i + 3]);
        i += 4;
        break;
      case OP_CONTROL:
        h.control(batch[i + 1] as number, batch[i + 2] as string, batch[i + 3]);
        i += 4;
        break;
      case OP_EVENT:
        h.event(batch[i + 1] as string, batch[i + 2]);
        i += 3;
        break;
      default:
        throw new Error(`corrupt port batch: op ${String(batch[i])} at ${i}`);
    }
  }
}

/** Slots in a batch before it is posted without waiting for the end of the tick. */
const MAX_BATCH_SLOTS = 7 * 512;

/**
 * Collects records and posts them as one batch at the end of the current event-loop turn
 * (setImmediate: after the poll phase, so all requests read in one turn share a batch), or at
 * once when the batch is full.
 */
export class PortWriter {
  private batch: unknown[] = [];
  private scheduled = false;
  private readonly flushBound = () => this.flush();

  constructor(private port: MessagePort) {}

  /** Points the writer at a new port (a recreated worker); queued records go there. */
  retarget(port: MessagePort): void {
    this.port = port;
  }

  msg(kind: string, key: string, command: string, input: unknown, askId: number, msgId: string | undefined): void {
    this.batch.push(OP_MSG, kind, key, command, input, askId, msgId);
    this.queued();
  }

  reply(askId: number, ok: boolean, value: unknown): void {
    this.batch.push(OP_REPLY, askId, ok ? 1 : 0, value);
    this.queued();
  }

  replyError(askId: number, error: ErrorRecord): void {
    this.reply(askId, false, error);
  }

  control(askId: number, name: string, arg: unknown): void {
    this.batch.push(OP_CONTROL, askId, name, arg);
    this.queued();
  }

  event(name: string, data: unknown): void {
    this.batch.push(OP_EVENT, name, data);
    this.queued();
  }

  flush(): void {
    this.scheduled = false;
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    this.port.postMessage(batch);
  }

  private queued(): void {
    if (this.batch.length >= MAX_BATCH_SLOTS) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushBound);
    }
  }
}
