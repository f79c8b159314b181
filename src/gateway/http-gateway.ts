import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Connection, SessionHub } from '../sessions/session-hub.ts';
import { CloseCodes } from '../sessions/ws-protocol.ts';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ActorKind, ActorRegistry } from '../actors/registry.ts';
import { checkKey } from '../actors/actor-ref.ts';
import type { SessionSource } from '../actors/define-actor.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { invalidOption, isTroupeError, toErrorRecord, troupeError, type ErrorCode, type TroupeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { findForbiddenKey } from './forbidden-keys.ts';
import { checkTrustedProxies, clientAddress } from './client-address.ts';
import { checkCorsOrigins, corsHeaders, preflightHeaders } from './cors.ts';
import { checkSessionSecrets, issueSession, sessionClearCookie, sessionCookieOf, sessionSetCookie, verifySession } from './session-cookie.ts';
import { PARTITIONS } from '../replication/partition-table.ts';
import { formatTokens, mergeTokens, parseTokens, TOKEN_HEADER, type Token, type TokenExchange, type TokenSet } from '../replication/token.ts';

/** All the gateway may do with actors: send one ask (with read-your-writes tokens, `rw`). */
export interface Sender {
  askRaw(
    kind: string,
    key: string,
    command: string,
    input: unknown,
    msgId: string | undefined,
    timeoutMs: number,
    rw?: TokenExchange,
  ): Promise<unknown>;
}

export interface GatewayOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Largest request body, bytes; larger gets 413 before it is buffered. */
  maxBodyBytes?: number;
  /** Ask timeout when the request names none (`x-timeout-ms`), ms. */
  defaultTimeoutMs?: number;
  maxTimeoutMs?: number;
  /**
   * Secrets that sign and check `sid` cookies (kinds with `session: 'cookie'`): the first signs,
   * any verifies (rotation: put the new one first, drop the old after `sessionMaxAgeS`). Every
   * node of a cluster needs the same list. Each ≥ 16 characters; no default.
   */
  sessionSecrets?: string[];
  /** Lifetime of a `sid` cookie, seconds; signed into it, so an older one is refused. */
  sessionMaxAgeS?: number;
  /** Mark `sid` cookies Secure even over plain HTTP (TLS ends at a proxy in front). */
  secureCookies?: boolean;
  /** Proxy addresses whose X-Forwarded-For names the client (`address` sessions, `authorize`); none by default. */
  trustedProxies?: string[];
  /** Browser origins allowed to call actor routes (CORS), or '*' (without cookies); none by default. */
  corsOrigins?: string[];
  /** A request whose headers have not all arrived by then is cut (408), ms: bounds slowloris. */
  headersTimeoutMs?: number;
  /** A request not wholly received by then is cut (408), ms; ≥ headersTimeoutMs. */
  requestTimeoutMs?: number;
}

export const gatewayDefaults = {
  host: '127.0.0.1', // loopback unless told otherwise
  port: 8080,
  maxBodyBytes: 64 * 1024, // bytes: a session command, not an upload
  defaultTimeoutMs: 5_000, // ms
  maxTimeoutMs: 60_000, // ms; a client cannot pin a request for longer
  sessionSecrets: [] as string[], // none: cookie sessions need one set for the whole cluster
  sessionMaxAgeS: 7 * 24 * 3600, // s; a week, then the browser starts a new session
  secureCookies: false, // Secure is added anyway when the request came over TLS
  trustedProxies: [] as string[], // X-Forwarded-For is believed from nobody
  corsOrigins: [] as string[], // no cross-origin scripts
  headersTimeoutMs: 10_000, // ms; Node's 60 s lets a slowloris client hold a socket for a minute
  requestTimeoutMs: 30_000, // ms; Node's 300 s; a 64 KiB body needs far less
};

const STATUS: Partial<Record<ErrorCode, number>> = {
  ERR_MALFORMED_JSON: 400,
  ERR_UNKNOWN_KIND: 400,
  ERR_UNKNOWN_COMMAND: 400,
  ERR_INVALID_INPUT: 400,
  ERR_INVALID_KEY: 400,
  ERR_FORBIDDEN_KEY: 400,
  ERR_INVALID_OPTION: 400,
  ERR_BAD_SESSION: 401,
  ERR_SESSION_EXPIRED: 401,
  ERR_FORBIDDEN: 403,
  ERR_BAD_MESSAGE: 400,
  ERR_OVERLOADED: 503,
  ERR_NOT_FOUND: 404,
  ERR_METHOD_NOT_ALLOWED: 405,
  ERR_BODY_TOO_LARGE: 413,
  // As the IETF Idempotency-Key draft advises for a key reused with another payload (409 is
  // for a request still in flight; Stripe answers 400): the request is well formed but refused.
  ERR_IDEMPOTENCY_MISMATCH: 422,
  // The write a read-your-writes token names is gone (lazy durability): that state will never come back.
  ERR_TOKEN_LOST: 410,
  ERR_HANDLER_FAILED: 500,
  // A handler's value outside the value domain: a bug in the app, like a handler that throws.
  ERR_NOT_SERIALIZABLE: 500,
  ERR_MAILBOX_FULL: 503,
  ERR_STALE_EPOCH: 503,
  ERR_WORKER_DIED: 503,
  ERR_ACTOR_ESCALATED: 503,
  ERR_STOPPED: 503,
  ERR_JOURNAL_WRITE: 503,
  ERR_NODE_UNREACHABLE: 503,
  ERR_NO_NODES: 503,
  ERR_NOT_OWNER: 503,
  ERR_NOT_PRIMARY: 503,
  ERR_PARTITION_UNAVAILABLE: 503,
  ERR_SEND_QUEUE_FULL: 503,
  ERR_ASK_TIMEOUT: 504,
  ERR_STORAGE_FULL: 507,
};

export function httpStatusOf(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** One actor request, resolved from its route, method and session before anything is asked. */
interface ActorCall {
  kind: ActorKind;
  key: string;
  command: string;
  method: 'GET' | 'POST';
  session: SessionSource;
  address: string;
  /** The `?input=` of a GET (a POST's input is its body). */
  queryInput?: unknown;
}

/**
 * The HTTP face of a node: an actor request becomes one ask, and its reply (or a
 * `{ error: { code, message } }`) the response. Two route forms, chosen by each kind's `session`:
 *
 *   POST /actors/:kind/:key/:command    session 'path' (default): the key is in the path
 *   POST /sessions/:kind/:command       session 'cookie': the key is the signed `sid` cookie,
 *                                       issued (Set-Cookie) on a request that brings none;
 *                                       session 'address': the key is the client's IP address
 *
 * A read-only command (`readOnly: true`) also answers GET, its input as `?input=<JSON>` (or
 * none); GET of any other command is 405. A kind's `authorize` hook runs before the ask (403
 * ERR_FORBIDDEN when it refuses); `corsOrigins` lets browser pages on other origins call these
 * routes (OPTIONS preflight). The key's owner may be another node: the sender forwards in one
 * hop, and the answer and error codes are the owner's.
 *
 * Read-your-writes: a reply from a replicated partition carries a `troupe-token` header; send it
 * back (the whole set, comma-separated, as the last reply gave it) and the request is served only
 * from state that includes those writes, wherever the key's primary now is.
 *
 * @example
 *   curl -XPOST localhost:8080/actors/counter/k1/incr -d '{"by":2}'   # → {"n":2}, troupe-token: 17:4.2:381
 *   curl -XPOST localhost:8080/actors/counter/k1/get -H 'troupe-token: 17:4.2:381'
 *   curl localhost:8080/actors/counter/k1/get                          # GET: read-only commands
 *   curl -c jar -b jar -XPOST localhost:8080/sessions/cart/add -d '{"sku":"tea"}'  # a cookie session
 */
export class HttpGateway {
  private readonly server: Server;
  private readonly o: Required<GatewayOptions>;
  private readonly secrets: readonly string[];
  private readonly trusted: ReadonlySet<string>;
  private readonly origins: ReadonlySet<string>;

  constructor(
    private readonly registry: ActorRegistry,
    private readonly sender: Sender,
    private readonly log: Logger,
    options: GatewayOptions = {},
    /** Read-only JSON views served on GET (e.g. '/cluster/members'). */
    private readonly views: Record<string, (query: URLSearchParams) => unknown> = {},
    /** Every error answer, by code (metrics: nothing refused goes uncounted). */
    private readonly onError?: (code: string, status: number) => void,
    /** Wall time for `sid` cookie expiry (comparable across nodes). */
    private readonly clock: Clock = systemClock,
  ) {
    this.o = { ...gatewayDefaults, ...options };
    for (const name of ['maxBodyBytes', 'defaultTimeoutMs', 'maxTimeoutMs', 'sessionMaxAgeS', 'headersTimeoutMs', 'requestTimeoutMs'] as const) {
      const v = this.o[name];
      if (!Number.isInteger(v) || v <= 0) throw invalidOption(`options.http.${name}`, 'must be a positive integer', v);
    }
    if (!Number.isInteger(this.o.port) || this.o.port < 0 || this.o.port > 65535)
      throw invalidOption('options.http.port', 'must be an integer in [0, 65535]', this.o.port);
    if (typeof this.o.secureCookies !== 'boolean') throw invalidOption('options.http.secureCookies', 'must be a boolean', this.o.secureCookies);
    this.secrets = checkSessionSecrets(this.o.sessionSecrets);
    this.trusted = checkTrustedProxies(this.o.trustedProxies);
    this.origins = checkCorsOrigins(this.o.corsOrigins);
    // Refused at start rather than per request: a node without the cluster's secret would turn
    // away every cookie session it is sent, which looks like a broken node, not a missing flag.
    const cookieKind = registry.list().find((k) => k.def.session === 'cookie');
    if (cookieKind && this.secrets.length === 0)
      throw invalidOption(
        'options.http.sessionSecrets',
        `must list at least one secret: kind '${cookieKind.kind}' keeps its session in the sid cookie (--session-secret or TROUPE_SESSION_SECRET, the same on every node)`,
        'none',
      );
    if (this.o.requestTimeoutMs < this.o.headersTimeoutMs)
      throw invalidOption('options.http.requestTimeoutMs', `must be >= options.http.headersTimeoutMs (${this.o.headersTimeoutMs})`, this.o.requestTimeoutMs);
    const { headersTimeoutMs: headersTimeout, requestTimeoutMs: requestTimeout } = this.o;
    // Node enforces both timeouts only when it sweeps its connections (every 30 s by default): sweep often enough that the cut is near the bound.
    const connectionsCheckingInterval = Math.min(1_000, Math.ceil(headersTimeout / 4));
    this.server = createServer({ headersTimeout, requestTimeout, connectionsCheckingInterval }, (req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 65_000; // ms; longer than common load balancers' idle timeout
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          e.code === 'EADDRINUSE' || e.code === 'EACCES'
            ? invalidOption('options.http.port', `cannot listen on ${this.o.host}:${this.o.port} (${e.code})`, this.o.port)
            : e,
        ),
      );
      this.server.listen(this.o.port, this.o.host, () => {
        this.server.removeAllListeners('error');
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  close(): Promise<void> {
    for (const close of this.closing.splice(0)) close();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    if (url.startsWith('/actors/') || url.startsWith('/sessions/')) return this.actorRequest(req, res, url);
    if (req.method === 'GET') {
      if (url === '/health') return sendJson(res, 200, '{"status":"ok"}');
      const q = url.indexOf('?');
      const path = q === -1 ? url : url.slice(0, q);
      const view = Object.hasOwn(this.views, path) ? this.views[path] : undefined;
      // A view may be async (worker stats are asked over each worker's port).
      if (view)
        return void Promise.resolve()
          .then(() => view(new URLSearchParams(q === -1 ? '' : url.slice(q + 1))))
          .then(
          (v) => (v instanceof RawResponse ? sendRaw(res, v) : this.sendValue(res, v, url)),
          (e: unknown) => this.fail(res, e),
        );
    }
    req.resume();
    this.fail(res, troupeError('ERR_NOT_FOUND', `no route for ${req.method} ${truncate(url)}; try POST /actors/:kind/:key/:command`));
  }

  private actorRequest(req: IncomingMessage, res: ServerResponse, url: string): void {
    const cors = corsHeaders(header(req.headers.origin), this.origins);
    if (cors) for (const [name, value] of Object.entries(cors)) res.setHeader(name, value);
    if (req.method === 'OPTIONS') return this.preflight(req, res, cors);
    let call: ActorCall;
    let timeoutMs = this.o.defaultTimeoutMs;
    let msgId: string | undefined;
    let tokens: TokenSet | undefined;
    try {
      call = this.resolveCall(req, res, url);
      const t = req.headers['x-timeout-ms'];
      if (t !== undefined) timeoutMs = parseTimeout(t, this.o.maxTimeoutMs);
      const idem = req.headers['idempotency-key'];
      if (idem !== undefined) msgId = parseMessageId(idem);
      const token = req.headers[TOKEN_HEADER];
      if (token !== undefined) tokens = parseTokens(Array.isArray(token) ? token.join(',') : token, PARTITIONS);
      const declared = Number(req.headers['content-length'] ?? 0);
      if (declared > this.o.maxBodyBytes) throw tooLarge(this.o.maxBodyBytes);
    } catch (e) {
      return this.refuseBody(req, res, e as TroupeError);
    }

    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > this.o.maxBodyBytes) {
        refused = true;
        return this.refuseBody(req, res, tooLarge(this.o.maxBodyBytes));
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (refused) return;
      let input: unknown;
      try {
        input = call.method === 'GET' ? call.queryInput : parseBody(chunks, size);
      } catch (e) {
        return this.fail(res, e as TroupeError);
      }
      const { kind, key, command } = call;
      // The reply's token joins the set the client sent: echoing the last header is all a client does.
      let token: string | undefined;
      const onToken = (t: Token) => void (token = formatTokens(mergeTokens(tokens ?? new Map(), t)));
      this.authorize(req, call, input)
        .then(() => this.sender.askRaw(kind.kind, key, command, input, msgId, timeoutMs, { ...(tokens && { tokens }), onToken }))
        .then(
          (reply) => {
            if (token !== undefined) res.setHeader(TOKEN_HEADER, token);
            this.sendValue(res, reply, `reply of ${kind.kind}/${key} '${command}'`);
          },
          (e: unknown) => this.fail(res, e),
        );
    });
  }

  /**
   * Route, method and session → the call. Issues a `sid` cookie (Set-Cookie on `res`) to a
   * cookie-session request that brings none; refuses one that brings a bad one.
   */
  private resolveCall(req: IncomingMessage, res: ServerResponse, url: string): ActorCall {
    const q = url.indexOf('?');
    const parts = (q === -1 ? url : url.slice(0, q)).split('/');
    const byPath = parts[1] === 'actors';
    if (parts.length !== (byPath ? 5 : 4))
      throw troupeError('ERR_NOT_FOUND', byPath ? 'expected /actors/:kind/:key/:command' : 'expected /sessions/:kind/:command');
    if (req.method !== 'POST' && req.method !== 'GET') {
      res.setHeader('allow', 'GET, POST');
      throw troupeError('ERR_METHOD_NOT_ALLOWED', `${req.method} is not allowed; use POST (or GET for a read-only command)`);
    }
    let kindName: string, pathKey: string | undefined, command: string;
    try {
      kindName = decodeURIComponent(parts[2]!);
      pathKey = byPath ? decodeURIComponent(parts[3]!) : undefined;
      command = decodeURIComponent(parts[byPath ? 4 : 3]!);
    } catch {
      throw troupeError('ERR_INVALID_KEY', 'path segments must be valid percent-encoded UTF-8');
    }
    const kind = this.registry.check(kindName, command);
    const method = req.method;
    if (method === 'GET' && kind.commands.get(command)!.readOnly !== true) {
      res.setHeader('allow', 'POST');
      throw troupeError('ERR_METHOD_NOT_ALLOWED', `GET is only for read-only commands; '${command}' of '${kindName}' writes: use POST`);
    }
    const session = kind.def.session ?? 'path';
    // A cookie or address kind must not be reachable by a key in the path: anyone could name another's session.
    if (byPath !== (session === 'path'))
      throw troupeError(
        'ERR_NOT_FOUND',
        session === 'path'
          ? `kind '${kindName}' takes its key from the path: use /actors/${kindName}/:key/${command}`
          : `kind '${kindName}' takes its key from the ${session === 'cookie' ? 'sid cookie' : 'client address'}: use /sessions/${kindName}/${command}`,
      );
    const { key, address } = this.keyOf(req, session, pathKey, (cookie) => res.setHeader('set-cookie', cookie));
    return { kind, key, command, method, session, address, ...(method === 'GET' && { queryInput: parseQueryInput(q === -1 ? '' : url.slice(q + 1)) }) };
  }

  /** A request's actor key by its kind's session source (HTTP routes and WebSocket upgrades alike), and the client address. */
  private keyOf(req: IncomingMessage, session: SessionSource, pathKey: string | undefined, setCookie: (cookie: string) => void): { key: string; address: string } {
    const address = clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], this.trusted);
    const key = session === 'path' ? pathKey! : session === 'address' ? address : this.sessionKey(req, setCookie);
    const keyProblem = checkKey(key);
    if (keyProblem) throw troupeError('ERR_INVALID_KEY', keyProblem);
    return { key, address };
  }

  /** The `sid` cookie's session id, or a new one issued with the response (`setCookie`). */
  private sessionKey(req: IncomingMessage, setCookie: (cookie: string) => void): string {
    const now = this.clock.wallNow();
    let value: string | undefined;
    try {
      value = sessionCookieOf(header(req.headers.cookie));
      if (value !== undefined) return verifySession(value, this.secrets, now);
    } catch (e) {
      // Refused, never replaced: but told to drop it (it is HttpOnly: a page cannot), so the
      // browser's next request starts a new session instead of bringing it back forever.
      setCookie(sessionClearCookie());
      throw e;
    }
    const issued = issueSession(this.secrets, now, this.o.sessionMaxAgeS);
    const secure = this.o.secureCookies || (req.socket as TLSSocket).encrypted === true;
    setCookie(sessionSetCookie(issued.value, this.o.sessionMaxAgeS, secure));
    return issued.id;
  }

  /**
   * WebSocket sessions on this port (docs/websocket.md): `GET /ws/:kind/:key` for a path kind,
   * `GET /ws/:kind` for a cookie or address kind (the same key rules as HTTP, a `sid` cookie
   * issued with the 101 when none came), `?from=<seq>` to resume. The kind's authorization hook
   * sees the upgrade as command '$connect' (method GET) and every ask on the socket as itself
   * (method POST). Frames over `maxBodyBytes` close that socket (1009); a socket that misses
   * two pings (`pingMs`) is closed as dead.
   */
  acceptWebSockets(hub: SessionHub, pingMs = 15_000): void {
    if (!Number.isSafeInteger(pingMs) || pingMs < 1) throw invalidOption('options.sessions.pingMs', 'must be a positive integer (ms)', pingMs);
    const cookies = new WeakMap<IncomingMessage, string>();
    const wss = new WebSocketServer({ noServer: true, maxPayload: this.o.maxBodyBytes, perMessageDeflate: false, clientTracking: true });
    wss.on('headers', (headers, req) => {
      const cookie = cookies.get(req);
      if (cookie !== undefined) headers.push(`Set-Cookie: ${cookie}`);
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => undefined); // a reset during the handshake is the client's business
      let call: ActorCall;
      let from: number | undefined;
      try {
        hub.checkRoom();
        ({ call, from } = this.resolveSocket(req, (cookie) => cookies.set(req, cookie)));
      } catch (e) {
        return this.refuseUpgrade(socket, e, cookies.get(req));
      }
      this.authorize(req, call, undefined).then(
        () =>
          wss.handleUpgrade(req, socket, head, (ws) => {
            let conn: Connection;
            const guard = (command: string, input: unknown) => {
              this.registry.check(call.kind.kind, command);
              return this.authorize(req, { ...call, command, method: 'POST' }, input);
            };
            try {
              conn = hub.open(ws, call.kind.kind, call.key, from, guard);
            } catch (e) {
              const r = toErrorRecord(e);
              ws.send(JSON.stringify({ t: 'error', error: { code: r.code, message: r.message } }));
              return ws.close(CloseCodes.policy, r.code);
            }
            let alive = true;
            ws.on('pong', () => (alive = true));
            const ping = setInterval(() => {
              if (!alive) return ws.terminate();
              alive = false;
              ws.ping();
            }, pingMs);
            ping.unref();
            ws.on('message', (data, isBinary) => {
              if (isBinary) {
                hub.counters.badFrames++;
                ws.send(JSON.stringify({ t: 'error', error: { code: 'ERR_BAD_MESSAGE', message: 'frames are JSON text, not binary' } }));
                return ws.close(CloseCodes.unsupported, 'ERR_BAD_MESSAGE');
              }
              hub.message(conn, (data as Buffer).toString('utf8'));
            });
            ws.on('error', () => undefined); // a frame over maxPayload closes it with 1009; 'close' follows
            ws.on('close', () => {
              clearInterval(ping);
              hub.closed(conn);
            });
          }),
        (e: unknown) => this.refuseUpgrade(socket, e),
      );
    });
    this.closing.push(() => {
      hub.close();
      for (const ws of wss.clients) ws.terminate();
    });
  }

  private readonly closing: Array<() => void> = [];

  /** /ws/:kind/:key or /ws/:kind, with the same session rules as /actors and /sessions. */
  private resolveSocket(req: IncomingMessage, setCookie: (cookie: string) => void): { call: ActorCall; from: number | undefined } {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const parts = (q === -1 ? url : url.slice(0, q)).split('/');
    if (parts[1] !== 'ws' || parts.length < 3 || parts.length > 4) throw troupeError('ERR_NOT_FOUND', 'WebSocket sessions are at /ws/:kind/:key (or /ws/:kind for cookie and address sessions)');
    let kindName: string, pathKey: string | undefined;
    try {
      kindName = decodeURIComponent(parts[2]!);
      pathKey = parts.length === 4 ? decodeURIComponent(parts[3]!) : undefined;
    } catch {
      throw troupeError('ERR_INVALID_KEY', 'path segments must be valid percent-encoded UTF-8');
    }
    const kind = this.registry.get(kindName);
    if (kind === undefined) throw troupeError('ERR_UNKNOWN_KIND', `unknown actor kind '${truncate(kindName)}'`, { kind: kindName });
    const session = kind.def.session ?? 'path';
    if ((pathKey !== undefined) !== (session === 'path'))
      throw troupeError('ERR_NOT_FOUND', session === 'path' ? `kind '${kindName}' takes its key from the path: use /ws/${kindName}/:key` : `kind '${kindName}' takes its key from the ${session === 'cookie' ? 'sid cookie' : 'client address'}: use /ws/${kindName}`);
    const { key, address } = this.keyOf(req, session, pathKey, setCookie);
    const params = new URLSearchParams(q === -1 ? '' : url.slice(q + 1));
    let from: number | undefined;
    for (const [name, value] of params) {
      if (name !== 'from') throw troupeError('ERR_INVALID_INPUT', `query parameter '${truncate(name)}' is not understood; a WebSocket session takes ?from=<seq>`);
      from = Number(value);
      if (!/^\d{1,15}$/.test(value)) throw troupeError('ERR_INVALID_INPUT', 'from must be a non-negative integer: the last push seq (or sync seq) the client has');
    }
    return { call: { kind, key, command: '$connect', method: 'GET', session, address }, from };
  }

  /** An upgrade refused before it became a WebSocket: a plain HTTP answer with the error's status and body. */
  private refuseUpgrade(socket: Duplex, e: unknown, setCookie?: string): void {
    const record = toErrorRecord(e);
    const status = httpStatusOf(record.code);
    this.onError?.(record.code, status);
    const body = JSON.stringify({ error: { code: record.code, message: record.message } });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: ${JSON_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${setCookie !== undefined ? `set-cookie: ${setCookie}\r\n` : ''}connection: close\r\n\r\n${body}`,
    );
  }

  /** Resolves when the kind has no hook or its hook answers `true`; anything else is a 403. */
  private async authorize(req: IncomingMessage, call: ActorCall, input: unknown): Promise<void> {
    const hook = call.kind.def.authorize;
    if (hook === undefined) return;
    let allowed: unknown;
    try {
      allowed = await hook({
        kind: call.kind.kind,
        key: call.key,
        command: call.command,
        method: call.method,
        session: call.session,
        headers: req.headers,
        address: call.address,
        input,
      });
    } catch (e) {
      // Fails closed, and loudly: a hook that throws is a bug in the app, not a refusal.
      this.log.error({ err: e, kind: call.kind.kind }, 'authorization hook failed');
      throw troupeError('ERR_INTERNAL', `authorization hook of kind '${call.kind.kind}' failed`);
    }
    if (allowed !== true)
      throw troupeError('ERR_FORBIDDEN', `not authorized to call '${call.command}' of ${call.kind.kind}/${truncate(call.key)}`, {
        kind: call.kind.kind,
        command: call.command,
      });
  }

  /** OPTIONS: a CORS preflight; answered only for an allowed origin. */
  private preflight(req: IncomingMessage, res: ServerResponse, cors: Record<string, string> | undefined): void {
    req.resume();
    if (!cors) {
      const origin = header(req.headers.origin);
      return this.fail(
        res,
        troupeError(
          'ERR_FORBIDDEN',
          origin === undefined
            ? 'OPTIONS is a CORS preflight and needs an Origin header'
            : `origin ${truncate(origin)} is not allowed (options.http.corsOrigins, --cors-origin)`,
        ),
      );
    }
    res.writeHead(204, preflightHeaders());
    res.end();
  }

  /** Answers without reading the body, then closes the connection (its rest is unread). */
  private refuseBody(req: IncomingMessage, res: ServerResponse, error: TroupeError): void {
    const expectsBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    if (expectsBody && error.code === 'ERR_BODY_TOO_LARGE') {
      res.setHeader('connection', 'close');
      res.once('finish', () => req.socket.destroySoon());
    } else {
      req.resume();
    }
    this.fail(res, error);
  }

  /**
   * A 200 with `value` as JSON. The last line of defence for values outside the value domain
   * that reach the gateway anyway (workers check theirs): JSON.stringify throws on a BigInt or
   * a cycle, and returns undefined for a function; neither may escape into the server.
   */
  private sendValue(res: ServerResponse, value: unknown, what: string): void {
    let body: string | undefined;
    let problem: unknown;
    try {
      body = JSON.stringify(value ?? null);
    } catch (e) {
      problem = e;
    }
    if (typeof body === 'string') return sendJson(res, 200, body);
    const error = troupeError(
      'ERR_NOT_SERIALIZABLE',
      `${what} cannot be encoded as JSON: ${problem instanceof Error ? problem.message : typeof value}`,
    );
    this.log.error({ err: error }, 'gateway could not encode a response');
    this.fail(res, error);
  }

  private fail(res: ServerResponse, e: unknown): void {
    if (res.headersSent) return;
    res.removeHeader(TOKEN_HEADER); // a reply that could not be sent covers nothing
    const record = toErrorRecord(e);
    const status = httpStatusOf(record.code);
    this.onError?.(record.code, status);
    // Handler failures and refused values were logged where they happened (the worker, sendValue).
    if (status === 500 && !isTroupeError(e, 'ERR_HANDLER_FAILED') && !isTroupeError(e, 'ERR_NOT_SERIALIZABLE'))
      this.log.error({ err: e }, 'gateway request failed');
    if (status === 503) res.setHeader('retry-after', '1');
    sendJson(res, status, JSON.stringify({ error: { code: record.code, message: record.message } }));
  }
}

/** A view's answer that is not JSON: a page, Prometheus text. */
export class RawResponse {
  constructor(
    readonly contentType: string,
    readonly body: string,
    /** More response headers (e.g. CORS on a public view: src/node/app-pages.ts). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {}
}

function sendRaw(res: ServerResponse, r: RawResponse): void {
  res.writeHead(200, { ...r.headers, 'content-type': r.contentType, 'content-length': Buffer.byteLength(r.body), 'cache-control': 'no-store' });
  res.end(r.body);
}

function sendJson(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function parseBody(chunks: Buffer[], size: number): unknown {
  if (size === 0) return undefined;
  const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks, size).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw troupeError('ERR_MALFORMED_JSON', `request body is not valid JSON: ${(e as Error).message}`);
  }
  // Only payloads that could spell a dangerous key (directly or through \u escapes) are walked.
  if (text.includes('__proto__') || text.includes('constructor') || text.includes('prototype') || text.includes('\\u')) {
    const path = findForbiddenKey(value);
    if (path !== undefined) throw troupeError('ERR_FORBIDDEN_KEY', `forbidden key at ${path}`, { path });
  }
  return value;
}

function parseTimeout(raw: string | string[], max: number): number {
  const v = Number(Array.isArray(raw) ? raw[0] : raw);
  if (!Number.isInteger(v) || v <= 0 || v > max) throw invalidOption('header x-timeout-ms', `must be an integer in [1, ${max}]`, raw);
  return v;
}

function parseMessageId(raw: string | string[]): string {
  const v = Array.isArray(raw) ? raw[0]! : raw;
  if (v.length === 0 || v.length > 128) throw invalidOption('header idempotency-key', 'must be 1..128 characters', v);
  return v;
}

function tooLarge(max: number): TroupeError {
  return troupeError('ERR_BODY_TOO_LARGE', `request body exceeds ${max} bytes`, { maxBodyBytes: max });
}

function truncate(s: string): string {
  return s.length > 80 ? s.slice(0, 80) + '…' : s;
}

/** One header's value: a repeated one is refused by the callers that care, the first used here. */
function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * A GET's input: `?input=<URL-encoded JSON>`, or none. Other parameters are refused rather than
 * ignored, so a misspelt `?inptu=` is not silently a call without input.
 */
function parseQueryInput(query: string): unknown {
  const params = new URLSearchParams(query);
  for (const name of params.keys())
    if (name !== 'input') throw troupeError('ERR_INVALID_INPUT', `query parameter '${truncate(name)}' is not understood; GET takes its input as ?input=<JSON>`);
  const all = params.getAll('input');
  if (all.length === 0) return undefined;
  if (all.length > 1) throw troupeError('ERR_INVALID_INPUT', 'query parameter input is given more than once');
  return parseBody([Buffer.from(all[0]!)], Buffer.byteLength(all[0]!));
}
