/**
 * Pushes and watchers on one actor host: `ctx.push` journals a record `apply` never sees, a
 * watcher is shown only durable records, notes reach watching nodes after the write is durable,
 * leases end, and reads page.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ActorHost } from '../../src/actors/actor-host.ts';
import { defineActor, requiredString } from '../../src/actors/define-actor.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import type { PushNote } from '../../src/actors/watchers.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import type { ActorWrite, Journal } from '../../src/persistence/journal.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';

const echo = defineActor({
  kind: 'echo',
  initial: () => ({ said: [] as string[] }),
  apply: (s: { said: string[] }, e: { text: string }) => ({ said: [...s.said, e.text] }),
  commands: {
    say: {
      input: (raw) => ({ text: requiredString(raw, 'text') }),
      handle: (ctx, { text }) => {
        ctx.emit({ text });
        ctx.push({ text });
        return ctx.state.said.length;
      },
    },
    quiet: { handle: (ctx) => void ctx.emit({ text: 'quiet' }) },
    bad: { handle: (ctx) => ctx.push({ f: () => 1 }) },
    peek: { readOnly: true, handle: (ctx) => ctx.push('x') },
    get: { readOnly: true, handle: (ctx) => ctx.state },
    sneak: { handle: (ctx) => ctx.ask('echo', 'other', { command: '$watchers' }) },
  },
});

/** Writes are stored at once but durable (resolved) only when released, as on a primary before W copies. */
class GatedJournal implements Journal {
  readonly inner = new MemoryJournal();
  gated = false;
  private readonly held: Array<() => void> = [];
  async write(w: ActorWrite): Promise<void> {
    await this.inner.write(w);
    if (this.gated) await new Promise<void>((r) => this.held.push(r));
  }
  release(): void {
    this.gated = false;
    for (const r of this.held.splice(0)) r();
  }
  read(kind: string, key: string) {
    return this.inner.read(kind, key);
  }
  readFrom(kind: string, key: string, after: number, limit: number) {
    return this.inner.readFrom(kind, key, after, limit);
  }
  close() {
    return this.inner.close();
  }
}

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
};
let host: ActorHost | undefined;
afterEach(async () => {
  await host?.stop();
  host = undefined;
});

function setup() {
  const clock = new SimulatedClock(0);
  const journal = new GatedJournal();
  const notes: Array<{ nodes: number[]; note: PushNote }> = [];
  host = new ActorHost({ registry: new ActorRegistry([echo]), journal, clock, log: silentLogger, slot: 0, slots: 1, onPush: (nodes, note) => notes.push({ nodes, note }) });
  const h = host;
  const ask = (command: string, input?: unknown) => h.ask('echo', 'e', { command, input }).catch((e) => e);
  const watch = (node: number, from: number, max = 100, connections = 1) =>
    new Promise((resolve, reject) => {
      // The hub's path: deliver with a reply channel (reserved commands are refused on the app's ask).
      h.deliver('echo', 'e', '$watch', { node, connections, from, max }, 1, undefined, { reply: (_id, ok, v) => (ok ? resolve(v) : reject(v)) });
    });
  return { clock, journal, notes, ask, watch, h };
}

describe('ctx.push and $watch', () => {
  it('a push takes a seq but never reaches apply; the state is only the events', async () => {
    const { ask, journal } = setup();
    expect(await ask('say', { text: 'hi' })).toBe(1);
    expect(await ask('get')).toEqual({ said: ['hi'] });
    const log = await journal.readFrom('echo', 'e', 0, 10);
    expect(log.map((r) => [r.seq, r.v])).toEqual([
      [1, 1],
      [2, 0],
    ]);
  });

  it('refuses a push from a read-only command, and one outside the value domain, undoing the turn', async () => {
    const { ask, clock } = setup();
    expect(await ask('bad')).toMatchObject({ code: 'ERR_NOT_SERIALIZABLE' });
    expect(await ask('peek')).toMatchObject({ code: 'ERR_HANDLER_FAILED' });
    const after = ask('say', { text: 'after' });
    clock.advance(2_000); // the restart's backoff after the failed handler
    expect(await after).toBe(1);
  });

  it('a watcher is shown only durable records, and gets a note once the write is durable', async () => {
    const { ask, watch, journal, notes } = setup();
    await ask('say', { text: 'one' });
    expect(await watch(3, 0)).toEqual({ to: 2, items: [{ seq: 2, msg: { text: 'one' } }] });
    journal.gated = true;
    const reply = ask('say', { text: 'two' });
    await settle();
    // Written into memory and handed to the journal, not durable: neither read nor noted.
    expect(await watch(3, 0)).toEqual({ to: 2, items: [{ seq: 2, msg: { text: 'one' } }] });
    expect(notes).toEqual([]);
    journal.release();
    expect(await reply).toBe(2);
    expect(notes).toEqual([{ nodes: [3], note: { kind: 'echo', key: 'e', from: 2, to: 4, items: [{ seq: 4, msg: { text: 'two' } }] } }]);
    await ask('quiet');
    // A write without pushes still moves the watchers' position (no gap at the next note).
    expect(notes.at(-1)!.note).toMatchObject({ from: 4, to: 5, items: [] });
  });

  it('pages a long read (more), and ends a watch whose lease ran out', async () => {
    const { ask, watch, clock, notes } = setup();
    for (let i = 0; i < 5; i++) await ask('say', { text: `m${i}` });
    const page = (await watch(1, 0, 3)) as { to: number; more?: boolean; items: unknown[] };
    expect(page).toMatchObject({ to: 3, more: true });
    expect(page.items).toHaveLength(1);
    clock.advance(15_000);
    await ask('say', { text: 'late' });
    expect(notes).toEqual([]); // the lease (15 s) ended without a renewal
    await watch(1, -1);
    await ask('say', { text: 'renewed' });
    expect(notes).toHaveLength(1);
    await watch(1, -1, 1, 0); // connections 0: the node's last socket closed
    await ask('say', { text: 'gone' });
    expect(notes).toHaveLength(1);
  });

  it('a bad $watch input is refused by name; handlers and node asks cannot send reserved commands', async () => {
    const { watch, ask, h, clock } = setup();
    await expect(watch(5000, 0)).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    const sneak = (await ask('sneak')) as { code: string; message: string };
    expect(sneak).toMatchObject({ code: 'ERR_HANDLER_FAILED' });
    expect(sneak.message).toMatch(/reserved for the runtime/);
    void h;
    const state = ask('get');
    clock.advance(2_000);
    expect(await state).toEqual({ said: [] });
  });
});
