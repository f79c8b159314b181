/**
 * The `sid` cookie: a session id that every node of a cluster accepts and nobody can forge.
 *
 *   sid=<id>.<expires>.<mac>
 *       id       21 chars, nanoid: the session actor's key
 *       expires  Unix seconds after which the cookie is refused (signed, so a client cannot extend it)
 *       mac      base64url HMAC-SHA256 over "<id>.<expires>" with the first session secret
 *
 * Verification accepts a MAC from any listed secret, so a secret rotates in three steps: add the
 * new one first on every node (new cookies are signed with it, old ones still verify), wait out
 * the max age, drop the old one. Pure: `now` is an argument.
 *
 * @example
 *   const c = issueSession(['k'.repeat(32)], 1_700_000_000_000, 3600);   // { id, value }
 *   verifySession(c.value, ['k'.repeat(32)], 1_700_000_000_000);         // → c.id
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { troupeError, invalidOption } from '../core/errors.ts';
import { newSessionId } from '../ids/session-id.ts';

export const SESSION_COOKIE = 'sid';

/** Shortest session secret: HMAC-SHA256 keys much shorter than its output are guessable offline. */
export const MIN_SECRET_LENGTH = 16;

const VALUE = /^([A-Za-z0-9_-]{21})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/;

export interface IssuedSession {
  id: string;
  /** The cookie's value (what follows `sid=`). */
  value: string;
}

/** A new session id and its signed cookie value, valid `maxAgeS` seconds from `nowMs`. */
export function issueSession(secrets: readonly string[], nowMs: number, maxAgeS: number): IssuedSession {
  const id = newSessionId();
  return { id, value: signSession(id, Math.floor(nowMs / 1000) + maxAgeS, secrets[0]!) };
}

export function signSession(id: string, expiresS: number, secret: string): string {
  return `${id}.${expiresS}.${mac(`${id}.${expiresS}`, secret)}`;
}

/**
 * The session id in a `sid` cookie value, or a refusal: ERR_BAD_SESSION (malformed, or signed
 * by no listed secret: forged or tampered) or ERR_SESSION_EXPIRED. The MAC is checked before
 * the expiry, so an expiry nobody signed is never believed.
 */
export function verifySession(value: string, secrets: readonly string[], nowMs: number): string {
  const m = VALUE.exec(value);
  if (!m) throw troupeError('ERR_BAD_SESSION', `the ${SESSION_COOKIE} cookie is malformed`, { reason: 'malformed' });
  const [, id, expires, given] = m as unknown as [string, string, string, string];
  const signed = `${id}.${expires}`;
  const got = Buffer.from(given);
  if (!secrets.some((s) => timingSafeEqual(got, Buffer.from(mac(signed, s)))))
    throw troupeError('ERR_BAD_SESSION', `the ${SESSION_COOKIE} cookie is not signed by this cluster`, { reason: 'signature' });
  if (Number(expires) * 1000 <= nowMs)
    throw troupeError('ERR_SESSION_EXPIRED', `the ${SESSION_COOKIE} cookie expired; drop it to start a new session`, {
      expiredAt: new Date(Number(expires) * 1000).toISOString(),
    });
  return id;
}

function mac(text: string, secret: string): string {
  return createHmac('sha256', secret).update(text).digest('base64url');
}

/**
 * The `sid` value of a Cookie header, undefined when there is none. Two `sid` cookies (set for
 * different paths by something else) are refused: which one the browser meant is unknowable.
 */
export function sessionCookieOf(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  let found: string | undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq === -1 || pair.slice(0, eq).trim() !== SESSION_COOKIE) continue;
    if (found !== undefined)
      throw troupeError('ERR_BAD_SESSION', `more than one ${SESSION_COOKIE} cookie was sent`, { reason: 'malformed' });
    found = pair.slice(eq + 1).trim();
  }
  return found;
}

/** The Set-Cookie header for a new session: not readable by scripts, not sent on cross-site POSTs. */
export function sessionSetCookie(value: string, maxAgeS: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${value}; Max-Age=${maxAgeS}; Path=/; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

/** Tells the browser to drop its `sid` (a refused one): the same attributes, expired. */
export function sessionClearCookie(): string {
  return `${SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax`;
}

/** Checks `options.http.sessionSecrets`: an array of strings of at least MIN_SECRET_LENGTH characters. */
export function checkSessionSecrets(secrets: unknown): readonly string[] {
  const name = 'options.http.sessionSecrets';
  if (!Array.isArray(secrets)) throw invalidOption(name, 'must be an array of strings', secrets);
  for (const s of secrets)
    if (typeof s !== 'string' || s.length < MIN_SECRET_LENGTH)
      throw invalidOption(name, `must hold strings of at least ${MIN_SECRET_LENGTH} characters`, typeof s === 'string' ? `${s.length} characters` : s);
  return secrets as string[];
}
