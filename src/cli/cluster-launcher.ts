import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { forkNode } from './node-process.ts';
import { fileURLToPath } from 'node:url';
import { chatApp, demoApp } from '../demo/location.ts';

export interface ClusterLaunch {
  nodes: number;
  basePort: number;
  httpBase: number;
  workers: number;
  /** Module specifiers; none = the demo app and its chat page. */
  apps: string[];
  /** Signs sid cookies on every node; default: `sessionSecretOf(dataDir)`. */
  sessionSecrets?: string[];
  dataDir: string;
  logLevel?: string;
  profile?: 'lan' | 'seed-10s';
  durability?: string;
  replicas?: number;
  writeQuorum?: number;
  /** Called once every node reports ready, with their gateway URLs and process ids (node i at index i - 1). */
  onReady: (urls: string[], pids: number[]) => void;
  /** How long the nodes get to stop before SIGKILL, ms. */
  stopGraceMs?: number;
}

/**
 * Starts N `troupe start` processes on 127.0.0.1 that form one cluster (node 1 is everyone's
 * seed), with a cluster secret generated for this run and one session secret for all (given, or
 * kept in the data directory) handed over in the environment, each told every node's gateway URL
 * (`--gateways`, for the chat page to reconnect to), and reports them once every node sees all
 * of them alive.
 * Resolves when they have all exited: on SIGINT/SIGTERM it stops them (SIGTERM, then SIGKILL
 * after the grace period).
 */
export function runCluster(o: ClusterLaunch): Promise<number> {
  const secret = randomBytes(32).toString('base64url');
  const sessionSecrets = o.sessionSecrets ?? [sessionSecretOf(o.dataDir)];
  // Known before any node starts: every node serves at its own fixed port on 127.0.0.1.
  const gateways = Array.from({ length: o.nodes }, (_, i) => `http://127.0.0.1:${o.httpBase + i}`);
  const children: ChildProcess[] = [];
  const urls: string[] = new Array(o.nodes);
  const pids: number[] = new Array(o.nodes);
  let ready = 0;
  let stopping = false;

  const stopAll = () => {
    if (stopping) return;
    stopping = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    setTimeout(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }, o.stopGraceMs ?? 10_000).unref();
  };

  return new Promise((resolve) => {
    let exited = 0;
    let exitCode = 0;
    for (let i = 1; i <= o.nodes; i++) {
      const args = [
        'start',
        '--id',
        String(i),
        '--port',
        String(o.basePort + i - 1),
        '--http',
        String(o.httpBase + i - 1),
        '--seeds',
        `127.0.0.1:${o.basePort}`,
        '--workers',
        String(o.workers),
        '--data-dir',
        join(o.dataDir, `node-${i}`),
        '--gateways',
        gateways.join(','),
        ...(o.apps.length === 0 ? ['--app', fileURLToPath(demoApp), '--app', fileURLToPath(chatApp)] : o.apps.flatMap((a) => ['--app', a])),
        ...(o.logLevel ? ['--log-level', o.logLevel] : []),
        ...(o.profile ? ['--profile', o.profile] : []),
        ...(o.durability ? ['--durability', o.durability] : []),
        ...(o.replicas !== undefined ? ['--replicas', String(o.replicas)] : []),
        ...(o.writeQuorum !== undefined ? ['--write-quorum', String(o.writeQuorum)] : []),
      ];
      const { child, ready: started } = forkNode(args, {
        env: { ...process.env, TROUPE_CLUSTER_SECRET: secret, TROUPE_SESSION_SECRET: sessionSecrets.join(',') },
      });
      children.push(child);
      started.then(
        (r) => {
          urls[i - 1] = r.url;
          pids[i - 1] = r.pid;
          if (++ready === o.nodes) void formed(urls, o.nodes).then(() => !stopping && o.onReady(urls, pids));
        },
        (e: Error) => {
          // A cluster that cannot start (a port in use, a bad app module) stops as a whole.
          if (stopping) return;
          process.stderr.write(`troupe: node ${i} did not start: ${e.message}; stopping the cluster\n`);
          exitCode = 1;
          stopAll();
        },
      );
      child.on('exit', (code, signal) => {
        // Once the cluster is up, a node that dies leaves the others running: that is what a cluster is for.
        if (!stopping && ready === o.nodes)
          process.stderr.write(`troupe: node ${i} (pid ${child.pid}) exited (${signal ?? code}); the others keep running\n`);
        if (++exited === o.nodes) {
          process.off('SIGINT', stopAll);
          process.off('SIGTERM', stopAll);
          resolve(exitCode);
        }
      });
    }
    process.on('SIGINT', stopAll);
    process.on('SIGTERM', stopAll);
  });
}

/**
 * Resolves once every node lists all `n` members as alive (gossip has converged), so the URLs
 * printed all route every key to the same owner. Gives up quietly after `timeoutMs`.
 */
async function formed(urls: string[], n: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const alive = async (url: string) => {
    const res = await fetch(`${url}/cluster/members`, { signal: AbortSignal.timeout(1_000) });
    const { members } = (await res.json()) as { members: Array<{ status: string }> };
    return members.filter((m) => m.status === 'alive').length;
  };
  while (Date.now() < deadline) {
    const counts = await Promise.all(urls.map((u) => alive(u).catch(() => 0)));
    if (counts.every((c) => c >= n)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Where a launch keeps the session secret it generated: `<dataDir>/session-secret`. */
export const SESSION_SECRET_FILE = 'session-secret';

/**
 * The session secret of the cluster kept in `dataDir`: generated on its first launch and read
 * back on the next ones. Per data directory rather than per launch because the actors outlive a
 * launch there, and so do browsers' sid cookies (HttpOnly, a week): a new secret each time would
 * make every node refuse them (401 ERR_BAD_SESSION) after a mere restart.
 */
export function sessionSecretOf(dataDir: string): string {
  const file = join(dataDir, SESSION_SECRET_FILE);
  try {
    const kept = readFileSync(file, 'utf8').trim();
    if (kept.length >= 16) return kept;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  mkdirSync(dataDir, { recursive: true });
  const made = randomBytes(32).toString('base64url');
  writeFileSync(file, made + '\n', { mode: 0o600 });
  return made;
}
