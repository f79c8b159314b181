/**
 * A rerouted ask goes out under a new request id (ClusterRouter.reroute), so a node it visited
 * before (A → B → A) does not take it for a copy: the receiver's replay window
 * (replay-window.ts, ClusterRouter.firstCopy) drops only a genuine second copy of one frame.
 *
 * How the path is driven: reroute() runs when the asker's ring drops the ask's target (a member
 * goes down; only for an ask safe to resend: a message id, or a read-only command) or when the
 * transport reports a frame undeliverable after the owner changed. ERR_NOT_PRIMARY does not go
 * through reroute() (askRaw sends a fresh ask). So node 1's membership (a driver that is never
 * started) is told by gossip, step by step, that
 *
 *   ring {1,2,3}, owner 2 ── 2 down ──► {1,3}, owner 3 ── 2 back (refuted), 3 down ──► {1,2}, owner 2
 *
 * while node 2's replies to node 1 are lost and node 3 cannot be reached (a partition, scripted
 * with an interceptor). Node 2 therefore holds the first id in its window when the ask comes
 * back: with the old id it would be dropped as a copy and the ask would end in ERR_ASK_TIMEOUT.
 * Node 2's actors answer a message id they served before from the recorded reply, as
 * actor-host.ts does, so "applied" and "delivered" are counted apart.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { AnyMessage } from '../../src/actors/define-actor.ts';
import { ClusterRouter, type LocalActors } from '../../src/cluster/cluster-router.ts';
import { MembershipDriver } from '../../src/cluster/membership-driver.ts';
import type { MemberStatus } from '../../src/cluster/membership.ts';
import { MemoryNetwork, type InFlight } from '../../src/cluster/memory-network.ts';
import { R_ASK, R_REPLY } from '../../src/cluster/remote-protocol.ts';
import { HashRing } from '../../src/cluster/ring.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import type { Logger } from '../../src/core/logger.ts';
import { PartitionTable, partitionOf } from '../../src/replication/partition-table.ts';

const addressOf = (id: number) => `mem:${id}`;
const READ_ONLY = new Set(['get']);

/** A node's actors: every delivery is recorded; a message id already served answers from its recorded reply. */
class IdempotentActors implements LocalActors {
  readonly deliveries: { command: string; msgId: string | undefined }[] = [];
  applied = 0;
  private readonly replies = new Map<string, unknown>();
  constructor(private readonly id: number) {}
  askRaw(_kind: string, _key: string, command: string, _input: unknown, msgId: string | undefined): Promise<unknown> {
    this.deliveries.push({ command, msgId });
    if (msgId !== undefined && this.replies.has(msgId)) return Promise.resolve(this.replies.get(msgId));
    if (!READ_ONLY.has(command)) this.applied++;
    const reply = { servedBy: this.id, applied: this.applied };
    if (msgId !== undefined) this.replies.set(msgId, reply);
    return Promise.resolve(reply);
  }
  tell(_kind: string, _key: string, _message: AnyMessage): void {}
}

interface TestNode {
  router: ClusterRouter;
  membership: MembershipDriver;
  local: IdempotentActors;
}

class World {
  readonly clock = new SimulatedClock(0);
  readonly network = new MemoryNetwork({ clock: this.clock, latency: 1 });
  readonly nodes = new Map<number, TestNode>();

  /** Node `id` whose membership table holds itself and `believes`, all alive. */
  add(id: number, believes: number[]): TestNode {
    const transport = this.network.transport({ id, incarnation: 1, address: addressOf(id) });
    const membership = new MembershipDriver({ transport, clock: this.clock, members: believes.map((m) => ({ id: m, address: addressOf(m) })) });
    const log = { info: () => undefined, warn: () => undefined } as unknown as Logger;
    const local = new IdempotentActors(id);
    const router = new ClusterRouter({
      transport,
      membership,
      local,
      clock: this.clock,
      log,
      defaultAskTimeoutMs: 1_000,
      isReadOnly: (_kind, command) => READ_ONLY.has(command),
    });
    const node = { router, membership, local };
    this.nodes.set(id, node);
    return node;
  }

  node(id: number): TestNode {
    return this.nodes.get(id)!;
  }

  /** What `to`'s membership hears by gossip about member `id` (as if from a peer it does not track). */
  tell(to: number, id: number, status: MemberStatus, incarnation: number): void {
    const update = { id, address: addressOf(id), incarnation, status };
    this.node(to).membership.receive({ id: 99, address: addressOf(99) }, { proto: 'swim', type: 'gossip', updates: [update] });
  }

  /** Advance `ms` simulated ms, 1 ms at a time, letting promise callbacks run. */
  async run(ms: number): Promise<void> {
    for (let i = 0; i < ms; i++) {
      this.clock.advance(1);
      for (let j = 0; j < 5; j++) await Promise.resolve();
    }
  }

  /** Advance until `p` settles; fails after `maxMs`. */
  async settle<T>(p: Promise<T>, maxMs = 5_000): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    p.then(
      (value) => (outcome = { ok: true, value }),
      (error: unknown) => (outcome = { ok: false, error }),
    );
    const end = this.clock.now() + maxMs;
    while (outcome === undefined && this.clock.now() < end) await this.run(1);
    if (outcome === undefined) throw new Error(`did not settle within ${maxMs} simulated ms`);
    return outcome;
  }

  stop(): void {
    for (const n of this.nodes.values()) n.router.stop();
  }
}

const ownerIn = (ids: number[], key: string) =>
  new PartitionTable(new HashRing(ids.map((id) => ({ id, address: addressOf(id) })))).primaryOf(partitionOf(key));

/** A key whose owner is 2 in {1,2,3} and in {1,2}, and 3 in {1,3}: the path A → B → A. */
function abaKey(): string {
  for (let i = 0; i < 10_000; i++) {
    const key = `aba-${i}`;
    if (ownerIn([1, 2, 3], key) === 2 && ownerIn([1, 3], key) === 3 && ownerIn([1, 2], key) === 2) return key;
  }
  throw new Error('no A → B → A key found');
}

const isFrame = (m: InFlight, type: number, from: number, to?: number) =>
  m.from.id === from && (to === undefined || m.to === addressOf(to)) && Array.isArray(m.payload) && m.payload[0] === type;

let world: World;
afterEach(() => world?.stop());

/**
 * Drives one ask from node 1 along 2 → 3 → 2 (see the header). Returns the ask's outcome and the
 * R_ASK frames node 1 put on the wire, with their destination.
 */
async function askAlongABA(command: string, msgId: string | undefined, { duplicateAsks = false } = {}) {
  world = new World();
  const key = abaKey();
  const n1 = world.add(1, [2, 3]);
  world.add(2, [1]); // node 2 owns the key as far as it knows, throughout
  world.add(3, [1]);
  let partitioned = true;
  const sent: { reqId: number; to: string }[] = [];
  world.network.intercept((m) => {
    if (isFrame(m, R_ASK, 1)) sent.push({ reqId: (m.payload as unknown[])[1] as number, to: m.to });
    if (partitioned && (isFrame(m, R_REPLY, 2, 1) || isFrame(m, R_ASK, 1, 3))) return 'drop';
    if (duplicateAsks && isFrame(m, R_ASK, 1)) return 'duplicate';
    return undefined;
  });

  expect(n1.router.ownerOf(key).id).toBe(2);
  const asked = n1.router.ask('counter', key, msgId === undefined ? { command } : { command, id: msgId });
  await world.run(5); // node 2 served it; its reply was lost
  expect(world.node(2).local.deliveries).toHaveLength(1);
  expect(n1.router.stats().pendingRemote).toBe(1);

  world.tell(1, 2, 'down', 0); // B: rerouted to node 3, which cannot be reached
  expect(n1.router.ownerOf(key).id).toBe(3);
  await world.run(5);

  partitioned = false;
  world.tell(1, 2, 'alive', 1); // node 2 refuted its death; node 3 still holds the ask
  expect(n1.router.stats().rerouted).toBe(1);
  world.tell(1, 3, 'down', 0); // A again: rerouted back to node 2
  expect(n1.router.ownerOf(key).id).toBe(2);
  expect(n1.router.stats().rerouted).toBe(2);

  const settled = await world.settle(asked);
  // The error's code, not the error: a failure then reads "ERR_ASK_TIMEOUT" in the diff.
  const outcome = settled.ok ? settled : { ok: false, code: (settled.error as { code?: string }).code };
  return { outcome, sent, n1 };
}

describe('ClusterRouter: an ask rerouted back to a node it visited (A → B → A)', () => {
  const cases = [
    // A write is resent only with a message id; the actor answers its second delivery from the recorded reply.
    { name: 'a write with a message id', command: 'incr', msgId: 'm-1' as string | undefined, applied: 1 },
    // A read-only command is resent without one: running it twice changes nothing.
    { name: 'a read-only command without a message id', command: 'get', msgId: undefined, applied: 0 },
  ];

  it.each(cases)('$name is answered by node 2 on its return, not dropped as a copy', async ({ command, msgId, applied }) => {
    const { outcome, n1 } = await askAlongABA(command, msgId);
    expect(outcome).toMatchObject({ ok: true, value: { servedBy: 2 } });
    const n2 = world.node(2);
    // Delivered twice (the first reply was lost), applied at most once; node 3 never saw it.
    expect(n2.local.deliveries).toEqual([
      { command, msgId },
      { command, msgId },
    ]);
    expect(n2.local.applied).toBe(applied);
    expect(world.node(3).local.deliveries).toEqual([]);
    expect(n2.router.stats()).toMatchObject({ duplicateAsks: 0, servedRemote: 2 });
    expect(n1.router.stats().pendingRemote).toBe(0);
  });

  it('each transmission of the ask carries its own request id on the wire', async () => {
    const { outcome, sent } = await askAlongABA('incr', 'm-2');
    expect(sent.map((s) => s.to)).toEqual([addressOf(2), addressOf(3), addressOf(2)]);
    const [first, second, third] = sent.map((s) => s.reqId);
    expect({ second: second !== first, third: third !== first && third !== second }).toEqual({ second: true, third: true });
    expect(outcome.ok).toBe(true);
  });

  it('a genuine second copy of one R_ASK frame (same id, same sender life) is still dropped', async () => {
    // The network delivers every R_ASK from node 1 twice: node 2 gets each of its two ids twice.
    const { outcome, sent } = await askAlongABA('incr', 'm-3', { duplicateAsks: true });
    expect(outcome).toMatchObject({ ok: true, value: { servedBy: 2, applied: 1 } });
    expect(sent.filter((s) => s.to === addressOf(2))).toHaveLength(2);
    const n2 = world.node(2);
    expect(n2.local.deliveries).toHaveLength(2); // one per id, not four
    expect(n2.router.stats()).toMatchObject({ duplicateAsks: 2, servedRemote: 2 });
  });
});
