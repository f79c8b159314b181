/**
 * False suspicions and false downs of the failure detector under load (issue 7, order of work
 * step 3): three `troupe start` nodes on this machine (lan membership profile, replicated
 * durability, one worker each), none of which ever dies. Two phases of --seconds (default 30)
 * each, idle first (the baseline), then autocannon with 50 connections spread over all three
 * gateways (POST /actors/counter/<key>/incr over 3,000 keys).
 *
 * Counted per phase, from the nodes' own info log lines (JSON on stdout, pino's wall-clock time):
 * `member suspected` (this node's probe of another failed), `member down` (a suspicion expired
 * here), `refuted a rumour about this node` (a node heard it was suspected or down and bumped its
 * incarnation) and `event loop stalled` (the driver noticed its ticks arriving late). And from
 * `GET /cluster/members` on every node polled every 200 ms: how many times one node saw another
 * leave `alive` (a suspicion heard by gossip logs nothing where it is heard). Every one of these
 * is false: no node died. Reported with the load's req/s.
 *
 *   node --import tsx bench/false-down.ts [--seconds 30]
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { downBound, LAN_PROFILE } from '../src/cluster/membership-profiles.ts';
import { getJson, load, startCluster, stopAll, type BenchNode, type LoadResult, type LogLine } from './node-cluster.ts';
import { check, fixed, int, machineLine, main, now, printResult, row, sleep } from './lib.ts';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '30' } } });
const SECONDS = Number(args.seconds);
check(Number.isFinite(SECONDS) && SECONDS >= 1, '--seconds must be a number ≥ 1');
const CONNECTIONS = 50;
const KEYS = 3_000;
const POLL_MS = 200;
const WATCHED = [
  'member suspected',
  'member down',
  'refuted a rumour about this node',
  'event loop stalled; pending deadlines extended',
] as const;

interface Phase {
  name: string;
  from: number;
  to: number;
  /** Not-alive views seen by polling: observer → member → transitions out of alive. */
  polled: number;
  polledDown: number;
  load?: LoadResult;
}

main(async () => {
  console.log(
    `false-down: 3 nodes × 1 worker (lan profile: down bound ${downBound(LAN_PROFILE)} ms), ${SECONDS} s idle then ${SECONDS} s of autocannon ${CONNECTIONS} connections over all 3 gateways; ${machineLine()}`,
  );
  const lines: LogLine[] = [];
  const phases: Phase[] = [];
  let nodes: BenchNode[] = [];
  try {
    nodes = await startCluster(randomBytes(32).toString('base64url'), 'replicated', (l) => {
      if ((WATCHED as readonly string[]).includes(l.msg)) lines.push(l);
    });
    // Every node's view of every other, polled: transitions out of `alive` and into `down`.
    const last = new Map<string, string>();
    let counting: Phase | undefined;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const t = now();
        await Promise.all(
          nodes.map(async (n) => {
            const view = await getJson<{ members: Array<{ id: number; status: string }> }>(`${n.url}/cluster/members`).catch(
              () => undefined,
            );
            for (const m of view?.members ?? []) {
              const k = `${n.id}>${m.id}`;
              const before = last.get(k) ?? 'alive';
              last.set(k, m.status);
              if (counting === undefined || m.status === before) continue;
              if (before === 'alive') counting.polled++;
              if (m.status === 'down') counting.polledDown++;
            }
          }),
        );
        await sleep(Math.max(0, POLL_MS - (now() - t)));
      }
    })();
    const phase = async (name: string, body: () => Promise<LoadResult | undefined>) => {
      const p: Phase = { name, from: Date.now(), to: 0, polled: 0, polledDown: 0 };
      counting = p;
      const result = await body();
      if (result) p.load = result;
      p.to = Date.now();
      counting = undefined;
      phases.push(p);
    };
    await phase('idle', async () => (await sleep(SECONDS * 1000), undefined));
    await phase('load', () =>
      load(
        nodes.map((n) => n.url),
        { connections: CONNECTIONS, seconds: SECONDS, keys: KEYS },
      ),
    );
    polling = false;
    await poller;
  } finally {
    await stopAll();
  }

  console.log();
  console.log(row('phase', 'req/s', 'suspected', 'down', 'refuted', 'stalls', 'polled ¬alive', 'polled down'));
  const figures = phases.map((p) => {
    const inPhase = lines.filter((l) => l.time >= p.from && l.time <= p.to);
    const count = (msg: string) => inPhase.filter((l) => l.msg === msg).length;
    const f = {
      phase: p.name,
      seconds: (p.to - p.from) / 1000,
      reqPerSec: p.load ? Math.round(p.load.reqPerSec) : 0,
      p99Ms: p.load?.p99Ms,
      non2xx: p.load?.non2xx,
      suspected: count(WATCHED[0]),
      down: count(WATCHED[1]),
      refuted: count(WATCHED[2]),
      stalls: count(WATCHED[3]),
      polledNotAlive: p.polled,
      polledDown: p.polledDown,
      // Which node suspected or downed which: the shape of the problem when there is one.
      pairs: [
        ...new Set(
          inPhase
            .filter((l) => l.msg === WATCHED[0] || l.msg === WATCHED[1])
            .map((l) => `${l.node}→${String(l.rec.member)} ${l.msg.split(' ')[1]}`),
        ),
      ],
      maxStallMs: Math.max(0, ...inPhase.filter((l) => l.msg === WATCHED[3]).map((l) => Number(l.rec.lateness))),
    };
    console.log(
      row(
        p.name,
        f.reqPerSec ? int(f.reqPerSec) : '—',
        String(f.suspected),
        String(f.down),
        String(f.refuted),
        String(f.stalls),
        String(f.polledNotAlive),
        String(f.polledDown),
      ),
    );
    return f;
  });
  for (const f of figures) {
    if (f.pairs.length) console.log(`${f.phase}: ${f.pairs.join(', ')}`);
    if (f.stalls) console.log(`${f.phase}: longest event-loop stall ${fixed(f.maxStallMs, 0)} ms`);
  }
  const loadPhase = figures.find((f) => f.phase === 'load')!;
  const falseDowns = figures.reduce((a, f) => a + f.down + f.polledDown, 0);
  console.log(
    falseDowns === 0
      ? `no false downs (idle or under ${int(loadPhase.reqPerSec)} req/s); ${loadPhase.suspected} false suspicions under load, ${figures[0]!.suspected} idle`
      : `FALSE DOWNS: ${falseDowns} (see pairs above)`,
  );
  printResult({ bench: 'false-down', seconds: SECONDS, connections: CONNECTIONS, downBoundMs: downBound(LAN_PROFILE), phases: figures });
});
