/**
 * The client library against a scripted cluster: a fake `fetch` plays three nodes, each with its
 * own id, routing table and actor state, so routing, retries, table refreshes and token handling
 * are checked request by request without sockets or time.
 */
import { describe, expect, it } from 'vitest';
import { backoffDelay, isRetryable } from '../../src/client/retry-policy.ts';
import { parseRoutingTable, partitionOfKey } from '../../src/client/routing-table.ts';
import { TroupeClient } from '../../src/client/troupe-client.ts';
import { counter } from '../../src/demo/app.ts';
import { partitionOf } from '../../src/replication/partition-table.ts';

const P = 16;

interface FakeNode {
  id: number;
  url: string;
  down: boolean;
  /** Partition → node id, as this node reports it. */
  primaries: number[];
  members: number[];
  /** Answers an actor request here (default: the counter, refusing keys it does not lead). */
  answer?: (key: string, headers: Record<string, string>) => { status: number; body: unknown; token?: string };
}

function cluster(primaryOf: (p: number) => number) {
  const nodes = [1, 2, 3].map<FakeNode>((id) => ({
    id,
    url: `http://n${id}.test:8080`,
    down: false,
    primaries: Array.from({ length: P }, (_, p) => primaryOf(p)),
    members: [1, 2, 3],
  }));
  const counts = new Map<string, number>();
  const log: Array<{ node: number; path: string; headers: Record<string, string> }> = [];
  const forwarded: string[] = [];
  const fakeFetch = (async (input: string, init?: RequestInit) => {
    const url = new URL(input);
    const node = nodes.find((n) => n.url === url.origin);
    if (node === undefined || node.down) throw new TypeError('fetch failed');
    const headers = { ...(init?.headers as Record<string, string>) };
    if (url.pathname === '/cluster/table')
      return json(200, { node: node.id, url: node.url, epoch: 1, members: node.members, partitions: P, primaries: node.primaries });
    log.push({ node: node.id, path: url.pathname, headers });
    const [, , , key, command] = url.pathname.split('/').map(decodeURIComponent);
    if (node.answer) {
      const a = node.answer(key!, headers);
      return json(a.status, a.body, a.token);
    }
    // Like a gateway: a key led elsewhere is forwarded to its primary (counted), if that one is up.
    const primary = nodes.find((n) => n.id === node.primaries[partitionOfKey(key!, P)]);
    if (primary !== node) {
      if (primary === undefined || primary.down) return json(503, { error: { code: 'ERR_NODE_UNREACHABLE', message: `node ${primary?.id} is unreachable` } });
      forwarded.push(key!);
    }
    const by = init?.body === undefined ? 1 : (JSON.parse(init.body as string) as { by: number }).by;
    if (command === 'incr') counts.set(key!, (counts.get(key!) ?? 0) + by);
    return json(200, { n: counts.get(key!) ?? 0 });
  }) as unknown as typeof fetch;
  const client = (o: Partial<ConstructorParameters<typeof TroupeClient>[0]> = {}) =>
    new TroupeClient({ nodes: nodes.map((n) => n.url), fetch: fakeFetch, sleep: async () => undefined, random: () => 0.5, ...o });
  return { nodes, log, forwarded, client, fakeFetch };
}

function json(status: number, body: unknown, token?: string): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...(token && { 'troupe-token': token }) } });
}

/** A key whose partition (of P) is `p`. */
function keyIn(p: number, prefix = 'k'): string {
  for (let i = 0; ; i++) if (partitionOfKey(`${prefix}${i}`, P) === p) return `${prefix}${i}`;
}

describe('TroupeClient routing', () => {
  it('hashes keys into partitions exactly as the nodes do', () => {
    for (const key of ['a', 'user-1', 'cart:42', 'ключ', '🙂']) expect(partitionOfKey(key, 1024)).toBe(partitionOf(key));
  });

  it('sends each request straight to its partition primary, typed by the definition', async () => {
    const { log, client } = cluster((p) => (p % 3) + 1);
    const c = client();
    for (let p = 0; p < P; p++) {
      const reply = await c.ask(counter, keyIn(p), 'incr', { by: 2 });
      expect(reply.n).toBe(2);
    }
    expect(log.map((l) => l.node)).toEqual(Array.from({ length: P }, (_, p) => (p % 3) + 1));
    expect(c.stats()).toMatchObject({ requests: P, direct: P, fallback: 0, retries: 0 });
  });

  it('with one listed node dead, the requests still succeed through the others', async () => {
    const { nodes, log, client } = cluster((p) => (p % 3) + 1);
    nodes[0]!.down = true;
    // The cluster failed node 1 over to node 2; the client, told of all three, learns it from a live node.
    for (const n of nodes) n.primaries = n.primaries.map((id) => (id === 1 ? 2 : id));
    const c = client();
    for (let p = 0; p < P; p++) expect((await c.ask(counter, keyIn(p), 'incr')).n).toBe(1);
    expect(log.every((l) => l.node !== 1)).toBe(true);
  });

  it('refreshes the table on ERR_NOT_PRIMARY and goes to the new primary', async () => {
    const { nodes, log, forwarded, client } = cluster(() => 1);
    const c = client();
    const key = keyIn(3);
    await c.ask(counter, key, 'incr');
    // Partition 3 moves to node 2, which every table says; node 1 was deposed and refuses it.
    for (const n of nodes) n.primaries[3] = 2;
    nodes[0]!.answer = () => ({ status: 503, body: { error: { code: 'ERR_NOT_PRIMARY', message: 'node 1 no longer leads partition 3' } } });
    log.length = 0;
    expect((await c.ask(counter, key, 'incr')).n).toBe(2);
    expect(log.map((l) => l.node)).toEqual([1, 2]); // refused once by the old primary, then straight to the new one
    log.length = 0;
    await c.ask(counter, key, 'incr');
    expect(log.map((l) => l.node)).toEqual([2]);
    expect(forwarded).toEqual([]);
  });

  it('follows a dead primary: refreshes, and routes straight to the new owner once the table says so', async () => {
    const { nodes, log, forwarded, client } = cluster((p) => (p % 3) + 1);
    const c = client();
    await c.refresh();
    nodes[2]!.down = true;
    for (const n of nodes) {
      n.members = [1, 2];
      n.primaries = n.primaries.map((id) => (id === 3 ? 1 : id));
    }
    const keys = Array.from({ length: P }, (_, p) => keyIn(p));
    for (const key of keys) expect((await c.ask(counter, key, 'incr')).n).toBe(1);
    log.length = 0;
    forwarded.length = 0;
    for (const key of keys) await c.ask(counter, key, 'incr');
    expect(log.every((l) => l.node !== 3)).toBe(true);
    expect(forwarded).toEqual([]); // none after it learned
  });

  it('reuses one idempotency key across the retries of an ask', async () => {
    const { nodes, log, client } = cluster(() => 1);
    let refusals = 1;
    nodes[0]!.answer = () => (refusals-- > 0 ? { status: 503, body: { error: { code: 'ERR_PARTITION_UNAVAILABLE', message: 'fencing' } } } : { status: 200, body: { n: 1 } });
    await client().ask(counter, 'k', 'incr');
    expect(log).toHaveLength(2);
    expect(log[0]!.headers['idempotency-key']).toMatch(/^[0-9a-f-]{36}$/);
    expect(log[1]!.headers['idempotency-key']).toBe(log[0]!.headers['idempotency-key']);
  });

  it('does not retry an error that is the request own (ERR_INVALID_INPUT)', async () => {
    const { nodes, log, client } = cluster(() => 1);
    nodes[0]!.answer = () => ({ status: 400, body: { error: { code: 'ERR_INVALID_INPUT', message: 'by must be an integer' } } });
    await expect(client().ask(counter, 'k', 'incr', { by: 1 })).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT', message: 'by must be an integer' });
    expect(log).toHaveLength(1);
  });

  it('gives up after maxAttempts with the last error', async () => {
    const { nodes, log, client } = cluster(() => 1);
    for (const n of nodes) n.answer = () => ({ status: 503, body: { error: { code: 'ERR_MAILBOX_FULL', message: 'full' } } });
    await expect(client({ maxAttempts: 3 }).ask(counter, 'k', 'incr')).rejects.toMatchObject({ code: 'ERR_MAILBOX_FULL' });
    expect(log).toHaveLength(3);
  });

  it('fails with ERR_NODE_UNREACHABLE naming the nodes when none answers', async () => {
    const { nodes, client } = cluster(() => 1);
    for (const n of nodes) n.down = true;
    await expect(client().ask(counter, 'k', 'incr')).rejects.toMatchObject({ code: 'ERR_NODE_UNREACHABLE', message: expect.stringContaining('http://n1.test:8080') });
  });
});

describe('TroupeClient read-your-writes token', () => {
  it('keeps the merged set replies return and sends each request its partition entry', async () => {
    const { nodes, log, client } = cluster(() => 1);
    const [a, b] = [keyIn(1), keyIn(2)];
    const tokens: Record<string, string> = { [a]: '1:3.1:10', [b]: '2:3.1:4' };
    nodes[0]!.answer = (key) => ({ status: 200, body: { n: 1 }, token: tokens[key] });
    const c = client();
    await c.ask(counter, a, 'incr');
    await c.ask(counter, b, 'incr');
    expect(c.token).toBe('1:3.1:10,2:3.1:4');
    log.length = 0;
    await c.ask(counter, a, 'get');
    expect(log[0]!.headers['troupe-token']).toBe('1:3.1:10');
    // A late reply carrying an older position of partition 1 never rolls the session back.
    tokens[a] = '1:3.1:7';
    await c.ask(counter, a, 'get');
    expect(c.token).toBe('1:3.1:10,2:3.1:4');
  });
});

describe('TroupeClient options', () => {
  const f = (async () => json(200, {})) as unknown as typeof fetch;
  it.each([
    ['no nodes', { nodes: [] }, 'options.nodes must be a non-empty array'],
    ['not a URL', { nodes: ['n1:8080x'] }, 'options.nodes must hold'],
    ['ftp', { nodes: ['ftp://n1'] }, 'options.nodes must hold http: or https: URLs'],
    ['timeoutMs 0', { nodes: ['http://n1'], timeoutMs: 0 }, 'options.timeoutMs must be a positive integer'],
    ['maxAttempts 1.5', { nodes: ['http://n1'], maxAttempts: 1.5 }, 'options.maxAttempts must be a positive integer'],
    ['bad token', { nodes: ['http://n1'], token: 'x' }, 'options.token entry is malformed'],
  ])('refuses %s, naming the option', (_, o, message) => {
    expect(() => new TroupeClient({ fetch: f, ...(o as { nodes: string[] }) })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining(message) }));
  });
});

describe('retry policy', () => {
  it.each([
    ['first retry, jitter 1', 1, 1, 25],
    ['doubles per attempt', 3, 1, 100],
    ['capped', 10, 1, 1000],
    ['full jitter: 0 waits nothing', 4, 0, 0],
  ])('%s', (_, attempt, random, expected) => {
    expect(backoffDelay(attempt, 25, 1000, random === 1 ? 0.99999 : random)).toBe(random === 1 ? expected - 1 : expected);
  });

  it('retries the 503 family, not the request own errors', () => {
    expect(['ERR_NOT_PRIMARY', 'ERR_NOT_OWNER', 'ERR_PARTITION_UNAVAILABLE', 'ERR_NO_NODES'].every(isRetryable)).toBe(true);
    expect(['ERR_INVALID_INPUT', 'ERR_HANDLER_FAILED', 'ERR_ASK_TIMEOUT', 'ERR_TOKEN_LOST'].some(isRetryable)).toBe(false);
  });

  it('refuses a table that does not list a primary per partition', () => {
    expect(parseRoutingTable({ node: 1, epoch: 1, members: [1], partitions: 2, primaries: [1] })).toMatch(/primary for each of its 2 partitions/);
    expect(parseRoutingTable('<html>')).toBe('is not a JSON object');
  });
});
