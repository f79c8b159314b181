/**
 * Real `troupe start` processes on 127.0.0.1 for the tests that check a cluster from the outside:
 * one `ProcessCluster` per test file owns the nodes' secret, their data directories, every child
 * process and every client connection pool, and `stop()` releases all of them, whatever failed.
 * `runCounterLoad` is the clients' increment loop of the replication tests (Jepsen's way: every
 * outcome recorded in a `History`), `readCounts` reads every key back once the cluster is quiet.
 *
 * ```ts
 * const cluster = new ProcessCluster('failover', { logLevel: 'info', jsonLogs: true });
 * afterAll(() => cluster.stop(), 20_000);
 * const nodes = await cluster.startAll([1, 2, 3]);  // node 1, then 2 and 3 seeded with it; all alive everywhere
 * const load = runCounterLoad({ gateways: nodes.map((n) => cluster.gateway(n.url)), history, keys, clients: 8 });
 * await load.until(() => history.counts().ok >= 300, 15_000, () => 'acknowledged before the kill');
 * await load.stop();
 * ```
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { forkNode } from '../../src/cli/node-process.ts';
import { rng as seeded } from '../replication/model.ts';
import { type CallError, CounterGateway } from './counter-gateway.ts';
import type { EpochClaim, History } from './history.ts';
import { eventually, stopChild } from './processes.ts';

/** The demo app (`counter`, `cart`) every process test serves. */
export const demoApp = fileURLToPath(new URL('../../src/demo/app.ts', import.meta.url));

/** Longer than the gateway's default ask timeout (5 s), so the server answers before the client gives up. */
export const CLIENT_TIMEOUT_MS = 7_000;

/**
 * Refusals that say nothing was applied: the node is not (or no longer) the partition's primary,
 * no node is up, or no primary could be established in time. Everything else that is not a 200
 * (ERR_STALE_EPOCH, ERR_ASK_TIMEOUT, a 5xx, a reset or a timeout) may or may not have been applied.
 */
export const NOT_APPLIED: ReadonlySet<string> = new Set(['ERR_NOT_PRIMARY', 'ERR_NO_NODES', 'ERR_PARTITION_UNAVAILABLE', 'ECONNREFUSED']);

/** How every node of a cluster is started; `start` may override any of it for one node. */
export interface NodeOptions {
  /** `--log-level`; default 'warn'. */
  logLevel?: 'warn' | 'info';
  /**
   * JSON logs on stdout (`TROUPE_LOG_FORMAT=json`), read into the node's `claims`, `messages` and
   * `partitionLines`; otherwise stdout is ignored. Default false.
   */
  jsonLogs?: boolean;
  /** 'inherit' shows the node's stderr in the test output; 'tail' keeps its last 4 KiB for `stderr()`. Default 'inherit'. */
  stderr?: 'inherit' | 'tail';
  /** A `--data-dir` under the cluster's temporary root (`dirOf(id)`); default true. */
  dataDir?: boolean;
  /** More flags, after the common ones (`--durability lazy`, `--zone …`). */
  args?: string[] | ((id: number) => string[]);
}

/** One started node. */
export interface ProcessNode {
  id: number;
  child: ChildProcess;
  url: string;
  /** Node-to-node address, the seed for others. */
  cluster: string;
  /** Its `--data-dir` (undefined with `dataDir: false`). */
  dir?: string;
  /** With `jsonLogs`: every `primary in epoch` line it logged so far, in order. */
  claims: EpochClaim[];
  /** With `jsonLogs`: every log message (`msg`) it wrote, in order. */
  messages: string[];
  /** With `jsonLogs`: its last 2,000 log lines about partitions (`"p":`), for a failure's message. */
  partitionLines: string[];
  /** With `stderr: 'tail'`: the last 4 KiB of its stderr ('' otherwise). */
  stderr(): string;
}

export class ProcessCluster {
  readonly secret = randomBytes(24).toString('base64url');
  /** The temporary directory holding the data directories; deleted by `stop()`. */
  readonly root: string;
  private readonly children: ChildProcess[] = [];
  private readonly gateways: CounterGateway[] = [];

  /** `name` names the temporary root of the data directories (`troupe-<name>-…`). */
  constructor(
    name: string,
    private readonly defaults: NodeOptions = {},
  ) {
    this.root = mkdtempSync(join(tmpdir(), `troupe-${name}-`));
  }

  dirOf(id: number): string {
    return join(this.root, `n${id}`);
  }

  /** `troupe start --id <id>` with one worker; resolves when it reports ready over IPC. `port` fixes its node-to-node port (a restart). */
  async start(id: number, o: NodeOptions & { seeds?: string[]; port?: number } = {}): Promise<ProcessNode> {
    const { logLevel = 'warn', jsonLogs = false, stderr = 'inherit', dataDir = true, args = [] } = { ...this.defaults, ...o };
    const dir = dataDir ? this.dirOf(id) : undefined;
    const argv = ['start', '--id', String(id), '--port', String(o.port ?? 0), '--http', '0', '--workers', '1', '--app', demoApp];
    if (dir !== undefined) argv.push('--data-dir', dir);
    argv.push('--log-level', logLevel, ...(typeof args === 'function' ? args(id) : args));
    if (o.seeds?.length) argv.push('--seeds', o.seeds.join(','));
    const { child, ready } = forkNode(argv, {
      env: { ...process.env, TROUPE_CLUSTER_SECRET: this.secret, ...(jsonLogs && { TROUPE_LOG_FORMAT: 'json' }) },
      stdio: ['ignore', jsonLogs ? 'pipe' : 'ignore', stderr === 'tail' ? 'pipe' : 'inherit', 'ipc'],
    });
    this.children.push(child); // before awaiting: stopped at the end even if it never gets ready
    let tail = '';
    if (stderr === 'tail') child.stderr!.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-4_096)));
    const node: Omit<ProcessNode, 'url' | 'cluster'> = { id, child, dir, claims: [], messages: [], partitionLines: [], stderr: () => tail };
    if (jsonLogs) readJsonLogs(child, node);
    const r = await ready;
    return { ...node, url: r.url, cluster: r.cluster! };
  }

  /**
   * Starts the first id, then the others at once seeded with it, and waits (15 s) until every
   * node sees every one of them alive.
   */
  async startAll(ids: readonly number[]): Promise<ProcessNode[]> {
    const first = await this.start(ids[0]!);
    const nodes = [first, ...(await Promise.all(ids.slice(1).map((id) => this.start(id, { seeds: [first.cluster] }))))];
    await eventually(
      () => aliveEverywhere(nodes),
      15_000,
      () => `all ${nodes.length} nodes see ${nodes.length} alive members`,
    );
    return nodes;
  }

  /** A `CounterGateway` to `url`, closed by `stop()`. */
  gateway(url: string, o: { maxSockets: number; timeoutMs?: number }): CounterGateway {
    const g = new CounterGateway(url, { maxSockets: o.maxSockets, timeoutMs: o.timeoutMs ?? CLIENT_TIMEOUT_MS });
    this.gateways.push(g);
    return g;
  }

  /** Another child process (a CLI command) to stop with the nodes. */
  track(child: ChildProcess): void {
    this.children.push(child);
  }

  /**
   * Closes the client pools and stops every process this cluster started, each by its handle
   * (SIGCONT first: a SIGSTOPped process ignores SIGTERM until continued); each has exited
   * before the data directories are deleted.
   */
  async stop(): Promise<void> {
    for (const g of this.gateways) g.destroy();
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGCONT');
    await Promise.all(this.children.map(stopChild));
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Reads a node's JSON log lines from its stdout into `claims`, `messages` and `partitionLines`. */
function readJsonLogs(child: ChildProcess, node: Pick<ProcessNode, 'id' | 'claims' | 'messages' | 'partitionLines'>): void {
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      const l = JSON.parse(line) as { time: number; msg: string; p: number; epoch: { term: number; node: number }; startSeq: number };
      node.messages.push(l.msg);
      if (line.includes('"p":')) {
        node.partitionLines.push(line);
        if (node.partitionLines.length > 2_000) node.partitionLines.shift();
      }
      if (l.msg.includes('primary in epoch')) node.claims.push({ at: l.time, node: node.id, p: l.p, epoch: l.epoch, startSeq: l.startSeq });
    }
  });
}

/** GET `url` as JSON; `timeoutMs` aborts a request to a process that does not answer. */
export async function getJson<T>(url: string, timeoutMs?: number): Promise<T> {
  const res = await fetch(url, timeoutMs === undefined ? {} : { signal: AbortSignal.timeout(timeoutMs) });
  return (await res.json()) as T;
}

/**
 * How many members `node` sees alive (`GET /cluster/members`). The request gives up after 2 s,
 * so polling a stopped (SIGSTOP) process fails the check instead of hanging past its deadline.
 */
export async function aliveCount(node: { url: string }): Promise<number> {
  const view = await getJson<{ members: Array<{ status: string }> }>(node.url + '/cluster/members', 2_000);
  return view.members.filter((m) => m.status === 'alive').length;
}

/** Whether every node sees `expected` members alive (default: all of `nodes`). */
export async function aliveEverywhere(nodes: ReadonlyArray<{ url: string }>, expected = nodes.length): Promise<boolean> {
  return (await Promise.all(nodes.map(aliveCount))).every((n) => n === expected);
}

export interface CounterLoad {
  /** Resolves when `holds()` is true after some operation; rejects with `why()` at the deadline. */
  until(holds: () => boolean, timeoutMs: number, why: () => string): Promise<void>;
  /** Ends the loops after their current operation; resolves when they have. */
  stop(): Promise<void>;
}

/**
 * `clients` concurrent clients, each incrementing random keys (seeded per client: `seed + c`)
 * through `gateways` in turn — a gateway pushed onto the array later joins the rotation — and
 * recording every outcome in `history` (`NOT_APPLIED` codes as failed, the rest as unknown).
 * With `avoidUnreachable`, a client that cannot reach a gateway (refused, reset, timed out) moves
 * on and does not come back to it until it could reach none. Tests wait with `until` for what the
 * history shows, not for a time.
 */
export function runCounterLoad(o: {
  gateways: CounterGateway[];
  history: History;
  keys: readonly string[];
  clients: number;
  /** First client's random seed; default 1. */
  seed?: number;
  avoidUnreachable?: boolean;
}): CounterLoad {
  const { gateways, history, keys, seed = 1 } = o;
  const waiters: Array<() => void> = [];
  let stopping = false;
  const loops = Array.from({ length: o.clients }, async (_, c) => {
    const random = seeded(seed + c);
    const avoid = new Set<number>();
    let g = c % gateways.length;
    while (!stopping) {
      const key = keys[Math.floor(random() * keys.length)]!;
      const gateway = gateways[g]!;
      let unreachable = false;
      await history.incr(
        key,
        () =>
          gateway.call(key, 'incr').catch((e: CallError) => {
            unreachable = e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET' || e.code === 'ETIMEDOUT';
            throw e;
          }),
        (e) => NOT_APPLIED.has((e as CallError).code),
      );
      if (o.avoidUnreachable && unreachable) avoid.add(g);
      if (avoid.size === gateways.length) avoid.clear();
      do g = (g + 1) % gateways.length;
      while (avoid.has(g));
      for (const w of [...waiters]) w();
    }
  });
  return {
    until(holds, timeoutMs, why) {
      return new Promise((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          const i = waiters.indexOf(check);
          if (i >= 0) waiters.splice(i, 1);
        };
        const timer = setTimeout(() => (done(), reject(new Error(`not within ${timeoutMs} ms: ${why()}`))), timeoutMs);
        const check = () => void (holds() && (done(), resolve()));
        waiters.push(check);
        check();
      });
    },
    async stop() {
      stopping = true;
      await Promise.all(loops);
    },
  };
}

/**
 * Every key's count through `gateway`, retrying the keys not served yet every 50 ms; throws at
 * the deadline naming each key that is not, with its last error.
 */
export async function readCounts(gateway: CounterGateway, keys: readonly string[], timeoutMs: number): Promise<Map<string, number>> {
  const finals = new Map<string, number>();
  const lastError = new Map<string, string>();
  await eventually(
    async () => {
      await Promise.all(
        keys
          .filter((k) => !finals.has(k))
          .map((k) =>
            gateway.call(k, 'get').then(
              (n) => void finals.set(k, n),
              (e: CallError) => void lastError.set(k, e.code),
            ),
          ),
      );
      return finals.size === keys.length;
    },
    timeoutMs,
    () =>
      `keys not served through ${gateway.url}: ${keys
        .filter((k) => !finals.has(k))
        .map((k) => `${k} (${lastError.get(k)})`)
        .join(', ')}`,
  );
  return finals;
}
