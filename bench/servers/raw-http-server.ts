/**
 * The HTTP benchmark's baseline: a bare `node:http` server doing the counter's work with no
 * runtime: route `POST /actors/counter/:key/incr`, parse the JSON body, add `by` to a
 * Map<key, number>, reply `{"n":<count>}` with the same headers as the gateway. Prints
 * `listening http://127.0.0.1:<port>` once bound.
 *
 *   node --import tsx bench/servers/raw-http-server.ts [port]
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const counts = new Map<string, number>();
const JSON_TYPE = 'application/json; charset=utf-8';

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const server = createServer((req, res) => {
  const parts = (req.url ?? '/').split('/');
  if (req.method !== 'POST' || parts.length !== 5 || parts[1] !== 'actors' || parts[2] !== 'counter' || (parts[4] !== 'incr' && parts[4] !== 'get')) {
    req.resume();
    return send(res, 404, '{"error":{"code":"ERR_NOT_FOUND","message":"no route"}}');
  }
  const key = decodeURIComponent(parts[3]!);
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (c: Buffer) => {
    chunks.push(c);
    size += c.length;
  });
  req.on('end', () => {
    let by = parts[4] === 'get' ? 0 : 1; // `get` (bench:load's reads) adds nothing
    if (size > 0) {
      try {
        const body = JSON.parse(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks, size).toString('utf8')) as {
          by?: unknown;
        };
        if (body.by !== undefined) {
          if (!Number.isSafeInteger(body.by)) return send(res, 400, '{"error":{"code":"ERR_INVALID_INPUT","message":"by"}}');
          by = body.by as number;
        }
      } catch {
        return send(res, 400, '{"error":{"code":"ERR_MALFORMED_JSON","message":"bad json"}}');
      }
    }
    const n = (counts.get(key) ?? 0) + by;
    counts.set(key, n);
    send(res, 200, JSON.stringify({ n }));
  });
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(`listening http://127.0.0.1:${port}`);
});
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
