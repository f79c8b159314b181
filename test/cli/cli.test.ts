import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../../bin/troupe.js', import.meta.url));
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const run = (...args: string[]) => {
  const env: NodeJS.ProcessEnv = { ...process.env, TROUPE_LOG_LEVEL: 'silent' };
  delete env.TROUPE_CLUSTER_SECRET;
  delete env.TROUPE_DEBUG;
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env, timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('troupe --help and --version', () => {
  it.each([
    {
      args: ['start', '--help'],
      usage: 'Usage: troupe start [options]',
      flags: ['--app', '--listen', '--advertise', '--seeds', '--allow-solo', '--durability', '--max-resident', '--log-level'],
    },
    { args: ['demo', '-h'], usage: 'Usage: troupe demo [options]', flags: ['--http', '--host', '--workers', '--data-dir'] },
    {
      args: ['cluster', '--help'],
      usage: 'Usage: troupe cluster [options]',
      flags: ['--nodes', '--base-port', '--http-base', '--workers'],
    },
    { args: ['backup', '--help'], usage: 'Usage: troupe backup [options]', flags: ['--data-dir', '--to'] },
    { args: ['restore', '--help'], usage: 'Usage: troupe restore [options]', flags: ['--from', '--data-dir', '--force'] },
    { args: ['help', 'restore'], usage: 'Usage: troupe restore [options]', flags: ['--force'] },
    { args: ['--help'], usage: 'Usage: troupe [options] [command]', flags: ['start', 'demo', 'cluster', 'backup', 'restore', '--version'] },
    { args: [], usage: 'Usage: troupe [options] [command]', flags: ['start', 'cluster'] },
  ])('troupe $args prints its own usage', ({ args, usage, flags }) => {
    const r = run(...args);
    expect(r.code).toBe(0);
    expect(r.out).toContain(usage);
    for (const flag of flags) expect(r.out).toContain(flag);
    expect(r.err).toBe('');
  });

  it('each command help is its own, not the global text', () => {
    expect(run('backup', '--help').out).not.toContain('--nodes');
    expect(run('cluster', '--help').out).not.toContain('--seeds');
  });

  it.each([['--version'], ['-v']])('%s prints the version from package.json', (flag) => {
    const r = run(flag);
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe(pkg.version);
  });
});

describe('usage errors: one line naming the flag, exit 2', () => {
  it.each([
    { args: ['start', '--bogus'], line: "troupe start: unknown option '--bogus' (see troupe start --help)" },
    { args: ['backup', '--bogus'], line: "troupe backup: unknown option '--bogus' (see troupe backup --help)" },
    { args: ['xyzzy'], line: "troupe: unknown command 'xyzzy' (see troupe --help)" },
    { args: ['strat'], line: "troupe: unknown command 'strat' (Did you mean start?) (see troupe --help)" },
    { args: ['start'], line: "troupe start: start needs --app <module> (or run 'troupe demo') (see troupe start --help)" },
    { args: ['start', 'extra'], line: 'troupe start: too many arguments' },
    { args: ['demo', '--http'], line: "troupe demo: option '--http <port>' argument missing" },
    { args: ['demo', '--http', 'abc'], line: 'troupe demo: --http must be a port number in [0, 65535] (got "abc")' },
    { args: ['demo', '--http', '99999'], line: 'troupe demo: --http must be a port number in [0, 65535] (got "99999")' },
    { args: ['demo', '--id', '5000'], line: 'troupe demo: --id must be in [0, 1023] (got 5000)' },
    { args: ['demo', '--workers', 'two'], line: 'troupe demo: --workers must be an integer (got "two")' },
    { args: ['demo', '--workers', '0'], line: 'troupe demo: --workers must be in [1, 256] (got 0)' },
    { args: ['demo', '--max-resident', '0'], line: 'troupe demo: --max-resident must be in [1, ' },
    { args: ['demo', '--max-mailbox-bytes', '1MB'], line: 'troupe demo: --max-mailbox-bytes must be an integer (got "1MB")' },
    {
      args: ['demo', '--log-level', 'loud'],
      line: 'troupe demo: --log-level must be one of fatal, error, warn, info, debug, trace, silent (got "loud")',
    },
    { args: ['demo', '--host', '999.1.1.1'], line: 'troupe demo: --host must be an IP address or a host name (got "999.1.1.1")' },
    { args: ['demo', '--host', 'bad host'], line: 'troupe demo: --host must be an IP address or a host name' },
    { args: ['demo', '--listen', '10.0.0.1', '--secret', 's'.repeat(16)], line: 'troupe demo: --listen must be host:port (got "10.0.0.1")' },
    { args: ['demo', '--listen', '999.0.0.1:7401', '--secret', 's'.repeat(16)], line: 'troupe demo: --listen must be an IP address or a host name' },
    {
      args: ['demo', '--listen', '0.0.0.0:7401', '--secret', 's'.repeat(16)],
      line: 'troupe demo: --listen 0.0.0.0:7401 binds every interface: add --advertise',
    },
    {
      args: ['demo', '--listen', '127.0.0.1:1', '--port', '2', '--secret', 's'.repeat(16)],
      line: 'troupe demo: --listen and --port both set the bind address',
    },
    {
      args: ['demo', '--port', '0', '--advertise', 'x:0', '--secret', 's'.repeat(16)],
      line: 'troupe demo: --advertise must be a port number in [1, 65535] (got "0")',
    },
    { args: ['demo', '--port', '0', '--seeds', 'a:1,b', '--secret', 's'.repeat(16)], line: 'troupe demo: --seeds must be host:port (got "b")' },
    { args: ['demo', '--port', '0'], line: 'troupe demo: a cluster needs --secret or TROUPE_CLUSTER_SECRET' },
    {
      args: ['demo', '--profile', 'wan', '--secret', 's'.repeat(16), '--port', '0'],
      line: 'troupe demo: --profile must be one of lan, seed-10s (got "wan")',
    },
    { args: ['demo', '--profile', 'lan'], line: 'troupe demo: --profile, --tls-* and --allow-solo apply to a cluster' },
    { args: ['demo', '--allow-solo'], line: 'troupe demo: --profile, --tls-* and --allow-solo apply to a cluster' },
    { args: ['demo', '--port', '0', '--secret', 's'.repeat(16), '--tls-cert', 'c'], line: 'troupe demo: --tls-cert needs --tls-key and --tls-ca' },
    {
      args: ['demo', '--port', '0', '--secret', 's'.repeat(16), '--tls-cert', '/nonexistent/c', '--tls-key', 'k', '--tls-ca', 'a'],
      line: 'troupe demo: --tls-cert /nonexistent/c: cannot read it (ENOENT)',
    },
    { args: ['demo', '--durability', 'commit'], line: 'troupe demo: --durability commit needs --data-dir' },
    {
      args: ['demo', '--durability', 'fast', '--data-dir', 'x'],
      line: 'troupe demo: --durability must be one of replicated, replicated+flush, lazy, flush, commit (got "fast")',
    },
    { args: ['demo', '--durability', 'replicated'], line: 'troupe demo: --durability replicated replicates across a cluster' },
    { args: ['demo', '--replicas', '2'], line: 'troupe demo: --replicas and --write-quorum apply to a cluster' },
    { args: ['demo', '--port', '0', '--secret', 's'.repeat(16), '--replicas', '9'], line: 'troupe demo: --replicas must be in [1, 7] (got 9)' },
    { args: ['demo', '--port', '0', '--secret', 's'.repeat(16), '--write-quorum', 'x'], line: 'troupe demo: --write-quorum must be' },
    { args: ['cluster', '--nodes', '0'], line: 'troupe cluster: --nodes must be in [1, 64] (got 0)' },
    { args: ['cluster', '--base-port', '70000'], line: 'troupe cluster: --base-port must be a port number in [1, 65535] (got "70000")' },
    { args: ['backup', '--to', 'x'], line: 'troupe backup: backup needs --data-dir' },
    { args: ['backup', '--data-dir', 'x'], line: 'troupe backup: backup needs --to' },
    { args: ['restore', '--data-dir', 'x'], line: 'troupe restore: restore needs --from' },
    { args: ['restore', '--from', 'x'], line: 'troupe restore: restore needs --data-dir' },
  ])('troupe $args', ({ args, line }) => {
    const r = run(...args);
    expect(r.code).toBe(2);
    expect(r.err.startsWith(line)).toBe(true);
    expect(r.err.trimEnd().split('\n')).toHaveLength(1);
    expect(r.err).toMatch(/\(see troupe( \w+)? --help\)\n$/);
    expect(r.err).not.toMatch(/options\.|\n\s+at /); // no API option names, no stack
  });
});

describe('runtime failures: one line with a hint, exit 1', () => {
  let busy: Server;
  let busyPort: number;
  beforeAll(async () => {
    busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    busyPort = (busy.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((resolve) => busy.close(() => resolve())));

  it('an HTTP port in use names --http and suggests --http 0', () => {
    const r = run('demo', '--workers', '1', '--http', String(busyPort));
    expect(r.code).toBe(1);
    expect(r.err).toBe(`troupe demo: --http ${busyPort}: address in use; pick another port or --http 0\n`);
  });

  it('a node-to-node port in use names --port', () => {
    const r = run('demo', '--workers', '1', '--http', '0', '--port', String(busyPort), '--secret', 's'.repeat(16));
    expect(r.code).toBe(1);
    expect(r.err).toBe(`troupe demo: --port ${busyPort}: address in use; pick another port or --port 0\n`);
  });

  it('an HTTP address that is not this machine’s names --host', () => {
    // 192.0.2.0/24 is TEST-NET-1: never assigned to a host.
    const r = run('demo', '--workers', '1', '--http', '0', '--host', '192.0.2.1');
    expect(r.code).toBe(1);
    expect(r.err).toBe(
      "troupe demo: --host 192.0.2.1: not an address of this machine; use one of its interfaces' addresses (or 0.0.0.0)\n",
    );
  });

  it('a --listen address that is not this machine’s names --listen', () => {
    const r = run('demo', '--workers', '1', '--http', '0', '--listen', '192.0.2.1:7401', '--secret', 's'.repeat(16));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^troupe demo: --listen 192\.0\.2\.1:7401: not an address of this machine/);
  });

  it('backup of a directory that is not a data directory fails with one line', () => {
    const r = run('backup', '--data-dir', '/nonexistent/troupe-data', '--to', '/nonexistent/backup');
    expect(r.code).toBe(1);
    expect(r.err.trimEnd().split('\n')).toHaveLength(1);
    expect(r.err).toMatch(/^troupe backup: ERR_/);
  });
});
