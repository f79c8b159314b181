/**
 * HTTP through a three-node cluster: three `troupe start` processes on this machine (1 worker
 * each, forked from bin/troupe.js with an IPC channel, node 1 the seed of the others), and
 * autocannon (in this process, 50 connections) POSTing `/actors/counter/<key>/incr` with
 * `{"by":1}` over 3,000 keys to node 1's gateway only. Node 1 owns about a third of the keys;
 * the other requests are forwarded to their owner over the cluster transport and the reply comes
 * back the same way. Each connection walks the keys from its own offset (connection i starts at
 * key i·K/50), so the connections do not hit the same actor in lockstep.
 *
 * Baseline in the same run: the bare `node:http` + Map server (bench/servers/raw-http-server.ts)
 * with the same requests. Rounds alternate between the two; medians are reported.
 *
 * Each round lasts --seconds and then stops gracefully: every connection stops sending and
 * closes once its request in flight is answered, so every request sent is answered and the
 * counters can be checked exactly. A round's rate is 2xx responses ÷ (last answer − start).
 * Per target: req/s, p50/p99 of the 2xx response times (per response, fractional ms, as in
 * http-gateway.ts), non-2xx and errors (must be 0, else the bench fails), and server CPU per
 * request: utime+stime of every server process, all threads, from /proc, over the round (read
 * when the last answer arrives). For the cluster it is the sum over the three nodes, also shown
 * per node (main thread = gateway, transport, router; other threads = the actor worker, GC).
 * Node resident memory is printed after each round.
 *
 * After the rounds: `get` for every key, spread over the three gateways; the sum of the counters
 * must equal the number of 2xx `incr` responses (warm-up included), and every key must hold what
 * its connections sent it. Membership and ring epochs are read before and after the load: a
 * member that went suspect or a ring change under load is reported. The nodes are stopped with
 * SIGTERM (SIGKILL after a grace period), on failure too. Runs ~75 s.
 *
 * The nodes run as `troupe cluster` runs them: each with its own LMDB data directory (temporary)
 * and durability 'replicated' (every acknowledged increment committed on W = 2 of R = 3 nodes).
 * `--durability commit` gives the unreplicated cluster (each node's actors on that node alone);
 * `--store memory` replicates between in-memory stores (no data directories).
 *
 *   node --import tsx bench/cluster-http.ts [--seconds 10] [--rounds 3] [--keys 3000]
 *        [--durability replicated|replicated+flush|commit|flush] [--store lmdb|memory]
 */
import autocannon from 'autocannon';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { forkNode } from '../src/cli/node-process.ts';
import type { RouterStats } from '../src/cluster/cluster-router.ts';
import {
  check,
  cpuSecondsOf,
  cpuSecondsOfMainThread,
  fixed,
  int,
  machineLine,
  loadFigures,
  main,
  median,
  now,
  percentile,
  printResult,
  repoRoot,
  row,
  sleep,
  spawnServer,
  type ServerChild,
} from './lib.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    keys: { type: 'string', default: '3000' },
    // 'replicated' (the cluster default: R=3, W=2), 'replicated+flush', 'commit' or 'flush' (unreplicated).
    durability: { type: 'string', default: 'replicated' },
    // 'lmdb': each node gets a temporary --data-dir (removed at the end); 'memory': no data dir.
    store: { type: 'string', default: 'lmdb' },
  },
});
const DURABILITY = args.durability!;
const STORE = args.store!;
check(['replicated', 'replicated+flush', 'commit', 'flush'].includes(DURABILITY), '--durability: replicated, replicated+flush, commit or flush');
check(STORE === 'lmdb' || STORE === 'memory', '--store: lmdb or memory');
check(STORE === 'lmdb' || DURABILITY === 'replicated', 'an in-memory store only runs with --durability replicated');
/** Temporary data directories, one per node (removed at the end, on failure too). */
const dataDirs: string[] = [];
/** Seconds per round and target (plus the last answers in flight at the deadline). */
const ROUND_SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);
const KEYS = Number(args.keys);
const NODES = 3;
const CONNECTIONS = 50;
/**
 * Warm-up per target: JIT, activation of every actor, socket pools. A cold cluster runs at half
 * speed for its first ~40k requests.
 */
const WARMUP_SECONDS = 3;
const READY_DEADLINE_MS = 30_000;
const CONVERGE_DEADLINE_MS = 15_000;
const STOP_GRACE_MS = 5_000;

check(Number.isInteger(KEYS) && KEYS >= CONNECTIONS, `--keys must be an integer ≥ ${CONNECTIONS}`);
check(ROUND_SECONDS > 0 && Number.isInteger(ROUNDS) && ROUNDS >= 1, '--seconds > 0 and --rounds ≥ 1');

// ── The cluster ─────────────────────────────────────────────────────────────────────────────

interface ClusterNode {
  id: number;
  child: ChildProcess;
  pid: number;
  url: string;
  cluster: string;
  /** warn/error lines and anything that is not a log line, from stdout and stderr (bounded). */
  complaints: string[];
}

const app = join(repoRoot, 'src/demo/app.ts');
/** Every child forked, ready or not: all of them are stopped at the end, by pid. */
const forked: ChildProcess[] = [];
let stopping = false;

function collectLines(stream: NodeJS.ReadableStream, into: string[]): void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      // pino levels: 40 warn, 50 error, 60 fatal. Keep those, and anything that is not pino.
      const level = /^\{"level":(\d+)/.exec(line)?.[1];
      if ((level === undefined || Number(level) >= 40) && line.trim() !== '' && into.length < 200) into.push(line);
    }
  });
}

/** Forks `troupe start` for node `id` and resolves on its IPC `ready` message. */
async function startNode(id: number, secret: string, seed: string | undefined): Promise<ClusterNode> {
  const args = ['start', '--id', String(id), '--port', '0', '--http', '0', '--workers', '1', '--app', app, '--log-level', 'warn'];
  if (STORE === 'lmdb') {
    const dir = mkdtempSync(join(tmpdir(), `troupe-bench-node${id}-`));
    dataDirs.push(dir);
    args.push('--data-dir', dir, '--durability', DURABILITY);
  }
  if (seed !== undefined) args.push('--seeds', seed);
  const { child, ready } = forkNode(args, {
    cwd: repoRoot,
    // As `troupe cluster` runs it: no loader flags of ours (bin/troupe.js registers tsx).
    // BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the nodes.
    execArgv: process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [],
    env: { ...process.env, TROUPE_CLUSTER_SECRET: secret },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    readyTimeoutMs: READY_DEADLINE_MS,
  });
  forked.push(child);
  const complaints: string[] = [];
  collectLines(child.stdout!, complaints);
  collectLines(child.stderr!, complaints);
  child.once('exit', (code, signal) => {
    if (!stopping) complaints.push(`exited unexpectedly (code ${code}, signal ${signal})`);
  });
  const m = await ready.catch((e: Error) => {
    throw new Error(`node ${id}: ${e.message}\n${complaints.join('\n')}`);
  });
  check(typeof m.cluster === 'string', `node ${id}: ready without a cluster address: ${JSON.stringify(m)}`);
  check(m.pid === child.pid, `node ${id}: ready from pid ${m.pid}, forked ${child.pid}`);
  return { id, child, pid: child.pid!, url: m.url, cluster: m.cluster!, complaints };
}

/** SIGTERM every forked node still running, SIGKILL after the grace period; waits for all. */
async function stopNodes(): Promise<{ pid: number; how: string; ms: number }[]> {
  stopping = true;
  const t0 = now();
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // exited in between
    }
  };
  return Promise.all(
    forked.map(async (child) => {
      const pid = child.pid!;
      if (child.exitCode !== null || child.signalCode !== null)
        return { pid, how: `already exited (${child.signalCode ?? child.exitCode})`, ms: 0 };
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      let killed = false;
      signal(pid, 'SIGTERM');
      const t = setTimeout(() => {
        killed = true;
        if (child.exitCode === null && child.signalCode === null) signal(pid, 'SIGKILL');
      }, STOP_GRACE_MS);
      await exited;
      clearTimeout(t);
      return { pid, how: killed ? 'SIGKILL after grace' : `SIGTERM → ${child.signalCode ?? `exit ${child.exitCode}`}`, ms: now() - t0 };
    }),
  );
}

interface Member {
  id: number;
  address: string;
  incarnation: number;
  status: string;
}
type RingStats = RouterStats & { replication?: Record<string, number> };

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

const agent = new Agent({ keepAlive: true, maxSockets: 16 });

/** POST with an empty body over a keep-alive agent. */
function post(base: string, path: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method: 'POST', agent, timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`POST ${base}${path}: no answer within 10 s`)));
    req.on('error', reject);
    req.end();
  });
}

const membersOf = async (n: ClusterNode) => (await getJson<{ members: Member[] }>(`${n.url}/cluster/members`)).members;
const ringOf = (n: ClusterNode) => getJson<RingStats>(`${n.url}/cluster/ring`);
const allAlive = (ms: Member[]) => ms.length === NODES && ms.every((m) => m.status === 'alive');

/** Until every node lists NODES members, all alive (deadline). */
async function converge(nodes: ClusterNode[]): Promise<number> {
  const t0 = now();
  let last = '';
  for (;;) {
    const views = await Promise.all(nodes.map((n) => membersOf(n).catch(() => [] as Member[])));
    if (views.every(allAlive)) return now() - t0;
    last = views.map((v, i) => `node ${nodes[i]!.id} sees ${v.map((m) => `${m.id}:${m.status}`).join(',') || 'nothing'}`).join('; ');
    if (now() - t0 > CONVERGE_DEADLINE_MS) throw new Error(`cluster did not converge within ${CONVERGE_DEADLINE_MS} ms: ${last}`);
    await sleep(100);
  }
}

// ── Load ────────────────────────────────────────────────────────────────────────────────────

const keyName = (i: number) => `k${i}`;
const requests = Array.from({ length: KEYS }, (_, i) => ({
  method: 'POST' as const,
  path: `/actors/counter/${keyName(i)}/incr`,
  headers: { 'content-type': 'application/json' },
  body: '{"by":1}',
}));
/** Connection c starts at key offsets[c] and walks the keys in order, wrapping around. */
const offsets = Array.from({ length: CONNECTIONS }, (_, c) => Math.floor((c * KEYS) / CONNECTIONS));
const rotated = offsets.map((o) => [...requests.slice(o), ...requests.slice(0, o)]);

interface Run {
  /** Responses received. */
  requests: number;
  /** Requests written that got no response (must be 0). */
  unanswered: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: string;
  seconds: number;
  reqPerSec: number;
  p50: number;
  p99: number;
  /** CPU seconds per server pid over the run: all threads, and the main thread. */
  cpu: { all: number; main: number }[];
  /** 2xx responses per connection (for the per-key check). */
  perConnection: number[];
}

/** Resident set size of a process, bytes (VmRSS; all threads share it). */
function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

const mib = (bytes: number[]) => bytes.map((b) => (b / 2 ** 20).toFixed(0)).join('/');

function cpuOf(pids: number[]): { all: number; main: number }[] {
  return pids.map((pid) => ({ all: cpuSecondsOf(pid), main: cpuSecondsOfMainThread(pid) }));
}

/**
 * autocannon's per-connection request cap (set from `amount`) and its count of requests written.
 * Not in its typings; `load` checks they exist. Lowering `responseMax` to `reqsMade` makes a
 * connection send nothing more and close once its request in flight is answered.
 */
interface ClientCounters {
  reqsMade: number;
  responseMax: number;
}

/**
 * About `seconds` of load over CONNECTIONS connections, stopped gracefully: at the deadline every
 * connection stops sending and closes when its last request has been answered, so every request
 * sent is answered (or counted as an error) and the counters can be checked exactly. (autocannon's
 * own `duration` closes the sockets with requests in flight, which the server may or may not
 * have applied.) The rate is 2xx responses ÷ (last answer − start); CPU is read at the last answer.
 */
function load(url: string, seconds: number, pids: number[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    const perConnection = new Array<number>(CONNECTIONS).fill(0);
    const connectionOf = new WeakMap<object, number>();
    const counters: ClientCounters[] = [];
    let next = 0;
    let responses = 0;
    let closed = 0;
    let tEnd: number | undefined;
    let cpuEnd: { all: number; main: number }[] | undefined;
    let setupError: Error | undefined;
    const cpu0 = cpuOf(pids);
    const instance = autocannon(
      {
        url,
        connections: CONNECTIONS,
        // A cap no connection reaches: it only puts autocannon in "stop when every connection is done" mode.
        amount: CONNECTIONS * 1_000_000_000,
        // The first client request is built from this; setupClient then gives each connection its own order.
        requests: [requests[0]!],
        setupClient: (client) => {
          const c = next++;
          connectionOf.set(client, c);
          client.setRequests(rotated[c]!);
          const k = client as unknown as Partial<ClientCounters>;
          if (typeof k.reqsMade !== 'number' || typeof k.responseMax !== 'number')
            setupError ??= new Error('autocannon client has no numeric reqsMade/responseMax: cannot stop gracefully');
          counters.push(k as ClientCounters);
          (client as NodeJS.EventEmitter).on('done', () => {
            if (++closed === CONNECTIONS) {
              tEnd = now();
              cpuEnd = cpuOf(pids);
            }
          });
        },
        // autocannon notices that every connection is done on its next sample tick (default 1 s).
        sampleInt: 100,
      },
      (err: unknown, r) => {
        clearTimeout(deadline);
        clearTimeout(watchdog);
        if (err) return reject(err instanceof Error ? err : new Error(String(err)));
        if (setupError) return reject(setupError);
        if (tEnd === undefined || cpuEnd === undefined)
          return reject(new Error(`${url}: ${CONNECTIONS - closed} connections never finished`));
        const elapsed = (tEnd - t0) / 1000;
        const sorted = Float64Array.from(latencies).sort();
        const ok = r['2xx'];
        const sentCount = counters.reduce((a, k) => a + k.reqsMade, 0);
        resolve({
          requests: responses,
          unanswered: sentCount - responses,
          ok,
          non2xx: r.non2xx,
          errors: r.errors,
          timeouts: r.timeouts,
          statusCodes: JSON.stringify(r.statusCodeStats ?? {}),
          seconds: elapsed,
          reqPerSec: ok / elapsed,
          p50: percentile(sorted, 50),
          p99: percentile(sorted, 99),
          cpu: cpuEnd.map((x, i) => ({ all: x.all - cpu0[i]!.all, main: x.main - cpu0[i]!.main })),
          perConnection,
        });
      },
    );
    // autocannon() builds every connection's requests synchronously; the traffic starts after it returns.
    const t0 = now();
    const deadline = setTimeout(() => {
      for (const k of counters) k.responseMax = Math.max(1, k.reqsMade);
    }, seconds * 1000);
    // A connection whose answer never comes: autocannon's 10 s request timeout, then this.
    const watchdog = setTimeout(() => instance.stop(), (seconds + 20) * 1000);
    instance.on('response', (client, status, _bytes, ms) => {
      responses++;
      if (status >= 200 && status < 300) {
        latencies.push(ms);
        perConnection[connectionOf.get(client)!]!++;
      }
    });
  });
}

interface Target {
  name: string;
  url: string;
  pids: number[];
  warmup: Run[];
  rounds: Run[];
}

/** Fails the bench on any non-2xx or error, with the status codes seen. */
function mustBeClean(t: Target, what: string, r: Run): void {
  if (r.non2xx !== 0 || r.errors !== 0 || r.ok !== r.requests || r.unanswered !== 0)
    throw new Error(
      `${t.name}, ${what}: ${r.non2xx} non-2xx, ${r.errors} errors (${r.timeouts} timeouts), ${r.unanswered} unanswered, of ${r.requests} responses; status codes ${r.statusCodes}`,
    );
}

// ── Main ────────────────────────────────────────────────────────────────────────────────────

main(async () => {
  const tStart = now();
  console.log(
    `cluster-http: ${NODES} nodes × 1 worker, autocannon ${CONNECTIONS} connections → node 1's gateway, POST /actors/counter/<k0..k${KEYS - 1}>/incr {"by":1}, ${ROUNDS} rounds × ~${ROUND_SECONDS} s per target (median), ${machineLine()}`,
  );
  const secret = randomBytes(32).toString('base64url');
  let raw: ServerChild | undefined;
  let nodes: ClusterNode[] = [];
  const onSignal = () => {
    console.error('interrupted: stopping the nodes');
    void Promise.all([stopNodes(), raw?.stop()]).then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let report: (() => void) | undefined;
  let stopped: { pid: number; how: string; ms: number }[] = [];
  try {
    // Node 1 first (the seed), then nodes 2 and 3 joining through it; the raw server meanwhile.
    const rawP = spawnServer({
      label: 'raw node:http server',
      args: ['--import', 'tsx', 'bench/servers/raw-http-server.ts', '0'],
      listening: (line) => (line.startsWith('listening ') ? line.slice('listening '.length).trim() : undefined),
      deadlineMs: READY_DEADLINE_MS,
    });
    const tBoot = now();
    const first = await startNode(1, secret, undefined);
    nodes = [first, ...(await Promise.all([2, 3].map((id) => startNode(id, secret, first.cluster))))];
    raw = await rawP;
    const readyMs = now() - tBoot;
    const convergeMs = await converge(nodes);
    for (const n of nodes) console.log(`  node ${n.id}: pid ${n.pid}, gateway ${n.url}, cluster ${n.cluster}`);
    console.log(`  raw:    pid ${raw.pid}, ${raw.url}`);
    console.log(`  all ready in ${int(readyMs)} ms; ${NODES}/${NODES} alive on every node ${int(convergeMs)} ms later`);
    const ringBefore = await Promise.all(nodes.map(ringOf));
    check(
      ringBefore.every((s) => s.members === NODES),
      `rings before load: ${JSON.stringify(ringBefore)}`,
    );

    const gateway = nodes[0]!;
    const troupe: Target = {
      name: `troupe cluster (${NODES} nodes)`,
      url: gateway.url,
      pids: nodes.map((n) => n.pid),
      warmup: [],
      rounds: [],
    };
    const baseline: Target = { name: 'raw node:http', url: raw.url, pids: [raw.pid], warmup: [], rounds: [] };
    const targets = [troupe, baseline];
    const sent = new Map<Target, number>([
      [troupe, 0],
      [baseline, 0],
    ]);
    /** Remote asks node 1 sent, per troupe run (its router's sentRemote). */
    const forwardedShare: number[] = [];
    /** What each key must hold: 2xx incr responses to it, from the connections' orders. */
    const expected = new Float64Array(KEYS);
    const account = (r: Run) => {
      r.perConnection.forEach((m, c) => {
        for (let j = 0; j < m; j++) expected[(offsets[c]! + j) % KEYS]!++;
      });
    };

    const runOn = async (t: Target, seconds: number, what: string): Promise<Run> => {
      const before = t === troupe ? await ringOf(gateway) : undefined;
      const r = await load(t.url, seconds, t.pids);
      mustBeClean(t, what, r);
      sent.set(t, sent.get(t)! + r.ok);
      if (t === troupe) {
        account(r);
        const after = await ringOf(gateway);
        forwardedShare.push((after.sentRemote - before!.sentRemote) / r.ok);
      }
      return r;
    };

    for (const t of targets) t.warmup.push(await runOn(t, WARMUP_SECONDS, 'warm-up'));
    forwardedShare.length = 0; // the share is reported over the measured rounds
    /** Resident memory of each node after the warm-up and after each round, bytes. */
    const rss: number[][] = [nodes.map((n) => rssOf(n.pid))];
    console.log(
      `  warm-up: ${targets.map((t) => `${t.name} ${t.warmup.map((r) => `${int(r.ok)} req at ${int(r.reqPerSec)} req/s`).join(' + ')}`).join(', ')}; node RSS ${mib(rss[0]!)} MiB`,
    );
    for (let i = 0; i < ROUNDS; i++) {
      const order = i % 2 === 0 ? targets : [...targets].reverse();
      const line: string[] = [];
      for (const t of order) {
        const r = await runOn(t, ROUND_SECONDS, `round ${i + 1}`);
        t.rounds.push(r);
        const cpu = r.cpu.reduce((a, x) => a + x.all, 0);
        line.push(
          `${t === troupe ? 'troupe' : 'raw'} ${int(r.reqPerSec)} req/s (${int(r.ok)} in ${fixed(r.seconds, 1)} s, ${fixed((cpu * 1e6) / r.ok, 1)} µs CPU/req${t === troupe ? `, ${fixed(100 * forwardedShare.at(-1)!, 1)}% forwarded` : ''})`,
        );
      }
      rss.push(nodes.map((n) => rssOf(n.pid)));
      console.log(`  round ${i + 1}: ${line.join('  ')}  node RSS ${mib(rss.at(-1)!)} MiB`);
    }

    // ── After the load: membership, rings, and the counters ──────────────────────────────────
    const ringAfter = await Promise.all(nodes.map(ringOf));
    const membersAfter = await Promise.all(nodes.map(membersOf));
    const tVerify = now();
    const got = new Float64Array(KEYS);
    let getFailures = 0;
    let cursor = 0;
    const getWorker = async () => {
      while (cursor < KEYS) {
        const i = cursor++;
        // Through every gateway in turn: most gets are forwarded too.
        const { status, text } = await post(nodes[i % NODES]!.url, `/actors/counter/${keyName(i)}/get`);
        if (status !== 200) {
          if (getFailures++ < 5) console.error(`  get ${keyName(i)} via node ${nodes[i % NODES]!.id}: ${status} ${text}`);
          continue;
        }
        got[i] = (JSON.parse(text) as { n: number }).n;
      }
    };
    await Promise.all(Array.from({ length: 16 }, getWorker));
    const verifyMs = now() - tVerify;
    agent.destroy();
    const sum = got.reduce((a, b) => a + b, 0);
    const okIncr = sent.get(troupe)!;
    let mismatched = 0;
    const examples: string[] = [];
    for (let i = 0; i < KEYS; i++)
      if (got[i] !== expected[i]) {
        mismatched++;
        if (examples.length < 5) examples.push(`${keyName(i)}: holds ${got[i]}, expected ${expected[i]}`);
      }
    const ringsStable = ringAfter.every((s, i) => s.epoch === ringBefore[i]!.epoch && s.members === NODES);
    const membersStable = membersAfter.every(allAlive);
    const ringDelta = (k: keyof RouterStats) => ringAfter.reduce((a, s, i) => a + (s[k] - ringBefore[i]![k]), 0);
    // Replication on each node: fences run (lazily, on a partition's first use), fences that
    // failed, primaries deposed. After the warm-up none should happen under a steady load.
    for (const [i, s] of ringAfter.entries())
      if (s.replication) console.log(`  node ${nodes[i]!.id} replication: ${JSON.stringify(s.replication)}`);

    report = () => {
      const summary = targets.map((t) => {
        const cpuPerReq = (pick: (x: { all: number; main: number }) => number, idx?: number) =>
          median(
            t.rounds.map((r) => (r.cpu.filter((_, i) => idx === undefined || i === idx).reduce((a, x) => a + pick(x), 0) * 1e6) / r.ok),
          );
        return {
          t,
          reqPerSec: median(t.rounds.map((r) => r.reqPerSec)),
          p50: median(t.rounds.map((r) => r.p50)),
          p99: median(t.rounds.map((r) => r.p99)),
          non2xx: [...t.warmup, ...t.rounds].reduce((a, r) => a + r.non2xx, 0),
          errors: [...t.warmup, ...t.rounds].reduce((a, r) => a + r.errors, 0),
          cpuUsPerReq: cpuPerReq((x) => x.all),
          mainUsPerReq: cpuPerReq((x) => x.main),
          perProcess: t.pids.map((_, i) => ({ all: cpuPerReq((x) => x.all, i), main: cpuPerReq((x) => x.main, i) })),
          cores: median(t.rounds.map((r) => r.cpu.reduce((a, x) => a + x.all, 0) / r.seconds)),
        };
      });
      const [tr, rw] = summary as [(typeof summary)[0], (typeof summary)[0]];
      console.log('');
      for (const s of summary) {
        console.log(
          row(
            s.t.name,
            `${int(s.reqPerSec).padStart(7)} req/s`,
            `p50 ${fixed(s.p50, 2)} ms`,
            `p99 ${fixed(s.p99, 2)} ms`,
            `non-2xx ${s.non2xx}`,
            `errors ${s.errors}`,
            `server CPU ${fixed(s.cores, 2)} cores`,
          ),
        );
        console.log(row('', `rounds ${s.t.rounds.map((r) => int(r.reqPerSec)).join(', ')} req/s`));
      }
      console.log('');
      console.log('SERVER CPU PER REQUEST (all threads of every server process, from /proc; the client shares the cores)');
      console.log(
        row(`  ${tr.t.name}`, `${fixed(tr.cpuUsPerReq, 1).padStart(6)} µs/req`, `${fixed(tr.cpuUsPerReq / rw.cpuUsPerReq, 2)}× raw`),
      );
      tr.perProcess.forEach((p, i) =>
        console.log(
          row(
            `    node ${nodes[i]!.id}${i === 0 ? ' (gateway)' : ''}`,
            `${fixed(p.all, 1).padStart(6)} µs/req`,
            `(main thread ${fixed(p.main, 1)} µs, other threads ${fixed(p.all - p.main, 1)} µs)`,
          ),
        ),
      );
      console.log(row(`  ${rw.t.name}`, `${fixed(rw.cpuUsPerReq, 1).padStart(6)} µs/req`));
      console.log('');
      const ratio = tr.reqPerSec / rw.reqPerSec;
      const cpuRatio = tr.cpuUsPerReq / rw.cpuUsPerReq;
      const fwd = median(forwardedShare);
      console.log(row('ratio req/s troupe / raw', fixed(ratio, 3)));
      console.log(row('ratio CPU µs/req troupe / raw', fixed(cpuRatio, 3)));
      console.log(
        row(
          'forwarded to the owner node',
          `${fixed(100 * fwd, 1)}% of requests (median of rounds; node 1's remote asks ÷ 2xx)`,
          `served remotely: ${ringAfter.map((s, i) => `node ${nodes[i]!.id} ${int(s.servedRemote - ringBefore[i]!.servedRemote)}`).join(', ')}`,
        ),
      );
      console.log(
        row(
          'membership under load',
          membersStable && ringsStable ? 'stable' : 'CHANGED',
          `ring epochs ${ringBefore.map((s) => s.epoch).join('/')} → ${ringAfter.map((s) => s.epoch).join('/')}`,
          `rerouted ${ringDelta('rerouted')}, hop-forwarded ${ringDelta('forwarded')}, dead letters ${ringDelta('deadLetters')}`,
        ),
      );
      if (!membersStable)
        console.log(
          row(
            '',
            `members after: ${membersAfter.map((ms, i) => `node ${nodes[i]!.id} sees ${ms.map((m) => `${m.id}:${m.status}`).join(',')}`).join('; ')}`,
          ),
        );
      const correct = sum === okIncr && mismatched === 0 && getFailures === 0;
      console.log(
        row(
          'CORRECTNESS',
          `sum of ${int(KEYS)} counters (get via all ${NODES} nodes, ${int(verifyMs)} ms) = ${int(sum)}`,
          `2xx incr responses = ${int(okIncr)}`,
          `keys off ${mismatched}, failed gets ${getFailures}`,
          correct ? 'PASS' : 'FAIL',
        ),
      );
      for (const e of examples) console.log(row('', e));
      const complaints = nodes.flatMap((n) => n.complaints.map((l) => `node ${n.id}: ${l}`));
      if (complaints.length > 0) {
        console.log(`node warnings/errors (${complaints.length}${complaints.length >= 200 ? '+' : ''}):`);
        for (const l of complaints.slice(0, 10)) console.log(`  ${l.slice(0, 300)}`);
      }
      console.log(`${machineLine()}; ${fixed((now() - tStart) / 1000, 1)} s so far; figures are noisy on a shared 2-core box`);
      const fig = (s: (typeof summary)[0]) => ({ ...loadFigures(s), rounds: s.t.rounds.map((r) => Math.round(r.reqPerSec)) });
      const result = {
        bench: 'cluster-http',
        durability: DURABILITY,
        store: STORE,
        nodes: NODES,
        workersPerNode: 1,
        connections: CONNECTIONS,
        keys: KEYS,
        roundSeconds: ROUND_SECONDS,
        rounds: ROUNDS,
        troupe: {
          ...fig(tr),
          perNodeCpuUsPerReq: tr.perProcess.map((p) => Number(p.all.toFixed(1))),
          rssMiB: rss.map((r) => r.map((b) => Math.round(b / 2 ** 20))),
        },
        raw: fig(rw),
        ratio: Number(ratio.toFixed(3)),
        cpuPerReqRatio: Number(cpuRatio.toFixed(3)),
        forwardedShare: Number(fwd.toFixed(3)),
        membershipStable: membersStable && ringsStable,
        counterSum: sum,
        incr2xx: okIncr,
        keysOff: mismatched,
        correct,
      };
      if (!correct) {
        printResult(result);
        throw new Error(
          `counters do not match the 2xx incr responses: sum ${sum} vs ${okIncr}, ${mismatched} keys off, ${getFailures} failed gets`,
        );
      }
      return printResult(result);
    };
  } catch (e) {
    // Show what the nodes complained about before they are stopped.
    for (const n of nodes) for (const l of n.complaints.slice(0, 10)) console.error(`  node ${n.id}: ${l.slice(0, 300)}`);
    throw e;
  } finally {
    [stopped] = await Promise.all([stopNodes(), raw?.stop()]);
    for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    console.log(`stopped: ${stopped.map((s) => `pid ${s.pid} ${s.how} in ${int(s.ms)} ms`).join('; ')}`);
  }
  report!();
});
