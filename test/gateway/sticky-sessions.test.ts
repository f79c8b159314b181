/**
 * The gateway's session sources, authorization hooks, GET and CORS, against a stub sender: what
 * key each request reaches, and every refusal's code. Fast: no workers, no cluster; wall time
 * for cookie expiry comes from a SimulatedClock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { HttpGateway, type GatewayOptions, type Sender } from '../../src/gateway/http-gateway.ts';
import { signSession } from '../../src/gateway/session-cookie.ts';
import { addressVisits, cookieVisits, GUARD_TOKEN, guarded } from '../sessions/session-actors.ts';
import { counter } from '../../src/demo/app.ts';

const OLD = 'old-secret-0123456789';
const NEW = 'new-secret-9876543210';

/** Counts per kind/key like the actors would, and records every ask. */
class StubSender implements Sender {
  readonly asks: Array<{ kind: string; key: string; command: string; input: unknown }> = [];
  private readonly counts = new Map<string, number>();
  askRaw(kind: string, key: string, command: string, input: unknown): Promise<unknown> {
    this.asks.push({ kind, key, command, input });
    const id = `${kind}/${key}`;
    const by = (input as { by?: number } | undefined)?.by ?? 1;
    if (command !== 'get') this.counts.set(id, (this.counts.get(id) ?? 0) + by);
    return Promise.resolve({ n: this.counts.get(id) ?? 0, key });
  }
}

const gateways: HttpGateway[] = [];
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});

async function start(options: GatewayOptions = {}, clock = new SimulatedClock()) {
  const sender = new StubSender();
  const registry = new ActorRegistry([cookieVisits, addressVisits, guarded, counter]);
  const gateway = new HttpGateway(registry, sender, silentLogger, { port: 0, sessionSecrets: [OLD], ...options }, {}, undefined, clock);
  gateways.push(gateway);
  const { port } = await gateway.listen();
  const base = `http://127.0.0.1:${port}`;
  const call = async (path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}) => {
    const res = await fetch(base + path, {
      method: init.method ?? 'POST',
      headers: init.headers ?? {},
      ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: (text === '' ? undefined : JSON.parse(text)) as Record<string, unknown> & { error?: { code: string } } };
  };
  return { sender, clock, call };
}

/** `sid=<value>` from a Set-Cookie header. */
function cookieOf(setCookie: string | null): string {
  expect(setCookie).not.toBeNull();
  return setCookie!.split(';')[0]!;
}

describe('cookie sessions', () => {
  it('a request without a sid gets a new signed session; the cookie brings the next requests back to the same key', async () => {
    const { call, sender } = await start();
    const first = await call('/sessions/cookie-visits/hit');
    expect(first.status).toBe(200);
    const setCookie = first.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/^sid=[A-Za-z0-9_-]{21}\.\d+\.[A-Za-z0-9_-]{43}; Max-Age=604800; Path=\/; HttpOnly; SameSite=Lax$/);
    const sid = cookieOf(setCookie);
    expect((await call('/sessions/cookie-visits/hit', { headers: { cookie: `theme=dark; ${sid}` } })).body).toMatchObject({ n: 2 });
    const third = await call('/sessions/cookie-visits/hit', { headers: { cookie: sid } });
    expect(third.body).toMatchObject({ n: 3 });
    expect(third.headers.get('set-cookie')).toBeNull(); // issued once, not on every answer
    const keys = new Set(sender.asks.map((a) => a.key));
    expect(keys).toEqual(new Set([sid.slice(4, 25)])); // the session id is the actor key
    // Another browser (no cookie) is another session.
    const other = await call('/sessions/cookie-visits/hit');
    expect(other.body).toMatchObject({ n: 1 });
    expect(cookieOf(other.headers.get('set-cookie'))).not.toBe(sid);
  });

  it('Secure is added when configured (TLS ends at a proxy)', async () => {
    const { call } = await start({ secureCookies: true, sessionMaxAgeS: 60 });
    expect((await call('/sessions/cookie-visits/hit')).headers.get('set-cookie')).toMatch(/; Max-Age=60; .*; Secure$/);
  });

  it.each([
    { name: 'forged (signed with a secret the cluster does not have)', cookie: (now: number) => `sid=${signSession('A'.repeat(21), now / 1000 + 60, 'attacker-secret-0000')}`, code: 'ERR_BAD_SESSION' },
    { name: 'tampered (another session id under a valid MAC)', cookie: (now: number) => `sid=${'B'.repeat(21)}${signSession('A'.repeat(21), now / 1000 + 60, OLD).slice(21)}`, code: 'ERR_BAD_SESSION' },
    { name: 'tampered expiry (extended by its holder)', cookie: (now: number) => `sid=${signSession('A'.repeat(21), now / 1000 + 60, OLD).replace(/\.(\d+)\./, (_m, e: string) => `.${Number(e) + 1}.`)}`, code: 'ERR_BAD_SESSION' },
    { name: 'expired', cookie: (now: number) => `sid=${signSession('A'.repeat(21), now / 1000 - 1, OLD)}`, code: 'ERR_SESSION_EXPIRED' },
    { name: 'malformed', cookie: () => 'sid=hello', code: 'ERR_BAD_SESSION' },
    { name: 'empty', cookie: () => 'sid=', code: 'ERR_BAD_SESSION' },
    { name: 'sent twice', cookie: (now: number) => { const c = `sid=${signSession('A'.repeat(21), now / 1000 + 60, OLD)}`; return `${c}; ${c}`; }, code: 'ERR_BAD_SESSION' },
  ])('a $name sid is refused with 401 $code, never replaced by a new session (only told to drop it)', async ({ cookie, code }) => {
    const { call, sender, clock } = await start();
    const res = await call('/sessions/cookie-visits/hit', { headers: { cookie: cookie(clock.wallNow()) } });
    expect(res.status).toBe(401);
    expect(res.body.error).toMatchObject({ code });
    expect(res.headers.get('set-cookie')).toBe('sid=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax');
    expect(sender.asks).toEqual([]);
  });

  it('a cookie expires after sessionMaxAgeS on the wall clock', async () => {
    const { call, clock } = await start({ sessionMaxAgeS: 60 });
    const sid = cookieOf((await call('/sessions/cookie-visits/hit')).headers.get('set-cookie'));
    clock.stepWall(59_000);
    expect((await call('/sessions/cookie-visits/hit', { headers: { cookie: sid } })).body).toMatchObject({ n: 2 });
    clock.stepWall(1_000);
    expect((await call('/sessions/cookie-visits/hit', { headers: { cookie: sid } })).body.error).toMatchObject({ code: 'ERR_SESSION_EXPIRED' });
  });

  it('key rotation: after [new, old] a cookie signed with the old key is still accepted, and new cookies are signed with the new key', async () => {
    const clock = new SimulatedClock();
    const before = await start({ sessionSecrets: [OLD] }, clock);
    const oldSid = cookieOf((await before.call('/sessions/cookie-visits/hit')).headers.get('set-cookie'));
    const rotated = await start({ sessionSecrets: [NEW, OLD] }, clock);
    expect((await rotated.call('/sessions/cookie-visits/get', { headers: { cookie: oldSid } })).status).toBe(200);
    const newSid = cookieOf((await rotated.call('/sessions/cookie-visits/hit')).headers.get('set-cookie'));
    const [id, expires] = newSid.slice(4).split('.') as [string, string];
    expect(newSid.slice(4)).toBe(signSession(id, Number(expires), NEW));
    // Once the old key is dropped its cookies are refused, the new ones still accepted.
    const after = await start({ sessionSecrets: [NEW] }, clock);
    expect((await after.call('/sessions/cookie-visits/get', { headers: { cookie: oldSid } })).body.error).toMatchObject({ code: 'ERR_BAD_SESSION' });
    expect((await after.call('/sessions/cookie-visits/get', { headers: { cookie: newSid } })).status).toBe(200);
  });

  it('a cookie kind refuses the path form, so no caller can name another session by its key', async () => {
    const { call, sender } = await start();
    const res = await call('/actors/cookie-visits/someone-else/hit');
    expect(res.status).toBe(404);
    expect(res.body.error).toMatchObject({ code: 'ERR_NOT_FOUND' });
    expect((await call('/sessions/counter/incr')).body.error).toMatchObject({ code: 'ERR_NOT_FOUND' });
    expect(sender.asks).toEqual([]);
  });

  it('a node without a session secret refuses to start when a kind uses cookie sessions, naming the option', () => {
    const registry = new ActorRegistry([cookieVisits]);
    expect(() => new HttpGateway(registry, new StubSender(), silentLogger, { port: 0 })).toThrow(/options\.http\.sessionSecrets must list at least one secret: kind 'cookie-visits'/);
    expect(() => new HttpGateway(registry, new StubSender(), silentLogger, { port: 0, sessionSecrets: ['short'] })).toThrow(/options\.http\.sessionSecrets must hold strings of at least 16 characters/);
    // Without a cookie kind no secret is needed.
    expect(() => new HttpGateway(new ActorRegistry([counter]), new StubSender(), silentLogger, { port: 0 })).not.toThrow();
  });
});

describe('address sessions', () => {
  it('the key is the client address; X-Forwarded-For is ignored unless the peer is a trusted proxy', async () => {
    const { call, sender } = await start();
    await call('/sessions/address-visits/hit');
    expect((await call('/sessions/address-visits/hit', { headers: { 'x-forwarded-for': '203.0.113.7' } })).body).toMatchObject({ n: 2, key: '127.0.0.1' });
    expect(new Set(sender.asks.map((a) => a.key))).toEqual(new Set(['127.0.0.1']));
  });

  it('from a trusted proxy, the rightmost untrusted X-Forwarded-For hop is the client', async () => {
    const { call } = await start({ trustedProxies: ['127.0.0.1', '10.0.0.4'] });
    expect((await call('/sessions/address-visits/hit', { headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.7, 10.0.0.4' } })).body).toMatchObject({ n: 1, key: '203.0.113.7' });
    expect((await call('/sessions/address-visits/hit', { headers: { 'x-forwarded-for': '203.0.113.7' } })).body).toMatchObject({ n: 2, key: '203.0.113.7' });
    const bad = await call('/sessions/address-visits/hit', { headers: { 'x-forwarded-for': 'not-an-ip' } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'ERR_INVALID_INPUT' });
  });

  it('trustedProxies must be IP addresses', () => {
    expect(() => new HttpGateway(new ActorRegistry([counter]), new StubSender(), silentLogger, { trustedProxies: ['proxy.local'] })).toThrow(/options\.http\.trustedProxies must hold IP addresses/);
  });
});

describe('GET of read-only commands', () => {
  it('a read-only command answers GET, with ?input= or none; GET of a writing command is 405 with Allow: POST', async () => {
    const { call } = await start();
    await call('/actors/counter/g/incr', { body: { by: 4 } });
    expect(await call('/actors/counter/g/get', { method: 'GET' })).toMatchObject({ status: 200, body: { n: 4 } });
    expect((await call(`/actors/counter/g/get?input=${encodeURIComponent('{"x":1}')}`, { method: 'GET' })).status).toBe(200);
    const writing = await call('/actors/counter/g/incr', { method: 'GET' });
    expect(writing.status).toBe(405);
    expect(writing.headers.get('allow')).toBe('POST');
    expect(writing.body.error).toMatchObject({ code: 'ERR_METHOD_NOT_ALLOWED' });
    expect((await call('/actors/counter/g/get', { method: 'PUT' })).status).toBe(405);
    expect((await call('/actors/counter/g/get?inptu=1', { method: 'GET' })).body.error).toMatchObject({ code: 'ERR_INVALID_INPUT' });
    expect((await call('/actors/counter/g/get?input=%7B', { method: 'GET' })).body.error).toMatchObject({ code: 'ERR_MALFORMED_JSON' });
  });

  it('GET works for a cookie session too (a browser reading its own state)', async () => {
    const { call } = await start();
    const sid = cookieOf((await call('/sessions/cookie-visits/hit')).headers.get('set-cookie'));
    expect((await call('/sessions/cookie-visits/get', { method: 'GET', headers: { cookie: sid } })).body).toMatchObject({ n: 1 });
  });
});

describe('authorization hook', () => {
  it('a refusal is 403 ERR_FORBIDDEN and nothing is asked; an allowed call goes through', async () => {
    const { call, sender } = await start();
    const none = await call('/actors/guarded/k/hit');
    expect(none.status).toBe(403);
    expect(none.body.error).toMatchObject({ code: 'ERR_FORBIDDEN' });
    const auth = { authorization: GUARD_TOKEN };
    expect((await call('/actors/guarded/secret/get', { headers: auth })).body.error).toMatchObject({ code: 'ERR_FORBIDDEN' });
    expect(sender.asks).toEqual([]);
    expect(await call('/actors/guarded/k/hit', { headers: auth })).toMatchObject({ status: 200, body: { n: 1 } });
    expect(await call('/actors/guarded/secret/hit', { headers: auth })).toMatchObject({ status: 200, body: { n: 1 } });
  });

  it('without a hook a route is open', async () => {
    const { call } = await start();
    expect((await call('/actors/counter/open/incr')).status).toBe(200);
  });
});

describe('CORS', () => {
  const origin = 'https://app.example.com';

  it('a preflight from an allowed origin is 204 with the methods, headers and credentials', async () => {
    const { call } = await start({ corsOrigins: [origin] });
    const res = await call('/sessions/cookie-visits/hit', { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST' } });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(origin);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    expect(res.headers.get('access-control-allow-methods')).toBe('GET, POST');
    expect(res.headers.get('access-control-allow-headers')).toContain('content-type');
    // The actual request carries them too, so the page can read the answer (and its token).
    const actual = await call('/actors/counter/c/incr', { headers: { origin } });
    expect(actual.headers.get('access-control-allow-origin')).toBe(origin);
    expect(actual.headers.get('access-control-expose-headers')).toBe('troupe-token');
  });

  it('a preflight from another origin, or with no CORS configured, is 403 ERR_FORBIDDEN without CORS headers', async () => {
    const { call } = await start({ corsOrigins: [origin] });
    const res = await call('/actors/counter/c/incr', { method: 'OPTIONS', headers: { origin: 'https://evil.example' } });
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: 'ERR_FORBIDDEN' });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    const closed = await start();
    expect((await closed.call('/actors/counter/c/incr', { method: 'OPTIONS', headers: { origin } })).status).toBe(403);
  });

  it("'*' allows every origin but never with credentials", async () => {
    const { call } = await start({ corsOrigins: ['*'] });
    const res = await call('/actors/counter/c/incr', { method: 'OPTIONS', headers: { origin: 'https://any.example' } });
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('corsOrigins must be origins', () => {
    expect(() => new HttpGateway(new ActorRegistry([counter]), new StubSender(), silentLogger, { corsOrigins: ['https://app.example.com/'] })).toThrow(/options\.http\.corsOrigins must hold origins/);
  });
});
