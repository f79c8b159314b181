/**
 * Byte caps on what enters or leaves an actor. A thread's `resourceLimits` bound its V8 heap, not
 * the memory behind Buffers, typed arrays and the copies a MessagePort makes, so a handler that
 * sends (or a caller that asks with) hundreds of megabytes would grow the process until the OS
 * kills it, every other actor with it. These caps refuse such a message before it is queued or
 * copied, with a named error, and the node keeps serving everyone else.
 *
 * Sizes are an upper bound of what the message costs to carry, cheap to compute:
 *
 *   string              its UTF-8 bytes (what msgpack, JSON and the journal write); one shorter
 *                       than 64 code units counts 3 per unit, UTF-8's most, without scanning it
 *   Buffer, typed array its byteLength;  ArrayBuffer: byteLength
 *   number, bigint      8;   boolean, null, undefined: 1
 *   array, object       8 (the container) + its items; an object's keys count as strings
 *   Map, Set            8 + their entries;  Date: 8;  other values: 8
 *
 * A value referenced twice counts twice (JSON and msgpack write it twice). The walk stops as soon
 * as the running total passes the limit it is given, so measuring a 200 MB value against a 1 MiB
 * cap reads about 1 MiB of it, and every container counts at least 8 bytes, so a cyclic value
 * ends the walk too (at `limit / 8` containers).
 *
 * @example
 *   messageBytes({ by: 1 }, messageLimits.maxMessageBytes);            // → 22 (8 + 3·2 + 8)
 *   messageBytes('x'.repeat(2 << 20), 1 << 20) > 1 << 20;              // → true (stopped early)
 */
import { invalidOption, troupeError, type TroupeError } from '../core/errors.ts';

export const messageLimits = {
  // bytes per message (an ask's or tell's input, a reply, an event): the transport's frames stop
  // at 8 MiB after authentication, and the gateway's bodies at 64 KiB; 1 MiB leaves room for both.
  maxMessageBytes: 1024 * 1024,
  // bytes queued per actor mailbox (sizes as above): 16 full-size messages, or ~100k small ones.
  maxMailboxBytes: 16 * 1024 * 1024,
};

/** Bytes a container (array, object, Map, Set) counts for itself, whatever it holds. */
const CONTAINER_BYTES = 8;
/** Nesting beyond this counts as over any limit: no message of the value domain nests that deep (64). */
const MAX_DEPTH = 256;

/**
 * `value`'s size as described above, or some number above `limit` once it is known to be larger.
 * Never throws: a getter or proxy that throws counts as over the limit.
 */
export function messageBytes(value: unknown, limit = Number.POSITIVE_INFINITY): number {
  // The common cases without entering the walk.
  switch (typeof value) {
    case 'string':
      return stringBytes(value, limit);
    case 'number':
    case 'bigint':
      return 8;
    case 'boolean':
    case 'undefined':
      return 1;
    case 'object':
      if (value === null) return 1;
      break;
    default:
      return CONTAINER_BYTES;
  }
  try {
    return sizeOf(value, limit, 0, 0);
  } catch {
    return limit + 1;
  }
}

/** Strings shorter than this count 3 bytes per UTF-16 code unit (an upper bound of UTF-8) instead of being scanned. */
const SHORT_STRING = 64;

/** UTF-8 bytes; a string longer than what is left is over without scanning it (UTF-8 takes at least one byte per code unit). */
function stringBytes(s: string, limit: number): number {
  if (s.length < SHORT_STRING) return 3 * s.length;
  if (s.length > limit) return s.length;
  return Buffer.byteLength(s, 'utf8');
}

/** Adds `v`'s size to `total`; returns as soon as the total passes `limit`. */
function sizeOf(v: unknown, limit: number, total: number, depth: number): number {
  switch (typeof v) {
    case 'string':
      return total + stringBytes(v, limit - total);
    case 'number':
    case 'bigint':
      return total + 8;
    case 'boolean':
    case 'undefined':
      return total + 1;
    case 'object':
      break;
    default:
      return total + CONTAINER_BYTES;
  }
  if (v === null) return total + 1;
  if (depth >= MAX_DEPTH) return limit + 1;
  total += CONTAINER_BYTES;
  if (total > limit) return total;
  // Plain objects first: nearly every message is one.
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto === Object.prototype || proto === null) return objectSize(v, limit, total, depth);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      total = sizeOf(v[i], limit, total, depth + 1);
      if (total > limit) return total;
    }
    return total;
  }
  // A Buffer or typed array is its bytes, not a container of them.
  if (ArrayBuffer.isView(v)) return total - CONTAINER_BYTES + v.byteLength;
  if (v instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && v instanceof SharedArrayBuffer))
    return total - CONTAINER_BYTES + v.byteLength;
  if (v instanceof Map) {
    for (const [k, item] of v) {
      total = sizeOf(item, limit, sizeOf(k, limit, total, depth + 1), depth + 1);
      if (total > limit) return total;
    }
    return total;
  }
  if (v instanceof Set) {
    for (const item of v) {
      total = sizeOf(item, limit, total, depth + 1);
      if (total > limit) return total;
    }
    return total;
  }
  if (v instanceof Date) return total;
  return objectSize(v, limit, total, depth);
}

/** An object's enumerable string keys and their values (`total` already counts the object itself). */
function objectSize(o: object, limit: number, total: number, depth: number): number {
  for (const k in o) {
    total += stringBytes(k, limit - total);
    total = sizeOf((o as Record<string, unknown>)[k], limit, total, depth + 1);
    if (total > limit) return total;
  }
  return total;
}

/**
 * The error for a message over `options.maxMessageBytes` that a sender offered (an ask's or a
 * tell's input): ERR_BODY_TOO_LARGE, the gateway's 413, the nearest code the catalog has for "a
 * message too large" (see docs/actors-limits.md).
 */
export function messageTooLarge(what: string, bytes: number, limit: number): TroupeError {
  // The walk stops once past the limit: `bytes` is what it had counted by then.
  return troupeError('ERR_BODY_TOO_LARGE', `${what} is larger than maxMessageBytes ${limit} (at least ${bytes} bytes)`, {
    what,
    limit,
    option: 'maxMessageBytes',
  });
}

/**
 * The error for a value a handler produced (a reply, an event, a push, the input of its
 * `ctx.tell`/`ctx.ask`) over the cap: ERR_NOT_SERIALIZABLE, like any other value the node cannot
 * carry, so the message fails alone, its events undone, without restarting the actor.
 */
export function valueTooLarge(what: string, bytes: number, limit: number): TroupeError {
  return troupeError(
    'ERR_NOT_SERIALIZABLE',
    `${what} is larger than maxMessageBytes ${limit} (at least ${bytes} bytes); send less, or a reference to it`,
    {
      what,
      limit,
      option: 'maxMessageBytes',
    },
  );
}

/** Checks a byte cap option (`options.maxMessageBytes` …): a positive safe integer, or Infinity for none. */
export function checkByteCap(name: string, v: unknown): number {
  if (v === Number.POSITIVE_INFINITY) return v;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1)
    throw invalidOption(name, 'must be a positive integer (bytes) or Infinity', v);
  return v;
}
