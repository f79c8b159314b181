/**
 * The edges of the replication reducers that the protocol tables do not reach: repeated and
 * out-of-phase messages, exact effect lists, and the bookkeeping the model relies on (found by
 * mutation testing: each case here kills mutants that survived reducers.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { candidateReducer, setsInForce, startCandidate } from '../../src/replication/candidate.ts';
import { compareEpoch, endOfEpoch, matchPoint, sameEpoch, type Epoch } from '../../src/replication/epoch.ts';
import type { LogEntry } from '../../src/replication/messages.ts';
import { createPrimaryState, primaryReducer } from '../../src/replication/primary.ts';
import { createReplicaState, replicaReducer } from '../../src/replication/replica.ts';

const e = (term: number, node: number): Epoch => ({ term, node });
const S = { members: [1, 2, 3], w: 2 };
const start = (term: number, node: number, startSeq: number, sets = [S]) => ({ epoch: e(term, node), startSeq, sets });
const entries = (epoch: Epoch, from: number, to: number): LogEntry[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ seq: from + i, epoch }));
const types = (effects: Array<{ type: string; msg?: { type: string } }>) =>
  effects.map((x) => (x.msg ? `${x.type}:${x.msg.type}` : x.type));

describe('epoch helpers at their edges', () => {
  it.each([
    [e(1, 2), e(1, 2), true],
    [e(1, 2), e(1, 3), false],
    [e(1, 2), e(2, 2), false],
  ])('sameEpoch(%o, %o) = %s', (a, b, same) => {
    expect(sameEpoch(a, b)).toBe(same);
    expect(compareEpoch(a, b) === 0).toBe(same);
  });

  it('an epoch whose only entry is seq 0 (never written) ends before 1', () => {
    const h = [start(1, 1, 1), start(2, 2, 1)];
    expect(endOfEpoch(h, 5, e(1, 1))).toBe(0);
    // The first common epoch ends at 0 on one side: the logs share nothing.
    expect(matchPoint(h, 5, [start(1, 1, 1)], 4)).toBe(0);
  });
});

describe('replica reducer edges', () => {
  const at = (promised: Epoch, last: number) =>
    createReplicaState(0, { promised, last: { epoch: e(1, 1), seq: last }, history: [start(1, 1, 1)], commit: 0 });

  it('mark-unclean twice persists once', () => {
    const once = replicaReducer(at(e(1, 1), 5), { type: 'mark-unclean' });
    expect(once.effects).toEqual([{ type: 'persist-clean', p: 0, clean: false }]);
    expect(once.state.uncleanAt).toEqual(e(1, 1));
    expect(replicaReducer(once.state, { type: 'mark-unclean' }).effects).toEqual([]);
  });

  it('an append of the promised epoch persists no promise; a later one does', () => {
    const same = replicaReducer(at(e(1, 1), 5), {
      type: 'message',
      from: 1,
      msg: { type: 'append', p: 0, epoch: e(1, 1), prev: { epoch: e(1, 1), seq: 5 }, entries: [], commit: 0 },
    });
    expect(types(same.effects)).toEqual(['send:appended']);
    const later = replicaReducer(at(e(1, 1), 5), {
      type: 'message',
      from: 2,
      msg: { type: 'append', p: 0, epoch: e(2, 2), prev: { epoch: e(1, 1), seq: 5 }, entries: [], commit: 0 },
    });
    expect(types(later.effects)).toEqual(['persist-promise', 'send:appended']);
    expect(later.state.promised).toEqual(e(2, 2));
  });

  it('prev at seq 0 matches any log (the start of every log)', () => {
    const step = replicaReducer(at(e(1, 1), 5), {
      type: 'message',
      from: 1,
      msg: { type: 'append', p: 0, epoch: e(1, 1), prev: { epoch: e(0, 0), seq: 0 }, entries: entries(e(1, 1), 1, 2), commit: 0 },
    });
    expect(step.effects.at(-1)).toEqual({ type: 'send', to: 1, msg: { type: 'appended', p: 0, epoch: e(1, 1), seq: 2 } });
    expect(step.state.last.seq).toBe(5); // duplicates: the longer log stays
  });

  it('a divergent tail is cut exactly before the first entry of another epoch', () => {
    const step = replicaReducer(at(e(1, 1), 5), {
      type: 'message',
      from: 2,
      msg: {
        type: 'append',
        p: 0,
        epoch: e(2, 2),
        prev: { epoch: e(1, 1), seq: 2 },
        entries: [{ seq: 3, epoch: e(2, 2), start: start(2, 2, 3) }],
        commit: 0,
      },
    });
    expect(step.effects).toContainEqual({ type: 'truncate', p: 0, after: 2 });
    expect(step.state.last).toEqual({ epoch: e(2, 2), seq: 3 });
    expect(step.state.history).toEqual([start(1, 1, 1), start(2, 2, 3)]);
  });

  it('an entry out of sequence ends the batch: only the contiguous part is taken', () => {
    const batch = [...entries(e(1, 1), 6, 7), { seq: 9, epoch: e(1, 1) }];
    const step = replicaReducer(at(e(1, 1), 5), {
      type: 'message',
      from: 1,
      msg: { type: 'append', p: 0, epoch: e(1, 1), prev: { epoch: e(1, 1), seq: 5 }, entries: batch, commit: 0 },
    });
    expect(step.state.last.seq).toBe(7);
    expect(step.effects.at(-1)).toMatchObject({ msg: { type: 'appended', seq: 7 } });
  });

  it('an unclean replica stays unclean for an append of the epoch it was found in', () => {
    const unclean = replicaReducer(at(e(3, 3), 5), { type: 'mark-unclean' }).state;
    const step = replicaReducer(unclean, {
      type: 'message',
      from: 3,
      msg: { type: 'append', p: 0, epoch: e(3, 3), prev: { epoch: e(1, 1), seq: 5 }, entries: [], commit: 5 },
    });
    expect(step.state.clean).toBe(false);
    const later = replicaReducer(unclean, {
      type: 'message',
      from: 1,
      msg: { type: 'append', p: 0, epoch: e(4, 1), prev: { epoch: e(1, 1), seq: 5 }, entries: [], commit: 5 },
    });
    expect(later.state.clean).toBe(true);
    expect(later.effects).toContainEqual({ type: 'persist-clean', p: 0, clean: true });
  });
});

describe('primary reducer edges', () => {
  const init = (extra = {}) =>
    createPrimaryState({
      p: 0,
      self: 1,
      epoch: e(2, 1),
      sets: [S],
      startSeq: 6,
      history: [start(1, 1, 1), start(2, 1, 6)],
      last: 6,
      durable: 6,
      ...extra,
    });
  const appended = (from: number, seq: number, epoch = e(2, 1)) =>
    ({ type: 'message', from, msg: { type: 'appended', p: 0, epoch, seq } }) as const;

  it('tracks the peers only, not itself', () => {
    expect([...init().matched.keys()]).toEqual([2, 3]);
  });

  it('ships a new tail once per peer, and nothing when nothing is new', () => {
    const s = primaryReducer(init(), { type: 'wrote', last: 8 });
    expect(s.effects).toEqual([
      { type: 'ship', to: 2, after: 0, last: 8, commit: 0 },
      { type: 'ship', to: 3, after: 0, last: 8, commit: 0 },
    ]);
    expect(primaryReducer(s.state, { type: 'wrote', last: 8 }).effects).toEqual([]);
  });

  it('resend ships only to peers that have not confirmed the tail, from what they confirmed', () => {
    let s = primaryReducer(init(), { type: 'wrote', last: 8 }).state;
    s = primaryReducer(s, appended(2, 8)).state;
    s = primaryReducer(s, appended(3, 4)).state;
    expect(primaryReducer(s, { type: 'resend' }).effects).toEqual([{ type: 'ship', to: 3, after: 4, last: 8, commit: 6 }]); // own store at 6
  });

  it('an appended at or below what a peer confirmed changes nothing', () => {
    let s = primaryReducer(init(), { type: 'wrote', last: 8 }).state;
    s = primaryReducer(s, appended(2, 7)).state;
    expect(primaryReducer(s, appended(2, 7)).effects).toEqual([]);
    expect(primaryReducer(s, appended(2, 5)).state.matched.get(2)).toBe(7);
  });

  it('a mismatch of another epoch is ignored; one of this epoch ships to its sender only', () => {
    const s = primaryReducer(init(), { type: 'wrote', last: 8 }).state;
    const old = { type: 'mismatch', p: 0, epoch: e(1, 1), last: { epoch: e(1, 1), seq: 3 }, history: [start(1, 1, 1)] } as const;
    expect(primaryReducer(s, { type: 'message', from: 3, msg: old }).effects).toEqual([]);
    const now = { ...old, epoch: e(2, 1) };
    expect(primaryReducer(s, { type: 'message', from: 3, msg: now }).effects).toEqual([
      { type: 'ship', to: 3, after: 3, last: 8, commit: 0 },
    ]);
  });

  it('commit never goes back, and "established" is said once', () => {
    let s = primaryReducer(init(), { type: 'wrote', last: 8 }).state;
    const first = primaryReducer(s, appended(2, 7));
    expect(types(first.effects)).toEqual(['commit', 'established']);
    s = primaryReducer(first.state, { type: 'durable', seq: 8 }).state;
    const more = primaryReducer(s, appended(3, 8));
    expect(more.effects).toEqual([{ type: 'commit', p: 0, seq: 8 }]);
    expect(primaryReducer(more.state, appended(3, 8)).effects).toEqual([]);
  });

  it('starts shipping each peer from what it is known to hold', () => {
    const s = init({
      known: new Map([
        [2, 5],
        [3, 9],
      ]),
    });
    expect(s.shipped).toEqual(
      new Map([
        [2, 5],
        [3, 6],
      ]),
    ); // capped at the primary's own last
  });
});

describe('candidate reducer edges', () => {
  const own = { last: { epoch: e(1, 1), seq: 5 }, history: [start(1, 1, 1)], commit: 5, clean: true };
  const promise = (from: number, seq: number, epoch = e(2, 2), commit = seq) =>
    ({
      type: 'message',
      from,
      msg: { type: 'promise', p: 0, epoch, last: { epoch: e(1, 1), seq }, history: [start(1, 1, 1)], commit },
    }) as const;

  it('a timeout names only the members whose promise is missing', () => {
    let step = startCandidate({ p: 0, self: 2, epoch: e(2, 2), proposed: S, own: { ...own, clean: false } });
    step = candidateReducer(step.state, promise(1, 5));
    step = candidateReducer(step.state, { type: 'message', from: 3, msg: { type: 'unclean', p: 0, epoch: e(2, 2) } });
    expect(step.effects).toEqual([]);
    expect(candidateReducer(step.state, { type: 'timeout' }).effects).toEqual([
      { type: 'unavailable', p: 0, epoch: e(2, 2), missing: [2, 3] },
    ]);
  });

  it('a promise from a node it never asked is ignored', () => {
    const step = startCandidate({ p: 0, self: 2, epoch: e(2, 2), proposed: S, own: { ...own, clean: false } });
    expect(candidateReducer(step.state, promise(9, 5)).state.promises.has(9)).toBe(false);
  });

  it('after the fence is won, more promises and timeouts change nothing', () => {
    let step = startCandidate({ p: 0, self: 2, epoch: e(2, 2), proposed: S, own });
    step = candidateReducer(step.state, promise(1, 5));
    expect(step.state.phase).toBe('starting');
    expect(candidateReducer(step.state, promise(3, 5)).effects).toEqual([]);
    expect(candidateReducer(step.state, { type: 'timeout' }).effects).toEqual([]);
    expect(candidateReducer(step.state, { type: 'fetched', last: own.last, history: own.history }).effects).toEqual([]);
  });

  it('a tie in position keeps its own log: no fetch', () => {
    let step = startCandidate({ p: 0, self: 2, epoch: e(2, 2), proposed: S, own });
    step = candidateReducer(step.state, promise(1, 5));
    expect(types(step.effects)).toEqual(['write-start']);
  });

  it('an unclean candidate fetches everything from a clean source, then starts after it', () => {
    let step = startCandidate({ p: 0, self: 2, epoch: e(2, 2), proposed: S, own: { ...own, clean: false } });
    step = candidateReducer(step.state, promise(1, 4));
    expect(step.effects).toEqual([]); // one clean promise: q(S) = 2 not yet
    step = candidateReducer(step.state, promise(3, 6));
    expect(step.effects).toEqual([{ type: 'fetch', p: 0, source: 3, after: 0, upTo: { epoch: e(1, 1), seq: 6 } }]);
    step = candidateReducer(step.state, { type: 'fetched', last: { epoch: e(1, 1), seq: 6 }, history: [start(1, 1, 1)] });
    expect(step.effects[0]).toMatchObject({ type: 'write-start', start: { startSeq: 7 } });
  });

  it('a promise naming a later, unestablished epoch widens the sets in force and prepares their members', () => {
    const step = startCandidate({ p: 0, self: 2, epoch: e(5, 2), proposed: S, own });
    const wider = {
      last: { epoch: e(4, 4), seq: 6 },
      history: [start(1, 1, 1), start(4, 4, 6, [{ members: [4, 5, 6], w: 2 }])],
      commit: 5,
    };
    const next = candidateReducer(step.state, { type: 'message', from: 1, msg: { type: 'promise', p: 0, epoch: e(5, 2), ...wider } });
    expect(next.state.inForce).toEqual([S, { members: [4, 5, 6], w: 2 }]);
    expect(next.effects.filter((x) => x.type === 'send').map((x) => (x as { to: number }).to)).toEqual([4, 5, 6]);
  });

  it.each([
    ['a start entry whose seq the commit point reached is established', 6, [{ members: [4, 5, 6], w: 2 }]],
    ['one the commit point has not reached is not: the sets before it stay in force', 5, [S, { members: [4, 5, 6], w: 2 }]],
  ])('sets in force: %s', (_, commit, sets) => {
    const r = { last: { epoch: e(4, 4), seq: 8 }, history: [start(1, 1, 1), start(4, 4, 6, [{ members: [4, 5, 6], w: 2 }])], commit };
    expect(setsInForce([r], S)).toEqual(sets);
  });

  it('sets in force: the same set named twice, in another order, counts once', () => {
    const r = {
      last: { epoch: e(2, 2), seq: 3 },
      history: [
        start(1, 1, 1),
        start(2, 2, 3, [
          { members: [10, 2, 3], w: 2 },
          { members: [3, 10, 2], w: 2 },
        ]),
      ],
      commit: 1,
    };
    expect(setsInForce([r], S)).toEqual([S, { members: [10, 2, 3], w: 2 }]);
  });
});
