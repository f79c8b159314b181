import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../../bin/troupe.js', import.meta.url));
const run = (...args: string[]) => {
  const env = { ...process.env };
  delete env.TROUPE_CLUSTER_SECRET;
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env, timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('troupe CLI', () => {
  it('--help lists the commands and flags', () => {
    const r = run('start', '--help');
    expect(r.code).toBe(0);
    for (const word of ['troupe start', 'troupe cluster', '--seeds', '--secret', '--http', '--nodes']) expect(r.out).toContain(word);
  });

  it.each([
    { args: ['start', '--bogus'], message: "Unknown option '--bogus'" },
    { args: ['launch'], message: "unknown command 'launch'" },
    { args: ['start'], message: 'start needs --app' },
    { args: ['demo', '--workers', 'two'], message: '--workers must be an integer (got "two")' },
    { args: ['demo', '--port', '0'], message: 'a cluster needs --secret or TROUPE_CLUSTER_SECRET' },
    { args: ['demo', '--profile', 'wan', '--secret', 's', '--port', '0'], message: '--profile must be lan or seed-10s' },
    { args: ['demo', '--profile', 'lan'], message: '--profile and --tls-* apply to a cluster' },
    { args: ['cluster', '--nodes', '0'], message: '--nodes must be in [1, 64]' },
    { args: ['demo', '--durability', 'commit'], message: '--durability needs --data-dir' },
    { args: ['demo', '--durability', 'fast', '--data-dir', 'x'], message: '--durability must be flush or commit (got "fast")' },
    { args: ['backup', '--to', 'x'], message: 'backup needs --data-dir' },
    { args: ['restore', '--data-dir', 'x'], message: 'restore needs --from' },
  ])('$args.0 $args.1: exits 2 with “$message”', ({ args, message }) => {
    const r = run(...args);
    expect(r.code).toBe(2);
    expect(r.err).toContain(message);
  });

  it('a bad option value from the node itself exits 1 with its error code', () => {
    const r = run('demo', '--id', '5000', '--http', '0');
    expect(r.code).toBe(1);
    expect(r.err).toContain('ERR_INVALID_OPTION: options.id must be an integer in [0, 1023] (got 5000)');
  });
});
