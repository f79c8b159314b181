/**
 * Scenario 3: worker threads that crash and run out of memory, and handlers that try to move huge
 * values, under the counter/cart load on three replicated `troupe start` nodes. The nodes run
 * with small caps so that each CLI flag's effect shows through the gateway:
 *   --max-old-generation-mb 64     a thread that allocates past it dies alone (ERR_WORKER_DIED)
 *   --max-message-bytes 262144     a 300 kB reply or an 8 MiB tell fails; a 200 kB reply passes
 *   --max-mailbox-bytes 1048576    40 asks of 100 kB to one actor: 10 queued, 30 ERR_MAILBOX_FULL
 * The faults (test/chaos/apps/worker-faults.ts): a handler that throws, `process.exit(1)` in the
 * thread, allocation to the heap limit, a 96 MiB Buffer (off the heap: the thread lives, the
 * reply is refused), an 8 MiB reply and tell, a flood of a mailbox.
 *
 * Criterion: each faulting ask fails with its named code; lost 0, duplicated 0 (the history
 * checker), I1 holds; no node process dies (same pids throughout); after each thread death the
 * slot is re-hosted and every counter key is acknowledged again (the time is the line's
 * recovery); peak RSS stays under 512 MiB while the huge values are refused.
 */
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';
import type { ChaosCluster } from './chaos-cluster.ts';
import { errorsSince, recovered, runScenario } from './scenario.ts';

const faultsApp = fileURLToPath(new URL('./apps/worker-faults.ts', import.meta.url));
const PEAK_RSS_BOUND_MB = 512;

interface Answer {
  status: number;
  code: string | undefined;
  message: string;
  body: unknown;
}

/** POST /actors/<kind>/<key>/<command> with a JSON body; the node's answer, whatever the status. */
async function call(url: string, kind: string, key: string, command: string, input: unknown): Promise<Answer> {
  const res = await fetch(`${url}/actors/${kind}/${key}/${command}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(input ?? {}),
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await res.json()) as { error?: { code?: string; message?: string } };
  return { status: res.status, code: body.error?.code, message: body.error?.message ?? '', body };
}

/** One fault: its ask, the code (and message) it must fail with, and what the thread does. */
interface Fault {
  command: string;
  input?: unknown;
  /** The error code the ask must fail with; 'ok' for a 200. */
  want: string;
  /** Also required of the error message (the heap limit reached the thread). */
  message?: RegExp;
  /** The fault ends the thread: time until every key is served again. */
  killsThread?: boolean;
}

const FAULTS: Fault[] = [
  { command: 'throw', want: 'ERR_HANDLER_FAILED' },
  { command: 'bigReply', input: { bytes: 300_000 }, want: 'ERR_NOT_SERIALIZABLE', message: /maxMessageBytes 262144/ },
  { command: 'bigReply', input: { bytes: 200_000 }, want: 'ok' },
  { command: 'bigTell', input: { bytes: 8 << 20 }, want: 'ERR_NOT_SERIALIZABLE', message: /maxMessageBytes 262144/ },
  { command: 'bigBuffer', input: { mb: 96 }, want: 'ERR_NOT_SERIALIZABLE', message: /binary data/ },
  { command: 'exit', want: 'ERR_WORKER_DIED', killsThread: true },
  { command: 'hog', want: 'ERR_WORKER_DIED', message: /memory/i, killsThread: true },
];

describe('scenario 3: worker threads crash and run out of memory; byte caps hold', () => {
  it('throw, process.exit, heap exhaustion, huge replies, tells, Buffers and a flooded mailbox under load', async () => {
    await runScenario({
      name: '3 worker faults + byte caps',
      fault:
        'in worker threads: a handler throws; process.exit(1) and heap exhaustion (--max-old-generation-mb 64) each end a thread; 300 kB and 8 MiB replies/tells (--max-message-bytes 262144), a 96 MiB Buffer, 40×100 kB asks to one mailbox (--max-mailbox-bytes 1048576)',
      criterion: `faulting asks fail with their named codes; lost 0, duplicated 0, I1 holds; no node process dies; every key served again after each thread death; peak RSS < ${PEAK_RSS_BOUND_MB} MiB`,
      ids: [1, 2, 3],
      args: ['--app', faultsApp, '--max-old-generation-mb', '64', '--max-message-bytes', '262144', '--max-mailbox-bytes', '1048576'],
      workload: { prefix: 'k3', counterKeys: 60, counterClients: 6, carts: 20, cartClients: 2 },
      async inject({ cluster, load }) {
        const violations: string[] = [];
        const seen: string[] = [];
        const pids = new Map(cluster.live().map((n) => [n.id, n.pid]));
        const started = Date.now();
        let recoverMs = 0;
        const deaths: string[] = [];
        let turn = 0;
        for (const f of FAULTS) {
          // Each fault on its own key (so on whichever node owns it), asked through the nodes in turn.
          const node = cluster.live()[turn++ % cluster.live().length]!;
          const key = `f3-${f.command}-${turn}`;
          const at = Date.now();
          const a = await call(node.url, 'faults', key, f.command, f.input);
          const answeredAt = Date.now();
          const got = a.status === 200 ? 'ok' : (a.code ?? `HTTP ${a.status}`);
          seen.push(`${f.command}→${got}`);
          if (got !== f.want) violations.push(`${f.command} ${JSON.stringify(f.input ?? {})}: wanted ${f.want}, got ${got} (${a.message})`);
          else if (f.message && !f.message.test(a.message))
            violations.push(`${f.command}: message ${JSON.stringify(a.message)} does not match ${f.message}`);
          if (!f.killsThread) continue;
          // The slot is re-hosted: every counter key is acknowledged again, and the faulting key's actor answers.
          const ms = await recovered(load, at, 30_000, { urls: cluster.live().map((n) => n.url) });
          recoverMs = Math.max(recoverMs, ms);
          const again = await call(node.url, 'faults', key, 'ok', {});
          if (again.status !== 200) violations.push(`after ${f.command}: faults/${key} not served again (${again.code})`);
          deaths.push(`${f.command}: answered ${a.code} in ${answeredAt - at} ms, every key again ${ms} ms after the ask`);
        }
        // The mailbox byte cap, through the flag: 10 × 100 kB fit in 1 MiB, the other 30 are refused.
        const flood = await call(cluster.live()[0]!.url, 'faults', 'f3-flood', 'flood', { n: 40, bytes: 100_000 });
        const counts = flood.body as Record<string, number>;
        seen.push(`flood→${JSON.stringify(counts)}`);
        if (flood.status !== 200 || counts.ok !== 10 || counts.ERR_MAILBOX_FULL !== 30)
          violations.push(
            `flood of 40 × 100 kB into a 1 MiB mailbox: wanted { ok: 10, ERR_MAILBOX_FULL: 30 }, got ${flood.status} ${JSON.stringify(flood.body)}`,
          );
        violations.push(...samePids(cluster, pids));
        return {
          recoverMs,
          violations,
          notes: `faults: ${seen.join(', ')}; ${deaths.join('; ')}; node pids unchanged: ${violations.some((v) => v.startsWith('node')) ? 'NO' : 'yes'}; load errors since the first fault: ${errorsSince(load, started)}`,
        };
      },
      async after({ cluster }) {
        cluster.sample();
        const peak = cluster.peakRssMb();
        return peak < PEAK_RSS_BOUND_MB ? [] : [`peak RSS ${peak} MiB is over ${PEAK_RSS_BOUND_MB} MiB`];
      },
    });
  }, 240_000);
});

/** Every node still runs as the process it started as: a thread's death never takes the node. */
function samePids(cluster: ChaosCluster, pids: ReadonlyMap<number, number>): string[] {
  const out: string[] = [];
  for (const [id, pid] of pids) {
    const n = cluster.node(id);
    if (n.pid !== pid || n.child.exitCode !== null || n.child.signalCode !== null)
      out.push(`node ${id} (pid ${pid}) exited (${n.child.exitCode ?? n.child.signalCode})`);
  }
  return out;
}
