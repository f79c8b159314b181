/**
 * Failure detection between real processes: three `troupe start` nodes on 127.0.0.1 (lan
 * membership profile), node 3 SIGKILLed `--kills` times (default 12) and restarted each time
 * with the same id and address. Per kill: the time from the SIGKILL to the moment each survivor
 * marks node 3 down. Preferably read from the survivor's own `member down` log line (pino's
 * `time`, the same wall clock the kill is stamped with), so neither polling nor pipe latency is
 * in it; but a survivor that hears "down" by gossip before its own suspicion timer fires logs
 * nothing, so each survivor's `GET /cluster/members` is also polled every 20 ms and the first
 * poll that shows it down counts (late by at most one poll and one HTTP round trip; how many
 * figures came from polling is printed). Reports p50/p99/max of "both survivors have it down"
 * and of each survivor.
 *
 * Reference (the "baseline" of a detection bench): the profile's theoretical bound,
 * `downBound(lan)` = probeInterval + probeTimeout + indirectProbeTimeout + suspicionTimeout +
 * 3 ticks = 1.46 s. The ratio p99 / bound shows how much of the bound real processes use; the
 * bound itself is asserted exactly on the simulated clock (test/cluster/detection-bound.test.ts).
 * The bench fails (exit 1) if a kill is not detected by both survivors within 10 s.
 *
 *   node --import tsx bench/failure-detection.ts [--kills 12]     # ~1 min (≈ 4 s per kill)
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { downBound, LAN_PROFILE } from '../src/cluster/membership-profiles.ts';
import { check, fixed, machineLine, main, now, percentile, printResult, row } from './lib.ts';
import { exited, startNode, stopAll, type BenchNode, type LogLine } from './node-cluster.ts';

const { values: args } = parseArgs({ options: { kills: { type: 'string', default: '12' } } });
const KILLS = Number(args.kills);
check(Number.isInteger(KILLS) && KILLS >= 1, '--kills must be a positive integer');
const VICTIM = 3;
const DETECT_DEADLINE_MS = 10_000;
const REJOIN_DEADLINE_MS = 30_000;
const POLL_MS = 20;
const BOUND_MS = downBound(LAN_PROFILE);

const secret = randomBytes(32).toString('base64url');

/** `member down` log lines seen, by observer: [member id, wall-clock ms]. */
const downLines: { observer: number; member: number; time: number }[] = [];

/** Node `id` without a data directory, its `member down` lines (info) recorded in `downLines`. */
async function startWatched(id: number, seed: string | undefined, port = 0): Promise<BenchNode> {
  const onLine = (l: LogLine) => {
    if (l.msg !== 'member down') return;
    const { member } = l.rec;
    if (typeof member === 'number' && Number.isFinite(l.time)) downLines.push({ observer: l.node, member, time: l.time });
  };
  const node = await startNode({ id, secret, port, ...(seed !== undefined && { seed }), onLine });
  check(typeof node.cluster === 'string', `node ${id}: ready without a cluster address`);
  return node;
}

type Member = { id: number; status: string };
async function members(url: string): Promise<Member[]> {
  const res = await fetch(url + '/cluster/members', { signal: AbortSignal.timeout(2_000) });
  return ((await res.json()) as { members: Member[] }).members;
}

/** Polls `ok` every POLL_MS until it holds; throws with `what` at the deadline. */
async function until(ok: () => Promise<boolean> | boolean, deadlineMs: number, what: string): Promise<void> {
  const end = now() + deadlineMs;
  while (now() < end) {
    if (await Promise.resolve(ok()).catch(() => false)) return;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`not within ${deadlineMs} ms: ${what}`);
}

const allAlive = (nodes: BenchNode[]) => async () =>
  (await Promise.all(nodes.map((n) => members(n.url)))).every((ms) => ms.filter((m) => m.status === 'alive').length === nodes.length);

main(async () => {
  console.log(`failure-detection: 3 nodes, node ${VICTIM} SIGKILLed ${KILLS}× (lan profile, bound ${BOUND_MS} ms), ${machineLine()}`);
  const both: number[] = [];
  let fromPolling = 0;
  const perObserver = new Map<number, number[]>([
    [1, []],
    [2, []],
  ]);
  try {
    const n1 = await startWatched(1, undefined);
    const [n2, n3] = await Promise.all([startWatched(2, n1.cluster), startWatched(VICTIM, n1.cluster)]);
    const nodes = [n1, n2, n3];
    const victimPort = Number(n3.cluster!.split(':').pop());
    await until(allAlive(nodes), REJOIN_DEADLINE_MS, 'three alive members everywhere');

    for (let k = 1; k <= KILLS; k++) {
      const victim = nodes[2]!;
      const seenBefore = downLines.length;
      const killedAt = Date.now(); // the clock pino stamps `time` with
      victim.child.kill('SIGKILL');
      const polledAt = new Map<number, number>();
      const logged = (o: number) => downLines.slice(seenBefore).find((l) => l.observer === o && l.member === VICTIM)?.time;
      await until(
        async () => {
          for (const n of nodes.slice(0, 2)) {
            if (polledAt.has(n.id) || logged(n.id) !== undefined) continue;
            if ((await members(n.url)).find((m) => m.id === VICTIM)?.status === 'down') polledAt.set(n.id, Date.now());
          }
          return [1, 2].every((o) => logged(o) !== undefined || polledAt.has(o));
        },
        DETECT_DEADLINE_MS,
        `kill ${k}: nodes 1 and 2 mark node ${VICTIM} down`,
      );
      // A log line may still be in the pipe when the poll saw "down": it is the better figure.
      const times = [1, 2].map((o) => (logged(o) ?? polledAt.get(o)!) - killedAt);
      fromPolling += [1, 2].filter((o) => logged(o) === undefined).length;
      times.forEach((t, i) => perObserver.get(i + 1)!.push(t));
      both.push(Math.max(...times));
      console.log(row(`  kill ${String(k).padStart(2)}`, `node 1 ${times[0]} ms`, `node 2 ${times[1]} ms`));

      // Restart with the same id and address; wait until everyone sees three alive members again.
      await exited(victim.child);
      nodes[2] = await startWatched(VICTIM, n1.cluster, victimPort);
      await until(allAlive(nodes), REJOIN_DEADLINE_MS, `kill ${k}: node ${VICTIM} alive again everywhere`);
    }
  } finally {
    await stopAll();
  }

  const sorted = (xs: number[]) => Float64Array.from(xs).sort();
  const s = sorted(both);
  const p50 = percentile(s, 50);
  const p99 = percentile(s, 99);
  const max = s[s.length - 1]!;
  const within = both.filter((t) => t <= BOUND_MS).length;
  console.log('');
  console.log(row('kill → both survivors mark it down', `p50 ${p50} ms`, `p99 ${p99} ms`, `max ${max} ms`, `(${both.length} kills)`));
  for (const [o, xs] of perObserver) {
    const so = sorted(xs);
    console.log(row(`  node ${o} alone`, `p50 ${percentile(so, 50)} ms`, `p99 ${percentile(so, 99)} ms`));
  }
  console.log(row('reference: lan downBound', `${BOUND_MS} ms`));
  console.log(row('ratio p50 / bound, p99 / bound', fixed(p50 / BOUND_MS, 3), fixed(p99 / BOUND_MS, 3)));
  console.log(row('kills detected within the bound', `${within} of ${both.length}`));
  console.log(row('figures from polling (no log line)', `${fromPolling} of ${2 * both.length}`));
  console.log(`${machineLine()}; wall-clock figures are noisy on a shared 2-core box`);
  printResult({
    bench: 'failure-detection',
    kills: both.length,
    p50Ms: p50,
    p99Ms: p99,
    maxMs: max,
    boundMs: BOUND_MS,
    ratioP50: Number((p50 / BOUND_MS).toFixed(3)),
    ratioP99: Number((p99 / BOUND_MS).toFixed(3)),
    withinBound: within,
    fromPolling,
    pass: within === both.length,
  });
});
