import { fromErrorRecord, troupeError, type ErrorCode, type TroupeError } from '../core/errors.ts';

/*
 * One WebSocket for a session, in a browser (the global `WebSocket`) or in Node 20, which has
 * none: there the `ws` package is loaded on first use, by a dynamic import, so a bundler taking
 * `troupe/client` for a browser never needs it at module load. Only `ws` can send headers (the
 * `sid` cookie, an authorization) and read the 101's Set-Cookie or a refused upgrade's error
 * body; a browser sends its own cookies and shows a refusal only as a failed connection.
 */

/** What a session needs of an open socket. */
export interface SessionSocket {
  send(text: string): void;
  close(code: number, reason: string): void;
}

/** What the socket reports. */
export interface SocketEvents {
  /** The upgrade succeeded; called before any `message`, so the first frame finds the socket set. */
  open(socket: SessionSocket, setCookies: string[]): void;
  message(text: string): void;
  /** Exactly once, whoever closed it. */
  close(code: number, reason: string): void;
}

export interface OpenSocketOptions {
  /** Sent with the upgrade where the platform allows it (Node's `ws`); a browser sends its own cookies. */
  headers: Record<string, string>;
  /** The upgrade is abandoned after this long, ms. */
  timeoutMs: number;
  /** Ping interval with `ws`, ms: a socket whose pong does not come back before the next ping is closed as dead (4000). */
  pingMs: number;
  /** A WebSocket constructor to use instead of the platform's (tests, polyfills). */
  WebSocket?: BrowserWebSocketClass;
}

/** The browser's WebSocket constructor, as far as a session uses it. */
export type BrowserWebSocketClass = new (url: string) => WebSocket;

/** Close code a session uses for a socket it gave up on (no pong, or the upgrade took too long). */
export const DEAD_SOCKET = 4000;

/**
 * Opens `url`; resolves once `events.open` ran. Rejects with a TroupeError: the server's own code when it refused the upgrade
 * with its `{ error }` body (Node), ERR_NODE_UNREACHABLE when the connection failed (with
 * `details.network: true`).
 */
export async function openSocket(url: string, o: OpenSocketOptions, events: SocketEvents): Promise<void> {
  const Global = o.WebSocket ?? (globalThis as { WebSocket?: BrowserWebSocketClass }).WebSocket;
  if (Global !== undefined) return openBrowserSocket(Global, url, o, events);
  const ws = await import('ws');
  return openNodeSocket(ws.WebSocket, url, o, events);
}

function unreachable(url: string, why: string): TroupeError {
  return troupeError('ERR_NODE_UNREACHABLE', `${url}: ${why}`, { url, network: true });
}

function openBrowserSocket(Ctor: BrowserWebSocketClass, url: string, o: OpenSocketOptions, events: SocketEvents): Promise<void> {
  return new Promise((resolve, reject) => {
    let ws: WebSocket;
    try {
      ws = new Ctor(url);
    } catch (e) {
      return reject(unreachable(url, (e as Error).message));
    }
    let open = false;
    const timer = setTimeout(() => {
      reject(unreachable(url, `no WebSocket upgrade within ${o.timeoutMs} ms`));
      ws.close();
    }, o.timeoutMs);
    ws.onopen = () => {
      clearTimeout(timer);
      open = true;
      events.open({ send: (t) => ws.send(t), close: (c, r) => ws.close(c, r) }, []);
      resolve();
    };
    ws.onmessage = (e: MessageEvent) => {
      if (typeof e.data === 'string') events.message(e.data);
    };
    ws.onclose = (e: CloseEvent) => {
      clearTimeout(timer);
      // A browser does not say why an upgrade failed (a refusal and a dead node look alike).
      if (!open) return reject(unreachable(url, `the WebSocket upgrade failed (close ${e.code})`));
      events.close(e.code, e.reason);
    };
  });
}

type NodeWebSocketClass = typeof import('ws').WebSocket;

function openNodeSocket(Ctor: NodeWebSocketClass, url: string, o: OpenSocketOptions, events: SocketEvents): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new Ctor(url, { headers: o.headers, handshakeTimeout: o.timeoutMs, perMessageDeflate: false });
    let settled = false;
    let setCookies: string[] = [];
    const fail = (e: TroupeError) => {
      if (settled) return;
      settled = true;
      reject(e);
      ws.terminate();
    };
    ws.on('upgrade', (res) => {
      const raw = res.headers['set-cookie'] ?? [];
      setCookies = raw.map((c) => c.split(';')[0]!.trim());
    });
    ws.on('unexpected-response', (_req, res) => {
      // The gateway refused the upgrade with a plain HTTP answer: `{ error: { code, message } }`.
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body = (body + d).slice(0, 65_536)));
      res.on('error', () => fail(unreachable(url, `the upgrade answered HTTP ${res.statusCode}`)));
      res.on('end', () => fail(refusal(url, res.statusCode ?? 0, body)));
    });
    ws.on('error', (e) => fail(unreachable(url, e.message)));
    ws.on('open', () => {
      settled = true;
      // Node sees a dead peer (a host gone, a partition) only by its silence: ping it.
      let alive = true;
      ws.on('pong', () => (alive = true));
      const ping = setInterval(() => {
        if (ws.readyState !== ws.OPEN) return;
        if (!alive) return ws.close(DEAD_SOCKET, 'no pong');
        alive = false;
        ws.ping();
      }, o.pingMs);
      ws.on('message', (data, isBinary) => {
        if (!isBinary) events.message(String(data));
      });
      ws.on('close', (code, reason) => {
        clearInterval(ping);
        events.close(code, reason.toString());
      });
      events.open(
        {
          send: (t) => ws.send(t),
          // A close handshake the peer never answers would keep the socket (and the process) alive.
          close: (c, r) => (ws.close(c, r), setTimeout(() => ws.terminate(), 1_000).unref()),
        },
        setCookies,
      );
      resolve();
    });
  });
}

/** The server's error from a refused upgrade's body; a status-named one when the body is not troupe's. */
function refusal(url: string, status: number, body: string): TroupeError {
  try {
    const e = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown } }).error;
    if (e !== undefined && typeof e.code === 'string' && typeof e.message === 'string')
      return fromErrorRecord({ code: e.code as ErrorCode, message: e.message });
  } catch {
    // not JSON: a proxy's page
  }
  return troupeError(status === 503 ? 'ERR_NODE_UNREACHABLE' : 'ERR_INTERNAL', `${url}: the WebSocket upgrade answered HTTP ${status}`, {
    url,
    status,
  });
}
