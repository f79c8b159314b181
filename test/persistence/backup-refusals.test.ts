import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { afterAll, describe, expect, it } from 'vitest';
import { troupeBin } from '../../src/cli/node-process.ts';
import { lockDataDir } from '../../src/node/data-dir-lock.ts';
import { backup, restore } from '../../src/persistence/backup.ts';
import { LmdbJournal } from '../../src/persistence/lmdb-journal.ts';
import { REPLICATION_BOOT_KEY, RESTORED_FROM_BACKUP } from '../../src/persistence/lmdb-env.ts';

// backup and restore refuse what is not troupe's (ERR_NOT_A_DATA_DIR, naming the flag) and
// create nothing while refusing; restore also refuses a directory a running node holds.

const root = mkdtempSync(join(tmpdir(), 'troupe-backup-refusals-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => join(root, `${name}-${++n}`);

async function refusal(p: Promise<unknown>): Promise<Error & { code: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code: string };
  }
  throw new Error('expected a refusal, but it succeeded');
}

/** A node's data directory with a journal holding one write. */
async function dataDirWithJournal(): Promise<string> {
  const dir = fresh('node');
  const journal = new LmdbJournal({ type: 'lmdb', path: join(dir, 'journal') });
  await journal.write({ kind: 'c', key: 'k', events: [{ seq: 1, v: 1, event: { add: 1 } }] });
  await journal.close();
  return dir;
}

describe('backup refuses', () => {
  it('a data directory that does not exist, naming --data-dir, and creates nothing', async () => {
    const dir = fresh('missing');
    const to = fresh('to');
    const e = await refusal(backup({ type: 'lmdb', path: join(dir, 'journal') }, to));
    expect(e.code).toBe('ERR_NOT_A_DATA_DIR');
    expect(e.message).toBe(`--data-dir ${dir}: no troupe journal there (expected ${dir}/journal/data.mdb)`);
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(to)).toBe(false);
  });

  it('a directory that exists but holds no journal, and leaves it empty', async () => {
    const dir = fresh('empty');
    mkdirSync(dir);
    const e = await refusal(backup({ type: 'lmdb', path: join(dir, 'journal') }, fresh('to')));
    expect(e.code).toBe('ERR_NOT_A_DATA_DIR');
    expect(existsSync(join(dir, 'journal'))).toBe(false);
  });

  it('a data.mdb that is not LMDB (without crashing the process on it)', async () => {
    const dir = fresh('garbage');
    mkdirSync(join(dir, 'journal'), { recursive: true });
    writeFileSync(join(dir, 'journal', 'data.mdb'), Buffer.alloc(8192, 0x41));
    const e = await refusal(backup({ type: 'lmdb', path: join(dir, 'journal') }, fresh('to')));
    expect(e.code).toBe('ERR_NOT_A_DATA_DIR');
    expect(e.message).toBe(`--data-dir ${dir}: ${dir}/journal/data.mdb is not an LMDB file`);
  });

  it('an LMDB environment that is not a troupe journal (no journal-format marker)', async () => {
    const dir = fresh('foreign');
    const env = open({ path: join(dir, 'journal') });
    await env.put('someone', 'else');
    await env.close();
    const to = fresh('to');
    const e = await refusal(backup({ type: 'lmdb', path: join(dir, 'journal') }, to));
    expect(e.code).toBe('ERR_NOT_A_DATA_DIR');
    expect(e.message).toMatch(/not a troupe journal/);
    expect(existsSync(to)).toBe(false);
  });

  it('`troupe backup --data-dir <missing>` exits non-zero with one line naming the flag, creating nothing', async () => {
    const dir = fresh('cli-missing');
    const to = fresh('cli-to');
    const child = spawn(process.execPath, [troupeBin, 'backup', '--data-dir', dir, '--to', to], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).not.toBe(0);
    expect(stderr.trim().split('\n'), stderr).toHaveLength(1);
    expect(stderr).toContain(`--data-dir ${dir}: no troupe journal there (expected ${dir}/journal/data.mdb)`);
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(to)).toBe(false);
  }, 30_000);
});

describe('backup while a node holds the lock', () => {
  it('is a hot backup: it works while the data directory is locked and its journal written', async () => {
    const dir = await dataDirWithJournal();
    const lock = await lockDataDir(dir);
    const journal = new LmdbJournal({ type: 'lmdb', path: join(dir, 'journal') });
    try {
      await journal.write({ kind: 'c', key: 'k', events: [{ seq: 2, v: 1, event: { add: 2 } }] });
      const to = fresh('hot');
      await backup({ type: 'lmdb', path: join(dir, 'journal') }, to);
      expect(statSync(join(to, 'data.mdb')).size).toBeGreaterThan(0);
    } finally {
      await journal.close();
      await lock.release();
    }
  });
});

describe('restore refuses', () => {
  it.each([
    { name: 'a --from that does not exist', make: (_dir: string) => undefined, why: (d: string) => `not a troupe backup (expected ${d}/data.mdb)` },
    {
      name: 'a --from whose data.mdb is not LMDB',
      make: (dir: string) => (mkdirSync(dir), writeFileSync(join(dir, 'data.mdb'), 'not a database')),
      why: (d: string) => `${d}/data.mdb is not an LMDB file`,
    },
  ])('$name, naming --from, and creates no target', async ({ make, why }) => {
    const from = fresh('from');
    make(from);
    const target = fresh('target');
    const e = await refusal(restore(from, join(target, 'journal')));
    expect(e.code).toBe('ERR_NOT_A_DATA_DIR');
    expect(e.message).toBe(`--from ${from}: ${why(from)}`);
    expect(existsSync(target)).toBe(false);
  });

  it('a data directory that already has a journal unless forced', async () => {
    const source = await dataDirWithJournal();
    // One more event than the target holds, so the restored journal is recognisably the source's.
    const more = new LmdbJournal({ type: 'lmdb', path: join(source, 'journal') });
    await more.write({ kind: 'c', key: 'k', events: [{ seq: 2, v: 1, event: { add: 2 } }] });
    await more.close();
    const copy = fresh('copy');
    await backup({ type: 'lmdb', path: join(source, 'journal') }, copy);
    const target = await dataDirWithJournal();
    const before = readFileSync(join(target, 'journal', 'data.mdb'));
    const e = await refusal(restore(copy, join(target, 'journal')));
    expect(e.code).toBe('ERR_JOURNAL_WRITE');
    expect(e.message).toContain(`--data-dir ${target} already holds an environment`);
    expect(readFileSync(join(target, 'journal', 'data.mdb')).equals(before)).toBe(true);
    await restore(copy, join(target, 'journal'), { overwrite: true });
    // The backup's contents, plus the mark replication reads at the next start (a restored store
    // is behind what its node acknowledged since: its partitions start unclean).
    const restored = new LmdbJournal({ type: 'lmdb', path: join(target, 'journal') });
    expect((await restored.read('c', 'k')).events.map((e) => e.event)).toEqual([{ add: 1 }, { add: 2 }]);
    await restored.close();
    const env = open({ path: join(target, 'journal'), maxDbs: 8, readOnly: true });
    expect(env.openDB('meta', {}).get(REPLICATION_BOOT_KEY)).toBe(RESTORED_FROM_BACKUP);
    await env.close();
  });

  it('a data directory a running node holds, even when forced, and leaves its journal untouched', async () => {
    const source = await dataDirWithJournal();
    const copy = fresh('copy');
    await backup({ type: 'lmdb', path: join(source, 'journal') }, copy);
    const target = await dataDirWithJournal();
    const before = readFileSync(join(target, 'journal', 'data.mdb'));
    const lock = await lockDataDir(target);
    try {
      const e = await refusal(restore(copy, join(target, 'journal'), { overwrite: true }));
      expect(e.code).toBe('ERR_DATA_DIR_IN_USE');
      expect(e.message).toContain(`data directory ${target} is in use by pid ${process.pid}`);
      expect(readFileSync(join(target, 'journal', 'data.mdb')).equals(before)).toBe(true);
    } finally {
      await lock.release();
    }
    // Released: the same restore goes through.
    await restore(copy, join(target, 'journal'), { overwrite: true });
  });
});
