/**
 * The chaos suite's link proxy on loopback sockets (fast, in `npm test`): delay keeps the byte
 * order and holds each chunk for the delay; with a framing it duplicates and swaps DATA frames
 * (or TLS application-data records) as its draws say and never touches handshake units; a frame held for a swap does not stall the link;
 * and, through two real TcpTransports, what a duplicated or swapped frame does to delivery —
 * and that a TLS record refused after the handshake closes the link, which then reconnects.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestPki } from '../helpers/test-pki.ts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeBody, encodeFrame, FrameDecoder, FrameType, type FrameTypeCode } from '../../src/cluster/frame-codec.ts';
import { TcpTransport } from '../../src/cluster/tcp-transport.ts';
import { LinkProxy } from './link-proxy.ts';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** A server that records what it receives (bytes, with arrival times); resolves with its port. */
async function sink() {
  const received: Array<{ at: number; data: Buffer }> = [];
  const waiters: Array<() => void> = [];
  const server = net.createServer((s) =>
    s.on('data', (d: Buffer) => {
      received.push({ at: Date.now(), data: d });
      for (const w of waiters.splice(0)) w();
    }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => server.close(r)));
  const bytes = () => Buffer.concat(received.map((r) => r.data));
  /** Resolves once `n` bytes arrived; rejects after 2 s. */
  const until = (n: number) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${bytes().length} of ${n} bytes arrived within 2 s`)), 2_000);
      const check = () => (bytes().length >= n ? (clearTimeout(timer), resolve()) : waiters.push(check));
      check();
    });
  return { port: (server.address() as net.AddressInfo).port, received, bytes, until, server };
}

async function proxyTo(port: number, o: Partial<ConstructorParameters<typeof LinkProxy>[0]> = {}) {
  const proxy = new LinkProxy({ target: { host: '127.0.0.1', port }, ...o });
  const at = await proxy.start();
  closers.push(() => proxy.close());
  const client = net.connect(at, '127.0.0.1');
  closers.push(() => client.destroy());
  await new Promise((r) => client.once('connect', r));
  return { proxy, client };
}

/** Draws taken in order from `values` (the proxy's random source, scripted). */
const scripted = (values: number[]) => () => {
  const v = values.shift();
  if (v === undefined) throw new Error('the proxy drew more often than the test scripted');
  return v;
};

const frame = (type: FrameTypeCode, body: unknown) => encodeFrame(type, { id: 1, incarnation: 7 }, body, 1 << 20);

/** The frames in `bytes` as `type:body` strings. */
function framesIn(bytes: Buffer): string[] {
  const out: string[] = [];
  const decoder = new FrameDecoder(1 << 20, (type, _id, _inc, buf, start, end) => {
    out.push(`${type}:${JSON.stringify(decodeBody(buf, start, end))}`);
    return true;
  });
  expect(decoder.push(bytes)).toBeUndefined();
  return out;
}

describe('LinkProxy', () => {
  it('holds every chunk for delayMs and keeps the byte order', async () => {
    const target = await sink();
    const { client } = await proxyTo(target.port, { delayMs: 150 });
    const sentAt = Date.now();
    for (const part of ['one,', 'two,', 'three']) client.write(part);
    await target.until(13);
    expect(target.bytes().toString()).toBe('one,two,three');
    // 5 ms of slack for timer rounding; without the delay the bytes arrive in ~1 ms.
    expect(target.received[0]!.at - sentAt).toBeGreaterThanOrEqual(145);
  });

  it('duplicates and swaps DATA frames as drawn, and passes handshake frames untouched', async () => {
    const target = await sink();
    // Draws in order: D1 swap? no, dup? yes | D2 swap? yes (held) | D3 dup? no, then D2 dup? no | D4 swap? no, dup? no
    const random = scripted([0.9, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9]);
    const { proxy, client } = await proxyTo(target.port, { framing: 'troupe-frames', frames: { duplicate: 0.5, swap: 0.5 }, random });
    const frames = [
      frame(FrameType.Hello, ['hello']),
      frame(FrameType.ActorData, ['d1']),
      frame(FrameType.ActorData, ['d2']),
      frame(FrameType.SystemData, ['d3']),
      frame(FrameType.ActorData, ['d4']),
    ];
    const all = Buffer.concat(frames);
    // Written in 7-byte pieces: frames split across chunks must be reassembled first.
    for (let i = 0; i < all.length; i += 7) client.write(all.subarray(i, i + 7));
    await target.until(all.length + frames[1]!.length);
    expect(framesIn(target.bytes())).toEqual(['1:["hello"]', '17:["d1"]', '17:["d1"]', '16:["d3"]', '17:["d2"]', '17:["d4"]']);
    expect(proxy.stats).toMatchObject({ dataFrames: 4, duplicated: 1, swapped: 1 });
  });

  it('cuts TLS records and disturbs only application-data records', async () => {
    const target = await sink();
    const record = (type: number, text: string) => Buffer.concat([Buffer.from([type, 3, 3, 0, text.length]), Buffer.from(text)]);
    // Draws: the handshake record draws nothing | app record swap? no, dup? yes
    const { proxy, client } = await proxyTo(target.port, {
      framing: 'tls-records',
      frames: { duplicate: 0.5, swap: 0.5 },
      random: scripted([0.9, 0.1]),
    });
    const sent = [record(22, 'hello'), record(23, 'data')];
    client.write(Buffer.concat(sent));
    await target.until(sent[0]!.length + 2 * sent[1]!.length);
    expect(target.bytes()).toEqual(Buffer.concat([sent[0]!, sent[1]!, sent[1]!]));
    expect(proxy.stats).toMatchObject({ dataFrames: 1, duplicated: 1, swapped: 0 });
  });

  it('lets a frame held for a swap go alone when no successor comes (the link does not stall)', async () => {
    const target = await sink();
    const { client } = await proxyTo(target.port, {
      framing: 'troupe-frames',
      frames: { duplicate: 0, swap: 1 },
      random: scripted([0, 0.5]),
      swapHoldMs: 30,
    });
    const d1 = frame(FrameType.ActorData, ['only']);
    client.write(d1);
    await target.until(d1.length);
    expect(framesIn(target.bytes())).toEqual(['17:["only"]']);
  });

  it('names the option in its validation errors', () => {
    const target = { host: '127.0.0.1', port: 1 };
    expect(() => new LinkProxy({ target, framing: 'troupe-frames', frames: { duplicate: 2, swap: 0 } })).toThrow(
      'LinkProxy frames.duplicate must be a probability in [0, 1] (got 2)',
    );
    expect(() => new LinkProxy({ target, frames: { duplicate: 0, swap: 0 } })).toThrow('LinkProxy frames needs a framing');
    expect(() => new LinkProxy({ target, framing: 'http' as never })).toThrow(
      "LinkProxy framing must be 'troupe-frames' or 'tls-records' (got http)",
    );
    expect(() => new LinkProxy({ target, delayMs: -1 })).toThrow('LinkProxy delayMs must be a non-negative number (got -1)');
    expect(() => new LinkProxy({ target }).set({ delayMs: Number.NaN })).toThrow(
      'LinkProxy delayMs must be a non-negative number (got NaN)',
    );
    expect(() => new LinkProxy({ target }).set({ frames: { duplicate: 0, swap: 0 } })).toThrow('LinkProxy frames needs a framing');
  });
});

/**
 * What scenario 8 relies on, on a socket pair: the transport's frames carry the sender's stamp
 * but no sequence number or MAC, so a frame duplicated or reordered on an authenticated plain-TCP
 * link is delivered as sent by the proxy — the layers above must dedupe (message ids, the
 * replication log's sequence numbers). TLS would refuse both (its records are sequenced and MACed).
 */
describe('TcpTransport through a frame-disturbing LinkProxy', () => {
  let pki = '';
  beforeAll(() => {
    pki = mkdtempSync(join(tmpdir(), 'troupe-link-proxy-pki-'));
    const made = new TestPki(pki);
    made.ca('ca');
    made.issue('ca', 'node', ['127.0.0.1']);
  });
  afterAll(() => rmSync(pki, { recursive: true, force: true }));

  async function pair(frames: { duplicate: number; swap: number } | undefined, tlsOn = false) {
    const secret = 'link-proxy-test-secret-0123456789';
    const read = (f: string) => readFileSync(join(pki, f));
    const tls = tlsOn ? { tls: { key: read('node.key'), cert: read('node.crt'), ca: read('ca.crt') } } : {};
    const server = new TcpTransport({ id: 3, incarnation: 1, secret, ...tls });
    const got: unknown[] = [];
    server.onMessage((_from, payload) => got.push(payload));
    const address = await server.start();
    closers.push(() => server.close());
    const target = { host: '127.0.0.1', port: Number(address.split(':')[1]) };
    const proxy = new LinkProxy({ target, framing: tlsOn ? 'tls-records' : 'troupe-frames', ...(frames && { frames }), random: () => 0 });
    const port = await proxy.start();
    closers.push(() => proxy.close());
    const client = new TcpTransport({ id: 1, incarnation: 1, secret, ...tls });
    closers.push(() => client.close());
    return { got, send: (p: unknown) => client.send(`127.0.0.1:${port}`, p, 'actor'), proxy };
  }

  async function until(holds: () => boolean, what: () => string) {
    const deadline = Date.now() + 3_000;
    while (!holds()) {
      if (Date.now() > deadline) throw new Error(`not within 3 s: ${what()}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it('delivers a duplicated DATA frame twice (no per-frame sequence on the wire)', async () => {
    const { got, send, proxy } = await pair({ duplicate: 1, swap: 0 });
    send(['ask', 1]);
    await until(
      () => got.length >= 2,
      () => `received ${JSON.stringify(got)}`,
    );
    expect(got).toEqual([
      ['ask', 1],
      ['ask', 1],
    ]);
    expect(proxy.stats.duplicated).toBe(1);
  });

  it('delivers swapped DATA frames in the swapped order', async () => {
    const { got, send } = await pair({ duplicate: 0, swap: 1 });
    send(['first']);
    send(['second']);
    await until(
      () => got.length >= 2,
      () => `received ${JSON.stringify(got)}`,
    );
    expect(got).toEqual([['second'], ['first']]);
  });

  it('closes a TLS link whose record fails its MAC, and reconnects (node leaves such a socket open)', async () => {
    const { got, send, proxy } = await pair(undefined, true);
    send(['before']);
    await until(
      () => got.length >= 1,
      () => `received ${JSON.stringify(got)}`,
    );
    // One record duplicated: the server's TLS refuses the copy (its sequence number is past).
    proxy.set({ frames: { duplicate: 1, swap: 0 } });
    send(['dup']);
    await until(
      () => proxy.stats.duplicated >= 1,
      () => 'no record duplicated',
    );
    proxy.set({});
    // At most once: what went into the dying connection may be lost, so keep sending until one arrives.
    let n = 0;
    const sender = setInterval(() => send(['after', n++]), 50);
    try {
      await until(
        () => got.some((p) => (p as unknown[])[0] === 'after'),
        () =>
          `nothing arrived after the refused record (received ${JSON.stringify(got)}; ${proxy.stats.connections} connection(s) through the proxy)`,
      );
    } finally {
      clearInterval(sender);
    }
    expect(proxy.stats.connections).toBeGreaterThanOrEqual(2);
  });
});
