/**
 * Scenario 2: SIGKILL two of five nodes at once under load (R=3, W=2, the defaults).
 *
 * The promise then, stated per partition (its replica set is three of the five nodes):
 *   - a partition with at most one killed replica keeps two live copies: it is served again
 *     within the detection bound plus a fence;
 *   - a partition with BOTH killed nodes in its set has one live copy: it cannot commit (W=2) nor
 *     fence a new epoch (a fence needs a quorum of the set), so its keys are refused —
 *     ERR_PARTITION_UNAVAILABLE, or a timeout — and nothing is acknowledged for them until one of
 *     the two returns; once one returns they are served again;
 *   - when both are back, nothing acknowledged before, during or after is lost or applied twice.
 *   - a partition no node has written yet (nothing acknowledged for it before the kill) may be
 *     refused too: a fence that finds no history needs N − W + 1 = 4 of the 5 members to answer
 *     (it cannot otherwise rule out that the two dead nodes hold its history), so it is founded
 *     only once one of the two returns — unless a read founded it before the kill.
 * The scenario checks exactly that: no acknowledgement for a key of the second kind that started
 * after the kill and before the first restart, every key of the first kind served again while
 * the two are down, every key served once node 4 is back, and the checkers over the whole run.
 */
import { describe, it } from 'vitest';
import { HashRing } from '../../src/cluster/ring.ts';
import { PartitionTable, partitionOf } from '../../src/replication/partition-table.ts';
import { servedAgain } from '../helpers/history.ts';
import { errorsSince, recovered, runScenario } from './scenario.ts';

const IDS = [1, 2, 3, 4, 5];
const KILLED = [4, 5];
/** The replica sets every node's router computes for five live members (positions depend on ids only). */
const table = new PartitionTable(new HashRing(IDS.map((id) => ({ id, address: `node:${id}` }))));
const lostQuorum = (key: string) => KILLED.every((k) => table.replicasOf(partitionOf(key)).includes(k));

describe('scenario 2: two of five nodes SIGKILLed at once', () => {
  it('partitions with one live copy refuse until a node returns; nothing acknowledged is lost', async () => {
    await runScenario({
      name: '2 kill 2 of 5',
      fault: 'SIGKILL nodes 4 and 5 at once; restart 4, then 5, on their data directories',
      criterion:
        'keys whose replica set held both killed nodes: no acknowledgement from the kill to the first restart, served again after it; every other key written before the kill served again while two are down; keys of partitions not written before it served once node 4 is back; lost 0, duplicated 0, I1 holds',
      ids: IDS,
      workload: { prefix: 'k2', counterKeys: 80, counterClients: 16, carts: 20, cartClients: 2 },
      async inject({ cluster, load }) {
        // A partition's set is fixed by its first epoch: one never written before the kill is
        // placed over the live nodes when first used (nothing acknowledged to lose), so only the
        // partitions written before the kill are stranded.
        const written = new Set(load.history.ops.filter((o) => o.outcome === 'ok').map((o) => partitionOf(o.key)));
        const stranded = load.counterKeys.filter((k) => lostQuorum(k) && written.has(partitionOf(k)));
        const unwritten = load.counterKeys.filter((k) => !written.has(partitionOf(k)));
        const served = load.counterKeys.filter((k) => !stranded.includes(k) && !unwritten.includes(k));
        const violations: string[] = [];
        if (stranded.length === 0) violations.push('no key of the run has both killed nodes in its replica set: the scenario proves nothing');
        await Promise.all(KILLED.map((id) => cluster.kill(id)));
        // From their exit: a write that started just before may still have reached them.
        const killedAt = Date.now();
        const recoverMs = await recovered(load, killedAt, 30_000, { keys: served, urls: cluster.live().map((n) => n.url) }).catch((e: Error) => {
          for (const p of new Set(servedAgain(load.history, killedAt, served).missing.map((k) => partitionOf(k))))
            console.log(`EVIDENCE partition ${p} (replicas ${table.replicasOf(p).join(',')}) not served while 4 and 5 were down:\n${cluster.linesAbout(p)}`);
          throw e;
        });
        // The stranded keys have now been tried for as long as the others took to come back, and longer.
        await load.until(
          () => load.history.ops.filter((o) => stranded.includes(o.key) && o.start > killedAt + recoverMs).length >= 2 * stranded.length,
          30_000,
          () => 'stranded keys tried again',
        );
        const returnAt = Date.now();
        console.log(`EVENTS killed 4,5 at ${killedAt - load.history.ops[0]!.start} ms since the load started; restarting 4 at ${returnAt - load.history.ops[0]!.start}`);
        const strandedAcks = load.history.ops.filter((o) => stranded.includes(o.key) && o.outcome === 'ok' && o.start > killedAt && o.start < returnAt);
        for (const p of new Set(strandedAcks.map((o) => partitionOf(o.key)))) console.log(`partition ${p}:\n${cluster.linesAbout(p)}`);
        for (const o of strandedAcks) violations.push(`${o.key} (replicas ${table.replicasOf(partitionOf(o.key)).join(',')}) acknowledged ${o.value} at +${o.start - killedAt} ms with both 4 and 5 dead`);
        const refused = errorsSince(load, killedAt);
        const again = await cluster.restart(4);
        load.addGateway(again.url);
        // Soft: a key still refused is a violation, and the run goes on to the finals for the rest.
        let strandedBackMs: number | string = 'never';
        try {
          strandedBackMs = await recovered(load, returnAt, 30_000, { keys: [...stranded, ...unwritten], urls: cluster.live().map((n) => n.url) });
        } catch (e) {
          violations.push(`after node 4 returned: ${(e as Error).message.slice(0, 400)}`);
          const missing = servedAgain(load.history, returnAt, [...stranded, ...unwritten]).missing;
          for (const p of new Set(missing.map((k) => partitionOf(k))))
            console.log(`EVIDENCE partition ${p} (replicas ${table.replicasOf(p).join(',')}) not served after node 4 returned:\n${cluster.linesAbout(p)}`);
        }
        const five = await cluster.restart(5);
        load.addGateway(five.url);
        await recovered(load, Date.now(), 30_000, { urls: cluster.live().map((n) => n.url) });
        return {
          recoverMs,
          violations,
          notes: `${stranded.length} of ${load.counterKeys.length} keys had both killed nodes as replicas, ${unwritten.length} were in partitions not written before the kill; errors while down: ${refused}; those keys served again ${strandedBackMs} ms after node 4 was restarted (${Date.now() - returnAt} ms for both)`,
        };
      },
    });
  }, 240_000);
});
