/**
 * Scenario 4: network partitions made with nftables, the nodes each in a network namespace of
 * their own (net-lab.ts), under load through all three gateways:
 *   4a  {1,2}|{3} two-way for 10 s, then heal;
 *   4b  the same cut flapping: on 3 s, off 3 s, for ~20 s, then heal;
 *   4c  5% random loss both ways on the link 1–3 (`numgen random mod 100 < 5`) for 15 s;
 *   4d  one-way: node 3 deaf to {1,2} (their connections to it reset, its own to them intact).
 * Promise (replicated, R=3, W=2): nothing acknowledged is lost or applied twice on either side
 * of a cut, at most one primary per partition and epoch (I1), node 3's keys are served by the
 * majority while it is cut off, and after the heal every key is served through every node.
 * Each function runs one scenario in a fresh lab (created here, destroyed by `destroyLabs`).
 */
import { getJson } from '../helpers/process-cluster.ts';
import { eventually } from '../helpers/processes.ts';
import type { ChaosCluster } from './chaos-cluster.ts';
import { NetLab } from './net-lab.ts';
import { errorsSince, healed, recovered, runScenario } from './scenario.ts';

export const statusOf = async (cluster: ChaosCluster, observer: number, id: number) =>
  (await getJson<{ members: Array<{ id: number; status: string }> }>(cluster.node(observer).url + '/cluster/members', 2_000)).members.find((m) => m.id === id)?.status;
/** Schedules the fault's own timing (how long a cut lasts) — not a wait for an event. */
export const hold = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const workload = (prefix: string) => ({ prefix, counterKeys: 60, counterClients: 8, carts: 20, cartClients: 2 });
const CRITERION = 'lost 0, duplicated 0, I1 holds; node 3 marked down and its keys served by {1,2} while cut; after the heal every key served through every node';

const labs: NetLab[] = [];
export const lab = () => {
  const l = new NetLab(3).create();
  labs.push(l);
  return l;
};

/** Deletes every lab made so far; returns what could not be removed (expected empty). */
export function destroyLabs(): string[] {
  for (const l of labs) l.destroy();
  return labs.splice(0).flatMap((l) => l.leftovers());
}

/** Cuts {1,2}|{3}; resolves once 1 and 2 see 3 down and every key was acknowledged again through them. */
async function cutOff(cluster: ChaosCluster, l: NetLab, load: Parameters<typeof recovered>[0]) {
    const at = Date.now();
    l.cut(3, [1, 2]);
    const downMs = await eventually(
      async () => (await statusOf(cluster, 1, 3)) === 'down' && (await statusOf(cluster, 2, 3)) === 'down',
      15_000,
      'node 3 down at nodes 1 and 2',
    );
    const servedMs = await recovered(load, at, 30_000, { urls: [cluster.node(1).url, cluster.node(2).url] });
    return { at, downMs, servedMs };
  }

export async function twoWayPartition(prefix = 'p4a'): Promise<void> {
    const l = lab();
    await runScenario({
      name: '4a partition {1,2}|{3}',
      fault: 'nft drops every node-to-node packet between {1,2} and 3 (both ways) until node 3 is down and its keys served by {1,2}, then heal',
      criterion: CRITERION,
      ids: [1, 2, 3],
      lab: l,
      workload: workload(prefix),
      async inject({ cluster, load }) {
        const { at, downMs, servedMs } = await cutOff(cluster, l, load);
        const dropped = l.dropped(3);
        const healAt = Date.now();
        l.heal(3);
        const { aliveMs, recoverMs } = await healed(cluster, load, healAt);
        return {
          recoverMs,
          notes: `node 3 down at 1 and 2 ${downMs} ms after the cut, every key served by {1,2} ${servedMs} ms after it; ${dropped} packets dropped; all alive ${aliveMs} ms after the heal; errors since the cut: ${errorsSince(load, at)}`,
        };
      },
    });
}

export async function flappingPartition(): Promise<void> {
    const l = lab();
    await runScenario({
      name: '4b flapping partition',
      fault: 'the {1,2}|{3} cut on for 3 s, off for 3 s, for ~20 s, then heal',
      criterion: 'lost 0, duplicated 0, I1 holds; after the last heal every key served through every node',
      ids: [1, 2, 3],
      lab: l,
      workload: workload('p4b'),
      async inject({ cluster, load }) {
        const start = Date.now();
        let flips = 0;
        while (Date.now() - start < 20_000) {
          l.cut(3, [1, 2]);
          await hold(3_000);
          l.heal(3);
          await hold(3_000);
          flips++;
        }
        const healAt = Date.now();
        const { aliveMs, recoverMs } = await healed(cluster, load, healAt);
        return { recoverMs, notes: `${flips} cuts; all alive ${aliveMs} ms after the last heal; errors: ${errorsSince(load, start)}` };
      },
    });
}

export async function lossyLink(): Promise<void> {
    const l = lab();
    await runScenario({
      name: '4c 5% loss on 1–3',
      fault: 'nft `numgen random mod 100 < 5` drops 5% of node-to-node packets between 1 and 3, both ways, for 15 s',
      criterion: 'lost 0, duplicated 0, I1 holds; every key served through every node after',
      ids: [1, 2, 3],
      lab: l,
      workload: workload('p4c'),
      async inject({ cluster, load }) {
        const start = Date.now();
        const ackedAt = load.acknowledged();
        l.loss(3, 1, 5);
        await hold(15_000);
        const dropped = l.dropped(3);
        const acked = load.acknowledged() - ackedAt;
        l.heal(3);
        const healAt = Date.now();
        const { recoverMs } = await healed(cluster, load, healAt);
        return { recoverMs, notes: `${acked} acknowledged during the 15 s of loss; ${dropped} packets dropped; errors: ${errorsSince(load, start)}` };
      },
    });
}

/**
 * 4d: node 3 hears nothing from {1,2} but can still send to them. TCP needs both directions, so
 * this is not a packet filter one way: it is the transport's own asymmetry — data flows only
 * from a connection's client to its server — with every connection from 1 and 2 to node 3 reset
 * (NetLab.deafen), established and new, while node 3's connections to them carry on.
 */
export async function oneWayPartition(): Promise<void> {
  const l = lab();
  await runScenario({
    name: '4d one-way partition 3 ↛ hears {1,2}',
    fault:
      'nft in ns3 answers every node-to-node packet from 1 and 2 with a TCP reset (their links to 3, open and new): 3 sends to {1,2} but hears nothing from them, until 3 is down at 1 and 2 and its keys served by {1,2}, then heal',
    criterion: CRITERION,
    ids: [1, 2, 3],
    lab: l,
    workload: workload('p4d'),
    async inject({ cluster, load }) {
      const at = Date.now();
      l.deafen(3, [1, 2]);
      const seen = { at1: '?', at2: '?' };
      const downMs = await eventually(
        async () => {
          seen.at1 = String(await statusOf(cluster, 1, 3));
          seen.at2 = String(await statusOf(cluster, 2, 3));
          return seen.at1 === 'down' && seen.at2 === 'down';
        },
        15_000,
        () => `node 3 down at nodes 1 and 2 (last seen: ${seen.at1} at 1, ${seen.at2} at 2)\n${l.rules(3)}`,
      );
      const servedMs = await recovered(load, at, 30_000, { urls: [cluster.node(1).url, cluster.node(2).url] });
      // What node 3 made of it: it still hears nothing, so it should see 1 and 2 down too.
      const seenBy3 = [await statusOf(cluster, 3, 1), await statusOf(cluster, 3, 2)].join('/');
      const resets = l.dropped(3);
      const sent = l.counted(3, 'sent');
      const acked = l.counted(3, 'acked');
      const healAt = Date.now();
      l.heal(3);
      const { aliveMs, recoverMs } = await healed(cluster, load, healAt);
      return {
        recoverMs,
        notes: `node 3 down at 1 and 2 ${downMs} ms after the cut (3 saw 1/2 as ${seenBy3}), every key served by {1,2} ${servedMs} ms after it; ${resets} packets from 1 and 2 answered with a reset while node 3's own links carried ${sent} packets to them and ${acked} back; all alive ${aliveMs} ms after the heal; errors since the cut: ${errorsSince(load, at)}`,
      };
    },
  });
}
