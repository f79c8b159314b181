import {
  EMPTY_POSITION,
  ZERO_EPOCH,
  compareEpoch,
  epochAt,
  sameEpoch,
  truncateHistory,
  type Epoch,
  type EpochHistory,
  type Position,
} from './epoch.ts';
import type { LogEntry, ReplicationMessage } from './messages.ts';

/**
 * The replica side of one partition's log, as a pure reducer: `replicaReducer(state, event) →
 * { state, effects }`. Every node keeps one per partition it holds a copy of, the primary
 * included (its own log is a replica too).
 *
 * Effects are ordered, and the driver must finish every `persist-*` and `truncate` effect of a
 * step before it performs that step's `send`s: a promise or an `appended` leaves only after
 * what it promises is on disk (raft's `Ready`).
 *
 * Rules (REPLICATION.md, "One protocol"):
 * - `prepare(e)`: below the promise → `stale`; otherwise promise e (on disk first) and answer
 *   with the position, epoch history and commit point — or `unclean` if this store may have
 *   lost acknowledged entries.
 * - `append(e, prev, entries)`: below the promise → `stale`. `prev` must match the log by epoch,
 *   else `mismatch` with the history so the primary finds the match point. An entry at a seq
 *   the log holds with the same epoch is a duplicate (one primary per epoch writes one
 *   sequence); with another epoch it starts a divergent tail, truncated by epoch (I4) before
 *   the new entries are appended.
 * - An unclean replica becomes clean once a primary of a later epoch has caught it up to that
 *   primary's commit point.
 */
export interface ReplicaState {
  readonly p: number;
  /** The highest epoch promised (on disk). */
  readonly promised: Epoch;
  readonly last: Position;
  readonly history: EpochHistory;
  /** The highest seq known committed on W replicas (from the primary's appends). */
  readonly commit: number;
  readonly clean: boolean;
  /** While unclean: the promise in force when the store was found unclean. */
  readonly uncleanAt: Epoch;
}

export type ReplicaEvent =
  | { type: 'message'; from: number; msg: ReplicationMessage }
  /** At start: the boot id changed since the last fsync, or the store was restored from a backup. */
  | { type: 'mark-unclean' };

export type ReplicaEffect =
  | { type: 'persist-promise'; p: number; epoch: Epoch }
  | { type: 'persist-clean'; p: number; clean: boolean }
  /** Delete every entry after `after`. */
  | { type: 'truncate'; p: number; after: number }
  | { type: 'persist-entries'; p: number; entries: readonly LogEntry[] }
  | { type: 'send'; to: number; msg: ReplicationMessage }
  | { type: 'commit'; p: number; seq: number };

export interface ReplicaStep {
  state: ReplicaState;
  effects: ReplicaEffect[];
}

export function createReplicaState(p: number, restored?: Partial<Omit<ReplicaState, 'p'>>): ReplicaState {
  return {
    p,
    promised: ZERO_EPOCH,
    last: EMPTY_POSITION,
    history: [],
    commit: 0,
    clean: true,
    uncleanAt: ZERO_EPOCH,
    ...restored,
  };
}

export function replicaReducer(state: ReplicaState, event: ReplicaEvent): ReplicaStep {
  if (event.type === 'mark-unclean') {
    if (!state.clean) return { state, effects: [] };
    return {
      state: { ...state, clean: false, uncleanAt: state.promised },
      effects: [{ type: 'persist-clean', p: state.p, clean: false }],
    };
  }
  const { from, msg } = event;
  switch (msg.type) {
    case 'prepare':
      return onPrepare(state, from, msg.epoch);
    case 'append':
      return onAppend(state, from, msg);
    default:
      return { state, effects: [] }; // primary- and candidate-side messages
  }
}

function onPrepare(state: ReplicaState, from: number, epoch: Epoch): ReplicaStep {
  const p = state.p;
  const order = compareEpoch(epoch, state.promised);
  if (order < 0) return { state, effects: [{ type: 'send', to: from, msg: { type: 'stale', p, epoch, promised: state.promised } }] };
  const effects: ReplicaEffect[] = [];
  let next = state;
  if (order > 0) {
    next = { ...state, promised: epoch };
    effects.push({ type: 'persist-promise', p, epoch });
  }
  effects.push({
    type: 'send',
    to: from,
    msg: next.clean
      ? { type: 'promise', p, epoch, last: next.last, history: next.history, commit: next.commit }
      : { type: 'unclean', p, epoch },
  });
  return { state: next, effects };
}

function onAppend(state: ReplicaState, from: number, msg: Extract<ReplicationMessage, { type: 'append' }>): ReplicaStep {
  const p = state.p;
  const { epoch, prev, entries } = msg;
  const order = compareEpoch(epoch, state.promised);
  if (order < 0) return { state, effects: [{ type: 'send', to: from, msg: { type: 'stale', p, epoch, promised: state.promised } }] };
  const effects: ReplicaEffect[] = [];
  let { history, last } = state;
  const promised = order > 0 ? epoch : state.promised;
  // A primary of a later epoch was established by a fencing quorum: its epoch is the promise now.
  if (order > 0) effects.push({ type: 'persist-promise', p, epoch });
  if (prev.seq > last.seq || (prev.seq > 0 && !sameEpoch(epochAt(history, prev.seq), prev.epoch))) {
    effects.push({ type: 'send', to: from, msg: { type: 'mismatch', p, epoch, last, history } });
    return { state: { ...state, promised }, effects };
  }
  const fresh: LogEntry[] = [];
  let expected = prev.seq + 1;
  for (const entry of entries) {
    if (entry.seq !== expected) break; // a malformed batch: keep the contiguous part
    expected++;
    if (fresh.length === 0 && entry.seq <= last.seq) {
      if (sameEpoch(epochAt(history, entry.seq), entry.epoch)) continue; // a duplicate
      // A divergent tail from a deposed primary: cut it by epoch, then take the new entries.
      history = truncateHistory(history, entry.seq - 1);
      last = { epoch: epochAt(history, entry.seq - 1), seq: entry.seq - 1 };
      effects.push({ type: 'truncate', p, after: last.seq });
    }
    fresh.push(entry);
    if (entry.start !== undefined) history = [...history, entry.start];
    last = { epoch: entry.epoch, seq: entry.seq };
  }
  if (fresh.length > 0) effects.push({ type: 'persist-entries', p, entries: fresh });
  const confirmed = expected - 1;
  const commit = Math.max(state.commit, Math.min(msg.commit, confirmed));
  let { clean, uncleanAt } = state;
  if (!clean && compareEpoch(epoch, uncleanAt) > 0 && confirmed >= msg.commit) {
    clean = true;
    uncleanAt = ZERO_EPOCH;
    effects.push({ type: 'persist-clean', p, clean: true });
  }
  if (commit > state.commit) effects.push({ type: 'commit', p, seq: commit });
  effects.push({ type: 'send', to: from, msg: { type: 'appended', p, epoch, seq: confirmed } });
  return { state: { ...state, promised, history, last, commit, clean, uncleanAt }, effects };
}
