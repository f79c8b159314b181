/**
 * The load every chaos scenario drives, recorded the way the checkers read it (Jepsen's model):
 *   - counters: `runCounterLoad` (test/helpers/process-cluster.ts) incrementing `counterKeys`;
 *   - a set: clients adding unique skus to the demo `cart`s (`add {sku}`), each add recorded as
 *     ok / failed (known not applied) / unknown.
 * `check` reads every key back through every given gateway once the cluster is quiet and turns
 * the histories into the report's figures:
 *   acknowledged  increments and adds answered 200;
 *   lost          acknowledged increments missing from a final count (Σ max(0, A − F)), plus
 *                 acknowledged skus missing from their cart;
 *   duplicated    counts returned twice, increments applied beyond the attempted (F > A + U),
 *                 and skus held twice (qty > 1) or present though never sent or known refused;
 *   unknown       operations whose outcome the client could not know (timeouts, resets, 5xx).
 * Every reader must return the same finals; a disagreement is a violation too.
 */
import { Agent } from 'node:http';
import { rng as seeded } from '../replication/model.ts';
import { CallError, CounterGateway, postActor } from '../helpers/counter-gateway.ts';
import { checkCounters, History } from '../helpers/history.ts';
import { CLIENT_TIMEOUT_MS, NOT_APPLIED, readCounts, runCounterLoad, type CounterLoad } from '../helpers/process-cluster.ts';
import { eventually } from '../helpers/processes.ts';

export interface CartOp {
  cart: string;
  sku: string;
  outcome: 'ok' | 'failed' | 'unknown';
  error?: string;
  start: number;
  end: number;
}

export interface Figures {
  acknowledged: number;
  lost: number;
  duplicated: number;
  unknown: number;
  /** Every problem found, for the assertion's message (empty: the histories are valid). */
  violations: string[];
}

/** One gateway's `cart` as a client sees it: a keep-alive pool; `add` rejects with a CallError. */
export class CartGateway {
  private readonly agent: Agent;

  constructor(
    readonly url: string,
    private readonly timeoutMs = CLIENT_TIMEOUT_MS,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: 8 });
  }

  /** POST /actors/cart/:cart/:command; resolves with the reply's `items`. */
  call(cart: string, command: 'add' | 'get', sku?: string): Promise<Record<string, number>> {
    const body = command === 'add' ? JSON.stringify({ sku }) : '';
    return postActor(this.agent, `${this.url}/actors/cart/${cart}/${command}`, body, this.timeoutMs, undefined, (json) =>
      json.items !== undefined ? (json.items as Record<string, number>) : undefined,
    );
  }

  destroy(): void {
    this.agent.destroy();
  }
}

export interface WorkloadOptions {
  counterKeys: number;
  counterClients: number;
  carts: number;
  cartClients: number;
  /** Key prefix, unique per scenario. */
  prefix: string;
  seed?: number;
}

export class Workload {
  readonly history = new History();
  readonly cartOps: CartOp[] = [];
  readonly counterKeys: string[];
  readonly cartKeys: string[];
  private counterLoad: CounterLoad | undefined;
  private cartLoops: Promise<void>[] = [];
  private stopping = false;
  private readonly waiters: Array<() => void> = [];
  private readonly counterGateways: CounterGateway[] = [];
  private readonly cartGateways: CartGateway[] = [];
  private readonly owned: Array<{ destroy(): void }> = [];

  constructor(private readonly o: WorkloadOptions) {
    this.counterKeys = Array.from({ length: o.counterKeys }, (_, i) => `${o.prefix}-c${i}`);
    this.cartKeys = Array.from({ length: o.carts }, (_, i) => `${o.prefix}-cart${i}`);
  }

  /** What the report's load column says. */
  describe(): string {
    const o = this.o;
    return `${o.counterClients} clients × ${o.counterKeys} counters + ${o.cartClients} × ${o.carts} carts`;
  }

  /** Starts the clients over `urls` in turn; `addGateway` adds one to the rotation later. */
  start(urls: readonly string[]): void {
    for (const url of urls) this.addGateway(url);
    this.counterLoad = runCounterLoad({
      gateways: this.counterGateways,
      history: this.history,
      keys: this.counterKeys,
      clients: this.o.counterClients,
      seed: this.o.seed ?? 1,
      avoidUnreachable: true,
    });
    this.cartLoops = Array.from({ length: this.o.cartClients }, (_, c) => this.cartLoop(c));
  }

  addGateway(url: string): void {
    const counter = this.counterGateway(url);
    const cart = new CartGateway(url);
    this.owned.push(cart);
    this.counterGateways.push(counter);
    this.cartGateways.push(cart);
  }

  /** Acknowledged operations so far, counters and adds. */
  acknowledged(): number {
    return this.history.counts().ok + this.cartOps.filter((o) => o.outcome === 'ok').length;
  }

  /** Resolves when `holds()` after some operation; rejects with `why()` at the deadline. */
  until(holds: () => boolean, timeoutMs: number, why: () => string): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        clearInterval(poll);
        const i = this.waiters.indexOf(check);
        if (i >= 0) this.waiters.splice(i, 1);
      };
      const timer = setTimeout(() => (done(), reject(new Error(`not within ${timeoutMs} ms: ${why()}`))), timeoutMs);
      const check = () => void (holds() && (done(), resolve()));
      // Cart clients call the waiters after each add; the counter clients (runCounterLoad) do
      // not, so their progress is also looked at every 50 ms.
      const poll = setInterval(check, 50);
      this.waiters.push(check);
      check();
    });
  }

  /**
   * Until `done()`, keeps one increment in flight for each of `keys` that `missing()` names,
   * through `urls` in turn (recorded in the history like the load's): the random load may not
   * touch every key soon while some keys hang for seconds, and recovery is timed per key.
   */
  probe(keys: () => readonly string[], urls: readonly string[], done: () => boolean): Promise<void> {
    const gateways = urls.map((u) => this.counterGateway(u));
    const inFlight = new Map<string, Promise<void>>();
    let turn = 0;
    // Resolves once the last probe has its outcome: none may still be in flight when finals are read.
    return new Promise<void>((resolve) => {
      const tick = () => {
        if (done() || this.stopping) return (clearInterval(timer), resolve());
        for (const key of keys()) {
          if (inFlight.has(key)) continue;
          const g = gateways[turn++ % gateways.length]!;
          const op = this.history.incr(key, () => g.call(key, 'incr'), (e) => NOT_APPLIED.has((e as CallError).code));
          inFlight.set(key, op.finally(() => inFlight.delete(key)));
        }
      };
      const timer = setInterval(tick, 100);
      tick();
    }).then(() => Promise.all(inFlight.values()).then(() => undefined));
  }

  /** Ends the clients after their current operation. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([this.counterLoad?.stop(), ...this.cartLoops]);
  }

  destroy(): void {
    for (const g of this.owned) g.destroy();
  }

  /** Reads every counter and cart through each of `urls` and checks the histories against them. */
  async check(urls: readonly string[], timeoutMs = 30_000): Promise<Figures> {
    const violations: string[] = [];
    const counterFinals: Array<Map<string, number>> = [];
    const cartFinals: Array<Map<string, Record<string, number>>> = [];
    for (const url of urls) {
      counterFinals.push(await readCounts(this.counterGateway(url), this.counterKeys, timeoutMs));
      cartFinals.push(await this.readCarts(url, timeoutMs));
    }
    for (let r = 1; r < urls.length; r++) {
      for (const k of this.counterKeys)
        if (counterFinals[r]!.get(k) !== counterFinals[0]!.get(k))
          violations.push(`${k}: ${urls[0]} reads ${counterFinals[0]!.get(k)}, ${urls[r]} reads ${counterFinals[r]!.get(k)}`);
      for (const k of this.cartKeys)
        if (JSON.stringify(sorted(cartFinals[r]!.get(k)!)) !== JSON.stringify(sorted(cartFinals[0]!.get(k)!)))
          violations.push(`${k}: ${urls[0]} and ${urls[r]} read different carts`);
    }
    const finals = counterFinals[0]!;
    const carts = cartFinals[0]!;

    let lost = 0;
    let duplicated = 0;
    const tally = new Map<string, { a: number; u: number; values: number[] }>();
    for (const op of this.history.ops) {
      let t = tally.get(op.key);
      if (t === undefined) tally.set(op.key, (t = { a: 0, u: 0, values: [] }));
      if (op.outcome === 'ok') (t.a++, t.values.push(op.value!));
      if (op.outcome === 'unknown') t.u++;
    }
    for (const [key, t] of tally) {
      const f = finals.get(key) ?? 0;
      lost += Math.max(0, t.a - f);
      duplicated += t.values.length - new Set(t.values).size + Math.max(0, f - (t.a + t.u));
    }
    violations.push(...checkCounters(this.history, finals).map((v) => `${v.key}: ${v.problem}`));

    const sent = new Map<string, CartOp>();
    for (const op of this.cartOps) sent.set(`${op.cart}/${op.sku}`, op);
    for (const op of this.cartOps) {
      const qty = carts.get(op.cart)?.[op.sku];
      if (op.outcome === 'ok' && qty === undefined) (lost++, violations.push(`${op.cart}: acknowledged ${op.sku} is missing`));
      if (op.outcome === 'failed' && qty !== undefined) (duplicated++, violations.push(`${op.cart}: ${op.sku} refused (${op.error}) but present`));
    }
    for (const [cart, items] of carts)
      for (const [sku, qty] of Object.entries(items)) {
        if (qty > 1) (duplicated++, violations.push(`${cart}: ${sku} added once, held ${qty} times`));
        if (!sent.has(`${cart}/${sku}`)) (duplicated++, violations.push(`${cart}: ${sku} was never sent`));
      }

    const counts = this.history.counts();
    return {
      acknowledged: counts.ok + this.cartOps.filter((o) => o.outcome === 'ok').length,
      lost,
      duplicated,
      unknown: counts.unknown + this.cartOps.filter((o) => o.outcome === 'unknown').length,
      violations,
    };
  }

  private counterGateway(url: string): CounterGateway {
    const g = new CounterGateway(url, { maxSockets: 16, timeoutMs: CLIENT_TIMEOUT_MS });
    this.owned.push(g);
    return g;
  }

  private async cartLoop(c: number): Promise<void> {
    const random = seeded((this.o.seed ?? 1) * 1_000 + c);
    const avoid = new Set<number>();
    let g = c % this.cartGateways.length;
    let n = 0;
    while (!this.stopping) {
      const cart = this.cartKeys[Math.floor(random() * this.cartKeys.length)]!;
      const sku = `s${c}-${n++}`; // unique per client: any second copy is a duplicate
      const start = Date.now();
      let unreachable = false;
      try {
        await this.cartGateways[g]!.call(cart, 'add', sku);
        this.cartOps.push({ cart, sku, outcome: 'ok', start, end: Date.now() });
      } catch (e) {
        const code = (e as CallError).code;
        unreachable = code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT';
        this.cartOps.push({ cart, sku, outcome: NOT_APPLIED.has(code) ? 'failed' : 'unknown', error: code, start, end: Date.now() });
      }
      if (unreachable) avoid.add(g);
      if (avoid.size >= this.cartGateways.length) avoid.clear();
      do g = (g + 1) % this.cartGateways.length;
      while (avoid.has(g));
      for (const w of [...this.waiters]) w();
    }
  }

  private async readCarts(url: string, timeoutMs: number): Promise<Map<string, Record<string, number>>> {
    const gateway = new CartGateway(url);
    this.owned.push(gateway);
    const finals = new Map<string, Record<string, number>>();
    const lastError = new Map<string, string>();
    await eventually(
      async () => {
        await Promise.all(
          this.cartKeys
            .filter((k) => !finals.has(k))
            .map((k) =>
              gateway.call(k, 'get').then(
                (items) => void finals.set(k, items),
                (e: CallError) => void lastError.set(k, e.code),
              ),
            ),
        );
        return finals.size === this.cartKeys.length;
      },
      timeoutMs,
      () => `carts not served through ${url}: ${[...lastError].filter(([k]) => !finals.has(k)).map(([k, c]) => `${k} (${c})`).join(', ')}`,
    );
    return finals;
  }
}

const sorted = (items: Record<string, number>) => Object.entries(items).sort(([a], [b]) => a.localeCompare(b));
