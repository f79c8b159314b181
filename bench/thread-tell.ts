/**
 * Cross-thread tell throughput: N `tell(counter, k<i % 1000>, incr {by:1})` from the main thread
 * through a Supervisor (1 worker, then 2), timed until a `get` ask on each of the 1,000 keys has
 * answered (FIFO per sender→actor: every earlier tell was handled) and the counts add up.
 *
 * Baseline in the same run: raw `worker_threads` Workers fed flat batches of 256 records of the
 * same payload ([kind, key, command, {by:1}]) over a MessagePort, counting per key in a Map and
 * acknowledging at the end. Rounds alternate subject and baseline; medians are reported.
 * Target: troupe ≥ 60% of raw msg/s (1 and 2 workers). Runs ~12 s.
 *
 *   node --import tsx bench/thread-tell.ts [--n 1000000] [--rounds 5]
 */
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import type { Supervisor } from '../src/supervisor/supervisor.ts';
import { check, fixed, int, machineLine, main, median, now, printResult, row, si, startDemoSupervisor, verdict } from './lib.ts';

const { values: args } = parseArgs({
  options: { n: { type: 'string', default: '1000000' }, rounds: { type: 'string', default: '5' } },
});
const N = Number(args.n);
const ROUNDS = Number(args.rounds);
const KEYS = 1000;
const TARGET = 0.6;
const keys = Array.from({ length: KEYS }, (_, i) => `k${i}`);

// ── troupe ──────────────────────────────────────────────────────────────────────────────────

/** Main-thread ms spent in the send loops of the last round (the rest is waiting for the worker). */
let lastSendMs = 0;

/** Sends n tells, then asks `get` on every key; returns msg/s. `expectedTotal` is the running sum. */
async function troupeRound(s: Supervisor, n: number, expectedTotal: number): Promise<number> {
  const t0 = now();
  for (let i = 0; i < n; i++) s.tell('counter', keys[i % KEYS]!, { command: 'incr', input: { by: 1 } });
  lastSendMs = now() - t0;
  const replies = (await Promise.all(keys.map((k) => s.ask('counter', k, { command: 'get' }, { timeoutMs: 60_000 })))) as { n: number }[];
  const elapsed = (now() - t0) / 1000;
  const sum = replies.reduce((a, r) => a + r.n, 0);
  check(sum === expectedTotal, `counts sum to ${sum}, expected ${expectedTotal} (lost or duplicated tells)`);
  return n / elapsed;
}

// ── raw baseline ────────────────────────────────────────────────────────────────────────────

const BATCH = 256;
// Counts per key like the actor does; `end` acknowledges with the total it saw.
const rawWorkerSource = `
const { parentPort } = require('node:worker_threads');
const counts = new Map();
let total = 0;
parentPort.on('message', (m) => {
  if (m === 'end') { parentPort.postMessage(total); return; }
  for (let i = 0; i < m.length; i += 4) {
    const key = m[i + 1];
    counts.set(key, (counts.get(key) ?? 0) + m[i + 3].by);
    total++;
  }
});
`;

class RawWorkers {
  readonly workers: Worker[];
  constructor(count: number) {
    this.workers = Array.from({ length: count }, () => new Worker(rawWorkerSource, { eval: true }));
  }
  async ready(): Promise<void> {
    await Promise.all(this.workers.map((w) => new Promise((r) => w.once('online', r))));
  }
  /** Same payload as troupe's tell, one flat batch of 256 records per postMessage (per worker). */
  async round(n: number, expectedTotal: number): Promise<number> {
    const w = this.workers.length;
    const batches: unknown[][] = this.workers.map(() => []);
    const t0 = now();
    for (let i = 0; i < n; i++) {
      const k = i % KEYS;
      const slot = k % w;
      const b = batches[slot]!;
      b.push('counter', keys[k], 'incr', { by: 1 });
      if (b.length === BATCH * 4) {
        this.workers[slot]!.postMessage(b);
        batches[slot] = [];
      }
    }
    for (let slot = 0; slot < w; slot++) if (batches[slot]!.length > 0) this.workers[slot]!.postMessage(batches[slot]);
    lastSendMs = now() - t0;
    const totals = await Promise.all(
      this.workers.map((wk) => {
        const p = new Promise<number>((r) => wk.once('message', r));
        wk.postMessage('end');
        return p;
      }),
    );
    const elapsed = (now() - t0) / 1000;
    const sum = totals.reduce((a, b) => a + b, 0);
    check(sum === expectedTotal, `raw workers counted ${sum}, expected ${expectedTotal}`);
    return n / elapsed;
  }
  async stop(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

// ── run ─────────────────────────────────────────────────────────────────────────────────────

interface Comparison {
  troupe: number;
  raw: number;
  troupeRounds: number[];
  rawRounds: number[];
  /** Median share of each round's wall time the main thread spent in its send loop. */
  troupeSendShare: number;
  rawSendShare: number;
}

async function compare(workers: number): Promise<Comparison> {
  const s = await startDemoSupervisor(workers);
  const raw = new RawWorkers(workers);
  await raw.ready();
  let troupeTotal = 0;
  let rawTotal = 0;
  // Warm-up: activates the 1,000 actors and lets both sides' JIT settle.
  for (let i = 0; i < 2; i++) {
    troupeTotal += N / 5;
    await troupeRound(s, N / 5, troupeTotal);
    rawTotal += N / 5;
    await raw.round(N / 5, rawTotal);
  }
  const troupeRounds: number[] = [];
  const rawRounds: number[] = [];
  const troupeShare: number[] = [];
  const rawShare: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate which goes first so a noisy neighbour does not always hit the same side.
    const order = r % 2 === 0 ? ['troupe', 'raw'] : ['raw', 'troupe'];
    for (const who of order) {
      if (who === 'troupe') {
        troupeTotal += N;
        const rate = await troupeRound(s, N, troupeTotal);
        troupeRounds.push(rate);
        troupeShare.push(lastSendMs / ((N / rate) * 1000));
      } else {
        rawTotal += N;
        const rate = await raw.round(N, rawTotal);
        rawRounds.push(rate);
        rawShare.push(lastSendMs / ((N / rate) * 1000));
      }
    }
  }
  await s.stop();
  await raw.stop();
  return {
    troupe: median(troupeRounds),
    raw: median(rawRounds),
    troupeRounds,
    rawRounds,
    troupeSendShare: median(troupeShare),
    rawSendShare: median(rawShare),
  };
}

main(async () => {
  console.log(`thread-tell: ${int(N)} tells over ${KEYS} counter keys per round, ${ROUNDS} rounds (median), ${machineLine()}`);
  const results: Record<string, unknown> = { bench: 'thread-tell', n: N, rounds: ROUNDS, target: TARGET };
  let pass = true;
  for (const workers of [1, 2]) {
    const r = await compare(workers);
    const ratio = r.troupe / r.raw;
    pass &&= ratio >= TARGET;
    console.log(`\n${workers} worker${workers > 1 ? 's' : ''}:`);
    console.log(row('  troupe Supervisor.tell', `${si(r.troupe)}msg/s`, `rounds ${r.troupeRounds.map((x) => si(x)).join(', ')}`));
    console.log(row('  raw MessagePort, batches of 256', `${si(r.raw)}msg/s`, `rounds ${r.rawRounds.map((x) => si(x)).join(', ')}`));
    const share = (x: number) => `${fixed(100 * x, 0)}%`;
    console.log(
      row(
        '  main thread sending, % of round',
        `troupe ${share(r.troupeSendShare)}`,
        `raw ${share(r.rawSendShare)}`,
        '(rest: waiting on workers)',
      ),
    );
    console.log(row('  ratio troupe / raw', `${fixed(ratio, 3)}`, `target ≥ ${TARGET}`, verdict(ratio >= TARGET)));
    results[`w${workers}`] = {
      troupeMsgPerSec: Math.round(r.troupe),
      rawMsgPerSec: Math.round(r.raw),
      ratio: Number(ratio.toFixed(3)),
      troupeSendShare: Number(r.troupeSendShare.toFixed(3)),
      rawSendShare: Number(r.rawSendShare.toFixed(3)),
    };
  }
  console.log(`\n${machineLine()}; figures are noisy on a shared 2-core box`);
  printResult({ ...results, pass });
});
