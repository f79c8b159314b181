import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isTroupeError } from '../../src/core/errors.ts';
import { backup, restore } from '../../src/persistence/backup.ts';
import { LmdbJournal } from '../../src/persistence/lmdb-journal.ts';

const root = mkdtempSync(join(tmpdir(), 'troupe-backup-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ACTORS = 50;
const WRITES_PER_ACTOR = 60;
const SNAPSHOT_EVERY = 10;
const IN_FLIGHT = 100;

/** Writes actor logs round-robin with a bounded number in flight; `acked[a]` = last acked seq. */
function writeLoop(journal: LmdbJournal, acked: number[], onAck: (acks: number) => void): { done: Promise<void>; acks: () => number } {
  const next = new Array<number>(ACTORS).fill(0);
  const sums = new Array<number>(ACTORS).fill(0);
  const total = ACTORS * WRITES_PER_ACTOR;
  let issued = 0;
  let inFlight = 0;
  let acks = 0;
  const done = new Promise<void>((resolve, reject) => {
    const pump = (): void => {
      while (inFlight < IN_FLIGHT && issued < total) {
        const a = issued % ACTORS;
        const seq = ++next[a]!;
        sums[a]! += seq;
        issued++;
        inFlight++;
        journal
          .write({
            kind: 'acct',
            key: `a${a}`,
            events: [{ seq, v: 1, event: { add: seq } }],
            replies: [{ msgId: `a${a}:${seq}`, ok: true }],
            ...(seq % SNAPSHOT_EVERY === 0 ? { snapshot: { seq, v: 1, state: { sum: sums[a] } } } : {}),
          })
          .then(() => {
            acked[a] = Math.max(acked[a]!, seq);
            acks++;
            inFlight--;
            onAck(acks);
            if (acks === total) resolve();
            else pump();
          }, reject);
      }
    };
    pump();
  });
  return { done, acks: () => acks };
}

describe('hot backup and restore', () => {
  it('copies a consistent state while writes go on, with every write acknowledged before it', async () => {
    const source = join(root, 'live');
    const journal = new LmdbJournal({ type: 'lmdb', path: source });
    const acked = new Array<number>(ACTORS).fill(0);
    // Start the backup once the loop is well under way: on that ack, with a deadline.
    let underWay!: () => void;
    const started = new Promise<void>((resolve) => (underWay = resolve));
    const loop = writeLoop(journal, acked, (acks) => {
      if (acks === (ACTORS * WRITES_PER_ACTOR) / 3) underWay();
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      started,
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`only ${loop.acks()} acks in 10 s`)), 10_000))),
    ]).finally(() => clearTimeout(timer));
    const ackedBefore = acked.slice();
    const acksBefore = loop.acks();
    const backupDir = join(root, 'backup-1');
    await backup({ type: 'lmdb', path: source }, backupDir);
    const acksDuring = loop.acks() - acksBefore;
    await loop.done;
    await journal.close();

    // A backup target is never overwritten.
    await expect(backup({ type: 'lmdb', path: source }, backupDir)).rejects.toSatisfy((e) => isTroupeError(e, 'ERR_JOURNAL_WRITE'));

    const restored = join(root, 'restored');
    await restore(backupDir, restored);
    expect(existsSync(join(restored, 'data.mdb'))).toBe(true);
    const copy = new LmdbJournal({ type: 'lmdb', path: restored });
    try {
      let copied = 0;
      for (let a = 0; a < ACTORS; a++) {
        const events = await copy.readEvents('acct', `a${a}`);
        const n = events.length;
        copied += n;
        // A prefix of the log, without gaps, with every write acknowledged before the backup.
        expect(events.map((e) => e.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
        expect(n).toBeGreaterThanOrEqual(ackedBefore[a]!);
        const h = await copy.read('acct', `a${a}`);
        const snapSeq = Math.floor(n / SNAPSHOT_EVERY) * SNAPSHOT_EVERY;
        if (snapSeq > 0) {
          // The snapshot is the one its events produce, from the same commit.
          const sum = events.filter((e) => e.seq <= snapSeq).reduce((s, e) => s + (e.event as { add: number }).add, 0);
          expect(h.snapshot).toEqual({ seq: snapSeq, v: 1, state: { sum } });
        } else {
          expect(h.snapshot).toBeUndefined();
        }
        expect(h.events.map((e) => e.seq)).toEqual(Array.from({ length: n - snapSeq }, (_, i) => snapSeq + i + 1));
        if (n > 0) expect(h.replies[h.replies.length - 1]!.msgId).toBe(`a${a}:${n}`);
      }
      // The loop ran on while the copy was taken, and the copy holds a state in between.
      expect(copied).toBeGreaterThanOrEqual(acksBefore);
      expect(copied).toBeLessThanOrEqual(ACTORS * WRITES_PER_ACTOR);
      expect(acksBefore + acksDuring).toBeLessThanOrEqual(ACTORS * WRITES_PER_ACTOR);
      // The restored environment is a working one.
      const next = (await copy.readEvents('acct', 'a0')).length + 1;
      await copy.write({ kind: 'acct', key: 'a0', events: [{ seq: next, v: 1, event: { add: next } }] });
    } finally {
      await copy.close();
    }
  }, 20_000);

  it('backs up through an open journal too, compacted on request', async () => {
    const journal = new LmdbJournal({ type: 'lmdb', path: join(root, 'live-2') });
    try {
      await journal.write({ kind: 'k', key: 'x', events: [{ seq: 1, v: 1, event: 'e' }] });
      await journal.putMeta('incarnation', 3);
      await journal.backup(join(root, 'backup-2'), { compact: true });
    } finally {
      await journal.close();
    }
    const target = join(root, 'restored-2');
    await restore(join(root, 'backup-2'), target);
    // Restoring over an environment is refused unless asked for.
    await expect(restore(join(root, 'backup-2'), target)).rejects.toSatisfy((e) => isTroupeError(e, 'ERR_JOURNAL_WRITE'));
    await restore(join(root, 'backup-2'), target, { overwrite: true });
    const copy = new LmdbJournal({ type: 'lmdb', path: target });
    try {
      expect((await copy.read('k', 'x')).events).toEqual([{ seq: 1, v: 1, event: 'e' }]);
      expect(await copy.getMeta('incarnation')).toBe(3);
    } finally {
      await copy.close();
    }
  });

  it('names what is wrong with its arguments', async () => {
    await expect(backup({ type: 'memory' }, join(root, 'x'))).rejects.toThrow(/config\.type must be 'lmdb'/);
    await expect(restore(join(root, 'nothing-here'), join(root, 'y'))).rejects.toSatisfy((e) => isTroupeError(e, 'ERR_JOURNAL_READ'));
    await expect(restore('', join(root, 'y'))).rejects.toThrow(/fromDir must be a non-empty string/);
  });
});
