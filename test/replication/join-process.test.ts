/**
 * A fourth node joins three real `troupe` processes under load (issue 7: "Join a fourth node …
 * under load: the same checks, and about 1/N of actors moved"), checked through the clients
 * (Jepsen's way) and the nodes' own logs: 8 clients increment 100 counters through every
 * gateway, the joiner's gateway included once it is up; afterwards the counts read through all
 * four gateways agree and pass the history checker, about 1/4 of the partitions changed
 * primary — all to the joiner, which leads them now (`/cluster/partitions`) — and I1 holds over
 * the `primary in epoch` lines every node logged.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { HashRing } from '../../src/cluster/ring.ts';
import { PartitionTable, partitionOf, PARTITIONS } from '../../src/replication/partition-table.ts';
import { checkCounters, checkEpochClaims, History, servedAgain } from '../helpers/history.ts';
import { aliveEverywhere, getJson, ProcessCluster, readCounts, runCounterLoad } from '../helpers/process-cluster.ts';
import { eventually } from '../helpers/processes.ts';

/** JSON info logs on stdout, read for the nodes' epoch claims. */
const cluster = new ProcessCluster('join', { logLevel: 'info', jsonLogs: true, stderr: 'tail' });

const CLIENTS = 8;
const KEYS = Array.from({ length: 100 }, (_, i) => `jp-${i}`);
const JOINER = 4;
/** Acknowledged increments before the join, and after it once every key was served again. */
const ACKED_BEFORE = 300;
const ACKED_AFTER = 300;

const gatewayTo = (url: string) => cluster.gateway(url, { maxSockets: CLIENTS });

/** The proposed primaries for an up set, as every node's router computes them (positions depend on ids only). */
const tableOf = (ids: readonly number[]) => new PartitionTable(new HashRing(ids.map((id) => ({ id, address: `node:${id}` }))));

afterAll(() => cluster.stop(), 20_000);

describe('a fourth troupe process joins three under load', () => {
  it('nothing acknowledged is lost, the four gateways agree, about 1/4 of the partitions move to the joiner, and I1 holds in the logs', async () => {
    const nodes = await cluster.startAll([1, 2, 3]);

    const history = new History();
    const gateways = nodes.map((n) => gatewayTo(n.url));
    const load = runCounterLoad({ gateways, history, keys: KEYS, clients: CLIENTS });
    const acked = () => history.counts().ok;
    let joinAt = 0;
    let upIn = 0;
    let ackedAtJoin = 0;
    try {
      await load.until(
        () => acked() >= ACKED_BEFORE,
        15_000,
        () => `only ${acked()} increments acknowledged before the join`,
      );
      ackedAtJoin = acked();
      joinAt = Date.now();
      nodes.push(await cluster.start(JOINER, { seeds: [nodes[0]!.cluster] }));
      upIn =
        Date.now() -
        joinAt +
        (await eventually(
          () => aliveEverywhere(nodes),
          10_000,
          () => `node ${JOINER} alive on every node`,
        ));
      gateways.push(gatewayTo(nodes[3]!.url));
      await load.until(
        () => servedAgain(history, joinAt + upIn, KEYS).missing.length === 0 && acked() - ackedAtJoin >= ACKED_AFTER,
        15_000,
        () =>
          `after the join: ${acked() - ackedAtJoin} acknowledged; keys not served again: ${servedAgain(history, joinAt + upIn, KEYS).missing.join(', ') || 'none'}`,
      );
    } finally {
      await load.stop();
    }

    const reads = [];
    for (const g of gateways) reads.push(await readCounts(g, KEYS, 10_000));
    for (const [i, r] of reads.entries())
      expect(Object.fromEntries(r), `counts through node ${i + 1}`).toEqual(Object.fromEntries(reads[0]!));
    expect(checkCounters(history, reads[0]!).slice(0, 20)).toEqual([]);
    expect(history.ops.filter((o) => o.outcome === 'ok' && o.start > joinAt + upIn).length).toBeGreaterThanOrEqual(ACKED_AFTER);

    // About 1/N of the partitions move, all to the joiner, and the joiner leads the test's moved ones now.
    const three = tableOf([1, 2, 3]);
    const four = tableOf([1, 2, 3, JOINER]);
    const moved = Array.from({ length: PARTITIONS }, (_, p) => p).filter((p) => three.primaryOf(p) !== four.primaryOf(p));
    expect(moved.filter((p) => four.primaryOf(p) !== JOINER)).toEqual([]);
    expect(moved.length / PARTITIONS).toBeGreaterThan(0.2);
    expect(moved.length / PARTITIONS).toBeLessThan(0.3);
    const used = [...new Set(KEYS.map((k) => partitionOf(k)))];
    const movedUsed = used.filter((p) => moved.includes(p));
    const view = await getJson<{ partitions: Array<{ p: number; role: string; ready: boolean }> }>(nodes[3]!.url + '/cluster/partitions');
    const ledByJoiner = new Set(view.partitions.filter((d) => d.role === 'primary' && d.ready).map((d) => d.p));
    expect(movedUsed.filter((p) => !ledByJoiner.has(p))).toEqual([]);
    expect([...ledByJoiner].filter((p) => four.primaryOf(p) !== JOINER)).toEqual([]);

    // I1 over every node's log, in the order the claims were made (pino's ms timestamps; ties keep each node's order).
    const claims = nodes.flatMap((n) => n.claims).sort((a, b) => a.at - b.at);
    expect(claims.filter((cl) => cl.node === JOINER).length).toBeGreaterThanOrEqual(movedUsed.length);
    expect(checkEpochClaims(claims, { crossNode: false })).toEqual([]);
    const { latestMs } = servedAgain(history, joinAt + upIn, KEYS);
    const counts = history.counts();
    console.info(
      `join (processes): node ${JOINER} alive everywhere ${upIn} ms after its start; every key served again ${latestMs} ms after that; ` +
        `${moved.length}/${PARTITIONS} partitions moved (${movedUsed.length}/${used.length} of the test's); ${counts.ok} acknowledged (${counts.ok - ackedAtJoin} after the join), ${counts.failed} failed, ${counts.unknown} unknown`,
    );
  }, 45_000);
});
