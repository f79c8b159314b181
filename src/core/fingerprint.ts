import { hash } from 'node:crypto';

/**
 * The fingerprint of a message for idempotency: the command and its input, so a message id
 * (HTTP `idempotency-key`) reused with a different command or body is told apart from a retry.
 * SHA-256 of a canonical JSON (object keys sorted, `undefined` properties left out, as JSON
 * does), first 128 bits in base64url: about 1 µs for a small body, once per message with an id.
 * Keys in another order are the same body; `{"qty":2}` and `{"qty":"2"}` are not.
 *
 * Stored with the recorded reply (both journals), so it must never change for the same input:
 * the canonical form below is part of the journal format.
 *
 * @example
 *   messageFingerprint('add', { sku: 'tea', qty: 2 }) === messageFingerprint('add', { qty: 2, sku: 'tea' }); // true
 */
export function messageFingerprint(command: string, input: unknown): string {
  return hash('sha256', `${command}\u0000${canonical(input, 0)}`, 'base64url').slice(0, 22);
}

/** Canonical JSON of a value in the value domain; never throws on values outside it. */
function canonical(v: unknown, depth: number): string {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? String(v) : `#${String(v)}`;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'undefined':
      return 'null';
    case 'bigint':
      return `#${v}n`;
    case 'object':
      break;
    default:
      // Functions and symbols never arrive through the gateway or another node.
      return `#${typeof v}`;
  }
  if (v === null) return 'null';
  // Past the value domain's depth, or a cycle: a fingerprint need not look further.
  if (depth >= 64) return '#deep';
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) out += (i > 0 ? ',' : '') + canonical(v[i], depth + 1);
    return out + ']';
  }
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return `#${Object.prototype.toString.call(v)}`;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    if (o[k] === undefined) continue;
    out += (first ? '' : ',') + JSON.stringify(k) + ':' + canonical(o[k], depth + 1);
    first = false;
  }
  return out + '}';
}
