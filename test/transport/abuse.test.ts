import { randomBytes } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, FrameType } from '../../src/cluster/frame-codec.ts';
import { HANDSHAKE_VERSION, newNonce } from '../../src/cluster/handshake.ts';
import { TcpTransport, type RejectReason, type TcpTransportOptions } from '../../src/cluster/tcp-transport.ts';
import { collect, fakeProof, RawClient, rawFrame, SECRET, splitFrames, TcpProxy, waitFor, type Received } from './helpers.ts';

/**
 * One long-lived server and one legitimate peer; every test abuses the server over raw sockets
 * and then checks that the abusive connection was closed, counted, and that the legitimate peer
 * still gets through on the link it had from the start.
 *
 * The peer reaches the server through a transparent TCP proxy, which sees every connection the
 * peer opens: a link the server closed would come back as a second connection (the peer
 * reconnects by itself), so "still gets through" alone could not tell.
 */
let server: TcpTransport;
let peer: TcpTransport;
let peerLink: TcpProxy;
let serverAddress: string;
let serverPort: number;
let received: Received[];
let replies: Received[];

function make(options: Partial<TcpTransportOptions> & { id: number }): TcpTransport {
  return new TcpTransport({ incarnation: 1, secret: SECRET, ...options });
}

beforeAll(async () => {
  server = make({ id: 10, handshakeTimeoutMs: 300 });
  peer = make({ id: 11 });
  received = collect(server);
  replies = collect(peer);
  server.onMessage((from, payload) => {
    if (typeof payload === 'string' && payload.startsWith('legit-')) server.send(from.address, `ack:${payload}`);
  });
  serverAddress = await server.start();
  serverPort = Number(serverAddress.split(':')[1]);
  await peer.start();
  peerLink = await TcpProxy.start(serverPort);
  await legitPeerGetsThrough(); // opens the peer's one link before any abuse
});
afterAll(async () => {
  await Promise.all([server.close(), peer.close()]);
  await peerLink.close();
});

let legitSeq = 0;
/**
 * The legitimate peer can still exchange messages with the server (its message arrives, the
 * reply comes back) over the very connection it opened first: never closed, never replaced.
 */
async function legitPeerGetsThrough(): Promise<void> {
  const marker = `legit-${++legitSeq}`;
  peer.send(peerLink.address, marker);
  await waitFor(() => received.some((m) => m.payload === marker && m.from.id === 11), `legit message ${marker}`);
  await waitFor(() => replies.some((m) => m.payload === `ack:${marker}` && m.from.id === 10), `reply to ${marker}`);
  expect(peerLink.connections, 'connections the legitimate peer opened to the server').toHaveLength(1);
  const link = peerLink.connections[0]!;
  expect(link.client.destroyed || link.upstream.destroyed, 'the legitimate link was closed').toBe(false);
}

function rejected(reason: RejectReason): number {
  return server.stats().rejected[reason];
}

/** Runs `abuse`, then expects the connection closed, `reason` counted once more, and the legit peer unaffected. */
async function expectRejected(reason: RejectReason, abuse: (c: RawClient) => Promise<void> | void): Promise<void> {
  const before = rejected(reason);
  const delivered = received.length;
  const c = await RawClient.connect(serverPort);
  await abuse(c);
  await c.expectClosed();
  await waitFor(() => rejected(reason) === before + 1, `rejected[${reason}] to increment`);
  expect(received.length).toBe(delivered);
  await legitPeerGetsThrough();
  await waitFor(() => server.stats().inboundHandshaking === 0, 'no handshake left pending');
}

const stampOf = (id: number, incarnation = 1) => ({ id, incarnation });

describe('abusive connections', () => {
  it('length prefix 0xFFFFFFFF', async () => {
    await expectRejected('frame-too-large', (c) => c.write(Buffer.from([0xff, 0xff, 0xff, 0xff])));
  });

  it('a frame larger than the pre-handshake budget', async () => {
    await expectRejected('frame-too-large', (c) => c.write(rawFrame(FrameType.Hello, stampOf(1), Buffer.alloc(2000))));
  });

  it('a zero-length frame', async () => {
    await expectRejected('bad-frame', (c) => c.write(Buffer.alloc(4)));
  });

  it('random bytes', async () => {
    const before = Object.values(server.stats().rejected).reduce((a, b) => a + b, 0);
    for (let i = 0; i < 5; i++) {
      const c = await RawClient.connect(serverPort);
      c.write(randomBytes(512));
      await c.expectClosed();
    }
    await waitFor(() => Object.values(server.stats().rejected).reduce((a, b) => a + b, 0) === before + 5, 'five rejections');
    await legitPeerGetsThrough();
  });

  it('a truncated frame, then the client closes', async () => {
    await expectRejected('closed-during-handshake', (c) => {
      c.write(encodeFrame(FrameType.Hello, stampOf(1), [HANDSHAKE_VERSION, 'actor', '127.0.0.1:1', newNonce()], 1024).subarray(0, 20));
      c.socket.end();
    });
  });

  it('a truncated frame, then silence until the handshake timeout', async () => {
    await expectRejected('handshake-timeout', (c) => {
      c.write(Buffer.from([0, 0, 0, 100, 1, 2, 3]));
    });
  });

  it('a HELLO whose body is not msgpack', async () => {
    await expectRejected('bad-frame', (c) => c.write(rawFrame(FrameType.Hello, stampOf(1), Buffer.from([0xc1, 0xc1]))));
  });

  it('a data frame before the handshake', async () => {
    await expectRejected('protocol', (c) => c.write(encodeFrame(FrameType.ActorData, stampOf(1), 'sneaky', 1024)));
  });

  it('a HELLO claiming an id outside 0..1023', async () => {
    await expectRejected('bad-frame', (c) =>
      c.write(encodeFrame(FrameType.Hello, stampOf(5000), [HANDSHAKE_VERSION, 'actor', '127.0.0.1:1', newNonce()], 1024)),
    );
  });

  it('a wrong secret', async () => {
    await expectRejected('auth-failed', async (c) => {
      expect(await c.handshake('not-the-secret', stampOf(20))).toBeNull();
    });
  });

  it('a proof that is the right size but not an HMAC of the transcript', async () => {
    await expectRejected('auth-failed', async (c) => {
      c.write(encodeFrame(FrameType.Hello, stampOf(21), [HANDSHAKE_VERSION, 'actor', '127.0.0.1:1', newNonce()], 1024));
      await c.nextFrame();
      c.write(encodeFrame(FrameType.Auth, stampOf(21), [fakeProof()], 1024));
    });
  });

  it('an AUTH stamped with another identity than its HELLO', async () => {
    await expectRejected('forged-stamp', async (c) => {
      c.write(encodeFrame(FrameType.Hello, stampOf(22), [HANDSHAKE_VERSION, 'actor', '127.0.0.1:1', newNonce()], 1024));
      await c.nextFrame();
      c.write(encodeFrame(FrameType.Auth, stampOf(23), [fakeProof()], 1024));
    });
  });

  it('a valid handshake, then a frame with a forged sender id', async () => {
    await expectRejected('forged-stamp', async (c) => {
      const ready = await c.handshake(SECRET, stampOf(30), 'actor');
      expect(ready?.type).toBe(FrameType.Ready);
      // The raw client really is authenticated: its honest frame is delivered...
      c.write(encodeFrame(FrameType.ActorData, stampOf(30), 'honest', 1 << 20));
      await waitFor(() => received.some((m) => m.payload === 'honest'), 'honest frame');
      received.splice(
        received.findIndex((m) => m.payload === 'honest'),
        1,
      );
      // ...and the next one, claiming to come from node 31, closes the link undelivered.
      c.write(encodeFrame(FrameType.ActorData, stampOf(31), 'forged', 1 << 20));
    });
    expect(received.some((m) => m.payload === 'forged')).toBe(false);
  });

  it('a valid handshake, then a frame from another incarnation of the same node', async () => {
    await expectRejected('forged-stamp', async (c) => {
      await c.handshake(SECRET, stampOf(32, 4), 'actor');
      c.write(encodeFrame(FrameType.ActorData, stampOf(32, 5), 'forged', 1 << 20));
    });
  });

  it('a valid handshake on the system lane, then an actor-lane frame', async () => {
    await expectRejected('bad-frame', async (c) => {
      await c.handshake(SECRET, stampOf(33), 'system');
      c.write(encodeFrame(FrameType.ActorData, stampOf(33), 'wrong lane', 1 << 20));
    });
  });

  it('a valid handshake, then a frame over the maximum', async () => {
    await expectRejected('frame-too-large', async (c) => {
      await c.handshake(SECRET, stampOf(34), 'actor');
      const p = Buffer.alloc(4);
      p.writeUInt32BE(8 * 1024 * 1024 + 1, 0);
      c.write(p);
    });
  });

  it('a handshake from an older incarnation than one already seen', async () => {
    const ok = await RawClient.connect(serverPort);
    expect((await ok.handshake(SECRET, stampOf(35, 9)))?.type).toBe(FrameType.Ready);
    await expectRejected('stale-incarnation', async (c) => {
      expect(await c.handshake(SECRET, stampOf(35, 8))).toBeNull();
    });
    ok.destroy();
  });
});

describe('prototype pollution over the wire', () => {
  it('a payload with __proto__ and constructor.prototype keys arrives as plain data', async () => {
    const c = await RawClient.connect(serverPort);
    expect((await c.handshake(SECRET, stampOf(37)))?.type).toBe(FrameType.Ready);
    const key = (k: string): Buffer => Buffer.concat([Buffer.from([0xa0 | k.length]), Buffer.from(k)]);
    const polluted = Buffer.concat([Buffer.from([0x81]), key('polluted'), key('yes')]);
    // {"__proto__": {"polluted": "yes"}, "constructor": {"prototype": {"polluted": "yes"}}}
    const body = Buffer.concat([
      Buffer.from([0x82]),
      key('__proto__'),
      polluted,
      key('constructor'),
      Buffer.from([0x81]),
      key('prototype'),
      polluted,
    ]);
    c.write(rawFrame(FrameType.ActorData, stampOf(37), body));
    await waitFor(() => received.some((m) => m.from.id === 37), 'the crafted payload');
    const payload = received.find((m) => m.from.id === 37)!.payload as Record<string, unknown>;
    expect(Object.getPrototypeOf(payload)).toBe(Object.prototype);
    expect(payload.polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype.constructor).toBe(Object);
    expect(payload).toEqual({ __proto_: { polluted: 'yes' }, constructor: { prototype: { polluted: 'yes' } } });
    c.destroy();
  });
});

describe('replayed handshakes', () => {
  /** Records a real TcpTransport's client bytes through a proxy and returns them. */
  async function recordHandshake(target: TcpTransport, targetAddress: string, got: Received[]): Promise<Buffer> {
    const proxy = await TcpProxy.start(Number(targetAddress.split(':')[1]));
    const client = make({ id: 40 });
    client.send(proxy.address, 'recorded');
    await waitFor(() => got.some((m) => m.payload === 'recorded'), 'recorded message');
    const bytes = Buffer.concat(proxy.connections[0]!.clientBytes);
    await client.close();
    await proxy.close();
    void target;
    return bytes;
  }

  it('is refused as a replay (nonce seen), and delivers nothing', async () => {
    const recorded = await recordHandshake(server, serverAddress, received);
    const frames = splitFrames(recorded);
    expect(frames.map((f) => f[4])).toEqual([FrameType.Hello, FrameType.Auth, FrameType.ActorData]);
    await expectRejected('replayed-handshake', (c) => c.write(recorded));
    expect(received.filter((m) => m.payload === 'recorded')).toHaveLength(1);
  });

  it('is refused on its proof when the nonce is no longer remembered', async () => {
    const forgetful = make({ id: 12, replayCacheSize: 0 });
    const got = collect(forgetful);
    const address = await forgetful.start();
    try {
      const recorded = await recordHandshake(forgetful, address, got);
      const [hello, auth, data] = splitFrames(recorded);
      const c = await RawClient.connect(Number(address.split(':')[1]));
      c.write(hello!);
      const challenge = await c.nextFrame(); // a fresh server nonce: the recorded proof cannot match it
      expect(challenge.type).toBe(FrameType.Challenge);
      c.write(Buffer.concat([auth!, data!]));
      await c.expectClosed();
      await waitFor(() => forgetful.stats().rejected['auth-failed'] === 1, 'auth-failed');
      expect(got.filter((m) => m.payload === 'recorded')).toHaveLength(1);
    } finally {
      await forgetful.close();
    }
  });
});

describe('resources after abuse', () => {
  const gc = ((): (() => void) => {
    v8.setFlagsFromString('--expose-gc');
    return vm.runInNewContext('gc') as () => void;
  })();
  function memory(): { heap: number; buffers: number } {
    gc();
    gc();
    const m = process.memoryUsage();
    return { heap: m.heapUsed, buffers: m.arrayBuffers };
  }

  it('200 abusive connections leave no receive buffers, sockets or memory behind', async () => {
    await legitPeerGetsThrough();
    const base = server.stats();
    const m0 = memory();
    const kinds: Array<(c: RawClient) => Promise<void> | void> = [
      (c) => c.write(Buffer.from([0xff, 0xff, 0xff, 0xff])),
      (c) => c.write(randomBytes(700)),
      (c) => {
        // Declares 1000 bytes (within the pre-auth budget), sends 600, hangs up: a held partial frame.
        c.write(Buffer.concat([Buffer.from([0, 0, 3, 0xe8]), randomBytes(600)]));
        c.socket.end();
      },
      async (c) => {
        await c.handshake('wrong', stampOf(50));
      },
      async (c) => {
        // Authenticated, declares 4 MiB, sends 256 KiB of it, hangs up.
        await c.handshake(SECRET, stampOf(51 + Math.floor(Math.random() * 900)));
        const p = Buffer.alloc(4);
        p.writeUInt32BE(4 << 20, 0);
        c.write(Buffer.concat([p, Buffer.alloc(256 * 1024)]));
        await waitFor(() => server.stats().receiveBufferBytes >= 256 * 1024, 'the server to buffer the partial frame');
        peakBuffers = Math.max(peakBuffers, server.stats().receiveBufferBytes);
        c.socket.end();
      },
    ];
    let peakBuffers = 0;
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const c = await RawClient.connect(serverPort);
          await kinds[(round * 20 + i) % kinds.length]!(c);
          await c.closed;
        }),
      );
    }
    await waitFor(() => server.stats().inboundHandshaking === 0 && server.stats().inboundOpen === base.inboundOpen, 'abusive sockets gone');
    const after = server.stats();
    expect(peakBuffers).toBeGreaterThan(0); // the abuse did make the server buffer partial frames...
    expect(after.receiveBuffers).toBe(base.receiveBuffers); // ...and every one of them was released
    expect(after.receiveBufferBytes).toBe(base.receiveBufferBytes);
    const m1 = memory();
    expect(m1.heap - m0.heap).toBeLessThan(8 * 1024 * 1024);
    expect(m1.buffers - m0.buffers).toBeLessThan(8 * 1024 * 1024);
    await legitPeerGetsThrough();
  });

  it('refuses connections beyond maxPendingHandshakes', async () => {
    const small = make({ id: 13, maxPendingHandshakes: 3 });
    const address = await small.start();
    const port = Number(address.split(':')[1]);
    try {
      const idle = await Promise.all(Array.from({ length: 3 }, () => RawClient.connect(port)));
      await waitFor(() => small.stats().inboundHandshaking === 3, 'three pending');
      const extra = await RawClient.connect(port);
      await extra.expectClosed();
      expect(small.stats().rejected['too-many-handshakes']).toBe(1);
      for (const c of idle) c.destroy();
      await waitFor(() => small.stats().inboundHandshaking === 0, 'pending released');
      const ok = await RawClient.connect(port);
      expect((await ok.handshake(SECRET, stampOf(60)))?.type).toBe(FrameType.Ready);
      ok.destroy();
    } finally {
      await small.close();
    }
  });
});
