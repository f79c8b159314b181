import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { forkNode } from '../../src/cli/node-process.ts';

const app = fileURLToPath(new URL('../../src/demo/app.ts', import.meta.url));
const dataDir = mkdtempSync(join(tmpdir(), 'troupe-crash-'));
const children: ChildProcess[] = [];

async function startNode(): Promise<{ child: ChildProcess; url: string }> {
  const args = ['start', '--app', app, '--http', '0', '--workers', '1', '--data-dir', dataDir, '--log-level', 'error'];
  const { child, ready } = forkNode(args, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  children.push(child);
  return { child, url: (await ready).url };
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

describe('crash recovery of a durable node', () => {
  it('after SIGKILL under write load, every acknowledged write is there and none is doubled', async () => {
    const { child, url } = await startNode();
    const keys = Array.from({ length: 40 }, (_, i) => `crash-${i}`);
    const sent = new Map<string, number>(keys.map((k) => [k, 0]));
    const acked = new Map<string, number>(keys.map((k) => [k, 0]));
    let totalAcked = 0;
    let killed = false;
    let reachedTarget!: () => void;
    const target = new Promise<void>((r) => (reachedTarget = r));

    // 20 clients, each incrementing its keys one request at a time until the node dies.
    const client = async (c: number) => {
      for (let i = 0; !killed; i++) {
        const key = keys[(c + i * 20) % keys.length]!;
        sent.set(key, sent.get(key)! + 1);
        try {
          const res = await fetch(`${url}/actors/counter/${key}/incr`, { method: 'POST', body: '{"by":1}' });
          if (res.status !== 200) throw new Error(`status ${res.status}`);
          await res.json();
          acked.set(key, acked.get(key)! + 1);
          if (++totalAcked === 1_500) reachedTarget();
        } catch {
          return; // the connection died with the node
        }
      }
    };
    const clients = Array.from({ length: 20 }, (_, c) => client(c));
    const deadline = setTimeout(() => reachedTarget(), 30_000);
    await target;
    clearTimeout(deadline);
    expect(totalAcked).toBeGreaterThanOrEqual(1_500);
    killed = true;
    child.kill('SIGKILL');
    await Promise.all(clients);

    const again = await startNode(); // opens the environment as it was left: no repair step
    for (const key of keys) {
      const res = await fetch(`${again.url}/actors/counter/${key}/get`, { method: 'POST' });
      const { n } = (await res.json()) as { n: number };
      expect(n, `${key}: acked ${acked.get(key)}, sent ${sent.get(key)}`).toBeGreaterThanOrEqual(acked.get(key)!);
      expect(n, `${key}: acked ${acked.get(key)}, sent ${sent.get(key)}`).toBeLessThanOrEqual(sent.get(key)!);
    }
    again.child.kill('SIGTERM');
  }, 90_000);
});
