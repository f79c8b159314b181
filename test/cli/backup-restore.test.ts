import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { forkNode, troupeBin } from '../../src/cli/node-process.ts';

const root = mkdtempSync(join(tmpdir(), 'troupe-backup-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const app = new URL('../../src/demo/app.ts', import.meta.url).pathname;
const troupe = (...args: string[]) => spawnSync(process.execPath, [troupeBin, ...args], { encoding: 'utf8', timeout: 30_000 });

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
    // Writes keep landing while the backup runs.
    let writing = true;
    const load = (async () => {
      let n = 0;
      while (writing) if ((await incr('during')).status === 200) n++;
      return n;
    })();
    const backupDir = join(root, 'backup');
    const b = troupe('backup', '--data-dir', live, '--to', backupDir);
    writing = false;
    const during = await load;
    expect(b.status, b.stderr).toBe(0);
    await node.stop();

    const restored = join(root, 'restored');
    const r = troupe('restore', '--from', backupDir, '--data-dir', restored);
    expect(r.status, r.stderr).toBe(0);
    const again = await startNode(restored);
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${again.url}/actors/counter/b-${i}/get`, { method: 'POST' });
      expect(await res.json()).toEqual({ n: 10 }); // all acknowledged before the backup began
    }
    // Writes acknowledged during the backup: the copy holds a prefix of them, never more.
    const { n } = (await (await fetch(`${again.url}/actors/counter/during/get`, { method: 'POST' })).json()) as { n: number };
    expect(n).toBeLessThanOrEqual(during);
    await again.stop();

    const refused = troupe('restore', '--from', backupDir, '--data-dir', restored);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('already holds an environment');
  }, 60_000);
});
