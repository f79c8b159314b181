import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeIdentity } from '../../src/cluster/node-identity.ts';
import { systemClock } from '../../src/core/clock.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import { forkNode } from '../../src/cli/node-process.ts';
import { LOCK_FILE, lockDataDir, type LockRecord } from '../../src/node/data-dir-lock.ts';

// The data directory's exclusive lock: a second node (another process, or the same one) is
// refused with ERR_DATA_DIR_IN_USE naming the directory and the holder's pid; a lock left by a
// dead process is taken over.

const root = mkdtempSync(join(tmpdir(), 'troupe-lock-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `d${++n}`);
const lockFile = (dir: string) => JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')) as LockRecord;
const inUseBy = (dir: string, pid: number) => new RegExp(`^data directory ${dir} is in use by pid ${pid}\\b.*stop that node, or use another --data-dir$`);

async function refusal(p: Promise<unknown>): Promise<Error & { code: string; details?: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code: string };
  }
  throw new Error('expected a refusal, but it succeeded');
}

/** A child process that takes the lock on `dir`, says so on stdout, then waits to be killed. */
async function childHoldingLock(dir: string): Promise<ChildProcess> {
  const src = new URL('../../src/node/data-dir-lock.ts', import.meta.url).href;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', `const m = await import(${JSON.stringify(src)}); await m.lockDataDir(${JSON.stringify(dir)}); console.log('locked'); setInterval(() => {}, 1000);`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('child did not take the lock within 20 s')), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('locked')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child exited (${code}) before taking the lock`));
    });
  });
  return child;
}

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));

describe('the data directory lock', () => {
  it('refuses a second node in the same process, and admits one once the first has closed', async () => {
    const dir = freshDir();
    const first = await NodeIdentity.load(1, dir, systemClock);
    const e = await refusal(NodeIdentity.load(1, dir, systemClock));
    expect(e.code).toBe('ERR_DATA_DIR_IN_USE');
    expect(e.message).toMatch(inUseBy(dir, process.pid));
    // The refused node wrote nothing: the incarnation is still the first node's.
    expect(JSON.parse(readFileSync(join(dir, 'identity.json'), 'utf8'))).toMatchObject({ incarnation: first.incarnation });
    await first.close();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    const second = await NodeIdentity.load(1, dir, systemClock);
    expect(second.incarnation).toBe(first.incarnation + 1);
    await second.close();
  });

  it('a node whose worker threads cannot start releases the lock, so a retry in the same process starts', async () => {
    const { TroupeNode } = await import('../../src/node/troupe-node.ts');
    const dir = freshDir();
    const app = new URL('../fixtures/actors.ts', import.meta.url).href;
    const tiny = { maxOldGenerationSizeMb: 2, maxYoungGenerationSizeMb: 1, codeRangeSizeMb: 1 };
    const base = { modules: [app], workers: 1, dataDir: dir, http: false as const, logLevel: 'silent' };
    const e = await refusal(TroupeNode.start({ ...base, resourceLimits: tiny }));
    expect(e.code).toBe('ERR_WORKER_START');
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    const node = await TroupeNode.start(base);
    await node.stop();
  });

  it('releases the lock when loading the identity fails after taking it', async () => {
    const dir = freshDir();
    const a = await NodeIdentity.load(1, dir, systemClock);
    await a.close();
    const e = await refusal(NodeIdentity.load(2, dir, systemClock)); // the directory belongs to node 1
    expect(e.code).toBe('ERR_INVALID_OPTION');
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it('refuses another process while it runs, and takes over the stale lock it leaves when SIGKILLed', async () => {
    const dir = freshDir();
    const child = await childHoldingLock(dir);
    try {
      expect(lockFile(dir).pid).toBe(child.pid);
      const e = await refusal(lockDataDir(dir));
      expect(isTroupeError(e, 'ERR_DATA_DIR_IN_USE')).toBe(true);
      expect(e.message).toMatch(inUseBy(dir, child.pid!));
      expect(e.details).toMatchObject({ pid: child.pid, path: dir });
    } finally {
      child.kill('SIGKILL');
      await exited(child);
    }
    // The lock file is still there, naming a dead pid: the next start takes it over.
    expect(lockFile(dir).pid).toBe(child.pid);
    const lock = await lockDataDir(dir);
    expect(lockFile(dir)).toMatchObject({ pid: process.pid, token: lock.record.token });
    await lock.release();
  }, 30_000);

  it.each([
    { name: 'our own pid from an earlier life (another start time)', record: () => ({ pid: process.pid, started: '1' }) },
    { name: 'a pid no process has', record: () => ({ pid: 2 ** 22 + 12345 }) },
  ])('takes over a lock naming $name', async ({ record }) => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ token: 'old', host: hostname(), ...record() }));
    const lock = await lockDataDir(dir);
    expect(lockFile(dir).token).toBe(lock.record.token);
    await lock.release();
  });

  it('takes over a lock file torn by a crash (empty)', async () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, LOCK_FILE), '');
    const lock = await lockDataDir(dir);
    expect(lockFile(dir).token).toBe(lock.record.token);
    await lock.release();
  });

  it('counts a lock taken on another host (a shared file system) as held, and names that host', async () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: 4242, token: 't', host: 'elsewhere.example' }));
    const e = await refusal(lockDataDir(dir));
    expect(e.code).toBe('ERR_DATA_DIR_IN_USE');
    expect(e.message).toContain(`data directory ${dir} is in use by pid 4242 on host elsewhere.example`);
  });

  it('release() leaves a lock that is no longer ours alone', async () => {
    const dir = freshDir();
    const lock = await lockDataDir(dir);
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: process.pid, token: 'someone-else', host: hostname() }));
    await lock.release();
    expect(lockFile(dir).token).toBe('someone-else');
  });

  it('a second `troupe start --data-dir D` exits 1 with one line naming the directory and the running pid', async () => {
    const dir = freshDir();
    const app = new URL('../../src/demo/app.ts', import.meta.url).pathname;
    const args = ['start', '--app', app, '--http', '0', '--workers', '1', '--data-dir', dir, '--log-level', 'error'];
    const first = forkNode(args, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    const { pid } = await first.ready;
    const second = forkNode(args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    try {
      let stderr = '';
      second.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const outcome = await second.ready.then(
        () => 'the second node started',
        () => 'exited',
      );
      expect(outcome).toBe('exited');
      await exited(second.child);
      expect(second.child.exitCode).toBe(1);
      const lines = stderr.trim().split('\n');
      expect(lines, stderr).toHaveLength(1);
      expect(lines[0]).toContain(`data directory ${dir} is in use by pid ${pid}`);
    } finally {
      for (const c of [second.child, first.child]) {
        c.kill('SIGTERM');
        await exited(c);
      }
    }
    // A clean stop releases the lock.
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  }, 60_000);
});
