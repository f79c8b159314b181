/**
 * The cost of Prometheus metrics (issue 9): the HTTP gateway benchmark against two
 * `troupe start` nodes side by side, identical but for `--no-metrics` on one of them.
 * autocannon (in this process, 50 connections) POSTs `/actors/counter/<key>/incr` with
 * `{"by":1}` over 1,000 keys to one node per round; rounds alternate between the two (on, off,
 * off, on, …) and medians are reported. Meanwhile a scraper GETs `/metrics` of the "on" node
 * every second, as Prometheus would (more often than its 15 s default), so each "on" round
 * carries the hot-path cost (every ask counted and timed) and the scrape cost.
 *
 * Before measuring it checks that the flag reached the node: `/metrics` must answer 404 on the
 * "off" node and Prometheus text (with the ask counter) on the "on" one.
 *
 * Per node: req/s, latency p50/p99, server CPU µs per request (utime + stime of its pid over the
 * round, all threads, /proc), the main thread's share. autocannon takes about one of this box's
 * two cores, so CPU µs/request is the fairer figure. Target: on/off req/s ≥ 0.95 and on/off CPU
 * µs/request ≤ 1.05 (both medians of same-run alternating rounds). Also reported: the scrape's
 * own duration p50/p99 (under load and idle) and the exposition's size.
 *
 * Nodes run the TypeScript sources through tsx (TROUPE_SOURCE=1: the working tree as it is,
 * whatever dist/ holds); `--built` runs dist/ instead (`npm run build` first). Both nodes run
 * the same code either way, so the ratio is fair. Runs ~80 s with the defaults.
 *
 *   node --import tsx bench/metrics-cost.ts [--rounds 8] [--round-seconds 4] [--workers 1] [--built]
 */
import { parseArgs } from 'node:util';
import { NodeMetrics } from '../src/metrics/node-metrics.ts';
import {
  bytes,
  check,
  cleanLoad,
  counterRequests,
  fixed,
  int,
  loadFigures,
  type LoadOptions,
  type LoadTarget,
  machineLine,
  main,
  measureRound,
  median,
  medianOfRounds,
  now,
  percentile,
  positiveInt,
  printResult,
  row,
  startTroupeServer,
  verdict,
  type ServerChild,
} from './lib.ts';

const { values: args } = parseArgs({
  options: {
    // Rounds per node; each node gets this many, alternating with the other.
    rounds: { type: 'string', default: '8' },
    'round-seconds': { type: 'string', default: '4' },
    connections: { type: 'string', default: '50' },
    workers: { type: 'string', default: '1' },
    // How often the scraper reads /metrics of the "on" node, ms (Prometheus' default is 15 s).
    'scrape-every': { type: 'string', default: '1000' },
    built: { type: 'boolean', default: false },
  },
});

const ROUNDS = positiveInt('rounds', args.rounds);
const ROUND_SECONDS = positiveInt('round-seconds', args['round-seconds']);
const CONNECTIONS = positiveInt('connections', args.connections);
const WORKERS = positiveInt('workers', args.workers);
const SCRAPE_EVERY_MS = positiveInt('scrape-every', args['scrape-every']);
const KEYS = 1000;
/** Metrics may cost at most this share of throughput and of CPU per request. */
const TARGET = 0.05;

function startNode(metrics: boolean): Promise<ServerChild> {
  return startTroupeServer({
    label: `troupe node (metrics ${metrics ? 'on' : 'off'})`,
    app: args.built ? './dist/demo/app.js' : './src/demo/app.ts',
    fromSource: !args.built,
    args: ['--workers', String(WORKERS), '--admin-socket', 'none', ...(metrics ? [] : ['--no-metrics'])],
    deadlineMs: 30_000,
  });
}

/** The flag must reach the node: no /metrics route when off, Prometheus text when on. */
async function checkMetricsFlag(on: LoadTarget, off: LoadTarget): Promise<number> {
  const offRes = await fetch(`${off.server.url}/metrics`);
  await offRes.arrayBuffer();
  check(offRes.status === 404, `GET /metrics of the --no-metrics node answered ${offRes.status}, expected 404`);
  const onRes = await fetch(`${on.server.url}/metrics`);
  const text = await onRes.text();
  check(onRes.status === 200, `GET /metrics of the metrics node answered ${onRes.status}, expected 200`);
  check(
    (onRes.headers.get('content-type') ?? '').startsWith('text/plain'),
    `GET /metrics content-type is ${onRes.headers.get('content-type')}`,
  );
  check(/^troupe_asks_total\{/m.test(text), 'GET /metrics after the warm-up has no troupe_asks_total sample');
  return Buffer.byteLength(text);
}

/** GETs /metrics every `everyMs`, recording each scrape's duration (ms) and size (bytes). */
class Scraper {
  readonly samples: Array<{ ms: number; bytes: number; underLoad: boolean }> = [];
  underLoad = false;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private failure: Error | undefined;

  constructor(
    private readonly url: string,
    private readonly everyMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running = this.running.then(() => this.scrape());
    }, this.everyMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
    if (this.failure) throw this.failure;
  }

  private async scrape(): Promise<void> {
    const underLoad = this.underLoad;
    const t0 = now();
    try {
      const res = await fetch(`${this.url}/metrics`);
      const body = await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`scrape answered ${res.status}`);
      this.samples.push({ ms: now() - t0, bytes: body.byteLength, underLoad });
    } catch (e) {
      this.failure ??= e instanceof Error ? e : new Error(String(e));
    }
  }
}

const requests = counterRequests(KEYS);
const roundOf = (seconds: number): LoadOptions => ({ connections: CONNECTIONS, seconds, requests });

/**
 * The same costs without the noise of a shared box: in this process, an ask wrapped by
 * `NodeMetrics.timeAsk` (what the gateway does per request with metrics on) against the bare
 * ask, alternating rounds of `n` asks; and `text()`, a scrape's exposition, with one worker's
 * stats. The difference per ask, over the server's CPU per request, is the share metrics must
 * add; the scrape's time ÷ requests per scrape interval is what scraping adds per request.
 *
 * A third variant counts the same figures by hand (a Map per kind and outcome, a Float64Array of
 * buckets, read at scrape time the way node-metrics.ts reads the worker counters): what the
 * per-ask cost would be without prom-client's labelled `inc`/`observe` on the hot path.
 */
async function inProcessCosts(n = 200_000, rounds = 5): Promise<{ bareNs: number; timedNs: number; handNs: number; textMs: number }> {
  const stats = {
    slot: 0,
    resident: 1000,
    byKind: { counter: 1000 },
    queued: 0,
    pendingAsks: 0,
    processed: 1,
    activated: 1,
    restarts: 0,
    escalations: 0,
    deadLetters: 0,
    passivated: 0,
    evicted: 0,
  };
  const metrics = new NodeMetrics({ node: 0, kinds: ['counter', 'cart'], workers: async () => [stats], members: () => [] });
  const reply = { n: 1 };
  const ask = () => Promise.resolve(reply);
  const bounds = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  const byKind = new Map<string, { ok: number; outcomes: Map<string, number>; buckets: Float64Array; sum: number }>();
  const handTimed = async <T>(kind: string, f: () => Promise<T>): Promise<T> => {
    const t0 = now();
    let k = byKind.get(kind);
    if (k === undefined) byKind.set(kind, (k = { ok: 0, outcomes: new Map(), buckets: new Float64Array(bounds.length + 1), sum: 0 }));
    const v = await f();
    const s = (now() - t0) / 1000;
    let b = 0;
    while (b < bounds.length && s > bounds[b]!) b++;
    k.buckets[b]!++;
    k.sum += s;
    k.ok++;
    return v;
  };
  const bare: number[] = [];
  const timed: number[] = [];
  const hand: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let t0 = now();
    for (let i = 0; i < n; i++) await ask();
    bare.push(((now() - t0) * 1e6) / n);
    t0 = now();
    for (let i = 0; i < n; i++) await metrics.timeAsk('counter', ask);
    timed.push(((now() - t0) * 1e6) / n);
    t0 = now();
    for (let i = 0; i < n; i++) await handTimed('counter', ask);
    hand.push(((now() - t0) * 1e6) / n);
  }
  const texts: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t0 = now();
    await metrics.text();
    texts.push(now() - t0);
  }
  return { bareNs: median(bare), timedNs: median(timed), handNs: median(hand), textMs: median(texts.slice(10)) };
}

main(async () => {
  console.log(
    `metrics-cost: autocannon ${CONNECTIONS} connections, POST /actors/counter/<k0..k${KEYS - 1}>/incr, ${WORKERS} worker(s) per node, ` +
      `${ROUNDS} rounds × ${ROUND_SECONDS} s per node alternating, /metrics of the "on" node scraped every ${SCRAPE_EVERY_MS} ms, ` +
      `${args.built ? 'built dist/' : 'sources (tsx)'}; ${machineLine()}`,
  );
  const inProcess = await inProcessCosts();
  console.log(
    row(
      'in-process, per ask',
      `bare ${fixed(inProcess.bareNs, 0)} ns`,
      `timeAsk ${fixed(inProcess.timedNs, 0)} ns`,
      `metrics add ${fixed((inProcess.timedNs - inProcess.bareNs) / 1000, 2)} µs/ask`,
      `(counted by hand ${fixed(inProcess.handNs, 0)} ns: +${fixed((inProcess.handNs - inProcess.bareNs) / 1000, 2)} µs)`,
    ),
  );
  console.log(row('in-process, one exposition (text())', `${fixed(inProcess.textMs, 2)} ms`));
  const onServer = await startNode(true);
  const offServer = await startNode(false).catch(async (e: unknown) => {
    await onServer.stop();
    throw e;
  });
  const on: LoadTarget = { name: 'metrics on', server: onServer, rounds: [] };
  const off: LoadTarget = { name: 'metrics off (--no-metrics)', server: offServer, rounds: [] };
  let scraper: Scraper | undefined;
  let sizeAfterWarmup = 0;
  try {
    // Warm-up: JIT, activation of the 1,000 actors per node, socket pools.
    for (const t of [on, off]) await cleanLoad(t, roundOf(2), 'warm-up');
    sizeAfterWarmup = await checkMetricsFlag(on, off);
    console.log(`checked: GET /metrics → 404 on the --no-metrics node, 200 Prometheus text (${bytes(sizeAfterWarmup)}) on the other`);
    scraper = new Scraper(on.server.url, SCRAPE_EVERY_MS);
    scraper.start();
    for (let r = 0; r < ROUNDS; r++) {
      // on, off, off, on, on, off …: neither node always goes first after the other's load.
      const order = r % 2 === 0 ? [on, off] : [off, on];
      for (const t of order) {
        scraper.underLoad = t === on;
        t.rounds.push(await measureRound(t, roundOf(ROUND_SECONDS)));
        scraper.underLoad = false;
      }
    }
    await scraper.stop();
  } finally {
    if (scraper) await scraper.stop().catch(() => undefined);
    await Promise.all([on.server.stop(), off.server.stop()]);
  }
  const s = { on: medianOfRounds(on.rounds), off: medianOfRounds(off.rounds) };
  console.log('');
  for (const [t, x] of [
    [on, s.on],
    [off, s.off],
  ] as const) {
    console.log(
      row(
        t.name,
        `${int(x.reqPerSec).padStart(7)} req/s`,
        `p50 ${fixed(x.p50, 2)} ms`,
        `p99 ${fixed(x.p99, 2)} ms`,
        `CPU ${fixed(x.cpuUsPerReq, 1)} µs/req (main ${fixed(x.mainUsPerReq, 1)})`,
        `${fixed(x.cores, 2)} cores`,
      ),
    );
    console.log(
      row(
        '',
        `rounds ${t.rounds.map((y) => int(y.reqPerSec)).join(', ')} req/s; ${t.rounds.map((y) => fixed(y.cpuUsPerReq, 1)).join(', ')} µs/req`,
      ),
    );
  }
  // Ratios of the medians, and the median of each round's ratio to its neighbour of the other
  // node (round r of each, measured back to back): the second cancels slow drifts in the load.
  const reqRatio = s.on.reqPerSec / s.off.reqPerSec;
  const cpuRatio = s.on.cpuUsPerReq / s.off.cpuUsPerReq;
  const pairedReq = median(on.rounds.map((x, i) => x.reqPerSec / off.rounds[i]!.reqPerSec));
  const pairedCpu = median(on.rounds.map((x, i) => x.cpuUsPerReq / off.rounds[i]!.cpuUsPerReq));
  const reqOk = reqRatio >= 1 - TARGET;
  const cpuOk = cpuRatio <= 1 + TARGET;
  console.log('');
  console.log(
    row('req/s on / off (medians)', fixed(reqRatio, 3), `paired rounds ${fixed(pairedReq, 3)}`, `target ≥ ${1 - TARGET}`, verdict(reqOk)),
  );
  console.log(
    row(
      'CPU µs/req on / off (medians)',
      fixed(cpuRatio, 3),
      `paired rounds ${fixed(pairedCpu, 3)}`,
      `target ≤ ${1 + TARGET}`,
      verdict(cpuOk),
    ),
  );

  const scrapes = scraper!.samples;
  const loaded = Float64Array.from(scrapes.filter((x) => x.underLoad).map((x) => x.ms)).sort();
  const idle = Float64Array.from(scrapes.filter((x) => !x.underLoad).map((x) => x.ms)).sort();
  const sizes = scrapes.map((x) => x.bytes);
  const size = { min: Math.min(...sizes), max: Math.max(...sizes) };
  console.log(
    row(
      'scrape duration, "on" under load',
      `p50 ${fixed(percentile(loaded, 50), 2)} ms`,
      `p99 ${fixed(percentile(loaded, 99), 2)} ms`,
      `(${loaded.length} scrapes)`,
    ),
  );
  console.log(
    row(
      'scrape duration, "on" idle',
      `p50 ${fixed(percentile(idle, 50), 2)} ms`,
      `p99 ${fixed(percentile(idle, 99), 2)} ms`,
      `(${idle.length} scrapes, the other node under load)`,
    ),
  );
  // What the in-process figures predict for the servers' CPU ratio, at the measured rates.
  const addedUs = (inProcess.timedNs - inProcess.bareNs) / 1000 + (inProcess.textMs * 1000 * (1000 / SCRAPE_EVERY_MS)) / s.on.reqPerSec;
  console.log(
    row(
      'predicted CPU on / off',
      fixed(1 + addedUs / s.off.cpuUsPerReq, 3),
      `(timeAsk + one text() per scrape: ${fixed(addedUs, 2)} µs/req over ${fixed(s.off.cpuUsPerReq, 1)})`,
    ),
  );
  console.log(row('exposition size', `${bytes(size.min)} … ${bytes(size.max)}`, `(${int(size.max)} bytes)`));
  console.log(`${machineLine()}; figures are noisy on a shared 2-core box`);
  printResult({
    bench: 'metrics-cost',
    connections: CONNECTIONS,
    workers: WORKERS,
    rounds: ROUNDS,
    roundSeconds: ROUND_SECONDS,
    source: args.built ? 'dist' : 'tsx',
    on: loadFigures(s.on),
    off: loadFigures(s.off),
    reqPerSecRatio: Number(reqRatio.toFixed(3)),
    cpuPerReqRatio: Number(cpuRatio.toFixed(3)),
    pairedReqPerSecRatio: Number(pairedReq.toFixed(3)),
    pairedCpuPerReqRatio: Number(pairedCpu.toFixed(3)),
    scrapeMs: {
      underLoad: { p50: Number(percentile(loaded, 50).toFixed(2)), p99: Number(percentile(loaded, 99).toFixed(2)), n: loaded.length },
      idle: { p50: Number(percentile(idle, 50).toFixed(2)), p99: Number(percentile(idle, 99).toFixed(2)), n: idle.length },
    },
    expositionBytes: size,
    inProcess: {
      bareAskNs: Math.round(inProcess.bareNs),
      timedAskNs: Math.round(inProcess.timedNs),
      handCountedAskNs: Math.round(inProcess.handNs),
      textMs: Number(inProcess.textMs.toFixed(3)),
      predictedCpuRatio: Number((1 + addedUs / s.off.cpuUsPerReq).toFixed(3)),
    },
    target: TARGET,
    pass: reqOk && cpuOk,
  });
});
