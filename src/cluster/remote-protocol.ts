/**
 * Actor traffic between nodes, as transport payloads on the 'actor' lane. Compact tuples (the
 * transport msgpacks them); every field is checked on arrival, because an authenticated peer
 * can still run buggy or older code.
 *
 *   [R_ASK,   reqId, kind, key, command, input, msgId, timeoutMs, hops, token?]
 *   [R_TELL,  kind, key, command, input, msgId, hops, sendId?]
 *   [R_REPLY, reqId, ok, value, token?]          value: reply, or ErrorRecord when !ok
 *
 * `token` (read-your-writes, src/replication/token.ts) is `[p, term, node, seq]`: on an ask, the
 * caller's token for the key's partition; on a reply, the serving node's. It is appended only
 * when there is one, so frames without it keep the older shape and both shapes decode. A tell's
 * `sendId` comes from the sender's request counter (asks' reqIds): the receiver drops a second
 * copy of either (src/cluster/replay-window.ts); a tell from an older node has none.
 */
import type { WireToken } from '../replication/token.ts';

export const R_ASK = 10;
export const R_TELL = 11;
export const R_REPLY = 12;

/** A request is forwarded at most this many times while rings disagree, then ERR_NOT_OWNER. */
export const MAX_HOPS = 2;

export type RemoteAsk =
  | [typeof R_ASK, number, string, string, string, unknown, string | null, number, number]
  | [typeof R_ASK, number, string, string, string, unknown, string | null, number, number, WireToken];
export type RemoteTell = [typeof R_TELL, string, string, string, unknown, string | null, number, number?];
export type RemoteReply = [typeof R_REPLY, number, boolean, unknown] | [typeof R_REPLY, number, boolean, unknown, WireToken];
export type RemotePayload = RemoteAsk | RemoteTell | RemoteReply;

const isStr = (v: unknown, max = 1024): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
/** The shape only: the router checks the partition against its own count (fromWireToken). */
const isWireToken = (v: unknown): v is WireToken => Array.isArray(v) && v.length === 4 && v.every(isCount);

/** The payload as a typed tuple, or undefined if it is not well-formed actor traffic. */
export function parseRemote(p: unknown): RemotePayload | undefined {
  if (!Array.isArray(p)) return undefined;
  switch (p[0]) {
    case R_ASK:
      return (p.length === 9 || (p.length === 10 && isWireToken(p[9]))) &&
        isCount(p[1]) &&
        isStr(p[2], 64) &&
        isStr(p[3], 256) &&
        isStr(p[4], 64) &&
        (p[6] === null || isStr(p[6], 128)) &&
        isCount(p[7]) &&
        isCount(p[8])
        ? (p as RemoteAsk)
        : undefined;
    case R_TELL:
      return (p.length === 7 || (p.length === 8 && isCount(p[7]))) &&
        isStr(p[1], 64) &&
        isStr(p[2], 256) &&
        isStr(p[3], 64) &&
        (p[5] === null || isStr(p[5], 128)) &&
        isCount(p[6])
        ? (p as RemoteTell)
        : undefined;
    case R_REPLY:
      return (p.length === 4 || (p.length === 5 && isWireToken(p[4]))) && isCount(p[1]) && typeof p[2] === 'boolean' ? (p as RemoteReply) : undefined;
    default:
      return undefined;
  }
}
