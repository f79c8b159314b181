import { matchPoint, membersOf, sameEpoch, type Epoch, type EpochHistory, type ReplicaSet } from './epoch.ts';
import type { ReplicationMessage } from './messages.ts';

/**
 * The primary side of one partition in one epoch, as a pure reducer: it tracks what each member
 * of the epoch's sets has confirmed and moves the commit point. Entries themselves stay out of
 * the state: `ship` effects name a range, and the driver reads it from the log.
 *
 * - Commit: the highest seq that W members of EVERY set hold (joint sets while reconfiguring),
 *   the primary counted only up to what its own store has committed. Nothing commits before the
 *   epoch's own start entry does: entries recovered from earlier epochs commit with it (counting
 *   an older epoch's copies directly is Raft's figure-8 bug).
 * - `stale` from any member: a later epoch exists; step down at once, and the driver fails the
 *   replies still waiting with a retryable error.
 * - `mismatch`: find the match point by epoch and ship from there — or, when that point is below
 *   the base of the primary's log (the prefix was truncated), send a partition snapshot instead
 *   and ship nothing more to that member until it confirms a seq at or past the base.
 * - Truncation (I5): `truncationPoint` is the highest seq every member of the epoch's own set
 *   holds and the primary applied; the log prefix up to it may go everywhere.
 */
export interface PrimaryState {
  readonly p: number;
  readonly self: number;
  readonly epoch: Epoch;
  readonly sets: readonly ReplicaSet[];
  /** Seq of this epoch's start entry: commit ≥ startSeq means the epoch is established. */
  readonly startSeq: number;
  /** The primary's own log: its history and last seq appended (not necessarily on disk yet). */
  readonly history: EpochHistory;
  readonly last: number;
  /** Own store committed through here. */
  readonly durable: number;
  readonly commit: number;
  /** Member → highest seq it confirmed in this epoch. */
  readonly matched: ReadonlyMap<number, number>;
  /** Member → highest seq shipped to it (pipelining; rewound on mismatch or resend). */
  readonly shipped: ReadonlyMap<number, number>;
  /** Entries ≤ base are gone from the primary's log (truncated, or installed from a snapshot). */
  readonly base: number;
  /** Members a snapshot is on its way to: no appends until one confirms a seq ≥ base. */
  readonly snapshotting: ReadonlySet<number>;
  readonly status: 'serving' | 'deposed';
}

export type PrimaryEvent =
  /** New entries in the local log through `last` (the start entry included, when it opens an epoch). */
  | { type: 'wrote'; last: number; history?: EpochHistory }
  /** The local store committed through `seq`. */
  | { type: 'durable'; seq: number }
  | { type: 'message'; from: number; msg: ReplicationMessage }
  /** A retransmission timer: ship again to `to` (default: every member) if it has not confirmed the tail. */
  | { type: 'resend'; to?: number }
  /** The primary's own log now starts after `base` (it asked its store to truncate through it). */
  | { type: 'truncated'; base: number };

export type PrimaryEffect =
  /** Send entries `after + 1 .. last` to `to`, with the commit point. */
  | { type: 'ship'; to: number; after: number; last: number; commit: number }
  /** Send `to` a snapshot of the partition's applied state: it lacks entries the log no longer has. */
  | { type: 'snapshot'; to: number }
  | { type: 'commit'; p: number; seq: number }
  | { type: 'established'; p: number; epoch: Epoch }
  | { type: 'step-down'; p: number; epoch: Epoch; promised: Epoch };

export interface PrimaryStep {
  state: PrimaryState;
  effects: PrimaryEffect[];
}

export interface PrimaryInit {
  p: number;
  self: number;
  epoch: Epoch;
  sets: readonly ReplicaSet[];
  startSeq: number;
  history: EpochHistory;
  last: number;
  durable: number;
  /** What each member is known to hold (from the fence's promises): shipping starts there. */
  known?: ReadonlyMap<number, number>;
  /** Where the primary's log starts (default 0: nothing truncated). */
  base?: number;
}

export function createPrimaryState(init: PrimaryInit): PrimaryState {
  const peers = membersOf(init.sets).filter((m) => m !== init.self);
  const shipped = new Map(peers.map((m) => [m, Math.min(init.known?.get(m) ?? 0, init.last)]));
  return {
    p: init.p,
    self: init.self,
    epoch: init.epoch,
    sets: init.sets,
    startSeq: init.startSeq,
    history: init.history,
    last: init.last,
    durable: init.durable,
    commit: 0,
    matched: new Map(peers.map((m) => [m, 0])),
    shipped,
    base: init.base ?? 0,
    snapshotting: new Set(),
    status: 'serving',
  };
}

export function primaryReducer(state: PrimaryState, event: PrimaryEvent): PrimaryStep {
  if (state.status === 'deposed') return { state, effects: [] };
  switch (event.type) {
    case 'wrote': {
      const next = { ...state, last: Math.max(state.last, event.last), history: event.history ?? state.history };
      return ship(next, [], (after) => after < next.last);
    }
    case 'durable':
      return advance({ ...state, durable: Math.max(state.durable, event.seq) }, []);
    case 'resend': {
      const to = event.to;
      const shipped = new Map(state.shipped);
      for (const [m, seq] of state.matched) if (to === undefined || m === to) shipped.set(m, seq);
      // A snapshot that got no answer is abandoned: the next mismatch sends a fresh one.
      const snapshotting = new Set([...state.snapshotting].filter((m) => to !== undefined && m !== to));
      return ship({ ...state, shipped, snapshotting }, [], (after, m) => (to === undefined || m === to) && after < state.last);
    }
    case 'truncated':
      return { state: event.base > state.base ? { ...state, base: event.base } : state, effects: [] };
    case 'message':
      return onMessage(state, event.from, event.msg);
  }
}

function onMessage(state: PrimaryState, from: number, msg: ReplicationMessage): PrimaryStep {
  if (!state.matched.has(from)) return { state, effects: [] }; // not a member of this epoch's sets
  switch (msg.type) {
    case 'appended': {
      if (!sameEpoch(msg.epoch, state.epoch)) return { state, effects: [] }; // an older epoch's answer
      const had = state.matched.get(from)!;
      if (state.snapshotting.has(from) && msg.seq >= state.base) {
        // The snapshot is installed: appends go on from where the member now ends.
        const snapshotting = new Set(state.snapshotting);
        snapshotting.delete(from);
        const shipped = new Map(state.shipped).set(from, Math.min(msg.seq, state.last));
        const matched = msg.seq > had ? new Map(state.matched).set(from, Math.min(msg.seq, state.last)) : state.matched;
        const next = advance({ ...state, matched, shipped, snapshotting }, []);
        return ship(next.state, next.effects, (after, to) => to === from && after < next.state.last);
      }
      if (msg.seq <= had) return { state, effects: [] };
      const matched = new Map(state.matched).set(from, Math.min(msg.seq, state.last));
      return advance({ ...state, matched }, []);
    }
    case 'stale': {
      const deposed = { ...state, status: 'deposed' as const };
      return { state: deposed, effects: [{ type: 'step-down', p: state.p, epoch: state.epoch, promised: msg.promised }] };
    }
    case 'mismatch': {
      if (!sameEpoch(msg.epoch, state.epoch)) return { state, effects: [] };
      const match = matchPoint(state.history, state.last, msg.history, msg.last.seq);
      if (match < state.base) {
        if (state.snapshotting.has(from)) return { state, effects: [] }; // one is on its way
        return { state: { ...state, snapshotting: new Set(state.snapshotting).add(from) }, effects: [{ type: 'snapshot', to: from }] };
      }
      const shipped = new Map(state.shipped).set(from, match);
      return ship({ ...state, shipped }, [], (after, to) => to === from && after < state.last);
    }
    default:
      return { state, effects: [] };
  }
}

/**
 * Ships the tail to every peer `want` selects, and marks it shipped. A peer behind the base gets
 * the entries after the base: it answers `mismatch` if it lacks the base, and then a snapshot.
 */
function ship(state: PrimaryState, effects: PrimaryEffect[], want: (after: number, to: number) => boolean): PrimaryStep {
  let shipped: Map<number, number> | undefined;
  for (const [to, after] of state.shipped) {
    if (state.snapshotting.has(to) || !want(after, to)) continue;
    effects.push({ type: 'ship', to, after: Math.max(after, state.base), last: state.last, commit: state.commit });
    (shipped ??= new Map(state.shipped)).set(to, state.last);
  }
  return { state: shipped ? { ...state, shipped } : state, effects };
}

/**
 * Moves the commit point to the highest seq W members of every set hold — every set until the
 * start entry commits; after that the epoch's own set (named last) alone, since its start entry
 * reached W of every older set and so fenced them.
 */
function advance(state: PrimaryState, effects: PrimaryEffect[]): PrimaryStep {
  let commit = Infinity;
  const sets = state.commit >= state.startSeq ? state.sets.slice(-1) : state.sets;
  for (const set of sets) {
    const held = set.members.map((m) => (m === state.self ? state.durable : (state.matched.get(m) ?? 0))).sort((a, b) => b - a);
    commit = Math.min(commit, held[set.w - 1] ?? 0);
  }
  if (!(commit > state.commit) || commit < state.startSeq) return { state, effects };
  effects.push({ type: 'commit', p: state.p, seq: commit });
  if (state.commit < state.startSeq) effects.push({ type: 'established', p: state.p, epoch: state.epoch });
  return { state: { ...state, commit }, effects };
}

/** The epoch's own set: named last (earlier ones are the old sets a joint fence also counts). */
export function ownSet(state: PrimaryState): ReplicaSet {
  return state.sets[state.sets.length - 1]!;
}

/**
 * Where the log may be truncated (I5): the highest seq the primary applied and every member of
 * the epoch's own set (named last) confirmed in this epoch. A member that is down holds it back
 * until membership replaces it (the next epoch's set no longer names it).
 */
export function truncationPoint(state: PrimaryState, applied: number): number {
  let t = Math.min(applied, state.last);
  for (const m of ownSet(state).members) if (m !== state.self) t = Math.min(t, state.matched.get(m) ?? 0);
  return t;
}
