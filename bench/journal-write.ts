/**
 * Durable, acknowledged writes per second through LmdbJournal against raw lmdb-js `put()`s of
 * the same records, for both durability settings, plus the journal's time to acknowledgement.
 *
 *   node --import tsx bench/journal-write.ts [writes] [actors] [inFlight]
 *
 * Each figure is the median of ROUNDS rounds, journal and raw alternating, so a burst of load
 * from something else on the machine hits both sides alike.
 *
 * Each write is what an actor turn produces: one ~60-byte event and one recorded reply. Writes
 * go round-robin over the actors (so one actor has several writes in flight, as a busy actor
 * pipelining its turns would), with at most `inFlight` unacknowledged. The raw baseline puts the
 * same two records into a fresh environment with lmdb-js defaults and, for 'flush', also waits
 * for `flushed`: the floor the journal's transaction callbacks, continuity checks and reply
 * trimming are measured against.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { pack } from 'msgpackr';
import { systemClock } from '../src/core/clock.ts';
import { LmdbJournal } from '../src/persistence/lmdb-journal.ts';
import { printResult } from './lib.ts';

const WRITES = Number(process.argv[2] ?? 100_000);
const ACTORS = Number(process.argv[3] ?? 10_000);
const IN_FLIGHT = Number(process.argv[4] ?? 5_000);
const KIND = 'cart';

const ROUNDS = 3; // alternating journal/raw rounds; the median damps a noisy shared machine
const event = (seq: number) => ({
  type: 'item-added',
  sku: `sku-${String((seq * 7919) % 100000).padStart(6, '0')}`,
  qty: 2,
  price: 1999,
  currency: 'EUR',
});
const msgId = (a: number, seq: number) => `7${String(a).padStart(9, '0')}${String(seq).padStart(9, '0')}`; // Snowflake-sized

interface Run {
  perSecond: number;
  latencies: number[];
}

/** Issues WRITES writes with at most IN_FLIGHT unacknowledged; `one` returns the ack promise. */
function drive(one: (actor: number, seq: number) => Promise<unknown>): Promise<Run> {
  const seqs = new Array<number>(ACTORS).fill(0);
  const latencies = new Array<number>(WRITES);
  let issued = 0;
  let done = 0;
  const start = systemClock.now();
  return new Promise<Run>((resolve, reject) => {
    const pump = (): void => {
      while (issued < WRITES && issued - done < IN_FLIGHT) {
        const i = issued++;
        const actor = i % ACTORS;
        const seq = ++seqs[actor]!;
        const t0 = systemClock.now();
        one(actor, seq).then(() => {
          latencies[i] = systemClock.now() - t0;
          if (++done === WRITES) resolve({ perSecond: (WRITES * 1000) / (systemClock.now() - start), latencies });
          else pump();
        }, reject);
      }
    };
    pump();
  });
}

async function journalRun(dir: string, durability: 'flush' | 'commit'): Promise<Run> {
  const journal = new LmdbJournal({ type: 'lmdb', path: dir, durability });
  try {
    return await drive((actor, seq) =>
      journal.write({
        kind: KIND,
        key: `actor-${actor}`,
        events: [{ seq, v: 1, event: event(seq) }],
        replies: [{ msgId: msgId(actor, seq), ok: true, value: seq }],
      }),
    );
  } finally {
    await journal.close();
  }
}

async function rawRun(dir: string, durability: 'flush' | 'commit'): Promise<Run> {
  const root = open({ path: dir, maxDbs: 8 });
  const events = root.openDB('events', {});
  const replies = root.openDB('replies', {});
  try {
    return await drive((actor, seq) => {
      const key = `actor-${actor}`;
      const put1 = events.put([KIND, key, seq], [1, event(seq)]);
      const put2 = replies.put([KIND, key, seq], [msgId(actor, seq), true, seq, undefined]);
      if (durability === 'commit') return Promise.all([put1, put2]);
      // Taken at enqueue time, like the journal: the flush of this put's transaction.
      const flushed = new Promise<void>((r) => root.flushed.then(() => r()));
      return Promise.all([put1, put2, flushed]);
    });
  } finally {
    await root.close();
  }
}

function median(runs: Run[]): Run {
  return runs.slice().sort((a, b) => a.perSecond - b.perSecond)[Math.floor(runs.length / 2)]!;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

const base = mkdtempSync(join(tmpdir(), 'troupe-bench-write-'));
try {
  const eventBytes = pack([1, event(12345)]).length;
  console.log(
    `journal-write: ${fmt(WRITES)} writes over ${fmt(ACTORS)} actors, ${fmt(IN_FLIGHT)} in flight; ` +
      `each write = 1 event (${eventBytes} B encoded) + 1 recorded reply; env in ${tmpdir()}`,
  );
  let n = 0;
  const figures: Record<string, unknown> = {};
  for (const durability of ['flush', 'commit'] as const) {
    const journal: Run[] = [];
    const raw: Run[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      journal.push(await journalRun(join(base, `j${n++}`), durability));
      raw.push(await rawRun(join(base, `r${n++}`), durability));
    }
    const j = median(journal);
    const r = median(raw);
    const sorted = j.latencies.slice().sort((a, b) => a - b);
    console.log(
      `durability=${durability.padEnd(6)} journal ${fmt(j.perSecond).padStart(8)} writes/s | raw put ${fmt(r.perSecond).padStart(8)} writes/s | ` +
        `ratio ${((100 * j.perSecond) / r.perSecond).toFixed(0)}% of raw (target >= 25%) | ` +
        `journal ack p50 ${pct(sorted, 50).toFixed(1)} ms p99 ${pct(sorted, 99).toFixed(1)} ms` +
        `  [rounds: journal ${journal.map((x) => fmt(x.perSecond)).join('/')}, raw ${raw.map((x) => fmt(x.perSecond)).join('/')}]`,
    );
    figures[durability] = {
      journalPerSec: Math.round(j.perSecond),
      rawPerSec: Math.round(r.perSecond),
      ratio: Number((j.perSecond / r.perSecond).toFixed(3)),
      ackP50Ms: Number(pct(sorted, 50).toFixed(2)),
      ackP99Ms: Number(pct(sorted, 99).toFixed(2)),
      pass: j.perSecond / r.perSecond >= 0.25,
    };
  }
  printResult({ bench: 'journal-write', writes: WRITES, actors: ACTORS, inFlight: IN_FLIGHT, target: 0.25, ...figures });
} finally {
  rmSync(base, { recursive: true, force: true });
}
