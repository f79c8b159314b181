/**
 * `client.session(...)` against three real in-process TroupeNodes (HTTP on 127.0.0.1, node to
 * node over the in-memory network): pushes arrive in order once; asks survive a lost socket with
 * their ids and are applied once; a push already seen is dropped; a cookie session keeps its key;
 * bad input gets the HTTP client's errors; and the node holding both sockets of a room stops,
 * after which nothing said is lost or duplicated. Some tests go through `SessionProxy`, a
 * WebSocket proxy in front of node 1 that can cut a socket, swallow a reply, rewrite `?from=`
 * or inject a frame — the faults a real network makes at moments a test cannot pick.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { primaryOfKey } from '../../src/client/routing-table.ts';
import { TroupeClient } from '../../src/client/troupe-client.ts';
import type { Session } from '../../src/client/ws-session.ts';
import { MemoryNetwork } from '../../src/cluster/memory-network.ts';
import { systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { room } from '../../src/demo/app.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';
import { eventually } from '../helpers/processes.ts';

const modules = [fileURLToPath(new URL('../../src/demo/app.ts', import.meta.url)), fileURLToPath(new URL('../sessions/session-actors.ts', import.meta.url))];
const SECRET = 'ws-session-test-secret-0123456789';

type Said = { n: number; from: string; text: string; at: number };

/** Every push a session handed to the app, in the order it did. */
function collect(s: Session<typeof room, Said>): Said[] {
  const got: Said[] = [];
  s.onPush((m) => got.push(m));
  return got;
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** The WebSocket proxy: each client socket gets its own upstream socket to `target`. */
class SessionProxy {
  readonly server: Server;
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  private readonly pairs = new Set<{ down: WebSocket; up: WebSocket }>();
  /** Every frame clients sent, parsed, in arrival order. */
  readonly fromClients: Array<Record<string, unknown>> = [];
  /** Every upgrade path (with its query) as the client sent it. */
  readonly paths: string[] = [];
  /** Rewrites an upgrade path before it goes to the node. */
  rewrite: ((path: string) => string) | undefined;
  /** While set, upgrades are refused as a node with no members would (503 ERR_NO_NODES). */
  refusing = false;
  /** Sees each node frame before the client does; false swallows it. */
  onNodeFrame: ((frame: Record<string, unknown>, cut: () => void) => boolean) | undefined;
  url = '';

  constructor(private readonly target: string) {
    this.server = createServer((req, res) => {
      // Plain HTTP (the routing table) goes through unchanged.
      fetch(target + req.url!)
        .then(async (r) => res.writeHead(r.status, { 'content-type': 'application/json' }).end(await r.text()))
        .catch(() => res.writeHead(502).end());
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head));
  }

  async listen(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.paths.push(req.url!);
    if (this.refusing) {
      const body = JSON.stringify({ error: { code: 'ERR_NO_NODES', message: 'the proxy is refusing' } });
      return void socket.end(`HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
    }
    const path = this.rewrite?.(req.url!) ?? req.url!;
    const up = new WebSocket(this.target.replace('http', 'ws') + path, { headers: req.headers.cookie ? { cookie: req.headers.cookie } : {}, perMessageDeflate: false });
    let setCookie: string[] = [];
    up.on('upgrade', (res) => (setCookie = res.headers['set-cookie'] ?? []));
    up.on('error', () => socket.destroy());
    up.on('open', () => {
      this.wss.once('headers', (headers) => headers.push(...setCookie.map((c) => `Set-Cookie: ${c}`)));
      this.wss.handleUpgrade(req, socket, head, (down) => {
        const pair = { down, up };
        this.pairs.add(pair);
        const cut = () => down.terminate();
        up.on('message', (d) => {
          const frame = JSON.parse(String(d)) as Record<string, unknown>;
          if (this.onNodeFrame?.(frame, cut) !== false && down.readyState === WebSocket.OPEN) down.send(String(d));
        });
        down.on('message', (d) => {
          this.fromClients.push(JSON.parse(String(d)) as Record<string, unknown>);
          if (up.readyState === WebSocket.OPEN) up.send(String(d));
        });
        const end = () => {
          this.pairs.delete(pair);
          up.terminate();
          down.terminate();
        };
        up.on('close', end);
        down.on('close', end);
        down.on('error', end);
      });
    });
  }

  /** Cuts every client's socket (as a dead network would: no close frame). */
  cutAll(): void {
    for (const p of this.pairs) p.down.terminate();
  }

  /** Sends `frame` to every client as if the node had. */
  inject(frame: unknown): void {
    for (const p of this.pairs) p.down.send(JSON.stringify(frame));
  }

  async close(): Promise<void> {
    for (const p of this.pairs) p.down.terminate();
    await new Promise((r) => this.server.close(r));
  }
}

describe('WebSocket sessions on three in-process nodes', () => {
  const net = new MemoryNetwork({ clock: systemClock, seed: 8, latency: 1 });
  const nodes: TroupeNode[] = [];
  const sessions: Session[] = [];
  const proxies: SessionProxy[] = [];
  const urls = () => nodes.filter((n) => n.url !== undefined).map((n) => n.url!);

  /** A client of the given node URLs (default: every node); its sessions are closed after the tests. */
  function client(nodeUrls: string[] = urls()): TroupeClient {
    const c = new TroupeClient({ nodes: nodeUrls });
    const open = c.session.bind(c);
    // Every session any test opens is closed at the end, whatever failed.
    c.session = ((...args: Parameters<typeof open>) => {
      const s = open(...args);
      sessions.push(s as Session);
      return s;
    }) as typeof c.session;
    return c;
  }

  async function proxy(target = nodes[0]!.url!): Promise<SessionProxy> {
    const p = await new SessionProxy(target).listen();
    proxies.push(p);
    return p;
  }

  beforeAll(async () => {
    for (const id of [1, 2, 3]) {
      nodes.push(
        await TroupeNode.start({
          id,
          modules,
          actors: 'in-process',
          http: { port: 0, host: '127.0.0.1', sessionSecrets: [SECRET] },
          log: silentLogger,
          logLevel: 'silent',
          cluster: { transport: net.transport({ id, incarnation: 1, address: `mem:${id}` }), seeds: ['mem:1'] },
        }),
      );
    }
    await eventually(async () => nodes.every((n) => n.membership!.upMembers().length === 3), 15_000, 'all three nodes see three members');
    // Every partition has a primary in every node's table before the first session routes by it.
    await eventually(async () => (await new TroupeClient({ nodes: urls() }).refresh()).primaries.every((p) => p >= 0), 15_000, 'a primary for every partition');
  }, 30_000);

  afterAll(async () => {
    for (const s of sessions) s.close();
    for (const p of proxies) await p.close();
    for (const n of nodes) await n.stop();
  }, 30_000);

  it('pushes arrive in order, once, at every session of the room; the socket goes to the key primary', async () => {
    const c = client();
    const a = c.session(room, 'lobby-order') as Session<typeof room, Said>;
    const b = c.session<typeof room>('room', 'lobby-order') as Session<typeof room, Said>;
    const [gotA, gotB] = [collect(a), collect(b)];
    const [helloA] = await Promise.all([a.opened(), b.opened()]);
    expect(helloA).toMatchObject({ kind: 'room', key: 'lobby-order' });
    expect(helloA.node).toBe(primaryOfKey(c.snapshot().table!, 'lobby-order'));
    for (let i = 1; i <= 20; i++) {
      const { n } = await (i % 2 ? a : b).ask('say', { from: i % 2 ? 'a' : 'b', text: `m${i}` });
      expect(n).toBe(i);
    }
    await eventually(async () => gotA.length >= 20 && gotB.length >= 20, 10_000, () => `pushes: a ${gotA.length}, b ${gotB.length} of 20`);
    for (const got of [gotA, gotB]) {
      expect(got.map((m) => m.n)).toEqual(range(1, 20));
      expect(got.map((m) => m.text)).toEqual(range(1, 20).map((i) => `m${i}`));
    }
    expect(a.stats()).toMatchObject({ pushes: 20, duplicates: 0, resent: 0, reconnects: 0 });
    // Acknowledged: the position is the last push's seq.
    expect(a.position).toBeGreaterThan(0);
  });

  it('an ask whose reply was lost with its socket is resent with the same id after the reconnect, and applied once', async () => {
    const p = await proxy();
    const c = client([p.url]);
    const s = c.session(room, 'lobby-resend');
    await s.opened();
    let swallowed = 0;
    // The node's reply to the first say never reaches the client, and its socket dies.
    p.onNodeFrame = (frame, cut) => {
      if (frame.t !== 'reply' || swallowed > 0) return true;
      swallowed++;
      cut();
      return false;
    };
    const reconnects: number[] = [];
    s.on('reconnect', (e) => reconnects.push(e.attempt));
    await expect(s.ask('say', { from: 'x', text: 'once' })).resolves.toEqual({ n: 1 });
    expect(swallowed).toBe(1);
    expect(reconnects).toEqual([1]);
    const asks = p.fromClients.filter((f) => f.t === 'ask');
    expect(asks).toHaveLength(2);
    expect(asks[1]!.id).toBe(asks[0]!.id);
    expect(s.stats().resent).toBe(1);
    // The room applied it once.
    await expect(c.ask(room, 'lobby-resend', 'recent')).resolves.toMatchObject({ count: 1 });
  });

  it('asks made while the socket is down go out after the reconnect in the order they were made', async () => {
    const p = await proxy();
    const c = client([p.url]);
    const s = c.session(room, 'lobby-queue') as Session<typeof room, Said>;
    const got = collect(s);
    await s.opened();
    // Cut, then ask at once: the asks wait for the next socket.
    p.cutAll();
    const replies = await Promise.all(range(1, 5).map((i) => s.ask('say', { from: 'q', text: `q${i}` })));
    expect(replies.map((r) => r.n)).toEqual(range(1, 5));
    await eventually(async () => got.length >= 5, 10_000, () => `${got.length} of 5 pushes`);
    expect(got.map((m) => m.text)).toEqual(range(1, 5).map((i) => `q${i}`));
  });

  it('drops pushes it has already seen: a reconnect from an older position gets them again, the app once', async () => {
    const p = await proxy();
    const c = client([p.url]);
    const s = c.session(room, 'lobby-dup') as Session<typeof room, Said>;
    const got = collect(s);
    await s.opened();
    for (let i = 1; i <= 5; i++) await s.ask('say', { from: 'd', text: `d${i}` });
    await eventually(async () => got.length >= 5, 10_000, () => `${got.length} of 5 pushes`);
    const position = s.position!;
    // The next upgrade claims the client has nothing: the node sends every push again.
    p.rewrite = (path) => path.replace(/\?from=\d+$/, '?from=0');
    p.cutAll();
    await eventually(async () => s.stats().duplicates >= 5, 10_000, () => `${s.stats().duplicates} duplicates dropped`);
    expect(p.paths.at(-1)).toBe(`/ws/room/lobby-dup?from=${position}`);
    await s.ask('say', { from: 'd', text: 'd6' });
    await eventually(async () => got.length >= 6, 10_000, () => `${got.length} of 6 pushes`);
    expect(got.map((m) => m.n)).toEqual(range(1, 6));
    expect(s.stats()).toMatchObject({ duplicates: 5, pushes: 6 });
  });

  it('hands a gap to the app and resumes past it', async () => {
    const p = await proxy();
    const c = client([p.url]);
    const s = c.session(room, 'lobby-gap');
    await s.opened();
    await s.ask('say', { from: 'g', text: 'g1' });
    await eventually(async () => s.position !== undefined && s.position > 0, 10_000, 'a position');
    const from = s.position!;
    const gaps: Array<{ from: number; to: number }> = [];
    s.on('gap', (g) => gaps.push(g));
    p.inject({ t: 'gap', from, to: from + 7 });
    await eventually(async () => gaps.length === 1, 5_000, 'the gap event');
    expect(gaps).toEqual([{ from, to: from + 7 }]);
    expect(s.position).toBe(from + 7);
  });

  it('a cookie session keeps its key (the sid cookie) across reconnects', async () => {
    const p = await proxy();
    const c = client([p.url]);
    const s = c.session('cookie-visits');
    const first = await s.opened();
    expect(first.key).toMatch(/^[A-Za-z0-9_-]{21}$/);
    expect(c.sessionCookie).toMatch(/^sid=/);
    await expect(s.askRaw('hit')).resolves.toEqual({ n: 1, key: first.key });
    const opens: string[] = [];
    s.on('open', (o) => opens.push(o.key));
    p.cutAll();
    await eventually(async () => opens.length === 1, 10_000, 'the reconnect');
    expect(opens).toEqual([first.key]);
    expect(p.paths.slice(-2)).toEqual(['/ws/cookie-visits', expect.stringMatching(/^\/ws\/cookie-visits(\?from=\d+)?$/)]);
    await expect(s.askRaw('hit')).resolves.toEqual({ n: 2, key: first.key });
  });

  it('bad input gets the same named errors as the HTTP client; server refusals keep their code', async () => {
    const c = client();
    // An unknown kind: the node refuses the upgrade, and the session ends with its code.
    const unknown = c.session('no-such-kind', 'k');
    await expect(unknown.opened()).rejects.toMatchObject({ code: 'ERR_UNKNOWN_KIND' });
    await expect(c.askRaw('no-such-kind', 'k', 'x', undefined)).rejects.toMatchObject({ code: 'ERR_UNKNOWN_KIND' });
    expect(unknown.isClosed).toBe(true);
    // A bad key.
    expect(() => c.session(room, '')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('key must be a non-empty string') }));
    await expect(c.ask(room, '', 'recent')).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('key must be a non-empty string') });
    // A key the node refuses (too long): its code.
    await expect(c.session(room, 'k'.repeat(5_000)).opened()).rejects.toMatchObject({ code: 'ERR_INVALID_KEY' });
    const s = c.session(room, 'lobby-errors');
    await s.opened();
    // Input outside the value domain: refused before it is sent, as over HTTP.
    const bigint = { from: 'x', text: 1n } as unknown as { from: string; text: string };
    await expect(s.ask('say', bigint)).rejects.toMatchObject({ code: 'ERR_NOT_SERIALIZABLE', message: expect.stringContaining('$.text is a BigInt') });
    await expect(c.ask(room, 'lobby-errors', 'say', bigint)).rejects.toMatchObject({ code: 'ERR_NOT_SERIALIZABLE' });
    const cycle: Record<string, unknown> = { from: 'x' };
    cycle.text = cycle;
    await expect(s.askRaw('say', cycle)).rejects.toMatchObject({ code: 'ERR_NOT_SERIALIZABLE' });
    // The server's refusals, with its codes, and the socket stays.
    await expect(s.ask('say', { from: 'x' } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    await expect(s.askRaw('bad command', {})).rejects.toMatchObject({ code: 'ERR_UNKNOWN_COMMAND' });
    await expect(s.ask('say', { from: 'x', text: 'still here' })).resolves.toEqual({ n: 1 });
    expect(s.stats().reconnects).toBe(0);
    s.close();
    await expect(s.ask('recent')).rejects.toMatchObject({ code: 'ERR_STOPPED' });
  });

  it('an unknown command is answered with ERR_UNKNOWN_COMMAND, as over HTTP, and the socket stays', async () => {
    const c = client();
    await expect(c.askRaw('room', 'lobby-unknown', 'shout', {})).rejects.toMatchObject({ code: 'ERR_UNKNOWN_COMMAND' });
    const s = c.session(room, 'lobby-unknown', { askTimeoutMs: 3_000 });
    await s.opened();
    await expect(s.askRaw('shout', {})).rejects.toMatchObject({ code: 'ERR_UNKNOWN_COMMAND' });
    await expect(s.ask('say', { from: 'x', text: 'still here' })).resolves.toEqual({ n: 1 });
  });

  it('the asks are typed by the definition', () => {
    const s = client().session(room, 'lobby-types');
    s.close();
    // Compile-time checks (tsc runs over test/): each line below must be a type error.
    const typed = async () => {
      // @ts-expect-error: room has no command 'shout'
      await s.ask('shout', {});
      const { count }: { count: number } = await s.ask('recent');
      // @ts-expect-error: say replies { n }, not { count }
      const { count: nope }: { count: number } = await s.ask('say', { from: 'x', text: 'y' });
      return [count, nope];
    };
    expect(typeof typed).toBe('function');
  });

  it('the node holding a socket stops: it reconnects elsewhere, and every message said in the room arrives once at both sessions', async () => {
    const key = 'lobby-failover';
    // a at the room's primary, which stops; b at another node, talking on while a is away: a's
    // only other way in is a gate (a proxy to the third node) that refuses it until b said more.
    const table = await new TroupeClient({ nodes: urls() }).refresh();
    const victim = nodes.find((n) => n.id === primaryOfKey(table, key))!;
    const [bNode, gateNode] = nodes.filter((n) => n !== victim) as [TroupeNode, TroupeNode];
    const gate = await proxy(gateNode.url!);
    gate.refusing = true;
    const ca = client([victim.url!, gate.url]);
    const a = ca.session(room, key, { maxReconnects: 60 }) as Session<typeof room, Said>;
    const helloA = await a.opened();
    expect(helloA.node).toBe(victim.id);
    const cb = client([bNode.url!]);
    const b = cb.session(room, key) as Session<typeof room, Said>;
    const [gotA, gotB] = [collect(a), collect(b)];
    const helloB = await b.opened();
    expect(helloB.node).not.toBe(victim.id);
    const said: string[] = [];
    const gaps: unknown[] = [];
    a.on('gap', (g) => gaps.push(g));
    b.on('gap', (g) => gaps.push(g));
    const reopened: number[] = [];
    let saidWhenLost = -1;
    let saidWhenBack = -1;
    a.on('reconnect', () => void (saidWhenLost < 0 && (saidWhenLost = said.length)));
    a.on('open', (o) => {
      reopened.push(o.node);
      saidWhenBack = said.length;
    });
    // Both keep talking while the node goes: every say that resolved is a message said.
    let stop = false;
    // At most 60 messages from the stop on, and none begun while it runs: an id is applied once while
    // it is within the actor's last 128 (its recorded replies, docs/websocket.md), so a's resend of
    // the ask it had in flight at the stop must not come later than that.
    let limit = Infinity;
    let stopping: Promise<void> | undefined;
    const talk = async (s: Session<typeof room, Said>, who: string) => {
      for (let i = 1; !stop && said.length < limit; i++) {
        if (stopping !== undefined) await stopping;
        const text = `${who}${i}`;
        await s.ask('say', { from: who, text });
        said.push(text);
      }
    };
    const talking = Promise.all([talk(a, 'a'), talk(b, 'b')]);
    await eventually(async () => said.length >= 10, 10_000, () => `${said.length} said before the stop`);
    stopping = victim.stop();
    await stopping;
    stopping = undefined;
    const atStop = said.length;
    limit = atStop + 60;
    await eventually(async () => saidWhenLost >= 0 && said.length >= saidWhenLost + 3, 20_000, () => `b said ${said.length - saidWhenLost} while a was away`);
    gate.refusing = false;
    await eventually(async () => said.length >= atStop + 10, 30_000, () => `${said.length - atStop} said after the stop`);
    stop = true;
    await talking;
    const twice = (got: Said[]) => got.filter((m, i) => got.findIndex((o) => o.text === m.text) !== i).map((m) => `${m.text}@${m.n}`);
    await eventually(
      async () => gotA.length >= said.length && gotB.length >= said.length,
      15_000,
      () =>
        `pushes: a ${gotA.length}, b ${gotB.length} of ${said.length}; a ${JSON.stringify({ ...a.stats(), position: a.position, node: a.current?.node })}; ` +
        `gaps ${JSON.stringify(gaps)}; twice: a ${twice(gotA).join()} b ${twice(gotB).join()}; unsaid: ${gotB.filter((m) => !said.includes(m.text)).map((m) => `${m.text}@${m.n}`)}`,
    );
    for (const got of [gotA, gotB]) {
      const texts = got.map((m) => m.text);
      expect(texts.filter((t, i) => texts.indexOf(t) !== i), 'a message applied twice').toEqual([]);
      expect(got.map((m) => m.n)).toEqual(range(1, said.length)); // in order, none lost, none twice
      expect(new Set(got.map((m) => m.text))).toEqual(new Set(said));
    }
    expect(saidWhenBack - saidWhenLost).toBeGreaterThan(0); // the room moved on while a was away
    expect(reopened.length).toBeGreaterThanOrEqual(1);
    expect(reopened.every((id) => id !== victim.id)).toBe(true);
    expect(a.current?.node).not.toBe(victim.id);
    // The room applied each message once.
    await expect(ca.ask(room, key, 'recent')).resolves.toMatchObject({ count: said.length });
    nodes.splice(nodes.indexOf(victim), 1);
  }, 60_000);
});
