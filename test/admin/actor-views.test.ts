/**
 * What the admin REPL's inspect, restart, passivate and `actors top` read from an actor host:
 * inspect never activates a passive actor, top reads a bounded number of cells however many are
 * resident, and the host's queued count (stats) stays exact without walking every cell.
 */
import { describe, expect, it } from 'vitest';
import { ActorHost, topLimits } from '../../src/actors/actor-host.ts';
import { defineActor } from '../../src/actors/define-actor.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';

let release: Array<() => void> = [];
const counter = defineActor({
  kind: 'counter',
  initial: () => ({ n: 0 }),
  apply: (s: { n: number }, e: { by: number }) => ({ n: s.n + e.by }),
  commands: {
    incr: { handle: (ctx, input: { by?: number } | undefined) => (ctx.emit({ by: input?.by ?? 1 }), { n: ctx.state.n }) },
    hang: { handle: () => new Promise<null>((resolve) => release.push(() => resolve(null))) },
    get: { readOnly: true, handle: (ctx) => ({ n: ctx.state.n }) },
  },
});

function makeHost(journal = new MemoryJournal()) {
  const registry = new ActorRegistry([counter]);
  const clock = new SimulatedClock();
  return { host: new ActorHost({ registry, journal, clock, log: silentLogger, slot: 0, slots: 1 }), journal, clock };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('ActorHost.inspect', () => {
  it('shows a resident actor as it is in memory, with its last events from the journal', async () => {
    const { host } = makeHost();
    for (const by of [1, 2, 3]) await host.ask('counter', 'k', { command: 'incr', input: { by } });
    const v = await host.inspect('counter', 'k', 2);
    expect(v).toMatchObject({ kind: 'counter', key: 'k', slot: 0, resident: true, status: 'active', state: { n: 6 }, seq: 3, mailbox: 0, processed: 3, recent: 3 });
    expect(v.events).toEqual([
      { seq: 2, v: 1, event: { by: 2 } },
      { seq: 3, v: 1, event: { by: 3 } },
    ]);
    expect(v.stateBytes).toBe(JSON.stringify({ n: 6 }).length);
  });

  it('reads a passive actor from the journal without activating it', async () => {
    const journal = new MemoryJournal();
    const first = makeHost(journal).host;
    await first.ask('counter', 'cold', { command: 'incr', input: { by: 5 } });
    await first.stop();
    const { host } = makeHost(journal);
    const v = await host.inspect('counter', 'cold');
    expect(v).toMatchObject({ resident: false, state: { n: 5 }, seq: 1, mailbox: 0, events: [{ seq: 1, v: 1, event: { by: 5 } }] });
    expect(v.status).toBeUndefined();
    expect(host.stats()).toMatchObject({ resident: 0, activated: 0 });
  });

  it('names an unknown kind', async () => {
    const { host } = makeHost();
    await expect(host.inspect('nosuch', 'k')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_KIND' });
  });

  it('a large state is shown as a bounded preview, with its full size', async () => {
    const big = defineActor({ kind: 'big', initial: () => ({ s: '' }), apply: (_s: { s: string }, e: { s: string }) => ({ s: e.s }), commands: { set: { handle: (ctx, i: { s: string }) => (ctx.emit({ s: i.s }), null) } } });
    const h = new ActorHost({ registry: new ActorRegistry([big]), journal: new MemoryJournal(), clock: new SimulatedClock(), log: silentLogger, slot: 0, slots: 1 });
    await h.ask('big', 'b', { command: 'set', input: { s: 'x'.repeat(100_000) } });
    const v = await h.inspect('big', 'b', 0);
    expect(typeof v.state).toBe('string');
    expect((v.state as string).length).toBeLessThan(20_000);
    expect(v.stateBytes).toBeGreaterThan(100_000);
    expect(v.events).toEqual([]);
  });
});

describe('ActorHost.top and the queued count', () => {
  it('ranks the busiest by recent messages and the largest by mailbox depth', async () => {
    const { host } = makeHost();
    for (let i = 0; i < 5; i++) await host.ask('counter', 'hot', { command: 'incr' });
    await host.ask('counter', 'warm', { command: 'incr' });
    const hanging = host.ask('counter', 'deep', { command: 'hang' });
    await settle();
    const queued = [1, 2, 3].map(() => host.ask('counter', 'deep', { command: 'get' }));
    const top = host.top(2);
    // 'warm' and 'deep' (its hang) processed one message each: either may take second place.
    expect(top.busiest.map((a) => a.recent)).toEqual([5, 1]);
    expect(top.busiest[0]!.key).toBe('hot');
    expect(host.top(1).busiest.map((a) => a.key)).toEqual(['hot']);
    expect(top.largest).toEqual([expect.objectContaining({ key: 'deep', mailbox: 3, status: 'busy' })]);
    expect(host.stats().queued).toBe(3);
    release.forEach((r) => r());
    release = [];
    await Promise.all([hanging, ...queued]);
    expect(host.stats().queued).toBe(0);
    expect(top).toMatchObject({ slot: 0, resident: 3, asks: 7 }); // 5 + 1 + the hang; the queued gets had not run
  });

  it('recent counts fade after two windows; processed stays', async () => {
    const { host, clock } = makeHost();
    await host.ask('counter', 'k', { command: 'incr' });
    expect(host.top(5).busiest).toHaveLength(1);
    clock.advance(2 * topLimits.windowMs);
    expect(host.top(5).busiest).toHaveLength(0);
    expect((await host.inspect('counter', 'k')).processed).toBe(1);
  });

  it('reads at most topLimits.scan cells however many are resident', async () => {
    const { host } = makeHost();
    const n = topLimits.scan + 500;
    for (let i = 0; i < n; i++) host.tell('counter', `k${i}`, { command: 'incr' });
    await settle();
    await settle();
    const top = host.top(3);
    expect(top.resident).toBe(n);
    expect(top.scanned).toBe(topLimits.scan);
  });

  it('the queued count follows mailboxes through a stop that refuses what waits', async () => {
    const { host } = makeHost();
    const hanging = host.ask('counter', 'd', { command: 'hang' }).catch((e: unknown) => e);
    await settle();
    const waiting = [1, 2].map(() => host.ask('counter', 'd', { command: 'get' }).catch((e: unknown) => e));
    expect(host.stats().queued).toBe(2);
    const stopped = host.stop();
    expect(host.stats().queued).toBe(0);
    expect(await Promise.all(waiting)).toEqual([expect.objectContaining({ code: 'ERR_STOPPED' }), expect.objectContaining({ code: 'ERR_STOPPED' })]);
    release.forEach((r) => r());
    release = [];
    await Promise.all([stopped, hanging]);
  });
});

describe('InProcessActors: the same views as worker threads', () => {
  it('inspect, steer and top reach the key\'s host, and inspect hands back a copy', async () => {
    const { InProcessActors } = await import('../../src/node/in-process-actors.ts');
    const clock = new SimulatedClock();
    const actors = new InProcessActors({ registry: new ActorRegistry([counter]), journal: { type: 'memory' }, clock, log: silentLogger, node: 1, workers: 2 });
    await actors.start();
    await actors.ask('counter', 'a', { command: 'incr', input: { by: 2 } });
    const v = await actors.inspect('counter', 'a');
    expect(v).toMatchObject({ slot: actors.slotOf('a'), resident: true, state: { n: 2 } });
    (v.state as { n: number }).n = 99; // the REPL's copy, not the actor's state
    expect(await actors.ask('counter', 'a', { command: 'get' })).toEqual({ n: 2 });
    expect((await actors.top(5)).flatMap((s) => s.busiest.map((b) => b.key))).toEqual(['a']);
    expect(await actors.steer('counter', 'a', 'passivate')).toBe(true);
    await settle();
    expect(await actors.inspect('counter', 'a')).toMatchObject({ resident: false, state: { n: 2 } });
    expect(await actors.steer('counter', 'a', 'restart')).toBe(false);
    await actors.stop();
  });
});
