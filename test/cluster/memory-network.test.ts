import { describe, expect, it } from 'vitest';
import { SimulatedClock } from '../../src/core/clock.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import { MemoryNetwork, type MemoryNetworkOptions } from '../../src/cluster/memory-network.ts';
import type { Lane, PeerIdentity, Transport } from '../../src/cluster/transport.ts';

interface Received {
  at: number;
  from: number;
  payload: unknown;
  lane: Lane;
}

function setup(options: Omit<MemoryNetworkOptions, 'clock'> = {}, nodes = 3) {
  const clock = new SimulatedClock(0);
  const net = new MemoryNetwork({ clock, ...options });
  const inbox = new Map<string, Received[]>();
  const failures: { from: string; to: string; error: Error }[] = [];
  const transports: Transport[] = [];
  for (let id = 1; id <= nodes; id++) {
    const t = net.transport({ id, incarnation: 1, address: `mem:${id}` });
    const box: Received[] = [];
    inbox.set(t.self.address, box);
    t.onMessage((from, payload, lane) => box.push({ at: clock.now(), from: from.id, payload, lane }));
    t.onUndeliverable((to, _payload, error) => failures.push({ from: t.self.address, to, error }));
    transports.push(t);
  }
  return { clock, net, inbox, failures, t: transports };
}

describe('MemoryNetwork', () => {
  it('delivers after the default 1 ms latency, with the sender identity and lane', async () => {
    const { clock, inbox, t } = setup();
    expect(await t[0]!.start()).toBe('mem:1');
    t[0]!.send('mem:2', { n: 1 }, 'system');
    expect(inbox.get('mem:2')).toEqual([]);
    clock.advance(1);
    expect(inbox.get('mem:2')).toEqual([{ at: 1, from: 1, payload: { n: 1 }, lane: 'system' }]);
  });

  it('delivers a structured clone, never the sender object', () => {
    const { clock, inbox, t } = setup();
    const payload = { list: [1, 2], when: new Date(0) };
    t[0]!.send('mem:2', payload);
    payload.list.push(3); // mutation after send must not leak
    clock.advance(1);
    const got = inbox.get('mem:2')![0]!.payload as typeof payload;
    expect(got).toEqual({ list: [1, 2], when: new Date(0) });
    expect(got).not.toBe(payload);
  });

  it('keeps per-link FIFO order and is deterministic for a seed', () => {
    const run = () => {
      const { clock, inbox, t } = setup({ seed: 9, dropRate: 0.2, duplicateRate: 0.2 });
      for (let i = 0; i < 200; i++) t[i % 2]!.send('mem:3', i);
      clock.advance(10);
      return inbox.get('mem:3')!.map((r) => `${r.from}:${String(r.payload)}`);
    };
    const a = run();
    expect(run()).toEqual(a);
    const from1 = a.filter((s) => s.startsWith('1:')).map((s) => Number(s.slice(2)));
    expect(from1).toEqual([...from1].sort((x, y) => x - y));
    expect(a.length).toBeGreaterThan(120);
    expect(a.length).not.toBe(200);
  });

  it('drops and duplicates at the configured rates', () => {
    const { clock, net, inbox, t } = setup({ seed: 3, dropRate: 0.1, duplicateRate: 0.1 });
    for (let i = 0; i < 10_000; i++) t[0]!.send('mem:2', i);
    clock.advance(5);
    expect(net.stats.dropped).toBeGreaterThan(800);
    expect(net.stats.dropped).toBeLessThan(1200);
    expect(net.stats.duplicated).toBeGreaterThan(700);
    expect(inbox.get('mem:2')!.length).toBe(10_000 - net.stats.dropped + net.stats.duplicated);
  });

  it('partitions groups both ways, including messages in flight, until heal()', () => {
    const { clock, net, inbox, t } = setup();
    t[0]!.send('mem:2', 'in flight');
    net.partition(['mem:1'], ['mem:2']);
    t[0]!.send('mem:2', 'a→b');
    t[1]!.send('mem:1', 'b→a');
    t[2]!.send('mem:1', 'unlisted reaches everyone');
    clock.advance(2);
    expect(inbox.get('mem:2')).toEqual([]);
    expect(inbox.get('mem:1')!.map((r) => r.payload)).toEqual(['unlisted reaches everyone']);
    net.heal();
    t[0]!.send('mem:2', 'healed');
    clock.advance(1);
    expect(inbox.get('mem:2')!.map((r) => r.payload)).toEqual(['healed']);
  });

  it('applies per-link rules in one direction only', () => {
    const { clock, net, inbox, t } = setup();
    net.setLink('mem:1', 'mem:2', { latency: 50 });
    net.setLink('mem:2', 'mem:3', { blocked: true });
    t[0]!.send('mem:2', 'slow');
    t[1]!.send('mem:1', 'fast');
    t[1]!.send('mem:3', 'blocked');
    clock.advance(49);
    expect(inbox.get('mem:1')!.map((r) => r.at)).toEqual([1]);
    expect(inbox.get('mem:2')).toEqual([]);
    clock.advance(1);
    expect(inbox.get('mem:2')!.map((r) => r.at)).toEqual([50]);
    expect(inbox.get('mem:3')).toEqual([]);
  });

  it('runs scripted interceptors: drop, duplicate, delay', () => {
    const { clock, net, inbox, t } = setup();
    const remove = net.intercept((m) => {
      if (m.payload === 'drop me') return 'drop';
      if (m.payload === 'twice') return 'duplicate';
      if (m.payload === 'late') return { delay: 20 };
      return undefined;
    });
    for (const p of ['drop me', 'twice', 'late', 'plain']) t[0]!.send('mem:2', p);
    clock.advance(30);
    expect(inbox.get('mem:2')!.map((r) => `${String(r.payload)}@${r.at}`)).toEqual(['twice@1', 'twice@1', 'plain@1', 'late@21']);
    remove();
    t[0]!.send('mem:2', 'drop me');
    clock.advance(1);
    expect(inbox.get('mem:2')!.at(-1)!.payload).toBe('drop me');
  });

  it('reports messages to a killed or unknown node as undeliverable; a killed node sends nothing', () => {
    const { clock, net, inbox, failures, t } = setup();
    net.kill('mem:2');
    t[0]!.send('mem:2', 'to the dead');
    t[0]!.send('mem:9', 'to nobody');
    t[1]!.send('mem:1', 'from the dead');
    clock.advance(1);
    expect(failures.map((f) => [f.to, isTroupeError(f.error, 'ERR_NODE_UNREACHABLE')])).toEqual([
      ['mem:2', true],
      ['mem:9', true],
    ]);
    expect(inbox.get('mem:1')).toEqual([]);
    expect(net.isAlive('mem:2')).toBe(false);
  });

  it('lets a restarted node reuse a dead address, but not a live one', () => {
    const { clock, net, t } = setup();
    expect(() => net.transport({ id: 7, incarnation: 1, address: 'mem:1' })).toThrow(
      'identity.address is already in use on this network (got "mem:1")',
    );
    net.kill('mem:2');
    const reborn = net.transport({ id: 2, incarnation: 2, address: 'mem:2' });
    const got: PeerIdentity[] = [];
    reborn.onMessage((from) => got.push(from));
    t[0]!.send('mem:2', 'hello again');
    clock.advance(1);
    expect(got.map((f) => f.id)).toEqual([1]);
  });

  it('drops sends from and to a closed transport', async () => {
    const { clock, failures, inbox, t } = setup();
    await t[1]!.close();
    t[1]!.send('mem:1', 'after close');
    t[0]!.send('mem:2', 'to a closed node');
    clock.advance(1);
    expect(inbox.get('mem:1')).toEqual([]);
    expect(failures.map((f) => f.to)).toEqual(['mem:2']);
    await expect(t[1]!.start()).rejects.toMatchObject({ code: 'ERR_STOPPED' });
  });

  it('reports an uncloneable payload as undeliverable', () => {
    const { clock, failures, t } = setup();
    t[0]!.send('mem:2', { fn: () => 1 });
    clock.advance(1);
    expect(failures.map((f) => isTroupeError(f.error, 'ERR_BAD_FRAME'))).toEqual([true]);
  });

  it.each([
    { name: 'latency', options: { latency: -1 }, message: 'options.latency must be a non-negative number (got -1)' },
    { name: 'dropRate', options: { dropRate: 2 }, message: 'options.dropRate must be a number in 0..1 (got 2)' },
    { name: 'seed', options: { seed: 1.5 }, message: 'options.seed must be an integer (got 1.5)' },
  ])('validates options: $name', ({ options, message }) => {
    expect(() => new MemoryNetwork({ clock: new SimulatedClock(), ...options })).toThrow(message);
  });

  it('keeps one clock timer for any number of messages in flight', () => {
    const { clock, net, t } = setup({ jitter: 5 });
    for (let i = 0; i < 1000; i++) t[i % 3]!.send(`mem:${(i % 3) + 1}`, i);
    expect(net.inFlight).toBe(1000);
    expect(clock.pending).toBe(1);
    clock.advance(10);
    expect(net.inFlight).toBe(0);
  });
});
