/**
 * Remote tell and ask between two node processes over TcpTransport, against the strongest raw
 * node:net baseline we can write: length-prefixed binary frames, built into one preallocated
 * buffer per event-loop turn and sent in one write, with no per-message encoding at all (the
 * tell's body bytes are encoded once and copied) and no decoding on receipt beyond the length
 * and a type byte. TcpTransport pays for msgpack, the HMAC handshake and a per-frame stamp; the
 * ratio says what that costs against what raw TCP can do on this machine.
 *
 *   node --import tsx bench/remote-tell.ts
 *
 * Process A (this one) forks B. Phases, each A → B:
 *   1. tell:  A sends actor-sized payloads as fast as backpressure allows for BENCH_SECONDS
 *             (default 5); B counts and reports its receive rate.
 *   2. the same over raw node:net.
 *   3. ask:   A sends one, B echoes it back (TcpTransport: over B's own link to A; raw: on the
 *             same socket), A waits; BENCH_ASKS times each (default 20000) after a warm-up,
 *             TcpTransport and raw alternating in blocks of 1000; p50/p99 of the round trip.
 * The cluster secret travels to B in the TROUPE_BENCH_SECRET environment variable.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { TcpTransport } from '../src/cluster/tcp-transport.ts';
import type { PeerIdentity } from '../src/cluster/transport.ts';
import { machineLine, main, printResult } from './lib.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ASKS = Number(process.env.BENCH_ASKS ?? 20_000);
const WARMUP_ASKS = 2_000;
/** Sender pacing: keep at most this many bytes waiting for the socket, then yield. */
const BACKLOG_BYTES = 1 << 20;
const BATCH = 256;
const TELL = [0, 'counter', 'key-123', 'incr', { by: 1 }] as const;

type ToChild = { cmd: 'exit' };
type FromChild =
  { type: 'ready'; troupe: string; rawPort: number } | { type: 'tell-result'; count: number; elapsedMs: number; via: 'troupe' | 'raw' };

const immediate = (): Promise<void> => new Promise((r) => setImmediate(r));

// ---------------------------------------------------------------------------------------------
// B: receiver and echo
// ---------------------------------------------------------------------------------------------

async function runB(): Promise<void> {
  const secret = process.env.TROUPE_BENCH_SECRET;
  if (!secret) throw new Error('TROUPE_BENCH_SECRET is not set');
  const send = (m: FromChild): void => void process.send!(m);
  const b = new TcpTransport({ id: 2, incarnation: 1, secret });
  let count = 0;
  let t0 = 0;
  b.onMessage((from: PeerIdentity, payload: unknown) => {
    const p = payload as unknown[];
    switch (p[0]) {
      case 0: // tell
        if (count++ === 0) t0 = performance.now();
        break;
      case 1: // end of the tell phase
        send({ type: 'tell-result', count, elapsedMs: performance.now() - t0, via: 'troupe' });
        count = 0;
        break;
      case 2: // ask: echo
        b.send(from.address, [3, p[1]]);
        break;
    }
  });
  const troupe = await b.start();

  // Raw baseline: [u32 length][u8 type][body] frames; tells are counted (their bodies are not
  // even looked at), pings echoed on the same socket.
  const raw = net.createServer((socket) => {
    socket.setNoDelay(true);
    let rawCount = 0;
    let rawT0 = 0;
    onFrames(socket, (buf, off) => {
      const type = buf[off + 4];
      if (type === RAW_TELL) {
        if (rawCount++ === 0) rawT0 = performance.now();
      } else if (type === RAW_END) {
        send({ type: 'tell-result', count: rawCount, elapsedMs: performance.now() - rawT0, via: 'raw' });
        rawCount = 0;
      } else if (type === RAW_PING) {
        socket.write(pingFrame(RAW_PONG, buf.readUInt32BE(off + 5)));
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  const rawPort = (raw.address() as net.AddressInfo).port;

  process.on('message', (m: ToChild) => {
    if (m.cmd === 'exit') {
      raw.close();
      void b.close().then(() => process.exit(0));
    }
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', troupe, rawPort });
}

// Raw frame types.
const RAW_TELL = 0;
const RAW_END = 1;
const RAW_PING = 2;
const RAW_PONG = 3;

/**
 * The tell as one complete raw frame, encoded once: [u32 length][u8 type][kind, key, command,
 * input as length-prefixed UTF-8]. The same information TcpTransport carries, at no encoding
 * cost per message.
 */
const RAW_TELL_FRAME = ((): Buffer => {
  const fields = [TELL[1], TELL[2], TELL[3], JSON.stringify(TELL[4])].map((f) => Buffer.from(f));
  const body = Buffer.concat([Buffer.of(RAW_TELL), ...fields.flatMap((f) => [Buffer.of(f.length), f])]);
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
})();

function typeFrame(type: number): Buffer {
  const f = Buffer.allocUnsafe(5);
  f.writeUInt32BE(1, 0);
  f[4] = type;
  return f;
}

function pingFrame(type: number, i: number): Buffer {
  const f = Buffer.allocUnsafe(9);
  f.writeUInt32BE(5, 0);
  f[4] = type;
  f.writeUInt32BE(i >>> 0, 5);
  return f;
}

/** Calls `frame(buf, off)` for every complete frame (`off` at its length prefix) read from `socket`. */
function onFrames(socket: net.Socket, frame: (buf: Buffer, off: number) => void): void {
  let pending: Buffer | null = null;
  socket.on('data', (chunk: Buffer) => {
    const buf = pending === null ? chunk : Buffer.concat([pending, chunk]);
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32BE(off);
      if (buf.length - off - 4 < len) break;
      frame(buf, off);
      off += 4 + len;
    }
    pending = off === buf.length ? null : Buffer.from(buf.subarray(off));
  });
}

// ---------------------------------------------------------------------------------------------
// A: driver
// ---------------------------------------------------------------------------------------------

interface TellResult {
  count: number;
  elapsedMs: number;
}
interface Latency {
  p50: number;
  p99: number;
}

async function runA(): Promise<void> {
  const secret = randomBytes(24).toString('base64url');
  const child = fork(fileURLToPath(import.meta.url), ['--child'], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, TROUPE_BENCH_SECRET: secret },
  });
  const messages: FromChild[] = [];
  const waiters: Array<() => void> = [];
  child.on('message', (m: FromChild) => {
    messages.push(m);
    for (const w of waiters.splice(0)) w();
  });
  const next = async <T extends FromChild['type']>(type: T): Promise<Extract<FromChild, { type: T }>> => {
    for (;;) {
      const i = messages.findIndex((m) => m.type === type);
      if (i >= 0) return messages.splice(i, 1)[0] as Extract<FromChild, { type: T }>;
      await new Promise<void>((r) => waiters.push(r));
    }
  };

  try {
    const ready = await next('ready');
    const a = new TcpTransport({ id: 1, incarnation: 1, secret });
    const lost: string[] = [];
    a.onUndeliverable((_addr, _p, e) => lost.push(e.message));
    let onReply: ((p: unknown[]) => void) | null = null;
    a.onMessage((_from, payload) => onReply?.(payload as unknown[]));
    await a.start();

    // 1. tell throughput over TcpTransport
    const tell = await troupeTell(a, ready.troupe, () => next('tell-result'));
    // 2. tell throughput over raw node:net
    const rawSocket = await connectRaw(ready.rawPort);
    const rawTell = await rawTellRun(rawSocket, () => next('tell-result'));
    // 3. ask round trips, TcpTransport and raw node:net in alternating blocks
    const [ask, rawAsk] = (await interleavedAsks([troupePinger(a, ready.troupe, (fn) => (onReply = fn)), rawPinger(rawSocket)])) as [
      Latency,
      Latency,
    ];
    rawSocket.destroy();
    await a.close();
    if (lost.length > 0) console.log(`warning: ${lost.length} undeliverable (${lost[0]})`);

    const rate = (r: TellResult): number => r.count / (r.elapsedMs / 1000);
    const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
    const us = (n: number): string => `${Math.round(n)} µs`;
    const stats = a.stats();
    console.log(`remote-tell: 2 processes on 127.0.0.1, ${SECONDS} s tell phase, ${ASKS} asks, ${machineLine()}`);
    console.log('TcpTransport (msgpack frames, HMAC handshake, per-frame stamp)');
    console.log(
      `  tell throughput  ${fmt(rate(tell))} msg/s  (${fmt(tell.count)} msgs in ${(tell.elapsedMs / 1000).toFixed(2)} s, ${(stats.framesSent / stats.writes).toFixed(0)} frames/write)`,
    );
    console.log(`  ask round trip   p50 ${us(ask.p50)}  p99 ${us(ask.p99)}`);
    console.log('raw node:net baseline (binary frames encoded once, batched per write, no handshake)');
    console.log(
      `  tell throughput  ${fmt(rate(rawTell))} msg/s  (${fmt(rawTell.count)} msgs in ${(rawTell.elapsedMs / 1000).toFixed(2)} s)`,
    );
    console.log(`  ping-pong        p50 ${us(rawAsk.p50)}  p99 ${us(rawAsk.p99)}`);
    console.log('ratios (TcpTransport / raw)');
    console.log(
      `  throughput ${(rate(tell) / rate(rawTell)).toFixed(2)}x   p50 ${(ask.p50 / rawAsk.p50).toFixed(2)}x   p99 ${(ask.p99 / rawAsk.p99).toFixed(2)}x`,
    );
    console.log('targets');
    console.log(
      `  tell ≥ 200,000 msg/s: ${rate(tell) >= 200_000 ? 'met' : 'MISSED'}   ask p50 ≤ 150 µs: ${ask.p50 <= 150 ? 'met' : 'MISSED'}`,
    );
    printResult({
      bench: 'remote-tell',
      seconds: SECONDS,
      asks: ASKS,
      troupe: { tellPerSec: Math.round(rate(tell)), askP50Us: Math.round(ask.p50), askP99Us: Math.round(ask.p99) },
      raw: { tellPerSec: Math.round(rate(rawTell)), askP50Us: Math.round(rawAsk.p50), askP99Us: Math.round(rawAsk.p99) },
      ratio: Number((rate(tell) / rate(rawTell)).toFixed(3)),
      p50Ratio: Number((ask.p50 / rawAsk.p50).toFixed(3)),
      undeliverable: lost.length,
      pass: rate(tell) >= 200_000 && ask.p50 <= 150,
    });
  } finally {
    await stopChild(child);
  }
}

async function troupeTell(a: TcpTransport, address: string, result: () => Promise<TellResult>): Promise<TellResult> {
  const payload = TELL as unknown as unknown[];
  // Warm-up: open the link and let the JIT see the paths.
  for (let i = 0; i < 20_000; i++) a.send(address, payload);
  a.send(address, [1, 'end']);
  await result();
  const until = performance.now() + SECONDS * 1000;
  while (performance.now() < until) {
    // Checking the backlog once per BATCH sends keeps the pacing off the per-message path.
    while (a.backlog(address) < BACKLOG_BYTES) {
      for (let i = 0; i < BATCH; i++) a.send(address, payload);
    }
    await immediate();
  }
  a.send(address, [1, 'end']);
  return result();
}

function connectRaw(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.setNoDelay(true);
    s.once('error', reject);
  });
}

async function rawTellRun(socket: net.Socket, result: () => Promise<TellResult>): Promise<TellResult> {
  // The same batching opportunity as TcpTransport: per turn, frames are copied into one buffer
  // until the backlog reaches BACKLOG_BYTES and leave in one write; a full socket is waited out
  // on 'drain'. A fresh buffer per write: the socket may still hold the previous one.
  const frameSize = RAW_TELL_FRAME.length;
  const writeTurn = (bytes: number): boolean => {
    const n = Math.max(1, Math.floor(bytes / frameSize));
    const out = Buffer.allocUnsafe(n * frameSize);
    for (let i = 0, off = 0; i < n; i++, off += frameSize) RAW_TELL_FRAME.copy(out, off);
    return socket.write(out);
  };
  writeTurn(20_000 * frameSize);
  socket.write(typeFrame(RAW_END));
  await result();
  const until = performance.now() + SECONDS * 1000;
  while (performance.now() < until) {
    const room = BACKLOG_BYTES - socket.writableLength;
    if (room > 0 && !writeTurn(room)) await new Promise<void>((r) => socket.once('drain', () => r()));
    else await immediate();
  }
  socket.write(typeFrame(RAW_END));
  return result();
}

type Ask = (i: number) => Promise<void>;

function troupePinger(a: TcpTransport, address: string, setReply: (fn: (p: unknown[]) => void) => void): Ask {
  return (i) =>
    new Promise<void>((resolve) => {
      setReply((p) => {
        if (p[0] === 3 && p[1] === i) resolve();
      });
      a.send(address, [2, i]);
    });
}

function rawPinger(socket: net.Socket): Ask {
  let onReply: ((i: number) => void) | null = null;
  onFrames(socket, (buf, off) => {
    if (buf[off + 4] === RAW_PONG) onReply?.(buf.readUInt32BE(off + 5));
  });
  return (i) =>
    new Promise<void>((resolve) => {
      onReply = (got) => {
        if (got === i >>> 0) resolve();
      };
      socket.write(pingFrame(RAW_PING, i));
    });
}

/**
 * Round trips, one at a time, alternating blocks between the two contenders so that both see
 * the same machine (two shared cores make latency drift over seconds).
 */
async function interleavedAsks(contenders: Ask[]): Promise<Latency[]> {
  const samples: number[][] = contenders.map(() => []);
  const block = 1_000;
  let seq = 0;
  for (const ask of contenders) for (let i = 0; i < WARMUP_ASKS; i++) await ask(seq++);
  for (let done = 0; done < ASKS; done += block) {
    for (let c = 0; c < contenders.length; c++) {
      for (let i = 0; i < block; i++) {
        const t0 = performance.now();
        await contenders[c]!(seq++);
        samples[c]!.push((performance.now() - t0) * 1000);
      }
    }
  }
  return samples.map(percentiles);
}

function percentiles(samples: number[]): Latency {
  const s = samples.slice().sort((x, y) => x - y);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { p50: at(0.5), p99: at(0.99) };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.send({ cmd: 'exit' } satisfies ToChild);
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
}

if (process.argv.includes('--child')) await runB();
else main(runA);
