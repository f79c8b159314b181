import { nanoid } from 'nanoid';
import { actorId, type PushItem, type PushNote } from '../actors/watchers.ts';
import type { Clock, TimerHandle } from '../core/clock.ts';
import { invalidOption, toErrorRecord, troupeError, type TroupeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { mergeTokens, type Token, type TokenExchange, type TokenSet } from '../replication/token.ts';
import { CloseCodes, parseClientFrame, type ServerFrame } from './ws-protocol.ts';

/** How the hub reaches actors: the node's ask, forwarded to the key's primary when it is elsewhere. */
export interface HubSender {
  askRaw(kind: string, key: string, command: string, input: unknown, msgId: string | undefined, timeoutMs: number, rw?: TokenExchange): Promise<unknown>;
}

/** The hub's view of one WebSocket (the `ws` socket in the gateway, a fake in tests). */
export interface HubSocket {
  send(text: string): void;
  close(code: number, reason: string): void;
}

export interface SessionHubOptions {
  sender: HubSender;
  /** This node's id: watchers are registered by node. */
  self: number;
  clock: Clock;
  log: Logger;
  /** Pushes a connection may leave unacknowledged; past it the node sends no more until acks come (default 256). */
  maxUnacked?: number;
  /** Asks a connection may have in flight; more are refused with ERR_OVERLOADED (default 64). */
  maxInflight?: number;
  /** WebSocket connections this node holds at most; more are refused at the upgrade (default 10,000). */
  maxConnections?: number;
  /** How often each watched actor's watch is renewed, ms: the heartbeat of "who is connected where" (default 5,000). */
  renewMs?: number;
  /** An ask's deadline, ms (default 5,000). */
  askTimeoutMs?: number;
}

export const hubDefaults = {
  maxUnacked: 256,
  maxInflight: 64,
  maxConnections: 10_000,
  renewMs: 5_000, // the actor's host drops a watch not renewed in 15 s (watchLimits.leaseMs)
  askTimeoutMs: 5_000,
  pageMax: 256, // log records read per catch-up
  firstReadRetryMs: 500, // a socket's first read failed (its actor's primary is moving): read again this soon
};

/** What the gateway checks before an ask goes (the kind's authorization hook), bound to the upgrade's request. */
export type AskGuard = (command: string, input: unknown) => Promise<void>;

interface WatchReply {
  to: number;
  items: PushItem[];
  more?: boolean;
  lost?: boolean;
}

/** One client socket bound to one actor. */
export class Connection {
  readonly id = nanoid(12);
  /** Log position up to which this socket has every push; -1 until the first watch answers. */
  seen = -1;
  /** Seqs of pushes sent and not yet acknowledged, ascending. */
  readonly unacked: number[] = [];
  /** Acks stopped the flow (the unacked cap): catch up from `seen` once acks come. */
  behind = false;
  fetching = false;
  refetch = false;
  inflight = 0;
  tokens: TokenSet = new Map();
  closed = false;

  constructor(
    readonly socket: HubSocket,
    readonly sub: Subscription,
    /** The client's resume point (`?from=`): the log position whose pushes it has. */
    readonly from: number | undefined,
    readonly guard: AskGuard | undefined,
  ) {}
}

/** One actor watched from this node, and its sockets here. */
class Subscription {
  readonly conns = new Set<Connection>();
  renew: TimerHandle | undefined;
  constructor(
    readonly kind: string,
    readonly key: string,
  ) {}
}

/**
 * A node's WebSocket sessions (docs/websocket.md). Each socket is bound to one actor; the hub
 * watches that actor at its primary (a `$watch` ask, wherever the primary is, renewed every
 * `renewMs` as a heartbeat) and the primary's host sends every durable write of it back as a
 * `PushNote`. Pushes are journaled records, so a socket's position in the actor's log is all it
 * needs: a note that starts past it is a gap, read back with `$watch` from that position, and a
 * client that reconnects — to any node, after a failover too — says where it was (`?from=`) and
 * gets the rest in order. Client asks carry their ids as message ids: a resend is applied once.
 *
 *   client ─ ask ─▶ hub ─ askRaw ─▶ primary ─ durable ─▶ reply ─▶ client
 *   primary ─ durable write of a watched actor ─ PushNote ─▶ hub(s) ─ push ─▶ clients ─ ack ─▶ hub
 */
export class SessionHub {
  private readonly subs = new Map<string, Subscription>();
  private connections = 0;
  private readonly o: Required<Omit<SessionHubOptions, 'sender' | 'clock' | 'log'>> & { pageMax: number };
  private stopped = false;
  /** Counters for GET /cluster/connections and metrics. */
  readonly counters = { opened: 0, closed: 0, pushes: 0, gaps: 0, refusedFull: 0, badFrames: 0 };

  constructor(private readonly options: SessionHubOptions) {
    this.o = { ...hubDefaults, ...withoutUndefined(options) } as SessionHub['o'];
    for (const name of ['maxUnacked', 'maxInflight', 'maxConnections', 'renewMs', 'askTimeoutMs'] as const) {
      const v = this.o[name];
      if (!Number.isSafeInteger(v) || v < 1) throw invalidOption(`options.sessions.${name}`, 'must be a positive integer', v);
    }
  }

  get connectionCount(): number {
    return this.connections;
  }

  /** Counters and gauges for metrics (see NodeMetrics). */
  stats(): Record<string, number> {
    return { ...this.counters, connections: this.connections, actors: this.subs.size };
  }

  /** Actors with sockets here, and how many each. */
  sessions(): Array<{ kind: string; key: string; connections: number }> {
    return [...this.subs.values()].map((s) => ({ kind: s.kind, key: s.key, connections: s.conns.size }));
  }

  /**
   * Binds a new socket to actor (kind, key). `from`: the log position whose pushes the client
   * already has (a reconnect), or undefined for pushes from now on. Refuses (ERR_OVERLOADED)
   * past `maxConnections`; the caller turns that into the upgrade's 503.
   */
  open(socket: HubSocket, kind: string, key: string, from: number | undefined, guard?: AskGuard): Connection {
    this.checkRoom();
    const id = actorId(kind, key);
    let sub = this.subs.get(id);
    if (sub === undefined) this.subs.set(id, (sub = new Subscription(kind, key)));
    const conn = new Connection(socket, sub, from, guard);
    sub.conns.add(conn);
    this.connections++;
    this.counters.opened++;
    this.send(conn, { t: 'hello', node: this.options.self, conn: conn.id, kind, key });
    this.fetch(conn);
    if (sub.renew === undefined) this.armRenew(sub);
    return conn;
  }

  /** Throws ERR_OVERLOADED at the connection cap (ERR_STOPPED when stopping): the gateway asks before the upgrade, so the refusal is a 503. */
  checkRoom(): void {
    if (this.stopped) throw troupeError('ERR_STOPPED', 'node is stopping');
    if (this.connections >= this.o.maxConnections) {
      this.counters.refusedFull++;
      throw troupeError('ERR_OVERLOADED', `this node holds its most WebSocket connections (${this.o.maxConnections}); try another node`);
    }
  }

  /** A text frame from the client. A malformed one closes that socket (1007), nothing else. */
  message(conn: Connection, text: string): void {
    if (conn.closed) return;
    const frame = parseClientFrame(text);
    if (typeof frame === 'string') {
      this.counters.badFrames++;
      return this.refuse(conn, CloseCodes.invalidPayload, troupeError('ERR_BAD_MESSAGE', frame));
    }
    if (frame.t === 'ack') return this.acked(conn, frame.seq);
    if (conn.inflight >= this.o.maxInflight) {
      const error = toErrorRecord(troupeError('ERR_OVERLOADED', `more than ${this.o.maxInflight} asks in flight on this socket; wait for replies`));
      return this.send(conn, { t: 'reply', id: frame.id, ok: false, error });
    }
    conn.inflight++;
    const { kind, key } = conn.sub;
    const rw: TokenExchange = { tokens: conn.tokens, onToken: (t: Token) => void (conn.tokens = mergeTokens(conn.tokens, t)) };
    // The guard runs inside the chain: one that throws (an unknown command) answers that ask, nothing else.
    Promise.resolve()
      .then(() => conn.guard?.(frame.command, frame.input))
      .then(() => this.options.sender.askRaw(kind, key, frame.command, frame.input, frame.id, this.o.askTimeoutMs, rw))
      .then(
        (value) => this.send(conn, { t: 'reply', id: frame.id, ok: true, value: value ?? null }),
        (e: unknown) => {
          const r = toErrorRecord(e);
          this.send(conn, { t: 'reply', id: frame.id, ok: false, error: { code: r.code, message: r.message } });
        },
      )
      .finally(() => conn.inflight--);
  }

  /** The socket closed (either side). */
  closed(conn: Connection): void {
    if (conn.closed) return;
    conn.closed = true;
    this.connections--;
    this.counters.closed++;
    const sub = conn.sub;
    sub.conns.delete(conn);
    if (sub.conns.size > 0) return;
    this.subs.delete(actorId(sub.kind, sub.key));
    if (sub.renew !== undefined) this.options.clock.clearTimeout(sub.renew);
    // Tells the primary at once (connections: 0 ends the watch); its lease would end it anyway.
    void this.watch(sub, -1, 1, 0).catch(() => undefined);
  }

  /** A durable write of an actor this node watches (from a local host, or a peer over the transport). */
  deliver(note: PushNote): void {
    const sub = this.subs.get(actorId(note.kind, note.key));
    if (sub === undefined) return; // its last socket closed; the primary drops the watch when its lease ends
    for (const conn of sub.conns) this.advance(conn, note);
  }

  /** Renews every watch now: the ring changed, so a watched actor may have a new primary that knows nothing of us. */
  rewatchAll(): void {
    for (const sub of this.subs.values()) this.renewNow(sub);
  }

  /** Closes every socket with 1001 (going away): clients reconnect to another node and resume. */
  close(): void {
    this.stopped = true;
    for (const sub of this.subs.values()) {
      if (sub.renew !== undefined) this.options.clock.clearTimeout(sub.renew);
      for (const conn of [...sub.conns]) {
        safeClose(conn.socket, CloseCodes.goingAway, 'node stopping');
        this.closed(conn);
      }
    }
  }

  // ── Pushes ────────────────────────────────────────────────────────────────────────────────

  /** Takes a stretch of the log: the pushes past the socket's position, as far as the unacked cap allows. */
  private advance(conn: Connection, note: { from: number; to: number; items: PushItem[]; lost?: boolean }): void {
    if (conn.closed) return;
    // A note during a read may be partly in it, partly past it: read again once this one answers.
    if (conn.fetching) return void (conn.refetch = true);
    if (conn.seen < 0 || note.to <= conn.seen) return;
    if (note.from > conn.seen) {
      // A gap: a note went missing (a lost frame, a primary that changed) — read it back.
      this.counters.gaps++;
      return this.fetch(conn);
    }
    if (note.lost === true) this.send(conn, { t: 'gap', from: conn.seen, to: note.items[0] !== undefined ? note.items[0].seq - 1 : note.to });
    for (const item of note.items) {
      if (item.seq <= conn.seen) continue;
      if (conn.unacked.length >= this.o.maxUnacked) {
        conn.behind = true;
        conn.seen = item.seq - 1;
        return;
      }
      conn.unacked.push(item.seq);
      this.counters.pushes++;
      this.send(conn, { t: 'push', seq: item.seq, msg: item.msg });
      conn.seen = item.seq;
    }
    conn.seen = note.to;
  }

  private acked(conn: Connection, seq: number): void {
    let n = 0;
    while (n < conn.unacked.length && conn.unacked[n]! <= seq) n++;
    if (n > 0) conn.unacked.splice(0, n);
    if (conn.behind && conn.unacked.length < this.o.maxUnacked) {
      conn.behind = false;
      this.fetch(conn);
    }
  }

  /**
   * Reads the socket's pushes from its position (the client's `from` on the first read, or
   * live-only), page by page, then says how far it is (`sync`). One read at a time per socket.
   */
  private fetch(conn: Connection): void {
    if (conn.closed || conn.behind) return;
    if (conn.fetching) {
      conn.refetch = true;
      return;
    }
    conn.fetching = true;
    conn.refetch = false;
    const sub = conn.sub;
    const from = conn.seen >= 0 ? conn.seen : (conn.from ?? -1);
    const room = Math.max(1, Math.min(this.o.pageMax, this.o.maxUnacked - conn.unacked.length));
    this.watch(sub, from, room, sub.conns.size).then(
      (r) => {
        conn.fetching = false;
        if (conn.closed) return;
        // A client ahead of the log saw records it lost (lazy durability): the log is the truth, and `sync` says so.
        if (conn.seen < 0) conn.seen = from < 0 ? r.to : Math.min(from, r.to);
        this.advance(conn, { from, ...r });
        if (r.more === true || conn.refetch) return this.fetch(conn);
        if (!conn.behind) this.send(conn, { t: 'sync', seq: conn.seen });
      },
      (e: unknown) => {
        conn.fetching = false;
        // The primary is moving (failover, handoff) or busy. A socket that has never been placed
        // in the log is retried soon on its own; the others catch up at the next renewal.
        this.options.log.debug({ kind: sub.kind, key: sub.key, err: e }, 'session catch-up failed; retrying');
        if (conn.seen < 0 && !conn.closed) this.options.clock.setTimeout(() => this.fetch(conn), hubDefaults.firstReadRetryMs);
      },
    );
  }

  private watch(sub: Subscription, from: number, max: number, connections: number): Promise<WatchReply> {
    const input = { node: this.options.self, connections, from, max };
    return this.options.sender.askRaw(sub.kind, sub.key, '$watch', input, undefined, this.o.askTimeoutMs) as Promise<WatchReply>;
  }

  private armRenew(sub: Subscription): void {
    sub.renew = this.options.clock.setTimeout(() => this.renewNow(sub), this.o.renewMs);
  }

  /**
   * The heartbeat: one `$watch` per watched actor renews the lease and catches up every socket
   * whose notes went missing (a thousand tabs on one room cost one ask, not a thousand).
   */
  private renewNow(sub: Subscription): void {
    if (sub.renew !== undefined) this.options.clock.clearTimeout(sub.renew);
    if (this.stopped || sub.conns.size === 0) return;
    this.armRenew(sub);
    // A socket whose first read failed has no position yet: it reads on its own.
    for (const c of sub.conns) if (c.seen < 0 && !c.fetching) this.fetch(c);
    const ready = [...sub.conns].filter((c) => !c.fetching && !c.behind && c.seen >= 0);
    const from = ready.length === 0 ? -1 : Math.min(...ready.map((c) => c.seen));
    this.watch(sub, from, this.o.pageMax, sub.conns.size).then(
      (r) => {
        for (const conn of ready) {
          if (r.more === true) this.fetch(conn);
          else this.advance(conn, { from, ...r });
        }
      },
      (e: unknown) => this.options.log.debug({ kind: sub.kind, key: sub.key, err: e }, 'session watch renewal failed; retrying'),
    );
  }

  private refuse(conn: Connection, code: number, error: TroupeError): void {
    this.send(conn, { t: 'error', error: { code: error.code, message: error.message } });
    safeClose(conn.socket, code, error.code);
    this.closed(conn);
  }

  private send(conn: Connection, frame: ServerFrame): void {
    if (conn.closed) return;
    let text: string;
    try {
      text = JSON.stringify(frame);
    } catch (e) {
      // Replies and pushes were checked by the actor host (the value domain); this is the last guard.
      const r = toErrorRecord(troupeError('ERR_NOT_SERIALIZABLE', `a ${frame.t} frame cannot be encoded as JSON: ${(e as Error).message}`));
      text = JSON.stringify(frame.t === 'reply' ? { t: 'reply', id: frame.id, ok: false, error: { code: r.code, message: r.message } } : { t: 'error', error: r });
    }
    try {
      conn.socket.send(text);
    } catch (e) {
      this.options.log.debug({ err: e }, 'WebSocket send failed; closing it');
      this.closed(conn);
    }
  }
}

function safeClose(socket: HubSocket, code: number, reason: string): void {
  try {
    socket.close(code, reason);
  } catch {
    // already closed
  }
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
