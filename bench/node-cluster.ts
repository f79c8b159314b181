/**
 * `troupe start` processes for the cluster benchmarks (replication-lag.ts, false-down.ts,
 * rebalance.ts, failure-detection.ts): each forked from bin/troupe.js with an IPC channel and one
 * worker, a temporary LMDB data directory when a durability is given, JSON info logs on stdout
 * handed line by line to a listener, and autocannon load spread over many keys. Every child is
 * stopped by its handle (SIGTERM, SIGKILL after 5 s) and its data directory removed, on failure too.
 */
import autocannon from 'autocannon';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { forkNode } from '../src/cli/node-process.ts';
import { check, now, repoRoot, sleep } from './lib.ts';

export interface BenchNode {
  id: number;
  child: ChildProcess;
  pid: number;
  url: string;
  cluster?: string;
}

export interface LogLine {
  node: number;
  /** pino's wall-clock ms. */
  time: number;
  msg: string;
  rec: Record<string, unknown>;
}

const app = join(repoRoot, 'src/demo/app.ts');
const forked: ChildProcess[] = [];
const dataDirs: string[] = [];

export interface StartOptions {
  id: number;
  /** Cluster secret; without it the node runs alone (no --port). */
  secret?: string;
  /** Its node-to-node port (with a secret): a restarted node keeps its address. Default 0. */
  port?: number;
  seed?: string;
  /** `--durability` with a temporary `--data-dir`; without it the node keeps its actors in memory. */
  durability?: string;
  onLine?: (l: LogLine) => void;
  /** More `--app` modules besides the demo app. */
  apps?: string[];
}

export async function startNode(o: StartOptions): Promise<BenchNode> {
  const args = ['start', '--id', String(o.id), '--http', '0', '--workers', '1', '--app', app, ...(o.apps ?? []).flatMap((a) => ['--app', a])];
  if (o.durability !== undefined) {
    const dir = mkdtempSync(join(tmpdir(), `troupe-bench-n${o.id}-`));
    dataDirs.push(dir);
    args.push('--data-dir', dir, '--durability', o.durability);
  }
  args.push('--log-level', 'info');
  if (o.secret !== undefined) args.push('--port', String(o.port ?? 0));
  if (o.seed !== undefined) args.push('--seeds', o.seed);
  const { child, ready } = forkNode(args, {
    cwd: repoRoot,
    execArgv: [],
    env: { ...process.env, ...(o.secret !== undefined && { TROUPE_CLUSTER_SECRET: o.secret }), TROUPE_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    readyTimeoutMs: 30_000,
  });
  forked.push(child);
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (o.onLine === undefined || !line.startsWith('{')) continue;
      const rec = JSON.parse(line) as Record<string, unknown>;
      o.onLine({ node: o.id, time: Number(rec.time), msg: String(rec.msg), rec });
    }
  });
  child.stderr!.resume();
  const m = await ready;
  return { id: o.id, child, pid: child.pid!, url: m.url, ...(m.cluster !== undefined && { cluster: m.cluster }) };
}

/** Node 1, then 2 and 3 seeded by it; resolves once every node sees three alive members. */
export async function startCluster(
  secret: string,
  durability: string | undefined,
  onLine?: (l: LogLine) => void,
  apps?: string[],
): Promise<BenchNode[]> {
  const extra = { ...(durability !== undefined && { durability }), ...(onLine && { onLine }), ...(apps && { apps }) };
  const n1 = await startNode({ id: 1, secret, ...extra });
  const rest = await Promise.all([2, 3].map((id) => startNode({ id, secret, seed: n1.cluster!, ...extra })));
  const nodes = [n1, ...rest];
  const t0 = now();
  for (;;) {
    const views = await Promise.all(
      nodes.map((n) => getJson<{ members: Array<{ status: string }> }>(`${n.url}/cluster/members`).catch(() => undefined)),
    );
    if (views.every((v) => v !== undefined && v.members.filter((m) => m.status === 'alive').length === 3)) return nodes;
    check(now() - t0 < 20_000, 'three nodes did not see each other alive within 20 s');
    await sleep(100);
  }
}

/** Resolves once the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

export async function stopAll(): Promise<void> {
  await Promise.all(
    forked.splice(0).map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const done = exited(child);
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await done;
      clearTimeout(t);
    }),
  );
  for (const d of dataDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return (await res.json()) as T;
}

export interface LoadResult {
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  ok: number;
  non2xx: number;
  errors: number;
}

/**
 * `connections` connections for `seconds`, POST /actors/counter/<key>/incr over `keys` keys;
 * connection c goes through `urls[c % urls.length]` and walks the keys from its own offset.
 */
export async function load(urls: readonly string[], o: { connections: number; seconds: number; keys: number }): Promise<LoadResult> {
  const perUrl = urls.map((url, u) => {
    const conns = Array.from({ length: o.connections }, (_, c) => c).filter((c) => c % urls.length === u);
    return { url, conns };
  });
  const results = await Promise.all(
    perUrl.map(({ url, conns }) => {
      let next = 0;
      return autocannon({
        url,
        connections: conns.length,
        duration: o.seconds,
        requests: [{ method: 'POST', path: '/actors/counter/k0/incr', headers: { 'content-type': 'application/json' }, body: '{"by":1}' }],
        setupClient: (client) => {
          const c = conns[next++ % conns.length]!;
          const offset = Math.floor((c * o.keys) / o.connections);
          client.setRequests(
            Array.from({ length: o.keys }, (_, i) => ({
              method: 'POST' as const,
              path: `/actors/counter/k${(offset + i) % o.keys}/incr`,
              headers: { 'content-type': 'application/json' },
              body: '{"by":1}',
            })),
          );
        },
      });
    }),
  );
  // Percentiles of several runs are not additive: the worst of each is reported (one URL: exact).
  return {
    reqPerSec: results.reduce((a, r) => a + r['2xx'] / r.duration, 0),
    p50Ms: Math.max(...results.map((r) => r.latency.p50)),
    p99Ms: Math.max(...results.map((r) => r.latency.p99)),
    ok: results.reduce((a, r) => a + r['2xx'], 0),
    non2xx: results.reduce((a, r) => a + r.non2xx, 0),
    errors: results.reduce((a, r) => a + r.errors, 0),
  };
}
