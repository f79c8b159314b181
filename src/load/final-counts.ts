/**
 * Reads every key's counter back after a run (`POST /actors/counter/<key>/get`, or another
 * `ReadTarget`: a cookie session's `visits`, a room's `recent`), spread over the gateway URLs
 * with a bounded number of requests in flight; keys that fail (a node still failing over, a
 * refused connection) are retried until the deadline, then named with their last error.
 */
import { Agent, request } from 'node:http';
import { systemClock, type Clock } from '../core/clock.ts';
import type { SessionJar } from './session-jar.ts';

/** Where one key's count is read and which field of the reply holds it. */
export interface ReadTarget {
  path(key: string): string;
  /** Extra request headers (a session's cookie). */
  headers?(key: string): Record<string, string>;
  /** The count in the JSON reply; undefined when it holds none. */
  countOf(reply: Record<string, unknown>): number | undefined;
}

const numberField = (name: string) => (reply: Record<string, unknown>) => (typeof reply[name] === 'number' ? (reply[name] as number) : undefined);

/** The demo app's `counter`: `POST /actors/counter/<key>/get` → `{ n }`. */
export const counterTarget: ReadTarget = { path: (key) => `/actors/counter/${encodeURIComponent(key)}/get`, countOf: numberField('n') };

/**
 * The `visits` cookie sessions of a sticky-cookie run: `POST /sessions/visits/get` with each key's
 * cookie from `jar` (a key without one is sent none and gets a fresh session: count 0).
 */
export function visitsTarget(jar: SessionJar): ReadTarget {
  return {
    path: () => '/sessions/visits/get',
    headers: (key): Record<string, string> => {
      const cookie = jar.cookie(key);
      return cookie === undefined ? {} : { cookie };
    },
    countOf: numberField('n'),
  };
}

/** A websocket run's rooms: `POST /actors/room/<key>/recent` → `{ count }`, the messages said. */
export const roomTarget: ReadTarget = { path: (key) => `/actors/room/${encodeURIComponent(key)}/recent`, countOf: numberField('count') };

export interface ReadOptions {
  /** Requests in flight at once; default 32. */
  concurrency?: number;
  /** Give up on the keys not read by then, ms; default 30,000. */
  deadlineMs?: number;
  /** What to read; default `counterTarget`. */
  target?: ReadTarget;
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
  const target = o.target ?? counterTarget;
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
            counts.set(key, await readCount(agent, url, key, target));
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

function readCount(agent: Agent, url: string, key: string, target: ReadTarget): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${target.path(key)}`, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': 0, ...target.headers?.(key) },
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
          const json = JSON.parse(text) as Record<string, unknown> & { error?: { code?: string } };
          const n = res.statusCode === 200 ? target.countOf(json) : undefined;
          if (n !== undefined) return resolve(n);
          reject(new Error(json.error?.code ?? `HTTP ${res.statusCode}`));
        } catch {
          reject(new Error(`HTTP ${res.statusCode}: not JSON`));
        }
      });
    });
    req.end();
  });
}
