/**
 * Scenario 6: one node's wall clock stepped back and forward under load. The OS cannot step one
 * process's wall clock (a time namespace offsets only the monotonic clocks), so node 2 starts
 * with `--fault-injection` and its clock is stepped through the admin endpoint (`clock step`):
 * `SystemClock.wallNow()` moves in its main thread and its worker threads; the monotonic `now()`
 * and every timer do not.
 *
 * What reads the wall clock, and what a step does to it (src/, `grep -rn wallNow`):
 *   - Snowflake ids (cluster/snowflake.ts, main thread): `max(wall, last)`, so a step back keeps
 *     the last timestamp and a forward step shows in the ids — checked here, id by id;
 *   - the Snowflake floor, the incarnation and an empty store's term floor (node-identity.ts,
 *     replication-driver.ts) and the data-directory lock's stale guard: read once at start, so a
 *     step while running changes nothing (a restart behind a step-back is scenario-1 ground);
 *   - reminders and session TTLs (actor-host.ts, reminders.ts) and sid cookie expiry
 *     (http-gateway.ts): wall-clock deadlines on purpose (they outlive the process), so a forward
 *     step fires them early and a step back delays them; the demo's counter and cart use none;
 *   - NOT on the wall clock: membership's suspicion and down timers, ask deadlines, handoff seal
 *     timeouts and the WebSocket watcher leases (watchers.ts reads `clock.now()`) — hence the
 *     criterion "no member marked suspect or down".
 * Log timestamps (pino's `time`, which the I1 checker orders claims by) stay on the true clock.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdminClient } from '../../src/admin/admin-client.ts';
import { decodeSnowflake } from '../../src/cluster/snowflake.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import { getJson } from '../helpers/process-cluster.ts';
import { ChaosCluster, type ChaosNode } from './chaos-cluster.ts';
import { errorsSince, runScenario } from './scenario.ts';

const STEPPED = 2;
/** The offsets node 2's wall clock goes through, in order: back 30 s, forward 60 s, back to true. */
const PHASES = [
  { label: 'true time', offsetMs: 0 },
  { label: 'back 30 s', offsetMs: -30_000 },
  { label: 'forward 60 s', offsetMs: 30_000 },
  { label: 'back to true', offsetMs: 0 },
];
/** Per phase: acknowledged operations and ids sampled before the next step. */
const ACKED_PER_PHASE = 400;
const IDS_PER_PHASE = 3_000;
/** And at least this long at each offset: over 3× the lan profile's detection bound (1.5 s), room for a false suspicion to show. */
const PHASE_MIN_MS = 5_000;

interface SampledId {
  id: bigint;
  phase: number;
  /** Real Unix ms when the batch came back (its ids were issued before). */
  receivedAt: number;
}

const adminOf = (n: ChaosNode) => AdminClient.connect({ socketPath: join(n.dir, 'admin.sock') }, 'chaos');

async function valueOf<T>(admin: AdminClient, command: string, args: string[]): Promise<T> {
  const r = await admin.call(command, args);
  if (r.kind !== 'value') throw new Error(`${command}: expected a value, got ${r.kind}`);
  return r.value as T;
}

/** Membership changes to suspect or down each node has recorded (GET /status/data keeps the last 50). */
async function suspicions(nodes: readonly ChaosNode[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of nodes) {
    const data = await getJson<{ events: Array<{ at: string; member: number; from: string; to: string }> }>(n.url + '/status/data', 5_000);
    for (const e of data.events)
      if (e.to === 'suspect' || e.to === 'down') out.push(`node ${n.id} saw ${e.member} ${e.from}→${e.to} at ${e.at}`);
  }
  return out;
}

/** Strictly increasing, node 2's, and every id of a forward-step phase issued at least at the stepped time. */
function checkIds(ids: readonly SampledId[]): string[] {
  const problems: string[] = [];
  for (let i = 1; i < ids.length; i++)
    if (ids[i]!.id <= ids[i - 1]!.id)
      problems.push(`id #${i} ${ids[i]!.id} (${PHASES[ids[i]!.phase]!.label}) is not above #${i - 1} ${ids[i - 1]!.id}`);
  for (const s of ids)
    if (decodeSnowflake(s.id).nodeId !== STEPPED) problems.push(`id ${s.id} carries node ${decodeSnowflake(s.id).nodeId}`);
  return problems.slice(0, 10);
}

describe('scenario 6: the wall clock stepped on one node', () => {
  it('the fault-injection switch from the outside: refused without --fault-injection, effective with it', async () => {
    const cluster = new ChaosCluster('6 switch');
    try {
      const [plain, faulty] = await Promise.all([cluster.start(1), cluster.start(2, { args: ['--fault-injection'] })]);
      const [a, b] = await Promise.all([adminOf(plain), adminOf(faulty)]);
      try {
        for (const [command, args] of [
          ['clock', ['step', '60000']],
          ['ids', ['1']],
        ] as const) {
          const refused = await a.call(command, [...args]).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(isTroupeError(refused, 'ERR_FORBIDDEN'), String(refused)).toBe(true);
          expect((refused as Error).message).toMatch(/not started with --fault-injection/);
        }
        expect(await valueOf(a, 'clock', [])).toMatchObject({ faultInjection: false, offsetMs: 0 });

        const [before] = (await valueOf<{ ids: string[] }>(b, 'ids', ['1'])).ids;
        const stepped = await valueOf<{ offsetMs: number }>(b, 'clock', ['step', '+60000']);
        const steppedAt = Date.now();
        const [after] = (await valueOf<{ ids: string[] }>(b, 'ids', ['1'])).ids;
        expect(stepped.offsetMs).toBe(60_000);
        // The id issued after the step carries the stepped time (the true time + 60 s, give or take the call).
        expect(decodeSnowflake(after!).timestamp - steppedAt).toBeGreaterThan(59_000);
        expect(decodeSnowflake(before!).timestamp - steppedAt).toBeLessThan(1_000);
      } finally {
        a.close();
        b.close();
      }
    } finally {
      await cluster.stop();
    }
  }, 60_000);

  it(`node ${STEPPED}'s wall clock stepped back 30 s, forward 60 s, back to true, under load`, async () => {
    const ids: SampledId[] = [];
    let before: string[] = [];
    await runScenario({
      name: '6 clock steps',
      fault: `node ${STEPPED}'s wall clock (main and worker threads, through --fault-injection and the admin endpoint) stepped back 30 s, then forward 60 s, then back to true; ≥ ${PHASE_MIN_MS / 1000} s, ${ACKED_PER_PHASE} acknowledged and ${IDS_PER_PHASE} ids sampled at each offset`,
      criterion: `every Snowflake id node ${STEPPED} issues unique and increasing, the forward step visible in them; no member marked suspect or down anywhere; lost 0, duplicated 0, I1 holds`,
      ids: [1, 2, 3],
      argsFor: (id) => (id === STEPPED ? ['--fault-injection'] : []),
      workload: { prefix: 'c6', counterKeys: 60, counterClients: 6, carts: 20, cartClients: 2 },
      async inject({ cluster, load }) {
        const nodes = cluster.live();
        before = await suspicions(nodes);
        const admin = await adminOf(cluster.node(STEPPED));
        let phase = 0;
        let sampling = true;
        const sampleErrors: string[] = [];
        // Ids in batches of 100, one call at a time: the order they come back is the order issued.
        const sampler = (async () => {
          while (sampling) {
            try {
              const got = await valueOf<{ ids: string[] }>(admin, 'ids', ['100']);
              const receivedAt = Date.now();
              for (const id of got.ids) ids.push({ id: BigInt(id), phase, receivedAt });
            } catch (e) {
              sampleErrors.push((e as { code?: string }).code ?? String(e));
              if (sampleErrors.length > 20) return;
            }
            // Pacing, not waiting for an event: leave node 2's main thread to the load.
            await new Promise((r) => setTimeout(r, 10));
          }
        })();
        const startedAt = Date.now();
        const perPhase: string[] = [];
        try {
          for (let i = 0; i < PHASES.length; i++) {
            if (i > 0) {
              const delta = PHASES[i]!.offsetMs - PHASES[i - 1]!.offsetMs;
              const r = await valueOf<{ offsetMs: number }>(admin, 'clock', ['step', delta > 0 ? `+${delta}` : String(delta)]);
              if (r.offsetMs !== PHASES[i]!.offsetMs)
                throw new Error(`clock step ${delta}: offset ${r.offsetMs}, expected ${PHASES[i]!.offsetMs}`);
            }
            phase = i;
            const acked = load.acknowledged();
            const sampled = ids.length;
            const at = Date.now();
            await load.until(
              () =>
                load.acknowledged() >= acked + ACKED_PER_PHASE && ids.length >= sampled + IDS_PER_PHASE && Date.now() - at >= PHASE_MIN_MS,
              30_000,
              () =>
                `phase ${PHASES[i]!.label}: ${load.acknowledged() - acked} acknowledged, ${ids.length - sampled} ids sampled; sampler errors: ${sampleErrors.join(' ')}`,
            );
            perPhase.push(`${PHASES[i]!.label} ${Date.now() - at} ms`);
          }
        } finally {
          sampling = false;
          await sampler;
          admin.close();
        }
        const violations = [...checkIds(ids), ...sampleErrors.map((c) => `ids failed: ${c}`)];
        // The forward step must show: ids issued at +30 s carry a timestamp at least ~30 s past the true time.
        const leadMs = (p: number) =>
          Math.max(...ids.filter((s) => s.phase === p).map((s) => decodeSnowflake(s.id).timestamp - s.receivedAt));
        if (!(leadMs(2) > 29_000)) violations.push(`ids at +30 s lead the true time by only ${leadMs(2)} ms`);
        return {
          recoverMs: null,
          violations,
          notes:
            `${ids.length} ids sampled from node ${STEPPED} (${perPhase.join(', ')}); id time minus true time, max per phase: ${PHASES.map((p, i) => `${p.label} ${(leadMs(i) / 1000).toFixed(1)} s`).join(', ')}; ` +
            `errors since the first step: ${errorsSince(load, startedAt)}`,
        };
      },
      async after({ cluster }) {
        const seen = await suspicions(cluster.live());
        return seen.filter((s) => !before.includes(s)).map((s) => `false suspicion: ${s}`);
      },
    });
  }, 180_000);
});
