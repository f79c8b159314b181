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
 * One actor's queue: system messages (restart, passivate, stop) always come out before user
 * messages. User messages are FIFO, so per sender→actor order holds.
 */
export class Mailbox<M> {
  private readonly user = new Fifo<M>();
  private system: Fifo<M> | undefined;

  constructor(private readonly options: MailboxOptions = defaultMailboxOptions) {}

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
    if (this.user.length < this.options.capacity) {
      this.user.push(message);
      return undefined;
    }
    const error = troupeError('ERR_MAILBOX_FULL', `mailbox full (capacity ${this.options.capacity})`, {
      capacity: this.options.capacity,
    });
    if (this.options.overflow === 'reject') return { refused: message, error };
    const oldest = this.user.shift() as M;
    this.user.push(message);
    return { refused: oldest, error };
  }

  /** System messages are never refused: they are few and the runtime's own. */
  enqueueSystem(message: M): void {
    (this.system ??= new Fifo<M>()).push(message);
  }

  dequeue(): M | undefined {
    if (this.system !== undefined && this.system.length > 0) return this.system.shift();
    return this.user.shift();
  }

  /** Empties the mailbox (actor stopped or escalated); the caller fails each message. */
  drain(): M[] {
    const out = this.system ? this.system.drain() : [];
    for (const m of this.user.drain()) out.push(m);
    return out;
  }
}
