/**
 * The session hub alone: fake sockets, a fake sender whose `$watch` answers the test scripts, a
 * simulated clock. Each case is one rule of docs/websocket.md, checked at the frame level.
 */
import { describe, expect, it } from 'vitest';
import { SimulatedClock } from '../../src/core/clock.ts';
import { troupeError } from '../../src/core/errors.ts';
import { createLogger } from '../../src/core/logger.ts';
import { SessionHub, type Connection } from '../../src/sessions/session-hub.ts';
import type { ServerFrame } from '../../src/sessions/ws-protocol.ts';

type Call = { command: string; input: any; resolve: (v: unknown) => void; reject: (e: unknown) => void };

function setup(options: Partial<ConstructorParameters<typeof SessionHub>[0]> = {}) {
  const clock = new SimulatedClock(0);
  const calls: Call[] = [];
  const sender = {
    askRaw: (_kind: string, _key: string, command: string, input: unknown) =>
      new Promise((resolve, reject) => calls.push({ command, input, resolve, reject })),
  };
  const hub = new SessionHub({ sender, self: 7, clock, log: createLogger({}, 'silent'), ...options });
  const socket = () => {
    const s = { frames: [] as ServerFrame[], closed: [] as number[], send: (t: string) => void s.frames.push(JSON.parse(t)), close: (code: number) => void s.closed.push(code) };
    return s;
  };
  const watches = () => calls.filter((c) => c.command === '$watch');
  const tick = () => new Promise((r) => setImmediate(r));
  return { clock, calls, hub, socket, watches, tick };
}

const pushes = (frames: ServerFrame[]) => frames.filter((f) => f.t === 'push').map((f) => (f as { seq: number }).seq);
const items = (...seqs: number[]) => seqs.map((seq) => ({ seq, msg: `m${seq}` }));

describe('SessionHub', () => {
  it('a first socket reads from its position; a live one starts at the log end it is told', async () => {
    const { hub, socket, watches, tick } = setup();
    const resumed = socket();
    hub.open(resumed, 'room', 'r', 3);
    expect(watches()[0]!.input).toMatchObject({ node: 7, from: 3, connections: 1 });
    watches()[0]!.resolve({ to: 9, items: items(4, 8) });
    await tick();
    expect(resumed.frames.map((f) => f.t)).toEqual(['hello', 'push', 'push', 'sync']);
    expect(pushes(resumed.frames)).toEqual([4, 8]);
    expect(resumed.frames.at(-1)).toEqual({ t: 'sync', seq: 9 });
    const live = socket();
    hub.open(live, 'room', 'r', undefined);
    expect(watches()[1]!.input).toMatchObject({ from: -1, connections: 2 });
    watches()[1]!.resolve({ to: 9, items: [] });
    await tick();
    expect(live.frames.at(-1)).toEqual({ t: 'sync', seq: 9 });
  });

  it('a renewal from the lowest position gives each socket only what it lacks', async () => {
    const { hub, socket, watches, tick, clock } = setup({ renewMs: 1_000 });
    const behind = socket();
    const ahead = socket();
    hub.open(behind, 'room', 'r', 5);
    watches()[0]!.resolve({ to: 5, items: [] });
    hub.open(ahead, 'room', 'r', 10);
    watches()[1]!.resolve({ to: 10, items: [] });
    await tick();
    clock.advance(1_000);
    const renewal = watches()[2]!;
    expect(renewal.input.from).toBe(5);
    renewal.resolve({ to: 12, items: items(6, 9, 11, 12) });
    await tick();
    expect(pushes(behind.frames)).toEqual([6, 9, 11, 12]);
    expect(pushes(ahead.frames)).toEqual([11, 12]);
  });

  it('a note past the position is a gap: read back, and notes during the read wait for it', async () => {
    const { hub, socket, watches, tick } = setup();
    const s = socket();
    hub.open(s, 'room', 'r', undefined);
    watches()[0]!.resolve({ to: 4, items: [] });
    await tick();
    hub.deliver({ kind: 'room', key: 'r', from: 4, to: 5, items: items(5) });
    hub.deliver({ kind: 'room', key: 'r', from: 7, to: 8, items: items(8) }); // 5..7 missing
    expect(watches()).toHaveLength(2);
    expect(watches()[1]!.input.from).toBe(5);
    hub.deliver({ kind: 'room', key: 'r', from: 8, to: 9, items: items(9) }); // during the read: deferred
    watches()[1]!.resolve({ to: 8, items: items(6, 8) });
    await tick();
    expect(watches()[2]!.input.from).toBe(8);
    watches()[2]!.resolve({ to: 9, items: items(9) });
    await tick();
    expect(pushes(s.frames)).toEqual([5, 6, 8, 9]);
  });

  it('a duplicated note is dropped', async () => {
    const { hub, socket, watches, tick } = setup();
    const s = socket();
    hub.open(s, 'room', 'r', undefined);
    watches()[0]!.resolve({ to: 0, items: [] });
    await tick();
    const note = { kind: 'room', key: 'r', from: 0, to: 2, items: items(1, 2) };
    hub.deliver(note);
    hub.deliver(note);
    expect(pushes(s.frames)).toEqual([1, 2]);
  });

  it('a truncated stretch is announced as a gap frame', async () => {
    const { hub, socket, watches, tick } = setup();
    const s = socket();
    hub.open(s, 'room', 'r', 2);
    watches()[0]!.resolve({ to: 30, items: items(25, 30), lost: true });
    await tick();
    expect(s.frames.filter((f) => f.t !== 'hello')).toEqual([
      { t: 'gap', from: 2, to: 24 },
      { t: 'push', seq: 25, msg: 'm25' },
      { t: 'push', seq: 30, msg: 'm30' },
      { t: 'sync', seq: 30 },
    ]);
  });

  it('a client ahead of the log (it saw writes a lazy primary lost) is told where the log is', async () => {
    const { hub, socket, watches, tick } = setup();
    const s = socket();
    hub.open(s, 'room', 'r', 50);
    watches()[0]!.resolve({ to: 40, items: [] });
    await tick();
    expect(s.frames.at(-1)).toEqual({ t: 'sync', seq: 40 });
    hub.deliver({ kind: 'room', key: 'r', from: 40, to: 41, items: items(41) });
    expect(pushes(s.frames)).toEqual([41]);
  });

  it('caps: connections per node, asks in flight per socket', async () => {
    const { hub, socket, calls, watches } = setup({ maxConnections: 2, maxInflight: 1 });
    const a = socket();
    const conn = hub.open(a, 'room', 'r', undefined);
    hub.open(socket(), 'room', 'r', undefined);
    expect(() => hub.open(socket(), 'room', 'r', undefined)).toThrow(expect.objectContaining({ code: 'ERR_OVERLOADED' }));
    watches().forEach((w) => w.resolve({ to: 0, items: [] }));
    hub.message(conn, JSON.stringify({ t: 'ask', id: 'one', command: 'say', input: {} }));
    hub.message(conn, JSON.stringify({ t: 'ask', id: 'two', command: 'say', input: {} }));
    expect(a.frames.at(-1)).toMatchObject({ t: 'reply', id: 'two', ok: false, error: { code: 'ERR_OVERLOADED' } });
    await new Promise((r) => setImmediate(r));
    expect(calls.filter((c) => c.command === 'say')).toHaveLength(1);
    const ask = calls.find((c) => c.command === 'say')!;
    ask.reject(troupeError('ERR_NOT_PRIMARY', 'moving'));
    await new Promise((r) => setImmediate(r));
    expect(a.frames.at(-1)).toMatchObject({ t: 'reply', id: 'one', ok: false, error: { code: 'ERR_NOT_PRIMARY' } });
  });

  it("the last socket's close ends the watch at once (connections: 0), and a closed socket gets nothing", async () => {
    const { hub, socket, watches, tick } = setup();
    const s = socket();
    const conn: Connection = hub.open(s, 'room', 'r', undefined);
    watches()[0]!.resolve({ to: 0, items: [] });
    await tick();
    hub.closed(conn);
    expect(watches()[1]!.input).toMatchObject({ connections: 0 });
    const before = s.frames.length;
    hub.deliver({ kind: 'room', key: 'r', from: 0, to: 1, items: items(1) });
    expect(s.frames).toHaveLength(before);
    expect(hub.connectionCount).toBe(0);
  });

  it('an ask carries its id as the message id, and the reply goes back under it', async () => {
    const clock = new SimulatedClock(0);
    const seen: Array<string | undefined> = [];
    const hub = new SessionHub({
      sender: { askRaw: async (_k, _key, command, _input, msgId) => (command === '$watch' ? { to: 0, items: [] } : (seen.push(msgId), { n: 1 })) },
      self: 1,
      clock,
      log: createLogger({}, 'silent'),
    });
    const frames: ServerFrame[] = [];
    const conn = hub.open({ send: (t) => void frames.push(JSON.parse(t)), close: () => undefined }, 'room', 'r', undefined);
    hub.message(conn, JSON.stringify({ t: 'ask', id: 'client-1', command: 'say', input: { text: 'x' } }));
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(['client-1']);
    expect(frames.at(-1)).toEqual({ t: 'reply', id: 'client-1', ok: true, value: { n: 1 } });
  });
});
