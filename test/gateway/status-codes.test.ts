/**
 * HTTP statuses that need a real failure underneath, through a real node's gateway: 507 when
 * the disk under the journal is full, 503 ERR_WORKER_DIED when the worker thread holding an
 * ask in flight dies. (The mapping table alone is `httpStatusOf`; this tests the whole path.)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';
import { SmallDisk } from '../helpers/small-disk.ts';

const fixtures = new URL('../fixtures/actors.ts', import.meta.url).href;
const blobFixture = new URL('../fixtures/blob-actor.ts', import.meta.url).href;
const root = mkdtempSync(join(tmpdir(), 'troupe-status-'));
const disk = new SmallDisk(join(root, 'small-disk'), '4m').mount();
const nodes: TroupeNode[] = [];

afterAll(async () => {
  // Nodes first: an open LMDB environment keeps the mount busy.
  await Promise.allSettled(nodes.map((n) => n.stop()));
  disk.unmount();
  rmSync(root, { recursive: true, force: true });
});

async function post(base: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, {
    method: 'POST',
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...headers },
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } }, headers: res.headers };
}

/** Polls `check` every 10 ms until it holds; throws at the deadline. */
async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}`);
}

describe('HTTP 507 on a full disk', () => {
  it('a write the journal cannot store answers 507 ERR_STORAGE_FULL, and writes resume when space returns', async (ctx) => {
    if (!disk.require((note) => ctx.skip(note), '507 on a full disk')) return;
    const node = await TroupeNode.start({
      modules: [blobFixture],
      workers: 1,
      dataDir: join(disk.dir, 'node'),
      http: { port: 0 },
      log: silentLogger,
      logLevel: 'silent',
    });
    nodes.push(node);
    const base = node.url!;
    expect((await post(base, '/actors/blob/b0/put', { bytes: 100 })).status).toBe(200);

    disk.fill(300 * 1024);
    let full: Awaited<ReturnType<typeof post>> | undefined;
    // Bounded: 300 KiB fill within ~15 writes of 20 KB; 200 is far past that.
    for (let i = 0; i < 200 && full === undefined; i++) {
      const r = await post(base, `/actors/blob/b${i % 10}/put`, { bytes: 20_000 });
      if (r.status !== 200) full = r;
    }
    expect(full, 'the disk never filled').toBeDefined();
    expect(full!.status).toBe(507);
    expect(full!.body.error?.code).toBe('ERR_STORAGE_FULL');

    disk.release();
    const after = await post(base, '/actors/blob/b0/put', { bytes: 100 });
    expect(after.status).toBe(200);
  }, 30_000);
});

describe('HTTP 503 on a dead worker', () => {
  it('an ask in flight when its worker thread exits answers 503 ERR_WORKER_DIED with retry-after', async () => {
    const node = await TroupeNode.start({
      modules: [fixtures],
      workers: 1,
      http: { port: 0 },
      log: silentLogger,
      logLevel: 'silent',
    });
    nodes.push(node);
    const base = node.url!;
    // `hang` never replies: it is in flight on the only worker when `exit` kills that worker.
    const inFlight = post(base, '/actors/faulty/held/hang', undefined, { 'x-timeout-ms': '20000' });
    const stats = async () => ((await (await fetch(base + '/stats')).json()) as { workers: { byKind: Record<string, number> }[] }).workers;
    await until(async () => (await stats())[0]?.byKind.faulty === 1, 10_000, 'the hang reached its actor');
    const killer = post(base, '/actors/faulty/killer/exit', undefined, { 'x-timeout-ms': '20000' });

    const held = await inFlight;
    expect(held.status).toBe(503);
    expect(held.body.error?.code).toBe('ERR_WORKER_DIED');
    expect(held.headers.get('retry-after')).toBe('1');
    expect((await killer).status).toBe(503);
    // The node survived and the slot was re-hosted: the next ask is served.
    await until(async () => (await post(base, '/actors/faulty/after/ok')).status === 200, 10_000, 'the worker is back');
  }, 30_000);
});
