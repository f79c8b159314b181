/**
 * Read-your-writes tokens and `--durability lazy` through real processes, from the outside: three
 * `troupe start --durability lazy` nodes on 127.0.0.1 (LMDB data directories), a client that
 * keeps the `troupe-token` header of every response and sends it back. It writes through node 1
 * to a key whose primary is node 2; with both of node 2's replicas stopped (SIGSTOP) node 2 still
 * acknowledges a write (lazy: its own commit); once they resume and hold it, node 2 is SIGKILLed
 * and the client reads through node 3 with its token: it gets its writes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTokens } from '../../src/replication/token.ts';
import { ProcessCluster, type ProcessNode } from '../helpers/process-cluster.ts';
import { eventually, exited } from '../helpers/processes.ts';

const cluster = new ProcessCluster('ryw', { args: ['--durability', 'lazy'] });

/** One POST; the status, the JSON body and the response's troupe-token header. */
async function call(node: ProcessNode, key: string, command: string, token?: string, timeoutMs = 3_000) {
  const res = await fetch(`${node.url}/actors/counter/${key}/${command}`, {
    method: 'POST',
    headers: { 'x-timeout-ms': String(timeoutMs), ...(token !== undefined && { 'troupe-token': token }) },
    signal: AbortSignal.timeout(timeoutMs + 2_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, token: res.headers.get('troupe-token') ?? undefined };
}

/** The last seq node `n` holds of partition `p` (its `/cluster/partitions` view). */
async function logEnd(n: ProcessNode, p: number): Promise<number> {
  const view = (await (await fetch(`${n.url}/cluster/partitions`)).json()) as { partitions: Array<{ p: number; last: number }> };
  return view.partitions.find((x) => x.p === p)?.last ?? 0;
}

let nodes: ProcessNode[] = [];

beforeAll(async () => {
  nodes = await cluster.startAll([1, 2, 3]);
}, 60_000);

// Continues a node left stopped (SIGSTOP) by a failed test before stopping it.
afterAll(() => cluster.stop());

describe('read-your-writes over HTTP, lazy durability, real processes', () => {
  it("the token survives the primary's death: written through node 1 to primary 2, read through node 3 after 2 is SIGKILLed", async () => {
    const [n1, n2, n3] = nodes as [ProcessNode, ProcessNode, ProcessNode];
    // A key whose partition node 2 leads: the write's token names the epoch that wrote it.
    let key = '';
    let token: string | undefined;
    for (let i = 0; i < 200 && key === ''; i++) {
      const r = await call(n1, `ryw-${i}`, 'incr');
      expect(r.status).toBe(200);
      expect(r.token).toMatch(/^\d+:\d+\.\d+:\d+$/);
      if ([...parseTokens(r.token!, 1024).values()][0]!.epoch.node === 2) [key, token] = [`ryw-${i}`, r.token];
    }
    expect(key).not.toBe('');
    const p = [...parseTokens(token!, 1024).keys()][0]!;
    const second = await call(n1, key, 'incr', token);
    expect(second).toMatchObject({ status: 200, body: { n: 2 } });
    token = second.token;

    // Both replicas stopped: under lazy the primary still acknowledges, at its own commit.
    n1.child.kill('SIGSTOP');
    n3.child.kill('SIGSTOP');
    let third;
    try {
      third = await call(n2, key, 'incr', token, 1_000);
    } finally {
      n1.child.kill('SIGCONT');
      n3.child.kill('SIGCONT');
    }
    expect(third).toMatchObject({ status: 200, body: { n: 3 } });
    token = third.token!;
    const seq = parseTokens(token, 1024).get(p)!.seq;
    // Replication resumes in the background: wait until both replicas hold the write, then kill its primary.
    await eventually(
      async () => (await logEnd(n1, p)) >= seq && (await logEnd(n3, p)) >= seq,
      10_000,
      `both replicas hold seq ${seq} of partition ${p}`,
    );
    n2.child.kill('SIGKILL');
    await exited(n2.child);

    let read: Awaited<ReturnType<typeof call>> | undefined;
    await eventually(
      async () => {
        read = await call(n3, key, 'get', token);
        return read.status === 200;
      },
      15_000,
      () => `read through node 3 with the token: ${JSON.stringify(read)}`,
    );
    expect(read!.body).toEqual({ n: 3 });
    // A new primary (not node 2) served it, in a later epoch.
    const after = parseTokens(read!.token!, 1024).get(p)!;
    expect(after.epoch.node).not.toBe(2);
    expect(after.epoch.term).toBeGreaterThan(parseTokens(token, 1024).get(p)!.epoch.term);
  }, 60_000);

  it('a malformed troupe-token header is answered 400 ERR_INVALID_OPTION naming the header', async () => {
    const r = await call(nodes[0]!, 'ryw-0', 'get', '__proto__:1.1:1');
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ error: { code: 'ERR_INVALID_OPTION', message: expect.stringMatching(/^header troupe-token /) } });
  });
});
