/**
 * Issue 10, scenario 12: the admin endpoint of a real `troupe start` (data directory, so the
 * owner-only socket `<dir>/admin.sock`, and `--admin-listen` on loopback with a token) refuses
 * another OS user, a client without the token and one with a wrong token. Promise for each:
 * refused, nothing run (a counter the refused command would have incremented stays at 0, no
 * actor message processed, nothing audited), and — where the node can see the attempt at all —
 * a log line naming the reason.
 *
 * Another OS user is refused by the kernel (the socket's mode is 0600), so that attempt never
 * reaches the node and cannot be in its log; the REPL prints the refusal on that user's side.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminClient } from '../../src/admin/admin-client.ts';
import { troupeBin } from '../../src/cli/node-process.ts';
import { ProcessCluster, type ProcessNode } from '../helpers/process-cluster.ts';
import { eventually } from '../helpers/processes.ts';
import { messagesProcessed } from './helpers.ts';

const TOKEN = 'admin-token-0123456789abcdef';
let adminPort: number;
const cluster = new ProcessCluster('security-admin', { jsonLogs: true, args: () => ['--admin-listen', `127.0.0.1:${adminPort}`] });
let node: ProcessNode;
let dir: string;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  adminPort = await freePort();
  process.env.TROUPE_ADMIN_TOKEN = TOKEN; // the node's environment is this one's, plus the cluster secret
  try {
    node = await cluster.start(1);
  } finally {
    delete process.env.TROUPE_ADMIN_TOKEN;
  }
  dir = node.dir!;
}, 60_000);
afterAll(() => cluster.stop(), 20_000);

const audit = () => (existsSync(join(dir, 'audit.log')) ? readFileSync(join(dir, 'audit.log'), 'utf8') : '');
const refusals = (reason: string) => node.messages.filter((m) => m === `admin connection refused: ${reason}`).length;

/** The counter `key` as the gateway reads it. */
async function count(key: string): Promise<number> {
  const res = await fetch(`${node.url}/actors/counter/${key}/get`, { method: 'POST' });
  return ((await res.json()) as { n: number }).n;
}

/** Sends `lines` over raw TCP to the admin port; resolves with what came back once the node closed the connection. */
function rawAdmin(lines: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(adminPort, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => (s.destroy(), reject(new Error('the admin endpoint did not close the connection'))), 5_000);
    s.on('connect', () => s.write(lines.join('\n') + '\n'));
    s.on('data', (d) => (data += d.toString()));
    s.on('error', () => undefined);
    s.on('close', () => (clearTimeout(timer), resolve(data)));
  });
}

/** A state-changing admin command, as a refused client would send it after its hello. */
const ask = (key: string) => JSON.stringify({ id: 1, command: 'ask', args: ['counter', key, 'incr'] });

describe('scenario 12: the admin endpoint refuses, runs nothing, and logs', () => {
  it('over TCP without the token: closed with nothing sent back; logged as "no token"', async () => {
    const before = { audit: audit(), logged: refusals('no token'), processed: await messagesProcessed([node]) };
    expect(await rawAdmin([JSON.stringify({ hello: 1, user: 'mallory' }), ask('no-token')])).toBe('');
    await eventually(
      async () => refusals('no token') === before.logged + 1,
      5_000,
      'the node logging "admin connection refused: no token"',
    );
    expect(await messagesProcessed([node])).toBe(before.processed);
    expect(audit()).toBe(before.audit);
    expect(await count('no-token')).toBe(0);
  });

  it('over TCP with a wrong token: ERR_AUTH_FAILED for the client, nothing run; logged as "wrong token"', async () => {
    const before = { audit: audit(), logged: refusals('wrong token'), processed: await messagesProcessed([node]) };
    await expect(
      AdminClient.connect({ host: '127.0.0.1', port: adminPort, token: 'wrong-token-wrong-token' }, 'mallory'),
    ).rejects.toMatchObject({
      code: 'ERR_AUTH_FAILED',
    });
    expect(await rawAdmin([JSON.stringify({ hello: 1, user: 'mallory', token: TOKEN.slice(0, -1) + 'X' }), ask('wrong-token')])).toBe('');
    await eventually(
      async () => refusals('wrong token') === before.logged + 2,
      5_000,
      'the node logging "admin connection refused: wrong token" twice',
    );
    expect(await messagesProcessed([node])).toBe(before.processed);
    expect(audit()).toBe(before.audit);
    expect(await count('wrong-token')).toBe(0);
  });

  it('over TCP, a first line that is not a hello: closed; logged', async () => {
    const before = refusals('first line is not an admin hello');
    expect(await rawAdmin(['GET / HTTP/1.1', ''])).toBe('');
    expect(await rawAdmin([ask('no-hello')])).toBe('');
    await eventually(
      async () => refusals('first line is not an admin hello') === before + 2,
      5_000,
      'two "not an admin hello" refusals logged',
    );
    expect(await count('no-hello')).toBe(0);
  });

  it("the right token is let in (the refusals above are the token's doing, not a closed port)", async () => {
    const c = await AdminClient.connect({ host: '127.0.0.1', port: adminPort, token: TOKEN }, 'ops');
    try {
      await c.call('ask', ['counter', 'with-token', 'incr']);
    } finally {
      c.close();
    }
    expect(await count('with-token')).toBe(1);
    expect(audit()).toContain('with-token');
  });

  it('another local OS user cannot open the admin socket (mode 0600): refused by the kernel, nothing run, nothing audited', async (ctx) => {
    const has = (cmd: string) => {
      try {
        execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    };
    const missing =
      process.getuid?.() !== 0
        ? 'not root (root is needed to create a user)'
        : !has('useradd') || !has('runuser')
          ? 'useradd or runuser is missing'
          : undefined;
    if (missing !== undefined) {
      if (process.env.CI === 'true') throw new Error(`the other-user admin test must run under CI=true: ${missing}`);
      console.warn(`SKIPPED other-user admin test: ${missing}`);
      return ctx.skip();
    }
    expect(statSync(join(dir, 'admin.sock')).mode & 0o777).toBe(0o600);
    const user = `troupe-s${process.pid % 100_000}`;
    execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', user]);
    const modes = [cluster.root, dir].map((d) => [d, statSync(d).mode & 0o777] as const);
    try {
      // Only the socket's own mode may stand in the way: the directories above it are opened to all.
      for (const [d] of modes) chmodSync(d, 0o755);
      const before = { audit: audit(), processed: await messagesProcessed([node]) };
      const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn('runuser', ['-u', user, '--', process.execPath, troupeBin, 'repl', '--data-dir', dir], {
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        child.on('exit', (code) => resolve({ code, stdout, stderr }));
        child.stdin.end('ask counter other-user incr\nstop\n');
      });
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/ERR_NODE_UNREACHABLE: not allowed to open .*admin\.sock \(EACCES\)/);
      expect(await messagesProcessed([node])).toBe(before.processed);
      expect(audit()).toBe(before.audit);
      expect(await count('other-user')).toBe(0);
      expect(node.child.exitCode, '`stop` did not reach the node').toBeNull();
    } finally {
      for (const [d, mode] of modes) chmodSync(d, mode);
      execFileSync('userdel', [user]);
    }
  }, 30_000);
});
