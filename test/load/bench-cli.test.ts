/**
 * `troupe bench` from the outside: the bin (dist/) against a real `troupe start` node, and its
 * usage errors.
 */
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, type ProcessNode } from '../helpers/process-cluster.ts';

const bin = fileURLToPath(new URL('../../bin/troupe.js', import.meta.url));
const env = (): NodeJS.ProcessEnv => {
  const e = { ...process.env };
  delete e.TROUPE_DEBUG;
  return e;
};

describe('troupe bench usage errors: exit 2, one line naming the flag', () => {
  it.each([
    { args: ['--scenario', 'write-heavy'], flag: '--url' },
    { args: ['--url', 'http://127.0.0.1:1'], flag: '--scenario' },
    { args: ['--url', 'http://127.0.0.1:1', '--scenario', 'nope'], flag: '--scenario must be one of write-heavy, read-heavy, sessions-100k, hot-key' },
    { args: ['--url', 'ftp://127.0.0.1:1', '--scenario', 'hot-key'], flag: '--url must be http://host:port' },
    { args: ['--url', 'http://127.0.0.1:1', '--scenario', 'hot-key', '--seconds', '0'], flag: '--seconds must be in [1, 86400]' },
    { args: ['--url', 'http://127.0.0.1:1', '--scenario', 'hot-key', '--connections', 'many'], flag: '--connections must be an integer' },
    { args: ['--url', 'http://127.0.0.1:1', '--scenario', 'hot-key', '--keys', '5'], flag: '--keys does not apply to --scenario hot-key' },
    { args: ['--url', 'http://127.0.0.1:1', '--scenario', 'hot-key', '--bogus'], flag: "unknown option '--bogus'" },
  ])('$flag', ({ args, flag }) => {
    const r = spawnSync(process.execPath, [bin, 'bench', ...args], { encoding: 'utf8', env: env(), timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`troupe bench: ${flag}`);
    expect(r.stderr).toContain('(see troupe bench --help)');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('an unreachable URL is a runtime failure naming it (exit 1), before any load', () => {
    const r = spawnSync(process.execPath, [bin, 'bench', '--url', 'http://127.0.0.1:1', '--scenario', 'hot-key'], { encoding: 'utf8', env: env(), timeout: 30_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('http://127.0.0.1:1 did not answer a counter read: ECONNREFUSED');
  });
});

describe('troupe bench against a running node', () => {
  const cluster = new ProcessCluster('bench-cli');
  let node: ProcessNode;
  beforeAll(async () => {
    node = await cluster.start(1);
  }, 60_000);
  afterAll(() => cluster.stop(), 30_000);

  it('write-heavy for 2 s with --check: exit 0, progress on stderr, the summary and the check on stdout', async () => {
    const child = spawn(process.execPath, [bin, 'bench', '--url', node.url, '--scenario', 'write-heavy', '--seconds', '2', '--connections', '8', '--check'], {
      env: env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cluster.track(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect({ code, err }).toMatchObject({ code: 0 });
    expect(err).toMatch(/^\s+1 s\s+[\d,]+ req\/s {2}non-2xx 0 {2}errors 0$/m);
    expect(out).toMatch(/^target\s+scenario\s+req\/s\s+p50 ms\s+p99 ms/m);
    const row = out.split('\n').find((l) => l.startsWith(node.url))!;
    expect(row).toMatch(/write-heavy\s+[\d,]+\s+[\d.]+\s+[\d.]+\s+0\s+0\s+-\s+-$/);
    const check = /^check: ([\d,]+) keys written, ([\d,]+) increments acknowledged of ([\d,]+) attempted; every key holds acknowledged ≤ final ≤ attempted$/m.exec(out);
    expect(check).not.toBeNull();
    expect(Number(check![2]!.replace(/,/g, ''))).toBeGreaterThan(100);
  }, 60_000);
});
