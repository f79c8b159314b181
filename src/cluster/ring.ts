import { invalidOption, troupeError } from '../core/errors.ts';
import { hash32 } from '../core/hash.ts';

/** A node as the ring sees it: only up members belong on the ring. */
export interface RingMember {
  /** Node id, 0..1023 (also the Snowflake machine id). */
  readonly id: number;
  /** Where the node is reached ("127.0.0.1:7401", "mem:3"). */
  readonly address: string;
  /** Host or zone label: partition tables spread replicas over labels (the ring itself ignores it). */
  readonly zone?: string;
}

export interface HashRingOptions {
  /** Positions per node; more smooths the balance and costs memory (6 bytes each). Default 1024. */
  virtualNodes?: number;
  /** Membership version this ring was built from; the caller bumps it on every change. Default 0. */
  epoch?: number;
}

/**
 * Default virtual nodes per member. A member's share spreads by ~1/√V around 1/N: at 1024 that
 * is ~3%, so any single join moves ≤ 1.1× the ideal 1/N of keys (at 128 it is ~9%, and single
 * joins reach 1.3×). Cost: 6 bytes per position, ~6 MB and a ~0.2 s rebuild at 1,000 nodes.
 */
export const DEFAULT_VIRTUAL_NODES = 1024;

/**
 * Consistent-hash ring over the up members, with virtual nodes.
 *
 * Virtual node `i` of member `id` sits at `hash32(`${id}#${i}`)`. A key belongs to the first
 * position clockwise from `hash32(key)` (wrapping past 2^32 - 1 to the smallest position); its
 * replica set is the first `r` distinct members met walking clockwise from there.
 *
 * ```
 *   positions  [ 0x01.. | 0x1f.. | 0x5a.. | 0x9c.. | 0xe0.. ]   Uint32Array, ascending
 *   owner      [   2    |   0    |   2    |   1    |   0    ]   Uint16Array, index into members
 *                          ^ hash32(key) = 0x3c.. lands here: the first position >= it (0x5a..) → member 2
 * ```
 *
 * Deterministic: members are sorted by id and equal positions are ordered by member id, so every
 * node that holds the same membership, in any order, computes the same owner for every key.
 *
 * @example
 *   const ring = new HashRing([{ id: 1, address: 'mem:1' }, { id: 2, address: 'mem:2' }], { epoch: 7 });
 *   ring.ownerOf('cart:42');        // → { id: 2, address: 'mem:2' } (say)
 *   ring.replicasOf('cart:42', 2);  // → [owner, the other node]
 */
export class HashRing {
  /** Members sorted by id. */
  readonly members: readonly RingMember[];
  readonly epoch: number;
  readonly virtualNodes: number;
  private readonly positions: Uint32Array;
  private readonly owners: Uint16Array;

  constructor(members: readonly RingMember[], options: HashRingOptions = {}) {
    const virtualNodes = options.virtualNodes ?? DEFAULT_VIRTUAL_NODES;
    if (!Number.isInteger(virtualNodes) || virtualNodes < 1 || virtualNodes > 65_536) {
      throw invalidOption('options.virtualNodes', 'must be an integer in 1..65536', options.virtualNodes);
    }
    const epoch = options.epoch ?? 0;
    if (!Number.isSafeInteger(epoch) || epoch < 0) {
      throw invalidOption('options.epoch', 'must be a non-negative integer', options.epoch);
    }
    if (!Array.isArray(members)) throw invalidOption('members', 'must be an array', members);
    const sorted = members.map((m, i) => checkMember(m, i)).sort((a, b) => a.id - b.id);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]!.id === sorted[i - 1]!.id) {
        throw invalidOption('members', `must not repeat a node id (id ${sorted[i]!.id} appears twice)`, members);
      }
    }
    this.members = sorted;
    this.epoch = epoch;
    this.virtualNodes = virtualNodes;

    const layout = ringLayout(sorted, virtualNodes);
    this.positions = layout.positions;
    this.owners = layout.owners;
  }

  /** Number of members on the ring. */
  get size(): number {
    return this.members.length;
  }

  /** The member that owns `key`. Throws ERR_NO_NODES on an empty ring. */
  ownerOf(key: string): RingMember {
    return this.ownerOfHash(hash32(key));
  }

  /** As `ownerOf`, for a key already hashed with `hash32` (clients that cache key hashes). */
  ownerOfHash(keyHash: number): RingMember {
    if (this.positions.length === 0) throw noNodes();
    return this.members[this.owners[this.slot(keyHash >>> 0)]!]!;
  }

  /**
   * The first `r` distinct members clockwise from `key`: the owner first, then its successors.
   * Returns fewer than `r` when the ring has fewer members.
   */
  replicasOf(key: string, r: number): RingMember[] {
    if (!Number.isInteger(r) || r < 1) throw invalidOption('r', 'must be a positive integer', r);
    if (this.positions.length === 0) throw noNodes();
    const want = Math.min(r, this.members.length);
    const out: RingMember[] = [];
    // At most `want` members, so a linear "seen" scan beats a Set for the usual r ≤ 5.
    const seen: number[] = [];
    const n = this.positions.length;
    // No step limit needed: every member holds at least one position, so one lap meets `want`.
    for (let i = this.slot(hash32(key)); out.length < want; i = (i + 1) % n) {
      const index = this.owners[i]!;
      if (seen.includes(index)) continue;
      seen.push(index);
      out.push(this.members[index]!);
    }
    return out;
  }

  /** True when a member with this node id is on the ring. */
  has(id: number): boolean {
    let lo = 0;
    let hi = this.members.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.members[mid]!.id;
      if (v === id) return true;
      if (v < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  /** Index of the first position >= h, wrapping to 0 past the largest. */
  private slot(h: number): number {
    const positions = this.positions;
    let lo = 0;
    let hi = positions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (positions[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === positions.length ? 0 : lo;
  }
}

/**
 * Positions and owners depend only on the members' ids and the virtual-node count, and every
 * membership change builds rings (the router, the replication driver, the node each build one
 * from the same members): the few latest layouts are kept, immutable and shared, up to
 * `LAYOUT_CACHE_POSITIONS` positions in all (6 bytes each).
 */
const LAYOUT_CACHE_POSITIONS = 1 << 21;
const layouts = new Map<string, { positions: Uint32Array; owners: Uint16Array }>();
let cachedPositions = 0;

function ringLayout(sorted: readonly RingMember[], virtualNodes: number): { positions: Uint32Array; owners: Uint16Array } {
  let key = `${virtualNodes}`;
  for (const m of sorted) key += `,${m.id}`;
  const hit = layouts.get(key);
  if (hit !== undefined) return hit;
  // Sort (position, member index) pairs in one numeric sort: position * 2^16 + index is exact in
  // a double (48 bits) and orders equal positions by member index, i.e. by id.
  const count = sorted.length * virtualNodes;
  const packed = new Float64Array(count);
  let k = 0;
  for (let m = 0; m < sorted.length; m++) {
    const prefix = `${sorted[m]!.id}#`;
    for (let i = 0; i < virtualNodes; i++) packed[k++] = hash32(prefix + i) * 65_536 + m;
  }
  packed.sort();
  const positions = new Uint32Array(count);
  const owners = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    const p = packed[i]!;
    const index = p % 65_536;
    positions[i] = (p - index) / 65_536;
    owners[i] = index;
  }
  const layout = { positions, owners };
  if (count <= LAYOUT_CACHE_POSITIONS) {
    // Oldest first out (a Map iterates in insertion order).
    for (const [k, v] of layouts) {
      if (cachedPositions + count <= LAYOUT_CACHE_POSITIONS) break;
      layouts.delete(k);
      cachedPositions -= v.positions.length;
    }
    layouts.set(key, layout);
    cachedPositions += count;
  }
  return layout;
}

function checkMember(m: RingMember, i: number): RingMember {
  if (m === null || typeof m !== 'object') throw invalidOption(`members[${i}]`, 'must be an object { id, address }', m);
  if (!Number.isInteger(m.id) || m.id < 0 || m.id > 1023) {
    throw invalidOption(`members[${i}].id`, 'must be an integer in 0..1023', m.id);
  }
  if (typeof m.address !== 'string' || m.address.length === 0) {
    throw invalidOption(`members[${i}].address`, 'must be a non-empty string', m.address);
  }
  // Copy: the ring is immutable even if the caller later mutates its member objects.
  return typeof m.zone === 'string' ? { id: m.id, address: m.address, zone: m.zone } : { id: m.id, address: m.address };
}

function noNodes() {
  return troupeError('ERR_NO_NODES', 'the hash ring has no members');
}
