import type { Epoch, EpochHistory, EpochStart, Position } from './epoch.ts';

/**
 * One entry of a partition's log. Entry data is opaque here (a turn's actor writes); a start
 * entry opens an epoch and names its replica sets.
 */
export interface LogEntry {
  readonly seq: number;
  readonly epoch: Epoch;
  /** Present on an epoch's first entry only. */
  readonly start?: EpochStart;
  readonly data?: unknown;
}

/**
 * Replication messages for one partition `p`, between the nodes of its replica sets. Every
 * message carries the sender's epoch, as etcd raft's messages carry their term: what every hop
 * needs travels with the message.
 */
export type ReplicationMessage =
  /** A candidate asks for a promise to refuse every epoch below `epoch`. */
  | { type: 'prepare'; p: number; epoch: Epoch }
  /** Given, with what the replica holds. Sent only after the promise is on disk. */
  | { type: 'promise'; p: number; epoch: Epoch; last: Position; history: EpochHistory; commit: number }
  /** The replica may have lost acknowledged entries (OS crash, restored backup): it must not count. */
  | { type: 'unclean'; p: number; epoch: Epoch }
  /** Refused: the replica promised a later epoch. The sender steps down or backs off. */
  | { type: 'stale'; p: number; epoch: Epoch; promised: Epoch }
  /**
   * Entries after `prev`, and the primary's commit point. `truncate`: every member of the set
   * holds the log through it and the primary applied it (I5): the replica may drop its prefix up
   * to it (never past what it applied itself).
   */
  | { type: 'append'; p: number; epoch: Epoch; prev: Position; entries: readonly LogEntry[]; commit: number; truncate?: number }
  /** Every entry up to `seq` is committed in the replica's store (sent after its commit). */
  | { type: 'appended'; p: number; epoch: Epoch; seq: number }
  /** `prev` did not match; here is what the replica holds, so the primary finds the match point by epoch. */
  | { type: 'mismatch'; p: number; epoch: Epoch; last: Position; history: EpochHistory };
