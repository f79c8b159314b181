/**
 * Replication lag and log size under a sustained write load (issue 7's last benchmark): three
 * `troupe start` nodes on this machine, durability `replicated` (R=3, W=2, LMDB), autocannon
 * with 50 connections through node 1's gateway for --seconds (default 60), POST
 * /actors/counter/<key>/incr over 3,000 keys (so every node leads about a third of the load
 * and node 1 forwards the rest).
 *
 * - Replication lag, from each node's `GET /cluster/ring` → replication.lag at the end: for a
 *   sampled append (one in flight per partition and peer), the time from the primary shipping it
 *   to the replica's `appended` after its commit (src/replication/replication-lag.ts). p50/p99/max
 *   per primary → replica pair, over the whole run, 5%-precision histogram buckets.
 * - Log size: every 5 s, Σ over partitions of (last − base) from every node's
 *   `GET /cluster/partitions`, i.e. entries held in its logs; bounded means that from 20 s on
 *   every sample holds at most the entries written in the last 20 s (truncation runs at least
 *   every 10 s per partition, REPLICATION.md I5), while the entries written (Σ last) keep growing.
 *
 * Baseline in the same run: the same load against one node alone with `--durability flush`
 * (its LMDB journal, nothing replicated); the ratio of req/s is printed.
 *
 *   node --import tsx bench/replication-lag.ts [--seconds 60] [--keys 3000]
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { getJson, load, startCluster, startNode, stopAll, type BenchNode, type LoadResult } from './node-cluster.ts';
import { replicationDefaults } from '../src/replication/replication-driver.ts';
import { check, fixed, int, machineLine, main, now, printResult, row, sleep } from './lib.ts';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, keys: { type: 'string', default: '3000' } } });
const SECONDS = Number(args.seconds);
const KEYS = Number(args.keys);
const CONNECTIONS = 50;
const SAMPLE_MS = 5_000;
check(Number.isFinite(SECONDS) && SECONDS >= 5, '--seconds must be a number ≥ 5');
check(Number.isInteger(KEYS) && KEYS >= CONNECTIONS, `--keys must be an integer ≥ ${CONNECTIONS}`);

interface Lag {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}
interface Sample {
  atS: number;
  /** Entries held (Σ last − base) per node. */
  held: number[];
  /** Entries written (Σ last) per node. */
  written: number[];
}

async function logSizes(nodes: BenchNode[]): Promise<{ held: number[]; written: number[] }> {
  const views = await Promise.all(
    nodes.map((n) => getJson<{ partitions: Array<{ last: number; base: number }> }>(`${n.url}/cluster/partitions`)),
  );
  return {
    held: views.map((v) => v.partitions.reduce((a, r) => a + r.last - r.base, 0)),
    written: views.map((v) => v.partitions.reduce((a, r) => a + r.last, 0)),
  };
}

main(async () => {
  console.log(
    `replication-lag: 3 nodes × 1 worker, replicated R=3 W=2, autocannon ${CONNECTIONS} connections → node 1, ${KEYS} keys, ${SECONDS} s; baseline one node --durability flush; ${machineLine()}`,
  );
  let cluster: LoadResult;
  let baseline: LoadResult;
  const samples: Sample[] = [];
  const lags: Array<{ from: number; to: string } & Lag> = [];
  try {
    const nodes = await startCluster(randomBytes(32).toString('base64url'), 'replicated');
    // A short warm-up: JIT, activations, the first fences of every partition in use.
    await load([nodes[0]!.url], { connections: CONNECTIONS, seconds: 3, keys: KEYS });
    const t0 = now();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const s = await logSizes(nodes);
        samples.push({ atS: (now() - t0) / 1000, ...s });
        const wait = t0 + samples.length * SAMPLE_MS - now();
        if (wait > 0) await sleep(wait);
      }
    })();
    cluster = await load([nodes[0]!.url], { connections: CONNECTIONS, seconds: SECONDS, keys: KEYS });
    sampling = false;
    await sampler;
    samples.push({ atS: (now() - t0) / 1000, ...(await logSizes(nodes)) });
    for (const n of nodes) {
      const ring = await getJson<{ replication?: { lag?: Record<string, Lag> } }>(`${n.url}/cluster/ring`);
      for (const [to, l] of Object.entries(ring.replication?.lag ?? {})) lags.push({ from: n.id, to, ...l });
    }
    await stopAll();

    const single = await startNode({ id: 1, durability: 'flush' });
    await load([single.url], { connections: CONNECTIONS, seconds: 3, keys: KEYS });
    baseline = await load([single.url], { connections: CONNECTIONS, seconds: SECONDS, keys: KEYS });
  } finally {
    await stopAll();
  }

  console.log('\nload');
  console.log(row('target', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'errors'));
  for (const [name, r] of [
    ['3 nodes replicated', cluster],
    ['1 node flush', baseline],
  ] as const)
    console.log(row(name, int(r.reqPerSec), fixed(r.p50Ms), fixed(r.p99Ms), String(r.non2xx), String(r.errors)));
  const ratio = cluster.reqPerSec / baseline.reqPerSec;
  console.log(`ratio replicated / single-node flush: ${fixed(ratio)}`);

  console.log('\nreplication lag (primary → replica: ship → appended), whole run');
  console.log(row('pair', 'samples', 'p50 ms', 'p99 ms', 'max ms'));
  for (const l of lags) console.log(row(`${l.from} → ${l.to}`, int(l.count), fixed(l.p50Ms, 3), fixed(l.p99Ms, 3), fixed(l.maxMs, 1)));
  const worst = lags.reduce((a, l) => (l.p99Ms > a.p99Ms ? l : a), lags[0]!);
  // The median pair's p50: the typical lag.
  const p50s = lags.map((l) => l.p50Ms).sort((a, b) => a - b);
  const typical = p50s[Math.floor(p50s.length / 2)] ?? 0;

  console.log('\nlog size every 5 s (entries held = Σ last − base over partitions; written = Σ last)');
  console.log(row('t s', 'held n1', 'held n2', 'held n3', 'written n1'));
  for (const s of samples) console.log(row(fixed(s.atS, 0), int(s.held[0]!), int(s.held[1]!), int(s.held[2]!), int(s.written[0]!)));
  const held = samples.map((s) => Math.max(...s.held));
  const written = samples.at(-1)!.written[0]!;
  // Bounded: a slowly written partition is truncated at least every truncateEveryMs (10 s), so
  // from WINDOW_S on a log holds at most what was written in the last WINDOW_S (a sample period
  // and the lag of the members' confirmations on top), never the whole history.
  const WINDOW_S = replicationDefaults.truncateEveryMs / 1000 + 2 * (SAMPLE_MS / 1000);
  const writtenBy = (t: number) => Math.max(0, ...samples.filter((s) => s.atS <= t).map((s) => s.written[0]!));
  const checked = samples.filter((s) => s.atS >= WINDOW_S);
  const over = checked.filter((s) => Math.max(...s.held) > s.written[0]! - writtenBy(s.atS - WINDOW_S));
  const bounded = checked.length > 0 && over.length === 0;
  const heldLate = Math.max(0, ...checked.map((s) => Math.max(...s.held)));
  console.log(
    `largest log held from ${WINDOW_S} s on: ${int(heldLate)} entries (${fixed((100 * heldLate) / written, 1)}% of the ${int(written)} written on node 1); ` +
      `${checked.length ? (bounded ? `every sample holds at most the last ${WINDOW_S} s of writes → bounded` : `${over.length} samples hold more than the last ${WINDOW_S} s of writes → GROWING`) : 'run too short to judge (--seconds ≥ 25)'}`,
  );
  check(cluster.errors === 0 && cluster.non2xx === 0, `the replicated load had ${cluster.non2xx} non-2xx and ${cluster.errors} errors`);

  printResult({
    bench: 'replication-lag',
    seconds: SECONDS,
    keys: KEYS,
    replicated: cluster,
    singleFlush: baseline,
    ratio: Number(ratio.toFixed(3)),
    lagTypicalP50Ms: typical,
    lagWorstP99Ms: worst?.p99Ms,
    lag: lags,
    logHeldMax: Math.max(...held),
    logHeldAfterWindow: heldLate,
    windowS: WINDOW_S,
    written,
    bounded,
  });
});
