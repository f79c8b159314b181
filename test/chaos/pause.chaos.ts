/**
 * Scenario 5: SIGSTOP one node of three under load for longer than the failure-detection bound
 * (a long GC pause, a suspended VM), then SIGCONT. While it is stopped nodes 1 and 2 mark it down
 * and take over the partitions it led under new epochs. Before it resumes, one increment per moved
 * key is sent to it and waits in its socket buffers, so the first thing it reads when it runs again
 * is a write for an actor that moved, before it hears of the new epochs. Promise under
 * `replicated` (R=3, W=2): a deposed primary acknowledges nothing in its old epoch — every count it
 * answers for a moved key is above every count acknowledged before it resumed (else it answered
 * from its stale copy); nothing lost or applied twice; it rejoins (alive everywhere) and every key
 * is served through every node after; I1 holds.
 * (test/replication/pause-process.test.ts checks the same promise as a test, without figures.)
 */
import { readFileSync } from 'node:fs';
import { describe, it } from 'vitest';
import { partitionOf } from '../../src/replication/partition-table.ts';
import { type CallError, CounterGateway } from '../helpers/counter-gateway.ts';
import { getJson, NOT_APPLIED } from '../helpers/process-cluster.ts';
import { eventually } from '../helpers/processes.ts';
import type { ChaosNode } from './chaos-cluster.ts';
import { errorsSince, recovered, runScenario } from './scenario.ts';

const VICTIM = 3;
/** Longer than the detection bound (suspicion plus the down mark, ~2–3 s with the default profile). */
const PAUSE_AT_LEAST_MS = 4_000;

interface PartitionRow {
  p: number;
  role: string;
  ready: boolean;
}

const partitionsOf = async (n: ChaosNode) =>
  new Map((await getJson<{ partitions: PartitionRow[] }>(n.url + '/cluster/partitions', 2_000)).partitions.map((r) => [r.p, r]));
const statusOf = async (observer: ChaosNode, id: number) =>
  (await getJson<{ members: Array<{ id: number; status: string }> }>(observer.url + '/cluster/members', 2_000)).members.find(
    (m) => m.id === id,
  )?.status;

/**
 * Established connections to 127.0.0.1:`port` whose server side holds unread bytes: requests
 * waiting for a process that does not run (/proc/net/tcp: hex local address:port, state 01 =
 * established, tx_queue:rx_queue in hex).
 */
function bufferedRequests(port: number): number {
  let n = 0;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) continue;
    const local = Number.parseInt(f[1]!.split(':')[1]!, 16);
    const rx = Number.parseInt(f[4]!.split(':')[1]!, 16);
    if (local === port && f[3] === '01' && rx > 0) n++;
  }
  return n;
}

describe('scenario 5: SIGSTOP past the detection bound, then SIGCONT', () => {
  it(`node ${VICTIM} paused under load, then continued`, async () => {
    await runScenario({
      name: '5 pause + continue',
      fault: `SIGSTOP node ${VICTIM} of 3 for ≥ ${PAUSE_AT_LEAST_MS / 1000} s (until 1 and 2 mark it down and serve its keys); one increment per moved key buffered for it; SIGCONT`,
      criterion:
        'no stale answer from the paused node for a moved key, lost 0, duplicated 0, it rejoins (alive everywhere), every key served through every node after, I1 holds',
      ids: [1, 2, VICTIM],
      workload: { prefix: 'p5', counterKeys: 60, counterClients: 6, carts: 20, cartClients: 2 },
      async inject({ cluster, load }) {
        const victim = cluster.node(VICTIM);
        const others = [cluster.node(1), cluster.node(2)];
        // The keys whose partitions node 3 leads right now: these actors move when it is marked down.
        const led = await partitionsOf(victim);
        const moved = load.counterKeys.filter((k) => {
          const row = led.get(partitionOf(k));
          return row !== undefined && row.role === 'primary' && row.ready;
        });
        if (moved.length === 0)
          return { recoverMs: null, violations: [`node ${VICTIM} led no partition of the load's keys before the pause`] };

        const stoppedAt = Date.now();
        cluster.signal(VICTIM, 'SIGSTOP');
        const downMs = await eventually(
          async () => (await statusOf(others[0]!, VICTIM)) === 'down' && (await statusOf(others[1]!, VICTIM)) === 'down',
          15_000,
          `node ${VICTIM} down at nodes 1 and 2`,
        );
        // Every key served again by the two running nodes while node 3 is still stopped.
        const recoverMs = await recovered(load, stoppedAt, 30_000, { urls: others.map((n) => n.url) });
        await eventually(async () => Date.now() - stoppedAt >= PAUSE_AT_LEAST_MS, PAUSE_AT_LEAST_MS + 1_000, 'the minimum pause');
        const whilePaused = errorsSince(load, stoppedAt);

        // One increment per moved key sent to the stopped node, recorded in the history like the load's.
        const maxAcked = new Map(
          moved.map((k) => [k, Math.max(0, ...load.history.ops.filter((o) => o.key === k && o.outcome === 'ok').map((o) => o.value!))]),
        );
        const viaVictim = new CounterGateway(victim.url, { maxSockets: moved.length, timeoutMs: 15_000 });
        const answers: Array<{ key: string; value?: number; code?: string }> = [];
        const sent = moved.map((key) =>
          load.history.incr(
            key,
            () =>
              viaVictim.call(key, 'incr').then(
                (value) => (answers.push({ key, value }), value),
                (e: CallError) => {
                  answers.push({ key, code: e.code });
                  throw e;
                },
              ),
            (e) => NOT_APPLIED.has((e as CallError).code),
          ),
        );
        let continuedAt = 0;
        try {
          // SIGCONT only once the requests sit in the stopped process's socket buffers (the kernel
          // accepts connections into the listen backlog and buffers what they send). The load's own
          // requests to node 3 may count too, so this is a lower bound, not an exact match.
          const httpPort = Number(new URL(victim.url).port);
          await eventually(
            async () => bufferedRequests(httpPort) >= moved.length,
            5_000,
            () => `${bufferedRequests(httpPort)} of ${moved.length} requests buffered for node ${VICTIM}`,
          );
        } finally {
          continuedAt = Date.now();
          cluster.signal(VICTIM, 'SIGCONT');
        }
        const pausedMs = Date.now() - stoppedAt;
        await Promise.all(sent);
        viaVictim.destroy();
        const rejoinMs = await cluster.waitAllAlive(30_000);
        // Served again through every node, the resumed one included, while the load goes on.
        const settleMs = await recovered(load, continuedAt, 30_000, { urls: cluster.live().map((n) => n.url) });

        const stale = answers.filter((a) => a.value !== undefined && a.value <= maxAcked.get(a.key)!);
        const outcomes = answers.reduce<Record<string, number>>((m, a) => ((m[a.code ?? 'ok'] = (m[a.code ?? 'ok'] ?? 0) + 1), m), {});
        return {
          recoverMs,
          violations: stale.map(
            (a) => `${a.key}: node ${VICTIM} answered ${a.value} after it resumed, though ${maxAcked.get(a.key)} was acknowledged before`,
          ),
          notes:
            `paused ${pausedMs} ms, down at 1 and 2 after ${downMs} ms; ${moved.length} keys moved; errors while paused: ${whilePaused}; ` +
            `its answers to the buffered increments: ${JSON.stringify(outcomes)}; alive everywhere ${rejoinMs} ms after SIGCONT; ` +
            `every key acknowledged again through all 3 ${settleMs} ms after`,
        };
      },
    });
  }, 180_000);
});
