import { invalidOption, troupeError, TroupeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { MailboxOptions } from '../mailbox/mailbox.ts';
import type { RestartPolicy } from '../supervisor/restart-window.ts';

/**
 * What a command handler may do, and nothing more. The handler's return value is the reply;
 * it reaches the caller only once the events the command emitted are durable. Replies, events,
 * the states `apply` returns and the inputs of `tell`/`ask` must lie in the value domain
 * (src/core/value-domain.ts: null, booleans, finite numbers, strings, arrays, plain objects);
 * anything else fails that one message with ERR_NOT_SERIALIZABLE and undoes its events.
 */
export interface HandlerContext<S, E> {
  readonly kind: string;
  readonly key: string;
  /** The state, including events emitted so far by this handler. */
  readonly state: S;
  /** Records an event: `apply` runs at once (so `state` reflects it) and it is journaled. */
  emit(event: E): void;
  /**
   * Sends `message` to the clients connected to this actor over WebSocket (docs/websocket.md).
   * It is journaled with the turn's events (a record of its own, which `apply` never sees), so
   * it leaves only once the write is durable, replicates with the log, and reaches a client that
   * reconnects later — to any node, after a failover too — in order, by its seq. Writing
   * commands only: a read-only one cannot push.
   */
  push(message: unknown): void;
  /**
   * Ends this actor's session (docs/sessions-lifecycle.md): from here on `state` is
   * `initial(key)` again and no reminder is pending; at the end of the turn a tombstone is
   * journaled with the turn's events, and what was stored for the session is deleted. Seqs go on
   * (a client's resume cursor stays valid); a retried message id of the old session still gets
   * its recorded reply rather than applying to the fresh one. Writing commands only.
   */
  delete(): void;
  /**
   * A durable reminder: `message` (a command of this kind and its input) is delivered to this
   * actor as a tell once `delayMs` have passed on the wall clock — on whichever node is its
   * primary then: after a failover or a restart too, and without any caller waking the actor.
   * Setting a name again replaces it. Journaled with the turn (writing commands only).
   * `name`: 1..64 characters, not starting with `$`; `delayMs`: an integer in
   * [0, reminderLimits.maxDelayMs]; each refused with ERR_INVALID_OPTION naming it.
   */
  remind(name: string, delayMs: number, message: { command: string; input?: unknown }): void;
  /** Cancels reminder `name` (no-op when none is pending). Journaled with the turn. */
  cancelReminder(name: string): void;
  tell(kind: string, key: string, message: AnyMessage): void;
  ask(kind: string, key: string, message: AnyMessage, options?: AskOptions): Promise<unknown>;
  /** Tells this actor `message` after `delayMs` on the injected clock; timers die with the activation. */
  schedule(delayMs: number, message: AnyMessage): () => void;
  /** The injected clock's monotonic time, ms. */
  now(): number;
  readonly log: Logger;
}

export interface CommandSpec<S, E, I, R> {
  /** Turns the raw input (decoded JSON) into typed input; throw `invalidInput(...)` to refuse. */
  input?: (raw: unknown) => I;
  /** Reads only: may not emit, writes nothing to the journal. */
  readOnly?: boolean;
  handle(ctx: HandlerContext<S, E>, input: I): R | Promise<R>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Commands<S, E> = Record<string, CommandSpec<S, E, any, any>>;

export interface ActorDefinition<S, E, C extends Commands<S, E>> {
  /** Unique name; URL-safe: [A-Za-z0-9_-], 1..64 chars. */
  kind: string;
  initial: (key: string) => S;
  /** Pure: the only way state changes. Runs on emit, on activation replay and on replicas. */
  apply: (state: S, event: E) => S;
  commands: C;
  /** Schema version of the events this code emits (default 1). */
  version?: number;
  /** upcasters[n] lifts an event of version n to version n+1. */
  upcasters?: Record<number, (event: unknown) => unknown>;
  /** Passivate after this long without messages, ms (default 5 min). */
  idleTimeoutMs?: number;
  /**
   * Time to live, ms: a session idle this long (no message from outside) is deleted, as
   * `ctx.delete()` does — also when it is not resident, after a failover and after a restart.
   * Expiry comes between ttlMs and ttlMs + 2 × min(ttlMs / 16, 60 s) after the last message
   * (docs/sessions-lifecycle.md). Default: sessions never expire.
   */
  ttlMs?: number;
  /** Write a snapshot every N events (default 100). */
  snapshotEvery?: number;
  mailbox?: Partial<MailboxOptions>;
  restart?: Partial<RestartPolicy>;
  /**
   * Replicated clusters: when a node becomes a partition's primary (failover, join, restart),
   * this kind's actors with state there are activated at once rather than on their next
   * message (timers, subscriptions and caches come back without a caller). Default false.
   */
  remember?: boolean;
  /**
   * Replicated clusters: when this kind's replies may leave, if not as the node's durability
   * says. 'lazy': after the primary's own commit (a primary's death may lose its last writes);
   * 'replicated': at W copies; 'replicated+flush' needs the node started with it (the store
   * flushes for the whole node). Ignored by nodes that do not replicate.
   */
  durability?: 'replicated' | 'replicated+flush' | 'lazy';
  /**
   * Replicated clusters: copies (the primary counted, capped by the replica set) this kind's
   * writes need before their reply leaves, if not the node's W. A smaller W than the node's
   * makes every fence of the node stricter: it needs |S| − W + 1 promises for the smallest W
   * any non-lazy kind uses (writeQuorum 1 with R=3: all three).
   */
  writeQuorum?: number;
  /**
   * Where the HTTP gateway takes this kind's actor key from (default 'path'):
   * 'path': `/actors/:kind/:key/:command`; 'cookie': the signed `sid` cookie, issued on first
   * contact, at `/sessions/:kind/:command` (nodes need a session secret); 'address': the client's
   * IP address, at `/sessions/:kind/:command`. A cookie or address kind refuses the path form,
   * so no caller can name another's session.
   */
  session?: SessionSource;
  /**
   * Decides on the gateway's main thread, before the ask, whether an HTTP request may call this
   * kind, key and command: anything but `true` refuses it (403 ERR_FORBIDDEN). Without a hook
   * every route of the kind is open to whoever reaches the gateway.
   */
  authorize?: (request: AuthorizeRequest) => boolean | Promise<boolean>;
}

/** Where an HTTP request's actor key comes from. */
export type SessionSource = 'path' | 'cookie' | 'address';

/** What an authorization hook sees of an HTTP request. */
export interface AuthorizeRequest {
  readonly kind: string;
  readonly key: string;
  readonly command: string;
  readonly method: 'GET' | 'POST';
  readonly session: SessionSource;
  /** The request's headers, names lower-cased (authorization, cookie, origin …). */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The client's IP address (X-Forwarded-For counts only from the gateway's trusted proxies). */
  readonly address: string;
  /** The decoded input (JSON body, or `?input=` of a GET), before the command's own validation. */
  readonly input: unknown;
}

export type InputOf<C> = C extends CommandSpec<any, any, infer I, any> ? I : never;
export type ReplyOf<C> = C extends CommandSpec<any, any, any, infer R> ? Awaited<R> : never;

/** A message to an actor: which command, its input, and an optional id that makes retries safe. */
export type MessageOf<C> = {
  [K in keyof C & string]: { command: K; input?: InputOf<C[K]>; id?: string };
}[keyof C & string];

export interface AnyMessage {
  command: string;
  input?: unknown;
  /** Message id: a retry with the same id is applied once and answered with the recorded reply. */
  id?: string;
}

export interface AskOptions {
  /** Reject with ERR_ASK_TIMEOUT after this long, ms (default 5,000). */
  timeoutMs?: number;
  /**
   * Read-your-writes (a replicated cluster): a token set from an earlier reply's `onToken` (or
   * HTTP `troupe-token` header). The ask is served only from state that includes it — after a
   * failover too — or fails (ERR_TOKEN_LOST when the write it names was lost under `lazy`).
   * Single nodes hold the only copy and ignore it.
   */
  token?: string;
  /** Receives the reply's token merged into `token`: pass it to the next ask of the session. */
  onToken?: (token: string) => void;
}

const MAX_TTL_MS = 366 * 24 * 3_600_000; // as reminders' longest delay (system-records.ts)
const KIND_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const KIND_DURABILITIES: readonly unknown[] = ['replicated', 'replicated+flush', 'lazy'];
const KIND_SESSIONS: readonly unknown[] = ['path', 'cookie', 'address'];
export const ACTOR_DEFINITION = Symbol.for('troupe.actor-definition');

/** What `defineActor` returns: the definition, branded so module loaders can find it. */
export interface DefinedActor<S, E, C extends Commands<S, E>> extends ActorDefinition<S, E, C> {
  readonly [ACTOR_DEFINITION]: true;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyActorDefinition = DefinedActor<any, any, Commands<any, any>>;

/**
 * Declares an actor kind. Commands validate input and emit events; `apply` folds events into
 * state.
 *
 * @example
 *   export const counter = defineActor({
 *     kind: 'counter',
 *     initial: () => ({ n: 0 }),
 *     apply: (s: { n: number }, e: { by: number }) => ({ n: s.n + e.by }),
 *     commands: {
 *       incr: {
 *         input: (raw) => ({ by: optionalInt(raw, 'by', 1) }),
 *         handle: (ctx, { by }) => { ctx.emit({ by }); return { n: ctx.state.n }; },
 *       },
 *       get: { readOnly: true, handle: (ctx) => ({ n: ctx.state.n }) },
 *     },
 *   });
 */
export function defineActor<S, E, C extends Commands<S, E>>(def: ActorDefinition<S, E, C>): DefinedActor<S, E, C> {
  if (typeof def?.kind !== 'string' || !KIND_PATTERN.test(def.kind))
    throw invalidOption('definition.kind', 'must match [A-Za-z0-9_-]{1,64}', def?.kind);
  if (typeof def.initial !== 'function') throw invalidOption(`${def.kind}.initial`, 'must be a function', def.initial);
  if (typeof def.apply !== 'function') throw invalidOption(`${def.kind}.apply`, 'must be a function', def.apply);
  if (def.commands === null || typeof def.commands !== 'object')
    throw invalidOption(`${def.kind}.commands`, 'must be an object', def.commands);
  for (const [name, spec] of Object.entries(def.commands)) {
    if (!KIND_PATTERN.test(name)) throw invalidOption(`${def.kind}.commands`, `names must match [A-Za-z0-9_-]{1,64}`, name);
    if (typeof spec?.handle !== 'function') throw invalidOption(`${def.kind}.commands.${name}.handle`, 'must be a function', spec?.handle);
  }
  const positiveInt = (name: string, v: unknown) => {
    if (v !== undefined && !(Number.isInteger(v) && (v as number) > 0))
      throw invalidOption(`${def.kind}.${name}`, 'must be a positive integer', v);
  };
  positiveInt('version', def.version);
  positiveInt('snapshotEvery', def.snapshotEvery);
  positiveInt('idleTimeoutMs', def.idleTimeoutMs);
  positiveInt('ttlMs', def.ttlMs);
  if (def.ttlMs !== undefined && def.ttlMs > MAX_TTL_MS) throw invalidOption(`${def.kind}.ttlMs`, `must be at most ${MAX_TTL_MS} (a year and a day)`, def.ttlMs);
  if (def.remember !== undefined && typeof def.remember !== 'boolean') throw invalidOption(`${def.kind}.remember`, 'must be a boolean', def.remember);
  if (def.durability !== undefined && !KIND_DURABILITIES.includes(def.durability))
    throw invalidOption(`${def.kind}.durability`, "must be 'replicated', 'replicated+flush' or 'lazy'", def.durability);
  positiveInt('writeQuorum', def.writeQuorum);
  if (def.session !== undefined && !KIND_SESSIONS.includes(def.session))
    throw invalidOption(`${def.kind}.session`, "must be 'path', 'cookie' or 'address'", def.session);
  if (def.authorize !== undefined && typeof def.authorize !== 'function')
    throw invalidOption(`${def.kind}.authorize`, 'must be a function', def.authorize);
  if (def.durability === 'lazy' && def.writeQuorum !== undefined)
    throw invalidOption(`${def.kind}.writeQuorum`, "has no effect with durability 'lazy' (its replies leave at one copy): drop one of them", def.writeQuorum);
  return Object.assign(Object.create(null) as object, def, { [ACTOR_DEFINITION]: true as const }) as DefinedActor<S, E, C>;
}

export function isActorDefinition(v: unknown): v is AnyActorDefinition {
  return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[ACTOR_DEFINITION] === true;
}

/** Refuses a command's input: the caller gets ERR_INVALID_INPUT (HTTP 400) with `message`. */
export function invalidInput(message: string, details?: Record<string, unknown>): TroupeError {
  return troupeError('ERR_INVALID_INPUT', message, details);
}

/** Input helpers for the common cases; each throws `invalidInput` naming the field. */
export function inputObject(raw: unknown): Record<string, unknown> {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalidInput('input must be a JSON object');
  return raw as Record<string, unknown>;
}

export function optionalInt(
  raw: unknown,
  field: string,
  fallback: number,
  min = -Number.MAX_SAFE_INTEGER,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const v = inputObject(raw)[field];
  if (v === undefined) return fallback;
  if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max)
    throw invalidInput(`${field} must be an integer in [${min}, ${max}]`, { field });
  return v as number;
}

export function requiredString(raw: unknown, field: string, maxLength = 1024): string {
  const v = inputObject(raw)[field];
  if (typeof v !== 'string' || v.length === 0 || v.length > maxLength)
    throw invalidInput(`${field} must be a non-empty string of at most ${maxLength} characters`, { field });
  return v;
}
