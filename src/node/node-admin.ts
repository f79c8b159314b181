import type { AdminTarget, MovePlan } from '../admin/admin-commands.ts';
import { HashRing, type RingMember } from '../cluster/ring.ts';
import { troupeError } from '../core/errors.ts';
import { logTap } from '../core/logger.ts';
import { PartitionTable, partitionOf } from '../replication/partition-table.ts';
import type { LocalActors } from './local-actors.ts';

/** What the admin adapter reads from a running node (TroupeNode hands it these). */
export interface NodeAdminParts {
  id: number;
  members: AdminTarget['members'];
  kinds: () => string[];
  actors: LocalActors;
  /** The replication driver's table and copies; undefined on a single node. */
  placement: () => PartitionTable | undefined;
  partitions: () => Array<Record<string, unknown>>;
  counters: () => Record<string, unknown>;
  ask: AdminTarget['ask'];
  drain: () => Promise<void>;
  stop: () => Promise<void>;
  /** Hot backup of the node's LMDB journal or partition store into a directory; undefined: nothing durable to back up. */
  backup?: (dir: string) => Promise<string>;
  /** WebSocket connections (GET /cluster/connections); undefined: no sessions on this node. */
  connections?: AdminTarget['connections'];
}

/** A running node as the admin REPL sees it. */
export function nodeAdminTarget(n: NodeAdminParts): AdminTarget {
  return {
    id: n.id,
    members: n.members,
    kinds: n.kinds,
    placement() {
      const table = n.placement();
      if (table === undefined) return undefined;
      const primaries: Record<string, number> = {};
      const copies: Record<string, number> = {};
      for (let p = 0; p < table.partitions; p++) {
        const set = table.replicasOf(p);
        if (set[0] !== undefined) primaries[set[0]] = (primaries[set[0]] ?? 0) + 1;
        for (const m of set) copies[m] = (copies[m] ?? 0) + 1;
      }
      return { partitions: table.partitions, replicas: table.replicas, primaries, copies };
    },
    where(_kind, key) {
      const table = n.placement();
      const slot = n.actors.slotOf(key);
      const partition = table === undefined ? null : partitionOf(key, table.partitions);
      return {
        partition,
        replicas: table === undefined || partition === null ? [n.id] : [...table.replicasOf(partition)],
        slot,
        thread: n.actors.threadIds()[slot] ?? 0,
      };
    },
    workers: async () => (await n.actors.stats()) as Array<Record<string, unknown>>,
    partitions: n.partitions,
    counters: n.counters,
    ask: n.ask,
    ...(n.connections && { connections: n.connections }),
    drain: n.drain,
    stop: n.stop,
    inspect: (kind, key) => n.actors.inspect(kind, key),
    steer: (kind, key, op) => n.actors.steer(kind, key, op),
    top: (count) => n.actors.top(count),
    // The process's log tap, narrowed to this node's lines (several nodes may share a test process).
    follow: (level) => logTap.follow(level, n.id).id,
    followed: (id) => logTap.follower(id)?.take(),
    unfollow: (id) => logTap.follower(id)?.close(),
    async backup(dir) {
      if (n.backup === undefined) throw troupeError('ERR_INVALID_INPUT', `node ${n.id} keeps its actors in memory (no --data-dir): there is nothing to back up`);
      return n.backup(dir);
    },
    movePlan(change) {
      const table = n.placement();
      if (table === undefined) return undefined;
      const up = n.members().filter((m) => m.status === 'alive' || m.status === 'suspect');
      const before: RingMember[] = up.map((m) => ({ id: m.id, address: m.address, ...(m.zone !== undefined && { zone: m.zone }) }));
      const after = 'leave' in change ? before.filter((m) => m.id !== change.leave) : [...before, { id: change.join, address: `plan:${change.join}` }];
      return movePlanOf(before, after, table.replicas, table.partitions, 'leave' in change ? `node ${change.leave} leaves` : `node ${change.join} joins`);
    },
  };
}

/**
 * A dry run of a membership change, from partition tables alone (the same deterministic
 * placement every member computes). Both tables are built here from the up members, so the
 * comparison is like for like even while the live table lags membership.
 *
 * @example
 *   movePlanOf(three, two, 2, 1024, 'node 3 leaves').primariesMoved   // ≈ 1024 / 3
 */
export function movePlanOf(before: readonly RingMember[], after: readonly RingMember[], replicas: number, partitions: number, change: string): MovePlan {
  const t0 = new PartitionTable(new HashRing(before), { replicas, partitions });
  const t1 = new PartitionTable(new HashRing(after), { replicas, partitions });
  const ids = [...new Set([...before, ...after].map((m) => m.id))].sort((a, b) => a - b);
  const row = new Map(ids.map((id) => [id, { node: id, leadsBefore: 0, leadsAfter: 0, copiesBefore: 0, copiesAfter: 0 }]));
  let primariesMoved = 0;
  let copiesMoved = 0;
  for (let p = 0; p < partitions; p++) {
    const s0 = t0.replicasOf(p);
    const s1 = t1.replicasOf(p);
    if (s0[0] !== s1[0]) primariesMoved++;
    for (const m of s1) if (!s0.includes(m)) copiesMoved++; // a new holder is streamed the partition
    if (s0[0] !== undefined) row.get(s0[0])!.leadsBefore++;
    if (s1[0] !== undefined) row.get(s1[0])!.leadsAfter++;
    for (const m of s0) row.get(m)!.copiesBefore++;
    for (const m of s1) row.get(m)!.copiesAfter++;
  }
  return { change, partitions, primariesMoved, copiesMoved, perNode: [...row.values()] };
}
