import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { forkNode } from '../../src/cli/node-process.ts';
import { HOLD_WRITES_ENV } from '../../src/persistence/create-journal.ts';

const app = fileURLToPath(new URL('../../src/demo/app.ts', import.meta.url));
const dataDir = mkdtempSync(join(tmpdir(), 'troupe-crash-'));
const children: ChildProcess[] = [];

interface StartedNode {
  child: ChildProcess;
  url: string;
  /** Resolves when the node's test hook announces it holds the write of `kind/key`. */
  holding(what: string, timeoutMs: number): Promise<void>;
}

/** One durable node on one worker; `holdPrefix` sets the journal test hook (see create-journal.ts). */
async function startNode(holdPrefix?: string): Promise<StartedNode> {
  const args = ['start', '--app', app, '--http', '0', '--workers', '1', '--data-dir', dataDir, '--log-level', 'error'];
  const env = { ...process.env };
  if (holdPrefix === undefined) delete env[HOLD_WRITES_ENV];
  else env[HOLD_WRITES_ENV] = holdPrefix;
  const { child, ready } = forkNode(args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env });
  children.push(child);
  let stderr = '';
  const waiters: Array<() => void> = [];
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const w of waiters.splice(0)) w();
  });
  const holding = (what: string, timeoutMs: number) =>
    new Promise<void>((resolve, reject) => {
      const line = `troupe-test-hook: holding ${what}\n`;
      const timer = setTimeout(() => reject(new Error(`no '${line.trim()}' within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
      const check = () => {
        if (stderr.includes(line)) {
          clearTimeout(timer);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
  return { child, url: (await ready).url, holding };
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map(exited));
  rmSync(dataDir, { recursive: true, force: true });
});

async function incr(url: string, key: string): Promise<number> {
  const res = await fetch(`${url}/actors/counter/${key}/incr`, { method: 'POST', body: '{"by":1}' });
  expect(res.status, `incr ${key}`).toBe(200);
  return ((await res.json()) as { n: number }).n;
}

async function get(url: string, key: string): Promise<number> {
  const res = await fetch(`${url}/actors/counter/${key}/get`, { method: 'POST' });
  expect(res.status, `get ${key}`).toBe(200);
  return ((await res.json()) as { n: number }).n;
}

describe('crash recovery of a durable node', () => {
  it('a write whose commit is held is not acknowledged; after SIGKILL every acknowledged write is there, the held one is not', async () => {
    const node = await startNode('held-');
    const keys = Array.from({ length: 40 }, (_, i) => `crash-${i}`);
    const acked = new Map<string, number>(keys.map((k) => [k, 0]));

    // 20 clients, 30 increments each, every one of them answered 200 with the count it made.
    await Promise.all(
      Array.from({ length: 20 }, async (_, c) => {
        for (let i = 0; i < 30; i++) {
          const key = keys[(c + i * 20) % keys.length]!;
          const n = await incr(node.url, key);
          acked.set(key, acked.get(key)! + 1);
          expect(n, key).toBe(acked.get(key));
        }
      }),
    );

    // A write the journal holds: handed to it, never committed.
    let heldStatus: number | 'pending' | 'connection lost' = 'pending';
    const held = fetch(`${node.url}/actors/counter/held-1/incr`, { method: 'POST', body: '{"by":1}' }).then(
      (res) => (heldStatus = res.status),
      () => (heldStatus = 'connection lost'),
    );
    await node.holding('counter/held-1', 10_000);
    // Asks through the same worker thread after the hold: a reply the held write had been given
    // too early would have left that thread, and reached us, before theirs.
    for (const key of keys.slice(0, 3)) expect(await get(node.url, key)).toBe(acked.get(key));
    expect(heldStatus).toBe('pending');

    node.child.kill('SIGKILL');
    await exited(node.child);
    await held;
    expect(heldStatus).toBe('connection lost');

    const again = await startNode(); // opens the environment as it was left: no repair step
    try {
      for (const key of keys) expect(await get(again.url, key), key).toBe(acked.get(key));
      expect(await get(again.url, 'held-1')).toBe(0); // never committed, never acknowledged
    } finally {
      again.child.kill('SIGTERM');
      await exited(again.child);
    }
  }, 90_000);
});
