/**
 * The `troupe` command line: `start` runs one node, `demo` the demo app on one node, `cluster`
 * N node processes on this machine, `bench` load-tests a running cluster, `backup` and `restore` copy a node's journal.
 *
 * Exit codes: 0 done, 1 a runtime failure (one line and a hint), 2 a usage error (one line
 * naming the flag, and where its help is).
 */
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import { isTroupeError } from '../core/errors.ts';
import { demoApp } from '../demo/location.ts';
import { JOURNAL_DIR, TroupeNode, type ClusterOptions, type NodeOptions } from '../node/troupe-node.ts';
import { MIN_SECRET_LENGTH } from '../gateway/session-cookie.ts';
import { MIN_CLUSTER_SECRET_LENGTH } from '../cluster/tcp-transport.ts';
import { checkGateways } from '../node/app-pages.ts';
import { runCluster } from './cluster-launcher.ts';
import { replCommand, type ReplFlags } from './repl-command.ts';
import { drainCommand, type DrainFlags } from './drain-command.ts';
import {
  addressFlag,
  explainOptionError,
  formatAddress,
  hostFlag,
  intFlag,
  LOG_LEVELS,
  oneOf,
  portFlag,
  seedsFlag,
  UsageError,
  zoneFlag,
  type FlagValues,
} from './flags.ts';

const demoModule = demoApp.href;

/** package.json sits two levels above this module both in src/cli and in dist/cli. */
function version(): string {
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version: string };
  return pkg.version;
}

interface NodeFlags {
  app?: string[];
  id?: string;
  workers?: string;
  http?: string;
  host?: string;
  listen?: string;
  port?: string;
  advertise?: string;
  seeds?: string;
  allowSolo?: boolean;
  secret?: string;
  profile?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  dataDir?: string;
  durability?: string;
  replicas?: string;
  writeQuorum?: string;
  maxResident?: string;
  maxMessageBytes?: string;
  maxMailboxBytes?: string;
  maxOldGenerationMb?: string;
  wsMaxConnections?: string;
  wsMaxUnacked?: string;
  websockets?: boolean;
  logLevel?: string;
  zone?: string;
  adminSocket?: string;
  adminListen?: string;
  faultInjection?: boolean;
  metrics?: boolean;
  sessionSecret?: string[];
  sessionMaxAge?: string;
  headersTimeout?: string;
  secureCookies?: boolean;
  trustProxy?: string[];
  corsOrigin?: string[];
  gateways?: string;
}

interface ClusterFlags {
  nodes?: string;
  basePort?: string;
  httpBase?: string;
  workers?: string;
  app?: string[];
  profile?: string;
  dataDir?: string;
  durability?: string;
  replicas?: string;
  writeQuorum?: string;
  logLevel?: string;
  sessionSecret?: string[];
}

const collect = (v: string, previous: string[] | undefined) => [...(previous ?? []), v];

function nodeCommand(program: Command, name: 'start' | 'demo', summary: string): Command {
  return program
    .command(name)
    .summary(summary)
    .description(
      name === 'start'
        ? 'Run one node serving the actor kinds exported by --app modules. With --port/--listen it joins a cluster.'
        : 'Run the demo app (counter, cart) on one node, plus any --app modules.',
    )
    .option('--app <module>', 'module exporting actor definitions: a path or a package name (repeatable)', collect)
    .option('--id <n>', 'node id, 0..1023, unique in the cluster; also the Snowflake machine id (default 0)')
    .option('--workers <n>', 'worker threads, 1..256 (default: available cores)')
    .option('--http <port>', 'HTTP gateway port; 0 picks a free one (default 8080)')
    .option('--host <addr>', 'HTTP gateway address; 0.0.0.0 for every interface (default 127.0.0.1)')
    .option('--listen <host:port>', 'node-to-node (transport) bind address; joins a cluster')
    .option('--port <port>', 'shorthand for --listen 127.0.0.1:<port>')
    .option('--advertise <host:port>', 'the address other nodes dial to reach this one (default: the --listen address)')
    .option('--seeds <list>', 'host:port,... of nodes to join through; the node serves only once it has joined')
    .option('--allow-solo', 'with --seeds: serve alone if no seed answers within 30 s (risks two clusters; default off)')
    .option('--secret <s>', 'cluster secret (or env TROUPE_CLUSTER_SECRET), ≥ 16 chars; required in a cluster, no default')
    .option('--profile <name>', 'failure detection: lan (default, down within 1.5 s) or seed-10s')
    .option('--tls-cert <file>', 'PEM certificate for mutual TLS between nodes (with --tls-key and --tls-ca)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--tls-ca <file>', 'PEM CA that signs every node certificate')
    .option('--data-dir <dir>', 'identity and LMDB journal (<dir>/journal) live here (default: in memory, lost on exit)')
    .option(
      '--durability <d>',
      'when a reply leaves: replicated (cluster default: committed on W nodes), replicated+flush (W copies on disk), lazy (after this node\'s commit; a death may lose its last unreplicated writes), flush (this node\'s disk, single-node default) or commit',
    )
    .option('--replicas <n>', 'in a cluster: copies of each partition, the primary counted, 1..7 (default 3)')
    .option('--write-quorum <n>', 'in a cluster: copies committed before a reply, 1..7 (default 2)')
    .option('--zone <label>', "in a cluster: this node's host or zone (A-Z a-z 0-9 . _ -, ≤ 64); replicas go to different zones (default: its own)")
    .option('--max-resident <n>', 'resident actors per worker thread before the least recently used passivate (default 1000000)')
    .option('--max-message-bytes <n>', "largest actor message (an input, a reply, an event), bytes; larger inputs get 413 ERR_BODY_TOO_LARGE (default 1048576)")
    .option('--max-mailbox-bytes <n>', 'most bytes queued in one actor mailbox; more get 503 ERR_MAILBOX_FULL (default 16777216)')
    .option('--max-old-generation-mb <n>', "each worker thread's V8 old-generation heap limit, MiB; a thread past it dies alone and is re-hosted (default: Node's)")
    .option('--log-level <level>', `${LOG_LEVELS.join(', ')} (default info, or env TROUPE_LOG_LEVEL)`)
    .option('--admin-socket <path>', "admin socket for 'troupe repl', mode 0600 (default <data-dir>/admin.sock, else a temporary path printed at start; none: no socket)")
    .option('--session-secret <s>', "signs sid cookies of kinds with session: 'cookie', ≥ 16 chars, the same on every node (repeatable: the first signs, all verify; or env TROUPE_SESSION_SECRET, comma-separated)", collect)
    .option('--session-max-age <seconds>', 'lifetime of a sid cookie (default 604800, a week)')
    .option('--headers-timeout <ms>', "an HTTP request's headers must arrive within this many ms, else 408 and the connection closes (default 10000; slowloris)")
    .option('--secure-cookies', 'mark sid cookies Secure even over plain HTTP (TLS ends at a proxy in front)')
    .option('--trust-proxy <address>', 'IP address of a proxy whose X-Forwarded-For names the client (repeatable; default: none)', collect)
    .option('--cors-origin <origin>', "browser origin allowed to call actor routes, e.g. https://app.example.com, or '*' without cookies (repeatable; default: none)", collect)
    .option('--gateways <list>', "the cluster's public HTTP gateway URLs, comma-separated (http://host:port,…): served at GET /cluster/gateways for an app page to reconnect to when its node dies (default: none; a page retries its own origin, as behind a load balancer)")
    .option('--no-metrics', 'do not count or serve Prometheus metrics at GET /metrics (default: on)')
    .option('--ws-max-connections <n>', 'WebSocket sessions this node holds at most; more get 503 ERR_OVERLOADED at the upgrade (default 10000)')
    .option('--ws-max-unacked <n>', 'pushes a WebSocket client may leave unacknowledged before the node waits for its acks (default 256)')
    .option('--no-websockets', 'serve no WebSocket sessions (/ws/... is 404; default: on)')
    .option('--admin-listen <host:port>', "also serve the admin REPL over TCP; every connection must bring the token in env TROUPE_ADMIN_TOKEN (off by default)")
    .option('--fault-injection', "TESTS ONLY, never in production: the admin endpoint may step this node's wall clock (clock step <±ms>) and hand out ids, for the chaos suite (default off)")
    .addHelpText(
      'after',
      name === 'start'
        ? `
Examples:
  troupe start --app ./app.ts --http 8080 --data-dir data
  TROUPE_CLUSTER_SECRET=… troupe start --app ./app.ts --id 2 --listen 0.0.0.0:7401 \\
      --advertise 10.0.0.2:7401 --seeds 10.0.0.1:7401 --host 0.0.0.0 --tls-cert … --tls-key … --tls-ca …

Environment: TROUPE_CLUSTER_SECRET, TROUPE_SESSION_SECRET, TROUPE_LOG_LEVEL, TROUPE_LOG_FORMAT=json|pretty`
        : `
Example:
  troupe demo --http 8080`,
    );
}

/** Builds a fresh program; `code` receives each command's exit code. */
function program(exit: { code: number }): Command {
  const p = new Command('troupe')
    .description('Durable session actors on worker threads and nodes')
    .version(version(), '-v, --version', 'print the version')
    .helpOption('-h, --help', 'print this help')
    .helpCommand('help [command]', 'print the help of a command')
    .exitOverride()
    // Errors are printed once, in our format, by main().
    .configureOutput({ outputError: () => undefined })
    .showSuggestionAfterError(true);

  nodeCommand(p, 'start', 'run one node').action(async (flags: NodeFlags) => {
    exit.code = await startNode('start', flags);
  });
  nodeCommand(p, 'demo', 'run the demo app (counter, cart) on one node').action(async (flags: NodeFlags) => {
    exit.code = await startNode('demo', flags);
  });
  p.command('cluster')
    .summary('run a local cluster of node processes (Ctrl-C stops them all)')
    .description('Run N node processes on 127.0.0.1 that form one cluster, with a secret generated for this run.')
    .option('--nodes <n>', 'node processes, 1..64 (default 3)')
    .option('--base-port <port>', 'node-to-node port of node 1; node i uses base + i - 1 (default 7401)')
    .option('--http-base <port>', 'HTTP port of node 1; node i uses base + i - 1 (default 8081)')
    .option('--workers <n>', 'worker threads per node (default 1)')
    .option('--app <module>', 'module exporting actor definitions (repeatable; default: the demo app)', collect)
    .option('--profile <name>', 'failure detection: lan (default) or seed-10s')
    .option('--data-dir <dir>', 'each node keeps its data in <dir>/node-<i> (default .troupe)')
    .option('--durability <d>', 'replicated (default), replicated+flush, lazy, flush or commit (see troupe start --help)')
    .option('--replicas <n>', 'copies of each partition, the primary counted (default 3)')
    .option('--write-quorum <n>', 'copies committed before a reply (default 2)')
    .option('--log-level <level>', `${LOG_LEVELS.join(', ')} (default info)`)
    .option('--session-secret <s>', 'signs sid cookies on every node, ≥ 16 chars (repeatable, or env TROUPE_SESSION_SECRET; default: generated once and kept in <data-dir>/session-secret)', collect)
    .action(async (flags: ClusterFlags) => {
      exit.code = await startCluster(flags);
    });
  p.command('repl')
    .summary("attach to a running node's admin REPL")
    .description(
      "Operate a running cluster: members, ring, where a key lives, actors, partitions, stats, ask, drain, stop.\n" +
        "Prefix a command with @<node> to run it on another member. With piped input each line runs in turn.",
    )
    .option('--data-dir <dir>', "the node's data directory (its admin socket is <dir>/admin.sock)")
    .option('--socket <path>', 'the admin socket path a node printed at start')
    .option('--connect <host:port>', 'a node started with --admin-listen (token in env TROUPE_ADMIN_TOKEN)')
    .addHelpText('after', '\nExamples:\n  troupe repl --data-dir data/node-1\n  echo members | troupe repl --data-dir data/node-1\n')
    .action(async (flags: ReplFlags) => {
      exit.code = await replCommand(flags);
    });
  p.command('drain')
    .summary('hand a running node\'s partitions to the others, then stop it')
    .description(
      "Gracefully remove a running node (troupe start) from its cluster: sends it SIGTERM (its pid from the data directory's lock),\n" +
        'on which it hands every partition it leads to its next primary and stops; waits for the process to exit.',
    )
    .option('--data-dir <dir>', "the node's data directory (required)")
    .option('--timeout <s>', 'give up waiting after this many seconds (default 60)')
    .addHelpText('after', '\nExample:\n  troupe drain --data-dir data/node-2\n')
    .action(async (flags: DrainFlags) => {
      exit.code = await drainCommand(flags);
    });
  p.command('bench')
    .summary('load-test a running cluster (autocannon): req/s, p50/p99, optional write check')
    .description(
      "Drive the demo app on a running cluster with a scenario (counter; visits for sticky-cookie; room for websocket); connections are spread over the --url addresses.\n" +
        'Progress each second on stderr, a summary table on stdout. --check verifies every key afterwards: acknowledged ≤ final ≤ attempted.',
    )
    .option('--url <list>', 'http://host:port of one or more gateways, comma-separated (required)')
    .option('--scenario <name>', 'write-heavy, read-heavy, sessions-100k, hot-key, sticky-cookie (visits cookie sessions) or websocket (room sessions over ws://) (required)')
    .option('--seconds <n>', 'how long to send, 1..86400 (default 10)')
    .option('--connections <n>', 'concurrent connections (websocket: asks in flight), 1..10000 (default 50)')
    .option('--keys <n>', 'distinct keys for write-heavy and read-heavy, cookie sessions for sticky-cookie, WebSocket sessions for websocket (default 1000)')
    .option('--check', 'record every write and verify each key afterwards; exit 1 naming the keys that fail')
    .addHelpText('after', '\nExample:\n  troupe bench --url http://127.0.0.1:8081,http://127.0.0.1:8082 --scenario write-heavy --seconds 10 --check\n')
    .action(async (flags: import('./bench-command.ts').BenchFlags) => {
      // Loaded on use: a node never loads autocannon.
      const { benchCommand } = await import('./bench-command.ts');
      exit.code = await benchCommand(flags);
    });
  p.command('backup')
    .summary("hot, consistent copy of a node's journal")
    .description("Copy a node's journal while it serves (a consistent snapshot). Restore it with 'troupe restore'.")
    .option('--data-dir <dir>', "the node's data directory (required)")
    .option('--to <dir>', 'where the copy goes (required)')
    .action(async (flags: { dataDir?: string; to?: string }) => {
      exit.code = await backupCommand(flags);
    });
  p.command('restore')
    .summary('put a backup in place before the node starts')
    .description("Put a backup made by 'troupe backup' in place as a node's journal; the node must be stopped.")
    .option('--from <dir>', "a backup made by 'troupe backup' (required)")
    .option('--data-dir <dir>', "the node's data directory (required)")
    .option('--force', 'replace a journal already in --data-dir (default: refuse)')
    .action(async (flags: { from?: string; dataDir?: string; force?: boolean }) => {
      exit.code = await restoreCommand(flags);
    });
  return p;
}

const COMMANDS = ['start', 'demo', 'cluster', 'repl', 'drain', 'bench', 'backup', 'restore'];

export async function main(argv: string[]): Promise<number> {
  const exit = { code: 0 };
  const p = program(exit);
  // The command the user meant, for the hint after a usage error.
  const command = COMMANDS.includes(argv[0] ?? '') ? `troupe ${argv[0]}` : 'troupe';
  if (argv.length === 0) {
    process.stdout.write(p.helpInformation());
    return 0;
  }
  try {
    await p.parseAsync(argv, { from: 'user' });
    return exit.code;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return 0; // --help, --version
      return usage(command, e.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')); // one line, a suggestion included
    }
    if (e instanceof UsageError) return usage(command, e.message);
    return failure(command, e);
  }
}

function usage(command: string, message: string): number {
  process.stderr.write(`${command}: ${message} (see ${command} --help)\n`);
  return 2;
}

/** A runtime failure: one line, a hint where there is one; the stack only with TROUPE_DEBUG. */
function failure(command: string, e: unknown, typed: FlagValues = lastTyped): number {
  let line: string;
  if (isTroupeError(e, 'ERR_INVALID_OPTION')) line = explainOptionError(e, typed) ?? `${e.code}: ${e.message}`;
  else if (isTroupeError(e)) line = `${e.code}: ${e.message}`;
  else line = e instanceof Error ? e.message : String(e);
  process.stderr.write(`${command}: ${line.split('\n')[0]}\n`);
  if (process.env.TROUPE_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  return 1;
}

/** The flags of the node being started, to repeat them in runtime errors. */
let lastTyped: FlagValues = {};

async function startNode(command: 'start' | 'demo', v: NodeFlags): Promise<number> {
  const options = nodeOptions(command, v);
  lastTyped = {
    '--http': v.http ?? '8080',
    '--host': v.host,
    '--port': v.port,
    '--listen': v.listen,
    '--id': v.id,
    '--data-dir': v.dataDir,
    '--seeds': v.seeds,
    '--advertise': v.advertise,
  };
  // Ctrl-C while the node starts (or waits for its seeds) stops it cleanly; start() then rejects.
  const starting = new AbortController();
  let node: TroupeNode | undefined;
  let stopped: () => void = () => undefined;
  const whenStopped = new Promise<void>((done) => (stopped = done));
  // Stays installed: Ctrl-C reaches a node twice under `troupe cluster` (the terminal's SIGINT
  // and the launcher's SIGTERM), and the second must not kill it mid-stop. stop() is idempotent.
  const stop = () => (node ? void node.stop().then(stopped) : starting.abort());
  // SIGTERM (`troupe drain`, the cluster launcher, a service manager) is a graceful leave: the
  // node hands its partitions off before it stops. SIGINT (Ctrl-C) stops at once.
  const drain = () => (node ? void node.drain().then(stopped) : starting.abort());
  process.on('SIGINT', stop);
  process.on('SIGTERM', drain);
  try {
    node = await TroupeNode.start({ ...options, signal: starting.signal });
  } catch (e) {
    if (starting.signal.aborted && isTroupeError(e, 'ERR_STOPPED')) return 0;
    throw e;
  }
  if (command === 'demo') printDemo([node.url!]);
  void node.stopped.then(stopped); // stopped from the admin REPL (`stop`, `drain`) as well as by a signal
  // Under `troupe cluster`: report readiness, and stop if the launcher goes away.
  if (process.send) {
    process.send({ type: 'ready', id: node.id, url: node.url, cluster: node.clusterAddress, pid: process.pid });
    process.once('disconnect', () => void node!.stop().then(() => process.exit(0)));
  }
  await whenStopped;
  return 0;
}

/** Flags → NodeOptions; every value checked here, so a bad one is a usage error naming its flag. */
function nodeOptions(command: 'start' | 'demo', v: NodeFlags): NodeOptions {
  const cluster = clusterOptions(v);
  if (cluster === undefined && (v.profile !== undefined || v.tlsCert !== undefined || v.allowSolo))
    throw new UsageError('--profile, --tls-* and --allow-solo apply to a cluster: add --listen or --port (and --seeds)');
  const durability = v.durability !== undefined ? oneOf('--durability', v.durability, DURABILITIES) : undefined;
  if (cluster === undefined && (durability === 'replicated' || durability === 'replicated+flush' || durability === 'lazy'))
    throw new UsageError(`--durability ${durability} replicates across a cluster: add --listen or --port (and --seeds)`);
  if (cluster === undefined && (v.replicas !== undefined || v.writeQuorum !== undefined))
    throw new UsageError('--replicas and --write-quorum apply to a cluster: add --listen or --port (and --seeds)');
  if (cluster === undefined && v.zone !== undefined) throw new UsageError('--zone applies to a cluster: add --listen or --port (and --seeds)');
  if ((durability === 'flush' || durability === 'commit') && v.dataDir === undefined)
    throw new UsageError(`--durability ${durability} needs --data-dir (without it the journal is in memory)`);
  const options = {
    http: {
      port: v.http !== undefined ? portFlag('--http', v.http) : 8080,
      ...(v.host !== undefined && { host: hostFlag('--host', v.host) }),
      ...sessionOptions(v),
    },
    ...(v.id !== undefined && { id: intFlag('--id', v.id, 0, 1023) }),
    ...(v.workers !== undefined && { workers: intFlag('--workers', v.workers, 1, 256) }),
    ...(v.dataDir !== undefined && { dataDir: v.dataDir }),
    ...(durability !== undefined && { durability }),
    ...(v.maxResident !== undefined && { maxResidentPerWorker: intFlag('--max-resident', v.maxResident, 1, Number.MAX_SAFE_INTEGER) }),
    ...(v.maxMessageBytes !== undefined && { maxMessageBytes: intFlag('--max-message-bytes', v.maxMessageBytes, 1, Number.MAX_SAFE_INTEGER) }),
    ...(v.maxMailboxBytes !== undefined && { maxMailboxBytes: intFlag('--max-mailbox-bytes', v.maxMailboxBytes, 1, Number.MAX_SAFE_INTEGER) }),
    ...(v.maxOldGenerationMb !== undefined && { resourceLimits: { maxOldGenerationSizeMb: intFlag('--max-old-generation-mb', v.maxOldGenerationMb, 16, 1 << 20) } }),
    ...(v.logLevel !== undefined && { logLevel: oneOf('--log-level', v.logLevel, LOG_LEVELS) }),
    ...(v.zone !== undefined && { zone: zoneFlag(v.zone) }),
    ...(cluster && { cluster }),
    admin: adminOptions(v),
    ...(v.faultInjection === true && { faultInjection: true }),
    ...(v.metrics === false && { metrics: false }),
    ...(v.gateways !== undefined && { gateways: gatewaysFlag(v.gateways) }),
    ...websocketOptions(v),
  };
  // Checked last, so a bad value is reported even when --app is missing too.
  const apps = (v.app ?? []).map(toSpecifier);
  const modules = command === 'demo' ? [demoModule, ...apps] : apps;
  if (modules.length === 0) throw new UsageError(`start needs --app <module> (or run 'troupe demo')`);
  return { modules, ...options };
}

function headersTimeouts(ms: number): { headersTimeoutMs: number; requestTimeoutMs: number } {
  return { headersTimeoutMs: ms, requestTimeoutMs: Math.max(ms * 3, 30_000) };
}

/** `--ws-max-connections`, `--ws-max-unacked`, `--no-websockets` (docs/websocket.md). */
function websocketOptions(v: NodeFlags): { sessions?: false | { maxConnections?: number; maxUnacked?: number } } {
  if (v.websockets === false) {
    if (v.wsMaxConnections !== undefined || v.wsMaxUnacked !== undefined) throw new UsageError('--ws-max-connections and --ws-max-unacked have no effect with --no-websockets: drop one');
    return { sessions: false };
  }
  if (v.wsMaxConnections === undefined && v.wsMaxUnacked === undefined) return {};
  return {
    sessions: {
      ...(v.wsMaxConnections !== undefined && { maxConnections: intFlag('--ws-max-connections', v.wsMaxConnections, 1, 1_000_000) }),
      ...(v.wsMaxUnacked !== undefined && { maxUnacked: intFlag('--ws-max-unacked', v.wsMaxUnacked, 1, 100_000) }),
    },
  };
}

/** `--session-secret` (or TROUPE_SESSION_SECRET), `--session-max-age`, `--secure-cookies`, `--trust-proxy`, `--cors-origin`. */
function sessionOptions(v: NodeFlags): Partial<NonNullable<Exclude<NodeOptions['http'], false>>> {
  const secrets = sessionSecrets(v);
  for (const a of v.trustProxy ?? []) if (isIP(a) === 0) throw new UsageError(`--trust-proxy must be an IP address (got ${JSON.stringify(a)})`);
  return {
    ...(secrets && { sessionSecrets: secrets }),
    ...(v.sessionMaxAge !== undefined && { sessionMaxAgeS: intFlag('--session-max-age', v.sessionMaxAge, 1, 10 * 365 * 24 * 3600) }),
    // The whole request may take 3× as long as its headers (the gateway's defaults: 10 s and 30 s).
    ...(v.headersTimeout !== undefined && headersTimeouts(intFlag('--headers-timeout', v.headersTimeout, 100, 600_000))),
    ...(v.secureCookies && { secureCookies: true }),
    ...(v.trustProxy && { trustedProxies: v.trustProxy }),
    ...(v.corsOrigin && { corsOrigins: v.corsOrigin }),
  };
}

/** `--session-secret` (repeatable) or else TROUPE_SESSION_SECRET (comma-separated), each checked; undefined when neither is set. */
function sessionSecrets(v: { sessionSecret?: string[] }): string[] | undefined {
  const env = process.env.TROUPE_SESSION_SECRET;
  const secrets = v.sessionSecret ?? (env ? env.split(',').map((s) => s.trim()).filter((s) => s.length > 0) : undefined);
  for (const s of secrets ?? [])
    if (s.length < MIN_SECRET_LENGTH)
      throw new UsageError(`${v.sessionSecret ? '--session-secret' : 'TROUPE_SESSION_SECRET'} must be at least ${MIN_SECRET_LENGTH} characters (got ${s.length})`);
  return secrets;
}

/** `--gateways http://a:8080,http://b:8080`: checked as the node checks `options.gateways`, named as the flag. */
function gatewaysFlag(v: string): string[] {
  const list = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (list.length === 0) throw new UsageError(`--gateways must list http(s)://host:port URLs, comma-separated (got ${JSON.stringify(v)})`);
  try {
    return [...checkGateways(list)];
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^options\.gateways/, '--gateways'));
  }
}

/** `--admin-socket` / `--admin-listen`: without a data directory the socket goes to a temporary path. */
function adminOptions(v: NodeFlags): NonNullable<NodeOptions['admin']> {
  const id = v.id ?? '0';
  const socket =
    v.adminSocket === 'none' ? false : (v.adminSocket ?? (v.dataDir !== undefined ? undefined : join(tmpdir(), `troupe-${id}-${process.pid}.sock`)));
  if (v.adminListen === undefined) return { socket };
  const { host, port } = addressFlag('--admin-listen', v.adminListen, true);
  const token = process.env.TROUPE_ADMIN_TOKEN;
  if (!token || token.length < 16) throw new UsageError('--admin-listen needs a token of at least 16 characters in TROUPE_ADMIN_TOKEN');
  return { socket, tcp: { host, port, token } };
}

/**
 * The transport's addresses: `--listen host:port` binds, `--port P` is `--listen 127.0.0.1:P`,
 * `--advertise` is what peers dial (needed when the bind address is 0.0.0.0 or behind NAT).
 */
function clusterOptions(v: NodeFlags): ClusterOptions | undefined {
  if (v.listen === undefined && v.port === undefined && v.seeds === undefined && v.advertise === undefined) return undefined;
  if (v.listen !== undefined && v.port !== undefined) throw new UsageError('--listen and --port both set the bind address: give one');
  const bind =
    v.listen !== undefined
      ? addressFlag('--listen', v.listen, true)
      : { host: '127.0.0.1', port: v.port !== undefined ? portFlag('--port', v.port) : 0 };
  const advertise = v.advertise !== undefined ? addressFlag('--advertise', v.advertise, false) : undefined;
  if (advertise === undefined && (bind.host === '0.0.0.0' || bind.host === '::'))
    throw new UsageError(`--listen ${v.listen} binds every interface: add --advertise <host:port>, the address other nodes dial`);
  const secret = v.secret ?? process.env.TROUPE_CLUSTER_SECRET;
  if (!secret) throw new UsageError('a cluster needs --secret or TROUPE_CLUSTER_SECRET (there is no default)');
  if (secret.length < MIN_CLUSTER_SECRET_LENGTH)
    throw new UsageError(`${v.secret !== undefined ? '--secret' : 'TROUPE_CLUSTER_SECRET'} must be at least ${MIN_CLUSTER_SECRET_LENGTH} characters (got ${secret.length}); e.g. openssl rand -base64 32`);
  return {
    secret,
    host: bind.host,
    port: bind.port,
    ...(advertise && { advertise: formatAddress(advertise.host, advertise.port) }),
    seeds: v.seeds !== undefined ? seedsFlag(v.seeds) : [],
    ...(v.allowSolo && { allowSolo: true }),
    ...(v.profile !== undefined && { profile: oneOf('--profile', v.profile, ['lan', 'seed-10s'] as const) }),
    ...(v.tlsCert !== undefined && { tls: tlsFlags(v.tlsCert, v.tlsKey, v.tlsCa) }),
    ...(v.replicas !== undefined && { replicas: intFlag('--replicas', v.replicas, 1, 7) }),
    ...(v.writeQuorum !== undefined && { writeQuorum: intFlag('--write-quorum', v.writeQuorum, 1, 7) }),
  };
}

const DURABILITIES = ['replicated', 'replicated+flush', 'lazy', 'flush', 'commit'] as const;

async function startCluster(v: ClusterFlags): Promise<number> {
  const nodes = v.nodes !== undefined ? intFlag('--nodes', v.nodes, 1, 64) : 3;
  const secrets = sessionSecrets(v);
  return runCluster({
    nodes,
    basePort: v.basePort !== undefined ? portFlag('--base-port', v.basePort, false) : 7401,
    httpBase: v.httpBase !== undefined ? portFlag('--http-base', v.httpBase, false) : 8081,
    workers: v.workers !== undefined ? intFlag('--workers', v.workers, 1, 256) : 1,
    apps: (v.app ?? []).map(toSpecifier),
    dataDir: v.dataDir ?? '.troupe',
    ...(secrets && { sessionSecrets: secrets }),
    ...(v.logLevel !== undefined && { logLevel: oneOf('--log-level', v.logLevel, LOG_LEVELS) }),
    ...(v.profile !== undefined && { profile: oneOf('--profile', v.profile, ['lan', 'seed-10s'] as const) }),
    ...(v.durability !== undefined && { durability: oneOf('--durability', v.durability, DURABILITIES) }),
    ...(v.replicas !== undefined && { replicas: intFlag('--replicas', v.replicas, 1, 7) }),
    ...(v.writeQuorum !== undefined && { writeQuorum: intFlag('--write-quorum', v.writeQuorum, 1, 7) }),
    onReady: (urls, pids) =>
      printDemo(urls, v.durability === undefined || v.durability.startsWith('replicated'), join(v.dataDir ?? '.troupe', 'node-1'), v.app === undefined ? pids : undefined),
  });
}

async function backupCommand(v: { dataDir?: string; to?: string }): Promise<number> {
  if (v.dataDir === undefined) throw new UsageError("backup needs --data-dir <dir> (the node's data directory)");
  if (v.to === undefined) throw new UsageError('backup needs --to <dir>');
  const journalPath = join(v.dataDir, JOURNAL_DIR);
  const { backup } = await import('../persistence/backup.ts');
  await backup({ type: 'lmdb', path: journalPath }, v.to);
  process.stdout.write(`backed up ${journalPath} to ${resolve(v.to)}\n`);
  return 0;
}

async function restoreCommand(v: { from?: string; dataDir?: string; force?: boolean }): Promise<number> {
  if (v.from === undefined) throw new UsageError('restore needs --from <dir>');
  if (v.dataDir === undefined) throw new UsageError("restore needs --data-dir <dir> (the node's data directory)");
  const journalPath = join(v.dataDir, JOURNAL_DIR);
  const { restore } = await import('../persistence/backup.ts');
  await restore(v.from, journalPath, { overwrite: v.force === true });
  process.stdout.write(`restored ${resolve(v.from)} into ${journalPath}; start the node with --data-dir ${v.dataDir}\n`);
  return 0;
}

function tlsFlags(cert: string, key: string | undefined, ca: string | undefined) {
  if (key === undefined || ca === undefined) throw new UsageError('--tls-cert needs --tls-key and --tls-ca');
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new UsageError(`${flag} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  };
  return { cert: read('--tls-cert', cert), key: read('--tls-key', key), ca: read('--tls-ca', ca) };
}

/** A path that exists (or looks like one) becomes a file URL; anything else is a package name. */
function toSpecifier(m: string): string {
  return m.startsWith('.') || m.startsWith('/') || existsSync(m) ? pathToFileURL(resolve(m)).href : m;
}

/** `chatPids`: the cluster runs the chat page (the default apps); the nodes' process ids, for the kill it suggests. */
function printDemo(urls: string[], replicated = false, adminDataDir?: string, chatPids?: number[]): void {
  const url = urls[0]!;
  const others =
    urls.length > 1 && replicated
      ? `\nEvery node serves every key (forwarded to its owner): ${urls.join('  ')}\n` +
        `Every write is on 2 of the nodes before its reply leaves: kill -9 any one node and its actors\n` +
        `come back on the others within about two seconds, state included.\n`
      : urls.length > 1
        ? `\nEvery node serves every key (forwarded to its owner): ${urls.join('  ')}\n`
        : '';
  const page = chatPids
    ? `\nChat: open ${url}/?room=lobby in two browser tabs. Each shows the node owning the room and the node\n` +
      `its socket is on; kill -9 that node and the tab moves to another, losing nothing. Pids: ${chatPids.map((p, i) => `node ${i + 1} ${p}`).join(', ')}\n`
    : '';
  process.stdout.write(`
troupe is running: ${url}
${others}${page}
Try:
  curl -s -XPOST ${url}/actors/counter/k1/incr -d '{"by":2}'
  curl -s -XPOST ${url}/actors/counter/k1/get
  curl -s -XPOST ${url}/actors/cart/alice/add -d '{"sku":"tea","qty":2}'
  curl -s ${url}/cluster/members
${adminDataDir === undefined ? '' : `\nOperate it (members, ring, where a key lives, actors, drain…):\n  npx troupe repl --data-dir ${adminDataDir}\n`}
Ctrl-C stops it.
`);
}
