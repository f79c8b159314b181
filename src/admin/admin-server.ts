import { createHash, timingSafeEqual } from 'node:crypto';
import { chmod, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { invalidOption, toErrorRecord } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { visibleCommandNames } from './admin-commands.ts';
import type { AdminExecutor } from './admin-executor.ts';
import { asHello, asRequest, LineReader, parseLine, type AdminReply } from './admin-protocol.ts';

/** Linux's limit for a Unix socket path (sun_path is 108 bytes, NUL included). */
const MAX_SOCKET_PATH = 107;

export const adminDefaults = {
  /** Connections open at once; more are closed at once. */
  maxConnections: 16,
  /** A connection must say hello within this long. */
  helloTimeoutMs: 5000,
};

export interface AdminServerOptions {
  /** Runs the commands (and audits them). */
  executor: AdminExecutor;
  log: Logger;
  /** A Unix socket path, created with mode 0600 (owner only). */
  socketPath?: string;
  /** Loopback or remote TCP, off by default; every connection must bring `token`. */
  tcp?: { host: string; port: number; token: string; tokenName?: string };
}

/**
 * The node's admin endpoint, which `troupe repl` attaches to. Over the Unix socket, being able to
 * open it is the authentication (mode 0600: the node's user only), and the REPL reports its
 * local user for the audit log. Over TCP, the first line must carry the token; a connection that
 * fails gets nothing back — not even a prompt — and is closed.
 *
 * @example
 *   const admin = await AdminServer.start({ target, log, socketPath: 'data/admin.sock', auditPath: 'data/audit.log' });
 *   admin.socketPath   // → 'data/admin.sock'
 *   await admin.close();
 */
export class AdminServer {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private tcpAddress: string | undefined;

  private constructor(private readonly o: AdminServerOptions) {}

  static async start(o: AdminServerOptions): Promise<AdminServer> {
    const s = new AdminServer(o);
    if (o.socketPath !== undefined) await s.listenUnix(o.socketPath);
    if (o.tcp !== undefined) await s.listenTcp(o.tcp);
    return s;
  }

  get socketPath(): string | undefined {
    return this.o.socketPath;
  }

  /** host:port of the TCP endpoint, when on. */
  get tcpEndpoint(): string | undefined {
    return this.tcpAddress;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
    if (this.o.socketPath !== undefined) await unlink(this.o.socketPath).catch(() => undefined);
  }

  private async listenUnix(path: string): Promise<void> {
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH)
      throw invalidOption('admin socket', `path is over ${MAX_SOCKET_PATH} bytes (a Unix socket limit): choose a shorter --data-dir or --admin-socket`, path);
    // A socket file left by a SIGKILLed node: the data directory's lock says nobody else runs here.
    await unlink(path).catch(() => undefined);
    const server = this.server('unix socket');
    // Owner-only from the moment it exists: bind happens inside listen(), under this umask.
    const previous = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(previous);
    }
    await chmod(path, 0o600);
    this.servers.push(server);
  }

  private async listenTcp(tcp: NonNullable<AdminServerOptions['tcp']>): Promise<void> {
    if (typeof tcp.token !== 'string' || tcp.token.length < 16) throw invalidOption('admin token', 'must be at least 16 characters', '(hidden)');
    const server = this.server('tcp');
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(tcp.port, tcp.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const a = server.address();
    if (a !== null && typeof a === 'object') this.tcpAddress = `${a.address}:${a.port}`;
    this.servers.push(server);
  }

  private server(via: 'unix socket' | 'tcp'): Server {
    const server = createServer((socket) => this.accept(socket, via));
    server.on('error', (e) => this.o.log.warn({ err: e }, 'admin endpoint error'));
    return server;
  }

  private accept(socket: Socket, via: 'unix socket' | 'tcp'): void {
    if (this.sockets.size >= adminDefaults.maxConnections) return void socket.destroy();
    this.sockets.add(socket);
    socket.setEncoding('utf8');
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    // Every refusal names why and from where: a refused operator, or someone probing, shows in the node's log.
    const refuse = (reason: string) => {
      this.o.log.warn({ via, reason, remote: socket.remoteAddress ?? 'local' }, `admin connection refused: ${reason}`);
      socket.destroy();
    };
    const helloTimer = setTimeout(() => refuse('no hello in time'), adminDefaults.helloTimeoutMs);
    let user: string | undefined;
    let chain = Promise.resolve();
    const reader = new LineReader((line) => {
      let parsed: Record<string, unknown>;
      try {
        parsed = parseLine(line);
      } catch {
        if (user === undefined) clearTimeout(helloTimer);
        return void (user === undefined ? refuse('first line is not an admin hello') : socket.destroy());
      }
      if (user === undefined) {
        clearTimeout(helloTimer);
        const hello = asHello(parsed);
        if (hello === undefined) return refuse('first line is not an admin hello');
        if (!this.authenticated(hello.token, via)) return refuse(hello.token === undefined ? 'no token' : 'wrong token');
        user = via === 'tcp' ? (this.o.tcp?.tokenName ?? 'token') : hello.user;
        const target = this.o.executor.target;
        return void socket.write(`${JSON.stringify({ hello: 1, node: target.id, kinds: target.kinds(), commands: visibleCommandNames() })}\n`);
      }
      const who = user;
      // One command at a time per connection, answered in order.
      chain = chain.then(async () => {
        let reply: AdminReply;
        let id = 0;
        try {
          const req = asRequest(parsed);
          id = req.id;
          const result = await this.o.executor.run(req.command, req.args, who, via, req.node);
          reply = { id, ok: true, result };
        } catch (e) {
          const r = toErrorRecord(e);
          reply = { id, ok: false, error: { code: r.code, message: r.message } };
        }
        if (!socket.destroyed) socket.write(`${JSON.stringify(reply)}\n`);
      });
    });
    socket.on('data', (chunk: string) => {
      try {
        reader.push(chunk);
      } catch {
        socket.destroy();
      }
    });
  }

  private authenticated(token: string | undefined, via: 'unix socket' | 'tcp'): boolean {
    if (via === 'unix socket') return true; // opening the 0600 socket was the check
    const expected = this.o.tcp?.token;
    if (expected === undefined || token === undefined) return false;
    const digest = (s: string) => createHash('sha256').update(s).digest();
    return timingSafeEqual(digest(token), digest(expected));
  }
}
