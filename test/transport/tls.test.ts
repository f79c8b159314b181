import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TroupeError } from '../../src/core/errors.ts';
import { TcpTransport, type TcpTransportOptions, type TcpTransportTlsOptions } from '../../src/cluster/tcp-transport.ts';
import { TestPki } from '../helpers/test-pki.ts';
import { collect, RawClient, SECRET, waitFor } from './helpers.ts';

/**
 * Mutual TLS with certificates made here by the openssl CLI: a cluster CA, a node certificate it
 * signs (IP SAN 127.0.0.1, server and client auth), and a rogue CA with its own node certificate.
 */
let dir: string;
let ca: Buffer;
let node: { key: Buffer; cert: Buffer };
let rogue: { key: Buffer; cert: Buffer };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'troupe-tls-'));
  const pki = new TestPki(dir);
  const issue = (caName: string, name: string) => {
    pki.ca(caName);
    const made = pki.issue(caName, name, ['127.0.0.1']);
    return { key: readFileSync(made.key), cert: readFileSync(made.cert) };
  };
  node = issue('ca', 'node');
  rogue = issue('rogue-ca', 'rogue');
  ca = readFileSync(join(dir, 'ca.crt'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const open: TcpTransport[] = [];
function transport(id: number, tlsOptions: TcpTransportTlsOptions | undefined, extra: Partial<TcpTransportOptions> = {}): TcpTransport {
  const t = new TcpTransport({ id, incarnation: 1, secret: SECRET, ...(tlsOptions && { tls: tlsOptions }), ...extra });
  open.push(t);
  return t;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

describe('mutual TLS', () => {
  it('connects with certificates from the cluster CA, both ways', async () => {
    const a = transport(1, { ...node, ca });
    const b = transport(2, { ...node, ca });
    const gotA = collect(a);
    const gotB = collect(b);
    const [addrA, addrB] = await Promise.all([a.start(), b.start()]);
    for (let i = 0; i < 1000; i++) a.send(addrB, i);
    b.send(addrA, 'over tls', 'system');
    await waitFor(() => gotB.length === 1000 && gotA.length === 1, 'messages over TLS');
    expect(gotB.map((m) => m.payload)).toEqual([...Array(1000).keys()]);
    expect(gotA[0]).toMatchObject({ from: { id: 2 }, payload: 'over tls', lane: 'system' });
  });

  const refused: Array<{ name: string; client: () => TcpTransportTlsOptions | undefined }> = [
    { name: 'without a client certificate', client: () => ({ ca }) },
    { name: 'with a certificate from another CA', client: () => ({ ...rogue, ca }) },
  ];
  for (const r of refused) {
    it(`refuses a node ${r.name}`, async () => {
      const server = transport(1, { ...node, ca });
      const got = collect(server);
      const address = await server.start();
      const client = transport(2, r.client(), { unreachableAfterMs: 500, reconnectBaseMs: 50 });
      const lost: string[] = [];
      client.onUndeliverable((_a, _p, e) => lost.push((e as TroupeError).code));
      client.send(address, 'let me in');
      await waitFor(() => server.stats().rejected['tls-failed'] >= 1, 'TLS rejection');
      await waitFor(() => lost.length === 1, 'undeliverable report', 3_000);
      expect(lost).toEqual(['ERR_NODE_UNREACHABLE']);
      expect(got).toHaveLength(0);
      expect(server.stats().inboundOpen).toBe(0);
    });
  }

  it('refuses a plain TCP client on a TLS port and a raw TLS client without a certificate', async () => {
    const server = transport(1, { ...node, ca });
    const address = await server.start();
    const port = Number(address.split(':')[1]);
    const plain = await RawClient.connect(port);
    plain.write(Buffer.from([0, 0, 0, 20, 1, 0, 1]));
    await plain.expectClosed();
    const raw = tls.connect({ host: '127.0.0.1', port, ca });
    raw.on('error', () => {});
    await new Promise<void>((resolve) => raw.once('close', () => resolve()));
    await waitFor(() => server.stats().rejected['tls-failed'] >= 2, 'two TLS rejections');
    // A legitimate node still gets through.
    const got = collect(server);
    const ok = transport(3, { ...node, ca });
    ok.send(address, 'legit');
    await waitFor(() => got.length === 1, 'legit message');
  });

  it('still requires the cluster secret under TLS', async () => {
    const server = transport(1, { ...node, ca });
    const address = await server.start();
    const got = collect(server);
    const intruder = new TcpTransport({ id: 2, incarnation: 1, secret: 'wrong secret, wrong secret', tls: { ...node, ca }, unreachableAfterMs: 300 });
    open.push(intruder);
    intruder.send(address, 'sneak');
    await waitFor(() => intruder.stats().connectFailures['auth-failed'] >= 1, 'client refuses the server proof');
    expect(got).toHaveLength(0);
  });

  it('cannot listen with TLS but no certificate', async () => {
    const t = transport(1, { ca });
    await expect(t.start()).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', details: { option: 'options.tls.cert' } });
  });
});
