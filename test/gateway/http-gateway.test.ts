import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';

const fixtures = new URL('../fixtures/actors.ts', import.meta.url).href;
let node: TroupeNode;
let base: string;

beforeAll(async () => {
  node = await TroupeNode.start({
    modules: [fixtures],
    workers: 1,
    http: { port: 0, maxBodyBytes: 1024 },
    log: silentLogger,
    logLevel: 'silent',
  });
  base = node.url!;
});
afterAll(() => node.stop());

async function post(path: string, body?: string, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

/** Raw request, for bodies fetch would not send as-is (chunked, lying lengths). */
function raw(path: string, chunks: Buffer[], headers: Record<string, string | number> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(base + path, { method: 'POST', headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e)));
    for (const c of chunks) req.write(c);
    req.end();
  });
}

describe('gateway happy path', () => {
  it('POST /actors/:kind/:key/:command asks the actor and returns its reply as JSON', async () => {
    expect(await post('/actors/counter/g1/incr', '{"by":2}')).toMatchObject({ status: 200, body: { n: 2 } });
    expect(await post('/actors/counter/g1/incr')).toMatchObject({ status: 200, body: { n: 3 } });
    expect(await post('/actors/counter/g1/get')).toMatchObject({ status: 200, body: { n: 3 } });
    expect(await post('/actors/cart/alice/add', '{"sku":"tea","qty":2}')).toMatchObject({ status: 200, body: { count: 2 } });
  });

  it('percent-decodes path segments', async () => {
    expect(await post('/actors/counter/' + encodeURIComponent('user/ü 1') + '/incr')).toMatchObject({ status: 200, body: { n: 1 } });
  });

  it('an idempotency key makes a retried request apply once', async () => {
    const h = { 'idempotency-key': 'req-123' };
    expect((await post('/actors/counter/idem/incr', '{"by":5}', h)).body).toEqual({ n: 5 });
    expect((await post('/actors/counter/idem/incr', '{"by":5}', h)).body).toEqual({ n: 5 });
    expect((await post('/actors/counter/idem/get')).body).toEqual({ n: 5 });
  });

  it('GET /health', async () => {
    const res = await fetch(base + '/health');
    expect(res.status).toBe(200);
  });
});

describe('gateway errors', () => {
  it.each([
    { name: 'malformed JSON', path: '/actors/counter/e/incr', body: '{"by":', status: 400, code: 'ERR_MALFORMED_JSON' },
    { name: 'unknown kind', path: '/actors/nope/e/incr', body: '{}', status: 400, code: 'ERR_UNKNOWN_KIND' },
    { name: 'unknown command', path: '/actors/counter/e/explode', body: '{}', status: 400, code: 'ERR_UNKNOWN_COMMAND' },
    { name: 'prototype name as kind', path: '/actors/__proto__/e/incr', body: '{}', status: 400, code: 'ERR_UNKNOWN_KIND' },
    { name: 'prototype name as command', path: '/actors/counter/e/constructor', body: '{}', status: 400, code: 'ERR_UNKNOWN_COMMAND' },
    { name: 'invalid input', path: '/actors/counter/e/incr', body: '{"by":"two"}', status: 400, code: 'ERR_INVALID_INPUT' },
    { name: 'input that is not an object', path: '/actors/counter/e/incr', body: '[1,2]', status: 400, code: 'ERR_INVALID_INPUT' },
    { name: 'over-long key', path: `/actors/counter/${'k'.repeat(300)}/incr`, body: '{}', status: 400, code: 'ERR_INVALID_KEY' },
    { name: 'broken percent-encoding', path: '/actors/counter/%E0%A4%A/incr', body: '{}', status: 400, code: 'ERR_INVALID_KEY' },
    {
      name: 'bad timeout header',
      path: '/actors/counter/e/incr',
      body: '{}',
      status: 400,
      code: 'ERR_INVALID_OPTION',
      headers: { 'x-timeout-ms': 'soon' },
    },
    { name: 'unknown route', path: '/nothing/here', body: '{}', status: 404, code: 'ERR_NOT_FOUND' },
    { name: 'short actor route', path: '/actors/counter/e', body: '{}', status: 404, code: 'ERR_NOT_FOUND' },
    { name: 'a handler that throws', path: '/actors/faulty/e/boom', body: '{}', status: 500, code: 'ERR_HANDLER_FAILED' },
    {
      name: 'ask timeout',
      path: '/actors/faulty/e2/hang',
      body: '{}',
      status: 504,
      code: 'ERR_ASK_TIMEOUT',
      headers: { 'x-timeout-ms': '100' },
    },
  ])('$name → $status $code', async ({ path, body, status, code, headers }) => {
    const res = await post(path, body, headers);
    expect(res.status).toBe(status);
    expect(res.body).toMatchObject({ error: { code } });
    expect(typeof (res.body.error as { message: unknown }).message).toBe('string');
  });

  it('405 with Allow for a GET of a command that writes', async () => {
    const res = await fetch(base + '/actors/counter/e/incr');
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect(await res.json()).toMatchObject({ error: { code: 'ERR_METHOD_NOT_ALLOWED' } });
  });

  it('503 ERR_MAILBOX_FULL when the actor’s mailbox is full', async () => {
    const hang = post('/actors/tiny/t/hang', '{}', { 'x-timeout-ms': '2000' });
    // The hang occupies the actor; once it runs, one message queues and the next is refused.
    let queued: Promise<unknown> | undefined;
    let res: Awaited<ReturnType<typeof post>> | undefined;
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      queued ??= post('/actors/tiny/t/get', '{}', { 'x-timeout-ms': '2000' });
      res = await post('/actors/tiny/t/get', '{}', { 'x-timeout-ms': '2000' });
      if (res.status === 503) break;
      queued = undefined; // got served: the hang had not started yet; try again
    }
    expect(res).toMatchObject({ status: 503, body: { error: { code: 'ERR_MAILBOX_FULL' } } });
    expect(res!.headers.get('retry-after')).toBe('1');
    await Promise.allSettled([hang, queued]);
  });

  it('413 for a declared body over the limit, without reading it', async () => {
    const res = await raw('/actors/counter/big/incr', [Buffer.alloc(2048, 32)], { 'content-length': 2048 });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'ERR_BODY_TOO_LARGE' } });
  });

  it('413 for a chunked body that grows over the limit', async () => {
    const chunks = Array.from({ length: 8 }, () => Buffer.alloc(512, 32));
    const res = await raw('/actors/counter/big/incr', chunks, { 'transfer-encoding': 'chunked' });
    expect(res.status).toBe(413);
  });

  it('keeps serving after bad requests', async () => {
    expect(await post('/actors/counter/after/incr', '{"by":1}')).toMatchObject({ status: 200, body: { n: 1 } });
  });
});

describe('gateway prototype pollution', () => {
  const payloads = [
    '{"__proto__":{"polluted":true}}',
    '{"by":1,"nested":{"__proto__":{"polluted":true}}}',
    '{"constructor":{"prototype":{"polluted":true}}}',
    '{"\\u005f_proto__":{"polluted":true}}',
    '[{"__proto__":{"polluted":true}}]',
  ];
  it.each(payloads)('refuses %s with ERR_FORBIDDEN_KEY and leaves Object.prototype unchanged', async (body) => {
    const before = Object.getOwnPropertyNames(Object.prototype).sort();
    const res = await post('/actors/cart/p/add', body);
    expect(res).toMatchObject({ status: 400, body: { error: { code: 'ERR_FORBIDDEN_KEY' } } });
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(before);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('allows harmless keys named like prototype parts', async () => {
    const res = await post('/actors/cart/p2/add', '{"sku":"constructor","qty":1,"note":{"prototype":1}}');
    expect(res.status).toBe(200);
  });
});

describe('gateway listen', () => {
  it('a port in use is a named error, and the node it belonged to stops cleanly', async () => {
    const port = Number(new URL(base).port);
    await expect(
      TroupeNode.start({ modules: [fixtures], workers: 1, http: { port }, log: silentLogger, logLevel: 'silent' }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('EADDRINUSE') });
  });
});
