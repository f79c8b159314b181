/**
 * The primary reducer's side of prefix truncation (primary.ts): the truncation point (I5), no
 * shipping below the log's base, a snapshot for a member whose match point is below it, and
 * appends again once the member confirms the snapshot. Plus the wire checks of the new fields.
 */
import { describe, expect, it } from 'vitest';
import type { Epoch, EpochHistory } from '../../src/replication/epoch.ts';
import { createPrimaryState, primaryReducer, truncationPoint, type PrimaryState } from '../../src/replication/primary.ts';
import { parseWireMessage } from '../../src/replication/wire.ts';

const E: Epoch = { term: 2, node: 1 };
const OLD: Epoch = { term: 1, node: 1 };
const history: EpochHistory = [
  { epoch: OLD, startSeq: 1, sets: [{ members: [1, 2, 3], w: 2 }] },
  { epoch: E, startSeq: 500, sets: [{ members: [1, 2, 3], w: 2 }] },
];

/** Node 1's primary of epoch E, log 1..600, base `base`, with 2 and 3 having confirmed `m2`/`m3`. */
function primary(base: number, m2: number, m3: number): PrimaryState {
  let s = createPrimaryState({ p: 4, self: 1, epoch: E, sets: history[1]!.sets, startSeq: 500, history, last: 600, durable: 600, base, known: new Map([[2, 600], [3, 600]]) });
  for (const [from, seq] of [[2, m2], [3, m3]] as const) {
    if (seq > 0) s = primaryReducer(s, { type: 'message', from, msg: { type: 'appended', p: 4, epoch: E, seq } }).state;
  }
  return s;
}

describe('truncationPoint', () => {
  it.each([
    { name: 'every member ahead of what the primary applied: the applied point', m2: 600, m3: 590, applied: 550, t: 550 },
    { name: 'a member behind: its confirmed seq', m2: 600, m3: 520, applied: 580, t: 520 },
    { name: 'a member that confirmed nothing in this epoch holds it at 0', m2: 600, m3: 0, applied: 580, t: 0 },
  ])('$name', ({ m2, m3, applied, t }) => {
    expect(truncationPoint(primary(0, m2, m3), applied)).toBe(t);
  });

  it('only the epoch’s own set counts: a member of an older set only does not hold truncation back', () => {
    const sets = [{ members: [1, 2, 9], w: 2 }, { members: [1, 2, 3], w: 2 }];
    let s = createPrimaryState({ p: 4, self: 1, epoch: E, sets, startSeq: 500, history, last: 600, durable: 600 });
    for (const from of [2, 3]) s = primaryReducer(s, { type: 'message', from, msg: { type: 'appended', p: 4, epoch: E, seq: 600 } }).state;
    expect(truncationPoint(s, 600)).toBe(600);
  });
});

describe('shipping around the base', () => {
  it('a resend to a member whose confirmed seq is below the base ships from the base (it answers mismatch if it lacks it)', () => {
    const step = primaryReducer(primary(550, 600, 0), { type: 'resend', to: 3 });
    expect(step.effects).toEqual([{ type: 'ship', to: 3, after: 550, last: 600, commit: expect.any(Number) }]);
  });

  it('a mismatch whose match point is below the base asks for a snapshot once, and nothing is shipped to that member until it confirms the base', () => {
    let s = primary(550, 600, 0);
    const behind = { type: 'mismatch' as const, p: 4, epoch: E, last: { epoch: OLD, seq: 120 }, history: [history[0]!] };
    let step = primaryReducer(s, { type: 'message', from: 3, msg: behind });
    expect(step.effects).toEqual([{ type: 'snapshot', to: 3 }]);
    s = step.state;
    // A second mismatch (a duplicated frame) does not start a second snapshot.
    expect(primaryReducer(s, { type: 'message', from: 3, msg: behind }).effects).toEqual([]);
    // New entries go to member 2 only.
    step = primaryReducer(s, { type: 'wrote', last: 610 });
    expect(step.effects.map((e) => e.type === 'ship' && e.to)).toEqual([2]);
    s = step.state;
    // The member installed the snapshot at 580: appends go on from there.
    step = primaryReducer(s, { type: 'message', from: 3, msg: { type: 'appended', p: 4, epoch: E, seq: 580 } });
    expect(step.effects.filter((e) => e.type === 'ship')).toEqual([{ type: 'ship', to: 3, after: 580, last: 610, commit: expect.any(Number) }]);
    expect(step.state.snapshotting.size).toBe(0);
  });

  it('a mismatch at or past the base ships from the match point, as before truncation existed', () => {
    const atBase = { type: 'mismatch' as const, p: 4, epoch: E, last: { epoch: E, seq: 560 }, history };
    const step = primaryReducer(primary(550, 600, 0), { type: 'message', from: 3, msg: atBase });
    expect(step.effects).toEqual([{ type: 'ship', to: 3, after: 560, last: 600, commit: expect.any(Number) }]);
  });

  it('`truncated` moves the base forward only', () => {
    const s = primaryReducer(primary(550, 600, 600), { type: 'truncated', base: 590 }).state;
    expect(s.base).toBe(590);
    expect(primaryReducer(s, { type: 'truncated', base: 100 }).state.base).toBe(590);
  });
});

describe('wire checks of truncation and snapshots', () => {
  const append = { type: 'append', p: 1, epoch: E, prev: { epoch: E, seq: 3 }, entries: [], commit: 3 };
  const snapshot = { type: 'snapshot', p: 1, epoch: E, reqId: 7, part: 0, base: { epoch: E, seq: 9 }, history: [], actors: [], done: true };
  it.each([
    { name: 'an append with a truncation point', m: { ...append, truncate: 2 }, ok: true },
    { name: 'an append with a negative truncation point', m: { ...append, truncate: -1 }, ok: false },
    { name: 'a snapshot page', m: { ...snapshot, actors: [{ kind: 'counter', key: 'a', lastSeq: 2, events: [], replies: [] }] }, ok: true },
    { name: 'a snapshot page without a base', m: { ...snapshot, base: undefined }, ok: false },
    { name: 'a snapshot page with a malformed actor', m: { ...snapshot, actors: [{ kind: 'counter', key: 'a', events: [] }] }, ok: false },
  ])('$name', ({ m, ok }) => {
    expect(parseWireMessage(m, 1024) !== undefined).toBe(ok);
  });
});
