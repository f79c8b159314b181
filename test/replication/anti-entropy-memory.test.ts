/**
 * Lazy anti-entropy (src/replication/anti-entropy.ts) between three replication drivers over a
 * `MemoryNetwork` on a `SimulatedClock`, with the primary's resend turned off (`resendMs` past
 * the test's end): every replication frame to node 3 is dropped while node 1 writes, the writes
 * stop, the link heals — and node 3's copies reach the primary's log end through digests alone,
 * with one digest frame per peer per period, each under the page bound. The pure parts (paging,
 * "behind", the wire check) are table tests.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryNetwork } from '../../src/cluster/memory-network.ts';
import { HashRing } from '../../src/cluster/ring.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import type { Epoch } from '../../src/replication/epoch.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { AntiEntropy, antiEntropyDefaults, decodeDigest, digestsFor, encodeDigest, isBehind, type HeldPartition } from '../../src/replication/anti-entropy.ts';
import { MemoryPartitionStore } from '../../src/replication/memory-partition-store.ts';
import { PartitionTable, partitionOf } from '../../src/replication/partition-table.ts';
import { ReplicationDriver } from '../../src/replication/replication-driver.ts';
import { parseWireMessage, R_REPL } from '../../src/replication/wire.ts';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const addressOf = (id: number) => `mem:${id}`;
const IDS = [1, 2, 3];
/** Longer than any test here runs (simulated ms): the primary never resends on its own. */
const NO_RESEND = 1e9;

const drivers: ReplicationDriver[] = [];
afterEach(async () => {
  for (const d of drivers.splice(0)) await d.close();
});

async function cluster(clock: SimulatedClock, net: MemoryNetwork, digestIntervalMs: number) {
  const ring = new HashRing(IDS.map((id) => ({ id, address: addressOf(id) })));
  const byId = new Map<number, ReplicationDriver>();
  for (const id of IDS) {
    const d = await ReplicationDriver.open({ self: id, store: new MemoryPartitionStore(), clock, log: silentLogger, resendMs: NO_RESEND, digestIntervalMs });
    d.attach(net.transport({ id, incarnation: 1, address: addressOf(id) }));
    d.setMembers(ring);
    drivers.push(d);
    byId.set(id, d);
  }
  return { byId, table: new PartitionTable(ring) };
}

async function runUntil(clock: SimulatedClock, done: () => boolean, maxMs: number, what: string): Promise<void> {
  const start = clock.now();
  await turn();
  while (!done()) {
    if (clock.now() - start > maxMs) throw new Error(`not within ${maxMs} simulated ms: ${what}`);
    clock.advance(1);
    await turn();
  }
}

async function settle<T>(clock: SimulatedClock, p: Promise<T>): Promise<T> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await runUntil(clock, () => done, 10_000, 'promise settled');
  return p;
}

/** Log end of every partition node `id` holds a copy of. */
const ends = (d: ReplicationDriver) => new Map(d.describe().map((x) => [x.p as number, x.last as number]));

describe('anti-entropy between drivers', () => {
  it('a replica that missed every frame converges through digests alone once the link heals', async () => {
    const clock = new SimulatedClock(0);
    const net = new MemoryNetwork({ clock, latency: 1, seed: 3 });
    const { byId, table } = await cluster(clock, net, antiEntropyDefaults.intervalMs);
    const primary = byId.get(1)!;
    const keys = Array.from({ length: 400 }, (_, i) => `ae-${i}`).filter((k) => table.primaryOf(partitionOf(k)) === 1);
    expect(keys.length).toBeGreaterThan(50);

    // Every replication frame to node 3 is lost from here until `heal()`.
    let cut = true;
    const heal = net.intercept((m) => (cut && m.to === addressOf(3) && Array.isArray(m.payload) && m.payload[0] === R_REPL ? 'drop' : undefined));
    for (const key of keys) {
      const { epoch } = await settle(clock, primary.read('counter', key));
      await settle(clock, primary.write({ kind: 'counter', key, events: [{ seq: 1, v: 1, event: { by: 1 } }], replies: [], ...(epoch && { epoch }) }));
    }
    const want = ends(primary);
    const behind = () => [...want].filter(([p, end]) => (ends(byId.get(3)!).get(p) ?? 0) < end);
    expect(behind().length).toBeGreaterThan(10); // node 3 has missed them (W=2: node 2 acknowledged)

    // Count digest frames from here: one per peer per period, each within the page bound.
    cut = false;
    heal();
    const digests: Array<{ at: number; from: number; to: string; partitions: number }> = [];
    const offCount = net.intercept((m) => {
      if (!Array.isArray(m.payload) || m.payload[0] !== R_REPL) return;
      for (const msg of m.payload[1] as Array<{ type: string; parts?: number[] }>) {
        if (msg.type === 'digest') digests.push({ at: clock.now(), from: m.from.id, to: m.to, partitions: msg.parts!.length / 5 });
      }
    });
    const healedAt = clock.now();
    await runUntil(clock, () => behind().length === 0, 5 * antiEntropyDefaults.intervalMs, `node 3 caught up: ${behind().length} partitions behind`);
    offCount();
    expect(clock.now() - healedAt).toBeLessThanOrEqual(3 * antiEntropyDefaults.intervalMs);
    expect(digests.length).toBeGreaterThan(0);
    const perPeriod = new Map<string, number>();
    for (const d of digests) {
      const key = `${Math.floor(d.at / antiEntropyDefaults.intervalMs)}:${d.from}->${d.to}`;
      perPeriod.set(key, (perPeriod.get(key) ?? 0) + 1);
      expect(d.partitions).toBeLessThanOrEqual(antiEntropyDefaults.maxPerDigest);
    }
    expect(Math.max(...perPeriod.values())).toBe(1);
  });

  it('without digests (interval 0) and without resends, the replica stays behind: the test above is about digests', async () => {
    const clock = new SimulatedClock(0);
    const net = new MemoryNetwork({ clock, latency: 1, seed: 3 });
    const { byId, table } = await cluster(clock, net, 0);
    const primary = byId.get(1)!;
    const keys = Array.from({ length: 100 }, (_, i) => `ae-${i}`).filter((k) => table.primaryOf(partitionOf(k)) === 1);
    let cut = true;
    net.intercept((m) => (cut && m.to === addressOf(3) && Array.isArray(m.payload) && m.payload[0] === R_REPL ? 'drop' : undefined));
    for (const key of keys) {
      const { epoch } = await settle(clock, primary.read('counter', key));
      await settle(clock, primary.write({ kind: 'counter', key, events: [{ seq: 1, v: 1, event: { by: 1 } }], replies: [], ...(epoch && { epoch }) }));
    }
    cut = false;
    // Three digest periods' worth of simulated time, as long as the test above needed at most.
    for (let i = 0; i < 3 * antiEntropyDefaults.intervalMs; i++) {
      clock.advance(1);
      if (i % 50 === 0) await turn();
    }
    await turn();
    const want = ends(primary);
    const lagging = [...want].filter(([p, end]) => (ends(byId.get(3)!).get(p) ?? 0) < end);
    expect(lagging.length).toBeGreaterThan(10);
  });
});

describe('anti-entropy, pure parts', () => {
  const held = (p: number, members: number[], end = 10): HeldPartition => ({ p, epoch: { term: 2, node: 1 }, end, commit: end, members });

  it('digestsFor: each peer gets the partitions it shares, at most max, from the cursor on (wrapping)', () => {
    const all = [held(5, [1, 2, 3]), held(1, [1, 2]), held(9, [1, 3]), held(7, [1, 2, 3])];
    const d = digestsFor(all, 1, 0, 10);
    expect(d.get(2)!.map((x) => x.p)).toEqual([1, 5, 7]);
    expect(d.get(3)!.map((x) => x.p)).toEqual([5, 7, 9]);
    expect(d.has(1)).toBe(false);
    expect(digestsFor(all, 1, 6, 2).get(2)!.map((x) => x.p)).toEqual([7, 1]);
  });

  const E2 = { term: 2, node: 1 };
  const cases: Array<{ name: string; last: { epoch: typeof E2; seq: number }; promised: typeof E2; from: number; behind: boolean }> = [
    { name: 'in step', last: { epoch: E2, seq: 10 }, promised: E2, from: 1, behind: false },
    { name: 'short of the end', last: { epoch: E2, seq: 7 }, promised: E2, from: 1, behind: true },
    { name: 'at the end, but an older epoch there (a divergent tail)', last: { epoch: { term: 1, node: 3 }, seq: 10 }, promised: E2, from: 1, behind: true },
    { name: 'promised a later epoch (this primary is deposed)', last: { epoch: E2, seq: 7 }, promised: { term: 3, node: 2 }, from: 1, behind: false },
    { name: 'the digest is not from the epoch’s primary', last: { epoch: E2, seq: 7 }, promised: E2, from: 2, behind: false },
  ];
  for (const c of cases) {
    it(`isBehind: ${c.name} → ${c.behind}`, () => {
      expect(isBehind(c.last, c.promised, { p: 4, epoch: E2, end: 10, commit: 9 }, c.from)).toBe(c.behind);
    });
  }

  // A primary that only serves reads sends no Append to be refused: the digest is where it hears
  // that it was deposed (5-node simulator seed 3067 served stale reads after the heal without this).
  const refutes: Array<{ name: string; promised: Epoch | undefined; from: number; refuted: boolean }> = [
    { name: 'this node promised a later epoch than the digest’s primary', promised: { term: 3, node: 2 }, from: 1, refuted: true },
    { name: 'the same epoch', promised: E2, from: 1, refuted: false },
    { name: 'an earlier epoch (the digest’s primary is newer)', promised: { term: 1, node: 3 }, from: 1, refuted: false },
    { name: 'a later promise, but the digest is not from the epoch’s primary', promised: { term: 3, node: 2 }, from: 2, refuted: false },
    { name: 'no copy of the partition here', promised: undefined, from: 1, refuted: false },
  ];
  for (const c of refutes) {
    it(`a digest's sender is told it was deposed: ${c.name} → ${c.refuted ? 'stale' : 'nothing'}`, () => {
      const told: unknown[] = [];
      const pulls: unknown[] = [];
      const ae = new AntiEntropy(
        {
          self: 3,
          held: () => [],
          replicaOf: () => (c.promised ? { last: { epoch: E2, seq: 10 }, promised: c.promised, commit: 9 } : undefined),
          sendDigest: () => {},
          pull: (...a) => void pulls.push(a),
          promisedOf: () => c.promised,
          refute: (p, to, epoch, promised) => void told.push({ p, to, epoch, promised }),
          commitFrom: () => void pulls.push('commit'),
        },
        new SimulatedClock(),
        0,
      );
      ae.received(c.from, encodeDigest([{ p: 4, epoch: E2, end: 10, commit: 9 }]));
      expect(told).toEqual(c.refuted ? [{ p: 4, to: 1, epoch: E2, promised: c.promised }] : []);
      expect(ae.counters.refuted).toBe(c.refuted ? 1 : 0);
      expect(pulls).toEqual([]);
    });
  }

  // A replica in step learns the commit point of the last entries only from the next append: when
  // the load stops there is none, so it takes it from the digest (an empty append, the usual checks).
  const commits: Array<{ name: string; last: { epoch: typeof E2; seq: number }; commit: number; from: number; taken: boolean }> = [
    { name: 'in step, behind the commit point', last: { epoch: E2, seq: 10 }, commit: 7, from: 1, taken: true },
    { name: 'in step, at the commit point', last: { epoch: E2, seq: 10 }, commit: 9, from: 1, taken: false },
    { name: 'behind the log end (a pull instead, later)', last: { epoch: E2, seq: 8 }, commit: 7, from: 1, taken: false },
    { name: 'at the end in another epoch (a divergent tail)', last: { epoch: { term: 1, node: 3 }, seq: 10 }, commit: 7, from: 1, taken: false },
    { name: 'not from the epoch’s primary', last: { epoch: E2, seq: 10 }, commit: 7, from: 2, taken: false },
  ];
  for (const c of commits) {
    it(`a digest's commit point: ${c.name} → ${c.taken ? 'taken' : 'not taken'}`, () => {
      const taken: unknown[] = [];
      const ae = new AntiEntropy(
        {
          self: 3,
          held: () => [],
          replicaOf: () => ({ last: c.last, promised: E2, commit: c.commit }),
          sendDigest: () => {},
          pull: () => {},
          promisedOf: () => E2,
          refute: () => {},
          commitFrom: (p, from, d) => void taken.push({ p, from, commit: d.commit }),
        },
        new SimulatedClock(),
        0,
      );
      ae.received(c.from, encodeDigest([{ p: 4, epoch: E2, end: 10, commit: 9 }]));
      expect(taken).toEqual(c.taken ? [{ p: 4, from: 1, commit: 9 }] : []);
    });
  }

  it('a digest survives the wire check, and malformed ones are refused', () => {
    const msg = encodeDigest([{ p: 3, epoch: E2, end: 10, commit: 9 }]);
    expect(decodeDigest(parseWireMessage(msg, 1024) as typeof msg)).toEqual([{ p: 3, epoch: E2, end: 10, commit: 9 }]);
    for (const bad of [{ type: 'digest' }, { type: 'digest', parts: [1, 2, 3] }, { type: 'digest', parts: [2000, 1, 1, 1, 1] }, { type: 'digest', parts: [1, -1, 1, 1, 1] }]) {
      expect(parseWireMessage(bad, 1024), JSON.stringify(bad)).toBeUndefined();
    }
  });
});
