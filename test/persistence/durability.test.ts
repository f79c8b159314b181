import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ActorHost } from '../../src/actors/actor-host.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { counter } from '../../src/demo/app.ts';
import { LmdbJournal } from '../../src/persistence/lmdb-journal.ts';

const root = mkdtempSync(join(tmpdir(), 'troupe-durability-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/**
 * Holds lmdb-js's flush in front of the journal (its `awaitFlush` test hook) until `release()`,
 * and records when the real `flushed` promise resolved, so a test can tell "acknowledged at the
 * commit" from "acknowledged after the flush".
 */
class FlushGate {
  lmdbFlushed = false;
  waits = 0;
  private opened!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.opened = resolve));

  readonly awaitFlush = (flushed: Promise<void>): Promise<void> => {
    this.waits++;
    return flushed.then(() => {
      this.lmdbFlushed = true;
      return this.gate;
    });
  };

  release(): void {
    this.opened();
  }
}

/** Tracks whether a promise has settled, without awaiting it. */
function track<T>(p: Promise<T>): { done: () => boolean; promise: Promise<T> } {
  let done = false;
  const promise = p.finally(() => (done = true));
  return { done: () => done, promise };
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Gives lmdb-js's write thread time to commit: the next commit of the same environment resolves after ours. */
async function afterCommitOf(journal: LmdbJournal, key: string): Promise<void> {
  await journal.write({ kind: 'probe', key, events: [{ seq: 1, v: 1, event: 'later' }] }).catch(() => undefined);
}

let dirs = 0;
function open(durability: 'flush' | 'commit', gate: FlushGate): LmdbJournal {
  return new LmdbJournal({ type: 'lmdb', path: join(root, `env-${++dirs}`), durability }, { awaitFlush: gate.awaitFlush });
}

const write = (key: string) => ({ kind: 'acct', key, events: [{ seq: 1, v: 1, event: { add: 1 } }] });

describe("durability 'flush' waits for the flush; 'commit' does not", () => {
  it("'flush': write and writeMany resolve only after lmdb-js's flushed promise, and not while the flush is held", async () => {
    const gate = new FlushGate();
    const journal = open('flush', gate);
    try {
      const one = track(journal.write(write('a')));
      const many = track(journal.writeMany(['b', 'c'].map(write)));
      // Committed and visible to reads, yet not acknowledged: the flush is held.
      const probe = new LmdbJournal({ type: 'lmdb', path: journal.path, durability: 'commit' });
      await afterCommitOf(probe, 'p1');
      await probe.close();
      expect((await journal.read('acct', 'a')).events).toHaveLength(1);
      expect(gate.waits).toBeGreaterThanOrEqual(2);
      expect(one.done()).toBe(false);
      expect(many.done()).toBe(false);
      gate.release();
      await one.promise;
      expect(await many.promise).toEqual([null, null]);
      expect(gate.lmdbFlushed).toBe(true); // lmdb-js's own flush came before the acknowledgement
    } finally {
      gate.release();
      await journal.close();
    }
  });

  it("'commit': write and writeMany resolve at the commit, while the flush is still held", async () => {
    const gate = new FlushGate();
    const journal = open('commit', gate);
    try {
      // With the flush held, these would never resolve if 'commit' waited for it.
      await withDeadline(journal.write(write('a')), 5_000, "a 'commit' write");
      expect(await withDeadline(journal.writeMany(['b', 'c'].map(write)), 5_000, "a 'commit' writeMany")).toEqual([null, null]);
      expect(gate.waits).toBe(0); // it never asked for the flush
    } finally {
      gate.release();
      await journal.close();
    }
  });

  it("an actor's reply leaves only after the flush with 'flush', at the commit with 'commit'", async () => {
    for (const durability of ['flush', 'commit'] as const) {
      const gate = new FlushGate();
      const journal = open(durability, gate);
      const host = new ActorHost({ registry: new ActorRegistry([counter]), journal, clock: systemClock, log: silentLogger, slot: 0, slots: 1 });
      try {
        const reply = track(host.ask('counter', 'k', { command: 'incr', input: { by: 2 } }));
        const probe = new LmdbJournal({ type: 'lmdb', path: journal.path, durability: 'commit' });
        await afterCommitOf(probe, 'p1'); // the actor's write is committed by now
        await afterCommitOf(probe, 'p2');
        await probe.close();
        if (durability === 'flush') {
          expect(reply.done(), 'reply before the flush').toBe(false);
          gate.release();
          await expect(reply.promise).resolves.toEqual({ n: 2 });
          expect(gate.lmdbFlushed).toBe(true);
        } else {
          await expect(withDeadline(reply.promise, 5_000, "a reply with 'commit'")).resolves.toEqual({ n: 2 });
          expect(gate.waits).toBe(0);
        }
      } finally {
        gate.release();
        await host.stop();
        await journal.close();
      }
    }
  });
});
