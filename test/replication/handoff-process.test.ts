/**
 * `troupe drain --data-dir` on a real `troupe start` node of a three-process cluster under load
 * (issue 7, item 4: "troupe nodes drain on SIGTERM … add troupe drain for a running node"),
 * checked through the clients and the nodes' own logs: 6 clients increment 60 counters through
 * the gateways of nodes 1 and 3 while node 2 is drained. `troupe drain` exits 0 once node 2's
 * process is gone; node 2 logged that it handed every partition off (no drain timeout); the
 * survivors serve every key with the counts the history allows; I1 holds over every node's
 * `primary in epoch` lines. Then the command's refusals: no running node, no --data-dir.
 */
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { troupeBin } from '../../src/cli/node-process.ts';
import { checkCounters, checkEpochClaims, History } from '../helpers/history.ts';
import { getJson, ProcessCluster, readCounts, runCounterLoad } from '../helpers/process-cluster.ts';
import { exited } from '../helpers/processes.ts';

/** JSON info logs on stdout, read for the nodes' epoch claims and their drain messages. */
const cluster = new ProcessCluster('drain', { logLevel: 'info', jsonLogs: true, stderr: 'tail' });

const CLIENTS = 6;
const KEYS = Array.from({ length: 60 }, (_, i) => `dp-${i}`);
const LEAVER = 2;
const ACKED_BEFORE = 200;
const ACKED_AFTER = 200;

/** `troupe drain …` as a user runs it: resolves with its exit code and output. */
function troupe(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [troupeBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  cluster.track(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return exited(child).then(() => (clearTimeout(timer), { code: child.exitCode, stdout, stderr }));
}

afterAll(() => cluster.stop(), 20_000);

describe('troupe drain on a running node of three', () => {
  it('exits 0, the node process is gone, its partitions were handed off, its keys are served by the others with their counts', async () => {
    const nodes = await cluster.startAll([1, 2, 3]);
    const leaver = nodes[LEAVER - 1]!;
    const survivors = nodes.filter((n) => n.id !== LEAVER);

    const history = new History();
    const gateways = survivors.map((n) => cluster.gateway(n.url, { maxSockets: CLIENTS }));
    const load = runCounterLoad({ gateways, history, keys: KEYS, clients: CLIENTS, seed: 11 });
    const acked = () => history.counts().ok;
    let drainAt = 0;
    let drained: { code: number | null; stdout: string; stderr: string };
    let ackedAtDrain = 0;
    try {
      await load.until(() => acked() >= ACKED_BEFORE, 15_000, () => `only ${acked()} increments acknowledged before the drain`);
      const led = (await getJson<{ partitions: Array<{ role: string }> }>(leaver.url + '/cluster/partitions')).partitions.filter((d) => d.role === 'primary').length;
      expect(led).toBeGreaterThan(0);
      ackedAtDrain = acked();
      drainAt = Date.now();
      drained = await troupe(['drain', '--data-dir', cluster.dirOf(LEAVER)], 15_000);
      await load.until(() => acked() - ackedAtDrain >= ACKED_AFTER, 10_000, () => `only ${acked() - ackedAtDrain} acknowledged after the drain began`);
    } finally {
      await load.stop();
    }
    const drainMs = Date.now() - drainAt;

    expect(drained.stderr).toBe('');
    expect(drained.code).toBe(0);
    expect(drained.stdout).toMatch(/^drained: node process \d+ exited/m);
    // Gone: the node's own process exited (cleanly), having handed everything off before stopping.
    expect(leaver.child.exitCode ?? leaver.child.signalCode).not.toBeNull();
    expect(leaver.child.exitCode).toBe(0);
    expect(leaver.messages.some((m) => /^drained: every partition handed off/.test(m))).toBe(true);
    expect(leaver.messages.some((m) => /^drain timed out/.test(m))).toBe(false);

    // Every key — the leaver's included — is served by the survivors, with counts the history allows.
    const reads: Array<Map<string, number>> = [];
    for (const g of gateways) reads.push(await readCounts(g, KEYS, 10_000));
    expect(Object.fromEntries(reads[1]!)).toEqual(Object.fromEntries(reads[0]!));
    expect(checkCounters(history, reads[0]!).slice(0, 20)).toEqual([]);
    const claims = nodes.flatMap((n) => n.claims).sort((a, b) => a.at - b.at);
    expect(checkEpochClaims(claims, { crossNode: false })).toEqual([]);
    const counts = history.counts();
    const duringDrain = history.ops.filter((o) => o.start >= drainAt && o.start < drainAt + drainMs);
    console.info(
      `drain (processes): troupe drain exited after ${drainMs} ms (${drained.stdout.trim().split('\n').pop()}); ${counts.ok} acknowledged (${counts.ok - ackedAtDrain} after the drain began), ` +
        `${counts.failed} failed, ${counts.unknown} unknown; ${duringDrain.filter((o) => o.outcome === 'ok').length}/${duringDrain.length} answered during it`,
    );
    // Requests kept being answered while the node drained, and none ended with an unknown outcome
    // (each one's error, gateway and timing is named if one did: session 7's CI saw 2, once in ~12 runs).
    const unknown = history.ops.filter((o) => o.outcome === 'unknown').map((o) => `${o.key} via ${String(o.via)} +${o.start - drainAt}..+${o.end - drainAt} ms: ${String(o.error)}`);
    expect(unknown).toEqual([]);

    // The command refuses a data directory no running node holds, naming why; and needs --data-dir.
    const again = await troupe(['drain', '--data-dir', cluster.dirOf(LEAVER)], 10_000);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^troupe drain: ERR_STOPPED: no node is running with --data-dir /);
    const missing = await troupe(['drain'], 10_000);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^troupe drain: --data-dir <dir> is required/);
  }, 45_000);
});
