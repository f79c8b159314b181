/**
 * `npm run bench:load`: the load tester of `troupe bench` (src/load) against targets this
 * benchmark starts itself — a raw `node:http` + Map server (bench/servers/raw-http-server.ts,
 * the same-run baseline), one troupe node (LMDB data directory, durability flush) and a local
 * three-node cluster (durability replicated: W = 2 of R = 3; connections spread over the three
 * gateways) — for every scenario (write-heavy, read-heavy, sessions-100k, hot-key). The nodes run
 * the TypeScript sources (TROUPE_SOURCE=1). A progress line per second on stderr; at the end a
 * table: req/s, p50/p99, server CPU µs per request (utime+stime of every server process, all
 * threads, from /proc, over the run) and the ratio to raw. autocannon runs in this process and
 * shares the box's cores with the servers, so CPU µs/request is the fairer figure.
 *
 * With --check every troupe run records its writes and reads every key back afterwards
 * (acknowledged ≤ final ≤ attempted per key); a violation fails the benchmark.
 *
 *   npm run bench:load -- [--seconds 5] [--connections 50] [--scenario write-heavy,hot-key] [--check]
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { checkCounts, WriteLedger } from '../src/load/counter-check.ts';
import { readFinalCounts } from '../src/load/final-counts.ts';
import { runLoad, type LoadReport } from '../src/load/load-run.ts';
import { SCENARIO_NAMES, SCENARIOS } from '../src/load/scenarios.ts';
import { formatSummary, type SummaryRow } from '../src/load/summary-table.ts';
import { check, cpuSecondsOfAll, machineLine, main, positiveInt, printResult, spawnServer } from './lib.ts';
import { startCluster, startNode, stopAll } from './node-cluster.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    scenario: { type: 'string', default: SCENARIO_NAMES.join(',') },
    check: { type: 'boolean', default: false },
  },
});
const SECONDS = positiveInt('seconds', args.seconds);
const CONNECTIONS = positiveInt('connections', args.connections);
const SCENARIO_LIST = args.scenario!.split(',').map((name) => {
  check(SCENARIOS[name] !== undefined, `--scenario: ${name} is not one of ${SCENARIO_NAMES.join(', ')}`);
  return SCENARIOS[name]!;
});

interface Target {
  name: string;
  urls: string[];
  pids: number[];
  troupe: boolean;
}

main(async () => {
  process.stderr.write(`bench:load: ${SCENARIO_LIST.map((s) => s.name).join(', ')}; ${CONNECTIONS} connections, ${SECONDS} s per target and scenario; ${machineLine()}\n`);
  const rows: SummaryRow[] = [];
  let raw: Awaited<ReturnType<typeof spawnServer>> | undefined;
  try {
    raw = await spawnServer({
      label: 'raw node:http server',
      args: ['--import', 'tsx', 'bench/servers/raw-http-server.ts', '0'],
      listening: (line) => (line.startsWith('listening ') ? line.slice('listening '.length).trim() : undefined),
    });
    process.env.TROUPE_SOURCE = '1'; // the node children run the sources
    const one = await startNode({ id: 1, durability: 'flush' });
    const three = await startCluster(randomBytes(24).toString('base64url'), 'replicated');
    const targets: Target[] = [
      { name: 'raw node:http', urls: [raw.url], pids: [raw.pid], troupe: false },
      { name: 'troupe, 1 node', urls: [one.url], pids: [one.pid], troupe: true },
      { name: 'troupe, 3 nodes', urls: three.map((n) => n.url), pids: three.map((n) => n.pid), troupe: true },
    ];
    for (const scenario of SCENARIO_LIST) {
      let rawReqPerSec: number | undefined;
      for (const t of targets) {
        const ledger = args.check && t.troupe ? new WriteLedger() : undefined;
        process.stderr.write(`${t.name}, ${scenario.name}:\n`);
        const cpu0 = cpuSecondsOfAll(t.pids);
        const report: LoadReport = await runLoad({
          urls: t.urls,
          scenario,
          seconds: SECONDS,
          connections: CONNECTIONS,
          keys: scenario.keys,
          prefix: `load-${randomBytes(3).toString('hex')}`,
          ...(ledger && { ledger }),
          onProgress: (p) => process.stderr.write(`  ${p.elapsedS.toFixed(0).padStart(3)} s  ${Math.round(p.reqPerSec).toLocaleString('en-US').padStart(8)} req/s  non-2xx ${p.non2xx}  errors ${p.errors}\n`),
        });
        const cpuUsPerReq = ((cpuSecondsOfAll(t.pids) - cpu0) * 1e6) / Math.max(1, report.ok);
        if (!t.troupe) rawReqPerSec = report.reqPerSec;
        rows.push({ target: t.name, report, cpuUsPerReq, ...(t.troupe && rawReqPerSec !== undefined && { rawReqPerSec }) });
        if (ledger) {
          const { counts } = await readFinalCounts(t.urls, [...ledger.tallies.keys()]);
          const violations = checkCounts(ledger.tallies, counts);
          check(violations.length === 0, `${t.name}, ${scenario.name}: ${violations.length} keys fail the check, e.g. ${violations.slice(0, 5).map((v) => `${v.key}: ${v.problem}`).join('; ')}`);
          process.stderr.write(`  check: ${ledger.totals().acknowledged} acknowledged increments over ${ledger.tallies.size} keys, all consistent\n`);
        }
      }
    }
  } finally {
    await raw?.stop();
    await stopAll();
  }
  console.log('');
  console.log(formatSummary(rows));
  console.log(`${machineLine()}; CPU µs/req sums every server process; autocannon shares the cores`);
  printResult({
    bench: 'load',
    seconds: SECONDS,
    connections: CONNECTIONS,
    rows: rows.map((r) => ({
      target: r.target,
      scenario: r.report.scenario,
      reqPerSec: Math.round(r.report.reqPerSec),
      p50Ms: Number(r.report.p50Ms.toFixed(3)),
      p99Ms: Number(r.report.p99Ms.toFixed(3)),
      non2xx: r.report.non2xx,
      errors: r.report.errors,
      cpuUsPerReq: Number(r.cpuUsPerReq?.toFixed(1)),
      ...(r.rawReqPerSec !== undefined && { ratioToRaw: Number((r.report.reqPerSec / r.rawReqPerSec).toFixed(3)) }),
    })),
  });
});
