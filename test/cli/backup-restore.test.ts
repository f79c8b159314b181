import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { forkNode, troupeBin } from '../../src/cli/node-process.ts';

const root = mkdtempSync(join(tmpdir(), 'troupe-backup-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const app = new URL('../../src/demo/app.ts', import.meta.url).pathname;
const troupe = (...args: string[]) => spawnSync(process.execPath, [troupeBin, ...args], { encoding: 'utf8', timeout: 30_000 });

/** Runs `troupe <args>` without blocking this event loop (so the test's own clients keep writing). */
function troupeAsync(...args: string[]): Promise<{ status: number | null; stderr: string }> {
  const child = spawn(process.execPath, [troupeBin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`troupe ${args.join(' ')}: no exit within 30 s`))), 30_000);
    child.on('close', (status) => (clearTimeout(timer), resolve({ status, stderr })));
  });
}

async function startNode(dataDir: string) {
  const node = forkNode(['start', '--app', app, '--http', '0', '--workers', '1', '--data-dir', dataDir, '--log-level', 'error'], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const { url } = await node.ready;
  const stop = () => new Promise<void>((resolve) => (node.child.once('exit', () => resolve()), node.child.kill('SIGTERM')));
  return { url, stop };
}

describe('troupe backup / restore', () => {
  it('a hot backup taken while the node serves writes starts a node with that state', async () => {
    const live = join(root, 'live');
    const node = await startNode(live);
    const incr = (key: string) => fetch(`${node.url}/actors/counter/${key}/incr`, { method: 'POST', body: '{"by":1}' });
    for (let i = 0; i < 50; i++) expect((await incr(`b-${i % 5}`)).status).toBe(200);
    // Writes keep landing while the backup runs: four clients, one request at a time each.
    let writing = true;
    let sent = 0;
    let acked = 0;
    let loadUnderWay!: () => void;
    const underWay = new Promise<void>((resolve) => (loadUnderWay = resolve));
    const load = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (writing) {
          sent++;
          const res = await incr('during');
          expect(res.status).toBe(200);
          await res.json();
          if (++acked === 20) loadUnderWay();
        }
      }),
    );
    await Promise.race([underWay, load]); // the lower bound below is then not trivially 0; a failed write fails here
    const backupDir = join(root, 'backup');
    const ackedAtStart = acked;
    const b = await troupeAsync('backup', '--data-dir', live, '--to', backupDir);
    const ackedAtEnd = acked;
    const sentAtEnd = sent;
    writing = false;
    await load;
    expect(b.status, b.stderr).toBe(0);
    expect(ackedAtEnd - ackedAtStart, 'writes acknowledged while the backup ran').toBeGreaterThan(0);
    await node.stop();

    const restored = join(root, 'restored');
    const r = troupe('restore', '--from', backupDir, '--data-dir', restored);
    expect(r.status, r.stderr).toBe(0);
    const again = await startNode(restored);
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${again.url}/actors/counter/b-${i}/get`, { method: 'POST' });
      expect(await res.json()).toEqual({ n: 10 }); // all acknowledged before the backup began
    }
    // The copy is the state of one moment during the backup: at least every write acknowledged
    // before it started, at most those sent before it ended (one can be committed, and copied,
    // before its acknowledgement arrives).
    const { n } = (await (await fetch(`${again.url}/actors/counter/during/get`, { method: 'POST' })).json()) as { n: number };
    expect(n).toBeGreaterThanOrEqual(ackedAtStart);
    expect(n).toBeLessThanOrEqual(sentAtEnd);
    await again.stop();

    const refused = troupe('restore', '--from', backupDir, '--data-dir', restored);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('already holds an environment');
  }, 60_000);
});
