import type { InputOf, ReplyOf } from '../actors/define-actor.ts';
import { fromErrorRecord, invalidOption, isTroupeError, troupeError, type ErrorCode, type TroupeError } from '../core/errors.ts';
import { checkValue } from '../core/value-domain.ts';
import { CloseCodes, parseServerFrame, type ServerFrame } from '../sessions/ws-protocol.ts';
import { backoffDelay, isRetryable } from './retry-policy.ts';
import { DEAD_SOCKET, openSocket, type BrowserWebSocketClass, type SessionSocket } from './web-socket.ts';

/*
 * Browser-safe like troupe-client.ts: the `ws` package is loaded by web-socket.ts only where
 * the platform has no WebSocket, and nothing here imports from `node:`.
 */

/** What a session needs of an actor definition (the same shape as `ClientActor`). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type SessionActor = { readonly kind: string; readonly commands: Record<string, any> };
type CommandName<D extends SessionActor> = keyof D['commands'] & string;

export interface SessionOptions {
  /** The log position whose pushes the app already has (a session saved before, `session.position`); default: pushes from now on. */
  from?: number;
  /** One ask, across reconnects and resends, ms (default: the client's `timeoutMs`). */
  askTimeoutMs?: number;
  /** Connection attempts in a row that may fail before the session gives up and closes (default 12). */
  maxReconnects?: number;
  /** Pushes are acknowledged together after at most this long, ms (default 25). */
  ackDelayMs?: number;
  /** With `ws` (Node): ping interval, ms; a node that does not pong in time is left for another (default 15,000). */
  pingMs?: number;
  /** Largest ask frame, bytes; the gateway closes a socket whose frame is over its `maxBodyBytes` (default 64 KiB, the same). */
  maxFrameBytes?: number;
  /** A WebSocket constructor instead of the platform's (a polyfill); Node 20 without one uses the `ws` package. */
  WebSocket?: BrowserWebSocketClass;
}

/** Defaults of a session; one line each with its unit. */
export const sessionDefaults = {
  maxReconnects: 12, // attempts in a row; with the client's backoff (25 ms doubling, 1 s cap) about 8 s of trying
  ackDelayMs: 25, // ms; one ack covers every push of a burst
  ackEvery: 64, // pushes; acked at once past this many (the node stops sending at 256 unacknowledged)
  pingMs: 15_000, // ms; as the gateway's own ping
  maxFrameBytes: 64 * 1024, // bytes; the gateway's default maxBodyBytes
};

/** How a session reaches the cluster: the client's routing, cookies and backoff (TroupeClient builds it). */
export interface SessionRoute {
  /** The node to connect to: `key`'s primary when the table names a reachable one, else the next listed node. */
  target(key: string | undefined): Promise<string>;
  /** `url` could not be reached or is stopping: skip it for a while, refresh the table. */
  failed(url: string): void;
  /** Headers for the upgrade: the client's own, and its `sid` cookie once it has one. */
  headers(): Record<string, string>;
  /** A 101's Set-Cookie pairs (`name=value`): the client keeps its `sid`. */
  keepCookies(pairs: readonly string[]): void;
  random(): number;
  readonly timeoutMs: number;
  readonly attemptTimeoutMs: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

/** The `hello` of the node serving the socket. */
export interface SessionOpen {
  node: number;
  conn: string;
  kind: string;
  key: string;
  /** The node's base URL the socket went to. */
  url: string;
}

export interface SessionEvents {
  /** A socket is open and bound to the actor (after every reconnect too). */
  open: SessionOpen;
  /** The socket closed or could not open; the next attempt comes after `delayMs`. */
  reconnect: { attempt: number; delayMs: number; code?: number; error?: TroupeError };
  /** The log lost pushes in (from, to] (truncated before this session read them): they will not come. */
  gap: { from: number; to: number };
  /** The session ended: `close()` (no error), or it gave up (the error says why). Pending asks were rejected. */
  close: { code: number; reason: string; error?: TroupeError };
  /** A push or event handler threw; without an 'error' listener the error is rethrown outside the session. */
  error: unknown;
}

export interface SessionStats {
  /** Pushes handed to the app. */
  pushes: number;
  /** Pushes dropped as already seen (seq at or below the position). */
  duplicates: number;
  /** Asks sent again with their id (after a reconnect, or a retryable refusal). */
  resent: number;
  /** Sockets opened after the first. */
  reconnects: number;
  acksSent: number;
}

interface PendingAsk {
  id: string;
  text: string;
  resolve(value: unknown): void;
  reject(error: TroupeError): void;
  timer: ReturnType<typeof setTimeout>;
  /** Retryable refusals so far (a backoff per refusal). */
  refusals: number;
  /** Times it went out: more than once is a resend (same id). */
  sends: number;
  /** Waiting out a backoff before it goes again. */
  retryTimer?: ReturnType<typeof setTimeout>;
  sentOn?: SocketLink;
}

/** One socket of the session, from its upgrade to its close. */
interface SocketLink {
  url: string;
  socket?: SessionSocket;
  hello?: SessionOpen;
  /** The last `error` frame: why the node is about to close it. */
  error?: TroupeError;
}

/** Codes after which the same socket goes to another node: the node is full, stopping, or cannot serve. */
const RECONNECT_ELSEWHERE: ReadonlySet<string> = new Set(['ERR_OVERLOADED', 'ERR_STOPPED', 'ERR_NO_NODES', 'ERR_NODE_UNREACHABLE']);

/**
 * Ask refusals an ask is resent after (same id, after a backoff): nothing was applied, or the id
 * makes a second delivery harmless — a node that timed out waiting for a failover answers the
 * resend with the recorded reply.
 */
const RESEND: (code: string) => boolean = (code) => isRetryable(code) || code === 'ERR_ASK_TIMEOUT' || code === 'ERR_OVERLOADED';

/** Close codes that say a frame of ours was refused: reconnecting would send it again. */
const REFUSED_FRAME: ReadonlySet<number> = new Set([CloseCodes.unsupported, CloseCodes.invalidPayload, CloseCodes.tooLarge]);

/**
 * A WebSocket session with one actor (docs/websocket.md), from `client.session(...)`: asks with
 * ids that a reconnect resends in order (the actor applies an id once), pushes handed to the app
 * in log order exactly once (acknowledged, duplicates dropped, resumed after a reconnect from the
 * position it reached), and reconnects — to the actor's primary, else another node — with the
 * client's backoff until `maxReconnects` attempts in a row failed.
 *
 *   app ─ ask(id) ─▶ socket ─▶ node ─▶ actor          reply(id) ─▶ resolves the ask
 *   actor ─ ctx.push ─▶ log ─▶ node ─ push(seq) ─▶ onPush ─ ack(seq) ─▶ node
 *   socket lost ─▶ backoff ─▶ /ws/kind/key?from=<position> ─▶ resend unanswered asks, same ids
 *
 * @example
 *   const lobby = client.session(room, 'lobby');
 *   lobby.onPush((m) => console.log(m));            // { n, from, text, at }
 *   await lobby.ask('say', { from: 'ann', text: 'hi' });
 *   lobby.close();
 */
export class Session<D extends SessionActor = SessionActor, Push = unknown> {
  private readonly o: typeof sessionDefaults & { askTimeoutMs: number; WebSocket: BrowserWebSocketClass | undefined };
  private link: SocketLink | undefined;
  private closed = false;
  /** The log position up to which this session has every push: the highest push seq, or the last `sync`. */
  private pos: number | undefined;
  /** Asks without a reply, in the order they were made (a Map iterates in insertion order). */
  private readonly pending = new Map<string, PendingAsk>();
  private readonly idPrefix = globalThis.crypto.randomUUID().replaceAll('-', '').slice(0, 16);
  private nextId = 0;
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  /** The highest seq acknowledged on the current socket, and how many pushes since. */
  private acked = -1;
  private unacked = 0;
  /** Connection attempts in a row that failed; reset by a `hello`. */
  private failures = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private opens = 0;
  private sessionKey: string | undefined;
  private readonly handlers: { [E in keyof SessionEvents]: Set<(e: SessionEvents[E]) => void> } = {
    open: new Set(),
    reconnect: new Set(),
    gap: new Set(),
    close: new Set(),
    error: new Set(),
  };
  private readonly pushHandlers = new Set<(msg: Push, seq: number) => void>();
  private readonly counters: SessionStats = { pushes: 0, duplicates: 0, resent: 0, reconnects: 0, acksSent: 0 };
  private readonly ready: Promise<SessionOpen>;
  private settleReady: { resolve(o: SessionOpen): void; reject(e: TroupeError): void } | undefined;

  constructor(
    private readonly route: SessionRoute,
    readonly kind: string,
    /** The path key; undefined for a cookie or address kind (the node picks it: see `key`). */
    private readonly pathKey: string | undefined,
    options: SessionOptions = {},
  ) {
    if (typeof kind !== 'string' || kind.length === 0)
      throw invalidOption('kind', 'must be an actor definition or a non-empty kind name', kind);
    if (pathKey !== undefined && (typeof pathKey !== 'string' || pathKey.length === 0))
      throw invalidOption('key', 'must be a non-empty string', pathKey);
    for (const name of ['askTimeoutMs', 'maxReconnects', 'ackDelayMs', 'pingMs', 'maxFrameBytes'] as const) {
      const v = options[name];
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw invalidOption(`options.${name}`, 'must be a positive integer', v);
    }
    if (options.from !== undefined && (!Number.isSafeInteger(options.from) || options.from < 0))
      throw invalidOption('options.from', 'must be a non-negative integer (a log position)', options.from);
    if (options.WebSocket !== undefined && typeof options.WebSocket !== 'function')
      throw invalidOption('options.WebSocket', 'must be a WebSocket constructor', options.WebSocket);
    this.o = {
      ...sessionDefaults,
      ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
      askTimeoutMs: options.askTimeoutMs ?? route.timeoutMs,
      WebSocket: options.WebSocket,
    };
    this.pos = options.from;
    this.sessionKey = pathKey;
    this.ready = new Promise<SessionOpen>((resolve, reject) => (this.settleReady = { resolve, reject }));
    this.ready.catch(() => undefined); // read through opened(); a session nobody awaits must not warn
    void this.connect();
  }

  /** Resolves at the first `open`; rejects if the session gives up (or is closed) before one. */
  opened(): Promise<SessionOpen> {
    return this.ready;
  }

  /** The actor's key: the path key, or the one the node gave a cookie or address session (undefined before the first `open`). */
  get key(): string | undefined {
    return this.sessionKey;
  }

  /** The log position up to which the app has every push: keep it to resume a later session (`options.from`). */
  get position(): number | undefined {
    return this.pos;
  }

  /** The serving node's hello, while a socket is open. */
  get current(): SessionOpen | undefined {
    return this.link?.hello;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  stats(): SessionStats {
    return { ...this.counters };
  }

  /**
   * One command to the actor, typed by its definition. Resolves with the reply; rejects with a
   * TroupeError (the server's code, ERR_ASK_TIMEOUT at `askTimeoutMs`, ERR_STOPPED once closed).
   * An ask the socket lost is resent after the reconnect with its id, so it is applied once.
   */
  ask<K extends CommandName<D>>(command: K, input?: InputOf<D['commands'][K]>): Promise<ReplyOf<D['commands'][K]>> {
    return this.askRaw(command, input) as Promise<ReplyOf<D['commands'][K]>>;
  }

  askRaw(command: string, input?: unknown): Promise<unknown> {
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', `the session with ${this.describe()} is closed`));
    // Checked here: a frame the node refuses closes the socket, and a resend would close the next one too.
    if (typeof command !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(command))
      return Promise.reject(
        troupeError('ERR_UNKNOWN_COMMAND', `command must match [A-Za-z0-9_-]{1,64} (got ${JSON.stringify(String(command)).slice(0, 80)})`, {
          kind: this.kind,
        }),
      );
    const problem = checkValue(input, `input of ${this.describe()} '${command}'`);
    if (problem !== null) return Promise.reject(problem);
    const id = `${this.idPrefix}.${++this.nextId}`;
    const text = JSON.stringify(input === undefined ? { t: 'ask', id, command } : { t: 'ask', id, command, input });
    if (utf8Length(text) > this.o.maxFrameBytes)
      return Promise.reject(
        troupeError(
          'ERR_BODY_TOO_LARGE',
          `input of ${this.describe()} '${command}' makes a frame over options.maxFrameBytes (${this.o.maxFrameBytes} bytes)`,
          { limit: this.o.maxFrameBytes },
        ),
      );
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.forget(ask);
        reject(
          troupeError('ERR_ASK_TIMEOUT', `${this.describe()} '${command}' got no reply within ${this.o.askTimeoutMs} ms`, {
            timeoutMs: this.o.askTimeoutMs,
            id,
          }),
        );
      }, this.o.askTimeoutMs);
      const ask: PendingAsk = { id, text, resolve, reject, timer, refusals: 0, sends: 0 };
      this.pending.set(id, ask);
      if (this.link?.hello !== undefined) this.sendAsk(ask);
    });
  }

  /** Calls `handler` with each push, in log order, once; returns its unsubscribe. */
  onPush(handler: (msg: Push, seq: number) => void): () => void {
    this.pushHandlers.add(handler);
    return () => void this.pushHandlers.delete(handler);
  }

  /** Listens to a session event; returns its unsubscribe. */
  on<E extends keyof SessionEvents>(event: E, handler: (e: SessionEvents[E]) => void): () => void {
    const set = this.handlers[event] as Set<(e: SessionEvents[E]) => void> | undefined;
    if (set === undefined) throw invalidOption('event', `must be one of ${Object.keys(this.handlers).join(', ')}`, event);
    set.add(handler);
    return () => void set.delete(handler);
  }

  /** Ends the session: acknowledges what arrived, closes the socket, rejects pending asks (ERR_STOPPED). No reconnect follows. */
  close(): void {
    if (this.closed) return;
    this.flushAck();
    this.end(CloseCodes.normal, 'closed by the client', undefined);
  }

  // ── Connecting ──────────────────────────────────────────────────────────────────────────

  private async connect(): Promise<void> {
    if (this.closed) return;
    let url: string | undefined;
    try {
      url = await this.route.target(this.sessionKey);
      if (this.closed) return;
      const link: SocketLink = { url };
      this.link = link;
      await openSocket(
        this.socketUrl(url),
        {
          headers: this.route.headers(),
          timeoutMs: this.route.attemptTimeoutMs,
          pingMs: this.o.pingMs,
          ...(this.o.WebSocket && { WebSocket: this.o.WebSocket }),
        },
        {
          open: (socket, cookies) => {
            link.socket = socket;
            this.route.keepCookies(cookies);
            // close() ran during the upgrade: this socket is not wanted.
            if (this.closed || this.link !== link) socket.close(CloseCodes.normal, 'session closed');
          },
          message: (text) => this.frame(link, text),
          close: (code, reason) => this.lost(link, code, reason),
        },
      );
    } catch (e) {
      const error = isTroupeError(e) ? e : troupeError('ERR_NODE_UNREACHABLE', String((e as Error)?.message ?? e));
      if (this.closed) return;
      this.link = undefined;
      // A refusal that is the session's own (unknown kind, a bad key, a forbidden or expired session) will not change by retrying.
      if (error.details?.network !== true && !RECONNECT_ELSEWHERE.has(error.code) && !isRetryable(error.code))
        return this.end(CloseCodes.policy, error.code, error);
      if (url !== undefined) this.route.failed(url);
      this.retry(undefined, error);
    }
  }

  /** The socket of `link` closed (the node's side, the network, or ours). */
  private lost(link: SocketLink, code: number, reason: string): void {
    if (this.link !== link) return;
    this.link = undefined;
    this.clearAckTimer();
    if (this.closed) return;
    for (const ask of this.pending.values()) if (ask.sentOn === link) ask.sentOn = undefined;
    const error = link.error;
    // The node refused a frame of ours, or bound nothing (an error frame it will not change its mind on).
    if (error !== undefined && !RECONNECT_ELSEWHERE.has(error.code) && !isRetryable(error.code)) return this.end(code, reason, error);
    if (error === undefined && REFUSED_FRAME.has(code))
      return this.end(
        code,
        reason,
        troupeError(
          code === CloseCodes.tooLarge ? 'ERR_BODY_TOO_LARGE' : 'ERR_BAD_MESSAGE',
          `${link.url} closed the session's socket (${code} ${reason})`,
        ),
      );
    // Going away (a stopping node), dead, or refusing: the next attempt goes elsewhere.
    if (error !== undefined || code === CloseCodes.goingAway || code === 1006 || code === CloseCodes.internal || code === DEAD_SOCKET)
      this.route.failed(link.url);
    this.retry(code, error);
  }

  /** The next attempt after a backoff, or the end after `maxReconnects` failures in a row. */
  private retry(code: number | undefined, error: TroupeError | undefined): void {
    this.failures++;
    if (this.failures > this.o.maxReconnects) {
      const why = error?.message ?? `the socket closed with ${code}`;
      return this.end(
        CloseCodes.goingAway,
        'gave up',
        troupeError(
          'ERR_NODE_UNREACHABLE',
          `the session with ${this.describe()} gave up after ${this.o.maxReconnects} failed connection attempts in a row: ${why}`,
          { attempts: this.o.maxReconnects },
        ),
      );
    }
    const delayMs = backoffDelay(this.failures, this.route.backoffBaseMs, this.route.backoffMaxMs, this.route.random());
    this.emit('reconnect', { attempt: this.failures, delayMs, ...(code !== undefined && { code }), ...(error !== undefined && { error }) });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.connect();
    }, delayMs);
  }

  private socketUrl(base: string): string {
    const path = `/ws/${encodeURIComponent(this.kind)}${this.pathKey === undefined ? '' : `/${encodeURIComponent(this.pathKey)}`}`;
    return base.replace(/^http/, 'ws') + path + (this.pos === undefined ? '' : `?from=${this.pos}`);
  }

  // ── Frames ──────────────────────────────────────────────────────────────────────────────

  private frame(link: SocketLink, text: string): void {
    if (this.link !== link || this.closed) return;
    const f = parseServerFrame(text);
    if (typeof f === 'string') {
      // A node that speaks something else: leave it for another (counted as a failed attempt).
      link.error = troupeError('ERR_NODE_UNREACHABLE', `${link.url} sent a frame that is not the session protocol: ${f}`);
      return link.socket?.close(CloseCodes.invalidPayload, 'bad frame');
    }
    switch (f.t) {
      case 'hello':
        return this.hello(link, f);
      case 'reply':
        return this.reply(f);
      case 'push':
        return this.push(f.seq, f.msg);
      case 'sync':
        this.pos = Math.max(this.pos ?? -1, f.seq);
        return;
      case 'gap':
        this.pos = Math.max(this.pos ?? -1, f.to);
        return this.emit('gap', { from: f.from, to: f.to });
      case 'error':
        link.error = fromErrorRecord({ code: f.error.code as ErrorCode, message: f.error.message });
        return;
    }
  }

  private hello(link: SocketLink, f: Extract<ServerFrame, { t: 'hello' }>): void {
    const open: SessionOpen = { node: f.node, conn: f.conn, kind: f.kind, key: f.key, url: link.url };
    link.hello = open;
    this.sessionKey = f.key;
    this.failures = 0;
    this.acked = this.pos ?? -1;
    this.unacked = 0;
    if (this.opens++ > 0) this.counters.reconnects++;
    // Unanswered asks go again, in the order they were made, with their ids: the actor applies each once.
    for (const ask of this.pending.values()) if (ask.retryTimer === undefined) this.sendAsk(ask);
    this.settleReady?.resolve(open);
    this.settleReady = undefined;
    this.emit('open', open);
  }

  private reply(f: Extract<ServerFrame, { t: 'reply' }>): void {
    const ask = this.pending.get(f.id);
    if (ask === undefined) return; // answered already, or given up on
    if (f.ok) {
      this.forget(ask);
      return ask.resolve(f.value);
    }
    const error = fromErrorRecord({
      code: (typeof f.error?.code === 'string' ? f.error.code : 'ERR_INTERNAL') as ErrorCode,
      message: String(f.error?.message),
    });
    if (RESEND(error.code)) {
      // The actor's primary is moving or busy: the same id goes again after a backoff.
      ask.refusals++;
      ask.sentOn = undefined;
      ask.retryTimer = setTimeout(
        () => {
          ask.retryTimer = undefined;
          if (this.pending.has(ask.id) && this.link?.hello !== undefined) this.sendAsk(ask);
        },
        backoffDelay(ask.refusals, this.route.backoffBaseMs, this.route.backoffMaxMs, this.route.random()),
      );
      return;
    }
    this.forget(ask);
    ask.reject(error);
  }

  private sendAsk(ask: PendingAsk): void {
    const link = this.link;
    if (link?.socket === undefined || ask.sentOn === link) return;
    if (ask.sends++ > 0) this.counters.resent++;
    ask.sentOn = link;
    this.sendText(link, ask.text);
  }

  private forget(ask: PendingAsk): void {
    clearTimeout(ask.timer);
    if (ask.retryTimer !== undefined) clearTimeout(ask.retryTimer);
    this.pending.delete(ask.id);
  }

  // ── Pushes ──────────────────────────────────────────────────────────────────────────────

  private push(seq: number, msg: unknown): void {
    // Acked even when dropped: the node holds unacknowledged pushes against its cap.
    this.scheduleAck(seq);
    if (this.pos !== undefined && seq <= this.pos) {
      this.counters.duplicates++;
      return;
    }
    this.pos = seq;
    this.counters.pushes++;
    for (const handler of this.pushHandlers) this.safely(() => handler(msg as Push, seq));
  }

  private scheduleAck(seq: number): void {
    if (seq <= this.acked) return;
    this.unacked++;
    if (this.unacked >= this.o.ackEvery) return this.flushAck();
    this.ackTimer ??= setTimeout(() => {
      this.ackTimer = undefined;
      this.flushAck();
    }, this.o.ackDelayMs);
  }

  /** One cumulative ack for every push so far on this socket. */
  private flushAck(): void {
    this.clearAckTimer();
    const link = this.link;
    const upTo = this.pos ?? -1;
    if (link?.hello === undefined || this.unacked === 0 || upTo <= this.acked) return;
    this.acked = upTo;
    this.unacked = 0;
    this.counters.acksSent++;
    this.sendText(link, JSON.stringify({ t: 'ack', seq: upTo }));
  }

  private clearAckTimer(): void {
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
  }

  // ── Plumbing ────────────────────────────────────────────────────────────────────────────

  private sendText(link: SocketLink, text: string): void {
    try {
      link.socket?.send(text);
    } catch {
      // The socket is closing: its close event follows, and the reconnect resends.
    }
  }

  private end(code: number, reason: string, error: TroupeError | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.clearAckTimer();
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    const link = this.link;
    this.link = undefined;
    if (link?.socket !== undefined) {
      try {
        link.socket.close(CloseCodes.normal, 'session closed');
      } catch {
        // already closed
      }
    }
    const cause = error ?? troupeError('ERR_STOPPED', `the session with ${this.describe()} is closed`);
    for (const ask of [...this.pending.values()]) {
      this.forget(ask);
      ask.reject(cause);
    }
    this.settleReady?.reject(cause);
    this.settleReady = undefined;
    this.emit('close', { code, reason, ...(error !== undefined && { error }) });
  }

  private emit<E extends keyof SessionEvents>(event: E, e: SessionEvents[E]): void {
    for (const handler of this.handlers[event] as Set<(e: SessionEvents[E]) => void>) this.safely(() => handler(e));
  }

  /** Runs an app's handler: its throw is the app's, reported as 'error', never the session's end. */
  private safely(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (this.handlers.error.size === 0) {
        setTimeout(() => {
          throw e;
        }, 0);
        return;
      }
      for (const h of this.handlers.error) {
        try {
          h(e);
        } catch {
          // an error handler that throws has nowhere left to report to
        }
      }
    }
  }

  private describe(): string {
    return `${this.kind}/${this.sessionKey ?? '(session)'}`;
  }
}

function utf8Length(s: string): number {
  return new TextEncoder().encode(s).length;
}
