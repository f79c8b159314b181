/**
 * The counter check of `troupe bench --check` and of the replication tests (Jepsen's model):
 * every `incr` adds 1 and returns the new count. For each key, with A acknowledged increments,
 * an upper bound P on the increments that may have been applied (every one attempted, or the
 * acknowledged plus those with an unknown outcome) and the final count F read afterwards:
 *   - A ≤ F ≤ P            (no acknowledged write lost, nothing applied from nowhere)
 *   - the acknowledged counts are distinct (a lost-then-reapplied write, or two primaries
 *     serving one key, would return one count twice)
 *   - every acknowledged count ≤ F
 *
 * @example
 *   const ledger = new WriteLedger();
 *   ledger.attempt('k1'); ledger.acknowledge('k1', 1);
 *   checkCounts(ledger.tallies, new Map([['k1', 1]])); // []
 */

/** What the client knows about one key's increments. */
export interface KeyTally {
  /** Increments acknowledged (a 2xx with the new count). */
  acknowledged: number;
  /** Increments that may have been applied: at least `acknowledged`. */
  possible: number;
  /** The count each acknowledged increment returned. */
  values: number[];
}

export interface CounterViolation {
  key: string;
  problem: string;
}

/** Records every increment sent and every one acknowledged, per key. */
export class WriteLedger {
  readonly tallies = new Map<string, KeyTally>();

  private tally(key: string): KeyTally {
    let t = this.tallies.get(key);
    if (t === undefined) this.tallies.set(key, (t = { acknowledged: 0, possible: 0, values: [] }));
    return t;
  }

  /** An increment is about to be sent: it may be applied whatever its reply. */
  attempt(key: string): void {
    this.tally(key).possible++;
  }

  /** An increment was acknowledged with the count it returned. */
  acknowledge(key: string, value: number): void {
    const t = this.tally(key);
    t.acknowledged++;
    t.values.push(value);
  }

  /** Totals over every key, for the report. */
  totals(): { keys: number; acknowledged: number; attempted: number } {
    let acknowledged = 0;
    let attempted = 0;
    for (const t of this.tallies.values()) {
      acknowledged += t.acknowledged;
      attempted += t.possible;
    }
    return { keys: this.tallies.size, acknowledged, attempted };
  }
}

/** Checks each key's tally against its final count; returns every violation (empty: all consistent). */
export function checkCounts(tallies: ReadonlyMap<string, KeyTally>, finals: ReadonlyMap<string, number>): CounterViolation[] {
  const out: CounterViolation[] = [];
  for (const [key, t] of tallies) {
    const final = finals.get(key);
    if (final === undefined) {
      out.push({ key, problem: 'no final count (the key is not served)' });
      continue;
    }
    if (final < t.acknowledged) out.push({ key, problem: `final ${final} < ${t.acknowledged} acknowledged increments (acknowledged writes lost)` });
    if (final > t.possible)
      out.push({
        key,
        problem: `final ${final} > ${t.possible} possible (${t.acknowledged} acknowledged + ${t.possible - t.acknowledged} unacknowledged: applied from nowhere)`,
      });
    const seen = new Set<number>();
    for (const v of t.values) {
      if (seen.has(v)) out.push({ key, problem: `two acknowledged increments returned ${v}` });
      seen.add(v);
      if (v > final) out.push({ key, problem: `an acknowledged increment returned ${v}, above the final ${final}` });
    }
  }
  return out;
}
