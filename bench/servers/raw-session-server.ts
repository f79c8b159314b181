/**
 * bench:load's baseline for the session scenarios: what a hand-written server on `node:http` and
 * `ws` does with no runtime, in one process with Map state.
 *   - sticky-cookie: `POST /sessions/visits/hit|get` keyed by an `sid` cookie, a random id issued
 *     with Set-Cookie on first contact (unsigned: the signature is part of what troupe costs).
 *   - websocket: `/ws/room/<key>` speaks the session protocol's frames (docs/websocket.md):
 *     `hello`, then each `ask` gets its `reply {n}` and a `push {seq, msg}` carrying the message,
 *     as the `room` kind's `say` does; acks are read and dropped.
 * Prints `listening http://127.0.0.1:<port>` once bound.
 *
 *   node --import tsx bench/servers/raw-session-server.ts [port]
 */
import { randomBytes } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

const visits = new Map<string, number>();
const rooms = new Map<string, { count: number; seq: number }>();
const JSON_TYPE = 'application/json; charset=utf-8';

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const server = createServer((req, res) => {
  req.resume();
  const command = req.url === '/sessions/visits/hit' ? 'hit' : req.url === '/sessions/visits/get' ? 'get' : undefined;
  if (command === undefined) return send(res, 404, '{"error":{"code":"ERR_NOT_FOUND","message":"no route"}}');
  let sid = /(?:^|;\s*)sid=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
  if (sid === undefined) {
    sid = randomBytes(16).toString('base64url');
    res.setHeader('set-cookie', `sid=${sid}; Max-Age=604800; Path=/; HttpOnly; SameSite=Lax`);
  }
  const n = (visits.get(sid) ?? 0) + (command === 'hit' ? 1 : 0);
  visits.set(sid, n);
  req.on('end', () => send(res, 200, JSON.stringify({ n })));
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
server.on('upgrade', (req, socket, head) => {
  const m = /^\/ws\/room\/([^/?]+)$/.exec(req.url ?? '');
  if (!m) return void socket.destroy();
  const key = decodeURIComponent(m[1]!);
  wss.handleUpgrade(req, socket, head, (ws) => {
    let room = rooms.get(key);
    if (room === undefined) rooms.set(key, (room = { count: 0, seq: 0 }));
    const r = room;
    ws.send(JSON.stringify({ t: 'hello', node: 0, conn: randomBytes(6).toString('hex'), kind: 'room', key }));
    ws.on('message', (data) => {
      const f = JSON.parse(data.toString()) as { t: string; id?: string; input?: { from?: string; text?: string } };
      if (f.t !== 'ask') return;
      r.count++;
      r.seq += 2; // the event and the push each take a log position in troupe
      ws.send(JSON.stringify({ t: 'reply', id: f.id, ok: true, value: { n: r.count } }));
      ws.send(JSON.stringify({ t: 'push', seq: r.seq, msg: { n: r.count, from: f.input?.from, text: f.input?.text, at: Date.now() } }));
    });
  });
});

server.keepAliveTimeout = 65_000;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(`listening http://127.0.0.1:${port}`);
});
process.on('SIGTERM', () => {
  for (const ws of wss.clients) ws.terminate();
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
