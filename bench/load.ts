/**
 * `npm run bench:load`: the load tester of `troupe bench` (src/load) against targets this
 * benchmark starts itself — a raw baseline (bench/servers/raw-http-server.ts, `node:http` + Map,
 * for the counter scenarios; bench/servers/raw-session-server.ts, `node:http` + `ws` + Map, for
 * sticky-cookie and websocket), one troupe node (LMDB data directory, durability flush) and a
 * local three-node cluster (durability replicated: W = 2 of R = 3; connections spread over the
 * three gateways) — for every scenario (write-heavy, read-heavy, sessions-100k, hot-key,
 * sticky-cookie, websocket). The nodes run the TypeScript sources (TROUPE_SOURCE=1) with the demo
 * app and src/demo/visits.ts, and one session secret. A progress line per second on stderr; at
 * the end a table: req/s (acknowledged asks/s for websocket), p50/p99, server CPU µs per request
 * (utime+stime of every server process, all threads, from /proc, over the run) and the ratio to
 * raw, then the websocket runs' push figures. The drivers (autocannon, `ws`) run in this process
 * and share the box's cores with the servers, so CPU µs/request is the fairer figure.
 *
 * With --check every troupe run records its writes and reads every key back afterwards
 * (acknowledged ≤ final ≤ attempted per key; per cookie session for sticky-cookie, per room for
 * websocket); a violation fails the benchmark. A websocket run on any target also fails when an
 * acknowledged ask's push is missing, doubled or out of order.
 *
 *   npm run bench:load -- [--seconds 5] [--warmup 2] [--connections 50] [--sessions 1000] [--scenario write-heavy,websocket] [--check]
 *
 * Each measured run follows a warm-up of the same load on the same keys (--warmup seconds, 0 for
 * none): JIT, connections and actor activations settle first. Its writes go into the same ledger,
 * so --check covers them too.
 *
 * --connections is the requests in flight: HTTP connections, or asks outstanding over the
 * websocket scenario's --sessions sockets.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { checkCounts, WriteLedger } from '../src/load/counter-check.ts';
import { counterTarget, readFinalCounts, roomTarget, visitsTarget, type ReadTarget } from '../src/load/final-counts.ts';
import { runLoad, type LoadReport } from '../src/load/load-run.ts';
import { SCENARIO_NAMES, SCENARIOS, type Scenario } from '../src/load/scenarios.ts';
import { SessionJar } from '../src/load/session-jar.ts';
import { formatSummary, type SummaryRow } from '../src/load/summary-table.ts';
import { runWsLoad, type WsLoadReport } from '../src/load/ws-load.ts';
import { check, cpuSecondsOfAll, fixed, machineLine, main, positiveInt, printResult, repoRoot, spawnServer } from './lib.ts';
import { startCluster, startNode, stopAll } from './node-cluster.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    sessions: { type: 'string', default: '1000' },
    warmup: { type: 'string', default: '2' },
    scenario: { type: 'string', default: SCENARIO_NAMES.join(',') },
    check: { type: 'boolean', default: false },
  },
});
const SECONDS = positiveInt('seconds', args.seconds);
const CONNECTIONS = positiveInt('connections', args.connections);
const SESSIONS = positiveInt('sessions', args.sessions);
// 0 skips it; otherwise seconds of the same load on the same keys before the measured run.
const WARMUP = args.warmup === '0' ? 0 : positiveInt('warmup', args.warmup);
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

/** One run's row, with what the table does not show. */
interface Run extends SummaryRow {
  /** 1-minute load average just before and just after the run. */
  load: [number, number];
  ws?: WsLoadReport;
}

/** A raw server child started from bench/servers. */
const rawServer = (label: string, file: string) =>
  spawnServer({
    label,
    args: ['--import', 'tsx', `bench/servers/${file}`, '0'],
    listening: (line) => (line.startsWith('listening ') ? line.slice('listening '.length).trim() : undefined),
  });

/** The session scenarios' baseline is the raw server that speaks cookies and WebSockets. */
const isSessionScenario = (s: Scenario) => s.transport === 'cookie' || s.transport === 'websocket';

const progress = (p: { elapsedS: number; reqPerSec: number; non2xx: number; errors: number }) =>
  process.stderr.write(`  ${p.elapsedS.toFixed(0).padStart(3)} s  ${Math.round(p.reqPerSec).toLocaleString('en-US').padStart(8)} req/s  non-2xx ${p.non2xx}  errors ${p.errors}\n`);

main(async () => {
  process.stderr.write(
    `bench:load: ${SCENARIO_LIST.map((s) => s.name).join(', ')}; ${CONNECTIONS} connections (asks in flight over ${SESSIONS} WebSocket sessions), ${SECONDS} s per target and scenario; ${machineLine()}\n`,
  );
  const runs: Run[] = [];
  const raws: Array<Awaited<ReturnType<typeof spawnServer>>> = [];
  try {
    const needHttpRaw = SCENARIO_LIST.some((s) => !isSessionScenario(s));
    const needSessionRaw = SCENARIO_LIST.some(isSessionScenario);
    const rawHttp = needHttpRaw ? await rawServer('raw node:http server', 'raw-http-server.ts') : undefined;
    const rawSession = needSessionRaw ? await rawServer('raw node:http + ws server', 'raw-session-server.ts') : undefined;
    raws.push(...[rawHttp, rawSession].filter((r) => r !== undefined));
    process.env.TROUPE_SOURCE = '1'; // the node children run the sources
    // Inherited by every node: cookie sessions need one secret for the whole cluster.
    process.env.TROUPE_SESSION_SECRET = randomBytes(24).toString('base64url');
    const apps = [join(repoRoot, 'src/demo/visits.ts')];
    const one = await startNode({ id: 1, durability: 'flush', apps });
    const three = await startCluster(randomBytes(24).toString('base64url'), 'replicated', undefined, apps);
    const troupeTargets: Target[] = [
      { name: 'troupe, 1 node', urls: [one.url], pids: [one.pid], troupe: true },
      { name: 'troupe, 3 nodes', urls: three.map((n) => n.url), pids: three.map((n) => n.pid), troupe: true },
    ];
    for (const scenario of SCENARIO_LIST) {
      const raw = isSessionScenario(scenario) ? rawSession! : rawHttp!;
      const rawName = isSessionScenario(scenario) ? 'raw node:http + ws' : 'raw node:http';
      let rawReqPerSec: number | undefined;
      for (const t of [{ name: rawName, urls: [raw.url], pids: [raw.pid], troupe: false }, ...troupeTargets]) {
        const ledger = args.check && t.troupe ? new WriteLedger() : undefined;
        process.stderr.write(`${t.name}, ${scenario.name}:\n`);
        const prefix = `load-${randomBytes(3).toString('hex')}`;
        const jar = scenario.transport === 'cookie' ? new SessionJar() : undefined;
        const run = async (seconds: number, onProgress?: typeof progress): Promise<LoadReport> => {
          if (scenario.transport === 'websocket') {
            const r = await runWsLoad({ urls: t.urls, sessions: SESSIONS, inflight: CONNECTIONS, seconds, prefix, ...(ledger && { ledger }), ...(onProgress && { onProgress }) });
            check(r.violations.length === 0, `${t.name}, websocket: ${r.violations.length} push violations, e.g. ${r.violations.slice(0, 5).join('; ')}`);
            return r;
          }
          const keys = scenario.keys;
          return runLoad({ urls: t.urls, scenario, seconds, connections: CONNECTIONS, keys, prefix, ...(ledger && { ledger }), ...(jar && { jar }), ...(onProgress && { onProgress }) });
        };
        if (WARMUP > 0) {
          const w = await run(WARMUP);
          process.stderr.write(`  warm-up ${WARMUP} s: ${Math.round(w.reqPerSec).toLocaleString('en-US')} req/s\n`);
        }
        const load0 = loadavg()[0]!;
        process.stderr.write(`  measured (load avg ${fixed(load0)}):\n`);
        const cpu0 = cpuSecondsOfAll(t.pids);
        const report = await run(SECONDS, progress);
        const ws = scenario.transport === 'websocket' ? (report as WsLoadReport) : undefined;
        const cpuUsPerReq = ((cpuSecondsOfAll(t.pids) - cpu0) * 1e6) / Math.max(1, report.ok);
        if (!t.troupe) rawReqPerSec = report.reqPerSec;
        runs.push({
          target: t.name,
          report,
          cpuUsPerReq,
          load: [load0, loadavg()[0]!],
          ...(ws && { ws }),
          ...(t.troupe && rawReqPerSec !== undefined && { rawReqPerSec }),
        });
        if (ledger) {
          const target: ReadTarget = jar ? visitsTarget(jar) : scenario.transport === 'websocket' ? roomTarget : counterTarget;
          const { counts } = await readFinalCounts(t.urls, [...ledger.tallies.keys()], { target });
          const violations = checkCounts(ledger.tallies, counts);
          check(violations.length === 0, `${t.name}, ${scenario.name}: ${violations.length} keys fail the check, e.g. ${violations.slice(0, 5).map((v) => `${v.key}: ${v.problem}`).join('; ')}`);
          process.stderr.write(`  check: ${ledger.totals().acknowledged} acknowledged writes over ${ledger.tallies.size} keys, all consistent\n`);
        }
      }
    }
  } finally {
    for (const r of raws) await r.stop();
    await stopAll();
  }
  console.log('');
  console.log(formatSummary(runs));
  const wsRuns = runs.filter((r) => r.ws !== undefined);
  if (wsRuns.length > 0) {
    console.log(`websocket: ${SESSIONS} sessions, ${CONNECTIONS} asks in flight; each ask is a say → reply + push → ack`);
    for (const r of wsRuns)
      console.log(
        `  ${r.target.padEnd(20)} asks/s ${Math.round(r.report.reqPerSec).toLocaleString('en-US').padStart(7)}  round trip p50/p99 ${fixed(r.report.p50Ms)}/${fixed(r.report.p99Ms)} ms  push (ask sent → push) p50/p99 ${fixed(r.ws!.pushP50Ms)}/${fixed(r.ws!.pushP99Ms)} ms  pushes before their reply ${r.ws!.pushesBeforeReply}/${r.ws!.pushes}  connect ${fixed(r.ws!.connectSeconds)} s  driver CPU ${fixed(r.ws!.driverCpuUsPerAsk, 1)} µs/ask`,
      );
  }
  console.log(`${machineLine()}; CPU µs/req sums every server process; the drivers share the cores`);
  printResult({
    bench: 'load',
    seconds: SECONDS,
    connections: CONNECTIONS,
    sessions: SESSIONS,
    warmupSeconds: WARMUP,
    rows: runs.map((r) => ({
      target: r.target,
      scenario: r.report.scenario,
      reqPerSec: Math.round(r.report.reqPerSec),
      p50Ms: Number(r.report.p50Ms.toFixed(3)),
      p99Ms: Number(r.report.p99Ms.toFixed(3)),
      non2xx: r.report.non2xx,
      errors: r.report.errors,
      cpuUsPerReq: Number(r.cpuUsPerReq?.toFixed(1)),
      load: r.load.map((x) => Number(x.toFixed(2))),
      ...(r.rawReqPerSec !== undefined && { ratioToRaw: Number((r.report.reqPerSec / r.rawReqPerSec).toFixed(3)) }),
      ...(r.ws && {
        pushP50Ms: Number(r.ws.pushP50Ms.toFixed(3)),
        pushP99Ms: Number(r.ws.pushP99Ms.toFixed(3)),
        driverCpuUsPerAsk: Number(r.ws.driverCpuUsPerAsk.toFixed(1)),
      }),
    })),
  });
});
