/**
 * Session lifecycle in one actor host on a simulated clock (docs/sessions-lifecycle.md):
 * `ctx.delete()`, durable reminders, `ttlMs`; over a `MemoryJournal` and, for what must outlive
 * the process, an `LmdbJournal` in a temp directory reopened by a second host.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ActorHost } from '../../src/actors/actor-host.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { reminderDefaults, ttlSlackMs } from '../../src/actors/system-records.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import type { Journal } from '../../src/persistence/journal.ts';
import { LmdbJournal } from '../../src/persistence/lmdb-journal.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';
import { note, visit } from './lifecycle-actors.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

/** Lets queued microtasks and immediates run (the host drains on both); not a timed wait. */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

function hostOver(journal: Journal, clock: SimulatedClock): ActorHost {
  const host = new ActorHost({ registry: new ActorRegistry([note, visit]), journal, clock, log: silentLogger, slot: 0, slots: 1 });
  cleanups.push(() => host.stop());
  return host;
}

/** Moves simulated time by `ms` in 100 ms steps, letting the host's turns and journal calls run between them. */
async function advance(clock: SimulatedClock, ms: number): Promise<void> {
  const end = clock.now() + ms;
  while (clock.now() < end) {
    clock.advance(Math.min(100, end - clock.now()));
    await settle();
  }
}

function lmdbDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-lifecycle-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function storedEvents(journal: Journal, kind: string, key: string): Promise<number> {
  return (await journal.readFrom(kind, key, 0, 10_000)).length;
}

describe('ctx.delete()', () => {
  for (const make of [
    { name: 'MemoryJournal (keeping the log)', journal: () => new MemoryJournal({ compactOnSnapshot: false }) },
    { name: 'LmdbJournal', journal: () => new LmdbJournal({ type: 'lmdb', path: lmdbDir(), durability: 'commit' }) },
  ]) {
    it(`${make.name}: state back to initial, seqs continue, what was stored under the tombstone is reclaimed`, async () => {
      const clock = new SimulatedClock();
      const journal = make.journal();
      cleanups.push(() => journal.close());
      const host = hostOver(journal, clock);
      for (let i = 0; i < 30; i++) await host.ask('note', 'k', { command: 'incr', input: { by: 2 }, id: `m${i}` });
      expect(await host.ask('note', 'k', { command: 'get' })).toEqual({ n: 60, fired: 0 });
      const before = await storedEvents(journal, 'note', 'k');
      expect(before).toBe(30);
      // del emits 1000, deletes, then emits 5 into the fresh session.
      expect(await host.ask('note', 'k', { command: 'del', input: { after: 5 }, id: 'd1' })).toEqual({ n: 5, fired: 0 });
      const seq = (await host.inspect('note', 'k')).seq;
      expect(seq, 'seq continues past the old session: 30 + 1000-event + tombstone + 5-event').toBe(33);
      // Only the tombstone and what follows it are stored.
      expect(await journal.readFrom('note', 'k', 0, 100)).toEqual([
        { seq: 32, v: 0, event: { deleted: true } },
        { seq: 33, v: 1, event: { by: 5 } },
      ]);
      expect(await storedEvents(journal, 'note', 'k')).toBeLessThan(before);
      // A retried id of the old session answers its recorded reply; nothing applies again.
      expect(await host.ask('note', 'k', { command: 'incr', input: { by: 2 }, id: 'm3' })).toEqual({ n: 8, fired: 0 });
      expect(await host.ask('note', 'k', { command: 'del', input: { after: 5 }, id: 'd1' })).toEqual({ n: 5, fired: 0 });
      // A new activation rebuilds the same: the fresh session from the tombstone on.
      const fresh = hostOver(journal, clock);
      expect(await fresh.ask('note', 'k', { command: 'get' })).toEqual({ n: 5, fired: 0 });
      expect((await fresh.inspect('note', 'k')).seq).toBe(33);
      expect(await fresh.ask('note', 'k', { command: 'incr', input: { by: 1 } })).toEqual({ n: 6, fired: 0 });
      expect((await journal.readFrom('note', 'k', 33, 10)).map((e) => e.seq)).toEqual([34]);
    });
  }

  it('a handler that throws after delete() leaves the session as it was', async () => {
    const clock = new SimulatedClock();
    const journal = new MemoryJournal({ compactOnSnapshot: false });
    const host = hostOver(journal, clock);
    await host.ask('note', 'k', { command: 'incr', input: { by: 7 } });
    await expect(host.ask('note', 'k', { command: 'delBoom' })).rejects.toMatchObject({ code: 'ERR_HANDLER_FAILED' });
    await advance(clock, 1_000); // the restart backoff
    expect(await host.ask('note', 'k', { command: 'get' })).toEqual({ n: 7, fired: 0 });
    expect(await storedEvents(journal, 'note', 'k')).toBe(1);
  });

  it('a read-only command cannot delete', async () => {
    const host = hostOver(new MemoryJournal(), new SimulatedClock());
    expect(await host.ask('note', 'k', { command: 'peekDelete' })).toBe('ERR_INVALID_DEFINITION');
  });
});

describe('durable reminders', () => {
  it('fires once at its time, with the message it was set with; the fire removes it', async () => {
    const clock = new SimulatedClock();
    const journal = new MemoryJournal({ compactOnSnapshot: false });
    const host = hostOver(journal, clock);
    await host.ask('note', 'k', { command: 'remind', input: { name: 'r1', delayMs: 5_000 } });
    await advance(clock, 4_900);
    expect(await host.ask('note', 'k', { command: 'get' })).toEqual({ n: 0, fired: 0 });
    await advance(clock, 200);
    expect(await host.ask('note', 'k', { command: 'get' })).toEqual({ n: 0, fired: 1 });
    await advance(clock, 60_000);
    expect(await host.ask('note', 'k', { command: 'get' })).toEqual({ n: 0, fired: 1 });
    // The fire's turn wrote the removal and the delivered message's event together.
    const events = await journal.readFrom('note', 'k', 0, 100);
    expect(events.map((e) => e.event)).toEqual([
      { remind: { name: 'r1', due: 1_700_000_005_000, message: { command: 'fired', input: { from: 'r1' } } } },
      { unremind: 'r1' },
      { fired: true },
    ]);
    // And a new activation has nothing pending: it does not fire again.
    const fresh = hostOver(journal, clock);
    await advance(clock, 60_000);
    expect(await fresh.ask('note', 'k', { command: 'get' })).toEqual({ n: 0, fired: 1 });
  });

  it('cancelReminder stops it; setting a name again replaces it', async () => {
    const clock = new SimulatedClock();
    const host = hostOver(new MemoryJournal(), clock);
    await host.ask('note', 'k', { command: 'remind', input: { name: 'a', delayMs: 1_000 } });
    await host.ask('note', 'k', { command: 'cancel', input: 'a' });
    await host.ask('note', 'k', { command: 'remind', input: { name: 'b', delayMs: 1_000 } });
    await host.ask('note', 'k', { command: 'remind', input: { name: 'b', delayMs: 3_000 } });
    await advance(clock, 2_000);
    expect(await host.ask('note', 'k', { command: 'get' })).toEqual({ n: 0, fired: 0 });
    await advance(clock, 1_100);
    expect(await host.ask('note', 'k', { command: 'get' })).toEqual({ n: 0, fired: 1 });
  });

  it('a passivated actor is woken for its reminder (the journal index), and it fires once', async () => {
    const clock = new SimulatedClock();
    const journal = new MemoryJournal({ compactOnSnapshot: false });
    const host = hostOver(journal, clock);
    await host.ask('note', 'k', { command: 'remind', input: { name: 'later', delayMs: 30 * 60_000 } });
    await advance(clock, 6 * 60_000); // idleTimeoutMs (5 min) and a sweep: passivated
    expect(host.stats().resident).toBe(0);
    await advance(clock, 25 * 60_000);
    expect(host.stats().resident, 'woken within the horizon before it is due').toBe(1);
    expect(await host.ask('note', 'k', { command: 'get' })).toEqual({ n: 0, fired: 1 });
    expect(await journal.dueActors(Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
  });

  it('a pending reminder fires after a restart of the node (LMDB reopened by a new host)', async () => {
    const dir = lmdbDir();
    const clock = new SimulatedClock();
    const first = new LmdbJournal({ type: 'lmdb', path: dir });
    const host = new ActorHost({ registry: new ActorRegistry([note, visit]), journal: first, clock, log: silentLogger, slot: 0, slots: 1 });
    await host.ask('note', 'k', { command: 'remind', input: { name: 'r', delayMs: 10_000 } });
    await host.stop();
    await first.close();
    await advance(clock, 20_000); // down past its due time
    const journal = new LmdbJournal({ type: 'lmdb', path: dir });
    cleanups.push(() => journal.close());
    const restarted = hostOver(journal, clock);
    await advance(clock, 200); // the start's scan wakes it; no message is sent to it
    expect(restarted.stats().resident).toBe(1);
    expect(await restarted.ask('note', 'k', { command: 'get' })).toEqual({ n: 0, fired: 1 });
    expect(await journal.dueActors(Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
  });

  it('reminders set before a snapshot survive it (they ride along after it)', async () => {
    const clock = new SimulatedClock();
    const journal = new MemoryJournal(); // drops what snapshots cover
    const host = hostOver(journal, clock);
    await host.ask('note', 'k', { command: 'remind', input: { name: 'r', delayMs: 60_000 } });
    for (let i = 0; i < 120; i++) await host.ask('note', 'k', { command: 'incr' }); // a snapshot at 100 events
    const history = await journal.read('note', 'k');
    expect(history.snapshot).toBeDefined();
    const fresh = hostOver(journal, clock);
    await host.stop();
    await advance(clock, 61_000);
    expect(await fresh.ask('note', 'k', { command: 'get' })).toEqual({ n: 120, fired: 1 });
  });

  it('bad arguments are refused with a named error, and nothing of the message is half-applied', async () => {
    const clock = new SimulatedClock();
    const journal = new MemoryJournal({ compactOnSnapshot: false });
    const host = hostOver(journal, clock);
    const expected: Record<string, [string, RegExp]> = {
      emptyName: ['ERR_INVALID_OPTION', /ctx\.remind name/],
      longName: ['ERR_INVALID_OPTION', /ctx\.remind name/],
      reservedName: ['ERR_INVALID_OPTION', /ctx\.remind name .*'\$'/],
      negativeDelay: ['ERR_INVALID_OPTION', /ctx\.remind delayMs/],
      fractionalDelay: ['ERR_INVALID_OPTION', /ctx\.remind delayMs/],
      hugeDelay: ['ERR_INVALID_OPTION', /ctx\.remind delayMs/],
      unknownCommand: ['ERR_UNKNOWN_COMMAND', /message\.command.*'nope'/],
      badInput: ['ERR_NOT_SERIALIZABLE', /reminder/],
      withId: ['ERR_INVALID_OPTION', /message\.id/],
      cancelBadName: ['ERR_INVALID_OPTION', /ctx\.remind name/],
    };
    for (const [which, [code, message]] of Object.entries(expected)) {
      const r = (await host.ask('note', 'k', { command: 'badRemind', input: which })) as { code: string; message: string };
      expect(r.code, which).toBe(code);
      expect(r.message, which).toMatch(message);
    }
    // Uncaught, the bad call fails its message: the event emitted before it is undone too.
    await expect(host.ask('note', 'k', { command: 'remind', input: { name: '', delayMs: 1, emit: true } })).rejects.toMatchObject({
      code: 'ERR_HANDLER_FAILED',
    });
    await advance(clock, 1_000);
    expect(await host.ask('note', 'k', { command: 'get' })).toEqual({ n: 0, fired: 0 });
    expect(await storedEvents(journal, 'note', 'k')).toBe(0);
    expect(await journal.dueActors(Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
  });

  it('a reminder set by a message that is then refused is not pending (the actor stays resident)', async () => {
    const clock = new SimulatedClock();
    const journal = new MemoryJournal({ compactOnSnapshot: false });
    const host = hostOver(journal, clock);
    await expect(host.ask('note', 'k', { command: 'remindRefused' })).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    // A later turn of the same activation changes the reminders (and arms their timer again).
    await host.ask('note', 'k', { command: 'remind', input: { name: 'legit', delayMs: 2_000 } });
    await advance(clock, 5_000);
    expect(await host.ask('note', 'k', { command: 'get' }), 'only the legit reminder fired').toEqual({ n: 0, fired: 1 });
    expect(await journal.dueActors(Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
  });

  it('a delete cancels the session’s reminders', async () => {
    const clock = new SimulatedClock();
    const journal = new MemoryJournal({ compactOnSnapshot: false });
    const host = hostOver(journal, clock);
    await host.ask('note', 'k', { command: 'remind', input: { name: 'r', delayMs: 5_000 } });
    await host.ask('note', 'k', { command: 'del' });
    await advance(clock, 10_000);
    expect(await host.ask('note', 'k', { command: 'get' })).toEqual({ n: 0, fired: 0 });
    expect(await journal.dueActors(Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
  });
});

describe('ttlMs', () => {
  const TTL = 10_000;
  const latest = TTL + 2 * ttlSlackMs(TTL);

  it('an idle resident session expires within ttl + 2 × slack; an active one does not', async () => {
    const clock = new SimulatedClock();
    const journal = new MemoryJournal({ compactOnSnapshot: false });
    const host = hostOver(journal, clock);
    await host.ask('visit', 'idle', { command: 'hit' });
    await host.ask('visit', 'busy', { command: 'hit' });
    // 'busy' gets a read (activity too) every 250 ms for 30 s; 'idle' none.
    for (let t = 0; t < 30_000; t += 250) {
      await advance(clock, 250);
      await host.ask('visit', 'busy', { command: 'get' });
    }
    expect(await host.ask('visit', 'busy', { command: 'get' })).toEqual({ n: 1 });
    expect(await host.ask('visit', 'idle', { command: 'get' })).toEqual({ n: 0 });
    expect((await journal.readFrom('visit', 'idle', 0, 100)).at(-1)?.event).toEqual({ deleted: true });
    // Not one journal record per message: the deadline is journaled again once per slack (625 ms) at most.
    const busyRecords = (await journal.readFrom('visit', 'busy', 0, 1_000)).length;
    expect(busyRecords).toBeGreaterThan(1);
    expect(busyRecords).toBeLessThanOrEqual(1 + Math.ceil(30_000 / ttlSlackMs(TTL)));
  });

  it('expires not before ttlMs and not after ttl + 2 × slack', async () => {
    const clock = new SimulatedClock();
    const journal = new MemoryJournal({ compactOnSnapshot: false });
    const host = hostOver(journal, clock);
    await host.ask('visit', 'v', { command: 'hit' });
    await advance(clock, TTL - 100);
    expect((await journal.readFrom('visit', 'v', 0, 100)).some((e) => (e.event as { deleted?: true }).deleted)).toBe(false);
    await advance(clock, latest - TTL + 200);
    expect((await journal.readFrom('visit', 'v', 0, 100)).at(-1)?.event).toEqual({ deleted: true });
  });

  it('a passivated idle session expires too (woken by the index), and stays quiet afterwards', async () => {
    const clock = new SimulatedClock();
    const journal = new MemoryJournal({ compactOnSnapshot: false });
    const long = 10 * 60_000; // far past the waking horizon, so the sweep passivates it meanwhile
    const host = new ActorHost({
      registry: new ActorRegistry([{ ...visit, ttlMs: long, idleTimeoutMs: 1_000 } as typeof visit]),
      journal,
      clock,
      log: silentLogger,
      slot: 0,
      slots: 1,
    });
    cleanups.push(() => host.stop());
    await host.ask('visit', 'v', { command: 'hit' });
    expect((await journal.dueActors(Number.MAX_SAFE_INTEGER, 10)).map((a) => a.key)).toEqual(['v']);
    await advance(clock, 5_000);
    expect(host.stats().resident, 'passivated').toBe(0);
    await advance(clock, long - 10_000);
    expect((await journal.readFrom('visit', 'v', 0, 100)).map((e) => e.event).includes('hit'), 'not expired early').toBe(true);
    await advance(clock, 10_000 + 2 * ttlSlackMs(long) + reminderDefaults.scanEveryMs);
    expect((await journal.readFrom('visit', 'v', 0, 100)).at(-1)?.event).toEqual({ deleted: true });
    expect(await journal.dueActors(Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
    await advance(clock, 60_000);
    expect(host.stats().resident).toBe(0);
  });
});
