/**
 * Reads every key's counter back after a run (`POST /actors/counter/<key>/get`), spread over the
 * gateway URLs with a bounded number of requests in flight; keys that fail (a node still
 * failing over, a refused connection) are retried until the deadline, then named with their
 * last error.
 */
import { Agent, request } from 'node:http';
import { systemClock, type Clock } from '../core/clock.ts';

export interface ReadOptions {
  /** Requests in flight at once; default 32. */
  concurrency?: number;
  /** Give up on the keys not read by then, ms; default 30,000. */
  deadlineMs?: number;
  clock?: Clock;
}

/** Pause between passes over the keys not read yet, ms: lets a failover finish. */
const RETRY_PAUSE_MS = 200;
/** One read's own limit, ms: longer than the gateway's default ask timeout (5 s). */
const READ_TIMEOUT_MS = 7_000;

export interface FinalCounts {
  counts: Map<string, number>;
  /** Keys never read, with their last error. */
  unread: Map<string, string>;
}

export async function readFinalCounts(urls: readonly string[], keys: readonly string[], o: ReadOptions = {}): Promise<FinalCounts> {
  const clock = o.clock ?? systemClock;
  const concurrency = o.concurrency ?? 32;
  const deadline = clock.now() + (o.deadlineMs ?? 30_000);
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const counts = new Map<string, number>();
  const unread = new Map<string, string>();
  try {
    let todo = [...keys];
    for (let pass = 0; todo.length > 0; pass++) {
      let i = 0;
      const worker = async (w: number) => {
        while (i < todo.length) {
          const key = todo[i++]!;
          // Each pass starts on another gateway, so one unreachable node does not hold a key back.
          const url = urls[(w + pass) % urls.length]!;
          try {
            counts.set(key, await readCount(agent, url, key));
            unread.delete(key);
          } catch (e) {
            unread.set(key, (e as Error).message);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, (_, w) => worker(w)));
      todo = todo.filter((k) => !counts.has(k));
      if (todo.length === 0 || clock.now() + RETRY_PAUSE_MS >= deadline) break;
      await new Promise<void>((r) => clock.setTimeout(r, RETRY_PAUSE_MS));
    }
  } finally {
    agent.destroy();
  }
  return { counts, unread };
}

function readCount(agent: Agent, url: string, key: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/actors/counter/${encodeURIComponent(key)}/get`, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': 0 },
    });
    req.setTimeout(READ_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${READ_TIMEOUT_MS} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code ?? e.message)));
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code ?? e.message)));
      res.on('end', () => {
        try {
          const json = JSON.parse(text) as { n?: unknown; error?: { code?: string } };
          if (res.statusCode === 200 && typeof json.n === 'number') return resolve(json.n);
          reject(new Error(json.error?.code ?? `HTTP ${res.statusCode}`));
        } catch {
          reject(new Error(`HTTP ${res.statusCode}: not JSON`));
        }
      });
    });
    req.end();
  });
}
