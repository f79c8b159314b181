/**
 * Admin REPL latency with 1,000,000 resident actors (issue 9): how long `actors`, `summary`
 * (and `actors top` and `top`'s per-refresh `sample 3` when the node serves them; they are looked
 * up in its help) take through the admin socket, as `troupe repl` sends them (src/admin/admin-client.ts).
 *
 * Two `troupe start` nodes run side by side with the fixture app bench/servers/tiny-app.ts: a
 * "big" one seeded with `--actors` resident actors (default 1M) and a "small" baseline one with
 * 1,000. Seeding: one HTTP request per 100,000 actors to a `seeder` actor, whose handler tells
 * that many `tiny` actors to wake up inside the worker thread (no request per actor); the
 * seeding time runs until the node's own `summary` counts them all resident. `--max-resident`
 * is raised so that no actor is evicted even with one worker.
 *
 * Each measured call is one request on an open admin connection, timed from write to reply.
 * Calls alternate between the two nodes (big, small, small, big, …), with a raw Unix-socket
 * JSON-line echo round trip (a child process, the same framing) in the same rotation: the floor
 * any admin call pays. Reported per command: p50/p99 on each node, the ratio big/small of p50s,
 * the echo's p50/p99. Target: p99 ≤ 200 ms with 1M actors. ~1 min with the defaults.
 *
 *   node --import tsx bench/admin-latency.ts [--actors 1000000] [--calls 30] [--workers 2] [--commands actors,summary]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AdminClient } from '../src/admin/admin-client.ts';
import {
  check,
  cpuSecondsOf,
  fixed,
  int,
  machineLine,
  main,
  median,
  now,
  percentile,
  positiveInt,
  printResult,
  row,
  sleep,
  spawnServer,
  startTroupeServer,
  verdict,
  type ServerChild,
} from './lib.ts';

const { values: args } = parseArgs({
  options: {
    actors: { type: 'string', default: '1000000' },
    'baseline-actors': { type: 'string', default: '1000' },
    // Calls per command per node (nearest-rank p99 of 30 calls is the slowest one).
    calls: { type: 'string', default: '30' },
    workers: { type: 'string', default: '2' },
    // Comma-separated admin commands (a command with arguments: "actors top"); default: actors,
    // summary, and top / actors top when the node lists them.
    commands: { type: 'string' },
  },
});

const ACTORS = positiveInt('actors', args.actors);
const BASELINE_ACTORS = positiveInt('baseline-actors', args['baseline-actors']);
const CALLS = positiveInt('calls', args.calls);
const WORKERS = positiveInt('workers', args.workers);
check(CALLS >= 20, '--calls must be at least 20 (a p99 needs them)');
/** Actors one seeding request wakes (the fixture's handler tells them in one turn). */
const SEED_CHUNK = 100_000;
const TARGET_MS = 200;
/** Seeding must finish within this long, or the run fails rather than measure a half-full node. */
const SEED_DEADLINE_MS = 180_000;

interface Node {
  name: string;
  actors: number;
  server: ServerChild;
  admin: AdminClient;
}

async function startNode(name: string, actors: number, socketPath: string): Promise<ServerChild> {
  return startTroupeServer({
    label: `troupe node (${name})`,
    app: './bench/servers/tiny-app.ts',
    // The fixture is TypeScript: the node runs from sources through tsx.
    fromSource: true,
    args: [
      '--workers',
      String(WORKERS),
      // Per worker; keys spread unevenly over the workers, so room for all of them on each.
      '--max-resident',
      String(Math.max(1_000_000, actors + SEED_CHUNK)),
      '--admin-socket',
      socketPath,
    ],
    deadlineMs: 30_000,
  });
}

/** `summary`'s value (admin-commands.ts). */
interface Summary {
  resident: number;
  byKind: Record<string, number>;
}

async function residentTiny(admin: AdminClient): Promise<number> {
  const r = await admin.call('summary', []);
  check(r.kind === 'value', `summary answered a ${r.kind}, expected a value`);
  return (r.value as Summary).byKind.tiny ?? 0;
}

/** Wakes `tiny/t0..t<n-1>` through the seeder, then waits until the node counts them resident. */
async function seed(node: Node): Promise<{ toldMs: number; residentMs: number }> {
  const t0 = now();
  for (let from = 0; from < node.actors; from += SEED_CHUNK) {
    const count = Math.min(SEED_CHUNK, node.actors - from);
    // Seeders on several keys: their tells start on more than one worker thread.
    const res = await fetch(`${node.server.url}/actors/seeder/s${from / SEED_CHUNK}/seed`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ from, count }),
    });
    const body = await res.text();
    check(res.status === 200, `seeding ${node.name} (from ${from}): ${res.status} ${body}`);
  }
  const toldMs = now() - t0;
  for (;;) {
    const n = await residentTiny(node.admin);
    if (n >= node.actors) break;
    if (now() - t0 > SEED_DEADLINE_MS)
      throw new Error(`${node.name}: only ${n} of ${node.actors} actors resident after ${SEED_DEADLINE_MS} ms`);
    await sleep(100); // a poll period, not a wait for something: the loop checks the count
  }
  return { toldMs, residentMs: now() - t0 };
}

/** A child echoing each JSON line back over a Unix socket: the admin protocol's floor. */
const ECHO_SERVER = `
import { createServer } from 'node:net';
const server = createServer((s) => s.pipe(s));
server.listen(process.argv[1], () => console.log('listening ' + process.argv[1]));
process.on('SIGTERM', () => process.exit(0));
`;

class EchoClient {
  private buffer = '';
  private waiting: (() => void) | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buffer += d;
      const nl = this.buffer.indexOf('\n');
      if (nl < 0) return;
      this.buffer = this.buffer.slice(nl + 1);
      const w = this.waiting;
      this.waiting = undefined;
      w?.();
    });
  }

  static connect(path: string): Promise<EchoClient> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new EchoClient(s)));
      s.once('error', reject);
    });
  }

  /** One request line out, its echo back; the line looks like an admin request. */
  roundTrip(id: number): Promise<void> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.socket.write(`${JSON.stringify({ id, command: 'actors', args: [] })}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * The commands to time: the ones asked for, else `actors` and `summary`, plus the top views when
 * the node has them: `actors top` (an admin command) and `top`, which the REPL runs itself as a
 * loop calling the node's `sample 3` once a second (src/admin/admin-repl.ts), so one `top`
 * refresh costs one `sample 3` per member.
 */
async function commandsToTime(admin: AdminClient, helpRows: string[]): Promise<string[][]> {
  if (args.commands !== undefined) return args.commands.split(',').map((c) => c.trim().split(/\s+/));
  const out = [['actors'], ['summary']];
  if (helpRows.some((u) => /^actors\b.*\btop\b/.test(u))) out.push(['actors', 'top']);
  if (admin.commands.includes('top')) {
    try {
      await admin.call('sample', ['3']);
      out.push(['sample', '3']);
    } catch (e) {
      console.log(`top is listed but its refresh call 'sample 3' failed (${(e as Error).message}): not timed`);
    }
  }
  return out;
}

async function helpUsages(admin: AdminClient): Promise<string[]> {
  const r = await admin.call('help', []);
  return r.kind === 'table' ? r.rows.map((x) => String(x[0])) : [];
}

async function timeCall(admin: AdminClient, cmd: string[]): Promise<number> {
  const t0 = now();
  await admin.call(cmd[0]!, cmd.slice(1));
  return now() - t0;
}

main(async () => {
  console.log(
    `admin-latency: ${int(ACTORS)} vs ${int(BASELINE_ACTORS)} resident actors, ${WORKERS} worker(s) per node, ${CALLS} calls per command per node, admin Unix socket; ${machineLine()}`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-admin-'));
  const servers: ServerChild[] = [];
  const clients: Array<{ close(): void }> = [];
  try {
    const echoPath = join(dir, 'echo.sock');
    const echoServer = await spawnServer({
      label: 'echo server',
      args: ['--input-type=module', '-e', ECHO_SERVER, echoPath],
      listening: (line) => (line.startsWith('listening ') ? line.slice('listening '.length) : undefined),
    });
    servers.push(echoServer);
    const big: Partial<Node> = { name: `${int(ACTORS)} actors`, actors: ACTORS };
    const small: Partial<Node> = { name: `${int(BASELINE_ACTORS)} actors`, actors: BASELINE_ACTORS };
    for (const [n, file] of [
      [big, 'big.sock'],
      [small, 'small.sock'],
    ] as const) {
      n.server = await startNode(n.name!, n.actors!, join(dir, file));
      servers.push(n.server);
      n.admin = await AdminClient.connect({ socketPath: join(dir, file) }, 'bench');
      clients.push(n.admin);
    }
    const nodes = [big as Node, small as Node];
    const echo = await EchoClient.connect(echoPath);
    clients.push(echo);

    for (const n of nodes) {
      const cpu0 = cpuSecondsOf(n.server.pid);
      const s = await seed(n);
      const cpu = cpuSecondsOf(n.server.pid) - cpu0;
      console.log(
        row(
          `seeded ${n.name}`,
          `told in ${fixed(s.toldMs / 1000, 2)} s, all resident after ${fixed(s.residentMs / 1000, 2)} s`,
          `(${int(n.actors / (s.residentMs / 1000))} actors/s, node CPU ${fixed(cpu, 1)} s)`,
        ),
      );
    }
    const commands = await commandsToTime(big.admin!, await helpUsages(big.admin!));
    console.log(`commands timed: ${commands.map((c) => c.join(' ')).join(', ')} (the node lists: ${big.admin!.commands.join(' ')})`);

    // Warm-up: JIT on both sides and the connection.
    for (const cmd of commands) for (const n of nodes) for (let i = 0; i < 3; i++) await timeCall(n.admin, cmd);
    for (let i = 0; i < 20; i++) await echo.roundTrip(i);

    const times = new Map<string, number[]>(); // `${node}|${command}` → ms
    const echoMs: number[] = [];
    const add = (k: string, ms: number) => (times.get(k) ?? times.set(k, []).get(k)!).push(ms);
    for (let i = 0; i < CALLS; i++) {
      const order = i % 2 === 0 ? nodes : [...nodes].reverse();
      for (const cmd of commands) {
        for (const n of order) add(`${n.name}|${cmd.join(' ')}`, await timeCall(n.admin, cmd));
        const t0 = now();
        await echo.roundTrip(i);
        echoMs.push(now() - t0);
      }
    }
    // Still all resident: nothing passivated or was evicted during the calls.
    check((await residentTiny(big.admin!)) >= ACTORS, 'actors left the big node during the measurement');

    const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${big.server!.pid}/status`, 'utf8'))?.[1]);
    console.log('');
    const figures: Record<string, unknown> = {};
    let pass = true;
    for (const cmd of commands) {
      const name = cmd.join(' ');
      const b = Float64Array.from(times.get(`${big.name}|${name}`)!).sort();
      const s = Float64Array.from(times.get(`${small.name}|${name}`)!).sort();
      const ok = percentile(b, 99) <= TARGET_MS;
      pass &&= ok;
      console.log(
        row(
          `${name}`,
          `${big.name}: p50 ${fixed(percentile(b, 50), 2)} ms, p99 ${fixed(percentile(b, 99), 2)} ms`,
          `${small.name}: p50 ${fixed(percentile(s, 50), 2)} ms, p99 ${fixed(percentile(s, 99), 2)} ms`,
          `ratio p50 ${fixed(percentile(b, 50) / percentile(s, 50), 1)}×`,
          `target p99 ≤ ${TARGET_MS} ms ${verdict(ok)}`,
        ),
      );
      figures[name] = {
        big: {
          p50Ms: Number(percentile(b, 50).toFixed(2)),
          p99Ms: Number(percentile(b, 99).toFixed(2)),
          maxMs: Number(b[b.length - 1]!.toFixed(2)),
        },
        small: { p50Ms: Number(percentile(s, 50).toFixed(2)), p99Ms: Number(percentile(s, 99).toFixed(2)) },
        ratioP50: Number((percentile(b, 50) / percentile(s, 50)).toFixed(2)),
      };
    }
    const e = Float64Array.from(echoMs).sort();
    console.log(
      row(
        'raw Unix-socket echo round trip',
        `p50 ${fixed(percentile(e, 50) * 1000, 0)} µs`,
        `p99 ${fixed(percentile(e, 99) * 1000, 0)} µs`,
        `(${e.length} round trips)`,
      ),
    );
    console.log(
      row(`RSS of the ${big.name} node`, `${int(rssKiB / 1024)} MiB`, `(${fixed((rssKiB * 1024) / ACTORS, 0)} B per actor, all threads)`),
    );
    console.log(`${machineLine()}; figures are noisy on a shared 2-core box`);
    printResult({
      bench: 'admin-latency',
      actors: ACTORS,
      baselineActors: BASELINE_ACTORS,
      workers: WORKERS,
      calls: CALLS,
      commands: figures,
      echo: {
        p50Us: Math.round(percentile(e, 50) * 1000),
        p99Us: Math.round(percentile(e, 99) * 1000),
        medianUs: Math.round(median(echoMs) * 1000),
      },
      rssMiB: Math.round(rssKiB / 1024),
      targetMs: TARGET_MS,
      pass,
    });
  } finally {
    for (const c of clients) c.close();
    // A node with 1M actors takes a few seconds to stop (every actor is passivated).
    await Promise.all(servers.map((s) => s.stop(15_000)));
    rmSync(dir, { recursive: true, force: true });
  }
});
