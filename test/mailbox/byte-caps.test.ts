/**
 * The byte caps as an actor host enforces them (docs/actors-limits.md): inputs over
 * maxMessageBytes are refused before anything is activated or queued, mailboxes refuse past
 * maxMailboxBytes and take messages again as they drain, and a handler's reply, event, push or
 * tell over the cap fails that one message, its events undone, without a restart.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ActorHost } from '../../src/actors/actor-host.ts';
import { defineActor } from '../../src/actors/define-actor.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Releases the `hold` handler's promise (one actor busy, so its mailbox fills). */
let release: () => void = () => undefined;

const big = defineActor({
  kind: 'big',
  initial: () => ({ n: 0 }),
  apply: (s: { n: number }, _e: unknown) => ({ n: s.n + 1 }),
  commands: {
    incr: { handle: (ctx) => (ctx.emit({ by: 1 }), { n: ctx.state.n }) },
    /** Takes any input (sizes are the host's business), counts it. */
    put: { handle: (ctx, _input: unknown) => (ctx.emit({ put: true }), { n: ctx.state.n }) },
    hold: { handle: () => new Promise<{ held: true }>((resolve) => (release = () => resolve({ held: true }))) },
    /** Emits a small event, then answers `bytes` of text: the reply is over the cap, the event must not stay. */
    bigReply: { handle: (ctx, { bytes }: { bytes: number }) => (ctx.emit({ by: 1 }), 'r'.repeat(bytes)) },
    /** A small event, then one of `bytes`: both must be undone. */
    bigEvent: { handle: (ctx, { bytes }: { bytes: number }) => (ctx.emit({ by: 1 }), ctx.emit({ blob: 'e'.repeat(bytes) }), null) },
    bigPush: { handle: (ctx, { bytes }: { bytes: number }) => (ctx.emit({ by: 1 }), ctx.push({ blob: 'p'.repeat(bytes) }), null) },
    /** Tells another actor `bytes` of text. */
    bigTell: {
      handle: (ctx, { to, bytes }: { to: string; bytes: number }) => (
        ctx.emit({ by: 1 }),
        ctx.tell('big', to, { command: 'put', input: 't'.repeat(bytes) }),
        null
      ),
    },
    bigAsk: {
      handle: async (ctx, { to, bytes }: { to: string; bytes: number }) => {
        ctx.emit({ by: 1 });
        return ctx.ask('big', to, { command: 'put', input: 'a'.repeat(bytes) });
      },
    },
    /** Throws an error whose message is `bytes` long. */
    bigThrow: {
      handle: (_ctx, { bytes }: { bytes: number }) => {
        throw new Error('m'.repeat(bytes));
      },
    },
    get: { readOnly: true, handle: (ctx) => ({ n: ctx.state.n }) },
  },
});

let hosts: ActorHost[] = [];
function makeHost(extra: Partial<ConstructorParameters<typeof ActorHost>[0]> = {}) {
  const journal = new MemoryJournal();
  const host = new ActorHost({
    registry: new ActorRegistry([big]),
    journal,
    clock: new SimulatedClock(),
    log: silentLogger,
    slot: 0,
    slots: 1,
    ...extra,
  });
  hosts.push(host);
  return { host, journal };
}

afterEach(async () => {
  for (const h of hosts) await h.stop();
  hosts = [];
});

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: { code?: string }) => e.code,
  );

describe('maxMessageBytes on inputs', () => {
  it.each([
    { name: 'a 2 MiB string', input: () => 'x'.repeat(2 * MiB), code: 'ERR_BODY_TOO_LARGE' },
    { name: 'a 200 MB Buffer', input: () => Buffer.alloc(200_000_000), code: 'ERR_BODY_TOO_LARGE' },
    { name: 'a typed array of 2 MiB', input: () => new Float64Array(MiB / 4), code: 'ERR_BODY_TOO_LARGE' },
    { name: 'an object holding 1 MiB + 1 of text', input: () => ({ text: 'y'.repeat(MiB + 1) }), code: 'ERR_BODY_TOO_LARGE' },
    { name: 'a string just under the cap', input: () => 'z'.repeat(MiB - 100), code: 'ok' },
  ])('$name: $code, nothing activated or journaled when refused', async ({ input, code }) => {
    const { host, journal } = makeHost();
    expect(await codeOf(host.ask('big', 'k', { command: 'put', input: input() }))).toBe(code);
    const history = await journal.read('big', 'k');
    if (code === 'ok') {
      expect(history.events).toHaveLength(1);
      return;
    }
    expect(history.events).toEqual([]);
    expect(host.stats().resident).toBe(0);
    // The node keeps serving: the same actor and others.
    await expect(host.ask('big', 'k', { command: 'incr' })).resolves.toEqual({ n: 1 });
    await expect(host.ask('big', 'other', { command: 'incr' })).resolves.toEqual({ n: 1 });
  });

  it('the refusal names the cap and the message', async () => {
    const { host } = makeHost({ maxMessageBytes: 1_000 });
    const e = await host.ask('big', 'k', { command: 'put', input: 'x'.repeat(2_000) }).catch((x: unknown) => x);
    expect(e).toMatchObject({
      code: 'ERR_BODY_TOO_LARGE',
      message: expect.stringMatching(/^input of big\/k 'put' is larger than maxMessageBytes 1000/) as unknown,
      details: { limit: 1_000, option: 'maxMessageBytes' },
    });
  });

  it('a refused tell is a counted dead letter', async () => {
    const { host } = makeHost({ maxMessageBytes: 1_000 });
    host.tell('big', 'k', { command: 'put', input: 'x'.repeat(2_000) });
    expect(host.stats().deadLetters).toBe(1);
    await expect(host.ask('big', 'k', { command: 'get' })).resolves.toEqual({ n: 0 });
  });
});

describe('maxMailboxBytes', () => {
  it('refuses past the cap while the actor is busy, and takes messages again once they are handled', async () => {
    const { host } = makeHost({ maxMailboxBytes: 100 * KiB, maxMessageBytes: 64 * KiB });
    const held = host.ask('big', 'k', { command: 'hold' });
    // Activation is a journal read away: wait until the hold runs (the actor is busy from then on).
    await host.ask('big', 'other', { command: 'get' });
    const payload = 'q'.repeat(30 * KiB); // 30 KiB + 8 counted per message: three fit in 100 KiB, a fourth does not
    const queued = [1, 2, 3].map(() => codeOf(host.ask('big', 'k', { command: 'put', input: payload })));
    expect(await codeOf(host.ask('big', 'k', { command: 'put', input: payload }))).toBe('ERR_MAILBOX_FULL');
    // Small messages still fit beside them, and other actors are not concerned.
    await expect(host.ask('big', 'other', { command: 'put', input: payload })).resolves.toEqual({ n: 1 });
    release();
    await expect(held).resolves.toEqual({ held: true });
    expect(await Promise.all(queued)).toEqual(['ok', 'ok', 'ok']);
    // The bytes went back down as the messages were taken: a full mailbox's worth fits again.
    expect(await Promise.all([1, 2, 3].map(() => codeOf(host.ask('big', 'k', { command: 'put', input: payload }))))).toEqual([
      'ok',
      'ok',
      'ok',
    ]);
    await expect(host.ask('big', 'k', { command: 'get' })).resolves.toEqual({ n: 6 });
  });
});

describe('maxMessageBytes on what a handler produces', () => {
  it.each([
    { name: 'a reply', command: 'bigReply' },
    { name: 'an event', command: 'bigEvent' },
    { name: 'a push', command: 'bigPush' },
    { name: "a ctx.tell's input", command: 'bigTell' },
    { name: "a ctx.ask's input", command: 'bigAsk' },
  ])('$name over the cap fails that message with ERR_NOT_SERIALIZABLE, its events undone, no restart', async ({ command }) => {
    const { host, journal } = makeHost({ maxMessageBytes: 64 * KiB });
    await host.ask('big', 'k', { command: 'incr' });
    const e = await host.ask('big', 'k', { command, input: { bytes: 100 * KiB, to: 'target' } }).catch((x: unknown) => x);
    expect(e).toMatchObject({
      code: 'ERR_NOT_SERIALIZABLE',
      message: expect.stringMatching(/is larger than maxMessageBytes 65536/) as unknown,
    });
    // Never half-applied: the small event before the large value is gone too.
    await expect(host.ask('big', 'k', { command: 'get' })).resolves.toEqual({ n: 1 });
    expect((await journal.read('big', 'k')).events).toHaveLength(1);
    expect(host.stats().restarts).toBe(0);
    // Nothing reached the target.
    await expect(host.ask('big', 'target', { command: 'get' })).resolves.toEqual({ n: 0 });
    // The same values under the cap go through.
    await expect(host.ask('big', 'k', { command, input: { bytes: 10 * KiB, to: 'target' } })).resolves.toBeDefined();
  });
});

describe('a thrown message', () => {
  it('of 8 MiB reaches the caller clipped to 1,000 characters (ERR_HANDLER_FAILED)', async () => {
    const { host } = makeHost();
    const e = (await host.ask('big', 'k', { command: 'bigThrow', input: { bytes: 8 * MiB } }).catch((x: unknown) => x)) as {
      code: string;
      message: string;
    };
    expect(e.code).toBe('ERR_HANDLER_FAILED');
    expect(e.message.length).toBeLessThan(1_100);
    expect(e.message).toMatch(/… \(8388608 characters\)$/);
  });
});

describe('byte caps as node options (in-process node: the same hosts the worker threads run)', () => {
  const fixtures = new URL('../fixtures/actors.ts', import.meta.url).href;

  it('options.maxMessageBytes and options.maxMailboxBytes reach every host', async () => {
    const node = await TroupeNode.start({
      modules: [fixtures],
      actors: 'in-process',
      http: false,
      log: silentLogger,
      maxMessageBytes: 1_000,
      maxMailboxBytes: 5_000,
    });
    try {
      // `recorder` reads `v` and ignores the padding, which only makes the message large.
      const add = (key: string, pad: number) =>
        codeOf(node.ask('recorder', key, { command: 'add', input: { v: 1, pad: 'x'.repeat(pad) } }));
      expect(await add('a', 900)).toBe('ok');
      expect(await add('a', 1_100)).toBe('ERR_BODY_TOO_LARGE');
      // Six of ~940 bytes sent at once queue while a fresh actor activates: five fit in 5,000 bytes.
      expect(await Promise.all(Array.from({ length: 6 }, () => add('b', 900)))).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'ERR_MAILBOX_FULL']);
    } finally {
      await node.stop();
    }
  });

  it.each([
    { option: 'maxMessageBytes', value: 0 },
    { option: 'maxMailboxBytes', value: 1.5 },
  ])('TroupeNode.start refuses options.$option = $value, naming it', async ({ option, value }) => {
    const started = TroupeNode.start({ modules: [fixtures], actors: 'in-process', http: false, log: silentLogger, [option]: value });
    await expect(started).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringMatching(new RegExp(`^options\\.${option} must be a positive integer`)) as unknown,
    });
  });
});

describe('byte cap options', () => {
  it.each([
    { option: 'maxMessageBytes', value: 0 },
    { option: 'maxMessageBytes', value: 1.5 },
    { option: 'maxMailboxBytes', value: -1 },
    { option: 'maxMailboxBytes', value: '16MB' },
  ])('options.$option = $value is refused, naming the option', ({ option, value }) => {
    expect(() => makeHost({ [option]: value })).toThrow(
      expect.objectContaining({
        code: 'ERR_INVALID_OPTION',
        message: expect.stringMatching(new RegExp(`^options\\.${option} must be a positive integer`)) as unknown,
      }),
    );
  });
});
