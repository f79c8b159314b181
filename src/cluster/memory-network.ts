import type { Clock, TimerHandle } from '../core/clock.ts';
import { invalidOption, troupeError } from '../core/errors.ts';
import type { Lane, PeerIdentity, Transport } from './transport.ts';

export interface MemoryNetworkOptions {
  /** Deliveries are scheduled on this clock (a `SimulatedClock` in tests). */
  clock: Clock;
  /** Seeds the RNG behind drops, duplicates and jitter. Default 1. */
  seed?: number;
  /** One-way latency in ms. Default 1. */
  latency?: number;
  /** Extra latency, uniform in [0, jitter) ms. Default 0 (keeps per-link FIFO order). */
  jitter?: number;
  /** Probability that a message is lost. Default 0. */
  dropRate?: number;
  /** Probability that a message is delivered twice. Default 0. */
  duplicateRate?: number;
}

/** Overrides for one direction of one link; unset fields fall back to the network's. */
export interface LinkRule {
  latency?: number;
  jitter?: number;
  dropRate?: number;
  duplicateRate?: number;
  /** Drop everything on this link. */
  blocked?: boolean;
}

export interface InFlight {
  readonly from: PeerIdentity;
  readonly to: string;
  readonly payload: unknown;
  readonly lane: Lane;
}

/** A scripted fault: return 'drop', 'duplicate', `{ delay }` (extra ms), or nothing to pass. */
export type Interceptor = (message: InFlight) => 'drop' | 'duplicate' | { delay: number } | undefined | void;

export interface MemoryNetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  undeliverable: number;
}

interface Delivery {
  at: number;
  seq: number;
  from: PeerIdentity;
  to: string;
  payload: unknown;
  lane: Lane;
}

interface Endpoint {
  transport: MemoryTransport;
  killed: boolean;
}

/**
 * An in-memory network of `Transport`s for tests: deterministic (every delivery is scheduled on
 * the injected clock; ties break in send order; randomness comes from a seeded RNG), with
 * scripted latency, drops, duplicates, partitions and killed nodes. Payloads arrive as
 * structured clones, so sender and receiver never share an object.
 *
 * One clock timer serves the whole network (a heap of deliveries underneath), so a thousand
 * nodes chatting do not put thousands of timers on a `SimulatedClock`.
 *
 * @example
 *   const clock = new SimulatedClock();
 *   const net = new MemoryNetwork({ clock, seed: 7 });
 *   const a = net.transport({ id: 1, incarnation: 1, address: 'mem:1' });
 *   const b = net.transport({ id: 2, incarnation: 1, address: 'mem:2' });
 *   b.onMessage((from, payload) => console.log(from.id, payload));
 *   a.send('mem:2', { hello: 'world' });
 *   clock.advance(1); // prints: 1 { hello: 'world' }
 *   net.partition(['mem:1'], ['mem:2']); // now nothing crosses until net.heal()
 */
export class MemoryNetwork {
  readonly stats: MemoryNetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, undeliverable: 0 };
  private readonly clock: Clock;
  private readonly latency: number;
  private readonly jitter: number;
  private readonly dropRate: number;
  private readonly duplicateRate: number;
  private rng: number;
  private seq = 0;
  private readonly heap: Delivery[] = [];
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly links = new Map<string, LinkRule>();
  private readonly groups = new Map<string, number>();
  private readonly interceptors: Interceptor[] = [];
  private timer: TimerHandle | undefined;
  private timerAt = Infinity;

  constructor(options: MemoryNetworkOptions) {
    if (options === null || typeof options !== 'object') throw invalidOption('options', 'must be an object', options);
    const { clock } = options;
    if (clock === null || typeof clock !== 'object' || typeof clock.setTimeout !== 'function') {
      throw invalidOption('options.clock', 'must be a Clock', clock);
    }
    this.clock = clock;
    this.latency = nonNegative('options.latency', options.latency ?? 1);
    this.jitter = nonNegative('options.jitter', options.jitter ?? 0);
    this.dropRate = probability('options.dropRate', options.dropRate ?? 0);
    this.duplicateRate = probability('options.duplicateRate', options.duplicateRate ?? 0);
    const seed = options.seed ?? 1;
    if (!Number.isInteger(seed)) throw invalidOption('options.seed', 'must be an integer', seed);
    this.rng = seed | 0;
  }

  /**
   * A transport for `identity`. An address may be reused once its previous transport was
   * killed or closed (a restarted node).
   */
  transport(identity: PeerIdentity): Transport {
    if (identity === null || typeof identity !== 'object' || typeof identity.address !== 'string' || identity.address === '') {
      throw invalidOption('identity.address', 'must be a non-empty string', identity?.address);
    }
    const existing = this.endpoints.get(identity.address);
    if (existing && !existing.killed && !existing.transport.closed) {
      throw invalidOption('identity.address', 'is already in use on this network', identity.address);
    }
    // Frozen: receivers get this very object as `from`.
    const self = Object.freeze({ id: identity.id, incarnation: identity.incarnation, address: identity.address });
    const t = new MemoryTransport(this, self);
    this.endpoints.set(identity.address, { transport: t, killed: false });
    return t;
  }

  /**
   * Split the listed addresses into groups that cannot reach each other (both directions, also
   * for messages already in flight). Addresses not listed still reach everyone.
   */
  partition(...groups: readonly (readonly string[])[]): void {
    this.groups.clear();
    groups.forEach((group, i) => {
      for (const address of group) this.groups.set(address, i);
    });
  }

  /** Remove partitions and per-link rules. Killed nodes stay dead. */
  heal(): void {
    this.groups.clear();
    this.links.clear();
  }

  /** Set the rule for messages from `from` to `to` (one direction). */
  setLink(from: string, to: string, rule: LinkRule): void {
    if (rule.latency !== undefined) nonNegative('rule.latency', rule.latency);
    if (rule.jitter !== undefined) nonNegative('rule.jitter', rule.jitter);
    if (rule.dropRate !== undefined) probability('rule.dropRate', rule.dropRate);
    if (rule.duplicateRate !== undefined) probability('rule.duplicateRate', rule.duplicateRate);
    this.links.set(linkKey(from, to), { ...rule });
  }

  /** Add a scripted fault; returns a function that removes it. */
  intercept(fn: Interceptor): () => void {
    this.interceptors.push(fn);
    return () => {
      const i = this.interceptors.indexOf(fn);
      if (i >= 0) this.interceptors.splice(i, 1);
    };
  }

  /** The node at `address` dies: it sends nothing more, and messages to it are undeliverable. */
  kill(address: string): void {
    const e = this.endpoints.get(address);
    if (e) e.killed = true;
  }

  isAlive(address: string): boolean {
    const e = this.endpoints.get(address);
    return e !== undefined && !e.killed && !e.transport.closed;
  }

  /** Messages scheduled and not yet delivered. */
  get inFlight(): number {
    return this.heap.length;
  }

  /** @internal Called by `MemoryTransport#send`. */
  submit(from: MemoryTransport, to: string, payload: unknown, lane: Lane): void {
    const sender = this.endpoints.get(from.self.address);
    if (!sender || sender.transport !== from || sender.killed) return; // a dead node says nothing
    this.stats.sent++;
    const rule = this.links.get(linkKey(from.self.address, to));
    if (rule?.blocked || this.random() < (rule?.dropRate ?? this.dropRate)) {
      this.stats.dropped++;
      return;
    }
    let copies = this.random() < (rule?.duplicateRate ?? this.duplicateRate) ? 2 : 1;
    let extra = 0;
    const message: InFlight = { from: from.self, to, payload, lane };
    for (const fn of this.interceptors) {
      const verdict = fn(message);
      if (verdict === 'drop') {
        this.stats.dropped++;
        return;
      }
      if (verdict === 'duplicate') copies = 2;
      else if (verdict && typeof verdict === 'object') extra += verdict.delay;
    }
    if (copies === 2) this.stats.duplicated++;
    const latency = rule?.latency ?? this.latency;
    const jitter = rule?.jitter ?? this.jitter;
    for (let i = 0; i < copies; i++) {
      let clone: unknown;
      try {
        clone = structuredClone(payload);
      } catch (e) {
        from.undeliverable(to, payload, troupeError('ERR_BAD_FRAME', `payload cannot be cloned: ${(e as Error).message}`));
        return;
      }
      const at = this.clock.now() + latency + extra + (jitter > 0 ? this.random() * jitter : 0);
      this.push({ at, seq: this.seq++, from: from.self, to, payload: clone, lane });
    }
    this.arm();
  }

  private deliverDue(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.clock.now();
    while (this.heap.length > 0 && this.heap[0]!.at <= now) {
      const d = this.pop();
      if (this.separated(d.from.address, d.to)) {
        this.stats.dropped++;
        continue;
      }
      const target = this.endpoints.get(d.to);
      if (!target || target.killed || target.transport.closed) {
        this.stats.undeliverable++;
        const sender = this.endpoints.get(d.from.address);
        if (sender && !sender.killed && sender.transport.self === d.from) {
          sender.transport.undeliverable(d.to, d.payload, troupeError('ERR_NODE_UNREACHABLE', `no live node at ${d.to}`));
        }
        continue;
      }
      this.stats.delivered++;
      target.transport.deliver(d.from, d.payload, d.lane);
    }
    this.arm();
  }

  private separated(a: string, b: string): boolean {
    const ga = this.groups.get(a);
    const gb = this.groups.get(b);
    return ga !== undefined && gb !== undefined && ga !== gb;
  }

  private arm(): void {
    const top = this.heap[0];
    if (!top || top.at >= this.timerAt) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timerAt = top.at;
    this.timer = this.clock.setTimeout(() => this.deliverDue(), Math.max(0, top.at - this.clock.now()));
  }

  private random(): number {
    this.rng = (this.rng + 0x6d2b79f5) | 0;
    let t = this.rng;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  // Binary min-heap on (at, seq).
  private push(d: Delivery): void {
    const h = this.heap;
    h.push(d);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): Delivery {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** One node's view of a `MemoryNetwork`. Several `onMessage` handlers may be registered. */
class MemoryTransport implements Transport {
  closed = false;
  private readonly messageHandlers: ((from: PeerIdentity, payload: unknown, lane: Lane) => void)[] = [];
  private readonly undeliverableHandlers: ((address: string, payload: unknown, error: Error) => void)[] = [];

  constructor(
    private readonly network: MemoryNetwork,
    readonly self: PeerIdentity,
  ) {}

  send(address: string, payload: unknown, lane: Lane = 'actor'): void {
    if (this.closed) return;
    this.network.submit(this, address, payload, lane);
  }

  onMessage(handler: (from: PeerIdentity, payload: unknown, lane: Lane) => void): void {
    this.messageHandlers.push(handler);
  }

  onUndeliverable(handler: (address: string, payload: unknown, error: Error) => void): void {
    this.undeliverableHandlers.push(handler);
  }

  start(): Promise<string> {
    return this.closed
      ? Promise.reject(troupeError('ERR_STOPPED', `transport ${this.self.address} is closed`))
      : Promise.resolve(this.self.address);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  /** @internal */
  deliver(from: PeerIdentity, payload: unknown, lane: Lane): void {
    for (const h of this.messageHandlers) h(from, payload, lane);
  }

  /** @internal */
  undeliverable(address: string, payload: unknown, error: Error): void {
    for (const h of this.undeliverableHandlers) h(address, payload, error);
  }
}

function before(a: Delivery, b: Delivery): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

function linkKey(from: string, to: string): string {
  return `${from}\u0000${to}`;
}

function nonNegative(name: string, v: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw invalidOption(name, 'must be a non-negative number', v);
  return v;
}

function probability(name: string, v: number): number {
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw invalidOption(name, 'must be a number in 0..1', v);
  return v;
}
