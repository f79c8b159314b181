/**
 * Issue 10, scenario 11 with TLS on: two real nodes with certificates from the cluster's CA (made
 * here with the openssl CLI), and a rogue `troupe start` that knows the cluster secret but holds a
 * certificate from another CA. Promise: the rogue is refused at the TLS layer (node 1 logs it),
 * never becomes a member, and no actor handler runs anywhere.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forkNode } from '../../src/cli/node-process.ts';
import { demoApp, ProcessCluster, type ProcessNode } from '../helpers/process-cluster.ts';
import { eventually } from '../helpers/processes.ts';
import { TestPki } from '../helpers/test-pki.ts';
import { membershipChanges, membershipOf, messagesProcessed } from './helpers.ts';

const cluster = new ProcessCluster('security-tls', {
  logLevel: 'info',
  jsonLogs: true,
  dataDir: false,
  args: () => tlsArgs('node'),
});
const dir = join(cluster.root, 'pki');
let nodes: ProcessNode[];

function tlsArgs(name: string, ca = 'ca'): string[] {
  return ['--tls-cert', join(dir, `${name}.crt`), '--tls-key', join(dir, `${name}.key`), '--tls-ca', join(dir, `${ca}.crt`)];
}

beforeAll(async () => {
  mkdirSync(dir);
  const pki = new TestPki(dir);
  for (const [ca, node] of [['ca', 'node'], ['rogue-ca', 'rogue']] as const) {
    pki.ca(ca);
    pki.issue(ca, node, ['127.0.0.1']);
  }
  nodes = await cluster.startAll([1, 2]);
}, 60_000);
afterAll(async () => {
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}, 20_000);

it('a node with the right secret but a certificate from another CA is refused at TLS: not a member, no handler runs, node 1 logs it', async () => {
  const members = await membershipOf(nodes);
  const changes = await membershipChanges(nodes);
  const processed = await messagesProcessed(nodes);
  const tlsRefusals = () => nodes[0]!.messages.filter((m) => m === 'rejected inbound connection: TLS').length;
  const before = tlsRefusals();

  // Same secret (the cluster's environment), the other CA's certificate, trusting that CA too.
  const { child, ready } = forkNode(
    [
      'start',
      '--id',
      '3',
      '--port',
      '0',
      '--http',
      '0',
      '--workers',
      '1',
      '--app',
      demoApp,
      '--seeds',
      nodes[0]!.cluster,
      ...tlsArgs('rogue', 'rogue-ca'),
    ],
    { env: { ...process.env, TROUPE_CLUSTER_SECRET: cluster.secret }, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] },
  );
  cluster.track(child);
  ready.catch(() => undefined); // never ready: it waits for a seed that will not take it
  await eventually(async () => tlsRefusals() >= before + 2, 15_000, 'node 1 logging two TLS refusals (the rogue retries)');

  // A raw TLS client with the rogue certificate gets no further than the TLS handshake either.
  const port = Number(nodes[0]!.cluster.split(':').at(-1));
  const outcome = await new Promise<string>((resolve) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      cert: readFileSync(join(dir, 'rogue.crt')),
      key: readFileSync(join(dir, 'rogue.key')),
      rejectUnauthorized: false, // the attacker does not care who the server is
    });
    s.on('error', (e) => resolve(`error: ${e.message}`));
    // TLS 1.3: the client may finish its side before the server checks its certificate; the close tells.
    s.on('close', () => resolve('closed'));
    s.on('data', () => resolve('data'));
  });
  expect(outcome).not.toBe('data');

  expect(child.exitCode, 'the rogue is still trying').toBeNull();
  expect(await membershipOf(nodes)).toEqual(members);
  expect(await membershipChanges(nodes)).toBe(changes);
  expect(await messagesProcessed(nodes)).toBe(processed);
  child.kill('SIGKILL');
}, 40_000);
