import { hash32 } from '../core/hash.ts';

/**
 * The client's copy of a node's `GET /cluster/table`: which node serves each partition. Keys
 * hash into partitions exactly as on the nodes (`hash32(key) % partitions`, partition-table.ts),
 * so the client computes a key's primary itself.
 *
 * ```
 *   { node: 2, url: "http://10.0.0.2:8080", epoch: 7, members: [1, 2, 3],
 *     partitions: 1024, primaries: [3, 1, 1, 2, …] }        primaries[p] = node id (−1: none)
 * ```
 */
export interface RoutingTable {
  /** The node that answered. */
  readonly node: number;
  /** Its ring epoch (a local counter: compare only answers of one node). */
  readonly epoch: number;
  readonly members: readonly number[];
  readonly partitions: number;
  readonly primaries: readonly number[];
}

/** The partition of a key; the same function as the nodes' `partitionOf`. */
export function partitionOfKey(key: string, partitions: number): number {
  return hash32(key) % partitions;
}

/** The node id serving `key`, or undefined when the table names none. */
export function primaryOfKey(table: RoutingTable, key: string): number | undefined {
  return primaryOfPartition(table, partitionOfKey(key, table.partitions));
}

/** The node id serving partition `p`, or undefined when the table names none. */
export function primaryOfPartition(table: RoutingTable, p: number): number | undefined {
  const id = table.primaries[p];
  return id === undefined || id < 0 ? undefined : id;
}

const isNodeId = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= -1 && (v as number) <= 1023;

/**
 * Checks a `/cluster/table` answer field by field: a proxy's error page or an older node's 404
 * must not become a table that routes every key nowhere. Returns the problem, or the table.
 */
export function parseRoutingTable(raw: unknown): RoutingTable | string {
  if (typeof raw !== 'object' || raw === null) return 'is not a JSON object';
  const r = raw as Record<string, unknown>;
  if (!isNodeId(r.node) || r.node < 0) return 'has no node id';
  if (!Number.isSafeInteger(r.epoch)) return 'has no epoch';
  if (!Array.isArray(r.members) || !r.members.every(isNodeId)) return 'has no member list';
  if (!Number.isInteger(r.partitions) || (r.partitions as number) < 1 || (r.partitions as number) > 65_536) return 'has no partition count';
  if (!Array.isArray(r.primaries) || r.primaries.length !== r.partitions || !r.primaries.every(isNodeId))
    return `must list a primary for each of its ${String(r.partitions)} partitions`;
  return { node: r.node, epoch: r.epoch as number, members: r.members as number[], partitions: r.partitions as number, primaries: r.primaries as number[] };
}
