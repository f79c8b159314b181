import {
  compareEpoch,
  comparePosition,
  everySetHas,
  fenceQuorum,
  matchPoint,
  membersOf,
  sameEpoch,
  type Epoch,
  type EpochHistory,
  type EpochStart,
  type Position,
  type ReplicaSet,
} from './epoch.ts';
import type { ReplicationMessage } from './messages.ts';

/**
 * Becoming primary of one partition (REPLICATION.md, steps 1–5), as a pure reducer. Membership
 * only proposes a candidate; this fence decides.
 *
 * ```
 *   start ─► prepare(e) to every member of C ∪ S′ ─► promises ─► q(S) clean ones for every S in C?
 *                                                       │ no: wait (timeout → unavailable)
 *                                                       ▼ yes
 *            the highest position among respondents ─► fetch what we lack (truncating our own
 *            divergent tail by epoch) ─► write the start entry naming C and S′ ─► primary
 * ```
 *
 * C is the set(s) still in force: those of the latest epoch some respondent knows established
 * (its commit point reached that epoch's start), plus the sets of any later start entry not
 * known established. Every promise can widen C; a newly named member gets its prepare then.
 * With fewer than q clean promises for some set in C the partition stays unavailable rather than
 * unsafe.
 *
 * Founding: while no respondent holds any history, C is only S′ — which says nothing about
 * whether the partition is new or whether its history lives on nodes the candidate has not heard
 * from (a set of two under W = 2 has q = 1: the candidate's own promise). So a fence that knows
 * no history also waits for promises from N − W + 1 of the cluster's N members, down ones
 * counted: every W-subset of the cluster, and so every set that can have committed an entry,
 * then has a respondent, whose history widens C. A `stale` answer means a later epoch exists: the candidate gives up (the driver backs
 * off with jitter and retries only while membership still proposes it).
 */
export interface Respondent {
  readonly last: Position;
  readonly history: EpochHistory;
  readonly commit: number;
}

export type CandidatePhase = 'preparing' | 'recovering' | 'starting' | 'stale' | 'unavailable';

export interface CandidateState {
  readonly p: number;
  readonly self: number;
  readonly epoch: Epoch;
  /** S′: the set membership proposes for the new epoch, the candidate first. */
  readonly proposed: ReplicaSet;
  /** C: the sets still in force, which the fence must cover. */
  readonly inForce: readonly ReplicaSet[];
  readonly asked: ReadonlySet<number>;
  /** Clean promises, the candidate's own included. */
  readonly promises: ReadonlyMap<number, Respondent>;
  readonly phase: CandidatePhase;
  /** Founding (no respondent holds history): the members asked besides C ∪ S′, and the promises needed. */
  readonly cluster?: FoundingQuorum;
}

/** The cluster as the candidate knows it: `ask` the members up now, `size` every member, down ones included. */
export interface ClusterView {
  readonly ask: readonly number[];
  readonly size: number;
}

interface FoundingQuorum {
  readonly ask: readonly number[];
  readonly need: number;
}

export type CandidateEvent =
  | { type: 'message'; from: number; msg: ReplicationMessage }
  /** The fetch from the source finished: the candidate's own log now ends at `last`. */
  | { type: 'fetched'; last: Position; history: EpochHistory }
  /** The fence did not complete in time. */
  | { type: 'timeout' };

export type CandidateEffect =
  | { type: 'persist-promise'; p: number; epoch: Epoch }
  | { type: 'send'; to: number; msg: ReplicationMessage }
  /** Copy `source`'s entries after `after` into the own log, truncating the own log past `after` first. */
  | { type: 'fetch'; p: number; source: number; after: number; upTo: Position }
  /** Append the epoch's start entry at `start.startSeq` and serve as primary once it commits. */
  | { type: 'write-start'; p: number; start: EpochStart; known: ReadonlyMap<number, number> }
  | { type: 'stale'; p: number; epoch: Epoch; promised: Epoch }
  | { type: 'unavailable'; p: number; epoch: Epoch; missing: number[] };

export interface CandidateStep {
  state: CandidateState;
  effects: CandidateEffect[];
}

export interface CandidateInit {
  p: number;
  self: number;
  /** Above every term this node has seen or promised (step 1). */
  epoch: Epoch;
  proposed: ReplicaSet;
  /** The candidate's own replica of the partition. */
  own: Respondent & { clean: boolean };
  /** The cluster, for a fence that finds no history (founding); without it, S′ alone decides. */
  cluster?: ClusterView;
}

/** Step 1 and 2: promise our own epoch (on disk first), then ask every member of C ∪ S′. */
export function startCandidate(init: CandidateInit): CandidateStep {
  const { p, self, epoch, proposed, own, cluster } = init;
  const promises = new Map<number, Respondent>();
  if (own.clean) promises.set(self, { last: own.last, history: own.history, commit: own.commit });
  const state: CandidateState = {
    p,
    self,
    epoch,
    proposed,
    inForce: setsInForce([own], proposed),
    asked: new Set([self]),
    promises,
    phase: 'preparing',
    ...(cluster && { cluster: { ask: cluster.ask, need: Math.max(1, cluster.size - proposed.w + 1) } }),
  };
  return check(state, [{ type: 'persist-promise', p, epoch }]);
}

export function candidateReducer(state: CandidateState, event: CandidateEvent): CandidateStep {
  if (state.phase === 'stale' || state.phase === 'unavailable') return { state, effects: [] };
  switch (event.type) {
    case 'timeout': {
      if (state.phase !== 'preparing') return { state, effects: [] };
      const missing = membersOf(founding(state) ? [...state.inForce, { members: [...state.cluster!.ask], w: 1 }] : state.inForce).filter(
        (m) => !state.promises.has(m),
      );
      return { state: { ...state, phase: 'unavailable' }, effects: [{ type: 'unavailable', p: state.p, epoch: state.epoch, missing }] };
    }
    case 'fetched': {
      if (state.phase !== 'recovering') return { state, effects: [] };
      // An unclean candidate had no promise of its own: it counts once it holds the source's log.
      const own = { commit: 0, ...state.promises.get(state.self), last: event.last, history: event.history };
      return writeStart({ ...state, promises: new Map(state.promises).set(state.self, own) }, []);
    }
    case 'message':
      return onMessage(state, event.from, event.msg);
  }
}

function onMessage(state: CandidateState, from: number, msg: ReplicationMessage): CandidateStep {
  if (state.phase !== 'preparing' || !sameEpoch(msg.epoch, state.epoch)) return { state, effects: [] };
  switch (msg.type) {
    case 'promise': {
      if (!state.asked.has(from)) return { state, effects: [] };
      const promises = new Map(state.promises).set(from, { last: msg.last, history: msg.history, commit: msg.commit });
      const inForce = setsInForce([...promises.values()], state.proposed);
      return check({ ...state, promises, inForce }, []);
    }
    // An unclean replica does not count: it is only one fewer promise to wait for.
    case 'unclean':
      return { state, effects: [] };
    case 'stale':
      return {
        state: { ...state, phase: 'stale' },
        effects: [{ type: 'stale', p: state.p, epoch: state.epoch, promised: msg.promised }],
      };
    default:
      return { state, effects: [] };
  }
}

/** Asks members not asked yet; once every set in force has its fencing quorum, recovers. */
function check(state: CandidateState, effects: CandidateEffect[]): CandidateStep {
  const isFounding = founding(state);
  const everyone = membersOf([...state.inForce, state.proposed]);
  if (isFounding) for (const m of state.cluster!.ask) if (!everyone.includes(m)) everyone.push(m);
  const newlyAsked = everyone.filter((m) => !state.asked.has(m));
  if (newlyAsked.length > 0) {
    state = { ...state, asked: new Set([...state.asked, ...newlyAsked]) };
    for (const to of newlyAsked) effects.push({ type: 'send', to, msg: { type: 'prepare', p: state.p, epoch: state.epoch } });
  }
  if (!everySetHas(state.inForce, fenceQuorum, (m) => state.promises.has(m))) return { state, effects };
  if (isFounding && state.promises.size < state.cluster!.need) return { state, effects };
  // Step 4: the highest position among the respondents holds every acknowledged entry.
  let source = state.self;
  let best = state.promises.get(state.self);
  for (const [node, r] of state.promises) {
    if (best === undefined || comparePosition(r.last, best.last) > 0) {
      source = node;
      best = r;
    }
  }
  // Our own log is the first `best`, replaced only by a strictly higher position: a tie keeps it.
  if (source === state.self) return writeStart(state, effects);
  const own = state.promises.get(state.self);
  const after = own === undefined ? 0 : matchPoint(own.history, own.last.seq, best!.history, best!.last.seq);
  effects.push({ type: 'fetch', p: state.p, source, after, upTo: best!.last });
  return { state: { ...state, phase: 'recovering' }, effects };
}

/** Step 5: the start entry names C and S′ (joint); it commits only on W of every one of them. */
function writeStart(state: CandidateState, effects: CandidateEffect[]): CandidateStep {
  const own = state.promises.get(state.self)!;
  // S′ is named last: once the epoch is established, it alone is in force (see setsInForce).
  const sets = [...dedupeSets(state.inForce).filter((s) => !sameSet(s, state.proposed)), state.proposed];
  const start: EpochStart = { epoch: state.epoch, startSeq: own.last.seq + 1, sets };
  // Shipping starts from what each respondent is known to share with the candidate's log.
  const known = new Map<number, number>();
  for (const [node, r] of state.promises) {
    if (node !== state.self) known.set(node, matchPoint(own.history, own.last.seq, r.history, r.last.seq));
  }
  effects.push({ type: 'write-start', p: state.p, start, known });
  return { state: { ...state, phase: 'starting' }, effects };
}

/** No respondent so far holds any history: the partition may be new, or its history elsewhere. */
function founding(state: CandidateState): boolean {
  if (state.cluster === undefined) return false;
  for (const r of state.promises.values()) if (r.history.length > 0) return false;
  return true;
}

/**
 * C from what the respondents hold: the sets of the latest epoch some respondent knows
 * established, and of every later start entry not known established. A partition nobody has
 * written yet has only the proposed set.
 */
export function setsInForce(respondents: readonly Respondent[], proposed: ReplicaSet): ReplicaSet[] {
  let established: EpochStart | undefined;
  const starts: EpochStart[] = [];
  for (const r of respondents) {
    for (const h of r.history) {
      if (!starts.some((s) => sameEpoch(s.epoch, h.epoch))) starts.push(h);
      if (r.commit >= h.startSeq && (established === undefined || compareEpoch(h.epoch, established.epoch) > 0)) established = h;
    }
  }
  if (starts.length === 0) return [proposed];
  // Once an epoch is established its start entry committed on W of every set it named, so no
  // older W-set can form any more: only its own new set (named last) stays in force.
  const sets: ReplicaSet[] = established ? [established.sets[established.sets.length - 1]!] : [];
  for (const s of starts) if (established === undefined || compareEpoch(s.epoch, established.epoch) > 0) sets.push(...s.sets);
  return dedupeSets(sets);
}

function dedupeSets(sets: readonly ReplicaSet[]): ReplicaSet[] {
  const out: ReplicaSet[] = [];
  for (const s of sets) if (!out.some((o) => sameSet(o, s))) out.push(s);
  return out;
}

/** Same members (in any order) and the same W. */
export function sameSet(a: ReplicaSet, b: ReplicaSet): boolean {
  if (a.w !== b.w || a.members.length !== b.members.length) return false;
  return a.members.every((m) => b.members.includes(m));
}
