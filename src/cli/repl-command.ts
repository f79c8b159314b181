import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AdminClient, type AdminEndpoint } from '../admin/admin-client.ts';
import { defaultHistoryPath, localUser, runRepl } from '../admin/admin-repl.ts';
import { addressFlag, UsageError } from './flags.ts';

export interface ReplFlags {
  dataDir?: string;
  socket?: string;
  connect?: string;
}

/** The admin socket a node with this data directory listens on. */
export function adminSocketOf(dataDir: string): string {
  return join(dataDir, 'admin.sock');
}

/**
 * `troupe repl`: attach to a running node's admin endpoint. Exit 0 when the session (or the
 * piped script) ends with every command answered, 1 when a piped command failed.
 */
export async function replCommand(flags: ReplFlags): Promise<number> {
  const given = [flags.dataDir, flags.socket, flags.connect].filter((x) => x !== undefined).length;
  if (given !== 1) throw new UsageError('give exactly one of --data-dir <dir>, --socket <path> or --connect <host:port>');
  let endpoint: AdminEndpoint;
  if (flags.connect !== undefined) {
    const { host, port } = addressFlag('--connect', flags.connect, false);
    const token = process.env.TROUPE_ADMIN_TOKEN;
    if (!token) throw new UsageError('--connect needs the admin token in TROUPE_ADMIN_TOKEN (a flag would show it in ps)');
    endpoint = { host, port, token };
  } else {
    const socketPath = flags.socket ?? adminSocketOf(flags.dataDir!);
    if (flags.dataDir !== undefined && !existsSync(flags.dataDir)) throw new UsageError(`--data-dir ${flags.dataDir} does not exist`);
    endpoint = { socketPath };
  }
  const client = await AdminClient.connect(endpoint, localUser());
  try {
    const interactive = process.stdin.isTTY === true;
    if (interactive) process.stdout.write(`attached to node ${client.node}; help lists the commands, @<node> <command> runs one on another member\n`);
    const { failures } = await runRepl(client, {
      input: process.stdin,
      output: process.stdout,
      errors: process.stderr,
      ...(interactive && { historyPath: defaultHistoryPath() }),
    });
    return failures > 0 ? 1 : 0;
  } finally {
    client.close();
  }
}
