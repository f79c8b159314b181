/**
 * Each `troupe start` flag reaches the place it acts: these start real node processes with the
 * CLI and check the effect (threads running, actors evicted, the journal's durability in the
 * worker, log lines present or absent, addresses bound), never only the parsing.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { forkNode, troupeBin, type ReadyMessage } from '../../src/cli/node-process.ts';
import { spawn } from 'node:child_process';

const dataRoot = mkdtempSync(join(tmpdir(), 'troupe-node-options-'));
const running: ChildProcess[] = [];
afterAll(async () => {
  // Wait for every node to exit before its data directory goes.
  await Promise.all(running.map((c) => stopNode(c)));
  rmSync(dataRoot, { recursive: true, force: true });
});

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** `troupe demo <args>` with JSON logs captured; resolves once the node reports ready. */
async function startDemo(args: string[]): Promise<{ ready: ReadyMessage; lines: LogLine[]; child: ChildProcess }> {
  const { child, ready } = forkNode(['demo', '--http', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, TROUPE_LOG_FORMAT: 'json', TROUPE_LOG_LEVEL: 'info' },
  });
  running.push(child);
  const lines: LogLine[] = [];
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    const text = partial + d.toString();
    const parts = text.split('\n');
    partial = parts.pop()!;
    for (const p of parts) if (p.startsWith('{')) lines.push(JSON.parse(p) as LogLine);
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const r = await ready.catch((e: Error) => {
    throw new Error(`${e.message}\n${err}`);
  });
  return { ready: r, lines, child };
}

function stopNode(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** Stops the node and resolves once its stdout is drained (all its log lines are read). */
async function stopAndDrain(child: ChildProcess): Promise<void> {
  const closed = new Promise<void>((resolve) => child.stdout!.once('close', () => resolve()));
  await stopNode(child);
  await closed;
}

const incr = (url: string, key: string) => fetch(`${url}/actors/counter/${key}/incr`, { method: 'POST', body: '{"by":1}' });

interface WorkerStats {
  resident: number;
  evicted: number;
  journal: { type: string; durability?: string };
}
const stats = async (url: string) => (await (await fetch(`${url}/stats`)).json()) as { workers: WorkerStats[] };

describe('troupe demo flags reach the node', () => {
  it('--workers 1 --max-resident 2: ten keys leave at most 2 resident and at least 8 evicted', async () => {
    const { ready, child } = await startDemo(['--workers', '1', '--max-resident', '2']);
    for (let i = 0; i < 10; i++) expect((await incr(ready.url, `cap-${i}`)).status).toBe(200);
    const { workers } = await stats(ready.url);
    expect(workers).toHaveLength(1);
    expect(workers[0]!.resident).toBeLessThanOrEqual(2);
    expect(workers[0]!.evicted).toBeGreaterThanOrEqual(8);
    // Evicted actors lose memory, never data: the first key still counts on from 1.
    expect(await (await incr(ready.url, 'cap-0')).json()).toEqual({ n: 2 });
    await stopNode(child);
  }, 60_000);

  it('--durability commit reaches every worker’s journal (and flush is the default)', async () => {
    const commit = await startDemo(['--workers', '2', '--data-dir', join(dataRoot, 'commit'), '--durability', 'commit']);
    const flush = await startDemo(['--workers', '1', '--data-dir', join(dataRoot, 'flush')]);
    const c = await stats(commit.ready.url);
    expect(c.workers).toHaveLength(2);
    for (const w of c.workers) expect(w.journal).toEqual({ type: 'lmdb', durability: 'commit' });
    expect((await stats(flush.ready.url)).workers[0]!.journal).toEqual({ type: 'lmdb', durability: 'flush' });
    const started = commit.lines.find((l) => l.msg === 'node started')!;
    expect(started.journal).toMatchObject({ type: 'lmdb', durability: 'commit' });
    expect(started.workers).toBe(2);
    await Promise.all([stopNode(commit.child), stopNode(flush.child)]);
  }, 60_000);

  it('--log-level debug adds debug lines; --log-level warn drops the info lines', async () => {
    const debug = await startDemo(['--workers', '1', '--log-level', 'debug']);
    const warn = await startDemo(['--workers', '1', '--log-level', 'warn']);
    await Promise.all([stopAndDrain(debug.child), stopAndDrain(warn.child)]);
    expect(debug.lines.some((l) => l.level === 20 && l.msg === 'node options')).toBe(true);
    expect(debug.lines.some((l) => l.msg === 'node started')).toBe(true);
    expect(warn.lines.filter((l) => l.level < 40)).toEqual([]);
  }, 60_000);

  it('--id, --host and --workers: the node answers as that id, on that address, with that many threads', async () => {
    // 127.0.0.2 is loopback on Linux, but not the default 127.0.0.1.
    const { ready, child } = await startDemo(['--id', '77', '--host', '127.0.0.2', '--workers', '3']);
    expect(ready.id).toBe(77);
    expect(ready.url).toMatch(/^http:\/\/127\.0\.0\.2:\d+$/);
    const members = (await (await fetch(`${ready.url}/cluster/members`)).json()) as { self: number };
    expect(members.self).toBe(77);
    expect((await stats(ready.url)).workers).toHaveLength(3);
    await stopNode(child);
  }, 60_000);

  it('--listen binds the transport there, --advertise is the address the node gives its peers', async () => {
    const listen = await startDemo(['--workers', '1', '--listen', '127.0.0.2:0', '--secret', 's'.repeat(16)]);
    expect(listen.ready.cluster).toMatch(/^127\.0\.0\.2:\d+$/);
    const advertised = await startDemo(['--workers', '1', '--port', '0', '--advertise', '127.0.0.9:4567', '--secret', 's'.repeat(16)]);
    expect(advertised.ready.cluster).toBe('127.0.0.9:4567');
    const members = (await (await fetch(`${advertised.ready.url}/cluster/members`)).json()) as { members: Array<{ address: string }> };
    expect(members.members.map((m) => m.address)).toEqual(['127.0.0.9:4567']);
    await Promise.all([stopNode(listen.child), stopNode(advertised.child)]);
  }, 60_000);
});

describe('troupe demo --seeds', () => {
  it('never serves alone: 503 ERR_NO_NODES and a warning every 10 s while no seed answers; SIGTERM stops it', async () => {
    // A seed that accepts connections and never says a word: the handshake never completes.
    const mute = createServer(() => undefined);
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
    const seed = `127.0.0.1:${(mute.address() as { port: number }).port}`;
    const child = spawn(process.execPath, [troupeBin, 'demo', '--workers', '1', '--http', '0', '--port', '0', '--seeds', seed], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TROUPE_LOG_FORMAT: 'json', TROUPE_LOG_LEVEL: 'info', TROUPE_CLUSTER_SECRET: 's'.repeat(16) },
    });
    running.push(child);
    const lines: LogLine[] = [];
    const waitFor = (msg: RegExp, timeoutMs: number) =>
      new Promise<LogLine>((resolve, reject) => {
        let partial = '';
        const onData = (d: Buffer) => {
          const parts = (partial + d.toString()).split('\n');
          partial = parts.pop()!;
          for (const p of parts) if (p.startsWith('{')) lines.push(JSON.parse(p) as LogLine);
          const hit = lines.find((l) => msg.test(l.msg));
          if (!hit) return;
          clearTimeout(timer);
          child.stdout!.off('data', onData);
          resolve(hit);
        };
        const timer = setTimeout(() => {
          child.stdout!.off('data', onData);
          reject(new Error(`no line matching ${msg} within ${timeoutMs} ms: ${lines.map((l) => l.msg).join(' | ')}`));
        }, timeoutMs);
        child.stdout!.on('data', onData);
      });
    try {
      const joining = await waitFor(/^joining the cluster through seeds/, 30_000);
      const res = await fetch(`${joining.http as string}/actors/counter/k/incr`, { method: 'POST' });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_NO_NODES');
      const warning = await waitFor(/^still waiting for seeds/, 15_000);
      expect(warning.msg).toBe(`still waiting for seeds ${seed} (10 s); not serving (--allow-solo serves alone)`);
      expect(warning.level).toBe(40);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      mute.close();
    }
  }, 60_000);
});

describe('NodeOptions the CLI flags map to are validated by the node, naming the option', () => {
  const demo = new URL('../../src/demo/app.ts', import.meta.url).href;
  it.each([
    { o: { durability: 'fast' }, message: "options.durability must be 'replicated', 'replicated+flush', 'lazy', 'flush' or 'commit' (got \"fast\")" },
    { o: { durability: 'replicated' }, message: 'options.durability replicates across a cluster: it needs options.cluster' },
    { o: { durability: 'commit' }, message: 'options.durability needs a durable journal' },
    { o: { maxResidentPerWorker: 0 }, message: 'options.maxResidentPerWorker must be a positive integer (got 0)' },
    { o: { maxHeapBytesPerWorker: 1.5 }, message: 'options.maxHeapBytesPerWorker must be a positive integer (bytes) (got 1.5)' },
    { o: { cluster: { secret: 's'.repeat(16), seeds: ['nohost'] } }, message: 'options.cluster.seeds must hold "host:port" strings (got "nohost")' },
    { o: { cluster: { secret: 's'.repeat(16), advertise: 'x' } }, message: 'options.cluster.advertise must be "host:port" (got "x")' },
  ])('$message', async ({ o, message }) => {
    const { TroupeNode } = await import('../../src/node/troupe-node.ts');
    const start = TroupeNode.start({ modules: [demo], workers: 1, http: false, logLevel: 'silent', ...(o as object) });
    await expect(start).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining(message) });
  });
});

describe('replication flags reach the replication driver', () => {
  const secret = 'replication-flags-secret-0123456789';
  /** Node 1 and node 2 (seeded by node 1), each `troupe demo` with `extra` flags. */
  async function pair(extra: string[]) {
    const env = ['--secret', secret, '--workers', '1', ...extra];
    const a = await startDemo(['--id', '1', '--port', '0', ...env]);
    const b = await startDemo(['--id', '2', '--port', '0', '--seeds', a.ready.cluster!, ...env]);
    return { a, b };
  }
  /** A key whose partition node 1 leads when the up set is {1, 2} (ring positions depend on ids only). */
  async function keyLedBy(id: number): Promise<string> {
    const { HashRing } = await import('../../src/cluster/ring.ts');
    const { PartitionTable, partitionOf } = await import('../../src/replication/partition-table.ts');
    const table = new PartitionTable(new HashRing([{ id: 1, address: 'a' }, { id: 2, address: 'b' }]));
    for (let i = 0; ; i++) if (table.primaryOf(partitionOf(`rf-${i}`)) === id) return `rf-${i}`;
  }
  const incrWithin = (url: string, key: string, timeoutMs: number) =>
    fetch(`${url}/actors/counter/${key}/incr`, { method: 'POST', body: '{"by":1}', headers: { 'x-timeout-ms': String(timeoutMs) } });
  const partitionsOf = async (url: string) =>
    ((await (await fetch(`${url}/cluster/partitions`)).json()) as { partitions: Array<{ p: number; proposed: number[]; last: number }> }).partitions;

  it('--write-quorum 2: with the other replica stopped (SIGSTOP) a write is never acknowledged; --write-quorum 1: it is', async () => {
    const key = await keyLedBy(1);
    for (const [w, acknowledged] of [
      ['2', false],
      ['1', true],
    ] as const) {
      const { a, b } = await pair(['--replicas', '2', '--write-quorum', w]);
      try {
        expect((await incrWithin(a.ready.url, key, 5_000)).status).toBe(200); // establishes the partition on both
        b.child.kill('SIGSTOP');
        const res = await incrWithin(a.ready.url, key, 700);
        if (acknowledged) expect(res.status).toBe(200);
        else expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_ASK_TIMEOUT');
      } finally {
        b.child.kill('SIGCONT');
        await Promise.all([stopNode(b.child), stopNode(a.child)]);
      }
    }
  }, 60_000);

  it('--replicas 1: the other node holds no copy of a partition node 1 leads; by default (3, capped at 2) it does', async () => {
    const key = await keyLedBy(1);
    const { partitionOf } = await import('../../src/replication/partition-table.ts');
    for (const [extra, copies] of [
      [['--replicas', '1', '--write-quorum', '1'], 1],
      [[], 2],
    ] as const) {
      const { a, b } = await pair([...extra]);
      try {
        expect((await incrWithin(a.ready.url, key, 5_000)).status).toBe(200);
        const onA = (await partitionsOf(a.ready.url)).find((p) => p.p === partitionOf(key));
        expect(onA?.proposed).toHaveLength(copies);
        const onB = (await partitionsOf(b.ready.url)).find((p) => p.p === partitionOf(key));
        // Node 2 may have promised node 1's founding fence (a fence that finds no history asks the
        // whole cluster), but with R = 1 it holds no entry; by default it holds the start entry and the write.
        if (copies === 1) expect(onB?.last ?? 0).toBe(0);
        else expect(onB?.last).toBeGreaterThanOrEqual(2);
      } finally {
        await Promise.all([stopNode(b.child), stopNode(a.child)]);
      }
    }
  }, 60_000);
});
