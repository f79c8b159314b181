import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedClock } from '../../src/core/clock.ts';
import { isTroupeError, type TroupeError } from '../../src/core/errors.ts';
import { TcpTransport, type TcpTransportOptions } from '../../src/cluster/tcp-transport.ts';
import type { Lane } from '../../src/cluster/transport.ts';
import { collect, RawClient, SECRET, TcpProxy, waitFor, type Received } from './helpers.ts';

const open: Array<{ close(): Promise<void> }> = [];
function transport(options: Partial<TcpTransportOptions> & { id: number }): TcpTransport {
  const t = new TcpTransport({ incarnation: 1, secret: SECRET, ...options });
  open.push(t);
  return t;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

interface Undelivered {
  address: string;
  payload: unknown;
  error: TroupeError;
}
function undeliverable(t: TcpTransport): Undelivered[] {
  const out: Undelivered[] = [];
  t.onUndeliverable((address, payload, error) => out.push({ address, payload, error: error as TroupeError }));
  return out;
}

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const t = new TcpTransport({ id: 1000, incarnation: 1, secret: SECRET });
  const address = await t.start();
  await t.close();
  return Number(address.split(':')[1]);
}

describe('TcpTransport between two nodes', () => {
  it('delivers both ways on both lanes with the sender identity', async () => {
    const a = transport({ id: 1, incarnation: 7 });
    const b = transport({ id: 2, incarnation: 3 });
    const gotA = collect(a);
    const gotB = collect(b);
    const [addrA, addrB] = await Promise.all([a.start(), b.start()]);
    expect(addrA).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(a.self).toEqual({ id: 1, incarnation: 7, address: addrA });

    a.send(addrB, { hello: 'b' }, 'actor');
    a.send(addrB, ['gossip'], 'system');
    b.send(addrA, { hello: 'a' }); // 'actor' is the default lane
    b.send(addrA, ['heartbeat', 1], 'system');
    await waitFor(() => gotA.length === 2 && gotB.length === 2, 'four messages');

    const byLane = (r: Received[], lane: Lane): Received | undefined => r.find((m) => m.lane === lane);
    expect(byLane(gotB, 'actor')).toEqual({ from: { id: 1, incarnation: 7, address: addrA }, payload: { hello: 'b' }, lane: 'actor' });
    expect(byLane(gotB, 'system')).toEqual({ from: { id: 1, incarnation: 7, address: addrA }, payload: ['gossip'], lane: 'system' });
    expect(byLane(gotA, 'actor')?.payload).toEqual({ hello: 'a' });
    expect(byLane(gotA, 'system')).toMatchObject({ from: { id: 2, incarnation: 3, address: addrB }, payload: ['heartbeat', 1] });
    expect(Object.isFrozen(gotB[0]!.from)).toBe(true);
  });

  it('keeps 100k messages in FIFO order per lane, coalescing writes', async () => {
    const a = transport({ id: 1 });
    const b = transport({ id: 2 });
    const got = { actor: [] as number[], system: [] as number[] };
    b.onMessage((_from, payload, lane) => got[lane].push((payload as [number, string])[0]));
    const addrB = await b.start();
    const n = 100_000;
    // Spread over several ticks so later batches are queued behind a socket under backpressure.
    for (let batch = 0; batch < 10; batch++) {
      for (let i = batch * (n / 10); i < (batch + 1) * (n / 10); i++) {
        a.send(addrB, [i, 'counter', 'key-123', 'incr', { by: 1 }], i % 10 === 0 ? 'system' : 'actor');
      }
      await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => got.actor.length + got.system.length === n, `${n} messages`, 10_000);
    const inOrder = (xs: number[]): boolean => xs.every((x, i) => i === 0 || x > xs[i - 1]!);
    expect(inOrder(got.actor)).toBe(true);
    expect(inOrder(got.system)).toBe(true);
    expect(got.system).toHaveLength(n / 10);
    const s = a.stats();
    expect(s.framesSent).toBe(n);
    expect(s.writes).toBeLessThan(n / 100); // coalesced: hundreds of frames per write
    expect(s.queuedBytes).toBe(0);
    expect(b.stats().framesReceived).toBe(n);
  });

  it('writes frames sent in one tick with one socket write', async () => {
    const a = transport({ id: 1 });
    const b = transport({ id: 2 });
    const got = collect(b);
    const addrB = await b.start();
    a.send(addrB, 'warm-up');
    await waitFor(() => got.length === 1, 'warm-up');
    const before = a.stats().writes;
    for (let i = 0; i < 50; i++) a.send(addrB, i);
    await waitFor(() => got.length === 51, '50 messages');
    expect(a.stats().writes - before).toBe(1);
  });

  it('queues while connecting; after the peer restarts, frames queued for its old process are reported, never delivered to the new one', async () => {
    const a = transport({ id: 1, reconnectBaseMs: 10, reconnectMaxMs: 50 });
    const b1 = transport({ id: 2, incarnation: 1 });
    const got1 = collect(b1);
    const addrB = await b1.start();
    for (let i = 0; i < 100; i++) a.send(addrB, i); // queued during connect + handshake
    await waitFor(() => got1.length === 100, 'first 100');
    expect(got1.map((m) => m.payload)).toEqual([...Array(100).keys()]);

    await b1.close();
    await waitFor(() => a.stats().outboundOpen === 0, 'a to notice the peer left');
    // Sent while the peer is down: refused and retried with backoff. They were meant for the
    // process that left: the one that comes back at the address (a new incarnation) must not
    // get them (it could apply an ask its predecessor already applied). They are reported
    // undeliverable — known not delivered, so their senders may resend them — and what is
    // sent once the new link is open is delivered.
    const lost = undeliverable(a);
    for (let i = 100; i < 200; i++) a.send(addrB, i);
    await waitFor(() => a.stats().connectFailures.refused >= 1, 'a refused reconnect');
    const b2 = transport({ id: 2, incarnation: 2, port: Number(addrB.split(':')[1]) });
    const got2 = collect(b2);
    expect(await b2.start()).toBe(addrB);
    await waitFor(() => lost.length === 100, 'the 100 queued for the old process reported', 5_000);
    expect(lost.map((l) => l.payload)).toEqual(Array.from({ length: 100 }, (_, i) => 100 + i));
    for (const l of lost) expect(l.error).toMatchObject({ code: 'ERR_NODE_UNREACHABLE', details: { restarted: true } });
    a.send(addrB, 'after');
    await waitFor(() => got2.length === 1, 'a frame sent to the new process');
    expect(got2.map((m) => m.payload)).toEqual(['after']);
    expect(got2[0]!.from).toMatchObject({ id: 1, incarnation: 1 });
  });

  it('reports queued payloads as ERR_NODE_UNREACHABLE when the peer stays away', async () => {
    const clock = new SimulatedClock();
    const a = transport({ id: 1, clock, unreachableAfterMs: 1_000, reconnectBaseMs: 100, random: () => 0 });
    const lost = undeliverable(a);
    const port = await deadPort();
    const address = `127.0.0.1:${port}`;
    for (let i = 0; i < 5; i++) a.send(address, { n: i });
    a.send(address, 'gossip', 'system');
    await waitFor(() => a.stats().connectFailures.refused === 2, 'both lanes refused');
    // Backoff: the next attempt waits reconnectDelay(1, 100) = 50 ms with zero jitter.
    clock.advance(49);
    expect(a.stats().outboundConnecting).toBe(0);
    clock.advance(1);
    await waitFor(() => a.stats().connectFailures.refused === 4, 'second attempts refused');
    expect(lost).toHaveLength(0);
    clock.advance(1_000);
    expect(lost.map((l) => l.payload)).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }, 'gossip']);
    for (const l of lost) {
      expect(l.address).toBe(address);
      expect(isTroupeError(l.error, 'ERR_NODE_UNREACHABLE')).toBe(true);
    }
    expect(a.stats().queuedBytes).toBe(0);
  });

  it('reports the payloads still queued at close() as ERR_STOPPED, and sends after close too', async () => {
    const a = transport({ id: 1 });
    const lost = undeliverable(a);
    const address = `127.0.0.1:${await deadPort()}`;
    a.send(address, 1);
    a.send(address, 2, 'system');
    await a.close();
    a.send(address, 3);
    await waitFor(() => lost.length === 3, 'three reports');
    expect(lost.map((l) => [l.payload, l.error.code])).toEqual([
      [2, 'ERR_STOPPED'],
      [1, 'ERR_STOPPED'],
      [3, 'ERR_STOPPED'],
    ]);
    await expect(a.start()).rejects.toMatchObject({ code: 'ERR_STOPPED' });
  });

  it('close() closes inbound, outbound and half-open connections and resolves when they are closed', async () => {
    const a = transport({ id: 1, closeGraceMs: 60_000 });
    const b = transport({ id: 2 });
    const gotB = collect(b);
    const gotA = collect(a);
    const [addrA, addrB] = await Promise.all([a.start(), b.start()]);
    a.send(addrB, 'to b');
    b.send(addrA, 'to a');
    await waitFor(() => gotA.length === 1 && gotB.length === 1, 'links up both ways');
    const pending = await RawClient.connect(Number(addrA.split(':')[1])); // never handshakes
    await waitFor(() => a.stats().inboundHandshaking === 1, 'pending handshake');
    // Resolves without the 60 s grace timer: the peer answers our FIN, the rest is destroyed.
    await a.close();
    await pending.expectClosed(1_000);
    const s = a.stats();
    expect([s.inboundOpen, s.inboundHandshaking, s.outboundOpen, s.receiveBuffers]).toEqual([0, 0, 0, 0]);
    await waitFor(() => b.stats().outboundOpen === 0 && b.stats().inboundOpen === 0, 'b to see both links close');
  });

  it('reports bad sends instead of throwing', async () => {
    const a = transport({ id: 1, maxFrameBytes: 2048 });
    const lost = undeliverable(a);
    a.send('not-an-address', 1);
    a.send('127.0.0.1:1', 'x'.repeat(4096));
    a.send('127.0.0.1:1', 2, 'bogus' as Lane);
    await waitFor(() => lost.length === 3, 'three reports');
    expect(lost.map((l) => l.error.code)).toEqual(['ERR_INVALID_INPUT', 'ERR_FRAME_TOO_LARGE', 'ERR_INVALID_INPUT']);
  });

  it('stops writing under backpressure, bounds the queue, reports overflow, never drops silently', async () => {
    const b = transport({ id: 2 });
    const got = collect(b);
    const addrB = await b.start();
    const proxy = await TcpProxy.start(Number(addrB.split(':')[1]));
    const maxQueueBytes = 1 << 20;
    const a = transport({ id: 1, maxQueueBytes });
    const lost = undeliverable(a);
    a.send(proxy.address, -1);
    a.send(proxy.address, 'system-warm-up', 'system');
    await waitFor(() => got.length === 2, 'warm-up on both lanes');

    proxy.pause('actor');
    const chunk = 'x'.repeat(32 * 1024);
    let sent = 0;
    // Fill the kernel buffers, then our queue, until sends overflow.
    while (lost.length < 20 && sent < 5_000) {
      for (let i = 0; i < 16; i++) a.send(proxy.address, [sent++, chunk]);
      await new Promise((r) => setImmediate(r));
    }
    expect(lost.length).toBeGreaterThanOrEqual(20);
    for (const l of lost) {
      expect(l.error.code).toBe('ERR_SEND_QUEUE_FULL');
      expect(l.error.details).toMatchObject({ reason: 'outbound-queue-full', lane: 'actor' });
    }
    expect(a.stats().drainWaits).toBeGreaterThan(0);
    expect(a.backlog(proxy.address)).toBeLessThanOrEqual(maxQueueBytes);

    // The system lane has its own connection: it is not stuck behind the stalled actor bytes.
    a.send(proxy.address, 'heartbeat', 'system');
    await waitFor(() => got.some((m) => m.payload === 'heartbeat'), 'system frame past a stalled actor lane', 2_000);

    proxy.resume('actor');
    const delivered = (): number[] =>
      got.filter((m) => m.lane === 'actor' && Array.isArray(m.payload)).map((m) => (m.payload as [number])[0]);
    const reported = new Set(lost.map((l) => (l.payload as [number])[0]));
    await waitFor(() => delivered().length + reported.size === sent, 'every payload delivered or reported', 10_000);
    const d = delivered();
    expect(d.every((x, i) => i === 0 || x > d[i - 1]!)).toBe(true);
    expect(d.filter((x) => reported.has(x))).toEqual([]);
    await proxy.close();
  });

  it('names the option in every validation error', () => {
    const cases: Array<[name: string, options: Record<string, unknown>, message: string]> = [
      ['missing secret', { id: 1, incarnation: 1 }, 'options.secret must be a non-empty string or Buffer (got undefined)'],
      ['empty secret', { id: 1, incarnation: 1, secret: '' }, 'options.secret must be a non-empty string or Buffer'],
      ['empty Buffer secret', { id: 1, incarnation: 1, secret: Buffer.alloc(0) }, 'options.secret must be a non-empty string or Buffer'],
      ['id out of range', { id: 1024, incarnation: 1, secret: 's'.repeat(16) }, 'options.id must be an integer in 0..1023'],
      ['fractional id', { id: 1.5, incarnation: 1, secret: 's'.repeat(16) }, 'options.id must be an integer in 0..1023'],
      ['negative incarnation', { id: 1, incarnation: -1, secret: 's'.repeat(16) }, 'options.incarnation must be a non-negative safe integer'],
      ['port too big', { id: 1, incarnation: 1, secret: 's'.repeat(16), port: 70_000 }, 'options.port must be an integer in 0..65535'],
      ['empty host', { id: 1, incarnation: 1, secret: 's'.repeat(16), host: '' }, 'options.host must be a non-empty string'],
      [
        'bad advertise address',
        { id: 1, incarnation: 1, secret: 's'.repeat(16), advertiseAddress: 'nope' },
        'options.advertiseAddress must be "host:port"',
      ],
      [
        'tiny max frame',
        { id: 1, incarnation: 1, secret: 's'.repeat(16), maxFrameBytes: 10 },
        'options.maxFrameBytes must be an integer in 1024..4294967295',
      ],
      ['zero queue', { id: 1, incarnation: 1, secret: 's'.repeat(16), maxQueueBytes: 0 }, 'options.maxQueueBytes must be an integer'],
      [
        'zero handshake timeout',
        { id: 1, incarnation: 1, secret: 's'.repeat(16), handshakeTimeoutMs: 0 },
        'options.handshakeTimeoutMs must be a positive number of milliseconds',
      ],
      [
        'NaN unreachable bound',
        { id: 1, incarnation: 1, secret: 's'.repeat(16), unreachableAfterMs: NaN },
        'options.unreachableAfterMs must be a positive number',
      ],
      [
        'max below base backoff',
        { id: 1, incarnation: 1, secret: 's'.repeat(16), reconnectBaseMs: 100, reconnectMaxMs: 10 },
        'options.reconnectMaxMs must be >= options.reconnectBaseMs',
      ],
      ['negative replay cache', { id: 1, incarnation: 1, secret: 's'.repeat(16), replayCacheSize: -1 }, 'options.replayCacheSize must be an integer'],
      ['tls not an object', { id: 1, incarnation: 1, secret: 's'.repeat(16), tls: 'yes' }, 'options.tls must be an object'],
      [
        'tls key without cert',
        { id: 1, incarnation: 1, secret: 's'.repeat(16), tls: { key: 'k' } },
        'options.tls.key and options.tls.cert must be given together',
      ],
      [
        'tls ca of numbers',
        { id: 1, incarnation: 1, secret: 's'.repeat(16), tls: { ca: [1] } },
        'options.tls.ca must be a PEM string, Buffer or a non-empty array of them',
      ],
      [
        'tls requestCert not boolean',
        { id: 1, incarnation: 1, secret: 's'.repeat(16), tls: { requestCert: 'yes' } },
        'options.tls.requestCert must be a boolean',
      ],
      ['clock without timers', { id: 1, incarnation: 1, secret: 's'.repeat(16), clock: { now: () => 0 } }, 'options.clock must be a Clock'],
    ];
    for (const [name, options, message] of cases) {
      let err: unknown;
      try {
        new TcpTransport(options as unknown as TcpTransportOptions);
      } catch (e) {
        err = e;
      }
      expect(isTroupeError(err, 'ERR_INVALID_OPTION'), name).toBe(true);
      expect((err as Error).message, name).toContain(message);
      expect((err as TroupeError).details?.option, name).toBe(message.split(' ')[0]);
    }
  });

  it('rejects start() on a port in use with a named error', async () => {
    const a = transport({ id: 1 });
    const address = await a.start();
    const b = transport({ id: 2, port: Number(address.split(':')[1]) });
    await expect(b.start()).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', details: { option: 'options.port', cause: 'EADDRINUSE' } });
  });
});
