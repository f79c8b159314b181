import { describe, expect, it } from 'vitest';
import { startCandidate, candidateReducer, setsInForce } from '../../src/replication/candidate.ts';
import type { Epoch, EpochHistory } from '../../src/replication/epoch.ts';
import type { LogEntry } from '../../src/replication/messages.ts';
import { createPrimaryState, primaryReducer } from '../../src/replication/primary.ts';
import { createReplicaState, replicaReducer, type ReplicaState } from '../../src/replication/replica.ts';
import { PartitionModel } from './model.ts';

const e = (term: number, node: number): Epoch => ({ term, node });
const S = { members: [1, 2, 3], w: 2 };
const start = (term: number, node: number, startSeq: number) => ({ epoch: e(term, node), startSeq, sets: [S] });
const entries = (epoch: Epoch, from: number, to: number): LogEntry[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ seq: from + i, epoch, data: `${epoch.term}/${from + i}` }));

/** A replica holding epoch (1,1) entries 1..5 with its start entry at 1, promised (1,1). */
function replicaAt5(): ReplicaState {
  return createReplicaState(0, {
    promised: e(1, 1),
    last: { epoch: e(1, 1), seq: 5 },
    history: [start(1, 1, 1)],
    commit: 3,
  });
}

describe('replica reducer', () => {
  it.each([
    ['a higher epoch: promised on disk, then answered', e(2, 3), ['persist-promise', 'send:promise']],
    ['the same epoch again (a retransmitted prepare): answered, nothing persisted', e(1, 1), ['send:promise']],
    ['a lower epoch: stale, nothing persisted', e(0, 9), ['send:stale']],
  ])('prepare, %s', (_, epoch, effects) => {
    const step = replicaReducer(replicaAt5(), { type: 'message', from: 9, msg: { type: 'prepare', p: 0, epoch } });
    expect(step.effects.map((x) => (x.type === 'send' ? `send:${x.msg.type}` : x.type))).toEqual(effects);
  });

  it('an unclean store promises but answers unclean, so it does not count', () => {
    const unclean = replicaReducer(replicaAt5(), { type: 'mark-unclean' }).state;
    const step = replicaReducer(unclean, { type: 'message', from: 2, msg: { type: 'prepare', p: 0, epoch: e(2, 2) } });
    expect(step.state.promised).toEqual(e(2, 2));
    expect(step.effects.at(-1)).toMatchObject({ type: 'send', msg: { type: 'unclean' } });
  });

  it('a promise carries position, history and commit point', () => {
    const step = replicaReducer(replicaAt5(), { type: 'message', from: 2, msg: { type: 'prepare', p: 0, epoch: e(2, 2) } });
    expect(step.effects.at(-1)).toEqual({
      type: 'send',
      to: 2,
      msg: { type: 'promise', p: 0, epoch: e(2, 2), last: { epoch: e(1, 1), seq: 5 }, history: [start(1, 1, 1)], commit: 3 },
    });
  });

  const append = (epoch: Epoch, prev: { epoch: Epoch; seq: number }, es: LogEntry[], commit = 0) =>
    ({ type: 'message', from: 1, msg: { type: 'append', p: 0, epoch, prev, entries: es, commit } }) as const;

  it.each([
    [
      'appends after a matching prev and confirms',
      append(e(1, 1), { epoch: e(1, 1), seq: 5 }, entries(e(1, 1), 6, 7), 6),
      ['persist-entries', 'commit', 'send:appended'],
      7,
    ],
    ['a duplicate is confirmed without a write', append(e(1, 1), { epoch: e(1, 1), seq: 3 }, entries(e(1, 1), 4, 5)), ['send:appended'], 5],
    ['a gap after its log: mismatch', append(e(1, 1), { epoch: e(1, 1), seq: 9 }, entries(e(1, 1), 10, 10)), ['send:mismatch'], 5],
    [
      'prev of another epoch: mismatch',
      append(e(2, 2), { epoch: e(2, 2), seq: 5 }, entries(e(2, 2), 6, 6)),
      ['persist-promise', 'send:mismatch'],
      5,
    ],
    ['an older epoch: stale, nothing written', append(e(0, 7), { epoch: e(1, 1), seq: 5 }, entries(e(0, 7), 6, 6)), ['send:stale'], 5],
  ])('append: %s', (_, event, effects, last) => {
    const step = replicaReducer(replicaAt5(), event);
    expect(step.effects.map((x) => (x.type === 'send' ? `send:${x.msg.type}` : x.type))).toEqual(effects);
    expect(step.state.last.seq).toBe(last);
  });

  it('a divergent tail is truncated by epoch before the new entries land (I4)', () => {
    // Epoch (2,2) starts at 4: entries 4..5 of epoch (1,1) were a deposed primary's tail.
    const newEpoch = [{ seq: 4, epoch: e(2, 2), start: start(2, 2, 4) }, ...entries(e(2, 2), 5, 6)];
    const step = replicaReducer(replicaAt5(), append(e(2, 2), { epoch: e(1, 1), seq: 3 }, newEpoch, 4));
    expect(step.effects.map((x) => x.type)).toEqual(['persist-promise', 'truncate', 'persist-entries', 'commit', 'send']);
    expect(step.effects[1]).toEqual({ type: 'truncate', p: 0, after: 3 });
    expect(step.state.last).toEqual({ epoch: e(2, 2), seq: 6 });
    expect(step.state.history.map((h) => h.startSeq)).toEqual([1, 4]);
  });

  it('an unclean replica becomes clean once a later primary caught it up to its commit point', () => {
    const unclean = replicaReducer(replicaAt5(), { type: 'mark-unclean' }).state;
    const short = replicaReducer(
      unclean,
      append(e(2, 2), { epoch: e(1, 1), seq: 5 }, [{ seq: 6, epoch: e(2, 2), start: start(2, 2, 6) }], 7),
    );
    expect(short.state.clean).toBe(false); // 6 < commit 7
    const caught = replicaReducer(short.state, append(e(2, 2), { epoch: e(2, 2), seq: 6 }, entries(e(2, 2), 7, 7), 7));
    expect(caught.state.clean).toBe(true);
  });
});

describe('primary reducer', () => {
  const init = () =>
    createPrimaryState({
      p: 0,
      self: 1,
      epoch: e(2, 1),
      sets: [S],
      startSeq: 6,
      history: [start(1, 1, 1), start(2, 1, 6)],
      last: 6,
      durable: 6,
    });

  it('commits once W members hold an entry, never before its own start entry', () => {
    let s = init();
    let step = primaryReducer(s, { type: 'message', from: 2, msg: { type: 'appended', p: 0, epoch: e(2, 1), seq: 5 } });
    expect(step.effects).toEqual([]); // 5 < startSeq: older entries do not commit by counting
    s = step.state;
    step = primaryReducer(s, { type: 'message', from: 2, msg: { type: 'appended', p: 0, epoch: e(2, 1), seq: 6 } });
    expect(step.effects).toEqual([
      { type: 'commit', p: 0, seq: 6 },
      { type: 'established', p: 0, epoch: e(2, 1) },
    ]);
  });

  it('the primary counts itself only up to what its own store committed', () => {
    let s = primaryReducer(init(), { type: 'wrote', last: 8 }).state;
    s = primaryReducer(s, { type: 'message', from: 2, msg: { type: 'appended', p: 0, epoch: e(2, 1), seq: 8 } }).state;
    expect(s.commit).toBe(6); // own durable is 6
    const step = primaryReducer(s, { type: 'durable', seq: 8 });
    expect(step.state.commit).toBe(8);
  });

  it('joint sets: an entry commits only on W members of every set', () => {
    let s = createPrimaryState({
      p: 0,
      self: 1,
      epoch: e(3, 1),
      sets: [S, { members: [1, 4, 5], w: 2 }],
      startSeq: 1,
      history: [],
      last: 1,
      durable: 1,
    });
    s = primaryReducer(s, { type: 'message', from: 2, msg: { type: 'appended', p: 0, epoch: e(3, 1), seq: 1 } }).state;
    expect(s.commit).toBe(0);
    s = primaryReducer(s, { type: 'message', from: 5, msg: { type: 'appended', p: 0, epoch: e(3, 1), seq: 1 } }).state;
    expect(s.commit).toBe(1);
  });

  it.each([
    ['an appended of another epoch is ignored', 2, e(1, 1)],
    ['a non-member is ignored', 7, e(2, 1)],
  ])('%s', (_, from, epoch) => {
    const msg = { type: 'appended', p: 0, epoch, seq: 9 } as const;
    expect(primaryReducer(init(), { type: 'message', from, msg }).effects).toEqual([]);
  });

  it('stale: steps down at once and ignores everything after', () => {
    const step = primaryReducer(init(), { type: 'message', from: 3, msg: { type: 'stale', p: 0, epoch: e(2, 1), promised: e(3, 3) } });
    expect(step.effects).toEqual([{ type: 'step-down', p: 0, epoch: e(2, 1), promised: e(3, 3) }]);
    expect(
      primaryReducer(step.state, { type: 'message', from: 2, msg: { type: 'appended', p: 0, epoch: e(2, 1), seq: 6 } }).effects,
    ).toEqual([]);
  });

  it('mismatch: ships again from the match point found by epoch', () => {
    let s = primaryReducer(init(), { type: 'wrote', last: 9 }).state;
    const theirs: EpochHistory = [start(1, 1, 1)];
    const step = primaryReducer(s, {
      type: 'message',
      from: 3,
      msg: { type: 'mismatch', p: 0, epoch: e(2, 1), last: { epoch: e(1, 1), seq: 8 }, history: theirs },
    });
    // Their epoch (1,1) runs to 8, ours to 5: the logs agree through 5.
    expect(step.effects).toEqual([{ type: 'ship', to: 3, after: 5, last: 9, commit: 0 }]);
    s = step.state;
  });
});

describe('candidate reducer', () => {
  const own = { last: { epoch: e(1, 1), seq: 5 }, history: [start(1, 1, 1)], commit: 5, clean: true };

  it('prepares every member, waits for q(S) clean promises, then writes its start entry', () => {
    let step = startCandidate({ p: 0, self: 2, epoch: e(2, 2), proposed: { members: [2, 3, 1], w: 2 }, own });
    expect(step.effects.map((x) => (x.type === 'send' ? `prepare→${x.to}` : x.type))).toEqual([
      'persist-promise',
      'prepare→1',
      'prepare→3',
    ]);
    step = candidateReducer(step.state, {
      type: 'message',
      from: 3,
      msg: { type: 'promise', p: 0, epoch: e(2, 2), last: { epoch: e(1, 1), seq: 4 }, history: [start(1, 1, 1)], commit: 4 },
    });
    expect(step.effects).toEqual([
      {
        type: 'write-start',
        p: 0,
        // The same members as the old set S: one set, the proposed one (candidate first), named last.
        start: { epoch: e(2, 2), startSeq: 6, sets: [{ members: [2, 3, 1], w: 2 }] },
        known: new Map([[3, 4]]),
      },
    ]);
  });

  it('fetches from the respondent with the highest position, then starts after it', () => {
    const behind = { ...own, last: { epoch: e(1, 1), seq: 3 }, commit: 3 };
    let step = startCandidate({ p: 0, self: 2, epoch: e(2, 2), proposed: S, own: behind });
    step = candidateReducer(step.state, {
      type: 'message',
      from: 1,
      msg: { type: 'promise', p: 0, epoch: e(2, 2), last: { epoch: e(1, 1), seq: 7 }, history: [start(1, 1, 1)], commit: 5 },
    });
    expect(step.effects).toEqual([{ type: 'fetch', p: 0, source: 1, after: 3, upTo: { epoch: e(1, 1), seq: 7 } }]);
    step = candidateReducer(step.state, { type: 'fetched', last: { epoch: e(1, 1), seq: 7 }, history: [start(1, 1, 1)] });
    expect(step.effects[0]).toMatchObject({ type: 'write-start', start: { startSeq: 8 } });
  });

  it('unclean answers do not count; too few clean ones time out as unavailable', () => {
    let step = startCandidate({ p: 0, self: 2, epoch: e(2, 2), proposed: S, own: { ...own, clean: false } });
    step = candidateReducer(step.state, { type: 'message', from: 3, msg: { type: 'unclean', p: 0, epoch: e(2, 2) } });
    expect(step.effects).toEqual([]);
    step = candidateReducer(step.state, { type: 'timeout' });
    expect(step.effects).toEqual([{ type: 'unavailable', p: 0, epoch: e(2, 2), missing: [1, 2, 3] }]);
  });

  describe('founding: a fence that finds no history waits for N − W + 1 of the cluster (seed 269)', () => {
    const empty = { last: { epoch: e(0, 0), seq: 0 }, history: [], commit: 0, clean: true };
    const pair = { members: [2, 1], w: 2 }; // q = 1: the candidate's own promise would do
    const promise = (from: number, history: EpochHistory, seq: number) =>
      ({
        type: 'message',
        from,
        msg: { type: 'promise', p: 0, epoch: e(2, 2), last: { epoch: history.at(-1)?.epoch ?? e(0, 0), seq }, history, commit: seq },
      }) as const;
    const effectsOf = (effects: ReturnType<typeof startCandidate>['effects']) =>
      effects.map((x) => (x.type === 'send' ? `${x.msg.type}→${x.to}` : x.type));

    it.each([
      // [cluster size (down members counted), promises from these members, with history?, then]
      ['3 members, none answered', 3, [], 'waits'],
      ['3 members, one empty answer', 3, [1], 'writes'],
      ['5 members (two down), two empty answers', 5, [1, 3], 'waits'],
      ['5 members (two down), three empty answers', 5, [1, 3, 4], 'writes'],
      ['1 member (alone in the cluster)', 1, [], 'writes'],
    ] as const)('%s: %s', (_, size, from, then) => {
      const ask = [1, 3, 4, 5].slice(0, size - 1);
      let step = startCandidate({ p: 0, self: 2, epoch: e(2, 2), proposed: size === 1 ? { members: [2], w: 1 } : pair, own: empty, cluster: { ask, size } });
      // Every member up is asked, not only S′.
      expect(effectsOf(step.effects).filter((x) => x !== 'write-start')).toEqual(['persist-promise', ...ask.map((m) => `prepare→${m}`)]);
      const all = [...step.effects];
      for (const m of from) {
        step = candidateReducer(step.state, promise(m, [], 0));
        all.push(...step.effects);
      }
      expect(effectsOf(all).includes('write-start')).toBe(then === 'writes');
      expect(step.state.phase).toBe(then === 'writes' ? 'starting' : 'preparing');
    });

    it('an answer with history ends founding: the set it names is fenced, and its log fetched', () => {
      const other = [{ epoch: e(1, 3), startSeq: 1, sets: [{ members: [1, 3], w: 2 }] }];
      let step = startCandidate({ p: 0, self: 2, epoch: e(2, 2), proposed: pair, own: empty, cluster: { ask: [1, 3], size: 3 } });
      step = candidateReducer(step.state, promise(1, other, 3));
      // q({1,3}) = 1 is met by node 1, whose log is the highest: fetched before the start entry.
      expect(step.effects).toEqual([{ type: 'fetch', p: 0, source: 1, after: 0, upTo: { epoch: e(1, 3), seq: 3 } }]);
    });

    it('times out naming the members it did not hear from', () => {
      let step = startCandidate({ p: 0, self: 2, epoch: e(2, 2), proposed: pair, own: empty, cluster: { ask: [1, 3], size: 3 } });
      step = candidateReducer(step.state, { type: 'timeout' });
      expect(step.effects).toEqual([{ type: 'unavailable', p: 0, epoch: e(2, 2), missing: [1, 3] }]);
    });
  });

  it('stale: gives up', () => {
    let step = startCandidate({ p: 0, self: 2, epoch: e(2, 2), proposed: S, own });
    step = candidateReducer(step.state, { type: 'message', from: 1, msg: { type: 'stale', p: 0, epoch: e(2, 2), promised: e(4, 1) } });
    expect(step.effects).toEqual([{ type: 'stale', p: 0, epoch: e(2, 2), promised: e(4, 1) }]);
    expect(step.state.phase).toBe('stale');
  });

  it('a promise of another epoch (an older campaign) is ignored', () => {
    const step = startCandidate({ p: 0, self: 2, epoch: e(3, 2), proposed: S, own: { ...own, clean: false } });
    const next = candidateReducer(step.state, {
      type: 'message',
      from: 1,
      msg: { type: 'promise', p: 0, epoch: e(2, 2), last: own.last, history: own.history, commit: 5 },
    });
    expect(next.state.promises.has(1)).toBe(false);
  });

  it.each([
    ['nobody wrote yet: only the proposed set', [], [S]],
    ['an established epoch: its sets', [{ ...own }], [S]],
    [
      'a later start entry not known established joins them',
      [
        own,
        {
          last: { epoch: e(2, 4), seq: 6 },
          history: [start(1, 1, 1), { epoch: e(2, 4), startSeq: 6, sets: [{ members: [4, 5, 6], w: 2 }] }],
          commit: 5,
        },
      ],
      [S, { members: [4, 5, 6], w: 2 }],
    ],
  ])('sets in force: %s', (_, respondents, sets) => {
    expect(setsInForce(respondents, S)).toEqual(sets);
  });
});

describe('three replicas driven by the reducers (seeded message order)', () => {
  it('a fresh partition: fence, start, writes acknowledged on W', () => {
    const m = new PartitionModel([1, 2, 3]);
    m.campaign(1, S);
    m.run();
    for (let i = 0; i < 5; i++) expect(m.write(1, `w${i}`)).toBe(true);
    m.run();
    expect(m.acked.map((a) => a.data)).toEqual(['w0', 'w1', 'w2', 'w3', 'w4']);
    expect(m.violations()).toEqual([]);
  });

  it('failover: the new primary holds every acknowledged write, the old one is fenced', () => {
    const m = new PartitionModel([1, 2, 3], 7);
    m.campaign(1, S);
    m.run();
    m.partition([1], [3]); // node 3 sees nothing from the primary: writes reach W through node 2 only
    for (let i = 0; i < 4; i++) m.write(1, `a${i}`);
    m.run();
    expect(m.acked).toHaveLength(4);
    m.partition([1], [2]); // the old primary is cut off from everyone but keeps running
    m.write(1, 'lost'); // cannot reach W: never acknowledged
    m.run();
    m.campaign(3, { members: [3, 2, 1], w: 2 });
    m.run();
    expect(m.node(3).primary?.commit).toBeGreaterThanOrEqual(m.node(3).primary!.startSeq);
    expect(m.write(3, 'b0')).toBe(true);
    m.run();
    m.heal();
    m.write(1, 'zombie'); // the old primary, healed: its append meets a promise of a later epoch
    m.run();
    m.tick();
    m.run();
    expect(m.node(1).primary?.status ?? 'deposed').toBe('deposed');
    expect(m.acked.map((a) => a.data)).not.toContain('lost');
    expect(m.acked.map((a) => a.data)).not.toContain('zombie');
    expect(m.violations()).toEqual([]);
    // The old primary's divergent tail was cut by epoch once the new primary shipped to it.
    expect(m.node(1).log.map((x) => x.data)).toEqual(m.node(3).log.map((x) => x.data));
  });

  it.each(Array.from({ length: 200 }, (_, i) => i + 1))('seed %i: random order, duplicates and losses, failover mid-stream', (seed) => {
    const m = new PartitionModel([1, 2, 3], seed, { drop: 0.1, duplicate: 0.2 });
    m.campaign(1, S);
    for (let round = 0; round < 20 && !m.node(1).primary; round++) m.run();
    let n = 0;
    for (let round = 0; round < 8; round++) {
      m.write(1, `x${n++}`);
      m.run(3 + Math.floor(m.random() * 10));
      m.tick();
    }
    m.run();
    m.kill(1);
    m.campaign(2, { members: [2, 3, 1], w: 2 });
    for (let round = 0; round < 30 && m.node(2).primary?.commit === undefined; round++) {
      m.run();
      if (!m.node(2).primary && !m.node(2).candidate) m.campaign(2, { members: [2, 3, 1], w: 2 });
    }
    for (let round = 0; round < 30; round++) {
      m.write(2, `y${n++}`);
      m.run();
      m.tick();
    }
    m.restart(1);
    for (let round = 0; round < 10; round++) {
      m.tick();
      m.run();
    }
    expect(m.violations()).toEqual([]);
  });
});
