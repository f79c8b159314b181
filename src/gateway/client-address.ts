/**
 * The client's IP address, as the key of an `address` session and as the authorization hook's
 * `address`. X-Forwarded-For is believed only when the connection comes from a trusted proxy
 * (named addresses, no ranges; none by default): anyone else could write any address into it
 * and so step into another client's session.
 *
 * The header is read right to left, the way proxies append to it: every hop that is itself a
 * trusted proxy is skipped, and the first one that is not is the client.
 *
 * @example
 *   clientAddress('10.0.0.5', '203.0.113.7, 10.0.0.4', new Set(['10.0.0.5', '10.0.0.4']))  // '203.0.113.7'
 *   clientAddress('198.51.100.9', '203.0.113.7', new Set(['10.0.0.5']))                    // '198.51.100.9'
 */
import { isIP } from 'node:net';
import { invalidOption, troupeError } from '../core/errors.ts';

export function clientAddress(socketAddress: string | undefined, forwardedFor: string | string[] | undefined, trusted: ReadonlySet<string>): string {
  const peer = normalizeAddress(socketAddress ?? '');
  if (forwardedFor === undefined || !trusted.has(peer)) return peer;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',').map((h) => h.trim());
  let client = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (isIP(hop) === 0)
      throw troupeError('ERR_INVALID_INPUT', `header x-forwarded-for from trusted proxy ${peer} must list IP addresses (got ${JSON.stringify(hop.slice(0, 64))})`);
    client = normalizeAddress(hop);
    if (!trusted.has(client)) break;
  }
  return client;
}

/** `::ffff:127.0.0.1` (an IPv4 client on a dual-stack socket) is the same client as `127.0.0.1`. */
export function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** Checks `options.http.trustedProxies`: IP addresses. */
export function checkTrustedProxies(v: unknown): ReadonlySet<string> {
  const name = 'options.http.trustedProxies';
  if (!Array.isArray(v)) throw invalidOption(name, 'must be an array of IP addresses', v);
  for (const a of v) if (typeof a !== 'string' || isIP(a) === 0) throw invalidOption(name, 'must hold IP addresses (no host names or ranges)', a);
  return new Set((v as string[]).map(normalizeAddress));
}
