/**
 * Scenario 7: node 3's data directory on a small tmpfs (test/helpers/small-disk.ts), filled under
 * load with a file until its journal writes fail, then the file deleted. Promise under
 * `replicated` (R=3, W=2): the full node refuses the writes it cannot store with
 * ERR_STORAGE_FULL (never an acknowledgement it could not keep), the cluster keeps serving every
 * key through nodes 1 and 2 while node 3's disk is full, and once space returns node 3 serves
 * again; nothing acknowledged lost or applied twice, finals agree through all three, I1 holds.
 * Mounting needs root: without it the scenario is skipped with a `SKIPPED …` warning, and fails
 * under CI=true like the other chaos files.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { partitionOf } from '../../src/replication/partition-table.ts';
import { type CallError, CounterGateway } from '../helpers/counter-gateway.ts';
import { CLIENT_TIMEOUT_MS, getJson, NOT_APPLIED } from '../helpers/process-cluster.ts';
import { eventually } from '../helpers/processes.ts';
import { SmallDisk } from '../helpers/small-disk.ts';
import type { ChaosNode } from './chaos-cluster.ts';
import { errorsSince, recovered, runScenario } from './scenario.ts';
import type { Workload } from './workload.ts';

const FULL = 3;
/** Room for LMDB's file and its first writes before the filler takes the rest. */
const DISK_SIZE = '16m';
/** What the filler leaves free: less than a few journal writes need. */
const LEAVE_BYTES = 16 * 1024;

/**
 * Whether this machine can mount a tmpfs at all, asked before any node starts: skips `test`
 * loudly through `skip` when not (SmallDisk.require, which fails instead under CI=true).
 */
function diskAvailable(skip: (note: string) => void, test: string): boolean {
  const at = mkdtempSync(join(tmpdir(), 'troupe-chaos-mount-probe-'));
  const probe = new SmallDisk(at, '1m').mount();
  try {
    return probe.require(skip, test);
  } finally {
    probe.unmount();
    rmSync(at, { recursive: true, force: true });
  }
}

/** The last `n` of each node's lines in `ChaosCluster.linesAbout`'s text (`  node <id>: …`), cut to 400 characters. */
function lastLinesPerNode(text: string, n: number): string {
  const byNode = new Map<string, string[]>();
  for (const line of text.split('\n').filter(Boolean)) {
    const id = /^\s*node (\d+):/.exec(line)?.[1] ?? '?';
    byNode.set(id, [...(byNode.get(id) ?? []), line.slice(0, 400)]);
  }
  return [...byNode.values()].flatMap((lines) => lines.slice(-n)).join('\n');
}

/** Operations of the load (counters and carts) refused with ERR_STORAGE_FULL since `since`. */
function storageFullSince(load: Workload, since: number): number {
  return [...load.history.ops, ...load.cartOps].filter((op) => op.start >= since && op.error === 'ERR_STORAGE_FULL').length;
}

const ledBy = async (n: ChaosNode) =>
  new Set(
    (await getJson<{ partitions: Array<{ p: number; role: string; ready: boolean }> }>(n.url + '/cluster/partitions', 2_000)).partitions
      .filter((r) => r.role === 'primary' && r.ready)
      .map((r) => r.p),
  );

describe('scenario 7: disk full on one node', () => {
  it(`node ${FULL}'s data directory fills up under load, then space returns`, async (ctx) => {
    if (!diskAvailable((note) => ctx.skip(note), 'test/chaos/disk-full.chaos.ts')) return;
    let disk: SmallDisk | undefined;
    await runScenario({
      name: '7 disk full on one node',
      fault: `node ${FULL}'s data directory on a ${DISK_SIZE} tmpfs, filled to ${LEAVE_BYTES / 1024} KiB free until it refuses a write; the filler deleted`,
      criterion: `node ${FULL} refuses with ERR_STORAGE_FULL while full and every member shows it cordoned, every key served through nodes 1 and 2 meanwhile, node ${FULL} serves again and is uncordoned once space returns, lost 0, duplicated 0, I1 holds`,
      ids: [1, 2, FULL],
      workload: { prefix: 'd7', counterKeys: 60, counterClients: 6, carts: 20, cartClients: 2 },
      beforeStart(cluster) {
        disk = new SmallDisk(cluster.dirOf(FULL), DISK_SIZE).mount();
      },
      cleanup() {
        // The node still holds its LMDB files open here: SmallDisk detaches lazily then.
        disk?.unmount();
      },
      async inject({ cluster, load }) {
        const full = cluster.node(FULL);
        const others = [cluster.node(1), cluster.node(2)];
        const violations: string[] = [];
        // A failed deadline below is recorded, not thrown: the line is still reported with its figures.
        const within = <T>(what: Promise<T>) => what.catch((e: Error) => (violations.push(e.message), null));
        // Keys whose partitions node 3 leads: its own journal must take their writes first.
        const led = await ledBy(full);
        const ownKeys = load.counterKeys.filter((k) => led.has(partitionOf(k)));
        const targets = ownKeys.length > 0 ? ownKeys : load.counterKeys;

        const filledAt = Date.now();
        disk!.fill(LEAVE_BYTES);
        // Increments through node 3 (recorded in the history like the load's) until one is
        // refused for want of space.
        const viaFull = new CounterGateway(full.url, { maxSockets: 4, timeoutMs: CLIENT_TIMEOUT_MS });
        const seen = new Map<string, number>();
        let turn = 0;
        const refusedMs = await within(
          eventually(
            async () => {
              const key = targets[turn++ % targets.length]!;
              let code = 'ok';
              await load.history.incr(
                key,
                () => viaFull.call(key, 'incr').catch((e: CallError) => ((code = e.code), Promise.reject(e))),
                (e) => NOT_APPLIED.has((e as CallError).code),
              );
              seen.set(code, (seen.get(code) ?? 0) + 1);
              // The load's own writes through node 3 may meet the first refusal; node 3 then
              // cordons itself at once and forwards the rest, so later probes are answered ok.
              return code === 'ERR_STORAGE_FULL' || storageFullSince(load, filledAt) > 0;
            },
            30_000,
            () =>
              `node ${FULL} never refused a write with ERR_STORAGE_FULL once its disk was full; its answers: ${JSON.stringify([...seen])}`,
          ),
        );
        viaFull.destroy();

        // Node 3 cordons itself (src/node/storage-guard.ts): every member shows it so, still alive.
        const cordoned = (on: boolean) => async () =>
          (await Promise.all([...others, full].map((n) => getJson<{ members: Array<{ id: number; status: string; cordoned?: true }> }>(n.url + '/cluster/members', 2_000)))).every((v) =>
            v.members.some((m) => m.id === FULL && m.status === 'alive' && (m.cordoned === true) === on),
          );
        const cordonStart = Date.now();
        const cordonedMs = await within(eventually(cordoned(true), 10_000, () => `node ${FULL} not shown cordoned (and alive) by every member within 10 s`).then(() => Date.now() - cordonStart));

        // While node 3's disk stays full, every key is acknowledged again through nodes 1 and 2.
        const fullSince = Date.now();
        const servedMs = await within(recovered(load, fullSince, 30_000, { urls: others.map((n) => n.url) }));
        if (servedMs === null) {
          // Evidence for the report: what every node logged about the first key left unserved.
          const stuck = load.counterKeys.find((k) => violations.at(-1)!.includes(`${k} [`));
          if (stuck !== undefined)
            console.log(
              `EVIDENCE ${stuck} (partition ${partitionOf(stuck)}), each node's last lines about it:\n${lastLinesPerNode(cluster.linesAbout(partitionOf(stuck)), 4)}`,
            );
        }
        const whileFull = errorsSince(load, filledAt);

        // Space returns: every key acknowledged again through node 3's own gateway.
        disk!.release();
        const releasedAt = Date.now();
        const recoverMs = await within(recovered(load, releasedAt, 30_000, { urls: [full.url] }));
        const uncordonedMs = await within(eventually(cordoned(false), 10_000, () => `node ${FULL} still cordoned 10 s after space returned`).then(() => Date.now() - releasedAt));
        return {
          recoverMs,
          violations,
          notes:
            `node ${FULL} led ${ownKeys.length} keys; first ERR_STORAGE_FULL ${refusedMs ?? '—'} ms after the fill (answers to the probes through it: ${JSON.stringify(Object.fromEntries(seen))}; the load's refusals: ${storageFullSince(load, filledAt)}); ` +
            `cordoned everywhere ${cordonedMs ?? '—'} ms after its first refusal, uncordoned ${uncordonedMs ?? '—'} ms after space returned; ` +
            `errors while full: ${whileFull}; every key acknowledged through 1 and 2 ${servedMs === null ? 'NOT within 30 s' : `${servedMs} ms after`} while its disk stayed full; ` +
            `recovered = space returned to every key acknowledged through node ${FULL}`,
        };
      },
    });
  }, 240_000);
});
