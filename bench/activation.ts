/**
 * Activation latency: `journal.read()` of an actor with a snapshot and 100 events after it,
 * p50/p99 over many actors, against raw lmdb-js `getRange` of the same number of records.
 *
 *   node --import tsx bench/activation.ts [actors] [eventsAfterSnapshot]
 *
 * Each actor's history: events 1..10, a snapshot at 10 (~200 B state), then 100 more events in
 * writes of 10, each write recording one reply; so `read` returns 1 snapshot + 100 events + 11
 * replies. The raw side stores 112 records per actor in one database of a fresh environment and
 * reads them back with one getRange. Actors are read in a shuffled order, the same for both.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { systemClock } from '../src/core/clock.ts';
import { LmdbJournal } from '../src/persistence/lmdb-journal.ts';
import { percentile, printResult } from './lib.ts';

const ACTORS = Number(process.argv[2] ?? 2_000);
const EVENTS = Number(process.argv[3] ?? 100);
const PER_WRITE = 10;
const KIND = 'cart';

const event = (seq: number) => ({ type: 'item-added', sku: `sku-${String(seq).padStart(6, '0')}`, qty: 2, price: 1999, currency: 'EUR' });
const state = (a: number) => ({
  owner: `user-${a}`,
  items: Array.from({ length: 8 }, (_, i) => ({ sku: `sku-${i}`, qty: i })),
  total: 12345,
});

function shuffled(n: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let x = 0x9e3779b9; // fixed seed: same order every run
  for (let i = n - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) >>> 0;
    const j = x % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

function summary(latencies: number[]): string {
  const s = latencies.slice().sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
  return `p50 ${(at(50) * 1000).toFixed(0)} µs  p99 ${(at(99) * 1000).toFixed(0)} µs`;
}

const base = mkdtempSync(join(tmpdir(), 'troupe-bench-activation-'));
try {
  const journal = new LmdbJournal({ type: 'lmdb', path: join(base, 'journal'), durability: 'commit' });
  const rawRoot = open({ path: join(base, 'raw'), maxDbs: 2 });
  const raw = rawRoot.openDB('records', {});

  // Populate both, all actors at once (writes batch into few transactions).
  const writes: Promise<unknown>[] = [];
  for (let a = 0; a < ACTORS; a++) {
    const key = `actor-${a}`;
    writes.push(
      journal.write({
        kind: KIND,
        key,
        events: Array.from({ length: 10 }, (_, i) => ({ seq: i + 1, v: 1, event: event(i + 1) })),
        snapshot: { seq: 10, v: 1, state: state(a) },
        replies: [{ msgId: `${key}-0`, ok: true }],
      }),
    );
    for (let from = 11; from <= 10 + EVENTS; from += PER_WRITE) {
      writes.push(
        journal.write({
          kind: KIND,
          key,
          events: Array.from({ length: Math.min(PER_WRITE, 11 + EVENTS - from) }, (_, i) => ({
            seq: from + i,
            v: 1,
            event: event(from + i),
          })),
          replies: [{ msgId: `${key}-${from}`, ok: true, value: from }],
        }),
      );
    }
    let i = 0;
    writes.push(raw.put([key, i++], [10, 1, state(a)]));
    for (let seq = 11; seq <= 10 + EVENTS; seq++) writes.push(raw.put([key, i++], [1, event(seq)]));
    for (let r = 0; r < Math.ceil(EVENTS / PER_WRITE) + 1; r++) writes.push(raw.put([key, i++], [`${key}-${r}`, true, r, undefined]));
  }
  await Promise.all(writes);

  const order = shuffled(ACTORS);
  const journalLatencies: number[] = [];
  const rawLatencies: number[] = [];
  let records = 0;
  let rawRecords = 0;
  for (const a of order) {
    const key = `actor-${a}`;
    const t0 = systemClock.now();
    const h = await journal.read(KIND, key);
    journalLatencies.push(systemClock.now() - t0);
    records += (h.snapshot ? 1 : 0) + h.events.length + h.replies.length;

    const t1 = systemClock.now();
    const got: unknown[] = [];
    for (const { value } of raw.getRange({ start: [key, 0], end: [key, Number.MAX_SAFE_INTEGER] })) got.push(value);
    rawLatencies.push(systemClock.now() - t1);
    rawRecords += got.length;
  }
  console.log(
    `activation: ${ACTORS.toLocaleString('en-US')} actors, each snapshot + ${EVENTS} events + replies ` +
      `(${(records / ACTORS).toFixed(0)} records per read; raw ${(rawRecords / ACTORS).toFixed(0)})`,
  );
  console.log(`journal.read()   ${summary(journalLatencies)}`);
  console.log(`raw getRange     ${summary(rawLatencies)}`);
  const us = (latencies: number[], p: number) =>
    Math.round(
      percentile(
        latencies.slice().sort((a, b) => a - b),
        p,
      ) * 1000,
    );
  const jp50 = us(journalLatencies, 50);
  const rp50 = us(rawLatencies, 50);
  printResult({
    bench: 'activation',
    actors: ACTORS,
    eventsAfterSnapshot: EVENTS,
    journal: { p50Us: jp50, p99Us: us(journalLatencies, 99) },
    raw: { p50Us: rp50, p99Us: us(rawLatencies, 99) },
    p50Ratio: Number((jp50 / Math.max(1, rp50)).toFixed(3)),
  });
  await journal.close();
  await rawRoot.close();
} finally {
  rmSync(base, { recursive: true, force: true });
}
