/**
 * A graceful leave (what `SIGTERM` does to a `troupe` node) under load, in-process: three
 * replicated nodes on one simulated clock (sim-cluster.ts). The leaver announces itself `left`,
 * so its partitions move without waiting for the failure detector: the survivors fence them
 * (its own copy no longer needed: two of three members promise), recover every acknowledged
 * write from the replicated logs, and serve. Checked with the history checker.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { checkCounters } from '../helpers/history.ts';
import { SimNodeCluster } from './sim-cluster.ts';

const KEYS = Array.from({ length: 60 }, (_, i) => `leave-${i}`);
let cluster: SimNodeCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

describe('graceful leave under load (simulated clock, memory network)', () => {
  it('a node that stops gracefully hands its partitions over: nothing acknowledged lost, its keys served again well before a failure detector would notice', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 41 }));
    const leaver = 3;
    const ledByLeaver = KEYS.filter((k) => c.ownerOf(k, 1) === leaver);
    expect(ledByLeaver.length).toBeGreaterThan(10);
    // Clients of the two nodes that stay (the leaver's gateway closes with it).
    const clients = c.startClients({ keys: KEYS, perNode: 3, via: [1, 2] });
    await c.runFor(800);
    const leaveAt = c.clock.now();
    const stopped = c.node(leaver).stop();
    await c.runUntil(() => [1, 2].every((id) => c.upIds(c.node(id)).join() === '1,2'), 3_000, 'the leaver gone from both rings');
    const goneAt = c.clock.now();
    // Every key the leaver led is served again, with its state, through both survivors.
    const probes = await c.settle(Promise.all(ledByLeaver.map((k, i) => c.readKey(1 + (i % 2), k, 5_000))), 6_000);
    const servedAfterLeave = Math.max(...probes.map((r) => r.at - leaveAt));
    await c.runFor(800);
    await clients.stop();
    await c.settle(stopped, 10_000);

    const finals = await c.readCounts(1, KEYS);
    expect(checkCounters(c.history, finals)).toEqual([]);
    const ops = c.history.ops;
    expect(ops.filter((o) => o.outcome === 'ok' && ledByLeaver.includes(o.key) && o.start > goneAt).length).toBeGreaterThan(20);
    // No detection timeout involved: the lan profile would take ~1.3 s to declare a dead node down.
    expect(servedAfterLeave).toBeLessThan(1_000);
    console.info(`leave: the leaver's keys served again ${servedAfterLeave} ms after its stop began; ${JSON.stringify(c.history.counts())}`);
  });
});
