/**
 * The load tester's scenarios: what share of requests write, over how many keys, and the HTTP
 * request of one operation. Adding a scenario is adding one object to `SCENARIOS`.
 *
 * Every scenario drives the demo app's `counter` kind (`incr` writes, `get` reads), so the
 * `--check` mode can verify each key afterwards (acknowledged ≤ final ≤ attempted).
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
 * The endless operation sequence of one connection: writes spread evenly by `writeShare`
 * (operation i writes when ⌊(i+1)·share⌋ > ⌊i·share⌋), keys uniform at random from `seed`.
 */
export function operations(scenario: Scenario, o: { keys: number; prefix: string; seed: number }): { next(): Operation } {
  const random = seededRandom(o.seed);
  const share = scenario.writeShare;
  // Connections start at different points of the write/read pattern.
  let i = Math.floor(random() * 10);
  return {
    next() {
      const write = Math.floor((i + 1) * share) > Math.floor(i * share);
      i++;
      return { write, key: keyName(o.prefix, Math.floor(random() * o.keys)) };
    },
  };
}
