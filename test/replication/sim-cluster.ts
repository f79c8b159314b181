/**
 * A fresh cluster of whole `TroupeNode`s in one process for replication tests: in-process actors
 * (`actors: 'in-process'`), one `MemoryNetwork`, one `SimulatedClock`, replicated durability (the
 * cluster default: R=3, W=2, a `MemoryPartitionStore` per node). Nothing waits for real time:
 * `runUntil`/`settle` advance the simulated clock a step at a time and yield one event-loop turn
 * between steps so the nodes' microtasks (store calls, actor turns, replies) run.
 *
 * Each node logs through a pino logger whose destination records the lines a test checks:
 * `partition P: primary in epoch (t,n)` (invariant I1 is read from these, as it is from real
 * nodes' logs). Randomness is seeded: the network's, the clients', and `Math.random` (the
 * replication driver's back-off jitter) while the cluster runs, so one seed gives one history.
 *
 * @example
 *   const c = await SimNodeCluster.start({ seed: 7 });
 *   const clients = c.startClients({ keys: ['a', 'b'], perNode: 2 });
 *   await c.runFor(1_000);
 *   await clients.stop();
 *   const finals = await c.readCounts(1, ['a', 'b']);
 *   checkCounters(c.history, finals); // []
 *   await c.stop();
 */
import { pino, type Logger } from 'pino';
import { MemoryNetwork, type MemoryNetworkOptions } from '../../src/cluster/memory-network.ts';
import { nextIncarnation } from '../../src/cluster/node-identity.ts';
import { SimulatedClock, type Clock } from '../../src/core/clock.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import { TroupeNode, type NodeOptions } from '../../src/node/troupe-node.ts';
import type { PartitionStore } from '../../src/replication/partition-store.ts';
import { History, type EpochClaim } from '../helpers/history.ts';

const fixtures = new URL('../fixtures/actors.ts', import.meta.url).href;

export const addressOf = (id: number) => `mem:${id}`;

export interface SimNodeClusterOptions {
  /** Node ids; the first is the seed the others join through. Default [1, 2, 3]. */
  ids?: number[];
  /** Seeds the network, the clients and `Math.random`. Default 1. */
  seed?: number;
  /** Network faults (latency, jitter, drop and duplicate rates). Default: latency 1 ms, nothing else. */
  network?: Omit<MemoryNetworkOptions, 'clock' | 'seed'>;
  /** In-process actor hosts per node. Default 2. */
  workers?: number;
  /** Simulated ms per step of `runUntil`: each step is followed by one event-loop turn. Default 1. */
  stepMs?: number;
  /** Node id → its `zone` option. Default: no labels. */
  zones?: Readonly<Record<number, string>>;
  /** R (`cluster.replicas`). Default: the node's default (3). */
  replicas?: number;
  /** Actor modules every node loads. Default: test/fixtures/actors.ts. */
  modules?: string[];
  /** Every node's `durability`. Default: the cluster default ('replicated'). */
  durability?: NodeOptions['durability'];
  /** Every node's WebSocket session options (caps, renewal period). Default: the node's defaults. */
  sessions?: NodeOptions['sessions'];
  /**
   * Node id → the partition store each start of that node uses (its "disk": `restart` brings a
   * node back on it). Default: a fresh `MemoryPartitionStore` per start, built by the node.
   */
  partitionStore?: (id: number) => PartitionStore;
  /**
   * Give every node its own wall clock over the shared simulated time, so `stepWall(id, ms)` steps
   * one node's wall clock only (monotonic time and timers stay shared). Default false: every node
   * reads `clock` itself.
   */
  ownWallClocks?: boolean;
}

/** A line a node logged, with the simulated time it was written at. */
export interface LogLine {
  at: number;
  node: number;
  msg: string;
  fields: Record<string, unknown>;
}

export interface ClientOptions {
  keys: readonly string[];
  /** Concurrent clients per node. */
  perNode: number;
  /** Nodes the clients go through. Default: every node. */
  via?: readonly number[];
  /** Each increment's ask timeout, ms. Default 2000. */
  timeoutMs?: number;
}

/** Errors after which the increment is known not to have been applied (refused before any write). */
export function notApplied(e: unknown): boolean {
  return isTroupeError(e, 'ERR_NOT_PRIMARY') || isTroupeError(e, 'ERR_PARTITION_UNAVAILABLE') || isTroupeError(e, 'ERR_NO_NODES');
}

/** Refusals after which a read may simply be sent again. */
const RETRY_READ = ['ERR_NOT_PRIMARY', 'ERR_PARTITION_UNAVAILABLE', 'ERR_STALE_EPOCH', 'ERR_ASK_TIMEOUT', 'ERR_NODE_UNREACHABLE', 'ERR_NO_NODES'] as const;

/** What a client of a crashed process sees: the connection dropped, outcome unknown. */
export class ConnectionLost extends Error {
  readonly code = 'CONNECTION_LOST';
}

/** One real event-loop turn: every microtask queued so far (and those they queue) has run. */
export const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** mulberry32: a small seeded PRNG, the same sequence for the same seed on every machine. */
export function seededRandom(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class SimNodeCluster {
  readonly clock = new SimulatedClock(0, Date.UTC(2026, 0, 1));
  readonly net: MemoryNetwork;
  readonly nodes = new Map<number, TroupeNode>();
  readonly history = new History();
  /** Every info line of every node, in the order written. */
  readonly lines: LogLine[] = [];
  readonly killed = new Set<number>();
  /** Client randomness (key choice), separate from the nodes' so adding a client check does not shift them. */
  readonly random: () => number;
  private readonly stepMs: number;
  private readonly workers: number;
  private readonly extra: Pick<SimNodeClusterOptions, 'zones' | 'replicas' | 'modules' | 'durability' | 'sessions' | 'partitionStore'>;
  /** Each node's wall-clock offset from `clock` (with `ownWallClocks`), and its current incarnation. */
  private readonly wallOffsets: Map<number, number> | undefined;
  private readonly incarnations = new Map<number, number>();
  private readonly realRandom = Math.random;
  private readonly onKill = new Map<number, Array<() => void>>();
  private readonly stopping: Promise<void>[] = [];
  private stopped = false;
  /** The node the others joined through (`join` seeds new nodes with it too). */
  private firstId: number | undefined;

  private constructor(o: SimNodeClusterOptions) {
    const seed = o.seed ?? 1;
    this.net = new MemoryNetwork({ latency: 1, ...o.network, clock: this.clock, seed });
    this.random = seededRandom(seed * 7_919 + 1);
    this.stepMs = o.stepMs ?? 1;
    this.workers = o.workers ?? 2;
    this.extra = { ...(o.zones && { zones: o.zones }), ...(o.replicas !== undefined && { replicas: o.replicas }), ...(o.modules && { modules: o.modules }), ...(o.durability && { durability: o.durability }), ...(o.sessions !== undefined && { sessions: o.sessions }), ...(o.partitionStore && { partitionStore: o.partitionStore }) };
    this.wallOffsets = o.ownWallClocks ? new Map() : undefined;
    // The replication driver's jitter uses Math.random when no source is injected (TroupeNode
    // injects none): seeded for the cluster's lifetime, restored by stop().
    Math.random = seededRandom(seed * 104_729 + 3);
  }

  /** Starts every node and runs the clock until each sees all of them up. */
  static async start(o: SimNodeClusterOptions = {}): Promise<SimNodeCluster> {
    const c = new SimNodeCluster(o);
    const ids = o.ids ?? [1, 2, 3];
    c.firstId = ids[0];
    const spoke = new Set<number>();
    const offSpoke = c.net.intercept((m) => void spoke.add(m.from.id));
    const starting: Promise<TroupeNode>[] = [];
    try {
      for (const id of ids) {
        const started = c.startNode(id, id === ids[0] ? [] : [addressOf(ids[0]!)]);
        starting.push(started);
        let done = false;
        started.then(
          () => (done = true),
          () => (done = true),
        );
        // Module loading is real I/O: simulated time stays put until the node has spoken, so
        // where a node is in its start never depends on how fast this machine imports a file.
        while (!spoke.has(id) && !done) await turn();
      }
      await c.settle(Promise.all(starting), 5_000);
      await c.runUntil(() => [...c.nodes.values()].every((n) => c.upIds(n).join() === ids.join()), 5_000, `all of ${ids} up everywhere`);
    } catch (e) {
      await c.stop();
      throw e;
    } finally {
      offSpoke();
    }
    return c;
  }

  /**
   * Starts node `id`, seeded by the first node, while the cluster runs (clients included), and
   * runs the clock until every live node — the newcomer too — holds the same up set with `id`
   * in it. Resolves with the simulated ms that took. (A node stopped gracefully but not killed
   * still counts as live here: join before such a leave, or after it has completed.)
   */
  async join(id: number, maxMs = 5_000): Promise<number> {
    if (this.nodes.has(id)) throw new Error(`node ${id} is already in the cluster`);
    const start = this.clock.now();
    const spoke = new Set<number>();
    const offSpoke = this.net.intercept((m) => void spoke.add(m.from.id));
    try {
      const started = this.startNode(id, [addressOf(this.firstId!)]);
      let done = false;
      started.then(
        () => (done = true),
        () => (done = true),
      );
      // As in start(): simulated time waits for the node's module loading (real I/O).
      while (!spoke.has(id) && !done) await turn();
      await this.settle(started, maxMs);
    } finally {
      offSpoke();
    }
    const live = () => [...this.nodes.keys()].filter((n) => !this.killed.has(n));
    const agreed = () => {
      const views = live().map((n) => this.upIds(this.node(n)).join());
      return views.every((v) => v === views[0]) && this.upIds(this.node(id)).includes(id);
    };
    await this.runUntil(agreed, maxMs - (this.clock.now() - start), `node ${id} up everywhere`);
    return this.clock.now() - start;
  }

  private startNode(id: number, seeds: string[]): Promise<TroupeNode> {
    const started = TroupeNode.start({
      id,
      modules: this.extra.modules ?? [fixtures],
      actors: 'in-process',
      workers: this.workers,
      http: false,
      clock: this.clockOf(id),
      log: this.logger(id),
      ...(this.extra.partitionStore && { partitionStore: this.extra.partitionStore(id) }),
      ...(this.extra.zones?.[id] !== undefined && { zone: this.extra.zones[id] }),
      ...(this.extra.durability !== undefined && { durability: this.extra.durability }),
      ...(this.extra.sessions !== undefined && { sessions: this.extra.sessions }),
      cluster: {
        transport: this.net.transport({ id, incarnation: this.incarnations.get(id) ?? 1, address: addressOf(id) }),
        seeds,
        ...(this.extra.replicas !== undefined && { replicas: this.extra.replicas }),
      },
    });
    started.then((n) => this.nodes.set(id, n), () => undefined);
    return started;
  }

  /** The clock node `id` runs on: `clock`, or with `ownWallClocks` a view of it with the node's own wall offset. */
  private clockOf(id: number): Clock {
    const offsets = this.wallOffsets;
    if (offsets === undefined) return this.clock;
    const shared = this.clock;
    return {
      now: () => shared.now(),
      wallNow: () => shared.wallNow() + (offsets.get(id) ?? 0),
      setTimeout: (fn, ms) => shared.setTimeout(fn, ms),
      clearTimeout: (h) => shared.clearTimeout(h),
      setImmediate: (fn) => shared.setImmediate(fn),
    };
  }

  /** Steps node `id`'s wall clock by `deltaMs` (back when negative); needs `ownWallClocks`. */
  stepWall(id: number, deltaMs: number): void {
    if (this.wallOffsets === undefined) throw new Error('stepWall(id) needs the ownWallClocks option');
    this.wallOffsets.set(id, (this.wallOffsets.get(id) ?? 0) + deltaMs);
  }

  /**
   * Starts killed node `id` again as its next incarnation (on the store `partitionStore` gives it:
   * with the same store, a restart with its data; say `emptyDisk` when that store is a new one, so
   * the life is numbered as a replaced host's is), seeded by a live node, and resolves once it has
   * spoken on the network. It joins in the background: under a partition that may take a while,
   * so nothing here waits for the cluster to agree (`runUntil` does, if a test needs it).
   */
  async restart(id: number, o: { emptyDisk?: boolean } = {}): Promise<void> {
    if (!this.killed.has(id)) throw new Error(`node ${id} is not dead`);
    const seed = [this.firstId!, ...this.nodes.keys()].find((n) => n !== id && this.nodes.has(n) && !this.killed.has(n));
    // No member has joined since its own restart (full-profile seed 2320: all three were
    // restarting through a seed that died): list every other node, as a deployment lists several
    // seeds, and let whichever comes up first let the others in.
    const seeds = seed !== undefined ? [addressOf(seed)] : [...new Set([...this.nodes.keys(), ...this.killed, ...this.incarnations.keys()])].filter((n) => n !== id).map(addressOf);
    this.nodes.delete(id);
    this.killed.delete(id);
    // Numbered as NodeIdentity numbers lives (the same function): + 1 on its data, the wall clock
    // (ms) on an empty disk — above every incarnation the id had, refutations included.
    this.incarnations.set(id, nextIncarnation(o.emptyDisk === true ? undefined : (this.incarnations.get(id) ?? 1), this.clockOf(id).wallNow()));
    const sent = this.net.stats.sent;
    const started = this.startNode(id, seeds);
    let done = false;
    started.then(
      () => (done = true),
      () => (done = true),
    );
    // As in start(), but a partition may drop what it sends: any send counts (the network's
    // counter moves at send, before faults), and module loading is cached by now.
    while (this.net.stats.sent === sent && !done) await turn();
  }

  /** A pino logger whose destination keeps the node's info lines (synchronously, in order). */
  private logger(node: number): Logger {
    return pino(
      { level: process.env.SIM_DEBUG ? 'debug' : 'info', base: { node } },
      {
        write: (line: string) => {
          const { msg, level: _level, time: _time, node: _node, ...fields } = JSON.parse(line) as Record<string, unknown>;
          this.lines.push({ at: this.clock.now(), node, msg: String(msg), fields });
          // SIM_TRACE=1: every line as written, for a run that never ends (a livelock).
          if (process.env.SIM_TRACE) process.stderr.write(`${this.clock.now()} node ${node}: ${String(msg)} ${JSON.stringify(fields)}\n`);
        },
      },
    );
  }

  node(id: number): TroupeNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  upIds(n: TroupeNode): number[] {
    return n.membership!.upMembers().map((m) => m.id);
  }

  /** The partition primary `via` proposes for `key`. */
  ownerOf(key: string, via: number): number {
    return this.node(via).clusterRouter!.ownerOf(key).id;
  }

  /** Every `primary in epoch` line: which node claimed which epoch of which partition, when. */
  epochClaims(): EpochClaim[] {
    return this.lines
      .filter((l) => /^partition \d+: primary in epoch/.test(l.msg))
      .map((l) => ({
        at: l.at,
        node: l.node,
        p: l.fields.p as number,
        epoch: l.fields.epoch as { term: number; node: number },
        startSeq: l.fields.startSeq as number,
        ...(typeof l.fields.committedAfterMs === 'number' && { writtenAt: l.at - l.fields.committedAfterMs }),
      }));
  }

  // ── Time ─────────────────────────────────────────────────────────────────────────────────

  /** Advances simulated time step by step until `done()` holds; returns the simulated ms it took. */
  async runUntil(done: () => boolean, maxMs: number, what: string): Promise<number> {
    const start = this.clock.now();
    await turn();
    while (!done()) {
      if (this.clock.now() - start >= maxMs) throw new Error(`not within ${maxMs} simulated ms: ${what}`);
      this.clock.advance(this.stepMs);
      await turn();
    }
    return this.clock.now() - start;
  }

  /** Lets `ms` of simulated time pass (the nodes and the clients run meanwhile). */
  async runFor(ms: number): Promise<void> {
    const end = this.clock.now() + ms;
    await this.runUntil(() => this.clock.now() >= end, ms + this.stepMs, `${ms} ms passed`);
  }

  /** The promise's outcome, reached by moving simulated time only. */
  async settle<T>(p: Promise<T>, maxMs = 10_000): Promise<T> {
    let settled = false;
    p.then(
      () => (settled = true),
      () => (settled = true),
    );
    await this.runUntil(() => settled, maxMs, 'promise settled');
    return p;
  }

  // ── Faults ───────────────────────────────────────────────────────────────────────────────

  /**
   * The node's process dies: the network drops everything to and from it at once, and asks in
   * flight through it end with `ConnectionLost` whatever the node does next. Its in-process
   * remains are stopped in the background (nothing they send leaves).
   */
  kill(id: number): void {
    this.net.kill(addressOf(id));
    this.killed.add(id);
    for (const f of this.onKill.get(id) ?? []) f();
    this.onKill.delete(id);
    this.stopping.push(this.node(id).stop().catch(() => undefined));
  }

  /** Resolves with the simulated time at which every node in `observers` holds `id` down. */
  async untilDown(id: number, observers: readonly number[], maxMs = 5_000): Promise<number> {
    const isDown = () => observers.every((o) => this.node(o).membership!.member(id)?.status === 'down');
    await this.runUntil(isDown, maxMs, `node ${id} down at ${observers}`);
    return this.clock.now();
  }

  // ── Clients ──────────────────────────────────────────────────────────────────────────────

  /** An ask through node `via`, as a client connected to that node sees it (`input`: the command's, if any). */
  ask(via: number, kind: string, key: string, command: string, timeoutMs: number, input?: unknown): Promise<unknown> {
    if (this.killed.has(via)) return Promise.reject(new ConnectionLost(`node ${via} is dead`));
    return new Promise((resolve, reject) => {
      let list = this.onKill.get(via);
      if (list === undefined) this.onKill.set(via, (list = []));
      const lost = () => reject(new ConnectionLost(`node ${via} died with the ask in flight`));
      list.push(lost);
      const done = () => {
        const i = list.indexOf(lost);
        if (i >= 0) list.splice(i, 1);
      };
      this.node(via)
        .ask(kind, key, { command, ...(input !== undefined && { input }) }, { timeoutMs })
        .then(
          (v) => (done(), resolve(v)),
          (e: unknown) => (done(), reject(e)),
        );
    });
  }

  /** One increment through `via`, recorded in the history with its outcome. */
  async incr(via: number, key: string, timeoutMs = 2_000): Promise<void> {
    const start = this.clock.now();
    try {
      const { n } = (await this.ask(via, 'counter', key, 'incr', timeoutMs)) as { n: number };
      this.history.record({ key, value: n, outcome: 'ok', start, end: this.clock.now(), via });
    } catch (e) {
      const error = (e as { code?: string }).code ?? (e as Error).message;
      this.history.record({ key, outcome: notApplied(e) ? 'failed' : 'unknown', error, start, end: this.clock.now(), via });
    }
  }

  /**
   * Clients that increment random keys, each one increment at a time, `perNode` of them through
   * every node in `via`, until stopped (a client of a killed node stops).
   */
  startClients(o: ClientOptions): { stop(): Promise<void> } {
    let running = true;
    const loops: Promise<void>[] = [];
    for (const via of o.via ?? [...this.nodes.keys()]) {
      for (let i = 0; i < o.perNode; i++) {
        loops.push(
          (async () => {
            while (running && !this.killed.has(via)) {
              const key = o.keys[Math.floor(this.random() * o.keys.length)]!;
              await this.incr(via, key, o.timeoutMs);
              // A pause of simulated time: a client whose asks fail at once must not spin in one turn.
              await new Promise<void>((r) => this.clock.setTimeout(r, 1));
            }
          })(),
        );
      }
    }
    return {
      stop: async () => {
        running = false;
        await this.settle(Promise.all(loops), 15_000);
      },
    };
  }

  /**
   * A key's count read through `via`, as a careful client reads: a refusal that says "try again"
   * (another primary, a fence in progress, a write ahead of the read fenced) is retried every
   * 10 ms until `timeoutMs` has passed. Resolves with the count and when it was read.
   */
  async readKey(via: number, key: string, timeoutMs = 5_000): Promise<{ n: number; at: number }> {
    const deadline = this.clock.now() + timeoutMs;
    for (;;) {
      try {
        const { n } = (await this.ask(via, 'counter', key, 'get', Math.max(1, deadline - this.clock.now()))) as { n: number };
        return { n, at: this.clock.now() };
      } catch (e) {
        const retry = RETRY_READ.some((code) => isTroupeError(e, code));
        if (!retry || this.clock.now() >= deadline) throw e;
        await new Promise<void>((r) => this.clock.setTimeout(r, 10));
      }
    }
  }

  /** Every key's count read through `via` (all at once). */
  async readCounts(via: number, keys: readonly string[], timeoutMs = 5_000): Promise<Map<string, number>> {
    const got = await this.settle(Promise.all(keys.map((k) => this.readKey(via, k, timeoutMs))), timeoutMs + 1_000);
    return new Map(keys.map((k, i) => [k, got[i]!.n]));
  }

  /** Stops every node (time keeps moving: a graceful stop waits for its leave on the clock). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      for (const [id, n] of this.nodes) if (!this.killed.has(id)) this.stopping.push(n.stop().catch(() => undefined));
      await this.settle(Promise.all(this.stopping), 15_000);
    } finally {
      Math.random = this.realRandom;
    }
  }
}
