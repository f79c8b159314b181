import type { ActorInspection, SlotTop } from '../actors/actor-host.ts';
import type { MessageRouter } from '../actors/actor-ref.ts';
import type { SystemOp } from '../actors/envelope.ts';
import type { LocalActors as RoutedActors } from '../cluster/cluster-router.ts';
import { HashRing, type RingMember } from '../cluster/ring.ts';
import { invalidOption } from '../core/errors.ts';
import { PartitionTable, partitionOf } from '../replication/partition-table.ts';

/** What a node's local actors announce: a thread re-hosted or ready, an actor or slot past its restart intensity. */
export type LocalActorsEvent = 'escalated' | 'worker-ready' | 'worker-exit' | 'push';

/**
 * A node's own actors, as `TroupeNode` and `ClusterRouter` use them: keys placed on slots
 * (`slotOf`), asks with deadlines, ownership from the ring. Two implementations: `Supervisor`
 * (one worker thread per slot, the default) and `InProcessActors` (every slot's host in the
 * calling thread, driven by the injected clock: deterministic node tests on a
 * `SimulatedClock`).
 *
 * @example
 *   const actors: LocalActors = new InProcessActors({ registry, journal: { type: 'memory' }, clock, log, node: 1 });
 *   await actors.start();
 *   await actors.ask('counter', 'k1', { command: 'incr' });
 *   await actors.stop();
 */
export interface LocalActors extends MessageRouter, RoutedActors {
  /** Slots: worker threads, or hosts in this thread. */
  readonly workers: number;
  start(): Promise<void>;
  /** Refuses new work, waits for journal writes in flight, fails what is still pending with ERR_STOPPED. */
  stop(): Promise<void>;
  /** The slot that hosts `key` (jump hash of the key alone). */
  slotOf(key: string): number;
  /** New ring: slots keep same-node traffic local only for keys this node owns. */
  placement(members: readonly RingMember[], selfId: number): void;
  /**
   * Replication: this node's copies of these partitions (of `count`) changed hands, so resident
   * actors of them may hold stale state; each slot drops its idle ones and reloads the busy ones.
   */
  reloadPartitions(partitions: readonly number[], count: number): void;
  /**
   * Activates these actors of `kind` now, without a message (each in its slot; resident ones
   * stay as they are): kinds defined with `remember: true`, when this node becomes the primary
   * of their partition. Fire and forget; an activation the journal refuses is dropped.
   */
  activate(kind: string, keys: readonly string[]): void;
  /** One record per slot (the actor host's stats and the journal it runs with), for GET /stats. */
  stats(): Promise<unknown[]>;
  /** Thread id hosting each slot (all the same for in-process actors). */
  threadIds(): number[];
  /** Admin `inspect`: the actor in its slot, read-only (a passive one is read from the journal, not activated). */
  inspect(kind: string, key: string): Promise<ActorInspection>;
  /** Admin `restart` / `passivate`: queues the system message for a resident actor; false when it is not resident. */
  steer(kind: string, key: string, op: SystemOp): Promise<boolean>;
  /** Admin `actors top`: each slot's busiest and largest actors (bounded work per slot). */
  top(n: number): Promise<SlotTop[]>;
  on(event: LocalActorsEvent, listener: (...args: any[]) => void): this; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/**
 * The ownership rule every slot applies when the ring changes: a key is this node's when the
 * ring places the key's partition on `selfId` first; with no members (not joined yet) nothing is.
 */
export function ownershipOf(members: readonly RingMember[], selfId: number): (key: string) => boolean {
  if (members.length === 0) return () => false;
  const table = new PartitionTable(new HashRing(members));
  return (key) => table.primaryOf(partitionOf(key, table.partitions)) === selfId;
}

/** The slot count both implementations take: `options.workers`, or `fallback` when unset. */
export function workerCount(workers: number | undefined, fallback: number): number {
  const n = workers ?? fallback;
  if (!Number.isInteger(n) || n < 1 || n > 256) throw invalidOption('options.workers', 'must be an integer in [1, 256]', workers);
  return n;
}
