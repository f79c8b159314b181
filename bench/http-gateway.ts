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
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
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
  medianOfRounds,
  printResult,
  row,
  spawnServer,
  startTroupeServer,
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

/**
 * A node as users run it: the bin, the built package and the built demo app (`npm run build`
 * first); with `fromSource`, the TypeScript sources through tsx instead.
 */
async function startTroupe(workers: number, dataDir?: string, durability?: string, fromSource = false): Promise<ServerChild> {
  return startTroupeServer({
    label: `troupe node (${workers} worker${workers > 1 ? 's' : ''}${dataDir ? ', durable' : ''}${fromSource ? ', sources' : ''})`,
    app: fromSource ? './src/demo/app.ts' : './dist/demo/app.js',
    fromSource,
    args: ['--workers', String(workers), ...(dataDir ? ['--data-dir', dataDir] : []), ...(durability ? ['--durability', durability] : [])],
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

const requests = counterRequests(KEYS);
const roundOf = (seconds: number): LoadOptions => ({ connections: CONNECTIONS, seconds, requests });

main(async () => {
  console.log(
    `http-gateway: autocannon ${CONNECTIONS} connections, POST /actors/counter/<k0..k${KEYS - 1}>/incr {"by":1}, ${ROUNDS} rounds × ${ROUND_SECONDS} s per target (median), ${machineLine()}`,
  );
  const targets: LoadTarget[] = [];
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
    for (const t of targets) await cleanLoad(t, roundOf(2), 'warm-up');
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) t.rounds.push(await measureRound(t, roundOf(ROUND_SECONDS)));
    }
  } finally {
    await Promise.all(targets.map((t) => t.server.stop()));
    for (const c of cleanup) c();
  }

  const summary = targets.map((t) => ({ name: t.name, ...medianOfRounds(t.rounds), rounds: t.rounds.map((x) => Math.round(x.reqPerSec)) }));
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
