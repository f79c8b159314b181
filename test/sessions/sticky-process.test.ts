/**
 * Sticky sessions from the outside: three `troupe start` processes sharing `--session-secret`,
 * serving the session kinds of ./session-actors.ts. One browser's cookie, sent through every
 * node in turn, reaches one actor (its count goes 1, 2, 3 …) whichever node owns it — the
 * others forward — and one client address does the same; a refused cookie, a handler's refusal
 * and a read answer the same through the owner and through the nodes that forward.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { troupeBin } from '../../src/cli/node-process.ts';
import { ProcessCluster, type ProcessNode } from '../helpers/process-cluster.ts';

const sessionApp = fileURLToPath(new URL('./session-actors.ts', import.meta.url));
const SECRET = 'sticky-process-secret-0123';
const cluster = new ProcessCluster('sticky', { args: ['--app', sessionApp, '--session-secret', SECRET] });

let nodes: ProcessNode[] = [];
beforeAll(async () => {
  nodes = await cluster.startAll([1, 2, 3]);
}, 60_000);
afterAll(() => cluster.stop(), 30_000);

async function call(node: ProcessNode, path: string, init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}) {
  const res = await fetch(node.url + path, {
    method: init.method ?? 'POST',
    headers: { 'x-timeout-ms': '5000', ...init.headers },
    ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, setCookie: res.headers.get('set-cookie'), body: (await res.json()) as Record<string, unknown> };
}

describe('sticky sessions across three nodes', () => {
  it('by cookie: one session sent through every node in turn reaches one actor, its count going 1, 2, 3 …', async () => {
    const first = await call(nodes[0]!, '/sessions/cookie-visits/hit');
    expect(first.status).toBe(200);
    const sid = first.setCookie!.split(';')[0]!;
    const key = first.body.key;
    const counts = [first.body.n];
    for (let i = 1; i < 7; i++) {
      const r = await call(nodes[i % 3]!, '/sessions/cookie-visits/hit', { headers: { cookie: sid } });
      expect(r).toMatchObject({ status: 200, setCookie: null, body: { key } });
      counts.push(r.body.n);
    }
    expect(counts).toEqual([1, 2, 3, 4, 5, 6, 7]);
    // A browser reads its state with GET through any node.
    for (const n of nodes) expect((await call(n, '/sessions/cookie-visits/get', { method: 'GET', headers: { cookie: sid } })).body).toEqual({ n: 7, key });
  });

  it('by client address: every node maps this client to the same actor', async () => {
    const counts = [];
    for (let i = 0; i < 6; i++) {
      const r = await call(nodes[i % 3]!, '/sessions/address-visits/hit');
      expect(r).toMatchObject({ status: 200, body: { key: '127.0.0.1' } });
      counts.push(r.body.n);
    }
    expect(counts).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('a forged cookie is refused with the same 401 ERR_BAD_SESSION by every node', async () => {
    const forged = 'sid=' + 'A'.repeat(21) + '.9999999999.' + 'B'.repeat(43);
    for (const n of nodes)
      expect(await call(n, '/sessions/cookie-visits/hit', { headers: { cookie: forged } })).toMatchObject({
        status: 401,
        setCookie: 'sid=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax', // drop it; no new session issued
        body: { error: { code: 'ERR_BAD_SESSION' } },
      });
  });
});

describe('forwarding gives the owner’s answers', () => {
  it('a reply, a handler’s refusal and an unknown command answer the same through the owner and the two nodes that forward', async () => {
    // Whatever node owns cart/fw, two of the three forward to it.
    const answers = async (path: string, init?: { method?: string; body?: unknown }) => Promise.all(nodes.map((n) => call(n, path, init)));
    await call(nodes[0]!, '/actors/cart/fw/add', { body: { sku: 'tea', qty: 2 } });
    for (const a of await answers('/actors/cart/fw/get', { method: 'GET' })) expect(a).toMatchObject({ status: 200, body: { count: 2 } });
    // A handler's refusal (`throw invalidInput('cart is empty')` in the owner's worker): 400, the
    // same status, code and message from every node. The demo app here is loaded from the sources
    // while the node runs the build: two copies of TroupeError, told apart by no instanceof.
    const refusals = await answers('/actors/cart/fw-empty/checkout', { body: {} });
    expect(refusals[0]).toMatchObject({ status: 400, body: { error: { code: 'ERR_INVALID_INPUT', message: 'cart is empty' } } });
    expect(refusals[1]).toEqual(refusals[0]);
    expect(refusals[2]).toEqual(refusals[0]);
    for (const a of await answers('/actors/cart/fw/add', { body: { sku: '' } })) expect(a.body).toMatchObject({ error: { code: 'ERR_INVALID_INPUT' } });
    for (const a of await answers('/actors/cart/fw/explode', { body: {} })) expect(a).toMatchObject({ status: 400, body: { error: { code: 'ERR_UNKNOWN_COMMAND' } } });
  });
});

describe('--session-secret', () => {
  it('a node serving a cookie kind without a session secret refuses to start, naming the flag', () => {
    const env = { ...process.env };
    delete env.TROUPE_SESSION_SECRET;
    const r = spawnSync(process.execPath, [troupeBin, 'start', '--app', sessionApp, '--http', '0', '--workers', '1'], { env, encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--session-secret must list at least one secret: kind 'cookie-visits'/);
  });

  it('a session secret shorter than 16 characters is a usage error', () => {
    const r = spawnSync(process.execPath, [troupeBin, 'start', '--app', sessionApp, '--http', '0', '--session-secret', 'short'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--session-secret must be at least 16 characters/);
  });
});
