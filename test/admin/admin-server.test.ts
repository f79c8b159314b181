import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminClient } from '../../src/admin/admin-client.ts';
import type { AdminTarget } from '../../src/admin/admin-commands.ts';
import { formatResult, parseCommandLine, runRepl } from '../../src/admin/admin-repl.ts';
import { AdminExecutor } from '../../src/admin/admin-executor.ts';
import { AdminServer } from '../../src/admin/admin-server.ts';
import { pino } from 'pino';
import { LogTap, silentLogger } from '../../src/core/logger.ts';
import type { ActorView, SlotView } from '../../src/admin/admin-commands.ts';
import { movePlanOf } from '../../src/node/node-admin.ts';

/** The fake node's log: pino into a tap of its own, as createLogger's loggers write into the process's. */
const tap = new LogTap({ bufferLines: 5, maxFollowers: 4 });
const fakeLog = pino({ level: 'trace', base: { node: 1 } }, tap);
const threeMembers = [1, 2, 3].map((id) => ({ id, address: `127.0.0.1:740${id}` }));

/** A node as the admin commands see it, recording what was asked of it. */
function fakeTarget(): AdminTarget & { asked: unknown[]; drained: number; steered: unknown[]; backups: string[]; samples: number } {
  const resident = new Set(['k1']);
  const t = {
    id: 1,
    asked: [] as unknown[],
    drained: 0,
    steered: [] as unknown[],
    backups: [] as string[],
    samples: 0,
    inspect: async (kind: string, key: string): Promise<ActorView> => ({
      kind,
      key,
      slot: 0,
      resident: resident.has(key),
      ...(resident.has(key) && { status: 'active' }),
      state: { n: 4 },
      stateBytes: 7,
      seq: 2,
      mailbox: resident.has(key) ? 3 : 0,
      processed: 9,
      recent: 5,
      events: [
        { seq: 1, v: 1, event: { by: 3 } },
        { seq: 2, v: 1, event: { by: 1 } },
      ],
    }),
    steer: async (kind: string, key: string, op: string) => {
      t.steered.push([kind, key, op]);
      return resident.has(key);
    },
    // Every call is a later sample: 100 more messages and 10 more asks each time.
    top: async (n: number): Promise<SlotView[]> => {
      t.samples++;
      const busiest = [
        { kind: 'counter', key: 'hot', recent: 50, processed: 80, mailbox: 0, status: 'active' },
        { kind: 'counter', key: 'warm', recent: 7, processed: 9, mailbox: 2, status: 'busy' },
      ].slice(0, n);
      return [{ slot: 0, resident: 5, scanned: 5, processed: 100 * t.samples, asks: 10 * t.samples, busiest, largest: [busiest[1]!] }];
    },
    follow: (level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal') => tap.follow(level, 1).id,
    followed: (id: number) => tap.follower(id)?.take(),
    unfollow: (id: number) => tap.follower(id)?.close(),
    backup: async (dir: string) => {
      t.backups.push(dir);
      return '/data/n1/journal';
    },
    movePlan: (change: { leave: number } | { join: number }) =>
      movePlanOf(threeMembers, 'leave' in change ? threeMembers.filter((m) => m.id !== change.leave) : [...threeMembers, { id: change.join, address: 'plan' }], 2, 1024, 'leave' in change ? `node ${change.leave} leaves` : `node ${change.join} joins`),
    members: () => [
      { id: 1, address: '127.0.0.1:7401', incarnation: 3, status: 'alive', zone: 'a' },
      { id: 2, address: '127.0.0.1:7402', incarnation: 1, status: 'suspect' },
      { id: 3, address: '127.0.0.1:7403', incarnation: 1, status: 'alive' },
    ],
    placement: () => ({ partitions: 1024, replicas: 2, primaries: { '1': 600, '2': 424 }, copies: { '1': 1024, '2': 1024 } }),
    where: (_kind: string, key: string) => ({ partition: key.length, replicas: [2, 1], slot: 0, thread: 7 }),
    workers: async () => [{ slot: 0, resident: 5, byKind: { counter: 5 }, queued: 0, pendingAsks: 0, processed: 42, restarts: 0, deadLetters: 0 }],
    partitions: () => [{ p: 3, role: 'primary', epoch: '2/1', end: 10, commit: 10, applied: 10 }],
    counters: () => ({ router: { forwarded: 1 } }),
    kinds: () => ['counter', 'cart'],
    ask: async (kind: string, key: string, command: string, input: unknown) => {
      t.asked.push([kind, key, command, input]);
      return { n: 1 };
    },
    drain: async () => {
      t.drained++;
    },
    stop: async () => undefined,
  };
  return t;
}

let dir: string;
let server: AdminServer;
let target: ReturnType<typeof fakeTarget>;
const TOKEN = 'a-token-of-24-characters';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'troupe-admin-'));
  target = fakeTarget();
  server = await AdminServer.start({
    executor: new AdminExecutor({ target, log: silentLogger, auditPath: join(dir, 'audit.log') }),
    log: silentLogger,
    socketPath: join(dir, 'admin.sock'),
    tcp: { host: '127.0.0.1', port: 0, token: TOKEN, tokenName: 'ops' },
  });
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Connects raw, writes `lines`, and collects every byte until the server closes or `ms` pass. */
function rawExchange(lines: string[], ms = 1500): Promise<{ data: string; closed: boolean }> {
  const [host, port] = server.tcpEndpoint!.split(':') as [string, string];
  return new Promise((resolve) => {
    const s = connect(Number(port), host);
    let data = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ data, closed: false });
    }, ms);
    s.on('connect', () => s.write(lines.join('\n') + '\n'));
    s.on('data', (d) => (data += d.toString()));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ data, closed: true });
    });
  });
}

describe('the admin endpoint', () => {
  it('the Unix socket is owner-only (mode 0600)', () => {
    expect(statSync(join(dir, 'admin.sock')).mode & 0o777).toBe(0o600);
  });

  it('answers commands over the socket with tables', async () => {
    const c = await AdminClient.connect({ socketPath: join(dir, 'admin.sock') }, 'alice');
    expect(c.node).toBe(1);
    expect(c.kinds).toEqual(['counter', 'cart']);
    const members = await c.call('members', []);
    expect(formatResult(members)).toMatch(/1 \(this\)\s+alive\s+3\s+a\s+127\.0\.0\.1:7401/);
    const where = await c.call('where', ['counter', 'k1']);
    expect(where).toMatchObject({ kind: 'table', rows: [['counter', 'k1', 2, 2, '1', 0, 7]] });
    await expect(c.call('where', ['counter'])).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    await expect(c.call('bogus', [])).rejects.toMatchObject({ code: 'ERR_UNKNOWN_COMMAND' });
    c.close();
  });

  it('records every state-changing command with who ran it, and not the read-only ones', async () => {
    const c = await AdminClient.connect({ socketPath: join(dir, 'admin.sock') }, 'alice');
    await c.call('ask', ['counter', 'k1', 'incr', '{"by": 2}']);
    await c.call('drain', []);
    await c.call('actors', []);
    c.close();
    expect(target.asked).toContainEqual(['counter', 'k1', 'incr', { by: 2 }]);
    expect(target.drained).toBe(1);
    const audit = readFileSync(join(dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(audit.map((a) => [a.user, a.via, a.command])).toEqual([
      ['alice', 'unix socket', 'ask'],
      ['alice', 'unix socket', 'drain'],
    ]);
    expect(audit[0].args).toEqual(['counter', 'k1', 'incr', '{"by": 2}']);
    expect(statSync(join(dir, 'audit.log')).mode & 0o777).toBe(0o600);
  });

  it('over TCP: the right token is answered and named in the audit log', async () => {
    const [host, port] = server.tcpEndpoint!.split(':') as [string, string];
    const c = await AdminClient.connect({ host, port: Number(port), token: TOKEN }, 'mallory-claims-root');
    await c.call('ask', ['counter', 'k2', 'incr']);
    c.close();
    const last = readFileSync(join(dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).at(-1);
    expect([last.user, last.via]).toEqual(['ops', 'tcp']);
  });

  it.each([
    ['no token', [JSON.stringify({ hello: 1, user: 'x' }), JSON.stringify({ id: 1, command: 'members', args: [] })]],
    ['a wrong token', [JSON.stringify({ hello: 1, user: 'x', token: 'not-the-token-at-all' }), JSON.stringify({ id: 1, command: 'members', args: [] })]],
    ['a request before hello', [JSON.stringify({ id: 1, command: 'members', args: [] })]],
    ['not JSON', ['members']],
    ['a prototype key', [JSON.stringify({ hello: 1, user: 'x', token: TOKEN }).replace('{', '{"__proto__":{"x":1},')]],
  ])('over TCP, %s gets nothing back, not even a hello, and is closed', async (_, lines) => {
    const r = await rawExchange(lines);
    expect(r).toEqual({ data: '', closed: true });
  });

  it('a client refused gets a named error', async () => {
    const [host, port] = server.tcpEndpoint!.split(':') as [string, string];
    await expect(AdminClient.connect({ host, port: Number(port), token: 'wrong-token-wrong-token' }, 'x')).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' });
  });

  it('an over-long line closes only that connection', async () => {
    const r = await rawExchange([JSON.stringify({ hello: 1, user: 'x', token: TOKEN }), 'x'.repeat((1 << 20) + 10)], 3000);
    expect(r.closed).toBe(true);
    const c = await AdminClient.connect({ socketPath: join(dir, 'admin.sock') }, 'alice');
    await expect(c.call('kinds', [])).resolves.toMatchObject({ kind: 'table' });
    c.close();
  });

  it('a command for another member without a cluster is a named error', async () => {
    const c = await AdminClient.connect({ socketPath: join(dir, 'admin.sock') }, 'alice');
    await expect(c.call('actors', [], 2)).rejects.toMatchObject({ code: 'ERR_UNKNOWN_NODE' });
    c.close();
  });
});

describe('the REPL', () => {
  it.each<[string, ReturnType<typeof parseCommandLine>]>([
    ['members', { command: 'members', args: [] }],
    ['  where counter k1  ', { command: 'where', args: ['counter', 'k1'] }],
    ['@2 actors', { node: 2, command: 'actors', args: [] }],
    ['ask cart alice add {"item": "green tea", "qty": 2}', { command: 'ask', args: ['cart', 'alice', 'add', '{"item": "green tea", "qty": 2}'] }],
    ['ask counter k1 get', { command: 'ask', args: ['counter', 'k1', 'get'] }],
  ])('parses %j', (line, parsed) => {
    expect(parseCommandLine(line)).toEqual(parsed);
  });

  it('with piped input runs each line, prints plain tables and names each failure', async () => {
    const c = await AdminClient.connect({ socketPath: join(dir, 'admin.sock') }, 'alice');
    const input = new PassThrough();
    const output = new PassThrough();
    const errors = new PassThrough();
    let out = '';
    let err = '';
    output.on('data', (d) => (out += d));
    errors.on('data', (d) => (err += d));
    input.end('members\nring\n\nbogus\nwhere counter\n');
    const { failures } = await runRepl(c, { input, output, errors });
    c.close();
    expect(failures).toBe(2);
    expect(out).toContain('1024 partitions, 2 copies each');
    expect(out).toMatch(/1\s+600\s+58\.6%\s+1024/);
    expect(err).toContain('ERR_UNKNOWN_COMMAND');
    expect(err).toContain('usage: where <kind> <key>');
  });
});

/** Runs `script` through the REPL's piped mode on a fresh socket connection. */
async function piped(script: string): Promise<{ out: string; err: string; failures: number }> {
  const c = await AdminClient.connect({ socketPath: join(dir, 'admin.sock') }, 'alice');
  const input = new PassThrough();
  const output = new PassThrough();
  const errors = new PassThrough();
  let out = '';
  let err = '';
  output.on('data', (d) => (out += d));
  errors.on('data', (d) => (err += d));
  input.end(script);
  const { failures } = await runRepl(c, { input, output, errors });
  c.close();
  return { out, err, failures };
}

function auditLines(): Array<Record<string, unknown>> {
  return readFileSync(join(dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

describe('operating commands (fake node)', () => {
  it('inspect shows state, last events, mailbox, slot, and whether the actor is resident', async () => {
    const r = await piped('inspect counter k1\ninspect counter cold\ninspect nosuch k1\ninspect counter\n');
    expect(r.out).toContain('counter/k1 on node 1, slot 0: resident (active)');
    expect(r.out).toContain('seq 2, mailbox 3, processed 9 (5 recently)');
    expect(r.out).toContain('state (7 bytes of JSON): {"n":4}');
    expect(r.out).toMatch(/last 2 events:\n  #1 v1 \{"by":3\}\n  #2 v1 \{"by":1\}/);
    expect(r.out).toContain('counter/cold on node 1, slot 0: not resident (shown from the journal; not activated)');
    expect(r.err).toContain("ERR_UNKNOWN_KIND: node 1 serves no actor kind 'nosuch'");
    expect(r.err).toContain('usage: inspect <kind> <key>');
    expect(r.failures).toBe(2);
  });

  it('restart and passivate reach the actor, are audited, and name an actor that is not resident', async () => {
    const before = auditLines().length;
    const r = await piped('restart counter k1\npassivate counter k1\nrestart counter cold\n');
    expect(r.out).toContain('counter/k1 on node 1 restarts');
    expect(r.out).toContain('counter/k1 on node 1 passivates');
    expect(r.err).toContain('ERR_NOT_FOUND: counter/cold is not resident on node 1: nothing to restart');
    expect(target.steered).toEqual([
      ['counter', 'k1', 'restart'],
      ['counter', 'k1', 'passivate'],
      ['counter', 'cold', 'restart'],
    ]);
    // Audited before they run: the refused one too (an operator tried it).
    expect(auditLines().slice(before).map((a) => [a.command, a.args])).toEqual([
      ['restart', ['counter', 'k1']],
      ['passivate', ['counter', 'k1']],
      ['restart', ['counter', 'cold']],
    ]);
  });

  it('actors top lists the busiest and largest per slot', async () => {
    const r = await piped('actors top 2\nactors bogus\n');
    expect(r.out).toContain('top 2 actors per slot on node 1');
    expect(r.out).toMatch(/0\s+busiest\s+counter\s+hot\s+50\s+0\s+80\s+active/);
    expect(r.out).toMatch(/0\s+largest\s+counter\s+warm\s+7\s+2\s+9\s+busy/);
    expect(r.err).toContain('usage: actors [top [n]]');
  });

  it('piped top prints the asked number of frames, with rates between samples', async () => {
    const r = await piped('top 2\n');
    const frames = r.out.split('\n').filter((l) => l.startsWith('top: '));
    expect(frames).toHaveLength(2);
    // 100 messages and 10 asks more per sample, a second apart (± scheduling): ~100/s and ~10/s.
    const row = /1 \(this\)\s+(\d+)\s+(\d+)\s+5\s+0\s+-\s+counter\/hot \(50\), counter\/warm \(7\)/.exec(r.out);
    expect(row).not.toBeNull();
    expect(Number(row![1])).toBeGreaterThan(50);
    expect(Number(row![1])).toBeLessThanOrEqual(100);
    expect(Number(row![2])).toBeLessThanOrEqual(10);
    // Members this node cannot reach show their error instead of numbers.
    expect(r.out).toMatch(/\n2\s+-\s+-\s+-\s+-\s+-\s+ERR_UNKNOWN_NODE/);
    expect(r.err).toBe('');
  });

  it('piped tail prints the lines at the level and above while it runs, then ends', async () => {
    const done = piped('tail warn 600ms\n');
    // Lines logged while tail runs: the REPL's follower is open once tail-open was answered.
    const logUntil = setInterval(() => {
      fakeLog.info('an info line');
      fakeLog.warn({ disk: 'sda' }, 'a warn line');
    }, 50);
    const r = await done.finally(() => clearInterval(logUntil));
    expect(r.out).toMatch(/WARN \[node 1\] a warn line \{"disk":"sda"\}/);
    expect(r.out).not.toContain('an info line');
    // Five lines of buffer and a 200 ms poll: with lines every 50 ms nothing is dropped.
    expect(r.out).not.toContain('dropped');
    expect(r.failures).toBe(0);
  });

  it('tail refuses an unknown level and a malformed duration by name', async () => {
    const r = await piped('tail loud\ntail warn forever\n');
    expect(r.err).toContain("tail level must be one of trace, debug, info, warn, error, fatal; got 'loud'");
    expect(r.err).toContain("duration is like 2s, 500ms or 1m; got 'forever'");
  });

  it('backup gets an absolute directory (relative to the REPL) and is audited', async () => {
    const r = await piped('backup some/dir\n');
    expect(r.out).toContain('node 1: backed up /data/n1/journal to ');
    expect(target.backups.at(-1)).toBe(join(process.cwd(), 'some/dir'));
    expect(auditLines().at(-1)).toMatchObject({ command: 'backup', args: [join(process.cwd(), 'some/dir')] });
  });

  it('leave-plan and join-plan count what moves, from the partition table alone', async () => {
    const r = await piped('leave-plan 3\njoin-plan\njoin-plan 2\nleave-plan 9\n');
    const leave = /node 3 leaves: (\d+) of 1024 partitions change primary, (\d+) copies move/.exec(r.out);
    const join_ = /node 4 joins: (\d+) of 1024 partitions change primary, (\d+) copies move/.exec(r.out);
    // Node 3 led about a third; with 2 copies of each, every partition it held needs a new copy.
    expect(Number(leave![1])).toBeGreaterThan(1024 / 3 - 80);
    expect(Number(leave![1])).toBeLessThan(1024 / 3 + 80);
    expect(Number(leave![2])).toBeGreaterThan(2 * (1024 / 3) - 120);
    // A fourth node takes about a quarter of the primaries, and every move is to it.
    expect(Number(join_![1])).toBeGreaterThan(1024 / 4 - 80);
    expect(Number(join_![1])).toBeLessThan(1024 / 4 + 80);
    expect(r.out).toMatch(new RegExp(`\\n\\s*4\\s+0\\s+${join_![1]}\\s+0\\s+${join_![2]}`));
    expect(r.err).toContain('ERR_INVALID_INPUT: join-plan [id]: node 2 is a member already');
    expect(r.err).toContain('ERR_UNKNOWN_NODE: leave-plan: node 9 is not a member');
  });

  it('help and completion list the new commands, and not the building blocks of top and tail', async () => {
    const c = await AdminClient.connect({ socketPath: join(dir, 'admin.sock') }, 'alice');
    expect(c.commands).toEqual(expect.arrayContaining(['inspect', 'restart', 'passivate', 'backup', 'leave-plan', 'join-plan', 'top', 'tail']));
    expect(c.commands).not.toContain('sample');
    expect(c.commands).not.toContain('tail-open');
    const help = formatResult(await c.call('help', []));
    c.close();
    for (const usage of ['inspect <kind> <key>', 'restart <kind> <key>', 'passivate <kind> <key>', 'actors [top [n]]', 'top [snapshots]', 'tail [level] [duration]', 'backup <dir>', 'leave-plan <node>', 'join-plan [id]'])
      expect(help).toContain(usage);
    expect(help).not.toContain('tail-read');
  });
});

describe('the log tap', () => {
  it('a follower that does not read loses its oldest lines, counted, and never holds the logger up', () => {
    const t = new LogTap({ bufferLines: 3, maxFollowers: 2 });
    const log = pino({ level: 'trace', base: { node: 7 } }, t);
    const f = t.follow('info', 7);
    const other = t.follow('info', 8);
    for (let i = 0; i < 10; i++) log.info(`line ${i}`);
    log.debug('below the level');
    const got = f.take();
    expect(got.dropped).toBe(7);
    expect(got.lines.map((l) => JSON.parse(l).msg)).toEqual(['line 7', 'line 8', 'line 9']);
    expect(other.take()).toEqual({ lines: [], dropped: 0 }); // another node's follower
    expect(f.take()).toEqual({ lines: [], dropped: 0 });
    // Past maxFollowers, the one read longest ago is replaced (a REPL that went away).
    t.follow('info');
    expect(t.follower(other.id)).toBeUndefined();
    expect(t.follower(f.id)).toBeDefined();
  });
});
