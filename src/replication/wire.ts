import type { Epoch, EpochHistory, Position } from './epoch.ts';
import type { LogEntry, ReplicationMessage } from './messages.ts';
import type { ActorImage } from './partition-store.ts';
import { parseHandoffMessage, type HandoffMessage } from './handoff.ts';
import type { DigestMessage } from './anti-entropy.ts';

/**
 * Replication on the wire: one transport payload per peer per event-loop turn,
 * `[R_REPL, messages]`, on the 'actor' lane (the 'system' lane stays free for heartbeats, which
 * a large catch-up must never delay). Besides the reducers' messages, a candidate fetches the
 * entries it lacks from the respondent with the highest position (REPLICATION.md step 4).
 */
export const R_REPL = 20;

export type FetchMessage =
  /** Send me your entries (after, upTo]. */
  | { type: 'fetch'; p: number; epoch: Epoch; reqId: number; after: number; upTo: number }
  /** Some of them, in order; `done` on the last page (a short answer means the source lacks them). */
  | { type: 'entries'; p: number; epoch: Epoch; reqId: number; entries: LogEntry[]; done: boolean };

/**
 * A partition snapshot (partition-store.ts, `PartitionSnapshot`) in pages, each its own payload
 * so no frame outgrows the transport's limit: `part` counts from 0, `done` on the last. The
 * primary sends one to a member behind its log's base (`reqId` names the transfer); a fetch
 * source answers with one (the fetch's `reqId`) when the entries asked for were truncated, and
 * then sends the entries after `base` as usual.
 */
export type SnapshotMessage = {
  type: 'snapshot';
  p: number;
  epoch: Epoch;
  reqId: number;
  part: number;
  base: Position;
  history: EpochHistory;
  actors: ActorImage[];
  done: boolean;
};

export type WireMessage = ReplicationMessage | FetchMessage | SnapshotMessage | HandoffMessage;

/** Everything an `[R_REPL, messages]` frame may carry: the per-partition messages and digests. */
export type ReplFrameMessage = WireMessage | DigestMessage;

/** A digest's partitions at most (anti-entropy.ts pages far below it); a longer one is refused. */
const MAX_DIGEST_PARTITIONS = 4_096;

/**
 * Anti-entropy's digest (anti-entropy.ts): `parts` is flat, `[p, term, node, end, commit]` per
 * partition, every number a count and every p one of this node's partitions. It names many
 * partitions, so it carries no top-level `p` or `epoch`.
 */
export function parseDigestMessage(msg: Record<string, unknown>, partitions: number): DigestMessage | undefined {
  const parts = msg.parts;
  if (!Array.isArray(parts) || parts.length % 5 !== 0 || parts.length > 5 * MAX_DIGEST_PARTITIONS) return undefined;
  for (let i = 0; i < parts.length; i++) if (!isCount(parts[i]) || (i % 5 === 0 && parts[i] >= partitions)) return undefined;
  return { type: 'digest', parts: parts as number[] };
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isEpoch = (v: unknown): v is Epoch =>
  typeof v === 'object' && v !== null && isCount((v as Epoch).term) && isCount((v as Epoch).node);
const isPosition = (v: unknown): boolean =>
  typeof v === 'object' && v !== null && isEpoch((v as { epoch: unknown }).epoch) && isCount((v as { seq: unknown }).seq);
const isEntries = (v: unknown): v is LogEntry[] =>
  Array.isArray(v) && v.every((e) => typeof e === 'object' && e !== null && isCount(e.seq) && isEpoch(e.epoch));
const isImages = (v: unknown): v is ActorImage[] =>
  Array.isArray(v) &&
  v.every(
    (a) =>
      typeof a === 'object' &&
      a !== null &&
      typeof a.kind === 'string' &&
      typeof a.key === 'string' &&
      isCount(a.lastSeq) &&
      Array.isArray(a.events) &&
      Array.isArray(a.replies),
  );
const isHistory = (v: unknown): boolean =>
  Array.isArray(v) &&
  v.every((h) => typeof h === 'object' && h !== null && isEpoch(h.epoch) && isCount(h.startSeq) && Array.isArray(h.sets));

/**
 * The message if it is well formed for a node with `partitions` partitions, else undefined. An
 * authenticated peer can still run buggy or older code: every field the driver reads is checked.
 */
export function parseWireMessage(m: unknown, partitions: number): ReplFrameMessage | undefined {
  if (typeof m !== 'object' || m === null) return undefined;
  const msg = m as Record<string, unknown>;
  if (msg.type === 'digest') return parseDigestMessage(msg, partitions);
  if (!isCount(msg.p) || msg.p >= partitions || !isEpoch(msg.epoch)) return undefined;
  switch (msg.type) {
    case 'prepare':
      return m as WireMessage;
    case 'promise':
      return isPosition(msg.last) && isHistory(msg.history) && isCount(msg.commit) ? (m as WireMessage) : undefined;
    case 'unclean':
      return m as WireMessage;
    case 'stale':
      return isEpoch(msg.promised) ? (m as WireMessage) : undefined;
    case 'append':
      return isPosition(msg.prev) && isEntries(msg.entries) && isCount(msg.commit) && (msg.truncate === undefined || isCount(msg.truncate))
        ? (m as WireMessage)
        : undefined;
    case 'appended':
      return isCount(msg.seq) ? (m as WireMessage) : undefined;
    case 'mismatch':
      return isPosition(msg.last) && isHistory(msg.history) ? (m as WireMessage) : undefined;
    case 'fetch':
      return isCount(msg.reqId) && isCount(msg.after) && isCount(msg.upTo) ? (m as WireMessage) : undefined;
    case 'entries':
      return isCount(msg.reqId) && isEntries(msg.entries) && typeof msg.done === 'boolean' ? (m as WireMessage) : undefined;
    case 'snapshot':
      return isCount(msg.reqId) && isCount(msg.part) && isPosition(msg.base) && isHistory(msg.history) && isImages(msg.actors) && typeof msg.done === 'boolean'
        ? (m as WireMessage)
        : undefined;
    default:
      return parseHandoffMessage(msg);
  }
}
