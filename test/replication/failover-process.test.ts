/**
 * Replicated logs through real processes, checked only through their clients (Jepsen's way):
 * three `troupe` nodes on 127.0.0.1 (durability 'replicated', R=3, W=2, LMDB under each node's
 * data directory), a stream of increments from 8 clients over 100 counters through every
 * gateway, one node SIGKILLed in the middle of it, and the recorded history checked against the
 * counts the cluster ends with (test/helpers/history.ts). Then the killed node comes back on its
 * data directory and must serve the latest counts, not its stale copy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkCounters, History, servedAgain } from '../helpers/history.ts';
import { NOT_APPLIED, ProcessCluster, aliveEverywhere, readCounts, runCounterLoad, type ProcessNode } from '../helpers/process-cluster.ts';
import { eventually, exited } from '../helpers/processes.ts';
import type { CallError } from '../helpers/counter-gateway.ts';

const cluster = new ProcessCluster('failover', { stderr: 'tail' });

const CLIENTS = 8;
const KEYS = Array.from({ length: 100 }, (_, i) => `fo-${i}`);
/** Acknowledged increments before the kill: enough that every node leads partitions in use. */
const ACKED_BEFORE_KILL = 400;
/** Acknowledged increments after the kill before the load stops (on top of every key served again). */
const ACKED_AFTER_KILL = 300;

const gatewayTo = (url: string) => cluster.gateway(url, { maxSockets: CLIENTS });

const violationsOf = (history: History, finals: Map<string, number>) =>
  checkCounters(history, finals)
    .slice(0, 20)
    .map((v) => `${v.key}: ${v.problem}; ${describeKey(history, v.key)}`);

/** A key's operations in start order, for a violation's message: `+n` acknowledged, `?code` unknown, `-code` failed. */
function describeKey(history: History, key: string): string {
  const t0 = history.ops[0]?.start ?? 0;
  return history.ops
    .filter((o) => o.key === key)
    .sort((a, b) => a.start - b.start)
    .map((o) => `${o.outcome === 'ok' ? `+${o.value}` : `${o.outcome === 'failed' ? '-' : '?'}${o.error}`}@${o.start - t0}..${o.end - t0}`)
    .join(' ');
}

describe('replicated logs across three processes: SIGKILL under load, then restart', () => {
  const nodes: ProcessNode[] = [];
  const history = new History();
  let finals = new Map<string, number>();
  /** The node killed in the first test, restarted in the second. */
  const victimIndex = 2;

  beforeAll(async () => {
    nodes.push(...(await cluster.startAll([1, 2, 3])));
  }, 45_000);

  // Every process this file started, even if a test failed half way.
  afterAll(() => cluster.stop(), 20_000);

  it('SIGKILL of one node during 8 clients’ increments over 100 keys: no acknowledged increment lost, every key served again', async () => {
    const gateways = nodes.map((n) => gatewayTo(n.url));
    const load = runCounterLoad({ gateways, history, keys: KEYS, clients: CLIENTS, avoidUnreachable: true });
    const acked = () => history.counts().ok;
    let killedAt = 0;
    let ackedAtKill = 0;
    try {
      await load.until(
        () => acked() >= ACKED_BEFORE_KILL,
        20_000,
        () => `only ${acked()} increments acknowledged before the kill`,
      );
      const victim = nodes[victimIndex]!;
      ackedAtKill = acked();
      killedAt = Date.now();
      victim.child.kill('SIGKILL');
      await exited(victim.child);
      // The load goes on until every key was served again after the kill, and enough was
      // acknowledged while the node was down for the restart test to look for.
      await load.until(
        () => servedAgain(history, killedAt, KEYS).missing.length === 0 && acked() - ackedAtKill >= ACKED_AFTER_KILL,
        15_000,
        () => {
          const { missing } = servedAgain(history, killedAt, KEYS);
          return `after the kill: ${acked() - ackedAtKill} acknowledged; keys not served again: ${missing.join(', ') || 'none'}; ${JSON.stringify(history.counts())}\nsurvivors' stderr:\n${nodes[0]!.stderr()}\n${nodes[1]!.stderr()}`;
        },
      );
    } finally {
      await load.stop();
    }

    const survivor = gateways[0]!;
    finals = await readCounts(survivor, KEYS, 10_000);
    const { latestMs } = servedAgain(history, killedAt, KEYS);
    const counts = history.counts();
    console.log(
      `failover: every key served again ${latestMs} ms after the SIGKILL; ${counts.ok} acknowledged (${counts.ok - ackedAtKill} after the kill), ${counts.failed} failed, ${counts.unknown} unknown`,
    );
    expect(violationsOf(history, finals)).toEqual([]);
    expect(counts.ok - ackedAtKill).toBeGreaterThanOrEqual(ACKED_AFTER_KILL);
    // Loose on purpose: the lan profile detects a death within 1.5 s and a fence costs one
    // round, but here three nodes, 8 clients and the runner share two cores. This catches
    // failover not happening or taking a whole hold period more (holdMs 5 s) per key.
    expect(latestMs).toBeLessThan(10_000);
  }, 45_000);

  it('the killed node restarts on its data directory: nothing acknowledged is lost, and its gateway serves the latest counts', async () => {
    expect(finals.size, 'the first test read the final counts').toBe(KEYS.length);
    const victim = nodes[victimIndex]!;
    const port = Number(victim.cluster.split(':').pop());
    // Same id, data directory and node-to-node address, as an operator restarting it would.
    const again = await cluster.start(victim.id, { seeds: [nodes[0]!.cluster], port });
    nodes[victimIndex] = again;
    await eventually(
      () => aliveEverywhere(nodes),
      15_000,
      () => `node ${victim.id} alive again on every node`,
    );

    // Partitions it led move back to it: it must fence and catch up, never serve its old copy.
    const restarted = gatewayTo(again.url);
    const viaRestarted = await readCounts(restarted, KEYS, 15_000);
    const viaSurvivor = await readCounts(gatewayTo(nodes[0]!.url), KEYS, 5_000);
    expect(violationsOf(history, viaRestarted)).toEqual([]);
    const behind = KEYS.filter((k) => viaRestarted.get(k) !== viaSurvivor.get(k) || viaRestarted.get(k)! < finals.get(k)!);
    expect(
      behind.map((k) => `${k}: restarted ${viaRestarted.get(k)}, survivor ${viaSurvivor.get(k)}, after the kill ${finals.get(k)}`),
    ).toEqual([]);

    // And it writes on top of the latest count: one more increment per key through its gateway.
    const next = new Map<string, number>();
    await Promise.all(
      KEYS.map((k) =>
        history.incr(
          k,
          async () => {
            const n = await restarted.call(k, 'incr');
            next.set(k, n);
            return n;
          },
          (e) => NOT_APPLIED.has((e as CallError).code),
        ),
      ),
    );
    expect(
      KEYS.filter((k) => next.get(k) !== viaRestarted.get(k)! + 1).map((k) => `${k}: ${next.get(k)} after ${viaRestarted.get(k)}`),
    ).toEqual([]);
    expect(violationsOf(history, await readCounts(gatewayTo(nodes[1]!.url), KEYS, 5_000))).toEqual([]);
  }, 45_000);
});
