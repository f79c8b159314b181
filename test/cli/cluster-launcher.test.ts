import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { troupeBin } from '../../src/cli/node-process.ts';
import { freePorts } from '../helpers/processes.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'troupe-launcher-'));
let launcher: ChildProcess | undefined;
afterAll(() => {
  if (launcher && launcher.exitCode === null && launcher.signalCode === null) launcher.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});


describe('troupe cluster', () => {
  it('starts N node processes that form one cluster, and Ctrl-C stops them all', async () => {
    const base = await freePorts(2);
    const httpBase = await freePorts(2);
    const args = [
      'cluster',
      '--nodes',
      '2',
      '--base-port',
      String(base),
      '--http-base',
      String(httpBase),
      '--data-dir',
      dataDir,
      '--log-level',
      'warn',
    ];
    const child = spawn(process.execPath, [troupeBin, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    launcher = child;
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no banner within 30 s:\n${out}`)), 30_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ctrl-C stops it')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => reject(new Error(`launcher exited with ${code}:\n${out}`)));
    });
    const urls = [`http://127.0.0.1:${httpBase}`, `http://127.0.0.1:${httpBase + 1}`];
    expect(out).toContain(urls[0]);
    // Both gateways serve every key, so two incr through different nodes reach one owner.
    for (const url of urls) expect((await fetch(`${url}/actors/counter/launch/incr`, { method: 'POST' })).status).toBe(200);
    const res = await fetch(`${urls[1]}/actors/counter/launch/get`, { method: 'POST' });
    expect(await res.json()).toEqual({ n: 2 });

    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    // The launcher exits only after its nodes: nothing listens on their ports any more.
    for (const url of urls) await expect(fetch(`${url}/health`)).rejects.toThrow();
  }, 60_000);
});
