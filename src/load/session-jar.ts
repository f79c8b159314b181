/**
 * The `sid` cookies of a load run's cookie sessions, one per key: what a browser's cookie jar
 * does for one site. A session has no cookie until a response sets one; from then on its requests
 * carry it. Only the `sid` pair is kept (attributes such as Max-Age and Path are the server's
 * business: a run is shorter than any sane max age).
 *
 * @example
 *   const jar = new SessionJar();
 *   jar.capture('k1', { 'Set-Cookie': 'sid=abc.1.mac; Max-Age=604800; Path=/; HttpOnly' }); // 'sid=abc.1.mac'
 *   jar.cookie('k1'); // 'sid=abc.1.mac'
 */

export const SESSION_COOKIE_NAME = 'sid';

export class SessionJar {
  private readonly cookies = new Map<string, string>();

  /** The Cookie header value for `key`'s session; undefined before its first response set one. */
  cookie(key: string): string | undefined {
    return this.cookies.get(key);
  }

  /**
   * Keeps the `sid` cookie a response sets for `key` (headers as autocannon hands them: names in
   * any case, a value or a list of values). Returns the new `sid=<value>` pair, or undefined when
   * the response set none.
   */
  capture(key: string, headers: Readonly<Record<string, string | string[] | undefined>>): string | undefined {
    const pair = sidOfSetCookie(headers);
    if (pair !== undefined) this.cookies.set(key, pair);
    return pair;
  }

  get size(): number {
    return this.cookies.size;
  }

  /** Every session with a cookie: key → `sid=<value>`. */
  entries(): IterableIterator<[string, string]> {
    return this.cookies.entries();
  }
}

/** The `sid=<value>` pair among a response's Set-Cookie headers; undefined when none sets it. */
export function sidOfSetCookie(headers: Readonly<Record<string, string | string[] | undefined>>): string | undefined {
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() !== 'set-cookie' || value === undefined) continue;
    for (const line of Array.isArray(value) ? value : [value]) {
      const pair = line.split(';', 1)[0]!.trim();
      const eq = pair.indexOf('=');
      if (eq > 0 && pair.slice(0, eq).trim() === SESSION_COOKIE_NAME && eq < pair.length - 1) return `${SESSION_COOKIE_NAME}=${pair.slice(eq + 1).trim()}`;
    }
  }
  return undefined;
}
