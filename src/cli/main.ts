/**
 * The `troupe` command line: `start` runs one node, `cluster` runs N node processes on this
 * machine, `demo` runs the demo app on one node.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isTroupeError } from '../core/errors.ts';
import { JOURNAL_DIR, TroupeNode, type NodeOptions } from '../node/troupe-node.ts';
import { runCluster } from './cluster-launcher.ts';

const demoModule = new URL('../demo/app.ts', import.meta.url).href;

const USAGE = `troupe — durable session actors on worker threads and nodes

Usage:
  troupe start   [options]   run one node
  troupe cluster [options]   run a local cluster of node processes (Ctrl-C stops them all)
  troupe demo    [options]   run the demo app (counter, cart) on one node
  troupe backup  --data-dir <dir> --to <dir>     hot, consistent copy of a node's journal
  troupe restore --from <dir> --data-dir <dir>   put a backup in place before the node starts
  troupe help                this text

Node options (start, demo):
  --app <module>        module exporting actor definitions (repeatable; demo/cluster: the demo app)
  --id <n>              node id, 0..1023 (default 0)
  --workers <n>         worker threads (default: available cores)
  --http <port>         HTTP gateway port (default 8080; 0 picks one)
  --host <addr>         HTTP gateway address (default 127.0.0.1)
  --port <port>         node-to-node port; joins a cluster (default: no cluster)
  --seeds <list>        host:port,... of nodes to join through
  --secret <s>          cluster secret (or env TROUPE_CLUSTER_SECRET); required in a cluster
  --profile <name>      failure detection: lan (default) or seed-10s
  --tls-cert <file>     PEM certificate for mutual TLS between nodes (with --tls-key, --tls-ca)
  --tls-key <file>      PEM private key
  --tls-ca <file>       PEM CA that signs every node's certificate
  --data-dir <dir>      where the node keeps its identity and its LMDB journal (default: in memory)
  --durability <d>      flush (default: a reply waits for the disk) or commit (for the commit)
  --max-resident <n>    resident actors per worker before the least recently used passivate
  --log-level <level>   fatal, error, warn, info, debug (default info)

Cluster options:
  --nodes <n>           node processes (default 3)
  --base-port <port>    node-to-node port of node 1 (default 7401; node i uses base + i - 1)
  --http-base <port>    HTTP port of node 1 (default 8081)
  --workers <n>         worker threads per node (default 1)
  --app, --data-dir, --log-level, --profile as above (data dir default .troupe)
  -h, --help            this text
`;

const nodeFlags = {
  app: { type: 'string', multiple: true },
  id: { type: 'string' },
  workers: { type: 'string' },
  http: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  seeds: { type: 'string' },
  secret: { type: 'string' },
  profile: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  'data-dir': { type: 'string' },
  durability: { type: 'string' },
  'max-resident': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} satisfies ParseArgsConfig['options'];

const clusterFlags = {
  nodes: { type: 'string' },
  'base-port': { type: 'string' },
  'http-base': { type: 'string' },
  app: { type: 'string', multiple: true },
  workers: { type: 'string' },
  profile: { type: 'string' },
  'data-dir': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} satisfies ParseArgsConfig['options'];

/** A bad flag: printed with the usage, exit code 2. */
class UsageError extends Error {}

export async function main(argv: string[]): Promise<number> {
  const [command = 'help', ...rest] = argv;
  try {
    switch (command) {
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return 0;
      case 'start':
      case 'demo':
        return await startNode(command, rest);
      case 'cluster':
        return await startCluster(rest);
      case 'backup':
      case 'restore':
        return await backupOrRestore(command, rest);
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (e) {
    if (e instanceof UsageError || (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`troupe: ${(e as Error).message}\n\n${USAGE}`);
      return 2;
    }
    process.stderr.write(`troupe: ${isTroupeError(e) ? `${e.code}: ${e.message}` : ((e as Error).stack ?? String(e))}\n`);
    return 1;
  }
}

async function startNode(command: 'start' | 'demo', args: string[]): Promise<number> {
  const { values: v } = parseArgs({ args, strict: true, options: nodeFlags });
  if (v.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const apps = (v.app ?? []).map(toSpecifier);
  const modules = command === 'demo' ? [demoModule, ...apps] : apps;
  if (modules.length === 0) throw new UsageError(`start needs --app <module> (or run 'troupe demo')`);
  const profile = v.profile === undefined ? undefined : profileFlag(v.profile);
  const clustered = v.port !== undefined || v.seeds !== undefined;
  if (!clustered && (profile !== undefined || v['tls-cert'] !== undefined))
    throw new UsageError('--profile and --tls-* apply to a cluster: add --port (and --seeds)');
  const secret = v.secret ?? process.env.TROUPE_CLUSTER_SECRET;
  if (clustered && !secret) throw new UsageError('a cluster needs --secret or TROUPE_CLUSTER_SECRET (there is no default)');
  const options: NodeOptions = {
    modules,
    http: { port: v.http !== undefined ? intFlag('--http', v.http) : 8080, ...(v.host !== undefined && { host: v.host }) },
    ...(v.id !== undefined && { id: intFlag('--id', v.id) }),
    ...(v.workers !== undefined && { workers: intFlag('--workers', v.workers) }),
    ...(v['data-dir'] !== undefined && { dataDir: v['data-dir'] }),
    ...(v.durability !== undefined && { durability: durabilityFlag(v.durability, v['data-dir']) }),
    ...(v['max-resident'] !== undefined && { maxResidentPerWorker: intFlag('--max-resident', v['max-resident']) }),
    ...(v['log-level'] !== undefined && { logLevel: v['log-level'] }),
    ...(clustered && {
      cluster: {
        secret: secret!,
        port: v.port !== undefined ? intFlag('--port', v.port) : 0,
        seeds: (v.seeds ?? '').split(',').filter((s) => s.length > 0),
        ...(profile !== undefined && { profile }),
        ...(v['tls-cert'] !== undefined && { tls: tlsFlags(v['tls-cert'], v['tls-key'], v['tls-ca']) }),
      },
    }),
  };
  const node = await TroupeNode.start(options);
  if (command === 'demo') printDemo([node.url!]);
  // Under `troupe cluster`: report readiness, and stop if the launcher goes away.
  if (process.send) {
    process.send({ type: 'ready', id: node.id, url: node.url, cluster: node.clusterAddress, pid: process.pid });
    process.once('disconnect', () => void node.stop().then(() => process.exit(0)));
  }
  await new Promise<void>((done) => {
    // Stays installed: Ctrl-C reaches a node twice under `troupe cluster` (the terminal's SIGINT
    // and the launcher's SIGTERM), and the second must not kill it mid-stop. stop() is idempotent.
    const stop = () => void node.stop().then(done);
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  return 0;
}

async function startCluster(args: string[]): Promise<number> {
  const { values: v } = parseArgs({ args, strict: true, options: clusterFlags });
  if (v.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const nodes = v.nodes !== undefined ? intFlag('--nodes', v.nodes) : 3;
  if (nodes < 1 || nodes > 64) throw new UsageError('--nodes must be in [1, 64]');
  return runCluster({
    nodes,
    basePort: v['base-port'] !== undefined ? intFlag('--base-port', v['base-port']) : 7401,
    httpBase: v['http-base'] !== undefined ? intFlag('--http-base', v['http-base']) : 8081,
    workers: v.workers !== undefined ? intFlag('--workers', v.workers) : 1,
    apps: (v.app ?? []).map(toSpecifier),
    dataDir: v['data-dir'] ?? '.troupe',
    ...(v['log-level'] !== undefined && { logLevel: v['log-level'] }),
    ...(v.profile !== undefined && { profile: profileFlag(v.profile) }),
    onReady: (urls) => printDemo(urls),
  });
}

async function backupOrRestore(command: 'backup' | 'restore', args: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args,
    strict: true,
    options: { 'data-dir': { type: 'string' }, to: { type: 'string' }, from: { type: 'string' }, force: { type: 'boolean' } },
  });
  const dataDir = v['data-dir'];
  if (dataDir === undefined) throw new UsageError(`${command} needs --data-dir <dir> (the node's data directory)`);
  const journalPath = join(dataDir, JOURNAL_DIR);
  const { backup, restore } = await import('../persistence/backup.ts');
  if (command === 'backup') {
    if (v.to === undefined) throw new UsageError('backup needs --to <dir>');
    await backup({ type: 'lmdb', path: journalPath }, v.to);
    process.stdout.write(`backed up ${journalPath} to ${resolve(v.to)}\n`);
  } else {
    if (v.from === undefined) throw new UsageError('restore needs --from <dir>');
    await restore(v.from, journalPath, { overwrite: v.force === true });
    process.stdout.write(`restored ${resolve(v.from)} into ${journalPath}; start the node with --data-dir ${dataDir}\n`);
  }
  return 0;
}

function intFlag(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || v.trim() === '') throw new UsageError(`${name} must be an integer (got ${JSON.stringify(v)})`);
  return n;
}

function tlsFlags(cert: string, key: string | undefined, ca: string | undefined) {
  if (key === undefined || ca === undefined) throw new UsageError('--tls-cert needs --tls-key and --tls-ca');
  return { cert: readFileSync(cert), key: readFileSync(key), ca: readFileSync(ca) };
}

function durabilityFlag(v: string, dataDir: string | undefined): 'flush' | 'commit' {
  if (v !== 'flush' && v !== 'commit') throw new UsageError(`--durability must be flush or commit (got ${JSON.stringify(v)})`);
  if (dataDir === undefined) throw new UsageError('--durability needs --data-dir (without it the journal is in memory)');
  return v;
}

function profileFlag(v: string): 'lan' | 'seed-10s' {
  if (v !== 'lan' && v !== 'seed-10s') throw new UsageError(`--profile must be lan or seed-10s (got ${JSON.stringify(v)})`);
  return v;
}

/** A path that exists (or looks like one) becomes a file URL; anything else is a package name. */
function toSpecifier(m: string): string {
  return m.startsWith('.') || m.startsWith('/') || existsSync(m) ? pathToFileURL(resolve(m)).href : m;
}

function printDemo(urls: string[]): void {
  const url = urls[0]!;
  const others = urls.length > 1 ? `\nEvery node serves every key (forwarded to its owner): ${urls.join('  ')}\n` : '';
  process.stdout.write(`
troupe is running: ${url}
${others}
Try:
  curl -s -XPOST ${url}/actors/counter/k1/incr -d '{"by":2}'
  curl -s -XPOST ${url}/actors/counter/k1/get
  curl -s -XPOST ${url}/actors/cart/alice/add -d '{"sku":"tea","qty":2}'
  curl -s ${url}/cluster/members

Ctrl-C stops it.
`);
}
