/**
 * Helpers shared by the benchmarks: statistics, CPU time of a process, formatting, option
 * checks, spawning a server child (a `troupe start` node among them) and waiting for its
 * "listening" line, autocannon rounds against one server with its CPU per request, and the
 * machine-readable `RESULT` line.
 *
 * Every benchmark measures its baseline in the same run (interleaved rounds where it can), so a
 * ratio is comparable across machines even when absolute figures are not.
 */
import autocannon from 'autocannon';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { loadavg, cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../src/core/clock.ts';
import { silentLogger } from '../src/core/logger.ts';
import { Supervisor } from '../src/supervisor/supervisor.ts';

/** The repository root (bench/..). */
export const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** Monotonic milliseconds. Benchmarks time themselves with this, not with the actor clock. */
export function now(): number {
  return performance.now();
}

// ── Statistics ──────────────────────────────────────────────────────────────────────────────

/** Nearest-rank percentile of an ascending array (p in 0..100). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

// ── CPU time of a process ───────────────────────────────────────────────────────────────────

let clockTicks: number | undefined;

/** Kernel clock ticks per second (USER_HZ, almost always 100). */
export function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime in ticks from one /proc stat line (the comm field may contain spaces). */
function ticksOfStatLine(line: string): number {
  const fields = line.slice(line.lastIndexOf(')') + 2).split(' ');
  // After "pid (comm) ": state=0 ... utime=11 stime=12 (fields 14 and 15 of proc(5)).
  return Number(fields[11]) + Number(fields[12]);
}

/**
 * CPU seconds (user + system) a process has used, all its threads included. /proc/<pid>/stat
 * sums every thread, including threads that have exited; the per-thread sum over
 * /proc/<pid>/task/* (`cpuSecondsOfThreads`) covers only live threads. Resolution: 1 tick (10 ms).
 */
export function cpuSecondsOf(pid: number): number {
  return ticksOfStatLine(readFileSync(`/proc/${pid}/stat`, 'utf8')) / ticksPerSecond();
}

/** CPU seconds of several processes together (a cluster's nodes), all their threads included. */
export function cpuSecondsOfAll(pids: readonly number[]): number {
  return pids.reduce((a, pid) => a + cpuSecondsOf(pid), 0);
}

/** CPU seconds of the main thread of `pid` alone (its event loop: for a node, the gateway). */
export function cpuSecondsOfMainThread(pid: number): number {
  return ticksOfStatLine(readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8')) / ticksPerSecond();
}

/** CPU seconds per live thread of `pid`, by thread name (comm), e.g. { node: 3.1, 'WorkerThread': 2.4 }. */
export function cpuSecondsOfThreads(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let line: string;
    try {
      line = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread exited between readdir and read
    }
    const name = line.slice(line.indexOf('(') + 1, line.lastIndexOf(')'));
    out[name] = (out[name] ?? 0) + ticksOfStatLine(line) / ticksPerSecond();
  }
  return out;
}

// ── Formatting ──────────────────────────────────────────────────────────────────────────────

/** 1234567 → "1.235 M", 12345 → "12.35 k". */
export function si(n: number, digits = 3): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(digits)} G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(digits)} M`;
  if (a >= 1e3) return `${(n / 1e3).toFixed(digits - 1)} k`;
  return n.toFixed(digits - 2);
}

export function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function fixed(n: number, digits = 2): string {
  return Number.isFinite(n) ? n.toFixed(digits) : String(n);
}

export function bytes(n: number): string {
  const a = Math.abs(n);
  if (a >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  if (a >= 1024) return `${(n / 1024).toFixed(2)} KiB`;
  return `${n.toFixed(0)} B`;
}

/** A left-aligned label column followed by values. */
export function row(label: string, ...values: string[]): string {
  return `${label.padEnd(34)} ${values.join('  ')}`;
}

/** "PASS" / "FAIL" with the comparison spelled out. */
export function verdict(ok: boolean): string {
  return ok ? 'PASS' : 'FAIL';
}

/** Load and core count, printed at the start and end: the box is shared, figures are noisy. */
export function machineLine(): string {
  const [a, b, c] = loadavg();
  return `node ${process.version}, ${cpus().length} cores, load avg ${fixed(a!)} ${fixed(b!)} ${fixed(c!)}`;
}

/** The last line of every benchmark: `RESULT {json}`, for scripts that collect figures. */
export function printResult(result: Record<string, unknown>): void {
  console.log(`RESULT ${JSON.stringify({ ...result, loadavg: loadavg().map((x) => Number(x.toFixed(2))) })}`);
}

/** Runs `f` and fails the benchmark loudly (exit code 1) on error. */
export function main(f: () => Promise<void>): void {
  f().then(
    () => process.exit(process.exitCode ?? 0),
    (e: unknown) => {
      console.error('BENCH FAILED:', e instanceof Error ? (e.stack ?? e.message) : e);
      process.exit(1);
    },
  );
}

export function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** A flag's value as a positive integer; the message names the flag. */
export function positiveInt(flag: string, v: string | undefined): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${flag} must be a positive integer (got ${JSON.stringify(v)})`);
  return n;
}

/** Resolves after the event loop has turned `n` times (lets queued I/O, immediates and ports run). */
export async function turns(n = 1): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ── Server children ─────────────────────────────────────────────────────────────────────────

export interface ServerChild {
  child: ChildProcess;
  pid: number;
  url: string;
  /** Everything the child wrote to stderr so far (for failure messages). */
  stderr(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the child has exited. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnServerOptions {
  args: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Returns the server's base URL when a stdout line says it is listening, else undefined. */
  listening: (line: string) => string | undefined;
  /** Give up (and kill the child) after this long, ms. */
  deadlineMs?: number;
  label?: string;
}

/** Spawns `node <args>` and resolves once a stdout line announces its URL. */
export function spawnServer(o: SpawnServerOptions): Promise<ServerChild> {
  const label = o.label ?? o.args.join(' ');
  const child = spawn(process.execPath, o.args, {
    cwd: o.cwd ?? repoRoot,
    env: o.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    if (err.length < 20_000) err += d;
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (graceMs = 3_000): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(t);
  };
  return new Promise((resolve, reject) => {
    let buf = '';
    let done = false;
    const fail = (why: string) => {
      if (done) return;
      done = true;
      void stop(500);
      reject(new Error(`${label}: ${why}\nstderr:\n${err.slice(-4000)}`));
    };
    const timer = setTimeout(() => fail(`no "listening" line within ${o.deadlineMs ?? 15_000} ms`), o.deadlineMs ?? 15_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      fail(`exited early (code ${code}, signal ${signal})`);
    });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      if (done) return;
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const url = o.listening(line);
        if (url !== undefined) {
          done = true;
          clearTimeout(timer);
          // Keep draining stdout so a chatty child never blocks on a full pipe.
          child.stdout!.removeAllListeners('data');
          child.stdout!.resume();
          resolve({ child, pid: child.pid!, url, stderr: () => err, stop });
          return;
        }
      }
    });
  });
}

export interface TroupeServerOptions {
  label: string;
  /** The app module, relative to the repository root (`./dist/demo/app.js`, `./src/demo/app.ts`). */
  app: string;
  /** More flags after `start --app <app> --http 0 --log-level info`. */
  args: string[];
  /** Run the node from its TypeScript sources through tsx (TROUPE_SOURCE=1) instead of dist/. */
  fromSource?: boolean;
  deadlineMs?: number;
}

/** `bin/troupe.js start` as a child; ready once it logs its one pino line `{"msg":"node started","http":"http://..."}`. */
export function startTroupeServer(o: TroupeServerOptions): Promise<ServerChild> {
  return spawnServer({
    label: o.label,
    ...(o.fromSource && { env: { ...process.env, TROUPE_SOURCE: '1' } }),
    args: ['bin/troupe.js', 'start', '--app', o.app, '--http', '0', '--log-level', 'info', ...o.args],
    listening: (line) => (line.includes('"node started"') ? (JSON.parse(line) as { http?: string }).http : undefined),
    deadlineMs: o.deadlineMs ?? 20_000,
  });
}

/** A Supervisor over the demo app (counter, cart) with an in-memory journal, started. */
export async function startDemoSupervisor(workers: number): Promise<Supervisor> {
  const s = new Supervisor({
    workers,
    modules: [new URL('../src/demo/app.ts', import.meta.url).href],
    journal: { type: 'memory' },
    clock: systemClock,
    log: silentLogger,
    node: 'bench',
    logLevel: 'silent',
  });
  await s.start();
  return s;
}

/** The medians of one HTTP load target, as the RESULT line reports them. */
export interface LoadSummary {
  reqPerSec: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  cpuUsPerReq: number;
  mainUsPerReq: number;
  /** Server CPU, in cores. */
  cores: number;
}

export function loadFigures(s: LoadSummary) {
  return {
    reqPerSec: Math.round(s.reqPerSec),
    p50Ms: Number(s.p50.toFixed(3)),
    p99Ms: Number(s.p99.toFixed(3)),
    non2xx: s.non2xx,
    errors: s.errors,
    cpuUsPerReq: Number(s.cpuUsPerReq.toFixed(1)),
    mainThreadUsPerReq: Number(s.mainUsPerReq.toFixed(1)),
    serverCores: Number(s.cores.toFixed(2)),
  };
}

// ── autocannon rounds against one server ────────────────────────────────────────────────────

/** One POST /actors/counter/k<i>/incr per key, cycled by every connection: prebuilt, so the client spends nothing on them. */
export function counterRequests(keys: number): autocannon.Request[] {
  return Array.from({ length: keys }, (_, i) => ({
    method: 'POST' as const,
    path: `/actors/counter/k${i}/incr`,
    headers: { 'content-type': 'application/json' },
    body: '{"by":1}',
  }));
}

/** A server under measurement and the rounds measured so far. */
export interface LoadTarget {
  name: string;
  server: ServerChild;
  rounds: LoadSummary[];
}

export interface LoadOptions {
  connections: number;
  seconds: number;
  requests: autocannon.Request[];
}

/**
 * Runs autocannon against `t`; 2xx response times go to `latencies` (ms, fractional: autocannon's
 * own histogram stores whole milliseconds, too coarse for loopback). A failed request is not
 * throughput: any non-2xx or error fails the run, naming `what` and the status codes seen.
 */
export async function cleanLoad(t: LoadTarget, o: LoadOptions, what: string, latencies?: number[]): Promise<autocannon.Result> {
  const statuses = new Map<number, number>();
  const r = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({ url: t.server.url, connections: o.connections, duration: o.seconds, requests: o.requests }, (err: unknown, result) =>
      err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(result),
    );
    instance.on('response', (_client, status, _bytes, ms) => {
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (latencies && status >= 200 && status < 300) latencies.push(ms);
    });
  });
  if (r.non2xx !== 0 || r.errors !== 0) {
    const codes = [...statuses].map(([status, n]) => `${status}×${n}`).join(', ');
    throw new Error(
      `${t.name}, ${what}: ${r.non2xx} non-2xx and ${r.errors} errors (${r.timeouts} timeouts) of ${r.requests.total} requests; status codes ${codes}`,
    );
  }
  return r;
}

/** One measured round: `cleanLoad`, with the server's CPU (all threads, and its main thread) over it per request. */
export async function measureRound(t: LoadTarget, o: LoadOptions): Promise<LoadSummary> {
  const latencies: number[] = [];
  const cpu0 = cpuSecondsOf(t.server.pid);
  const main0 = cpuSecondsOfMainThread(t.server.pid);
  const r = await cleanLoad(t, o, `round ${t.rounds.length + 1}`, latencies);
  const cpu = cpuSecondsOf(t.server.pid) - cpu0;
  const mainCpu = cpuSecondsOfMainThread(t.server.pid) - main0;
  const done = r['2xx']; // cleanLoad has already refused a round with anything else
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

/** The medians of a target's rounds (non-2xx and errors summed). */
export function medianOfRounds(rounds: readonly LoadSummary[]): LoadSummary {
  const m = (f: (x: LoadSummary) => number) => median(rounds.map(f));
  return {
    reqPerSec: m((x) => x.reqPerSec),
    p50: m((x) => x.p50),
    p99: m((x) => x.p99),
    non2xx: rounds.reduce((a, x) => a + x.non2xx, 0),
    errors: rounds.reduce((a, x) => a + x.errors, 0),
    cpuUsPerReq: m((x) => x.cpuUsPerReq),
    mainUsPerReq: m((x) => x.mainUsPerReq),
    cores: m((x) => x.cores),
  };
}
