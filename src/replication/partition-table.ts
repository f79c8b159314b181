import { invalidOption } from '../core/errors.ts';
import { hash32 } from '../core/hash.ts';
import type { HashRing } from '../cluster/ring.ts';

/**
 * Keys hash into P fixed partitions; the ring places partitions, not keys. Ownership, epochs,
 * digests and truncation are per partition, so failing over a node costs one fencing round per
 * partition, not one per actor. P never changes for a cluster's data: a key's partition is part
 * of where its log lives.
 */
export const PARTITIONS = 1024;

/** The partition of a key. Stable across processes and versions (it is `hash32`). */
export function partitionOf(key: string, partitions: number = PARTITIONS): number {
  return hash32(key) % partitions;
}

/** The ring position of partition `p`: a fixed key per partition, hashed like any key. */
export function partitionKey(p: number): string {
  return `partition:${p}`;
}

/** A partition's proposed replica set: members, the proposed primary first. */
export interface PartitionPlacement {
  readonly p: number;
  readonly replicas: readonly number[];
}

export interface PartitionTableOptions {
  /** Copies of each partition (the primary counted), capped by the cluster size. Default 3. */
  replicas?: number;
  /**
   * Node id → host or zone label: replicas go to different labels where possible. Default: the
   * ring members' own `zone` labels (gossiped by membership); a node without one is a zone of its own.
   */
  zones?: ReadonlyMap<number, string>;
  partitions?: number;
}

/**
 * What membership proposes for every partition: its replica set, the first R distinct nodes
 * clockwise from the partition's position — preferring nodes whose zone no earlier replica has,
 * so a partition survives the loss of a host running several nodes. Deterministic: every node
 * with the same ring and zones computes the same table. The fence (candidate.ts) decides who
 * actually serves.
 *
 * @example
 *   const table = new PartitionTable(ring, { replicas: 3 });
 *   table.replicasOf(partitionOf('cart:42'))   // → [2, 3, 1]
 */
/**
 * A table depends only on the ring's member ids and zones, R and P; every membership change makes
 * the router, the replication driver and the node build one from the same ring (and the simulator
 * builds them for every node in one process). The latest few are kept, shared and never mutated.
 */
const TABLE_CACHE = 16;
const tables = new Map<string, ReadonlyArray<readonly number[]>>();

export class PartitionTable {
  readonly partitions: number;
  readonly replicas: number;
  private readonly sets: ReadonlyArray<readonly number[]>;

  constructor(ring: HashRing, options: PartitionTableOptions = {}) {
    const replicas = options.replicas ?? 3;
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 7)
      throw invalidOption('options.replicas', 'must be an integer in [1, 7]', replicas);
    const partitions = options.partitions ?? PARTITIONS;
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > 65_536)
      throw invalidOption('options.partitions', 'must be an integer in [1, 65536]', partitions);
    this.partitions = partitions;
    this.replicas = Math.min(replicas, ring.size);
    const zones = options.zones ?? zonesOf(ring);
    let key = `${this.replicas}/${partitions}/${ring.virtualNodes}`;
    for (const m of ring.members) key += `,${m.id}${zones?.has(m.id) ? `@${zones.get(m.id)}` : ''}`;
    const hit = tables.get(key);
    if (hit !== undefined) {
      this.sets = hit;
      return;
    }
    const sets: number[][] = [];
    for (let p = 0; p < partitions; p++) {
      if (ring.size === 0) {
        sets.push([]);
        continue;
      }
      // Clockwise order of every member from the partition's position.
      const order = ring.replicasOf(partitionKey(p), ring.size).map((m) => m.id);
      sets.push(zones === undefined ? order.slice(0, this.replicas) : spreadOverZones(order, this.replicas, zones));
    }
    this.sets = sets;
    if (tables.size >= TABLE_CACHE) tables.delete(tables.keys().next().value!);
    tables.set(key, sets);
  }

  /** Proposed replica set of partition `p`, the proposed primary first. */
  replicasOf(p: number): readonly number[] {
    return this.sets[p] ?? [];
  }

  primaryOf(p: number): number | undefined {
    return this.sets[p]?.[0];
  }

  /** Partitions whose proposed set contains `node`, and those it would lead. */
  placementOf(node: number): { primary: number[]; replica: number[] } {
    const primary: number[] = [];
    const replica: number[] = [];
    for (let p = 0; p < this.sets.length; p++) {
      const set = this.sets[p]!;
      if (set[0] === node) primary.push(p);
      else if (set.includes(node)) replica.push(p);
    }
    return { primary, replica };
  }
}

/** The ring members' zone labels, or undefined when none has one (the plain clockwise order). */
function zonesOf(ring: HashRing): ReadonlyMap<number, string> | undefined {
  let zones: Map<number, string> | undefined;
  for (const m of ring.members) if (m.zone !== undefined) (zones ??= new Map()).set(m.id, m.zone);
  return zones;
}

/** The first `r` of `order`, taking a node of an unused zone before a second node of any zone. */
function spreadOverZones(order: readonly number[], r: number, zones: ReadonlyMap<number, string>): number[] {
  const out: number[] = [];
  const used = new Set<string>();
  for (const id of order) {
    if (out.length === r) break;
    const zone = zones.get(id) ?? `node:${id}`;
    if (used.has(zone)) continue;
    used.add(zone);
    out.push(id);
  }
  for (const id of order) {
    if (out.length === r) break;
    if (!out.includes(id)) out.push(id);
  }
  return out;
}
