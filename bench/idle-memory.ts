/**
 * Memory per idle resident actor at 100k actors: an ActorHost in this process with the demo
 * `counter` kind; 100k counters activated by one `incr` ask each (in batches), then, once no
 * message is queued and no write is in flight, heapUsed and RSS after several full GCs, minus
 * the same figures before the actors existed, divided by the actor count.
 *
 * The primary figure uses a journal that keeps nothing (its write resolves, its read finds no
 * history), so only actor memory is counted. A second line uses MemoryJournal, whose retained
 * events and recorded state are journal memory, not actor memory: it is reported separately.
 * Baseline for context: a Map of the same 100k keys → `{ n }` objects, same measurement.
 * Target: ≤ 1 KiB per idle actor (heapUsed). Runs ~5 s.
 *
 *   node --expose-gc --import tsx bench/idle-memory.ts [--actors 100000]
 */
import { parseArgs } from 'node:util';
import { ActorHost } from '../src/actors/actor-host.ts';
import { ActorRegistry } from '../src/actors/registry.ts';
import { systemClock } from '../src/core/clock.ts';
import { silentLogger } from '../src/core/logger.ts';
import { counter } from '../src/demo/app.ts';
import type { ActorHistory, ActorWrite, EventRecord, Journal } from '../src/persistence/journal.ts';
import { MemoryJournal } from '../src/persistence/memory-journal.ts';
import { bytes, check, fixed, int, machineLine, main, median, printResult, row, turns, verdict } from './lib.ts';

const { values: args } = parseArgs({ options: { actors: { type: 'string', default: '100000' } } });
const ACTORS = Number(args.actors);
const BATCH = 2_000;
const TARGET = 1024;

/** A journal that keeps nothing: what is left on the heap after a run belongs to the actors. */
class NullJournal implements Journal {
  write(_w: ActorWrite): Promise<void> {
    return Promise.resolve();
  }
  read(_kind: string, _key: string): Promise<ActorHistory> {
    return Promise.resolve({ events: [], replies: [] });
  }
  readFrom(_kind: string, _key: string, _afterSeq: number, _limit: number): Promise<EventRecord[]> {
    return Promise.resolve([]);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const gc = (globalThis as { gc?: () => void }).gc;

interface Mem {
  heap: number;
  rss: number;
}

async function settledMemory(): Promise<Mem> {
  // Several passes: finalizers and weak callbacks of one GC free more in the next.
  for (let i = 0; i < 6; i++) {
    gc!();
    await turns(2);
  }
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

function keyOf(i: number): string {
  return `counter-${i}`; // built fresh each time: the key strings are counted as actor memory
}

interface Measured {
  perActorHeap: number;
  perActorRss: number;
}

/**
 * Activates ACTORS counters on a host with `journal`; returns bytes per actor. The host is
 * stopped and dropped in here: a suspended async caller holding it in a register would keep
 * 100k actors alive into the next measurement's "before".
 */
async function measureHost(journal: Journal): Promise<Measured> {
  const registry = new ActorRegistry([counter]);
  const host = new ActorHost({ registry, journal, clock: systemClock, log: silentLogger, slot: 0, slots: 1 });
  const before = await settledMemory();
  for (let i = 0; i < ACTORS; i += BATCH) {
    const asks: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(ACTORS, i + BATCH); j++) asks.push(host.ask('counter', keyOf(j), { command: 'incr', input: { by: 1 } }));
    const replies = (await Promise.all(asks)) as { n: number }[];
    check(
      replies.every((r) => r.n === 1),
      'an incr did not reply {n:1}',
    );
  }
  // Idle: every reply was released after its write settled; nothing queued, no ask pending.
  await turns(5);
  const stats = host.stats();
  check(stats.resident === ACTORS, `resident ${stats.resident}, expected ${ACTORS}`);
  check(stats.queued === 0 && stats.pendingAsks === 0, `not idle: ${JSON.stringify(stats)}`);
  const after = await settledMemory();
  await host.stop();
  return { perActorHeap: (after.heap - before.heap) / ACTORS, perActorRss: (after.rss - before.rss) / ACTORS };
}

/** Baseline: the same keys in a Map of `{ n }` objects. */
async function measureMap(): Promise<Measured> {
  const before = await settledMemory();
  const map = new Map<string, { n: number }>();
  for (let i = 0; i < ACTORS; i++) map.set(keyOf(i), { n: 1 });
  const after = await settledMemory();
  check(map.size === ACTORS, 'map size');
  return { perActorHeap: (after.heap - before.heap) / ACTORS, perActorRss: (after.rss - before.rss) / ACTORS };
}

main(async () => {
  if (!gc) throw new Error('run with node --expose-gc --import tsx bench/idle-memory.ts');
  console.log(`idle-memory: ${int(ACTORS)} idle counter actors, ${machineLine()}`);
  // Three measurements of each, each in a fresh structure after the previous one is dropped.
  const nullRuns: Measured[] = [];
  const memRuns: Measured[] = [];
  const mapRuns: Measured[] = [];
  for (let r = 0; r < 3; r++) {
    nullRuns.push(await measureHost(new NullJournal()));
    memRuns.push(await measureHost(new MemoryJournal()));
    mapRuns.push(await measureMap());
  }
  const med = (runs: Measured[]) => ({ heap: median(runs.map((m) => m.perActorHeap)), rss: median(runs.map((m) => m.perActorRss)) });
  const actor = med(nullRuns);
  const withJournal = med(memRuns);
  const map = med(mapRuns);
  console.log(row('actor (journal keeps nothing)', `heapUsed ${bytes(actor.heap)}/actor`, `RSS ${bytes(actor.rss)}/actor`));
  console.log(row('  runs (heapUsed)', nullRuns.map((m) => fixed(m.perActorHeap, 0)).join(', ')));
  console.log(row('actor + MemoryJournal', `heapUsed ${bytes(withJournal.heap)}/actor`, `RSS ${bytes(withJournal.rss)}/actor`));
  console.log(
    row('  of which journal', `heapUsed ${bytes(withJournal.heap - actor.heap)}/actor`, '(events kept in memory; not actor memory)'),
  );
  console.log(row('baseline Map<key, { n }>', `heapUsed ${bytes(map.heap)}/entry`, `RSS ${bytes(map.rss)}/entry`));
  console.log(row('ratio actor / Map entry', fixed(actor.heap / map.heap, 2), '(context only)'));
  console.log(row('target', `≤ ${bytes(TARGET)} heapUsed/actor`, verdict(actor.heap <= TARGET)));
  console.log(`${machineLine()}; RSS deltas are coarse (pages, allocator reuse); heapUsed is the figure`);
  printResult({
    bench: 'idle-memory',
    actors: ACTORS,
    actorHeapBytes: Math.round(actor.heap),
    actorRssBytes: Math.round(actor.rss),
    withMemoryJournalHeapBytes: Math.round(withJournal.heap),
    journalHeapBytes: Math.round(withJournal.heap - actor.heap),
    mapEntryHeapBytes: Math.round(map.heap),
    ratio: Number((actor.heap / map.heap).toFixed(3)),
    target: TARGET,
    pass: actor.heap <= TARGET,
  });
});
