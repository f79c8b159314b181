import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LmdbJournal } from '../../src/persistence/lmdb-journal.ts';

const root = mkdtempSync(join(tmpdir(), 'troupe-crash-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ACTORS = 64; // as in fixtures/writer.ts
const SNAPSHOT_EVERY = 25;
const KILL_AFTER_ACKS = 2000;

describe('LmdbJournal after SIGKILL', () => {
  it('keeps every acknowledged write, none doubled, logs contiguous, and opens without repair', async () => {
    const dir = join(root, 'env');
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/persistence/fixtures/writer.ts', dir], {
      cwd: process.cwd(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked = new Array<number>(ACTORS).fill(0);
    let acks = 0;
    let stderr = '';
    let partial = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));

    // Every ack the child printed before it died, read to the end of the pipe.
    const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('close', (code, signal) => resolve({ code, signal })),
    );
    const enoughAcks = new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`only ${acks} acks within 15 s; stderr: ${stderr}`)), 15_000);
      child.stdout.on('data', (d: Buffer) => {
        const lines = (partial + d.toString()).split('\n');
        partial = lines.pop()!;
        for (const line of lines) {
          const [word, a, s] = line.split(' ');
          if (word !== 'ack') continue;
          const actor = Number(a);
          const seq = Number(s);
          acked[actor] = Math.max(acked[actor]!, seq);
          acks++;
        }
        if (acks >= KILL_AFTER_ACKS) {
          clearTimeout(deadline);
          resolve();
        }
      });
      child.on('close', () => {
        clearTimeout(deadline);
        if (acks < KILL_AFTER_ACKS) reject(new Error(`writer exited after ${acks} acks; stderr: ${stderr}`));
      });
    });
    try {
      await enoughAcks;
    } finally {
      child.kill('SIGKILL');
    }
    const { signal } = await closed;
    expect(signal).toBe('SIGKILL');
    expect(acks).toBeGreaterThanOrEqual(KILL_AFTER_ACKS);

    // Opens straight away: no repair step, no stale-lock error.
    const journal = new LmdbJournal({ type: 'lmdb', path: dir });
    try {
      let total = 0;
      for (let actor = 0; actor < ACTORS; actor++) {
        const events = await journal.readEvents('crash', `a${actor}`);
        const n = events.length;
        total += n;
        expect(
          events.map((e) => e.seq),
          `actor ${actor}`,
        ).toEqual(Array.from({ length: n }, (_, i) => i + 1));
        expect(n, `actor ${actor} lost acknowledged writes`).toBeGreaterThanOrEqual(acked[actor]!);
        for (const e of events) expect(e.event).toEqual({ actor, seq: e.seq });

        const h = await journal.read('crash', `a${actor}`);
        // Replies: one per write, newest last, none twice.
        const ids = h.replies.map((r) => r.msgId);
        expect(new Set(ids).size).toBe(ids.length);
        if (n > 0) expect(ids[ids.length - 1]).toBe(`a${actor}:${n}`);
        expect(ids.length).toBe(Math.min(n, 128));
        // The snapshot is the one of its seq and matches its events.
        const snapSeq = Math.floor(n / SNAPSHOT_EVERY) * SNAPSHOT_EVERY;
        if (snapSeq === 0) {
          expect(h.snapshot).toBeUndefined();
        } else {
          expect(h.snapshot).toEqual({ seq: snapSeq, v: 1, state: { sum: (snapSeq * (snapSeq + 1)) / 2 } });
        }
        expect(h.events.map((e) => e.seq)).toEqual(Array.from({ length: n - snapSeq }, (_, i) => snapSeq + i + 1));
      }
      expect(total).toBeGreaterThanOrEqual(acks);
      // And it takes writes where each log ends.
      const next = (await journal.readEvents('crash', 'a0')).length + 1;
      await journal.write({ kind: 'crash', key: 'a0', events: [{ seq: next, v: 1, event: { actor: 0, seq: next } }] });
    } finally {
      await journal.close();
    }
  }, 20_000);
});
