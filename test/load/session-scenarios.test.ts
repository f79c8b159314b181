/**
 * The session scenarios of the load tester (sticky-cookie, websocket) from their pure parts out:
 * the cookie capture, each connection's own sessions, the WebSocket driver's accounting on
 * scripted frames, then whole runs against in-test servers with a planted bug each (the check
 * must catch it) and against a real in-process node serving the demo app.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { checkCounts, WriteLedger } from '../../src/load/counter-check.ts';
import { readFinalCounts, visitsTarget } from '../../src/load/final-counts.ts';
import { runLoad } from '../../src/load/load-run.ts';
import { keyName, operations, ownedKeys, SCENARIOS } from '../../src/load/scenarios.ts';
import { SessionJar, sidOfSetCookie } from '../../src/load/session-jar.ts';
import { WsAccounting } from '../../src/load/ws-accounting.ts';
import { runWsLoad } from '../../src/load/ws-load.ts';

describe('cookie capture', () => {
  const SID = 'sid=AbCdEfGhIjKlMnOpQrStU.1795000000.mac';
  it.each([
    { case: "the gateway's Set-Cookie", headers: { 'set-cookie': `${SID}; Max-Age=604800; Path=/; HttpOnly; SameSite=Lax` }, sid: SID },
    { case: 'header name in any case', headers: { 'Set-Cookie': `${SID}; Path=/` }, sid: SID },
    { case: 'among other cookies', headers: { 'set-cookie': ['theme=dark; Path=/', `${SID}; HttpOnly`] }, sid: SID },
    { case: 'no Set-Cookie', headers: { 'content-type': 'application/json' }, sid: undefined },
    { case: 'another cookie only', headers: { 'set-cookie': 'sidecar=1; Path=/' }, sid: undefined },
    { case: 'an empty sid', headers: { 'set-cookie': 'sid=; Max-Age=0' }, sid: undefined },
  ])('$case', ({ headers, sid }) => {
    expect(sidOfSetCookie(headers)).toBe(sid);
  });

  it('a session has no cookie until a response sets one, then keeps it', () => {
    const jar = new SessionJar();
    expect(jar.cookie('k1')).toBeUndefined();
    expect(jar.capture('k1', {})).toBeUndefined();
    expect(jar.capture('k1', { 'set-cookie': `${SID}; Path=/` })).toBe(SID);
    expect(jar.cookie('k1')).toBe(SID);
    expect(jar.cookie('k2')).toBeUndefined();
    expect(jar.size).toBe(1);
  });
});

describe("each connection's own sessions", () => {
  it.each([
    { keys: 1000, connections: 50 },
    { keys: 10, connections: 3 },
    { keys: 2, connections: 5 }, // fewer sessions than connections: each connection still has one
  ])('$keys sessions over $connections connections: disjoint, and together every session', ({ keys, connections }) => {
    const owner = new Map<string, number>();
    for (let c = 0; c < connections; c++) {
      const ops = operations(SCENARIOS['sticky-cookie']!, { keys, prefix: 'r', seed: c, owner: { connection: c, connections } });
      const mine = new Set<string>();
      for (let i = 0; i < 2000; i++) mine.add(ops.next().key);
      expect(mine.size).toBe(ownedKeys(keys, c, connections));
      for (const k of mine) {
        expect(owner.get(k), `${k} is drawn by connections ${owner.get(k)} and ${c}`).toBeUndefined();
        owner.set(k, c);
      }
    }
    expect(owner.size).toBe(Math.max(keys, connections));
    for (let i = 0; i < keys; i++) expect(owner.has(keyName('r', i))).toBe(true);
  });
});

describe('WebSocket accounting', () => {
  type Step = ['sent', string] | ['reply', string] | ['refuse', string] | ['push', number, string | undefined, number] | ['gap', number, number];
  const play = (steps: Step[]) => {
    const a = new WsAccounting();
    const outcomes: string[] = [];
    steps.forEach((s, t) => {
      if (s[0] === 'sent') a.sent('r', s[1], t);
      else if (s[0] === 'reply') a.replied('r', s[1], true, t);
      else if (s[0] === 'refuse') a.replied('r', s[1], false, t, 'ERR_OVERLOADED');
      else if (s[0] === 'push') outcomes.push(a.pushed('r', s[1], { n: s[3], text: s[2] }, t));
      else a.gap('r', s[1], s[2]);
    });
    return { a, outcomes };
  };
  it.each<{ case: string; steps: Step[]; problems: string[]; duplicates?: number }>([
    { case: 'reply then push, twice', steps: [['sent', 'a'], ['reply', 'a'], ['push', 2, 'a', 1], ['sent', 'b'], ['reply', 'b'], ['push', 4, 'b', 2]], problems: [] },
    { case: 'the push before its reply', steps: [['sent', 'a'], ['push', 2, 'a', 1], ['reply', 'a']], problems: [] },
    { case: 'a refused ask owes no push', steps: [['sent', 'a'], ['refuse', 'a']], problems: [] },
    { case: 'an acknowledged ask whose push never came', steps: [['sent', 'a'], ['reply', 'a']], problems: ['ask a was acknowledged but its push never arrived'] },
    { case: 'a redelivered push is dropped, not counted', steps: [['sent', 'a'], ['reply', 'a'], ['push', 2, 'a', 1], ['push', 2, 'a', 1]], problems: [], duplicates: 1 },
    { case: 'a second push for one ask', steps: [['sent', 'a'], ['reply', 'a'], ['push', 2, 'a', 1], ['push', 3, 'a', 2]], problems: ['a second push for ask a'] },
    { case: 'a push for no ask sent', steps: [['push', 2, 'zz', 1]], problems: ['push seq 2 for no ask this driver sent'] },
    { case: 'counts going backwards', steps: [['sent', 'a'], ['sent', 'b'], ['push', 2, 'a', 5], ['push', 4, 'b', 3], ['reply', 'a'], ['reply', 'b']], problems: ['carries count 3, not above the previous 5'] },
    { case: 'a reply to no ask in flight', steps: [['reply', 'q']], problems: ['a reply to ask q, which is not in flight'] },
    { case: 'pushes reported gone', steps: [['gap', 3, 9]], problems: ['the node reported pushes (3, 9] gone'] },
  ])('$case', ({ steps, problems, duplicates = 0 }) => {
    const { a } = play(steps);
    const found = a.violations();
    expect(found).toHaveLength(problems.length);
    problems.forEach((p, i) => expect(found[i]).toContain(p));
    expect(a.duplicates).toBe(duplicates);
  });

  it('counts, the seq to ack, and the latencies', () => {
    const { a, outcomes } = play([['sent', 'a'], ['push', 2, 'a', 1], ['reply', 'a'], ['sent', 'b'], ['reply', 'b'], ['push', 4, 'b', 2], ['push', 4, 'b', 2], ['sent', 'c'], ['refuse', 'c']]);
    expect(outcomes).toEqual(['delivered', 'delivered', 'duplicate']);
    expect({ asks: a.asks, acknowledged: a.acknowledged, refused: a.refused, pushes: a.pushes, early: a.pushesBeforeReply }).toEqual({ asks: 3, acknowledged: 2, refused: 1, pushes: 2, early: 1 });
    expect(a.refusals).toEqual({ ERR_OVERLOADED: 1 });
    expect(a.lastSeq('r')).toBe(4);
    expect(a.inFlight).toBe(0);
    expect(a.pushesDue).toBe(0);
    // Round trips: a 0 → 2, b 3 → 4; pushes from the send: a 0 → 1, b 3 → 5.
    expect(a.roundTrip.count).toBe(2);
    expect(a.roundTrip.percentile(100)).toBeCloseTo(2, 1);
    expect(a.pushLatency.percentile(100)).toBeCloseTo(2, 1);
  });
});

/** A server of the `visits` routes; `bug` plants a fault the sticky-cookie check must catch. */
function visitsServer(bug?: 'lose' | 'reissue'): Promise<{ url: string; server: Server }> {
  const counts = new Map<string, number>();
  let issued = 0;
  let hits = 0;
  const server = createServer((req, res) => {
    req.resume();
    let sid = /sid=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    // 'reissue': every 25th request that brought a cookie gets a new session anyway.
    if (sid === undefined || (bug === 'reissue' && ++hits % 25 === 0)) {
      sid = `s${issued++}`;
      res.setHeader('Set-Cookie', `sid=${sid}; Path=/; HttpOnly`);
    }
    let n = counts.get(sid) ?? 0;
    if (req.url === '/sessions/visits/hit') {
      n++;
      // 'lose': every 20th hit is acknowledged and not kept.
      if (!(bug === 'lose' && n % 20 === 0)) counts.set(sid, n);
    }
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ n })));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server })));
}

describe('a whole sticky-cookie run against an in-test server', () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((r) => (server ? (server.closeAllConnections(), server.close(() => r())) : r())));

  it.each([
    { bug: undefined, expected: 'no violation' },
    { bug: 'lose' as const, expected: 'acknowledged writes lost' },
    { bug: 'reissue' as const, expected: 'a new sid for a session that had one' },
  ])('server bug $bug: $expected', async ({ bug, expected }) => {
    const s = await visitsServer(bug);
    server = s.server;
    const ledger = new WriteLedger();
    const jar = new SessionJar();
    const report = await runLoad({ urls: [s.url], scenario: SCENARIOS['sticky-cookie']!, seconds: 1, connections: 4, keys: 12, prefix: 't', ledger, jar });
    expect(report.ok).toBeGreaterThan(100);
    expect(jar.size).toBe(12);
    // Every session's writes are attributed to it: acknowledged hits ≈ 90% of 2xx.
    expect(ledger.totals().acknowledged).toBeGreaterThan(report.ok * 0.7);
    const { counts, unread } = await readFinalCounts([s.url], [...ledger.tallies.keys()], { target: visitsTarget(jar) });
    expect(unread.size).toBe(0);
    const problems = checkCounts(ledger.tallies, counts).map((v) => v.problem);
    if (bug === undefined) {
      expect(problems).toEqual([]);
      expect(report.errors).toBe(0);
    } else if (bug === 'lose') expect(problems.some((p) => p.includes(expected))).toBe(true);
    else expect(report.errorCodes[expected]).toBeGreaterThan(0);
  });
});

/** A room server speaking the session protocol; `bug` plants a fault the push check must catch. */
function roomServer(bug?: 'drop' | 'redeliver' | 'twice'): Promise<{ url: string; close(): Promise<void> }> {
  const http = createServer();
  const wss = new WebSocketServer({ server: http });
  let asks = 0;
  wss.on('connection', (ws) => {
    let n = 0;
    let seq = 0;
    ws.send(JSON.stringify({ t: 'hello', node: 1, conn: 'c', kind: 'room', key: 'k' }));
    ws.on('message', (d) => {
      const f = JSON.parse(String(d)) as { t: string; id: string; input: { text: string } };
      if (f.t !== 'ask') return;
      n++;
      seq += 2;
      ws.send(JSON.stringify({ t: 'reply', id: f.id, ok: true, value: { n } }));
      const push = JSON.stringify({ t: 'push', seq, msg: { n, text: f.input.text } });
      asks++;
      if (bug === 'drop' && asks % 10 === 0) return;
      ws.send(push);
      if (bug === 'redeliver') ws.send(push);
      if (bug === 'twice' && asks % 10 === 0) ws.send(JSON.stringify({ t: 'push', seq: ++seq, msg: { n: ++n, text: f.input.text } }));
    });
  });
  return new Promise((resolve) =>
    http.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
        close: () => new Promise<void>((r) => (wss.close(), http.close(() => r()))),
      }),
    ),
  );
}

describe('a whole websocket run against an in-test room server', () => {
  it.each([
    { bug: undefined, expected: undefined },
    { bug: 'drop' as const, expected: 'was acknowledged but its push never arrived' },
    { bug: 'redeliver' as const, expected: undefined },
    { bug: 'twice' as const, expected: 'a second push for ask' },
  ])('server bug $bug', async ({ bug, expected }) => {
    const s = await roomServer(bug);
    try {
      const ledger = new WriteLedger();
      // A short drain: the planted drop never comes, and the run must not wait 10 s for it.
      const r = await runWsLoad({ urls: [s.url], sessions: 30, inflight: 8, seconds: 1, prefix: 'w', ledger, drainMs: 500 });
      expect(r.ok).toBeGreaterThan(100);
      expect(r.keys).toBe(30);
      expect(ledger.tallies.size).toBe(30); // every session took part
      expect(ledger.totals().acknowledged).toBe(r.ok);
      if (expected === undefined) expect(r.violations).toEqual([]);
      else expect(r.violations.some((v) => v.includes(expected))).toBe(true);
      if (bug === 'redeliver') expect(r.duplicates).toBe(r.pushes);
      else expect(r.duplicates).toBe(0);
      if (bug === undefined) expect(r.pushes).toBe(r.ok);
    } finally {
      await s.close();
    }
  });
});
