/**
 * Scenario 13: a soak. `npm run test:chaos -- --soak <seconds>` (CHAOS_SOAK_SECONDS; skipped
 * without it) runs three nodes under load for that long with random faults drawn from a printed
 * seed (CHAOS_SOAK_SEED replays a schedule), one every 20–40 s, each healed — and every key
 * served again through every node — before the next:
 *   kill       SIGKILL node 2 or 3, restart it on its data directory;
 *   pause      SIGSTOP any node until the others mark it down (≥ 4 s), then SIGCONT;
 *   partition  (root with `ip netns` and `nft` only) cut any node from the other two with nft
 *              until they mark it down (≥ 3 s), then heal.
 * Node 1 is never killed: it lives the whole run, so whatever a node accumulates from the faults
 * around it (peers' incarnations, connections, handoffs) shows in its RSS and fds. Every 5 s
 * each live node's VmRSS and open fds are read from /proc, and the bytes it logged so far; the
 * pass rule over them (soak-trend.ts): after the warm-up third, nothing trends up — plus lost 0,
 * duplicated 0, I1.
 */
import { randomInt } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'vitest';
import { rng } from '../replication/model.ts';
import { checkEpochClaims } from '../helpers/history.ts';
import { getJson } from '../helpers/process-cluster.ts';
import { eventually } from '../helpers/processes.ts';
import type { ChaosCluster } from './chaos-cluster.ts';
import { labUnavailable, NetLab } from './net-lab.ts';
import { errorsSince, recovered, runScenario } from './scenario.ts';
import { soakRule, soakTrend, type SoakSample } from './soak-trend.ts';
import type { Workload } from './workload.ts';

const SECONDS = Number(process.env.CHAOS_SOAK_SECONDS ?? 0);
const SEED = process.env.CHAOS_SOAK_SEED !== undefined ? Number(process.env.CHAOS_SOAK_SEED) : randomInt(1, 2 ** 31);
const IDS = [1, 2, 3];
const soakDefaults = {
  gapMs: [20_000, 40_000], // from one fault's start to the next's, drawn uniformly
  sampleEveryMs: 5_000, // /proc and log bytes, per live node
  pauseAtLeastMs: 4_000, // SIGSTOP: past the lan profile's detection bound (~1.5 s) with room
  cutAtLeastMs: 3_000, // nft cut: likewise
  detectMs: 15_000, // deadline for the others to mark the victim down
  recoverMs: 30_000, // deadline for every key to be acknowledged again
  lastFaultBeforeEndMs: 15_000, // no fault starts later than this before the end
};

type FaultKind = 'kill' | 'pause' | 'partition';

interface FaultRecord {
  kind: FaultKind;
  victim: number;
  /** Seconds into the soak. */
  atS: number;
  /** From the fault to every key acknowledged again through the other nodes, ms. */
  recoverMs: number;
  /** From the heal (restart, SIGCONT, flush) to every key acknowledged again through every node, ms. */
  settleMs: number;
}

/** Schedules the soak's own timing (the gap between faults, how long a fault lasts) — not a wait for an event. */
const hold = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

const statusAt = async (cluster: ChaosCluster, observer: number, id: number) =>
  (await getJson<{ members: Array<{ id: number; status: string }> }>(cluster.node(observer).url + '/cluster/members', 2_000)).members.find(
    (m) => m.id === id,
  )?.status;

/** Until every other node marks `victim` down; ms taken. */
const downAtOthers = (cluster: ChaosCluster, victim: number) =>
  eventually(
    async () => (await Promise.all(IDS.filter((i) => i !== victim).map((o) => statusAt(cluster, o, victim)))).every((s) => s === 'down'),
    soakDefaults.detectMs,
    `node ${victim} down at the others`,
  );

/** One fault, healed, and every key served again through every node before it returns. */
async function runFault(
  kind: FaultKind,
  victim: number,
  cluster: ChaosCluster,
  load: Workload,
  lab: NetLab | undefined,
): Promise<Omit<FaultRecord, 'atS'>> {
  const others = () =>
    cluster
      .live()
      .filter((n) => n.id !== victim)
      .map((n) => n.url);
  const at = Date.now();
  let recoverMs: number;
  if (kind === 'kill') {
    await cluster.kill(victim);
    recoverMs = await recovered(load, at, soakDefaults.recoverMs, { urls: others() });
    const before = cluster.node(victim).url;
    const again = await cluster.restart(victim);
    // On loopback the gateway port is new; in a lab the address stays.
    if (again.url !== before) load.addGateway(again.url);
  } else if (kind === 'pause') {
    cluster.signal(victim, 'SIGSTOP');
    try {
      await downAtOthers(cluster, victim);
      recoverMs = await recovered(load, at, soakDefaults.recoverMs, { urls: others() });
      await hold(at + soakDefaults.pauseAtLeastMs - Date.now());
    } finally {
      cluster.signal(victim, 'SIGCONT');
    }
  } else {
    lab!.cut(
      victim,
      IDS.filter((i) => i !== victim),
    );
    try {
      await downAtOthers(cluster, victim);
      recoverMs = await recovered(load, at, soakDefaults.recoverMs, { urls: others() });
      await hold(at + soakDefaults.cutAtLeastMs - Date.now());
    } finally {
      lab!.heal(victim);
    }
  }
  const healedAt = Date.now();
  await cluster.waitAllAlive(soakDefaults.recoverMs);
  await recovered(load, healedAt, soakDefaults.recoverMs, { urls: cluster.live().map((n) => n.url) });
  return { kind, victim, recoverMs, settleMs: Date.now() - healedAt };
}

/** Reads each live node's /proc entries and log bytes. */
function sampleNodes(cluster: ChaosCluster, into: SoakSample[]): void {
  const at = Date.now();
  for (const n of cluster.live()) {
    try {
      const status = readFileSync(`/proc/${n.pid}/status`, 'utf8');
      const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? Number.NaN);
      into.push({
        at,
        id: n.id,
        pid: n.pid,
        rssKb,
        fds: readdirSync(`/proc/${n.pid}/fd`).length,
        logBytes: cluster.logBytes.get(n.id) ?? 0,
      });
    } catch {
      // Exited between live() and the read (a kill in progress): the next sample has its successor.
    }
  }
}

const mib = (kb: number) => Math.round(kb / 1024);

/** For up to 3 partitions whose epoch claims break I1's order: every line each node logged about them. */
function printEpochEvidence(cluster: ChaosCluster): void {
  const bad = checkEpochClaims([...cluster.claims].sort((a, b) => a.at - b.at), { crossNode: false });
  const partitions = [...new Set(bad.map((v) => Number(/^partition (\d+)/.exec(v)?.[1])))].slice(0, 3);
  for (const p of partitions) {
    const claims = cluster.claims
      .filter((c) => c.p === p)
      .map((c) => `  node ${c.node} at ${new Date(c.at).toISOString()}: (${c.epoch.term},${c.epoch.node}) from seq ${c.startSeq}`);
    console.log(`EVIDENCE partition ${p}: claims in arrival order\n${claims.join('\n')}\n${cluster.linesAbout(p)}`);
  }
}

describe.runIf(SECONDS > 0)(`scenario 13: soak for ${SECONDS} s with random faults`, () => {
  it(
    `three nodes under load, a random fault every 20–40 s (seed ${SEED})`,
    async () => {
      const labReason = labUnavailable();
      const lab = labReason === undefined ? new NetLab(3).create() : undefined;
      const kinds: FaultKind[] = lab ? ['kill', 'pause', 'partition'] : ['kill', 'pause'];
      console.log(
        `SOAK seed ${SEED}, ${SECONDS} s, faults: ${kinds.join(', ')}${lab ? '' : ` (no partitions: ${labReason})`}; ` +
          `replay: CHAOS_SOAK_SEED=${SEED} npm run test:chaos -- --soak ${SECONDS}`,
      );
      const random = rng(SEED);
      const samples: SoakSample[] = [];
      const faults: FaultRecord[] = [];
      let window = { start: 0, end: 0 };
      try {
        await runScenario({
          name: `13 soak ${SECONDS} s`,
          fault: `every 20–40 s (seed ${SEED}) one of: ${kinds.map((k) => ({ kill: 'SIGKILL node 2 or 3 + restart on its data directory', pause: 'SIGSTOP any node past the detection bound + SIGCONT', partition: 'nft cut of any node from the other two until marked down, then heal' })[k]).join('; ')}; each healed before the next`,
          criterion: `after the warm-up third, per process: median RSS of the last third ≤ ${soakRule.ratio}× the second's + ${mib(soakRule.rssSlackKb)} MiB, fds ≤ ${soakRule.ratio}× + ${soakRule.fdSlack}; per node log bytes/min of the last third ≤ ${soakRule.logRatio}× the second's + ${soakRule.logSlackPerMin / 1024} KiB, ≤ ${soakRule.logMaxPerMin / 1048576} MiB/min always; lost 0, duplicated 0, I1 holds`,
          ids: IDS,
          ...(lab && { lab }),
          cleanup: () => lab?.healAll(),
          workload: { prefix: 's13', counterKeys: 60, counterClients: 4, carts: 20, cartClients: 1, seed: SEED },
          // runScenario counts I1 violations; the lines behind them are printed here, while the cluster still runs.
          async after({ cluster }) {
            printEpochEvidence(cluster);
            return [];
          },
          async inject({ cluster, load }) {
            const start = Date.now();
            const end = start + SECONDS * 1000;
            window = { start, end };
            const sampler = setInterval(() => sampleNodes(cluster, samples), soakDefaults.sampleEveryMs);
            sampleNodes(cluster, samples);
            try {
              const [lo, hi] = soakDefaults.gapMs as [number, number];
              let next = start + lo + random() * (hi - lo);
              // Faults go on to the end: the last may be healed a little after it (outside the sampled windows).
              while (next < end - soakDefaults.lastFaultBeforeEndMs) {
                await hold(next - Date.now());
                const kind = kinds[Math.floor(random() * kinds.length)]!;
                const victim = kind === 'kill' ? 2 + Math.floor(random() * 2) : 1 + Math.floor(random() * 3);
                const atS = Math.round((Date.now() - start) / 1000);
                faults.push({ atS, ...(await runFault(kind, victim, cluster, load, lab)) });
                next = Math.max(Date.now(), start + atS * 1000 + lo + random() * (hi - lo));
              }
              await hold(end - Date.now());
              sampleNodes(cluster, samples);
            } finally {
              clearInterval(sampler);
            }
            const trend = soakTrend(samples, start, end);
            const count = (k: FaultKind) => faults.filter((f) => f.kind === k).length;
            return {
              recoverMs: Math.max(0, ...faults.map((f) => f.recoverMs)),
              violations: trend.violations,
              notes:
                `${faults.length} faults (${kinds.map((k) => `${k}×${count(k)}`).join(' ')}), seed ${SEED}; settled after each in ≤ ${Math.max(0, ...faults.map((f) => f.settleMs))} ms; ` +
                `median RSS MiB 2nd→3rd third: ${trend.processes.map((p) => `n${p.id} ${mib(p.rssKb[0])}→${mib(p.rssKb[1])}`).join(', ')}; ` +
                `fds: ${trend.processes.map((p) => `n${p.id} ${p.fds[0]}→${p.fds[1]}`).join(', ')}; ` +
                `log KiB/min by third: ${trend.logs.map((l) => `n${l.id} ${l.perMin.map((b) => Math.round(b / 1024)).join('/')}`).join(', ')}; ` +
                `errors: ${errorsSince(load, start)}`,
            };
          },
        });
      } finally {
        lab?.destroy();
        console.log(
          `SOAK faults (s into the run: kind victim, recover/settle ms): ${faults.map((f) => `${f.atS}: ${f.kind} ${f.victim} ${f.recoverMs}/${f.settleMs}`).join('; ')}`,
        );
        console.log(
          `SOAK samples (s, node, pid, RSS MiB, fds, log KiB): ${samples.map((s) => `${Math.round((s.at - window.start) / 1000)} n${s.id} ${s.pid} ${mib(s.rssKb)} ${s.fds} ${Math.round(s.logBytes / 1024)}`).join('; ')}`,
        );
      }
    },
    (SECONDS + 600) * 1000,
  );
});
