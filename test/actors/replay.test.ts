import { describe, expect, it } from 'vitest';
import { defineActor } from '../../src/actors/define-actor.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { replay, upcast } from '../../src/actors/replay.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import type { ActorHistory, EventRecord, RecordedReply } from '../../src/persistence/journal.ts';

/** Version 3 ledger: v1 events were `{ cents }`, v2 `{ amount, currency }`, v3 `{ amount }`. */
const ledger = defineActor({
  kind: 'ledger',
  version: 3,
  initial: (key: string) => ({ owner: key, total: 0 }),
  apply: (s: { owner: string; total: number }, e: { amount: number }) => ({ owner: s.owner, total: s.total + e.amount }),
  upcasters: {
    1: (e) => ({ amount: (e as { cents: number }).cents / 100, currency: 'EUR' }),
    2: (e) => ({ amount: (e as { amount: number }).amount }),
  },
  commands: { get: { readOnly: true, handle: (ctx) => ctx.state } },
});

/** Version 2 without an upcaster from version 1: an old event cannot be read. */
const broken = defineActor({
  kind: 'broken',
  version: 2,
  initial: () => ({ total: 0 }),
  apply: (s: { total: number }, e: { amount: number }) => ({ total: s.total + e.amount }),
  commands: { get: { readOnly: true, handle: (ctx) => ctx.state } },
});

const registry = new ActorRegistry([ledger, broken]);
const ledgerKind = registry.get('ledger')!;
const brokenKind = registry.get('broken')!;

const ev = (seq: number, amount: number, v = 3): EventRecord => ({ seq, v, event: { amount } });
const reply: RecordedReply = { msgId: 'm-1', ok: true, value: { total: 5 }, fingerprint: 'f' };

const cases: Array<{
  name: string;
  history: ActorHistory;
  state: unknown;
  seq: number;
  eventsSinceSnapshot?: number;
  replies?: Array<[string, RecordedReply]> | null;
}> = [
  {
    name: 'no history: the initial state for the key, at seq 0',
    history: { events: [], replies: [] },
    state: { owner: 'k', total: 0 },
    seq: 0,
    eventsSinceSnapshot: 0,
    replies: null,
  },
  {
    name: 'snapshot only: its state and seq, nothing since it',
    history: { snapshot: { seq: 4, v: 3, state: { owner: 'k', total: 9 } }, events: [], replies: [] },
    state: { owner: 'k', total: 9 },
    seq: 4,
    eventsSinceSnapshot: 0,
  },
  {
    name: 'snapshot + events: events it covers are skipped, the rest applied',
    history: {
      snapshot: { seq: 2, v: 3, state: { owner: 'k', total: 3 } },
      events: [ev(1, 1), ev(2, 2), ev(3, 10), ev(4, 20)],
      replies: [reply],
    },
    state: { owner: 'k', total: 33 },
    seq: 4,
    eventsSinceSnapshot: 2,
    replies: [['m-1', reply]],
  },
  {
    name: 'events of older versions are upcast step by step',
    history: { events: [{ seq: 1, v: 1, event: { cents: 250 } }, { seq: 2, v: 2, event: { amount: 1, currency: 'EUR' } }, ev(3, 4)], replies: [] },
    state: { owner: 'k', total: 7.5 },
    seq: 3,
    eventsSinceSnapshot: 3,
  },
  {
    name: 'a snapshot of another version is ignored: initial state, every event replayed',
    history: {
      snapshot: { seq: 2, v: 2, state: { owner: 'k', total: 1000, shape: 'old' } },
      events: [ev(1, 1), ev(2, 2), ev(3, 4)],
      replies: [],
    },
    state: { owner: 'k', total: 7 },
    seq: 3,
  },
];

describe('replay', () => {
  it.each(cases)('$name', ({ history, state, seq, eventsSinceSnapshot, replies }) => {
    const r = replay(ledgerKind, 'k', history);
    expect(r.state).toEqual(state);
    expect(r.seq).toBe(seq);
    if (eventsSinceSnapshot !== undefined) expect(r.eventsSinceSnapshot).toBe(eventsSinceSnapshot);
    if (replies === null) expect(r.replies).toBeNull();
    else if (replies !== undefined) expect([...r.replies!]).toEqual(replies);
  });

  it('a missing upcaster fails with ERR_UPCAST naming the kind and the version', () => {
    const history: ActorHistory = { events: [{ seq: 1, v: 1, event: { amount: 1 } }], replies: [] };
    let thrown: unknown;
    try {
      replay(brokenKind, 'k', history);
    } catch (e) {
      thrown = e;
    }
    expect(isTroupeError(thrown, 'ERR_UPCAST')).toBe(true);
    expect(thrown).toMatchObject({ message: 'broken: no upcaster from event version 1', details: { kind: 'broken', version: 1 } });
  });

  it('does not mutate the history it reads (a journal may hand out its own arrays)', () => {
    const history: ActorHistory = { snapshot: { seq: 1, v: 3, state: { owner: 'k', total: 1 } }, events: [ev(1, 1), ev(2, 2)], replies: [reply] };
    const copy = structuredClone(history);
    replay(ledgerKind, 'k', history);
    expect(history).toEqual(copy);
  });
});

describe('upcast', () => {
  it.each([
    { name: 'current version: unchanged', v: 3, event: { amount: 2 }, out: { amount: 2 } },
    { name: 'one step', v: 2, event: { amount: 2, currency: 'EUR' }, out: { amount: 2 } },
    { name: 'two steps', v: 1, event: { cents: 150 }, out: { amount: 1.5 } },
  ])('$name', ({ v, event, out }) => {
    expect(upcast(ledgerKind, event, v)).toEqual(out);
  });
});
