import { describe, expect, it } from 'vitest';
import { troupeError } from '../../src/core/errors.ts';
import { NodeMetrics, type MetricsSources } from '../../src/metrics/node-metrics.ts';
import { parsePrometheus, requirePrometheusParser, sampleValue, type MetricFamily } from '../helpers/prometheus.ts';

const parser = requirePrometheusParser();

/** The exposition, parsed by a real Prometheus parser (throws on malformed text). */
async function scrape(m: NodeMetrics): Promise<MetricFamily[]> {
  return parsePrometheus(await m.text());
}

const value = sampleValue;

function sources(over: Partial<MetricsSources> = {}): MetricsSources & { worker: Record<string, unknown> } {
  const worker: Record<string, unknown> = { slot: 0, resident: 2, byKind: { counter: 2 }, queued: 3, processed: 10, activated: 2, restarts: 1, deadLetters: 4 };
  return {
    worker,
    node: 7,
    kinds: ['counter', 'cart'],
    workers: async () => [worker, { slot: 1, resident: 1, byKind: { cart: 1 }, queued: 0, processed: 5 }],
    router: () => ({ forwarded: 3, rerouted: 1, badPayloads: 0, deadLetters: 2 }),
    replication: () => ({ primaries: 340, established: 300, logEntries: 1200, fences: 12, handoffsCompleted: 4, lag: { '2': { p50Ms: 1.5, p99Ms: 9, maxMs: 20 } } }),
    transport: () => ({ framesSent: 100, bytesSent: 5000, queuedBytes: 64, undeliverable: 1 }),
    members: () => [{ status: 'alive' }, { status: 'alive' }, { status: 'down' }],
    ...over,
  };
}

describe.skipIf(!parser)('NodeMetrics', () => {
  it('exposes every group in valid Prometheus text, with the node label', async () => {
    const m = new NodeMetrics(sources());
    const f = await scrape(m);
    expect(value(f, 'troupe_actor_processed_total', { worker: '0', node: '7' })).toBe(10);
    expect(value(f, 'troupe_actor_processed_total', { worker: '1' })).toBe(5);
    expect(value(f, 'troupe_actor_dead_letters_total', { worker: '0' })).toBe(4);
    expect(value(f, 'troupe_actors_resident', { kind: 'counter', worker: '0' })).toBe(2);
    expect(value(f, 'troupe_mailbox_depth', { worker: '0' })).toBe(3);
    expect(value(f, 'troupe_router_forwarded_total')).toBe(3);
    expect(value(f, 'troupe_router_dead_letters_total')).toBe(2);
    expect(value(f, 'troupe_replication_primaries')).toBe(340);
    expect(value(f, 'troupe_replication_handoffs_completed_total')).toBe(4);
    expect(value(f, 'troupe_replication_lag_seconds', { peer: '2', quantile: '0.99' })).toBeCloseTo(0.009);
    expect(value(f, 'troupe_transport_bytes_sent_total')).toBe(5000);
    expect(value(f, 'troupe_transport_undeliverable_total')).toBe(1);
    expect(value(f, 'troupe_members', { status: 'alive' })).toBe(2);
    expect(value(f, 'troupe_members', { status: 'down' })).toBe(1);
    expect(f.find((x) => x.name === 'troupe_ask_duration_seconds')?.type).toBe('histogram');
  });

  it('counts asks by kind and outcome, and times them', async () => {
    const m = new NodeMetrics(sources());
    await m.timeAsk('counter', async () => ({ n: 1 }));
    await m.timeAsk('counter', async () => ({ n: 2 }));
    await expect(m.timeAsk('cart', () => Promise.reject(troupeError('ERR_MAILBOX_FULL', 'full')))).rejects.toMatchObject({ code: 'ERR_MAILBOX_FULL' });
    await expect(m.timeAsk('cart', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    const f = await scrape(m);
    expect(value(f, 'troupe_asks_total', { kind: 'counter', outcome: 'ok' })).toBe(2);
    expect(value(f, 'troupe_asks_total', { kind: 'cart', outcome: 'ERR_MAILBOX_FULL' })).toBe(1);
    expect(value(f, 'troupe_asks_total', { kind: 'cart', outcome: 'ERR_INTERNAL' })).toBe(1);
    expect(value(f, 'troupe_ask_duration_seconds_count', { kind: 'counter' })).toBe(2);
  });

  it('summarises asks per kind for the REPL: outcomes and latency percentiles', async () => {
    const m = new NodeMetrics(sources());
    for (let i = 0; i < 98; i++) await m.timeAsk('counter', async () => i);
    await expect(m.timeAsk('counter', () => Promise.reject(troupeError('ERR_ASK_TIMEOUT', 'late')))).rejects.toThrow();
    await m.timeAsk('bogus-kind', async () => 0);
    const s = m.askSummary();
    expect(Object.keys(s).sort()).toEqual(['counter', 'other']);
    expect(s.counter).toMatchObject({ asks: 99, ok: 98, errors: { ERR_ASK_TIMEOUT: 1 } });
    // Resolved promises answer in microseconds: the first bucket (0.1 ms) holds the median.
    expect(s.counter!.p50Ms).toBeCloseTo(0.1);
    expect(s.counter!.p99Ms).toBeGreaterThanOrEqual(s.counter!.p50Ms!);
  });

  it('counters follow their sources between scrapes', async () => {
    const s = sources();
    const m = new NodeMetrics(s);
    expect(value(await scrape(m), 'troupe_actor_processed_total', { worker: '0' })).toBe(10);
    s.worker.processed = 25;
    expect(value(await scrape(m), 'troupe_actor_processed_total', { worker: '0' })).toBe(25);
  });

  it('labels stay bounded: 100,000 keys and 1,000 unknown kinds add no series', async () => {
    const m = new NodeMetrics(sources());
    for (let i = 0; i < 100; i++) await m.timeAsk('counter', async () => i);
    const before = (await m.text()).split('\n').length;
    const asks: Array<Promise<unknown>> = [];
    for (let i = 0; i < 100_000; i++) asks.push(m.timeAsk(i % 100 === 0 ? `kind-${i}` : 'counter', async () => `key-${i}`));
    await Promise.all(asks);
    const text = await m.text();
    expect(text).not.toContain('key-');
    expect(text).not.toContain('kind-');
    // Only the `other` kind's series were added (its histogram and its counter), nothing per key or per kind name.
    const added = text.split('\n').length - before;
    expect(added).toBeLessThanOrEqual(LATENCY_SERIES + 4);
    expect(value(await scrape(m), 'troupe_asks_total', { kind: 'other', outcome: 'ok' })).toBe(1000);
  });

  it('membership changes and replicated journal writes are counted', async () => {
    const m = new NodeMetrics(sources());
    m.memberChanged('suspect');
    m.memberChanged('down');
    m.memberChanged('down');
    const journal = {
      calls: 0,
      writeMany(writes: readonly unknown[]) {
        this.calls++;
        return Promise.resolve(writes.map((_, i) => (i === 1 ? new Error('no') : null)));
      },
      read: async () => ({ events: [], seq: 0 }),
    };
    const timed = m.timedJournal(journal as never) as typeof journal;
    await timed.writeMany([1]);
    await timed.writeMany([1, 2]);
    expect(journal.calls).toBe(2);
    const f = await scrape(m);
    expect(value(f, 'troupe_membership_changes_total', { status: 'down' })).toBe(2);
    expect(value(f, 'troupe_journal_write_duration_seconds_count', { outcome: 'ok' })).toBe(1);
    expect(value(f, 'troupe_journal_write_duration_seconds_count', { outcome: 'failed' })).toBe(1);
  });
});

/** Series one histogram label set adds: its buckets, +Inf, sum and count. */
const LATENCY_SERIES = 16 + 3;
