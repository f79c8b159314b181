import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { LmdbJournal } from '../../src/persistence/lmdb-journal.ts';

const root = mkdtempSync(join(tmpdir(), 'troupe-threads-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// `execArgv: ['--import', 'tsx']` does not reach a bare Worker's entry on Node 20 ("Unknown file
// extension .ts"), so a one-line JS entry registers tsx in the thread, then imports the fixture.
// (An eval'd entry resolves 'tsx/esm/api' from the working directory: the repo root under vitest.)
const fixture = new URL('./fixtures/thread-writer.ts', import.meta.url).href;
const entry = `import('tsx/esm/api').then((tsx) => tsx.register()).then(() => import(${JSON.stringify(fixture)}))`;

function runThread(job: { path: string; thread: number; actors: number; writes: number }): Promise<{ thread: number; contested: string }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(entry, { eval: true, workerData: job });
    const deadline = setTimeout(() => {
      void worker.terminate();
      reject(new Error(`thread ${job.thread} did not finish within 15 s`));
    }, 15_000);
    worker.once('message', (m: { thread: number; contested: string }) => {
      clearTimeout(deadline);
      resolve(m);
    });
    worker.once('error', (e) => {
      clearTimeout(deadline);
      reject(e);
    });
  });
}

describe('LmdbJournal across worker threads', () => {
  it('shares one environment between threads; continuity holds across them', async () => {
    const path = join(root, 'env');
    const actors = 100;
    const writes = 10;
    const threads = 3;
    const results = await Promise.all(Array.from({ length: threads }, (_, thread) => runThread({ path, thread, actors, writes })));
    // Exactly one thread gets seq 1 of the contested actor: the check runs inside the transaction.
    expect(results.filter((r) => r.contested === 'won').length).toBe(1);
    expect(results.filter((r) => r.contested === 'refused').length).toBe(threads - 1);

    const journal = new LmdbJournal({ type: 'lmdb', path });
    try {
      const winner = results.find((r) => r.contested === 'won')!.thread;
      expect((await journal.read('thread', 'contested')).events).toEqual([{ seq: 1, v: 1, event: { winner } }]);
      for (let thread = 0; thread < threads; thread++) {
        for (let a = 0; a < actors; a++) {
          const h = await journal.read('thread', `t${thread}-a${a}`);
          expect(h.events.map((e) => e.seq)).toEqual(Array.from({ length: writes }, (_, i) => i + 1));
          expect(h.replies.length).toBe(writes);
        }
      }
    } finally {
      await journal.close();
    }
  }, 20_000);
});
