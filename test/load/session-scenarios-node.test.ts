/**
 * The session scenarios against a real node serving the demo app and `visits` (one in-process
 * node with a session secret): a short checked run of each through the library, then each
 * through `troupe bench` from the sources (TROUPE_SOURCE=1: dist/ may predate them), exit code
 * and output as a user sees them.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkCounts, WriteLedger } from '../../src/load/counter-check.ts';
import { readFinalCounts, roomTarget, visitsTarget } from '../../src/load/final-counts.ts';
import { runLoad } from '../../src/load/load-run.ts';
import { SCENARIOS } from '../../src/load/scenarios.ts';
import { SessionJar } from '../../src/load/session-jar.ts';
import { runWsLoad } from '../../src/load/ws-load.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';

const bin = fileURLToPath(new URL('../../bin/troupe.js', import.meta.url));
const modules = ['../../src/demo/app.ts', '../../src/demo/visits.ts'].map((m) => fileURLToPath(new URL(m, import.meta.url)));

let node: TroupeNode;
beforeAll(async () => {
  node = await TroupeNode.start({ modules, actors: 'in-process', http: { port: 0, sessionSecrets: ['load-test-session-secret-0123'] }, logLevel: 'warn' });
}, 30_000);
afterAll(() => node?.stop(), 30_000);

describe('through the library', () => {
  it('sticky-cookie: 40 sessions, each its own actor; every acknowledged hit is in its final count', async () => {
    const ledger = new WriteLedger();
    const jar = new SessionJar();
    const report = await runLoad({ urls: [node.url!], scenario: SCENARIOS['sticky-cookie']!, seconds: 1, connections: 8, keys: 40, prefix: 'c', ledger, jar });
    expect({ non2xx: report.non2xx, errors: report.errors }).toEqual({ non2xx: 0, errors: 0 });
    expect(jar.size).toBe(40);
    // The node signed each cookie: distinct sessions, not one shared by every connection.
    expect(new Set([...jar.entries()].map(([, c]) => c)).size).toBe(40);
    const { counts, unread } = await readFinalCounts([node.url!], [...ledger.tallies.keys()], { target: visitsTarget(jar) });
    expect(unread.size).toBe(0);
    expect(checkCounts(ledger.tallies, counts)).toEqual([]);
    expect(ledger.totals().acknowledged).toBeGreaterThan(50);
  }, 30_000);

  it("websocket: 50 sessions on 'room', every acknowledged say pushed back once and counted in its room", async () => {
    const ledger = new WriteLedger();
    const r = await runWsLoad({ urls: [node.url!], sessions: 50, inflight: 10, seconds: 1, prefix: 'w', ledger });
    expect({ violations: r.violations, errors: r.errors, refused: r.non2xx }).toEqual({ violations: [], errors: 0, refused: 0 });
    expect(r.ok).toBeGreaterThan(50);
    expect(r.pushes).toBe(r.ok);
    expect(ledger.tallies.size).toBe(50);
    const { counts, unread } = await readFinalCounts([node.url!], [...ledger.tallies.keys()], { target: roomTarget });
    expect(unread.size).toBe(0);
    expect(checkCounts(ledger.tallies, counts)).toEqual([]);
  }, 60_000);

  it('websocket twice on the same rooms (a warm-up, then the run): each run its own ask ids, so every say applies and pushes', async () => {
    const ledger = new WriteLedger();
    for (let run = 0; run < 2; run++) {
      // Few asks per room (an actor remembers its last 128 message ids): every reused id would be remembered.
      const r = await runWsLoad({ urls: [node.url!], sessions: 100, inflight: 2, seconds: 1, prefix: 'again', ledger });
      expect(r.ok / 100).toBeLessThan(128);
      // A reused id would be answered from the actor's record: no push, and a count acknowledged twice.
      expect(r.violations).toEqual([]);
    }
    const { counts } = await readFinalCounts([node.url!], [...ledger.tallies.keys()], { target: roomTarget });
    expect(checkCounts(ledger.tallies, counts)).toEqual([]);
  }, 60_000);
});

function troupeBench(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, TROUPE_SOURCE: '1' };
  delete env.TROUPE_DEBUG;
  const child = spawn(process.execPath, [bin, 'bench', '--url', node.url!, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, out, err })));
}

describe('through troupe bench', () => {
  it('--scenario sticky-cookie --check: exit 0, the check over the cookie sessions', async () => {
    const r = await troupeBench(['--scenario', 'sticky-cookie', '--seconds', '1', '--connections', '4', '--keys', '20', '--check']);
    expect(r, r.err).toMatchObject({ code: 0 });
    expect(r.out).toMatch(/sticky-cookie\s+[\d,]+\s+[\d.]+\s+[\d.]+\s+0\s+0\s+-\s+-$/m);
    const check = /^check: ([\d,]+) keys written, ([\d,]+) increments acknowledged/m.exec(r.out);
    expect(Number(check?.[1])).toBe(20);
  }, 60_000);

  it('--scenario websocket --check: exit 0, asks/s and the push figures, the check over the rooms', async () => {
    const r = await troupeBench(['--scenario', 'websocket', '--seconds', '1', '--connections', '5', '--keys', '30', '--check']);
    expect(r, r.err).toMatchObject({ code: 0 });
    expect(r.err).toMatch(/^\s+1 s\s+[\d,]+ asks\/s/m);
    expect(r.out).toMatch(/websocket\s+[\d,]+\s+[\d.]+\s+[\d.]+\s+0\s+0\s+-\s+-$/m);
    expect(r.out).toMatch(/^websocket: req\/s are acknowledged asks\/s.*ask sent → push p50\/p99 [\d.]+\/[\d.]+ ms, 30 sessions connected/m);
    const check = /^check: ([\d,]+) keys written/m.exec(r.out);
    expect(Number(check?.[1])).toBe(30);
  }, 60_000);

  it('a node without the visits kind: sticky-cookie fails before any load, saying what to serve', async () => {
    const plain = await TroupeNode.start({ modules: [modules[0]!], actors: 'in-process', http: { port: 0 }, logLevel: 'warn' });
    try {
      const env = { ...process.env, TROUPE_SOURCE: '1' };
      const child = spawn(process.execPath, [bin, 'bench', '--url', plain.url!, '--scenario', 'sticky-cookie'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const code = await new Promise((resolve) => child.once('exit', resolve));
      expect(code).toBe(1);
      expect(err).toContain("serves no 'visits' actor kind: sticky-cookie drives src/demo/visits.ts");
    } finally {
      await plain.stop();
    }
  }, 60_000);
});
