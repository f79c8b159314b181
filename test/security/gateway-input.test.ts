/**
 * Issue 10, scenario 9, the gateway's half: hostile HTTP and WebSocket input to one node. The
 * OS plays no part here, so the node runs in this process (`actors: 'in-process'`), with the
 * gateway's header and request timeouts shortened (1 s and 2 s instead of 10 s and 30 s) so a
 * slowloris cut is seen in seconds; the defaults are the same code with other numbers.
 */
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TroupeNode } from '../../src/node/troupe-node.ts';
import { openRaw, WsSession } from '../helpers/ws-session.ts';

const demoApp = fileURLToPath(new URL('../../src/demo/app.ts', import.meta.url));
const HEADERS_TIMEOUT_MS = 1_000;
const REQUEST_TIMEOUT_MS = 2_000;
/** Node sweeps for late requests every headersTimeout / 4 here (the gateway sets it): the cut comes within this much after the bound. */
const SWEEP_SLACK_MS = 1_000;

let node: TroupeNode;
let port: number;
beforeAll(async () => {
  node = await TroupeNode.start({
    modules: [demoApp],
    actors: 'in-process',
    http: { port: 0, headersTimeoutMs: HEADERS_TIMEOUT_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS },
    logLevel: 'silent',
  });
  port = Number(new URL(node.url!).port);
});
afterAll(() => node.stop());

let n = 0;
/** The node serves a normal request within `boundMs`. */
async function serves(boundMs = 1_000): Promise<void> {
  const started = performance.now();
  const res = await fetch(`${node.url}/actors/counter/gw-${n++}/incr`, { method: 'POST', signal: AbortSignal.timeout(boundMs) });
  expect(res.status).toBe(200);
  expect(performance.now() - started).toBeLessThan(boundMs);
}

/** Opens a raw TCP connection; `reply` collects what the node answers, `closed` resolves (with ms since open) when it closes. */
function raw(): Promise<{ socket: Socket; reply: () => string; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const opened = performance.now();
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.on('data', (d) => (data += d.toString('latin1')));
    socket.on('error', () => undefined);
    const closed = new Promise<number>((r) => socket.once('close', () => r(performance.now() - opened)));
    socket.once('connect', () => resolve({ socket, reply: () => data, closed }));
    socket.once('error', reject);
  });
}

describe('malformed HTTP', () => {
  const cases: Array<[name: string, bytes: string, status: RegExp]> = [
    ['a request line that is not HTTP', 'HELLO THERE\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['a method with a character no token allows', 'G@T /health HTTP/1.1\r\nHost: x\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['an unknown HTTP version', 'GET /health HTTP/7.1\r\nHost: x\r\n\r\n', /^HTTP\/1\.1 (400|505) /],
    ['a header name with a space', 'GET /health HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['a header value with a NUL byte', 'GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n', /^HTTP\/1\.1 400 /],
    [
      '20 KiB of headers (Node caps them at 16 KiB)',
      `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`,
      /^HTTP\/1\.1 431 /,
    ],
    [
      'two different Content-Lengths',
      'POST /actors/counter/k/incr HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
      /^HTTP\/1\.1 400 /,
    ],
    [
      'Content-Length and Transfer-Encoding together (request smuggling)',
      'POST /actors/counter/k/incr HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      /^HTTP\/1\.1 400 /,
    ],
    [
      'a chunk size that is not hex',
      'POST /actors/counter/k/incr HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
      /^HTTP\/1\.1 400 /,
    ],
  ];
  it.each(cases)('%s: a 4xx and the connection closed; the node serves on', async (_, bytes, status) => {
    const c = await raw();
    c.socket.write(bytes, 'latin1');
    await c.closed;
    expect(c.reply()).toMatch(status);
    await serves();
  });
});

describe('slowloris', () => {
  it(`headers dribbled a byte every 100 ms are cut within headersTimeoutMs (${HEADERS_TIMEOUT_MS} ms) + the sweep, while others are served`, async () => {
    const attackers = await Promise.all(Array.from({ length: 20 }, raw));
    const dribble = setInterval(() => {
      for (const a of attackers)
        if (!a.socket.destroyed)
          a.socket.write(a.reply() === '' && a.socket.bytesWritten === 0 ? 'POST /actors/counter/slow/incr HTTP/1.1\r\nHost: x\r\n' : 'X');
    }, 100);
    try {
      // Served meanwhile, and promptly, while every attacker is still being cut.
      const serving = (async () => {
        for (let i = 0; i < 10; i++) await serves();
      })();
      const cutAfter = await Promise.all(attackers.map((a) => a.closed));
      await serving;
      for (const ms of cutAfter) expect(ms).toBeLessThan(HEADERS_TIMEOUT_MS + SWEEP_SLACK_MS + 500);
      // Cut by the timeout, not by anything else the bytes could have tripped: Node answers 408.
      for (const a of attackers) expect(a.reply()).toMatch(/^HTTP\/1\.1 408 /);
    } finally {
      clearInterval(dribble);
      for (const a of attackers) a.socket.destroy();
    }
  });

  it(`a body dribbled after complete headers is cut within requestTimeoutMs (${REQUEST_TIMEOUT_MS} ms) + the sweep`, async () => {
    const a = await raw();
    a.socket.write(
      'POST /actors/counter/slow-body/incr HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{',
    );
    const dribble = setInterval(() => a.socket.destroyed || a.socket.write(' '), 100);
    try {
      const ms = await a.closed;
      expect(ms).toBeLessThan(REQUEST_TIMEOUT_MS + SWEEP_SLACK_MS + 500);
      expect(ms).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100);
      await serves();
    } finally {
      clearInterval(dribble);
    }
  });

  it(`a connection that never sends a byte is cut at headersTimeoutMs (${HEADERS_TIMEOUT_MS} ms): silence cannot hold a file descriptor`, async () => {
    const silent = await Promise.all(Array.from({ length: 20 }, raw));
    const cutAfter = await Promise.all(silent.map((a) => a.closed));
    for (const ms of cutAfter) {
      expect(ms).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
      expect(ms).toBeLessThan(HEADERS_TIMEOUT_MS + SWEEP_SLACK_MS + 500);
    }
    for (const a of silent) expect(a.reply()).toMatch(/^(HTTP\/1\.1 408 |$)/); // Node answers 408 to a request that never began
    await serves();
  });

  it('the timeouts are validated and named like the other gateway options', async () => {
    const start = (http: Record<string, unknown>) =>
      TroupeNode.start({ modules: [demoApp], actors: 'in-process', http: { port: 0, ...http }, logLevel: 'silent' });
    await expect(start({ headersTimeoutMs: 0 })).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: 'options.http.headersTimeoutMs must be a positive integer (got 0)',
    });
    await expect(start({ requestTimeoutMs: 1.5 })).rejects.toMatchObject({
      message: 'options.http.requestTimeoutMs must be a positive integer (got 1.5)',
    });
    await expect(start({ headersTimeoutMs: 5_000, requestTimeoutMs: 1_000 })).rejects.toMatchObject({
      message: 'options.http.requestTimeoutMs must be >= options.http.headersTimeoutMs (5000) (got 1000)',
    });
  });
});

describe('WebSocket', () => {
  it('a 1 MB+ message closes only that socket (1009); a neighbour in the same room and HTTP clients are served on', async () => {
    const neighbour = new WsSession({ urls: [node.url!], path: '/ws/room/big', name: 'neighbour', reconnect: false });
    await neighbour.connect();
    try {
      const big = await openRaw(node.url!.replace(/^http/, 'ws') + '/ws/room/big');
      big.ws.send('x'.repeat(1024 * 1024 + 1));
      expect((await big.closed).code).toBe(1009);
      expect(await neighbour.ask('say', { from: 'n', text: 'still here' })).toEqual({ n: 1 }); // the room's first message
      await serves();
    } finally {
      await neighbour.close();
    }
  });
});
