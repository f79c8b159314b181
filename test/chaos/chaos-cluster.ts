/**
 * The real `troupe start` processes of a chaos scenario: like test/helpers/process-cluster.ts,
 * plus what faults need — a node started inside a network namespace of `NetLab` (forked through
 * `ip netns exec`, which execs node, so the child's pid is the node's and signals reach it),
 * restarts on the same or an emptied data directory, and a sampler of every live node's memory
 * and open file descriptors read from /proc (for the report's peak RSS and the soak's flatness).
 *
 * ```ts
 * const cluster = new ChaosCluster('kill');
 * try {
 *   const nodes = await cluster.startAll([1, 2, 3]);
 *   cluster.kill(3);
 *   await cluster.restart(3, { emptyDataDir: true });
 * } finally {
 *   await cluster.stop();
 * }
 * ```
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { forkNode } from '../../src/cli/node-process.ts';
import type { EpochClaim } from '../helpers/history.ts';
import { aliveEverywhere, demoApp } from '../helpers/process-cluster.ts';
import { eventually, exited, stopChild } from '../helpers/processes.ts';
import type { NetLab } from './net-lab.ts';

export interface ChaosNode {
  id: number;
  child: ChildProcess;
  pid: number;
  /** Gateway URL, as the test process reaches it. */
  url: string;
  /** Node-to-node address, the seed for others. */
  cluster: string;
  dir: string;
}

/** One reading of a node's /proc entries. */
export interface ProcSample {
  at: number;
  id: number;
  rssKb: number;
  /** VmHWM: the process's peak RSS so far. */
  peakKb: number;
  fds: number;
}

export interface ChaosClusterOptions {
  /** Nodes run inside this lab's namespaces (node i in `lab.ns(i)`, listening on `lab.ip(i)`). */
  lab?: NetLab;
  /** `--log-level`; default 'info' (the `primary in epoch` lines the I1 checker reads are info). */
  logLevel?: 'info' | 'warn';
  /** More flags for every node. */
  args?: string[];
  /** More flags for one node (`--advertise` through a proxy). */
  argsFor?: (id: number) => string[];
}

/** The node-to-node port inside a lab: every node has an address of its own, so all use one port. */
export const LAB_CLUSTER_PORT = 7401;
/** The gateway port inside a lab. */
export const LAB_HTTP_PORT = 8080;

export class ChaosCluster {
  readonly secret = randomBytes(24).toString('base64url');
  readonly root: string;
  readonly nodes = new Map<number, ChaosNode>();
  /** Every `primary in epoch` line any node logged, in the order they arrived. */
  readonly claims: EpochClaim[] = [];
  /** Bytes each node wrote to stdout and stderr (its logs), over all its incarnations. */
  readonly logBytes = new Map<number, number>();
  /** Each node's last 5,000 log lines that name a partition (`"p":`), for a failure's message. */
  readonly partitionLines = new Map<number, string[]>();
  /** Every /proc sample taken (the soak reads the series; the report takes the peak). */
  readonly samples: ProcSample[] = [];
  private readonly children: ChildProcess[] = [];
  private readonly stderrTail = new Map<number, string>();
  private sampler: NodeJS.Timeout | undefined;

  constructor(
    name: string,
    private readonly o: ChaosClusterOptions = {},
  ) {
    this.root = mkdtempSync(join(tmpdir(), `troupe-chaos-${name}-`));
  }

  dirOf(id: number): string {
    return join(this.root, `n${id}`);
  }

  node(id: number): ChaosNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`node ${id} was never started`);
    return n;
  }

  /** The nodes whose process is running (not killed; a SIGSTOPped one counts as live). */
  live(): ChaosNode[] {
    return [...this.nodes.values()].filter((n) => n.child.exitCode === null && n.child.signalCode === null);
  }

  /** `troupe start --id <id>`; resolves once it reports ready. `port` pins its node-to-node port (a restart on loopback). */
  async start(id: number, o: { seeds?: string[]; port?: number; args?: string[] } = {}): Promise<ChaosNode> {
    const lab = this.o.lab;
    const argv = ['start', '--id', String(id), '--workers', '1', '--app', demoApp, '--data-dir', this.dirOf(id)];
    if (lab === undefined) argv.push('--port', String(o.port ?? 0), '--http', '0');
    else argv.push('--listen', `${lab.ip(id)}:${LAB_CLUSTER_PORT}`, '--host', lab.ip(id), '--http', String(LAB_HTTP_PORT));
    argv.push('--log-level', this.o.logLevel ?? 'info', ...(this.o.args ?? []), ...(this.o.argsFor?.(id) ?? []), ...(o.args ?? []));
    if (o.seeds?.length) argv.push('--seeds', o.seeds.join(','));
    const { child, ready } = forkNode(argv, {
      env: { ...process.env, TROUPE_CLUSTER_SECRET: this.secret, TROUPE_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // `ip netns exec NS node …` enters the namespace, then execs node: same pid, same IPC fd.
      ...(lab && { execPath: lab.ipCommand, execArgv: ['netns', 'exec', lab.ns(id), process.execPath] }),
    });
    this.children.push(child);
    this.readLogs(id, child);
    const r = await ready;
    const node: ChaosNode = { id, child, pid: child.pid!, url: r.url, cluster: r.cluster!, dir: this.dirOf(id) };
    this.nodes.set(id, node);
    this.startSampler();
    return node;
  }

  /** Starts the first id, then the others seeded with it; waits until every node sees all alive. */
  async startAll(ids: readonly number[], timeoutMs = 30_000): Promise<ChaosNode[]> {
    const first = await this.start(ids[0]!);
    const rest = await Promise.all(ids.slice(1).map((id) => this.start(id, { seeds: [first.cluster] })));
    const nodes = [first, ...rest];
    await eventually(
      () => aliveEverywhere(nodes),
      timeoutMs,
      () => `all ${nodes.length} nodes see ${nodes.length} alive members`,
    );
    return nodes;
  }

  /** SIGKILL by pid; resolves once it has exited. */
  async kill(id: number): Promise<void> {
    const n = this.node(id);
    process.kill(n.pid, 'SIGKILL');
    await exited(n.child);
  }

  /** Sends SIGSTOP or SIGCONT to the node's pid. */
  signal(id: number, sig: 'SIGSTOP' | 'SIGCONT'): void {
    process.kill(this.node(id).pid, sig);
  }

  /**
   * Starts a killed node again with the same id and node-to-node address, seeded with a live
   * node; `emptyDataDir` deletes its data directory first (a replaced host). Resolves once every
   * live node sees every live node alive.
   */
  async restart(id: number, o: { emptyDataDir?: boolean; timeoutMs?: number } = {}): Promise<ChaosNode> {
    const old = this.node(id);
    if (old.child.exitCode === null && old.child.signalCode === null) throw new Error(`node ${id} is still running`);
    if (o.emptyDataDir) rmSync(old.dir, { recursive: true, force: true });
    const seed = this.live().find((n) => n.id !== id);
    const port = Number(old.cluster.split(':').pop());
    const again = await this.start(id, { seeds: seed ? [seed.cluster] : [], ...(this.o.lab === undefined && { port }) });
    await this.waitAllAlive(o.timeoutMs ?? 30_000);
    return again;
  }

  /** Waits until every live node sees exactly the live nodes alive. */
  async waitAllAlive(timeoutMs: number): Promise<number> {
    const live = this.live();
    return eventually(
      () => aliveEverywhere(live),
      timeoutMs,
      () => `every live node (${live.map((n) => n.id).join(', ')}) sees ${live.length} alive`,
    );
  }

  /** The last 4 KiB each node wrote to stderr, for a failure's message. */
  stderr(): string {
    return [...this.stderrTail].map(([id, t]) => `--- node ${id} stderr\n${t}`).join('\n');
  }

  /** What every node logged about partition `p`, in order per node. */
  linesAbout(p: number): string {
    return [...this.partitionLines]
      .map(([id, lines]) => lines.filter((l) => l.includes(`"p":${p},`) || l.includes(`"p":${p}}`)).map((l) => `  node ${id}: ${l}`).join('\n'))
      .join('\n');
  }

  /** Peak RSS over every node and incarnation sampled, MiB. */
  peakRssMb(): number {
    return Math.round(Math.max(0, ...this.samples.map((s) => s.peakKb)) / 1024);
  }

  /** Stops every process (SIGCONT first: a stopped one ignores SIGTERM) and deletes the data directories. */
  async stop(): Promise<void> {
    clearInterval(this.sampler);
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGCONT');
    await Promise.all(this.children.map(stopChild));
    rmSync(this.root, { recursive: true, force: true });
  }

  /** Reads one sample per live node now (also called every 500 ms while nodes run). */
  sample(): void {
    const at = Date.now();
    for (const n of this.live()) {
      try {
        const status = readFileSync(`/proc/${n.pid}/status`, 'utf8');
        const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
        this.samples.push({ at, id: n.id, rssKb: kb('VmRSS'), peakKb: kb('VmHWM'), fds: readdirSync(`/proc/${n.pid}/fd`).length });
      } catch {
        // Exited between live() and the read: its earlier samples stand.
      }
    }
  }

  private startSampler(): void {
    if (this.sampler !== undefined) return;
    this.sampler = setInterval(() => this.sample(), 500);
    this.sampler.unref();
  }

  private readLogs(id: number, child: ChildProcess): void {
    const count = (d: Buffer) => this.logBytes.set(id, (this.logBytes.get(id) ?? 0) + d.length);
    let partial = '';
    child.stdout!.on('data', (d: Buffer) => {
      count(d);
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (line.includes('"p":')) {
          let kept = this.partitionLines.get(id);
          if (kept === undefined) this.partitionLines.set(id, (kept = []));
          kept.push(line);
          if (kept.length > 5_000) kept.shift();
        }
        if (!line.includes('primary in epoch')) continue;
        const l = JSON.parse(line) as { time: number; p: number; epoch: { term: number; node: number }; startSeq: number };
        this.claims.push({ at: l.time, node: id, p: l.p, epoch: l.epoch, startSeq: l.startSeq });
      }
    });
    child.stderr!.on('data', (d: Buffer) => {
      count(d);
      this.stderrTail.set(id, ((this.stderrTail.get(id) ?? '') + d.toString()).slice(-4_096));
    });
  }
}
