import { mkdtempSync, rmSync, statfsSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTroupeError, type ErrorCode } from '../../src/core/errors.ts';
import type { Logger } from '../../src/core/logger.ts';
import { FailingJournal } from '../../src/persistence/failing-journal.ts';
import type { Journal } from '../../src/persistence/journal.ts';
import { LmdbJournal } from '../../src/persistence/lmdb-journal.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';
import { classifyWriteFailure, FULL_DISK_FREE_BYTES } from '../../src/persistence/storage-errors.ts';
import { SmallDisk } from '../helpers/small-disk.ts';

const root = mkdtempSync(join(tmpdir(), 'troupe-failures-'));
// A 2 MiB file system: the only honest way to see what LMDB does when the disk fills.
const disk = new SmallDisk(join(root, 'small-disk'), '2m');
const mountDir = disk.dir;

beforeAll(() => {
  disk.mount();
});

const open: LmdbJournal[] = [];

afterAll(async () => {
  // A journal left open by a failed assertion would keep the mount busy.
  await Promise.all(open.map((j) => j.close()));
  disk.unmount();
  rmSync(root, { recursive: true, force: true });
});

async function settle(p: Promise<unknown>): Promise<{ ok: true } | { ok: false; error: unknown }> {
  try {
    await p;
    return { ok: true };
  } catch (error) {
    return { ok: false, error };
  }
}

function codeOf(e: unknown): string {
  return isTroupeError(e) ? e.code : String(e);
}

describe('classifyWriteFailure', () => {
  it.each([
    { name: 'ENOSPC', f: { errno: 28, message: 'No space left on device' }, free: undefined, want: 'ERR_STORAGE_FULL' },
    { name: 'EDQUOT', f: { errno: 122, message: 'Disk quota exceeded' }, free: undefined, want: 'ERR_STORAGE_FULL' },
    {
      name: 'MDB_MAP_FULL',
      f: { errno: -30792, message: 'MDB_MAP_FULL: Environment mapsize limit reached' },
      free: undefined,
      want: 'ERR_STORAGE_FULL',
    },
    { name: 'symbolic ENOSPC', f: { errno: 'ENOSPC', message: 'write failed' }, free: undefined, want: 'ERR_STORAGE_FULL' },
    { name: 'EIO (short write) on a full disk', f: { errno: 5, message: 'Input/output error' }, free: 0, want: 'ERR_STORAGE_FULL' },
    {
      name: 'EIO with space left',
      f: { errno: 5, message: 'Input/output error' },
      free: 10 * FULL_DISK_FREE_BYTES,
      want: 'ERR_JOURNAL_WRITE',
    },
    { name: 'EIO, free space unknown', f: { errno: 5, message: 'Input/output error' }, free: undefined, want: 'ERR_JOURNAL_WRITE' },
    { name: 'anything else', f: { errno: 13, message: 'Permission denied' }, free: 0, want: 'ERR_JOURNAL_WRITE' },
  ])('$name → $want', ({ f, free, want }) => {
    expect(classifyWriteFailure(f, free)).toBe(want);
  });
});

describe('LmdbJournal on a full disk (tmpfs)', () => {
  it('rejects with ERR_STORAGE_FULL, applies nothing of a failed write, and recovers without reopening', async (ctx) => {
    // Without mount there is no full disk to hit: lmdb-js grows its map on demand, so a tiny
    // mapSize never yields MDB_MAP_FULL. FailingJournal below still covers the callers' side.
    if (!disk.require((note) => ctx.skip(note), 'LmdbJournal on a full disk')) return;
    const journal = new LmdbJournal({ type: 'lmdb', path: join(mountDir, 'env'), durability: 'flush' });
    open.push(journal);
    const filler = join(mountDir, 'filler');
    // Leave ~600 KiB for the environment.
    const s = statfsSync(mountDir);
    writeFileSync(filler, Buffer.alloc(Math.max(0, s.bavail * s.bsize - 600 * 1024)));

    const actors = 40;
    const payload = 'x'.repeat(3000);
    const acked = new Map<number, number>(); // actor → last acknowledged seq
    let failures: { actor: number; seq: number; error: unknown }[] = [];
    let round = 0;
    // Bounded: 40 actors × ~3 KiB per round fill 600 KiB within ~5 rounds.
    while (failures.length === 0 && round < 50) {
      round++;
      const outcomes = await Promise.all(
        Array.from({ length: actors }, (_, a) =>
          settle(
            journal.write({
              kind: 'blob',
              key: `a${a}`,
              events: [{ seq: round, v: 1, event: { a, round, payload } }],
              replies: [{ msgId: `a${a}-${round}`, ok: true }],
            }),
          ),
        ),
      );
      outcomes.forEach((o, a) => {
        if (o.ok) acked.set(a, round);
        else failures.push({ actor: a, seq: round, error: o.error });
      });
    }
    expect(failures.length, `the disk never filled in ${round} rounds`).toBeGreaterThan(0);
    for (const f of failures) {
      expect(codeOf(f.error)).toBe('ERR_STORAGE_FULL');
      expect((f.error as { details?: Record<string, unknown> }).details?.cause).toBeTypeOf('string');
    }

    // Still full: a write larger than the whole disk fails the same way. (A small retry may
    // succeed: the failed commit's pages are free again and its short write already grew the file.)
    const retry = await settle(
      journal.write({
        kind: 'blob',
        key: 'a0',
        events: [{ seq: (acked.get(0) ?? 0) + 1, v: 1, event: { payload: 'y'.repeat(2 * 1024 * 1024) } }],
      }),
    );
    expect(retry.ok).toBe(false);
    if (!retry.ok) expect(codeOf(retry.error)).toBe('ERR_STORAGE_FULL');

    // Every acknowledged write is there, nothing of a failed one is.
    for (let a = 0; a < actors; a++) {
      const h = await journal.read('blob', `a${a}`);
      const last = acked.get(a) ?? 0;
      expect(h.events.map((e) => e.seq)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
      expect(h.replies.map((r) => r.msgId)).toEqual(Array.from({ length: last }, (_, i) => `a${a}-${i + 1}`));
    }

    // Space comes back: the same journal, not reopened, writes again.
    unlinkSync(filler);
    failures = [];
    await Promise.all(
      Array.from({ length: actors }, (_, a) =>
        journal.write({
          kind: 'blob',
          key: `a${a}`,
          events: [{ seq: (acked.get(a) ?? 0) + 1, v: 1, event: { a, after: true } }],
          replies: [{ msgId: `a${a}-after`, ok: true }],
        }),
      ),
    );
    for (let a = 0; a < actors; a++) {
      const h = await journal.read('blob', `a${a}`);
      expect(h.events.length).toBe((acked.get(a) ?? 0) + 1);
      expect(h.events[h.events.length - 1]!.event).toEqual({ a, after: true });
    }
    await journal.putMeta('after-full', true);
    await journal.close();

    // And it reopens cleanly with everything acknowledged.
    const again = new LmdbJournal({ type: 'lmdb', path: join(mountDir, 'env') });
    open.push(again);
    expect(await again.getMeta('after-full')).toBe(true);
    expect((await again.read('blob', 'a1')).events.length).toBe((acked.get(1) ?? 0) + 1);
    await again.close();
  }, 20_000);
});

describe('LmdbJournal closing on a full disk (tmpfs)', () => {
  it('closes promptly after a failed commit, without waiting for its flush', async (ctx) => {
    if (!disk.require((note) => ctx.skip(note), 'LmdbJournal closing on a full disk')) return;
    const warnings: unknown[] = [];
    const logger = { warn: (...args: unknown[]) => warnings.push(args) } as unknown as Logger;
    const path = join(mountDir, 'env-close');
    const journal = new LmdbJournal({ type: 'lmdb', path }, { logger, closeTimeoutMs: 5_000 });
    open.push(journal);
    const filler = join(mountDir, 'filler-close');
    const s = statfsSync(mountDir);
    writeFileSync(filler, Buffer.alloc(Math.max(0, s.bavail * s.bsize - 300 * 1024)));
    try {
      let failure: unknown;
      for (let seq = 1; seq <= 200 && failure === undefined; seq++) {
        const o = await settle(journal.write({ kind: 'blob', key: 'x', events: [{ seq, v: 1, event: 'z'.repeat(20_000) }] }));
        if (!o.ok) failure = o.error;
      }
      expect(codeOf(failure)).toBe('ERR_STORAGE_FULL');
      // Still full. lmdb-js's own close would wait forever for the failed commit's flush.
      let hung: NodeJS.Timeout | undefined;
      const closed = await Promise.race([
        journal.close().then(() => 'closed'),
        new Promise((r) => (hung = setTimeout(() => r('hung'), 4_000))),
      ]);
      clearTimeout(hung); // else it keeps the worker alive 4 s after the test
      expect(closed).toBe('closed');
      expect(warnings).toEqual([]);
    } finally {
      unlinkSync(filler);
    }
  }, 15_000);
});

describe('FailingJournal', () => {
  const inners: { name: string; make: () => Journal }[] = [
    { name: 'MemoryJournal', make: () => new MemoryJournal() },
    { name: 'LmdbJournal', make: () => new LmdbJournal({ type: 'lmdb', path: join(root, `fj-${Math.random().toString(36).slice(2)}`) }) },
  ];

  describe.each(inners)('around $name', ({ make }) => {
    it('fails the next n writes with the given code and applies nothing of them', async () => {
      const journal = new FailingJournal(make());
      try {
        await journal.write({ kind: 'k', key: 'x', events: [{ seq: 1, v: 1, event: 'a' }] });
        journal.failNextWrites(2, 'ERR_STORAGE_FULL');
        const codes: string[] = [];
        for (let i = 0; i < 2; i++) {
          const o = await settle(
            journal.write({ kind: 'k', key: 'x', events: [{ seq: 2, v: 1, event: 'b' }], replies: [{ msgId: 'm', ok: true }] }),
          );
          codes.push(o.ok ? 'ok' : codeOf(o.error));
        }
        expect(codes).toEqual<ErrorCode[]>(['ERR_STORAGE_FULL', 'ERR_STORAGE_FULL']);
        expect(await journal.read('k', 'x')).toEqual({ events: [{ seq: 1, v: 1, event: 'a' }], replies: [] });
        await journal.write({ kind: 'k', key: 'x', events: [{ seq: 2, v: 1, event: 'b' }] });
        expect(journal.injected).toBe(2);
        expect(journal.passed).toBe(2);
      } finally {
        await journal.close();
      }
    });

    it('is full until told otherwise', async () => {
      const journal = new FailingJournal(make());
      try {
        journal.setFull(true);
        for (let i = 0; i < 3; i++) {
          const o = await settle(journal.write({ kind: 'k', key: 'y', events: [{ seq: 1, v: 1, event: i }] }));
          expect(o.ok ? 'ok' : codeOf(o.error)).toBe('ERR_STORAGE_FULL');
        }
        journal.setFull(false);
        await journal.write({ kind: 'k', key: 'y', events: [{ seq: 1, v: 1, event: 'in' }] });
        expect((await journal.read('k', 'y')).events).toEqual([{ seq: 1, v: 1, event: 'in' }]);
        journal.failNextReads(1);
        const o = await settle(journal.read('k', 'y'));
        expect(o.ok ? 'ok' : codeOf(o.error)).toBe('ERR_JOURNAL_READ');
        expect((await journal.read('k', 'y')).events.length).toBe(1);
      } finally {
        await journal.close();
      }
    });
  });
});
