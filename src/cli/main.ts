/**
 * The `troupe` command line. Subcommands: start (one node), demo (the demo app on embedded
 * defaults). Later: cluster, backup, admin.
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isTroupeError } from '../core/errors.ts';
import { TroupeNode } from '../node/troupe-node.ts';

const demoModule = new URL('../demo/app.ts', import.meta.url).href;

const USAGE = `troupe — durable session actors on worker threads and nodes

Usage:
  troupe start [options]   start one node
  troupe demo  [options]   start the demo app (counter, cart) on embedded defaults
  troupe help              this text

Options (start, demo):
  --app <module>        module exporting actor definitions (repeatable; demo: built in)
  --id <n>              node id, 0..1023 (default 0)
  --workers <n>         worker threads (default: available cores)
  --http <port>         gateway port (default 8080; 0 picks one)
  --host <addr>         gateway address (default 127.0.0.1)
  --log-level <level>   pino level: fatal, error, warn, info, debug (default info)
  -h, --help            this text
`;

export async function main(argv: string[]): Promise<number> {
  const [command = 'help', ...rest] = argv;
  if (command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command !== 'start' && command !== 'demo') {
    process.stderr.write(`troupe: unknown command '${command}'\n\n${USAGE}`);
    return 2;
  }
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      strict: true,
      options: {
        app: { type: 'string', multiple: true },
        id: { type: 'string' },
        workers: { type: 'string' },
        http: { type: 'string' },
        host: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    process.stderr.write(`troupe: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const modules = command === 'demo' ? [demoModule, ...(values.app ?? []).map(toSpecifier)] : (values.app ?? []).map(toSpecifier);
  if (modules.length === 0) {
    process.stderr.write(`troupe: start needs --app <module> (or run 'troupe demo')\n`);
    return 2;
  }
  try {
    const node = await TroupeNode.start({
      modules,
      ...(values.id !== undefined && { id: intFlag('--id', values.id) }),
      ...(values.workers !== undefined && { workers: intFlag('--workers', values.workers) }),
      http: {
        port: values.http !== undefined ? intFlag('--http', values.http) : 8080,
        ...(values.host !== undefined && { host: values.host }),
      },
      ...(values['log-level'] !== undefined && { logLevel: values['log-level'] }),
    });
    if (command === 'demo') printDemo(node.url!);
    await new Promise<void>((done) => {
      const stop = () => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        void node.stop().then(done);
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    return 0;
  } catch (e) {
    process.stderr.write(`troupe: ${isTroupeError(e) ? `${e.code}: ${e.message}` : (e as Error).stack}\n`);
    return 1;
  }
}

function intFlag(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`${name} must be an integer (got ${JSON.stringify(v)})`);
  return n;
}

function toSpecifier(m: string): string {
  return m.startsWith('.') || m.startsWith('/') ? pathToFileURL(resolve(m)).href : m;
}

function printDemo(url: string): void {
  process.stdout.write(`
troupe demo is running at ${url}

Try:
  curl -s -XPOST ${url}/actors/counter/k1/incr -d '{"by":2}'
  curl -s -XPOST ${url}/actors/counter/k1/get
  curl -s -XPOST ${url}/actors/cart/alice/add -d '{"sku":"tea","qty":2}'
  curl -s -XPOST ${url}/actors/cart/alice/get

Ctrl-C stops it.
`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
