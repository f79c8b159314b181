/**
 * Failover of replicated logs between real processes (issue 7, "Benchmarks"): from the SIGKILL of
 * one of three nodes to every key that node led being served again **with its state**.
 *
 * One cluster is reused: three `troupe start` nodes on 127.0.0.1 (`--workers 1`, durability
 * `replicated`, R=3, W=2, each with its own temporary LMDB data directory, the lan membership
 * profile). Each of `--runs` runs (default 10):
 *
 *   1. every key (`--keys`, default 300) gets one acknowledged increment, key i through gateway
 *      (i + run) mod 3, so each node's partitions hold writes acknowledged in this run;
 *   2. the cluster settles: every key's partition has exactly one established primary (fencing is
 *      lazy, so keys are poked with a `get` until it does) — a kill never lands mid-handoff;
 *   3. a light load starts (`--clients`, default 4, incrementing random keys through every gateway);
 *   4. the victim (nodes 1, 2, 3 in turn) is SIGKILLed; the keys it led are those whose partition
 *      it served as established primary just before (its `/cluster/partitions`);
 *   5. each affected key is polled with `get` through a survivor (alternating), one request in
 *      flight per key, retried on any error (503, ERR_NODE_UNREACHABLE, timeouts); a key is served
 *      when an answer's count is ≥ the highest count acknowledged for it before that `get` was
 *      sent. A lower answer is a stale read (older state than was acknowledged: the bug issue 7
 *      was filed for): the key is polled on, and the bench fails once the run is measured;
 *   6. meanwhile both survivors' `/cluster/members` are polled every 20 ms: detection is when both
 *      show the victim `down` (late by at most one poll);
 *   7. the load stops, every key is read through a survivor and the whole history so far is
 *      checked (test/helpers/history.ts: acknowledged ≤ final ≤ acknowledged + unknown, no count
 *      acknowledged twice); any violation fails the bench;
 *   8. the victim restarts with the same id, port and data directory, and the next run begins
 *      once all three nodes see three alive members.
 *
 * A run's figure ("recovery") is kill → the LAST affected key served with its state. Baseline in
 * the same run: the failure detector. Each run also measures detection (kill → both survivors mark
 * the victim down), and the profile documents its bound, `downBound(lan)` = 1.46 s
 * (src/cluster/membership-profiles.ts). Recovery − detection is the replication part (fence,
 * catch-up, activation, the router's resend); recovery ÷ detection is printed too. Target: p99
 * recovery ≤ 3 s (PASS/MISS). With 10 runs the nearest-rank p99 is the slowest run.
 *
 * The bench fails (exit 1, `BENCH FAILED: ...`) if a key is not served within 15 s of a kill, a
 * kill is not detected within 10 s, the cluster does not settle, a `get` answers stale state, or
 * the history check finds a lost or duplicated acknowledged increment. Every node is stopped by pid at the end (SIGTERM,
 * SIGKILL after 5 s), on failure too, and the data directories are removed.
 *
 *   node --import tsx bench/failover.ts [--runs 10] [--keys 300] [--clients 4]     # ~75 s
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { forkNode } from '../src/cli/node-process.ts';
import { downBound, LAN_PROFILE } from '../src/cluster/membership-profiles.ts';
import { partitionOf } from '../src/replication/partition-table.ts';
import { checkCounters, History, type Outcome } from '../test/helpers/history.ts';
import { check, fixed, machineLine, main, now, percentile, printResult, repoRoot, row, sleep } from './lib.ts';
import { CallError, CounterGateway } from '../test/helpers/counter-gateway.ts';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    keys: { type: 'string', default: '300' },
    clients: { type: 'string', default: '4' },
  },
});
const RUNS = Number(args.runs);
const KEY_COUNT = Number(args.keys);
const CLIENTS = Number(args.clients);
check(Number.isInteger(RUNS) && RUNS >= 1, `--runs must be a positive integer (got ${args.runs})`);
check(Number.isInteger(KEY_COUNT) && KEY_COUNT >= 3, `--keys must be an integer ≥ 3 (got ${args.keys})`);
check(Number.isInteger(CLIENTS) && CLIENTS >= 1 && CLIENTS <= 64, `--clients must be an integer in [1, 64] (got ${args.clients})`);

const NODES = 3;
const TARGET_P99_MS = 3_000;
const BOUND_MS = downBound(LAN_PROFILE);
/** A kill must be detected by both survivors within this long. */
const DETECT_DEADLINE_MS = 10_000;
/** Every affected key must be served with its state within this long of the kill. */
const SERVE_DEADLINE_MS = 15_000;
const SETTLE_DEADLINE_MS = 20_000;
const REJOIN_DEADLINE_MS = 30_000;
const MEMBERS_POLL_MS = 20;
/** Between a failed or stale `get` of an affected key and the next. */
const RETRY_MS = 10;
/** Increments acknowledged under the light load before the kill, so the kill lands mid-stream. */
const ACKS_BEFORE_KILL = 40;
/** Per `get` while polling: shorter than the gateway's 5 s default, so a lost resend costs ≤ 2 s. */
const POLL_ASK_TIMEOUT_MS = 2_000;
/** Longer than any ask timeout, so the server answers before the client gives up. */
const CLIENT_TIMEOUT_MS = 7_000;
const STOP_GRACE_MS = 5_000;

/**
 * Refusals that say nothing was applied (as in test/replication/failover-process.test.ts): not
 * the partition's primary, no node up, no primary established in time, or no connection made.
 * Anything else that is not a 200 may or may not have been applied: an unknown outcome.
 */
const NOT_APPLIED = new Set(['ERR_NOT_PRIMARY', 'ERR_NO_NODES', 'ERR_PARTITION_UNAVAILABLE', 'ECONNREFUSED']);

const ms = (x: number) => `${Math.round(x)} ms`;
const KEYS = Array.from({ length: KEY_COUNT }, (_, i) => `fo-${i}`);
const app = join(repoRoot, 'src/demo/app.ts');
const secret = randomBytes(24).toString('base64url');
const dataRoot = mkdtempSync(join(tmpdir(), 'troupe-bench-failover-'));

// ── HTTP client ─────────────────────────────────────────────────────────────────────────────

/** The gateways' connection pools, closed at the end (one socket per polled key in flight: a `get` queued behind another would be timed late). */
const openGateways: CounterGateway[] = [];
type Gateway = CounterGateway;
const gatewayTo = (url: string): Gateway => {
  const g = new CounterGateway(url, { maxSockets: 256, timeoutMs: CLIENT_TIMEOUT_MS });
  openGateways.push(g);
  return g;
};

/** GET `path` on a gateway's node as JSON (2 s bound). */
async function getJson<T>(gateway: Gateway, path: string): Promise<T> {
  const res = await fetch(gateway.url + path, { signal: AbortSignal.timeout(2_000) });
  if (!res.ok) throw new Error(`GET ${gateway.url}${path}: ${res.status}`);
  return (await res.json()) as T;
}

// ── The cluster ─────────────────────────────────────────────────────────────────────────────

interface Node {
  id: number;
  child: ChildProcess;
  pid: number;
  gateway: Gateway;
  /** Node-to-node address; a restart binds the same port. */
  cluster: string;
  port: number;
  stderr(): string;
}

/** Every child forked, ready or not: all are stopped at the end, by pid. */
const forked: ChildProcess[] = [];

/** Forks `troupe start` for node `id` on its data directory; resolves on its IPC `ready`. */
async function startNode(id: number, seeds: string[], port = 0): Promise<Node> {
  const args = ['start', '--id', String(id), '--port', String(port), '--http', '0', '--workers', '1', '--app', app];
  args.push('--data-dir', join(dataRoot, `n${id}`), '--durability', 'replicated', '--replicas', '3', '--write-quorum', '2');
  args.push('--log-level', 'warn');
  if (seeds.length > 0) args.push('--seeds', seeds.join(','));
  const { child, ready } = forkNode(args, {
    cwd: repoRoot,
    execArgv: [], // as `troupe cluster` runs it: bin/troupe.js registers tsx itself
    env: { ...process.env, TROUPE_CLUSTER_SECRET: secret },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    readyTimeoutMs: REJOIN_DEADLINE_MS,
  });
  forked.push(child); // before awaiting: stopped at the end even if it never gets ready
  let tail = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (tail = (tail + d).slice(-4_096)));
  const m = await ready.catch((e: Error) => {
    throw new Error(`node ${id}: ${e.message}\nstderr:\n${tail}`);
  });
  check(typeof m.cluster === 'string', `node ${id}: ready without a cluster address`);
  check(m.pid === child.pid, `node ${id}: ready from pid ${m.pid}, forked ${child.pid}`);
  return {
    id,
    child,
    pid: child.pid!,
    gateway: gatewayTo(m.url),
    cluster: m.cluster!,
    port: Number(m.cluster!.split(':').pop()),
    stderr: () => tail,
  };
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

/** SIGTERM every forked node still running, by pid, SIGKILL after the grace period; waits for all. */
async function stopAll(): Promise<void> {
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // exited in between
    }
  };
  await Promise.all(
    forked.map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const done = exited(child);
      signal(child.pid!, 'SIGTERM');
      const t = setTimeout(() => signal(child.pid!, 'SIGKILL'), STOP_GRACE_MS);
      await done;
      clearTimeout(t);
    }),
  );
}

type Member = { id: number; status: string };
type PartitionView = { p: number; role: string; ready: boolean };

const membersOf = async (n: Node) => (await getJson<{ members: Member[] }>(n.gateway, '/cluster/members')).members;

/** Partitions `n` serves as an established primary of the proposed set. */
async function ledBy(n: Node): Promise<Set<number>> {
  const { partitions } = await getJson<{ partitions: PartitionView[] }>(n.gateway, '/cluster/partitions');
  return new Set(partitions.filter((c) => c.role === 'primary' && c.ready).map((c) => c.p));
}

/** Polls `ok` until it holds; throws with `what()` at the deadline. Returns how long it took, ms. */
async function until(ok: () => Promise<boolean>, deadlineMs: number, what: () => string, pollMs = 50): Promise<number> {
  const t0 = now();
  while (now() - t0 < deadlineMs) {
    if (await ok().catch(() => false)) return now() - t0;
    await sleep(pollMs);
  }
  throw new Error(`not within ${deadlineMs} ms: ${what()}`);
}

async function aliveEverywhere(nodes: Node[]): Promise<boolean> {
  const views = await Promise.all(nodes.map(membersOf));
  return views.every((ms) => ms.filter((m) => m.status === 'alive').length === nodes.length);
}

/**
 * Until every key's partition has exactly one established primary among `nodes`. Fencing is
 * lazy (a partition's primary fences on its first request after a ring change), so each key
 * still unsettled is poked with a `get`.
 */
async function settle(nodes: Node[]): Promise<void> {
  let unsettled: string[] = [];
  await until(
    async () => {
      const led = await Promise.all(nodes.map(ledBy));
      unsettled = KEYS.filter((k) => led.filter((s) => s.has(partitionOf(k))).length !== 1);
      if (unsettled.length === 0) return true;
      await Promise.all(unsettled.map((k, i) => nodes[i % nodes.length]!.gateway.call(k, 'get').catch(() => undefined)));
      return false;
    },
    SETTLE_DEADLINE_MS,
    () => `keys without exactly one established primary: ${unsettled.slice(0, 20).join(', ')}${unsettled.length > 20 ? ' …' : ''}`,
    100,
  );
}

// ── Clients ─────────────────────────────────────────────────────────────────────────────────

const history = new History();
/** Per key, the highest count an acknowledged increment returned. */
const ackedMax = new Map<string, number>();

/** One increment through `gateway`, recorded in the history; resolves with its outcome. */
async function increment(gateway: Gateway, key: string): Promise<{ outcome: Outcome; code?: string }> {
  let result: { outcome: Outcome; code?: string } = { outcome: 'ok' };
  await history.incr(
    key,
    () =>
      gateway.call(key, 'incr').then(
        (n) => {
          if (n > (ackedMax.get(key) ?? 0)) ackedMax.set(key, n);
          return n;
        },
        (e: CallError) => {
          result = { outcome: NOT_APPLIED.has(e.code) ? 'failed' : 'unknown', code: e.code };
          throw e;
        },
      ),
    (e) => NOT_APPLIED.has((e as CallError).code),
  );
  return result;
}

/** Every key once, key i through gateway (i + run) mod N, retried (on the next gateway) while refused. */
async function writeEveryKey(nodes: Node[], run: number): Promise<void> {
  const deadline = now() + SETTLE_DEADLINE_MS;
  let next = 0;
  const worker = async () => {
    while (next < KEYS.length) {
      const i = next++;
      let g = (i + run) % nodes.length;
      for (;;) {
        const r = await increment(nodes[g]!.gateway, KEYS[i]!);
        if (r.outcome !== 'failed') break; // acknowledged, or unknown (the history accounts for it)
        check(now() < deadline, `run ${run}: ${KEYS[i]} refused until the deadline (${r.code})`);
        g = (g + 1) % nodes.length;
        await sleep(50);
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

/** Seeded PRNG (mulberry32): the load's key choices are the same in every run of the bench. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * CLIENTS clients incrementing random keys through the gateways in turn. A client that cannot
 * reach a gateway (refused, reset, timed out) skips it from then on.
 */
function lightLoad(gateways: Gateway[], run: number): { acks(): number; stop(): Promise<void> } {
  let stopping = false;
  let acks = 0;
  const loops = Array.from({ length: CLIENTS }, async (_, c) => {
    const random = mulberry32(run * 1000 + c + 1);
    const avoid = new Set<number>();
    let g = c % gateways.length;
    while (!stopping) {
      const r = await increment(gateways[g]!, KEYS[Math.floor(random() * KEYS.length)]!);
      if (r.outcome === 'ok') acks++;
      if (r.code === 'ECONNREFUSED' || r.code === 'ECONNRESET' || r.code === 'ETIMEDOUT') avoid.add(g);
      if (avoid.size === gateways.length) avoid.clear();
      do g = (g + 1) % gateways.length;
      while (avoid.has(g));
    }
  });
  return {
    acks: () => acks,
    async stop() {
      stopping = true;
      await Promise.all(loops);
    },
  };
}

/** Every key's count through `gateway`, retrying a key until it answers; throws at the deadline. */
async function readAll(gateway: Gateway): Promise<Map<string, number>> {
  const finals = new Map<string, number>();
  const lastError = new Map<string, string>();
  await until(
    async () => {
      const missing = KEYS.filter((k) => !finals.has(k));
      for (let i = 0; i < missing.length; i += 64)
        await Promise.all(
          missing.slice(i, i + 64).map((k) =>
            gateway.call(k, 'get').then(
              (n) => void finals.set(k, n),
              (e: CallError) => void lastError.set(k, e.code),
            ),
          ),
        );
      return finals.size === KEYS.length;
    },
    SERVE_DEADLINE_MS,
    () =>
      `keys not served through ${gateway.url}: ${KEYS.filter((k) => !finals.has(k))
        .slice(0, 20)
        .map((k) => `${k} (${lastError.get(k)})`)
        .join(', ')}`,
  );
  return finals;
}

// ── One run ─────────────────────────────────────────────────────────────────────────────────

interface RunFigures {
  victim: number;
  affected: number;
  /** Kill → both survivors list the victim down, ms. */
  detectMs: number;
  /** Kill → the last affected key served with its state, ms. */
  recoveryMs: number;
  /** Kill → each affected key served, ms. */
  perKeyMs: number[];
  /** Answers below a count acknowledged before the `get` was sent. */
  staleReads: number;
  /** Failed or timed-out polls before keys were served, by error code. */
  retries: Map<string, number>;
}

/** Kill → both survivors show the victim `down` (polled every MEMBERS_POLL_MS). */
async function detection(survivors: Node[], victim: number, killedAt: number): Promise<number> {
  const seen = new Map<number, number>();
  await until(
    async () => {
      await Promise.all(
        survivors
          .filter((n) => !seen.has(n.id))
          .map(async (n) => {
            if ((await membersOf(n)).find((m) => m.id === victim)?.status === 'down') seen.set(n.id, now());
          }),
      );
      return seen.size === survivors.length;
    },
    DETECT_DEADLINE_MS,
    () => `survivors ${survivors.map((n) => n.id).join(', ')} mark node ${victim} down (so far: ${[...seen.keys()].join(', ') || 'none'})`,
    MEMBERS_POLL_MS,
  );
  return Math.max(...seen.values()) - killedAt;
}

async function oneRun(nodes: Node[], run: number): Promise<RunFigures> {
  await writeEveryKey(nodes, run);
  await settle(nodes);

  const victimIndex = (run - 1) % NODES;
  const victim = nodes[victimIndex]!;
  const survivors = nodes.filter((n) => n !== victim);
  const load = lightLoad(
    nodes.map((n) => n.gateway),
    run,
  );
  const figures: RunFigures = {
    victim: victim.id,
    affected: 0,
    detectMs: 0,
    recoveryMs: 0,
    perKeyMs: [],
    staleReads: 0,
    retries: new Map(),
  };
  try {
    await until(
      async () => load.acks() >= ACKS_BEFORE_KILL,
      10_000,
      () => `only ${load.acks()} increments acknowledged under the light load`,
      10,
    );
    const led = await ledBy(victim);
    const affected = KEYS.filter((k) => led.has(partitionOf(k)));
    check(affected.length > 0, `run ${run}: node ${victim.id} leads none of the ${KEYS.length} keys`);
    figures.affected = affected.length;

    const killedAt = now();
    victim.child.kill('SIGKILL');
    const lastError = new Map<string, string>();
    const served = new Map<string, number>();
    const stale: string[] = [];
    const pollKey = async (key: string, i: number): Promise<void> => {
      const gateway = survivors[i % survivors.length]!.gateway;
      for (;;) {
        check(
          now() - killedAt < SERVE_DEADLINE_MS,
          `run ${run}: ${affected.length - served.size} of ${affected.length} keys not served ${SERVE_DEADLINE_MS} ms after node ${victim.id}'s SIGKILL, e.g. ${key} (${lastError.get(key)})`,
        );
        const need = ackedMax.get(key) ?? 0;
        try {
          const n = await gateway.call(key, 'get', POLL_ASK_TIMEOUT_MS);
          if (n >= need) return void served.set(key, now() - killedAt);
          figures.staleReads++;
          if (stale.length < 20)
            stale.push(`${key}: ${n} via ${gateway.url} at ${ms(now() - killedAt)}, ${need} acknowledged before the get`);
          lastError.set(key, `stale: ${n} < acknowledged ${need}`);
        } catch (e) {
          const code = (e as CallError).code;
          figures.retries.set(code, (figures.retries.get(code) ?? 0) + 1);
          lastError.set(key, code);
        }
        await sleep(RETRY_MS);
      }
    };
    const [detectMs] = await Promise.all([
      detection(survivors, victim.id, killedAt),
      Promise.all(affected.map(pollKey)),
      exited(victim.child),
    ]);
    figures.detectMs = detectMs;
    figures.perKeyMs = [...served.values()].sort((a, b) => a - b);
    figures.recoveryMs = figures.perKeyMs[figures.perKeyMs.length - 1]!;
    // Older state than was acknowledged is the bug issue 7 was filed for, not a slow failover.
    check(stale.length === 0, `run ${run}: ${figures.staleReads} stale reads after node ${victim.id}'s SIGKILL:\n  ${stale.join('\n  ')}`);
  } finally {
    await load.stop();
  }

  // Correctness over the whole history so far: nothing acknowledged lost, nothing twice.
  const finals = await readAll(survivors[0]!.gateway);
  const violations = checkCounters(history, finals);
  check(
    violations.length === 0,
    `run ${run}: ${violations.length} history violations:\n${violations
      .slice(0, 20)
      .map((v) => `  ${v.key}: ${v.problem}`)
      .join('\n')}`,
  );
  return figures;
}

// ── Main ────────────────────────────────────────────────────────────────────────────────────

main(async () => {
  console.log(
    `failover: 3 nodes × 1 worker, replicated R=3 W=2 (LMDB), ${KEYS.length} keys, ${CLIENTS} clients, ${RUNS} runs (lan profile, detection bound ${BOUND_MS} ms), ${machineLine()}`,
  );
  const t0 = now();
  const runs: RunFigures[] = [];
  try {
    const n1 = await startNode(1, []);
    const nodes = [n1, ...(await Promise.all([startNode(2, [n1.cluster]), startNode(3, [n1.cluster])]))];
    await until(
      () => aliveEverywhere(nodes),
      REJOIN_DEADLINE_MS,
      () => 'three alive members on every node',
    );

    for (let run = 1; run <= RUNS; run++) {
      const f = await oneRun(nodes, run);
      runs.push(f);
      console.log(
        row(
          `  run ${String(run).padStart(2)}: node ${f.victim} killed`,
          `${String(f.affected).padStart(3)} keys`,
          `down ${ms(f.detectMs)}`,
          `served: first ${ms(f.perKeyMs[0]!)}, median ${ms(percentile(f.perKeyMs, 50))}, last ${ms(f.recoveryMs)}`,
          `replication ${ms(f.recoveryMs - f.detectMs)}`,
          `stale ${f.staleReads}`,
          `retried: ${[...f.retries].map(([code, n]) => `${n}× ${code}`).join(', ') || 'none'}`,
        ),
      );
      if (run === RUNS) break;
      // The killed node comes back on its data directory, as an operator would restart it.
      const i = nodes.findIndex((n) => n.id === f.victim);
      nodes[i] = await startNode(
        f.victim,
        nodes.filter((n) => n.id !== f.victim).map((n) => n.cluster),
        nodes[i]!.port,
      );
      await until(
        () => aliveEverywhere(nodes),
        REJOIN_DEADLINE_MS,
        () => `node ${f.victim} alive again on every node`,
      );
    }
  } finally {
    await stopAll();
    for (const g of openGateways) g.destroy();
    rmSync(dataRoot, { recursive: true, force: true });
  }

  const sorted = (xs: number[]) => Float64Array.from(xs).sort();
  const recovery = sorted(runs.map((r) => r.recoveryMs));
  const detect = sorted(runs.map((r) => r.detectMs));
  const replication = sorted(runs.map((r) => r.recoveryMs - r.detectMs));
  const ratio = sorted(runs.map((r) => r.recoveryMs / r.detectMs));
  const perKey = sorted(runs.flatMap((r) => r.perKeyMs));
  const p = (s: Float64Array, q: number) => percentile(s, q);
  const pass = p(recovery, 99) <= TARGET_P99_MS;
  const { ok, failed, unknown } = history.counts();
  const staleReads = runs.reduce((a, r) => a + r.staleReads, 0);

  console.log('');
  console.log(
    row(
      'kill → last affected key served',
      `p50 ${ms(p(recovery, 50))}`,
      `p99 ${ms(p(recovery, 99))}`,
      `(${runs.length} runs; p99 = slowest)`,
    ),
  );
  console.log(row('kill → both survivors mark it down', `p50 ${ms(p(detect, 50))}`, `p99 ${ms(p(detect, 99))}`));
  console.log(row('replication part (recovery − down)', `p50 ${ms(p(replication, 50))}`, `p99 ${ms(p(replication, 99))}`));
  console.log(row('ratio recovery / detection', `p50 ${fixed(p(ratio, 50))}`, `p99 ${fixed(p(ratio, 99))}`));
  console.log(
    row('kill → each affected key served', `p50 ${ms(p(perKey, 50))}`, `p99 ${ms(p(perKey, 99))}`, `(${perKey.length} keys over all runs)`),
  );
  console.log(row('reference: lan downBound', `${BOUND_MS} ms`, `detection p50 / bound ${fixed(p(detect, 50) / BOUND_MS, 3)}`));
  console.log(row('target: p99 recovery ≤ 3 s', pass ? 'PASS' : 'MISS'));
  console.log(
    row('history check (every run)', '0 violations, 0 stale reads', `${ok} acknowledged, ${failed} refused, ${unknown} unknown increments`),
  );
  console.log(`${machineLine()}; ${fixed((now() - t0) / 1000, 1)} s; wall-clock figures are noisy on a shared 2-core box`);
  printResult({
    bench: 'failover',
    runs: runs.length,
    keys: KEYS.length,
    clients: CLIENTS,
    recoveryP50Ms: Math.round(p(recovery, 50)),
    recoveryP99Ms: Math.round(p(recovery, 99)),
    detectP50Ms: Math.round(p(detect, 50)),
    detectP99Ms: Math.round(p(detect, 99)),
    replicationP50Ms: Math.round(p(replication, 50)),
    replicationP99Ms: Math.round(p(replication, 99)),
    ratioP50: Number(p(ratio, 50).toFixed(2)),
    perKeyP50Ms: Math.round(p(perKey, 50)),
    perKeyP99Ms: Math.round(p(perKey, 99)),
    boundMs: BOUND_MS,
    targetP99Ms: TARGET_P99_MS,
    acknowledged: ok,
    unknown,
    staleReads,
    violations: 0,
    pass,
  });
});
