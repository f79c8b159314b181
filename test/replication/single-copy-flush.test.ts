/**
 * `replicated` falls back to `flush` where a partition's only copy is the primary's own: with
 * no replica to survive an OS crash, a write counts only once the store has synced it. With
 * replicas, the sync stays in the background (commits are acknowledged on W copies).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryNetwork } from '../../src/cluster/memory-network.ts';
import { HashRing } from '../../src/cluster/ring.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { MemoryPartitionStore } from '../../src/replication/memory-partition-store.ts';
import { PartitionTable, partitionOf } from '../../src/replication/partition-table.ts';
import { ReplicationDriver } from '../../src/replication/replication-driver.ts';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const addressOf = (id: number) => `mem:${id}`;

/** A store whose syncs wait until the test releases them. */
class HeldSyncStore extends MemoryPartitionStore {
  private release: Array<() => void> = [];
  override sync(): Promise<void> {
    this.syncs++;
    return new Promise((resolve) => this.release.push(resolve));
  }
  releaseSyncs(): void {
    for (const r of this.release.splice(0)) r();
  }
}

const drivers: ReplicationDriver[] = [];
afterEach(async () => {
  for (const d of drivers.splice(0)) await d.close();
});

async function advance(clock: SimulatedClock, ms: number): Promise<void> {
  for (let i = 0; i < ms; i++) {
    clock.advance(1);
    await turn();
  }
}

const write = (key: string) => ({ kind: 'counter', key, seq: 1, events: [{ by: 1 }], snapshot: null, replies: [] }) as never;

describe('a partition whose only copy is its primary', () => {
  it('acknowledges a write only after the store synced it (replicated falls back to flush)', async () => {
    const clock = new SimulatedClock(0);
    const net = new MemoryNetwork({ clock, latency: 1, seed: 1 });
    const store = new HeldSyncStore();
    const d = await ReplicationDriver.open({ self: 1, store, clock, log: silentLogger });
    drivers.push(d);
    d.attach(net.transport({ id: 1, incarnation: 1, address: addressOf(1) }));
    d.setMembers(new HashRing([{ id: 1, address: addressOf(1) }]));
    let acked = false;
    const w = d.write(write('alone-1')).then(() => (acked = true));
    await advance(clock, 200);
    expect(store.syncs).toBeGreaterThan(0);
    expect(acked).toBe(false);
    store.releaseSyncs();
    await advance(clock, 50);
    store.releaseSyncs(); // the epoch's start entry and the write may each have asked
    await advance(clock, 50);
    await w;
    expect(acked).toBe(true);
  });

  it('with replicas, a write is acknowledged on W copies without waiting for a sync', async () => {
    const clock = new SimulatedClock(0);
    const net = new MemoryNetwork({ clock, latency: 1, seed: 2 });
    const ring = new HashRing([1, 2, 3].map((id) => ({ id, address: addressOf(id) })));
    const stores = new Map<number, HeldSyncStore>();
    for (const id of [1, 2, 3]) {
      const store = new HeldSyncStore();
      stores.set(id, store);
      const d = await ReplicationDriver.open({ self: id, store, clock, log: silentLogger });
      drivers.push(d);
      d.attach(net.transport({ id, incarnation: 1, address: addressOf(id) }));
      d.setMembers(ring);
    }
    // A key whose partition node 1 leads.
    const table = new PartitionTable(ring);
    const key = Array.from({ length: 100 }, (_, i) => `many-${i}`).find((k) => table.primaryOf(partitionOf(k)) === 1)!;
    let acked = false;
    const w = drivers[0]!.write(write(key)).then(() => (acked = true));
    for (let i = 0; i < 2000 && !acked; i++) await advance(clock, 1);
    await w;
    expect(acked).toBe(true);
    expect([...stores.values()].map((s) => s.syncs)).toEqual([0, 0, 0]);
  });
});
