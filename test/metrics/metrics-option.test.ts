/**
 * `metrics: false` (the CLI's `--no-metrics`) reaches the node: no `/metrics` route and nothing
 * counted; by default the route answers Prometheus text that counts the node's asks.
 */
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';

const demo = fileURLToPath(new URL('../../src/demo/app.ts', import.meta.url));
let node: TroupeNode | undefined;
afterEach(async () => {
  await node?.stop();
  node = undefined;
});

async function start(metrics?: boolean): Promise<TroupeNode> {
  node = await TroupeNode.start({ modules: [demo], workers: 1, actors: 'in-process', http: { port: 0 }, log: silentLogger, logLevel: 'silent', ...(metrics !== undefined && { metrics }) });
  return node;
}

describe('the metrics option', () => {
  it('by default GET /metrics counts the asks the gateway answered', async () => {
    const n = await start();
    await fetch(`${n.url}/actors/counter/m-1/incr`, { method: 'POST', body: '{}' });
    const r = await fetch(`${n.url}/metrics`);
    expect(r.status).toBe(200);
    expect(await r.text()).toMatch(/troupe_asks_total\{kind="counter",outcome="ok",node="0"\} 1/);
  });

  it('metrics: false serves no /metrics and counts nothing', async () => {
    const n = await start(false);
    await fetch(`${n.url}/actors/counter/m-1/incr`, { method: 'POST', body: '{}' });
    expect((await fetch(`${n.url}/metrics`)).status).toBe(404);
    expect(n.metrics).toBeUndefined();
  });
});
