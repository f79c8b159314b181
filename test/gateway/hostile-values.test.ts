/**
 * Hostile values from the outside: through real worker threads and HTTP, across two nodes of
 * a cluster, and at the gateway and router boundaries themselves. A handler's value outside the
 * value domain answers 500 ERR_NOT_SERIALIZABLE; the node, its thread and the other actors on
 * that thread go on as before. Idempotency keys over HTTP: a reuse with another body or
 * command answers 422 ERR_IDEMPOTENCY_MISMATCH, before and after a restart with a data dir.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { MessageChannel } from 'node:worker_threads';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnyMessage } from '../../src/actors/define-actor.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { ClusterRouter, type LocalActors } from '../../src/cluster/cluster-router.ts';
import { MembershipDriver } from '../../src/cluster/membership-driver.ts';
import { MemoryNetwork } from '../../src/cluster/memory-network.ts';
import { SimulatedClock, systemClock } from '../../src/core/clock.ts';
import type { Logger } from '../../src/core/logger.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { HttpGateway } from '../../src/gateway/http-gateway.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';
import { PortReader, PortWriter } from '../../src/supervisor/port-protocol.ts';
import { cart, counter } from '../fixtures/actors.ts';
import { refusedNames } from '../fixtures/hostile-actors.ts';

const modules = [new URL('../fixtures/hostile-actors.ts', import.meta.url).href, new URL('../fixtures/actors.ts', import.meta.url).href];

async function post(base: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, { method: 'POST', body: body === undefined ? undefined : JSON.stringify(body), headers });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const notSerializable = { status: 500, body: { error: { code: 'ERR_NOT_SERIALIZABLE' } } };

describe('through a worker thread and HTTP (one node, one worker, no data dir)', () => {
  let node: TroupeNode;
  let base: string;
  const exits: unknown[] = [];

  beforeAll(async () => {
    node = await TroupeNode.start({ modules, workers: 1, http: { port: 0 }, log: silentLogger, logLevel: 'silent' });
    base = node.url!;
    node.supervisor.on('worker-exit', (slot: number) => exits.push(slot));
  });
  afterAll(() => node?.stop());

  it('every hostile reply, event, state and message answers 500 ERR_NOT_SERIALIZABLE; the thread and its actors live on', async () => {
    // In-memory state on the worker's thread: it would be lost if the thread died.
    expect(await post(base, '/actors/counter/bystander/incr', { by: 5 })).toMatchObject({ status: 200, body: { n: 5 } });
    expect(await post(base, '/actors/hostile/k/incr')).toMatchObject({ status: 200, body: { n: 1 } });
    const before = (await post(base, '/actors/hostile/k/where')).body;
    const threads = node.supervisor.threadIds();

    for (const command of ['reply', 'replyAsync', 'emit', 'state', 'tell', 'ask']) {
      for (const value of refusedNames) {
        const res = await post(base, `/actors/hostile/k/${command}`, { value }, { 'idempotency-key': `${command}-${value}` });
        expect(res, `${command} ${value}`).toMatchObject(notSerializable);
      }
    }

    expect((await post(base, '/actors/hostile/k/where')).body).toEqual(before); // same thread, n still 1
    expect(await post(base, '/actors/counter/bystander/get')).toMatchObject({ status: 200, body: { n: 5 } });
    expect(node.supervisor.threadIds()).toEqual(threads);
    expect(exits).toEqual([]);
    const [stats] = (await node.supervisor.stats()) as Array<{ restarts: number }>;
    expect(stats!.restarts).toBe(0);
  });

  it('an ask from code whose input cannot cross the port fails alone; the batch around it is delivered', async () => {
    const sent = [
      node.ask('counter', 'port-1', { command: 'incr' }),
      node.ask('counter', 'port-1', { command: 'incr', input: { by: () => 1 } } as AnyMessage),
      node.ask('counter', 'port-1', { command: 'incr' }),
    ];
    const results = await Promise.allSettled(sent);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_NOT_SERIALIZABLE' });
    expect((results[1] as PromiseRejectedResult).reason.message).toContain("input of ask to counter/port-1 'incr'");
    expect(results[2]).toMatchObject({ value: { n: 2 } });
    expect(exits).toEqual([]);
  });
});

describe('across two nodes (in-memory network)', () => {
  const net = new MemoryNetwork({ clock: systemClock, seed: 5, latency: 1 });
  const nodes: TroupeNode[] = [];

  beforeAll(async () => {
    for (const id of [1, 2]) {
      nodes.push(
        await TroupeNode.start({
          id,
          modules,
          workers: 1,
          http: id === 1 ? { port: 0 } : false,
          log: silentLogger,
          logLevel: 'silent',
          cluster: { transport: net.transport({ id, incarnation: 1, address: `mem:${id}` }), seeds: ['mem:1'] },
        }),
      );
    }
    // Joined: both nodes see both as up (re-checked on every membership change, with a deadline).
    await new Promise<void>((resolve, reject) => {
      const both = () => nodes.every((n) => n.membership!.upMembers().length === 2);
      const timer = setTimeout(() => reject(new Error('the two nodes did not see each other within 10 s')), 10_000);
      const offs = nodes.map((n) =>
        n.membership!.onMemberChanged(() => {
          if (both()) {
            clearTimeout(timer);
            offs.forEach((off) => off());
            resolve();
          }
        }),
      );
      if (both()) {
        clearTimeout(timer);
        offs.forEach((off) => off());
        resolve();
      }
    });
  });
  afterAll(async () => {
    for (const n of nodes) await n.stop();
  });

  it('a request forwarded to a hostile handler on the other node gets ERR_NOT_SERIALIZABLE, over HTTP too', async () => {
    const key = Array.from({ length: 100 }, (_, i) => `remote-${i}`).find((k) => nodes[0]!.clusterRouter!.ownerOf(k).id === 2)!;
    expect(key).toBeDefined();
    await expect(nodes[0]!.ask('hostile', key, { command: 'incr' })).resolves.toEqual({ n: 1 });
    for (const value of ['bigint', 'cycle', 'function']) {
      await expect(nodes[0]!.ask('hostile', key, { command: 'reply', input: { value } })).rejects.toMatchObject({
        code: 'ERR_NOT_SERIALIZABLE',
      });
      expect(await post(nodes[0]!.url!, `/actors/hostile/${key}/emit`, { value })).toMatchObject(notSerializable);
    }
    await expect(nodes[0]!.ask('hostile', key, { command: 'get' })).resolves.toEqual({ n: 1 });
    expect(nodes[0]!.clusterRouter!.stats().sentRemote).toBeGreaterThan(0);
  });

  it('an ask from code to a remote key with an input msgpack cannot carry is refused at the call', async () => {
    const key = Array.from({ length: 100 }, (_, i) => `remote-in-${i}`).find((k) => nodes[0]!.clusterRouter!.ownerOf(k).id === 2)!;
    await expect(nodes[0]!.ask('counter', key, { command: 'incr', input: { by: 1n } } as AnyMessage)).rejects.toMatchObject({
      code: 'ERR_NOT_SERIALIZABLE',
    });
    expect(() => nodes[0]!.tell('counter', key, { command: 'incr', input: { by: () => 1 } } as AnyMessage)).toThrow(/not serializable/);
  });
});

describe('the last lines of defence', () => {
  it('the gateway answers 500 ERR_NOT_SERIALIZABLE for a reply JSON cannot encode, and keeps serving', async () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const replies: Record<string, unknown> = { bigint: { n: 1n }, cycle: cyclic, fn: () => 1, good: { n: 1 } };
    const errors: unknown[] = [];
    const log = { error: (o: unknown) => errors.push(o), warn: () => undefined, info: () => undefined } as unknown as Logger;
    const sender = { askRaw: (_k: string, key: string) => Promise.resolve(replies[key]) };
    const gateway = new HttpGateway(new ActorRegistry([counter, cart]), sender, log, { port: 0 }, { '/bad-view': () => ({ n: 2n }) });
    const { port } = await gateway.listen();
    const base = `http://127.0.0.1:${port}`;
    try {
      for (const key of ['bigint', 'cycle', 'fn']) {
        const res = await post(base, `/actors/counter/${key}/get`);
        expect(res, key).toMatchObject(notSerializable);
        expect(String((res.body.error as { message: string }).message)).toContain(
          `reply of counter/${key} 'get' cannot be encoded as JSON`,
        );
      }
      const view = await fetch(base + '/bad-view');
      expect(view.status).toBe(500);
      expect(await post(base, '/actors/counter/good/get')).toEqual({ status: 200, body: { n: 1 } });
      expect(errors).toHaveLength(4); // each one logged, once
    } finally {
      await gateway.close();
    }
  });

  it('a port batch that cannot be cloned: only its bad records fail, the rest arrive in order', async () => {
    const { port1, port2 } = new MessageChannel();
    const refused: Array<[number, string]> = [];
    const writer = new PortWriter(port1, (askId, error) => refused.push([askId, error.message]));
    const got: unknown[] = [];
    const reader = new PortReader({
      msg: (kind, key, command, input, askId) => got.push(['msg', kind, key, command, input, askId]),
      reply: (askId, ok, value) => got.push(['reply', askId, ok, ok ? value : (value as { code: string }).code]),
      control: () => undefined,
      event: () => undefined,
    });
    const arrived = new Promise<void>((resolve) => port2.once('message', (batch: unknown[]) => (reader.decode(batch), resolve())));
    writer.reply(1, true, { n: 1 });
    writer.reply(2, true, { f: () => 1 });
    writer.msg('counter', 'a', 'incr', { by: Symbol('s') }, 0, undefined);
    writer.msg('counter', 'b', 'incr', { by: () => 2 }, 7, 'id-7');
    writer.msg('counter', 'c', 'incr', { by: 3 }, 8, undefined);
    writer.flush();
    await arrived;
    expect(got).toEqual([
      ['reply', 1, true, { n: 1 }],
      ['reply', 2, false, 'ERR_NOT_SERIALIZABLE'],
      ['msg', 'counter', 'c', 'incr', { by: 3 }, 8],
    ]);
    expect(refused).toEqual([
      [0, expect.stringContaining("input of tell to counter/a 'incr' is not serializable: $.by is a symbol")],
      [7, expect.stringContaining("input of ask to counter/b 'incr' is not serializable: $.by is a function")],
    ]);
    port1.close();
  });

  it('the cluster router answers a reply msgpack cannot carry with ERR_NOT_SERIALIZABLE, not a timeout', async () => {
    const clock = new SimulatedClock(0);
    const network = new MemoryNetwork({ clock, latency: 1 });
    const local = (id: number): LocalActors => ({
      askRaw: () => Promise.resolve(id === 2 ? { big: 2n ** 70n } : { ok: true }),
      tell: () => undefined,
    });
    const routers = [1, 2].map((id) => {
      const transport = network.transport({ id, incarnation: 1, address: `mem:${id}` });
      const members = [1, 2].map((m) => ({ id: m, address: `mem:${m}` }));
      const membership = new MembershipDriver({ transport, clock, members });
      return new ClusterRouter({ transport, membership, local: local(id), clock, log: silentLogger, defaultAskTimeoutMs: 1_000 });
    });
    const key = Array.from({ length: 100 }, (_, i) => `k${i}`).find((k) => routers[0]!.ownerOf(k).id === 2)!;
    const answer = routers[0]!.askRaw('counter', key, 'get', undefined, undefined, 1_000).then(
      () => 'resolved',
      (e: { code: string }) => e.code,
    );
    for (let i = 0; i < 10; i++) await clock.advance(1); // the network's latency, step by step
    expect(await answer).toBe('ERR_NOT_SERIALIZABLE');
    routers.forEach((r) => r.stop());
  });
});

describe('idempotency keys over HTTP, across a restart (data dir)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'troupe-idem-http-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
  const start = () => TroupeNode.start({ modules, workers: 1, dataDir, http: { port: 0 }, log: silentLogger, logLevel: 'silent' });
  const key = { 'idempotency-key': 'order-9' };
  const mismatch = { status: 422, body: { error: { code: 'ERR_IDEMPOTENCY_MISMATCH' } } };

  it('same key and body: the recorded reply; another body or command: 422, nothing applied', async () => {
    const a = await start();
    try {
      expect(await post(a.url!, '/actors/cart/i1/add', { sku: 'tea', qty: 2 }, key)).toMatchObject({ status: 200, body: { count: 2 } });
      expect(await post(a.url!, '/actors/cart/i1/add', { qty: 2, sku: 'tea' }, key)).toMatchObject({ status: 200, body: { count: 2 } });
      expect(await post(a.url!, '/actors/cart/i1/add', { sku: 'tea', qty: 3 }, key)).toMatchObject(mismatch);
      expect(await post(a.url!, '/actors/cart/i1/remove', { sku: 'tea' }, key)).toMatchObject(mismatch);
      expect(await post(a.url!, '/actors/cart/i1/get')).toMatchObject({ body: { count: 2 } });
    } finally {
      await a.stop();
    }
    const b = await start();
    try {
      expect(await post(b.url!, '/actors/cart/i1/add', { sku: 'tea', qty: 3 }, key)).toMatchObject(mismatch);
      expect(await post(b.url!, '/actors/cart/i1/add', { sku: 'tea', qty: 2 }, key)).toMatchObject({ status: 200, body: { count: 2 } });
      expect(await post(b.url!, '/actors/cart/i1/get')).toMatchObject({ body: { count: 2 } });
    } finally {
      await b.stop();
    }
  });
});
