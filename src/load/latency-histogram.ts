/**
 * Response times in bounded memory: log-spaced buckets 1% wide from 1 µs, so a percentile is
 * within 1% of the true value however many responses a run has (autocannon's own histogram
 * keeps whole milliseconds, too coarse for a loopback p50 well under 1 ms).
 */
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
const MIN_MS = 0.001;

export class LatencyHistogram {
  private readonly counts = new Map<number, number>();
  count = 0;

  record(ms: number): void {
    const bucket = ms <= MIN_MS ? 0 : Math.ceil(Math.log(ms / MIN_MS) / LOG_GROWTH);
    this.counts.set(bucket, (this.counts.get(bucket) ?? 0) + 1);
    this.count++;
  }

  /** The upper edge of the bucket holding the nearest-rank percentile `p` (0..100); NaN when empty. */
  percentile(p: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (const bucket of [...this.counts.keys()].sort((a, b) => a - b)) {
      seen += this.counts.get(bucket)!;
      if (seen >= rank) return MIN_MS * GROWTH ** bucket;
    }
    return NaN;
  }
}
