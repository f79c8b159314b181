/**
 * The load tester's scenarios: what share of requests write, over how many keys, and the HTTP
 * request of one operation. Adding a scenario is adding one object to `SCENARIOS`.
 *
 * Every scenario drives a counting kind of the demo app, so the `--check` mode can verify each
 * key afterwards (acknowledged ≤ final ≤ attempted): `counter` (`incr` writes, `get` reads) by
 * path, `visits` (src/demo/visits.ts: `hit`, `get`) by the signed `sid` cookie each session got on
 * its first response, and `room` (`say`, read back with `recent`) over WebSocket sessions.
 *
 * @example
 *   const ops = operations(SCENARIOS['write-heavy'], { keys: 1000, prefix: 'r1', seed: 7 });
 *   ops.next(); // { write: true, key: 'r1-k412' }
 */

/** One request of a run: an increment (write) or a read of one counter. */
export interface Operation {
  write: boolean;
  key: string;
}

/** What autocannon sends for one operation. */
export interface HttpRequest {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body: string;
}

export interface Scenario {
  name: string;
  /** One line for `--help` and the summary. */
  summary: string;
  /** Share of operations that are writes, 0..1; spread evenly (exactly 9 in every 10 for 0.9). */
  writeShare: number;
  /** Distinct keys when `--keys` is not given. */
  keys: number;
  /** The key count is the point of the scenario: `--keys` is refused. */
  fixedKeys?: boolean;
  /** The request of one operation; default `counterRequest`. */
  request?: (op: Operation) => HttpRequest;
  /**
   * How the key reaches the server (default 'path'). 'cookie': each key is a session whose `sid`
   * cookie is captured from its first response and sent from then on; each connection owns its
   * own sessions, so a session never has two requests in flight. 'websocket': each key is a room
   * with one WebSocket session (src/load/ws-load.ts), not an HTTP request.
   */
  transport?: 'path' | 'cookie' | 'websocket';
}

/**
 * POST /actors/counter/<key>/incr {"by":1}, or …/get with no body. Fresh headers every time:
 * autocannon writes Content-Length into the object it is given, and a shared one would carry an
 * increment's length into the next read.
 */
export function counterRequest(op: Operation): HttpRequest {
  return op.write
    ? { method: 'POST', path: `/actors/counter/${op.key}/incr`, headers: { 'content-type': 'application/json' }, body: '{"by":1}' }
    : { method: 'POST', path: `/actors/counter/${op.key}/get`, headers: { 'content-type': 'application/json', 'content-length': '0' }, body: '' };
}

/** The kind the sticky-cookie scenario drives (src/demo/visits.ts). */
export const VISITS_KIND = 'visits';

/** POST /sessions/visits/hit, or …/get: the session is the cookie, added by the load run. */
export function visitsRequest(op: Operation): HttpRequest {
  return { method: 'POST', path: `/sessions/${VISITS_KIND}/${op.write ? 'hit' : 'get'}`, headers: { 'content-length': '0' }, body: '' };
}

export const SCENARIOS: Readonly<Record<string, Scenario>> = {
  'write-heavy': { name: 'write-heavy', summary: '90% incr, 10% get over 1,000 keys', writeShare: 0.9, keys: 1_000 },
  'read-heavy': { name: 'read-heavy', summary: '10% incr, 90% get over 1,000 keys', writeShare: 0.1, keys: 1_000 },
  // Every key a session: most requests activate an actor that is not resident yet.
  'sessions-100k': {
    name: 'sessions-100k',
    summary: '90% incr, 10% get over 100,000 distinct sessions',
    writeShare: 0.9,
    keys: 100_000,
    fixedKeys: true,
  },
  // Every request queues behind the one actor: its mailbox and journal are the bottleneck.
  'hot-key': { name: 'hot-key', summary: '90% incr, 10% get on one key', writeShare: 0.9, keys: 1, fixedKeys: true },
  // What a browser does: the node finds the session in the signed cookie, not in the path.
  'sticky-cookie': {
    name: 'sticky-cookie',
    summary: "90% hit, 10% get over 1,000 cookie sessions of 'visits'",
    writeShare: 0.9,
    keys: 1_000,
    request: visitsRequest,
    transport: 'cookie',
  },
  // Every ask is also a push back to its socket, journaled with the event.
  websocket: {
    name: 'websocket',
    summary: "1,000 WebSocket sessions on 'room' (one room each): say, reply, push, ack",
    writeShare: 1,
    keys: 1_000,
    transport: 'websocket',
  },
};

export const SCENARIO_NAMES = Object.keys(SCENARIOS);

/** mulberry32: a small seeded generator, so a connection's sequence is reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The name of key `i` of a run: the run's prefix keeps its counters apart from earlier runs'. */
export function keyName(prefix: string, i: number): string {
  return `${prefix}-k${i}`;
}

/**
 * The keys connection `connection` of `connections` owns in a 'cookie' scenario: every
 * `connections`-th key from its own index (at least its own, when there are fewer keys than
 * connections). Owned keys keep one request in flight per session and its cookie in one place.
 */
export function ownedKeys(keys: number, connection: number, connections: number): number {
  return Math.max(1, Math.ceil((keys - connection) / connections));
}

/**
 * The endless operation sequence of one connection: writes spread evenly by `writeShare`
 * (operation i writes when ⌊(i+1)·share⌋ > ⌊i·share⌋), keys uniform at random from `seed`.
 * With `owner`, keys are drawn from that connection's own (`ownedKeys`): c, c + C, c + 2C …
 */
export function operations(
  scenario: Scenario,
  o: { keys: number; prefix: string; seed: number; owner?: { connection: number; connections: number } },
): { next(): Operation } {
  const random = seededRandom(o.seed);
  const share = scenario.writeShare;
  const owner = o.owner;
  const own = owner === undefined ? 0 : ownedKeys(o.keys, owner.connection, owner.connections);
  // Connections start at different points of the write/read pattern.
  let i = Math.floor(random() * 10);
  return {
    next() {
      const write = Math.floor((i + 1) * share) > Math.floor(i * share);
      i++;
      const index = owner === undefined ? Math.floor(random() * o.keys) : owner.connection + Math.floor(random() * own) * owner.connections;
      return { write, key: keyName(o.prefix, index) };
    },
  };
}
