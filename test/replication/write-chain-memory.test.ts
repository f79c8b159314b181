/**
 * An actor's writes reach the journal one after another while earlier ones are in flight. When
 * one fails without being applied (here: it waited out holdMs for a partition with no primary),
 * the writes of the same actor already on their way depend on events that do not exist: the
 * driver refuses them, not applied (ERR_NOT_PRIMARY, so the host reloads the actor), until the
 * reloaded actor writes from the failed write's first event again. Without this, 5-node
 * simulator seed 4350 committed a cart's event 10 after event 9's write had timed out, and no
 * node could ever apply the partition's log again.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryNetwork } from '../../src/cluster/memory-network.ts';
import { HashRing } from '../../src/cluster/ring.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import type { ActorWrite } from '../../src/persistence/journal.ts';
import type { Epoch } from '../../src/replication/epoch.ts';
import { MemoryPartitionStore } from '../../src/replication/memory-partition-store.ts';
import { ReplicationDriver } from '../../src/replication/replication-driver.ts';

const drivers: ReplicationDriver[] = [];
afterEach(async () => {
  for (const d of drivers.splice(0)) await d.close();
});

async function until(clock: SimulatedClock, done: () => boolean, maxMs: number): Promise<void> {
  for (let t = 0; !done(); t++) {
    if (t > maxMs) throw new Error(`not within ${maxMs} simulated ms`);
    clock.advance(1);
    await new Promise<void>((r) => setImmediate(r));
  }
}

describe('writes of one actor after one of its writes failed', () => {
  it.each([
    ['a later event of the same actor: refused, not applied', 2, 'ERR_NOT_PRIMARY'],
    ['the reloaded actor writing the failed event again: applied', 1, null],
  ] as const)('%s', async (_, seqAfter, outcome) => {
    const clock = new SimulatedClock(0, 1_767_225_600_000);
    const net = new MemoryNetwork({ clock, latency: 1 });
    const store = new MemoryPartitionStore();
    const d = await ReplicationDriver.open({ self: 1, store, clock, log: silentLogger, holdMs: 100 });
    drivers.push(d);
    d.attach(net.transport({ id: 1, incarnation: 1, address: 'mem:1' }));
    // Node 1 alone in a cluster of one leads the partition; the actor is read (activated) there.
    const ring = new HashRing([{ id: 1, address: 'mem:1' }]);
    d.setMembers(ring, true, 1);
    let activated: Awaited<ReturnType<ReplicationDriver['read']>> | undefined;
    void d.read('counter', 'k').then((h) => (activated = h));
    await until(clock, () => activated !== undefined, 100);
    const epoch = activated!.epoch;
    const write = (seq: number): ActorWrite => ({ kind: 'counter', key: 'k', epoch, events: [{ seq, v: 1, event: { by: 1 } }] });
    // Two more members are known (down): W = 2 with one replica on the ring, so the partition has
    // no primary — writes wait (its memory stays valid: no fence ran), and the first times out.
    d.setMembers(ring, true, 3);
    const results: Array<Error | null | 'pending'> = ['pending', 'pending'];
    void d.writeMany([write(1)]).then(([e]) => (results[0] = e!));
    await until(clock, () => clock.now() >= 50, 100);
    void d.writeMany([write(seqAfter)]).then(([e]) => (results[1] = e!));
    await until(clock, () => results[0] !== 'pending', 200);
    expect((results[0] as { code?: string }).code).toBe('ERR_PARTITION_UNAVAILABLE');
    // They left: W = 1 again, and the same node fences on, its resident actors still valid —
    // before the second write's own hold runs out.
    d.setMembers(ring, true, 1);
    await until(clock, () => results[1] !== 'pending', 200);
    expect(results[1] === null ? null : (results[1] as { code?: string }).code).toBe(outcome);
    const history = await store.actors.read('counter', 'k');
    expect(history.events.map((e) => e.seq)).toEqual(outcome === null ? [1] : []);
  });

  it('a write refused for its stale epoch does not hold back the actor reloaded in the new epoch (chaos scenario 4b)', async () => {
    const clock = new SimulatedClock(0, 1_767_225_600_000);
    const net = new MemoryNetwork({ clock, latency: 1 });
    const store = new MemoryPartitionStore();
    const ring = new HashRing([{ id: 1, address: 'mem:1' }]);
    const write = (seq: number, epoch: Epoch): ActorWrite => ({ kind: 'counter', key: 'k', epoch, events: [{ seq, v: 1, event: { by: 1 } }] });
    const settle = async <T,>(p: Promise<T>): Promise<T> => {
      let out: { v: T } | undefined;
      void p.then((v) => (out = { v }));
      await until(clock, () => out !== undefined, 500);
      return out!.v;
    };
    // First life: the actor writes events 1–3 in epoch E1.
    const first = await ReplicationDriver.open({ self: 1, store, clock, log: silentLogger, holdMs: 100 });
    first.attach(net.transport({ id: 1, incarnation: 1, address: 'mem:1' }));
    first.setMembers(ring, true, 1);
    const e1 = (await settle(first.read('counter', 'k'))).epoch!;
    for (const seq of [1, 2, 3]) expect(await settle(first.writeMany([write(seq, e1)]))).toEqual([null]);
    await first.close();
    // Second life, epoch E2: a write still carrying E1 (an activation from before) is refused...
    const second = await ReplicationDriver.open({ self: 1, store, clock, log: silentLogger, holdMs: 100 });
    drivers.push(second);
    second.attach(new MemoryNetwork({ clock, latency: 1 }).transport({ id: 1, incarnation: 2, address: 'mem:1' }));
    second.setMembers(ring, true, 1);
    const e2 = (await settle(second.read('counter', 'k'))).epoch!;
    expect(e2).not.toEqual(e1);
    const [stale] = await settle(second.writeMany([write(2, e1)]));
    expect((stale as { code?: string }).code).toBe('ERR_NOT_PRIMARY');
    // ...and the actor reloaded in E2 (at event 3) writes event 4: applied.
    expect(await settle(second.writeMany([write(4, e2)]))).toEqual([null]);
    expect((await store.actors.read('counter', 'k')).events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
  });
});
