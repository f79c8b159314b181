/**
 * Scenario 1: SIGKILL one node of three under load, then start it again — on its own data
 * directory (an operator's restart), and on an EMPTY one (a replaced host: same id, no data; it
 * must rejoin and take its copies back from the others). Promise under `replicated` (R=3, W=2):
 * nothing acknowledged is lost, nothing applied twice, every key served again by the survivors
 * within the detection bound plus a fence, and the returned node serves the latest values.
 */
import { describe, it } from 'vitest';
import { errorsSince, recovered, runScenario } from './scenario.ts';

const workload = (prefix: string) => ({ prefix, counterKeys: 60, counterClients: 6, carts: 20, cartClients: 2 });

describe('scenario 1: SIGKILL under load, then restart', () => {
  for (const emptyDataDir of [false, true]) {
    const how = emptyDataDir ? 'an empty data directory (a replaced host)' : 'its data directory';
    it(`node 3 SIGKILLed under load, restarted on ${how}`, async () => {
      await runScenario({
        name: emptyDataDir ? '1b kill + restart empty' : '1a kill + restart',
        fault: `SIGKILL node 3 of 3; restart it on ${how} once every key is served again`,
        criterion: 'lost 0, duplicated 0, finals agree on every node (the returned one included), I1 holds',
        ids: [1, 2, 3],
        workload: workload(emptyDataDir ? 'k1b' : 'k1a'),
        async inject({ cluster, load }) {
          const killedAt = Date.now();
          await cluster.kill(3);
          const recoverMs = await recovered(load, killedAt, 30_000, { urls: cluster.live().map((n) => n.url) });
          const down = errorsSince(load, killedAt);
          const restartAt = Date.now();
          const again = await cluster.restart(3, { emptyDataDir });
          const rejoinMs = Date.now() - restartAt;
          load.addGateway(again.url);
          // Load through the returned node too, until every key was acknowledged again after it joined.
          const joinedAt = Date.now();
          const settleMs = await recovered(load, joinedAt, 30_000, { urls: cluster.live().map((n) => n.url) });
          return { recoverMs, notes: `errors after the kill: ${down}; restarted and alive everywhere in ${rejoinMs} ms; every key acknowledged again ${settleMs} ms after` };
        },
      });
    }, 180_000);
  }
});
