/**
 * `troupe/client` against three real `troupe start` processes: requests go straight to each
 * key's primary (no node's router sends or forwards one), a dead listed node is routed around,
 * and after the ring changes the client learns the new owners and again sends nothing that needs
 * forwarding. Forwarding is read from each node's router counters (`GET /cluster/ring`):
 * `sentRemote` counts asks a gateway sent to another node, `forwarded` asks a node passed on.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { TroupeClient } from '../../src/client/troupe-client.ts';
import { counter } from '../../src/demo/app.ts';
import { getJson, ProcessCluster, type ProcessNode } from '../helpers/process-cluster.ts';
import { eventually, exited } from '../helpers/processes.ts';

const cluster = new ProcessCluster('client');
afterAll(() => cluster.stop(), 30_000);

/** Asks the nodes' routers sent to or passed on to another node, summed over `nodes`. */
async function hops(nodes: readonly ProcessNode[]): Promise<number> {
  const views = await Promise.all(nodes.map((n) => getJson<{ sentRemote: number; forwarded: number }>(n.url + '/cluster/ring', 2_000)));
  return views.reduce((sum, v) => sum + v.sentRemote + v.forwarded, 0);
}

const keys = Array.from({ length: 60 }, (_, i) => `client-${i}`);

describe('TroupeClient on a three-node cluster', () => {
  let nodes: ProcessNode[];
  let client: TroupeClient;

  it('sends every request straight to its primary: no node forwards one', async () => {
    nodes = await cluster.startAll([1, 2, 3]);
    client = new TroupeClient({ nodes: nodes.map((n) => n.url) });
    await client.refresh();
    // Until every node has fenced its partitions a write may be refused and retried; warm up first.
    for (const key of keys) await client.ask(counter, key, 'incr', { by: 1 });
    const before = await hops(nodes);
    const fallback = client.stats().fallback; // the first requests may beat the client learning every URL
    for (const key of keys) expect((await client.ask(counter, key, 'incr', { by: 1 })).n).toBe(2);
    expect(await hops(nodes)).toBe(before);
    expect(client.stats().fallback).toBe(fallback);
  }, 60_000);

  it('with one listed node dead, requests still succeed; after the ring change it routes straight to the new owners', async () => {
    const [n1, n2, n3] = nodes as [ProcessNode, ProcessNode, ProcessNode];
    n3.child.kill('SIGKILL');
    await exited(n3.child);
    // Node 3's URL stays in the client's list: every request still succeeds (retried elsewhere).
    for (const key of keys) expect((await client.ask(counter, key, 'incr', { by: 1 })).n).toBe(3);
    // The client learns the new owners from a live node once membership has noticed.
    await eventually(
      async () => !(await client.refresh()).members.includes(3),
      15_000,
      () => `the client's table still lists node 3: ${JSON.stringify(client.snapshot().table?.members)}`,
    );
    for (const key of keys) await client.ask(counter, key, 'get'); // fences after the failover settle
    const before = await hops([n1, n2]);
    for (const key of keys) expect((await client.ask(counter, key, 'incr', { by: 1 })).n).toBe(4);
    expect(await hops([n1, n2])).toBe(before); // none forwarded after it learned
  }, 90_000);

  it('carries the read-your-writes token: a write, then a read that sees it', async () => {
    const session = new TroupeClient({ nodes: nodes.slice(0, 2).map((n) => n.url) });
    const { n } = await session.ask(counter, 'ryw-1', 'incr', { by: 5 });
    expect(n).toBe(5);
    const token = session.token;
    expect(token).toMatch(/^\d+:\d+\.\d+:\d+$/);
    expect((await session.ask(counter, 'ryw-1', 'get')).n).toBe(5);
    // A new session resumed from the token reads at least that write.
    const resumed = new TroupeClient({ nodes: [nodes[1]!.url], token: token! });
    expect((await resumed.ask(counter, 'ryw-1', 'get')).n).toBe(5);
    expect(resumed.token).toBe(token);
  }, 30_000);
});
