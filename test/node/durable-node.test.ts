import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';

const fixtures = new URL('../fixtures/actors.ts', import.meta.url).href;
const dataDir = mkdtempSync(join(tmpdir(), 'troupe-durable-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const start = () =>
  TroupeNode.start({ modules: [fixtures], workers: 2, dataDir, http: { port: 0 }, log: silentLogger, logLevel: 'silent' });

async function post(node: TroupeNode, path: string, body?: string, headers: Record<string, string> = {}) {
  const res = await fetch(node.url + path, { method: 'POST', body, headers });
  return { status: res.status, body: (await res.json()) as unknown };
}

describe('a node with a data directory (LMDB journal)', () => {
  it('keeps state across a restart: snapshot + tail replay, on every worker', async () => {
    const a = await start();
    const keys = Array.from({ length: 20 }, (_, i) => `d-${i}`);
    for (let round = 0; round < 130; round++) await Promise.all(keys.map((k) => a.ask('counter', k, { command: 'incr' })));
    await a.stop();
    const b = await start();
    const got = await Promise.all(keys.map((k) => b.ask('counter', k, { command: 'get' })));
    expect(got).toEqual(keys.map(() => ({ n: 130 })));
    await b.stop();
  });

  it('an idempotency key retried after a restart returns the recorded reply and is not applied again', async () => {
    const a = await start();
    expect(await post(a, '/actors/cart/idem/add', '{"sku":"tea","qty":2}', { 'idempotency-key': 'order-77' })).toMatchObject({
      status: 200,
      body: { count: 2 },
    });
    await a.stop();
    const b = await start();
    expect(await post(b, '/actors/cart/idem/add', '{"sku":"tea","qty":2}', { 'idempotency-key': 'order-77' })).toMatchObject({
      status: 200,
      body: { count: 2 },
    });
    expect(await post(b, '/actors/cart/idem/get')).toMatchObject({ body: { count: 2 } });
    await b.stop();
  });
});
