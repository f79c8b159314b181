/**
 * A history of client operations and the checkers the replication tests run over it (Jepsen's
 * model): each operation has an outcome — ok (acknowledged), failed (known not applied: a
 * refusal before anything was written), or unknown (a timeout, a dropped connection, a 5xx whose
 * write may or may not have been applied).
 *
 * Counters: every `incr` adds 1 and returns the new count. For each key, with A acknowledged
 * increments, U unknown ones and a final count F read after the cluster is quiet:
 *   - A ≤ F ≤ A + U            (no acknowledged write lost, nothing applied from nowhere)
 *   - acknowledged counts are distinct (no two acknowledged increments returned the same count:
 *     a lost-then-reapplied write, or two primaries serving one key, would return one twice)
 *   - every acknowledged count ≤ F
 */
import { checkCounts, type CounterViolation, type KeyTally } from '../../src/load/counter-check.ts';

export type Outcome = 'ok' | 'failed' | 'unknown';

export interface Operation {
  key: string;
  /** The count an acknowledged increment returned. */
  value?: number;
  outcome: Outcome;
  /** What went wrong, for the report (an error code or message). */
  error?: string;
  start: number;
  end: number;
  /** The node the client sent it through (in-process tests), for checks about one side of a partition. */
  via?: number;
}

export class History {
  readonly ops: Operation[] = [];

  record(op: Operation): void {
    this.ops.push(op);
  }

  /** Runs an increment through `run` and records its outcome; `known` says which errors mean "not applied". */
  async incr(key: string, run: () => Promise<number>, known: (e: unknown) => boolean, now: () => number = Date.now): Promise<void> {
    const start = now();
    try {
      const value = await run();
      this.record({ key, value, outcome: 'ok', start, end: now() });
    } catch (e) {
      const error = (e as { code?: string }).code ?? (e as Error).message ?? String(e);
      this.record({ key, outcome: known(e) ? 'failed' : 'unknown', error, start, end: now() });
    }
  }

  counts(): { ok: number; failed: number; unknown: number } {
    const c = { ok: 0, failed: 0, unknown: 0 };
    for (const op of this.ops) c[op.outcome]++;
    return c;
  }
}

export type { CounterViolation } from '../../src/load/counter-check.ts';

/** Checks counter histories against the final counts (src/load/counter-check.ts); returns every violation (empty: the history is valid). */
export function checkCounters(history: History, finals: ReadonlyMap<string, number>): CounterViolation[] {
  const tallies = new Map<string, KeyTally>();
  for (const op of history.ops) {
    let t = tallies.get(op.key);
    if (t === undefined) tallies.set(op.key, (t = { acknowledged: 0, possible: 0, values: [] }));
    // A failed operation is known not applied; an unknown one may have been.
    if (op.outcome === 'failed') continue;
    t.possible++;
    if (op.outcome === 'ok') {
      t.acknowledged++;
      t.values.push(op.value!);
    }
  }
  return checkCounts(tallies, finals);
}

/**
 * When each key was served again after `since` (a node killed, a partition healed): a key counts
 * as served at the end of its first acknowledged operation that started at or after `since`.
 * `latestMs` is the slowest key's time from `since` (0 when none was served); `missing` lists the
 * keys with no such operation yet.
 */
export function servedAgain(history: History, since: number, keys: readonly string[]): { latestMs: number; missing: string[] } {
  const first = new Map<string, number>();
  for (const op of history.ops) {
    if (op.outcome !== 'ok' || op.start < since) continue;
    const seen = first.get(op.key);
    if (seen === undefined || op.end < seen) first.set(op.key, op.end);
  }
  let latestMs = 0;
  const missing: string[] = [];
  for (const key of keys) {
    const end = first.get(key);
    if (end === undefined) missing.push(key);
    else latestMs = Math.max(latestMs, end - since);
  }
  return { latestMs, missing };
}

/** A node's log line `partition P: primary in epoch (t,n)`: it wrote that epoch's start entry. */
export interface EpochClaim {
  /** When it was logged (simulated ms, or the line's time). */
  at: number;
  /** The node that logged it. */
  node: number;
  p: number;
  epoch: { term: number; node: number };
  startSeq: number;
  /** When the same node logged writing that epoch's start entry (where known). */
  writtenAt?: number;
}

/**
 * Invariant I1 from the nodes' logs: for each partition, no epoch is claimed twice (by two nodes,
 * or twice by one), an epoch names the node that claimed it, and the epochs claimed increase —
 * per node, and (with `crossNode`, the default) across nodes in the order they were claimed
 * (term first, then node id). `claims` must be in the order they were logged.
 *
 * The order across nodes is what a single clock sees (the simulator, in-process tests). Real
 * processes log on their own event loops, and a candidate learns that it is established only when
 * its replicas' acknowledgements arrive: one delayed by a cut, or by a busy loop at start, makes a
 * node log its lower epoch after another logged a higher one, although the replicas took the lower
 * one first (then promised the higher, so the late primary can commit nothing more; seen twice in
 * session 6, scenario 4b and a soak, both on the epochs nodes found at start). The real-process
 * suites pass `crossNode: false`.
 *
 * Even under one clock, a node whose traffic was held (a pause: simulator seed 3248) learns late
 * that the start entry it wrote before the pause committed, and logs its claim after a higher
 * epoch's — which fenced it, having seen that start entry. So a claim below an earlier claim of
 * another node breaks the order only if its start entry was written after that claim (or the
 * write time is unknown): a start entry written after a higher epoch was established must never
 * commit.
 */
export function checkEpochClaims(claims: readonly EpochClaim[], o: { crossNode?: boolean } = {}): string[] {
  const out: string[] = [];
  const fmt = (e: { term: number; node: number }) => `(${e.term},${e.node})`;
  const after = (a: { term: number; node: number }, b: { term: number; node: number }) => a.term > b.term || (a.term === b.term && a.node > b.node);
  const byPartition = new Map<number, EpochClaim[]>();
  for (const c of claims) {
    let list = byPartition.get(c.p);
    if (list === undefined) byPartition.set(c.p, (list = []));
    list.push(c);
  }
  for (const [p, list] of byPartition) {
    const seen = new Map<string, number>();
    const lastOf = new Map<number, EpochClaim>();
    const earlier: EpochClaim[] = [];
    for (const c of list) {
      const e = fmt(c.epoch);
      if (c.epoch.node !== c.node) out.push(`partition ${p}: node ${c.node} claimed epoch ${e}, which names node ${c.epoch.node}`);
      const other = seen.get(e);
      if (other !== undefined) out.push(`partition ${p}: epoch ${e} claimed by node ${other} and again by node ${c.node}`);
      seen.set(e, c.node);
      const mine = lastOf.get(c.node);
      if (mine !== undefined && !after(c.epoch, mine.epoch)) out.push(`partition ${p}: node ${c.node} claimed ${e} after ${fmt(mine.epoch)}`);
      lastOf.set(c.node, c);
      if (o.crossNode !== false)
        for (const d of earlier)
          if (d.node !== c.node && !after(c.epoch, d.epoch) && !(c.writtenAt !== undefined && c.writtenAt < d.at)) {
            out.push(
              `partition ${p}: node ${c.node} claimed ${e} (its start entry written ${c.writtenAt === undefined ? 'at an unknown time' : `at ${c.writtenAt}`}) after node ${d.node} claimed ${fmt(d.epoch)} at ${d.at}`,
            );
            break;
          }
      earlier.push(c);
    }
  }
  return out;
}
