import { troupeError, type TroupeError } from '../core/errors.ts';
import { Fifo } from './fifo.ts';

export type OverflowPolicy = 'reject' | 'drop-oldest';

export interface MailboxOptions {
  /** Most user messages queued per actor; the next one meets `overflow`. */
  capacity: number;
  /** 'reject': the new message is refused with ERR_MAILBOX_FULL. 'drop-oldest': the oldest
   *  queued message is refused with ERR_MAILBOX_FULL and the new one is queued. Either way the
   *  refused message's sender hears about it: nothing is dropped silently. */
  overflow: OverflowPolicy;
}

export const defaultMailboxOptions: MailboxOptions = {
  capacity: 10_000, // messages; at ~100 B each a full mailbox holds ~1 MB
  overflow: 'reject',
};

/**
 * A byte cap on the user messages queued, shared by every mailbox of a host (one reference per
 * mailbox, not a copy): `sizeOf` reads the size the sender measured (src/mailbox/message-size.ts).
 */
export interface MailboxBytes<M> {
  /** Most bytes of user messages queued at once; a message that would pass it is refused with ERR_MAILBOX_FULL. */
  maxBytes: number;
  sizeOf(message: M): number;
}

/**
 * One actor's queue: system messages (restart, passivate, stop) always come out before user
 * messages. User messages are FIFO, so per sender→actor order holds.
 */
export class Mailbox<M> {
  private readonly user = new Fifo<M>();
  private system: Fifo<M> | undefined;
  /** Bytes of the user messages queued (0 without a byte cap). */
  private userBytes = 0;

  constructor(
    private readonly options: MailboxOptions = defaultMailboxOptions,
    private readonly bytes?: MailboxBytes<M>,
  ) {}

  /** Bytes of the user messages queued, as `MailboxBytes.sizeOf` measured them. */
  get queuedBytes(): number {
    return this.userBytes;
  }

  get size(): number {
    return this.user.length + (this.system?.length ?? 0);
  }

  get isEmpty(): boolean {
    return this.size === 0;
  }

  /**
   * Queues a user message. Returns the message refused by the overflow policy together with
   * its error (the new one under 'reject', the oldest under 'drop-oldest'), or undefined.
   */
  enqueue(message: M): { refused: M; error: TroupeError } | undefined {
    const cap = this.bytes;
    if (cap !== undefined) {
      const size = cap.sizeOf(message);
      // Refused under either policy: making room by dropping the oldest could take any number of them.
      if (this.userBytes + size > cap.maxBytes) return { refused: message, error: this.bytesFull(size, cap.maxBytes) };
      if (this.user.length < this.options.capacity) {
        this.user.push(message);
        this.userBytes += size;
        return undefined;
      }
    } else if (this.user.length < this.options.capacity) {
      this.user.push(message);
      return undefined;
    }
    const error = troupeError('ERR_MAILBOX_FULL', `mailbox full (capacity ${this.options.capacity})`, {
      capacity: this.options.capacity,
    });
    if (this.options.overflow === 'reject') return { refused: message, error };
    const oldest = this.user.shift() as M;
    this.user.push(message);
    if (cap !== undefined) this.userBytes += cap.sizeOf(message) - cap.sizeOf(oldest);
    return { refused: oldest, error };
  }

  private bytesFull(size: number, maxBytes: number): TroupeError {
    return troupeError(
      'ERR_MAILBOX_FULL',
      `mailbox full (${this.userBytes} of maxMailboxBytes ${maxBytes} bytes queued, message of ${size})`,
      {
        maxBytes,
        queuedBytes: this.userBytes,
        bytes: size,
      },
    );
  }

  /** System messages are never refused: they are few and the runtime's own. */
  enqueueSystem(message: M): void {
    (this.system ??= new Fifo<M>()).push(message);
  }

  dequeue(): M | undefined {
    if (this.system !== undefined && this.system.length > 0) return this.system.shift();
    const m = this.user.shift();
    if (m !== undefined && this.bytes !== undefined) this.userBytes -= this.bytes.sizeOf(m);
    return m;
  }

  /** Empties the mailbox (actor stopped or escalated); the caller fails each message. */
  drain(): M[] {
    const out = this.system ? this.system.drain() : [];
    for (const m of this.user.drain()) out.push(m);
    this.userBytes = 0;
    return out;
  }
}
