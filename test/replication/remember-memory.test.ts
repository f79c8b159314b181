/**
 * `remember: true` across a failover, in-process (sim-cluster.ts: three whole nodes, R=3, W=2,
 * one simulated clock): `ticker` (remembered) and `counter` (not) keys are written, their primary
 * is killed, and — with no message sent to any of them afterwards — the survivors that now lead
 * the victim's partitions activate every ticker there (the hosts' resident counts by kind), and
 * no counter. Also: a kind's keys listed per partition set by both stores, and the eager work
 * paged per turn.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defineActor } from '../../src/actors/define-actor.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { RememberedActors } from '../../src/node/remembered-actors.ts';
import type { TroupeNode } from '../../src/node/troupe-node.ts';
import { LmdbPartitionStore } from '../../src/replication/lmdb-partition-store.ts';
import { MemoryPartitionStore } from '../../src/replication/memory-partition-store.ts';
import type { PartitionStore } from '../../src/replication/partition-store.ts';
import { partitionOf } from '../../src/replication/partition-table.ts';
import { SimNodeCluster } from './sim-cluster.ts';

const fixtures = new URL('../fixtures/remembered-actors.ts', import.meta.url).href;
const KEYS = Array.from({ length: 40 }, (_, i) => `r-${i}`);

let cluster: SimNodeCluster | undefined;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
  for (const f of cleanups.splice(0)) await f();
});

/** Resident actors of `kind` over every slot of node `n`. */
async function resident(n: TroupeNode, kind: string): Promise<number> {
  const stats = (await n.actors.stats()) as Array<{ byKind: Record<string, number> }>;
  return stats.reduce((sum, s) => sum + (s.byKind[kind] ?? 0), 0);
}

describe('remember: true', () => {
  it('a failover activates the remembered actors of the dead primary’s partitions without any message; other kinds stay passive', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 5, modules: [fixtures] }));
    const owner = new Map(KEYS.map((k) => [k, c.ownerOf(k, 1)]));
    const victim = 2;
    const moved = KEYS.filter((k) => owner.get(k) === victim);
    expect(moved.length).toBeGreaterThan(5);
    for (const k of KEYS) {
      await c.settle(c.ask(1, 'ticker', k, 'incr', 2_000));
      await c.settle(c.ask(1, 'counter', k, 'incr', 2_000));
    }
    const survivors = [1, 3];
    // Replicas hold the data but activate nothing: only the primary hosts an actor.
    const before = new Map<number, { ticker: number; counter: number }>();
    for (const s of survivors) before.set(s, { ticker: await resident(c.node(s), 'ticker'), counter: await resident(c.node(s), 'counter') });

    c.kill(victim);
    await c.untilDown(victim, survivors);
    // Who leads each moved key now, as the survivors' rings propose.
    const heir = new Map(moved.map((k) => [k, c.ownerOf(k, 1)]));
    const expected = new Map(survivors.map((s) => [s, before.get(s)!.ticker + moved.filter((k) => heir.get(k) === s).length]));
    let seen = new Map<number, number>();
    await c.runUntil(
      () => {
        // stats() of in-process actors resolves at once: read it between steps.
        void Promise.all(survivors.map(async (s) => [s, await resident(c.node(s), 'ticker')] as const)).then((r) => (seen = new Map(r)));
        return survivors.every((s) => seen.get(s) === expected.get(s));
      },
      3_000,
      `remembered tickers activated: want ${JSON.stringify([...expected])}`,
    );
    for (const s of survivors) expect(await resident(c.node(s), 'counter'), `counters resident on node ${s}`).toBe(before.get(s)!.counter);
    // They came back with their state: a read finds each ticker's count.
    for (const k of moved) expect(await c.settle(c.ask(1, 'ticker', k, 'get', 2_000))).toEqual({ n: 1 });
  });
});

describe('PartitionStore.actorKeys', () => {
  const stores: Array<{ name: string; make(): PartitionStore }> = [
    { name: 'MemoryPartitionStore', make: () => new MemoryPartitionStore() },
    {
      name: 'LmdbPartitionStore',
      make() {
        const path = mkdtempSync(join(tmpdir(), 'troupe-remember-'));
        const store = new LmdbPartitionStore({ path, durability: 'commit' });
        cleanups.push(async () => {
          await store.close();
          rmSync(path, { recursive: true, force: true });
        });
        return store;
      },
    },
  ];
  for (const subject of stores) {
    it(`${subject.name}: lists one kind's keys in a set of partitions, ascending, paged`, async () => {
      const store = subject.make();
      const keys = Array.from({ length: 30 }, (_, i) => `a-${String(i).padStart(2, '0')}`);
      const writes = keys.flatMap((key) => [
        { kind: 'ticker', key, events: [{ seq: 1, v: 1, event: { by: 1 } }], replies: [] },
        { kind: 'counter', key, events: [{ seq: 1, v: 1, event: { by: 1 } }], replies: [] },
      ]);
      const errors = await store.actors.writeMany!(writes);
      expect(errors.every((e) => e === null)).toBe(true);
      const ps = new Set(keys.slice(0, 12).map((k) => partitionOf(k, store.partitions)));
      const want = keys.filter((k) => ps.has(partitionOf(k, store.partitions))).sort();
      expect(await store.actorKeys('ticker', ps, undefined, 1_000)).toEqual(want);
      const page1 = await store.actorKeys('ticker', ps, undefined, 5);
      const page2 = await store.actorKeys('ticker', ps, page1[page1.length - 1], 1_000);
      expect([...page1, ...page2]).toEqual(want);
      expect(await store.actorKeys('other', ps, undefined, 10)).toEqual([]);
      for (const [args, what] of [
        [['', ps, undefined, 1], /kind/],
        [['ticker', [1], undefined, 1], /ps must be a Set/],
        [['ticker', ps, undefined, 0], /limit/],
      ] as const) {
        const e = await (store.actorKeys as (...a: unknown[]) => Promise<string[]>).apply(store, args as unknown as unknown[]).catch((x: unknown) => x);
        expect(isTroupeError(e, 'ERR_JOURNAL_READ'), String(e)).toBe(true);
        expect((e as Error).message).toMatch(what);
      }
    });
  }
});

describe('RememberedActors', () => {
  it('activates a page of keys per turn, every key once, kind by kind', async () => {
    const clock = new SimulatedClock(0);
    const all = Array.from({ length: 1_000 }, (_, i) => `k${String(i).padStart(4, '0')}`);
    const store = {
      actorKeys: (kind: string, _ps: ReadonlySet<number>, after: string | undefined, limit: number) =>
        Promise.resolve(kind === 'ticker' ? all.filter((k) => after === undefined || k > after).slice(0, limit) : []),
    };
    const turns: number[] = [0];
    const activated: string[] = [];
    const r = new RememberedActors({
      store,
      actors: { activate: (_kind, keys) => (activated.push(...keys), (turns[turns.length - 1]! += keys.length)) },
      kinds: ['ticker', 'other'],
      clock,
      log: silentLogger,
      pageKeys: 100,
    });
    r.established([1, 2]);
    for (let i = 0; i < 20 && activated.length < all.length; i++) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      turns.push(0);
      clock.advance(0);
    }
    expect(activated).toEqual(all);
    expect(Math.max(...turns)).toBeLessThanOrEqual(100);
    expect(r.activated).toBe(1_000);
  });

  it('defineActor refuses a remember that is not a boolean, naming it', () => {
    expect(() => defineActor({ kind: 'x', initial: () => 0, apply: (s: number) => s, commands: {}, remember: 'yes' as unknown as boolean })).toThrow(
      /x\.remember must be a boolean/,
    );
  });
});
