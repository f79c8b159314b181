import net from 'node:net';
import { createHmac } from 'node:crypto';
import { decodeBody, encodeFrame, FrameDecoder, FrameType, type FrameStamp } from '../../src/cluster/frame-codec.ts';
import { HANDSHAKE_VERSION, handshakeProof, newNonce, parseChallenge, type Transcript } from '../../src/cluster/handshake.ts';
import type { Lane, PeerIdentity } from '../../src/cluster/transport.ts';
import type { TcpTransport } from '../../src/cluster/tcp-transport.ts';

export const SECRET = 'test-cluster-secret-0123456789';

/** Waits until `cond()` holds, checking every few ms, failing after `timeoutMs` with `what`. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

export interface Received {
  from: PeerIdentity;
  payload: unknown;
  lane: Lane;
}

/** Collects everything a transport receives. */
export function collect(t: TcpTransport): Received[] {
  const got: Received[] = [];
  t.onMessage((from, payload, lane) => got.push({ from, payload, lane }));
  return got;
}

export interface RawFrame {
  type: number;
  id: number;
  incarnation: number;
  body: Buffer;
}

/**
 * A hand-driven TCP client speaking (or abusing) the wire protocol, for tests of what a server
 * does with bytes no TcpTransport would send.
 */
export class RawClient {
  readonly frames: RawFrame[] = [];
  readonly closed: Promise<void>;
  private waiters: Array<() => void> = [];
  private readonly decoder: FrameDecoder;
  isClosed = false;

  private constructor(readonly socket: net.Socket) {
    this.decoder = new FrameDecoder(1 << 20, (type, id, incarnation, buf, start, end) => {
      this.frames.push({ type, id, incarnation, body: Buffer.from(buf.subarray(start, end)) });
      this.wake();
      return true;
    });
    socket.on('data', (chunk: Buffer) => this.decoder.push(chunk));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.off('error', reject);
        resolve(new RawClient(s));
      });
      s.once('error', reject);
    });
  }

  write(bytes: Buffer | Uint8Array): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  async nextFrame(timeoutMs = 3_000): Promise<RawFrame> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const f = this.frames.shift();
      if (f) return f;
      if (this.isClosed) throw new Error('connection closed before a frame arrived');
      if (performance.now() > deadline) throw new Error('no frame within deadline');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - performance.now()));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Resolves when the server has closed this connection; rejects past the deadline. */
  async expectClosed(timeoutMs = 3_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.closed,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('server did not close the connection')), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /**
   * Runs the client half of the handshake with `secret` (right or wrong). Resolves with the READY
   * frame, or with null when the server refuses (a REFUSE frame) or closes instead.
   */
  async handshake(secret: string, stamp: FrameStamp, lane: Lane = 'actor', address = '127.0.0.1:1'): Promise<RawFrame | null> {
    const clientNonce = newNonce();
    this.write(encodeFrame(FrameType.Hello, stamp, [HANDSHAKE_VERSION, lane, address, clientNonce], 1024));
    const challengeFrame = await this.nextFrame();
    const challenge = parseChallenge(decodeBody(challengeFrame.body, 0, challengeFrame.body.length));
    if (typeof challenge === 'string') throw new Error(challenge);
    const transcript: Transcript = {
      lane,
      client: { id: stamp.id, incarnation: stamp.incarnation, address },
      server: { id: challengeFrame.id, incarnation: challengeFrame.incarnation, address: challenge.address },
      clientNonce,
      serverNonce: challenge.nonce,
    };
    const proof = handshakeProof(Buffer.from(secret), 'client', transcript);
    this.write(encodeFrame(FrameType.Auth, stamp, [proof], 1024));
    try {
      const reply = await this.nextFrame();
      return reply.type === FrameType.Refuse ? null : reply;
    } catch {
      return null;
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** Prefix + header + raw body bytes: a frame built by hand, for bodies msgpackr would never produce. */
export function rawFrame(type: number, stamp: FrameStamp, body: Buffer): Buffer {
  const f = Buffer.alloc(15 + body.length);
  f.writeUInt32BE(11 + body.length, 0);
  f[4] = type;
  f.writeUInt16BE(stamp.id, 5);
  f.writeDoubleBE(stamp.incarnation, 7);
  body.copy(f, 15);
  return f;
}

interface ProxiedConnection {
  client: net.Socket;
  upstream: net.Socket;
  lane: Lane | null;
  clientBytes: Buffer[];
}

/**
 * A TCP proxy in front of a transport: records what clients send (to replay handshakes) and can
 * stop reading from the clients of one lane (to build real backpressure on the sender).
 */
export class TcpProxy {
  readonly connections: ProxiedConnection[] = [];
  private readonly paused = new Set<Lane>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port);
    server.on('connection', (client) => proxy.onConnection(client, targetPort));
    return proxy;
  }

  pause(lane: Lane): void {
    this.paused.add(lane);
    for (const c of this.connections) if (c.lane === lane) c.client.pause();
  }

  resume(lane: Lane): void {
    this.paused.delete(lane);
    for (const c of this.connections) if (c.lane === lane) c.client.resume();
  }

  async close(): Promise<void> {
    for (const c of this.connections) {
      c.client.destroy();
      c.upstream.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(client: net.Socket, targetPort: number): void {
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    const conn: ProxiedConnection = { client, upstream, lane: null, clientBytes: [] };
    this.connections.push(conn);
    client.on('data', (d: Buffer) => {
      conn.clientBytes.push(Buffer.from(d));
      if (conn.lane === null) conn.lane = helloLane(Buffer.concat(conn.clientBytes));
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => client.write(d));
    client.on('error', () => {});
    upstream.on('error', () => {});
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }
}

/** The lane a recorded HELLO asks for, once its frame is complete. */
function helloLane(bytes: Buffer): Lane | null {
  if (bytes.length < 4) return null;
  const len = bytes.readUInt32BE(0);
  if (bytes.length < 4 + len) return null;
  const body = decodeBody(bytes, 15, 4 + len) as unknown[];
  return body[1] as Lane;
}

/** Splits a recorded byte stream into its frames (prefix included). */
export function splitFrames(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off + 4 <= bytes.length) {
    const len = bytes.readUInt32BE(off);
    out.push(bytes.subarray(off, off + 4 + len));
    off += 4 + len;
  }
  return out;
}

/** HMAC of arbitrary bytes, for tests that need a plausible-looking but wrong proof. */
export function fakeProof(): Buffer {
  return createHmac('sha256', 'not-the-secret').update('x').digest();
}
