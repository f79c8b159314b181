/**
 * Issue 10, scenario 10: prototype-pollution payloads through every way in — HTTP JSON bodies,
 * WebSocket ask inputs, the `troupe/client` library, and node-to-node frames — are refused or
 * neutralised, and `Object.prototype` is unchanged in every thread: this one and each worker
 * thread of both nodes (the probe actor reports from inside its thread).
 *
 * The handler they aim at, the probe's `merge`, deep-merges its input carelessly, as naive merge
 * utilities do: a payload that reached it intact would pollute its thread. So "unchanged" here
 * means the payload was stopped (or defused) before any handler, not that handlers were careful.
 *
 * Two nodes in this process, with worker threads (the threads are the point) and the real TCP
 * transport between them (the frames are msgpack on a socket, as between hosts).
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TroupeClient } from '../../src/client/troupe-client.ts';
import { encodeFrame, FrameType } from '../../src/cluster/frame-codec.ts';
import { R_ASK } from '../../src/cluster/remote-protocol.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';
import { eventually } from '../helpers/processes.ts';
import { RawClient, SECRET } from '../transport/helpers.ts';

const probeFixture = fileURLToPath(new URL('../fixtures/pollution-probe.ts', import.meta.url));
const WORKERS = 2;

/** Bodies as an attacker writes them: JSON text, so `__proto__` is a real own key once parsed. */
const PAYLOADS = [
  '{"__proto__":{"polluted":"proto"}}',
  '{"a":{"b":{"__proto__":{"polluted":"nested"}}}}',
  '{"constructor":{"prototype":{"polluted":"constructor"}}}',
  '{"\\u005f_proto__":{"polluted":"escaped"}}',
  '[{"__proto__":{"polluted":"in-array"}}]',
];

const nodes: TroupeNode[] = [];
beforeAll(async () => {
  const start = (id: number, seeds: string[]) =>
    TroupeNode.start({
      id,
      modules: [probeFixture],
      workers: WORKERS,
      http: { port: 0 },
      log: silentLogger,
      logLevel: 'silent',
      cluster: { secret: SECRET, host: '127.0.0.1', port: 0, seeds },
    });
  nodes.push(await start(1, []));
  nodes.push(await start(2, [nodes[0]!.clusterAddress!]));
  await eventually(async () => nodes.every((n) => n.membership!.upMembers().length === 2), 15_000, 'both nodes up on both');
}, 60_000);
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
}, 20_000);

/** Keys whose primary is `node`, so an ask for them runs in that node's own worker threads. */
function keysOn(node: TroupeNode, prefix: string, count: number): string[] {
  const keys: string[] = [];
  for (let i = 0; keys.length < count; i++) if (node.clusterRouter!.ownerOf(`${prefix}-${i}`).id === node.id) keys.push(`${prefix}-${i}`);
  return keys;
}

/**
 * `Object.prototype` is clean in this thread and in every worker thread of both nodes: the probe
 * asked under keys spread over the slots until each node's every thread has answered.
 */
async function expectEveryThreadClean(): Promise<void> {
  expect(Object.keys(Object.prototype)).toEqual([]);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  for (const node of nodes) {
    const threads = new Map<number, unknown>();
    for (const key of keysOn(node, 'probe', 64)) {
      const r = (await node.ask('probe', key, { command: 'polluted' })) as { thread: number; polluted: unknown; prototypeKeys: string[] };
      threads.set(r.thread, { polluted: r.polluted, prototypeKeys: r.prototypeKeys });
      if (threads.size === WORKERS) break;
    }
    expect(threads.size, `worker threads of node ${node.id} reached`).toBe(WORKERS);
    for (const [thread, seen] of threads) expect(seen, `node ${node.id}, thread ${thread}`).toEqual({ polluted: null, prototypeKeys: [] });
  }
}

describe('scenario 10: prototype pollution', () => {
  it.each(PAYLOADS)('HTTP body %s: 400 ERR_FORBIDDEN_KEY on both nodes, for local and forwarded keys; every thread clean', async (body) => {
    for (const via of nodes)
      for (const owner of nodes) {
        const key = keysOn(owner, `http-${via.id}`, 1)[0]!;
        const res = await fetch(`${via.url}/actors/probe/${key}/merge`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        expect(res.status).toBe(400);
        expect(await res.json()).toMatchObject({ error: { code: 'ERR_FORBIDDEN_KEY' } });
      }
    await expectEveryThreadClean();
  });

  it.each(PAYLOADS.filter((p) => p.startsWith('{')))(
    'WebSocket ask input %s: refused before the actor; every thread clean',
    async (input) => {
      const id = `poison-${PAYLOADS.indexOf(input)}`;
      for (const owner of nodes) {
        const key = keysOn(owner, 'ws', 1)[0]!;
        const ws = new WebSocket(`${nodes[0]!.url!.replace(/^http/, 'ws')}/ws/probe/${key}`);
        const frames: Array<Record<string, unknown>> = [];
        ws.on('message', (d) => frames.push(JSON.parse(String(d)) as Record<string, unknown>));
        const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
        await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
        ws.send(`{"t":"ask","id":"${id}-${owner.id}","command":"merge","input":${input}}`);
        // Refused either way a WebSocket refuses: an error reply to the ask, or an error frame and a close.
        await eventually(
          async () => frames.some((f) => (f.t === 'reply' && f.id === `${id}-${owner.id}`) || f.t === 'error'),
          5_000,
          'the refusal',
        );
        const answer = frames.find((f) => f.t === 'reply' || f.t === 'error')!;
        expect(answer, JSON.stringify(answer)).toMatchObject(
          answer.t === 'reply' ? { ok: false, error: { code: 'ERR_FORBIDDEN_KEY' } } : { error: { code: 'ERR_BAD_MESSAGE' } },
        );
        ws.close();
        await closed;
      }
      await expectEveryThreadClean();
    },
  );

  it.each(PAYLOADS)('troupe/client input %s: the ask rejects with a named error; every thread clean', async (body) => {
    const client = new TroupeClient({ nodes: [nodes[0]!.url!], maxAttempts: 1 });
    for (const owner of nodes) {
      const key = keysOn(owner, 'client', 1)[0]!;
      await expect(client.askRaw('probe', key, 'merge', JSON.parse(body))).rejects.toMatchObject({
        code: expect.stringMatching(/^ERR_(FORBIDDEN_KEY|NOT_SERIALIZABLE)$/),
      });
    }
    await expectEveryThreadClean();
  });

  it("node-to-node: an authenticated peer's ask with a real __proto__ key reaches the careless handler defused (msgpack renames the key); every thread clean", async () => {
    const target = nodes[1]!;
    const peer = await RawClient.connect(Number(target.clusterAddress!.split(':').at(-1)));
    try {
      const stamp = { id: 50, incarnation: Date.now() };
      expect((await peer.handshake(SECRET, stamp, 'actor'))?.type).toBe(FrameType.Ready);
      const served = target.clusterRouter!.stats().servedRemote;
      const keys = keysOn(target, 'link', 8); // spread over both worker threads
      for (const [i, key] of keys.entries()) {
        const input = JSON.parse(i % 2 === 0 ? PAYLOADS[0]! : PAYLOADS[1]!) as unknown;
        peer.write(encodeFrame(FrameType.ActorData, stamp, [R_ASK, i + 1, 'probe', key, 'merge', input, null, 2_000, 0], 1 << 20));
      }
      // The handler ran for each (the asks were served, not dropped as malformed)...
      await eventually(async () => target.clusterRouter!.stats().servedRemote >= served + keys.length, 5_000, "the peer's asks served");
      // ...and polluted nothing.
      await expectEveryThreadClean();
    } finally {
      peer.destroy();
    }
  });
});
