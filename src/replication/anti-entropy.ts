import type { Clock, TimerHandle } from '../core/clock.ts';
import { compareEpoch, sameEpoch, type Epoch, type Position } from './epoch.ts';

/**
 * Lazy anti-entropy (REPLICATION.md, "Lazy anti-entropy and truncation"): every `intervalMs`
 * each established primary sends each member of its partitions' sets a compact digest —
 * `(p, epoch, end, commit)` per partition they share, all of one peer's in one message, one
 * frame per peer per period. A replica that finds itself behind the primary of that epoch (its
 * log does not end at `(epoch, end)`) and made no progress since the previous digest pulls: it
 * answers with its position (a `mismatch`), and the primary ships what it lacks through the
 * usual `Append` checks (a snapshot when it is behind the base). A replica never pulls from a
 * peer that is not that epoch's primary, so a deposed primary's unacknowledged tail never spreads.
 *
 * Replicas that missed frames (a one-way loss, a reconnect, a restart) thus converge without
 * the primary resending everything, and a quiet partition costs 5 numbers per period.
 *
 * The digest is also how a deposed primary learns it was deposed when it only serves reads (no
 * `Append` of its would be refused): a node that promised a later epoch than a digest's answers
 * `stale(promised)`, and the sender steps down as it would on a refused `Append`. Reads without
 * a token are thus stale at most for the detection time plus one period, not until the next write.
 *
 * ```
 *   primary ── digest [p, term, node, end, commit, …] ──► replica   every intervalMs, ≤ maxPerDigest partitions
 *   primary ◄── mismatch(p, epoch, last, history) ───────  replica   behind, and still behind one digest later
 *   primary ── append(prev = match point, entries) ──────► replica   the normal checks
 * ```
 */
export const antiEntropyDefaults = {
  /** A digest to each peer this often, ms (0 turns anti-entropy off). */
  intervalMs: 1_000,
  /**
   * Partitions per digest (5 numbers each: ~6 KiB of msgpack at 512). A primary that shares
   * more with one peer sends the rest in the next periods (a rotating cursor), so a period's
   * frame to a peer stays bounded whatever the partition count.
   */
  maxPerDigest: 512,
};

/** One partition in a digest: where its established primary's log ends, and its commit point. */
export interface DigestEntry {
  p: number;
  epoch: Epoch;
  end: number;
  commit: number;
}

/** A digest on the wire: `parts` is flat, 5 numbers per partition `[p, term, node, end, commit]`. */
export interface DigestMessage {
  type: 'digest';
  parts: number[];
}

/** What the primary side contributes: a partition it serves as established primary. */
export interface HeldPartition extends DigestEntry {
  /** Members of the epoch's set (this node included or not: it is skipped). */
  members: readonly number[];
}

export function encodeDigest(entries: readonly DigestEntry[]): DigestMessage {
  const parts: number[] = [];
  for (const d of entries) parts.push(d.p, d.epoch.term, d.epoch.node, d.end, d.commit);
  return { type: 'digest', parts };
}

export function decodeDigest(msg: DigestMessage): DigestEntry[] {
  const out: DigestEntry[] = [];
  const n = msg.parts;
  for (let i = 0; i + 4 < n.length; i += 5) out.push({ p: n[i]!, epoch: { term: n[i + 1]!, node: n[i + 2]! }, end: n[i + 3]!, commit: n[i + 4]! });
  return out;
}

/**
 * Each peer's digest for one period: the partitions it shares with this node, at most `max` of
 * them, starting at `cursor` in ascending partition order (wrapping). Pure.
 */
export function digestsFor(held: readonly HeldPartition[], self: number, cursor: number, max: number): Map<number, DigestEntry[]> {
  const sorted = held.slice().sort((a, b) => a.p - b.p);
  const start = sorted.findIndex((h) => h.p >= cursor);
  const ordered = start <= 0 ? sorted : [...sorted.slice(start), ...sorted.slice(0, start)];
  const out = new Map<number, DigestEntry[]>();
  for (const h of ordered) {
    for (const m of h.members) {
      if (m === self) continue;
      let list = out.get(m);
      if (list === undefined) out.set(m, (list = []));
      if (list.length < max) list.push({ p: h.p, epoch: h.epoch, end: h.end, commit: h.commit });
    }
  }
  return out;
}

/**
 * Is a replica whose log ends at `last` and which promised `promised` behind this digest entry
 * from `from`? Only the entry's own primary counts, of an epoch the replica may still accept.
 * An established primary's log ends in its own epoch (its start entry is in it), so a replica
 * in step ends at exactly `(epoch, end)`.
 */
export function isBehind(last: Position, promised: Epoch, d: DigestEntry, from: number): boolean {
  if (d.epoch.node !== from || compareEpoch(d.epoch, promised) < 0) return false;
  return !(last.seq === d.end && sameEpoch(last.epoch, d.epoch));
}

/** The driver side of anti-entropy: what it holds, what its replicas hold, how it sends. */
export interface AntiEntropyHost {
  readonly self: number;
  /** Partitions this node serves as established primary, now. */
  held(): HeldPartition[];
  /** This node's copy of `p` when it may take appends (an idle replica), else undefined. */
  replicaOf(p: number): { last: Position; promised: Epoch; commit: number } | undefined;
  sendDigest(to: number, msg: DigestMessage): void;
  /** Ask `to`, the primary of `epoch`, to ship what this node's copy of `p` lacks. */
  pull(p: number, to: number, epoch: Epoch): void;
  /** The epoch this node promised for `p`, whatever its role (undefined: it holds no copy). */
  promisedOf(p: number): Epoch | undefined;
  /** Tell `to`, primary of `epoch`, that this node promised the later `promised`: it steps down. */
  refute(p: number, to: number, epoch: Epoch, promised: Epoch): void;
  /** In step with `d`'s primary but behind its commit point: take it (as an empty append would). */
  commitFrom(p: number, from: number, d: DigestEntry): void;
}

/**
 * The timer and the bookkeeping around the pure functions above. A replica pulls only when a
 * digest finds it behind and its log end has not moved since the previous digest of the same
 * epoch: appends in flight when the digest was built are not a loss.
 */
export class AntiEntropy {
  private timer: TimerHandle | undefined;
  private cursor = 0;
  /** p → (epoch, this replica's last seq) at the previous digest that found it behind. */
  private readonly lastBehind = new Map<number, { epoch: Epoch; seq: number }>();
  readonly counters = { digestsSent: 0, digestEntriesSent: 0, pulls: 0, refuted: 0, commits: 0 };

  constructor(
    private readonly host: AntiEntropyHost,
    private readonly clock: Clock,
    private readonly intervalMs: number = antiEntropyDefaults.intervalMs,
    private readonly maxPerDigest: number = antiEntropyDefaults.maxPerDigest,
  ) {}

  start(): void {
    if (this.intervalMs <= 0 || this.timer !== undefined) return;
    this.timer = this.clock.setTimeout(() => this.tick(), this.intervalMs);
  }

  stop(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One period: a digest to every peer this node shares an established partition with. */
  tick(): void {
    this.timer = undefined;
    const held = this.host.held();
    const byPeer = digestsFor(held, this.host.self, this.cursor, this.maxPerDigest);
    let furthest = -1;
    for (const [peer, entries] of byPeer) {
      if (entries.length === 0) continue;
      this.host.sendDigest(peer, encodeDigest(entries));
      this.counters.digestsSent++;
      this.counters.digestEntriesSent += entries.length;
      if (entries.length === this.maxPerDigest) furthest = Math.max(furthest, entries[entries.length - 1]!.p);
    }
    // Some peer got a full page: the next period starts after it, so every partition gets its turn.
    this.cursor = furthest >= 0 ? furthest + 1 : 0;
    this.start();
  }

  received(from: number, msg: DigestMessage): void {
    for (const d of decodeDigest(msg)) {
      const promised = d.epoch.node === from ? this.host.promisedOf(d.p) : undefined;
      if (promised !== undefined && compareEpoch(d.epoch, promised) < 0) {
        this.counters.refuted++;
        this.host.refute(d.p, from, d.epoch, promised);
        continue;
      }
      const mine = this.host.replicaOf(d.p);
      if (mine === undefined || !isBehind(mine.last, mine.promised, d, from)) {
        this.lastBehind.delete(d.p);
        // In step, but the commit point of the last entries came with no append after them (the
        // load stopped): take it from the digest, so every copy's commit converges within a period.
        if (mine !== undefined && d.epoch.node === from && sameEpoch(mine.last.epoch, d.epoch) && mine.last.seq === d.end && d.commit > mine.commit) {
          this.counters.commits++;
          this.host.commitFrom(d.p, from, d);
        }
        continue;
      }
      const before = this.lastBehind.get(d.p);
      this.lastBehind.set(d.p, { epoch: d.epoch, seq: mine.last.seq });
      if (before === undefined || !sameEpoch(before.epoch, d.epoch) || before.seq !== mine.last.seq) continue;
      this.counters.pulls++;
      this.host.pull(d.p, from, d.epoch);
    }
  }
}
