/**
 * The WebSocket flags of `troupe start`/`troupe demo`, checked for their effect on a real node
 * process: `--ws-max-connections` refuses the next upgrade, `--ws-max-unacked` holds pushes
 * until acks come, `--no-websockets` serves none; bad values are one-line usage errors.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { forkNode, troupeBin } from '../../src/cli/node-process.ts';
import { stopChild } from '../helpers/processes.ts';

const running: ChildProcess[] = [];
afterAll(async () => {
  await Promise.all(running.map((c) => stopChild(c)));
});

async function demo(args: string[]): Promise<string> {
  const { child, ready } = forkNode(['demo', '--http', '0', '--workers', '1', ...args], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  running.push(child);
  return (await ready).url;
}

/** Opens a socket; resolves with it once open, or with the refused upgrade's status and code. */
function connect(url: string): Promise<{ ws?: WebSocket; frames: Array<Record<string, unknown>>; status?: number; code?: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    const frames: Array<Record<string, unknown>> = [];
    ws.on('message', (d) => frames.push(JSON.parse(String(d)) as Record<string, unknown>));
    ws.on('open', () => resolve({ ws, frames }));
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c));
      res.on('end', () => resolve({ frames, status: res.statusCode!, code: (JSON.parse(text) as { error: { code: string } }).error.code }));
    });
    ws.on('error', () => undefined);
  });
}

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

describe('WebSocket flags', () => {
  it('--ws-max-connections 1 refuses the second socket with 503 ERR_OVERLOADED; --ws-max-unacked 2 holds pushes until acked', async () => {
    const url = (await demo(['--ws-max-connections', '1', '--ws-max-unacked', '2'])).replace('http', 'ws');
    const first = await connect(`${url}/ws/room/flags`);
    expect(first.ws).toBeDefined();
    expect(await connect(`${url}/ws/room/flags`)).toMatchObject({ status: 503, code: 'ERR_OVERLOADED' });
    await until(() => first.frames.some((f) => f.t === 'sync'), 5_000, 'sync');
    // Five pushes, never acked: the node sends two and waits.
    for (let i = 0; i < 5; i++) first.ws!.send(JSON.stringify({ t: 'ask', id: `f${i}`, command: 'say', input: { from: 'f', text: `m${i}` } }));
    await until(() => first.frames.filter((f) => f.t === 'reply').length === 5, 5_000, 'five replies');
    const pushes = () => first.frames.filter((f) => f.t === 'push') as Array<{ seq: number }>;
    expect(pushes()).toHaveLength(2);
    first.ws!.send(JSON.stringify({ t: 'ack', seq: pushes()[1]!.seq }));
    await until(() => pushes().length === 4, 5_000, 'two more after the ack');
    first.ws!.send(JSON.stringify({ t: 'ack', seq: pushes()[3]!.seq }));
    await until(() => pushes().length === 5, 5_000, 'the last one');
    first.ws!.close();
  });

  it('--no-websockets: /ws/... is a plain 404', async () => {
    const url = (await demo(['--no-websockets'])).replace('http', 'ws');
    expect(await connect(`${url}/ws/room/none`)).toMatchObject({ status: 404, code: 'ERR_NOT_FOUND' });
  });

  it.each([
    [['--ws-max-connections', '0'], '--ws-max-connections'],
    [['--ws-max-unacked', 'lots'], '--ws-max-unacked'],
    [['--no-websockets', '--ws-max-unacked', '5'], '--no-websockets'],
  ])('%j is a usage error naming the flag', (args, flag) => {
    const r = spawnSync(process.execPath, [troupeBin, 'demo', '--http', '0', ...args], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(flag);
  });
});
