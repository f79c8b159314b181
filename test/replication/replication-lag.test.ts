/**
 * The replication-lag statistic (src/replication/replication-lag.ts), on plain numbers: one probe
 * in flight per partition and peer, ended by the first confirmation at or past its seq; per-peer
 * histograms whose quantiles are within 5% of the exact ones. The driver's use of it is checked
 * in partition-memory.test.ts (lag figures per peer in `stats()`).
 */
import { describe, expect, it } from 'vitest';
import { LagHistogram, ReplicationLag } from '../../src/replication/replication-lag.ts';

describe('ReplicationLag probes', () => {
  it.each([
    {
      name: 'ship then confirm: one sample, the time between',
      steps: [
        ['ship', 7, 2, 10, 100],
        ['confirm', 7, 2, 10, 103],
      ],
      expected: { '2': { count: 1, p50Ms: 3, p99Ms: 3, maxMs: 3 } },
    },
    {
      name: 'a confirmation below the probe’s seq ends nothing; the one that covers it does',
      steps: [
        ['ship', 7, 2, 10, 100],
        ['confirm', 7, 2, 9, 101],
        ['confirm', 7, 2, 12, 108],
      ],
      expected: { '2': { count: 1, p50Ms: 8, p99Ms: 8, maxMs: 8 } },
    },
    {
      name: 'a ship while a probe is out does not restart it (the lag of the first shipped entry counts)',
      steps: [
        ['ship', 7, 2, 10, 100],
        ['ship', 7, 2, 20, 104],
        ['confirm', 7, 2, 20, 106],
      ],
      expected: { '2': { count: 1, p50Ms: 6, p99Ms: 6, maxMs: 6 } },
    },
    {
      name: 'peers and partitions are measured apart',
      steps: [
        ['ship', 7, 2, 10, 100],
        ['ship', 7, 3, 10, 100],
        ['ship', 8, 2, 5, 100],
        ['confirm', 7, 3, 10, 102],
        ['confirm', 8, 2, 5, 101],
        ['confirm', 7, 2, 10, 104],
      ],
      expected: { '2': { count: 2, p50Ms: 1, p99Ms: 4, maxMs: 4 }, '3': { count: 1, p50Ms: 2, p99Ms: 2, maxMs: 2 } },
    },
    {
      name: 'a confirmation with no probe out is no sample',
      steps: [['confirm', 7, 2, 10, 100]],
      expected: {},
    },
    {
      name: 'reset (a new epoch) drops the probe: the next epoch’s seq 3 is not the old epoch’s seq 3',
      steps: [
        ['ship', 7, 2, 3, 100],
        ['reset', 7],
        ['confirm', 7, 2, 3, 500],
      ],
      expected: {},
    },
  ] as const)('$name', ({ steps, expected }) => {
    const lag = new ReplicationLag();
    for (const s of steps) {
      if (s[0] === 'ship') lag.shipped(s[1], s[2], s[3], s[4]);
      else if (s[0] === 'confirm') lag.confirmed(s[1], s[2], s[3], s[4]);
      else lag.reset(s[1]);
    }
    // Bucket bounds are within 5% above the exact value (capped at the max seen).
    const got = lag.stats();
    expect(Object.keys(got)).toEqual(Object.keys(expected));
    for (const [peer, f] of Object.entries(expected)) {
      const g = got[peer]!;
      expect(g.count).toBe(f.count);
      expect(g.maxMs).toBe(f.maxMs);
      expect(g.p50Ms).toBeGreaterThanOrEqual(f.p50Ms);
      expect(g.p50Ms).toBeLessThanOrEqual(f.p50Ms * 1.05);
      expect(g.p99Ms).toBeGreaterThanOrEqual(f.p99Ms);
      expect(g.p99Ms).toBeLessThanOrEqual(f.p99Ms * 1.05);
    }
  });
});

describe('LagHistogram quantiles', () => {
  it('are within 5% above the exact quantile over a spread of values', () => {
    const h = new LagHistogram();
    // 1..10,000 × 0.01 ms: 0.01 ms to 100 ms, uniform.
    for (let i = 1; i <= 10_000; i++) h.record(i / 100);
    expect(h.count).toBe(10_000);
    for (const [q, exact] of [
      [0.5, 50],
      [0.99, 99],
      [0.001, 0.1],
    ] as const) {
      expect(h.quantile(q)).toBeGreaterThanOrEqual(exact);
      expect(h.quantile(q)).toBeLessThanOrEqual(exact * 1.05);
    }
    expect(h.max).toBe(100);
  });

  it('is empty at 0, takes negative lags (a clock never goes back, but) as 0, and caps huge ones in the last bucket', () => {
    const h = new LagHistogram();
    expect(h.figures()).toEqual({ count: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 });
    h.record(-5);
    expect(h.figures()).toEqual({ count: 1, p50Ms: 0, p99Ms: 0, maxMs: 0 });
    h.record(3_600_000);
    expect(h.quantile(1)).toBe(3_600_000);
    expect(h.count).toBe(2);
  });
});
