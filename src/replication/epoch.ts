/**
 * Epochs, positions and epoch histories: the vocabulary of replication (see REPLICATION.md in the
 * design notes, and docs/architecture.md). Pure functions only.
 *
 * ```
 *   history of one partition's log, ascending:
 *     { epoch (1,n2), startSeq 1,  sets [[2,1,3] w2] }
 *     { epoch (4,n1), startSeq 57, sets [[1,3,2] w2] }      entries 57.. were written in epoch (4,n1)
 *   position = (epoch of the last entry, seq of the last entry) = ((4,n1), 80)
 * ```
 */

/** `(term, node)`, compared term first: comparable on every node, and unique to one primary. */
export interface Epoch {
  readonly term: number;
  readonly node: number;
}

export const ZERO_EPOCH: Epoch = { term: 0, node: 0 };

export function compareEpoch(a: Epoch, b: Epoch): number {
  return a.term - b.term || a.node - b.node;
}

export function sameEpoch(a: Epoch, b: Epoch): boolean {
  return a.term === b.term && a.node === b.node;
}

/** A replica set in force for an epoch: only its members count toward `w`. */
export interface ReplicaSet {
  /** Node ids, the intended primary first. */
  readonly members: readonly number[];
  /** Copies (the primary counted) an entry needs before it is acknowledged. */
  readonly w: number;
  /**
   * Present when some actor kind acknowledges its writes at fewer copies than `w`
   * (settle-rule.ts): the smallest such W, which the fence must count with.
   */
  readonly fw?: number;
}

/** The fencing quorum of a set: no W-set can form without one of these |S| − W + 1 members (W: the smallest any write used). */
export function fenceQuorum(set: ReplicaSet): number {
  return set.members.length - Math.min(set.w, set.fw ?? set.w) + 1;
}

/** Where a replica's log ends: the epoch and seq of its last entry (seq 0: empty). */
export interface Position {
  readonly epoch: Epoch;
  readonly seq: number;
}

export const EMPTY_POSITION: Position = { epoch: ZERO_EPOCH, seq: 0 };

/** Later epoch first, then longer log. */
export function comparePosition(a: Position, b: Position): number {
  return compareEpoch(a.epoch, b.epoch) || a.seq - b.seq;
}

/** The start of an epoch in a log: its start entry's seq and the sets it names (joint while reconfiguring). */
export interface EpochStart {
  readonly epoch: Epoch;
  readonly startSeq: number;
  readonly sets: readonly ReplicaSet[];
}

export type EpochHistory = readonly EpochStart[];

/** The epoch that wrote entry `seq` of a log with this history (ZERO_EPOCH before the first start). */
export function epochAt(history: EpochHistory, seq: number): Epoch {
  let found = ZERO_EPOCH;
  for (const h of history) {
    if (h.startSeq > seq) break;
    found = h.epoch;
  }
  return found;
}

/** The last seq written in `epoch` by a log with this history ending at `last` (-1: the epoch is not in it). */
export function endOfEpoch(history: EpochHistory, last: number, epoch: Epoch): number {
  for (let i = 0; i < history.length; i++) {
    if (!sameEpoch(history[i]!.epoch, epoch)) continue;
    const next = history[i + 1];
    return next === undefined ? last : next.startSeq - 1;
  }
  return -1;
}

/**
 * The longest prefix two logs share, by epoch (Kafka KIP-101/279, never by a local watermark):
 * find the latest epoch both histories hold; the logs agree up to the smaller of their ends of
 * that epoch (one primary per epoch writes one sequence of entries, I4). Everything past it on
 * either side is a divergent tail.
 */
export function matchPoint(a: EpochHistory, aLast: number, b: EpochHistory, bLast: number): number {
  for (let i = a.length - 1; i >= 0; i--) {
    const e = a[i]!.epoch;
    const bEnd = endOfEpoch(b, bLast, e);
    if (bEnd < 0) continue;
    const aEnd = endOfEpoch(a, aLast, e);
    return Math.min(aEnd, bEnd);
  }
  return 0;
}

/** The history cut to entries ≤ seq (epochs starting later are gone). */
export function truncateHistory(history: EpochHistory, seq: number): EpochHistory {
  let n = history.length;
  while (n > 0 && history[n - 1]!.startSeq > seq) n--;
  return n === history.length ? history : history.slice(0, n);
}

/** Every member of any of the sets, in order of first appearance. */
export function membersOf(sets: readonly ReplicaSet[]): number[] {
  const out: number[] = [];
  for (const s of sets) for (const m of s.members) if (!out.includes(m)) out.push(m);
  return out;
}

/** True when, for every set, at least `need(set)` of its members satisfy `has`. */
export function everySetHas(sets: readonly ReplicaSet[], need: (s: ReplicaSet) => number, has: (node: number) => boolean): boolean {
  return sets.every((s) => s.members.filter(has).length >= need(s));
}
