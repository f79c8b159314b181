import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, type ProcessNode } from '../helpers/process-cluster.ts';
import { eventually, exited } from '../helpers/processes.ts';

const cluster = new ProcessCluster('cluster');

type Member = { id: number; status: string; incarnation: number };
async function members(url: string): Promise<Member[]> {
  const res = await fetch(url + '/cluster/members');
  return ((await res.json()) as { members: Member[] }).members;
}

const incr = async (url: string, key: string) => {
  const res = await fetch(`${url}/actors/counter/${key}/incr`, { method: 'POST', body: '{"by":1}' });
  expect(res.status).toBe(200);
  return (await res.json()) as { n: number };
};

describe('three troupe processes on 127.0.0.1', () => {
  const nodes: ProcessNode[] = [];

  beforeAll(async () => {
    nodes.push(...(await cluster.startAll([1, 2, 3])));
  }, 60_000);

  // Each process has exited before its data directory is deleted: a node still closing its
  // journal would write into a directory being removed.
  afterAll(() => cluster.stop(), 15_000);

  const keys = Array.from({ length: 30 }, (_, i) => `p-${i}`);

  it('asks through every node reach the key’s single owner', async () => {
    for (const n of nodes) for (const k of keys) await incr(n.url, k);
    const last = await Promise.all(
      keys.map((k) => fetch(`${nodes[2]!.url}/actors/counter/${k}/get`, { method: 'POST' }).then((r) => r.json())),
    );
    expect(last).toEqual(keys.map(() => ({ n: 3 })));
  });

  it('SIGKILL of one node: the others agree it is down within the bound; it rejoins with a higher incarnation', async () => {
    const victim = nodes[2]!;
    const port = Number(victim.cluster.split(':')[1]);
    victim.child.kill('SIGKILL');
    const tookMs = await eventually(
      async () =>
        (await Promise.all(nodes.slice(0, 2).map((n) => members(n.url)))).every((ms) => ms.find((m) => m.id === 3)?.status === 'down'),
      10_000,
      'nodes 1 and 2 mark node 3 down',
    );
    // Deliberately looser than the claim. The lan profile's bound is 1.46 s (downBound), and it
    // is asserted exactly on the simulated clock in test/cluster/detection-bound.test.ts, where
    // it cannot flake. Here wall-clock time also holds the 50 ms poll, two HTTP round trips and
    // the scheduling of three node processes and the test runner on two shared cores, so a
    // tight bound would fail on a busy machine without any bug. This only catches gross
    // regressions (detection not working, or slower by a whole suspicion timeout);
    // bench/failure-detection.ts reports the real-process figure as p50/p99 over repeated kills.
    expect(tookMs).toBeLessThan(2_500);
    // Keys node 3 owned are served by the survivors.
    for (const k of keys) await incr(nodes[0]!.url, k);

    await exited(victim.child); // its ports are free once the kernel has reaped it
    // Same id and the same address, as an operator restarting the node would.
    const again = await cluster.start(3, { seeds: [nodes[0]!.cluster], port });
    nodes[2] = again;
    await eventually(
      async () =>
        (await Promise.all(nodes.map((n) => members(n.url)))).every((ms) => {
          const m3 = ms.find((m) => m.id === 3);
          // The new process starts at incarnation 2 and may refute the old 'down' by bumping it further.
          return m3?.status === 'alive' && m3.incarnation >= 2 && ms.filter((m) => m.status === 'alive').length === 3;
        }),
      15_000,
      'node 3 alive again with a higher incarnation on every node',
    );
  }, 60_000);
});
