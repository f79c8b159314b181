import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTroupeError, type ErrorCode } from '../../src/core/errors.ts';
import type { ActorWrite, EventRecord, Journal, RecordedReply } from '../../src/persistence/journal.ts';
import { LmdbJournal } from '../../src/persistence/lmdb-journal.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';
import { createJournal } from '../../src/persistence/create-journal.ts';
import { acquireEnv, releaseEnv } from '../../src/persistence/lmdb-env.ts';

const root = mkdtempSync(join(tmpdir(), 'troupe-contract-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;

interface MakeOptions {
  recentReplies?: number;
  compactOnSnapshot?: boolean;
}

interface Subject {
  name: string;
  make(options?: MakeOptions): { journal: Journal; path?: string };
}

function lmdbAt(path: string, { recentReplies, compactOnSnapshot }: MakeOptions = {}): LmdbJournal {
  return new LmdbJournal(
    { type: 'lmdb', path, durability: 'flush', ...(recentReplies === undefined ? {} : { recentReplies }) },
    compactOnSnapshot === undefined ? {} : { compactOnSnapshot },
  );
}

const subjects: Subject[] = [
  { name: 'MemoryJournal', make: (options = {}) => ({ journal: new MemoryJournal(options) }) },
  {
    name: 'LmdbJournal',
    make: (options = {}) => {
      const path = join(root, `env-${dirs++}`);
      return { journal: lmdbAt(path, options), path };
    },
  },
];

function ev(seq: number, event: unknown = { n: seq }): EventRecord {
  return { seq, v: 1, event };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected the promise to reject');
}

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  const e = await rejection(p);
  expect(isTroupeError(e, code), `expected ${code}, got ${String(e)}`).toBe(true);
}

describe.each(subjects)('Journal contract: $name', (subject) => {
  let journal: Journal;
  beforeEach(() => {
    journal = subject.make().journal;
  });
  afterEach(async () => {
    await journal.close();
  });

  it('reads back what was written', async () => {
    const reply: RecordedReply = { msgId: 'm1', ok: true, value: { total: 3 } };
    await journal.write({ kind: 'cart', key: 'c1', events: [ev(1, { add: 'apple' }), ev(2, { add: 'pear' })], replies: [reply] });
    const h = await journal.read('cart', 'c1');
    expect(h.snapshot).toBeUndefined();
    expect(h.events).toEqual([ev(1, { add: 'apple' }), ev(2, { add: 'pear' })]);
    expect(h.replies).toEqual([reply]);
  });

  it('reads an unknown actor as empty', async () => {
    expect(await journal.read('cart', 'nobody')).toEqual({ events: [], replies: [] });
  });

  it('keeps actors apart, including keys that prefix one another', async () => {
    await journal.write({ kind: 'cart', key: 'a', events: [ev(1, 'a1')] });
    await journal.write({ kind: 'cart', key: 'ab', events: [ev(1, 'ab1'), ev(2, 'ab2')] });
    await journal.write({ kind: 'room', key: 'a', events: [ev(1, 'room')] });
    expect((await journal.read('cart', 'a')).events).toEqual([ev(1, 'a1')]);
    expect((await journal.read('cart', 'ab')).events.map((e) => e.event)).toEqual(['ab1', 'ab2']);
    expect((await journal.read('room', 'a')).events).toEqual([ev(1, 'room')]);
  });

  it('returns the latest snapshot and only the events after it, ascending', async () => {
    await journal.write({ kind: 'cart', key: 'c1', events: [ev(1), ev(2), ev(3)] });
    await journal.write({ kind: 'cart', key: 'c1', events: [ev(4)], snapshot: { seq: 4, v: 2, state: { items: 4 } } });
    await journal.write({ kind: 'cart', key: 'c1', events: [ev(5), ev(6)] });
    await journal.write({ kind: 'cart', key: 'c1', events: [ev(7)], snapshot: { seq: 6, v: 2, state: { items: 6 } } });
    const h = await journal.read('cart', 'c1');
    expect(h.snapshot).toEqual({ seq: 6, v: 2, state: { items: 6 } });
    expect(h.events).toEqual([ev(7)]);
  });

  it('keeps the schema version of events and snapshots', async () => {
    await journal.write({ kind: 'k', key: 'x', events: [{ seq: 1, v: 3, event: 'old' }], snapshot: { seq: 1, v: 7, state: 's' } });
    await journal.write({ kind: 'k', key: 'x', events: [{ seq: 2, v: 4, event: 'new' }] });
    const h = await journal.read('k', 'x');
    expect(h.snapshot?.v).toBe(7);
    expect(h.events).toEqual([{ seq: 2, v: 4, event: 'new' }]);
  });

  it.each([
    { name: 'a gap', seqs: [4] },
    { name: 'an overlap', seqs: [2, 3] },
    { name: 'a restart at 1', seqs: [1] },
  ])('rejects $name with ERR_JOURNAL_WRITE and applies nothing of it', async ({ seqs }) => {
    await journal.write({ kind: 'cart', key: 'c1', events: [ev(1), ev(2)], replies: [{ msgId: 'ok', ok: true }] });
    const bad: ActorWrite = {
      kind: 'cart',
      key: 'c1',
      events: seqs.map((s) => ev(s, 'bad')),
      snapshot: { seq: seqs[seqs.length - 1]!, v: 1, state: 'bad' },
      replies: [{ msgId: 'bad', ok: true }],
    };
    await expectCode(journal.write(bad), 'ERR_JOURNAL_WRITE');
    const h = await journal.read('cart', 'c1');
    expect(h.snapshot).toBeUndefined();
    expect(h.events).toEqual([ev(1), ev(2)]);
    expect(h.replies.map((r) => r.msgId)).toEqual(['ok']);
    // The log is still writable where it really ends.
    await journal.write({ kind: 'cart', key: 'c1', events: [ev(3)] });
    expect((await journal.read('cart', 'c1')).events.map((e) => e.seq)).toEqual([1, 2, 3]);
  });

  it('rejects a first write that does not start at seq 1', async () => {
    await expectCode(journal.write({ kind: 'cart', key: 'new', events: [ev(2)] }), 'ERR_JOURNAL_WRITE');
    expect(await journal.read('cart', 'new')).toEqual({ events: [], replies: [] });
  });

  it('applies writes for one actor in call order without awaiting in between', async () => {
    const writes = [];
    for (let s = 1; s <= 50; s++) writes.push(journal.write({ kind: 'cart', key: 'burst', events: [ev(s)] }));
    await Promise.all(writes);
    expect((await journal.read('cart', 'burst')).events.map((e) => e.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
  });

  it('keeps only the most recent recorded replies, oldest first', async () => {
    const bounded = subject.make({ recentReplies: 5 }).journal;
    try {
      for (let s = 1; s <= 12; s++) {
        await bounded.write({
          kind: 'cart',
          key: 'r',
          events: [ev(s)],
          replies: [
            {
              msgId: `m${s}`,
              ok: s % 2 === 0,
              ...(s % 2 === 0 ? { value: s } : { error: { code: 'ERR_INVALID_INPUT', message: `bad ${s}` } }),
            },
          ],
        });
      }
      // Several replies in one write count one by one.
      await bounded.write({
        kind: 'cart',
        key: 'r',
        events: [],
        replies: [
          { msgId: 'x1', ok: true },
          { msgId: 'x2', ok: true },
        ],
      });
      const { replies } = await bounded.read('cart', 'r');
      expect(replies.map((r) => r.msgId)).toEqual(['m10', 'm11', 'm12', 'x1', 'x2']);
      expect(replies[0]).toEqual({ msgId: 'm10', ok: true, value: 10 });
      expect(replies[1]).toEqual({ msgId: 'm11', ok: false, error: { code: 'ERR_INVALID_INPUT', message: 'bad 11' } });
    } finally {
      await bounded.close();
    }
  });

  it('reads back 1,000 actors × 10 writes issued without awaiting in between', async () => {
    const actors = 1000;
    const rounds = 10;
    const writes: Promise<void>[] = [];
    for (let r = 1; r <= rounds; r++) {
      for (let a = 0; a < actors; a++) {
        writes.push(
          journal.write({
            kind: 'cart',
            key: `a${a}`,
            events: [ev(r, { a, r })],
            replies: [{ msgId: `a${a}-r${r}`, ok: true, value: r }],
            ...(r === 5 ? { snapshot: { seq: 5, v: 1, state: { a, upTo: 5 } } } : {}),
          }),
        );
      }
    }
    await Promise.all(writes);
    for (let a = 0; a < actors; a++) {
      const h = await journal.read('cart', `a${a}`);
      expect(h.snapshot).toEqual({ seq: 5, v: 1, state: { a, upTo: 5 } });
      expect(h.events).toEqual([6, 7, 8, 9, 10].map((r) => ev(r, { a, r })));
      expect(h.replies.length).toBe(rounds);
      expect(h.replies[rounds - 1]).toEqual({ msgId: `a${a}-r${rounds}`, ok: true, value: rounds });
    }
  }, 20_000);

  it('writeMany answers per write: a bad write is refused alone and leaves nothing', async () => {
    await journal.write({ kind: 'k', key: 'a', events: [ev(1)] });
    const results = await journal.writeMany!([
      { kind: 'k', key: 'a', events: [ev(2)] },
      { kind: 'k', key: 'b', events: [ev(5)] }, // a gap: b's log is empty
      { kind: 'k', key: 'c', events: [ev(1), ev(2)], replies: [{ msgId: 'm', ok: true, value: 1 }] },
    ]);
    expect(results[0]).toBeNull();
    expect(isTroupeError(results[1], 'ERR_JOURNAL_WRITE')).toBe(true);
    expect(results[2]).toBeNull();
    expect((await journal.read('k', 'a')).events).toEqual([ev(1), ev(2)]);
    expect(await journal.read('k', 'b')).toEqual({ events: [], replies: [] });
    expect(await journal.read('k', 'c')).toEqual({ events: [ev(1), ev(2)], replies: [{ msgId: 'm', ok: true, value: 1 }] });
  });

  it('writeMany of two writes for one actor applies them in order', async () => {
    const results = await journal.writeMany!([
      { kind: 'k', key: 'o', events: [ev(1)] },
      { kind: 'k', key: 'o', events: [ev(2)] },
    ]);
    expect(results).toEqual([null, null]);
    expect((await journal.read('k', 'o')).events).toEqual([ev(1), ev(2)]);
  });

  describe('readFrom', () => {
    beforeEach(async () => {
      await journal.write({ kind: 'log', key: 'a', events: [ev(1), ev(2), ev(3)] });
      await journal.write({ kind: 'log', key: 'a', events: [ev(4)] });
      await journal.write({ kind: 'log', key: 'a', events: [ev(5), ev(6), ev(7), ev(8), ev(9), ev(10)] });
      await journal.write({ kind: 'log', key: 'ab', events: [ev(1, 'other')] }); // a key that extends 'a'
    });

    it.each([
      { name: 'the whole log', afterSeq: 0, limit: 100, seqs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] },
      { name: 'a middle range cut by the limit', afterSeq: 3, limit: 4, seqs: [4, 5, 6, 7] },
      { name: 'the tail, fewer than the limit', afterSeq: 8, limit: 100, seqs: [9, 10] },
      { name: 'one event', afterSeq: 0, limit: 1, seqs: [1] },
      { name: 'nothing at the end', afterSeq: 10, limit: 5, seqs: [] },
      { name: 'nothing past the end', afterSeq: 50, limit: 5, seqs: [] },
    ])('returns $name, ascending', async ({ afterSeq, limit, seqs }) => {
      expect(await journal.readFrom('log', 'a', afterSeq, limit)).toEqual(seqs.map((s) => ev(s)));
    });

    it('returns nothing for an unknown actor', async () => {
      expect(await journal.readFrom('log', 'nobody', 0, 10)).toEqual([]);
    });

    it('pages through the log, each page starting after the last one read', async () => {
      const seen: number[] = [];
      let after = 0;
      // Bounded, so a reader that repeats the page it started after fails here instead of hanging.
      for (let page, pages = 0; pages < 10 && (page = await journal.readFrom('log', 'a', after, 3)).length > 0; pages++) {
        seen.push(...page.map((e) => e.seq));
        after = page[page.length - 1]!.seq;
      }
      expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    });

    it.each([
      { name: 'a negative afterSeq', afterSeq: -1, limit: 1, message: /afterSeq must be a non-negative integer/ },
      { name: 'a fractional afterSeq', afterSeq: 1.5, limit: 1, message: /afterSeq must be a non-negative integer/ },
      { name: 'a zero limit', afterSeq: 0, limit: 0, message: /limit must be a positive integer/ },
      { name: 'an infinite limit', afterSeq: 0, limit: Infinity, message: /limit must be a positive integer/ },
    ])('rejects $name with ERR_JOURNAL_READ naming it', async ({ afterSeq, limit, message }) => {
      const e = await rejection(journal.readFrom('log', 'a', afterSeq, limit));
      expect(isTroupeError(e, 'ERR_JOURNAL_READ')).toBe(true);
      expect((e as Error).message).toMatch(message);
    });
  });

  it.each([
    { compactOnSnapshot: false, stored: [1, 2, 3, 4, 5] },
    { compactOnSnapshot: true, stored: [4, 5] },
  ])(
    'readFrom with compactOnSnapshot $compactOnSnapshot returns the events still stored: $stored',
    async ({ compactOnSnapshot, stored }) => {
      const j = subject.make({ compactOnSnapshot }).journal;
      try {
        await j.write({ kind: 'k', key: 'x', events: [ev(1), ev(2)] });
        await j.write({ kind: 'k', key: 'x', events: [ev(3), ev(4)], snapshot: { seq: 3, v: 1, state: 3 } });
        await j.write({ kind: 'k', key: 'x', events: [ev(5)] });
        expect((await j.readFrom('k', 'x', 0, 100)).map((e) => e.seq)).toEqual(stored);
        expect((await j.readFrom('k', 'x', 4, 100)).map((e) => e.seq)).toEqual([5]);
        // Either way `read` is the snapshot and what follows it, and the log goes on from its end.
        expect(await j.read('k', 'x')).toEqual({ snapshot: { seq: 3, v: 1, state: 3 }, events: [ev(4), ev(5)], replies: [] });
        await expectCode(j.write({ kind: 'k', key: 'x', events: [ev(1)] }), 'ERR_JOURNAL_WRITE');
        await j.write({ kind: 'k', key: 'x', events: [ev(6)] });
      } finally {
        await j.close();
      }
    },
  );

  describe('epochs', () => {
    const e = (term: number, node: number) => ({ term, node });

    it('stores the epoch a write carries and returns it from read; a write without one keeps it', async () => {
      await journal.write({ kind: 'k', key: 'x', events: [ev(1)] });
      expect((await journal.read('k', 'x')).epoch).toBeUndefined(); // never set: reads as ZERO_EPOCH
      await journal.write({ kind: 'k', key: 'x', events: [ev(2)], epoch: e(1, 2) });
      expect((await journal.read('k', 'x')).epoch).toEqual(e(1, 2));
      await journal.write({ kind: 'k', key: 'x', events: [ev(3)] });
      expect((await journal.read('k', 'x')).epoch).toEqual(e(1, 2));
      await journal.write({ kind: 'k', key: 'x', events: [ev(4)], epoch: e(1, 2) }); // the same epoch goes on writing
      await journal.write({ kind: 'k', key: 'x', events: [], epoch: e(3, 1) }); // a new primary takes the actor, no events
      const h = await journal.read('k', 'x');
      expect(h.epoch).toEqual(e(3, 1));
      expect(h.events.map((x) => x.seq)).toEqual([1, 2, 3, 4]);
      expect((await journal.read('k', 'other')).epoch).toBeUndefined();
    });

    it.each([
      { name: 'a lower term', stale: e(2, 9) },
      { name: 'the same term from a lower node', stale: e(3, 1) },
      { name: 'epoch zero', stale: e(0, 0) },
    ])('fences a write from $name with ERR_STALE_EPOCH and applies nothing of it', async ({ stale }) => {
      const reply: RecordedReply = { msgId: 'm1', ok: true, value: 1 };
      await journal.write({ kind: 'k', key: 'x', events: [ev(1), ev(2)], replies: [reply], epoch: e(3, 2) });
      const before = await journal.read('k', 'x');
      const err = await rejection(
        journal.write({
          kind: 'k',
          key: 'x',
          events: [ev(3, 'stale')],
          snapshot: { seq: 3, v: 1, state: 'stale' },
          replies: [{ msgId: 'stale', ok: true }],
          epoch: stale,
        }),
      );
      expect(isTroupeError(err, 'ERR_STALE_EPOCH'), String(err)).toBe(true);
      expect((err as { details?: unknown }).details).toMatchObject({ kind: 'k', key: 'x', epoch: stale, stored: e(3, 2) });
      expect(await journal.read('k', 'x')).toEqual(before);
      expect(await journal.readFrom('k', 'x', 0, 10)).toEqual([ev(1), ev(2)]);
      // The current primary writes on where the log really ends.
      await journal.write({ kind: 'k', key: 'x', events: [ev(3)], epoch: e(3, 2) });
      expect((await journal.read('k', 'x')).events.map((x) => x.seq)).toEqual([1, 2, 3]);
    });

    it('fences a deposed primary before checking its seqs: it learns it was replaced', async () => {
      await journal.write({ kind: 'k', key: 'x', events: [ev(1)], epoch: e(1, 1) });
      await journal.write({ kind: 'k', key: 'x', events: [ev(2)], epoch: e(2, 2) });
      // The old primary still believes the log ends at 1.
      await expectCode(journal.write({ kind: 'k', key: 'x', events: [ev(2, 'old')], epoch: e(1, 1) }), 'ERR_STALE_EPOCH');
    });

    it('writeMany refuses only the fenced write', async () => {
      await journal.write({ kind: 'k', key: 'a', events: [ev(1)], epoch: e(2, 1) });
      await journal.write({ kind: 'k', key: 'b', events: [ev(1)], epoch: e(5, 1) });
      const results = await journal.writeMany!([
        { kind: 'k', key: 'a', events: [ev(2)], epoch: e(2, 1) },
        { kind: 'k', key: 'b', events: [ev(2, 'stale')], replies: [{ msgId: 'stale', ok: true }], epoch: e(4, 3) },
        { kind: 'k', key: 'c', events: [ev(1)] },
        { kind: 'k', key: 'a', events: [ev(3)], epoch: e(3, 1) },
      ]);
      expect(results[0]).toBeNull();
      expect(isTroupeError(results[1], 'ERR_STALE_EPOCH'), String(results[1])).toBe(true);
      expect(results[2]).toBeNull();
      expect(results[3]).toBeNull();
      expect(await journal.read('k', 'a')).toEqual({ events: [ev(1), ev(2), ev(3)], replies: [], epoch: e(3, 1) });
      expect(await journal.read('k', 'b')).toEqual({ events: [ev(1)], replies: [], epoch: e(5, 1) });
      expect(await journal.read('k', 'c')).toEqual({ events: [ev(1)], replies: [] });
    });

    it.each([
      { name: 'a negative term', epoch: { term: -1, node: 0 } },
      { name: 'a fractional node', epoch: { term: 1, node: 0.5 } },
      { name: 'a missing node', epoch: { term: 1 } },
      { name: 'null', epoch: null },
    ])('refuses an epoch with $name as ERR_JOURNAL_WRITE', async ({ epoch }) => {
      const w = { kind: 'k', key: 'x', events: [ev(1)], epoch } as unknown as ActorWrite;
      const err = await rejection(journal.write(w));
      expect(isTroupeError(err, 'ERR_JOURNAL_WRITE')).toBe(true);
      expect((err as Error).message).toMatch(/write\.epoch must have non-negative integer term and node/);
      expect(await journal.read('k', 'x')).toEqual({ events: [], replies: [] });
    });
  });

  it('rejects writes after close with ERR_STOPPED', async () => {
    await journal.write({ kind: 'cart', key: 'c1', events: [ev(1)] });
    await journal.close();
    await expectCode(journal.write({ kind: 'cart', key: 'c1', events: [ev(2)] }), 'ERR_STOPPED');
  });
});

describe('MemoryJournal behaves like LmdbJournal', () => {
  /** Many actors, many writes, replies past the bound, a snapshot mid-way, epochs: the same calls to each journal. */
  async function drive(journal: Journal): Promise<void> {
    for (let round = 1; round <= 30; round++) {
      const writes: ActorWrite[] = [];
      for (let a = 0; a < 20; a++) {
        const w: ActorWrite = {
          kind: a % 2 === 0 ? 'cart' : 'room',
          key: `a${a}`,
          events: [ev(2 * round - 1, { a, round }), ev(2 * round, { a, round, second: true })],
          replies: [{ msgId: `a${a}-${round}`, ok: round % 3 !== 0, value: round, fingerprint: `f${round}` }],
        };
        if (round === 17) w.snapshot = { seq: 33, v: 2, state: { a, upTo: 33 } };
        if (a % 4 === 0) w.epoch = { term: Math.ceil(round / 10), node: a };
        writes.push(w);
      }
      // Half through writeMany, half through write: both paths keep the same history.
      if (round % 2 === 0) expect(await journal.writeMany!(writes)).toEqual(writes.map(() => null));
      else await Promise.all(writes.map((w) => journal.write(w)));
    }
  }

  it('returns the same history from both after many writes and a snapshot', async () => {
    const lmdb = lmdbAt(join(root, `env-${dirs++}`), { recentReplies: 16 });
    const keeping = new MemoryJournal({ recentReplies: 16, compactOnSnapshot: false });
    const compacting = new MemoryJournal({ recentReplies: 16 });
    try {
      for (const j of [lmdb, keeping, compacting]) await drive(j);
      for (let a = 0; a < 20; a++) {
        const kind = a % 2 === 0 ? 'cart' : 'room';
        const want = await lmdb.read(kind, `a${a}`);
        expect(want.snapshot).toEqual({ seq: 33, v: 2, state: { a, upTo: 33 } });
        expect(want.events.map((e) => e.seq)).toEqual(Array.from({ length: 27 }, (_, i) => 34 + i));
        expect(want.replies.length).toBe(16);
        expect(want.epoch).toEqual(a % 4 === 0 ? { term: 3, node: a } : undefined);
        expect(await keeping.read(kind, `a${a}`)).toEqual(want);
        expect(await compacting.read(kind, `a${a}`)).toEqual(want);
        // LMDB keeps the log under the snapshot by default; so does a MemoryJournal told to.
        expect(await keeping.readFrom(kind, `a${a}`, 0, 1000)).toEqual(await lmdb.readFrom(kind, `a${a}`, 0, 1000));
        expect(await compacting.readFrom(kind, `a${a}`, 33, 1000)).toEqual(await lmdb.readFrom(kind, `a${a}`, 33, 1000));
      }
    } finally {
      await lmdb.close();
    }
  });
});

describe('LmdbJournal specifics', () => {
  function open(path = join(root, `env-${dirs++}`), extra: Partial<{ recentReplies: number; durability: 'flush' | 'commit' }> = {}) {
    return { journal: new LmdbJournal({ type: 'lmdb', path, ...extra }), path };
  }

  it('keeps data across close and reopen', async () => {
    const { journal, path } = open();
    await journal.write({
      kind: 'cart',
      key: 'c1',
      events: [ev(1), ev(2)],
      snapshot: { seq: 2, v: 1, state: { n: 2 } },
      replies: [{ msgId: 'm', ok: true }],
    });
    await journal.write({ kind: 'cart', key: 'c1', events: [ev(3)] });
    await journal.close();
    const again = new LmdbJournal({ type: 'lmdb', path });
    try {
      expect(await again.read('cart', 'c1')).toEqual({
        snapshot: { seq: 2, v: 1, state: { n: 2 } },
        events: [ev(3)],
        replies: [{ msgId: 'm', ok: true }],
      });
      // Continuity is checked against what is on disk, not against memory of the old instance.
      await expectCode(again.write({ kind: 'cart', key: 'c1', events: [ev(3)] }), 'ERR_JOURNAL_WRITE');
      await again.write({ kind: 'cart', key: 'c1', events: [ev(4)] });
    } finally {
      await again.close();
    }
  });

  it('stores node metadata with getMeta / putMeta, durable across reopen', async () => {
    const { journal, path } = open();
    expect(await journal.getMeta('incarnation')).toBeUndefined();
    await journal.putMeta('incarnation', 7);
    await journal.putMeta('snowflake.lastMs', 1_700_000_000_123);
    expect(await journal.getMeta('incarnation')).toBe(7);
    await journal.putMeta('incarnation', 8);
    await journal.close();
    const again = new LmdbJournal({ type: 'lmdb', path });
    try {
      expect(await again.getMeta<number>('incarnation')).toBe(8);
      expect(await again.getMeta('snowflake.lastMs')).toBe(1_700_000_000_123);
      await expectCode(again.putMeta('', 1), 'ERR_JOURNAL_WRITE');
    } finally {
      await again.close();
    }
  });

  it("resolves with 'commit' durability too", async () => {
    const { journal } = open(undefined, { durability: 'commit' });
    try {
      await journal.write({ kind: 'cart', key: 'c', events: [ev(1)] });
      expect((await journal.read('cart', 'c')).events).toEqual([ev(1)]);
    } finally {
      await journal.close();
    }
  });

  it('keeps events under a snapshot by default and deletes them with compactOnSnapshot', async () => {
    const keep = open().journal;
    const compactPath = join(root, `env-${dirs++}`);
    const compact = new LmdbJournal({ type: 'lmdb', path: compactPath }, { compactOnSnapshot: true });
    try {
      for (const j of [keep, compact]) {
        await j.write({ kind: 'k', key: 'x', events: [ev(1), ev(2), ev(3)] });
        await j.write({ kind: 'k', key: 'x', events: [ev(4)], snapshot: { seq: 3, v: 1, state: 3 } });
      }
      expect((await keep.readEvents('k', 'x')).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
      expect((await compact.readEvents('k', 'x')).map((e) => e.seq)).toEqual([4]);
      for (const j of [keep, compact]) {
        expect(await j.read('k', 'x')).toEqual({ snapshot: { seq: 3, v: 1, state: 3 }, events: [ev(4)], replies: [] });
      }
      // A snapshot at the head compacts the whole log; the next seq still follows it.
      await compact.write({ kind: 'k', key: 'x', events: [], snapshot: { seq: 4, v: 1, state: 4 } });
      expect(await compact.readEvents('k', 'x')).toEqual([]);
      await expectCode(compact.write({ kind: 'k', key: 'x', events: [ev(1)] }), 'ERR_JOURNAL_WRITE');
      await compact.write({ kind: 'k', key: 'x', events: [ev(5)] });
      expect(await compact.read('k', 'x')).toEqual({ snapshot: { seq: 4, v: 1, state: 4 }, events: [ev(5)], replies: [] });
    } finally {
      await keep.close();
      await compact.close();
    }
  });

  it.each([
    { name: 'events out of order within one write', w: { kind: 'k', key: 'x', events: [ev(1), ev(3)] } },
    { name: 'a snapshot past the log', w: { kind: 'k', key: 'x', events: [ev(1)], snapshot: { seq: 2, v: 1, state: 0 } } },
    { name: 'a NUL in the key', w: { kind: 'k', key: 'x\u0000y', events: [ev(1)] } },
    { name: 'an empty kind', w: { kind: '', key: 'x', events: [ev(1)] } },
    { name: 'a non-integer seq', w: { kind: 'k', key: 'x', events: [{ seq: 1.5, v: 1, event: 0 }] } },
    { name: 'a reply without msgId', w: { kind: 'k', key: 'x', events: [ev(1)], replies: [{ ok: true }] } },
  ])('rejects $name with ERR_JOURNAL_WRITE', async ({ w }) => {
    const { journal } = open();
    try {
      await expectCode(journal.write(w as ActorWrite), 'ERR_JOURNAL_WRITE');
      expect(await journal.readEvents('k', 'x')).toEqual([]);
    } finally {
      await journal.close();
    }
  });

  it('rolls back a write that fails half-way while the rest of its batch commits', async () => {
    const { journal } = open();
    try {
      await journal.write({ kind: 'k', key: 'x', events: [ev(1), ev(2)] });
      // Queued together, so they share one LMDB transaction; event 4 cannot be encoded.
      const bad = journal.write({ kind: 'k', key: 'x', events: [ev(3), ev(4, 2n ** 70n)], replies: [{ msgId: 'bad', ok: true }] });
      const good = journal.write({ kind: 'k', key: 'y', events: [ev(1)], replies: [{ msgId: 'good', ok: true }] });
      await expectCode(bad, 'ERR_JOURNAL_WRITE');
      await good;
      expect(await journal.read('k', 'x')).toEqual({ events: [ev(1), ev(2)], replies: [] });
      expect(await journal.read('k', 'y')).toEqual({ events: [ev(1)], replies: [{ msgId: 'good', ok: true }] });
    } finally {
      await journal.close();
    }
  });

  it('writeMany refuses a write with an unencodable value before its transaction; the rest commit', async () => {
    const { journal } = open();
    try {
      await journal.write({ kind: 'k', key: 'x', events: [ev(1)] });
      const results = await journal.writeMany([
        { kind: 'k', key: 'x', events: [ev(2), ev(3, 2n ** 70n)] },
        { kind: 'k', key: 'y', events: [ev(1)] },
      ]);
      expect(isTroupeError(results[0], 'ERR_JOURNAL_WRITE')).toBe(true);
      expect(results[1]).toBeNull();
      expect((await journal.read('k', 'x')).events).toEqual([ev(1)]);
      expect((await journal.read('k', 'y')).events).toEqual([ev(1)]);
    } finally {
      await journal.close();
    }
  });

  it('shares one environment between journals of a thread and closes it with the last', async () => {
    const { journal: a, path } = open();
    const b = new LmdbJournal({ type: 'lmdb', path });
    await a.write({ kind: 'k', key: 'x', events: [ev(1)] });
    await a.close();
    await b.write({ kind: 'k', key: 'x', events: [ev(2)] });
    expect((await b.read('k', 'x')).events.map((e) => e.seq)).toEqual([1, 2]);
    await b.close();
  });

  it('reads a heads record written before epochs existed as epoch zero, and upgrades it on the next epoch', async () => {
    const path = join(root, `env-${dirs++}`);
    const journal = lmdbAt(path);
    try {
      // What an older build left on disk: events and a two-element heads record [lastSeq, lastReplyN].
      const env = acquireEnv(path);
      try {
        await env.root.transaction(() => {
          for (let s = 1; s <= 3; s++) void env.events.put(['k', 'old', s], [1, { n: s }]);
          void env.heads.put(['k', 'old'], [3, 0]);
        });
      } finally {
        await releaseEnv(env, 1_000, (fn, ms) => {
          const t = setTimeout(fn, ms);
          return () => clearTimeout(t);
        });
      }
      expect(await journal.read('k', 'old')).toEqual({ events: [ev(1), ev(2), ev(3)], replies: [] });
      // Epoch zero: any epoch may write, and a write without one leaves the record as it was.
      await journal.write({ kind: 'k', key: 'old', events: [ev(4)] });
      await journal.write({ kind: 'k', key: 'old', events: [ev(5)], epoch: { term: 0, node: 0 } });
      expect((await journal.read('k', 'old')).epoch).toEqual({ term: 0, node: 0 });
      await journal.write({ kind: 'k', key: 'old', events: [ev(6)], epoch: { term: 2, node: 1 } });
      await expectCode(journal.write({ kind: 'k', key: 'old', events: [ev(7)], epoch: { term: 1, node: 9 } }), 'ERR_STALE_EPOCH');
      expect(await journal.read('k', 'old')).toMatchObject({ epoch: { term: 2, node: 1 } });
      expect((await journal.readFrom('k', 'old', 0, 100)).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    } finally {
      await journal.close();
    }
    // The upgraded record keeps its first two fields where an older build reads them.
    const env = acquireEnv(path);
    try {
      expect(env.heads.get(['k', 'old'])).toEqual([6, 0, 2, 1]);
    } finally {
      await releaseEnv(env, 1_000, (fn, ms) => {
        const t = setTimeout(fn, ms);
        return () => clearTimeout(t);
      });
    }
  });

  it('keeps the epoch across close and reopen', async () => {
    const { journal, path } = open();
    await journal.write({ kind: 'k', key: 'x', events: [ev(1)], epoch: { term: 4, node: 2 } });
    await journal.close();
    const again = lmdbAt(path);
    try {
      expect((await again.read('k', 'x')).epoch).toEqual({ term: 4, node: 2 });
      await expectCode(again.write({ kind: 'k', key: 'x', events: [ev(2)], epoch: { term: 4, node: 1 } }), 'ERR_STALE_EPOCH');
    } finally {
      await again.close();
    }
  });

  it('validates its config and names the option', async () => {
    expect(() => createJournal({ type: 'lmdb', path: '' })).toThrow(/config\.path must be a non-empty string/);
    expect(() => createJournal({ type: 'lmdb', path: 'x', durability: 'sometimes' as 'flush' })).toThrow(
      /config\.durability must be 'flush' or 'commit'/,
    );
    expect(() => createJournal({ type: 'lmdb', path: 'x', recentReplies: -1 })).toThrow(
      /config\.recentReplies must be a non-negative integer/,
    );
    expect(() => createJournal({ type: 'disk' } as never)).toThrow(/config\.type must be 'memory' or 'lmdb'/);
    await expectCode(LmdbJournal.open({ type: 'lmdb', path: '' }), 'ERR_INVALID_OPTION');
    expect(createJournal({ type: 'memory' })).toBeInstanceOf(MemoryJournal);
    const j = createJournal({ type: 'lmdb', path: join(root, `env-${dirs++}`) });
    expect(j).toBeInstanceOf(LmdbJournal);
    await j.close();
  });
});
