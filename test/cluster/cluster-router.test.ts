/**
 * ClusterRouter over the in-memory network, with rings that disagree on purpose. Each node's
 * membership is a driver that is never started: its table is exactly what the test gives it, so
 * "node 2 believes node 3 owns the key" holds for as long as the test needs it to.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { AnyMessage } from '../../src/actors/define-actor.ts';
import { ClusterRouter, type LocalActors } from '../../src/cluster/cluster-router.ts';
import { MembershipDriver } from '../../src/cluster/membership-driver.ts';
import { MemoryNetwork } from '../../src/cluster/memory-network.ts';
import { MAX_HOPS, R_ASK, R_TELL } from '../../src/cluster/remote-protocol.ts';
import { HashRing } from '../../src/cluster/ring.ts';
import { troupeError } from '../../src/core/errors.ts';
import { PartitionTable, partitionOf } from '../../src/replication/partition-table.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import type { Logger } from '../../src/core/logger.ts';

const addressOf = (id: number) => `mem:${id}`;

/** A node's own actors: records what reached it, answers asks with who served them. */
class RecordingActors implements LocalActors {
  readonly asks: string[] = [];
  readonly tells: string[] = [];
  /** Asks to refuse with ERR_NOT_PRIMARY (nothing applied) before serving, as a fencing partition does. */
  refuseNotPrimary = 0;
  /** The code those refusals carry (ERR_NOT_OWNER: a node whose ring disagrees, at the hop limit). */
  refuseCode: 'ERR_NOT_PRIMARY' | 'ERR_NOT_OWNER' = 'ERR_NOT_PRIMARY';
  constructor(private readonly id: number) {}
  askRaw(kind: string, key: string, command: string): Promise<unknown> {
    this.asks.push(`${kind}/${key}/${command}`);
    if (this.refuseNotPrimary > 0) {
      this.refuseNotPrimary--;
      return Promise.reject(troupeError(this.refuseCode, `node ${this.id} is not the primary yet`));
    }
    return Promise.resolve({ servedBy: this.id });
  }
  tell(kind: string, key: string, message: AnyMessage): void {
    this.tells.push(`${kind}/${key}/${message.command}`);
  }
}

interface TestNode {
  id: number;
  router: ClusterRouter;
  local: RecordingActors;
  warnings: string[];
}

class RouterWorld {
  readonly clock = new SimulatedClock(0);
  readonly network = new MemoryNetwork({ clock: this.clock, latency: 1 });
  readonly nodes = new Map<number, TestNode>();

  /** Node `id` whose ring holds itself and `believes` (all alive as far as it knows). */
  add(id: number, believes: number[]): TestNode {
    const transport = this.network.transport({ id, incarnation: 1, address: addressOf(id) });
    const membership = new MembershipDriver({
      transport,
      clock: this.clock,
      members: believes.map((m) => ({ id: m, address: addressOf(m) })),
    });
    const warnings: string[] = [];
    const log = { info: () => undefined, warn: (_o: unknown, msg: string) => warnings.push(msg) } as unknown as Logger;
    const local = new RecordingActors(id);
    const router = new ClusterRouter({ transport, membership, local, clock: this.clock, log, defaultAskTimeoutMs: 1_000 });
    const node = { id, router, local, warnings };
    this.nodes.set(id, node);
    return node;
  }

  node(id: number): TestNode {
    return this.nodes.get(id)!;
  }

  /** Advance 1 ms at a time (letting promise callbacks run) until `p` settles; fails after `maxMs`. */
  async settle<T>(p: Promise<T>, maxMs = 10_000): Promise<{ ok: true; value: T; at: number } | { ok: false; error: unknown; at: number }> {
    let outcome: { ok: true; value: T; at: number } | { ok: false; error: unknown; at: number } | undefined;
    p.then(
      (value) => (outcome = { ok: true, value, at: this.clock.now() }),
      (error: unknown) => (outcome = { ok: false, error, at: this.clock.now() }),
    );
    const end = this.clock.now() + maxMs;
    while (outcome === undefined && this.clock.now() < end) {
      this.clock.advance(1);
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
    if (outcome === undefined) throw new Error(`did not settle within ${maxMs} simulated ms`);
    return outcome;
  }

  stop(): void {
    for (const n of this.nodes.values()) n.router.stop();
  }
}

const ring = (...ids: number[]) => new HashRing(ids.map((id) => ({ id, address: addressOf(id) })));
/** Who a ring gives a key to: the primary of the key's partition (the router's rule). */
const ownerIn = (r: HashRing, key: string) => new PartitionTable(r).primaryOf(partitionOf(key));

/**
 * A key that each two-node ring below gives to its second node: {1,2} → 2, {2,3} → 3,
 * {3,4} → 4, {4,5} → 5. So node 1 sends to 2, 2 forwards to 3, 3 forwards to 4, and 4 (which
 * believes node 5 owns it) is the hop past the limit. (Consistent hashing is transitive, so the
 * chain cannot loop back to node 1: a fifth node is needed, and it never has to exist.)
 */
function chainKey(): string {
  const rings: [HashRing, number][] = [
    [ring(1, 2), 2],
    [ring(2, 3), 3],
    [ring(3, 4), 4],
    [ring(4, 5), 5],
  ];
  for (let i = 0; i < 10_000; i++) {
    const key = `chain-${i}`;
    if (rings.every(([r, owner]) => ownerIn(r, key) === owner)) return key;
  }
  throw new Error('no chain key found');
}

let world: RouterWorld;
afterEach(() => world?.stop());

describe('ClusterRouter: ERR_NOT_PRIMARY and ERR_NOT_OWNER', () => {
  it.each(['ERR_NOT_PRIMARY', 'ERR_NOT_OWNER'] as const)('%s is resent (nothing was applied) until the primary serves it, within the ask deadline', async (code) => {
    world = new RouterWorld();
    world.add(1, [2]);
    world.add(2, [1]);
    const key = Array.from({ length: 100 }, (_, i) => `np-${i}`).find((k) => world.node(1).router.ownerOf(k).id === 2)!;
    world.node(2).local.refuseCode = code;
    world.node(2).local.refuseNotPrimary = 3;
    const r = await world.settle(world.node(1).router.ask('counter', key, { command: 'get' }));
    expect(r).toMatchObject({ ok: true, value: { servedBy: 2 } });
    expect(world.node(2).local.asks).toHaveLength(4);
    // Past the deadline the refusal reaches the caller, named.
    world.node(2).local.refuseNotPrimary = 1_000;
    const late = await world.settle(world.node(1).router.ask('counter', key, { command: 'get' }, { timeoutMs: 200 }));
    expect(late).toMatchObject({ ok: false, error: { code } });
  });
});

describe('ClusterRouter: a duplicated or replayed ask frame', () => {
  it('is served once: the copy is dropped and counted, the reply answers the sender once (chaos scenario 8)', async () => {
    world = new RouterWorld();
    world.add(1, [2]);
    world.add(2, [1]);
    const keys = Array.from({ length: 200 }, (_, i) => `dup-${i}`).filter((k) => world.node(1).router.ownerOf(k).id === 2).slice(0, 5);
    // Every ask from node 1 to node 2 arrives twice, and the second of each pair may overtake
    // later ones (reordered): the network duplicates, the router must not serve it twice.
    const off = world.network.intercept((m) => (m.from.id === 1 && Array.isArray(m.payload) && m.payload[0] === R_ASK ? 'duplicate' : undefined));
    for (const k of keys) expect(await world.settle(world.node(1).router.ask('counter', k, { command: 'incr' }))).toMatchObject({ ok: true, value: { servedBy: 2 } });
    off();
    expect(world.node(2).local.asks).toEqual(keys.map((k) => `counter/${k}/incr`));
    expect(world.node(2).router.stats()).toMatchObject({ duplicateAsks: keys.length, servedRemote: keys.length });
    expect(world.node(2).warnings).toContain('a second copy of a forwarded ask dropped');
  });

  it('a duplicated tell frame is delivered once (tells carry a sendId from the same counter)', async () => {
    world = new RouterWorld();
    world.add(1, [2]);
    world.add(2, [1]);
    const keys = Array.from({ length: 200 }, (_, i) => `tdup-${i}`).filter((k) => world.node(1).router.ownerOf(k).id === 2).slice(0, 5);
    const off = world.network.intercept((m) => (m.from.id === 1 && Array.isArray(m.payload) && m.payload[0] === R_TELL ? 'duplicate' : undefined));
    for (const k of keys) world.node(1).router.tell('counter', k, { command: 'incr' });
    await world.settle(new Promise<void>((r) => world.clock.setTimeout(() => r(), 20)));
    off();
    expect(world.node(2).local.tells).toEqual(keys.map((k) => `counter/${k}/incr`));
    expect(world.node(2).router.stats()).toMatchObject({ duplicateAsks: keys.length });
  });

  it('from a restarted sender (a new incarnation), the same ids are new again', async () => {
    world = new RouterWorld();
    world.add(2, [1]);
    const key = Array.from({ length: 200 }, (_, i) => `re-${i}`).find((k) => world.node(2).router.ownerOf(k).id === 2)!;
    for (const incarnation of [1, 2]) {
      const t = world.network.transport({ id: 1, incarnation, address: addressOf(1) });
      t.send(addressOf(2), [R_ASK, 1, 'counter', key, 'incr', null, null, 1_000, 0], 'actor');
      await world.settle(new Promise<void>((r) => world.clock.setTimeout(() => r(), 10)));
      t.close?.();
    }
    expect(world.node(2).local.asks).toHaveLength(2);
  });
});

describe('ClusterRouter: rings that disagree', () => {
  const key = chainKey();

  it('a node whose ring disagrees forwards the ask to the owner it sees, and the reply comes back', async () => {
    world = new RouterWorld();
    world.add(1, [2]);
    world.add(2, [3]); // disagrees with node 1: forwards
    world.add(3, []); // sees only itself: owns every key
    const r = await world.settle(world.node(1).router.ask('counter', key, { command: 'get' }));
    expect(r).toMatchObject({ ok: true, value: { servedBy: 3 } });
    expect(world.node(1).local.asks).toEqual([]);
    expect(world.node(2).local.asks).toEqual([]); // forwarded, never served a second copy
    expect(world.node(3).local.asks).toEqual([`counter/${key}/get`]);
    expect(world.node(2).router.stats().forwarded).toBe(1);
    expect(world.node(3).router.stats().servedRemote).toBe(1);
  });

  it(`a request past ${MAX_HOPS} forwards gets ERR_NOT_OWNER from the node that would forward a third time`, async () => {
    expect(MAX_HOPS).toBe(2);
    world = new RouterWorld();
    world.add(1, [2]);
    world.add(2, [3]); // hop 1
    world.add(3, [4]); // hop 2
    world.add(4, [5]); // would be hop 3: refuses
    const r = await world.settle(world.node(1).router.ask('counter', key, { command: 'get' }));
    expect(r.ok).toBe(false);
    const error = (r as { error: unknown }).error;
    expect(isTroupeError(error, 'ERR_NOT_OWNER'), String(error)).toBe(true);
    expect((error as Error).message).toContain('node 4 does not own');
    for (const id of [1, 2, 3, 4]) expect(world.node(id).local.asks, `node ${id} served it`).toEqual([]);
    // Nothing was applied, so the asker resent it until its deadline (the rings might have agreed
    // by then): every attempt went one forward per hop, and none further.
    const forwarded = [1, 2, 3, 4].map((id) => world.node(id).router.stats().forwarded);
    expect([forwarded[0], forwarded[3]]).toEqual([0, 0]);
    expect(forwarded[1]).toBe(forwarded[2]);
    expect(forwarded[1]).toBeGreaterThanOrEqual(1);
    // Every hop's pending ask was answered: nothing waits for its deadline.
    for (const id of [1, 2, 3, 4]) expect(world.node(id).router.stats().pendingRemote).toBe(0);
  });
});

describe('ClusterRouter: an owner that cannot be reached', () => {
  it('an ask fails with ERR_NODE_UNREACHABLE as soon as the transport reports it, well within its deadline', async () => {
    world = new RouterWorld();
    world.add(1, [2]);
    world.add(2, []);
    const key = ownedBy(ring(1, 2), 2);
    world.network.kill(addressOf(2)); // dead, but node 1's membership has not noticed yet
    const timeoutMs = 1_000;
    const sentAt = world.clock.now();
    const r = await world.settle(world.node(1).router.ask('counter', key, { command: 'get' }, { timeoutMs }));
    expect(r.ok).toBe(false);
    const error = (r as { error: unknown }).error;
    expect(isTroupeError(error, 'ERR_NODE_UNREACHABLE'), String(error)).toBe(true);
    expect((error as Error).message).toContain('node 2 at mem:2 is unreachable');
    expect(r.at - sentAt).toBeLessThan(timeoutMs);
    expect(world.node(1).router.stats().pendingRemote).toBe(0);
  });

  it('a tell to an unreachable owner is counted as a dead letter and logged, not dropped silently', async () => {
    world = new RouterWorld();
    world.add(1, [2]);
    world.add(2, []);
    const key = ownedBy(ring(1, 2), 2);
    world.network.kill(addressOf(2));
    world.node(1).router.tell('counter', key, { command: 'incr', input: { by: 1 } });
    expect(world.node(1).router.stats().deadLetters).toBe(0); // not yet: the transport decides
    await world.settle(new Promise((r) => world.clock.setTimeout(() => r(undefined), 10)));
    expect(world.node(1).router.stats().deadLetters).toBe(1);
    expect(world.node(1).warnings).toEqual([expect.stringContaining('dead letter')]);
    expect(world.node(1).local.tells).toEqual([]);
  });
});

function ownedBy(r: HashRing, owner: number): string {
  for (let i = 0; ; i++) if (ownerIn(r, `k-${i}`) === owner) return `k-${i}`;
}
