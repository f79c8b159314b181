/**
 * One seed of the deterministic simulator: a `SimNodeCluster` (whole nodes in one process, the
 * memory network, one simulated clock) under a counter load and a set load, with the faults of
 * `drawSchedule(seed)` played on it; then heal, wait for quiet, read the finals through every live
 * node and run the checkers. Everything random comes from the seed, so `runSeed(s)` twice gives
 * the same history (sim.test.ts checks it), and a failing seed replays exactly with
 * `npm run test:sim -- --seed S --verbose`.
 *
 * What each fault is made of here:
 *   kill        `SimNodeCluster.kill` + the node's `SimDisk.crash()` (its leftovers write nothing more)
 *   restart     `SimNodeCluster.restart` on the same disk (incarnation + 1), or on a new empty one
 *   partition,  one network interceptor consulting the active faults: a frame between groups (or
 *   one-way     in the cut direction) is dropped at send; frames already on the wire still arrive
 *   pause       frames to and from the node are held until the pause ends, then delivered (the node's
 *               own timers keep running: unlike SIGSTOP it still suspects the others meanwhile)
 *   clock-step  the node's own wall clock (`ownWallClocks`) jumps; monotonic time is shared
 *   lossy       every link drops / duplicates / delays frames (delays reorder them)
 *   disk        the node's `SimDisk` refuses writes for a while
 */
import type { InFlight } from '../../src/cluster/memory-network.ts';
import { R_ASK, R_TELL } from '../../src/cluster/remote-protocol.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import type { TroupeNode } from '../../src/node/troupe-node.ts';
import { partitionOf } from '../../src/replication/partition-table.ts';
import type { ReplicationDriver } from '../../src/replication/replication-driver.ts';
import { checkCounters, checkEpochClaims, type EpochClaim, type Operation } from '../helpers/history.ts';
import { notApplied, seededRandom, SimNodeCluster } from '../replication/sim-cluster.ts';
import { describeFault, drawSchedule, FAULT_TYPES, type Fault, type FaultType } from './fault-schedule.ts';
import { checkSets, type SetOperation } from './set-check.ts';
import { SimDisk } from './sim-disk.ts';

export interface SimProfile {
  /** 3 or 5 nodes (ids 1..n). */
  nodes: number;
  /** Load before the first fault, simulated ms. */
  warmupMs: number;
  /** Every fault has ended by then (the heal), simulated ms after the start. */
  faultsUntilMs: number;
  faults: { min: number; max: number };
  /** Fault types drawn, and whether a restart may be on an empty disk (see `KNOWN_BUG_FAULTS`). */
  types: readonly FaultType[];
  emptyRestarts: boolean;
  /** Counter clients and cart clients (each picks a live node per operation), and the pause between two operations of one client. */
  counterClients: number;
  cartClients: number;
  thinkMs: number;
  /** Each operation's ask timeout (its outcome is unknown past it). */
  askTimeoutMs: number;
  counterKeys: number;
  carts: number;
  /** After the load stops, before the finals: longer than any write can wait inside the cluster. */
  drainMs: number;
  /** After the heal: the cluster must be whole (every node up everywhere) within this long. */
  quietMs: number;
}

/**
 * The default runs' faults: every type, restarts on an empty disk under the node's old id (a
 * replaced host) included since session 6 (they were left out while seed 27 of the full profile
 * lost a write that way: fixed by the members' lives kept on disk). `--all-faults` is kept as a
 * flag and now means the same.
 */
export const SAFE_FAULT_TYPES: readonly FaultType[] = FAULT_TYPES;

/**
 * `npm test`'s profile: short runs, a light load. Measured here (2 cores shared with other jobs,
 * load average 6–8): about 0.1–0.2 s of real time per seed; see docs/testing.md.
 */
export const QUICK_PROFILE: SimProfile = {
  nodes: 3,
  warmupMs: 300,
  faultsUntilMs: 3_500,
  faults: { min: 1, max: 4 },
  types: SAFE_FAULT_TYPES,
  emptyRestarts: true,
  counterClients: 2,
  cartClients: 1,
  thinkMs: 60,
  askTimeoutMs: 1_000,
  counterKeys: 12,
  carts: 4,
  quietMs: 20_000,
  drainMs: 6_000,
};

/** `npm run test:sim`'s profile: longer runs with more faults and clients. */
export const FULL_PROFILE: SimProfile = {
  ...QUICK_PROFILE,
  faultsUntilMs: 8_000,
  faults: { min: 2, max: 8 },
  thinkMs: 40,
  counterKeys: 24,
  carts: 8,
};

export interface SimOptions {
  /** Called with each line of the run's story (the schedule, each fault as it happens, the checks). */
  verbose?: (line: string) => void;
  /** The planted bug (sim.test.ts): node `node`'s disk acknowledges entries without storing their data. */
  plantAckWithoutData?: { node: number };
}

export interface SimResult {
  seed: number;
  faults: Fault[];
  /** Faults actually played, by type (a restart of a node already restarted at the heal is not). */
  injected: Record<FaultType, number>;
  counterOps: Operation[];
  cartOps: SetOperation[];
  /** Every violation found (empty: the run passed). */
  violations: string[];
  /** Every `primary in epoch` line of the run (I1's input; a replay must log the same). */
  claims: EpochClaim[];
  /** Simulated ms from the heal until the cluster was whole again. */
  quietAfterMs: number;
  /** Writes the injected disk faults refused. */
  diskRefusals: number;
}

/** Refusals after which a final read is simply sent again (the cluster is settling). */
/** The livelock guard's limits: 25× and 60× what runs reach (see runSeed). */
const LIVELOCK_FRAMES_PER_MS = 5_000;
const LIVELOCK_FRAMES = 500_000;

const RETRY_READ = [
  'ERR_NOT_PRIMARY',
  'ERR_PARTITION_UNAVAILABLE',
  'ERR_STALE_EPOCH',
  'ERR_ASK_TIMEOUT',
  'ERR_NODE_UNREACHABLE',
  'ERR_NO_NODES',
] as const;

export async function runSeed(seed: number, profile: SimProfile, o: SimOptions = {}): Promise<SimResult> {
  const say = o.verbose ?? (() => undefined);
  const ids = Array.from({ length: profile.nodes }, (_, i) => i + 1);
  const faults = drawSchedule(seed, {
    nodes: ids,
    warmupMs: profile.warmupMs,
    faultsUntilMs: profile.faultsUntilMs,
    faults: profile.faults,
    types: profile.types,
    emptyRestarts: profile.emptyRestarts,
    detectionMs: 1_460,
  });
  say(`seed ${seed}: ${profile.nodes} nodes, ${faults.length} faults`);
  for (const f of faults) say(`  planned ${describeFault(f)}`);

  let cluster: SimNodeCluster | undefined;
  const disks = new Map<number, SimDisk>();
  const diskOf = (id: number) => {
    let d = disks.get(id);
    if (d === undefined) {
      disks.set(id, (d = new SimDisk({ now: () => cluster?.clock.now() ?? 0 })));
      if (o.plantAckWithoutData?.node === id) d.plantAckWithoutData();
    }
    return d;
  };
  let refusedOnReplacedDisks = 0;
  const c = (cluster = await SimNodeCluster.start({ seed, ids, ownWallClocks: true, partitionStore: (id) => diskOf(id).open() }));
  const violations: string[] = [];
  const injected = Object.fromEntries(FAULT_TYPES.map((t) => [t, 0])) as Record<FaultType, number>;
  const cartOps: SetOperation[] = [];
  let quietAfterMs = 0;
  let offGuard: (() => void) | undefined;
  try {
    const t0 = c.clock.now();
    const now = () => c.clock.now() - t0;
    const sleep = (ms: number) => new Promise<void>((r) => c.clock.setTimeout(r, ms));
    const live = () => ids.filter((id) => c.nodes.has(id) && !c.killed.has(id));

    // ── A livelock guard: a burst no run comes near (≤ ~200 frames in a simulated ms, ≤ ~8,300 in a
    // 5-node run, seeds 3000–3014) is a message storm; report it and cut the network, so that the
    // run ends (its liveness checks then fail too) instead of spinning forever (seed 3609 did) ──
    let burstAt = -1;
    let burst = 0;
    let frames = 0;
    let storm = false;
    offGuard = c.net.intercept((m: InFlight) => {
      if (storm) return 'drop';
      const t = c.clock.now();
      if (t !== burstAt) [burstAt, burst] = [t, 0];
      if (++burst <= LIVELOCK_FRAMES_PER_MS && ++frames <= LIVELOCK_FRAMES) return undefined;
      storm = true;
      violations.push(
        `liveness: a message storm — ${burst} frames in simulated ms ${now()}, ${frames} in the run (last: node ${m.from.id} → ${m.to}: ${JSON.stringify(m.payload).slice(0, 160)}); the network is cut from here`,
      );
      return 'drop';
    });

    // ── The network's faults: one interceptor over the active ones ──
    const active = new Set<Fault>();
    const netRandom = seededRandom(seed * 31_337 + 5);
    const nodeOf = (address: string) => Number(address.slice(address.indexOf(':') + 1));
    const offNet = c.net.intercept((m: InFlight) => {
      const from = m.from.id;
      const to = nodeOf(m.to);
      let delay = 0;
      let duplicate = false;
      for (const f of active) {
        if (f.type === 'partition' && f.groups[0].includes(from) !== f.groups[0].includes(to)) return 'drop';
        if (f.type === 'one-way' && f.from.includes(from) && f.to.includes(to)) return 'drop';
        if (f.type === 'pause' && (f.node === from || f.node === to)) delay += Math.max(0, t0 + f.until - c.clock.now());
        if (f.type === 'lossy') {
          if (netRandom() < f.dropRate) return 'drop';
          // Not asks and tells: the transport delivers a frame at most once (TCP), and a duplicated
          // R_ASK would apply its write twice (receivers keep no request ids; see docs/testing.md).
          if (netRandom() < f.duplicateRate && !isAskOrTell(m.payload)) duplicate = true;
          if (f.maxDelayMs > 0) delay += Math.floor(netRandom() * f.maxDelayMs);
        }
      }
      if (duplicate) return 'duplicate'; // a duplicate keeps the normal latency; the rest of this frame's delay is dropped with it
      return delay > 0 ? { delay } : undefined;
    });

    // ── Load ──
    let running = true;
    const loops: Promise<void>[] = [];
    const client = (body: (via: number) => Promise<void>) =>
      loops.push(
        (async () => {
          while (running) {
            const nodes = live();
            if (nodes.length > 0) await body(nodes[Math.floor(c.random() * nodes.length)]!);
            await sleep(1 + Math.floor(c.random() * profile.thinkMs));
          }
        })(),
      );
    const keys = Array.from({ length: profile.counterKeys }, (_, i) => `k${i}`);
    for (let i = 0; i < profile.counterClients; i++)
      client((via) => c.incr(via, keys[Math.floor(c.random() * keys.length)]!, profile.askTimeoutMs));
    let nextSku = 0;
    const carts = Array.from({ length: profile.carts }, (_, i) => `cart${i}`);
    for (let i = 0; i < profile.cartClients; i++)
      client(async (via) => {
        const cart = carts[Math.floor(c.random() * carts.length)]!;
        const sku = `s${nextSku++}`;
        const start = c.clock.now();
        try {
          await c.ask(via, 'cart', cart, 'add', profile.askTimeoutMs, { sku });
          cartOps.push({ cart, sku, outcome: 'ok', start, end: c.clock.now(), via });
        } catch (e) {
          const error = (e as { code?: string }).code ?? (e as Error).message;
          cartOps.push({ cart, sku, outcome: notApplied(e) ? 'failed' : 'unknown', error, start, end: c.clock.now(), via });
        }
      });
    // Snowflake ids of each node's life only go up, wall-clock steps or not.
    const lastId = new WeakMap<TroupeNode, bigint>();
    const sampleIds = () => {
      for (const id of live()) {
        const n = c.node(id);
        const next = n.ids.next();
        const last = lastId.get(n);
        if (last !== undefined && next <= last) violations.push(`ids: node ${id} handed out ${next} after ${last} at ${now()} ms`);
        lastId.set(n, next);
      }
    };
    loops.push(
      (async () => {
        while (running) {
          sampleIds();
          await sleep(50);
        }
      })(),
    );

    // ── Faults, in time order (a window's end is an event of its own) ──
    type Step = { at: number; run: () => Promise<void> | void };
    const unkilled = new Set<number>();
    const steps: Step[] = [];
    for (const f of faults) {
      const start = async () => {
        say(`${now()} ms: ${describeFault(f)}`);
        injected[f.type]++;
        switch (f.type) {
          case 'kill':
            // A restart returns once the node speaks; it joins later (after a partition heals, say).
            // A node not joined yet is not killed again, and the restart paired with this kill is skipped.
            if (!c.nodes.has(f.node)) {
              say(`${now()} ms: node ${f.node} has not joined since its restart: this kill and its restart are skipped`);
              unkilled.add(f.node);
              break;
            }
            diskOf(f.node).crash();
            c.kill(f.node);
            break;
          case 'restart':
            if (unkilled.delete(f.node)) break;
            if (f.empty) {
              refusedOnReplacedDisks += diskOf(f.node).refused;
              disks.set(f.node, new SimDisk({ now: () => c.clock.now() }));
            }
            await c.restart(f.node, { emptyDisk: f.empty });
            break;
          case 'clock-step':
            c.stepWall(f.node, f.deltaMs);
            break;
          case 'disk':
            diskOf(f.node).failWrites(t0 + f.until, f.code);
            break;
          default:
            active.add(f);
        }
      };
      steps.push({ at: f.at, run: start });
      if ('until' in f && f.type !== 'disk') steps.push({ at: f.until, run: () => void active.delete(f) });
    }
    steps.sort((a, b) => a.at - b.at);
    for (const s of steps) {
      if (now() < s.at) await c.runUntil(() => now() >= s.at, s.at - now() + 1, `fault at ${s.at} ms`);
      await s.run();
    }
    if (now() < profile.faultsUntilMs) await c.runUntil(() => now() >= profile.faultsUntilMs, profile.faultsUntilMs, 'the heal');

    // ── Heal, wait for quiet ──
    active.clear();
    offNet();
    for (const id of ids)
      if (c.killed.has(id)) {
        say(`${now()} ms: heal: restart node ${id} with its data`);
        await c.restart(id);
      }
    say(`${now()} ms: healed`);
    const whole = () => ids.every((id) => c.nodes.has(id) && !c.killed.has(id) && c.upIds(c.node(id)).join() === ids.join());
    try {
      quietAfterMs = await c.runUntil(whole, profile.quietMs, 'every node up everywhere after the heal');
    } catch {
      violations.push(
        `liveness: not every node up everywhere ${profile.quietMs} ms after the heal (${ids.map((id) => (c.nodes.has(id) && !c.killed.has(id) ? `${id} sees ${c.upIds(c.node(id))}` : `${id} not started`)).join('; ')})`,
      );
    }
    say(`${now()} ms: whole again ${quietAfterMs} ms after the heal`);
    // The load goes on a little on the healed cluster, then stops.
    await c.runFor(300);
    running = false;
    await c.settle(Promise.all(loops), profile.askTimeoutMs + 5_000);
    // Quiet: a write whose client gave up may still be waiting inside (for a fence, up to the 5 s
    // hold) and apply later — allowed for an unknown outcome, but finals must be read after it.
    await c.runFor(profile.drainMs);
    say(`${now()} ms: load stopped; counters ${JSON.stringify(c.history.counts())}, carts ${JSON.stringify(tally(cartOps))}`);

    // ── Finals through every live node, and the checkers ──
    const read = async (via: number, kind: string, key: string): Promise<unknown> => {
      const deadline = c.clock.now() + 5_000;
      for (;;) {
        try {
          return await c.ask(via, kind, key, 'get', Math.max(1, deadline - c.clock.now()));
        } catch (e) {
          if (!RETRY_READ.some((code) => isTroupeError(e, code)) || c.clock.now() >= deadline) throw e;
          await sleep(10);
        }
      }
    };
    const readAll = <T>(via: number, kind: string, names: readonly string[], pick: (v: unknown) => T) =>
      c
        .settle(
          Promise.all(
            names.map(async (k) => {
              try {
                return [k, pick(await read(via, kind, k))] as const;
              } catch (e) {
                throw new Error(`${kind} ${k}: ${(e as { code?: string }).code ?? (e as Error).message}`);
              }
            }),
          ),
          7_000,
        )
        .then((rows) => new Map(rows));
    let counterFinals: Map<string, number> | undefined;
    let cartFinals: Map<string, Record<string, number>> | undefined;
    for (const via of live()) {
      try {
        const counts = await readAll(via, 'counter', keys, (v) => (v as { n: number }).n);
        const items = await readAll(via, 'cart', carts, (v) => (v as { items: Record<string, number> }).items);
        if (counterFinals === undefined || cartFinals === undefined) {
          counterFinals = counts;
          cartFinals = items;
          continue;
        }
        for (const k of keys)
          if (counts.get(k) !== counterFinals.get(k))
            violations.push(
              `finals: counter ${k} reads ${counts.get(k)} through node ${via}, ${counterFinals.get(k)} through node ${live()[0]}`,
            );
        for (const k of carts)
          if (JSON.stringify(items.get(k)) !== JSON.stringify(cartFinals.get(k)))
            violations.push(`finals: cart ${k} differs through node ${via}`);
      } catch (e) {
        violations.push(`finals: a read through node ${via} failed: ${(e as Error).message}`);
      }
    }
    if (violations.some((v) => v.startsWith('finals:'))) explainStuck(c, [...keys, ...carts], say);
    if (counterFinals) {
      const lost = checkCounters(c.history, counterFinals);
      violations.push(...lost.map((v) => `counters: ${JSON.stringify(v)}`));
      // A replay tells the story of the keys that lost or doubled writes too.
      if (lost.length > 0) {
        explainStuck(c, [...new Set(lost.map((v) => v.key))], say);
        for (const op of c.history.ops) if (lost.some((v) => v.key === op.key)) say(`  op ${op.key} via ${op.via} ${op.start}–${op.end}: ${op.outcome}${op.value !== undefined ? ` → ${op.value}` : ''}`);
      }
    }
    if (cartFinals) {
      const wrong = checkSets(cartOps, cartFinals);
      violations.push(...wrong.map((v) => `sets: ${v}`));
      // …and of the carts that lost or doubled items.
      const named = carts.filter((k) => wrong.some((v) => v.startsWith(`cart ${k}:`)));
      if (named.length > 0) {
        explainStuck(c, named, say);
        for (const op of cartOps) if (named.includes(op.cart)) say(`  op ${op.cart} add ${op.sku} via ${op.via} ${op.start}–${op.end}: ${op.outcome}${op.error !== undefined ? ` (${op.error})` : ''}`);
      }
    }
    const i1 = checkEpochClaims(c.epochClaims());
    violations.push(...i1.map((v) => `I1: ${v}`));
    if (i1.length > 0) explainPartitions(c, new Set(i1.map((v) => Number(/partition (\d+)/.exec(v)?.[1]))), say);
    say(`${now()} ms: checked, ${violations.length} violations`);
    for (const v of violations) say(`  VIOLATION ${v}`);
  } finally {
    offGuard?.();
    await c.stop();
  }
  return {
    seed,
    faults,
    injected,
    counterOps: c.history.ops,
    cartOps,
    violations,
    claims: c.epochClaims(),
    quietAfterMs,
    diskRefusals: refusedOnReplacedDisks + [...disks.values()].reduce((n, d) => n + d.refused, 0),
  };
}

/** For a replay: each node's view of the partitions of keys it could not read, and their log lines. */
function explainStuck(c: SimNodeCluster, keys: readonly string[], say: (line: string) => void): void {
  explainPartitions(c, new Set(keys.map((k) => partitionOf(k))), say);
}

function explainPartitions(c: SimNodeCluster, ps: ReadonlySet<number>, say: (line: string) => void): void {
  for (const id of [...c.nodes.keys()].sort()) {
    if (c.killed.has(id)) continue;
    const driver = (c.node(id) as unknown as { replication?: { driver: ReplicationDriver } }).replication?.driver;
    for (const row of driver?.describe() ?? []) if (ps.has(row.p as number)) say(`  node ${id}: ${JSON.stringify(row)}`);
  }
  for (const l of c.lines) if (typeof l.fields.p === "number" && ps.has(l.fields.p)) say(`  log ${l.at} node ${l.node}: ${l.msg}${process.env.SIM_FIELDS ? " " + JSON.stringify(l.fields) : ""}`);
}

const isAskOrTell = (payload: unknown) => Array.isArray(payload) && (payload[0] === R_ASK || payload[0] === R_TELL);

function tally(ops: readonly SetOperation[]): { ok: number; failed: number; unknown: number } {
  const t = { ok: 0, failed: 0, unknown: 0 };
  for (const op of ops) t[op.outcome]++;
  return t;
}

/** The command that replays one seed with its story printed. */
export function replayCommand(seed: number, nodes: number): string {
  return `npm run test:sim -- --seed ${seed}${nodes === 3 ? '' : ` --nodes ${nodes}`} --verbose`;
}
