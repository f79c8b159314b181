/**
 * Forwarding overhead (issue 8): the same counter load sent three ways to one three-node cluster,
 * in the same run, alternating by round.
 *
 *   gateway   every request to node 1's gateway; it owns about a third of the keys and forwards
 *             the rest to their primary over the cluster transport (one hop, reply back the same way)
 *   client    through `TroupeClient` (src/client) given all three URLs: it fetches
 *             GET /cluster/table and sends each request straight to its key's primary
 *   owner     (reference) each request to its key's primary, chosen by hand from one table read
 *             per round, with the same request shape as `gateway`
 *   client-notoken   (diagnostic, only when named in --modes) the client with its read-your-writes
 *             token header removed by a wrapping `fetch`: the cost of the token on the server
 *
 * `gateway` and `owner` send the same requests as the client does (POST with `{"by":1}`, an
 * `idempotency-key`, `x-timeout-ms`) through the same global `fetch`, so owner − gateway is the
 * forwarding hop alone and client − owner the library's own cost (table lookup, token header).
 *
 * Nodes: three `troupe start` processes from the TypeScript sources (TROUPE_SOURCE=1), 1 worker
 * each, LMDB data directories, durability 'replicated' (the cluster default: R = 3, W = 2), forked
 * by node-cluster.ts. The driver is a closed loop in this process: --concurrency requests in flight
 * (default 50), over --keys counters (default 3,000); loop w starts at key w·K/C and walks the keys
 * in order. A round lasts --seconds, then each loop finishes its request in flight, so every
 * request sent is answered; rate = 2xx ÷ (last answer − start). Any non-2xx or failed request
 * fails the bench. Per mode (medians of rounds): req/s, p50/p99 (per request, fractional ms),
 * server CPU µs/request (utime + stime of the three node processes, all threads, from /proc) and
 * the driver's own CPU µs/request (process.cpuUsage: the driver shares the 2 cores with the nodes,
 * so req/s is partly the driver's; CPU µs/request is the fairer figure).
 *
 * Forwarding is counted by the routers themselves: Σ over the nodes of `sentRemote + forwarded`
 * from GET /cluster/ring, per round. In `client` and `owner` rounds it must stay at 0 (after the
 * warm-up round of each mode); a round where it moves is flagged.
 *
 * Before anything is timed every key gets one increment (activation, fencing of every partition),
 * then each mode runs one untimed warm-up round (--warmup-seconds). After the rounds every counter
 * is read back (`get` through the client); the sum must equal the 2xx `incr` responses, priming
 * and warm-up included, else the bench fails.
 *
 * Target: client req/s ≥ 1.5 × gateway req/s (PASS/MISS).
 *
 *   node --import tsx bench/client-routing.ts [--seconds 8] [--rounds 3] [--keys 3000] [--concurrency 50]
 *        [--warmup-seconds 3] [--modes gateway,client,owner[,client-notoken]] [--durability replicated|commit]
 *
 * `--durability commit` runs the same load on an unreplicated cluster (each node's actors in its
 * own LMDB alone): there a write costs a tenth of a replicated one, so the hop weighs more.
 *
 * `--driver-fetch http` (session 5) gives every mode the same cheaper `fetch`: a keep-alive
 * `node:http` Agent under a minimal fetch (`httpFetch`), passed to `TroupeClient` as its `fetch`
 * option, instead of the global undici one. It tells whether the driver's CPU, not the routing,
 * decides the ratio.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';
import { parseArgs } from 'node:util';
import { primaryOfKey, TroupeClient, type RoutingTable } from '../src/client/index.ts';
import { TOKEN_HEADER } from '../src/replication/token.ts';
import type { RouterStats } from '../src/cluster/cluster-router.ts';
import { check, cpuSecondsOf, cpuSecondsOfAll, fixed, int, machineLine, main, median, now, percentile, positiveInt, printResult, row } from './lib.ts';
import { getJson, startCluster, stopAll, type BenchNode } from './node-cluster.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    keys: { type: 'string', default: '3000' },
    concurrency: { type: 'string', default: '50' },
    'warmup-seconds': { type: 'string', default: '3' },
    modes: { type: 'string', default: 'gateway,client,owner' },
    // 'replicated' (the cluster default: R=3, W=2) or 'commit' (unreplicated: each key on its owner alone).
    durability: { type: 'string', default: 'replicated' },
    // 'global' (undici's fetch) or 'http' (httpFetch: node:http keep-alive), for every mode.
    'driver-fetch': { type: 'string', default: 'global' },
  },
});
const SECONDS = positiveInt('seconds', args.seconds);
const ROUNDS = positiveInt('rounds', args.rounds);
const KEYS = positiveInt('keys', args.keys);
const CONCURRENCY = positiveInt('concurrency', args.concurrency);
const WARMUP_SECONDS = positiveInt('warmup-seconds', args['warmup-seconds']);
const ALL_MODES = ['gateway', 'client', 'owner', 'client-notoken'] as const;
type Mode = (typeof ALL_MODES)[number];
const MODES = args.modes!.split(',') as Mode[];
for (const m of MODES) check(ALL_MODES.includes(m), `--modes: ${m} is not one of ${ALL_MODES.join(', ')}`);
check(MODES.includes('gateway') && MODES.includes('client'), '--modes must include gateway and client (the ratio compares them)');
check(KEYS >= CONCURRENCY, `--keys must be ≥ --concurrency (${CONCURRENCY})`);
const DURABILITY = args.durability!;
check(DURABILITY === 'replicated' || DURABILITY === 'commit', `--durability must be replicated or commit (got ${JSON.stringify(DURABILITY)})`);
const DRIVER_FETCH = args['driver-fetch']!;
check(DRIVER_FETCH === 'global' || DRIVER_FETCH === 'http', `--driver-fetch must be global or http (got ${JSON.stringify(DRIVER_FETCH)})`);
const TARGET = 1.5;

/**
 * Just enough `fetch` for the driver on a keep-alive `node:http` Agent: method, string headers,
 * string body, abort signal; the reply read whole into a `Response`. undici's fetch costs the
 * driver several hundred µs of CPU per request on this box (session 4); this skips its streams.
 */
function httpFetch(): typeof fetch {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  return (input, init) =>
    new Promise<Response>((resolve, reject) => {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      const req = request(url, { method: init?.method ?? 'GET', agent, headers: init?.headers as Record<string, string> | undefined });
      const signal = init?.signal;
      const abort = () => req.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      if (signal?.aborted) return abort();
      signal?.addEventListener('abort', abort, { once: true });
      req.on('error', (e) => {
        signal?.removeEventListener('abort', abort);
        reject(e);
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          signal?.removeEventListener('abort', abort);
          const headers = Object.entries(res.headers).flatMap(([k, v]) => (v === undefined ? [] : Array.isArray(v) ? v.map((x) => [k, x] as [string, string]) : [[k, v] as [string, string]]));
          resolve(new Response(chunks.length === 0 ? null : Buffer.concat(chunks), { status: res.statusCode!, headers }));
        });
      });
      req.end(typeof init?.body === 'string' ? init.body : undefined);
    });
}
const driverFetch: typeof fetch = DRIVER_FETCH === 'http' ? httpFetch() : (input, init) => fetch(input, init);
/** Per request, as the client's own default for one attempt (above the gateway's 5 s ask timeout). */
const REQUEST_TIMEOUT_MS = 6_000;

const keyName = (i: number) => `k${i}`;
const incrPath = (i: number) => `/actors/counter/${keyName(i)}/incr`;
const BODY = '{"by":1}';

/** The request `gateway` and `owner` send: the client's shape (it always sends an idempotency key). */
async function postIncr(base: string, i: number): Promise<void> {
  const res = await driverFetch(base + incrPath(i), {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': randomUUID(), 'x-timeout-ms': String(REQUEST_TIMEOUT_MS - 1_000) },
    body: BODY,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${base}${incrPath(i)}: ${res.status} ${text.slice(0, 300)}`);
}

interface Round {
  ok: number;
  seconds: number;
  reqPerSec: number;
  p50: number;
  p99: number;
  serverUsPerReq: number;
  /**
   * CPU µs per request of the busiest node alone. With a core per node (what a three-node
   * cluster has in production, and this 2-core box cannot give it) that node caps the cluster at
   * 1e6 / this many requests per second: the machine-independent form of the routing target.
   */
  busiestNodeUsPerReq: number;
  driverUsPerReq: number;
  /** Σ over the nodes of the routers' sentRemote + forwarded over the round. */
  hops: number;
}

/**
 * CONCURRENCY closed loops for `seconds`, each sending `send(i)` for its next key; at the deadline
 * every loop finishes its request in flight and stops. The first failure fails the round.
 */
async function closedLoop(send: (i: number) => Promise<unknown>, seconds: number, pids: number[], nodes: BenchNode[]): Promise<Round> {
  const latencies: number[] = [];
  const hops0 = await hopsOf(nodes);
  const cpu0 = cpuSecondsOfAll(pids);
  const perNode0 = pids.map((pid) => cpuSecondsOf(pid));
  const driver0 = process.cpuUsage();
  const t0 = now();
  const deadline = t0 + seconds * 1000;
  let ok = 0;
  let tEnd = t0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      let k = Math.floor((w * KEYS) / CONCURRENCY);
      while (now() < deadline) {
        const start = now();
        await send(k);
        tEnd = now();
        latencies.push(tEnd - start);
        ok++;
        k = (k + 1) % KEYS;
      }
    }),
  );
  const cpu = cpuSecondsOfAll(pids) - cpu0;
  const busiest = Math.max(...pids.map((pid, i) => cpuSecondsOf(pid) - perNode0[i]!));
  const driver = process.cpuUsage(driver0);
  const hops = (await hopsOf(nodes)) - hops0;
  const sorted = Float64Array.from(latencies).sort();
  const secs = (tEnd - t0) / 1000;
  return {
    ok,
    seconds: secs,
    reqPerSec: ok / secs,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    serverUsPerReq: (cpu * 1e6) / ok,
    busiestNodeUsPerReq: (busiest * 1e6) / ok,
    driverUsPerReq: (driver.user + driver.system) / ok,
    hops,
  };
}

async function hopsOf(nodes: BenchNode[]): Promise<number> {
  const stats = await Promise.all(nodes.map((n) => getJson<RouterStats>(`${n.url}/cluster/ring`)));
  return stats.reduce((a, s) => a + s.sentRemote + s.forwarded, 0);
}

main(async () => {
  // node-cluster.ts forks bin/troupe.js with this process's environment: the nodes run the sources.
  process.env.TROUPE_SOURCE = '1';
  const tStart = now();
  console.log(
    `client-routing: 3 nodes (sources, 1 worker, durability ${DURABILITY}${DURABILITY === 'replicated' ? ' R=3 W=2' : ''}), ${CONCURRENCY} in flight, ${int(KEYS)} keys, ` +
      `${ROUNDS} rounds × ${SECONDS} s per mode (${MODES.join(', ')}), warm-up ${WARMUP_SECONDS} s per mode, driver fetch ${DRIVER_FETCH}`,
  );
  console.log(machineLine());
  let result: Record<string, unknown> | undefined;
  try {
    const nodes = await startCluster(randomBytes(16).toString('hex'), DURABILITY);
    const pids = nodes.map((n) => n.pid);
    const node1 = nodes[0]!;
    const client = new TroupeClient({ nodes: nodes.map((n) => n.url), fetch: driverFetch });
    // The same client without its read-your-writes token header: what the token costs the server.
    const withoutToken: typeof fetch = (input, init) => {
      const headers = { ...(init?.headers as Record<string, string> | undefined) };
      delete headers[TOKEN_HEADER];
      return driverFetch(input, { ...init, headers });
    };
    const clientNoToken = new TroupeClient({ nodes: nodes.map((n) => n.url), fetch: withoutToken });
    const urlOf = new Map(nodes.map((n) => [n.id, n.url]));
    let table: RoutingTable | undefined;
    /** The hand-routed table, read again before each `owner` round (partitions may move while they settle). */
    const readTable = async () => {
      const t = await getJson<RoutingTable>(`${node1.url}/cluster/table`);
      const none = t.primaries.filter((p) => p < 0 || !urlOf.has(p)).length;
      check(none === 0, `node 1's table names no known primary for ${none} partitions`);
      table = t;
    };
    const send: Record<Mode, (i: number) => Promise<unknown>> = {
      gateway: (i) => postIncr(node1.url, i),
      client: (i) => client.askRaw('counter', keyName(i), 'incr', { by: 1 }),
      owner: (i) => postIncr(urlOf.get(primaryOfKey(table!, keyName(i))!)!, i),
      'client-notoken': (i) => clientNoToken.askRaw('counter', keyName(i), 'incr', { by: 1 }),
    };
    let incrOk = 0;
    const rounds = new Map<Mode, Round[]>(MODES.map((m) => [m, []]));

    // Prime: one increment per key (through the client), so every actor is active and every
    // partition's primary fenced before anything is timed; a cold cluster runs several times slower.
    const tPrime = now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < KEYS) await send.client(next++);
      }),
    );
    incrOk += KEYS;
    console.log(`  primed ${int(KEYS)} keys in ${int(now() - tPrime)} ms`);
    // Warm-up per mode: JIT of its path, socket pools open.
    for (const m of MODES) {
      if (m === 'owner') await readTable();
      const r = await closedLoop(send[m], WARMUP_SECONDS, pids, nodes);
      incrOk += r.ok;
      console.log(`  warm-up ${m.padEnd(7)} ${int(r.reqPerSec).padStart(6)} req/s  forwarding hops ${int(r.hops)}`);
    }
    for (let i = 0; i < ROUNDS; i++) {
      // Alternate the order, so no mode always runs right after the same other one.
      const order = i % 2 === 0 ? MODES : [...MODES].reverse();
      const line: string[] = [];
      for (const m of order) {
        if (m === 'owner') await readTable();
        const r = await closedLoop(send[m], SECONDS, pids, nodes);
        incrOk += r.ok;
        rounds.get(m)!.push(r);
        line.push(`${m} ${int(r.reqPerSec)} req/s (${fixed(r.serverUsPerReq, 0)} µs srv, hops ${int(r.hops)})`);
      }
      console.log(`  round ${i + 1}: ${line.join('  ')}`);
    }

    // Every acknowledged increment is in the counters, and nothing else is.
    let sum = 0;
    let cursor = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (cursor < KEYS) {
          // Await first: `sum += await …` would read `sum` before the await and lose the other loops' additions.
          const { n } = (await client.askRaw('counter', keyName(cursor++), 'get', undefined)) as { n: number };
          sum += n;
        }
      }),
    );
    const stats = client.stats();

    const summary = MODES.map((m) => {
      const rs = rounds.get(m)!;
      const med = (f: (r: Round) => number) => median(rs.map(f));
      return {
        mode: m,
        reqPerSec: med((r) => r.reqPerSec),
        p50: med((r) => r.p50),
        p99: med((r) => r.p99),
        serverUsPerReq: med((r) => r.serverUsPerReq),
        busiestNodeUsPerReq: med((r) => r.busiestNodeUsPerReq),
        driverUsPerReq: med((r) => r.driverUsPerReq),
        hopsPerReq: med((r) => r.hops / r.ok),
        hops: rs.map((r) => r.hops),
        rounds: rs.map((r) => Math.round(r.reqPerSec)),
      };
    });
    const of = (m: Mode) => summary.find((s) => s.mode === m)!;
    const ratio = of('client').reqPerSec / of('gateway').reqPerSec;
    const cpuRatio = of('gateway').serverUsPerReq / of('client').serverUsPerReq;
    // With a core per node: each mode's capacity is 1e6 / its busiest node's CPU µs per request.
    const projected = of('gateway').busiestNodeUsPerReq / of('client').busiestNodeUsPerReq;
    const directClean = rounds.get('client')!.every((r) => r.hops === 0);

    console.log('');
    for (const s of summary)
      console.log(
        row(
          s.mode,
          `${int(s.reqPerSec).padStart(6)} req/s`,
          `p50 ${fixed(s.p50, 2)} ms`,
          `p99 ${fixed(s.p99, 2)} ms`,
          `server CPU ${fixed(s.serverUsPerReq, 1)} µs/req (busiest node ${fixed(s.busiestNodeUsPerReq, 1)})`,
          `driver CPU ${fixed(s.driverUsPerReq, 1)} µs/req`,
          `hops/req ${fixed(s.hopsPerReq, 3)} (rounds: ${s.hops.map(int).join(', ')})`,
        ),
      );
    console.log(row('', `rounds req/s: ${summary.map((s) => `${s.mode} ${s.rounds.map(int).join('/')}`).join('; ')}`));
    console.log('');
    console.log(row('ratio req/s client / gateway', fixed(ratio, 3), `target ≥ ${TARGET}`, ratio >= TARGET ? 'PASS' : 'MISS'));
    console.log(row('ratio server CPU µs/req gateway / client', fixed(cpuRatio, 3)));
    console.log(
      row(
        'projected ratio with a core per node (busiest node CPU/req gateway / client)',
        fixed(projected, 3),
        `target ≥ ${TARGET}`,
        projected >= TARGET ? 'PASS (projection)' : 'MISS (projection)',
      ),
    );
    for (const m of ['owner', 'client-notoken'] as const)
      if (MODES.includes(m)) console.log(row(`ratio req/s ${m} / gateway`, fixed(of(m).reqPerSec / of('gateway').reqPerSec, 3)));
    console.log(
      row(
        'client sent straight to the primary',
        directClean ? 'yes: no router hop in any measured client round' : 'NO: routers forwarded during client rounds',
        `client stats ${JSON.stringify(stats)}`,
      ),
    );
    const correct = sum === incrOk;
    console.log(row('CORRECTNESS', `sum of ${int(KEYS)} counters = ${int(sum)}`, `2xx incr = ${int(incrOk)}`, correct ? 'PASS' : 'FAIL'));
    console.log(`${machineLine()}; ${fixed((now() - tStart) / 1000, 1)} s; the driver shares the 2 cores with the nodes`);
    const fig = (s: (typeof summary)[0]) => ({
      reqPerSec: Math.round(s.reqPerSec),
      p50Ms: Number(s.p50.toFixed(3)),
      p99Ms: Number(s.p99.toFixed(3)),
      serverCpuUsPerReq: Number(s.serverUsPerReq.toFixed(1)),
      busiestNodeCpuUsPerReq: Number(s.busiestNodeUsPerReq.toFixed(1)),
      driverCpuUsPerReq: Number(s.driverUsPerReq.toFixed(1)),
      hops: s.hops,
      rounds: s.rounds,
    });
    result = {
      bench: 'client-routing',
      nodes: 3,
      durability: DURABILITY,
      driverFetch: DRIVER_FETCH,
      concurrency: CONCURRENCY,
      keys: KEYS,
      roundSeconds: SECONDS,
      rounds: ROUNDS,
      ...Object.fromEntries(summary.map((s) => [s.mode, fig(s)])),
      ratio: Number(ratio.toFixed(3)),
      projectedRatio: Number(projected.toFixed(3)),
      target: TARGET,
      pass: ratio >= TARGET,
      directClean,
      correct,
    };
    check(correct, `counters hold ${sum}, but ${incrOk} increments were acknowledged`);
  } finally {
    await stopAll();
  }
  printResult(result!);
});
