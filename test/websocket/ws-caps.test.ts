/**
 * WebSocket session caps (docs/websocket.md, Caps) on a real node and real sockets. The CLI has
 * no flags for `sessions` options, so the node runs in this process: TroupeNode.start with
 * `sessions: { maxConnections: 2, maxUnacked: 5 }`, the demo app's `room`.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TroupeNode } from '../../src/node/troupe-node.ts';
import { eventually } from '../helpers/processes.ts';
import { refusedUpgrade, WsSession } from '../helpers/ws-session.ts';

const demoApp = fileURLToPath(new URL('../../src/demo/app.ts', import.meta.url));
const MAX_CONNECTIONS = 2;
const MAX_UNACKED = 5;

let node: TroupeNode;
const sessions: WsSession[] = [];
beforeAll(async () => {
  node = await TroupeNode.start({
    modules: [demoApp],
    actors: 'in-process',
    http: { port: 0 },
    sessions: { maxConnections: MAX_CONNECTIONS, maxUnacked: MAX_UNACKED },
  });
});
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()));
  await node.stop();
});

function session(o: ConstructorParameters<typeof WsSession>[0]): WsSession {
  const s = new WsSession(o);
  sessions.push(s);
  return s;
}

/** Until the node holds `n` sockets (a close reaches the node a moment after the client sees it). */
async function holding(n: number): Promise<void> {
  let last: unknown;
  await eventually(
    async () => {
      const r = (await (await fetch(node.url! + '/cluster/connections')).json()) as { total: number };
      last = r;
      return r.total === n;
    },
    5_000,
    () => `the node holds ${n} sockets: ${JSON.stringify(last)}`,
  );
}

describe('maxConnections', () => {
  it('the upgrade past the cap gets HTTP 503 ERR_OVERLOADED; once a socket closes, the next is accepted', async () => {
    const open = Array.from({ length: MAX_CONNECTIONS }, (_, i) => session({ urls: [node.url!], path: '/ws/room/full', name: `c${i}`, reconnect: false }));
    try {
      await Promise.all(open.map((s) => s.connect()));
      await holding(MAX_CONNECTIONS);
      expect(await refusedUpgrade(node.url!.replace(/^http/, 'ws') + '/ws/room/full')).toMatchObject({ status: 503, body: { error: { code: 'ERR_OVERLOADED' } } });
      await open[0]!.close();
      await holding(MAX_CONNECTIONS - 1);
      const next = session({ urls: [node.url!], path: '/ws/room/full', name: 'next', reconnect: false });
      await next.connect();
      await next.close();
    } finally {
      // The next test needs the node's sockets free, whatever failed here.
      await Promise.all(open.map((s) => s.close()));
    }
    await holding(0);
  });
});

describe('maxUnacked', () => {
  it('a client that never acks receives exactly maxUnacked pushes; after it acks, the rest, in order', async () => {
    await holding(0);
    const TOTAL = 12;
    const lazy = session({ urls: [node.url!], path: '/ws/room/capped', name: 'lazy', autoAck: false, reconnect: false });
    const eager = session({ urls: [node.url!], path: '/ws/room/capped', name: 'eager', reconnect: false });
    await Promise.all([lazy.connect(), eager.connect()]);
    for (let i = 0; i < TOTAL; i++) await eager.ask('say', { from: 'eager', text: `m${i}` });
    await eager.until(() => eager.pushes.length === TOTAL, 5_000, () => `the acking client's ${TOTAL} pushes`);
    // One node delivers each note to both sockets at once: by now every push the lazy socket will
    // get has been sent, and a reply on its own socket comes after them.
    await lazy.ask('recent');
    expect(lazy.pushes.map((p) => (p.msg as { n: number }).n)).toEqual([1, 2, 3, 4, 5]);

    lazy.autoAck = true;
    lazy.ack();
    await lazy.until(() => lazy.pushes.length === TOTAL, 5_000, () => `all ${TOTAL} pushes after acking; have ${lazy.pushes.length}`);
    expect(lazy.pushes).toEqual(eager.pushes);
    expect(lazy.duplicatePushes).toBe(0);
    expect(lazy.gaps).toEqual([]);
  });
});
