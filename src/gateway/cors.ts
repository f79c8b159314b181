/**
 * CORS for the actor routes: which browser origins may call them from script. Off by default
 * (no origin listed: browsers keep other sites' scripts out). A listed origin is echoed with
 * credentials allowed, so its pages can carry the `sid` cookie; `*` allows every origin but
 * without credentials, since echoing any origin with cookies would hand sessions to every site.
 */
import { invalidOption } from '../core/errors.ts';
import { TOKEN_HEADER } from '../replication/token.ts';

export const CORS_MAX_AGE_S = 600; // s a browser may cache a preflight answer

/** Headers a request may carry: JSON bodies, idempotency keys, ask timeouts, read-your-writes tokens. */
const ALLOWED_HEADERS = `content-type, idempotency-key, x-timeout-ms, ${TOKEN_HEADER}, authorization`;

/** The CORS headers for a response to `origin`, or undefined when that origin is not allowed. */
export function corsHeaders(origin: string | undefined, allowed: ReadonlySet<string>): Record<string, string> | undefined {
  if (origin === undefined) return undefined;
  if (allowed.has(origin))
    return { 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true', 'access-control-expose-headers': TOKEN_HEADER, vary: 'Origin' };
  if (allowed.has('*')) return { 'access-control-allow-origin': '*', 'access-control-expose-headers': TOKEN_HEADER };
  return undefined;
}

/** The extra headers of a preflight (OPTIONS) answer. */
export function preflightHeaders(): Record<string, string> {
  return { 'access-control-allow-methods': 'GET, POST', 'access-control-allow-headers': ALLOWED_HEADERS, 'access-control-max-age': String(CORS_MAX_AGE_S) };
}

/** Checks `options.http.corsOrigins`: `*` or origins such as `https://app.example.com`. */
export function checkCorsOrigins(v: unknown): ReadonlySet<string> {
  const name = 'options.http.corsOrigins';
  if (!Array.isArray(v)) throw invalidOption(name, "must be an array of origins ('https://host[:port]' or '*')", v);
  for (const o of v) {
    let ok = o === '*';
    if (!ok && typeof o === 'string')
      try {
        ok = new URL(o).origin === o;
      } catch {
        ok = false;
      }
    if (!ok) throw invalidOption(name, "must hold origins: scheme://host[:port], no path or trailing slash, or '*'", o);
  }
  return new Set(v as string[]);
}
