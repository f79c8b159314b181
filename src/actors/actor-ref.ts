import { troupeError } from '../core/errors.ts';
import type { AnyMessage, AskOptions, Commands, InputOf, MessageOf, ReplyOf } from './define-actor.ts';
import { MAX_KEY_LENGTH } from '../supervisor/placement.ts';

/** Anything that can carry a message to an actor by kind and key: a node, a worker's host. */
export interface MessageRouter {
  tell(kind: string, key: string, message: AnyMessage): void;
  ask(kind: string, key: string, message: AnyMessage, options?: AskOptions): Promise<unknown>;
}

/**
 * A handle on a virtual actor: it exists for every key, and the actor is activated on its
 * first message wherever placement puts it.
 *
 * @example
 *   const cart = node.ref(cartActor, 'session-42');
 *   await cart.ask({ command: 'add', input: { sku: 'tea', qty: 2 } }, { timeoutMs: 1000 });
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export class ActorRef<C extends Commands<any, any>> {
  constructor(
    private readonly router: MessageRouter,
    readonly kind: string,
    readonly key: string,
  ) {}

  /** Fire and forget; failures become counted dead letters on the receiving side. */
  tell(message: MessageOf<C>): void {
    this.router.tell(this.kind, this.key, message as AnyMessage);
  }

  /** Rejects with a TroupeError: ERR_ASK_TIMEOUT, ERR_MAILBOX_FULL, ERR_HANDLER_FAILED, ... */
  ask<K extends keyof C & string>(
    message: { command: K; input?: InputOf<C[K]>; id?: string },
    options?: AskOptions,
  ): Promise<ReplyOf<C[K]>> {
    return this.router.ask(this.kind, this.key, message, options) as Promise<ReplyOf<C[K]>>;
  }
}

/** Actor keys are non-empty strings of at most MAX_KEY_LENGTH characters. */
export function checkKey(key: unknown): string | undefined {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH)
    return `actor key must be a string of 1..${MAX_KEY_LENGTH} characters`;
  return undefined;
}

export function invalidKey(key: unknown) {
  return troupeError('ERR_INVALID_KEY', checkKey(key) ?? 'invalid actor key');
}
