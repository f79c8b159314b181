/**
 * The one value domain: what a handler may return, emit, keep as state or send to another actor.
 * It is what JSON (the gateway) and msgpack (the journal, the transport) both carry unchanged,
 * and the structured clone of a worker's port carries too:
 *
 *   null, true/false, finite numbers, well-formed strings,
 *   arrays of values, plain objects (prototype Object.prototype or null) of values.
 *
 * Refused, with the path of the first offender (`$.items[2].price is a BigInt`): BigInt, functions,
 * symbols, NaN and ±Infinity (JSON turns them into null), `undefined` inside an array and array
 * holes (JSON turns them into null), strings with a lone surrogate (UTF-8 cannot carry them),
 * Dates, Maps, Sets, RegExps, typed arrays, Buffers, errors and other class instances, an own key
 * named `__proto__` (msgpack renames it), cycles, and nesting deeper than `maxDepth`.
 *
 * Accepted on purpose:
 * - `undefined` as the whole value: "no value" (a handler that returns nothing answers `null`).
 * - an object property whose value is `undefined`: it counts as absent, as in JSON and in
 *   TypeScript's optional properties (`{ note: undefined }` reads back as `{}` over HTTP).
 * - the same object twice in a tree (not a cycle): it is written twice.
 * Only enumerable string keys travel; symbol keys and non-enumerable properties are not looked
 * at, as JSON.stringify does not look at them (inherited enumerable keys, which only a polluted
 * Object.prototype has, are checked too: stricter, never looser).
 *
 * The walk is hand-written and allocates nothing on success: it runs on every reply, event and
 * state, so the common case (a small plain object) costs a few property reads.
 *
 * @example
 *   checkValue({ n: 1 }, "reply of counter/k1 'incr'");       // → null
 *   checkValue({ n: 1n }, "reply of counter/k1 'incr'")?.message;
 *   // → "reply of counter/k1 'incr' is not serializable: $.n is a BigInt; values must be ..."
 */
import { troupeError, type TroupeError } from './errors.ts';

/** Bounds of one check; both optional (see valueDomainDefaults). */
export interface ValueLimits {
  /** Deepest nesting of arrays and objects; the top-level value is depth 1. */
  maxDepth?: number;
  /**
   * Largest size, estimated as UTF-16 code units of strings and keys plus 8 per number and 2 per
   * container (a lower bound on the JSON size for ASCII text). Unbounded by default.
   */
  maxBytes?: number;
}

export const valueDomainDefaults = {
  maxDepth: 64, // levels: far beyond any sane document, well short of a stack overflow
  maxBytes: Number.POSITIVE_INFINITY, // estimated bytes; the transport bounds frames itself (8 MiB)
};

// String#isWellFormed is ES2024 (Node 20 has it; the project's TypeScript lib is older).
const isWellFormed = (s: string): boolean => (s as string & { isWellFormed(): boolean }).isWellFormed();

const DOMAIN = 'values must be null, booleans, finite numbers, strings, arrays or plain objects';

/** Why a value is refused and where; the path is filled in (leaf first) as the walk unwinds. */
export class ValueOffence {
  readonly path: Array<string | number> = [];
  /** For a cycle: the depth of the ancestor it leads back to. */
  cycleTo = -1;
  constructor(readonly reason: string) {}
}

/**
 * Checks `value` against the value domain. Returns null when it is inside, else an
 * `ERR_NOT_SERIALIZABLE` error whose message starts with `what` (say `reply of counter/k1
 * 'incr'`, `event of cart/c1 'add'`, `input of tell to cart/x 'add'`) and names the path.
 * Never throws, even for values whose getters or proxies throw.
 */
export function checkValue(value: unknown, what: string, limits?: ValueLimits): TroupeError | null {
  const offence = findOffence(value, limits);
  return offence === null ? null : notSerializable(what, offence);
}

/**
 * The walk behind `checkValue`, for hot paths: null when `value` is inside the domain, without
 * building the caller's description (`notSerializable` builds the error only for an offence).
 *
 * @example
 *   const offence = findOffence(event);
 *   if (offence !== null) throw notSerializable(`event of ${kind}/${key}`, offence);
 */
export function findOffence(value: unknown, limits?: ValueLimits): ValueOffence | null {
  // The common cases first, without entering the walk.
  if (value === undefined || value === null) return null;
  const t = typeof value;
  if (t === 'boolean') return null;
  if (t === 'number' && Number.isFinite(value)) return null;
  if (t === 'string' && isWellFormed(value as string)) return null;
  if (t === 'object' && limits === undefined) {
    try {
      if (isFlatPlainObject(value as object)) return null;
    } catch {
      // a getter that throws: the walk reads it again and names it
    }
  }
  const maxDepth = limits?.maxDepth ?? valueDomainDefaults.maxDepth;
  const maxBytes = limits?.maxBytes ?? valueDomainDefaults.maxBytes;
  // One walk object per thread, reused: a check allocates nothing unless it fails. A getter
  // that checks a value while being checked gets a walk of its own.
  const walk = idleWalk ?? new Walk();
  idleWalk = null;
  let offence: ValueOffence | null;
  try {
    offence = walk.start(value, maxDepth, maxBytes);
  } catch (e) {
    walk.release();
    offence = new ValueOffence(`a value whose reading threw (${e instanceof Error ? e.message : String(e)})`);
  }
  idleWalk = walk;
  return offence;
}

/** The ERR_NOT_SERIALIZABLE error for an offence found in the value `what` names. */
export function notSerializable(what: string, offence: ValueOffence): TroupeError {
  const segments = offence.path.slice().reverse();
  const path = formatPath(segments);
  const reason = offence.cycleTo >= 0 ? `${offence.reason} to ${formatPath(segments.slice(0, offence.cycleTo))}` : offence.reason;
  return troupeError('ERR_NOT_SERIALIZABLE', `${what} is not serializable: ${path} is ${reason}; ${DOMAIN}`, { what, path, reason });
}

let idleWalk: Walk | null = null;

/**
 * The shape of most events, states and replies — `{ n: 3 }`, `{ sku: 'tea', qty: 2 }` — checked
 * in one loop without the walk: a plain object whose values are all null, booleans, finite
 * numbers or well-formed strings. False sends it to the walk, which decides (and names why).
 */
function isFlatPlainObject(o: object): boolean {
  const proto: unknown = Object.getPrototypeOf(o);
  if ((proto !== Object.prototype && proto !== null) || Array.isArray(o)) return false;
  for (const k in o) {
    const v: unknown = (o as Record<string, unknown>)[k];
    switch (typeof v) {
      case 'number':
        if (v - v !== 0) return false; // NaN, ±Infinity
        break;
      case 'string':
        if (!isWellFormed(v)) return false;
        break;
      case 'boolean':
      case 'undefined':
        break;
      default:
        if (v !== null) return false;
    }
    if (k === '__proto__') return false;
  }
  return true;
}

/** `checkValue` that throws its error: for call sites that refuse by throwing (`ctx.emit`, `ctx.tell`). */
export function assertValue(value: unknown, what: string, limits?: ValueLimits): void {
  const error = checkValue(value, what, limits);
  if (error !== null) throw error;
}

class Walk {
  /**
   * The objects on the path from the root to the current one: a repeat is a cycle. Entries are
   * cleared on the way out (not by truncating: resizing the array would cost more than the walk).
   */
  private readonly ancestors: Array<object | null> = [];
  private bytes = 0;
  private maxDepth = 0;
  private maxBytes = 0;

  start(v: unknown, maxDepth: number, maxBytes: number): ValueOffence | null {
    this.maxDepth = maxDepth;
    this.maxBytes = maxBytes;
    this.bytes = 0;
    return this.value(v, 0);
  }

  /** Lets go of the values of a walk that threw (it outlives the check). */
  release(): void {
    this.ancestors.fill(null);
  }

  value(v: unknown, depth: number): ValueOffence | null {
    switch (typeof v) {
      case 'string':
        this.bytes += v.length + 2;
        if (!isWellFormed(v)) return new ValueOffence('a string with a lone surrogate');
        return this.bytes > this.maxBytes ? this.tooLarge() : null;
      case 'number':
        this.bytes += 8;
        if (Number.isFinite(v)) return this.bytes > this.maxBytes ? this.tooLarge() : null;
        return new ValueOffence(Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity');
      case 'boolean':
        this.bytes += 4;
        return null;
      case 'bigint':
        return new ValueOffence('a BigInt');
      case 'undefined':
        return new ValueOffence('undefined');
      case 'function':
        return new ValueOffence('a function');
      case 'symbol':
        return new ValueOffence('a symbol');
      default:
        if (v === null) {
          this.bytes += 4;
          return null;
        }
        return this.container(v as object, depth);
    }
  }

  private container(o: object, depth: number): ValueOffence | null {
    const ancestors = this.ancestors;
    for (let i = 0; i < depth; i++) {
      if (ancestors[i] === o) {
        const offence = new ValueOffence('a circular reference');
        offence.cycleTo = i;
        return offence;
      }
    }
    if (depth >= this.maxDepth) return new ValueOffence(`nested deeper than ${this.maxDepth} levels`);
    ancestors[depth] = o;
    this.bytes += 2;
    let offence: ValueOffence | null = null;
    if (Array.isArray(o)) {
      for (let i = 0; i < o.length; i++) {
        const item: unknown = o[i];
        offence =
          item === undefined
            ? new ValueOffence(i in o ? 'undefined (inside an array)' : 'a hole (sparse array)')
            : this.value(item, depth + 1);
        if (offence !== null) {
          offence.path.push(i);
          break;
        }
      }
    } else {
      const proto: unknown = Object.getPrototypeOf(o);
      if (proto !== Object.prototype && proto !== null) {
        ancestors[depth] = null;
        return new ValueOffence(describeInstance(o));
      }
      // for-in, not Object.keys: no array per object. Only a polluted Object.prototype adds
      // inherited keys, and checking those too is merely stricter.
      for (const k in o) {
        const item: unknown = (o as Record<string, unknown>)[k];
        if (item === undefined) continue; // absent, as in JSON
        this.bytes += k.length + 1;
        offence = k === '__proto__' ? new ValueOffence("a key named '__proto__' (msgpack renames it)") : this.value(item, depth + 1);
        if (offence !== null) {
          offence.path.push(k);
          break;
        }
      }
    }
    ancestors[depth] = null;
    return offence;
  }

  private tooLarge(): ValueOffence {
    return new ValueOffence(`where the value grows past maxBytes ${this.maxBytes} (estimated)`);
  }
}

function describeInstance(o: object): string {
  if (o instanceof Date) return 'a Date (send date.toISOString() or a number of ms)';
  if (o instanceof Map) return 'a Map (send an object or an array of entries)';
  if (o instanceof Set) return 'a Set (send an array)';
  if (ArrayBuffer.isView(o) || o instanceof ArrayBuffer) return 'binary data (send base64 text)';
  const name = (o as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name.length > 0 ? `an instance of ${name}` : 'an object with a prototype other than Object';
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `$`, `$.a.b[2]`, `$["odd key"]`, from root-first segments. */
function formatPath(path: ReadonlyArray<string | number>): string {
  let out = '$';
  for (const seg of path) {
    out += typeof seg === 'number' ? `[${seg}]` : IDENTIFIER.test(seg) ? `.${seg}` : `[${JSON.stringify(seg)}]`;
  }
  return out;
}
