/**
 * Read-your-writes tokens (REPLICATION.md, Tokens; invariant I7). A reply served by a replicated
 * partition carries `p:term.node:seq`: "the state of partition p this reply came from covers
 * entry seq, written in epoch (term, node)". A request that brings one back is served only by a
 * primary whose state covers that position; it waits (bounded) while the primary catches up, is
 * refused when the token comes from an epoch later than the primary's own (the primary is stale:
 * the router resends), and gets ERR_TOKEN_LOST when the primary's epoch history shows the token's
 * epoch ended before seq (only `lazy` acknowledges entries that can be lost) — never older state.
 *
 * ```
 *   HTTP   troupe-token: 17:4.2:381,903:2.1:12     a set: one entry per partition, any order
 *   wire   [17, 4, 2, 381]                         only the entry for the key's partition travels
 * ```
 *
 * Pure functions only; the driver (`ReplicationDriver.tokenOf` / `awaitToken`) and the router
 * use them.
 *
 * @example
 *   const set = parseTokens('17:4.2:381', 1024);        // Map { 17 → { p: 17, epoch: {term 4, node 2}, seq: 381 } }
 *   formatTokens(mergeTokens(set, { p: 17, epoch: { term: 5, node: 1 }, seq: 2 })); // '17:5.1:2'
 */
import { invalidOption, type TroupeError } from '../core/errors.ts';
import { compareEpoch, endOfEpoch, sameEpoch, type Epoch, type EpochHistory } from './epoch.ts';

export interface Token {
  readonly p: number;
  readonly epoch: Epoch;
  readonly seq: number;
}

/** Tokens by partition: a client session that touched several partitions holds one per partition. */
export type TokenSet = ReadonlyMap<number, Token>;

/** The HTTP header a token travels in, both ways. */
export const TOKEN_HEADER = 'troupe-token';

/** Entries a token set may hold: a session touching more partitions should start a new one. */
export const MAX_TOKENS = 256;

/** Node ids are 0..1023 (node-identity.ts). */
const MAX_NODE = 1023;

const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

const TOKEN_PATTERN = /^(\d{1,5}):(\d{1,16})\.(\d{1,4}):(\d{1,16})$/;

export function formatToken(t: Token): string {
  return `${t.p}:${t.epoch.term}.${t.epoch.node}:${t.seq}`;
}

export function formatTokens(set: TokenSet): string {
  return [...set.values()].map(formatToken).join(',');
}

/**
 * A comma-separated token set, checked whole: any malformed entry refuses the set with
 * ERR_INVALID_OPTION naming `what` (a header or an option). Entries land in a Map keyed by
 * number, so no entry can reach an object's prototype; two entries for one partition keep the
 * later position.
 */
export function parseTokens(raw: unknown, partitions: number, what = `header ${TOKEN_HEADER}`): TokenSet {
  if (typeof raw !== 'string') throw invalidOption(what, 'must be a string of tokens "p:term.node:seq" separated by commas', raw);
  const parts = raw.split(',');
  if (parts.length > MAX_TOKENS) throw invalidOption(what, `holds at most ${MAX_TOKENS} tokens`, `${parts.length} tokens`);
  const set = new Map<number, Token>();
  for (const part of parts) keepLater(set, parseToken(part.trim(), partitions, what));
  return set;
}

function parseToken(s: string, partitions: number, what: string): Token {
  const m = TOKEN_PATTERN.exec(s);
  const bad = (why: string): TroupeError => invalidOption(what, `entry ${why}; expected "p:term.node:seq"`, s);
  if (m === null) throw bad('is malformed');
  const [p, term, node, seq] = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
  if (p >= partitions) throw bad(`names partition ${p}, but there are ${partitions}`);
  if (!Number.isSafeInteger(term) || term < 1) throw bad('has a term outside [1, 2^53)');
  if (node > MAX_NODE) throw bad(`has a node id above ${MAX_NODE}`);
  if (!Number.isSafeInteger(seq) || seq < 1) throw bad('has a seq outside [1, 2^53)');
  return { p, epoch: { term, node }, seq };
}

/** Later epoch first, then higher seq (the same order as positions). */
export function compareToken(a: Token, b: Token): number {
  return compareEpoch(a.epoch, b.epoch) || a.seq - b.seq;
}

/** `set` with `more` added: per partition, the later of the two positions. */
export function mergeTokens(set: TokenSet, more: Token | TokenSet): Map<number, Token> {
  const out = new Map(set);
  if (isToken(more)) keepLater(out, more);
  else for (const t of more.values()) keepLater(out, t);
  return out;
}

/** `t` into `set` unless the set holds a later position of its partition. */
function keepLater(set: Map<number, Token>, t: Token): void {
  const had = set.get(t.p);
  if (had === undefined || compareToken(t, had) > 0) set.set(t.p, t);
}

function isToken(v: Token | TokenSet): v is Token {
  return !(v instanceof Map);
}

/** What a serving primary makes of a token (see `judgeToken`). */
export type TokenVerdict =
  /** The token's epoch is later than the primary's: this node was replaced, or has not heard yet. */
  | { type: 'newer' }
  /** The token's epoch ended before its seq in this log: the entry was lost (only under lazy). */
  | { type: 'lost'; end: number }
  /** Covered once the actor tables hold everything through seq. */
  | { type: 'wait'; seq: number };

/**
 * The rule of I7 for the established primary of `epoch` whose log has `history` and ends at
 * `last`. A token of the primary's own epoch is its own writing: wait for it. A token of an
 * earlier epoch is covered when this log holds that epoch through seq; if the history shows the
 * epoch ending short of seq (or never writing here at all), a later epoch took over without
 * those entries, so they are gone for good.
 */
export function judgeToken(token: Token, epoch: Epoch, history: EpochHistory, last: number): TokenVerdict {
  if (compareEpoch(token.epoch, epoch) > 0) return { type: 'newer' };
  if (sameEpoch(token.epoch, epoch)) return { type: 'wait', seq: token.seq };
  const end = endOfEpoch(history, last, token.epoch);
  if (end < token.seq) return { type: 'lost', end };
  return { type: 'wait', seq: token.seq };
}

/** A token as remote-protocol.ts carries it: `[p, term, node, seq]`. */
export type WireToken = [number, number, number, number];

export function toWireToken(t: Token): WireToken {
  return [t.p, t.epoch.term, t.epoch.node, t.seq];
}

/** The token, or undefined when `v` is not a well-formed wire token (the router refuses such an ask). */
export function fromWireToken(v: unknown, partitions: number): Token | undefined {
  if (!Array.isArray(v) || v.length !== 4) return undefined;
  const [p, term, node, seq] = v as unknown[];
  if (!isCount(p) || !isCount(term) || !isCount(node) || !isCount(seq)) return undefined;
  if (p >= partitions || term < 1 || node > MAX_NODE || seq < 1) return undefined;
  return { p, epoch: { term, node }, seq };
}

/**
 * Read-your-writes for one ask, as the router and gateway pass it: the tokens the caller brings
 * (only the entry for the key's partition matters) and where the reply's token goes.
 */
export interface TokenExchange {
  readonly tokens?: TokenSet;
  onToken?(token: Token): void;
}
