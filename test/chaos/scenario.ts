/**
 * The frame every chaos scenario runs in: start real nodes, drive the recorded load until enough
 * is acknowledged, let the scenario inject its fault and heal it, stop the load, wait for quiet
 * (every live node sees every live node alive: an event with a deadline), read the finals
 * through every live node, run the checkers (counters, the cart set, I1 over the nodes'
 * `primary in epoch` lines), report one line, then assert. Processes and data directories are
 * released whatever failed; the scenario cleans up what it adds (nft rules, mounts) itself.
 */
import { expect } from 'vitest';
import { partitionOf } from '../../src/replication/partition-table.ts';
import { checkEpochClaims, servedAgain } from '../helpers/history.ts';
import { ChaosCluster } from './chaos-cluster.ts';
import type { NetLab } from './net-lab.ts';
import { figuresOf, report } from './report.ts';
import { Workload, type WorkloadOptions } from './workload.ts';

export interface FaultOutcome {
  /** From the fault (or the heal) to every counter key acknowledged again, ms. */
  recoverMs: number | null;
  notes?: string;
  /** Problems the scenario found itself (its own part of the criterion). */
  violations?: string[];
}

export interface ScenarioSpec {
  name: string;
  fault: string;
  criterion: string;
  ids: number[];
  lab?: NetLab;
  /** More `troupe start` flags for every node. */
  args?: string[];
  argsFor?: (id: number) => string[];
  /** Before the nodes start (mount a data directory). */
  beforeStart?(cluster: ChaosCluster): void;
  /** Always runs before the processes stop, failed or not (unmount, remove rules). */
  cleanup?(cluster: ChaosCluster): void;
  workload: WorkloadOptions;
  /** Acknowledged operations before the fault; default 300. */
  ackedBefore?: number;
  inject(ctx: { cluster: ChaosCluster; load: Workload }): Promise<FaultOutcome>;
  /** Runs after the finals were read, before the cluster stops (extra checks through live nodes). */
  after?(ctx: { cluster: ChaosCluster; load: Workload }): Promise<string[]>;
}

export async function runScenario(spec: ScenarioSpec): Promise<void> {
  const started = Date.now();
  const cluster = new ChaosCluster(spec.name, { lab: spec.lab, args: spec.args, argsFor: spec.argsFor });
  const load = new Workload(spec.workload);
  try {
    spec.beforeStart?.(cluster);
    const nodes = await cluster.startAll(spec.ids);
    load.start(nodes.map((n) => n.url));
    const before = spec.ackedBefore ?? 300;
    let outcome: FaultOutcome;
    try {
      await load.until(
        () => load.acknowledged() >= before,
        30_000,
        () => `only ${load.acknowledged()} operations acknowledged before the fault\n${cluster.stderr()}`,
      );
      outcome = await spec.inject({ cluster, load });
    } finally {
      await load.stop();
    }
    await cluster.waitAllAlive(30_000);
    const readers = cluster.live().map((n) => n.url);
    const figures = await load.check(readers);
    const violations = [...figures.violations, ...(outcome.violations ?? []), ...checkEpochClaims(sortedClaims(cluster), { crossNode: false })];
    if (spec.after) violations.push(...(await spec.after({ cluster, load })));
    // A violation's evidence: the key's operations in order and what every node logged about its partition.
    const bad = [...new Set(figures.violations.map((v) => v.split(':')[0]!))].filter((k) => load.counterKeys.includes(k)).slice(0, 3);
    for (const key of bad)
      console.log(`EVIDENCE ${key} (partition ${partitionOf(key)}), since the load started:\n  ${timeline(load, key)}\n${cluster.linesAbout(partitionOf(key))}`);
    cluster.sample();
    report({
      scenario: spec.name,
      load: load.describe(),
      fault: spec.fault,
      ...figuresOf(figures),
      recoverMs: outcome.recoverMs,
      peakRssMb: cluster.peakRssMb(),
      criterion: spec.criterion,
      pass: violations.length === 0,
      notes: outcome.notes,
      seconds: Math.round((Date.now() - started) / 1000),
    });
    expect(violations.slice(0, 30)).toEqual([]);
  } finally {
    load.destroy();
    try {
      spec.cleanup?.(cluster);
    } finally {
      await cluster.stop();
    }
  }
}

/** A key's operations in start order: `+n` acknowledged, `?code` unknown, `-code` failed, with start..end ms. */
function timeline(load: Workload, key: string): string {
  const t0 = load.history.ops[0]?.start ?? 0;
  return load.history.ops
    .filter((o) => o.key === key)
    .sort((a, b) => a.start - b.start)
    .map((o) => `${o.outcome === 'ok' ? `+${o.value}` : `${o.outcome === 'failed' ? '-' : '?'}${o.error}`}@${o.start - t0}..${o.end - t0}`)
    .join(' ');
}

/** I1 reads the claims in the order they were made (pino's ms timestamps; ties keep arrival order). */
function sortedClaims(cluster: ChaosCluster) {
  return [...cluster.claims].sort((a, b) => a.at - b.at);
}

/**
 * Waits until every counter key (or `keys`) was acknowledged again after `since`, probing the
 * keys not acknowledged yet through the live nodes (`urls`) while the load runs; returns the
 * slowest key's time from `since`, ms.
 */
export async function recovered(
  load: Workload,
  since: number,
  timeoutMs: number,
  o: { urls: readonly string[]; keys?: readonly string[] },
): Promise<number> {
  const keys = o.keys ?? load.counterKeys;
  const missing = () => servedAgain(load.history, since, keys).missing;
  let over = false;
  const probing = load.probe(missing, o.urls, () => over);
  try {
    await load.until(
      () => missing().length === 0,
      timeoutMs,
      () => {
        const last = (k: string) => load.history.ops.filter((op) => op.key === k && op.start >= since).map((op) => op.error ?? 'ok');
        return `keys not acknowledged again: ${missing().slice(0, 20).map((k) => `${k} [${last(k).join(' ')}]`).join(', ')}; ${JSON.stringify(load.history.counts())}`;
      },
    );
  } finally {
    over = true;
    await probing;
  }
  return servedAgain(load.history, since, keys).latestMs;
}

/**
 * After a heal at `healAt`: waits until every live node sees every live node alive, then until
 * every key is acknowledged again through every live node. Returns both times, ms.
 */
export async function healed(cluster: ChaosCluster, load: Workload, healAt: number): Promise<{ aliveMs: number; recoverMs: number }> {
  const aliveMs = await cluster.waitAllAlive(30_000);
  const recoverMs = await recovered(load, healAt, 30_000, { urls: cluster.live().map((n) => n.url) });
  return { aliveMs, recoverMs };
}

/** How many operations failed with each error code after `since`, e.g. "ERR_PARTITION_UNAVAILABLE×12". */
export function errorsSince(load: Workload, since: number): string {
  const codes = new Map<string, number>();
  for (const op of [...load.history.ops, ...load.cartOps])
    if (op.outcome !== 'ok' && op.start >= since) codes.set(op.error ?? '?', (codes.get(op.error ?? '?') ?? 0) + 1);
  return [...codes].map(([c, n]) => `${c}×${n}`).join(' ') || 'none';
}
