/**
 * WebSocket sessions across whole nodes, in-process: three `TroupeNode`s (replicated, R=3, W=2)
 * over one MemoryNetwork on one SimulatedClock (test/replication/sim-cluster.ts). The sockets
 * are fakes handed straight to each node's session hub (`node.sessionHub.open`), so the test
 * drives the protocol frame by frame while nodes die, notes get lost and primaries move; the
 * real sockets are test/websocket/ws-process.test.ts's business.
 *
 * Every scenario ends with the same check: each client holds every message said, in the room's
 * order, once — and the room counted each message id once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { R_PUSH } from '../../src/sessions/push-peers.ts';
import type { Connection } from '../../src/sessions/session-hub.ts';
import type { ServerFrame } from '../../src/sessions/ws-protocol.ts';
import { SimNodeCluster } from '../replication/sim-cluster.ts';

const demo = new URL('../../src/demo/app.ts', import.meta.url).href;
let cluster: SimNodeCluster | undefined;

afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

type Push = { seq: number; msg: { n: number; from: string; text: string } };

/**
 * A protocol client as docs/websocket.md describes it, over a fake socket: ids on asks, asks
 * without a reply resent in order after a reconnect, acks, `from` on reconnect, duplicates dropped.
 */
class FakeClient {
  conn: Connection | undefined;
  node = -1;
  /** Highest log position it has every push up to (last push seq or sync seq). */
  position: number | undefined;
  readonly pushes: Push[] = [];
  readonly duplicates: number[] = [];
  readonly replies = new Map<string, { ok: boolean; value?: unknown; error?: { code: string } }>();
  /** Asks said and not yet answered, in the order said. */
  readonly unanswered: Array<{ id: string; text: string }> = [];
  readonly closes: number[] = [];
  autoAck = true;
  private n = 0;

  constructor(
    readonly c: SimNodeCluster,
    readonly name: string,
    readonly room: string,
  ) {}

  connect(node: number): void {
    this.node = node;
    const socket = {
      send: (text: string) => this.frame(JSON.parse(text) as ServerFrame),
      close: (code: number) => {
        if (this.conn === conn) this.conn = undefined;
        this.closes.push(code);
      },
    };
    const conn = this.c.node(node).sessionHub!.open(socket, 'room', this.room, this.position);
    this.conn = conn;
    for (const a of this.unanswered) this.send({ t: 'ask', id: a.id, command: 'say', input: { from: this.name, text: a.text } });
  }

  say(text: string): string {
    const id = `${this.name}-${++this.n}`;
    this.unanswered.push({ id, text });
    if (this.conn) this.send({ t: 'ask', id, command: 'say', input: { from: this.name, text } });
    return id;
  }

  ack(): void {
    const last = this.pushes.at(-1);
    if (last) this.send({ t: 'ack', seq: last.seq });
  }

  private send(frame: unknown): void {
    if (this.conn) this.c.node(this.node).sessionHub!.message(this.conn, JSON.stringify(frame));
  }

  private frame(f: ServerFrame): void {
    if (f.t === 'push') {
      if (this.position !== undefined && f.seq <= this.position) return void this.duplicates.push(f.seq);
      this.pushes.push(f as Push);
      this.position = f.seq;
      if (this.autoAck) this.send({ t: 'ack', seq: f.seq });
    } else if (f.t === 'sync') {
      this.position = Math.max(this.position ?? 0, f.seq);
    } else if (f.t === 'reply') {
      this.replies.set(f.id, f.ok ? { ok: true, value: f.value } : { ok: false, error: f.error });
      const i = this.unanswered.findIndex((a) => a.id === f.id);
      // A refusal during failover (not primary yet) is resent on the next reconnect or by the test.
      if (i >= 0 && f.ok) this.unanswered.splice(i, 1);
    }
  }

  /** Resends what has no (successful) reply on the same socket: a client's retry after an error reply. */
  retryUnanswered(): void {
    for (const a of this.unanswered) this.send({ t: 'ask', id: a.id, command: 'say', input: { from: this.name, text: a.text } });
  }

  texts(): string[] {
    return this.pushes.map((p) => `${p.msg.from}:${p.msg.text}`);
  }
}

async function start(seed: number, sessions?: { renewMs?: number; maxUnacked?: number }): Promise<SimNodeCluster> {
  cluster = await SimNodeCluster.start({ seed, modules: [demo], ...(sessions && { sessions }) });
  return cluster;
}

/** The room's primary as node `via` sees it. */
function primaryOf(c: SimNodeCluster, room: string, via: number): number {
  return c.ownerOf(room, via);
}

/** Runs until every client has its asks answered and holds `total` pushes. */
async function until(c: SimNodeCluster, clients: FakeClient[], total: number, what: string, maxMs = 20_000): Promise<void> {
  let last = 0;
  await c.runUntil(
    () => {
      // A refused ask (the partition moving) is retried once a simulated second, as a client would.
      if (c.clock.now() - last >= 1_000) {
        last = c.clock.now();
        for (const cl of clients) if (cl.conn) cl.retryUnanswered();
      }
      return clients.every((cl) => cl.unanswered.length === 0 && cl.pushes.length >= total);
    },
    maxMs,
    what,
  );
}

function expectWhole(clients: FakeClient[], said: number): void {
  const reference = clients[0]!.texts();
  expect(reference).toHaveLength(said);
  expect(new Set(reference).size).toBe(said);
  for (const cl of clients) {
    expect(cl.texts(), `${cl.name}'s messages`).toEqual(reference);
    const seqs = cl.pushes.map((p) => p.seq);
    expect(seqs, `${cl.name}'s seqs ascend`).toEqual([...seqs].sort((a, b) => a - b));
    // The room numbers each message it accepted: 1..said, each once — no id applied twice.
    expect(cl.pushes.map((p) => p.msg.n)).toEqual(Array.from({ length: said }, (_, i) => i + 1));
  }
}

describe('WebSocket sessions across nodes (in-memory)', () => {
  it('two sockets on different nodes each get every push once, in order, and every ask its reply', async () => {
    const c = await start(11);
    const a = new FakeClient(c, 'a', 'lobby');
    const b = new FakeClient(c, 'b', 'lobby');
    a.connect(1);
    b.connect(2);
    await c.runUntil(() => a.position !== undefined && b.position !== undefined, 3_000, 'both synced');
    for (let i = 0; i < 10; i++) {
      a.say(`a${i}`);
      b.say(`b${i}`);
    }
    await until(c, [a, b], 20, 'all pushes');
    expectWhole([a, b], 20);
    expect(a.duplicates).toEqual([]);
  });

  it("a socket whose node dies reconnects to another with its position: nothing lost, nothing twice", async () => {
    const c = await start(12);
    const room = 'r-socket-node';
    // The socket's node is not the room's primary, so the room itself keeps serving.
    const primary = primaryOf(c, room, 1);
    const [nodeA, nodeB] = [1, 2, 3].filter((n) => n !== primary) as [number, number];
    const a = new FakeClient(c, 'a', room);
    const b = new FakeClient(c, 'b', room);
    a.connect(nodeA);
    b.connect(primary);
    await c.runUntil(() => a.position !== undefined && b.position !== undefined, 3_000, 'both synced');
    for (let i = 0; i < 5; i++) a.say(`a${i}`);
    await until(c, [a, b], 5, 'first five');
    // In flight when the node dies: said, maybe applied, no reply yet.
    for (let i = 5; i < 8; i++) a.say(`a${i}`);
    for (let i = 0; i < 3; i++) b.say(`b${i}`);
    c.kill(nodeA);
    await c.runUntil(() => a.conn === undefined, 2_000, "a's socket closed");
    expect(a.closes).toContain(1001);
    // While a is away, b's messages are written and pushed: a must get them from the log on its return.
    await until(c, [b], 8, "b's messages while a is away");
    a.connect(nodeB);
    await until(c, [a, b], 11, 'all after reconnect');
    expectWhole([a, b], 11);
    expect(a.duplicates, 'pushes the hub resent below the position it was given').toEqual([]);
  });

  it("the room's primary dies: sockets elsewhere re-watch the new primary and pushes go on", async () => {
    // No heartbeat within the test: only the re-watch on the membership change can find the new primary.
    const c = await start(13, { renewMs: 600_000 });
    const room = 'r-primary';
    const primary = primaryOf(c, room, 1);
    const [nodeA, nodeB] = [1, 2, 3].filter((n) => n !== primary) as [number, number];
    const a = new FakeClient(c, 'a', room);
    const b = new FakeClient(c, 'b', room);
    a.connect(nodeA);
    b.connect(nodeB);
    await c.runUntil(() => a.position !== undefined && b.position !== undefined, 3_000, 'both synced');
    a.say('before');
    await until(c, [a, b], 1, 'one push');
    c.kill(primary);
    await c.untilDown(primary, [nodeA, nodeB]);
    const diedAt = c.clock.now();
    for (let i = 0; i < 4; i++) b.say(`after${i}`);
    await until(c, [a, b], 5, 'pushes after failover');
    expectWhole([a, b], 5);
    expect(c.clock.now() - diedAt).toBeLessThan(5_000);
  });

  it('a socket opened while its room fails over is placed once the new primary serves', async () => {
    const c = await start(19, { renewMs: 600_000 });
    const room = 'r-open-in-failover';
    const primary = primaryOf(c, room, 1);
    const [x, y] = [1, 2, 3].filter((n) => n !== primary) as [number, number];
    const b = new FakeClient(c, 'b', room);
    b.connect(y);
    await c.runUntil(() => b.position !== undefined, 3_000, 'b synced');
    c.kill(primary);
    // Its first $watch goes to the dead primary (or to no one yet): it must not stay unplaced.
    const a = new FakeClient(c, 'a', room);
    a.connect(x);
    await c.untilDown(primary, [x, y]);
    await c.runUntil(() => a.position !== undefined, 10_000, 'a placed after the failover');
    for (let i = 0; i < 3; i++) b.say(`m${i}`);
    await until(c, [a, b], 3, 'pushes to both');
    expectWhole([a, b], 3);
  });

  it('a lost note is noticed at the next one (a gap), and read back at once', async () => {
    const c = await start(18, { renewMs: 600_000 });
    const room = 'r-gap';
    const primary = primaryOf(c, room, 1);
    const other = [1, 2, 3].find((n) => n !== primary)!;
    const a = new FakeClient(c, 'a', room);
    a.connect(other);
    await c.runUntil(() => a.position !== undefined, 3_000, 'synced');
    let drop = 1;
    const off = c.net.intercept((m) => (Array.isArray(m.payload) && m.payload[0] === R_PUSH && drop > 0 ? (drop--, 'drop') : undefined));
    a.say('lost');
    await c.runUntil(() => a.unanswered.length === 0 && drop === 0, 2_000, 'first reply, its note dropped');
    expect(a.pushes).toHaveLength(0);
    a.say('next');
    await c.runUntil(() => a.pushes.length === 2, 500, 'both, without waiting for a heartbeat');
    off();
    expectWhole([a], 2);
  });

  it('lost push notes are read back from the log (the renewal heartbeat repairs the gap)', async () => {
    const c = await start(14);
    const room = 'r-lossy';
    const primary = primaryOf(c, room, 1);
    const other = [1, 2, 3].find((n) => n !== primary)!;
    const a = new FakeClient(c, 'a', room);
    a.connect(other);
    await c.runUntil(() => a.position !== undefined, 3_000, 'synced');
    let dropped = 0;
    const off = c.net.intercept((m) => (Array.isArray(m.payload) && m.payload[0] === R_PUSH ? (dropped++, 'drop') : undefined));
    for (let i = 0; i < 3; i++) a.say(`m${i}`);
    await c.runUntil(() => a.unanswered.length === 0, 5_000, 'replies');
    expect(a.pushes).toHaveLength(0); // every note was dropped: nothing yet
    expect(dropped).toBeGreaterThan(0);
    off();
    // No new write comes: only the heartbeat (5 s) can repair it.
    const t = await c.runUntil(() => a.pushes.length === 3, 7_000, 'gap repaired');
    expect(t).toBeLessThanOrEqual(5_100);
    expectWhole([a], 3);
  });

  it('a client that stops acking gets maxUnacked pushes, then the rest once it acks', async () => {
    const c = await start(15);
    const room = 'r-unacked';
    const a = new FakeClient(c, 'a', room);
    const b = new FakeClient(c, 'b', room);
    a.autoAck = false;
    a.connect(1);
    b.connect(1);
    await c.runUntil(() => a.position !== undefined && b.position !== undefined, 3_000, 'synced');
    const cap = 256; // hubDefaults.maxUnacked
    for (let i = 0; i < cap + 20; i++) b.say(`m${i}`);
    await until(c, [b], cap + 20, "b's pushes");
    await c.runFor(100);
    expect(a.pushes).toHaveLength(cap);
    a.ack();
    await c.runUntil(() => a.pushes.length === cap + 20, 3_000, "a's rest after its ack");
    expectWhole([a, b], cap + 20);
  });

  it('a malformed frame closes only its own socket', async () => {
    const c = await start(16);
    const a = new FakeClient(c, 'a', 'r-bad');
    const b = new FakeClient(c, 'b', 'r-bad');
    a.connect(1);
    b.connect(1);
    await c.runUntil(() => a.position !== undefined && b.position !== undefined, 3_000, 'synced');
    const hub = c.node(1).sessionHub!;
    const before = hub.connectionCount;
    for (const bad of ['{', '[]', '{"t":"nope"}', `{"t":"ask","id":"${'x'.repeat(129)}","command":"say"}`, '{"t":"ack","seq":-1}', '{"t":"ask","id":"i","command":"$watch"}']) {
      const victim = new FakeClient(c, 'v', 'r-bad');
      victim.connect(1);
      hub.message(victim.conn!, bad);
      expect(victim.closes, bad).toEqual([1007]);
    }
    expect(hub.connectionCount).toBe(before);
    b.say('still here');
    await until(c, [a, b], 1, 'the others work on');
    expectWhole([a, b], 1);
  });

  it('who is connected where: the primary lists the watching nodes, and drops a dead one after its lease', async () => {
    const c = await start(17);
    const room = 'r-where';
    const primary = primaryOf(c, room, 1);
    const [x, y] = [1, 2, 3].filter((n) => n !== primary) as [number, number];
    const a = new FakeClient(c, 'a', room);
    const b = new FakeClient(c, 'b', room);
    const b2 = new FakeClient(c, 'b2', room);
    a.connect(x);
    b.connect(y);
    b2.connect(y);
    await c.runUntil(() => [a, b, b2].every((cl) => cl.position !== undefined), 3_000, 'synced');
    const watchers = async () =>
      ((await c.settle(c.node(primary).ask('room', room, { command: '$watchers' }).catch((e) => e))) as { watchers?: Array<{ node: number; connections: number }> }).watchers;
    // Reserved commands are refused to callers outside the runtime (node.ask is the app's API).
    expect(await watchers()).toBeUndefined();
    const hubWatchers = async () => {
      const r = (await c.settle(c.node(primary).sessionHub!['options'].sender.askRaw('room', room, '$watchers', undefined, undefined, 2_000))) as {
        watchers: Array<{ node: number; connections: number }>;
      };
      return r.watchers.map((w) => `${w.node}:${w.connections}`).sort();
    };
    await c.runFor(5_100); // one renewal: connection counts are as of the latest watch
    expect(await hubWatchers()).toEqual([`${x}:1`, `${y}:2`].sort());
    c.kill(y);
    const killedAt = c.clock.now();
    let listed = await hubWatchers();
    // Read once a simulated second until the dead node's lease has ended (deadline: 25 s).
    while (listed.length > 1 && c.clock.now() - killedAt < 25_000) {
      await c.runFor(1_000);
      listed = await hubWatchers();
    }
    expect(listed).toEqual([`${x}:1`]);
    // Lease 15 s (+ the renewal in flight): never later than that.
    expect(c.clock.now() - killedAt).toBeLessThanOrEqual(15_000 + 5_100);
  });
});
