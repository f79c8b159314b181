/**
 * Replication lag as the primary sees it: for a shipped append, the time until the replica
 * answers `appended` for its last entry (the replica committed it). Sampled, so it costs a map
 * lookup per ship and per confirmation: each (partition, peer) has at most one probe in flight —
 * the first ship while none is out starts one, the first confirmation at or past its seq ends
 * it. A probe that is never confirmed (a lost frame) measures the resend too, which is lag the
 * replica really had.
 *
 * Samples go into one log-bucketed histogram per peer (HdrHistogram's idea at 5% precision):
 * bounded memory whatever the run's length, and p50/p99 over the node's whole life. `now` is an
 * argument everywhere (the driver reads its clock), so the math is testable on plain numbers.
 *
 * @example
 *   const lag = new ReplicationLag();
 *   lag.shipped(7, 2, 10, 100);   // partition 7: entries up to seq 10 shipped to node 2 at t=100
 *   lag.confirmed(7, 2, 10, 103); // node 2 committed them at t=103
 *   lag.stats(); // { '2': { count: 1, p50Ms: 3, p99Ms: 3, maxMs: 3 } }
 */

/** The lowest bucket's upper bound, ms: below this a lag is "at most 20 µs". */
const MIN_MS = 0.02;
/** Each bucket's upper bound is this much above the previous one (5% relative error). */
const GROWTH = 1.05;
/** Buckets up to MIN_MS·GROWTH^(BUCKETS−1) ≈ 10 minutes; anything longer lands in the last. */
const BUCKETS = Math.ceil(Math.log(600_000 / MIN_MS) / Math.log(GROWTH)) + 1;

export interface LagFigures {
  /** Samples so far. */
  count: number;
  /** Upper bounds of the buckets holding the median and the 99th percentile, ms (capped at maxMs). */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Counts of lags in buckets of geometrically growing width. */
export class LagHistogram {
  private readonly counts = new Uint32Array(BUCKETS);
  count = 0;
  max = 0;

  record(ms: number): void {
    const v = Math.max(0, ms);
    const i = v <= MIN_MS ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(v / MIN_MS) / Math.log(GROWTH)));
    this.counts[i]!++;
    this.count++;
    if (v > this.max) this.max = v;
  }

  /** The smallest bucket bound below which at least q (0..1) of the samples lie; 0 when empty. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      // The last bucket has no upper bound but the largest value seen.
      if (seen >= rank) return i === BUCKETS - 1 ? this.max : Math.min(this.max, MIN_MS * GROWTH ** i);
    }
    return this.max;
  }

  figures(): LagFigures {
    return { count: this.count, p50Ms: round(this.quantile(0.5)), p99Ms: round(this.quantile(0.99)), maxMs: round(this.max) };
  }
}

export class ReplicationLag {
  /** Partition → peer → the probe in flight: the last seq shipped and when. */
  private readonly probes = new Map<number, Map<number, { seq: number; at: number }>>();
  private readonly byPeer = new Map<number, LagHistogram>();

  /** Entries up to `last` of partition `p` left for `to` at `now` (starts a probe unless one is out). */
  shipped(p: number, to: number, last: number, now: number): void {
    let peers = this.probes.get(p);
    if (peers === undefined) this.probes.set(p, (peers = new Map()));
    if (!peers.has(to)) peers.set(to, { seq: last, at: now });
  }

  /** `from` confirmed holding partition `p` through `seq` at `now`: ends its probe if that covers it. */
  confirmed(p: number, from: number, seq: number, now: number): void {
    const peers = this.probes.get(p);
    const probe = peers?.get(from);
    if (probe === undefined || seq < probe.seq) return;
    peers!.delete(from);
    let h = this.byPeer.get(from);
    if (h === undefined) this.byPeer.set(from, (h = new LagHistogram()));
    h.record(now - probe.at);
  }

  /** A new epoch of `p` here, or it stopped leading: its seqs start over, so do its probes. */
  reset(p: number): void {
    this.probes.delete(p);
  }

  /** Per peer (by node id): samples, p50, p99 and max lag in ms. */
  stats(): Record<string, LagFigures> {
    const out: Record<string, LagFigures> = {};
    for (const [peer, h] of [...this.byPeer].sort((a, b) => a[0] - b[0])) out[String(peer)] = h.figures();
    return out;
  }
}

/** Three significant decimals of a millisecond (µs) are all a 5% bucket carries. */
function round(ms: number): number {
  return Math.round(ms * 1_000) / 1_000;
}
