/**
 * `troupe bench --url <u>[,<u>…] --scenario <name>`: the load tester against any running
 * cluster serving the demo app (autocannon, or `ws` for the websocket scenario, in this process;
 * connections spread over the URLs). The counter scenarios drive `counter`, sticky-cookie drives
 * the `visits` cookie sessions (src/demo/visits.ts; served with the chat page by `troupe
 * cluster`), websocket drives `room` over `--keys` WebSocket sessions (default 1,000) with
 * `--connections` asks in flight. A progress line per second on stderr, the summary table on
 * stdout. With `--check` it records every write sent and acknowledged, reads every key (cookie
 * session, room) back afterwards and exits 1 naming the keys where acknowledged ≤ final ≤
 * attempted does not hold; a websocket run also fails on a push missing, doubled or out of order.
 *
 * @example
 *   troupe bench --url http://127.0.0.1:8081,http://127.0.0.1:8082 --scenario write-heavy --seconds 10 --check
 *   troupe bench --url http://127.0.0.1:8081 --scenario websocket --keys 1000 --connections 50
 */
import { randomBytes } from 'node:crypto';
import { checkCounts, WriteLedger } from '../load/counter-check.ts';
import { counterTarget, readFinalCounts, roomTarget, visitsTarget, type ReadTarget } from '../load/final-counts.ts';
import { runLoad, type LoadReport } from '../load/load-run.ts';
import { SCENARIO_NAMES, SCENARIOS, VISITS_KIND, type Scenario } from '../load/scenarios.ts';
import { SessionJar } from '../load/session-jar.ts';
import { formatSummary } from '../load/summary-table.ts';
import { runWsLoad } from '../load/ws-load.ts';
import { intFlag, oneOf, UsageError } from './flags.ts';

export interface BenchFlags {
  url?: string;
  scenario?: string;
  seconds?: string;
  connections?: string;
  keys?: string;
  check?: boolean;
}

/** Defaults of a `troupe bench` run. */
const DEFAULTS = {
  seconds: 10, // long enough for the JIT and actor activations to settle
  connections: 50, // enough to keep a 3-node cluster's gateways busy from one client process
};
/** Violations printed before "… and N more". */
const SHOWN_VIOLATIONS = 20;

export async function benchCommand(flags: BenchFlags): Promise<number> {
  if (flags.url === undefined) throw new UsageError('--url <url>[,<url>…] is required (the gateways of a running cluster)');
  if (flags.scenario === undefined) throw new UsageError(`--scenario <name> is required: ${SCENARIO_NAMES.join(', ')}`);
  const urls = urlsFlag(flags.url);
  const scenario = SCENARIOS[oneOf('--scenario', flags.scenario, SCENARIO_NAMES)]!;
  const seconds = flags.seconds === undefined ? DEFAULTS.seconds : intFlag('--seconds', flags.seconds, 1, 86_400);
  const connections = flags.connections === undefined ? DEFAULTS.connections : intFlag('--connections', flags.connections, 1, 10_000);
  if (connections < urls.length) throw new UsageError(`--connections must be at least the number of --url addresses (${urls.length}); got ${connections}`);
  if (flags.keys !== undefined && scenario.fixedKeys)
    throw new UsageError(`--keys does not apply to --scenario ${scenario.name} (${scenario.summary})`);
  const keys = flags.keys === undefined ? scenario.keys : intFlag('--keys', flags.keys, 1, 10_000_000);
  // Fresh keys for this run: counters left by earlier runs would break the check.
  const prefix = `bench-${randomBytes(4).toString('hex')}`;

  const jar = scenario.transport === 'cookie' ? new SessionJar() : undefined;
  const target = readTarget(scenario, jar);
  // One read through every URL first: an unreachable node or an app without the kind fails in a line, not after the run.
  for (const url of urls) {
    const probe = await readFinalCounts([url], [`${prefix}-probe`], { deadlineMs: 0, target });
    const error = probe.unread.get(`${prefix}-probe`);
    if (error !== undefined) throw new Error(probeFailure(url, scenario, error));
  }

  const ledger = flags.check ? new WriteLedger() : undefined;
  process.stderr.write(
    `troupe bench: ${scenario.name} (${scenario.summary}), ${keys.toLocaleString('en-US')} keys, ${connections} connections over ${urls.length} URL${urls.length > 1 ? 's' : ''}, ${seconds} s${ledger ? ', recording writes for --check' : ''}\n`,
  );
  const onProgress = (p: { elapsedS: number; reqPerSec: number; non2xx: number; errors: number }) =>
    process.stderr.write(
      `  ${p.elapsedS.toFixed(0).padStart(4)} s  ${Math.round(p.reqPerSec).toLocaleString('en-US').padStart(9)} ${scenario.transport === 'websocket' ? 'asks/s' : 'req/s'}  non-2xx ${p.non2xx}  errors ${p.errors}\n`,
    );
  let report: LoadReport;
  let pushViolations: string[] = [];
  if (scenario.transport === 'websocket') {
    const ws = await runWsLoad({ urls, sessions: keys, inflight: Math.min(connections, keys), seconds, prefix, ...(ledger && { ledger }), onProgress });
    report = ws;
    pushViolations = ws.violations;
    process.stdout.write('\n' + formatSummary([{ target: urls.length === 1 ? urls[0]! : `${urls.length} URLs`, report }]));
    process.stdout.write(
      `websocket: req/s are acknowledged asks/s, p50/p99 the ask round trip; ${ws.pushes.toLocaleString('en-US')} pushes, ask sent → push p50/p99 ${ws.pushP50Ms.toFixed(2)}/${ws.pushP99Ms.toFixed(2)} ms, ${keys.toLocaleString('en-US')} sessions connected in ${ws.connectSeconds.toFixed(2)} s\n`,
    );
    const refused = Object.entries(report.statuses);
    if (refused.length > 0 || report.errors > 0)
      process.stdout.write(`refused or failed: ${[...refused, ...Object.entries(report.errorCodes)].map(([c, n]) => `${c}×${n}`).join(', ')}\n`);
  } else {
    report = await runLoad({ urls, scenario, seconds, connections, keys, prefix, ...(ledger && { ledger }), ...(jar && { jar }), onProgress });
    process.stdout.write('\n' + formatSummary([{ target: urls.length === 1 ? urls[0]! : `${urls.length} URLs`, report }]));
    const other = Object.entries(report.statuses).filter(([s]) => !s.startsWith('2'));
    if (other.length > 0 || report.errors > 0)
      process.stdout.write(
        `not 2xx: ${[...other.map(([s, n]) => `HTTP ${s}×${n}`), ...Object.entries(report.errorCodes).map(([c, n]) => `${c}×${n}`)].join(', ')}\n`,
      );
  }
  if (report.ok === 0) throw new Error('no request succeeded (see the table above)');
  if (pushViolations.length > 0) {
    process.stderr.write(`troupe bench: push check FAILED: ${pushViolations.length} violation${pushViolations.length > 1 ? 's' : ''}\n`);
    for (const v of pushViolations.slice(0, SHOWN_VIOLATIONS)) process.stderr.write(`  ${v}\n`);
    if (pushViolations.length > SHOWN_VIOLATIONS) process.stderr.write(`  … and ${pushViolations.length - SHOWN_VIOLATIONS} more\n`);
    return 1;
  }
  return ledger === undefined ? 0 : check(urls, ledger, target);
}

/** Where a scenario's counts are read back: counters, the cookie sessions in `jar`, or rooms. */
function readTarget(scenario: Scenario, jar: SessionJar | undefined): ReadTarget {
  if (scenario.transport === 'websocket') return roomTarget;
  return jar ? visitsTarget(jar) : counterTarget;
}

/** What the first read through `url` failing with `error` means for this scenario. */
function probeFailure(url: string, scenario: Scenario, error: string): string {
  if (error === 'ERR_UNKNOWN_KIND') {
    if (scenario.transport === 'cookie')
      return `${url} serves no '${VISITS_KIND}' actor kind: sticky-cookie drives src/demo/visits.ts (troupe cluster serves it; or --app with it and a --session-secret)`;
    if (scenario.transport === 'websocket') return `${url} serves no 'room' actor kind: websocket drives the demo app's room (troupe demo, or --app with src/demo/app.ts)`;
    return `${url} serves no 'counter' actor kind: the bench scenarios drive the demo app's counter (troupe demo, or --app with src/demo/app.ts)`;
  }
  return `${url} did not answer a ${scenario.transport === 'websocket' ? 'room' : scenario.transport === 'cookie' ? VISITS_KIND : 'counter'} read: ${error}`;
}

async function check(urls: readonly string[], ledger: WriteLedger, target: ReadTarget): Promise<number> {
  const keys = [...ledger.tallies.keys()];
  const { counts, unread } = await readFinalCounts(urls, keys, { target });
  const violations = checkCounts(ledger.tallies, counts).map((v) => (unread.has(v.key) ? { ...v, problem: `${v.problem}: ${unread.get(v.key)}` } : v));
  const t = ledger.totals();
  const totals = `${t.keys.toLocaleString('en-US')} keys written, ${t.acknowledged.toLocaleString('en-US')} increments acknowledged of ${t.attempted.toLocaleString('en-US')} attempted`;
  if (violations.length === 0) {
    process.stdout.write(`check: ${totals}; every key holds acknowledged ≤ final ≤ attempted\n`);
    return 0;
  }
  process.stderr.write(`troupe bench: check FAILED: ${violations.length} violation${violations.length > 1 ? 's' : ''} (${totals})\n`);
  for (const v of violations.slice(0, SHOWN_VIOLATIONS)) process.stderr.write(`  ${v.key}: ${v.problem}\n`);
  if (violations.length > SHOWN_VIOLATIONS) process.stderr.write(`  … and ${violations.length - SHOWN_VIOLATIONS} more\n`);
  return 1;
}

/** Comma-separated http:// base URLs; the message names --url. */
export function urlsFlag(v: string): string[] {
  const list = v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (list.length === 0) throw new UsageError(`--url must list http://host:port addresses (got ${JSON.stringify(v)})`);
  return list.map((s) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      throw new UsageError(`--url must be http://host:port (got ${JSON.stringify(s)})`);
    }
    if (u.protocol !== 'http:' || (u.pathname !== '/' && u.pathname !== '') || u.search !== '')
      throw new UsageError(`--url must be http://host:port with no path (got ${JSON.stringify(s)})`);
    return `${u.protocol}//${u.host}`;
  });
}
