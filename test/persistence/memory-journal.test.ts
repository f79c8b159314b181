import { describe, expect, it } from 'vitest';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';
import type { EventRecord } from '../../src/persistence/journal.ts';

// What the contract suite leaves to MemoryJournal alone: its defaults, its exact refusals, and
// that it shares no array with its callers (it keeps references, not copies of values).

const ev = (seq: number): EventRecord => ({ seq, v: 1, event: { n: seq } });
const evs = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ev(from + i));
const seqs = (events: readonly EventRecord[]) => events.map((e) => e.seq);

describe('MemoryJournal', () => {
  it('compacts on snapshot by default: events a snapshot covers are dropped', async () => {
    const j = new MemoryJournal();
    await j.write({ kind: 'k', key: 'x', events: evs(1, 5), snapshot: { seq: 3, v: 1, state: { n: 3 } } });
    expect(seqs(await j.readFrom('k', 'x', 0, 100))).toEqual([4, 5]);
  });

  it('an older snapshot after compaction drops nothing more', async () => {
    const j = new MemoryJournal();
    await j.write({ kind: 'k', key: 'x', events: evs(1, 8), snapshot: { seq: 5, v: 1, state: {} } });
    await j.write({ kind: 'k', key: 'x', events: [ev(9)], snapshot: { seq: 3, v: 1, state: {} } });
    expect(seqs(await j.readFrom('k', 'x', 0, 100))).toEqual([6, 7, 8, 9]);
  });

  it('reads nothing after a snapshot that covers every event', async () => {
    const j = new MemoryJournal();
    await j.write({ kind: 'k', key: 'x', events: evs(1, 4), snapshot: { seq: 4, v: 1, state: {} } });
    expect(await j.readFrom('k', 'x', 0, 100)).toEqual([]);
    const history = await j.read('k', 'x');
    expect(history.events).toEqual([]);
    expect(history.snapshot).toEqual({ seq: 4, v: 1, state: {} });
  });

  it.each([
    ['a gap in the seqs', { events: [ev(1), ev(3)] }, 'event seq 3 does not follow 1 for k/x'],
    ['a snapshot past the last event', { events: evs(1, 2), snapshot: { seq: 9, v: 1, state: {} } }, 'snapshot seq 9 is past the last event 2 for k/x'],
  ])('refuses %s with ERR_JOURNAL_WRITE and applies nothing', async (_, w, message) => {
    const j = new MemoryJournal();
    await expect(j.write({ kind: 'k', key: 'x', ...w })).rejects.toMatchObject({ code: 'ERR_JOURNAL_WRITE', message });
    expect(await j.read('k', 'x')).toEqual({ events: [], replies: [] });
  });

  it('refuses a malformed epoch naming the actor', async () => {
    const j = new MemoryJournal();
    const w = { kind: 'k', key: 'x', events: [ev(1)], epoch: { term: -1, node: 0 } };
    await expect(j.write(w)).rejects.toMatchObject({ code: 'ERR_JOURNAL_WRITE', details: { kind: 'k', key: 'x' } });
  });

  it('shares no array with its callers', async () => {
    const j = new MemoryJournal();
    const events = evs(1, 2);
    await j.write({ kind: 'k', key: 'x', events, replies: [{ msgId: 'm', ok: true }] });
    events.push(ev(3)); // the caller reuses its array
    const read = await j.read('k', 'x');
    read.replies.length = 0;
    read.events.length = 0;
    const again = await j.read('k', 'x');
    expect(seqs(again.events)).toEqual([1, 2]);
    expect(again.replies).toEqual([{ msgId: 'm', ok: true }]);
  });

  it('a history without a snapshot or an epoch has no such keys', async () => {
    const j = new MemoryJournal();
    await j.write({ kind: 'k', key: 'x', events: [ev(1)] });
    const history = await j.read('k', 'x');
    expect('snapshot' in history).toBe(false);
    expect('epoch' in history).toBe(false);
  });

  it('keeps the newest recentReplies replies', async () => {
    const j = new MemoryJournal({ recentReplies: 2 });
    for (let i = 1; i <= 3; i++) await j.write({ kind: 'k', key: 'x', events: [ev(i)], replies: [{ msgId: `m${i}`, ok: true }] });
    expect((await j.read('k', 'x')).replies.map((r) => r.msgId)).toEqual(['m2', 'm3']);
  });

  it('refuses writes once closed', async () => {
    const j = new MemoryJournal();
    await j.close();
    await expect(j.write({ kind: 'k', key: 'x', events: [ev(1)] })).rejects.toMatchObject({ code: 'ERR_STOPPED' });
  });
});
