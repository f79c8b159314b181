/**
 * The pure parts of the session lifecycle: replay over tombstones and reminder records (table
 * driven), and the journals' and partition stores' handling of a tombstone write — what they
 * reclaim, and that a partition snapshot (how a replica far behind catches up) carries the
 * tombstone's effect and the reminder index, so installing it cannot bring old rows back.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defineActor } from '../../src/actors/define-actor.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { needsFullLog, replay } from '../../src/actors/replay.ts';
import { foldReminders, EMPTY_REMINDERS, type ReminderTable } from '../../src/actors/system-records.ts';
import type { ActorHistory, ActorWrite, EventRecord, Journal } from '../../src/persistence/journal.ts';
import { LmdbJournal } from '../../src/persistence/lmdb-journal.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';
import { LmdbPartitionStore } from '../../src/replication/lmdb-partition-store.ts';
import { MemoryPartitionStore } from '../../src/replication/memory-partition-store.ts';
import { emptyPartitionMeta, type PartitionStore } from '../../src/replication/partition-store.ts';
import { partitionOf } from '../../src/replication/partition-table.ts';
import { note } from './lifecycle-actors.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-lifecycle-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const kind = new ActorRegistry([note]).get('note')!;
const ev = (seq: number, event: unknown, v = 1): EventRecord => ({ seq, v, event });
const tomb = (seq: number) => ev(seq, { deleted: true }, 0);
const remind = (seq: number, name: string, due: number) => ev(seq, { remind: { name, due, message: { command: 'fired' } } }, 0);

describe('replay over lifecycle records', () => {
  const cases: Array<{ name: string; history: ActorHistory; state: unknown; seq: number; since: number; reminders: string[] }> = [
    {
      name: 'events only',
      history: { events: [ev(1, { by: 2 }), ev(2, { by: 3 })], replies: [] },
      state: { n: 5, fired: 0 },
      seq: 2,
      since: 2,
      reminders: [],
    },
    {
      name: 'a tombstone resets to initial and drops reminders',
      history: { events: [ev(1, { by: 2 }), remind(2, 'a', 10), tomb(3), ev(4, { by: 1 })], replies: [] },
      state: { n: 1, fired: 0 },
      seq: 4,
      since: 1,
      reminders: [],
    },
    {
      name: 'a tombstone after a snapshot wins over it',
      history: { snapshot: { seq: 5, v: 1, state: { n: 50, fired: 0 } }, events: [tomb(6)], replies: [] },
      state: { n: 0, fired: 0 },
      seq: 6,
      since: 0,
      reminders: [],
    },
    {
      name: 'a log that starts at its tombstone (what was under it reclaimed)',
      history: { events: [tomb(40), remind(41, 'b', 99), ev(42, { by: 4 })], replies: [] },
      state: { n: 4, fired: 0 },
      seq: 42,
      since: 2,
      reminders: ['b'],
    },
    {
      name: 'a snapshot of an older version under a tombstone needs nothing older',
      history: { snapshot: { seq: 3, v: 0, state: 'old shape' }, events: [tomb(4), ev(5, { by: 1 })], replies: [] },
      state: { n: 1, fired: 0 },
      seq: 5,
      since: 1,
      reminders: [],
    },
    {
      name: 'reminders carried after a snapshot replace the table; unremind removes',
      history: {
        snapshot: { seq: 100, v: 1, state: { n: 9, fired: 0 } },
        events: [
          ev(
            101,
            {
              reminders: [
                ['a', 5, { command: 'fired' }],
                ['b', 6, { command: 'fired' }],
              ],
            },
            0,
          ),
          ev(102, { unremind: 'a' }, 0),
        ],
        replies: [],
      },
      state: { n: 9, fired: 0 },
      seq: 102,
      since: 2,
      reminders: ['b'],
    },
    {
      name: 'a push record is not an event',
      history: { events: [ev(1, { push: 'hi' }, 0), ev(2, { by: 1 })], replies: [] },
      state: { n: 1, fired: 0 },
      seq: 2,
      since: 2,
      reminders: [],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = replay(kind, 'k', c.history);
      expect(r.state).toEqual(c.state);
      expect(r.seq).toBe(c.seq);
      expect(r.eventsSinceSnapshot).toBe(c.since);
      expect([...r.reminders.keys()]).toEqual(c.reminders);
    });
  }

  it('needsFullLog: not with a tombstone after an old snapshot', () => {
    expect(needsFullLog(kind, { snapshot: { seq: 3, v: 0, state: 1 }, events: [tomb(4)], replies: [] })).toBeUndefined();
    expect(needsFullLog(kind, { snapshot: { seq: 3, v: 0, state: 1 }, events: [ev(4, { by: 1 })], replies: [] })).toBe(3);
  });

  it('foldReminders never mutates the table it is given (a failed message folds again from it)', () => {
    const t0: ReminderTable = foldReminders(EMPTY_REMINDERS, remind(1, 'a', 5));
    const t1 = foldReminders(t0, ev(2, { unremind: 'a' }, 0));
    expect([...t0.keys()]).toEqual(['a']);
    expect(t1.size).toBe(0);
    expect(foldReminders(t0, ev(3, { by: 1 }))).toBe(t0);
  });
});

describe('journals: a tombstone write', () => {
  const journals: Array<{ name: string; make: () => Journal }> = [
    { name: 'MemoryJournal', make: () => new MemoryJournal({ compactOnSnapshot: false }) },
    { name: 'LmdbJournal', make: () => new LmdbJournal({ type: 'lmdb', path: tempDir(), durability: 'commit' }) },
  ];
  for (const j of journals) {
    it(`${j.name}: deletes events and the snapshot under it, keeps replies and the head, indexes due`, async () => {
      const journal = j.make();
      cleanups.push(() => journal.close());
      const w = (events: EventRecord[], extra: Partial<ActorWrite> = {}) => journal.write({ kind: 'note', key: 'k', events, ...extra });
      await w([ev(1, { by: 1 }), ev(2, { by: 1 })], {
        snapshot: { seq: 2, v: 1, state: { n: 2, fired: 0 } },
        replies: [{ msgId: 'm1', ok: true, value: 1 }],
      });
      await w([remind(3, 'r', 500)], { due: 500 });
      expect(await journal.dueActors!(1_000, 10)).toEqual([{ kind: 'note', key: 'k', due: 500 }]);
      await w([ev(4, { by: 1 }), tomb(5), ev(6, { by: 7 })], { tombstone: 5, due: null });
      expect(await journal.readFrom('note', 'k', 0, 100)).toEqual([tomb(5), ev(6, { by: 7 })]);
      const h = await journal.read('note', 'k');
      expect(h.snapshot).toBeUndefined();
      expect(h.replies.map((r) => r.msgId)).toEqual(['m1']);
      expect(await journal.dueActors!(1_000, 10)).toEqual([]);
      // Seqs go on from the head; a gap is still refused.
      await expect(w([ev(6, { by: 1 })])).rejects.toMatchObject({ code: 'ERR_JOURNAL_WRITE' });
      await w([ev(7, { by: 1 })]);
      expect(replay(kind, 'k', await journal.read('note', 'k')).state).toEqual({ n: 8, fired: 0 });
    });

    it(`${j.name}: a malformed tombstone or due is refused, and nothing of the write applies`, async () => {
      const journal = j.make();
      cleanups.push(() => journal.close());
      await journal.write({ kind: 'note', key: 'k', events: [ev(1, { by: 1 })] });
      for (const bad of [
        { events: [ev(2, { by: 1 })], tombstone: 9 },
        { events: [tomb(2)], tombstone: 2, snapshot: { seq: 1, v: 1, state: {} } },
        { events: [ev(2, { by: 1 })], due: -1 },
        { events: [ev(2, { by: 1 })], due: 1.5 },
      ] as Array<Partial<ActorWrite>>) {
        await expect(journal.write({ kind: 'note', key: 'k', events: [], ...bad }), JSON.stringify(bad)).rejects.toMatchObject({
          code: 'ERR_JOURNAL_WRITE',
          message: expect.stringMatching(/write\.(tombstone|snapshot|due)/),
        });
      }
      expect((await journal.readFrom('note', 'k', 0, 10)).map((e) => e.seq)).toEqual([1]);
    });
  }
});

describe('partition stores: a replica catching up from a partition snapshot', () => {
  const stores: Array<{ name: string; make: () => PartitionStore }> = [
    { name: 'MemoryPartitionStore', make: () => new MemoryPartitionStore({ actors: new MemoryJournal({ compactOnSnapshot: false }) }) },
    { name: 'LmdbPartitionStore', make: () => new LmdbPartitionStore({ path: tempDir(), durability: 'commit' }) },
  ];
  for (const s of stores) {
    it(`${s.name}: installing the primary's snapshot removes the old session's rows and carries the reminder index`, async () => {
      const primary = s.make();
      const behind = s.make();
      cleanups.push(
        () => primary.close(),
        () => behind.close(),
      );
      const key = 'k';
      const p = partitionOf(key);
      const e = { term: 1, node: 1 };
      const entry = (seq: number, data: ActorWrite[]) => ({ seq, epoch: e, data });
      const old = entry(1, [{ kind: 'note', key, events: [ev(1, { by: 5 }), ev(2, { by: 5 })] }]);
      const meta = (seq: number) => ({ ...emptyPartitionMeta(), promised: e, last: { epoch: e, seq }, commit: seq });
      // Both hold the old session; only the primary goes on to the delete and a reminder.
      for (const store of [primary, behind]) {
        await store.persist(p, { entries: [old], meta: meta(1) });
        await store.apply(p, 1);
      }
      await primary.persist(p, {
        entries: [entry(2, [{ kind: 'note', key, events: [tomb(3), remind(4, 'r', 777)], tombstone: 3, due: 777 }])],
        meta: meta(2),
      });
      await primary.apply(p, 2);
      expect((await primary.actors.readFrom('note', key, 0, 100)).map((x) => x.seq)).toEqual([3, 4]);
      const snap = await primary.snapshot(p);
      expect((await behind.actors.readFrom('note', key, 0, 100)).map((x) => x.seq)).toEqual([1, 2]);
      expect((await behind.install(p, snap, meta(2))).installed).toBe(true);
      expect((await behind.actors.readFrom('note', key, 0, 100)).map((x) => x.seq)).toEqual([3, 4]);
      expect(replay(kind, key, await behind.actors.read('note', key)).state).toEqual({ n: 0, fired: 0 });
      expect(await behind.dueActors(new Set([p]), 1_000, 10)).toEqual([{ kind: 'note', key, due: 777 }]);
      expect(await behind.dueActors(new Set([(p + 1) % behind.partitions]), 1_000, 10)).toEqual([]);
    });
  }
});

describe('defineActor ttlMs', () => {
  const base = { kind: 'k', initial: () => 0, apply: (s: number) => s, commands: {} };
  for (const bad of [0, -5, 1.5, '10', Number.NaN, 400 * 24 * 3_600_000]) {
    it(`refuses ${String(bad)} with ERR_INVALID_OPTION naming k.ttlMs`, () => {
      expect(() => defineActor({ ...base, ttlMs: bad as number })).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringMatching(/^k\.ttlMs must be/) }),
      );
    });
  }
  it('accepts a positive integer, and the registry carries it', () => {
    expect(new ActorRegistry([defineActor({ ...base, ttlMs: 60_000 })]).get('k')!.ttlMs).toBe(60_000);
  });
});
