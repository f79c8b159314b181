/**
 * The gateway's WebSocket side on one real node (worker threads, so pushes cross the worker's
 * port as they do in production): upgrades with each session source, refusals as HTTP answers,
 * hostile frames closing only their socket, history from `?from=`, and the connection views.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdminClient } from '../../src/admin/admin-client.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TroupeNode } from '../../src/node/troupe-node.ts';
import type { ServerFrame } from '../../src/sessions/ws-protocol.ts';
import { GUARD_TOKEN } from '../sessions/session-actors.ts';

const demo = new URL('../../src/demo/app.ts', import.meta.url).pathname;
const sessionActors = new URL('../sessions/session-actors.ts', import.meta.url).pathname;
let node: TroupeNode;
let base: string;
const dir = mkdtempSync(join(tmpdir(), 'troupe-ws-'));

beforeAll(async () => {
  node = await TroupeNode.start({
    modules: [demo, sessionActors],
    workers: 2,
    admin: { socket: join(dir, 'admin.sock') },
    http: { port: 0, sessionSecrets: ['a-session-secret-of-16+'], maxBodyBytes: 4096 },
  });
  base = node.url!.replace('http', 'ws');
});
afterAll(async () => {
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A socket and every frame it got; `next(pred)` waits for a frame, with a deadline. */
function open(path: string, headers: Record<string, string> = {}) {
  const ws = new WebSocket(base + path, { headers });
  const frames: ServerFrame[] = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (d) => {
    frames.push(JSON.parse(String(d)) as ServerFrame);
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  const opened = new Promise<IncomingMessage>((resolve, reject) => {
    ws.on('upgrade', resolve);
    ws.on('error', reject);
  });
  const next = (pred: (f: ServerFrame) => boolean, ms = 5_000) =>
    new Promise<ServerFrame>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no such frame within ${ms} ms; got ${JSON.stringify(frames)}`)), ms);
      const look = () => {
        const f = frames.find(pred);
        if (f) {
          clearTimeout(timer);
          resolve(f);
        } else waiters.push(look);
      };
      look();
    });
  const ask = (id: string, command: string, input?: unknown) => {
    ws.send(JSON.stringify({ t: 'ask', id, command, input }));
    return next((f) => f.t === 'reply' && f.id === id);
  };
  return { ws, frames, closed, opened, next, ask };
}

/** An upgrade the node refuses: its HTTP status and JSON body. */
function refused(path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: { error: { code: string } }; setCookie: string | undefined }>((resolve, reject) => {
    const ws = new WebSocket(base + path, { headers });
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text), setCookie: res.headers['set-cookie']?.[0] }));
    });
    ws.on('open', () => reject(new Error('upgrade accepted')));
    ws.on('error', () => undefined);
  });
}

describe('WebSocket gateway (one node, worker threads)', () => {
  it('an ask is answered and its push reaches every socket of the room, across the worker port', async () => {
    const a = open('/ws/room/lobby');
    const b = open('/ws/room/lobby');
    await a.next((f) => f.t === 'sync');
    await b.next((f) => f.t === 'sync');
    const reply = await a.ask('a-1', 'say', { from: 'ann', text: 'hello' });
    expect(reply).toEqual({ t: 'reply', id: 'a-1', ok: true, value: { n: 1 } });
    const push = (await b.next((f) => f.t === 'push')) as { seq: number; msg: { text: string } };
    expect(push.msg).toMatchObject({ n: 1, from: 'ann', text: 'hello' });
    // History: a socket from position 0 gets every push the log holds, then a sync.
    await a.ask('a-2', 'say', { from: 'ann', text: 'again' });
    const late = open('/ws/room/lobby?from=0');
    const sync = (await late.next((f) => f.t === 'sync')) as { seq: number };
    expect(late.frames.filter((f) => f.t === 'push').map((f) => (f as { msg: { text: string } }).msg.text)).toEqual(['hello', 'again']);
    expect(sync.seq).toBeGreaterThanOrEqual(push.seq);
    // A resend of an answered id is answered again, not applied again.
    expect((await a.ask('a-1', 'say', { from: 'ann', text: 'hello' })) as unknown).toEqual({ t: 'reply', id: 'a-1', ok: true, value: { n: 1 } });
    expect(await a.ask('a-3', 'recent')).toMatchObject({ ok: true, value: { count: 2 } });
    for (const s of [a, b, late]) s.ws.close();
  });

  it('a cookie kind issues a sid with the 101 and keeps the key across reconnects', async () => {
    const first = open('/ws/cookie-visits');
    const res = await first.opened;
    const setCookie = res.headers['set-cookie']?.[0] ?? '';
    expect(setCookie).toMatch(/^sid=/);
    const key1 = ((await first.ask('v1', 'hit')) as { value: { key: string } }).value.key;
    first.ws.close();
    const again = open('/ws/cookie-visits', { cookie: setCookie.split(';')[0]! });
    expect((await again.opened).headers['set-cookie']).toBeUndefined();
    expect(await again.ask('v2', 'hit')).toMatchObject({ ok: true, value: { key: key1, n: 2 } });
    again.ws.close();
  });

  it('refused upgrades answer in HTTP with the same codes as the routes', async () => {
    expect(await refused('/ws/nope/x')).toMatchObject({ status: 400, body: { error: { code: 'ERR_UNKNOWN_KIND' } } });
    expect(await refused('/ws/cookie-visits/someone-elses')).toMatchObject({ status: 404, body: { error: { code: 'ERR_NOT_FOUND' } } });
    expect(await refused('/ws/room')).toMatchObject({ status: 404 });
    expect(await refused('/ws/room/r?from=abc')).toMatchObject({ status: 400, body: { error: { code: 'ERR_INVALID_INPUT' } } });
    const forged = await refused('/ws/cookie-visits', { cookie: 'sid=forged.value.here' });
    expect(forged).toMatchObject({ status: 401, body: { error: { code: 'ERR_BAD_SESSION' } } });
    expect(forged.setCookie).toBe('sid=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax');
    expect(await refused('/ws/guarded/k')).toMatchObject({ status: 403, body: { error: { code: 'ERR_FORBIDDEN' } } });
  });

  it("the authorization hook sees each ask on the socket: refused asks get ERR_FORBIDDEN, the socket stays", async () => {
    const s = open('/ws/guarded/secret', { authorization: GUARD_TOKEN });
    await s.opened;
    expect(await s.ask('g1', 'get')).toMatchObject({ ok: false, error: { code: 'ERR_FORBIDDEN' } });
    expect(await s.ask('g2', 'hit')).toMatchObject({ ok: true, value: { n: 1 } });
    expect(await s.ask('g3', 'nope')).toMatchObject({ ok: false, error: { code: 'ERR_UNKNOWN_COMMAND' } });
    s.ws.close();
  });

  it('an oversized, binary or malformed frame closes only its own socket', async () => {
    const bystander = open('/ws/room/hostile');
    await bystander.next((f) => f.t === 'sync');
    const big = open('/ws/room/hostile');
    await big.opened;
    big.ws.send('x'.repeat(5000));
    expect(await big.closed).toBe(1009);
    const binary = open('/ws/room/hostile');
    await binary.opened;
    binary.ws.send(Buffer.from([1, 2, 3]));
    expect(await binary.closed).toBe(1003);
    const junk = open('/ws/room/hostile');
    await junk.opened;
    junk.ws.send('{"t":"ask","id":"x"');
    expect(await junk.closed).toBe(1007);
    expect(junk.frames.at(-1)).toMatchObject({ t: 'error', error: { code: 'ERR_BAD_MESSAGE' } });
    expect(await bystander.ask('b1', 'say', { from: 'b', text: 'still here' })).toMatchObject({ ok: true });
    bystander.ws.close();
  });

  it('GET /cluster/connections counts the open sockets; by key it names the node; metrics show them', async () => {
    const s1 = open('/ws/room/counted');
    const s2 = open('/ws/room/counted');
    await s1.next((f) => f.t === 'sync');
    await s2.next((f) => f.t === 'sync');
    const all = (await (await fetch(`${node.url}/cluster/connections`)).json()) as { total: number; nodes: Array<{ node: number; connections: number }> };
    expect(all.nodes).toEqual([{ node: 0, connections: node.sessionHub!.connectionCount, sessions: node.sessionHub!.sessions().length }]);
    expect(all.total).toBeGreaterThanOrEqual(2);
    const byKey = (await (await fetch(`${node.url}/cluster/connections?kind=room&key=counted`)).json()) as { watchers: Array<{ node: number; connections: number }> };
    expect(byKey.watchers).toEqual([expect.objectContaining({ node: 0, connections: 2 })]);
    const bad = await fetch(`${node.url}/cluster/connections?kind=room`);
    expect(bad.status).toBe(400);
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`^troupe_sessions_connections\\{node="0"\\} ${node.sessionHub!.connectionCount}$`, 'm'));
    // The admin REPL's `connections`, the same two views.
    const admin = await AdminClient.connect({ socketPath: join(dir, 'admin.sock') }, 'ops');
    expect(await admin.call('connections', ['room', 'counted'])).toMatchObject({ kind: 'table', rows: [[0, 2, expect.stringMatching(/ s$/)]] });
    expect(await admin.call('connections', [])).toMatchObject({ kind: 'table', rows: [[0, node.sessionHub!.connectionCount, node.sessionHub!.sessions().length]] });
    await expect(admin.call('connections', ['room'])).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    admin.close();
    s1.ws.close();
    s2.ws.close();
  });
});
