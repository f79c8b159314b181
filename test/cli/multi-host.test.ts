/**
 * Nodes on separate hosts, as far as one machine can tell: each node runs in a network namespace
 * of its own with its own address (10.213.R.i, which exists only inside the namespaces this test
 * creates), the namespaces joined by a bridge in a hub namespace. The nodes are started with
 * the CLI (`--listen`, `--seeds`, `--host`), form one cluster, and every node serves the same key.
 * Needs root and `ip netns`; skips loudly without them, and fails under CI=true.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../../bin/troupe.js', import.meta.url));
const run = promisify(execFile);
const NODES = 3;

function unavailable(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  const probe = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return `'ip netns' is unavailable: ${probe.error?.message ?? probe.stderr.trim()}`;
  return undefined;
}

const reason = unavailable();
if (reason) console.warn(`SKIPPED test/cli/multi-host.test.ts: ${reason}`);

describe.runIf(reason !== undefined && process.env.CI === 'true')('multi-host under CI', () => {
  it('must not be skipped in CI', () => {
    throw new Error(`multi-host test cannot run: ${reason}`);
  });
});

describe.runIf(reason === undefined)('nodes on three hosts (network namespaces), started with the CLI', () => {
  // Unique per run, so parallel runs never share a namespace or an interface name.
  const tag = randomBytes(3).toString('hex');
  const subnet = `10.213.${1 + (parseInt(tag, 16) % 250)}`;
  const hub = `troupe-${tag}-hub`;
  const ns = (i: number) => `troupe-${tag}-${i}`;
  const ip = (i: number) => `${subnet}.${i}`;
  const namespaces = [hub, ...Array.from({ length: NODES }, (_, k) => ns(k + 1))];
  const nodes: ChildProcess[] = [];
  const logs: string[] = Array.from({ length: NODES }, () => '');

  const sh = (...args: string[]) => {
    const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr.trim()}`);
  };
  const inNs = (name: string, ...args: string[]) => sh('ip', 'netns', 'exec', name, ...args);

  beforeAll(async () => {
    sh('ip', 'netns', 'add', hub);
    inNs(hub, 'ip', 'link', 'add', 'br0', 'type', 'bridge');
    inNs(hub, 'ip', 'link', 'set', 'br0', 'up');
    for (let i = 1; i <= NODES; i++) {
      const host = `th${tag}${i}`; // interface names: at most 15 characters
      const port = `tp${tag}${i}`;
      sh('ip', 'netns', 'add', ns(i));
      sh('ip', 'link', 'add', host, 'type', 'veth', 'peer', 'name', port);
      sh('ip', 'link', 'set', host, 'netns', ns(i));
      sh('ip', 'link', 'set', port, 'netns', hub);
      inNs(hub, 'ip', 'link', 'set', port, 'master', 'br0');
      inNs(hub, 'ip', 'link', 'set', port, 'up');
      inNs(ns(i), 'ip', 'addr', 'add', `${ip(i)}/24`, 'dev', host);
      inNs(ns(i), 'ip', 'link', 'set', host, 'up');
      inNs(ns(i), 'ip', 'link', 'set', 'lo', 'up');
    }
    const secret = randomBytes(16).toString('hex');
    for (let i = 1; i <= NODES; i++) {
      // Every node lists node 1 as its seed; node 1 skips itself and starts the cluster.
      const args = ['demo', '--id', String(i), '--workers', '1', '--host', ip(i), '--http', '8080'];
      args.push('--listen', `${ip(i)}:7401`, '--seeds', `${ip(1)}:7401`, '--log-level', 'warn');
      const child = spawn('ip', ['netns', 'exec', ns(i), process.execPath, bin, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, TROUPE_CLUSTER_SECRET: secret, TROUPE_LOG_FORMAT: 'json' },
      });
      child.stdout!.on('data', (d: Buffer) => (logs[i - 1] += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (logs[i - 1] += d.toString()));
      nodes.push(child);
    }
  }, 60_000);

  afterAll(async () => {
    // Nodes first (and wait for them), then the namespaces, which takes their interfaces along.
    await Promise.all(
      nodes.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGTERM');
          }),
      ),
    );
    for (const name of namespaces) spawnSync('ip', ['netns', 'del', name]);
    const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    expect(left).not.toContain(`troupe-${tag}`);
  }, 30_000);

  /** curl from inside namespace `i` (the only place its address exists). */
  async function curl(i: number, path: string, method = 'GET'): Promise<{ status: number; body: unknown }> {
    const { stdout } = await run(
      'ip',
      ['netns', 'exec', ns(i), 'curl', '-s', '-m', '5', '-X', method, '-w', '\n%{http_code}', `http://${ip(i)}:8080${path}`],
      { encoding: 'utf8' },
    );
    const cut = stdout.lastIndexOf('\n');
    const text = stdout.slice(0, cut);
    return { status: Number(stdout.slice(cut + 1)), body: text ? JSON.parse(text) : undefined };
  }

  const POLL_MS = 200;
  /** Re-checks `check` every POLL_MS until it holds; fails at the deadline with the nodes' logs. */
  async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check().catch(() => false))) {
      if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}\n${logs.join('\n---\n')}`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  it('the three nodes form one cluster and each sees the others at their own addresses', async () => {
    const sees = async (i: number) => {
      const { body } = await curl(i, '/cluster/members');
      const members = (body as { members: Array<{ address: string; status: string }> }).members;
      return members
        .filter((m) => m.status === 'alive')
        .map((m) => m.address)
        .sort();
    };
    const all = Array.from({ length: NODES }, (_, k) => `${ip(k + 1)}:7401`).sort();
    await eventually(
      async () => (await Promise.all([1, 2, 3].map(sees))).every((seen) => seen.join() === all.join()),
      45_000,
      'every node sees all three alive',
    );
  }, 60_000);

  it('every node serves the same key: three increments through three hosts count to 3', async () => {
    for (let i = 1; i <= NODES; i++) {
      const r = await curl(i, '/actors/counter/multi-host/incr', 'POST');
      expect(r).toEqual({ status: 200, body: { n: i } });
    }
    for (let i = 1; i <= NODES; i++) expect((await curl(i, '/actors/counter/multi-host/get', 'POST')).body).toEqual({ n: 3 });
  }, 30_000);
});
