import type { CommandSpec, InputOf, ReplyOf } from '../actors/define-actor.ts';
import { fromErrorRecord, invalidOption, troupeError, type ErrorCode, type TroupeError } from '../core/errors.ts';
import { checkValue } from '../core/value-domain.ts';
import { formatToken, mergeTokens, parseTokens, TOKEN_HEADER, type Token } from '../replication/token.ts';
import { backoffDelay, clientDefaults, isRetryable, meansStaleTable } from './retry-policy.ts';
import { parseRoutingTable, partitionOfKey, primaryOfPartition, type RoutingTable } from './routing-table.ts';
import { Session, type SessionOptions, type SessionRoute } from './ws-session.ts';

/*
 * Browser-safe on purpose: no `node:` import here or in what this file imports (errors, hash,
 * token, epoch); only the platform's `fetch`, `AbortSignal.timeout`, `crypto.randomUUID` and
 * `performance.now`, which Node 20 and browsers share.
 */

/** What the client needs of an actor definition: its kind and its commands' types. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ClientActor = { readonly kind: string; readonly commands: Record<string, CommandSpec<any, any, any, any>> };
type CommandName<D extends ClientActor> = keyof D['commands'] & string;

export interface ClientOptions {
  /** Base URLs of nodes ("http://10.0.0.1:8080"), as several DNS records would give; at least one. */
  nodes: readonly string[];
  /** Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** Headers sent with every request (an `authorization` for the app's auth hook). */
  headers?: Record<string, string>;
  /** One ask, all attempts together, ms (default 10 s). */
  timeoutMs?: number;
  /** One HTTP attempt, ms (default 6 s). */
  attemptTimeoutMs?: number;
  /** Attempts per ask, the first counted (default 6). */
  maxAttempts?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** A table older than this is refreshed in the background, ms (default 5 s). */
  refreshIntervalMs?: number;
  /** Read-your-writes token set to start from (a previous session's `client.token`). */
  token?: string;
  /** Tests: the clock, the sleep and the jitter source. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

export interface ClientAskOptions {
  /** This ask's deadline, ms (default: the client's `timeoutMs`). */
  timeoutMs?: number;
  /** Idempotency key; default a fresh UUID, so a retry after a lost reply is applied once. */
  id?: string;
}

/** Counters a test or a dashboard can read: how requests went. */
export interface ClientStats {
  requests: number;
  /** Sent to the node the table names as the key's primary. */
  direct: number;
  /** Sent elsewhere (primary unknown or unreachable): the gateway forwards it. */
  fallback: number;
  retries: number;
  refreshes: number;
}

const NUMERIC_OPTIONS = ['timeoutMs', 'attemptTimeoutMs', 'maxAttempts', 'backoffBaseMs', 'backoffMaxMs', 'refreshIntervalMs'] as const;

/**
 * Talks to a troupe cluster the way its own routers do: hashes each key to its partition, sends
 * the request straight to the partition's primary (no gateway hop), and follows the cluster as
 * it changes — a node that cannot be reached is skipped and the table refreshed, `ERR_NOT_PRIMARY`
 * or `ERR_NOT_OWNER` refreshes it, a 503-family refusal is retried with backoff on the next
 * node. Every ask carries an idempotency key, so a retry after a lost reply is applied once.
 * The client is one session for read-your-writes: it keeps the token set replies return and
 * sends each request the entry of its key's partition.
 *
 * @example
 *   import { TroupeClient } from 'troupe/client';
 *   import type { counter } from './app.ts';
 *   const client = new TroupeClient({ nodes: ['http://10.0.0.1:8080', 'http://10.0.0.2:8080'] });
 *   const { n } = await client.kind<typeof counter>('counter').ask('k1', 'incr', { by: 2 });
 */
export class TroupeClient {
  private readonly o: typeof clientDefaults & { nodes: string[]; headers: Record<string, string> };
  private readonly fetch: typeof fetch;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  private table: RoutingTable | undefined;
  private tableAt = -Infinity;
  private refreshing: Promise<RoutingTable> | undefined;
  private lastRefreshStart = -Infinity;
  /** Which node answers at each listed URL, learned from its own `/cluster/table` answer. */
  private readonly urlOf = new Map<number, string>();
  private readonly idOf = new Map<string, number>();
  /** URL → until when it is skipped (it failed at the network level). */
  private readonly downUntil = new Map<string, number>();
  private tokens = new Map<number, Token>();
  private nextNode = 0;
  private sid: string | undefined;
  /** The table probes of unidentified URLs still teaching which node answers where. */
  private probing: Promise<void> | undefined;
  private readonly sessionRoute: SessionRoute;
  private readonly counters: ClientStats = { requests: 0, direct: 0, fallback: 0, retries: 0, refreshes: 0 };

  constructor(options: ClientOptions) {
    if (!Array.isArray(options?.nodes) || options.nodes.length === 0)
      throw invalidOption('options.nodes', 'must be a non-empty array of base URLs ("http://host:port")', options?.nodes);
    const nodes = options.nodes.map((u) => {
      let url: URL;
      try {
        url = new URL(u);
      } catch {
        throw invalidOption('options.nodes', 'must hold base URLs ("http://host:port")', u);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalidOption('options.nodes', 'must hold http: or https: URLs', u);
      return url.href.replace(/\/+$/, '');
    });
    for (const name of NUMERIC_OPTIONS) {
      const v = options[name];
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw invalidOption(`options.${name}`, 'must be a positive integer', v);
    }
    const fetchFn = options.fetch ?? globalThis.fetch;
    if (typeof fetchFn !== 'function') throw invalidOption('options.fetch', 'must be a function (no global fetch here)', fetchFn);
    this.o = { ...clientDefaults, ...stripUndefined(options), nodes: [...new Set(nodes)], headers: { ...options.headers } };
    this.fetch = fetchFn;
    this.now = options.now ?? (() => performance.now());
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.random = options.random ?? Math.random;
    if (options.token !== undefined) this.tokens = new Map(parseTokens(options.token, 65_536, 'options.token'));
    this.sessionRoute = this.makeSessionRoute();
  }

  /**
   * One command to one actor, typed by its definition: `input` and the reply are the command's.
   * Rejects with a `TroupeError` (its `code` is the server's, or ERR_NODE_UNREACHABLE when no
   * node answered, ERR_ASK_TIMEOUT at the deadline).
   */
  ask<D extends ClientActor, K extends CommandName<D>>(
    actor: D,
    key: string,
    command: K,
    input?: InputOf<D['commands'][K]>,
    options?: ClientAskOptions,
  ): Promise<ReplyOf<D['commands'][K]>> {
    return this.askRaw(actor.kind, key, command, input, options) as Promise<ReplyOf<D['commands'][K]>>;
  }

  /** A kind's typed handle without importing its definition's value (`import type` is enough: browsers). */
  kind<D extends ClientActor>(kind: D['kind']): { ask<K extends CommandName<D>>(key: string, command: K, input?: InputOf<D['commands'][K]>, options?: ClientAskOptions): Promise<ReplyOf<D['commands'][K]>> } {
    return { ask: (key, command, input, options) => this.askRaw(kind, key, command, input, options) as never };
  }

  /**
   * A WebSocket session with one actor (docs/websocket.md): typed asks that survive reconnects,
   * and the actor's pushes in order, once. `key` is the actor's key for a kind keyed by the path;
   * leave it out for a cookie or address kind (the node picks the key; in Node the client keeps
   * the `sid` cookie of the first upgrade and sends it on every later one, so the key stays).
   * The socket goes to the key's primary when the routing table names a reachable one, else to
   * the next listed node (which forwards). Throws ERR_INVALID_OPTION for a bad key or option;
   * a refusal by the node (ERR_UNKNOWN_KIND, ERR_INVALID_KEY, ERR_FORBIDDEN …) ends the session
   * with that error (`opened()` and pending asks reject with it).
   *
   * @example
   *   import type { room } from './app.ts';
   *   const lobby = client.session<typeof room>('room', 'lobby');
   *   lobby.onPush((m) => render(m));
   *   const { n } = await lobby.ask('say', { from: 'ann', text: 'hi' });
   */
  session<D extends ClientActor>(actor: D | D['kind'], key?: string, options?: SessionOptions): Session<D> {
    const kind = typeof actor === 'string' ? actor : (actor as D | undefined)?.kind;
    if (key !== undefined && (typeof key !== 'string' || key.length === 0)) throw invalidOption('key', 'must be a non-empty string', key);
    return new Session<D>(this.sessionRoute, kind as string, key, options);
  }

  /** The `sid` cookie pair (`sid=…`) nodes issued this client, sent with every session upgrade (Node only: a browser keeps its own). */
  get sessionCookie(): string | undefined {
    return this.sid;
  }

  /** The read-your-writes token set of this session (every partition it touched); undefined before any. */
  get token(): string | undefined {
    return this.tokens.size === 0 ? undefined : [...this.tokens.values()].map(formatToken).join(',');
  }

  stats(): ClientStats {
    return { ...this.counters };
  }

  /** The table and the node URLs the client routes by (undefined before the first request or `refresh`). */
  snapshot(): { table: RoutingTable | undefined; urls: Record<number, string> } {
    return { table: this.table, urls: Object.fromEntries(this.urlOf) };
  }

  /** Fetches the table now (single flight: callers during a refresh share it). */
  refresh(): Promise<RoutingTable> {
    this.refreshing ??= this.fetchTable().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  async askRaw(kind: string, key: string, command: string, input: unknown, options: ClientAskOptions = {}): Promise<unknown> {
    if (typeof key !== 'string' || key.length === 0) throw invalidOption('key', 'must be a non-empty string', key);
    const timeoutMs = options.timeoutMs ?? this.o.timeoutMs;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1)
      throw invalidOption('options.timeoutMs', 'must be a positive integer', timeoutMs);
    const id = options.id ?? globalThis.crypto.randomUUID();
    // A BigInt or a cycle would throw a bare TypeError from JSON.stringify; a Date would arrive as a string.
    const problem = checkValue(input, `input of ${kind}/${key} '${command}'`);
    if (problem !== null) throw problem;
    const body = input === undefined ? undefined : JSON.stringify(input);
    const deadline = this.now() + timeoutMs;
    this.counters.requests++;
    let lastError: TroupeError | undefined;
    for (let attempt = 1; attempt <= this.o.maxAttempts; attempt++) {
      const table = await this.currentTable(deadline);
      const p = partitionOfKey(key, table.partitions);
      const target = this.pick(table, p);
      const remaining = Math.floor(deadline - this.now());
      if (remaining < 1) break;
      const outcome = await this.send(target, kind, key, command, body, id, p, Math.min(remaining, this.o.attemptTimeoutMs));
      if (outcome.ok) return outcome.value;
      lastError = outcome.error;
      if (!outcome.network && !isRetryable(outcome.error.code)) throw outcome.error;
      // A node that could not be reached, or cannot serve at all, is skipped for a while; any other
      // refusal goes back to the key's primary (after a refresh if it says the table is stale).
      if (outcome.network || outcome.error.code === 'ERR_NO_NODES' || outcome.error.code === 'ERR_STOPPED')
        this.downUntil.set(target, this.now() + this.o.downForMs);
      if (outcome.network || meansStaleTable(outcome.error.code)) await this.refreshAfter(this.now(), deadline);
      if (attempt === this.o.maxAttempts) break;
      this.counters.retries++;
      const wait = Math.min(backoffDelay(attempt, this.o.backoffBaseMs, this.o.backoffMaxMs, this.random()), deadline - this.now());
      if (wait > 0) await this.sleep(wait);
    }
    if (lastError === undefined)
      throw troupeError('ERR_ASK_TIMEOUT', `${kind}/${key} '${command}' got no answer within ${timeoutMs} ms`, { timeoutMs });
    throw lastError;
  }

  // ── Routing ─────────────────────────────────────────────────────────────────────────────

  /** What sessions use of the client: its routing, cookie, headers and backoff. */
  private makeSessionRoute(): SessionRoute {
    return {
      target: async (key) => {
        const now = this.now();
        let table: RoutingTable | undefined;
        try {
          table = await this.currentTable(now + this.o.attemptTimeoutMs);
        } catch {
          // No table (every node down for now, or not troupe's): any listed node forwards.
        }
        if (table !== undefined && key !== undefined) {
          const p = partitionOfKey(key, table.partitions);
          let direct = this.primaryUrl(table, p);
          // A socket lives long: worth waiting for the probes that may name the primary's URL.
          if (direct === undefined && this.probing !== undefined) {
            await this.withDeadline(this.probing, this.now() + this.o.attemptTimeoutMs).catch(() => undefined);
            direct = this.primaryUrl(table, p);
          }
          if (direct !== undefined) return direct;
        }
        return this.nextUsable();
      },
      failed: (url) => {
        const now = this.now();
        this.downUntil.set(url, now + this.o.downForMs);
        void this.refreshAfter(now, now + this.o.attemptTimeoutMs);
      },
      headers: () => (this.sid === undefined ? { ...this.o.headers } : { ...this.o.headers, cookie: this.sid }),
      keepCookies: (pairs) => {
        const sid = pairs.find((p) => p.startsWith('sid='));
        if (sid !== undefined) this.sid = sid;
      },
      random: () => this.random(),
      timeoutMs: this.o.timeoutMs,
      attemptTimeoutMs: this.o.attemptTimeoutMs,
      backoffBaseMs: this.o.backoffBaseMs,
      backoffMaxMs: this.o.backoffMaxMs,
    };
  }

  /** Partition `p`'s primary if its URL is known and reachable, else the next reachable node (it forwards). */
  private pick(table: RoutingTable, p: number): string {
    const direct = this.primaryUrl(table, p);
    if (direct !== undefined) {
      this.counters.direct++;
      return direct;
    }
    this.counters.fallback++;
    return this.nextUsable();
  }

  /** Partition `p`'s primary's URL when it is known and not skipped; a refresh starts when it is skipped. */
  private primaryUrl(table: RoutingTable, p: number): string | undefined {
    const now = this.now();
    const primary = primaryOfPartition(table, p);
    const direct = primary === undefined ? undefined : this.urlOf.get(primary);
    if (direct !== undefined && (this.downUntil.get(direct) ?? -Infinity) <= now) return direct;
    // The primary's URL is unknown (not among the listed nodes) or unreachable: a gateway forwards.
    if (direct !== undefined && table.members.includes(primary!)) void this.refreshAfter(now, now + this.o.attemptTimeoutMs);
    return undefined;
  }

  /** The next listed node not skipped, in turn; every node failed lately: try them anyway rather than give up before the deadline. */
  private nextUsable(): string {
    const now = this.now();
    const nodes = this.o.nodes;
    for (let i = 0; i < nodes.length; i++) {
      const url = nodes[(this.nextNode + i) % nodes.length]!;
      if ((this.downUntil.get(url) ?? -Infinity) <= now) {
        this.nextNode = (this.nextNode + i + 1) % nodes.length;
        return url;
      }
    }
    return nodes[this.nextNode++ % nodes.length]!;
  }

  private async currentTable(deadline: number): Promise<RoutingTable> {
    if (this.table === undefined) return await this.withDeadline(this.refresh(), deadline);
    if (this.now() - this.tableAt > this.o.refreshIntervalMs) void this.refresh().catch(() => undefined);
    return this.table;
  }

  /**
   * A refresh after a failure seen at `failedAt`, waited for until `deadline`. Refreshes start at
   * most every `minRefreshGapMs` (a dead node fails every request at once; one refresh serves them
   * all), and one that started after the failure already covers it.
   */
  private async refreshAfter(failedAt: number, deadline: number): Promise<void> {
    const wait = Math.min(this.lastRefreshStart + clientDefaults.minRefreshGapMs - this.now(), deadline - this.now());
    if (this.refreshing === undefined && wait > 0) await this.sleep(wait);
    if (this.refreshing === undefined && this.lastRefreshStart >= failedAt) return;
    await this.withDeadline(this.refresh(), deadline).catch(() => undefined);
  }

  /**
   * Asks the listed nodes for their table, each in turn from a rotating start, reachable ones
   * first; the first valid answer wins. Unidentified URLs are asked too (in parallel), so the
   * client learns which node answers where; their answers only fill the URL map.
   */
  private async fetchTable(): Promise<RoutingTable> {
    this.lastRefreshStart = this.now();
    this.counters.refreshes++;
    const now = this.now();
    const nodes = this.o.nodes;
    const order = nodes.map((_, i) => nodes[(this.nextNode + i) % nodes.length]!);
    order.sort((a, b) => Number((this.downUntil.get(a) ?? 0) > now) - Number((this.downUntil.get(b) ?? 0) > now));
    const unidentified = order.filter((u) => !this.idOf.has(u));
    const probes = new Map(unidentified.map((u) => [u, this.getTable(u)]));
    if (probes.size > 0) this.probing = Promise.allSettled(probes.values()).then(() => undefined);
    let problem = 'no node listed in options.nodes answered';
    for (const url of order) {
      try {
        const table = await (probes.get(url) ?? this.getTable(url));
        this.table = table;
        this.tableAt = this.now();
        // Let the other probes finish in the background; they only teach URLs.
        for (const [u, p] of probes) if (u !== url) void p.catch(() => undefined);
        return table;
      } catch (e) {
        problem = (e as Error).message;
      }
    }
    throw troupeError('ERR_NODE_UNREACHABLE', `cannot fetch the partition table from any of ${nodes.join(', ')}: ${problem}`, { nodes });
  }

  private async getTable(url: string): Promise<RoutingTable> {
    let res: Response;
    try {
      res = await this.fetch(`${url}/cluster/table`, { headers: this.o.headers, signal: AbortSignal.timeout(this.o.attemptTimeoutMs) });
    } catch (e) {
      this.downUntil.set(url, this.now() + this.o.downForMs);
      throw troupeError('ERR_NODE_UNREACHABLE', `${url}: ${(e as Error).message}`, { url });
    }
    const text = await res.text();
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      raw = undefined;
    }
    if (!res.ok) throw errorOf(raw, res.status, `${url}/cluster/table`);
    const table = parseRoutingTable(raw);
    if (typeof table === 'string') throw troupeError('ERR_NOT_FOUND', `${url}/cluster/table ${table} (is it a troupe node?)`, { url });
    // Another URL that used to answer as this node (a restart on a new address) no longer does.
    const previous = this.urlOf.get(table.node);
    if (previous !== undefined && previous !== url) this.idOf.delete(previous);
    this.urlOf.set(table.node, url);
    this.idOf.set(url, table.node);
    this.downUntil.delete(url);
    return table;
  }

  // ── One attempt ─────────────────────────────────────────────────────────────────────────

  private async send(
    url: string,
    kind: string,
    key: string,
    command: string,
    body: string | undefined,
    id: string,
    p: number,
    timeoutMs: number,
  ): Promise<{ ok: true; value: unknown } | { ok: false; network: boolean; error: TroupeError }> {
    const headers: Record<string, string> = { ...this.o.headers, 'idempotency-key': id, 'x-timeout-ms': String(timeoutMs) };
    if (body !== undefined) headers['content-type'] = 'application/json';
    // Only the key's partition's entry: the node reads no other, and the set may outgrow a header's limit.
    const token = this.tokens.get(p);
    if (token !== undefined) headers[TOKEN_HEADER] = formatToken(token);
    const path = `/actors/${encodeURIComponent(kind)}/${encodeURIComponent(key)}/${encodeURIComponent(command)}`;
    let res: Response;
    let text: string;
    try {
      // A little longer than the server's own deadline, so it answers ERR_ASK_TIMEOUT itself.
      res = await this.fetch(url + path, {
        method: 'POST',
        headers,
        ...(body !== undefined && { body }),
        signal: AbortSignal.timeout(timeoutMs + 500),
      });
      text = await res.text();
    } catch (e) {
      return { ok: false, network: true, error: troupeError('ERR_NODE_UNREACHABLE', `${url}: ${(e as Error).message}`, { url }) };
    }
    let value: unknown;
    try {
      value = text.length === 0 ? null : JSON.parse(text);
    } catch {
      return {
        ok: false,
        network: false,
        error: troupeError('ERR_MALFORMED_JSON', `${url}${path} answered ${res.status} with a body that is not JSON`, {
          url,
          status: res.status,
        }),
      };
    }
    if (!res.ok) return { ok: false, network: false, error: errorOf(value, res.status, url + path) };
    const replyToken = res.headers.get(TOKEN_HEADER);
    if (replyToken !== null) this.keepTokens(replyToken);
    return { ok: true, value };
  }

  /** Merges a reply's token set into the session's: concurrent replies never roll an entry back. */
  private keepTokens(raw: string): void {
    try {
      this.tokens = mergeTokens(this.tokens, parseTokens(raw, this.table?.partitions ?? 65_536));
    } catch {
      // A malformed header covers nothing: keep what the session had.
    }
  }

  private withDeadline<T>(work: Promise<T>, deadline: number): Promise<T> {
    const ms = Math.max(0, Math.floor(deadline - this.now()));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(troupeError('ERR_ASK_TIMEOUT', `no partition table within ${ms} ms`, { timeoutMs: ms })), ms);
    });
    return Promise.race([work, late]).finally(() => clearTimeout(timer));
  }
}

/** The server's `{ error: { code, message } }`, or an error naming the status when the body is not one. */
function errorOf(body: unknown, status: number, where: string): TroupeError {
  const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (e !== undefined && typeof e.code === 'string' && typeof e.message === 'string')
    return fromErrorRecord({ code: e.code as ErrorCode, message: e.message });
  return troupeError(status === 503 ? 'ERR_NODE_UNREACHABLE' : 'ERR_INTERNAL', `${where} answered HTTP ${status}`, { status });
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
