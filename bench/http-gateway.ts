/**
 * HTTP gateway throughput: autocannon (in this process, 50 connections) POSTing
 * `/actors/counter/<key>/incr` with `{"by":1}` over 1,000 keys to a troupe node started as a
 * child process by the CLI (`bin/troupe.js start --app ./src/demo/app.ts --http 0`), with
 * 1 worker (main thread + 1 worker thread) and with 2 workers.
 *
 * Baseline in the same run: a bare `node:http` child (bench/servers/raw-http-server.ts) doing
 * the same parsing and counting in a Map. All servers run side by side (idle ones cost ~0) and
 * rounds alternate between them; medians are reported.
 *
 * Per target: req/s, latency p50/p99, non-2xx and errors (must be 0: any one, in warm-up or a
 * round, fails the run with the status codes seen; only 2xx responses count as throughput), and
 * the server's CPU time per request
 * (utime+stime of the server pid over the round, all threads, from /proc). autocannon itself
 * takes about one of this box's 2 cores, so req/s is capped by the client and CPU µs/request
 * is the fairer figure. Target: troupe (1 worker) ≥ 60% of raw req/s, and (on the fair figure)
 * raw CPU µs/request ÷ troupe CPU µs/request ≥ 0.6. Runs ~40 s.
 *
 *   npm run build && node --import tsx bench/http-gateway.ts [--seconds 9] [--rounds 3] [--compare-source] [--durable [--durability commit]]
 */
import autocannon from 'autocannon';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  cpuSecondsOf,
  cpuSecondsOfMainThread,
  fixed,
  int,
  loadFigures,
  type LoadSummary,
  machineLine,
  main,
  median,
  percentile,
  printResult,
  row,
  spawnServer,
  verdict,
  type ServerChild,
} from './lib.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '9' },
    rounds: { type: 'string', default: '3' },
    // Also measure a node with persistence on (LMDB journal, replies after the flush to disk).
    durable: { type: 'boolean', default: false },
    durability: { type: 'string', default: 'flush' },
    // autocannon connections; with persistence on, each is one request waiting for a commit.
    connections: { type: 'string', default: '50' },
    // Also measure the node run from its TypeScript sources through tsx (TROUPE_SOURCE=1), next
    // to the built package: a regression of the build shows as a ratio below 1.
    'compare-source': { type: 'boolean', default: false },
  },
});
/** Total measured seconds per target, split over the rounds. */
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);
const ROUND_SECONDS = Math.max(1, Math.round(SECONDS / ROUNDS));
const CONNECTIONS = Number(args.connections);
const KEYS = 1000;
const TARGET = 0.6;

interface Target {
  name: string;
  server: ServerChild;
  rounds: Round[];
}

/** One round's figures; `mainUsPerReq` is the main thread's (event loop's) share of the CPU. */
type Round = LoadSummary;

/**
 * A node as users run it: the bin, the built package and the built demo app (`npm run build`
 * first); with `fromSource`, the TypeScript sources through tsx instead.
 */
async function startTroupe(workers: number, dataDir?: string, durability?: string, fromSource = false): Promise<ServerChild> {
  return spawnServer({
    label: `troupe node (${workers} worker${workers > 1 ? 's' : ''}${dataDir ? ', durable' : ''}${fromSource ? ', sources' : ''})`,
    ...(fromSource && { env: { ...process.env, TROUPE_SOURCE: '1' } }),
    args: [
      'bin/troupe.js',
      'start',
      '--app',
      fromSource ? './src/demo/app.ts' : './dist/demo/app.js',
      '--http',
      '0',
      '--workers',
      String(workers),
      '--log-level',
      'info',
      ...(dataDir ? ['--data-dir', dataDir] : []),
      ...(durability ? ['--durability', durability] : []),
    ],
    // The node logs one pino line when it is up: {"msg":"node started","http":"http://..."}.
    listening: (line) => {
      if (!line.includes('"node started"')) return undefined;
      return (JSON.parse(line) as { http?: string }).http;
    },
    deadlineMs: 20_000,
  });
}

async function startRaw(): Promise<ServerChild> {
  return spawnServer({
    label: 'raw node:http server',
    args: ['--import', 'tsx', 'bench/servers/raw-http-server.ts', '0'],
    listening: (line) => (line.startsWith('listening ') ? line.slice('listening '.length).trim() : undefined),
    deadlineMs: 20_000,
  });
}

/** One request per key, cycled by every connection: prebuilt, so the client spends nothing on them. */
const requests = Array.from({ length: KEYS }, (_, i) => ({
  method: 'POST' as const,
  path: `/actors/counter/k${i}/incr`,
  headers: { 'content-type': 'application/json' },
  body: '{"by":1}',
}));

/**
 * Runs autocannon; 2xx response times go to `latencies` (ms, fractional). autocannon's own
 * histogram stores whole milliseconds, too coarse for sub-millisecond loopback latencies.
 */
async function load(t: Target, seconds: number, what: string, latencies?: number[]): Promise<autocannon.Result> {
  const statuses = new Map<number, number>();
  const r = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({ url: t.server.url, connections: CONNECTIONS, duration: seconds, requests }, (err: unknown, result) =>
      err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(result),
    );
    instance.on('response', (_client, status, _bytes, ms) => {
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (latencies && status >= 200 && status < 300) latencies.push(ms);
    });
  });
  mustBeClean(t, what, r, statuses);
  return r;
}

/** A failed request is not throughput: any non-2xx or error fails the run, saying which. */
function mustBeClean(t: Target, what: string, r: autocannon.Result, statuses: Map<number, number>): void {
  if (r.non2xx === 0 && r.errors === 0) return;
  const codes = [...statuses].map(([status, n]) => `${status}×${n}`).join(', ');
  throw new Error(
    `${t.name}, ${what}: ${r.non2xx} non-2xx and ${r.errors} errors (${r.timeouts} timeouts) of ${r.requests.total} requests; status codes ${codes}`,
  );
}

async function round(t: Target, seconds: number): Promise<Round> {
  const latencies: number[] = [];
  const cpu0 = cpuSecondsOf(t.server.pid);
  const main0 = cpuSecondsOfMainThread(t.server.pid);
  const r = await load(t, seconds, `round ${t.rounds.length + 1}`, latencies);
  const cpu = cpuSecondsOf(t.server.pid) - cpu0;
  const mainCpu = cpuSecondsOfMainThread(t.server.pid) - main0;
  const done = r['2xx']; // load() has already refused a round with anything else
  const sorted = Float64Array.from(latencies).sort();
  return {
    reqPerSec: done / r.duration,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    non2xx: r.non2xx,
    errors: r.errors,
    cpuUsPerReq: (cpu * 1e6) / done,
    mainUsPerReq: (mainCpu * 1e6) / done,
    cores: cpu / r.duration,
  };
}

main(async () => {
  console.log(
    `http-gateway: autocannon ${CONNECTIONS} connections, POST /actors/counter/<k0..k${KEYS - 1}>/incr {"by":1}, ${ROUNDS} rounds × ${ROUND_SECONDS} s per target (median), ${machineLine()}`,
  );
  const targets: Target[] = [];
  const cleanup: Array<() => void> = [];
  try {
    targets.push({ name: 'troupe, 1 worker', server: await startTroupe(1), rounds: [] });
    targets.push({ name: 'troupe, 2 workers', server: await startTroupe(2), rounds: [] });
    targets.push({ name: 'raw node:http', server: await startRaw(), rounds: [] });
    if (args['compare-source']) targets.push({ name: 'troupe, 1 worker, sources (tsx)', server: await startTroupe(1, undefined, undefined, true), rounds: [] });
    if (args.durable) {
      const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-durable-'));
      cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
      targets.push({ name: `troupe, 1 worker, LMDB ${args.durability}`, server: await startTroupe(1, dir, args.durability), rounds: [] });
    }
    // Warm-up: JIT, activation of the 1,000 actors per node, socket pools.
    for (const t of targets) await load(t, 2, 'warm-up');
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) t.rounds.push(await round(t, ROUND_SECONDS));
    }
  } finally {
    await Promise.all(targets.map((t) => t.server.stop()));
    for (const c of cleanup) c();
  }

  const summary = targets.map((t) => ({
    name: t.name,
    reqPerSec: median(t.rounds.map((x) => x.reqPerSec)),
    p50: median(t.rounds.map((x) => x.p50)),
    p99: median(t.rounds.map((x) => x.p99)),
    non2xx: t.rounds.reduce((a, x) => a + x.non2xx, 0),
    errors: t.rounds.reduce((a, x) => a + x.errors, 0),
    cpuUsPerReq: median(t.rounds.map((x) => x.cpuUsPerReq)),
    mainUsPerReq: median(t.rounds.map((x) => x.mainUsPerReq)),
    cores: median(t.rounds.map((x) => x.cores)),
    rounds: t.rounds.map((x) => Math.round(x.reqPerSec)),
  }));
  const [w1, w2, raw] = summary as [(typeof summary)[0], (typeof summary)[0], (typeof summary)[0]];
  const source = summary.find((s) => s.name.endsWith('sources (tsx)'));
  const durable = summary.find((s) => s.name.includes('LMDB'));
  console.log('');
  for (const s of summary) {
    console.log(
      row(
        s.name,
        `${int(s.reqPerSec).padStart(7)} req/s`,
        `p50 ${fixed(s.p50, 2)} ms`,
        `p99 ${fixed(s.p99, 2)} ms`,
        `non-2xx ${s.non2xx}`,
        `errors ${s.errors}`,
        `server CPU ${fixed(s.cores, 2)} cores`,
      ),
    );
    console.log(row('', `rounds ${s.rounds.map((x) => int(x)).join(', ')} req/s`));
  }
  console.log('');
  console.log('SERVER CPU PER REQUEST (the fair figure: the client shares the 2 cores)');
  for (const s of summary) {
    const rest = s.cpuUsPerReq - s.mainUsPerReq;
    console.log(
      row(
        `  ${s.name}`,
        `${fixed(s.cpuUsPerReq, 1).padStart(6)} µs/req`,
        `${fixed(s.cpuUsPerReq / raw.cpuUsPerReq, 2)}× raw`,
        `(main thread ${fixed(s.mainUsPerReq, 1)} µs, other threads ${fixed(rest, 1)} µs)`,
      ),
    );
  }
  console.log('');
  const ratio1 = w1.reqPerSec / raw.reqPerSec;
  const ratio2 = w2.reqPerSec / raw.reqPerSec;
  console.log(row('ratio req/s troupe(1 worker) / raw', fixed(ratio1, 3), `target ≥ ${TARGET}`, verdict(ratio1 >= TARGET)));
  console.log(row('ratio req/s troupe(2 workers) / raw', fixed(ratio2, 3)));
  const ratioDurable = durable ? durable.reqPerSec / raw.reqPerSec : undefined;
  if (durable) {
    console.log(
      row(`ratio req/s troupe(LMDB ${args.durability}) / raw`, fixed(ratioDurable!, 3), 'target ≥ 0.5', verdict(ratioDurable! >= 0.5)),
    );
    console.log(
      row(`CPU efficiency raw / troupe(LMDB ${args.durability})`, fixed(raw.cpuUsPerReq / durable.cpuUsPerReq, 3), 'target ≥ 0.5'),
    );
  }
  if (source) {
    console.log(row('built / sources req/s (1 worker)', fixed(w1.reqPerSec / source.reqPerSec, 3), 'no regression: ≥ 0.95'));
    console.log(row('built / sources CPU µs/req (1 worker)', fixed(w1.cpuUsPerReq / source.cpuUsPerReq, 3), 'no regression: ≤ 1.05'));
  }
  // The same target on the fair figure: troupe's requests per CPU-second as a share of raw's.
  const efficiency = raw.cpuUsPerReq / w1.cpuUsPerReq;
  console.log(
    row('CPU efficiency raw µs / troupe µs', fixed(efficiency, 3), `target ≥ ${TARGET}`, verdict(efficiency >= TARGET), '(1 worker)'),
  );
  console.log(`${machineLine()}; figures are noisy on a shared 2-core box`);
  const fig = loadFigures;
  printResult({
    bench: 'http-gateway',
    connections: CONNECTIONS,
    secondsPerTarget: ROUNDS * ROUND_SECONDS,
    troupeW1: fig(w1),
    troupeW2: fig(w2),
    raw: fig(raw),
    ...(durable && { troupeDurable: fig(durable), ratioDurable: Number(ratioDurable!.toFixed(3)) }),
    ...(source && { troupeSources: fig(source), builtOverSources: Number((w1.reqPerSec / source.reqPerSec).toFixed(3)) }),
    ratio: Number(ratio1.toFixed(3)),
    ratioW2: Number(ratio2.toFixed(3)),
    cpuPerReqRatio: Number((w1.cpuUsPerReq / raw.cpuUsPerReq).toFixed(3)),
    cpuEfficiency: Number(efficiency.toFixed(3)),
    passCpu: efficiency >= TARGET,
    target: TARGET,
    pass: ratio1 >= TARGET,
  });
});
