/**
 * The load tester as a library, without a troupe node: the scenario mix, the counter check on
 * hand-made tallies, and a whole run (autocannon → ledger → read-back → check) against small
 * in-test counter servers, one honest and two with a planted bug each.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { checkCounts, WriteLedger, type KeyTally } from '../../src/load/counter-check.ts';
import { readFinalCounts } from '../../src/load/final-counts.ts';
import { LatencyHistogram } from '../../src/load/latency-histogram.ts';
import { runLoad } from '../../src/load/load-run.ts';
import { operations, SCENARIO_NAMES, SCENARIOS } from '../../src/load/scenarios.ts';
import { formatSummary } from '../../src/load/summary-table.ts';

describe('scenario mix', () => {
  it.each([
    { name: 'write-heavy', writes: 900 },
    { name: 'read-heavy', writes: 100 },
    { name: 'sessions-100k', writes: 900 },
    { name: 'hot-key', writes: 900 },
    { name: 'sticky-cookie', writes: 900 },
  ])('$name: exactly $writes writes in 1,000 operations, keys within the scenario', ({ name, writes }) => {
    const scenario = SCENARIOS[name]!;
    const ops = operations(scenario, { keys: scenario.keys, prefix: 'r', seed: 3 });
    const seen = new Set<string>();
    let w = 0;
    for (let i = 0; i < 1000; i++) {
      const op = ops.next();
      if (op.write) w++;
      seen.add(op.key);
      const index = Number(/^r-k(\d+)$/.exec(op.key)![1]);
      expect(index).toBeLessThan(scenario.keys);
    }
    expect(w).toBe(writes);
    // Spread: 1,000 uniform draws over 1,000 keys hit about 632 of them; over 100k almost all distinct.
    if (scenario.keys === 1) expect(seen.size).toBe(1);
    else expect(seen.size).toBeGreaterThan(Math.min(scenario.keys, 1000) * 0.55);
  });

  it('a connection seed gives the same sequence, another seed another', () => {
    const take = (seed: number) => {
      const ops = operations(SCENARIOS['write-heavy']!, { keys: 1000, prefix: 'r', seed });
      return Array.from({ length: 50 }, () => ops.next());
    };
    expect(take(7)).toEqual(take(7));
    expect(take(8)).not.toEqual(take(7));
  });

  it('every scenario is named by its key and says what it does', () => {
    for (const name of SCENARIO_NAMES) {
      expect(SCENARIOS[name]!.name).toBe(name);
      expect(SCENARIOS[name]!.summary.length).toBeGreaterThan(0);
    }
  });
});

describe('counter check', () => {
  const tally = (acknowledged: number, possible: number, values: number[]): KeyTally => ({ acknowledged, possible, values });
  it.each([
    { case: 'consistent, every write acknowledged', t: tally(3, 3, [1, 2, 3]), final: 3, problems: [] },
    { case: 'consistent, one unacknowledged write applied', t: tally(2, 3, [1, 3]), final: 3, problems: [] },
    { case: 'consistent, one unacknowledged write not applied', t: tally(2, 3, [1, 2]), final: 2, problems: [] },
    { case: 'a lost acknowledged write', t: tally(3, 3, [1, 2, 3]), final: 2, problems: ['final 2 < 3 acknowledged increments (acknowledged writes lost)', 'above the final 2'] },
    { case: 'an over-count', t: tally(2, 3, [1, 2]), final: 4, problems: ['final 4 > 3 possible'] },
    { case: 'one count acknowledged twice', t: tally(2, 2, [1, 1]), final: 2, problems: ['two acknowledged increments returned 1'] },
  ])('$case', ({ t, final, problems }) => {
    const found = checkCounts(new Map([['k', t]]), new Map([['k', final]])).map((v) => v.problem);
    expect(found).toHaveLength(problems.length);
    problems.forEach((p, i) => expect(found[i]).toContain(p));
  });

  it('a key never read back is a violation', () => {
    expect(checkCounts(new Map([['k', tally(1, 1, [1])]]), new Map())).toEqual([{ key: 'k', problem: 'no final count (the key is not served)' }]);
  });

  it('the ledger counts attempts and acknowledgements per key', () => {
    const ledger = new WriteLedger();
    ledger.attempt('a');
    ledger.attempt('a');
    ledger.acknowledge('a', 1);
    ledger.attempt('b');
    expect(ledger.tallies.get('a')).toEqual(tally(1, 2, [1]));
    expect(ledger.totals()).toEqual({ keys: 2, acknowledged: 1, attempted: 3 });
  });
});

describe('latency histogram and summary', () => {
  it('percentiles within 1%', () => {
    const h = new LatencyHistogram();
    for (let i = 1; i <= 1000; i++) h.record(i / 100); // 0.01 … 10 ms
    expect(h.percentile(50)).toBeGreaterThanOrEqual(5);
    expect(h.percentile(50)).toBeLessThanOrEqual(5 * 1.01);
    expect(h.percentile(99)).toBeGreaterThanOrEqual(9.9);
    expect(h.percentile(99)).toBeLessThanOrEqual(9.9 * 1.01);
    expect(new LatencyHistogram().percentile(50)).toBeNaN();
  });

  it('the table shows CPU and the ratio only where they were measured', () => {
    const report = { scenario: 'hot-key', reqPerSec: 500, p50Ms: 1, p99Ms: 2, non2xx: 0, errors: 0 } as Parameters<typeof formatSummary>[0][0]['report'];
    const text = formatSummary([
      { target: 'raw', report: { ...report, reqPerSec: 1000 }, cpuUsPerReq: 20 },
      { target: 'node', report, cpuUsPerReq: 80, rawReqPerSec: 1000 },
      { target: 'http://x', report },
    ]);
    const [header, raw, node, remote] = text.trimEnd().split('\n');
    expect(header).toMatch(/^target\s+scenario\s+req\/s\s+p50 ms\s+p99 ms\s+non-2xx\s+errors\s+CPU µs\/req\s+× raw$/);
    expect(raw).toMatch(/1,000\s+1\.00\s+2\.00\s+0\s+0\s+20\.0\s+-$/);
    expect(node).toMatch(/500\s+1\.00\s+2\.00\s+0\s+0\s+80\.0\s+0\.50$/);
    expect(remote).toMatch(/500\s+1\.00\s+2\.00\s+0\s+0\s+-\s+-$/);
  });
});

/**
 * A counter server speaking the gateway's counter routes; `bug` plants a fault: 'lose' acknowledges
 * every 20th increment without applying it, 'double' applies every 20th twice.
 */
function counterServer(bug?: 'lose' | 'double'): Promise<{ url: string; server: Server }> {
  const counts = new Map<string, number>();
  let incrs = 0;
  const server = createServer((req, res) => {
    const [, actors, kind, key, command] = (req.url ?? '').split('/');
    req.resume();
    req.on('end', () => {
      if (actors !== 'actors' || kind !== 'counter' || key === undefined) return void res.writeHead(404).end('{}');
      let n = counts.get(key) ?? 0;
      if (command === 'incr') {
        incrs++;
        const faulty = incrs % 20 === 0;
        n += 1;
        counts.set(key, faulty && bug === 'lose' ? n - 1 : faulty && bug === 'double' ? n + 1 : n);
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ n }));
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server })),
  );
}

describe('a whole checked run against an in-test counter server', () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((r) => (server ? (server.closeAllConnections(), server.close(() => r())) : r())));

  it.each([
    { bug: undefined, expected: 'no violation' },
    { bug: 'lose' as const, expected: 'acknowledged writes lost' },
    { bug: 'double' as const, expected: 'applied from nowhere' },
  ])('server bug $bug: $expected', async ({ bug, expected }) => {
    const s = await counterServer(bug);
    server = s.server;
    const ledger = new WriteLedger();
    const progress: number[] = [];
    const report = await runLoad({
      urls: [s.url],
      scenario: SCENARIOS['write-heavy']!,
      seconds: 1,
      connections: 4,
      keys: 20,
      prefix: 't',
      ledger,
      onProgress: (p) => progress.push(p.reqPerSec),
    });
    expect(report.ok).toBeGreaterThan(100);
    expect(report.non2xx + report.errors).toBe(0);
    const totals = ledger.totals();
    // A write is recorded as attempted before it is sent; the last ones in flight are never acknowledged.
    expect(totals.acknowledged).toBeGreaterThan(report.ok * 0.8);
    expect(totals.attempted).toBeGreaterThanOrEqual(totals.acknowledged);
    const { counts, unread } = await readFinalCounts([s.url], [...ledger.tallies.keys()]);
    expect(unread.size).toBe(0);
    const problems = checkCounts(ledger.tallies, counts).map((v) => v.problem);
    if (bug === undefined) expect(problems).toEqual([]);
    else expect(problems.some((p) => p.includes(expected))).toBe(true);
  });
});
