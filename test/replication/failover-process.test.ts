/**
 * Replicated logs through real processes, checked only through their clients (Jepsen's way):
 * three `troupe` nodes on 127.0.0.1 (durability 'replicated', R=3, W=2, LMDB under each node's
 * data directory), a stream of increments from 8 clients over 100 counters through every
 * gateway, one node SIGKILLed in the middle of it, and the recorded history checked against the
 * counts the cluster ends with (test/helpers/history.ts). Then the killed node comes back on its
 * data directory and must serve the latest counts, not its stale copy.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forkNode } from '../../src/cli/node-process.ts';
import { checkCounters, History, servedAgain } from '../helpers/history.ts';
import { eventually, exited, stopChild } from '../helpers/processes.ts';
import { rng as seeded } from './model.ts';
import { CallError, CounterGateway } from '../helpers/counter-gateway.ts';

const app = fileURLToPath(new URL('../../src/demo/app.ts', import.meta.url));
const secret = randomBytes(24).toString('base64url');
const dataRoot = mkdtempSync(join(tmpdir(), 'troupe-failover-'));

const CLIENTS = 8;
const KEYS = Array.from({ length: 100 }, (_, i) => `fo-${i}`);
/** Acknowledged increments before the kill: enough that every node leads partitions in use. */
const ACKED_BEFORE_KILL = 400;
/** Acknowledged increments after the kill before the load stops (on top of every key served again). */
const ACKED_AFTER_KILL = 300;
/** Longer than the gateway's default ask timeout (5 s), so the server answers before the client gives up. */
const CLIENT_TIMEOUT_MS = 7_000;

/**
 * Refusals that say nothing was applied: the node is not (or no longer) the partition's primary,
 * no node is up, or no primary could be established in time. Everything else that is not a 200
 * (ERR_STALE_EPOCH, ERR_ASK_TIMEOUT, a 5xx, a reset or a timeout) may or may not have been applied.
 */
const NOT_APPLIED = new Set(['ERR_NOT_PRIMARY', 'ERR_NO_NODES', 'ERR_PARTITION_UNAVAILABLE', 'ECONNREFUSED']);

interface Started {
  id: number;
  child: ChildProcess;
  url: string;
  cluster: string;
  /** The last few KiB of its stderr, for failure messages. */
  stderr(): string;
}

const children: ChildProcess[] = [];
/** The gateways' connection pools, closed at the end. */
const openGateways: CounterGateway[] = [];
type Gateway = CounterGateway;
const gatewayTo = (url: string): Gateway => {
  const g = new CounterGateway(url, { maxSockets: CLIENTS, timeoutMs: CLIENT_TIMEOUT_MS });
  openGateways.push(g);
  return g;
};

/** Starts `troupe start` with one worker; resolves when it reports ready over IPC. */
async function startNode(id: number, seeds: string[], port = 0): Promise<Started> {
  const args = ['start', '--id', String(id), '--port', String(port), '--http', '0', '--workers', '1', '--app', app];
  args.push('--data-dir', join(dataRoot, `n${id}`), '--log-level', 'warn');
  if (seeds.length) args.push('--seeds', seeds.join(','));
  const { child, ready } = forkNode(args, {
    env: { ...process.env, TROUPE_CLUSTER_SECRET: secret },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  children.push(child); // before awaiting: stopped at the end even if it never gets ready
  let tail = '';
  child.stderr!.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-4_096)));
  const r = await ready;
  return { id, child, url: r.url, cluster: r.cluster!, stderr: () => tail };
}

type Member = { id: number; status: string };
async function aliveEverywhere(nodes: Started[]): Promise<boolean> {
  const views = await Promise.all(
    nodes.map(async (n) => ((await (await fetch(n.url + '/cluster/members')).json()) as { members: Member[] }).members),
  );
  return views.every((ms) => ms.filter((m) => m.status === 'alive').length === nodes.length);
}

/**
 * CLIENTS concurrent clients, each incrementing random keys through the gateways in turn and
 * recording every outcome in `history`. A client that cannot reach a gateway (refused, reset,
 * timed out) moves on to the next and does not come back to it. `onOp` runs after every
 * operation, so the test waits for what the history shows rather than for a time.
 */
function runLoad(gateways: Gateway[], history: History, onOp: () => void): { stop(): Promise<void> } {
  let stopping = false;
  const loops = Array.from({ length: CLIENTS }, async (_, c) => {
    const random = seeded(c + 1);
    const avoid = new Set<number>();
    let g = c % gateways.length;
    while (!stopping) {
      const key = KEYS[Math.floor(random() * KEYS.length)]!;
      const gateway = gateways[g]!;
      let unreachable = false;
      await history.incr(
        key,
        () =>
          gateway.call(key, 'incr').catch((e: CallError) => {
            unreachable = e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET' || e.code === 'ETIMEDOUT';
            throw e;
          }),
        (e) => NOT_APPLIED.has((e as CallError).code),
      );
      if (unreachable) avoid.add(g);
      if (avoid.size === gateways.length) avoid.clear();
      do g = (g + 1) % gateways.length;
      while (avoid.has(g));
      onOp();
    }
  });
  return {
    async stop() {
      stopping = true;
      await Promise.all(loops);
    },
  };
}

/** Resolves when `holds()` is true after some operation; rejects with `why()` at the deadline. */
function whenHistory(waiters: Array<() => void>, holds: () => boolean, timeoutMs: number, why: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const i = waiters.indexOf(check);
      if (i >= 0) waiters.splice(i, 1);
      reject(new Error(`not within ${timeoutMs} ms: ${why()}`));
    }, timeoutMs);
    const check = () => {
      if (!holds()) return;
      clearTimeout(timer);
      const i = waiters.indexOf(check);
      if (i >= 0) waiters.splice(i, 1);
      resolve();
    };
    waiters.push(check);
    check();
  });
}

/** Every key's count through `gateway`, retrying a key until it is served; throws at the deadline naming the keys that are not. */
async function readAll(gateway: Gateway, timeoutMs: number): Promise<Map<string, number>> {
  const finals = new Map<string, number>();
  const lastError = new Map<string, string>();
  await eventually(
    async () => {
      await Promise.all(
        KEYS.filter((k) => !finals.has(k)).map((k) =>
          gateway.call(k, 'get').then(
            (n) => void finals.set(k, n),
            (e: CallError) => void lastError.set(k, e.code),
          ),
        ),
      );
      return finals.size === KEYS.length;
    },
    timeoutMs,
    () =>
      `keys not served through ${gateway.url}: ${KEYS.filter((k) => !finals.has(k))
        .map((k) => `${k} (${lastError.get(k)})`)
        .join(', ')}`,
  );
  return finals;
}

const violationsOf = (history: History, finals: Map<string, number>) =>
  checkCounters(history, finals)
    .slice(0, 20)
    .map((v) => `${v.key}: ${v.problem}; ${describeKey(history, v.key)}`);

/** A key's operations in start order, for a violation's message: `+n` acknowledged, `?code` unknown, `-code` failed. */
function describeKey(history: History, key: string): string {
  const t0 = history.ops[0]?.start ?? 0;
  return history.ops
    .filter((o) => o.key === key)
    .sort((a, b) => a.start - b.start)
    .map((o) => `${o.outcome === 'ok' ? `+${o.value}` : `${o.outcome === 'failed' ? '-' : '?'}${o.error}`}@${o.start - t0}..${o.end - t0}`)
    .join(' ');
}

describe('replicated logs across three processes: SIGKILL under load, then restart', () => {
  const nodes: Started[] = [];
  const history = new History();
  let finals = new Map<string, number>();
  /** The node killed in the first test, restarted in the second. */
  const victimIndex = 2;

  beforeAll(async () => {
    nodes.push(await startNode(1, []));
    nodes.push(...(await Promise.all([startNode(2, [nodes[0]!.cluster]), startNode(3, [nodes[0]!.cluster])])));
    await eventually(
      () => aliveEverywhere(nodes),
      15_000,
      () => 'all three nodes see three alive members',
    );
  }, 45_000);

  afterAll(async () => {
    for (const g of openGateways) g.destroy();
    // Every process this file started, by its handle, even if a test failed half way; each one
    // has exited before its data directory is deleted.
    await Promise.all(children.map(stopChild));
    rmSync(dataRoot, { recursive: true, force: true });
  }, 20_000);

  it('SIGKILL of one node during 8 clients’ increments over 100 keys: no acknowledged increment lost, every key served again', async () => {
    const gateways = nodes.map((n) => gatewayTo(n.url));
    const waiters: Array<() => void> = [];
    const load = runLoad(gateways, history, () => {
      for (const w of [...waiters]) w();
    });
    const acked = () => history.counts().ok;
    let killedAt = 0;
    let ackedAtKill = 0;
    try {
      await whenHistory(
        waiters,
        () => acked() >= ACKED_BEFORE_KILL,
        20_000,
        () => `only ${acked()} increments acknowledged before the kill`,
      );
      const victim = nodes[victimIndex]!;
      ackedAtKill = acked();
      killedAt = Date.now();
      victim.child.kill('SIGKILL');
      await exited(victim.child);
      // The load goes on until every key was served again after the kill, and enough was
      // acknowledged while the node was down for the restart test to look for.
      await whenHistory(
        waiters,
        () => servedAgain(history, killedAt, KEYS).missing.length === 0 && acked() - ackedAtKill >= ACKED_AFTER_KILL,
        15_000,
        () => {
          const { missing } = servedAgain(history, killedAt, KEYS);
          return `after the kill: ${acked() - ackedAtKill} acknowledged; keys not served again: ${missing.join(', ') || 'none'}; ${JSON.stringify(history.counts())}\nsurvivors' stderr:\n${nodes[0]!.stderr()}\n${nodes[1]!.stderr()}`;
        },
      );
    } finally {
      await load.stop();
    }

    const survivor = gateways[0]!;
    finals = await readAll(survivor, 10_000);
    const { latestMs } = servedAgain(history, killedAt, KEYS);
    const counts = history.counts();
    console.log(
      `failover: every key served again ${latestMs} ms after the SIGKILL; ${counts.ok} acknowledged (${counts.ok - ackedAtKill} after the kill), ${counts.failed} failed, ${counts.unknown} unknown`,
    );
    expect(violationsOf(history, finals)).toEqual([]);
    expect(counts.ok - ackedAtKill).toBeGreaterThanOrEqual(ACKED_AFTER_KILL);
    // Loose on purpose: the lan profile detects a death within 1.5 s and a fence costs one
    // round, but here three nodes, 8 clients and the runner share two cores. This catches
    // failover not happening or taking a whole hold period more (holdMs 5 s) per key.
    expect(latestMs).toBeLessThan(10_000);
  }, 45_000);

  it('the killed node restarts on its data directory: nothing acknowledged is lost, and its gateway serves the latest counts', async () => {
    expect(finals.size, 'the first test read the final counts').toBe(KEYS.length);
    const victim = nodes[victimIndex]!;
    const port = Number(victim.cluster.split(':').pop());
    // Same id, data directory and node-to-node address, as an operator restarting it would.
    const again = await startNode(victim.id, [nodes[0]!.cluster], port);
    nodes[victimIndex] = again;
    await eventually(
      () => aliveEverywhere(nodes),
      15_000,
      () => `node ${victim.id} alive again on every node`,
    );

    // Partitions it led move back to it: it must fence and catch up, never serve its old copy.
    const restarted = gatewayTo(again.url);
    const viaRestarted = await readAll(restarted, 15_000);
    const viaSurvivor = await readAll(gatewayTo(nodes[0]!.url), 5_000);
    expect(violationsOf(history, viaRestarted)).toEqual([]);
    const behind = KEYS.filter((k) => viaRestarted.get(k) !== viaSurvivor.get(k) || viaRestarted.get(k)! < finals.get(k)!);
    expect(
      behind.map((k) => `${k}: restarted ${viaRestarted.get(k)}, survivor ${viaSurvivor.get(k)}, after the kill ${finals.get(k)}`),
    ).toEqual([]);

    // And it writes on top of the latest count: one more increment per key through its gateway.
    const next = new Map<string, number>();
    await Promise.all(
      KEYS.map((k) =>
        history.incr(
          k,
          async () => {
            const n = await restarted.call(k, 'incr');
            next.set(k, n);
            return n;
          },
          (e) => NOT_APPLIED.has((e as CallError).code),
        ),
      ),
    );
    expect(
      KEYS.filter((k) => next.get(k) !== viaRestarted.get(k)! + 1).map((k) => `${k}: ${next.get(k)} after ${viaRestarted.get(k)}`),
    ).toEqual([]);
    expect(violationsOf(history, await readAll(gatewayTo(nodes[1]!.url), 5_000))).toEqual([]);
  }, 45_000);
});
