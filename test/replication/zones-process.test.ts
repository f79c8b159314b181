/**
 * `troupe start --zone` for real: three processes on this host, two labelled `hostA` and one
 * `hostB`, `--replicas 2`. Each node's `GET /cluster/members` shows every member's zone (learned
 * through gossip), and after writes every partition's log is held by exactly one node of each
 * zone (`GET /cluster/partitions`: the nodes whose copy has entries). A bad label is a usage error
 * naming the flag.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { troupeBin } from '../../src/cli/node-process.ts';
import { demoApp as app, getJson, ProcessCluster } from '../helpers/process-cluster.ts';
import { eventually } from '../helpers/processes.ts';

const ZONES: Record<number, string> = { 1: 'hostA', 2: 'hostA', 3: 'hostB' };
/** No data directories (in-memory stores): the copies are counted from `/cluster/partitions`. */
const cluster = new ProcessCluster('zones', { dataDir: false, args: (id) => ['--replicas', '2', '--zone', ZONES[id]!] });

afterAll(() => cluster.stop());

type Members = { members: Array<{ id: number; status: string; zone?: string }> };
type Partitions = { partitions: Array<{ p: number; last: number }> };

describe('troupe start --zone', () => {
  it('gossips each node’s zone and keeps the two copies of every partition in different zones', async () => {
    const urls = (await cluster.startAll([1, 2, 3])).map((n) => n.url);
    for (const url of urls) {
      const { members } = await getJson<Members>(url + '/cluster/members');
      expect(Object.fromEntries(members.map((m) => [m.id, m.zone]))).toEqual(ZONES);
    }

    for (let i = 0; i < 60; i++) {
      const res = await fetch(`${urls[i % 3]}/actors/counter/zp-${i}/incr`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
      expect(res.status, await res.clone().text()).toBe(200);
    }
    // A replica's copy trails its primary's by a round trip: poll until the holders are settled.
    let holders = new Map<number, number[]>();
    await eventually(
      async () => {
        holders = new Map();
        for (const [i, url] of urls.entries()) {
          for (const d of (await getJson<Partitions>(url + '/cluster/partitions')).partitions) {
            if (d.last > 0) holders.set(d.p, [...(holders.get(d.p) ?? []), i + 1]);
          }
        }
        return holders.size > 20 && [...holders.values()].every((nodes) => nodes.length === 2);
      },
      10_000,
      () => `every written partition on two nodes: ${JSON.stringify([...holders])}`,
    );
    for (const [p, nodes] of holders) expect(new Set(nodes.map((n) => ZONES[n])).size, `p${p} held by ${nodes}`).toBe(2);
  });

  it('refuses a bad --zone as a usage error naming the flag', () => {
    const r = spawnSync(process.execPath, [troupeBin, 'start', '--app', app, '--port', '0', '--secret', 's'.repeat(16), '--zone', 'no spaces'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--zone must be 1-64 characters/);
  });
});
