import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ErrorCodes } from '../core/errors.ts';
import type { Journal } from '../persistence/journal.ts';

/**
 * A node's Prometheus metrics (`GET /metrics`), built with prom-client on a registry of its own.
 *
 * Two kinds of figures. Events on the main thread are counted as they happen: asks and their
 * outcome per kind and error code, ask latency, replicated journal writes, membership changes.
 * Everything else — worker threads' actor hosts, replication, the transport, the router — keeps
 * its own counters already; they are read when Prometheus scrapes (prom-client `collect`), so
 * metrics add nothing to those hot paths.
 *
 * Labels are bounded: kinds (only kinds the node serves; anything else is `other`), worker
 * slots, peers (node ids), statuses and error codes — never keys.
 */
export interface MetricsSources {
  node: number;
  kinds: readonly string[];
  /** Per worker slot: the actor host's stats (resident, byKind, queued, processed, restarts…). */
  workers: () => Promise<Array<Record<string, unknown>>>;
  router?: () => Record<string, unknown> | undefined;
  replication?: () => Record<string, unknown> | undefined;
  transport?: () => Record<string, unknown> | undefined;
  members?: () => ReadonlyArray<{ status: string }>;
  /** WebSocket sessions: the hub's counters and its open sockets and watched actors. */
  sessions?: () => Record<string, unknown> | undefined;
}

/** Ask latency buckets, seconds: 100 µs … 10 s. */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Host counters exposed as `troupe_actor_<name>_total` (see ActorHost.stats). */
const HOST_COUNTERS: Record<string, string> = {
  processed: 'messages processed by actors',
  activated: 'actors activated (loaded into memory)',
  passivated: 'actors passivated when idle',
  evicted: 'actors passivated by the resident cap',
  restarts: 'actor restarts by their supervisor',
  escalations: 'actors that failed past their restart window',
  deadLetters: 'messages refused or dropped by actor hosts (unknown kind or command, stopped, mailbox full)',
};

const ROUTER_COUNTERS: Record<string, string> = {
  sentRemote: 'asks and tells sent to another node',
  servedRemote: 'asks and tells served for another node',
  forwarded: 'requests forwarded one hop to their owner',
  rerouted: 'requests resent after their owner changed or refused (ERR_NOT_PRIMARY)',
  badPayloads: 'malformed node-to-node actor payloads dropped',
  deadLetters: 'tells to an unreachable owner, dropped and counted',
};

const REPLICATION_COUNTERS: Record<string, string> = {
  fences: 'fences run (epochs started) by this node',
  failedFences: 'fences that did not complete',
  depositions: 'times a primary here was deposed by a later epoch',
  appendsSent: 'append frames shipped to replicas',
  badMessages: 'malformed replication messages dropped',
  truncations: 'log prefix truncations',
  snapshotsSent: 'partition snapshots sent',
  snapshotsInstalled: 'partition snapshots installed',
  handoffsStarted: 'handoffs started here as learner',
  handoffsCompleted: 'handoffs completed here as learner',
  handoffsTimedOut: 'seals that timed out here',
};

const REPLICATION_GAUGES: Record<string, string> = {
  primaries: 'partitions this node leads',
  established: 'partitions led with their epoch established',
  candidates: 'fences in progress',
  pendingEntries: 'log entries appended and not yet committed',
  logEntries: 'entries held in the partition logs (bounded by truncation)',
  learning: 'partitions learning or sealing (handoff)',
};

const SESSION_COUNTERS: Record<string, string> = {
  opened: 'WebSocket sessions opened',
  closed: 'WebSocket sessions closed',
  pushes: 'pushes sent to WebSocket clients',
  gaps: 'push notes that arrived past a socket position (read back from the log)',
  refusedFull: 'WebSocket upgrades refused at the connection cap',
  badFrames: 'WebSocket sockets closed for a malformed frame',
};

const TRANSPORT_COUNTERS: Record<string, string> = {
  framesSent: 'node-to-node frames sent',
  framesReceived: 'node-to-node frames received',
  bytesSent: 'node-to-node bytes sent',
  bytesReceived: 'node-to-node bytes received',
  undeliverable: 'frames that could not be delivered (peer unreachable, restarted, too large)',
};

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

export class NodeMetrics {
  readonly registry = new Registry();
  private readonly kinds: Set<string>;
  /** Asks per kind, counted in plain arrays on the hot path and formatted at scrape time. */
  private readonly askStats = new Map<string, AskTally>();
  private readonly journalSeconds: Histogram<'outcome'>;
  private readonly membershipChanges: Counter<'status'>;
  private readonly httpErrors: Counter<'code'>;

  constructor(private readonly s: MetricsSources) {
    this.kinds = new Set(s.kinds);
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node: String(s.node) });
    this.registerAskMetrics();
    this.journalSeconds = new Histogram({ name: 'troupe_journal_write_duration_seconds', help: 'replicated journal writes, from the worker’s request to commit on W replicas', labelNames: ['outcome'], buckets: LATENCY_BUCKETS, registers });
    this.httpErrors = new Counter({ name: 'troupe_http_errors_total', help: 'HTTP requests answered with an error, by code (refused before an ask included)', labelNames: ['code'], registers });
    this.membershipChanges = new Counter({ name: 'troupe_membership_changes_total', help: 'members changing status, by the new status', labelNames: ['status'], registers });
    this.workerMetrics(registers);
    this.counterGroup('troupe_router', ROUTER_COUNTERS, () => s.router?.(), registers);
    this.counterGroup('troupe_replication', REPLICATION_COUNTERS, () => s.replication?.(), registers);
    this.counterGroup('troupe_transport', TRANSPORT_COUNTERS, () => s.transport?.(), registers);
    this.counterGroup('troupe_sessions', SESSION_COUNTERS, () => s.sessions?.(), registers);
    for (const [field, help] of Object.entries({ connections: 'WebSocket connections open on this node', actors: 'actors with WebSocket connections on this node' })) {
      new Gauge({
        name: `troupe_sessions_${field}`,
        help,
        registers,
        collect() {
          const r = s.sessions?.();
          if (r !== undefined) this.set(num(r[field]));
        },
      });
    }
    for (const [field, help] of Object.entries(REPLICATION_GAUGES)) {
      new Gauge({
        name: `troupe_replication_${snake(field)}`,
        help,
        registers,
        collect() {
          const r = s.replication?.();
          if (r !== undefined) this.set(num(r[field]));
        },
      });
    }
    new Gauge({
      name: 'troupe_replication_lag_seconds',
      help: 'time from shipping an append to a replica until it confirmed it, per peer (p50, p99, max of recent samples)',
      labelNames: ['peer', 'quantile'],
      registers,
      collect() {
        this.reset();
        const lag = s.replication?.()?.lag as Record<string, { p50Ms?: number; p99Ms?: number; maxMs?: number }> | undefined;
        for (const [peer, f] of Object.entries(lag ?? {})) {
          this.set({ peer, quantile: '0.5' }, num(f.p50Ms) / 1000);
          this.set({ peer, quantile: '0.99' }, num(f.p99Ms) / 1000);
          this.set({ peer, quantile: '1' }, num(f.maxMs) / 1000);
        }
      },
    });
    new Gauge({
      name: 'troupe_transport_queued_bytes',
      help: 'bytes queued for peers, not yet written',
      registers,
      collect() {
        const t = s.transport?.();
        if (t !== undefined) this.set(num(t.queuedBytes));
      },
    });
    new Gauge({
      name: 'troupe_members',
      help: 'members by status, as this node sees them',
      labelNames: ['status'],
      registers,
      collect() {
        this.reset();
        for (const m of s.members?.() ?? []) this.inc({ status: m.status });
      },
    });
  }

  /** A kind as a label: only kinds this node serves (a client can name anything). */
  kindLabel(kind: string): string {
    return this.kinds.has(kind) ? kind : 'other';
  }

  /**
   * Wraps an ask: counts its outcome and times it. It runs on every request, so it only bumps
   * numbers in a per-kind tally (prom-client would hash the label set on each call, ~1 µs); the
   * tallies become `troupe_asks_total` and `troupe_ask_duration_seconds` when Prometheus scrapes.
   */
  timeAsk<T>(kind: string, ask: () => Promise<T>): Promise<T> {
    const t = this.tallyOf(kind);
    const started = performance.now();
    return ask().then(
      (v) => {
        t.observe((performance.now() - started) / 1000);
        t.ok++;
        return v;
      },
      (e: unknown) => {
        t.observe((performance.now() - started) / 1000);
        const code = outcomeOf(e);
        t.errors.set(code, (t.errors.get(code) ?? 0) + 1);
        throw e;
      },
    );
  }

  /**
   * Per kind: asks answered, their outcomes and latency percentiles (upper bounds of the
   * histogram buckets holding them), for the REPL's `stats`.
   */
  askSummary(): Record<string, { asks: number; ok: number; errors: Record<string, number>; p50Ms: number | null; p99Ms: number | null }> {
    const out: ReturnType<NodeMetrics['askSummary']> = {};
    for (const [kind, t] of this.askStats) {
      if (this.kindLabel(kind) !== kind) continue;
      out[kind] = { asks: t.count, ok: t.ok, errors: Object.fromEntries(t.errors), p50Ms: t.quantileMs(0.5), p99Ms: t.quantileMs(0.99) };
    }
    return out;
  }

  private tallyOf(kind: string): AskTally {
    let t = this.askStats.get(kind);
    if (t !== undefined) return t;
    const label = this.kindLabel(kind);
    t = this.askStats.get(label);
    if (t === undefined) this.askStats.set(label, (t = new AskTally()));
    // An unknown kind shares `other` and is not remembered by name (a client can name anything).
    if (label !== 'other') this.askStats.set(kind, t);
    return t;
  }

  private registerAskMetrics(): void {
    const tallies = () => [...this.askStats.entries()].filter(([kind]) => this.kindLabel(kind) === kind);
    this.registry.registerMetric({
      name: 'troupe_asks_total',
      help: 'asks answered by this node, by kind and outcome (ok or an error code)',
      type: 'counter',
      aggregator: 'sum',
      get: () => ({
        name: 'troupe_asks_total',
        help: 'asks answered by this node, by kind and outcome (ok or an error code)',
        type: 'counter',
        aggregator: 'sum',
        values: tallies().flatMap(([kind, t]) => [
          { labels: { kind, outcome: 'ok' }, value: t.ok },
          ...[...t.errors].map(([outcome, value]) => ({ labels: { kind, outcome }, value })),
        ]),
      }),
    } as unknown as Parameters<Registry['registerMetric']>[0]);
    this.registry.registerMetric({
      name: 'troupe_ask_duration_seconds',
      help: 'ask latency at this node, from arrival to reply',
      type: 'histogram',
      aggregator: 'sum',
      get: () => ({
        name: 'troupe_ask_duration_seconds',
        help: 'ask latency at this node, from arrival to reply',
        type: 'histogram',
        aggregator: 'sum',
        values: tallies().flatMap(([kind, t]) => {
          let cumulative = 0;
          return [
            ...LATENCY_BUCKETS.map((le, i) => {
              cumulative += t.buckets[i]!;
              return { metricName: 'troupe_ask_duration_seconds_bucket', labels: { le, kind }, value: cumulative };
            }),
            { metricName: 'troupe_ask_duration_seconds_bucket', labels: { le: '+Inf', kind }, value: t.count },
            { metricName: 'troupe_ask_duration_seconds_sum', labels: { kind }, value: t.sum },
            { metricName: 'troupe_ask_duration_seconds_count', labels: { kind }, value: t.count },
          ];
        }),
      }),
    } as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  httpError(code: string): void {
    this.httpErrors.inc({ code: codeLabel(code) });
  }

  memberChanged(status: string): void {
    this.membershipChanges.inc({ status });
  }

  /** The journal the workers write through, timed (replicated nodes: the replication driver). */
  timedJournal<J extends Journal>(journal: J): J {
    const seconds = this.journalSeconds;
    return new Proxy(journal, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (typeof v !== 'function') return v;
        if (prop !== 'writeMany') return v.bind(target);
        return (writes: readonly unknown[]) => {
          const end = seconds.startTimer();
          return (v.call(target, writes) as Promise<Array<Error | null>>).then((results) => {
            end({ outcome: results.some((r) => r !== null) ? 'failed' : 'ok' });
            return results;
          });
        };
      },
    });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private workerMetrics(registers: Registry[]): void {
    const s = this.s;
    // One read of every worker's stats per scrape, shared by the metrics below.
    let pending: Promise<Array<Record<string, unknown>>> | undefined;
    const stats = () => (pending ??= s.workers().finally(() => queueMicrotask(() => (pending = undefined))));
    for (const [field, help] of Object.entries(HOST_COUNTERS)) {
      new Counter({
        name: `troupe_actor_${snake(field)}_total`,
        help,
        labelNames: ['worker'],
        registers,
        async collect() {
          this.reset();
          for (const w of await stats()) this.inc({ worker: String(num(w.slot)) }, num(w[field]));
        },
      });
    }
    const kinds = this.kinds;
    new Gauge({
      name: 'troupe_actors_resident',
      help: 'actors in memory, by kind and worker',
      labelNames: ['kind', 'worker'],
      registers,
      async collect() {
        this.reset();
        for (const w of await stats()) {
          for (const [kind, n] of Object.entries((w.byKind ?? {}) as Record<string, unknown>))
            this.set({ kind: kinds.has(kind) ? kind : 'other', worker: String(num(w.slot)) }, num(n));
        }
      },
    });
    new Gauge({
      name: 'troupe_mailbox_depth',
      help: 'messages queued in actor mailboxes, by worker',
      labelNames: ['worker'],
      registers,
      async collect() {
        this.reset();
        for (const w of await stats()) this.set({ worker: String(num(w.slot)) }, num(w.queued));
      },
    });
  }

  private counterGroup(prefix: string, fields: Record<string, string>, read: () => Record<string, unknown> | undefined, registers: Registry[]): void {
    for (const [field, help] of Object.entries(fields)) {
      new Counter({
        name: `${prefix}_${snake(field)}_total`,
        help,
        registers,
        collect() {
          const r = read();
          if (r === undefined) return;
          this.reset();
          this.inc(num(r[field]));
        },
      });
    }
  }
}

/** One kind's asks: outcomes and a latency histogram (LATENCY_BUCKETS, non-cumulative here). */
class AskTally {
  ok = 0;
  readonly errors = new Map<string, number>();
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length);
  sum = 0;
  count = 0;

  /** The upper bound of the bucket holding quantile q, ms (null before any ask; beyond 10 s: Infinity). */
  quantileMs(q: number): number | null {
    if (this.count === 0) return null;
    const rank = Math.ceil(q * this.count);
    let seen = 0;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      seen += this.buckets[i]!;
      if (seen >= rank) return LATENCY_BUCKETS[i]! * 1000;
    }
    return Infinity;
  }

  observe(seconds: number): void {
    this.sum += seconds;
    this.count++;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      if (seconds <= LATENCY_BUCKETS[i]!) {
        this.buckets[i]!++;
        return;
      }
    }
  }
}

function outcomeOf(e: unknown): string {
  return codeLabel((e as { code?: unknown } | null)?.code);
}

/** An error code as a label: a troupe code, else ERR_INTERNAL (labels stay a bounded set). */
function codeLabel(code: unknown): string {
  return typeof code === 'string' && Object.hasOwn(ErrorCodes, code) ? code : 'ERR_INTERNAL';
}
