/**
 * Edges of the actor host that mutation testing found untested: exactly when the sweep
 * passivates, what counts as idle, when an escalated actor's cell goes, the passivate system
 * message, and the dead-letter warning's rate limit. All on the simulated clock.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ActorHost } from '../../src/actors/actor-host.ts';
import { defineActor } from '../../src/actors/define-actor.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { SimulatedClock, type Clock, type TimerHandle } from '../../src/core/clock.ts';
import { silentLogger, type Logger } from '../../src/core/logger.ts';
import type { ActorWrite, Journal } from '../../src/persistence/journal.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';

const IDLE_MS = 1_000;

let release: (() => void) | undefined;
const idle = defineActor({
  kind: 'idle',
  idleTimeoutMs: IDLE_MS,
  initial: () => ({ n: 0 }),
  apply: (s: { n: number }) => ({ n: s.n + 1 }),
  commands: {
    incr: { handle: (ctx) => (ctx.emit({}), { n: ctx.state.n }) },
    hang: { handle: () => new Promise<null>((resolve) => (release = () => resolve(null))) },
    boom: {
      handle: () => {
        throw new Error('kaput');
      },
    },
    get: { readOnly: true, handle: (ctx) => ({ n: ctx.state.n }) },
  },
  restart: { maxRestarts: 0, periodMs: 2_000, backoffInitialMs: 0, backoffMaxMs: 0, backoffFactor: 1 },
});

/** Writes stay pending until released. */
class HeldJournal extends MemoryJournal {
  readonly held: Array<() => void> = [];
  override writeMany(ws: readonly ActorWrite[]): Promise<Array<Error | null>> {
    return new Promise((resolve) => this.held.push(() => void super.writeMany(ws).then(resolve)));
  }
}

/** A clock that only tells the time the test sets: no timer fires, so only explicit sweeps run. */
class ManualClock implements Clock {
  t = 0;
  now(): number {
    return this.t;
  }
  wallNow(): number {
    return this.t;
  }
  setTimeout(): TimerHandle {
    return {} as TimerHandle;
  }
  clearTimeout(): void {}
  setImmediate(fn: () => void): void {
    setImmediate(fn);
  }
}

let hosts: ActorHost[] = [];
function makeHost<C extends Clock = SimulatedClock>(
  journal: Journal = new MemoryJournal(),
  log: Logger = silentLogger,
  clock: C = new SimulatedClock() as unknown as C,
) {
  const host = new ActorHost({ registry: new ActorRegistry([idle]), journal, clock, log, slot: 0, slots: 1 });
  hosts.push(host);
  return { host, clock };
}

afterEach(async () => {
  release?.();
  for (const h of hosts) await h.stop();
  hosts = [];
});

async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

describe('the idle sweep', () => {
  it('passivates an actor idle for exactly its timeout, not a millisecond earlier', async () => {
    const { host, clock } = makeHost();
    await host.ask('idle', 'a', { command: 'incr' });
    clock.advance(IDLE_MS - 1);
    expect(host.stats().resident).toBe(1);
    clock.advance(1); // the sweep runs every IDLE_MS / 2
    expect(host.stats()).toMatchObject({ resident: 0, passivated: 1 });
  });

  it('counts what it passivated', async () => {
    const { host, clock } = makeHost(new MemoryJournal(), silentLogger, new ManualClock());
    await host.ask('idle', 'a', { command: 'incr' });
    await host.ask('idle', 'b', { command: 'incr' });
    clock.t = IDLE_MS - 1;
    expect(host.sweep()).toBe(0);
    clock.t = IDLE_MS;
    expect(host.sweep()).toBe(2);
  });

  it('leaves an actor whose async handler is still running', async () => {
    const { host, clock } = makeHost();
    void host.ask('idle', 'busy', { command: 'hang' }, { timeoutMs: 60_000 });
    await turns();
    clock.advance(IDLE_MS * 5);
    expect(host.stats().resident).toBe(1);
  });

  it('leaves an actor whose journal write is still in flight', async () => {
    const journal = new HeldJournal();
    const { host, clock } = makeHost(journal);
    void host.ask('idle', 'w', { command: 'incr' }, { timeoutMs: 60_000 });
    await turns();
    expect(journal.held).toHaveLength(1);
    clock.advance(IDLE_MS * 5);
    expect(host.stats().resident).toBe(1);
    journal.held[0]!();
    await turns();
    clock.advance(IDLE_MS);
    expect(host.stats().resident).toBe(0);
  });

  it('removes an escalated actor once its period is over, and counts the escalation', async () => {
    const { host, clock } = makeHost(new MemoryJournal(), silentLogger, new ManualClock());
    clock.t = 5_000;
    await host.ask('idle', 'e', { command: 'boom' }).catch(() => undefined);
    await turns();
    expect(host.stats()).toMatchObject({ escalations: 1, resident: 1 });
    clock.t = 5_000 + 2_000 - 1;
    host.sweep();
    expect(host.stats().resident).toBe(1);
    clock.t = 5_000 + 2_000;
    expect(host.sweep()).toBe(1);
    expect(host.stats().resident).toBe(0);
  });
});

describe('system messages', () => {
  it('passivate: an idle resident actor is passivated at once; an unknown one is not there', async () => {
    const { host } = makeHost();
    await host.ask('idle', 'p', { command: 'incr' });
    expect(host.system('idle', 'p', 'passivate')).toBe(true);
    await turns();
    expect(host.stats()).toMatchObject({ resident: 0, passivated: 1 });
    expect(host.system('idle', 'nobody', 'passivate')).toBe(false);
    // Passivation frees memory, never data.
    await expect(host.ask('idle', 'p', { command: 'get' })).resolves.toEqual({ n: 1 });
  });
});

describe('dead letters', () => {
  it('are counted each, and warned about at most once a second', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(chunk.toString()), done()) });
    const log = pino({ level: 'warn' }, sink);
    const { host, clock } = makeHost(new MemoryJournal(), log, new ManualClock());
    clock.t = 10_000;
    const deadLetterWarnings = () => lines.filter((l) => l.includes('dead letter')).length;
    host.tell('nope', 'x', { command: 'c' });
    host.tell('nope', 'x', { command: 'c' });
    await turns();
    expect(host.stats().deadLetters).toBe(2);
    expect(deadLetterWarnings()).toBe(1);
    clock.t += 999;
    host.tell('nope', 'x', { command: 'c' });
    expect(deadLetterWarnings()).toBe(1);
    clock.t += 1;
    host.tell('nope', 'x', { command: 'c' });
    expect(deadLetterWarnings()).toBe(2);
    expect(host.stats().deadLetters).toBe(4);
  });
});
