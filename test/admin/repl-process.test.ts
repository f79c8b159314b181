/**
 * `troupe repl` from the outside, as an operator uses it: two `troupe start` nodes on 127.0.0.1
 * with data directories, and the REPL attached to one of them with piped standard input (the
 * scripting mode). Each command is checked for its effect, not its parsing: `ask` changes a
 * counter the gateway then reads, `@2 …` answers from the other node, `stop` stops the process,
 * and the audit log names who ran what.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { troupeBin } from '../../src/cli/node-process.ts';
import { aliveCount, ProcessCluster, type ProcessNode } from '../helpers/process-cluster.ts';
import { eventually, exited } from '../helpers/processes.ts';

/** A kind whose handler can be made to fail (a worker-thread warning for `tail`). */
const hostileApp = fileURLToPath(new URL('../fixtures/hostile-actors.ts', import.meta.url));
const cluster = new ProcessCluster('repl', { logLevel: 'info', args: ['--app', hostileApp] });
/** The data directories, the REPL's history file and the backups all go under it. */
const root = cluster.root;
const nodes: Array<ProcessNode & { dir: string }> = [];

function hasTmux(): boolean {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return existsSync('/etc/passwd');
  } catch {
    return false;
  }
}

/** Runs `troupe repl <args>` with `script` on its standard input (`as`: a command prefix such as runuser). */
function repl(args: string[], script: string, as: string[] = [], onOutput?: (stdout: string) => void, timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const argv = [...as, process.execPath, troupeBin, 'repl', ...args];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      onOutput?.(stdout);
    });
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`troupe repl did not finish: ${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(script);
  });
}

const started = async (id: number, seeds: string[] = []) => {
  const n = await cluster.start(id, { seeds });
  return { ...n, dir: n.dir! };
};

beforeAll(async () => {
  nodes.push(await started(1));
  nodes.push(await started(2, [nodes[0]!.cluster]));
  nodes.push(await started(3, [nodes[0]!.cluster]));
  await eventually(async () => (await aliveCount(nodes[0]!)) === 3, 15_000, 'three nodes alive');
}, 60_000);

afterAll(() => cluster.stop());

describe('troupe repl against a running cluster', () => {
  it('the admin socket sits in the data directory, owner-only', () => {
    expect(statSync(join(nodes[0]!.dir, 'admin.sock')).mode & 0o777).toBe(0o600);
  });

  it('answers members, ring, where, actors, partitions and ask — here and on another member', async () => {
    // One ask through node 1's gateway, for `stats` to count.
    expect((await fetch(`${nodes[0]!.url}/actors/counter/stats-k/incr`, { method: 'POST', body: '{}' })).status).toBe(200);
    const r = await repl(
      ['--data-dir', nodes[0]!.dir],
      ['members', 'ring', 'where counter repl-k1', 'ask counter repl-k1 incr {"by": 3}', 'ask counter repl-k1 incr', '@2 actors', '@2 partitions primary', '@2 members', 'kinds', 'stats'].join('\n') + '\n',
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // members: both alive, this node marked
    expect(r.stdout).toMatch(/1 \(this\)\s+alive/);
    expect(r.stdout).toMatch(/\n2\s+alive/);
    expect(r.stdout).toMatch(/\n3\s+alive/);
    // ring: 1024 partitions shared by the three
    expect(r.stdout).toContain('1024 partitions, 3 copies each');
    // ask: the reply, and its effect through the gateway
    expect(r.stdout).toContain('"n": 4');
    const got = (await (await fetch(`${nodes[1]!.url}/actors/counter/repl-k1/get`, { method: 'POST', body: '{}' })).json()) as { n: number };
    expect(got.n).toBe(4);
    // stats: the asks this node answered per kind, with latency percentiles
    expect(r.stdout).toMatch(/"asks": \{\s+"counter": \{\s+"asks": \d+,\s+"ok": \d+/);
    expect(r.stdout).toContain('"p99Ms"');
    // @2 members: answered by node 2 itself (it marks itself as "this")
    expect(r.stdout).toMatch(/2 \(this\)\s+alive/);
    // @2 partitions primary: node 2 leads some partitions, and says so from its own view
    expect(r.stdout).toMatch(/\d+ partitions\npartition\s+role/);
    expect(r.stdout).toContain('counter');
  });

  it('a failing piped command names its error and exits 1, the others still run', async () => {
    const r = await repl(['--data-dir', nodes[0]!.dir], 'nosuch\nwhere counter\n@9 members\nkinds\n');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERR_UNKNOWN_COMMAND');
    expect(r.stderr).toContain('usage: where <kind> <key>');
    expect(r.stderr).toContain('ERR_UNKNOWN_NODE');
    expect(r.stdout).toContain('cart');
  });

  it('the audit log records the state-changing commands with the local user', () => {
    const lines = readFileSync(join(nodes[0]!.dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const asks = lines.filter((l) => l.command === 'ask');
    expect(asks).toHaveLength(2);
    expect(asks[0]).toMatchObject({ user: userInfo().username, via: 'unix socket', node: 1, target: 1, args: ['counter', 'repl-k1', 'incr', '{"by": 3}'] });
    expect(lines.some((l) => l.command === 'members' || l.command === 'actors')).toBe(false);
  });

  it('no node at the socket: a one-line named error and exit 1', async () => {
    const r = await repl(['--socket', join(root, 'nobody.sock')], 'members\n');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_NODE_UNREACHABLE: no node is listening at .*nobody\.sock/);
  });

  it('in a terminal: tab completes commands and kinds, and history persists across sessions', async (ctx) => {
    if (!hasTmux()) {
      if (process.env.CI === 'true') throw new Error('tmux is required under CI=true (.ci/run installs it)');
      console.warn('SKIPPED repl terminal test: tmux is not installed (apt-get install tmux)');
      return ctx.skip();
    }
    const history = join(root, 'history');
    const session = `troupe-repl-${process.pid}`;
    // A private tmux server: nothing shared with the user's sessions, killed at the end.
    const tmux = (...a: string[]) => execFileSync('tmux', ['-L', session, ...a], { encoding: 'utf8' });
    const screen = () => tmux('capture-pane', '-p', '-t', session);
    const open = () =>
      tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '50', '-e', `TROUPE_REPL_HISTORY=${history}`, process.execPath, troupeBin, 'repl', '--data-dir', nodes[0]!.dir);
    const closed = async () => {
      await eventually(async () => { try { tmux('has-session', '-t', session); return false; } catch { return true; } }, 5_000, 'the REPL to exit on Ctrl-D');
    };
    try {
      open();
      await eventually(async () => screen().includes('troupe(node 1)>'), 10_000, () => `a prompt:\n${screen()}`);
      tmux('send-keys', '-t', session, 'ki', 'Tab');
      await eventually(async () => /> kinds\s*$/m.test(screen()), 5_000, () => `"ki" completed to "kinds":\n${screen()}`);
      tmux('send-keys', '-t', session, 'Enter');
      await eventually(async () => screen().includes('cart'), 5_000, () => `the kinds table:\n${screen()}`);
      // top redraws every second until a key is pressed, then the prompt comes back.
      tmux('send-keys', '-t', session, 'top', 'Enter');
      await eventually(async () => screen().includes('msgs/s') && screen().includes('any key ends it'), 10_000, () => `a top frame:\n${screen()}`);
      tmux('send-keys', '-t', session, 'q');
      await eventually(async () => /troupe\(node 1\)>\s*$/.test(screen().trimEnd()), 5_000, () => `the prompt back after a key:\n${screen()}`);
      tmux('send-keys', '-t', session, 'where ca', 'Tab');
      await eventually(async () => /> where cart\s*$/m.test(screen()), 5_000, () => `"where ca" completed to "where cart":\n${screen()}`);
      tmux('send-keys', '-t', session, ' tty-k1', 'Enter');
      await eventually(async () => screen().includes('tty-k1'), 5_000, () => `the where table:\n${screen()}`);
      tmux('send-keys', '-t', session, 'C-d');
      await closed();
      // A new session: the arrow key brings back the last command of the previous one.
      open();
      await eventually(async () => screen().includes('troupe(node 1)>'), 10_000, () => `a prompt:\n${screen()}`);
      tmux('send-keys', '-t', session, 'Up');
      await eventually(async () => /> where cart tty-k1\s*$/m.test(screen()), 5_000, () => `history recalled:\n${screen()}`);
      tmux('send-keys', '-t', session, 'C-u', 'C-d');
      await closed();
      expect(readFileSync(history, 'utf8')).toContain('where cart tty-k1');
    } finally {
      try {
        tmux('kill-server');
      } catch {
        // already gone
      }
    }
  });

  it('inspect, restart and passivate act on the live actor where it lives', async () => {
    const dir1 = nodes[0]!.dir;
    await repl(['--data-dir', dir1], 'ask counter insp-k incr {"by": 3}\nask counter insp-k incr\n');
    const where = await repl(['--data-dir', dir1], 'where counter insp-k\n');
    const primary = Number(/insp-k\s+\d+\s+(\d+)/.exec(where.stdout)![1]);
    const at = `@${primary}`;
    const restartsOf = (out: string) => Number(/\n\s*0\s+\d+\s+\S+\s+\d+\s+\d+\s+\d+\s+(\d+)/.exec(out)![1]);

    const before = await repl(['--data-dir', dir1], `${at} inspect counter insp-k\n${at} actors\n${at} restart counter insp-k\n${at} restart counter never-seen\n`);
    expect(before.stdout).toContain(`counter/insp-k on node ${primary}, slot 0: resident (active)`);
    expect(before.stdout).toContain('state (7 bytes of JSON): {"n":4}');
    expect(before.stdout).toMatch(/last 2 events:\n  #1 v\d+ .*\n  #2 v\d+ /);
    expect(before.stdout).toContain(`counter/insp-k on node ${primary} restarts`);
    expect(before.stderr).toContain(`ERR_NOT_FOUND: counter/never-seen is not resident on node ${primary}`);
    // The restart happened (the slot counts it) and the state came back from the journal.
    await eventually(async () => restartsOf((await repl(['--data-dir', dir1], `${at} actors\n`)).stdout) === restartsOf(before.stdout) + 1, 10_000, 'the restart counted');
    expect((await repl(['--data-dir', dir1], 'ask counter insp-k get\n')).stdout).toContain('"n": 4');

    await repl(['--data-dir', dir1], `${at} passivate counter insp-k\n`);
    await eventually(async () => (await repl(['--data-dir', dir1], `${at} inspect counter insp-k\n`)).stdout.includes('not resident'), 10_000, 'passivated');
    // Inspecting it did not bring it back; its state is read from the journal.
    const cold = await repl(['--data-dir', dir1], `${at} inspect counter insp-k\n`);
    expect(cold.stdout).toContain('not resident (shown from the journal; not activated)');
    expect(cold.stdout).toContain('{"n":4}');
    // The next message reactivates it.
    await repl(['--data-dir', dir1], 'ask counter insp-k get\n');
    expect((await repl(['--data-dir', dir1], `${at} inspect counter insp-k\n`)).stdout).toContain('resident (active)');

    const audit = readFileSync(join(dir1, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(audit.filter((a) => a.command === 'restart' || a.command === 'passivate').map((a) => [a.command, a.target, a.args[1]])).toEqual([
      ['restart', primary, 'insp-k'],
      ['restart', primary, 'never-seen'],
      ['passivate', primary, 'insp-k'],
    ]);
    expect(audit.some((a) => a.command === 'inspect')).toBe(false);
  });

  it('actors top names the busy actor, and piped top prints frames for every node', async () => {
    for (let i = 0; i < 30; i++) await fetch(`${nodes[0]!.url}/actors/counter/hot-k/incr`, { method: 'POST', body: '{}' });
    const where = await repl(['--data-dir', nodes[0]!.dir], 'where counter hot-k\n');
    const primary = Number(/hot-k\s+\d+\s+(\d+)/.exec(where.stdout)![1]);
    const r = await repl(['--data-dir', nodes[0]!.dir], `@${primary} actors top 3\ntop 2\n`);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/0\s+busiest\s+counter\s+hot-k\s+(\d+)/);
    expect(Number(/busiest\s+counter\s+hot-k\s+(\d+)/.exec(r.stdout)![1])).toBeGreaterThanOrEqual(30);
    expect(r.stdout.split('\n').filter((l) => l.startsWith('top: '))).toHaveLength(2);
    expect(r.stdout).toMatch(/node\s+msgs\/s\s+asks\/s\s+resident\s+queued\s+repl lag p99\s+busiest/);
    expect(r.stdout).toMatch(/1 \(this\)\s+\d+\s+\d+\s+\d+\s+\d+/);
    expect(r.stdout).toMatch(/\n2\s+\d+\s+\d+\s+\d+\s+\d+/);
    expect(r.stdout).toContain('counter/hot-k (');
  });

  it('@2 tail streams node 2\'s log lines while they happen, then ends', async () => {
    let seen = false;
    const tail = repl(['--data-dir', nodes[0]!.dir], '@2 tail info 6s\n', [], (out) => (seen ||= out.includes('ran kinds') || out.includes('ran ask')));
    // Something node 2 logs at info: an audited command run there. Repeated until tail shows one
    // (tail's follower opens a moment after the REPL starts).
    await eventually(async () => {
      await repl(['--data-dir', nodes[1]!.dir], 'ask counter tail-k incr\n');
      return seen;
    }, 6_000, 'an audit line of node 2 in tail');
    const r = await tail;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/INFO \[node 2\] admin: \S+ \(unix socket\) ran ask/);
    expect(r.stdout).not.toContain('[node 1]');
  });

  it("tail shows a worker thread's warnings: a handler that failed, on the node that hosts it", async () => {
    // Keys whose partition node 2 leads: a failing handler logs there, in node 2's worker thread.
    const candidates = Array.from({ length: 40 }, (_, i) => `tail-boom-${i}`);
    const w = await repl(['--data-dir', nodes[0]!.dir], candidates.map((k) => `where hostile ${k}`).join('\n') + '\n');
    const keys = candidates.filter((k) => new RegExp(`hostile\\s+${k}\\s+\\d+\\s+2\\s`).test(w.stdout));
    expect(keys.length).toBeGreaterThan(3);
    let seen = false;
    const tail = repl(['--data-dir', nodes[0]!.dir], '@2 tail warn 6s\n', [], (out) => (seen ||= out.includes('handler failed')));
    let i = 0;
    await eventually(
      async () => {
        // The handler throws (no hostile value of that name): the worker logs it at warn and
        // restarts the actor (a fresh key each time: an actor past its restart intensity stops).
        await fetch(`${nodes[0]!.url}/actors/hostile/${keys[i++ % keys.length]}/reply`, { method: 'POST', body: '{"value":"no-such-value"}' });
        return seen;
      },
      6_000,
      "the worker's 'handler failed' line in tail",
    );
    const r = await tail;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/WARN \[node 2\/w0\] handler failed; restarting actor/);
  });

  it('backup writes a hot copy of the node\'s store into the directory, audited', async () => {
    const to = join(root, 'backup-1');
    const r = await repl(['--data-dir', nodes[0]!.dir], `backup ${to}\nbackup ${to}\n`);
    expect(r.stdout).toContain(`node 1: backed up ${join(nodes[0]!.dir, 'journal')} to ${to}`);
    expect(statSync(join(to, 'data.mdb')).size).toBeGreaterThan(0);
    expect(r.stderr).toContain('already holds a backup');
    const audit = readFileSync(join(nodes[0]!.dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(audit.filter((a) => a.command === 'backup')).toHaveLength(2);
  });

  it('leave-plan and join-plan say what would move, and change nothing', async () => {
    const r = await repl(['--data-dir', nodes[0]!.dir], 'leave-plan 2\njoin-plan\nring\n');
    expect(r.stderr).toBe('');
    const leave = /node 2 leaves: (\d+) of 1024 partitions change primary, (\d+) copies move/.exec(r.stdout)!;
    const join_ = /node 4 joins: (\d+) of 1024 partitions change primary, (\d+) copies move/.exec(r.stdout)!;
    // Node 2 leads about a third; the other two already hold a copy of every partition (R=3 on three nodes).
    expect(Number(leave[1])).toBeGreaterThan(1024 / 3 - 100);
    expect(Number(leave[1])).toBeLessThan(1024 / 3 + 100);
    expect(Number(leave[2])).toBe(0);
    // A fourth node would lead about a quarter and hold three quarters of the copies (3 of 4 nodes each).
    expect(Number(join_[1])).toBeGreaterThan(1024 / 4 - 100);
    expect(Number(join_[1])).toBeLessThan(1024 / 4 + 100);
    expect(Number(join_[2])).toBeGreaterThan((3 * 1024) / 4 - 150);
    expect(Number(join_[2])).toBeLessThan((3 * 1024) / 4 + 150);
    // Nothing moved: all three still members, sharing the ring.
    expect(r.stdout).toContain('1024 partitions, 3 copies each');
    expect(r.stdout).toMatch(/\n\s*2\s+\d+\s+\d+\.\d%\s+1024/);
  });

  it('a local user other than the node\'s cannot open the admin socket: a named error, nothing run, nothing audited', async (ctx) => {
    const missing = process.getuid?.() !== 0 ? 'not root (root is needed to create a user)' : !hasCommand('useradd') || !hasCommand('runuser') ? 'useradd or runuser is missing' : undefined;
    if (missing !== undefined) {
      if (process.env.CI === 'true') throw new Error(`the unprivileged-user test must run under CI=true: ${missing}`);
      console.warn(`SKIPPED unprivileged-user admin test: ${missing}`);
      return ctx.skip();
    }
    const user = `troupe-t${process.pid % 100_000}`;
    execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', user]);
    const modes = [root, nodes[0]!.dir].map((d) => [d, statSync(d).mode & 0o777] as const);
    try {
      // Only the socket's own mode may stand in the way: the directories above it are opened to all.
      for (const [d] of modes) chmodSync(d, 0o755);
      const auditBefore = readFileSync(join(nodes[0]!.dir, 'audit.log'), 'utf8');
      const r = await repl(['--data-dir', nodes[0]!.dir], 'ask counter intruder-k incr\nstop\n', ['runuser', '-u', user, '--']);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/ERR_NODE_UNREACHABLE: not allowed to open .*admin\.sock \(EACCES\)/);
      expect(readFileSync(join(nodes[0]!.dir, 'audit.log'), 'utf8')).toBe(auditBefore);
      // And root, for comparison, still gets in (the node is up: stop did not reach it).
      expect((await repl(['--data-dir', nodes[0]!.dir], 'kinds\n')).stdout).toContain('counter');
    } finally {
      for (const [d, mode] of modes) chmodSync(d, mode);
      execFileSync('userdel', [user]);
    }
  });

  it('@3 drain, run from node 1, prints what node 3 still leads until it stopped; nodes 1 and 2 serve its keys', async () => {
    // Keys node 3 leads, written before the drain.
    const keys = Array.from({ length: 12 }, (_, i) => `drain-k${i}`);
    const where = await repl(['--data-dir', nodes[0]!.dir], keys.map((k) => `where counter ${k}`).join('\n') + '\n');
    const led = keys.filter((k) => new RegExp(`${k}\\s+\\d+\\s+3\\s`).test(where.stdout));
    expect(led.length).toBeGreaterThan(0);
    for (const k of led) await fetch(`${nodes[0]!.url}/actors/counter/${k}/incr`, { method: 'POST', body: '{"by": 5}' });

    const r = await repl(['--data-dir', nodes[0]!.dir], '@3 drain\n', [], undefined, 60_000);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('node 3 is draining: its partitions move to the others, then it stops');
    // At least one progress line from node 3 itself, its count never growing, then the final line.
    const progress = lines.slice(1, -1).map((l) => Number(/^node 3 drains: leads (\d+) partitions/.exec(l)?.[1]));
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.every(Number.isInteger)).toBe(true);
    expect(progress).toEqual([...progress].sort((a, b) => b - a));
    expect(lines.at(-1)).toBe('node 3 drained and stopped');
    await Promise.race([exited(nodes[2]!.child), new Promise((_, reject) => setTimeout(() => reject(new Error('node 3 did not exit')), 15_000))]);
    expect(nodes[2]!.child.exitCode).toBe(0);
    // Its keys, with their state, are served by the two left.
    for (const node of [nodes[0]!, nodes[1]!])
      for (const k of led) {
        const got = (await (await fetch(`${node.url}/actors/counter/${k}/get`, { method: 'POST', body: '{}' })).json()) as { n: number };
        expect(got.n).toBe(5);
      }
  }, 90_000);

  it('@2 stop, run from node 1, stops node 2', async () => {
    const r = await repl(['--data-dir', nodes[0]!.dir], '@2 stop\n');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('node 2 is stopping');
    await Promise.race([exited(nodes[1]!.child), new Promise((_, reject) => setTimeout(() => reject(new Error('node 2 did not exit')), 15_000))]);
    const audit = readFileSync(join(nodes[0]!.dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(audit.at(-1)).toMatchObject({ command: 'stop', node: 1, target: 2 });
  });
});
