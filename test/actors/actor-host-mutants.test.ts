/**
 * Behaviours of the actor host that a mutation run of `src/actors/actor-host.ts` showed no test
 * pinned (issue 12): how a stopping host refuses, what an async handler that outlived its
 * activation answers, when a restart reloads, how a drain yields, which replies are recorded
 * for retries, what the LRU cap spares, and what the errors and log lines name. Everything
 * runs in-process; where time matters the clock is simulated.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ActorHost, type ActorHostOptions } from '../../src/actors/actor-host.ts';
import { defineActor, invalidInput, type HandlerContext } from '../../src/actors/define-actor.ts';
import type { ReplyChannel } from '../../src/actors/envelope.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { troupeError, type ErrorRecord } from '../../src/core/errors.ts';
import { silentLogger, type Logger } from '../../src/core/logger.ts';
import type { ActorHistory, ActorWrite } from '../../src/persistence/journal.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';

type N = { n: number };

/** Async handlers (`hang`) wait here until the test settles them. */
let gates: Array<{ resolve: (v: unknown) => void; reject: (e: unknown) => void }> = [];
/** A handler's context kept past its return, to check that it is closed. */
let leaked: HandlerContext<N, object> | undefined;
/** Cancel functions returned by `ctx.schedule`. */
let cancels: Array<() => void> = [];

const notSerializable = () => 1; // a function: outside the value domain

function commandsFor() {
  return {
    incr: { handle: (ctx: HandlerContext<N, object>) => (ctx.emit({}), { n: ctx.state.n }) },
    get: { readOnly: true, handle: (ctx: HandlerContext<N, object>) => ({ n: ctx.state.n }) },
    aget: { readOnly: true, handle: async (ctx: HandlerContext<N, object>) => (await Promise.resolve(), { n: ctx.state.n }) },
    aincr: { handle: async (ctx: HandlerContext<N, object>) => (await Promise.resolve(), ctx.emit({}), { n: ctx.state.n }) },
    hang: { handle: () => new Promise((resolve, reject) => gates.push({ resolve, reject })) },
    /** Emits nothing and is not read-only: only its recorded reply (with an id) is written. */
    peek: { handle: (ctx: HandlerContext<N, object>) => ({ n: ctx.state.n }) },
    /** Emits nothing and replies nothing: the reply is `undefined`. */
    quiet: { handle: () => undefined },
    boom: {
      handle: (ctx: HandlerContext<N, object>) => {
        ctx.emit({});
        throw new Error('kaput');
      },
    },
    throwString: {
      handle: () => {
        throw 'not an Error'; // eslint-disable-line @typescript-eslint/only-throw-error
      },
    },
    refuse: {
      handle: (ctx: HandlerContext<N, object>) => {
        ctx.emit({});
        throw invalidInput('refused on purpose');
      },
    },
    arefuse: {
      handle: async () => {
        await Promise.resolve();
        throw invalidInput('refused on purpose');
      },
    },
    badReply: { handle: (ctx: HandlerContext<N, object>) => (ctx.emit({}), notSerializable) },
    leak: { handle: (ctx: HandlerContext<N, object>) => ((leaked = ctx), null) },
    aleak: { handle: async (ctx: HandlerContext<N, object>) => ((leaked = ctx), await Promise.resolve(), null) },
    aleakThrow: {
      handle: async (ctx: HandlerContext<N, object>) => {
        leaked = ctx;
        await Promise.resolve();
        throw new Error('after leaking');
      },
    },
    leakRefuse: {
      handle: (ctx: HandlerContext<N, object>) => {
        leaked = ctx;
        throw invalidInput('refused after leaking');
      },
    },
    emitInRead: { readOnly: true, handle: (ctx: HandlerContext<N, object>) => (ctx.emit({}), null) },
    /** Emits, then tells a counter of another key (which may activate it mid-turn). */
    emitThenTell: {
      input: (raw: unknown) => String((raw as { to: string }).to),
      handle: (ctx: HandlerContext<N, object>, to: string) => {
        ctx.emit({});
        ctx.tell('probe', to, { command: 'incr' });
        return null;
      },
    },
    later: {
      input: (raw: unknown) => Number((raw as { ms: number }).ms),
      handle: (ctx: HandlerContext<N, object>, ms: number) => (cancels.push(ctx.schedule(ms, { command: 'incr' })), null),
    },
  };
}

const IDLE_MS = 1_000;
/** Restarts at once (no backoff), up to 5 in 10 s. */
const probe = defineActor({
  kind: 'probe',
  idleTimeoutMs: IDLE_MS,
  initial: (): N => ({ n: 0 }),
  apply: (s: N) => ({ n: s.n + 1 }),
  commands: commandsFor(),
  restart: { maxRestarts: 5, periodMs: 10_000, backoffInitialMs: 0, backoffMaxMs: 0, backoffFactor: 1 },
});
/** Restarts after 100 ms. */
const slow = defineActor({
  kind: 'slow',
  initial: (): N => ({ n: 0 }),
  apply: (s: N) => ({ n: s.n + 1 }),
  commands: commandsFor(),
  restart: { maxRestarts: 5, periodMs: 10_000, backoffInitialMs: 100, backoffMaxMs: 100, backoffFactor: 1 },
});
/** Escalates on its first failure and stays stopped for 2 s. */
const fragile = defineActor({
  kind: 'fragile',
  initial: (): N => ({ n: 0 }),
  apply: (s: N) => ({ n: s.n + 1 }),
  commands: commandsFor(),
  restart: { maxRestarts: 0, periodMs: 2_000, backoffInitialMs: 0, backoffMaxMs: 0, backoffFactor: 1 },
});

/** Writes wait until the test passes or fails them, one `writeMany` call at a time. */
class GateJournal extends MemoryJournal {
  readonly held: Array<{ pass: () => void; fail: (e: Error) => void }> = [];
  /** Activations read the journal: reads per key. */
  readonly reads = new Map<string, number>();
  /** Set when the test is over: writes pass at once, so `stop()` does not wait on a held one. */
  private open = false;
  constructor() {
    super();
    gateJournals.push(this);
  }
  override writeMany(ws: readonly ActorWrite[]): Promise<Array<Error | null>> {
    if (this.open) return super.writeMany(ws);
    return new Promise((resolve) =>
      this.held.push({ pass: () => void super.writeMany(ws).then(resolve), fail: (e) => resolve(ws.map(() => e)) }),
    );
  }
  override read(kind: string, key: string): Promise<ActorHistory> {
    this.reads.set(key, (this.reads.get(key) ?? 0) + 1);
    return super.read(kind, key);
  }
  passAll(): void {
    for (const h of this.held.splice(0)) h.pass();
  }
  failAll(e: Error): void {
    for (const h of this.held.splice(0)) h.fail(e);
  }
  openUp(): void {
    this.open = true;
    this.passAll();
  }
}
let gateJournals: GateJournal[] = [];

/** Writes pass straight through; reads of key `broken` fail with `error`. */
class BrokenReadJournal extends MemoryJournal {
  constructor(private readonly error: Error = new Error('disk gone')) {
    super();
  }
  override read(kind: string, key: string): Promise<ActorHistory> {
    return key === 'broken' ? Promise.reject(this.error) : super.read(kind, key);
  }
}

/** A pino logger whose lines the test reads back as objects. */
function capturedLog(level = 'warn'): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write: (chunk: Buffer, _e, done) => (lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>), done()),
  });
  return { log: pino({ level }, sink), lines };
}

let hosts: ActorHost[] = [];
function makeHost(extra: Partial<ActorHostOptions> = {}) {
  const clock = new SimulatedClock();
  const journal = extra.journal ?? new MemoryJournal();
  const host = new ActorHost({
    registry: new ActorRegistry([probe, slow, fragile]),
    journal,
    clock,
    log: silentLogger,
    slot: 0,
    slots: 1,
    ...extra,
  });
  hosts.push(host);
  return { host, clock };
}

afterEach(async () => {
  for (const g of gates) g.resolve(null);
  gates = [];
  leaked = undefined;
  cancels = [];
  for (const j of gateJournals) j.openUp();
  gateJournals = [];
  for (const h of hosts) await h.stop();
  hosts = [];
});

/** Lets queued microtasks and immediates run (the host and MemoryJournal use both); not a timed wait. */
async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

type Outcome = 'pending' | { ok: true; value: unknown } | { ok: false; error: unknown };
/** Where a promise stands once the host has had its turns: a deadline that is not a clock. */
async function outcome(p: Promise<unknown>): Promise<Outcome> {
  let o: Outcome = 'pending';
  p.then(
    (value: unknown) => (o = { ok: true, value }),
    (error: unknown) => (o = { ok: false, error }),
  );
  await settle();
  return o;
}

/** A ReplyChannel that records what it is told. */
function recordingChannel(): ReplyChannel & { got: Array<{ askId: number; ok: boolean; value: unknown }> } {
  const got: Array<{ askId: number; ok: boolean; value: unknown }> = [];
  return { got, reply: (askId, ok, value) => void got.push({ askId, ok, value }) };
}

describe('a stopping host', () => {
  it('refuses asks made after stop with ERR_STOPPED, and counts tells as dead letters', async () => {
    const { host } = makeHost();
    await host.ask('probe', 'a', { command: 'incr' });
    await host.stop();
    await expect(host.ask('probe', 'a', { command: 'get' })).rejects.toMatchObject({
      code: 'ERR_STOPPED',
      message: 'actor host is stopping',
    });
    host.tell('probe', 'a', { command: 'incr' });
    expect(host.stats().deadLetters).toBe(1);
  });

  it('refuses what is queued and rejects asks still running, then holds no pending ask', async () => {
    const { host } = makeHost();
    const running = host.ask('probe', 'q', { command: 'hang' }, { timeoutMs: 60_000 });
    await settle();
    expect(gates).toHaveLength(1);
    const channel = recordingChannel();
    host.deliver('probe', 'q', 'get', undefined, 7, undefined, channel); // an ask relayed from another thread
    host.tell('probe', 'q', { command: 'incr' });
    expect(host.stats().queued).toBe(2);
    const stopping = host.stop();
    await expect(running).rejects.toMatchObject({ code: 'ERR_STOPPED', message: 'actor host stopped' });
    await stopping;
    expect(channel.got).toEqual([{ askId: 7, ok: false, value: { code: 'ERR_STOPPED', message: 'actor host stopped' } }]);
    expect(host.stats()).toMatchObject({ queued: 0, deadLetters: 1, pendingAsks: 0 });
  });
});

describe('asks', () => {
  it('time out with a message naming the actor, the command and the timeout', async () => {
    const { host, clock } = makeHost();
    const p = host.ask('probe', 't', { command: 'hang' }, { timeoutMs: 250 });
    await settle();
    clock.advance(250);
    await expect(p).rejects.toMatchObject({ code: 'ERR_ASK_TIMEOUT', message: "ask probe/t 'hang' timed out after 250 ms" });
  });

  it('for keys this node does not own go outbound with a positive id, and the relayed reply settles them', async () => {
    const out: Array<{ key: string; askId: number }> = [];
    const { host } = makeHost({ outbound: (_kind, key, _command, _input, askId) => out.push({ key, askId }) });
    host.setOwnership((key) => key === 'mine');
    const theirs = host.ask('probe', 'theirs', { command: 'get' });
    const refused = host.ask('probe', 'other', { command: 'get' });
    await expect(host.ask('probe', 'mine', { command: 'get' })).resolves.toEqual({ n: 0 });
    expect(out.map((o) => o.key)).toEqual(['theirs', 'other']);
    // The port keeps negative ids for its own journal calls: an ask id must be positive.
    expect(out.every((o) => o.askId > 0)).toBe(true);
    expect(new Set(out.map((o) => o.askId)).size).toBe(2);
    host.reply(out[0]!.askId, true, { n: 42 });
    host.reply(out[1]!.askId, false, { code: 'ERR_NOT_OWNER', message: 'moved' } satisfies ErrorRecord);
    await expect(theirs).resolves.toEqual({ n: 42 });
    await expect(refused).rejects.toMatchObject({ code: 'ERR_NOT_OWNER', message: 'moved' });
    expect(host.stats().resident).toBe(1);
  });

  it('a handler that returns nothing answers undefined', async () => {
    const { host } = makeHost();
    expect(await outcome(host.ask('probe', 'u', { command: 'quiet' }))).toEqual({ ok: true, value: undefined });
  });
});

describe('refusals name what was refused', () => {
  it('an unknown kind names the kind, in the message and the details', async () => {
    const { host } = makeHost();
    await expect(host.ask('nope', 'k', { command: 'x' })).rejects.toMatchObject({
      code: 'ERR_UNKNOWN_KIND',
      message: "unknown actor kind 'nope'",
      details: { kind: 'nope' },
    });
  });

  it('an unknown command names the kind and the command; as a tell it is a dead letter', async () => {
    const { host } = makeHost();
    await expect(host.ask('probe', 'k', { command: 'nope' })).rejects.toMatchObject({
      code: 'ERR_UNKNOWN_COMMAND',
      message: "actor kind 'probe' has no command 'nope'",
    });
    host.tell('probe', 'k', { command: 'nope' });
    host.tell('probe', 'k', { command: 'get' }); // answered at once, to nobody
    await settle();
    expect(host.stats()).toMatchObject({ deadLetters: 1, processed: 3 });
  });

  it('a reused message id with another input names the actor and the command', async () => {
    const { host } = makeHost();
    await host.ask('probe', 'i', { command: 'incr', id: 'm-1' });
    await expect(host.ask('probe', 'i', { command: 'get', id: 'm-1' })).rejects.toMatchObject({
      code: 'ERR_IDEMPOTENCY_MISMATCH',
      details: { kind: 'probe', key: 'i', command: 'get' },
    });
  });

  it('a handler failure names the actor and the command, in the details and the log', async () => {
    const { log, lines } = capturedLog();
    const { host } = makeHost({ log });
    await expect(host.ask('probe', 'f', { command: 'boom' })).rejects.toMatchObject({
      code: 'ERR_HANDLER_FAILED',
      message: "probe/f 'boom' failed: kaput",
      details: { kind: 'probe', key: 'f', command: 'boom' },
    });
    expect(lines).toContainEqual(
      expect.objectContaining({ msg: 'handler failed; restarting actor', kind: 'probe', key: 'f', command: 'boom' }),
    );
  });

  it('something thrown that is not an Error is logged by its text and type', async () => {
    const { log, lines } = capturedLog();
    const { host } = makeHost({ log });
    await expect(host.ask('probe', 's', { command: 'throwString' })).rejects.toMatchObject({ code: 'ERR_HANDLER_FAILED' });
    expect(lines).toContainEqual(
      expect.objectContaining({
        msg: 'handler failed; restarting actor',
        err: expect.objectContaining({ message: 'not an Error', thrown: 'string' }),
      }),
    );
  });

  it('a refusal is not logged; a reply outside the value domain is, with the actor and the command', async () => {
    const { log, lines } = capturedLog();
    const { host } = makeHost({ log });
    await expect(host.ask('probe', 'r', { command: 'refuse' })).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    expect(lines).toEqual([]);
    await expect(host.ask('probe', 'r', { command: 'badReply' })).rejects.toMatchObject({ code: 'ERR_NOT_SERIALIZABLE' });
    expect(lines).toEqual([expect.objectContaining({ level: 40, kind: 'probe', key: 'r', command: 'badReply' })]);
    // Neither is a crash: no restart, and both messages' events were undone.
    expect(host.stats().restarts).toBe(0);
    await expect(host.ask('probe', 'r', { command: 'get' })).resolves.toEqual({ n: 0 });
  });

  it('a refused tell is a dead letter even when it came with a reply channel (a relayed tell)', async () => {
    const { host } = makeHost();
    const channel = recordingChannel();
    host.deliver('nope', 'x', 'c', undefined, 0, undefined, channel);
    host.deliver('probe', 'x', 'nope', undefined, 0, undefined, channel);
    host.deliver('probe', 'x', 'incr', undefined, 0, undefined, channel);
    await settle();
    expect(channel.got).toEqual([]);
    expect(host.stats().deadLetters).toBe(2);
    await expect(host.ask('probe', 'x', { command: 'get' })).resolves.toEqual({ n: 1 });
  });

  it('a dead letter warning names the actor, the command, the code and the count', async () => {
    const { log, lines } = capturedLog();
    const { host } = makeHost({ log });
    host.tell('nope', 'x', { command: 'c' });
    expect(lines).toEqual([
      expect.objectContaining({ kind: 'nope', key: 'x', command: 'c', code: 'ERR_UNKNOWN_KIND', deadLetters: 1 }),
    ]);
  });
});

describe('replies checked against the value domain', () => {
  it('a tell without an id is not answered, so a reply outside the domain does not undo its events', async () => {
    const { host } = makeHost();
    host.tell('probe', 'v', { command: 'badReply' });
    await expect(host.ask('probe', 'v', { command: 'get' })).resolves.toEqual({ n: 1 });
    expect(host.stats().deadLetters).toBe(0);
  });

  it('a tell with an id records its reply, so a reply outside the domain undoes its events without a restart', async () => {
    const { host } = makeHost();
    host.tell('probe', 'v', { command: 'badReply', id: 'm-2' });
    await expect(host.ask('probe', 'v', { command: 'get' })).resolves.toEqual({ n: 0 });
    expect(host.stats()).toMatchObject({ deadLetters: 1, restarts: 0 });
  });
});

describe('recorded replies', () => {
  it('a read-only command is not recorded: a retried id reads the current state', async () => {
    const { host } = makeHost();
    await expect(host.ask('probe', 'ro', { command: 'get', id: 'read-1' })).resolves.toEqual({ n: 0 });
    await expect(host.ask('probe', 'ro', { command: 'aget', id: 'read-2' })).resolves.toEqual({ n: 0 });
    await host.ask('probe', 'ro', { command: 'incr' });
    await expect(host.ask('probe', 'ro', { command: 'get', id: 'read-1' })).resolves.toEqual({ n: 1 });
    await expect(host.ask('probe', 'ro', { command: 'aget', id: 'read-2' })).resolves.toEqual({ n: 1 });
  });

  it('an async command is recorded: a retried id is applied once', async () => {
    const { host } = makeHost();
    await expect(host.ask('probe', 'aw', { command: 'aincr', id: 'w-1' })).resolves.toEqual({ n: 1 });
    await expect(host.ask('probe', 'aw', { command: 'aincr', id: 'w-1' })).resolves.toEqual({ n: 1 });
    await expect(host.ask('probe', 'aw', { command: 'get' })).resolves.toEqual({ n: 1 });
  });

  it('a command that emits nothing still writes its recorded reply, for a retry after a move', async () => {
    const journal = new MemoryJournal();
    const { host } = makeHost({ journal });
    await expect(host.ask('probe', 'pk', { command: 'peek', id: 'p-1' })).resolves.toEqual({ n: 0 });
    expect((await journal.read('probe', 'pk')).replies).toEqual([expect.objectContaining({ msgId: 'p-1', ok: true, value: { n: 0 } })]);
  });

  it('the newest `recentReplies` ids are remembered; an older one is applied again', async () => {
    const { host } = makeHost({ recentReplies: 2 });
    for (const id of ['m1', 'm2', 'm3']) await host.ask('probe', 'rr', { command: 'incr', id });
    await expect(host.ask('probe', 'rr', { command: 'incr', id: 'm2' })).resolves.toEqual({ n: 2 }); // remembered
    await expect(host.ask('probe', 'rr', { command: 'incr', id: 'm1' })).resolves.toEqual({ n: 4 }); // forgotten
  });
});

describe('a handler context once the handler has returned', () => {
  it.each([
    { command: 'leak', how: 'returned' },
    { command: 'aleak', how: 'resolved' },
    { command: 'aleakThrow', how: 'rejected' },
    { command: 'leakRefuse', how: 'threw' },
  ])('refuses emit after the handler $how', async ({ command }) => {
    const { host } = makeHost();
    await host.ask('probe', 'c', { command }).catch(() => undefined);
    expect(leaked).toBeDefined();
    expect(() => leaked!.emit({})).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_DEFINITION', message: 'probe: emit() after the handler returned' }),
    );
  });

  it('of a read-only command refuses emit, and the message says why', async () => {
    const { host } = makeHost();
    await expect(host.ask('probe', 'c', { command: 'emitInRead' })).rejects.toMatchObject({
      code: 'ERR_HANDLER_FAILED',
      message: "probe/c 'emitInRead' failed: probe: a read-only command cannot emit",
    });
  });
});

describe('turns and the drain', () => {
  it('handles at most `drainBudget` messages before yielding to the event loop', async () => {
    const { host, clock } = makeHost({ drainBudget: 2 });
    const keys = ['a', 'b', 'c', 'd', 'e'];
    for (const k of keys) await host.ask('probe', k, { command: 'get' });
    expect(host.stats().processed).toBe(5);
    for (const k of keys) host.tell('probe', k, { command: 'incr' });
    await settle();
    expect(host.stats().processed).toBe(7);
    // Under the simulated clock, the yield (setImmediate) runs on the next advance.
    clock.advance(0);
    await settle();
    expect(host.stats()).toMatchObject({ processed: 10, queued: 0 });
  });

  it('an async refusal keeps the actor, and the messages queued behind it run', async () => {
    const { host } = makeHost();
    const refused = host.ask('probe', 'ar', { command: 'arefuse' });
    const next = host.ask('probe', 'ar', { command: 'incr' });
    await expect(refused).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    expect(await outcome(next)).toEqual({ ok: true, value: { n: 1 } });
    expect(host.stats().restarts).toBe(0);
  });

  it('a message refused after emitting answers at once, without a journal write', async () => {
    const journal = new GateJournal();
    const { host } = makeHost({ journal });
    await host.ask('probe', 'w', { command: 'get' });
    const refused = host.ask('probe', 'w', { command: 'refuse' });
    expect(await outcome(refused)).toMatchObject({ ok: false, error: { code: 'ERR_INVALID_INPUT' } });
    expect(journal.held).toHaveLength(0);
  });

  it('each turn’s events reach the journal', async () => {
    const journal = new MemoryJournal();
    const { host } = makeHost({ journal });
    await host.ask('probe', 'j', { command: 'incr' });
    await host.ask('probe', 'j', { command: 'incr' });
    expect((await journal.read('probe', 'j')).events.map((e) => e.seq)).toEqual([1, 2]);
  });
});

describe('an async handler that outlives its activation', () => {
  /** Starts `hang` on an actor whose previous turn's write is still in flight. */
  async function hangBehindWrite(kind: string) {
    const journal = new GateJournal();
    const made = makeHost({ journal });
    const first = made.host.ask(kind, 'x', { command: 'incr' }, { timeoutMs: 60_000 });
    first.catch(() => undefined);
    await settle();
    expect(journal.held).toHaveLength(1);
    const running = made.host.ask(kind, 'x', { command: 'hang' }, { timeoutMs: 60_000 });
    await settle();
    expect(gates).toHaveLength(1);
    return { ...made, journal, first, running };
  }

  it('answers ERR_JOURNAL_WRITE when a failed write restarted the actor meanwhile', async () => {
    const { host, journal, first, running } = await hangBehindWrite('probe');
    journal.failAll(troupeError('ERR_STORAGE_FULL', 'disk full'));
    await expect(first).rejects.toMatchObject({ code: 'ERR_STORAGE_FULL' });
    await settle();
    gates[0]!.resolve({ n: 99 });
    await expect(running).rejects.toMatchObject({
      code: 'ERR_JOURNAL_WRITE',
      message: "probe/x restarted while 'hang' was running; its effects were discarded",
    });
    expect(host.stats().restarts).toBe(1);
    await expect(host.ask('probe', 'x', { command: 'get' })).resolves.toEqual({ n: 0 });
  });

  it('answers ERR_JOURNAL_WRITE, not a second failure, when it rejects after such a restart', async () => {
    const { host, journal, running } = await hangBehindWrite('probe');
    journal.failAll(troupeError('ERR_STORAGE_FULL', 'disk full'));
    await settle();
    gates[0]!.reject(new Error('late'));
    await expect(running).rejects.toMatchObject({ code: 'ERR_JOURNAL_WRITE' });
    await settle();
    expect(host.stats().restarts).toBe(1);
  });

  it('answers ERR_JOURNAL_WRITE when the actor escalated and its cell was swept meanwhile', async () => {
    const { host, clock, journal, running } = await hangBehindWrite('fragile');
    journal.failAll(troupeError('ERR_STORAGE_FULL', 'disk full'));
    await settle();
    expect(host.stats().escalations).toBe(1);
    clock.advance(2_000);
    host.sweep();
    expect(host.stats().resident).toBe(0);
    gates[0]!.resolve({ n: 99 });
    await expect(running).rejects.toMatchObject({ code: 'ERR_JOURNAL_WRITE' });
  });
});

describe('restarts', () => {
  it('with no backoff reload at once, without waiting for the clock', async () => {
    const { host } = makeHost();
    await host.ask('probe', 'r0', { command: 'incr' });
    await expect(host.ask('probe', 'r0', { command: 'boom' })).rejects.toMatchObject({ code: 'ERR_HANDLER_FAILED' });
    expect(await outcome(host.ask('probe', 'r0', { command: 'get' }))).toEqual({ ok: true, value: { n: 1 } });
  });

  it('with a backoff reload when it has passed, not before', async () => {
    const { host, clock } = makeHost();
    await expect(host.ask('slow', 'r1', { command: 'boom' })).rejects.toMatchObject({ code: 'ERR_HANDLER_FAILED' });
    const get = host.ask('slow', 'r1', { command: 'get' });
    clock.advance(99);
    expect(await outcome(get)).toBe('pending');
    clock.advance(1);
    expect(await outcome(get)).toEqual({ ok: true, value: { n: 0 } });
  });

  it('wait for the actor’s write in flight, so an acknowledged event is in the reloaded state', async () => {
    const journal = new GateJournal();
    const { host } = makeHost({ journal });
    const acked = host.ask('probe', 'f', { command: 'incr' });
    await settle();
    // Its reply saw the state of the write in flight, so it waits for that write too.
    const boom = host.ask('probe', 'f', { command: 'boom' });
    await settle();
    journal.passAll();
    await expect(acked).resolves.toEqual({ n: 1 });
    await expect(boom).rejects.toMatchObject({ code: 'ERR_HANDLER_FAILED' });
    const get = host.ask('probe', 'f', { command: 'get' });
    await settle();
    journal.passAll();
    await expect(get).resolves.toEqual({ n: 1 });
  });

  it('two failed writes of one actor restart it once, and log it', async () => {
    const { log, lines } = capturedLog();
    const journal = new GateJournal();
    const { host } = makeHost({ journal, log });
    const asks = [host.ask('probe', 'two', { command: 'incr' })];
    await settle();
    asks.push(host.ask('probe', 'two', { command: 'incr' }));
    await settle();
    expect(journal.held).toHaveLength(2);
    journal.failAll(troupeError('ERR_STORAGE_FULL', 'disk full'));
    for (const a of asks) await expect(a).rejects.toMatchObject({ code: 'ERR_STORAGE_FULL' });
    await settle();
    expect(host.stats().restarts).toBe(1);
    expect(lines).toContainEqual(expect.objectContaining({ level: 50, msg: 'journal write failed; reloading actor', kind: 'probe', key: 'two' }));
  });

  it('two failed writes of an actor that escalates escalate it once', async () => {
    const escalated: string[] = [];
    const journal = new GateJournal();
    const { host } = makeHost({ journal, onEscalated: (kind, key) => escalated.push(`${kind}/${key}`) });
    const asks = [host.ask('fragile', 'two', { command: 'incr' })];
    await settle();
    asks.push(host.ask('fragile', 'two', { command: 'incr' }));
    await settle();
    journal.failAll(troupeError('ERR_STORAGE_FULL', 'disk full'));
    for (const a of asks) await expect(a).rejects.toMatchObject({ code: 'ERR_STORAGE_FULL' });
    await settle();
    expect(escalated).toEqual(['fragile/two']);
    expect(host.stats().escalations).toBe(1);
  });

  it('escalation: queued messages and onEscalated get an error naming the limit and the cause; later ones are refused', async () => {
    const { log, lines } = capturedLog();
    const escalated: ErrorRecord[] = [];
    const { host } = makeHost({ log, onEscalated: (_kind, _key, error) => escalated.push(error) });
    await host.ask('fragile', 'e', { command: 'get' });
    const boom = host.ask('fragile', 'e', { command: 'boom' });
    const queued = host.ask('fragile', 'e', { command: 'get' });
    await expect(boom).rejects.toMatchObject({ code: 'ERR_HANDLER_FAILED' });
    const expected = {
      code: 'ERR_ACTOR_ESCALATED',
      message: "actor fragile/e exceeded 0 restarts in 2000 ms: fragile/e 'boom' failed: kaput",
      details: { kind: 'fragile', key: 'e' },
    };
    await expect(queued).rejects.toMatchObject(expected);
    expect(escalated).toEqual([expected]);
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 50, msg: 'restart intensity exceeded; actor stopped', kind: 'fragile', key: 'e' }),
    );
    await expect(host.ask('fragile', 'e', { command: 'get' })).rejects.toMatchObject({
      code: 'ERR_ACTOR_ESCALATED',
      message: 'actor fragile/e is stopped after repeated failures',
    });
  });
});

describe('system messages', () => {
  it('restart reloads the actor from the journal and counts a restart', async () => {
    const { host } = makeHost();
    await host.ask('probe', 's', { command: 'incr' });
    expect(host.system('probe', 's', 'restart')).toBe(true);
    await settle();
    expect(host.stats()).toMatchObject({ restarts: 1, resident: 1, passivated: 0 });
    await expect(host.ask('probe', 's', { command: 'get' })).resolves.toEqual({ n: 1 });
  });

  it('restart of an actor past its restart limit escalates it, naming the request', async () => {
    const escalated: ErrorRecord[] = [];
    const { host } = makeHost({ onEscalated: (_kind, _key, error) => escalated.push(error) });
    await host.ask('fragile', 's', { command: 'get' });
    host.system('fragile', 's', 'restart');
    await settle();
    expect(escalated).toEqual([expect.objectContaining({ message: expect.stringMatching(/: restart requested$/) })]);
  });

  it('passivate is ignored while messages are queued, and they are all answered', async () => {
    const { host } = makeHost();
    const running = host.ask('probe', 'p', { command: 'hang' });
    await settle();
    expect(host.system('probe', 'p', 'passivate')).toBe(true);
    const queued = host.ask('probe', 'p', { command: 'get' });
    gates[0]!.resolve(null);
    await expect(running).resolves.toBeNull();
    expect(await outcome(queued)).toEqual({ ok: true, value: { n: 0 } });
    expect(host.stats()).toMatchObject({ resident: 1, passivated: 0 });
  });
});

describe('activation that cannot read the journal', () => {
  it('answers ERR_JOURNAL_READ naming the actor and the cause, logs it, and leaves nothing resident', async () => {
    const { log, lines } = capturedLog();
    const { host } = makeHost({ journal: new BrokenReadJournal(), log });
    await expect(host.ask('probe', 'broken', { command: 'get' })).rejects.toMatchObject({
      code: 'ERR_JOURNAL_READ',
      message: 'cannot activate probe/broken: disk gone',
    });
    expect(host.stats().resident).toBe(0);
    expect(lines).toEqual([expect.objectContaining({ level: 50, msg: 'activation failed', kind: 'probe', key: 'broken' })]);
    await expect(host.ask('probe', 'fine', { command: 'get' })).resolves.toEqual({ n: 0 });
  });
});

describe('passivation', () => {
  it('counts idleness from the last message, not from the start', async () => {
    const { host, clock } = makeHost();
    clock.advance(600);
    await host.ask('probe', 'late', { command: 'incr' });
    // The sweep runs every IDLE_MS / 2 (at 1000, 1500, 2000): idle for 400, 900, then 1400 ms.
    clock.advance(1_399);
    expect(host.stats().resident).toBe(1);
    clock.advance(1);
    expect(host.stats()).toMatchObject({ resident: 0, passivated: 1 });
  });

  it('the sweep runs at most every 50 ms, however short the idle timeout', async () => {
    const quick = defineActor({
      kind: 'quick',
      idleTimeoutMs: 20,
      initial: () => ({}),
      apply: (s: object) => s,
      commands: { get: { readOnly: true, handle: () => null } },
    });
    const clock = new SimulatedClock();
    const host = new ActorHost({ registry: new ActorRegistry([quick]), journal: new MemoryJournal(), clock, log: silentLogger, slot: 0, slots: 1 });
    hosts.push(host);
    await host.ask('quick', 'q', { command: 'get' });
    clock.advance(49);
    expect(host.stats().resident).toBe(1);
    clock.advance(1);
    expect(host.stats().resident).toBe(0);
  });

  it('the heap threshold is exceeded only above it', async () => {
    let heap = 1_000;
    const { host } = makeHost({ maxHeapBytes: 1_000, heapUsed: () => heap });
    await host.ask('probe', 'h', { command: 'get' });
    expect(host.sweep()).toBe(0);
    heap = 1_001;
    expect(host.sweep()).toBe(1);
  });

  it('passivation cancels the actor’s timers', async () => {
    const { host, clock } = makeHost();
    await host.ask('probe', 't', { command: 'later', input: { ms: 300 } });
    host.system('probe', 't', 'passivate');
    await settle();
    expect(host.stats().resident).toBe(0);
    clock.advance(300);
    await settle();
    expect(host.stats().resident).toBe(0);
    await expect(host.ask('probe', 't', { command: 'get' })).resolves.toEqual({ n: 0 });
  });

  it('a cancelled timer does not fire; an uncancelled one does', async () => {
    const { host, clock } = makeHost();
    await host.ask('probe', 't', { command: 'later', input: { ms: 300 } });
    await host.ask('probe', 't', { command: 'later', input: { ms: 300 } });
    cancels[0]!();
    clock.advance(300);
    await settle();
    await expect(host.ask('probe', 't', { command: 'get' })).resolves.toEqual({ n: 1 });
  });
});

describe('the resident cap', () => {
  it('evicts just enough to get back to the cap', async () => {
    const { host } = makeHost({ maxResident: 3 });
    for (const k of ['a', 'b', 'c', 'd']) await host.ask('probe', k, { command: 'get' });
    expect(host.stats()).toMatchObject({ resident: 3, evicted: 1 });
  });

  it('never evicts an actor running an async handler', async () => {
    const { host } = makeHost({ maxResident: 1 });
    const running = host.ask('probe', 'busy', { command: 'hang' });
    await settle();
    await host.ask('probe', 'other', { command: 'get' });
    expect(host.stats()).toMatchObject({ resident: 2, evicted: 0 });
    gates[0]!.resolve({ n: 7 });
    await expect(running).resolves.toEqual({ n: 7 });
  });

  it('never evicts an actor in the middle of its turn (its events not yet written)', async () => {
    const { host } = makeHost({ maxResident: 1 });
    await expect(host.ask('probe', 'a', { command: 'emitThenTell', input: { to: 'b' } })).resolves.toBeNull();
    await settle();
    expect(host.stats()).toMatchObject({ resident: 2, evicted: 0 });
    await expect(host.ask('probe', 'a', { command: 'get' })).resolves.toEqual({ n: 1 });
    await expect(host.ask('probe', 'b', { command: 'get' })).resolves.toEqual({ n: 1 });
  });

  it('still holds after the most recently activated actor failed to activate and left', async () => {
    const { host } = makeHost({ maxResident: 2, journal: new BrokenReadJournal() });
    await host.ask('probe', 'a', { command: 'get' });
    await expect(host.ask('probe', 'broken', { command: 'get' })).rejects.toMatchObject({ code: 'ERR_JOURNAL_READ' });
    let peak = 0;
    for (const k of ['c', 'd', 'e', 'f', 'g']) {
      await host.ask('probe', k, { command: 'get' });
      peak = Math.max(peak, host.stats().resident);
    }
    expect(peak).toBe(2);
    expect(host.stats()).toMatchObject({ resident: 2, evicted: 4 });
  });

  // A bug this test found: a `passivate` system message removes the actor inside its turn, and
  // runCell then touched the removed cell, putting it back in the LRU list; each later eviction
  // "evicted" that phantom (counted, freeing nothing), so the host kept maxResident + 1 actors.
  it('still holds after the most recently used actor was passivated by a system message', async () => {
    const { host } = makeHost({ maxResident: 2 });
    for (const k of ['a', 'b']) await host.ask('probe', k, { command: 'get' });
    host.system('probe', 'b', 'passivate');
    await settle();
    let peak = 0;
    for (const k of ['c', 'd', 'e', 'f', 'g']) {
      await host.ask('probe', k, { command: 'get' });
      peak = Math.max(peak, host.stats().resident);
    }
    expect(peak).toBe(2);
    expect(host.stats()).toMatchObject({ resident: 2, evicted: 4, passivated: 5 });
  });
});

describe('fencing: another primary owns the actor', () => {
  it('writes carry the epoch read at activation, so a newer primary’s epoch fences them', async () => {
    const journal = new MemoryJournal();
    await journal.write({ kind: 'fragile', key: 'x', events: [{ seq: 1, v: 1, event: {} }], epoch: { term: 1, node: 1 } });
    const { host } = makeHost({ journal });
    await expect(host.ask('fragile', 'x', { command: 'incr' })).resolves.toEqual({ n: 2 });
    // A newer primary writes the next event under a higher epoch.
    await journal.write({ kind: 'fragile', key: 'x', events: [{ seq: 3, v: 1, event: {} }], epoch: { term: 2, node: 2 } });
    await expect(host.ask('fragile', 'x', { command: 'incr' })).rejects.toMatchObject({ code: 'ERR_STALE_EPOCH' });
    // Reloaded at once and outside the restart window: the fragile kind would have escalated.
    expect(await outcome(host.ask('fragile', 'x', { command: 'get' }))).toEqual({ ok: true, value: { n: 3 } });
    expect(host.stats()).toMatchObject({ restarts: 0, escalations: 0 });
    await expect(host.ask('fragile', 'x', { command: 'incr' })).resolves.toEqual({ n: 4 });
    expect((await journal.read('fragile', 'x')).epoch).toEqual({ term: 2, node: 2 });
  });

  it.each(['ERR_STALE_EPOCH', 'ERR_NOT_PRIMARY'] as const)(
    'a write refused with %s answers that code, is logged as fenced, and neither restarts nor escalates',
    async (code) => {
      const { log, lines } = capturedLog();
      const journal = new GateJournal();
      const { host, clock } = makeHost({ journal, log });
      await host.ask('fragile', 'f', { command: 'later', input: { ms: 300 } });
      const write = host.ask('fragile', 'f', { command: 'incr' });
      await settle();
      journal.failAll(troupeError(code, 'fenced'));
      await expect(write).rejects.toMatchObject({ code });
      expect(lines).toEqual([
        expect.objectContaining({ level: 40, msg: 'journal write fenced; reloading actor', kind: 'fragile', key: 'f', code }),
      ]);
      expect(host.stats()).toMatchObject({ restarts: 0, escalations: 0 });
      // The reload cancelled the activation's timers.
      clock.advance(300);
      await settle();
      expect(journal.held).toHaveLength(0);
      expect(await outcome(host.ask('fragile', 'f', { command: 'get' }))).toEqual({ ok: true, value: { n: 0 } });
    },
  );

  it.each(['ERR_NOT_PRIMARY', 'ERR_PARTITION_UNAVAILABLE', 'ERR_STALE_EPOCH'] as const)(
    'an activation the journal refuses with %s answers that code and is logged at debug only',
    async (code) => {
      const { log, lines } = capturedLog('debug');
      const { host } = makeHost({ journal: new BrokenReadJournal(troupeError(code, 'not here')), log });
      await expect(host.ask('probe', 'broken', { command: 'get' })).rejects.toMatchObject({ code, message: 'not here' });
      expect(lines).toEqual([
        expect.objectContaining({ level: 20, msg: 'activation refused by the journal', kind: 'probe', key: 'broken', code }),
      ]);
      expect(host.stats().resident).toBe(0);
    },
  );
});

describe('reloadWhere: actors whose state another node may have changed', () => {
  it('drops the idle actors it selects, leaves the others, and counts what it selected', async () => {
    const journal = new GateJournal();
    journal.openUp(); // writes pass at once
    const { host } = makeHost({ journal });
    for (const k of ['a', 'b', 'c']) await host.ask('probe', k, { command: 'incr' });
    expect(host.reloadWhere((kind, key) => kind === 'probe' && key !== 'c')).toBe(2);
    expect(host.stats()).toMatchObject({ resident: 1, passivated: 2 });
    // Their next message reads them again from the journal; `c` was not read again.
    await expect(host.ask('probe', 'a', { command: 'get' })).resolves.toEqual({ n: 1 });
    await host.ask('probe', 'c', { command: 'get' });
    expect(Object.fromEntries(journal.reads)).toEqual({ a: 2, b: 1, c: 1 });
  });

  it('reloads an actor with a write in flight once the write settles, keeping it resident', async () => {
    const journal = new GateJournal();
    const { host } = makeHost({ journal });
    await host.ask('probe', 'w', { command: 'get' });
    const acked = host.ask('probe', 'w', { command: 'incr' });
    await settle();
    expect(host.reloadWhere(() => true)).toBe(1);
    expect(host.stats()).toMatchObject({ resident: 1, passivated: 0, restarts: 0 });
    expect(journal.reads.get('w')).toBe(1);
    journal.passAll();
    await expect(acked).resolves.toEqual({ n: 1 });
    await settle();
    expect(journal.reads.get('w')).toBe(2);
    await expect(host.ask('probe', 'w', { command: 'get' })).resolves.toEqual({ n: 1 });
  });

  it('leaves an actor inside an async handler alone', async () => {
    const journal = new GateJournal();
    const { host } = makeHost({ journal });
    const running = host.ask('probe', 'h', { command: 'hang' });
    await settle();
    expect(host.reloadWhere(() => true)).toBe(0);
    gates[0]!.resolve({ n: 5 });
    await expect(running).resolves.toEqual({ n: 5 });
    expect(host.stats()).toMatchObject({ resident: 1, passivated: 0 });
    expect(journal.reads.get('h')).toBe(1);
  });
});
