/**
 * The WebSocket session protocol (docs/websocket.md): JSON text frames, each an object with a
 * type `t`. Used by the gateway (src/sessions/session-hub.ts) and by `troupe/client`, so it
 * imports nothing from Node.
 *
 * Client → node
 *   { t: 'ask', id, command, input? }   a command to the socket's actor; `id` (1..128 chars, unique
 *                                       per message: a retry reuses it) is its message id, so a
 *                                       resend after a reconnect is applied once
 *   { t: 'ack', seq }                   every push up to `seq` arrived (cumulative)
 * Node → client
 *   { t: 'hello', node, conn, kind, key }   first frame: who serves this socket
 *   { t: 'reply', id, ok: true, value } | { t: 'reply', id, ok: false, error: { code, message } }
 *                                       the acknowledgement of an ask: sent once its write is durable
 *   { t: 'push', seq, msg }             a push (ctx.push), durable, in log order; ack it
 *   { t: 'sync', seq }                  the socket has every push up to log position `seq`: resume from it
 *   { t: 'gap', from, to }              the log no longer holds (from, to]: pushes there are gone
 *   { t: 'error', error }               a protocol error; the node closes the socket after it
 */
import { findForbiddenKey } from '../gateway/forbidden-keys.ts';

export type ClientFrame = { t: 'ask'; id: string; command: string; input?: unknown } | { t: 'ack'; seq: number };

export type ServerFrame =
  | { t: 'hello'; node: number; conn: string; kind: string; key: string }
  | { t: 'reply'; id: string; ok: true; value: unknown }
  | { t: 'reply'; id: string; ok: false; error: { code: string; message: string } }
  | { t: 'push'; seq: number; msg: unknown }
  | { t: 'sync'; seq: number }
  | { t: 'gap'; from: number; to: number }
  | { t: 'error'; error: { code: string; message: string } };

/** WebSocket close codes the node uses (RFC 6455 §7.4). */
export const CloseCodes = {
  normal: 1000,
  goingAway: 1001, // the node is stopping: reconnect to another
  unsupported: 1003, // a binary frame
  invalidPayload: 1007, // not the protocol's JSON
  policy: 1008, // refused: a cap, an authorization hook
  tooLarge: 1009, // a frame over the size cap
  internal: 1011,
} as const;

export const MAX_ID_LENGTH = 128;
const COMMAND = /^[A-Za-z0-9_-]{1,64}$/;

/** A client frame, checked; a string saying what is wrong otherwise. */
export function parseClientFrame(text: string): ClientFrame | string {
  const f = jsonObject(text);
  if (typeof f === 'string') return f;
  if (f.t === 'ack') {
    if (!Number.isSafeInteger(f.seq) || (f.seq as number) < 0) return 'ack.seq must be a non-negative integer';
    return { t: 'ack', seq: f.seq as number };
  }
  if (f.t === 'ask') {
    if (typeof f.id !== 'string' || f.id.length === 0 || f.id.length > MAX_ID_LENGTH) return `ask.id must be a string of 1..${MAX_ID_LENGTH} characters`;
    if (typeof f.command !== 'string' || !COMMAND.test(f.command)) return 'ask.command must match [A-Za-z0-9_-]{1,64}';
    // The HTTP gateway refuses these keys in bodies; a socket's input gets the same rule, before any handler.
    const forbidden = f.input === undefined ? undefined : findForbiddenKey(f.input);
    if (forbidden !== undefined) return `ask.input must not name a prototype key (${forbidden})`;
    return f.input === undefined ? { t: 'ask', id: f.id, command: f.command } : { t: 'ask', id: f.id, command: f.command, input: f.input };
  }
  return `unknown frame type ${JSON.stringify(f.t)?.slice(0, 40)}`;
}

/** A server frame as the client library reads it; a string saying what is wrong otherwise. */
export function parseServerFrame(text: string): ServerFrame | string {
  const f = jsonObject(text);
  if (typeof f === 'string') return f;
  const seq = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
  switch (f.t) {
    case 'hello':
      return typeof f.conn === 'string' && Number.isSafeInteger(f.node) ? (f as ServerFrame) : 'bad hello';
    case 'reply':
      return typeof f.id === 'string' && typeof f.ok === 'boolean' ? (f as ServerFrame) : 'bad reply';
    case 'push':
      return seq(f.seq) ? (f as ServerFrame) : 'bad push';
    case 'sync':
      return seq(f.seq) ? (f as ServerFrame) : 'bad sync';
    case 'gap':
      return seq(f.from) && seq(f.to) ? (f as ServerFrame) : 'bad gap';
    case 'error':
      return typeof f.error === 'object' && f.error !== null ? (f as ServerFrame) : 'bad error';
    default:
      return `unknown frame type ${JSON.stringify(f.t)?.slice(0, 40)}`;
  }
}

/** A frame's JSON object; a string saying what is wrong otherwise. */
function jsonObject(text: string): Record<string, unknown> | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return `not JSON: ${(e as Error).message}`;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'a frame must be a JSON object';
  return v as Record<string, unknown>;
}
