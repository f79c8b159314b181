import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { decodeBody, encodeFrame, FrameType } from '../../src/cluster/frame-codec.ts';
import { NODE_PROTOCOL_VERSION, newNonce } from '../../src/cluster/handshake.ts';
import { TcpTransport, WarningLimiter, type TcpTransportOptions } from '../../src/cluster/tcp-transport.ts';
import { fakeProof, RawClient, SECRET, waitFor } from './helpers.ts';

// A refused handshake (bad secret, another protocol version) is logged at warn on both sides,
// counted in the stats, and fails what was queued with a named error.

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A pino logger whose JSON lines land in `lines`, parsed. */
function capturedLogger(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines };
}

const open: TcpTransport[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

function make(options: Partial<TcpTransportOptions> & { id: number }) {
  const { logger, lines } = capturedLogger();
  const t = new TcpTransport({ incarnation: 1, secret: SECRET, logger, reconnectBaseMs: 5, reconnectMaxMs: 20, ...options });
  open.push(t);
  const undeliverable: Array<{ payload: unknown; code: string; message: string }> = [];
  t.onUndeliverable((_address, payload, error) =>
    undeliverable.push({ payload, code: (error as Error & { code: string }).code, message: error.message }),
  );
  return { t, lines, undeliverable };
}

const WARN = 40;
const matching = (lines: LogLine[], re: RegExp) => lines.filter((l) => l.level === WARN && re.test(l.msg));
const port = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));

describe('a wrong cluster secret', () => {
  it('is logged as an authentication failure on both sides, counted, and fails the queued payload with ERR_AUTH_FAILED', async () => {
    const server = make({ id: 2 });
    const dialer = make({ id: 1, secret: 'another-secret-entirely' });
    const serverAddress = await server.t.start();
    await dialer.t.start();
    dialer.t.send(serverAddress, 'hello');

    await waitFor(() => dialer.undeliverable.length === 1, 'the payload to be reported undeliverable');
    expect(dialer.undeliverable[0]).toMatchObject({ payload: 'hello', code: 'ERR_AUTH_FAILED' });
    // Dialing side: it found the server's proof wrong.
    const dialerSide = matching(dialer.lines, /^authentication failed/);
    expect(dialerSide.map((l) => l.msg)).toEqual([`authentication failed: peer ${serverAddress} (node 2) — cluster secret mismatch`]);
    // Accepting side: told so by the dialer's REFUSE frame, logged with the dialer's IP and source port.
    await waitFor(() => matching(server.lines, /^authentication failed/).length === 1, 'the server to log the failure');
    expect(matching(server.lines, /^authentication failed/)[0]!.msg).toMatch(
      /^authentication failed: peer 127\.0\.0\.1:\d+ \(node 1\) — cluster secret mismatch$/,
    );
    expect(dialer.t.stats().connectFailures['auth-failed']).toBe(1);
    await waitFor(() => server.t.stats().rejected['auth-failed'] === 1, 'the server to count the refusal');
  });

  it('logs one warning per peer per interval while the peer keeps retrying, and counts the rest', async () => {
    const server = make({ id: 2 });
    const dialer = make({ id: 1, secret: 'another-secret-entirely' });
    const serverAddress = await server.t.start();
    await dialer.t.start();
    // Each send after a refusal dials again (after a 5..20 ms backoff): a retry loop.
    let sent = 0;
    await waitFor(
      () => {
        if (dialer.undeliverable.length === sent) dialer.t.send(serverAddress, `try-${sent++}`);
        return dialer.t.stats().connectFailures['auth-failed'] >= 5 && server.t.stats().rejected['auth-failed'] >= 5;
      },
      'five refused handshakes',
      10_000,
    );
    expect(matching(dialer.lines, /^authentication failed/)).toHaveLength(1);
    expect(matching(server.lines, /^authentication failed/)).toHaveLength(1);
    expect(dialer.t.stats().suppressedWarnings).toBeGreaterThanOrEqual(4);
    expect(server.t.stats().suppressedWarnings).toBeGreaterThanOrEqual(4);
  });

  it('sent by a raw client that does not check the server proof: the server refuses its AUTH with a REFUSE frame and logs it', async () => {
    const server = make({ id: 2 });
    const serverPort = port(await server.t.start());
    const c = await RawClient.connect(serverPort);
    const ephemeral = c.socket.localPort;
    c.write(encodeFrame(FrameType.Hello, { id: 7, incarnation: 1 }, [NODE_PROTOCOL_VERSION, 'actor', '127.0.0.1:1', newNonce()], 1024));
    expect((await c.nextFrame()).type).toBe(FrameType.Challenge);
    c.write(encodeFrame(FrameType.Auth, { id: 7, incarnation: 1 }, [fakeProof()], 1024));
    // The refusal comes before the close: a client can tell a bad secret from a network error.
    const reply = await c.nextFrame();
    expect(reply.type).toBe(FrameType.Refuse);
    expect(decodeBody(reply.body, 0, reply.body.length)).toEqual(['auth-failed', NODE_PROTOCOL_VERSION]);
    await c.expectClosed();
    expect(server.lines.map((l) => l.msg)).toContain(
      `authentication failed: peer 127.0.0.1:${ephemeral} (node 7) — cluster secret mismatch`,
    );
    expect(server.t.stats().rejected['auth-failed']).toBe(1);
  });
});

describe('the node protocol version', () => {
  it('a raw HELLO speaking version 2 gets a REFUSE naming version 1, before any CHALLENGE, and a log line naming both', async () => {
    const server = make({ id: 2 });
    const serverPort = port(await server.t.start());
    const c = await RawClient.connect(serverPort);
    const ephemeral = c.socket.localPort;
    c.write(encodeFrame(FrameType.Hello, { id: 9, incarnation: 1 }, [2, 'actor', '127.0.0.1:1', newNonce()], 1024));
    const reply = await c.nextFrame();
    expect(reply.type).toBe(FrameType.Refuse);
    expect(decodeBody(reply.body, 0, reply.body.length)).toEqual(['protocol-version', NODE_PROTOCOL_VERSION]);
    await c.expectClosed();
    expect(c.frames).toEqual([]); // nothing after the refusal, and no CHALLENGE before it
    expect(matching(server.lines, /protocol/).map((l) => l.msg)).toEqual([
      `peer 127.0.0.1:${ephemeral} speaks node protocol 2, this node speaks 1`,
    ]);
    expect(matching(server.lines, /protocol/)[0]).toMatchObject({ code: 'ERR_PROTOCOL_VERSION', peerVersion: 2, node: 9 });
    expect(server.t.stats().rejected['protocol-version']).toBe(1);
    expect(server.t.stats().inboundHandshaking).toBe(0);
  });

  it.each([
    { name: 'a version-2 node dialing a version-1 node', dialerVersion: 2, serverVersion: 1 },
    { name: 'a version-1 node dialing a version-2 node', dialerVersion: 1, serverVersion: 2 },
  ])('$name: refused on both sides with ERR_PROTOCOL_VERSION and both versions named', async ({ dialerVersion, serverVersion }) => {
    const server = make({ id: 2, protocolVersion: serverVersion });
    const dialer = make({ id: 1, protocolVersion: dialerVersion });
    const serverAddress = await server.t.start();
    await dialer.t.start();
    dialer.t.send(serverAddress, 'hello', 'system');

    await waitFor(() => dialer.undeliverable.length === 1, 'the payload to be reported undeliverable');
    expect(dialer.undeliverable[0]).toMatchObject({
      payload: 'hello',
      code: 'ERR_PROTOCOL_VERSION',
      message: `peer ${serverAddress} speaks node protocol ${serverVersion}, this node speaks ${dialerVersion}`,
    });
    expect(matching(dialer.lines, /speaks node protocol/).map((l) => l.msg)).toEqual([
      `peer ${serverAddress} speaks node protocol ${serverVersion}, this node speaks ${dialerVersion}`,
    ]);
    await waitFor(() => matching(server.lines, /speaks node protocol/).length === 1, 'the server to log the refusal');
    expect(matching(server.lines, /speaks node protocol/)[0]!.msg).toMatch(
      new RegExp(`^peer 127\\.0\\.0\\.1:\\d+ speaks node protocol ${dialerVersion}, this node speaks ${serverVersion}$`),
    );
    expect(dialer.t.stats().connectFailures['protocol-version']).toBe(1);
    await waitFor(() => server.t.stats().rejected['protocol-version'] === 1, 'the server to count the refusal');
    // Neither side took it for a bad secret.
    expect(matching(dialer.lines, /authentication/)).toEqual([]);
    expect(matching(server.lines, /authentication/)).toEqual([]);
  });

  it('peers of the same version still link (the version is in the proof on both sides alike)', async () => {
    const server = make({ id: 2, protocolVersion: 3 });
    const dialer = make({ id: 1, protocolVersion: 3 });
    const got: unknown[] = [];
    server.t.onMessage((_from, payload) => got.push(payload));
    const serverAddress = await server.t.start();
    await dialer.t.start();
    dialer.t.send(serverAddress, 'hello');
    await waitFor(() => got.length === 1, 'the message to arrive');
    expect(server.lines).toEqual([]);
    expect(dialer.lines).toEqual([]);
  });

  it('names the option when the version is not an integer', () => {
    expect(() => new TcpTransport({ id: 1, incarnation: 1, secret: SECRET, protocolVersion: 1.5 })).toThrow(/options\.protocolVersion/);
  });
});

describe('WarningLimiter', () => {
  // Each case: a sequence of (key, now) and what admit returns for each.
  it.each([
    { name: 'the first warning for a key is logged', steps: [['a', 0, 0]] },
    { name: 'a repeat within the interval is suppressed', steps: [['a', 0, 0], ['a', 9_999, undefined]] },
    { name: 'a repeat at the interval is logged', steps: [['a', 0, 0], ['a', 10_000, 0]] },
    {
      name: 'the next logged line counts what was suppressed',
      steps: [['a', 0, 0], ['a', 1, undefined], ['a', 2, undefined], ['a', 10_000, 2], ['a', 10_001, undefined]],
    },
    { name: 'keys are independent', steps: [['a', 0, 0], ['b', 1, 0], ['a', 2, undefined], ['b', 3, undefined]] },
  ] as Array<{ name: string; steps: Array<[string, number, number | undefined]> }>)('$name', ({ steps }) => {
    const limiter = new WarningLimiter(10_000);
    for (const [key, now, expected] of steps) expect(limiter.admit(key, now)).toBe(expected);
  });

  it('forgets the stalest key beyond its capacity', () => {
    const limiter = new WarningLimiter(10_000, 2);
    limiter.admit('a', 0);
    limiter.admit('b', 1);
    limiter.admit('c', 2); // 'a' goes
    expect(limiter.admit('a', 3)).toBe(0);
    expect(limiter.admit('c', 4)).toBeUndefined();
  });
});
