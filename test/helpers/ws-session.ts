/**
 * A tiny client of the WebSocket session protocol (docs/websocket.md) for the tests that check
 * sessions from the outside. Deliberately independent of `troupe/client` and small enough to be
 * obviously right, so a test that fails blames the node, not the client:
 *
 * - every ask gets an id (`<name>-<n>`) and stays pending until its reply; after a reconnect (to
 *   the next of `urls`) every pending ask is resent in order with the same id, and a reply whose
 *   code says "nothing decided yet" (RESEND_CODES) sends it again, same id, after a pause;
 * - every push above `seen` is kept and acknowledged (unless `autoAck` is off); one at or below it
 *   is a duplicate, counted and dropped; a reconnect resumes with `?from=<seen>`.
 *
 * ```ts
 * const a = new WsSession({ urls: [n1.url, n2.url], path: '/ws/room/lobby', name: 'a' });
 * await a.connect();
 * await a.ask('say', { from: 'a', text: 'hi' });
 * await a.until(() => a.pushes.length === 1, 5_000, () => 'the push of hi');
 * await a.close();
 * ```
 */
import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';

export interface Push {
  seq: number;
  msg: unknown;
}

export interface ErrorRecord {
  code: string;
  message: string;
}

/**
 * Reply codes after which resending the same id is right: the node could not reach (or settle
 * with) the actor's primary, so the message may or may not have been applied — and the actor
 * applies an id once, answering a resend with the recorded reply.
 */
export const RESEND_CODES: ReadonlySet<string> = new Set([
  'ERR_ASK_TIMEOUT',
  'ERR_NODE_UNREACHABLE',
  'ERR_NOT_PRIMARY',
  'ERR_NOT_OWNER',
  'ERR_PARTITION_UNAVAILABLE',
  'ERR_STALE_EPOCH',
  'ERR_NO_NODES',
  'ERR_STOPPED',
  'ERR_WORKER_DIED',
  'ERR_MAILBOX_FULL',
  'ERR_SEND_QUEUE_FULL',
  'ERR_OVERLOADED',
]);

/** A refused ask (a code not in RESEND_CODES). */
export class AskRefused extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

interface PendingAsk {
  id: string;
  command: string;
  input: unknown;
  /** The socket it was last sent on; a new socket (a reconnect) sends it again. */
  sentOn: WebSocket | undefined;
  sends: number;
  resolve: (value: unknown) => void;
  reject: (e: Error) => void;
}

export interface WsSessionOptions {
  /** Nodes' http://host:port, tried in turn from `first`: a reconnect goes to the next one. */
  urls: readonly string[];
  first?: number;
  /** '/ws/room/lobby' */
  path: string;
  /** Prefix of this client's ask ids. */
  name: string;
  /** Ack each push as it arrives (default true). */
  autoAck?: boolean;
  /** Reconnect when the socket closes without `close()` (default true). */
  reconnect?: boolean;
}

export class WsSession {
  /** Every push kept, in arrival order: ascending seqs, no duplicates (the dedupe guarantees it). */
  readonly pushes: Push[] = [];
  /** The highest push (or `sync`) seq this client has: its `?from=` after a reconnect. */
  seen = -1;
  readonly hellos: Array<{ node: number; conn: string; url: string }> = [];
  readonly closes: Array<{ code: number; reason: string }> = [];
  readonly errors: ErrorRecord[] = [];
  readonly gaps: Array<{ from: number; to: number }> = [];
  /** Pushes at or below `seen` that arrived again (dropped). */
  duplicatePushes = 0;
  /** Replies for ids no longer pending (a resend answered twice). */
  duplicateReplies = 0;
  /** Asks sent more than once (after a reconnect or a RESEND_CODES reply). */
  resent = 0;
  /** Asks acknowledged (an ok reply). */
  acked = 0;
  autoAck: boolean;

  private readonly pending = new Map<string, PendingAsk>(); // insertion order = send order
  private readonly waiters = new Set<() => void>();
  private ws: WebSocket | undefined;
  private index: number;
  private nextId = 1;
  private closing = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private resendTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: WsSessionOptions) {
    this.index = o.first ?? 0;
    this.autoAck = o.autoAck ?? true;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Opens a socket to the current url; resolves on its hello (rejects if it closes first and `reconnect` is off). */
  connect(): Promise<void> {
    const hellos = this.hellos.length;
    const closes = this.closes.length;
    this.open();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.hellos.length > hellos) done(resolve);
        else if (this.closes.length > closes && this.o.reconnect === false) done(() => reject(new Error(`${this.o.name}: socket closed before hello: ${JSON.stringify(this.closes)}`)));
      };
      const done = (f: () => void) => (this.waiters.delete(check), f());
      this.waiters.add(check);
      check();
    });
  }

  /** Sends a command; resolves with its value once acknowledged (resent as needed), rejects when refused. */
  ask(command: string, input?: unknown): Promise<unknown> {
    const id = `${this.o.name}-${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const ws = this.ws;
      if (this.o.reconnect === false && ws !== undefined && ws.readyState >= WebSocket.CLOSING)
        return reject(new Error(`${this.o.name}: socket closed (${JSON.stringify(this.closes.at(-1))}); ${command} not sent`));
      this.pending.set(id, { id, command, input, sentOn: undefined, sends: 0, resolve, reject });
      this.flush();
    });
  }

  /** Acknowledges every push up to `seen`. */
  ack(): void {
    if (this.ws?.readyState === WebSocket.OPEN && this.seen >= 0) this.ws.send(JSON.stringify({ t: 'ack', seq: this.seen }));
  }

  /** Resolves when `holds()` is true after some event of this session; rejects with `why()` at the deadline. */
  until(holds: () => boolean, timeoutMs: number, why: () => string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!holds()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${this.o.name}: not within ${timeoutMs} ms: ${why()}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** Cuts the socket without a closing handshake, as a dead network would; resolves once it is closed. */
  async drop(): Promise<void> {
    const ws = this.ws;
    if (ws === undefined || ws.readyState === WebSocket.CLOSED) return;
    const closed = new Promise<void>((r) => ws.once('close', () => r()));
    ws.terminate();
    await closed;
  }

  /** Opens a new socket to the next of `urls`, resuming from `seen`; resolves on its hello. */
  reopen(): Promise<void> {
    this.index++;
    return this.connect();
  }

  /** Closes the socket for good (no reconnect); resolves once it has closed. */
  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.resendTimer);
    const ws = this.ws;
    if (ws === undefined || ws.readyState === WebSocket.CLOSED) return;
    const closed = new Promise<void>((r) => ws.once('close', () => r()));
    ws.close(1000, 'done');
    await closed;
  }

  private open(): void {
    const base = this.o.urls[this.index % this.o.urls.length]!;
    const url = base.replace(/^http/, 'ws') + this.o.path + (this.seen >= 0 ? `?from=${this.seen}` : '');
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.on('error', () => undefined); // 'close' follows; the reconnect decides
    ws.on('message', (data, isBinary) => {
      if (this.ws === ws && !isBinary) this.frame(JSON.parse(String(data)) as Record<string, unknown>, ws, base);
      this.wake();
    });
    ws.on('close', (code, reason) => {
      if (this.ws !== ws) return;
      this.closes.push({ code, reason: String(reason) });
      if (!this.closing && this.o.reconnect !== false) {
        // The next node, after a pause (a refused connection comes back at once).
        this.index++;
        this.reconnectTimer = setTimeout(() => this.open(), 100);
      } else if (this.o.reconnect === false) {
        // Nothing will send them again: a test waiting for a reply learns it now, not at its timeout.
        for (const p of this.pending.values()) p.reject(new Error(`${this.o.name}: socket closed (${code} ${String(reason)}) before the reply to ${p.id}`));
        this.pending.clear();
      }
      this.wake();
    });
  }

  private frame(f: Record<string, unknown>, ws: WebSocket, url: string): void {
    switch (f.t) {
      case 'hello':
        this.hellos.push({ node: f.node as number, conn: f.conn as string, url });
        return this.flush();
      case 'push': {
        const seq = f.seq as number;
        if (seq <= this.seen) {
          this.duplicatePushes++;
          return;
        }
        this.pushes.push({ seq, msg: f.msg });
        this.seen = seq;
        if (this.autoAck) ws.send(JSON.stringify({ t: 'ack', seq }));
        return;
      }
      case 'sync':
        this.seen = Math.max(this.seen, f.seq as number);
        return;
      case 'gap':
        this.gaps.push({ from: f.from as number, to: f.to as number });
        return;
      case 'error':
        this.errors.push(f.error as ErrorRecord);
        return;
      case 'reply':
        return this.replied(f);
    }
  }

  private replied(f: Record<string, unknown>): void {
    const p = this.pending.get(f.id as string);
    if (p === undefined) {
      this.duplicateReplies++;
      return;
    }
    if (f.ok === true) {
      this.pending.delete(p.id);
      this.acked++;
      return p.resolve(f.value);
    }
    const error = f.error as ErrorRecord;
    if (RESEND_CODES.has(error.code)) {
      // Not decided: send it again on this socket (or the next) after a pause, with the same id.
      p.sentOn = undefined;
      clearTimeout(this.resendTimer);
      if (!this.closing) this.resendTimer = setTimeout(() => this.flush(), 100 * Math.min(p.sends, 10));
      return;
    }
    this.pending.delete(p.id);
    p.reject(new AskRefused(error.code, error.message));
  }

  /** Sends, in order, every pending ask not yet sent on the current socket. */
  private flush(): void {
    const ws = this.ws;
    if (ws === undefined || ws.readyState !== WebSocket.OPEN || this.hellos.length === 0) return;
    for (const p of this.pending.values()) {
      if (p.sentOn === ws) continue;
      if (p.sends > 0) this.resent++;
      p.sends++;
      p.sentOn = ws;
      ws.send(JSON.stringify(p.input === undefined ? { t: 'ask', id: p.id, command: p.command } : { t: 'ask', id: p.id, command: p.command, input: p.input }));
    }
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

/** A raw socket for hostile frames: every frame it receives, and how it closed. */
export interface RawSocket {
  ws: WebSocket;
  frames: Array<Record<string, unknown>>;
  closed: Promise<{ code: number; reason: string }>;
}

/** Opens `url` (ws://…) and resolves once its hello arrived. */
export function openRaw(url: string): Promise<RawSocket> {
  const ws = new WebSocket(url);
  const frames: Array<Record<string, unknown>> = [];
  ws.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.once('close', (code, reason) => r({ code, reason: String(reason) })));
  return new Promise((resolve, reject) => {
    ws.on('message', (d) => {
      frames.push(JSON.parse(String(d)) as Record<string, unknown>);
      if (frames.length === 1) resolve({ ws, frames, closed });
    });
    void closed.then((c) => reject(new Error(`${url}: closed before hello (${c.code} ${c.reason})`)));
  });
}

/**
 * Tries an upgrade that the node should refuse: resolves with the HTTP status and JSON body it
 * answered, or status 101 if the socket opened after all (it is closed at once).
 */
export function refusedUpgrade(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: text });
        }
        ws.terminate();
      });
    });
    ws.on('open', () => {
      resolve({ status: 101, body: undefined });
      ws.terminate();
    });
    ws.on('error', (e) => reject(e));
  });
}
