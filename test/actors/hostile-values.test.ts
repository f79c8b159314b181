/**
 * A handler's values outside the value domain fail their own message and nothing else, inside
 * one ActorHost (the worker's view): replies (sync, async, read-only), events, the states apply
 * builds, and inputs of tells and asks to other actors. Then idempotency keys: a message id
 * reused with another command or input is refused, in memory and across an LMDB reopen.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ActorHost } from '../../src/actors/actor-host.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { messageFingerprint } from '../../src/core/fingerprint.ts';
import { silentLogger } from '../../src/core/logger.ts';
import type { ActorWrite, Journal } from '../../src/persistence/journal.ts';
import { LmdbJournal } from '../../src/persistence/lmdb-journal.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';
import { cart, counter } from '../fixtures/actors.ts';
import { hostileKind, refusedNames } from '../fixtures/hostile-actors.ts';

/** A MemoryJournal that keeps every write it was handed, to see what reached the journal. */
class RecordingJournal extends MemoryJournal {
  readonly writes: ActorWrite[] = [];
  override writeMany(writes: readonly ActorWrite[]) {
    this.writes.push(...writes);
    return super.writeMany(writes);
  }
  eventsOf(key: string): unknown[] {
    return this.writes.filter((w) => w.key === key).flatMap((w) => w.events.map((e) => e.event));
  }
}

let hosts: ActorHost[] = [];
function makeHost(journal: Journal = new RecordingJournal()) {
  const registry = new ActorRegistry([hostileKind, counter, cart]);
  const host = new ActorHost({ registry, journal, clock: new SimulatedClock(), log: silentLogger, slot: 0, slots: 1 });
  hosts.push(host);
  return host;
}

afterEach(async () => {
  for (const h of hosts) await h.stop();
  hosts = [];
});

const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: { code: string; message: string }) => e,
  );

/** Where each command puts the hostile value, and how the error names it. */
const sites = [
  { command: 'reply', names: "reply of hostile/k 'reply'", path: /\$\.(n|self\.back|f|s|x\[1\]|at|m) is /, sinkTouched: false },
  { command: 'replyAsync', names: "reply of hostile/k 'replyAsync'", path: /\$\.\w+/, sinkTouched: false },
  { command: 'emit', names: "event of hostile/k 'emit'", path: /\$\.bad\./, sinkTouched: false },
  { command: 'state', names: "state of hostile/k after 'state'", path: /\$\.note/, sinkTouched: false },
  { command: 'tell', names: "input of tell to hostile/sink 'incr'", path: /\$\.\w+/, sinkTouched: true },
  { command: 'ask', names: "input of ask to hostile/sink 'incr'", path: /\$\.\w+/, sinkTouched: true },
] as const;

describe('a hostile value fails its own message only (ActorHost)', () => {
  for (const site of sites) {
    for (const value of refusedNames) {
      it(`${site.command}: ${value}`, async () => {
        const journal = new RecordingJournal();
        const host = makeHost(journal);
        await expect(host.ask('hostile', 'k', { command: 'incr' })).resolves.toEqual({ n: 1 });

        const e = await errorOf(host.ask('hostile', 'k', { command: site.command, input: { value }, id: 'm-1' }));
        expect(e.code).toBe('ERR_NOT_SERIALIZABLE');
        expect(e.message).toContain(site.names);
        expect(e.message).toMatch(site.path);

        // The actor kept its previous state, answers the next message, and was not restarted.
        await expect(host.ask('hostile', 'k', { command: 'get' })).resolves.toEqual({ n: 1 });
        // A retry of the same id is refused again and applies nothing (the first try left nothing).
        expect((await errorOf(host.ask('hostile', 'k', { command: site.command, input: { value }, id: 'm-1' }))).code).toBe(
          'ERR_NOT_SERIALIZABLE',
        );
        await expect(host.ask('hostile', 'k', { command: 'incr' })).resolves.toEqual({ n: 2 });
        expect(host.stats().restarts).toBe(0);

        // Only the two good incrs reached the journal: the hostile message's good event was undone too.
        expect(journal.eventsOf('k')).toEqual([{ by: 1 }, { by: 1 }]);
        const history = await journal.read('hostile', 'k');
        expect(history.events.map((e) => [e.seq, e.event])).toEqual([
          [1, { by: 1 }],
          [2, { by: 1 }],
        ]);
        // Nothing reached the other actor.
        expect(journal.eventsOf('sink')).toEqual([]);
        expect(host.stats().byKind.hostile).toBe(1); // the sink was never even activated
      });
    }

    it(`${site.command}: an object with a null prototype is fine`, async () => {
      const host = makeHost();
      await expect(host.ask('hostile', 'k', { command: site.command, input: { value: 'null-prototype' } })).resolves.toBeDefined();
      if (site.command === 'tell') await host.ask('hostile', 'sink', { command: 'get' }); // the tell is queued ahead
      const expected = site.command === 'emit' || site.command === 'state' ? 2 : 1;
      await expect(host.ask('hostile', 'k', { command: 'get' })).resolves.toEqual({ n: expected });
      if (site.sinkTouched) await expect(host.ask('hostile', 'sink', { command: 'get' })).resolves.toEqual({ n: 1 });
    });
  }

  it('a read-only reply outside the domain is refused too', async () => {
    const host = makeHost();
    const e = await errorOf(host.ask('hostile', 'k', { command: 'readReply', input: { value: 'bigint' } }));
    expect(e.code).toBe('ERR_NOT_SERIALIZABLE');
    expect(e.message).toContain("reply of hostile/k 'readReply'");
  });

  it('a handler that catches the refusal of its emit goes on, and the refused event was never applied', async () => {
    const journal = new RecordingJournal();
    const host = makeHost(journal);
    await expect(host.ask('hostile', 'k', { command: 'emitCaught', input: { value: 'function' } })).resolves.toEqual({
      n: 0,
      refused: 'ERR_NOT_SERIALIZABLE',
    });
    await expect(host.ask('hostile', 'k', { command: 'get' })).resolves.toEqual({ n: 0 });
    expect(journal.writes).toEqual([]);
  });

  it('messages of the same turn before and after the refused one stand', async () => {
    const journal = new RecordingJournal();
    const host = makeHost(journal);
    const replies = await Promise.allSettled([
      host.ask('hostile', 'k', { command: 'incr' }),
      host.ask('hostile', 'k', { command: 'reply', input: { value: 'cycle' } }),
      host.ask('hostile', 'k', { command: 'incr' }),
    ]);
    expect(replies.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(replies[2]).toMatchObject({ value: { n: 2 } });
    expect(journal.eventsOf('k')).toEqual([{ by: 1 }, { by: 1 }]);
  });
});

describe('idempotency keys (ActorHost)', () => {
  const add = (qty: number, id = 'order-1') => ({ command: 'add', input: { sku: 'tea', qty }, id });

  it('same key and same body: the recorded reply, applied once (key order does not matter)', async () => {
    const host = makeHost();
    await expect(host.ask('cart', 'c', add(2))).resolves.toMatchObject({ count: 2 });
    await expect(host.ask('cart', 'c', { command: 'add', input: { qty: 2, sku: 'tea' }, id: 'order-1' })).resolves.toMatchObject({
      count: 2,
    });
    await expect(host.ask('cart', 'c', { command: 'get' })).resolves.toMatchObject({ count: 2 });
  });

  it('same key with a different body or command: ERR_IDEMPOTENCY_MISMATCH, nothing applied', async () => {
    const journal = new RecordingJournal();
    const host = makeHost(journal);
    await host.ask('cart', 'c', add(2));
    const body = await errorOf(host.ask('cart', 'c', add(3)));
    expect(body.code).toBe('ERR_IDEMPOTENCY_MISMATCH');
    expect(body.message).toContain("message id 'order-1' was already used for cart/c");
    const command = await errorOf(host.ask('cart', 'c', { command: 'get', id: 'order-1' }));
    expect(command.code).toBe('ERR_IDEMPOTENCY_MISMATCH');
    await expect(host.ask('cart', 'c', { command: 'get' })).resolves.toMatchObject({ count: 2 });
    expect(journal.eventsOf('c')).toHaveLength(1);
  });

  it('a recorded reply without a fingerprint (written before fingerprints) answers any retry, as before', async () => {
    const journal = new MemoryJournal();
    await journal.write({
      kind: 'cart',
      key: 'old',
      events: [{ seq: 1, v: 1, event: { type: 'added', sku: 'tea', qty: 2 } }],
      replies: [{ msgId: 'order-1', ok: true, value: { count: 2, old: true } }],
    });
    const host = makeHost(journal);
    await expect(host.ask('cart', 'old', add(5))).resolves.toEqual({ count: 2, old: true });
  });

  it('the fingerprint is persisted with the reply in LMDB and holds after a reopen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'troupe-idem-'));
    try {
      const first = new LmdbJournal({ type: 'lmdb', path: dir, durability: 'commit' });
      const a = makeHost(first);
      await expect(a.ask('cart', 'c', add(2))).resolves.toMatchObject({ count: 2 });
      await a.stop();
      const stored = await first.read('cart', 'c');
      expect(stored.replies[0]?.fingerprint).toBe(messageFingerprint('add', { sku: 'tea', qty: 2 }));
      await first.close();

      const second = new LmdbJournal({ type: 'lmdb', path: dir, durability: 'commit' });
      const b = makeHost(second);
      expect((await errorOf(b.ask('cart', 'c', add(3)))).code).toBe('ERR_IDEMPOTENCY_MISMATCH');
      await expect(b.ask('cart', 'c', add(2))).resolves.toMatchObject({ count: 2 });
      await expect(b.ask('cart', 'c', { command: 'get' })).resolves.toMatchObject({ count: 2 });
      await b.stop();
      await second.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
