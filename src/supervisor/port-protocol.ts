import type { MessagePort } from 'node:worker_threads';
import type { ErrorRecord } from '../core/errors.ts';
import { checkValue } from '../core/value-domain.ts';

/**
 * What travels over a worker's long-lived MessagePort. Envelopes are packed into one flat array
 * per batch (one `postMessage`, one structured clone of mostly primitives) instead of an object
 * per message. Each record starts with a code: the op in the low 4 bits and, for messages, the
 * index of its (kind, command) pair above them. A pair is sent once per port (OP_DEFINE) and
 * referred to by index after that, so the kind and command strings are not cloned per message:
 *
 *   OP_DEFINE     op index kind command
 *   OP_TELL       code key input                  code = index << 4 | op
 *   OP_TELL_ID    code key input msgId
 *   OP_ASK        code key input askId
 *   OP_ASK_ID     code key input askId msgId
 *   OP_REPLY_OK   op askId value
 *   OP_REPLY_ERR  op askId ErrorRecord
 *   OP_CONTROL    op askId name arg               (main → worker: stats, stop, placement, ...)
 *   OP_EVENT      op name data                    (worker → main: ready, escalated, failed)
 *
 * Journal requests (`journal: { type: 'node' }`, see port-journal.ts) go worker → main as
 * OP_CONTROL with a negative askId ('journal.read', 'journal.readFrom', 'journal.writeMany') and
 * come back as OP_REPLY_OK / OP_REPLY_ERR with that id: negative ids are the journal's, positive
 * ones the host's asks, so the two never collide on one port.
 */
export const OP_DEFINE = 0;
export const OP_TELL = 1;
export const OP_TELL_ID = 2;
export const OP_ASK = 3;
export const OP_ASK_ID = 4;
export const OP_REPLY_OK = 5;
export const OP_REPLY_ERR = 6;
export const OP_CONTROL = 7;
export const OP_EVENT = 8;

export interface BatchHandlers {
  msg(kind: string, key: string, command: string, input: unknown, askId: number, msgId: string | undefined): void;
  reply(askId: number, ok: boolean, value: unknown): void;
  control(askId: number, name: string, arg: unknown): void;
  event(name: string, data: unknown): void;
}

/** The receiving end of one port: decodes batches, keeping the (kind, command) table. */
export class PortReader {
  private kinds: string[] = [];
  private commands: string[] = [];

  constructor(private readonly h: BatchHandlers) {}

  decode(batch: unknown[]): void {
    const h = this.h;
    let i = 0;
    const n = batch.length;
    while (i < n) {
      const code = batch[i] as number;
      const op = code & 15;
      const pair = code >>> 4;
      switch (op) {
        case OP_TELL:
          h.msg(this.kinds[pair]!, batch[i + 1] as string, this.commands[pair]!, batch[i + 2], 0, undefined);
          i += 3;
          break;
        case OP_ASK:
          h.msg(this.kinds[pair]!, batch[i + 1] as string, this.commands[pair]!, batch[i + 2], batch[i + 3] as number, undefined);
          i += 4;
          break;
        case OP_REPLY_OK:
        case OP_REPLY_ERR:
          h.reply(batch[i + 1] as number, op === OP_REPLY_OK, batch[i + 2]);
          i += 3;
          break;
        case OP_TELL_ID:
          h.msg(this.kinds[pair]!, batch[i + 1] as string, this.commands[pair]!, batch[i + 2], 0, batch[i + 3] as string);
          i += 4;
          break;
        case OP_ASK_ID:
          h.msg(
            this.kinds[pair]!,
            batch[i + 1] as string,
            this.commands[pair]!,
            batch[i + 2],
            batch[i + 3] as number,
            batch[i + 4] as string,
          );
          i += 5;
          break;
        case OP_DEFINE:
          this.kinds[batch[i + 1] as number] = batch[i + 2] as string;
          this.commands[batch[i + 1] as number] = batch[i + 3] as string;
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
          throw new Error(`corrupt port batch: code ${String(code)} at ${i}`);
      }
    }
  }
}

/** Slots per record, by op (see the layout above). */
const RECORD_SIZE = [4, 3, 4, 4, 5, 3, 3, 4, 3];
/** Offset of the record's one free-form value (input, reply, arg, data) by op; 0: none. */
const VALUE_AT = [0, 2, 2, 2, 2, 2, 2, 3, 2];
/** Offset of the askId of an ask or control record. */
const ASK_ID_AT: Partial<Record<number, number>> = { [OP_ASK]: 3, [OP_ASK_ID]: 3, [OP_CONTROL]: 1 };

function cloneable(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return typeof v !== 'function' && typeof v !== 'symbol';
  try {
    structuredClone(v);
    return true;
  } catch {
    return false;
  }
}

function warnRefused(askId: number, error: ErrorRecord): void {
  process.emitWarning(`${error.message}${askId === 0 ? '' : ` (ask ${askId})`}`, { code: error.code });
}

/** Slots in a batch before it is posted without waiting for the end of the tick. */
const MAX_BATCH_SLOTS = 4 * 512;

/**
 * A record the writer could not post (its value cannot be cloned), failed on this side:
 * `askId` is the sender's ask (0 for a tell or an event), `error` an ERR_NOT_SERIALIZABLE record.
 */
export type RefusedRecord = (askId: number, error: ErrorRecord) => void;

/**
 * Collects records and posts them as one batch at the end of the current event-loop turn
 * (setImmediate: after the poll phase, so all requests read in one turn share a batch), or at
 * once when the batch is full.
 *
 * A batch that cannot be cloned (a function or a symbol somewhere in it) must not throw out of
 * the flush, which runs on a timer and would kill the thread, nor lose the batch's other
 * records: the writer finds the records that cannot be cloned, fails only those, and posts the
 * rest. A reply becomes an error reply to its asker; an ask, tell or event is handed to
 * `onRefused`, whose owner fails its own ask or logs the loss.
 */
export class PortWriter {
  private batch: unknown[] = [];
  private scheduled = false;
  /** kind → command → pair index, as defined on the current port. */
  private pairs = new Map<string, Map<string, number>>();
  private nextPair = 0;
  /** pair index → [kind, command]: names a refused record (rarely read). */
  private pairNames: Array<[string, string]> = [];
  private readonly flushBound = () => this.flush();

  constructor(
    private port: MessagePort,
    /** Default: a process warning, so a refused tell is never lost silently. */
    public onRefused: RefusedRecord = warnRefused,
  ) {}

  /** Points the writer at a new port (a recreated worker): its reader starts a fresh table. */
  retarget(port: MessagePort): void {
    this.port = port;
    this.pairs = new Map();
    this.pairNames = [];
    this.nextPair = 0;
    // Records already queued may refer to pairs of the old port: define them again first.
    const queued = this.batch;
    this.batch = [];
    if (queued.length > 0) new PortReader(this.replayInto()).decode(queued);
  }

  msg(kind: string, key: string, command: string, input: unknown, askId: number, msgId: string | undefined): void {
    const pair = this.pairOf(kind, command) << 4;
    if (askId === 0) {
      if (msgId === undefined) this.batch.push(pair | OP_TELL, key, input);
      else this.batch.push(pair | OP_TELL_ID, key, input, msgId);
    } else if (msgId === undefined) this.batch.push(pair | OP_ASK, key, input, askId);
    else this.batch.push(pair | OP_ASK_ID, key, input, askId, msgId);
    this.queued();
  }

  reply(askId: number, ok: boolean, value: unknown): void {
    this.batch.push(ok ? OP_REPLY_OK : OP_REPLY_ERR, askId, value);
    this.queued();
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
    try {
      this.port.postMessage(batch);
    } catch (e) {
      this.postCloneable(batch, e);
    }
  }

  /** The slow path of a batch that failed to clone: record by record (see the class comment). */
  private postCloneable(batch: unknown[], cloneError: unknown): void {
    const out: unknown[] = [];
    const refused: Array<[askId: number, error: ErrorRecord]> = [];
    const reason = cloneError instanceof Error ? cloneError.message : String(cloneError);
    let i = 0;
    while (i < batch.length) {
      const code = batch[i] as number;
      const op = code & 15;
      const size = RECORD_SIZE[op];
      if (size === undefined) break; // not a batch this writer built
      const at = i + VALUE_AT[op]!;
      if (VALUE_AT[op] === 0 || cloneable(batch[at])) {
        for (let j = i; j < i + size; j++) out.push(batch[j]);
      } else {
        const [kind, command] = this.pairNames[code >>> 4] ?? ['?', '?'];
        const what =
          op === OP_REPLY_OK
            ? 'reply'
            : op === OP_REPLY_ERR
              ? 'error reply'
              : op === OP_CONTROL
                ? `argument of control '${String(batch[i + 2])}'`
                : op === OP_EVENT
                  ? `data of event '${String(batch[i + 1])}'`
                  : `input of ${op === OP_TELL || op === OP_TELL_ID ? 'tell' : 'ask'} to ${kind}/${String(batch[i + 1])} '${command}'`;
        const error: ErrorRecord = {
          code: 'ERR_NOT_SERIALIZABLE',
          message: checkValue(batch[at], what)?.message ?? `${what} cannot be sent to another thread: ${reason}`,
        };
        // A reply's asker is on the other side: it gets the error instead of the value.
        if (op === OP_REPLY_OK || op === OP_REPLY_ERR) out.push(OP_REPLY_ERR, batch[i + 1], error);
        else refused.push([op === OP_ASK || op === OP_ASK_ID || op === OP_CONTROL ? (batch[i + ASK_ID_AT[op]!] as number) : 0, error]);
      }
      i += size;
    }
    try {
      if (out.length > 0) this.port.postMessage(out);
    } catch (e) {
      // Not expected (each record cloned alone): still never throw out of a flush.
      this.onRefused(0, { code: 'ERR_NOT_SERIALIZABLE', message: `a port batch could not be sent: ${String(e)}` });
    }
    for (const [askId, error] of refused) this.onRefused(askId, error);
  }

  private pairOf(kind: string, command: string): number {
    let commands = this.pairs.get(kind);
    if (commands === undefined) this.pairs.set(kind, (commands = new Map()));
    let index = commands.get(command);
    if (index === undefined) {
      index = this.nextPair++;
      commands.set(command, index);
      this.pairNames[index] = [kind, command];
      this.batch.push(OP_DEFINE, index, kind, command);
    }
    return index;
  }

  private replayInto(): BatchHandlers {
    return {
      msg: (kind, key, command, input, askId, msgId) => this.msg(kind, key, command, input, askId, msgId),
      reply: (askId, ok, value) => this.reply(askId, ok, value),
      control: (askId, name, arg) => this.control(askId, name, arg),
      event: (name, data) => this.event(name, data),
    };
  }

  private queued(): void {
    if (this.batch.length >= MAX_BATCH_SLOTS) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushBound);
    }
  }
}
