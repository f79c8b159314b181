import { afterEach, describe, expect, it } from 'vitest';
import { ActorHost } from '../../src/actors/actor-host.ts';
import { defineActor, optionalInt } from '../../src/actors/define-actor.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { isTroupeError, troupeError } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/core/logger.ts';
import type { ActorWrite, Journal } from '../../src/persistence/journal.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';
import { cart, counter, recorder } from '../fixtures/actors.ts';

/** Lets queued microtasks and immediates run (the host drains on both); not a timed wait. */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

/** A journal whose writes stay pending until the test releases or fails them. */
class ManualJournal implements Journal {
  readonly inner = new MemoryJournal();
  readonly pending: Array<{ w: ActorWrite; resolve: () => void; reject: (e: unknown) => void }> = [];
  writes = 0;
  write(w: ActorWrite): Promise<void> {
    this.writes++;
    return new Promise((resolve, reject) => this.pending.push({ w, resolve, reject }));
  }
  async releaseAll(): Promise<void> {
    while (this.pending.length > 0) {
      const p = this.pending.shift()!;
      await this.inner.write(p.w).then(p.resolve, p.reject);
    }
  }
  failAll(code: 'ERR_STORAGE_FULL' | 'ERR_JOURNAL_WRITE'): void {
    for (const p of this.pending.splice(0)) p.reject(troupeError(code, 'injected'));
  }
  read(kind: string, key: string) {
    return this.inner.read(kind, key);
  }
  readFrom(kind: string, key: string, afterSeq: number, limit: number) {
    return this.inner.readFrom(kind, key, afterSeq, limit);
  }
  close() {
    return this.inner.close();
  }
}

const thrower = defineActor({
  kind: 'thrower',
  initial: () => ({ n: 0 }),
  apply: (s: { n: number }, _e: 'inc') => ({ n: s.n + 1 }),
  commands: {
    inc: { handle: (ctx) => (ctx.emit('inc'), { n: ctx.state.n }) },
    boom: {
      handle: (ctx) => {
        ctx.emit('inc');
        throw new Error('kaput');
      },
    },
    asyncBoom: {
      handle: async () => {
        await Promise.resolve();
        throw new Error('async kaput');
      },
    },
    get: { readOnly: true, handle: (ctx) => ({ n: ctx.state.n }) },
    emitInRead: { readOnly: true, handle: (ctx) => (ctx.emit('inc'), null) },
  },
  restart: { maxRestarts: 2, periodMs: 1_000, backoffInitialMs: 100, backoffMaxMs: 1_000, backoffFactor: 2 },
});

const tiny = defineActor({
  kind: 'tiny',
  initial: () => ({ n: 0 }),
  apply: (s: { n: number }) => ({ n: s.n + 1 }),
  commands: {
    hang: { handle: () => new Promise(() => undefined) },
    get: { readOnly: true, handle: (ctx) => ({ n: ctx.state.n }) },
  },
  mailbox: { capacity: 2 },
});

const versioned = defineActor({
  kind: 'versioned',
  version: 2,
  initial: () => ({ total: 0 }),
  apply: (s: { total: number }, e: { amount: number }) => ({ total: s.total + e.amount }),
  upcasters: { 1: (e) => ({ amount: (e as { cents: number }).cents / 100 }) },
  commands: {
    add: { input: (raw) => ({ amount: optionalInt(raw, 'amount', 1) }), handle: (ctx, { amount }) => (ctx.emit({ amount }), ctx.state) },
  },
  snapshotEvery: 3,
});

let hosts: ActorHost[] = [];
function makeHost(
  journal: Journal = new MemoryJournal(),
  clock = new SimulatedClock(),
  extra: Partial<ConstructorParameters<typeof ActorHost>[0]> = {},
) {
  const registry = new ActorRegistry([counter, cart, recorder, thrower, tiny, versioned]);
  const host = new ActorHost({ registry, journal, clock, log: silentLogger, slot: 0, slots: 1, ...extra });
  hosts.push(host);
  return { host, clock, journal };
}

afterEach(async () => {
  for (const h of hosts) await h.stop();
  hosts = [];
});

describe('ActorHost messaging', () => {
  it('activates on first message and replies', async () => {
    const { host } = makeHost();
    await expect(host.ask('counter', 'a', { command: 'incr', input: { by: 5 } })).resolves.toEqual({ n: 5 });
    await expect(host.ask('counter', 'a', { command: 'get' })).resolves.toEqual({ n: 5 });
    expect(host.stats().resident).toBe(1);
  });

  it('serializes concurrent asks to one actor, even with async handlers (no interleaving)', async () => {
    const { host } = makeHost(undefined, new SimulatedClock());
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => host.ask('recorder', 'r', { command: 'add', input: { v: i, delayMs: i % 3 } })),
    );
    expect(replies.map((r) => (r as { n: number }).n)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const state = (await host.ask('recorder', 'r', { command: 'get' })) as { entries: number[] };
    expect(state.entries).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('keeps FIFO order per sender for tells', async () => {
    const { host } = makeHost();
    for (let i = 0; i < 500; i++) host.tell('recorder', 'fifo', { command: 'add', input: { v: i } });
    const state = (await host.ask('recorder', 'fifo', { command: 'get' })) as { entries: number[] };
    expect(state.entries).toEqual(Array.from({ length: 500 }, (_, i) => i));
  });

  it('gives each actor at most `throughput` messages per turn, then lets others run', async () => {
    const { host } = makeHost(new MemoryJournal(), new SimulatedClock(), { throughput: 4 });
    const order: string[] = [];
    const track = (key: string, i: number) => host.ask('counter', key, { command: 'incr' }).then(() => order.push(`${key}${i}`));
    const all: Promise<unknown>[] = [];
    // Wait for both activations so the two mailboxes fill before the first turn.
    await Promise.all([host.ask('counter', 'a', { command: 'get' }), host.ask('counter', 'b', { command: 'get' })]);
    for (let i = 0; i < 8; i++) all.push(track('a', i));
    for (let i = 0; i < 8; i++) all.push(track('b', i));
    await Promise.all(all);
    expect(order).toEqual(['a0', 'a1', 'a2', 'a3', 'b0', 'b1', 'b2', 'b3', 'a4', 'a5', 'a6', 'a7', 'b4', 'b5', 'b6', 'b7']);
  });

  it('rejects an ask with ERR_ASK_TIMEOUT when the simulated clock passes its deadline', async () => {
    const { host, clock } = makeHost();
    const p = host.ask('tiny', 't', { command: 'hang' }, { timeoutMs: 250 });
    await settle();
    clock.advance(249);
    let settled = false;
    p.catch(() => (settled = true));
    await settle();
    expect(settled).toBe(false);
    clock.advance(1);
    await expect(p).rejects.toMatchObject({ code: 'ERR_ASK_TIMEOUT' });
  });

  it('refuses with ERR_MAILBOX_FULL past capacity and counts refused tells as dead letters', async () => {
    const { host } = makeHost();
    const hung = host.ask('tiny', 't', { command: 'hang' }, { timeoutMs: 60_000 });
    hung.catch(() => undefined);
    await settle();
    const queued = [host.ask('tiny', 't', { command: 'get' }), host.ask('tiny', 't', { command: 'get' })];
    queued.forEach((p) => p.catch(() => undefined));
    await expect(host.ask('tiny', 't', { command: 'get' })).rejects.toMatchObject({ code: 'ERR_MAILBOX_FULL' });
    host.tell('tiny', 't', { command: 'get' });
    expect(host.stats().deadLetters).toBe(1);
    expect(host.stats().queued).toBe(2);
  });

  it.each([
    { name: 'unknown kind', kind: 'nope', command: 'x', input: undefined, code: 'ERR_UNKNOWN_KIND' },
    { name: 'unknown command', kind: 'counter', command: 'nope', input: undefined, code: 'ERR_UNKNOWN_COMMAND' },
    { name: 'prototype name as command', kind: 'counter', command: 'constructor', input: undefined, code: 'ERR_UNKNOWN_COMMAND' },
    { name: 'invalid input', kind: 'counter', command: 'incr', input: { by: 'two' }, code: 'ERR_INVALID_INPUT' },
    { name: 'refusal thrown by a handler', kind: 'cart', command: 'checkout', input: {}, code: 'ERR_INVALID_INPUT' },
    { name: 'emit from a read-only command', kind: 'thrower', command: 'emitInRead', input: undefined, code: 'ERR_HANDLER_FAILED' },
  ])('answers $name with $code', async ({ kind, command, input, code }) => {
    const { host } = makeHost();
    await expect(host.ask(kind, 'k', { command, input })).rejects.toMatchObject({ code });
  });

  it('a refusal does not restart the actor or lose its state', async () => {
    const { host } = makeHost();
    await host.ask('cart', 'c', { command: 'add', input: { sku: 'tea' } });
    await expect(host.ask('cart', 'c', { command: 'add', input: { sku: '' } })).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    await expect(host.ask('cart', 'c', { command: 'get' })).resolves.toMatchObject({ count: 1 });
    expect(host.stats().restarts).toBe(0);
  });
});

describe('ActorHost durability of replies', () => {
  it('holds replies until the turn’s journal write is durable, then releases them in order', async () => {
    const journal = new ManualJournal();
    const { host } = makeHost(journal);
    const got: number[] = [];
    const asks = [1, 2, 3].map((by) =>
      host.ask('counter', 'd', { command: 'incr', input: { by } }).then((r) => got.push((r as { n: number }).n)),
    );
    const read = host.ask('counter', 'd', { command: 'get' }).then((r) => got.push(-(r as { n: number }).n));
    await settle();
    expect(journal.writes).toBe(1); // one write for the whole turn
    expect(got).toEqual([]);
    await journal.releaseAll();
    await Promise.all([...asks, read]);
    expect(got).toEqual([1, 3, 6, -6]);
  });

  it('a failed write answers with the named error, acknowledges nothing, and reloads durable state', async () => {
    const journal = new ManualJournal();
    const { host, clock } = makeHost(journal);
    const first = host.ask('counter', 'w', { command: 'incr', input: { by: 10 } });
    await settle();
    await journal.releaseAll();
    await expect(first).resolves.toEqual({ n: 10 });
    const lost = host.ask('counter', 'w', { command: 'incr', input: { by: 5 } });
    await settle();
    journal.failAll('ERR_STORAGE_FULL');
    await expect(lost).rejects.toMatchObject({ code: 'ERR_STORAGE_FULL' });
    clock.advance(10); // restart backoff
    await settle();
    // Writes resume without a restart of the host once the journal accepts them again.
    const after = host.ask('counter', 'w', { command: 'incr', input: { by: 1 } });
    await settle();
    await journal.releaseAll();
    await expect(after).resolves.toEqual({ n: 11 });
  });

  it('a retried message id is applied once and answered with the recorded reply', async () => {
    const { host } = makeHost();
    const a = await host.ask('counter', 'r', { command: 'incr', input: { by: 7 }, id: 'msg-1' });
    const b = await host.ask('counter', 'r', { command: 'incr', input: { by: 7 }, id: 'msg-1' });
    expect(a).toEqual({ n: 7 });
    expect(b).toEqual({ n: 7 });
    await expect(host.ask('counter', 'r', { command: 'get' })).resolves.toEqual({ n: 7 });
  });

  it('replays through snapshots and upcasts old event versions', async () => {
    const journal = new MemoryJournal();
    await journal.write({ kind: 'versioned', key: 'v', events: [{ seq: 1, v: 1, event: { cents: 250 } }] });
    const { host } = makeHost(journal);
    for (let i = 0; i < 4; i++) await host.ask('versioned', 'v', { command: 'add', input: { amount: 1 } });
    const history = await journal.read('versioned', 'v');
    expect(history.snapshot).toMatchObject({ seq: 3, v: 2, state: { total: 4.5 } });
    expect(history.events.map((e) => e.seq)).toEqual([4, 5]);
    // A second host over the same journal rebuilds the same state from snapshot + tail.
    const { host: again } = makeHost(journal);
    await expect(again.ask('versioned', 'v', { command: 'add', input: { amount: 0 } })).resolves.toEqual({ total: 6.5 });
  });
});

describe('a snapshot of an older version', () => {
  // Version 1 of `versioned` stored cents; its snapshot holds a v1 state ({ cents }).
  const v1Log = async (journal: MemoryJournal) => {
    const events = [1, 2, 3].map((seq) => ({ seq, v: 1, event: { cents: 100 * seq } }));
    await journal.write({ kind: 'versioned', key: 'old', events, snapshot: { seq: 3, v: 1, state: { cents: 600 } } });
    await journal.write({ kind: 'versioned', key: 'old', events: [{ seq: 4, v: 1, event: { cents: 400 } }] });
  };

  it('is ignored and the whole log replayed, the events under it included', async () => {
    const journal = new MemoryJournal({ compactOnSnapshot: false });
    await v1Log(journal);
    expect((await journal.read('versioned', 'old')).events.map((e) => e.seq)).toEqual([4]); // what read() hands out
    const { host } = makeHost(journal);
    await expect(host.ask('versioned', 'old', { command: 'add', input: { amount: 0 } })).resolves.toEqual({ total: 10 });
  });

  it('whose events were compacted fails the activation with ERR_UPCAST instead of losing the state', async () => {
    const journal = new MemoryJournal({ compactOnSnapshot: true });
    await v1Log(journal);
    const { host } = makeHost(journal);
    const e = await host.ask('versioned', 'old', { command: 'add', input: { amount: 0 } }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'ERR_UPCAST', message: expect.stringMatching(/snapshot is of version 1/) });
  });
});

describe('MemoryJournal with the host', () => {
  it('keeps the events as a durable journal does, and a new activation replays them', async () => {
    const journal = new MemoryJournal();
    const { host } = makeHost(journal);
    for (let i = 0; i < 10; i++) await host.ask('counter', 'm', { command: 'incr' });
    const history = await journal.read('counter', 'm');
    expect(history.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(history.snapshot).toBeUndefined();
    const { host: again } = makeHost(journal);
    await expect(again.ask('counter', 'm', { command: 'incr' })).resolves.toEqual({ n: 11 });
  });
});

describe('ActorHost supervision', () => {
  it('a throwing handler restarts only its actor from the journal; its events are discarded', async () => {
    const { host, clock } = makeHost();
    await host.ask('thrower', 'bad', { command: 'inc' });
    await host.ask('thrower', 'good', { command: 'inc' });
    await host.ask('thrower', 'good', { command: 'inc' });
    const err = await host.ask('thrower', 'bad', { command: 'boom' }).catch((e: unknown) => e);
    expect(isTroupeError(err, 'ERR_HANDLER_FAILED')).toBe(true);
    expect((err as Error).message).toContain('kaput');
    const afterRestart = host.ask('thrower', 'bad', { command: 'get' });
    clock.advance(100); // first backoff
    await expect(afterRestart).resolves.toEqual({ n: 1 });
    await expect(host.ask('thrower', 'good', { command: 'get' })).resolves.toEqual({ n: 2 });
    expect(host.stats().restarts).toBe(1);
  });

  it('async handler failures restart too', async () => {
    const { host, clock } = makeHost();
    await expect(host.ask('thrower', 'x', { command: 'asyncBoom' })).rejects.toMatchObject({ code: 'ERR_HANDLER_FAILED' });
    const p = host.ask('thrower', 'x', { command: 'get' });
    clock.advance(100);
    await expect(p).resolves.toEqual({ n: 0 });
  });

  it('escalates past the restart intensity, refuses until the period ends, then starts fresh', async () => {
    const escalations: string[] = [];
    const { host, clock } = makeHost(new MemoryJournal(), new SimulatedClock(), {
      onEscalated: (kind, key) => escalations.push(`${kind}/${key}`),
    });
    for (const delay of [100, 200]) {
      await expect(host.ask('thrower', 'e', { command: 'boom' })).rejects.toMatchObject({ code: 'ERR_HANDLER_FAILED' });
      clock.advance(delay);
      await settle();
    }
    await expect(host.ask('thrower', 'e', { command: 'boom' })).rejects.toMatchObject({ code: 'ERR_HANDLER_FAILED' });
    expect(escalations).toEqual(['thrower/e']);
    await expect(host.ask('thrower', 'e', { command: 'get' })).rejects.toMatchObject({ code: 'ERR_ACTOR_ESCALATED' });
    clock.advance(1_000);
    await expect(host.ask('thrower', 'e', { command: 'get' })).resolves.toEqual({ n: 0 });
  });
});

describe('ActorHost passivation and timers', () => {
  it('passivates idle actors after their timeout and reactivates them with their state', async () => {
    const clock = new SimulatedClock();
    const { host } = makeHost(new MemoryJournal(), clock);
    await host.ask('counter', 'p', { command: 'incr', input: { by: 3 } });
    expect(host.stats().resident).toBe(1);
    clock.advance(5 * 60_000 + 150_000);
    expect(host.stats().resident).toBe(0);
    expect(host.stats().passivated).toBe(1);
    await expect(host.ask('counter', 'p', { command: 'get' })).resolves.toEqual({ n: 3 });
  });

  it('schedules messages to itself on the injected clock', async () => {
    const timed = defineActor({
      kind: 'timed',
      initial: () => ({ ticks: 0 }),
      apply: (s: { ticks: number }) => ({ ticks: s.ticks + 1 }),
      commands: {
        start: { handle: (ctx) => (ctx.schedule(1_000, { command: 'tick' }), null) },
        tick: { handle: (ctx) => (ctx.emit('tick'), null) },
        get: { readOnly: true, handle: (ctx) => ctx.state },
      },
    });
    const clock = new SimulatedClock();
    const host = new ActorHost({
      registry: new ActorRegistry([timed]),
      journal: new MemoryJournal(),
      clock,
      log: silentLogger,
      slot: 0,
      slots: 1,
    });
    hosts.push(host);
    await host.ask('timed', 't', { command: 'start' });
    clock.advance(999);
    await expect(host.ask('timed', 't', { command: 'get' })).resolves.toEqual({ ticks: 0 });
    clock.advance(1);
    await expect(host.ask('timed', 't', { command: 'get' })).resolves.toEqual({ ticks: 1 });
  });
});

describe('ActorHost memory bounds', () => {
  it('the LRU cap holds while cycling far more keys than the cap, and evicted actors keep their state', async () => {
    const journal = new MemoryJournal();
    const { host } = makeHost(journal, new SimulatedClock(), { maxResident: 50 });
    let peak = 0;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 1_000; i++) {
        await host.ask('counter', `lru-${i}`, { command: 'incr' });
        peak = Math.max(peak, host.stats().resident);
      }
    }
    expect(peak).toBeLessThanOrEqual(51); // the cap, plus the one activating
    expect(host.stats().evicted).toBeGreaterThan(2_000);
    const values = await Promise.all([0, 499, 999].map((i) => host.ask('counter', `lru-${i}`, { command: 'get' })));
    expect(values).toEqual([{ n: 3 }, { n: 3 }, { n: 3 }]);
  });

  it('evicts the least recently used first', async () => {
    const { host } = makeHost(new MemoryJournal(), new SimulatedClock(), { maxResident: 3 });
    for (const k of ['a', 'b', 'c']) await host.ask('counter', k, { command: 'incr' });
    await host.ask('counter', 'a', { command: 'incr' }); // a is now the most recent
    await host.ask('counter', 'd', { command: 'incr' }); // evicts b
    const evictedBefore = host.stats().evicted;
    await host.ask('counter', 'a', { command: 'get' });
    await host.ask('counter', 'c', { command: 'get' });
    expect(host.stats().evicted).toBe(evictedBefore); // a and c were still resident
    expect(host.stats().byKind.counter).toBe(3);
  });

  it('passivates the least recently used tenth when the heap is over its threshold', async () => {
    let heap = 0;
    const clock = new SimulatedClock();
    const { host } = makeHost(new MemoryJournal(), clock, { maxHeapBytes: 1_000, heapUsed: () => heap });
    for (let i = 0; i < 100; i++) await host.ask('counter', `h-${i}`, { command: 'incr' });
    expect(host.sweep()).toBe(0);
    heap = 2_000;
    expect(host.sweep()).toBe(10);
    expect(host.stats().resident).toBe(90);
    await expect(host.ask('counter', 'h-0', { command: 'get' })).resolves.toEqual({ n: 1 });
  });

  it('a retried message id is answered from the journal by a new activation (after a restart)', async () => {
    const journal = new MemoryJournal();
    const { host: first } = makeHost(journal);
    await expect(first.ask('counter', 'once', { command: 'incr', input: { by: 4 }, id: 'm-9' })).resolves.toEqual({ n: 4 });
    const { host: second } = makeHost(journal);
    await expect(second.ask('counter', 'once', { command: 'incr', input: { by: 4 }, id: 'm-9' })).resolves.toEqual({ n: 4 });
    await expect(second.ask('counter', 'once', { command: 'get' })).resolves.toEqual({ n: 4 });
  });
});

describe('ActorHost routing', () => {
  it('sends keys of other slots outbound and delivers its own locally', async () => {
    const out: string[] = [];
    const registry = new ActorRegistry([counter]);
    const host = new ActorHost({
      registry,
      journal: new MemoryJournal(),
      clock: new SimulatedClock(),
      log: silentLogger,
      slot: 0,
      slots: 4,
      outbound: (kind, key) => out.push(`${kind}/${key}`),
    });
    hosts.push(host);
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    // Slot 0 of 4 for k0..k39, computed once with hash32 + jump hash and written down here, so
    // the expectation does not come from the placement code under test.
    const slot0 = ['k8', 'k15', 'k22', 'k29', 'k31', 'k38', 'k39'];
    for (const k of keys) host.tell('counter', k, { command: 'incr' });
    await settle();
    expect(out.sort()).toEqual(
      keys
        .filter((k) => !slot0.includes(k))
        .map((k) => `counter/${k}`)
        .sort(),
    );
    expect(host.stats().resident).toBe(slot0.length);
  });
});
