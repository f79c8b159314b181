/**
 * One load run: autocannon connections spread over one or more gateway URLs (as several DNS
 * records or load-balancer addresses would be), each connection sending its own seeded stream
 * of a scenario's operations for `seconds`. Reports req/s (2xx only), fractional-ms p50/p99,
 * non-2xx and errors; with a `WriteLedger`, records every increment sent and every one
 * acknowledged for the counter check.
 *
 * @example
 *   const report = await runLoad({ urls: ['http://127.0.0.1:8080'], scenario: SCENARIOS['write-heavy']!,
 *     seconds: 5, connections: 50, keys: 1000, prefix: 'run1' });
 *   report.reqPerSec; // e.g. 9500
 */
import autocannon from 'autocannon';
import type { IncomingHttpHeaders } from 'node:http';
import { systemClock, type Clock } from '../core/clock.ts';
import type { WriteLedger } from './counter-check.ts';
import { LatencyHistogram } from './latency-histogram.ts';
import { counterRequest, operations, type Operation, type Scenario } from './scenarios.ts';
import { SessionJar } from './session-jar.ts';

export interface LoadOptions {
  /** Gateway base URLs; connection c goes through urls[c % urls.length]. */
  urls: readonly string[];
  scenario: Scenario;
  seconds: number;
  connections: number;
  /** Distinct keys the operations spread over. */
  keys: number;
  /** Key prefix of this run (`keyName`): fresh keys, so a check starts from zero counts. */
  prefix: string;
  /** Seed of connection 0; connection c uses seed + c. Default 1. */
  seed?: number;
  /** Records increments sent and acknowledged (the replies are then parsed: costs client CPU). */
  ledger?: WriteLedger;
  /**
   * A 'cookie' scenario's sessions: each key's `sid` cookie, captured from its first response
   * (default: a jar of this run's own). Pass one to read the sessions back after the run.
   */
  jar?: SessionJar;
  /** Called about once a second with the last second's figures. */
  onProgress?: (p: Progress) => void;
  clock?: Clock;
}

export interface Progress {
  elapsedS: number;
  /** 2xx responses per second over the last interval. */
  reqPerSec: number;
  non2xx: number;
  errors: number;
}

export interface LoadReport {
  scenario: string;
  urls: readonly string[];
  connections: number;
  keys: number;
  /** Measured duration, s. */
  seconds: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** 2xx responses per second: a failed request is not throughput. */
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Responses by HTTP status, and errors by code (`ECONNREFUSED`, `ETIMEDOUT`…). */
  statuses: Record<string, number>;
  errorCodes: Record<string, number>;
}

/** How long autocannon waits for one response before it counts a timeout and reconnects, s. */
const RESPONSE_TIMEOUT_S = 10;

export async function runLoad(o: LoadOptions): Promise<LoadReport> {
  const clock = o.clock ?? systemClock;
  const jar = o.scenario.transport === 'cookie' ? (o.jar ?? new SessionJar()) : undefined;
  const latency = new LatencyHistogram();
  const statuses: Record<string, number> = {};
  const errorCodes: Record<string, number> = {};
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  let timeouts = 0;
  const seed = o.seed ?? 1;

  const started = clock.now();
  let last = { at: started, ok: 0, non2xx: 0, errors: 0 };
  let ticker: ReturnType<Clock['setTimeout']> | undefined;
  const tick = () => {
    const now = clock.now();
    o.onProgress?.({
      elapsedS: (now - started) / 1000,
      reqPerSec: ((ok - last.ok) * 1000) / Math.max(1, now - last.at),
      non2xx: non2xx - last.non2xx,
      errors: errors - last.errors,
    });
    last = { at: now, ok, non2xx, errors };
    ticker = clock.setTimeout(tick, 1000);
  };
  if (o.onProgress) ticker = clock.setTimeout(tick, 1000);

  const runs = o.urls.map((url, u) => {
    const conns = Array.from({ length: o.connections }, (_, c) => c).filter((c) => c % o.urls.length === u);
    if (conns.length === 0) return Promise.resolve();
    let next = 0;
    return new Promise<void>((resolve, reject) => {
      const instance = autocannon(
        {
          url,
          connections: conns.length,
          duration: o.seconds,
          timeout: RESPONSE_TIMEOUT_S,
          setupClient: (client) => {
            const connection = conns[next++ % conns.length]!;
            const ops = operations(o.scenario, {
              keys: o.keys,
              prefix: o.prefix,
              seed: seed + connection,
              ...(jar && { owner: { connection, connections: o.connections } }),
            });
            // One request in flight per connection (no pipelining), so the reply is always the last op's.
            let pending: { op: Operation; cookie: string | undefined } | undefined;
            const ledger = o.ledger;
            client.setRequests([
              {
                setupRequest: (req) => {
                  const op = ops.next();
                  const request = (o.scenario.request ?? counterRequest)(op);
                  const cookie = jar?.cookie(op.key);
                  if (cookie !== undefined) request.headers.cookie = cookie;
                  // A session's first write is recorded once its response names the session (its cookie):
                  // one whose response never came left an actor no later request can reach.
                  if (op.write && (jar === undefined || cookie !== undefined)) ledger?.attempt(op.key);
                  pending = { op, cookie };
                  return { ...req, ...request };
                },
                ...((ledger || jar) && {
                  onResponse: (status: number, body: string, _context: object, headers: IncomingHttpHeaders | undefined) => {
                    const p = pending;
                    pending = undefined;
                    if (p === undefined) return;
                    if (jar && p.cookie === undefined) {
                      if (jar.capture(p.op.key, headers ?? {}) !== undefined && p.op.write) ledger?.attempt(p.op.key);
                    } else if (jar && sidSet(headers)) {
                      // A node that issues a new session to a request that carried one would split a session in two.
                      errors++;
                      errorCodes['a new sid for a session that had one'] = (errorCodes['a new sid for a session that had one'] ?? 0) + 1;
                    }
                    if (ledger === undefined || !p.op.write || status < 200 || status > 299) return;
                    const n = countOf(body);
                    if (n !== undefined) ledger.acknowledge(p.op.key, n);
                  },
                }),
              },
            ]);
          },
        },
        (err: unknown) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve()),
      );
      instance.on('response', (_client, status, _bytes, ms) => {
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (status >= 200 && status < 300) {
          ok++;
          latency.record(ms);
        } else non2xx++;
      });
      instance.on('reqError', (e: unknown) => {
        errors++;
        const code = (e as { code?: string }).code ?? (e as Error).message ?? 'error';
        if (code === 'request timed out') timeouts++;
        errorCodes[code] = (errorCodes[code] ?? 0) + 1;
      });
    });
  });
  try {
    await Promise.all(runs);
  } finally {
    if (ticker !== undefined) clock.clearTimeout(ticker);
  }
  const seconds = (clock.now() - started) / 1000;
  return {
    scenario: o.scenario.name,
    urls: o.urls,
    connections: o.connections,
    keys: o.keys,
    seconds,
    ok,
    non2xx,
    errors,
    timeouts,
    reqPerSec: ok / seconds,
    p50Ms: latency.percentile(50),
    p99Ms: latency.percentile(99),
    statuses,
    errorCodes,
  };
}

function sidSet(headers: IncomingHttpHeaders | undefined): boolean {
  return headers !== undefined && Object.keys(headers).some((h) => h.toLowerCase() === 'set-cookie');
}

/** The `n` of a counter's reply `{"n":5}`; undefined for anything else. */
function countOf(body: string): number | undefined {
  try {
    const n = (JSON.parse(body) as { n?: unknown }).n;
    return typeof n === 'number' && Number.isSafeInteger(n) ? n : undefined;
  } catch {
    return undefined;
  }
}
