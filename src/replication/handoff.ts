import type { Epoch } from './epoch.ts';

/**
 * Handoff of a partition whose proposed primary changed while its old primary is alive (a join,
 * or a graceful leave): a liveness and latency optimisation on top of the fence, never a
 * replacement for it (REPLICATION.md, Handoff).
 *
 * ```
 *   old primary O (established, ring moved p to N)        new proposed primary N
 *     ── offer(epoch, commit, members) ──────────────────►  queued (at most `maxLearning` learn at once)
 *     keeps serving p: N forwards p's requests to O          learning: fetch (snapshot + log) up to O's commit
 *     ◄─────────────────────────────────── seal(have) ───   close to O's end?
 *     too far behind: ── behind(commit) ───────────────►    fetch again, then seal again
 *     else: holds new requests, lets pending commit,
 *           ── sealed(last) ──────────────────────────►     runs the fence as today (old and new sets
 *     ◄──────────────────────────── prepare(e′) ────────    jointly, fetching the last entries)
 *     deposed: held requests fail ERR_NOT_PRIMARY and
 *     their routers resend them to N
 *   seal not followed by a prepare within `sealTimeoutMs`: O unseals and keeps serving; N retries later.
 * ```
 *
 * Nothing here lets a node serve without an established epoch: O serves only in its own epoch
 * (a prepare from N's fence deposes it at once), and N serves only after its fence.
 */
export const handoffDefaults = {
  /** Partitions learning (or sealing) at once on one node, so a join does not stall traffic. */
  maxLearning: 8,
  /** A learner this many entries or fewer behind the old primary's end gets its seal, entries. */
  sealGap: 256,
  /** The old primary holds new requests this long at most while sealed, then serves again, ms. */
  sealTimeoutMs: 2_000,
  /** An offer (or a handoff the old primary is serving for) nobody acted on is dropped after this, ms. */
  handoffTimeoutMs: 30_000,
  /** An old primary re-offers a partition whose learner said nothing for this long, ms. */
  reofferMs: 1_000,
  /**
   * A learner waits this long for each page of its fetch before it gives up and fences, ms. Long,
   * because waiting costs nothing (the old primary serves meanwhile) and giving up costs a cold
   * fence that fetches the same pages again; and an old primary answering many learners is slow
   * (a partition snapshot scans its whole actor table: LmdbPartitionStore.snapshot).
   */
  learnPageTimeoutMs: 5_000,
  /** A fence a handoff started (nobody waiting on it) is retried after this, doubled per failure up to 16×, ms. */
  eagerRetryMs: 1_000,
  /** A learner whose seal was refused (behind, timed out) asks again after this, ms. */
  resealMs: 100,
  /** A graceful leave (drain) waits at most this long for its partitions to move, then stops anyway, ms. */
  drainTimeoutMs: 30_000,
  /** How often a drain checks whether the node still leads anything, ms. */
  drainPollMs: 50,
  /**
   * A drained node keeps its transport this long before stopping, ms: requests already on their
   * way to it (sent before the senders' rings dropped it) still get their answer — served, or
   * ERR_NOT_PRIMARY, which their routers resend — instead of silence until their deadline.
   */
  drainLingerMs: 200,
};

/** The handoff's own messages, alongside replication's (wire.ts); fetches reuse `fetch`/`entries`/`snapshot`. */
export type HandoffMessage =
  /** From the established primary of `epoch`: you are proposed now, learn from me. */
  | { type: 'offer'; p: number; epoch: Epoch; commit: number; members: number[] }
  /** From the learner: seal p now (my log ends at `have`). */
  | { type: 'seal'; p: number; epoch: Epoch; reqId: number; have: number }
  /** Sealed: every entry through `last` is committed; nothing new is appended until a fence or the timeout. */
  | { type: 'sealed'; p: number; epoch: Epoch; reqId: number; last: number }
  /** Not sealed: the learner is too far behind; fetch through `commit`, then ask again. */
  | { type: 'behind'; p: number; epoch: Epoch; reqId: number; commit: number }
  /** Not sealed: the sender does not lead p in `epoch` (any more): the learner fences as usual. */
  | { type: 'decline'; p: number; epoch: Epoch; reqId: number };

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** The handoff message if well formed (the caller checked `p` and `epoch`), else undefined. */
export function parseHandoffMessage(msg: Record<string, unknown>): HandoffMessage | undefined {
  switch (msg.type) {
    case 'offer':
      return isCount(msg.commit) && Array.isArray(msg.members) && msg.members.every(isCount) ? (msg as unknown as HandoffMessage) : undefined;
    case 'seal':
      return isCount(msg.reqId) && isCount(msg.have) ? (msg as unknown as HandoffMessage) : undefined;
    case 'sealed':
      return isCount(msg.reqId) && isCount(msg.last) ? (msg as unknown as HandoffMessage) : undefined;
    case 'behind':
      return isCount(msg.reqId) && isCount(msg.commit) ? (msg as unknown as HandoffMessage) : undefined;
    case 'decline':
      return isCount(msg.reqId) ? (msg as unknown as HandoffMessage) : undefined;
    default:
      return undefined;
  }
}

/** The old primary's answer to a seal request (pure: the driver performs it). */
export function sealDecision(o: { serving: boolean; last: number; have: number; sealGap: number }): 'seal' | 'behind' | 'decline' {
  if (!o.serving) return 'decline';
  return o.last - o.have > o.sealGap ? 'behind' : 'seal';
}

/**
 * Which queued partitions start learning now: the oldest offers first, so that at most `limit`
 * learn at once (a join moves about 1/N of the partitions; all at once would fetch them all in
 * one burst and stall the old primaries' traffic).
 */
export function admitLearners(queued: readonly number[], learning: number, limit: number): number[] {
  return queued.slice(0, Math.max(0, limit - learning));
}

/**
 * The `hops` of an ask or tell the partition's new proposed primary passes to its old primary
 * while it learns (far above MAX_HOPS): the old primary serves it or refuses it
 * (ERR_NOT_PRIMARY, which the asker's router resends), and never forwards it again — so a
 * request takes at most two hops and cannot loop between the two.
 */
export const HANDOFF_HOPS = 100;
