/**
 * Same-thread actor-to-actor tell throughput: an ActorHost in this process (no worker threads,
 * MemoryJournal), P `pinger` actors whose `burst` command tells each of S `sink` counters
 * `perSink` times an `incr {by:1}`. Every sink message is a real handler call that emits an
 * event, applied and written to the journal (one write per turn). Counted: every message
 * handled (bursts + sink incrs), per second of wall time from the first burst until a `get` on
 * every sink has answered (those asks queue behind the tells, so all were handled) and the
 * counts add up.
 *
 * Baseline for context, same run: the same message objects pushed through a plain array queue
 * and read off it in order, one function call per message (increment a per-key count in a Map).
 * Target: ≥ 2M msg/s. Runs ~7 s.
 *
 *   node --import tsx bench/local-tell.ts [--messages 2000000] [--rounds 5]
 */
import { parseArgs } from 'node:util';
import { ActorHost } from '../src/actors/actor-host.ts';
import { defineActor, optionalInt } from '../src/actors/define-actor.ts';
import { ActorRegistry } from '../src/actors/registry.ts';
import { systemClock } from '../src/core/clock.ts';
import { silentLogger } from '../src/core/logger.ts';
import { MemoryJournal } from '../src/persistence/memory-journal.ts';
import { check, fixed, int, machineLine, main, median, now, printResult, row, si, verdict } from './lib.ts';

const { values: args } = parseArgs({
  options: { messages: { type: 'string', default: '2000000' }, rounds: { type: 'string', default: '5' } },
});
const TARGET = 2_000_000;
const ROUNDS = Number(args.rounds);
const PINGERS = 4;
const SINKS = 1000;
const PER_SINK = 25; // tells per sink per burst: a burst is 25,000 tells
const BURST = SINKS * PER_SINK;
// Bursts per pinger per round; per sink at most PINGERS × BURSTS × PER_SINK queue at once, under
// the default mailbox capacity (10,000) at the default message size.
const BURSTS = Math.max(1, Math.round(Number(args.messages) / (PINGERS * BURST)));
const SINK_MESSAGES = PINGERS * BURSTS * BURST;
const HANDLED = SINK_MESSAGES + PINGERS * BURSTS;

const sinkKeys = Array.from({ length: SINKS }, (_, i) => `s${i}`);
const pingerKeys = Array.from({ length: PINGERS }, (_, i) => `p${i}`);
const INCR = { command: 'incr', input: { by: 1 } } as const;

const sink = defineActor({
  kind: 'sink',
  initial: () => ({ n: 0 }),
  apply: (s: { n: number }, e: { by: number }) => ({ n: s.n + e.by }),
  commands: {
    incr: {
      input: (raw) => ({ by: optionalInt(raw, 'by', 1) }),
      handle: (ctx, { by }) => {
        ctx.emit({ by });
        return { n: ctx.state.n };
      },
    },
    get: { readOnly: true, handle: (ctx) => ({ n: ctx.state.n }) },
  },
});

const pinger = defineActor({
  kind: 'pinger',
  initial: () => ({ bursts: 0 }),
  apply: (s: { bursts: number }) => ({ bursts: s.bursts + 1 }),
  commands: {
    burst: {
      handle: (ctx) => {
        for (let r = 0; r < PER_SINK; r++) for (const k of sinkKeys) ctx.tell('sink', k, INCR);
        ctx.emit({});
        return undefined;
      },
    },
  },
});

function newHost(): ActorHost {
  return new ActorHost({
    registry: new ActorRegistry([sink, pinger]),
    journal: new MemoryJournal(),
    clock: systemClock,
    log: silentLogger,
    slot: 0,
    slots: 1,
  });
}

/** One round: BURSTS bursts told to each pinger, then `get` on every sink. Returns handled msg/s. */
async function troupeRound(host: ActorHost, bursts: number, expectedPerSink: number): Promise<number> {
  const before = host.stats().processed;
  const t0 = now();
  for (let b = 0; b < bursts; b++) for (const p of pingerKeys) host.tell('pinger', p, { command: 'burst' });
  // One more burst per pinger, asked: it answers after the told bursts ran (FIFO), so every
  // sink incr is queued before the `get`s below, which therefore see all of them.
  await Promise.all(pingerKeys.map((p) => host.ask('pinger', p, { command: 'burst' })));
  const replies = (await Promise.all(sinkKeys.map((k) => host.ask('sink', k, { command: 'get' }, { timeoutMs: 60_000 })))) as {
    n: number;
  }[];
  const elapsed = (now() - t0) / 1000;
  for (const r of replies) check(r.n === expectedPerSink, `a sink counted ${r.n}, expected ${expectedPerSink}`);
  const handled = host.stats().processed - before;
  return handled / elapsed;
}

/**
 * The same messages through an array queue, one call each. The queue is read by a head index:
 * `Array#shift` on a 25,000-element array leaves V8's fast path and would make the baseline slow.
 */
function baselineRound(messages: number): number {
  const counts = new Map<string, number>();
  const handle = (key: string, m: typeof INCR) => counts.set(key, (counts.get(key) ?? 0) + m.input.by);
  const queue: { key: string; m: typeof INCR }[] = [];
  const t0 = now();
  let handled = 0;
  for (let done = 0; done < messages; done += BURST) {
    for (let r = 0; r < PER_SINK; r++) for (const k of sinkKeys) queue.push({ key: k, m: INCR });
    for (let head = 0; head < queue.length; head++) {
      const e = queue[head]!;
      handle(e.key, e.m);
      handled++;
    }
    queue.length = 0;
  }
  const elapsed = (now() - t0) / 1000;
  check(counts.get('s0') === messages / SINKS, 'baseline lost messages');
  return handled / elapsed;
}

main(async () => {
  console.log(
    `local-tell: ${PINGERS} pingers × ${BURSTS} bursts × ${int(BURST)} tells (${SINKS} sinks) = ${int(SINK_MESSAGES)} sink messages per round, ${ROUNDS} rounds (median), ${machineLine()}`,
  );
  const host = newHost();
  // Warm-up: activates the sinks and JITs the turn loop. Each round adds one extra burst per
  // pinger (the ask that marks the end), so sinks gain (BURSTS + 1) × PER_SINK × PINGERS.
  let perSink = 0;
  for (let i = 0; i < 2; i++) {
    perSink += (1 + 1) * PER_SINK * PINGERS;
    await troupeRound(host, 1, perSink);
    baselineRound(BURST * PINGERS * 2);
  }
  const t: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    perSink += (BURSTS + 1) * PER_SINK * PINGERS;
    t.push(await troupeRound(host, BURSTS, perSink));
    b.push(baselineRound(SINK_MESSAGES));
  }
  const stats = host.stats();
  await host.stop();
  check(stats.deadLetters === 0, `${stats.deadLetters} dead letters`);
  const troupe = median(t);
  const base = median(b);
  console.log(row('troupe ActorHost, tell → handler', `${si(troupe)}msg/s`, `rounds ${t.map((x) => si(x)).join(', ')}`));
  console.log(row('baseline: array queue + call', `${si(base)}msg/s`, `rounds ${b.map((x) => si(x)).join(', ')}`));
  console.log(row('ratio troupe / baseline', fixed(troupe / base, 3), '(context only)'));
  console.log(row('target', `≥ ${si(TARGET)}msg/s`, verdict(troupe >= TARGET)));
  console.log(`${machineLine()}; figures are noisy on a shared 2-core box`);
  printResult({
    bench: 'local-tell',
    handledPerRound: HANDLED,
    rounds: ROUNDS,
    troupeMsgPerSec: Math.round(troupe),
    baselineMsgPerSec: Math.round(base),
    ratio: Number((troupe / base).toFixed(3)),
    target: TARGET,
    pass: troupe >= TARGET,
  });
});
