import { connect, type Socket } from 'node:net';
import { fromErrorRecord, troupeError, type ErrorRecord } from '../core/errors.ts';
import { LineReader, parseLine, type AdminResult } from './admin-protocol.ts';

export type AdminEndpoint = { socketPath: string } | { host: string; port: number; token: string };

/**
 * One connection to a node's admin endpoint: hello, then requests answered in order.
 *
 * @example
 *   const admin = await AdminClient.connect({ socketPath: 'data/admin.sock' }, 'alice');
 *   await admin.call('members', []);          // → { kind: 'table', columns: [...], rows: [...] }
 *   await admin.call('actors', [], 2);        // the same on node 2
 *   admin.close();
 */
export class AdminClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: AdminResult) => void; reject: (e: Error) => void }>();
  private closedError: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    /** The node this connection is attached to, and what it serves (for completion). */
    readonly node: number,
    readonly kinds: string[],
    readonly commands: string[],
  ) {}

  static connect(endpoint: AdminEndpoint, user: string, timeoutMs = 5000): Promise<AdminClient> {
    return new Promise((resolve, reject) => {
      const where = 'socketPath' in endpoint ? endpoint.socketPath : `${endpoint.host}:${endpoint.port}`;
      const socket = 'socketPath' in endpoint ? connect(endpoint.socketPath) : connect(endpoint.port, endpoint.host);
      socket.setEncoding('utf8');
      let client: AdminClient | undefined;
      const timer = setTimeout(() => fail(troupeError('ERR_NODE_UNREACHABLE', `the admin endpoint ${where} did not answer within ${timeoutMs} ms`)), timeoutMs);
      const fail = (e: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(e);
      };
      const reader = new LineReader((line) => {
        const msg = parseLine(line);
        if (client === undefined) {
          clearTimeout(timer);
          if (msg.hello !== 1 || typeof msg.node !== 'number') return fail(troupeError('ERR_BAD_FRAME', `${where} is not a troupe admin endpoint`));
          const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
          client = new AdminClient(socket, msg.node, strings(msg.kinds), strings(msg.commands));
          return resolve(client);
        }
        client.onReply(msg);
      });
      socket.on('connect', () => {
        const token = 'token' in endpoint ? endpoint.token : undefined;
        socket.write(`${JSON.stringify({ hello: 1, user, ...(token !== undefined && { token }) })}\n`);
      });
      socket.on('data', (chunk: string) => {
        try {
          reader.push(chunk);
        } catch (e) {
          socket.destroy(e as Error);
        }
      });
      socket.on('error', (e: NodeJS.ErrnoException) => {
        const hint =
          e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
            ? `no node is listening at ${where} (is it running? its start line prints the admin socket)`
            : e.code === 'EACCES'
              ? `not allowed to open ${where} (EACCES): the admin socket belongs to the node's user (mode 0600)`
              : `${where}: ${e.message}`;
        if (client === undefined) fail(troupeError('ERR_NODE_UNREACHABLE', hint));
        else client.shut(troupeError('ERR_NODE_UNREACHABLE', hint));
      });
      socket.on('close', () => {
        // Closed before a hello came back: the endpoint refused us (a wrong token gets nothing).
        if (client === undefined) fail(troupeError('ERR_AUTH_FAILED', `${where} closed the connection: refused (wrong or missing token?)`));
        else client.shut(troupeError('ERR_NODE_UNREACHABLE', `${where} closed the connection`));
      });
    });
  }

  call(command: string, args: string[], node?: number): Promise<AdminResult> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.write(`${JSON.stringify({ id, command, args, ...(node !== undefined && { node }) })}\n`);
    });
  }

  close(): void {
    this.socket.end();
    this.shut(troupeError('ERR_STOPPED', 'admin connection closed'));
  }

  private onReply(msg: Record<string, unknown>): void {
    const id = msg.id as number;
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.pending.delete(id);
    if (msg.ok === true) p.resolve(msg.result as AdminResult);
    else p.reject(fromErrorRecord(msg.error as ErrorRecord));
  }

  private shut(e: Error): void {
    this.closedError ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}
