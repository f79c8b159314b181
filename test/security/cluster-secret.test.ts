/**
 * The cluster secret's minimum length (docs/security.md): a handshake recorded off the wire
 * (without TLS) lets anyone test guesses of the secret offline, so a short one is refused at
 * every way in — the `--secret` flag, TROUPE_CLUSTER_SECRET, `options.cluster.secret` and the
 * transport's own `options.secret` — with an error naming it. 16 characters, as for session
 * secrets and admin tokens.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { forkNode, troupeBin } from '../../src/cli/node-process.ts';
import { TcpTransport } from '../../src/cluster/tcp-transport.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';
import { demoApp } from '../helpers/process-cluster.ts';
import { stopChild } from '../helpers/processes.ts';

const children: Array<ReturnType<typeof forkNode>['child']> = [];
afterAll(() => Promise.all(children.map(stopChild)), 20_000);

function troupe(args: string[], env: Record<string, string> = {}): { code: number | null; stderr: string } {
  const env0 = { ...process.env, ...env };
  if (!('TROUPE_CLUSTER_SECRET' in env)) delete env0.TROUPE_CLUSTER_SECRET;
  const r = spawnSync(process.execPath, [troupeBin, ...args], { encoding: 'utf8', timeout: 30_000, env: env0 });
  return { code: r.status, stderr: r.stderr };
}

describe('the cluster secret must be at least 16 characters', () => {
  it('--secret of 15 characters: a usage error naming the flag; the node does not start', () => {
    const r = troupe(['start', '--app', demoApp, '--http', '0', '--port', '0', '--secret', 'x'.repeat(15)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'troupe start: --secret must be at least 16 characters (got 15); e.g. openssl rand -base64 32 (see troupe start --help)\n',
    );
  });

  it('TROUPE_CLUSTER_SECRET of 5 characters: the same error, naming the variable', () => {
    const r = troupe(['start', '--app', demoApp, '--http', '0', '--port', '0'], { TROUPE_CLUSTER_SECRET: 'short' });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'troupe start: TROUPE_CLUSTER_SECRET must be at least 16 characters (got 5); e.g. openssl rand -base64 32 (see troupe start --help)\n',
    );
  });

  it('exactly 16 characters: the node starts and serves', async () => {
    const { child, ready } = forkNode([
      'start',
      '--id',
      '1',
      '--app',
      demoApp,
      '--http',
      '0',
      '--port',
      '0',
      '--workers',
      '1',
      '--secret',
      's'.repeat(16),
    ]);
    children.push(child);
    const { url } = await ready;
    expect((await fetch(`${url}/actors/counter/k/incr`, { method: 'POST' })).status).toBe(200);
  }, 40_000);

  it('options.cluster.secret: ERR_INVALID_OPTION naming it, before anything starts', async () => {
    await expect(
      TroupeNode.start({
        modules: [demoApp],
        actors: 'in-process',
        http: false,
        logLevel: 'silent',
        cluster: { secret: 'short-secret', port: 0 },
      }),
    ).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: 'options.cluster.secret must be at least 16 characters (bytes for a Buffer) (got "12 characters")',
    });
    await expect(
      TroupeNode.start({
        modules: [demoApp],
        actors: 'in-process',
        http: false,
        logLevel: 'silent',
        cluster: { secret: Buffer.alloc(8, 1), port: 0 },
      }),
    ).rejects.toMatchObject({ message: 'options.cluster.secret must be at least 16 characters (bytes for a Buffer) (got "8 characters")' });
  });

  it('the transport itself: options.secret of 15 characters or 15 bytes is refused, 16 accepted', async () => {
    expect(() => new TcpTransport({ id: 1, incarnation: 1, secret: 'x'.repeat(15) })).toThrow(
      'options.secret must be at least 16 characters (bytes for a Buffer) (got "15 characters")',
    );
    expect(() => new TcpTransport({ id: 1, incarnation: 1, secret: Buffer.alloc(15, 7) })).toThrow(
      'options.secret must be at least 16 characters',
    );
    await new TcpTransport({ id: 1, incarnation: 1, secret: Buffer.alloc(16, 7) }).close();
  });
});
