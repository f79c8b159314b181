/**
 * A fourth node joins three real `troupe` processes under load (issue 7: "Join a fourth node …
 * under load: the same checks, and about 1/N of actors moved"), checked through the clients
 * (Jepsen's way) and the nodes' own logs: 8 clients increment 100 counters through every
 * gateway, the joiner's gateway included once it is up; afterwards the counts read through all
 * four gateways agree and pass the history checker, about 1/4 of the partitions changed
 * primary — all to the joiner, which leads them now (`/cluster/partitions`) — and I1 holds over
 * the `primary in epoch` lines every node logged.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { forkNode } from '../../src/cli/node-process.ts';
import { HashRing } from '../../src/cluster/ring.ts';
import { PartitionTable, partitionOf, PARTITIONS } from '../../src/replication/partition-table.ts';
import { checkCounters, checkEpochClaims, History, servedAgain, type EpochClaim } from '../helpers/history.ts';
import { eventually, stopChild } from '../helpers/processes.ts';
import { rng as seeded } from './model.ts';
import { CallError, CounterGateway } from '../helpers/counter-gateway.ts';

const app = fileURLToPath(new URL('../../src/demo/app.ts', import.meta.url));
const secret = randomBytes(24).toString('base64url');
const dataRoot = mkdtempSync(join(tmpdir(), 'troupe-join-'));

const CLIENTS = 8;
const KEYS = Array.from({ length: 100 }, (_, i) => `jp-${i}`);
const JOINER = 4;
/** Acknowledged increments before the join, and after it once every key was served again. */
const ACKED_BEFORE = 300;
const ACKED_AFTER = 300;
/** Longer than the gateway's default ask timeout (5 s), so the server answers before the client gives up. */
const CLIENT_TIMEOUT_MS = 7_000;
/** Refusals that say nothing was applied; anything else that is not a 200 (ERR_STALE_EPOCH included) may have been. */
const NOT_APPLIED = new Set(['ERR_NOT_PRIMARY', 'ERR_NO_NODES', 'ERR_PARTITION_UNAVAILABLE', 'ECONNREFUSED']);

interface Started {
  id: number;
  child: ChildProcess;
  url: string;
  cluster: string;
  /** Every `primary in epoch` line it logged so far, in order. */
  claims: EpochClaim[];
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

/** `troupe start` with one worker and JSON info logs on stdout (read for its epoch claims); resolves when ready. */
async function startNode(id: number, seeds: string[]): Promise<Started> {
  const args = ['start', '--id', String(id), '--port', '0', '--http', '0', '--workers', '1', '--app', app];
  args.push('--data-dir', join(dataRoot, `n${id}`), '--log-level', 'info');
  if (seeds.length) args.push('--seeds', seeds.join(','));
  const { child, ready } = forkNode(args, {
    env: { ...process.env, TROUPE_CLUSTER_SECRET: secret, TROUPE_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  children.push(child); // before awaiting: stopped at the end even if it never gets ready
  let tail = '';
  child.stderr!.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-4_096)));
  const claims: EpochClaim[] = [];
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (!line.includes('primary in epoch')) continue;
      const l = JSON.parse(line) as { time: number; p: number; epoch: { term: number; node: number }; startSeq: number };
      claims.push({ at: l.time, node: id, p: l.p, epoch: l.epoch, startSeq: l.startSeq });
    }
  });
  const r = await ready;
  return { id, child, url: r.url, cluster: r.cluster!, claims, stderr: () => tail };
}

const getJson = async <T>(url: string): Promise<T> => (await (await fetch(url)).json()) as T;

async function aliveEverywhere(nodes: Started[]): Promise<boolean> {
  const views = await Promise.all(nodes.map((n) => getJson<{ members: Array<{ status: string }> }>(n.url + '/cluster/members')));
  return views.every((v) => v.members.filter((m) => m.status === 'alive').length === nodes.length);
}

/**
 * CLIENTS clients, each incrementing random keys through the gateways in turn (a gateway pushed
 * onto `gateways` later joins the rotation), every outcome recorded; `onOp` runs after each.
 */
function runLoad(gateways: Gateway[], history: History, onOp: () => void): { stop(): Promise<void> } {
  let stopping = false;
  const loops = Array.from({ length: CLIENTS }, async (_, c) => {
    const random = seeded(c + 1);
    let g = c;
    while (!stopping) {
      const key = KEYS[Math.floor(random() * KEYS.length)]!;
      const gateway = gateways[g++ % gateways.length]!;
      await history.incr(
        key,
        () => gateway.call(key, 'incr'),
        (e) => NOT_APPLIED.has((e as CallError).code),
      );
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
    const done = () => {
      clearTimeout(timer);
      const i = waiters.indexOf(check);
      if (i >= 0) waiters.splice(i, 1);
    };
    const timer = setTimeout(() => (done(), reject(new Error(`not within ${timeoutMs} ms: ${why()}`))), timeoutMs);
    const check = () => void (holds() && (done(), resolve()));
    waiters.push(check);
    check();
  });
}

/** Every key's count through `gateway`, retrying a key until it is served. */
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

/** The proposed primaries for an up set, as every node's router computes them (positions depend on ids only). */
const tableOf = (ids: readonly number[]) => new PartitionTable(new HashRing(ids.map((id) => ({ id, address: `node:${id}` }))));

afterAll(async () => {
  for (const g of openGateways) g.destroy();
  // Every process this file started, by its handle; each has exited before its data is deleted.
  await Promise.all(children.map(stopChild));
  rmSync(dataRoot, { recursive: true, force: true });
}, 20_000);

describe('a fourth troupe process joins three under load', () => {
  it('nothing acknowledged is lost, the four gateways agree, about 1/4 of the partitions move to the joiner, and I1 holds in the logs', async () => {
    const nodes: Started[] = [await startNode(1, [])];
    nodes.push(...(await Promise.all([startNode(2, [nodes[0]!.cluster]), startNode(3, [nodes[0]!.cluster])])));
    await eventually(
      () => aliveEverywhere(nodes),
      15_000,
      () => 'all three nodes see three alive members',
    );

    const history = new History();
    const gateways = nodes.map((n) => gatewayTo(n.url));
    const waiters: Array<() => void> = [];
    const load = runLoad(gateways, history, () => [...waiters].forEach((w) => w()));
    const acked = () => history.counts().ok;
    let joinAt = 0;
    let upIn = 0;
    let ackedAtJoin = 0;
    try {
      await whenHistory(
        waiters,
        () => acked() >= ACKED_BEFORE,
        15_000,
        () => `only ${acked()} increments acknowledged before the join`,
      );
      ackedAtJoin = acked();
      joinAt = Date.now();
      nodes.push(await startNode(JOINER, [nodes[0]!.cluster]));
      upIn =
        Date.now() -
        joinAt +
        (await eventually(
          () => aliveEverywhere(nodes),
          10_000,
          () => `node ${JOINER} alive on every node`,
        ));
      gateways.push(gatewayTo(nodes[3]!.url));
      await whenHistory(
        waiters,
        () => servedAgain(history, joinAt + upIn, KEYS).missing.length === 0 && acked() - ackedAtJoin >= ACKED_AFTER,
        15_000,
        () =>
          `after the join: ${acked() - ackedAtJoin} acknowledged; keys not served again: ${servedAgain(history, joinAt + upIn, KEYS).missing.join(', ') || 'none'}`,
      );
    } finally {
      await load.stop();
    }

    const reads = [];
    for (const g of gateways) reads.push(await readAll(g, 10_000));
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
    expect(checkEpochClaims(claims)).toEqual([]);
    const { latestMs } = servedAgain(history, joinAt + upIn, KEYS);
    const counts = history.counts();
    console.info(
      `join (processes): node ${JOINER} alive everywhere ${upIn} ms after its start; every key served again ${latestMs} ms after that; ` +
        `${moved.length}/${PARTITIONS} partitions moved (${movedUsed.length}/${used.length} of the test's); ${counts.ok} acknowledged (${counts.ok - ackedAtJoin} after the join), ${counts.failed} failed, ${counts.unknown} unknown`,
    );
  }, 45_000);
});
