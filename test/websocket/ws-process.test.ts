/**
 * WebSocket sessions from the outside (docs/websocket.md, issue 8): three `troupe start`
 * processes (replicated durability, the demo app's `room`), and clients that speak the protocol
 * with the `ws` package through test/helpers/ws-session.ts — never the runtime's own client.
 *
 * Order matters and is cheap: refusals and hostile frames first, then one SIGKILL of node 3
 * serving two rooms at once — room S has a socket on node 3 (the socket's node dies: it
 * reconnects elsewhere and resends), room P has its primary on node 3 (the sockets stay and the
 * pushes after the failover still come) — and last the connection registry forgetting node 3.
 */
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partitionOf } from '../../src/replication/partition-table.ts';
import { getJson, ProcessCluster, type ProcessNode } from '../helpers/process-cluster.ts';
import { eventually, exited } from '../helpers/processes.ts';
import { openRaw, refusedUpgrade, WsSession } from '../helpers/ws-session.ts';

const sessionApp = fileURLToPath(new URL('../sessions/session-actors.ts', import.meta.url));
const SECRET = 'ws-process-session-secret-0123';
const cluster = new ProcessCluster('ws', { args: ['--app', sessionApp, '--session-secret', SECRET] });

/** What the nodes' hubs use (hubDefaults.renewMs, watchLimits.leaseMs): a dead node's watch is gone within their sum. */
const RENEW_MS = 5_000;
const LEASE_MS = 15_000;

let nodes: ProcessNode[] = [];
const sessions: WsSession[] = [];
beforeAll(async () => {
  nodes = await cluster.startAll([1, 2, 3]);
}, 60_000);
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()));
  await cluster.stop();
}, 30_000);

function session(o: ConstructorParameters<typeof WsSession>[0]): WsSession {
  const s = new WsSession(o);
  sessions.push(s);
  return s;
}

const ws = (node: ProcessNode, path: string) => node.url.replace(/^http/, 'ws') + path;

interface RoomPush {
  n: number;
  from: string;
  text: string;
}

/** `count` says of distinct texts (`<prefix>-<i>`) on `s`, `inflight` at a time; resolves when every one is acknowledged. */
function sayMany(s: WsSession, prefix: string, count: number, inflight: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await s.ask('say', { from: prefix, text: `${prefix}-${i}` });
    }
  };
  return Promise.all(Array.from({ length: inflight }, worker)).then(() => undefined);
}

function withDeadline<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not within ${ms} ms: ${what()}`)), ms)));
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/**
 * What a room's socket must hold: every push once, in seq order, numbered 1..total with no gap,
 * and exactly the texts said (nothing lost, nothing applied twice).
 */
function checkRoomStream(s: WsSession, total: number, texts: readonly string[]): void {
  const msgs = s.pushes.map((p) => p.msg as RoomPush);
  const seqs = s.pushes.map((p) => p.seq);
  expect(seqs, 'push seqs ascend').toEqual([...seqs].sort((a, b) => a - b));
  expect(new Set(seqs).size).toBe(seqs.length);
  expect(msgs.map((m) => m.n)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
  expect([...msgs.map((m) => m.text)].sort()).toEqual([...texts].sort());
  expect(s.gaps).toEqual([]);
  expect(s.errors).toEqual([]);
}

async function recentOf(node: ProcessNode, key: string): Promise<{ count: number }> {
  let last: { count: number } | undefined;
  await eventually(
    async () => {
      const res = await fetch(`${node.url}/actors/room/${key}/recent`, { signal: AbortSignal.timeout(6_000) });
      if (res.status === 200) last = (await res.json()) as { count: number };
      return res.status === 200;
    },
    15_000,
    `GET /actors/room/${key}/recent through node ${node.id}`,
  );
  return last!;
}

/** A room name whose partition's primary is `nodeId` in `primaries` (GET /cluster/table). */
function roomLedBy(primaries: number[], nodeId: number, prefix: string): string {
  for (let i = 0; i < 10_000; i++) if (primaries[partitionOf(`${prefix}-${i}`, primaries.length)] === nodeId) return `${prefix}-${i}`;
  throw new Error(`no room ${prefix}-* led by node ${nodeId}`);
}

interface Table {
  partitions: number;
  primaries: number[];
}
const primaryOf = async (via: ProcessNode, key: string) => {
  const t = await getJson<Table>(via.url + '/cluster/table', 5_000);
  return t.primaries[partitionOf(key, t.partitions)];
};

interface Connections {
  total: number;
  nodes: Array<{ node: number; connections?: number; sessions?: number; error?: string }>;
}
interface Watchers {
  watchers: Array<{ node: number; connections: number; expiresInMs: number }>;
}
const watchersOf = (via: ProcessNode, key: string) => getJson<Watchers>(`${via.url}/cluster/connections?kind=room&key=${key}`, 6_000);
const watcherNodes = (w: Watchers) => w.watchers.map((x) => `${x.node}:${x.connections}`).sort();

describe('refused upgrades answer as HTTP would', () => {
  it('unknown kind → 400 ERR_UNKNOWN_KIND; forged sid → 401 ERR_BAD_SESSION; a path key for a cookie kind → 404; a bad ?from= → 400', async () => {
    const n = nodes[0]!;
    expect(await refusedUpgrade(ws(n, '/ws/no-such-kind/k'))).toMatchObject({ status: 400, body: { error: { code: 'ERR_UNKNOWN_KIND' } } });
    const forged = 'sid=' + 'A'.repeat(21) + '.9999999999.' + 'B'.repeat(43);
    expect(await refusedUpgrade(ws(n, '/ws/cookie-visits'), { cookie: forged })).toMatchObject({ status: 401, body: { error: { code: 'ERR_BAD_SESSION' } } });
    expect(await refusedUpgrade(ws(n, '/ws/cookie-visits/some-key'))).toMatchObject({ status: 404, body: { error: { code: 'ERR_NOT_FOUND' } } });
    expect(await refusedUpgrade(ws(n, '/ws/room/lobby?from=-1'))).toMatchObject({ status: 400, body: { error: { code: 'ERR_INVALID_INPUT' } } });
    expect(await refusedUpgrade(ws(n, '/ws/room/lobby?since=3'))).toMatchObject({ status: 400, body: { error: { code: 'ERR_INVALID_INPUT' } } });
  });

  it('a genuine sid cookie issued over HTTP by node 1 binds a socket on node 2 to the same session', async () => {
    const first = await fetch(nodes[0]!.url + '/sessions/cookie-visits/hit', { method: 'POST', signal: AbortSignal.timeout(10_000) });
    expect(first.status).toBe(200);
    const cookie = first.headers.get('set-cookie')!.split(';')[0]!;
    const { key } = (await first.json()) as { key: string };
    const raw = new WebSocket(ws(nodes[1]!, '/ws/cookie-visits'), { headers: { cookie } });
    raw.on('error', () => undefined);
    const hello = await new Promise<Record<string, unknown>>((resolve) => raw.once('message', (d) => resolve(JSON.parse(String(d)) as Record<string, unknown>)));
    expect(hello).toMatchObject({ t: 'hello', node: 2, kind: 'cookie-visits', key });
    raw.close();
  });
});

describe('acknowledgements both ways', () => {
  it('two sockets in one room on different nodes: said alternately, every ask answered, every push received once, in seq order', async () => {
    const N = 20;
    const a = session({ urls: [nodes[0]!.url], path: '/ws/room/alternate', name: 'a', reconnect: false });
    const b = session({ urls: [nodes[1]!.url], path: '/ws/room/alternate', name: 'b', reconnect: false });
    await Promise.all([a.connect(), b.connect()]);
    expect([a.hellos[0]!.node, b.hellos[0]!.node]).toEqual([1, 2]);
    const replies: unknown[] = [];
    const texts: string[] = [];
    for (let i = 0; i < N; i++) {
      const s = i % 2 === 0 ? a : b;
      texts.push(`m${i}`);
      replies.push(await s.ask('say', { from: i % 2 === 0 ? 'a' : 'b', text: `m${i}` }));
    }
    // Said one after the other: the reply of the i-th is n = i + 1.
    expect(replies).toEqual(Array.from({ length: N }, (_, i) => ({ n: i + 1 })));
    for (const s of [a, b]) {
      await s.until(() => s.pushes.length >= N, 10_000, () => `${N} pushes; have ${s.pushes.length}`);
      checkRoomStream(s, N, texts);
      expect((s.pushes.map((p) => p.msg) as RoomPush[]).map((m) => m.text)).toEqual(texts);
      // No reconnect happened: the node sent each push once.
      expect(s.duplicatePushes).toBe(0);
      expect(s.duplicateReplies).toBe(0);
      expect(s.resent).toBe(0);
    }
    expect(b.pushes).toEqual(a.pushes);
    expect((await recentOf(nodes[2]!, 'alternate')).count).toBe(N);
    await Promise.all([a.close(), b.close()]);
  });

  it('an ask resent with its id through another node is applied once: the recorded reply, no second push; the id with another message is refused', async () => {
    const frame = (text: string) => JSON.stringify({ t: 'ask', id: 'once-1', command: 'say', input: { from: 'r', text } });
    const replyOf = (s: Awaited<ReturnType<typeof openRaw>>) => s.frames.find((f) => f.t === 'reply' && f.id === 'once-1');
    const watcher = session({ urls: [nodes[2]!.url], path: '/ws/room/resend', name: 'w', reconnect: false });
    await watcher.connect();
    const first = await openRaw(ws(nodes[0]!, '/ws/room/resend'));
    first.ws.send(frame('hello'));
    await watcher.until(() => watcher.pushes.length === 1, 10_000, () => 'the push of the first send');
    await eventually(async () => replyOf(first) !== undefined, 10_000, 'the first reply');
    first.ws.close();
    // Its reply was lost, say: the client sends it again, same id, through another node.
    const again = await openRaw(ws(nodes[1]!, '/ws/room/resend'));
    again.ws.send(frame('hello'));
    await eventually(async () => replyOf(again) !== undefined, 10_000, 'the reply to the resend');
    expect(replyOf(again)).toEqual(replyOf(first));
    expect(replyOf(first)).toMatchObject({ ok: true, value: { n: 1 } });
    // Reused for another message: refused, nothing applied.
    const other = await openRaw(ws(nodes[1]!, '/ws/room/resend'));
    other.ws.send(frame('something else'));
    await eventually(async () => replyOf(other) !== undefined, 10_000, 'the reply to the reused id');
    expect(replyOf(other)).toMatchObject({ ok: false, error: { code: 'ERR_IDEMPOTENCY_MISMATCH' } });
    // The next message is n = 2, and it is the watcher's second push: nothing came in between.
    expect(await watcher.ask('say', { from: 'w', text: 'next' })).toEqual({ n: 2 });
    await watcher.until(() => watcher.pushes.length === 2, 10_000, () => 'the push of the next message');
    expect(watcher.pushes.map((p) => (p.msg as RoomPush).text)).toEqual(['hello', 'next']);
    for (const s of [again, other]) s.ws.close();
    await watcher.close();
  });

  it('a socket cut off resumes on another node with ?from=: exactly the pushes it missed, in order, none it had', async () => {
    const a = session({ urls: [nodes[0]!.url, nodes[1]!.url], path: '/ws/room/resume', name: 'ra', reconnect: false });
    const b = session({ urls: [nodes[2]!.url], path: '/ws/room/resume', name: 'rb', reconnect: false });
    await Promise.all([a.connect(), b.connect()]);
    for (let i = 0; i < 3; i++) await b.ask('say', { from: 'b', text: `before-${i}` });
    await a.until(() => a.pushes.length === 3, 10_000, () => '3 pushes before the cut');
    await a.drop();
    for (let i = 0; i < 4; i++) await b.ask('say', { from: 'b', text: `missed-${i}` });
    await a.reopen();
    expect(a.hellos.map((h) => h.node)).toEqual([1, 2]);
    await a.until(() => a.pushes.length === 7, 10_000, () => `7 pushes after the resume; have ${a.pushes.length}`);
    checkRoomStream(a, 7, [...[0, 1, 2].map((i) => `before-${i}`), ...[0, 1, 2, 3].map((i) => `missed-${i}`)]);
    // The node resumed after ?from=: it sent nothing the client already had.
    expect(a.duplicatePushes).toBe(0);
    await Promise.all([a.close(), b.close()]);
  });
});

describe('hostile frames close only their socket', () => {
  const cases: Array<{ name: string; send: (s: WebSocket) => void; code: number; errorFrame: boolean }> = [
    { name: 'a frame over 64 KiB', send: (s) => s.send('x'.repeat(64 * 1024 + 1)), code: 1009, errorFrame: false },
    { name: 'a text frame that is not JSON', send: (s) => s.send('{"t":"ask",'), code: 1007, errorFrame: true },
    { name: 'an unknown frame type', send: (s) => s.send(JSON.stringify({ t: 'subscribe', room: 'x' })), code: 1007, errorFrame: true },
    { name: 'an ask with a 500-character id', send: (s) => s.send(JSON.stringify({ t: 'ask', id: 'i'.repeat(500), command: 'recent' })), code: 1007, errorFrame: true },
    { name: 'a binary frame', send: (s) => s.send(Buffer.from([0x7b, 0x7d]), { binary: true }), code: 1003, errorFrame: true },
  ];

  it.each(cases)('$name: that socket closes ($code), a neighbour on the same node and room goes on, the node stays up', async ({ name, send, code, errorFrame }) => {
    const n = nodes[0]!;
    // Ask ids are message ids: each neighbour needs its own, or the room answers the recorded reply and pushes nothing.
    const neighbour = session({ urls: [n.url], path: '/ws/room/hostile', name: `nb${cases.findIndex((c) => c.name === name)}`, reconnect: false });
    await neighbour.connect();
    const raw = await openRaw(ws(n, '/ws/room/hostile'));
    send(raw.ws);
    const closed = await withDeadline(raw.closed, 5_000, () => 'the hostile socket closing');
    expect(closed.code).toBe(code);
    if (errorFrame) expect(raw.frames.find((f) => f.t === 'error')).toMatchObject({ error: { code: 'ERR_BAD_MESSAGE' } });
    // The neighbour's socket is open and served: an ask answered, its push received.
    const before = neighbour.pushes.length;
    await neighbour.ask('say', { from: 'nb', text: `after ${name}` });
    await neighbour.until(() => neighbour.pushes.length > before, 5_000, () => 'the push of the ask after the hostile frame');
    expect(neighbour.closes).toEqual([]);
    expect(await getJson(n.url + '/health', 5_000)).toEqual({ status: 'ok' });
    await neighbour.close();
  });
});

describe('one SIGKILL of node 3: a socket on it (room S) and the primary of room P', () => {
  const VICTIM = 3;
  let roomS = '';
  let roomP = '';
  let aS: WsSession, bS: WsSession, aP: WsSession, bP: WsSession;
  /** Opened on node 1 right after the kill, while room P has no primary yet. */
  let cP: WsSession;
  let cPConnected: Promise<void>;
  let killedAt = 0;
  let loadS: Promise<void>, loadP1: Promise<void>;
  const PER_CLIENT_S = 40;
  const PER_CLIENT_P1 = 20;
  const PER_CLIENT_P2 = 10;

  beforeAll(async () => {
    const t = await getJson<Table>(nodes[0]!.url + '/cluster/table', 5_000);
    roomS = roomLedBy(t.primaries, 1, 's');
    roomP = roomLedBy(t.primaries, VICTIM, 'p');
    const [n1, n2, n3] = nodes as [ProcessNode, ProcessNode, ProcessNode];
    // A of room S starts on the victim and reconnects to node 1 (then 2); the others never need to.
    aS = session({ urls: [n3.url, n1.url, n2.url], path: `/ws/room/${roomS}`, name: 'aS' });
    bS = session({ urls: [n2.url], path: `/ws/room/${roomS}`, name: 'bS', reconnect: false });
    aP = session({ urls: [n1.url], path: `/ws/room/${roomP}`, name: 'aP', reconnect: false });
    bP = session({ urls: [n2.url], path: `/ws/room/${roomP}`, name: 'bP', reconnect: false });
    await Promise.all([aS, bS, aP, bP].map((s) => s.connect()));
  }, 20_000);

  it('GET /cluster/connections on every node counts every open socket per node, and names the nodes holding a room’s sockets', async () => {
    // Sockets of the earlier tests are closed; the four of this block remain: node 1: aP; node 2: bS, bP; node 3: aS.
    const expected = [
      { node: 1, connections: 1, sessions: 1 },
      { node: 2, connections: 2, sessions: 2 },
      { node: 3, connections: 1, sessions: 1 },
    ];
    for (const n of nodes) {
      let last: Connections | undefined;
      await eventually(
        async () => {
          last = await getJson<Connections>(n.url + '/cluster/connections', 5_000);
          return last.total === 4 && JSON.stringify(last.nodes) === JSON.stringify(expected);
        },
        10_000,
        () => `node ${n.id}'s /cluster/connections: ${JSON.stringify(last)}`,
      );
    }
    // Asked through any node, answered by the room's primary.
    for (const n of nodes) {
      expect(watcherNodes(await watchersOf(n, roomS))).toEqual(['2:1', '3:1']);
      expect(watcherNodes(await watchersOf(n, roomP))).toEqual(['1:1', '2:1']);
    }
  });

  it('the node a socket is connected to dies mid-stream: it reconnects elsewhere with ?from=, resends its unacknowledged asks; nothing lost, nothing duplicated', async () => {
    // The table may have moved since the rooms were chosen; the test means these primaries.
    expect(await primaryOf(nodes[0]!, roomS)).toBe(1);
    expect(await primaryOf(nodes[0]!, roomP)).toBe(VICTIM);
    loadS = Promise.all([sayMany(aS, 'aS', PER_CLIENT_S, 4), sayMany(bS, 'bS', PER_CLIENT_S, 4)]).then(() => undefined);
    loadP1 = Promise.all([sayMany(aP, 'aP', PER_CLIENT_P1, 4), sayMany(bP, 'bP', PER_CLIENT_P1, 4)]).then(() => undefined);
    await aS.until(() => aS.acked >= 10 && aS.pendingCount > 0, 15_000, () => `10 of aS's says acknowledged (${aS.acked}) with more in flight`);
    const victim = nodes[VICTIM - 1]!;
    const inFlightAtKill = aS.pendingCount;
    const pushesAtKill = aS.seen;
    killedAt = Date.now();
    victim.child.kill('SIGKILL');
    await exited(victim.child);
    cP = session({ urls: [nodes[0]!.url], path: `/ws/room/${roomP}`, name: 'cP', reconnect: false });
    cPConnected = cP.connect();

    await withDeadline(loadS, 25_000, () => `room S's says acknowledged: aS ${aS.acked}, bS ${bS.acked}; aS hellos ${JSON.stringify(aS.hellos)}, closes ${JSON.stringify(aS.closes)}`);
    const total = 2 * PER_CLIENT_S;
    const texts = [...Array.from({ length: PER_CLIENT_S }, (_, i) => `aS-${i}`), ...Array.from({ length: PER_CLIENT_S }, (_, i) => `bS-${i}`)];
    for (const s of [aS, bS]) await s.until(() => s.pushes.length >= total, 15_000, () => `${total} pushes; have ${s.pushes.length}`);

    console.log(
      `socket's node killed with ${inFlightAtKill} asks in flight (last push seen ${pushesAtKill}); aS reconnected to node ${aS.hellos.at(-1)!.node}, resent ${aS.resent}, dropped ${aS.duplicatePushes} duplicate pushes and ${aS.duplicateReplies} duplicate replies`,
    );
    expect(inFlightAtKill).toBeGreaterThan(0);
    expect(aS.hellos.map((h) => h.node)).toEqual([VICTIM, 1]);
    // Every ask unacknowledged when its socket died went again, with its id, on the new socket.
    expect(aS.resent).toBeGreaterThanOrEqual(inFlightAtKill);
    for (const s of [aS, bS]) checkRoomStream(s, total, texts);
    expect(aS.pushes).toEqual(bS.pushes);
    // Applied once per message id: the room counted each distinct text once, resends included.
    expect((await recentOf(nodes[0]!, roomS)).count).toBe(total);
    expect(bS.hellos).toHaveLength(1);
  }, 45_000);

  it('the room’s primary died in the same kill: the sockets on the survivors stay and get every push after the failover', async () => {
    const loadP2 = Promise.all([sayMany(aP, 'aP2', PER_CLIENT_P2, 2), sayMany(bP, 'bP2', PER_CLIENT_P2, 2)]).then(() => undefined);
    await withDeadline(Promise.all([loadP1, loadP2]), 25_000, () => `room P's says acknowledged: aP ${aP.acked}, bP ${bP.acked}`);
    const total = 2 * (PER_CLIENT_P1 + PER_CLIENT_P2);
    const texts = ['aP', 'bP'].flatMap((c) => [
      ...Array.from({ length: PER_CLIENT_P1 }, (_, i) => `${c}-${i}`),
      ...Array.from({ length: PER_CLIENT_P2 }, (_, i) => `${c}2-${i}`),
    ]);
    for (const s of [aP, bP]) await s.until(() => s.pushes.length >= total, 15_000, () => `${total} pushes; have ${s.pushes.length} (hellos ${JSON.stringify(s.hellos)})`);
    for (const s of [aP, bP]) {
      checkRoomStream(s, total, texts);
      // Never reconnected: the pushes after the failover came because their nodes re-watched the new primary.
      expect(s.hellos).toHaveLength(1);
      expect(s.closes).toEqual([]);
    }
    expect(aP.pushes).toEqual(bP.pushes);
    expect(await primaryOf(nodes[0]!, roomP)).not.toBe(VICTIM);
    expect((await recentOf(nodes[1]!, roomP)).count).toBe(total);
    // The new primary knows both watching nodes (node 1 also holds cP, opened after the kill).
    expect(watcherNodes(await watchersOf(nodes[0]!, roomP))).toEqual(['1:2', '2:1']);
  }, 40_000);

  it('a socket opened on a survivor right after the kill, while room P had no primary, is served once it has one', async () => {
    // Served: a `sync` gives it a position in the room's log, and what is said next reaches it.
    await cPConnected;
    await cP.until(() => cP.seen >= 0, 15_000, () => `a sync on the socket opened during the failover (hello ${JSON.stringify(cP.hellos)}, closes ${JSON.stringify(cP.closes)})`);
    const { n } = (await aP.ask('say', { from: 'aP', text: 'last' })) as { n: number };
    await cP.until(
      () => cP.pushes.some((p) => (p.msg as RoomPush).text === 'last'),
      10_000,
      () => `the push of 'last' on the socket opened during the failover; it has seen ${cP.seen}, pushes ${JSON.stringify(cP.pushes.map((p) => p.seq))}`,
    );
    expect((cP.pushes.at(-1)!.msg as RoomPush).n).toBe(n);
    expect(cP.errors).toEqual([]);
  }, 30_000);

  it('the killed node leaves room S’s watchers within lease + renewal, and the node its socket moved to is there', async () => {
    expect(killedAt).toBeGreaterThan(0);
    let last: Watchers | undefined;
    const deadline = LEASE_MS + RENEW_MS + 3_000 - (Date.now() - killedAt);
    await eventually(
      async () => {
        last = await watchersOf(nodes[0]!, roomS);
        return !last.watchers.some((w) => w.node === VICTIM);
      },
      Math.max(deadline, 1),
      () => `node ${VICTIM} gone from ${roomS}'s watchers (${Date.now() - killedAt} ms after the kill): ${JSON.stringify(last)}`,
    );
    console.log(`node ${VICTIM} left ${roomS}'s watchers ${Date.now() - killedAt} ms after its SIGKILL`);
    expect(watcherNodes(last!)).toEqual(['1:1', '2:1']);
    // Every up member counts the sockets open now: aS moved to node 1, cP opened there.
    const view = await getJson<Connections>(nodes[0]!.url + '/cluster/connections', 5_000);
    expect(view.nodes.filter((x) => x.node !== VICTIM)).toEqual([
      { node: 1, connections: 3, sessions: 2 },
      { node: 2, connections: 2, sessions: 2 },
    ]);
  }, 30_000);
});
