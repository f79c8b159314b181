import net from 'node:net';
import tls from 'node:tls';
import { systemClock, type Clock, type TimerHandle } from '../core/clock.ts';
import { invalidOption, troupeError, type ErrorCode, type TroupeError } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import { decodeBody, encodeFrame, FrameDecoder, FrameType, type FrameStamp, type ReceiveBufferGauge } from './frame-codec.ts';
import {
  claimedVersion,
  handshakeProof,
  MAX_HANDSHAKE_FRAME_BYTES,
  newNonce,
  NODE_PROTOCOL_VERSION,
  NonceCache,
  parseAuth,
  parseChallenge,
  parseHello,
  parseRefusal,
  refusalBody,
  verifyProof,
  type HandshakeParty,
  type RefusalReason,
  type Transcript,
} from './handshake.ts';
import { reconnectDelay } from './reconnect-backoff.ts';
import type { Lane, PeerIdentity, Transport } from './transport.ts';

export interface TcpTransportTlsOptions {
  /** PEM private key of this node; needed to listen, and to present a client certificate. */
  key?: string | Buffer;
  /** PEM certificate of this node (signed by the cluster CA); pairs with `key`. */
  cert?: string | Buffer;
  /** PEM CA certificate(s) that peers' certificates must chain to. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Server side: ask connecting nodes for a certificate (mutual TLS). Default true. */
  requestCert?: boolean;
  /** Refuse peers whose certificate does not verify against `ca` (both sides). Default true. */
  rejectUnauthorized?: boolean;
}

export interface TcpTransportOptions {
  /** This node's id, 0..1023 (the Snowflake machine id). */
  id: number;
  /** Non-negative safe integer that grows on every restart of the node. */
  incarnation: number;
  /** Cluster secret for the handshake. Required: there is deliberately no default. */
  secret: string | Buffer;
  /** Listen host. */
  host?: string;
  /** Listen port; 0 picks a free one (see the address `start()` resolves with). */
  port?: number;
  /** The "host:port" peers reach this node at, if not the bound one (NAT, 0.0.0.0). */
  advertiseAddress?: string;
  /** Mutual TLS under the handshake (node:tls instead of node:net). */
  tls?: TcpTransportTlsOptions;
  maxFrameBytes?: number;
  maxQueueBytes?: number;
  handshakeTimeoutMs?: number;
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  unreachableAfterMs?: number;
  maxPendingHandshakes?: number;
  replayCacheSize?: number;
  closeGraceMs?: number;
  /** ms between two warnings about the same peer refused for the same reason (bad secret, version). */
  refusalLogIntervalMs?: number;
  /** @internal Tests only: speak another node protocol version than NODE_PROTOCOL_VERSION. */
  protocolVersion?: number;
  clock?: Clock;
  logger?: Logger;
  /** Source of reconnect jitter in [0, 1); injectable for deterministic tests. */
  random?: () => number;
}

/** Defaults for a LAN cluster. Every number is a per-option default; formulas live beside the option's use. */
export const DefaultTcpTransportConfig = {
  host: '127.0.0.1', // loopback unless told otherwise: a node is never exposed by accident
  port: 0, // 0 = an ephemeral port, reported by start()
  maxFrameBytes: 8 * 1024 * 1024, // bytes after the length prefix; a larger prefix closes the connection
  maxQueueBytes: 32 * 1024 * 1024, // bytes per peer and lane, our queue plus the socket's own buffer
  handshakeTimeoutMs: 5_000, // ms from TCP connect/accept to an authenticated link
  reconnectBaseMs: 100, // ms; ceiling of the first retry delay, doubled per failed attempt (equal jitter)
  reconnectMaxMs: 5_000, // ms; cap on the doubled ceiling
  unreachableAfterMs: 10_000, // ms a payload waits for a link that is not up before onUndeliverable
  maxPendingHandshakes: 256, // unauthenticated inbound connections held at once; more are refused
  replayCacheSize: 4_096, // recent client nonces kept to name a replayed handshake (the proof refuses it anyway)
  closeGraceMs: 1_000, // ms close() lets peers acknowledge our FIN before destroying sockets
  refusalLogIntervalMs: 10_000, // ms; a peer retrying with the wrong secret logs once per window, not once per retry
} as const;

/** Why an inbound connection was closed by this node. */
export type RejectReason =
  | 'frame-too-large'
  | 'bad-frame'
  | 'protocol'
  | 'auth-failed'
  | 'replayed-handshake'
  | 'stale-incarnation'
  | 'forged-stamp'
  | 'handshake-timeout'
  | 'too-many-handshakes'
  | 'tls-failed'
  | 'closed-during-handshake'
  | 'protocol-version';

/** Why an outbound connection attempt did not become a link. */
export type ConnectFailure = 'refused' | 'closed' | 'auth-failed' | 'bad-frame' | 'handshake-timeout' | 'protocol-version';

export interface TcpTransportStats {
  inboundOpen: number;
  inboundHandshaking: number;
  outboundOpen: number;
  outboundConnecting: number;
  rejected: Record<RejectReason, number>;
  connectFailures: Record<ConnectFailure, number>;
  /** Receive buffers holding partial frames, across all connections, and their total size. */
  receiveBuffers: number;
  receiveBufferBytes: number;
  /** Bytes waiting in outbound queues (not yet handed to a socket). */
  queuedBytes: number;
  framesSent: number;
  framesReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** socket.write calls: framesSent / writes is the coalescing factor. */
  writes: number;
  /** Times a write returned false and the link waited for 'drain'. */
  drainWaits: number;
  undeliverable: number;
  /** Refusal warnings (bad secret, protocol version) not logged because one for that peer was logged recently. */
  suppressedWarnings: number;
}

/**
 * Shortest cluster secret accepted. A recorded handshake (nonces and an HMAC-SHA256 proof, sent
 * in clear without TLS) lets anyone test guesses offline, so the secret must not be guessable:
 * 16 characters, as for session secrets and admin tokens; the local launcher generates 32 bytes.
 */
export const MIN_CLUSTER_SECRET_LENGTH = 16;

/** Overflow of a peer's outbound queue (bounded by maxQueueBytes per peer and lane). */
const QUEUE_FULL: ErrorCode = 'ERR_SEND_QUEUE_FULL';

interface Counters {
  rejected: Record<RejectReason, number>;
  connectFailures: Record<ConnectFailure, number>;
  framesSent: number;
  framesReceived: number;
  bytesSent: number;
  bytesReceived: number;
  writes: number;
  drainWaits: number;
  undeliverable: number;
  suppressedWarnings: number;
}

type MessageHandler = (from: PeerIdentity, payload: unknown, lane: Lane) => void;
type UndeliverableHandler = (address: string, payload: unknown, error: Error) => void;

interface ResolvedOptions {
  host: string;
  port: number;
  secret: Buffer;
  tls: TcpTransportTlsOptions | undefined;
  maxFrameBytes: number;
  maxQueueBytes: number;
  handshakeTimeoutMs: number;
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  unreachableAfterMs: number;
  maxPendingHandshakes: number;
  closeGraceMs: number;
  protocolVersion: number;
}

/**
 * Node-to-node transport over TCP (or mutual TLS): length-prefixed msgpack frames stamped with
 * the sender's id and incarnation, an HMAC challenge-response handshake on a cluster secret,
 * one outbound connection per peer and lane, write coalescing and bounded, backpressured queues.
 *
 * Delivery is at most once: frames written to a connection that then breaks may be lost; the
 * layers above retry by message id. Everything that is known not to be delivered (queue
 * overflow, an unreachable peer, close()) is reported through onUndeliverable.
 *
 * @example
 *   const a = new TcpTransport({ id: 1, incarnation: 1, secret: process.env.TROUPE_SECRET! });
 *   const b = new TcpTransport({ id: 2, incarnation: 1, secret: process.env.TROUPE_SECRET! });
 *   b.onMessage((from, payload, lane) => console.log(from.id, lane, payload));
 *   const addressB = await b.start();
 *   a.send(addressB, ['hello'], 'actor');
 */
export class TcpTransport implements Transport {
  readonly self: PeerIdentity;
  private readonly opts: ResolvedOptions;
  private readonly stamp: FrameStamp;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly advertised: boolean;
  private readonly nonces: NonceCache;
  private readonly warnings: WarningLimiter;
  private readonly messageHandlers: MessageHandler[] = [];
  private readonly undeliverableHandlers: UndeliverableHandler[] = [];
  // A connection per peer and lane, not a priority queue: no queue can reorder bytes already in the socket and kernel buffers.
  private readonly links: Record<Lane, Map<string, OutboundLink>> = { system: new Map(), actor: new Map() };
  private readonly inbound = new Set<InboundConnection>();
  private readonly sockets = new Set<net.Socket>();
  /** Accepted TCP sockets, including those still in a TLS handshake (not yet an InboundConnection). */
  private readonly inboundSockets = new Set<net.Socket>();
  private readonly highestIncarnation = new Map<number, number>();
  /** @internal */ readonly gauge: ReceiveBufferGauge = { buffers: 0, bytes: 0 };
  private readonly counters: Counters = {
    rejected: zeroCounts<RejectReason>([
      'frame-too-large',
      'bad-frame',
      'protocol',
      'auth-failed',
      'replayed-handshake',
      'stale-incarnation',
      'forged-stamp',
      'handshake-timeout',
      'too-many-handshakes',
      'tls-failed',
      'closed-during-handshake',
      'protocol-version',
    ]),
    connectFailures: zeroCounts<ConnectFailure>(['refused', 'closed', 'auth-failed', 'bad-frame', 'handshake-timeout', 'protocol-version']),
    framesSent: 0,
    framesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    writes: 0,
    drainWaits: 0,
    undeliverable: 0,
    suppressedWarnings: 0,
  };
  private server: net.Server | null = null;
  private starting: Promise<string> | null = null;
  private closing: Promise<void> | null = null;
  private pendingHandshakes = 0;

  constructor(options: TcpTransportOptions) {
    const o = validateOptions(options);
    this.opts = o.resolved;
    this.clock = options.clock ?? systemClock;
    this.log = options.logger ?? silentLogger;
    this.random = options.random ?? Math.random;
    this.advertised = options.advertiseAddress !== undefined;
    this.self = {
      id: options.id,
      incarnation: options.incarnation,
      address: options.advertiseAddress ?? formatAddress(this.opts.host, this.opts.port),
    };
    this.stamp = { id: options.id, incarnation: options.incarnation };
    this.nonces = new NonceCache(o.replayCacheSize);
    this.warnings = new WarningLimiter(o.refusalLogIntervalMs);
  }

  onMessage(handler: MessageHandler): void {
    this.messageHandlers.push(handler);
  }

  onUndeliverable(handler: UndeliverableHandler): void {
    this.undeliverableHandlers.push(handler);
  }

  start(): Promise<string> {
    if (this.closing) return Promise.reject(troupeError('ERR_STOPPED', 'transport is closed'));
    if (this.starting) return this.starting;
    this.starting = this.listen();
    return this.starting;
  }

  send(address: string, payload: unknown, lane: Lane = 'actor'): void {
    if (this.closing) {
      this.reportLater(address, payload, troupeError('ERR_STOPPED', 'transport is closed'));
      return;
    }
    const links = lane === 'actor' ? this.links.actor : lane === 'system' ? this.links.system : undefined;
    if (links === undefined) {
      this.reportLater(address, payload, troupeError('ERR_INVALID_INPUT', `lane must be "system" or "actor" (got ${String(lane)})`));
      return;
    }
    let link = links.get(address);
    if (link === undefined) {
      const target = parseAddress(address);
      if (target === undefined) {
        this.reportLater(
          address,
          payload,
          troupeError('ERR_INVALID_INPUT', `address must be "host:port" (got ${JSON.stringify(address)})`),
        );
        return;
      }
      link = new OutboundLink(this, address, target.host, target.port, lane);
      links.set(address, link);
    }
    let frame: Buffer;
    try {
      frame = encodeFrame(lane === 'actor' ? FrameType.ActorData : FrameType.SystemData, this.stamp, payload, this.opts.maxFrameBytes);
    } catch (e) {
      this.reportLater(address, payload, e as TroupeError);
      return;
    }
    if (link.backlog() + frame.length > this.opts.maxQueueBytes) {
      this.reportLater(
        address,
        payload,
        troupeError(QUEUE_FULL, `outbound queue to ${address} (${lane} lane) is full`, {
          reason: 'outbound-queue-full',
          address,
          lane,
          maxQueueBytes: this.opts.maxQueueBytes,
        }),
      );
      return;
    }
    link.enqueue(frame, payload);
  }

  /** Bytes waiting to reach `address` on `lane`: the queue plus the socket's buffer. Senders can pace on it. */
  backlog(address: string, lane: Lane = 'actor'): number {
    return this.links[lane]?.get(address)?.backlog() ?? 0;
  }

  stats(): TcpTransportStats {
    let outboundOpen = 0;
    let outboundConnecting = 0;
    let queuedBytes = 0;
    for (const links of [this.links.system, this.links.actor]) {
      for (const link of links.values()) {
        if (link.state === 'open') outboundOpen++;
        else if (link.state === 'connecting') outboundConnecting++;
        queuedBytes += link.queuedBytes;
      }
    }
    let inboundOpen = 0;
    for (const c of this.inbound) if (c.state === 'open') inboundOpen++;
    const c = this.counters;
    return {
      inboundOpen,
      inboundHandshaking: this.pendingHandshakes,
      outboundOpen,
      outboundConnecting,
      rejected: { ...c.rejected },
      connectFailures: { ...c.connectFailures },
      receiveBuffers: this.gauge.buffers,
      receiveBufferBytes: this.gauge.bytes,
      queuedBytes,
      framesSent: c.framesSent,
      framesReceived: c.framesReceived,
      bytesSent: c.bytesSent,
      bytesReceived: c.bytesReceived,
      writes: c.writes,
      drainWaits: c.drainWaits,
      undeliverable: c.undeliverable,
      suppressedWarnings: c.suppressedWarnings,
    };
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = this.shutdown();
    return this.closing;
  }

  // ---- internals shared with OutboundLink / InboundConnection -------------------------------

  /** @internal */ get options(): ResolvedOptions {
    return this.opts;
  }
  /** @internal */ get frameStamp(): FrameStamp {
    return this.stamp;
  }
  /** @internal */ get timers(): Clock {
    return this.clock;
  }
  /** @internal */ get logger(): Logger {
    return this.log;
  }
  /** @internal */ get protocolVersion(): number {
    return this.opts.protocolVersion;
  }
  /** @internal */ get isClosing(): boolean {
    return this.closing !== null;
  }
  /** @internal */ get stats_(): Counters {
    return this.counters;
  }
  /** @internal */ jitter(): number {
    return this.random();
  }

  /** @internal */ track(socket: net.Socket, inbound = false): void {
    this.sockets.add(socket);
    if (inbound) this.inboundSockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.inboundSockets.delete(socket);
    });
  }

  /** @internal */ connectSocket(host: string, port: number): net.Socket {
    const t = this.opts.tls;
    const socket =
      t === undefined
        ? net.connect({ host, port })
        : tls.connect({
            host,
            port,
            ...(t.key !== undefined && { key: t.key }),
            ...(t.cert !== undefined && { cert: t.cert }),
            ...(t.ca !== undefined && { ca: t.ca }),
            rejectUnauthorized: t.rejectUnauthorized ?? true,
          });
    this.track(socket);
    return socket;
  }

  /** @internal */ deliver(from: PeerIdentity, payload: unknown, lane: Lane): void {
    this.counters.framesReceived++;
    const handlers = this.messageHandlers;
    for (let i = 0; i < handlers.length; i++) {
      try {
        handlers[i]!(from, payload, lane);
      } catch (err) {
        this.log.error({ err, from: from.id, lane }, 'onMessage handler threw');
      }
    }
  }

  /** @internal */ report(address: string, payload: unknown, error: TroupeError): void {
    this.counters.undeliverable++;
    if (this.undeliverableHandlers.length === 0) {
      this.log.warn({ address, code: error.code }, 'undeliverable payload and no onUndeliverable handler');
      return;
    }
    for (const h of this.undeliverableHandlers) {
      try {
        h(address, payload, error);
      } catch (err) {
        this.log.error({ err, address }, 'onUndeliverable handler threw');
      }
    }
  }

  /** send() never re-enters the caller: failures found while sending are reported on a microtask. */
  private reportLater(address: string, payload: unknown, error: TroupeError): void {
    queueMicrotask(() => this.report(address, payload, error));
  }

  /**
   * @internal A handshake refused for a bad secret or another protocol version, logged at warn
   * on both sides; `key` names the peer and the reason, and repeats within the interval are
   * counted instead of logged (a peer's reconnect loop would flood the log).
   */
  warnRefusal(key: string, fields: Record<string, unknown>, message: string): void {
    const suppressed = this.warnings.admit(key, this.clock.now());
    if (suppressed === undefined) {
      this.counters.suppressedWarnings++;
      return;
    }
    this.log.warn(suppressed > 0 ? { ...fields, suppressed } : fields, message);
  }

  /** @internal */ countReject(reason: RejectReason): void {
    this.counters.rejected[reason]++;
  }

  /** @internal */ handshakeStarted(): void {
    this.pendingHandshakes++;
  }
  /** @internal */ handshakeEnded(): void {
    this.pendingHandshakes--;
  }

  /** @internal */ checkReplay(nonce: Uint8Array): boolean {
    return this.nonces.checkAndRemember(nonce);
  }

  /** @internal An inbound peer authenticated: newer incarnations supersede older links from the same node. */
  admitIncarnation(conn: InboundConnection, peer: PeerIdentity): boolean {
    const known = this.highestIncarnation.get(peer.id);
    if (known !== undefined && peer.incarnation < known) return false;
    if (known === undefined || peer.incarnation > known) {
      this.highestIncarnation.set(peer.id, peer.incarnation);
      for (const other of this.inbound) {
        if (other !== conn && other.peer !== null && other.peer.id === peer.id && other.peer.incarnation < peer.incarnation) {
          this.log.info({ peer: peer.id, old: other.peer.incarnation, new: peer.incarnation }, 'peer restarted; closing its old link');
          other.destroy();
        }
      }
    }
    return true;
  }

  /** @internal */ forgetInbound(conn: InboundConnection): void {
    this.inbound.delete(conn);
  }

  private listen(): Promise<string> {
    const o = this.opts;
    return new Promise<string>((resolve, reject) => {
      let server: net.Server;
      if (o.tls !== undefined) {
        const t = o.tls;
        if (t.key === undefined || t.cert === undefined) {
          reject(invalidOption('options.tls.cert', 'and options.tls.key are required to listen with TLS', t.cert));
          return;
        }
        const tlsServer = tls.createServer({
          key: t.key,
          cert: t.cert,
          ...(t.ca !== undefined && { ca: t.ca }),
          requestCert: t.requestCert ?? true,
          rejectUnauthorized: t.rejectUnauthorized ?? true,
          handshakeTimeout: o.handshakeTimeoutMs,
        });
        tlsServer.on('secureConnection', (socket) => this.accept(socket));
        tlsServer.on('tlsClientError', (err, socket) => {
          this.countReject('tls-failed');
          this.log.warn({ err: err.message, remote: socket.remoteAddress }, 'rejected inbound connection: TLS');
          socket.destroy();
        });
        // Raw TCP sockets under TLS are tracked too, so close() can end handshakes in progress.
        tlsServer.on('connection', (raw: net.Socket) => this.track(raw, true));
        server = tlsServer;
      } else {
        server = net.createServer((socket) => {
          this.track(socket, true);
          this.accept(socket);
        });
      }
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(
          troupeError('ERR_INVALID_OPTION', `options.port ${o.port} on ${o.host} cannot be bound: ${err.code ?? err.message}`, {
            option: 'options.port',
            cause: err.code,
          }),
        );
      };
      server.once('error', onError);
      server.listen(o.port, o.host, () => {
        server.off('error', onError);
        server.on('error', (err) => this.log.error({ err }, 'transport server error'));
        this.server = server;
        if (this.closing) {
          server.close();
          reject(troupeError('ERR_STOPPED', 'transport closed while starting'));
          return;
        }
        const bound = server.address() as net.AddressInfo;
        const address = formatAddress(o.host, bound.port);
        if (!this.advertised) this.self.address = address;
        this.log.info({ address, tls: o.tls !== undefined }, 'transport listening');
        resolve(address);
      });
    });
  }

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (this.pendingHandshakes >= this.opts.maxPendingHandshakes) {
      this.countReject('too-many-handshakes');
      socket.destroy();
      return;
    }
    this.inbound.add(new InboundConnection(this, socket));
  }

  private async shutdown(): Promise<void> {
    const stopped = troupeError('ERR_STOPPED', 'transport closed before the payload was sent');
    for (const links of [this.links.system, this.links.actor]) {
      for (const link of links.values()) link.shutdown(stopped);
    }
    for (const conn of this.inbound) conn.destroy();
    for (const socket of this.inboundSockets) socket.destroy();
    const serverClosed = new Promise<void>((resolve) => {
      if (this.server === null) resolve();
      else this.server.close(() => resolve());
    });
    const socketsClosed = [...this.sockets].map(
      (s) => new Promise<void>((resolve) => (s.destroyed && s.closed ? resolve() : s.once('close', () => resolve()))),
    );
    // Outbound links were ended gracefully (queued frames flushed, then FIN); a peer that does
    // not answer the FIN within the grace period is cut off.
    const grace = this.clock.setTimeout(() => {
      for (const s of this.sockets) s.destroy();
    }, this.opts.closeGraceMs);
    await Promise.all([serverClosed, ...socketsClosed]);
    this.clock.clearTimeout(grace);
  }
}

type LinkState = 'idle' | 'connecting' | 'open' | 'backoff';

/**
 * One outbound connection to one peer address for one lane. Lanes get separate connections
 * (not a priority queue) so that system frames never wait behind actor bytes already in the
 * socket and kernel buffers, which a user-space priority queue cannot reorder.
 *
 *   idle ──send──▶ connecting ──READY──▶ open ──close/error──▶ backoff ──timer──▶ connecting
 *                      │                                          ▲  (queue empty: idle)
 *                      └────────────── failure ───────────────────┘
 */
class OutboundLink {
  state: LinkState = 'idle';
  queuedBytes = 0;
  private frames: Buffer[] = [];
  private payloads: unknown[] = [];
  private head = 0;
  private socket: net.Socket | null = null;
  private decoder: FrameDecoder | null = null;
  private blocked = false;
  private flushScheduled = false;
  private attempts = 0;
  private nextAttemptAt = 0;
  private failureCounted = false;
  private awaiting: 'challenge' | 'ready' = 'challenge';
  private clientNonce: Buffer | null = null;
  private transcript: Transcript | null = null;
  private handshakeTimer: TimerHandle | null = null;
  private retryTimer: TimerHandle | null = null;
  private unreachableTimer: TimerHandle | null = null;
  /** The peer process this link last reached (`id/incarnation`): queued frames were meant for it. */
  private reached: string | null = null;

  constructor(
    private readonly t: TcpTransport,
    readonly address: string,
    private readonly host: string,
    private readonly port: number,
    readonly lane: Lane,
  ) {}

  backlog(): number {
    return this.queuedBytes + (this.socket === null ? 0 : this.socket.writableLength);
  }

  enqueue(frame: Buffer, payload: unknown): void {
    this.frames.push(frame);
    this.payloads.push(payload);
    this.queuedBytes += frame.length;
    if (this.state === 'open') {
      if (!this.blocked && !this.flushScheduled) {
        this.flushScheduled = true;
        // Everything sent in this event-loop turn leaves in one write: setImmediate runs after
        // the poll phase, so the frames of all requests read in one turn share it (a microtask
        // would flush after each request's callback: one syscall per frame under HTTP load).
        setImmediate(this.flushTask);
      }
      return;
    }
    this.armUnreachable();
    if (this.state === 'idle') {
      const wait = this.nextAttemptAt - this.t.timers.now();
      if (wait > 0) this.retryIn(wait);
      else this.connect();
    }
  }

  private readonly flushTask = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  private flush(): void {
    const socket = this.socket;
    if (this.state !== 'open' || this.blocked || socket === null || this.head === this.frames.length) return;
    // Destroyed but its 'close' not yet emitted: keep the frames for the next connection.
    if (socket.destroyed) return;
    const counters = this.t.stats_;
    const frames = this.frames;
    const end = frames.length;
    const maxWrite = 1024 * 1024;
    socket.cork();
    while (this.head < end) {
      // Concatenate up to ~1 MiB per write; cork turns the writes of one flush into one writev.
      let j = this.head;
      let bytes = 0;
      while (j < end && (bytes === 0 || bytes + frames[j]!.length <= maxWrite)) bytes += frames[j++]!.length;
      const data = j - this.head === 1 ? frames[this.head]! : Buffer.concat(frames.slice(this.head, j), bytes);
      counters.framesSent += j - this.head;
      counters.bytesSent += bytes;
      counters.writes++;
      for (let k = this.head; k < j; k++) this.payloads[k] = undefined;
      this.head = j;
      this.queuedBytes -= bytes;
      if (!socket.write(data)) {
        this.blocked = true;
        counters.drainWaits++;
        break;
      }
    }
    socket.uncork();
    this.compact();
  }

  private compact(): void {
    if (this.head === this.frames.length) {
      this.frames = [];
      this.payloads = [];
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.frames.length) {
      this.frames = this.frames.slice(this.head);
      this.payloads = this.payloads.slice(this.head);
      this.head = 0;
    }
  }

  private connect(): void {
    const t = this.t;
    this.state = 'connecting';
    this.failureCounted = false;
    this.awaiting = 'challenge';
    const socket = t.connectSocket(this.host, this.port);
    this.socket = socket;
    socket.setNoDelay(true);
    const decoder = new FrameDecoder(MAX_HANDSHAKE_FRAME_BYTES, this.onFrame, t.gauge);
    this.decoder = decoder;
    this.handshakeTimer = t.timers.setTimeout(() => {
      this.handshakeTimer = null;
      this.fail(socket, 'handshake-timeout', 'handshake timed out');
    }, t.options.handshakeTimeoutMs);
    socket.once(t.options.tls === undefined ? 'connect' : 'secureConnect', () => {
      if (this.socket !== socket) return;
      this.clientNonce = newNonce();
      socket.write(
        encodeFrame(
          FrameType.Hello,
          t.frameStamp,
          [t.protocolVersion, this.lane, t.self.address, this.clientNonce],
          MAX_HANDSHAKE_FRAME_BYTES,
        ),
      );
    });
    socket.on('data', (chunk: Buffer) => {
      t.stats_.bytesReceived += chunk.length;
      // Refused: the socket is ending and its decoder released; nothing more is read from it.
      if (this.socket !== socket || this.decoder !== decoder || (this.state === 'connecting' && this.failureCounted)) return;
      const err = decoder.push(chunk);
      if (err) this.fail(socket, 'bad-frame', err.message);
    });
    socket.on('drain', () => {
      if (this.socket !== socket || !this.blocked) return;
      this.blocked = false;
      this.flush();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (this.socket !== socket || this.state !== 'connecting' || this.failureCounted) return;
      this.fail(socket, err.code === 'ECONNREFUSED' ? 'refused' : 'closed', err.message);
    });
    socket.on('close', () => this.onClose(socket));
  }

  private readonly onFrame = (type: number, id: number, incarnation: number, buf: Buffer, start: number, end: number): boolean => {
    const socket = this.socket;
    if (socket === null) return false;
    const t = this.t;
    if (this.state === 'open') {
      this.fail(socket, 'bad-frame', `unexpected frame type ${type} on an open outbound link`);
      return false;
    }
    if (type === FrameType.Refuse) return this.onRefusal(socket, id, buf, start, end);
    if (this.awaiting === 'challenge') {
      if (type !== FrameType.Challenge) return this.fail(socket, 'bad-frame', `expected CHALLENGE, got frame type ${type}`);
      let body: unknown;
      try {
        body = decodeBody(buf, start, end);
      } catch (e) {
        return this.fail(socket, 'bad-frame', (e as Error).message);
      }
      const version = claimedVersion(body);
      if (version !== undefined && version !== t.protocolVersion) return this.refuse(socket, 'protocol-version', id, version);
      const challenge = parseChallenge(body, t.protocolVersion);
      if (typeof challenge === 'string') return this.fail(socket, 'bad-frame', challenge);
      if (this.clientNonce === null) return this.fail(socket, 'bad-frame', 'CHALLENGE before HELLO');
      const server: HandshakeParty = { id, incarnation, address: challenge.address };
      const transcript: Transcript = {
        version: t.protocolVersion,
        lane: this.lane,
        client: t.self,
        server,
        clientNonce: this.clientNonce,
        serverNonce: challenge.nonce,
      };
      if (!verifyProof(t.options.secret, 'server', transcript, challenge.proof)) return this.refuse(socket, 'auth-failed', id);
      this.transcript = transcript;
      this.awaiting = 'ready';
      socket.write(
        encodeFrame(FrameType.Auth, t.frameStamp, [handshakeProof(t.options.secret, 'client', transcript)], MAX_HANDSHAKE_FRAME_BYTES),
      );
      return true;
    }
    const server = this.transcript!.server;
    if (type !== FrameType.Ready || id !== server.id || incarnation !== server.incarnation) {
      return this.fail(socket, 'bad-frame', `expected READY from node ${server.id}, got frame type ${type}`);
    }
    this.opened();
    return true;
  };

  private opened(): void {
    const t = this.t;
    this.clearTimer('handshakeTimer');
    this.clearTimer('unreachableTimer');
    this.state = 'open';
    this.attempts = 0;
    this.nextAttemptAt = 0;
    const server = this.transcript!.server;
    const reached = `${server.id}/${server.incarnation}`;
    // A new process at this address (the peer restarted): frames queued while the link was down
    // were meant for the old one, and an ask it may already have applied must not be applied
    // again by its successor. They are reported undeliverable (known not delivered), so their
    // senders resend or fail them; they are never handed to the new process.
    if (this.reached !== null && this.reached !== reached && this.frames.length > this.head) {
      t.logger.info({ address: this.address, lane: this.lane, from: this.reached, to: reached }, 'peer restarted; dropping frames queued for its old process');
      this.failQueued(
        troupeError('ERR_NODE_UNREACHABLE', `node ${this.reached} at ${this.address} restarted as ${reached} before its frames were sent`, {
          address: this.address,
          lane: this.lane,
          restarted: true,
        }),
      );
    }
    this.reached = reached;
    t.logger.debug({ address: this.address, lane: this.lane, peer: server.id }, 'link open');
    this.flush();
  }

  /**
   * This side refuses the server (its proof does not verify, or it speaks another protocol
   * version): logs it, tells the server why so it can log the same from its side, and fails
   * what is queued with the named error (retrying cannot help until one side is reconfigured).
   */
  private refuse(socket: net.Socket, reason: RefusalReason, serverId: number, theirVersion?: number): false {
    const t = this.t;
    const error = this.refusalError(reason, serverId, theirVersion ?? t.protocolVersion);
    this.fail(socket, reason, error.message, false);
    socket.end(encodeFrame(FrameType.Refuse, t.frameStamp, refusalBody(reason, t.protocolVersion), MAX_HANDSHAKE_FRAME_BYTES), () =>
      socket.destroy(),
    );
    this.failQueued(error);
    return false;
  }

  /** The server refused this node (a REFUSE frame): the same log line and error, from this side. */
  private onRefusal(socket: net.Socket, serverId: number, buf: Buffer, start: number, end: number): false {
    let refusal;
    try {
      refusal = parseRefusal(decodeBody(buf, start, end));
    } catch (e) {
      refusal = (e as Error).message;
    }
    if (typeof refusal === 'string') return this.fail(socket, 'bad-frame', refusal);
    const error = this.refusalError(refusal.reason, serverId, refusal.version);
    this.fail(socket, refusal.reason, error.message);
    this.failQueued(error);
    return false;
  }

  /** Logs a refusal (rate-limited per peer address) and returns the error for what was queued. */
  private refusalError(reason: RefusalReason, serverId: number, theirVersion: number): TroupeError {
    const t = this.t;
    const fields = { address: this.address, lane: this.lane, node: serverId };
    if (reason === 'protocol-version') {
      const message = `peer ${this.address} speaks node protocol ${theirVersion}, this node speaks ${t.protocolVersion}`;
      t.warnRefusal(`version|${this.address}`, { ...fields, code: 'ERR_PROTOCOL_VERSION', peerVersion: theirVersion }, message);
      return troupeError('ERR_PROTOCOL_VERSION', message, { ...fields, peerVersion: theirVersion, version: t.protocolVersion });
    }
    const message = `authentication failed: peer ${this.address} (node ${serverId}) — cluster secret mismatch`;
    t.warnRefusal(`auth|${this.address}`, { ...fields, code: 'ERR_AUTH_FAILED' }, message);
    return troupeError('ERR_AUTH_FAILED', message, fields);
  }

  /** Counts the failure once and destroys the socket (unless told not to); `onClose` decides what happens next. */
  private fail(socket: net.Socket, reason: ConnectFailure, message: string, destroy = true): false {
    if (this.socket === socket) {
      if (this.state === 'connecting' && !this.failureCounted) {
        this.failureCounted = true;
        this.t.stats_.connectFailures[reason]++;
        this.t.logger.debug({ address: this.address, lane: this.lane, reason, message }, 'outbound connection failed');
      } else {
        this.t.logger.warn({ address: this.address, lane: this.lane, reason, message }, 'closing outbound link');
      }
      this.decoder?.release();
    }
    if (destroy) socket.destroy();
    return false;
  }

  private onClose(socket: net.Socket): void {
    if (this.socket !== socket) return;
    const t = this.t;
    const wasOpen = this.state === 'open';
    if (!wasOpen && !this.failureCounted) t.stats_.connectFailures.closed++;
    this.socket = null;
    this.decoder?.release();
    this.decoder = null;
    this.blocked = false;
    this.transcript = null;
    this.clientNonce = null;
    this.clearTimer('handshakeTimer');
    if (t.isClosing) {
      this.state = 'idle';
      return;
    }
    this.attempts = wasOpen ? 1 : this.attempts + 1;
    const delay = reconnectDelay(this.attempts, t.options.reconnectBaseMs, t.options.reconnectMaxMs, t.jitter());
    this.nextAttemptAt = t.timers.now() + delay;
    if (this.head < this.frames.length) {
      this.armUnreachable();
      this.retryIn(delay);
    } else {
      this.state = 'idle';
    }
  }

  private retryIn(delay: number): void {
    this.state = 'backoff';
    this.retryTimer = this.t.timers.setTimeout(() => {
      this.retryTimer = null;
      if (this.t.isClosing) return;
      if (this.head < this.frames.length) this.connect();
      else this.state = 'idle';
    }, delay);
  }

  /** Payloads may wait for a link that is down for unreachableAfterMs; then they are reported, not dropped. */
  private armUnreachable(): void {
    if (this.unreachableTimer !== null) return;
    this.unreachableTimer = this.t.timers.setTimeout(() => {
      this.unreachableTimer = null;
      if (this.state === 'open') return;
      this.failQueued(
        troupeError('ERR_NODE_UNREACHABLE', `no link to ${this.address} (${this.lane} lane) for ${this.t.options.unreachableAfterMs} ms`, {
          address: this.address,
          lane: this.lane,
        }),
      );
    }, this.t.options.unreachableAfterMs);
  }

  private failQueued(error: TroupeError): void {
    const payloads = this.payloads;
    const from = this.head;
    this.frames = [];
    this.payloads = [];
    this.head = 0;
    this.queuedBytes = 0;
    for (let i = from; i < payloads.length; i++) this.t.report(this.address, payloads[i], error);
  }

  /** close(): flush what an open link holds and end it gracefully; report the rest. */
  shutdown(stopped: TroupeError): void {
    this.clearTimer('retryTimer');
    this.clearTimer('unreachableTimer');
    this.clearTimer('handshakeTimer');
    const socket = this.socket;
    if (this.state === 'open' && socket !== null) {
      this.blocked = false;
      this.flush();
      // flush() stops at the first full write; close() hands the socket everything that is left.
      while (this.head < this.frames.length) {
        this.blocked = false;
        this.flush();
      }
      socket.end();
    } else {
      this.failQueued(stopped);
      socket?.destroy();
    }
  }

  private clearTimer(name: 'handshakeTimer' | 'retryTimer' | 'unreachableTimer'): void {
    const h = this[name];
    if (h !== null) {
      this.t.timers.clearTimeout(h);
      this[name] = null;
    }
  }
}

type InboundState = 'hello' | 'auth' | 'open' | 'closed';

/** One accepted connection: handshake as the server, then a stream of data frames from one peer on one lane. */
class InboundConnection {
  state: InboundState = 'hello';
  peer: PeerIdentity | null = null;
  private lane: Lane = 'actor';
  private dataType = 0;
  private transcript: Transcript | null = null;
  private claimed: FrameStamp | null = null;
  private readonly decoder: FrameDecoder;
  private timer: TimerHandle | null;
  private rejected = false;

  constructor(
    private readonly t: TcpTransport,
    private readonly socket: net.Socket,
  ) {
    t.handshakeStarted();
    socket.setNoDelay(true);
    this.decoder = new FrameDecoder(MAX_HANDSHAKE_FRAME_BYTES, this.onFrame, t.gauge);
    this.timer = t.timers.setTimeout(() => {
      this.timer = null;
      // Refused and ending, but the peer never read our REFUSE or closed: cut it off.
      if (this.rejected) socket.destroy();
      else this.reject('handshake-timeout', 'handshake timed out');
    }, t.options.handshakeTimeoutMs);
    socket.on('data', (chunk: Buffer) => {
      t.stats_.bytesReceived += chunk.length;
      if (this.rejected) return;
      const err = this.decoder.push(chunk);
      if (err) this.reject(err.code === 'ERR_FRAME_TOO_LARGE' ? 'frame-too-large' : 'bad-frame', err.message);
    });
    socket.on('error', () => {
      // A reset by the peer is not this node's business beyond closing. Node closes a plain
      // socket itself but leaves a TLS one open after an error past the handshake (a record
      // that fails its MAC): destroy it so 'close' always follows and the peer reconnects.
      socket.destroy();
    });
    socket.on('close', () => this.onClose());
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onClose(): void {
    const t = this.t;
    if (this.state !== 'open') {
      if (!this.rejected) t.countReject('closed-during-handshake');
      t.handshakeEnded();
    }
    this.state = 'closed';
    if (this.timer !== null) t.timers.clearTimeout(this.timer);
    this.timer = null;
    this.decoder.release();
    t.forgetInbound(this);
  }

  private reject(reason: RejectReason, message: string): false {
    if (this.state === 'closed' || this.rejected) return false;
    this.rejected = true;
    this.t.countReject(reason);
    this.t.logger.warn({ reason, message, remote: this.socket.remoteAddress, peer: this.peer?.id }, 'closed inbound connection');
    this.decoder.release();
    this.socket.destroy();
    return false;
  }

  /**
   * Refuses the peer for a bad secret or another protocol version: logs it (rate-limited per
   * peer), tells the peer why in a REFUSE frame so it can log the same from its side, and closes
   * once that frame is written.
   */
  private refuse(reason: RefusalReason, peerId: number, theirVersion?: number): false {
    if (this.state === 'closed' || this.rejected) return false;
    const t = this.t;
    this.rejected = true;
    t.countReject(reason);
    this.logRefusal(reason, peerId, theirVersion);
    this.decoder.release();
    this.socket.end(encodeFrame(FrameType.Refuse, t.frameStamp, refusalBody(reason, t.protocolVersion), MAX_HANDSHAKE_FRAME_BYTES), () =>
      this.socket.destroy(),
    );
    return false;
  }

  /** The peer refused this node (it found our proof wrong, or our version): log it from this side too. */
  private onRefusal(peerId: number, buf: Buffer, start: number, end: number): false {
    let refusal;
    try {
      refusal = parseRefusal(decodeBody(buf, start, end));
    } catch (e) {
      refusal = (e as Error).message;
    }
    if (typeof refusal === 'string') return this.reject('bad-frame', refusal);
    this.rejected = true;
    this.t.countReject(refusal.reason);
    this.logRefusal(refusal.reason, peerId, refusal.version);
    this.decoder.release();
    this.socket.destroy();
    return false;
  }

  private logRefusal(reason: RefusalReason, peerId: number, theirVersion: number | undefined): void {
    const t = this.t;
    const ip = this.socket.remoteAddress ?? 'unknown';
    const remote = `${ip.includes(':') ? `[${ip}]` : ip}:${this.socket.remotePort ?? 0}`;
    // Keyed by IP and node id, not the remote port: every reconnect comes from a new port.
    if (reason === 'protocol-version') {
      t.warnRefusal(
        `version|${ip}|${peerId}`,
        { remote, node: peerId, code: 'ERR_PROTOCOL_VERSION', peerVersion: theirVersion },
        `peer ${remote} speaks node protocol ${theirVersion}, this node speaks ${t.protocolVersion}`,
      );
    } else {
      t.warnRefusal(
        `auth|${ip}|${peerId}`,
        { remote, node: peerId, lane: this.lane, code: 'ERR_AUTH_FAILED' },
        `authentication failed: peer ${remote} (node ${peerId}) — cluster secret mismatch`,
      );
    }
  }

  private readonly onFrame = (type: number, id: number, incarnation: number, buf: Buffer, start: number, end: number): boolean => {
    if (this.state === 'open') {
      // The hot path: one data frame from an authenticated peer.
      const peer = this.peer!;
      if (type !== this.dataType) {
        return this.reject(
          type === FrameType.ActorData || type === FrameType.SystemData ? 'bad-frame' : 'protocol',
          `frame type ${type} on a ${this.lane} link`,
        );
      }
      if (id !== peer.id || incarnation !== peer.incarnation) {
        return this.reject('forged-stamp', `frame stamped ${id}/${incarnation} on a link authenticated as ${peer.id}/${peer.incarnation}`);
      }
      let payload: unknown;
      try {
        payload = decodeBody(buf, start, end);
      } catch (e) {
        return this.reject('bad-frame', (e as Error).message);
      }
      this.t.deliver(peer, payload, this.lane);
      return this.state === 'open';
    }
    if (this.state === 'hello') return this.onHello(type, id, incarnation, buf, start, end);
    if (this.state === 'auth') return this.onAuth(type, id, incarnation, buf, start, end);
    return false;
  };

  private onHello(type: number, id: number, incarnation: number, buf: Buffer, start: number, end: number): boolean {
    const t = this.t;
    if (type !== FrameType.Hello) return this.reject('protocol', `expected HELLO, got frame type ${type}`);
    if (id > 1023 || !Number.isSafeInteger(incarnation) || incarnation < 0) {
      return this.reject('bad-frame', `HELLO stamp ${id}/${incarnation} is not a valid node identity`);
    }
    let body: unknown;
    try {
      body = decodeBody(buf, start, end);
    } catch (e) {
      return this.reject('bad-frame', (e as Error).message);
    }
    // The version before anything else, and before any secret work: a peer of another version
    // is told so, not measured against this version's layout.
    const version = claimedVersion(body);
    if (version !== undefined && version !== t.protocolVersion) return this.refuse('protocol-version', id, version);
    const hello = parseHello(body, t.protocolVersion);
    if (typeof hello === 'string') return this.reject('bad-frame', hello);
    if (t.checkReplay(hello.nonce)) return this.reject('replayed-handshake', 'HELLO repeats a recent client nonce');
    const serverNonce = newNonce();
    this.lane = hello.lane;
    this.dataType = hello.lane === 'actor' ? FrameType.ActorData : FrameType.SystemData;
    this.claimed = { id, incarnation };
    this.transcript = {
      version: t.protocolVersion,
      lane: hello.lane,
      client: { id, incarnation, address: hello.address },
      server: { id: t.self.id, incarnation: t.self.incarnation, address: t.self.address },
      clientNonce: hello.nonce,
      serverNonce,
    };
    const proof = handshakeProof(t.options.secret, 'server', this.transcript);
    this.state = 'auth';
    this.socket.write(
      encodeFrame(FrameType.Challenge, t.frameStamp, [t.protocolVersion, t.self.address, serverNonce, proof], MAX_HANDSHAKE_FRAME_BYTES),
    );
    return true;
  }

  private onAuth(type: number, id: number, incarnation: number, buf: Buffer, start: number, end: number): boolean {
    const t = this.t;
    if (type === FrameType.Refuse) return this.onRefusal(id, buf, start, end);
    if (type !== FrameType.Auth) return this.reject('protocol', `expected AUTH, got frame type ${type}`);
    const claimed = this.claimed!;
    if (id !== claimed.id || incarnation !== claimed.incarnation) {
      return this.reject('forged-stamp', `AUTH stamped ${id}/${incarnation} after HELLO from ${claimed.id}/${claimed.incarnation}`);
    }
    let body: unknown;
    try {
      body = decodeBody(buf, start, end);
    } catch (e) {
      return this.reject('bad-frame', (e as Error).message);
    }
    const proof = parseAuth(body);
    if (typeof proof === 'string') return this.reject('bad-frame', proof);
    const transcript = this.transcript!;
    if (!verifyProof(t.options.secret, 'client', transcript, proof)) return this.refuse('auth-failed', id);
    const peer: PeerIdentity = Object.freeze({ id, incarnation, address: transcript.client.address });
    if (!t.admitIncarnation(this, peer)) {
      return this.reject('stale-incarnation', `node ${id} incarnation ${incarnation} is older than one already seen`);
    }
    this.peer = peer;
    this.state = 'open';
    t.handshakeEnded();
    if (this.timer !== null) t.timers.clearTimeout(this.timer);
    this.timer = null;
    this.transcript = null;
    this.decoder.maxFrameBytes = t.options.maxFrameBytes;
    this.socket.write(encodeFrame(FrameType.Ready, t.frameStamp, undefined, MAX_HANDSHAKE_FRAME_BYTES));
    t.logger.debug({ peer: id, incarnation, lane: this.lane }, 'inbound link open');
    return true;
  }
}

/**
 * One warning per key per interval. A node with the wrong secret redials with backoff (every
 * 5 s at most) on each of two lanes, for as long as it runs: without this, each attempt would
 * add a warning on both sides. What it holds back is counted and reported with the next line.
 * Pure: `now` is an argument.
 */
export class WarningLimiter {
  // Insertion order = order of last logging, so the first key is the stalest (evicted first).
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly maxKeys = 1024,
  ) {}

  /** Undefined: suppress this warning. A number: log it, noting that many suppressed since the last. */
  admit(key: string, now: number): number | undefined {
    const entry = this.last.get(key);
    if (entry !== undefined && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return undefined;
    }
    this.last.delete(key);
    this.last.set(key, { at: now, suppressed: 0 });
    if (this.last.size > this.maxKeys) this.last.delete(this.last.keys().next().value as string);
    return entry?.suppressed ?? 0;
  }
}

// ---- options and addresses ------------------------------------------------------------------

function validateOptions(options: TcpTransportOptions): {
  resolved: ResolvedOptions;
  replayCacheSize: number;
  refusalLogIntervalMs: number;
} {
  if (options === null || typeof options !== 'object') throw invalidOption('options', 'must be an object', options);
  const d = DefaultTcpTransportConfig;
  const o = options;
  if (!Number.isInteger(o.id) || o.id < 0 || o.id > 1023) throw invalidOption('options.id', 'must be an integer in 0..1023', o.id);
  if (!Number.isSafeInteger(o.incarnation) || o.incarnation < 0) {
    throw invalidOption('options.incarnation', 'must be a non-negative safe integer', o.incarnation);
  }
  const secret = o.secret as unknown;
  let secretBytes: Buffer;
  if (typeof secret === 'string' && secret.length > 0) secretBytes = Buffer.from(secret, 'utf8');
  else if (secret instanceof Uint8Array && secret.length > 0) secretBytes = Buffer.from(secret);
  else throw invalidOption('options.secret', 'must be a non-empty string or Buffer', secret);
  const secretLength = typeof secret === 'string' ? secret.length : secretBytes.length;
  if (secretLength < MIN_CLUSTER_SECRET_LENGTH)
    throw invalidOption('options.secret', `must be at least ${MIN_CLUSTER_SECRET_LENGTH} characters (bytes for a Buffer)`, `${secretLength} characters`);

  const host = o.host ?? d.host;
  if (typeof host !== 'string' || host.length === 0) throw invalidOption('options.host', 'must be a non-empty string', host);
  const port = o.port ?? d.port;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalidOption('options.port', 'must be an integer in 0..65535', port);
  if (o.advertiseAddress !== undefined && parseAddress(o.advertiseAddress) === undefined) {
    throw invalidOption('options.advertiseAddress', 'must be "host:port"', o.advertiseAddress);
  }
  const maxFrameBytes = int(o.maxFrameBytes, d.maxFrameBytes, 'options.maxFrameBytes', MAX_HANDSHAKE_FRAME_BYTES, 0xffff_ffff);
  const maxQueueBytes = int(o.maxQueueBytes, d.maxQueueBytes, 'options.maxQueueBytes', 1, Number.MAX_SAFE_INTEGER);
  const handshakeTimeoutMs = ms(o.handshakeTimeoutMs, d.handshakeTimeoutMs, 'options.handshakeTimeoutMs');
  const reconnectBaseMs = ms(o.reconnectBaseMs, d.reconnectBaseMs, 'options.reconnectBaseMs');
  const reconnectMaxMs = ms(o.reconnectMaxMs, Math.max(d.reconnectMaxMs, reconnectBaseMs), 'options.reconnectMaxMs');
  if (reconnectMaxMs < reconnectBaseMs) {
    throw invalidOption('options.reconnectMaxMs', 'must be >= options.reconnectBaseMs', reconnectMaxMs);
  }
  const unreachableAfterMs = ms(o.unreachableAfterMs, d.unreachableAfterMs, 'options.unreachableAfterMs');
  const maxPendingHandshakes = int(o.maxPendingHandshakes, d.maxPendingHandshakes, 'options.maxPendingHandshakes', 1, 1_000_000);
  const replayCacheSize = int(o.replayCacheSize, d.replayCacheSize, 'options.replayCacheSize', 0, 10_000_000);
  const closeGraceMs = ms(o.closeGraceMs, d.closeGraceMs, 'options.closeGraceMs');
  const refusalLogIntervalMs = ms(o.refusalLogIntervalMs, d.refusalLogIntervalMs, 'options.refusalLogIntervalMs');
  const protocolVersion = int(o.protocolVersion, NODE_PROTOCOL_VERSION, 'options.protocolVersion', 0, 0xffff);
  const tlsOptions = validateTls(o.tls);
  if (o.clock !== undefined) {
    const c = o.clock as unknown as Record<string, unknown>;
    if (
      c === null ||
      typeof c !== 'object' ||
      typeof c.now !== 'function' ||
      typeof c.setTimeout !== 'function' ||
      typeof c.clearTimeout !== 'function'
    ) {
      throw invalidOption('options.clock', 'must be a Clock (now, setTimeout, clearTimeout)', o.clock);
    }
  }
  if (o.logger !== undefined && (o.logger === null || typeof o.logger !== 'object')) {
    throw invalidOption('options.logger', 'must be a pino Logger', o.logger);
  }
  if (o.random !== undefined && typeof o.random !== 'function') throw invalidOption('options.random', 'must be a function', o.random);
  return {
    resolved: {
      host,
      port,
      secret: secretBytes,
      tls: tlsOptions,
      maxFrameBytes,
      maxQueueBytes,
      handshakeTimeoutMs,
      reconnectBaseMs,
      reconnectMaxMs,
      unreachableAfterMs,
      maxPendingHandshakes,
      closeGraceMs,
      protocolVersion,
    },
    replayCacheSize,
    refusalLogIntervalMs,
  };
}

function validateTls(t: TcpTransportTlsOptions | undefined): TcpTransportTlsOptions | undefined {
  if (t === undefined) return undefined;
  if (t === null || typeof t !== 'object' || Array.isArray(t)) throw invalidOption('options.tls', 'must be an object', t);
  const pem = (v: unknown): boolean => typeof v === 'string' || Buffer.isBuffer(v);
  if (t.key !== undefined && !pem(t.key)) throw invalidOption('options.tls.key', 'must be a PEM string or Buffer', t.key);
  if (t.cert !== undefined && !pem(t.cert)) throw invalidOption('options.tls.cert', 'must be a PEM string or Buffer', t.cert);
  if ((t.key === undefined) !== (t.cert === undefined)) {
    throw invalidOption(
      'options.tls.key',
      'and options.tls.cert must be given together',
      t.key === undefined ? 'only a cert' : 'only a key',
    );
  }
  if (t.ca !== undefined && !pem(t.ca) && !(Array.isArray(t.ca) && t.ca.length > 0 && t.ca.every(pem))) {
    throw invalidOption('options.tls.ca', 'must be a PEM string, Buffer or a non-empty array of them', t.ca);
  }
  if (t.requestCert !== undefined && typeof t.requestCert !== 'boolean') {
    throw invalidOption('options.tls.requestCert', 'must be a boolean', t.requestCert);
  }
  if (t.rejectUnauthorized !== undefined && typeof t.rejectUnauthorized !== 'boolean') {
    throw invalidOption('options.tls.rejectUnauthorized', 'must be a boolean', t.rejectUnauthorized);
  }
  return { ...t };
}

function int(v: number | undefined, dflt: number, name: string, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min || v > max) throw invalidOption(name, `must be an integer in ${min}..${max}`, v);
  return v;
}

function ms(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw invalidOption(name, 'must be a positive number of milliseconds', v);
  return v;
}

function zeroCounts<K extends string>(keys: K[]): Record<K, number> {
  const r = {} as Record<K, number>;
  for (const k of keys) r[k] = 0;
  return r;
}

/** "host:port" or "[v6]:port" → parts; undefined when malformed or the port is not 1..65535. */
export function parseAddress(address: string): { host: string; port: number } | undefined {
  if (typeof address !== 'string') return undefined;
  const colon = address.lastIndexOf(':');
  if (colon <= 0) return undefined;
  let host = address.slice(0, colon);
  const portText = address.slice(colon + 1);
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  else if (host.includes(':')) return undefined;
  if (host.length === 0) return undefined;
  return { host, port };
}

function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
