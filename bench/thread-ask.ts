/**
 * Cross-thread ask round trip: sequential asks (one in flight at a time) of `counter.get`
 * through a Supervisor with 1 worker; p50/p99 in µs.
 *
 * Baseline in the same run: a raw MessagePort ping-pong with a worker echoing the same payload
 * (the flat record troupe sends: [op, kind, key, command, input, askId, msgId]), posted directly
 * with no batching. Rounds alternate subject and baseline; medians of the per-round percentiles
 * are reported. Target: troupe p50 ≤ 1.5× raw p50. Runs ~3 s.
 *
 *   node --import tsx bench/thread-ask.ts [--asks 4000] [--rounds 5]
 */
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import type { Supervisor } from '../src/supervisor/supervisor.ts';
import { check, fixed, int, machineLine, main, median, now, percentile, printResult, row, startDemoSupervisor, verdict } from './lib.ts';

const { values: args } = parseArgs({
  options: { asks: { type: 'string', default: '4000' }, rounds: { type: 'string', default: '5' } },
});
const ASKS = Number(args.asks);
const ROUNDS = Number(args.rounds);
const TARGET = 1.5;
const keys = Array.from({ length: 100 }, (_, i) => `k${i}`);

interface Percentiles {
  p50: number;
  p99: number;
}

function summarize(samples: Float64Array): Percentiles {
  samples.sort();
  return { p50: percentile(samples, 50) * 1000, p99: percentile(samples, 99) * 1000 };
}

async function troupeRound(s: Supervisor, n: number): Promise<Percentiles> {
  const samples = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = now();
    const reply = (await s.ask('counter', keys[i % keys.length]!, { command: 'get' }, { timeoutMs: 5_000 })) as { n: number };
    samples[i] = now() - t0;
    if (reply.n !== 1) check(false, `get replied ${JSON.stringify(reply)}, expected {"n":1}`);
  }
  return summarize(samples);
}

const echoSource = `
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (m) => parentPort.postMessage(m));
`;

async function rawRound(w: Worker, n: number): Promise<Percentiles> {
  const samples = new Float64Array(n);
  let resolveReply: (m: unknown[]) => void = () => undefined;
  w.on('message', (m: unknown[]) => resolveReply(m));
  for (let i = 0; i < n; i++) {
    const t0 = now();
    const reply = await new Promise<unknown[]>((r) => {
      resolveReply = r;
      w.postMessage([0, 'counter', keys[i % keys.length], 'get', undefined, i + 1, undefined]);
    });
    samples[i] = now() - t0;
    if (reply[5] !== i + 1) check(false, `echo out of order: ${JSON.stringify(reply)}`);
  }
  w.removeAllListeners('message');
  return summarize(samples);
}

main(async () => {
  console.log(`thread-ask: ${int(ASKS)} sequential asks per round, ${ROUNDS} rounds (median), 1 worker, ${machineLine()}`);
  const s = await startDemoSupervisor(1);
  const echo = new Worker(echoSource, { eval: true });
  await new Promise((r) => echo.once('online', r));

  // Warm-up: activate the keys (one incr each, so `get` answers {n:1}) and JIT both paths.
  await Promise.all(keys.map((k) => s.ask('counter', k, { command: 'incr' })));
  await troupeRound(s, 3_000);
  await rawRound(echo, 3_000);

  const t: Percentiles[] = [];
  const r: Percentiles[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    if (round % 2 === 0) {
      t.push(await troupeRound(s, ASKS));
      r.push(await rawRound(echo, ASKS));
    } else {
      r.push(await rawRound(echo, ASKS));
      t.push(await troupeRound(s, ASKS));
    }
  }
  await s.stop();
  await echo.terminate();

  const troupe = { p50: median(t.map((x) => x.p50)), p99: median(t.map((x) => x.p99)) };
  const raw = { p50: median(r.map((x) => x.p50)), p99: median(r.map((x) => x.p99)) };
  const ratio = troupe.p50 / raw.p50;
  console.log(row('troupe Supervisor.ask(get)', `p50 ${fixed(troupe.p50, 1)} µs`, `p99 ${fixed(troupe.p99, 1)} µs`));
  console.log(row('  per round p50', t.map((x) => fixed(x.p50, 1)).join(', ')));
  console.log(row('raw MessagePort ping-pong', `p50 ${fixed(raw.p50, 1)} µs`, `p99 ${fixed(raw.p99, 1)} µs`));
  console.log(row('  per round p50', r.map((x) => fixed(x.p50, 1)).join(', ')));
  console.log(row('ratio of p50 troupe / raw', fixed(ratio, 2), `target ≤ ${TARGET}`, verdict(ratio <= TARGET)));
  console.log(row('ratio of p99 troupe / raw', fixed(troupe.p99 / raw.p99, 2)));
  console.log(`${machineLine()}; figures are noisy on a shared 2-core box`);
  printResult({
    bench: 'thread-ask',
    asksPerRound: ASKS,
    rounds: ROUNDS,
    troupeP50Us: Number(troupe.p50.toFixed(1)),
    troupeP99Us: Number(troupe.p99.toFixed(1)),
    rawP50Us: Number(raw.p50.toFixed(1)),
    rawP99Us: Number(raw.p99.toFixed(1)),
    ratioP50: Number(ratio.toFixed(3)),
    target: TARGET,
    pass: ratio <= TARGET,
  });
});
