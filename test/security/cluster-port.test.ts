/**
 * Issue 10, scenarios 9 (bad input on the cluster port) and 11 (a rogue node), against a real
 * 3-node cluster of `troupe start` processes. Every abuse goes to node 1's node-to-node port;
 * after each, the promise is checked from the outside:
 *
 *   - node 1 is still running and serving (a request through its gateway to a key anywhere);
 *   - every node's membership view (ids, statuses, incarnations) is what it was before, and no
 *     node counted a membership change (`troupe_membership_changes_total`), so no link between
 *     the real nodes dropped for long enough to be noticed;
 *   - no frame between the real nodes went undelivered (`troupe_transport_undeliverable_total`);
 *   - for the rogue nodes, no actor handler ran anywhere (`troupe_actor_processed_total`).
 *
 * The TLS half of scenario 11 (a certificate from another CA) is in rogue-tls.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forkNode } from '../../src/cli/node-process.ts';
import { encodeFrame, FrameType } from '../../src/cluster/frame-codec.ts';
import { HANDSHAKE_VERSION, newNonce } from '../../src/cluster/handshake.ts';
import { demoApp, ProcessCluster, type ProcessNode } from '../helpers/process-cluster.ts';
import { eventually } from '../helpers/processes.ts';
import { fakeProof, RawClient, rawFrame, type RawFrame } from '../transport/helpers.ts';
import { membershipChanges, membershipOf, messagesProcessed, metric, type MemberView } from './helpers.ts';

const cluster = new ProcessCluster('security-port', { logLevel: 'info', jsonLogs: true, dataDir: false });
let nodes: ProcessNode[];
let port: number;
/** What every node saw before any abuse. */
let baseline: { members: MemberView[][]; changes: number; undeliverable: number };

beforeAll(async () => {
  nodes = await cluster.startAll([1, 2, 3]);
  port = Number(nodes[0]!.cluster.split(':').at(-1));
  baseline = await snapshot();
}, 60_000);
afterAll(() => cluster.stop(), 20_000);

async function snapshot(): Promise<typeof baseline> {
  const undeliverable = (await Promise.all(nodes.map((n) => metric(n, 'troupe_transport_undeliverable_total')))).reduce((a, b) => a + b, 0);
  return { members: await membershipOf(nodes), changes: await membershipChanges(nodes), undeliverable };
}

let served = 0;
/** The cluster is as it was: node 1 up and serving, views, changes and delivery unchanged. */
async function expectClusterUnchanged(): Promise<void> {
  expect(nodes[0]!.child.exitCode, 'node 1 exited').toBeNull();
  // Keys spread over the ring: node 1 serves its own and forwards the others over its links.
  for (let k = 0; k < 8; k++) {
    const res = await fetch(`${nodes[0]!.url}/actors/counter/sec-${served++}/incr`, { method: 'POST', signal: AbortSignal.timeout(7_000) });
    expect(res.status).toBe(200);
  }
  const now = await snapshot();
  expect(now.members, 'membership views').toEqual(baseline.members);
  expect(now.changes, 'membership changes counted').toBe(baseline.changes);
  expect(now.undeliverable, 'undeliverable node-to-node frames').toBe(baseline.undeliverable);
}

const stamp = { id: 900, incarnation: 1 };
const hello = (s = stamp) => encodeFrame(FrameType.Hello, s, [HANDSHAKE_VERSION, 'actor', '127.0.0.1:1', newNonce()], 1024);

/** Writes `bytes` (then closes our side when `thenClose`); resolves once node 1 closed the connection. */
async function abuse(bytes: Buffer, thenClose = false): Promise<void> {
  const c = await RawClient.connect(port);
  c.write(bytes);
  if (thenClose) c.socket.end();
  // Within the handshake timeout (5 s) at worst: a node never waits on a silent stranger.
  await c.expectClosed(7_000);
}

describe('scenario 9: bad bytes on the cluster port', () => {
  it('random bytes, corrupt, truncated and oversized frames: each connection is closed; node 1 stays up, membership and the other links unchanged', async () => {
    const oversized = Buffer.alloc(8);
    oversized.writeUInt32BE(9 * 1024 * 1024, 0); // over even the post-handshake 8 MiB limit, announced before any byte of it
    const huge = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x01]);
    const truncated = hello().subarray(0, 9);
    const cases: Array<[string, Buffer, boolean?]> = [
      ['64 KiB of random bytes', randomBytes(64 * 1024)],
      ['a length prefix of 0xFFFFFFFF', huge],
      ['a 9 MiB frame announced', oversized],
      ['a HELLO whose body is random bytes (corrupt msgpack)', rawFrame(FrameType.Hello, stamp, randomBytes(40))],
      ['a HELLO with a flipped length (truncated body, then silence)', truncated],
      ['a truncated HELLO, then the client closes', truncated, true],
      ['a data frame before any handshake', encodeFrame(FrameType.ActorData, stamp, { kind: 'counter', key: 'x', command: 'incr' }, 1024)],
    ];
    const processed = await messagesProcessed(nodes);
    for (const [, bytes, thenClose] of cases) await abuse(bytes, thenClose);
    // Many at once, as a scanner would.
    await Promise.all(Array.from({ length: 50 }, () => abuse(randomBytes(1 + Math.floor(Math.random() * 4096)))));
    expect(await messagesProcessed(nodes), 'actor messages processed by the abuse').toBe(processed);
    await expectClusterUnchanged();
  }, 60_000);

  it('a peer that does hold the secret, then sends a corrupt frame and an oversized one: only its own connection closes', async () => {
    for (const after of [rawFrame(FrameType.ActorData, stamp, randomBytes(64)), Buffer.from([0x00, 0x90, 0x00, 0x01, 0x11])]) {
      const c = await RawClient.connect(port);
      expect((await c.handshake(cluster.secret, { id: 901, incarnation: Date.now() }))?.type).toBe(FrameType.Ready);
      c.write(after);
      await c.expectClosed(7_000);
    }
    await expectClusterUnchanged();
  }, 30_000);
});

describe('scenario 11: a rogue node', () => {
  it('without the secret: cannot start a cluster node at all, and a raw client guessing the proof is refused', async () => {
    const { child, ready } = forkNode(
      ['start', '--id', '7', '--port', '0', '--http', '0', '--app', demoApp, '--seeds', nodes[0]!.cluster],
      {
        env: { ...process.env, TROUPE_CLUSTER_SECRET: '' },
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      },
    );
    cluster.track(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await expect(ready).rejects.toThrow(/exited \(2\) before it was ready/); // 2: a usage error
    expect(stderr).toContain('a cluster needs --secret or TROUPE_CLUSTER_SECRET (there is no default)');

    const processed = await messagesProcessed(nodes);
    const c = await RawClient.connect(port);
    c.write(hello());
    const challenge = await c.nextFrame();
    expect(challenge.type).toBe(FrameType.Challenge);
    c.write(encodeFrame(FrameType.Auth, stamp, [fakeProof()], 1024));
    const answers: RawFrame[] = [];
    await c.expectClosed(7_000);
    answers.push(...c.frames);
    expect(
      answers.map((f) => f.type),
      'frames after AUTH',
    ).toEqual([FrameType.Refuse]);
    // And whatever it sends after the refusal is never read as actor traffic.
    expect(await messagesProcessed(nodes)).toBe(processed);
    await expectClusterUnchanged();
  }, 30_000);

  it('with the wrong secret: a real node seeded with node 1 never joins; node 1 logs the mismatch; no handler runs', async () => {
    const processed = await messagesProcessed(nodes);
    const logged = () => nodes[0]!.messages.filter((m) => m.includes('cluster secret mismatch')).length;
    const before = logged();
    const { child, ready } = forkNode(
      ['start', '--id', '8', '--port', '0', '--http', '0', '--workers', '1', '--app', demoApp, '--seeds', nodes[0]!.cluster],
      {
        env: { ...process.env, TROUPE_CLUSTER_SECRET: 'not-the-cluster-secret-0123', TROUPE_LOG_FORMAT: 'json' },
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      },
    );
    cluster.track(child);
    ready.catch(() => undefined); // it is never ready: checked below by what it logs and serves
    await eventually(async () => logged() > before, 15_000, 'node 1 logging "cluster secret mismatch"');
    // It never joined: the cluster's views and counters are what they were, no handler ran.
    expect(await messagesProcessed(nodes)).toBe(processed);
    await expectClusterUnchanged();
    expect(child.exitCode, 'the rogue waits for a seed that will never accept it').toBeNull();
    child.kill('SIGKILL');
  }, 40_000);

  it('a recorded handshake replayed by someone without the secret is refused, and delivers nothing', async () => {
    // A legitimate handshake (the test holds the secret), recorded byte for byte as an eavesdropper would.
    const legit = await RawClient.connect(port);
    const recorded: Buffer[] = [];
    const write = legit.write.bind(legit);
    legit.write = (b) => (recorded.push(Buffer.from(b)), write(b));
    const identity = { id: 902, incarnation: Date.now() };
    expect((await legit.handshake(cluster.secret, identity))?.type).toBe(FrameType.Ready);
    legit.destroy();
    expect(
      recorded.map((b) => b[4]),
      'recorded HELLO then AUTH',
    ).toEqual([FrameType.Hello, FrameType.Auth]);

    const processed = await messagesProcessed(nodes);
    const replay = await RawClient.connect(port);
    // The client nonce was seen: refused at the HELLO. (Were it forgotten, the server's fresh
    // nonce would still make the recorded proof fail: test/transport/abuse.test.ts.)
    replay.write(recorded[0]!);
    replay.write(recorded[1]!);
    replay.write(encodeFrame(FrameType.ActorData, identity, { kind: 'counter', key: 'replayed', command: 'incr' }, 1 << 20));
    await replay.expectClosed(7_000);
    expect(
      replay.frames.map((f) => f.type),
      'frames after the replayed AUTH',
    ).not.toContain(FrameType.Ready);
    expect(await messagesProcessed(nodes)).toBe(processed);
    await expectClusterUnchanged();
  }, 30_000);
});
