import type { RingMember } from '../cluster/ring.ts';
import type { PeerIdentity, Transport } from '../cluster/transport.ts';
import type { Clock, TimerHandle } from '../core/clock.ts';
import { invalidOption, troupeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { ActorHistory, ActorWrite, EventRecord, Journal } from '../persistence/journal.ts';
import { startCandidate, candidateReducer, sameSet, type CandidateEffect, type CandidateEvent, type CandidateState } from './candidate.ts';
import {
  compareEpoch,
  EMPTY_POSITION,
  epochAt,
  sameEpoch,
  truncateHistory,
  ZERO_EPOCH,
  type Epoch,
  type EpochHistory,
  type EpochStart,
  type Position,
  type ReplicaSet,
} from './epoch.ts';
import type { LogEntry, ReplicationMessage } from './messages.ts';
import { PartitionTable, partitionOf, PARTITIONS } from './partition-table.ts';
import { isTruncatedRead } from './partition-store-checks.ts';
import { baseOf, type ActorImage, type PartitionMeta, type PartitionSnapshot, type PartitionStore } from './partition-store.ts';
import { createPrimaryState, ownSet, primaryReducer, truncationPoint, type PrimaryEvent, type PrimaryState } from './primary.ts';
import { createReplicaState, replicaReducer, type ReplicaState } from './replica.ts';
import { RESTORED_FROM_BACKUP } from '../persistence/lmdb-env.ts';
import { parseWireMessage, R_REPL, type FetchMessage, type ReplFrameMessage, type SnapshotMessage, type WireMessage } from './wire.ts';
import { AntiEntropy, antiEntropyDefaults, type DigestEntry, type HeldPartition } from './anti-entropy.ts';
import { admitLearners, handoffDefaults, sealDecision, type HandoffMessage } from './handoff.ts';
import { HashRing } from '../cluster/ring.ts';
import { judgeToken, formatToken, type Token } from './token.ts';
import { copiesHolding, fenceWriteQuorum, settleRuleOf, type KindDurability, type ReplicatedDurability, type SettleRule } from './settle-rule.ts';
import { ReplicationLag, type LagFigures } from './replication-lag.ts';

export const replicationDefaults = {
  /** R: copies of each partition, the primary counted (capped by the cluster size). */
  replicas: 3,
  /** W: copies committed before a write is acknowledged (capped by the replica set's size). */
  writeQuorum: 2,
  /** How long a read or write waits for its partition's primary to be established, ms. */
  holdMs: 5_000,
  /** A fence (prepare round, fetch) that takes longer is abandoned and retried, ms. */
  fenceTimeoutMs: 1_500,
  /** Back-off before retrying a failed fence, ms (jittered up to twice this). */
  retryMs: 100,
  /** A member that confirmed nothing for this long gets the unconfirmed tail again, ms. */
  resendMs: 300,
  /** Entries per append or fetch page. */
  page: 256,
  /** A replica applies committed entries to its actor tables at most this often, ms (batched). */
  replicaApplyMs: 50,
  /** Entries kept in memory per partition for shipping; older ones are read from the store. */
  recentEntries: 4_096,
  /**
   * A log prefix every member holds is truncated once it is this many entries long: in batches,
   * so the hot path gains no transaction; a log stays within about this plus what is in flight.
   */
  truncateBatch: 256,
  /**
   * …or, if anything can go at all, when this long passed since the last truncation, ms: slowly
   * written partitions (most of 1024 under a spread load) would otherwise pay a transaction each
   * every few seconds to delete a handful of entries (measured: 12k truncations in 45 s, the
   * cluster's throughput halved).
   */
  truncateEveryMs: 10_000,
  /** Actor images per snapshot page, by their JSON length (msgpack is smaller): far below the 8 MiB frame limit. */
  snapshotPageBytes: 1 << 20,
  /** A member that has not confirmed a snapshot sent this long ago gets the next mismatch's fresh one, ms. */
  snapshotTimeoutMs: 5_000,
};

export interface ReplicationOptions {
  /** This node's id. */
  self: number;
  store: PartitionStore;
  clock: Clock;
  log: Logger;
  replicas?: number;
  writeQuorum?: number;
  partitions?: number;
  holdMs?: number;
  fenceTimeoutMs?: number;
  retryMs?: number;
  resendMs?: number;
  /** Anti-entropy digests to each peer this often, ms; 0: none (anti-entropy.ts). Default 1 s. */
  digestIntervalMs?: number;
  /** Random source for back-off jitter (the simulator injects a seeded one). */
  random?: () => number;
  /**
   * The OS boot this process runs under (Linux: /proc/sys/kernel/random/boot_id). Given for a
   * store that commits without fsync: a boot unlike the store's last marks its partitions unclean.
   */
  bootId?: string;
  /**
   * Resident actors of these partitions may hold stale state (this node stopped serving them, or
   * serves them again after another node may have written): drop or reload them. Called once
   * per turn with every partition that changed in it, before any of them serves again.
   */
  onStale?: (partitions: number[]) => void;
  /**
   * The node learns only once it has joined whether an empty store means a new host or a
   * replaced one (membership's join-ack): with this set, an empty store answers every prepare
   * `unclean` until `identityKnown()` or `markReplaced()` says which. TroupeNode sets it.
   */
  awaitIdentity?: boolean;
  /**
   * This node became the established primary of these partitions (after any fence: failover,
   * handoff, restart), once per turn with every partition established in it, after `onStale`
   * for them: kinds defined with `remember: true` activate their actors there.
   */
  onEstablished?: (partitions: number[]) => void;
  /**
   * Fence at once, not on the first message, a partition this node comes to lead because its
   * last primary left the ring (a failover), when this node's copy holds data: set when a kind
   * is defined with `remember: true`, whose actors must come back without a message. Default false.
   */
  fenceOnFailover?: boolean;
  /** Partitions learning (or sealing) at once on this node (handoff.ts, default 8). */
  maxLearning?: number;
  /** The old primary's seal holds new requests at most this long, ms (default 2 s). */
  sealTimeoutMs?: number;
  /**
   * When a write's reply may leave: 'replicated' (default) and 'replicated+flush' once W copies
   * committed it, 'lazy' once this node's own store did (replication goes on in the background;
   * the partition's commit point, which apply and truncation follow, still needs W copies).
   */
  durability?: ReplicatedDurability;
  /** Actor kinds with a durability or write quorum of their own (settle-rule.ts). */
  kinds?: ReadonlyMap<string, KindDurability>;
}

/** As the new proposed primary: catching up from the partition's established (old) primary. */
interface Learn {
  source: number;
  /** The old primary's epoch, which it serves in meanwhile. */
  epoch: Epoch;
  /** Its commit point as last heard: the learner fetches up to here. */
  commit: number;
  /**
   * This node holds a copy already (a member of the old primary's set, or a node back with its
   * data): no fetch — a fetch from 0 would have to truncate what it applied. The fence after the
   * seal catches it up from the point where its log matches, by epoch, as every fence does.
   */
  member: boolean;
  phase: 'queued' | 'fetching' | 'sealing';
  since: number;
  reqId: number;
  /** The learner fetched from the source in this handoff: its log continues from there. */
  fetched: boolean;
  fetch?: { after: number; upTo: number; got: LogEntry[]; image?: Incoming };
  timer?: TimerHandle;
}

/** As the old primary: the node this partition is being handed to. It keeps serving until sealed. */
interface Handoff {
  to: number;
  since: number;
  lastContact: number;
  seal?: { reqId: number; answered: boolean; timer: TimerHandle };
}

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
  timer: TimerHandle;
}

/** A write batch appended as one entry, waiting for its commit and local apply. */
interface PendingEntry {
  seq: number;
  settle: Array<(e: Error | null) => void>;
}

/** A write whose kind settles at a number of copies of its own (lazy: 1), not at the commit point. */
interface EarlyWrite {
  seq: number;
  copies: number;
  settle: (e: Error | null) => void;
}

interface Fetch {
  reqId: number;
  source: number;
  after: number;
  upTo: number;
  got: LogEntry[];
  /** The source had truncated below `after`: its snapshot comes first, then the entries after its base. */
  image?: Incoming;
}

/** A partition snapshot arriving in pages. */
interface Incoming {
  from: number;
  reqId: number;
  epoch: Epoch;
  /** The next page expected. */
  next: number;
  base: Position;
  history: EpochStart[];
  actors: ActorImage[];
  done: boolean;
}

/** Everything this node knows and does about one partition. */
class Cell {
  replica: ReplicaState;
  applied: number;
  applying = false;
  role: 'idle' | 'candidate' | 'primary' = 'idle';
  candidate: CandidateState | undefined;
  primary: PrimaryState | undefined;
  /** The epoch activations are read under; writes must carry it. It changes only when another node may have written. */
  actorEpoch: Epoch = ZERO_EPOCH;
  /** True while this node has served as primary without interruption (no other node can have written since actorEpoch). */
  continuous = false;
  /** The fence in progress copied entries from another node. */
  fetchedFromPeer = false;
  /** Re-fencing waits until the writes in flight of the current epoch have settled. */
  sealing = false;
  /**
   * The proposed placement moved away from this primary's epoch at some point (another primary,
   * another set): even if it moves back, another node may have served meanwhile, so this epoch
   * must not serve again without a new fence.
   */
  placementMoved = false;
  waiters: Waiter[] = [];
  pending: PendingEntry[] = [];
  /** Writes settled by their own copy count (settle-rule.ts), in seq order. */
  early: EarlyWrite[] = [];
  /**
   * The highest seq of this epoch acknowledged before the commit point reached it (lazy, or a
   * kind's smaller W): an activation must not read the actor tables before they hold it.
   */
  earlyTail = 0;
  /**
   * Actors with a failed write, its first event seq and the epoch the actor was activated in: its
   * later writes of that activation are refused until the reloaded actor writes from there again
   * (see writeOne).
   */
  brokenChains: Map<string, { seq: number; epoch?: Epoch }> | undefined;
  /** When this node last wrote a start entry (its clock): the "primary in epoch" line says how long it took to commit. */
  startWrittenAt = 0;
  /** Entries appended here recently, contiguous, ending at the log's end (primary only). */
  recent: LogEntry[] = [];
  /** Writes of this turn, appended as one entry in a microtask. */
  batch: { writes: ActorWrite[]; settle: Array<(e: Error | null) => void> } | null = null;
  fetch: Fetch | undefined;
  fenceTimer: TimerHandle | undefined;
  retryTimer: TimerHandle | undefined;
  /** The pending retry is an eager one's long back-off (nobody was waiting when it was set). */
  retryEager = false;
  /** Reads waiting for the actor tables to hold every entry up to `seq`. */
  applyWaiters: Array<{ seq: number; resolve(): void; reject(e: Error): void }> = [];
  /** A replica's deferred apply. */
  applyTimer: TimerHandle | undefined;
  /** Highest term seen in any message about this partition. */
  maxTerm = 0;
  /** Member → last time its confirmed position grew (primary only). */
  progress = new Map<number, number>();
  /** The last store change queued: sends of a step leave only after it is durable. */
  lastPersist: Promise<void> = Promise.resolve();
  /** The log end the store last confirmed (memory runs ahead while a persist is in flight). */
  stored: Position = EMPTY_POSITION;
  /** Where the log starts: entries ≤ base.seq were truncated (every member held them) or came as a snapshot. */
  base: Position;
  /** A prefix truncation is in flight (one at a time). */
  truncating = false;
  lastTruncateAt = 0;
  /** As a replica: the truncation point the primary announced (I5); truncated only up to what this node applied. */
  truncateTarget = 0;
  /** A snapshot from the primary arriving in pages. */
  incoming: Incoming | undefined;
  /** While a snapshot is being installed: replica messages wait here, then run in order. */
  held: Array<{ from: number; msg: ReplicationMessage }> | undefined;
  /** As the new proposed primary: learning from the old one (requests for p are forwarded to it meanwhile). */
  learn: Learn | undefined;
  /** As the old primary: handing the partition off (handoff.ts). */
  handoff: Handoff | undefined;
  /** The fence in progress follows a seal: its establishment completes a handoff. */
  handoffFence = false;
  /**
   * A fence this node started because a handoff to it ended (sealed, or the learner gave up):
   * retried after a failure even with no request waiting, until established — nothing else would
   * fence an idle partition whose old primary that failed fence already deposed.
   */
  fenceEagerly = false;
  /** Eager fences that failed in a row (their retry backs off). */
  eagerFailures = 0;

  constructor(
    readonly p: number,
    meta: PartitionMeta | undefined,
  ) {
    this.replica = createReplicaState(p, meta && { promised: meta.promised, last: meta.last, history: meta.history, commit: meta.commit, clean: meta.clean });
    this.applied = meta?.applied ?? 0;
    this.maxTerm = meta?.promised.term ?? 0;
    this.base = meta ? baseOf(meta) : EMPTY_POSITION;
    this.stored = meta?.last ?? EMPTY_POSITION;
  }
}

export interface ReplicationStats {
  partitions: number;
  primaries: number;
  established: number;
  candidates: number;
  pendingEntries: number;
  fences: number;
  failedFences: number;
  depositions: number;
  appendsSent: number;
  badMessages: number;
  /** Prefix truncations done, partition snapshots sent (to members and fetching candidates) and installed. */
  truncations: number;
  snapshotsSent: number;
  snapshotsInstalled: number;
  /** Entries held in the logs of this node, summed over partitions (last − base). */
  logEntries: number;
  /** Partitions learning or sealing now (handoff); handoffs this node started as learner, completed, and seals that timed out here. */
  learning: number;
  handoffsStarted: number;
  handoffsCompleted: number;
  handoffsTimedOut: number;
  /** Per peer, as this node's primaries saw it: time from shipping an append to its `appended` (replication-lag.ts). */
  lag: Record<string, LagFigures>;
}

/**
 * Replicated partition logs on one node: the driver around the pure reducers (replica.ts,
 * candidate.ts, primary.ts), as membership-driver.ts is around membership.ts. It is the node's
 * `Journal`: worker threads read and write actors through it (`{ type: 'node' }`), so an actor's
 * write is acknowledged only once W replicas of its partition committed it.
 *
 * ```
 *   worker writeMany ─► group by partition ─► one entry per partition per microtask
 *        ─► persist locally ∥ ship Append to the set ─► W Appended ─► commit ─► the writes
 *           resolve (their replies leave the worker) ─► applied to the actor tables after
 *   worker read ─► partition ready? (else fence: Prepare → q promises → fetch → start entry)
 *        ─► actor tables, once they hold everything committed
 * ```
 *
 * Fencing is lazy: a partition's proposed primary runs the fence on the partition's first read
 * or write after a membership change, so a node's death costs one round per partition in use,
 * and partitions nobody touches cost nothing. Durability of each step comes first (raft's
 * Ready): a promise or an `appended` leaves only after the store has it.
 */
export class ReplicationDriver implements Journal {
  readonly partitions: number;
  private readonly self: number;
  private readonly store: PartitionStore;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly replicas: number;
  private readonly writeQuorum: number;
  private readonly holdMs: number;
  private readonly fenceTimeoutMs: number;
  private readonly retryMs: number;
  private readonly resendMs: number;
  private readonly random: () => number;
  private readonly cells = new Map<number, Cell>();
  private table: PartitionTable | undefined;
  private addresses = new Map<number, string>();
  private transport: Transport | undefined;
  private outbox = new Map<number, ReplFrameMessage[]>();
  private outboxQueued = false;
  private nextReq = 0;
  private closed = false;
  private resendTimer: TimerHandle | undefined;
  private readonly onStale: ((partitions: number[]) => void) | undefined;
  private readonly onEstablished: ((partitions: number[]) => void) | undefined;
  private readonly fenceOnFailover: boolean;
  /** The last ring holds a majority of the members this node knows (TroupeNode decides). */
  private quorate = true;
  /** Members the cluster has, down ones included (setMembers' `known`): caps W. */
  private known = 0;
  /** An empty store under an id that lived before: every partition's copy starts unclean. */
  private replacedHost = false;
  /** An empty store not yet known to be a new host rather than a replaced one (awaitIdentity). */
  private identityPending: boolean;
  /** Terms this node starts at when its store was empty at open (a new or replaced host); 0 otherwise. */
  private readonly termFloor: number;
  private established = new Set<number>();
  private readonly durability: ReplicatedDurability;
  private readonly kinds: ReadonlyMap<string, KindDurability>;
  /** The W fences count with: the smallest any non-lazy kind acknowledges at (settle-rule.ts). */
  private readonly fenceW: number;
  private stale = new Set<number>();
  private readonly counters = {
    fences: 0,
    failedFences: 0,
    depositions: 0,
    appendsSent: 0,
    badMessages: 0,
    truncations: 0,
    snapshotsSent: 0,
    snapshotsInstalled: 0,
    handoffsStarted: 0,
    handoffsCompleted: 0,
    handoffsTimedOut: 0,
  };
  private readonly maxLearning: number;
  private readonly sealTimeoutMs: number;
  /** Partitions offered to this node, oldest first, waiting for a learning slot. */
  private learnQueue: number[] = [];
  /** Partitions learning or sealing now (at most maxLearning). */
  private readonly learning = new Set<number>();
  /** Old primaries this node learns from, or hands off through, that its ring may no longer hold (a draining node). */
  private readonly handoffPeers = new Map<number, string>();
  /** The address each peer last wrote from (an offer may come from a node already off the ring). */
  private readonly senders = new Map<number, string>();
  /** A graceful leave: this node proposes itself for nothing and hands its partitions off. */
  private draining = false;
  /** The last up set membership gave. */
  private ring: HashRing | undefined;
  /** Handoffs completed since the last log line, by source (one line per batch). */
  private completedBatch = new Map<number, number>();
  private readonly lag = new ReplicationLag();
  private readonly antiEntropy: AntiEntropy;

  private constructor(o: ReplicationOptions, metas: Map<number, PartitionMeta>) {
    // An empty store may be a replaced host under a dead node's id: its terms restart from
    // nothing, and an epoch (t, self) the dead life held could be claimed again by a different
    // log (I1). Terms of an empty store start at the wall clock (ms), above any that life reached
    // by one fence at a time, unless the clock stepped back by more than that life lasted.
    this.termFloor = metas.size === 0 ? Math.floor(o.clock.wallNow()) : 0;
    this.identityPending = o.awaitIdentity === true && this.termFloor > 0;
    this.self = o.self;
    this.store = o.store;
    this.clock = o.clock;
    this.log = o.log;
    this.partitions = o.partitions ?? PARTITIONS;
    this.replicas = o.replicas ?? replicationDefaults.replicas;
    this.writeQuorum = o.writeQuorum ?? replicationDefaults.writeQuorum;
    this.holdMs = o.holdMs ?? replicationDefaults.holdMs;
    this.fenceTimeoutMs = o.fenceTimeoutMs ?? replicationDefaults.fenceTimeoutMs;
    this.retryMs = o.retryMs ?? replicationDefaults.retryMs;
    this.resendMs = o.resendMs ?? replicationDefaults.resendMs;
    this.random = o.random ?? Math.random;
    this.onStale = o.onStale;
    this.onEstablished = o.onEstablished;
    this.fenceOnFailover = o.fenceOnFailover ?? false;
    this.antiEntropy = new AntiEntropy(this.antiEntropyHost(), this.clock, o.digestIntervalMs ?? antiEntropyDefaults.intervalMs);
    this.maxLearning = o.maxLearning ?? handoffDefaults.maxLearning;
    if (!Number.isSafeInteger(this.maxLearning) || this.maxLearning < 1) throw invalidOption('options.maxLearning', 'must be a positive integer', o.maxLearning);
    this.sealTimeoutMs = o.sealTimeoutMs ?? handoffDefaults.sealTimeoutMs;
    if (!(this.sealTimeoutMs > 0)) throw invalidOption('options.sealTimeoutMs', 'must be a positive number (ms)', o.sealTimeoutMs);
    this.durability = o.durability ?? 'replicated';
    this.kinds = o.kinds ?? new Map();
    this.fenceW = fenceWriteQuorum(this.writeQuorum, this.kinds.values(), this.durability);
    for (const [p, meta] of metas) this.cells.set(p, new Cell(p, meta));
  }

  /** Loads every partition's stored state (promises, histories, positions) before serving. */
  static async open(o: ReplicationOptions): Promise<ReplicationDriver> {
    // A snapshot lists a partition's actors by `partitionOf(key, store.partitions)`: it must be ours.
    if (o.store.partitions !== (o.partitions ?? PARTITIONS)) {
      throw invalidOption('options.partitions', `must equal the store's partition count ${o.store.partitions}`, o.partitions);
    }
    const driver = new ReplicationDriver(o, await o.store.loadAll());
    if (o.bootId !== undefined || o.store.lastBoot() === RESTORED_FROM_BACKUP) await driver.checkBoot(o.bootId);
    return driver;
  }

  /**
   * A store that commits without fsync may have lost its last commits in an OS crash or power
   * loss: if the OS booted since its last commit, every partition it holds is marked unclean
   * (durably) and counts toward no fencing quorum until a later epoch's primary caught it up
   * (REPLICATION.md, Unclean replicas). A process crash leaves the boot as it was: nothing to do.
   */
  private async checkBoot(bootId: string | undefined): Promise<void> {
    const previous = this.store.lastBoot();
    // A store put back from a backup is behind too, whatever the boot.
    if (previous === RESTORED_FROM_BACKUP || (previous !== undefined && bootId !== undefined && previous !== bootId)) {
      let marked = 0;
      for (const cell of this.cells.values()) {
        const step = replicaReducer(cell.replica, { type: 'mark-unclean' });
        if (step.state === cell.replica) continue;
        cell.replica = step.state;
        this.persist(cell, {});
        marked++;
      }
      await Promise.all([...this.cells.values()].map((c) => c.lastPersist));
      const why = previous === RESTORED_FROM_BACKUP ? 'the store was restored from a backup' : 'the OS rebooted since this store last committed';
      if (marked > 0) this.log.warn({ previous, bootId, partitions: marked }, `${why}: ${marked} partitions marked unclean until caught up`);
    }
    await this.store.recordBoot(bootId ?? 'unknown');
  }

  /** Starts talking to peers; until then (and without a placement) nothing is served. */
  attach(transport: Transport): void {
    this.transport = transport;
    transport.onMessage((from, payload) => this.onPayload(from, payload));
    this.armResend();
    this.antiEntropy.start();
  }

  /** Anti-entropy's view of this node: partitions it leads, its replicas' positions, a pull. */
  private antiEntropyHost() {
    return {
      self: this.self,
      held: (): HeldPartition[] => {
        const out: HeldPartition[] = [];
        for (const cell of this.cells.values()) {
          const primary = cell.primary;
          if (cell.role !== 'primary' || primary === undefined || primary.status !== 'serving' || primary.commit < primary.startSeq) continue;
          const members = ownSet(primary).members;
          out.push({ p: cell.p, epoch: primary.epoch, end: primary.last, commit: primary.commit, members });
        }
        return out;
      },
      replicaOf: (p: number) => {
        const cell = this.cellOf(p);
        if (cell.role !== 'idle' || cell.held !== undefined || cell.learn !== undefined) return undefined;
        return { last: cell.replica.last, promised: cell.replica.promised, commit: cell.replica.commit };
      },
      sendDigest: (to: number, msg: ReplFrameMessage) => this.send(to, msg),
      promisedOf: (p: number) => this.cells.get(p)?.replica.promised,
      refute: (p: number, to: number, epoch: Epoch, promised: Epoch) => this.send(to, { type: 'stale', p, epoch, promised }),
      // The commit point only, and only over entries the store has confirmed: no acknowledgement
      // leaves (an empty append would confirm entries whose persist is still in flight, and a
      // refused one would then count as a copy — full-profile seed 1041 caught that).
      commitFrom: (p: number, _from: number, d: DigestEntry) => {
        const cell = this.cellOf(p);
        const r = cell.replica;
        if (cell.role !== 'idle' || !sameEpoch(r.promised, d.epoch) || !sameEpoch(cell.stored.epoch, d.epoch) || cell.stored.seq !== d.end) return;
        if (r.last.seq !== d.end || d.commit <= r.commit) return;
        cell.replica = { ...r, commit: Math.min(d.commit, d.end) };
        this.scheduleApply(cell);
      },
      // The primary's answer to a mismatch: it ships from the match point, through the Append checks.
      pull: (p: number, to: number, epoch: Epoch) => {
        const r = this.cellOf(p).replica;
        this.send(to, { type: 'mismatch', p, epoch, last: r.last, history: r.history });
      },
    };
  }

  /**
   * A new up set: the proposed replica sets of every partition follow it. `known`: the members
   * the cluster has, down and cordoned ones included (not those that left); W is capped by it,
   * never by the ring, so a ring that shrank below W commits nothing rather than fewer copies.
   */
  setMembers(ring: HashRing, quorate = true, known = ring.size): void {
    this.quorate = quorate;
    this.known = Math.max(known, ring.size);
    this.addresses = new Map(ring.members.map((m: RingMember) => [m.id, m.address]));
    this.ring = ring;
    // Draining: this node proposes itself for nothing, whatever its ring still says of it.
    if (this.draining) ring = withoutNode(ring, this.self);
    this.table = new PartitionTable(ring, { replicas: this.replicas, partitions: this.partitions });
    for (const cell of this.cells.values()) {
      const primary = cell.primary;
      if (primary !== undefined && !this.placedAsEpoch(cell.p, primary)) cell.placementMoved = true;
      if (this.table.primaryOf(cell.p) === this.self) {
        // A primary whose set changed fences again now, not on the next write: a set that lost
        // a member regains R copies before a second failure, even in a partition only read
        // from resident actors (which never reach the driver). Partitions this node does not
        // lead yet are fenced lazily, on first use.
        if (cell.handoff !== undefined) this.endHandoff(cell, 'the partition moved back');
        if (cell.retryTimer !== undefined && cell.waiters.length > 0) {
          // Requests wait on a back-off set under the old ring: the new one may allow the fence now.
          this.clock.clearTimeout(cell.retryTimer);
          cell.retryTimer = undefined;
        }
        if (cell.waiters.length > 0 || (cell.role === 'primary' && cell.placementMoved) || this.failedOverTo(cell, ring)) this.advance(cell);
        continue;
      }
      if (cell.learn !== undefined) this.endLearn(cell, 'the partition moved elsewhere');
      // Not ours any more, but established here: keep serving while the new primary learns.
      if (this.offerHandoff(cell)) continue;
      // Not ours any more: a fence in progress stops; a serving primary keeps committing what
      // it has in flight until the new primary's fence deposes it, and takes nothing new.
      if (cell.role === 'candidate') this.abandonFence(cell, 'the partition moved');
      if (cell.role === 'primary') this.markStale(cell.p);
      this.rejectWaiters(cell, notPrimary(cell.p, this.self));
    }
    this.pumpLearners();
  }

  /** The partition table membership proposes now (undefined before the first ring). */
  get placement(): PartitionTable | undefined {
    return this.table;
  }

  stats(): ReplicationStats {
    let primaries = 0;
    let established = 0;
    let candidates = 0;
    let pendingEntries = 0;
    let logEntries = 0;
    for (const c of this.cells.values()) {
      logEntries += c.replica.last.seq - c.base.seq;
      if (c.role === 'primary') primaries++;
      if (this.isReady(c)) established++;
      if (c.role === 'candidate') candidates++;
      pendingEntries += c.pending.length;
    }
    return { partitions: this.cells.size, primaries, established, candidates, pendingEntries, logEntries, learning: this.learning.size, ...this.counters, lag: this.lag.stats() };
  }

  /** Per partition this node holds: role, epoch, log end, commit and applied points. */
  describe(): Array<Record<string, unknown>> {
    return [...this.cells.values()].map((c) => ({
      p: c.p,
      role: c.role,
      ready: this.isReady(c),
      epoch: c.primary?.epoch ?? c.candidate?.epoch ?? c.replica.promised,
      last: c.replica.last.seq,
      base: c.base.seq,
      commit: c.replica.commit,
      applied: c.applied,
      proposed: this.table?.replicasOf(c.p),
      ...(handoffState(c) !== undefined && { handoff: handoffState(c) }),
    }));
  }

  // ── Journal: what worker threads call ────────────────────────────────────────────────────

  async read(kind: string, key: string): Promise<ActorHistory> {
    const cell = await this.ready(partitionOf(key, this.partitions));
    await this.readable(cell);
    const history = await this.store.actors.read(kind, key);
    return { ...history, epoch: cell.actorEpoch };
  }

  async readFrom(kind: string, key: string, afterSeq: number, limit: number): Promise<EventRecord[]> {
    const cell = await this.ready(partitionOf(key, this.partitions));
    await this.readable(cell);
    return this.store.actors.readFrom(kind, key, afterSeq, limit);
  }

  // ── Read-your-writes tokens (token.ts) ────────────────────────────────────────────────────

  /**
   * The token for a reply this node produced just now for `kind`/`key`: the reply left only
   * after its write settled, so the partition's commit point covers it — or, for a kind that
   * settles before the commit point (lazy, a smaller W), this primary's own durable log end.
   * Undefined where this node holds nothing of the partition (it replicates nothing of it).
   */
  tokenOf(kind: string, key: string): Token | undefined {
    const cell = this.cells.get(partitionOf(key, this.partitions));
    if (cell === undefined) return undefined;
    let seq = cell.replica.commit;
    const primary = cell.role === 'primary' ? cell.primary : undefined;
    const rule = this.settleRule(kind);
    // Settled before the commit point reached it: the token must name the write itself, so it
    // cannot pass for older state (deposed meanwhile: the log still ends at or past the write).
    if (rule.type === 'copies' && rule.copies < this.writeQuorum)
      seq = Math.max(seq, primary !== undefined ? Math.min(primary.durable, cell.replica.last.seq) : cell.replica.last.seq);
    if (seq <= 0) return undefined;
    return { p: cell.p, epoch: epochAt(cell.replica.history, seq), seq };
  }

  /**
   * Resolves once this node serves the token's partition as its established primary with state
   * covering the token (I7), within `timeoutMs`. Rejects with ERR_NOT_PRIMARY when the token
   * comes from a later epoch than this node's (it was replaced, or has not heard yet: the router
   * resends), ERR_TOKEN_LOST when this node's epoch history shows the token's write was lost,
   * ERR_PARTITION_UNAVAILABLE when the state does not catch up in time.
   */
  async awaitToken(token: Token, timeoutMs: number): Promise<void> {
    const cell = await this.ready(token.p);
    const primary = cell.primary!;
    const verdict = judgeToken(token, primary.epoch, cell.replica.history, cell.replica.last.seq);
    if (verdict.type === 'newer')
      throw troupeError('ERR_NOT_PRIMARY', `token ${formatToken(token)} is from a later epoch than node ${this.self}'s ${fmt(primary.epoch)} for partition ${cell.p}`, {
        p: cell.p,
        node: this.self,
      });
    if (verdict.type === 'lost')
      throw troupeError(
        'ERR_TOKEN_LOST',
        `token ${formatToken(token)}: partition ${cell.p}'s epoch ${fmt(token.epoch)} ended at seq ${Math.max(verdict.end, 0)} in the surviving log, before the write it names (acknowledged without replication, lazy durability); refusing to serve older state`,
        { p: cell.p, token: formatToken(token) },
      );
    if (cell.applied >= verdict.seq) return;
    await this.appliedWithin(cell, verdict.seq, timeoutMs, () =>
      troupeError('ERR_PARTITION_UNAVAILABLE', `partition ${cell.p} did not catch up with token ${formatToken(token)} within ${timeoutMs} ms`, { p: cell.p }),
    );
  }

  /**
   * Activations read the actor tables once they hold everything committed — and everything this
   * epoch acknowledged before the commit point (lazy writes): waiting for that is bounded by
   * `holdMs`, since it needs W live copies (reading older state than was acknowledged is not
   * an option).
   */
  private readable(cell: Cell): Promise<void> {
    const commit = cell.replica.commit;
    if (cell.earlyTail <= commit) return this.appliedThrough(cell, commit);
    const seq = cell.earlyTail;
    return this.appliedWithin(cell, seq, this.holdMs, () =>
      troupeError('ERR_PARTITION_UNAVAILABLE', `partition ${cell.p}: writes acknowledged through seq ${seq} (lazy) reached no ${this.writeQuorum} copies within ${this.holdMs} ms`, {
        p: cell.p,
        holdMs: this.holdMs,
      }),
    );
  }

  /** appliedThrough, rejecting with `timeout()` after `ms` (the waiter is dropped). */
  private appliedWithin(cell: Cell, seq: number, ms: number, timeout: () => Error): Promise<void> {
    if (cell.applied >= seq) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        const i = cell.applyWaiters.indexOf(waiter);
        if (i >= 0) cell.applyWaiters.splice(i, 1);
        reject(timeout());
      }, ms);
      const waiter = {
        seq,
        resolve: () => (this.clock.clearTimeout(timer), resolve()),
        reject: (e: Error) => (this.clock.clearTimeout(timer), reject(e)),
      };
      cell.applyWaiters.push(waiter);
      if (cell.applyTimer !== undefined) {
        this.clock.clearTimeout(cell.applyTimer);
        cell.applyTimer = undefined;
      }
      this.scheduleApply(cell);
    });
  }

  async write(w: ActorWrite): Promise<void> {
    const [error] = await this.writeMany([w]);
    if (error) throw error;
  }

  /** Never rejects: one entry per write, null once it is committed on W replicas and applied here. */
  writeMany(writes: readonly ActorWrite[]): Promise<Array<Error | null>> {
    return Promise.all(writes.map((w) => this.writeOne(w)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.resendTimer !== undefined) this.clock.clearTimeout(this.resendTimer);
    this.antiEntropy.stop();
    const stopped = troupeError('ERR_STOPPED', 'node is stopping');
    for (const cell of this.cells.values()) {
      this.clearTimers(cell);
      this.endHandoff(cell, 'stopping');
      if (cell.learn?.timer !== undefined) this.clock.clearTimeout(cell.learn.timer);
      cell.learn = undefined;
      this.rejectWaiters(cell, stopped);
      this.failPending(cell, stopped);
      this.rejectApplyWaiters(cell, stopped);
    }
    await Promise.allSettled([...this.cells.values()].map((c) => c.lastPersist));
  }

  // ── Writing ──────────────────────────────────────────────────────────────────────────────

  private writeOne(w: ActorWrite): Promise<Error | null> {
    const cell = this.cellOf(partitionOf(w.key, this.partitions));
    const first = w.events[0]?.seq;
    const actor = first === undefined ? undefined : `${w.kind}\u0000${w.key}`;
    const go = (): Promise<Error | null> => {
      // An actor writes while its earlier writes are in flight. One of them failed (it waited out
      // holdMs, say), so this one's events follow events that do not exist: refuse it, not
      // applied, or the actor's log gets a gap that no node can apply (5-node simulator seed
      // 4350: event 10 committed after event 9's write timed out, and the partition was stuck).
      // Only within one activation: a write refused for its stale epoch says nothing of what the
      // actor, reloaded under the partition's new epoch, writes next (chaos scenario 4b: such a
      // record refused every later write of two keys, ERR_NOT_PRIMARY forever).
      const chain = actor === undefined ? undefined : cell.brokenChains?.get(actor);
      const broken = chain !== undefined && sameEpoch(chain.epoch ?? ZERO_EPOCH, w.epoch ?? ZERO_EPOCH) ? chain.seq : undefined;
      if (broken !== undefined) {
        if (first! > broken)
          return Promise.resolve(
            troupeError('ERR_NOT_PRIMARY', `${w.kind}/${w.key}: an earlier write of this actor failed (its events from seq ${broken}): reloaded, not applied`, {
              p: cell.p,
              node: this.self,
            }),
          );
        cell.brokenChains!.delete(actor!); // the reloaded actor writes from there again
      }
      // An actor read before another node may have written its partition: its memory may be
      // stale. Nothing is written; the host reloads it, and the router resends (ERR_NOT_PRIMARY
      // means exactly that: not applied, send again).
      if (w.epoch !== undefined && !sameEpoch(w.epoch, cell.actorEpoch))
        return Promise.resolve(
          troupeError(
            'ERR_NOT_PRIMARY',
            `${w.kind}/${w.key} was activated in epoch ${fmt(w.epoch)}, before partition ${cell.p}'s epoch ${fmt(cell.actorEpoch)}: reloaded, not applied`,
            { p: cell.p, node: this.self },
          ),
        );
      return new Promise((resolve) => this.enqueue(cell, w, resolve));
    };
    const settled = this.isReady(cell) ? go() : this.ready(cell.p).then(go, (e: Error) => e);
    if (actor === undefined) return settled;
    return settled.then((e) => {
      if (e !== null) {
        const chains = (cell.brokenChains ??= new Map());
        const known = chains.get(actor);
        const same = known !== undefined && sameEpoch(known.epoch ?? ZERO_EPOCH, w.epoch ?? ZERO_EPOCH);
        chains.set(actor, { seq: same ? Math.min(known.seq, first!) : first!, ...(w.epoch !== undefined && { epoch: w.epoch }) });
      }
      return e;
    });
  }

  private enqueue(cell: Cell, w: ActorWrite, settle: (e: Error | null) => void): void {
    if (cell.batch === null) {
      cell.batch = { writes: [], settle: [] };
      queueMicrotask(() => this.appendBatch(cell));
    }
    cell.batch.writes.push(w);
    cell.batch.settle.push(settle);
  }

  /** The turn's writes of one partition become one log entry. */
  private appendBatch(cell: Cell): void {
    const batch = cell.batch!;
    cell.batch = null;
    if (!this.isReady(cell)) {
      // Sealed or deposed since the check: nothing was appended, so each write waits again.
      batch.writes.forEach((w, i) => void this.writeOne(w).then(batch.settle[i]));
      return;
    }
    const primary = cell.primary!;
    const seq = cell.replica.last.seq + 1;
    const entry: LogEntry = { seq, epoch: primary.epoch, data: batch.writes };
    cell.replica = { ...cell.replica, last: { epoch: primary.epoch, seq } };
    this.remember(cell, entry);
    const atCommit: PendingEntry = { seq, settle: [] };
    batch.writes.forEach((w, i) => {
      const rule = this.settleRule(w.kind);
      if (rule.type === 'commit') atCommit.settle.push(batch.settle[i]!);
      else cell.early.push({ seq, copies: rule.copies, settle: batch.settle[i]! });
    });
    if (atCommit.settle.length > 0) cell.pending.push(atCommit);
    this.appendOwn(cell, entry);
  }

  private settleRule(kind: string): SettleRule {
    return settleRuleOf(this.kinds.get(kind), { durability: this.durability, writeQuorum: this.writeQuorum });
  }

  /** The primary's own entry: persisted while it ships (raft's parallel write), durable → counted. */
  private appendOwn(cell: Cell, entry: LogEntry, history?: EpochHistory): void {
    let persisted = this.persist(cell, { entries: [entry] });
    // The epoch's own set is this node alone (a one-node cluster, or R=1): no other copy survives
    // an OS crash, so the entry counts only once it is on disk — `replicated` falls back to `flush`.
    const sets = cell.primary?.sets;
    if (sets !== undefined && sets[sets.length - 1]!.members.length === 1 && this.store.durability === 'commit')
      persisted = persisted.then(() => this.store.sync());
    this.stepPrimary(cell, { type: 'wrote', last: entry.seq, ...(history && { history }) });
    persisted.then(
      () => this.stepPrimary(cell, { type: 'durable', seq: entry.seq }),
      (e: unknown) => this.depose(cell, `local write failed: ${(e as Error).message}`, e as Error),
    );
  }

  private remember(cell: Cell, entry: LogEntry): void {
    cell.recent.push(entry);
    if (cell.recent.length > replicationDefaults.recentEntries) {
      const durable = cell.primary?.durable ?? 0;
      let drop = 0;
      while (drop < cell.recent.length - replicationDefaults.recentEntries && cell.recent[drop]!.seq <= durable) drop++;
      if (drop > 0) cell.recent.splice(0, drop);
    }
  }

  // ── Readiness and fencing ────────────────────────────────────────────────────────────────

  /** Serving: an established primary of the proposed set, with everything committed applied. */
  private isReady(cell: Cell): boolean {
    const primary = cell.primary;
    if (cell.role !== 'primary' || primary === undefined || primary.status !== 'serving' || cell.sealing) return false;
    if (primary.commit < primary.startSeq || cell.applied < primary.startSeq) return false;
    // Handing off: still the established primary (a fence deposes it), serving until sealed.
    if (cell.handoff !== undefined) return cell.handoff.seal === undefined;
    if (cell.placementMoved) return false;
    return this.placedAsEpoch(cell.p, primary);
  }

  /** Membership proposes this node as primary with exactly the set the epoch serves. */
  private placedAsEpoch(p: number, primary: PrimaryState): boolean {
    const table = this.table;
    if (table === undefined || table.primaryOf(p) !== this.self) return false;
    return sameSet(ownSet(primary), this.proposedSet(p));
  }

  private proposedSet(p: number): ReplicaSet {
    const members = this.table!.replicasOf(p);
    // Capped by the cluster's size (a one-node cluster writes one copy), not by this ring's: with
    // a member down or cordoned a smaller set must not acknowledge with fewer copies than W — it
    // waits instead (the simulator's seed 1021 lost a write acknowledged by a set of one).
    const w = Math.min(this.writeQuorum, this.replicas, Math.max(1, this.known));
    // Recorded in the epoch's start entry, so later fences of this set count with it too.
    return this.fenceW < w ? { members, w, fw: this.fenceW } : { members, w };
  }

  private ready(p: number): Promise<Cell> {
    const cell = this.cellOf(p);
    if (this.isReady(cell)) return Promise.resolve(cell);
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', 'node is stopping'));
    // A sealed old primary holds requests (bounded) until the new one's fence deposes it or the seal times out.
    if ((this.table === undefined || this.table.primaryOf(p) !== this.self) && cell.handoff === undefined) return Promise.reject(notPrimary(p, this.self));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve: () => resolve(cell),
        reject,
        timer: this.clock.setTimeout(() => {
          const i = cell.waiters.indexOf(waiter);
          if (i >= 0) cell.waiters.splice(i, 1);
          reject(
            troupeError('ERR_PARTITION_UNAVAILABLE', `partition ${p} has no established primary after ${this.holdMs} ms (too few live replicas?)`, {
              p,
              holdMs: this.holdMs,
            }),
          );
        }, this.holdMs),
      };
      cell.waiters.push(waiter);
      this.advance(cell);
    });
  }

  /** Moves a partition with waiters toward serving: waits, seals, or starts a fence. */
  private advance(cell: Cell): void {
    if (this.isReady(cell)) return this.releaseWaiters(cell);
    if (this.closed || this.table === undefined || this.table.primaryOf(cell.p) !== this.self) return;
    if (cell.retryTimer !== undefined && cell.retryEager && cell.waiters.length > 0) {
      // A request arrived during an eager fence's long back-off (up to ~32 s after failures):
      // it waits the short one instead (5-node simulator seed 3822: a read timed out on a
      // partition whose quorum had been back for seconds).
      this.clock.clearTimeout(cell.retryTimer);
      cell.retryTimer = undefined;
      this.retryLater(cell);
      return;
    }
    if (cell.role === 'candidate' || cell.retryTimer !== undefined || cell.held !== undefined) return;
    // Learning: the old primary serves meanwhile; the fence follows the seal.
    if (cell.learn !== undefined) return;
    const primary = cell.primary;
    if (cell.role === 'primary' && primary !== undefined && primary.status === 'serving') {
      if (!cell.placementMoved && this.placedAsEpoch(cell.p, primary)) return; // established soon, or applying: a commit or apply calls advance again
      // The proposed set changed: a new epoch with the new set, once what is in flight settled.
      if (cell.pending.length > 0 || cell.batch !== null) {
        cell.sealing = true;
        return;
      }
    }
    this.startFence(cell);
  }

  private startFence(cell: Cell): void {
    const p = cell.p;
    if (!this.quorate && cell.replica.history.length === 0) {
      // A partition this node never held, proposed to it by a ring that is a minority of the
      // members it knows (cut off from most of the cluster): its set would be of the nodes it
      // still sees, and without a history no earlier set would need a quorum — a second primary
      // beside the majority's. Waiters get ERR_PARTITION_UNAVAILABLE after holdMs.
      this.log.debug({ p }, `partition ${p}: not fenced (this node sees a minority of the cluster and never held it)`);
      this.retryLater(cell);
      return;
    }
    const proposed = this.proposedSet(p);
    if (proposed.members.length < proposed.w) {
      // Fewer replicas on the ring than W (members down or cordoned): no write could commit, and
      // an epoch naming this set would hold every later fence to it (joint sets). Wait for the
      // ring to grow; waiters get ERR_PARTITION_UNAVAILABLE after holdMs.
      this.log.debug({ p, members: proposed.members, w: proposed.w }, `partition ${p}: not fenced (${proposed.members.length} replicas on the ring, W = ${proposed.w})`);
      this.retryLater(cell);
      return;
    }
    cell.sealing = false;
    if (cell.handoff !== undefined) this.endHandoff(cell, 'fencing again');
    // Resident actors stay valid across this fence only if this node served until now and the
    // fence finds no other node's later entries (then it fetches, see writeStart).
    cell.continuous = cell.role === 'primary' && cell.primary?.status === 'serving' && cell.continuous;
    cell.placementMoved = false;
    cell.fetchedFromPeer = false;
    cell.role = 'candidate';
    cell.primary = undefined;
    cell.recent = [];
    let term = Math.max(cell.maxTerm, cell.replica.promised.term, this.termFloor - 1);
    for (const h of cell.replica.history) term = Math.max(term, h.epoch.term);
    const epoch: Epoch = { term: term + 1, node: this.self };
    cell.maxTerm = epoch.term;
    this.counters.fences++;
    const r = cell.replica;
    const step = startCandidate({
      p,
      self: this.self,
      epoch,
      proposed,
      own: { last: r.last, history: r.history, commit: r.commit, clean: r.clean && !this.identityPending },
      cluster: { ask: this.ring!.members.map((m: RingMember) => m.id).filter((id) => id !== this.self), size: Math.max(1, this.known) },
    });
    cell.candidate = step.state;
    this.armFenceTimer(cell);
    this.candidateEffects(cell, step.effects);
  }

  private clearFenceTimer(cell: Cell): void {
    if (cell.fenceTimer !== undefined) this.clock.clearTimeout(cell.fenceTimer);
    cell.fenceTimer = undefined;
  }

  /** A fence that hears nothing for `fenceTimeoutMs` gives up (a fetch re-arms it per page). */
  private armFenceTimer(cell: Cell): void {
    this.clearFenceTimer(cell);
    cell.fenceTimer = this.clock.setTimeout(() => {
      cell.fenceTimer = undefined;
      if (cell.fetch !== undefined) return this.abandonFence(cell, `fetch from node ${cell.fetch.source} timed out`, true);
      this.stepCandidate(cell, { type: 'timeout' });
    }, this.fenceTimeoutMs);
  }

  private stepCandidate(cell: Cell, event: CandidateEvent): void {
    if (cell.candidate === undefined) return;
    const step = candidateReducer(cell.candidate, event);
    cell.candidate = step.state;
    this.candidateEffects(cell, step.effects);
  }

  private candidateEffects(cell: Cell, effects: CandidateEffect[]): void {
    // A promise is sent only once stored: never after a refused write.
    let stored: Promise<void> | undefined;
    for (const e of effects) {
      switch (e.type) {
        case 'persist-promise':
          cell.replica = { ...cell.replica, promised: e.epoch };
          stored = this.persist(cell, {});
          break;
        case 'send':
          this.sendAfterPersist(cell, e.to, e.msg, stored);
          break;
        case 'fetch': {
          const reqId = ++this.nextReq;
          cell.fetch = { reqId, source: e.source, after: e.after, upTo: e.upTo.seq, got: [] };
          cell.fetchedFromPeer = true;
          this.send(e.source, { type: 'fetch', p: cell.p, epoch: cell.candidate!.epoch, reqId, after: e.after, upTo: e.upTo.seq });
          break;
        }
        case 'write-start':
          this.writeStart(cell, e.start, e.known);
          break;
        case 'stale':
          cell.maxTerm = Math.max(cell.maxTerm, e.promised.term);
          this.abandonFence(cell, `node promised a later epoch ${fmt(e.promised)}`, true);
          break;
        case 'unavailable':
          this.abandonFence(cell, `no fencing quorum: missing promises from nodes ${e.missing.join(',')}`, true);
          break;
      }
    }
  }

  /** Step 5: the epoch's start entry; the candidate serves once it commits on W of every set. */
  private writeStart(cell: Cell, start: EpochStart, known: ReadonlyMap<number, number>): void {
    this.clearFenceTimer(cell);
    const seq = start.startSeq;
    const entry: LogEntry = { seq, epoch: start.epoch, start };
    const history = [...cell.replica.history, start];
    cell.replica = { ...cell.replica, last: { epoch: start.epoch, seq }, history };
    // Resident actors stay valid only if no other node can have written since they were read.
    if (!(cell.continuous && !cell.fetchedFromPeer)) {
      cell.actorEpoch = start.epoch;
      cell.brokenChains = undefined; // every actor of the partition reloads: their writes start over
      this.markStale(cell.p);
    }
    cell.continuous = true;
    cell.role = 'primary';
    cell.candidate = undefined;
    cell.recent = [entry];
    cell.earlyTail = 0; // what earlier epochs acknowledged early is below this start entry, or lost
    cell.startWrittenAt = this.clock.now();
    this.lag.reset(cell.p); // seqs shipped in an earlier epoch of ours are no probe for this one
    cell.primary = createPrimaryState({
      p: cell.p,
      self: this.self,
      epoch: start.epoch,
      sets: start.sets,
      startSeq: seq,
      history,
      last: seq,
      durable: seq - 1,
      known,
      base: cell.base.seq,
    });
    const now = this.clock.now();
    for (const m of cell.primary.matched.keys()) cell.progress.set(m, now);
    this.log.debug({ p: cell.p, epoch: start.epoch, startSeq: seq, sets: start.sets }, `partition ${cell.p}: start entry of epoch ${fmt(start.epoch)} written`);
    this.appendOwn(cell, entry, history);
  }

  private abandonFence(cell: Cell, why: string, retry = false): void {
    if (cell.role !== 'candidate') return;
    this.counters.failedFences++;
    this.clearFenceTimer(cell);
    cell.fetch = undefined;
    cell.candidate = undefined;
    cell.role = 'idle';
    // Resident actors kept from our last tenure (a primary re-fencing) were valid only if this
    // fence had succeeded: it did not, so another node may lead and write now. Drop them, or their
    // reads answer from the old tenure for as long as the ring keeps sending them here (5-node
    // simulator seed 3785: an acknowledged increment read back as lost, after the heal).
    if (cell.continuous) this.markStale(cell.p);
    cell.continuous = false;
    cell.handoffFence = false;
    this.log.info({ p: cell.p, why }, `partition ${cell.p}: fence abandoned (${why})`);
    if (retry) this.retryLater(cell);
  }

  /** With requests waiting, fence again after a jittered back-off (never in a tight loop). */
  private retryLater(cell: Cell): void {
    const wanted = () => cell.waiters.length > 0 || cell.fenceEagerly;
    if (!wanted() || cell.retryTimer !== undefined || this.closed) return;
    // Nobody waiting (an eager handoff fence): no hurry — back off, so that a loaded cluster is not
    // asked for the same fetches (snapshots) over and over.
    const eager = handoffDefaults.eagerRetryMs * 2 ** Math.min(4, cell.eagerFailures++);
    cell.retryEager = cell.waiters.length === 0;
    const delay = (cell.retryEager ? eager : this.retryMs) * (1 + this.random());
    cell.retryTimer = this.clock.setTimeout(() => {
      cell.retryTimer = undefined;
      if (wanted()) this.advance(cell);
    }, delay);
  }

  /** A later epoch exists (or the local store failed): stop serving; what was in flight has an unknown outcome. */
  private depose(cell: Cell, why: string, cause?: Error): void {
    if (cell.role !== 'primary') return;
    this.counters.depositions++;
    this.log.info({ p: cell.p, epoch: cell.primary?.epoch, why }, `partition ${cell.p}: stepped down (${why})`);
    cell.role = 'idle';
    cell.primary = undefined;
    cell.continuous = false;
    cell.sealing = false;
    cell.recent = [];
    cell.earlyTail = 0;
    this.markStale(cell.p);
    this.failPending(cell, cause ?? staleEpoch(cell.p));
    if (cell.handoff !== undefined) {
      // Handed off: what it held during the seal follows the new primary (routers resend ERR_NOT_PRIMARY).
      this.endHandoff(cell, 'deposed');
      if (this.table?.primaryOf(cell.p) !== this.self) this.rejectWaiters(cell, notPrimary(cell.p, this.self));
    }
    this.retryLater(cell);
  }

  // ── The primary's side ───────────────────────────────────────────────────────────────────

  private stepPrimary(cell: Cell, event: PrimaryEvent): void {
    const before = cell.primary;
    if (before === undefined || cell.role !== 'primary') return;
    const step = primaryReducer(before, event);
    cell.primary = step.state;
    if (event.type === 'message' && event.msg.type === 'appended') {
      const had = before.matched.get(event.from) ?? 0;
      if ((step.state.matched.get(event.from) ?? 0) > had) {
        cell.progress.set(event.from, this.clock.now());
        this.lag.confirmed(cell.p, event.from, event.msg.seq, this.clock.now());
        this.maybeTruncate(cell);
      }
    }
    for (const e of step.effects) {
      switch (e.type) {
        case 'ship':
          this.lag.shipped(cell.p, e.to, e.last, this.clock.now());
          this.ship(cell, e.to, e.after, e.last, e.commit);
          break;
        case 'snapshot':
          this.shipSnapshot(cell, e.to);
          break;
        case 'commit':
          cell.replica = { ...cell.replica, commit: Math.max(cell.replica.commit, e.seq) };
          // Committed on W: the writes are acknowledged now; applying them to the actor tables
          // follows (reads of the tables wait for it, see appliedThrough).
          this.settlePending(cell);
          this.scheduleApply(cell);
          break;
        case 'established':
          // Logged once the start entry committed on W of every set: only then does the node act
          // as primary (a candidate whose start entry never commits served nothing). The chaos
          // and failover tests check I1 over these lines.
          this.log.info(
            { p: cell.p, epoch: e.epoch, startSeq: cell.primary!.startSeq, sets: cell.primary!.sets, committedAfterMs: this.clock.now() - cell.startWrittenAt },
            `partition ${cell.p}: primary in epoch ${fmt(e.epoch)}`,
          );
          cell.fenceEagerly = false;
          cell.eagerFailures = 0;
          if (cell.handoffFence) this.handoffCompleted(cell, e.epoch);
          this.markEstablished(cell.p);
          break;
        case 'step-down':
          cell.maxTerm = Math.max(cell.maxTerm, e.promised.term);
          this.depose(cell, `a replica promised epoch ${fmt(e.promised)}`);
          break;
      }
    }
    if (cell.early.length > 0) this.settleEarly(cell);
  }

  /** Sends entries (after, last] to a member, in pages, from memory or the store. */
  private ship(cell: Cell, to: number, after: number, last: number, commit: number): void {
    const primary = cell.primary!;
    const recent = cell.recent;
    const firstRecent = recent.length > 0 ? recent[0]!.seq : last + 1;
    const fromRecent = (lo: number) => recent.slice(Math.max(0, lo + 1 - firstRecent), last - firstRecent + 1);
    if (after + 1 >= firstRecent) return this.sendPages(cell, to, primary.epoch, after, fromRecent(after), commit);
    // Older than what memory holds: read it (it is durable, recent entries are trimmed only once durable).
    // The in-memory part is taken now: `recent` may be trimmed while the store reads.
    const tail = fromRecent(firstRecent - 1);
    void this.store.entries(cell.p, after, firstRecent - 1 - after).then(
      (older) => {
        // Still this epoch's primary (the reducer's state is a new object after every step, so
        // compare the epoch: an identity check dropped nearly every read-back ship under load).
        if (cell.role !== 'primary' || cell.primary === undefined || !sameEpoch(cell.primary.epoch, primary.epoch)) return;
        this.sendPages(cell, to, primary.epoch, after, [...older, ...tail], commit);
      },
      (e: unknown) => {
        // Truncated meanwhile: the resend timer ships again from the new base (or a snapshot follows).
        if (!isTruncatedRead(e)) this.log.warn({ p: cell.p, err: e }, 'cannot read entries to ship');
      },
    );
  }

  /** A member lacks entries this log no longer has: send it the partition's applied state instead. */
  private shipSnapshot(cell: Cell, to: number): void {
    const primary = cell.primary!;
    const reqId = ++this.nextReq;
    cell.progress.set(to, this.clock.now());
    // After what is queued: the snapshot's base (the applied point) is then at or past the log's base.
    void cell.lastPersist
      .then(() => this.store.snapshot(cell.p))
      .then(
        (snap) => {
          if (cell.role !== 'primary' || cell.primary === undefined || !sameEpoch(cell.primary.epoch, primary.epoch)) return;
          this.sendSnapshot(to, cell.p, primary.epoch, reqId, snap);
          this.log.info({ p: cell.p, to, base: snap.base.seq, actors: snap.actors.length }, `partition ${cell.p}: snapshot sent to node ${to}`);
        },
        (e: unknown) => this.log.warn({ p: cell.p, err: e }, 'cannot read a partition snapshot'),
      );
  }

  /** Pages of at most `snapshotPageBytes` of actor images, each its own payload (the transport bounds a frame). */
  private sendSnapshot(to: number, p: number, epoch: Epoch, reqId: number, snap: PartitionSnapshot): void {
    this.counters.snapshotsSent++;
    const { base, history } = snap;
    let part = 0;
    let page: ActorImage[] = [];
    let bytes = 0;
    const flush = (done: boolean) => {
      const msg: SnapshotMessage = { type: 'snapshot', p, epoch, reqId, part: part++, base, history: [...history], actors: page, done };
      this.sendAlone(to, msg);
      page = [];
      bytes = 0;
    };
    for (const a of snap.actors) {
      const size = JSON.stringify(a).length;
      if (page.length > 0 && bytes + size > replicationDefaults.snapshotPageBytes) flush(false);
      page.push(a);
      bytes += size;
    }
    flush(true);
  }

  /**
   * Log prefix truncation (I5), in batches off the hot path. A primary truncates to the point
   * every member of its set confirmed and it applied; a replica to what the primary announced,
   * never past what it applied itself.
   */
  private maybeTruncate(cell: Cell): void {
    if (cell.truncating || this.closed || cell.held !== undefined) return;
    const primary = cell.role === 'primary' ? cell.primary : undefined;
    const target = primary !== undefined ? truncationPoint(primary, cell.applied) : Math.min(cell.truncateTarget, cell.applied, cell.replica.last.seq);
    const base = cell.base.seq;
    if (target <= base) return;
    const now = this.clock.now();
    if (target - base < replicationDefaults.truncateBatch && now - cell.lastTruncateAt < replicationDefaults.truncateEveryMs) return;
    cell.truncating = true;
    cell.lastTruncateAt = now;
    // The reducer stops shipping below the target now, before the store deletes it.
    if (primary !== undefined) this.stepPrimary(cell, { type: 'truncated', base: target });
    this.store.truncatePrefix(cell.p, target).then(
      (b) => {
        cell.truncating = false;
        this.counters.truncations++;
        if (b.seq > cell.base.seq) cell.base = b;
      },
      (e: unknown) => {
        cell.truncating = false;
        this.log.warn({ p: cell.p, err: e, target }, `partition ${cell.p}: prefix truncation failed`);
      },
    );
  }

  private sendPages(cell: Cell, to: number, epoch: Epoch, after: number, entries: LogEntry[], commit: number): void {
    const history = cell.replica.history;
    const page = replicationDefaults.page;
    const t = cell.primary === undefined ? 0 : truncationPoint(cell.primary, cell.applied);
    let prevSeq = after;
    for (let i = 0; i < entries.length || i === 0; i += page) {
      const chunk = entries.slice(i, i + page);
      const prev = { epoch: prevSeq === 0 ? ZERO_EPOCH : epochAt(history, prevSeq), seq: prevSeq };
      this.counters.appendsSent++;
      this.send(to, { type: 'append', p: cell.p, epoch, prev, entries: chunk, commit, ...(t > 0 && { truncate: t }) });
      if (chunk.length === 0) break;
      prevSeq = chunk[chunk.length - 1]!.seq;
    }
  }

  /** Resends to members that confirmed nothing for `resendMs` (a lost frame, a reconnect). */
  private armResend(): void {
    this.resendTimer = this.clock.setTimeout(() => {
      if (this.closed) return;
      const now = this.clock.now();
      for (const cell of this.cells.values()) {
        const primary = cell.primary;
        if (cell.handoff !== undefined) this.handoffTick(cell, now);
        if (cell.role !== 'primary' || primary === undefined) continue;
        for (const [m, matched] of primary.matched) {
          if (matched >= primary.last) continue;
          const patience = primary.snapshotting.has(m) ? replicationDefaults.snapshotTimeoutMs : this.resendMs;
          if (now - (cell.progress.get(m) ?? 0) < patience) continue;
          cell.progress.set(m, now);
          this.stepPrimary(cell, { type: 'resend', to: m });
        }
      }
      this.armResend();
    }, this.resendMs);
  }

  // ── Applying committed entries ───────────────────────────────────────────────────────────

  /**
   * Applies what is committed to the actor tables, one apply in flight per partition (so applies
   * batch under load). A primary applies at once: its activations wait for it. A replica, whose
   * tables nobody reads until it leads, batches: an apply transaction per append would double
   * its write load.
   */
  private scheduleApply(cell: Cell, deferred = false): void {
    if (cell.applying || cell.applyTimer !== undefined || cell.replica.commit <= cell.applied) return;
    if (!deferred && cell.role === 'idle' && cell.applyWaiters.length === 0) {
      cell.applyTimer = this.clock.setTimeout(() => {
        cell.applyTimer = undefined;
        this.scheduleApply(cell, true);
      }, replicationDefaults.replicaApplyMs);
      return;
    }
    cell.applying = true;
    const target = Math.min(cell.replica.commit, cell.replica.last.seq);
    // After the persists queued so far: the entries to apply are in the store by then.
    const applied = cell.lastPersist.then(() => this.store.apply(cell.p, target));
    applied.then(
      (upTo) => {
        cell.applying = false;
        cell.applied = Math.max(cell.applied, upTo);
        this.releaseApplyWaiters(cell);
        if (cell.waiters.length > 0) this.advance(cell);
        this.scheduleApply(cell);
        this.maybeTruncate(cell);
      },
      (e: unknown) => {
        cell.applying = false;
        this.rejectApplyWaiters(cell, e as Error);
        this.log.error({ p: cell.p, err: e }, `partition ${cell.p}: cannot apply committed entries`);
        if (cell.role === 'primary') this.depose(cell, 'apply failed', e as Error);
      },
    );
  }

  /** Resolves once the actor tables hold every entry up to `seq` (applying now if need be). */
  private appliedThrough(cell: Cell, seq: number): Promise<void> {
    if (cell.applied >= seq) return Promise.resolve();
    return new Promise((resolve, reject) => {
      cell.applyWaiters.push({ seq, resolve, reject });
      if (cell.applyTimer !== undefined) {
        this.clock.clearTimeout(cell.applyTimer);
        cell.applyTimer = undefined;
      }
      this.scheduleApply(cell);
    });
  }

  private rejectApplyWaiters(cell: Cell, e: Error): void {
    const waiters = cell.applyWaiters;
    cell.applyWaiters = [];
    for (const w of waiters) w.reject(e);
  }

  private releaseApplyWaiters(cell: Cell): void {
    if (cell.applyWaiters.length === 0) return;
    const still = [];
    for (const w of cell.applyWaiters) {
      if (w.seq <= cell.applied) w.resolve();
      else still.push(w);
    }
    cell.applyWaiters = still;
  }

  /** Acknowledges the writes of every entry up to the commit point. */
  private settlePending(cell: Cell): void {
    let n = 0;
    const commit = cell.primary?.commit ?? cell.replica.commit;
    while (n < cell.pending.length && cell.pending[n]!.seq <= commit) {
      for (const s of cell.pending[n]!.settle) s(null);
      n++;
    }
    if (n > 0) cell.pending.splice(0, n);
    if (cell.handoff?.seal !== undefined) this.answerSeal(cell);
    if (cell.sealing && cell.pending.length === 0 && cell.batch === null) {
      cell.sealing = false;
      this.advance(cell);
    }
  }

  private failPending(cell: Cell, e: Error): void {
    const pending = cell.pending;
    const early = cell.early;
    cell.pending = [];
    cell.early = [];
    for (const entry of pending) for (const s of entry.settle) s(e);
    for (const w of early) w.settle(e);
  }

  /**
   * Acknowledges the writes whose kind's rule is met: enough members of the epoch's set hold
   * their entry (capped by the set's size, as W is). One settled before the commit point reached
   * it raises `earlyTail`, which activations wait for.
   */
  private settleEarly(cell: Cell): void {
    const primary = cell.primary;
    if (primary === undefined || cell.role !== 'primary') return;
    const size = ownSet(primary).members.length;
    const still: EarlyWrite[] = [];
    for (const w of cell.early) {
      if (copiesHolding(primary, w.seq) < Math.min(w.copies, size)) {
        still.push(w);
        continue;
      }
      if (w.seq > cell.replica.commit) cell.earlyTail = Math.max(cell.earlyTail, w.seq);
      w.settle(null);
    }
    cell.early = still;
  }

  // ── Receiving ────────────────────────────────────────────────────────────────────────────

  private onPayload(from: PeerIdentity, payload: unknown): void {
    if (!Array.isArray(payload) || payload[0] !== R_REPL || this.closed) return;
    // A joiner may fence before gossip has brought it into this node's ring: its answers must
    // reach it all the same (a dropped promise stalled a moved partition for a whole fence
    // timeout). The transport authenticated the peer; the next ring replaces the map anyway.
    if (!this.addresses.has(from.id)) this.addresses.set(from.id, from.address);
    this.senders.set(from.id, from.address);
    const msgs = payload[1];
    if (!Array.isArray(msgs)) return void this.counters.badMessages++;
    for (const raw of msgs) {
      const msg = parseWireMessage(raw, this.partitions);
      if (msg === undefined) {
        this.counters.badMessages++;
        continue;
      }
      if (msg.type === 'digest') {
        this.antiEntropy.received(from.id, msg);
        continue;
      }
      try {
        this.onMessage(from.id, msg);
      } catch (e) {
        this.counters.badMessages++;
        this.log.error({ err: e, from: from.id, type: msg.type, p: msg.p }, 'replication message failed');
      }
    }
  }

  private onMessage(from: number, msg: WireMessage): void {
    const cell = this.cellOf(msg.p);
    cell.maxTerm = Math.max(cell.maxTerm, msg.epoch.term);
    if (this.onHandoffMessage(cell, from, msg)) return;
    switch (msg.type) {
      case 'prepare':
      case 'append':
        return this.stepReplica(cell, from, msg);
      case 'promise':
      case 'unclean':
        return this.stepCandidate(cell, { type: 'message', from, msg });
      case 'stale':
        cell.maxTerm = Math.max(cell.maxTerm, msg.promised.term);
        if (cell.candidate && sameEpoch(cell.candidate.epoch, msg.epoch)) return this.stepCandidate(cell, { type: 'message', from, msg });
        if (cell.primary && sameEpoch(cell.primary.epoch, msg.epoch)) return this.stepPrimary(cell, { type: 'message', from, msg });
        return;
      case 'appended':
      case 'mismatch':
        if (cell.primary && sameEpoch(cell.primary.epoch, msg.epoch)) this.stepPrimary(cell, { type: 'message', from, msg });
        return;
      case 'fetch':
        return this.serveFetch(cell, from, msg);
      case 'entries':
        return this.onEntries(cell, from, msg);
      case 'snapshot':
        return this.onSnapshot(cell, from, msg);
    }
  }

  private stepReplica(cell: Cell, from: number, msg: ReplicationMessage): void {
    if (cell.held !== undefined) return void cell.held.push({ from, msg });
    const step = replicaReducer(cell.replica, { type: 'message', from, msg });
    cell.replica = step.state;
    if (this.identityPending)
      // An empty store that may be a replaced host's (it has not joined yet): it promises, but
      // its copy counts toward no quorum (5-node simulator seed 4349: a host replaced while cut
      // off answered a fence before its join-ack said its id had lived, and the fence claimed an
      // epoch below one established on the copy it had lost).
      step.effects = step.effects.map((e) => (e.type === 'send' && e.msg.type === 'promise' ? { ...e, msg: { type: 'unclean', p: e.msg.p, epoch: e.msg.epoch } } : e));
    let truncateAfter: number | undefined;
    let entries: LogEntry[] | undefined;
    let changed = false;
    let commit = false;
    const sends: Array<{ to: number; msg: ReplicationMessage }> = [];
    for (const e of step.effects) {
      if (e.type === 'truncate') truncateAfter = e.after;
      else if (e.type === 'persist-entries') entries = [...(entries ?? []), ...e.entries];
      else if (e.type === 'send') sends.push(e);
      else if (e.type === 'commit') commit = true;
      if (e.type !== 'send' && e.type !== 'commit') changed = true;
    }
    // What this step changed must be stored before any answer leaves: an acknowledgement of
    // entries the disk refused would count a copy that does not exist (the simulator's seed 2019:
    // a replica on a full disk acked, its primary committed with one real copy, and it was lost).
    const stored = changed ? this.persist(cell, { ...(truncateAfter !== undefined && { truncateAfter }), ...(entries && { entries }) }) : undefined;
    for (const s of sends) this.sendAfterPersist(cell, s.to, s.msg, stored);
    if (commit) this.scheduleApply(cell);
    if (msg.type === 'append' && msg.truncate !== undefined && sameEpoch(msg.epoch, cell.replica.promised) && cell.role !== 'primary') {
      cell.truncateTarget = Math.max(cell.truncateTarget, msg.truncate);
      this.maybeTruncate(cell);
    }
    this.promisedMoved(cell);
  }

  /** Our own replica promised a later epoch: a primary or candidate of ours is over. */
  private promisedMoved(cell: Cell): void {
    const promised = cell.replica.promised;
    if (cell.primary && compareEpoch(promised, cell.primary.epoch) > 0) this.depose(cell, `this node promised epoch ${fmt(promised)}`);
    if (cell.candidate && compareEpoch(promised, cell.candidate.epoch) > 0) this.abandonFence(cell, `this node promised epoch ${fmt(promised)}`, true);
  }

  private serveFetch(cell: Cell, from: number, msg: Extract<FetchMessage, { type: 'fetch' }>): void {
    const { p, epoch, reqId, after, upTo } = msg;
    const page = replicationDefaults.page;
    // After what is queued: the entries the promise reported are durable by then.
    void cell.lastPersist
      .then(async () => {
        let from_ = after;
        if (upTo <= after) return this.send(from, { type: 'entries', p, epoch, reqId, entries: [], done: true });
        for (;;) {
          let entries: LogEntry[];
          try {
            entries = await this.store.entries(p, from_, Math.min(page, upTo - from_));
          } catch (e) {
            if (!isTruncatedRead(e)) throw e;
            // Truncated here: the applied state first, then the entries after its base.
            const snap = await this.store.snapshot(p);
            this.sendSnapshot(from, p, epoch, reqId, snap);
            this.log.info({ p, to: from, base: snap.base.seq, actors: snap.actors.length }, `partition ${p}: snapshot sent to node ${from} (fetch)`);
            from_ = snap.base.seq;
            if (from_ >= upTo) return this.send(from, { type: 'entries', p, epoch, reqId, entries: [], done: true });
            continue;
          }
          const end = entries.length === 0 ? from_ : entries[entries.length - 1]!.seq;
          const done = entries.length === 0 || end >= upTo;
          this.send(from, { type: 'entries', p, epoch, reqId, entries, done });
          if (done) return;
          from_ = end;
        }
      })
      .catch((e: unknown) => this.log.warn({ p, err: e }, 'cannot serve a fetch'));
  }

  private onEntries(cell: Cell, from: number, msg: Extract<FetchMessage, { type: 'entries' }>): void {
    const f = cell.fetch;
    if (f === undefined || f.reqId !== msg.reqId || f.source !== from || cell.candidate === undefined) return;
    for (const e of msg.entries) f.got.push(e);
    if (!msg.done) return this.armFenceTimer(cell);
    cell.fetch = undefined;
    const got = f.got;
    const image = f.image;
    if (image !== undefined && !image.done) return this.abandonFence(cell, `node ${from}'s snapshot did not arrive whole`, true);
    // With a snapshot, the log goes on from its base.
    const after = image?.base.seq ?? f.after;
    const contiguous = got.every((e, i) => e.seq === after + 1 + i) && (got.length === 0 ? after : got[got.length - 1]!.seq) === f.upTo;
    if (!contiguous) return this.abandonFence(cell, `node ${from} did not have entries ${after + 1}..${f.upTo}`, true);
    const candidate = cell.candidate;
    // An unclean candidate fetches from 0 (it cannot vouch for its log), but what it applied is
    // committed — the same entries in every log — and the store keeps applied entries: the
    // fetched log goes on after them rather than rewriting them.
    const kept = image === undefined ? Math.max(after, Math.min(cell.applied, f.upTo)) : after;
    const fetched = kept > after ? got.filter((e) => e.seq > kept) : got;
    const store = () => {
      const { last, history } = logWithFetched(cell.replica, kept, fetched);
      const before = cell.replica;
      const stored = { ...before, last, history };
      cell.replica = stored;
      this.persist(cell, image === undefined ? { truncateAfter: kept, entries: fetched } : { entries: got }).then(
        () => {
          if (cell.candidate === candidate) this.stepCandidate(cell, { type: 'fetched', last, history });
        },
        (e: unknown) => {
          // As the learner does: memory must not claim entries the store refused.
          if (cell.replica === stored) cell.replica = before;
          this.abandonFence(cell, `cannot store fetched entries: ${(e as Error).message}`, true);
        },
      );
    };
    if (image === undefined) return store();
    this.install(cell, image).then(
      (installed) => {
        if (cell.candidate !== candidate) return;
        if (!installed) return this.abandonFence(cell, `node ${from}'s snapshot is behind what this node applied`, true);
        store();
      },
      (e: unknown) => this.abandonFence(cell, `cannot install node ${from}'s snapshot: ${(e as Error).message}`, true),
    );
  }

  /**
   * A snapshot page: for a fetch of ours (the source truncated below what we asked for), or from
   * the primary of an epoch we may promise (our log is behind the base of its log).
   */
  private onSnapshot(cell: Cell, from: number, msg: SnapshotMessage): void {
    const f = cell.fetch;
    if (f !== undefined && f.reqId === msg.reqId && f.source === from && cell.candidate !== undefined) {
      f.image = this.collect(f.image, from, msg);
      if (f.image === undefined) return this.abandonFence(cell, `node ${from}'s snapshot pages arrived out of order`, true);
      return this.armFenceTimer(cell);
    }
    // Only an epoch's own primary sends its members snapshots.
    if (msg.epoch.node !== from || cell.held !== undefined) return;
    const promised = cell.replica.promised;
    if (compareEpoch(msg.epoch, promised) < 0) return this.send(from, { type: 'stale', p: cell.p, epoch: msg.epoch, promised });
    cell.incoming = this.collect(cell.incoming, from, msg);
    const image = cell.incoming;
    if (image === undefined || !image.done) return;
    cell.incoming = undefined;
    if (compareEpoch(msg.epoch, promised) > 0) {
      // A later epoch's primary was established by a fencing quorum: its epoch is the promise now (as for an append).
      cell.replica = { ...cell.replica, promised: msg.epoch };
      this.promisedMoved(cell);
    }
    this.install(cell, image).then(
      () => this.send(from, { type: 'appended', p: cell.p, epoch: msg.epoch, seq: image.base.seq }),
      (e: unknown) => this.log.error({ p: cell.p, err: e }, `partition ${cell.p}: cannot install the snapshot from node ${from}`),
    );
  }

  /** Adds a page to the transfer in progress; undefined when the page does not continue it (the sender starts over). */
  private collect(into: Incoming | undefined, from: number, msg: SnapshotMessage): Incoming | undefined {
    if (msg.part === 0 && (into === undefined || into.reqId !== msg.reqId || into.from !== from)) {
      into = { from, reqId: msg.reqId, epoch: msg.epoch, next: 0, base: msg.base, history: [...msg.history], actors: [], done: false };
    }
    if (into === undefined || into.reqId !== msg.reqId || into.from !== from) return undefined;
    if (msg.part < into.next) return into; // a duplicate
    if (msg.part !== into.next) return undefined;
    into.next++;
    for (const a of msg.actors) into.actors.push(a);
    into.done = msg.done;
    return into;
  }

  /**
   * Replaces the partition's actor rows and log by the snapshot, holding replica messages
   * meanwhile. Resolves false when the store had applied past it already (nothing changed).
   */
  private install(cell: Cell, image: Incoming): Promise<boolean> {
    cell.held = [];
    const meta = metaOf(cell);
    const snap: PartitionSnapshot = { base: image.base, history: image.history, actors: image.actors };
    const done = cell.lastPersist.then(() => this.store.install(cell.p, snap, meta));
    cell.lastPersist = done.then(
      () => undefined,
      () => undefined,
    );
    const release = () => {
      const held = cell.held ?? [];
      cell.held = undefined;
      for (const h of held) this.stepReplica(cell, h.from, h.msg);
      if (cell.waiters.length > 0) this.advance(cell);
    };
    return done.then(
      ({ installed, applied }) => {
        if (installed) {
          const base = image.base;
          cell.replica = {
            ...cell.replica,
            last: base,
            history: truncateHistory(image.history, base.seq),
            commit: Math.max(cell.replica.commit, base.seq),
          };
          cell.base = base;
          cell.recent = [];
          this.counters.snapshotsInstalled++;
          // The actor tables changed under any resident actor of the partition.
          this.markStale(cell.p);
          this.log.info({ p: cell.p, base: base.seq, actors: image.actors.length, from: image.from }, `partition ${cell.p}: snapshot installed`);
        }
        cell.applied = Math.max(cell.applied, applied);
        release();
        return installed;
      },
      (e: unknown) => {
        release();
        throw e;
      },
    );
  }

  // ── Handoff (handoff.ts): learner, seal, rate limit, drain ─────────────────────────────────

  /**
   * Where this node's requests for `p` go while it learns p from the old primary: that primary
   * (it still serves), or undefined when this node serves p itself or fences it as usual.
   */
  handoffTarget(p: number): { id: number; address: string } | undefined {
    const learn = this.cells.get(p)?.learn;
    if (learn === undefined || this.table?.primaryOf(p) !== this.self) return undefined;
    const address = this.addresses.get(learn.source) ?? this.handoffPeers.get(learn.source);
    return address === undefined ? undefined : { id: learn.source, address };
  }

  /**
   * Partitions this node's ring proposes it as primary of: where its reminders must fire
   * (src/node/reminders.ts wakes their due actors there; the activation's read fences a
   * partition not yet established, as a request would).
   */
  proposedHere(): Set<number> {
    const out = new Set<number>();
    const table = this.table;
    if (table === undefined || this.draining) return out;
    for (let p = 0; p < this.partitions; p++) if (table.primaryOf(p) === this.self) out.add(p);
    return out;
  }

  /**
   * Fences now the partitions of `ps` this node is proposed to lead that fail over to it (idle
   * copies with data whose last epoch's primary is off the ring, as `fenceOnFailover` picks)
   * and that no handoff is bringing here. Durable reminders (src/node/reminders.ts) call it
   * every few seconds, so they fire after a failover without waiting for a request, while a
   * draining primary's offers (re-sent every second) are seen first and keep their handoff.
   */
  fenceFailedOver(ps: Iterable<number>): number {
    const ring = this.ring;
    if (ring === undefined || ring.size < 2 || this.draining) return 0;
    let n = 0;
    for (const p of ps) {
      const cell = this.cells.get(p);
      if (cell === undefined || cell.role !== 'idle' || cell.learn !== undefined || cell.handoffFence || this.table?.primaryOf(p) !== this.self) continue;
      const last = cell.replica.history[cell.replica.history.length - 1];
      if (last === undefined || cell.replica.last.seq === 0 || ring.has(last.epoch.node)) continue;
      this.advance(cell);
      n++;
    }
    return n;
  }

  /** Partitions this node serves as primary (a drain waits for none). */
  leads(): number {
    let n = 0;
    for (const c of this.cells.values()) if (c.role === 'primary') n++;
    return n;
  }

  /**
   * A graceful leave begins: from now on this node proposes itself for nothing, offers every
   * partition it leads to the primary the others' rings will propose once it is gone, and keeps
   * serving each until that node's fence deposes it. Call before announcing the leave.
   */
  drain(): void {
    if (this.draining || this.ring === undefined) return;
    this.draining = true;
    this.setMembers(this.ring, this.quorate, this.known);
  }

  /** As the old primary: offer p to its new proposed primary, and keep serving it meanwhile. True if handing off. */
  private offerHandoff(cell: Cell): boolean {
    const primary = cell.primary;
    const to = this.table?.primaryOf(cell.p);
    if (cell.role !== 'primary' || primary === undefined || primary.status !== 'serving' || to === undefined || to === this.self) return false;
    if (primary.commit < primary.startSeq) return false; // not established: nothing to hand off
    const now = this.clock.now();
    if (cell.handoff?.to !== to) {
      if (cell.handoff !== undefined) this.endHandoff(cell, `now proposed for node ${to}`);
      cell.handoff = { to, since: now, lastContact: now };
    }
    this.sendOffer(cell);
    return true;
  }

  private sendOffer(cell: Cell): void {
    const primary = cell.primary!;
    const set = ownSet(primary);
    this.send(cell.handoff!.to, { type: 'offer', p: cell.p, epoch: primary.epoch, commit: primary.commit, members: [...set.members] });
  }

  /** The old primary stops handing off (deposed, moved back, timed out): sealed requests go on or fail. */
  private endHandoff(cell: Cell, why: string): void {
    const h = cell.handoff;
    if (h === undefined) return;
    cell.handoff = undefined;
    if (h.seal !== undefined) this.clock.clearTimeout(h.seal.timer);
    this.log.debug({ p: cell.p, to: h.to, why }, `partition ${cell.p}: handoff to node ${h.to} ended (${why})`);
  }

  /** Handoff messages, and the learner's fetch answers; false for anything else. */
  private onHandoffMessage(cell: Cell, from: number, msg: WireMessage): boolean {
    switch (msg.type) {
      case 'offer':
        this.onOffer(cell, from, msg);
        return true;
      case 'seal':
        this.onSeal(cell, from, msg);
        return true;
      case 'sealed':
      case 'behind':
      case 'decline':
        this.onSealAnswer(cell, from, msg);
        return true;
      case 'entries':
      case 'snapshot': {
        const learn = cell.learn;
        if (learn?.fetch === undefined || learn.reqId !== msg.reqId || learn.source !== from) return false;
        this.onLearnPage(cell, learn, msg);
        return true;
      }
      default:
        return false;
    }
  }

  /** As the new proposed primary (now or once the ring says so): queue a learner. */
  private onOffer(cell: Cell, from: number, msg: Extract<HandoffMessage, { type: 'offer' }>): void {
    if (this.closed || this.draining) return;
    // Already serving or fencing, or an offer of an epoch this node knows to be over: ignore.
    if (cell.role !== 'idle' || compareEpoch(msg.epoch, cell.replica.promised) < 0) return;
    const learn = cell.learn;
    if (learn !== undefined && learn.source === from && compareEpoch(msg.epoch, learn.epoch) >= 0) {
      // The same primary again, perhaps in a later epoch (it re-fenced when the joiner changed its
      // set): its log only grew, so what was learned stands — go on from there, do not start over.
      learn.epoch = msg.epoch;
      learn.commit = Math.max(learn.commit, msg.commit);
      return;
    }
    if (learn !== undefined) this.endLearn(cell, `a new offer from node ${from}`);
    const address = this.addresses.get(from) ?? this.peerAddress(from);
    if (address !== undefined) this.handoffPeers.set(from, address);
    cell.learn = {
      source: from,
      epoch: msg.epoch,
      commit: msg.commit,
      member: msg.members.includes(this.self) || cell.replica.last.seq > 0 || cell.applied > 0,
      phase: 'queued',
      since: this.clock.now(),
      reqId: 0,
      fetched: false,
    };
    this.learnQueue.push(cell.p);
    this.pumpLearners();
  }

  /** Starts queued learners whose partition this node is proposed for, up to maxLearning at once. */
  private pumpLearners(): void {
    if (this.learnQueue.length === 0) return;
    const ready = this.learnQueue.filter((p) => this.cells.get(p)?.learn?.phase === 'queued' && this.table?.primaryOf(p) === this.self);
    for (const p of admitLearners(ready, this.learning.size, this.maxLearning)) {
      const cell = this.cells.get(p)!;
      this.learnQueue.splice(this.learnQueue.indexOf(p), 1);
      this.learning.add(p);
      this.counters.handoffsStarted++;
      // A member of the old set holds the log already: straight to the seal.
      if (cell.learn!.member) this.requestSeal(cell);
      else this.learnFetch(cell);
    }
  }

  /** Every learner step hears back in time (fetch pages: learnPageTimeoutMs; seals: seal + fence timeouts), or the learner gives up. */
  private armLearnTimer(cell: Cell, ms: number): void {
    const learn = cell.learn!;
    if (learn.timer !== undefined) this.clock.clearTimeout(learn.timer);
    learn.timer = this.clock.setTimeout(() => {
      learn.timer = undefined;
      if (cell.learn === learn) this.endLearn(cell, `node ${learn.source} did not answer (${learn.phase})`, true);
    }, ms);
  }

  /** Fetch the old primary's log up to its commit point (a snapshot first where it truncated). */
  private learnFetch(cell: Cell): void {
    const learn = cell.learn!;
    const after = learn.fetched ? cell.replica.last.seq : 0;
    learn.phase = 'fetching';
    learn.reqId = ++this.nextReq;
    learn.fetch = { after, upTo: Math.max(after, learn.commit), got: [] };
    this.armLearnTimer(cell, Math.max(this.fenceTimeoutMs, handoffDefaults.learnPageTimeoutMs));
    this.send(learn.source, { type: 'fetch', p: cell.p, epoch: learn.epoch, reqId: learn.reqId, after, upTo: learn.fetch.upTo });
  }

  private onLearnPage(cell: Cell, learn: Learn, msg: Extract<WireMessage, { type: 'entries' | 'snapshot' }>): void {
    const f = learn.fetch!;
    this.armLearnTimer(cell, Math.max(this.fenceTimeoutMs, handoffDefaults.learnPageTimeoutMs));
    if (msg.type === 'snapshot') {
      f.image = this.collect(f.image, learn.source, msg);
      if (f.image === undefined) this.endLearn(cell, `node ${learn.source}'s snapshot pages arrived out of order`, true);
      return;
    }
    for (const e of msg.entries) f.got.push(e);
    if (!msg.done) return;
    learn.fetch = undefined;
    const { got, image } = f;
    if (image !== undefined && !image.done) return this.endLearn(cell, `node ${learn.source}'s snapshot did not arrive whole`, true);
    const after = image?.base.seq ?? f.after;
    // A snapshot may end past `upTo`: the old primary snapshots at its commit point now, which
    // has moved on since the offer named `upTo`. Reaching `upTo` is what the learner needs.
    const contiguous = got.every((e, i) => e.seq === after + 1 + i) && (got.length === 0 ? after : got[got.length - 1]!.seq) >= f.upTo;
    if (!contiguous) return this.endLearn(cell, `node ${learn.source} did not have entries ${after + 1}..${f.upTo}`, true);
    const store = () => {
      // What was fetched is committed on the old primary's set (the learner asked for its commit point).
      const { last, history } = logWithFetched(cell.replica, after, got);
      const before = cell.replica;
      const stored = { ...before, last, history, commit: Math.max(Math.min(before.commit, after), last.seq) };
      cell.replica = stored;
      this.persist(cell, image === undefined ? { truncateAfter: after, entries: got } : { entries: got }).then(
        () => {
          if (cell.learn !== learn) return;
          learn.fetched = true;
          this.scheduleApply(cell);
          this.requestSeal(cell);
        },
        (e: unknown) => {
          // The store refused the change: memory must not claim entries the log does not hold
          // (every later append would then fail to follow it).
          if (cell.replica === stored) cell.replica = before;
          this.endLearn(cell, `cannot store fetched entries: ${(e as Error).message}`, true);
        },
      );
    };
    if (image === undefined) return store();
    this.install(cell, image).then(
      (installed) => {
        if (cell.learn !== learn) return;
        if (!installed) return this.endLearn(cell, `node ${learn.source}'s snapshot is behind what this node applied`, true);
        store();
      },
      (e: unknown) => this.endLearn(cell, `cannot install node ${learn.source}'s snapshot: ${(e as Error).message}`, true),
    );
  }

  private requestSeal(cell: Cell): void {
    const learn = cell.learn!;
    learn.phase = 'sealing';
    learn.reqId = ++this.nextReq;
    this.armLearnTimer(cell, this.sealTimeoutMs + this.fenceTimeoutMs);
    this.send(learn.source, { type: 'seal', p: cell.p, epoch: learn.epoch, reqId: learn.reqId, have: cell.replica.last.seq });
  }

  /** As the old primary: seal if the learner is close, else tell it how far to fetch. */
  private onSeal(cell: Cell, from: number, msg: Extract<HandoffMessage, { type: 'seal' }>): void {
    const { p, epoch, reqId } = msg;
    const primary = cell.primary;
    const h = cell.handoff;
    const serving =
      cell.role === 'primary' && primary !== undefined && primary.status === 'serving' && sameEpoch(primary.epoch, epoch) && h !== undefined && h.to === from;
    const decision = sealDecision({ serving, last: cell.replica.last.seq, have: msg.have, sealGap: handoffDefaults.sealGap });
    if (decision === 'decline') return this.send(from, { type: 'decline', p, epoch, reqId });
    h!.lastContact = this.clock.now();
    if (decision === 'behind') return this.send(from, { type: 'behind', p, epoch, reqId, commit: cell.replica.commit });
    if (h!.seal !== undefined) this.clock.clearTimeout(h!.seal.timer);
    const seal = {
      reqId,
      answered: false,
      // Nobody fenced in time (the learner died, a message was lost): serve again; the learner retries later.
      timer: this.clock.setTimeout(() => {
        if (cell.handoff !== h || h!.seal !== seal) return;
        h!.seal = undefined;
        this.counters.handoffsTimedOut++;
        this.log.info({ p, to: from }, `partition ${p}: seal for node ${from} timed out after ${this.sealTimeoutMs} ms; serving again`);
        if (cell.waiters.length > 0) this.advance(cell);
      }, this.sealTimeoutMs),
    };
    h!.seal = seal;
    this.answerSeal(cell);
  }

  /** Sealed, once every write appended before the seal has committed: the learner may fence now. */
  private answerSeal(cell: Cell): void {
    const seal = cell.handoff?.seal;
    if (seal === undefined || seal.answered || cell.pending.length > 0 || cell.batch !== null) return;
    seal.answered = true;
    this.send(cell.handoff!.to, { type: 'sealed', p: cell.p, epoch: cell.primary!.epoch, reqId: seal.reqId, last: cell.replica.last.seq });
  }

  /** As the learner: sealed → fence (as always: old and new sets jointly); behind → fetch more; decline → fence lazily. */
  private onSealAnswer(cell: Cell, from: number, msg: Extract<HandoffMessage, { type: 'sealed' | 'behind' | 'decline' }>): void {
    const learn = cell.learn;
    if (learn === undefined || learn.source !== from || learn.reqId !== msg.reqId || learn.phase !== 'sealing') return;
    if (msg.type === 'decline') return this.endLearn(cell, `node ${from} does not lead the partition in epoch ${fmt(learn.epoch)}`);
    if (msg.type === 'behind') {
      // A copy of its own too far behind to seal: the fence catches it up (by epoch, see `member`).
      if (learn.member && !learn.fetched) return this.endLearn(cell, `${msg.commit - cell.replica.last.seq} entries behind node ${from}: fencing`, true);
      learn.commit = Math.max(learn.commit, msg.commit);
      return this.learnFetch(cell);
    }
    this.endLearn(cell, 'sealed');
    if (this.table?.primaryOf(cell.p) !== this.self || cell.role !== 'idle') return;
    cell.handoffFence = true;
    cell.fenceEagerly = true;
    this.startFence(cell);
  }

  /**
   * The learner stops. `fence`: the old primary may still lead p (a timeout, a failed fetch): fence
   * now rather than on first use, so a draining node is not left leading it until its timeout.
   */
  private endLearn(cell: Cell, why: string, fence = false): void {
    const learn = cell.learn;
    if (learn === undefined) return;
    cell.learn = undefined;
    if (learn.timer !== undefined) this.clock.clearTimeout(learn.timer);
    this.learning.delete(cell.p);
    const i = this.learnQueue.indexOf(cell.p);
    if (i >= 0) this.learnQueue.splice(i, 1);
    if (why !== 'sealed') this.log.info({ p: cell.p, from: learn.source, why }, `partition ${cell.p}: learning from node ${learn.source} stopped (${why})`);
    this.pumpLearners();
    if (this.table?.primaryOf(cell.p) !== this.self) return;
    if (fence && cell.role === 'idle') {
      cell.fenceEagerly = true;
      this.startFence(cell);
    }
    else if (cell.waiters.length > 0) this.advance(cell);
  }

  /** One log line per batch of completed handoffs (a join moves hundreds of partitions). */
  private handoffCompleted(cell: Cell, epoch: Epoch): void {
    cell.handoffFence = false;
    this.counters.handoffsCompleted++;
    const from = epochAt(truncateHistory(cell.replica.history, cell.primary!.startSeq - 1), cell.primary!.startSeq - 1).node;
    this.completedBatch.set(from, (this.completedBatch.get(from) ?? 0) + 1);
    // The batch ends when nothing learns, waits to, or fences after a seal any more.
    if (this.learning.size > 0 || this.learnQueue.some((p) => this.table?.primaryOf(p) === this.self)) return;
    for (const other of this.cells.values()) if (other.handoffFence) return;
    const froms = [...this.completedBatch].map(([n, k]) => `${k} from node ${n}`).join(', ');
    const total = [...this.completedBatch.values()].reduce((a, b) => a + b, 0);
    this.log.info({ partitions: total, from: Object.fromEntries(this.completedBatch), epoch }, `handoff: took over ${total} partitions (${froms})`);
    this.completedBatch = new Map();
  }

  /** Periodic: re-offer partitions whose learner is silent, drop handoffs nobody took up. */
  private handoffTick(cell: Cell, now: number): void {
    const h = cell.handoff;
    if (h === undefined || h.seal !== undefined) return;
    if (now - h.since > handoffDefaults.handoffTimeoutMs && now - h.lastContact > handoffDefaults.handoffTimeoutMs) {
      this.endHandoff(cell, 'nobody took it over');
      cell.placementMoved = true;
      this.rejectWaiters(cell, notPrimary(cell.p, this.self));
      return;
    }
    if (now - h.lastContact >= handoffDefaults.reofferMs) {
      h.lastContact = now;
      this.sendOffer(cell);
    }
  }

  private peerAddress(id: number): string | undefined {
    return this.handoffPeers.get(id) ?? this.senders.get(id);
  }

  // ── Store and network ────────────────────────────────────────────────────────────────────

  /** Queues a change of the partition's store with its current state; sends wait for it. */
  private persist(cell: Cell, change: { truncateAfter?: number; entries?: readonly LogEntry[] }): Promise<void> {
    const meta = metaOf(cell);
    const done = this.store.persist(cell.p, { ...change, meta });
    // A failed change fails its own step; later sends must not wait forever on it.
    cell.lastPersist = done.then(
      () => void (cell.stored = meta.last),
      () => undefined,
    );
    // Memory moved the log's end before the store took it: after a refusal (a full or failing
    // disk) memory is ahead of the store, and every later change would be refused as not
    // following it — forever, even once the disk recovers. Memory goes back to what is stored.
    if (change.entries !== undefined || change.truncateAfter !== undefined) done.catch(() => this.reloadLog(cell));
    return done;
  }

  /** The partition's log position and epoch history as the store holds them (after a refused change). */
  private async reloadLog(cell: Cell): Promise<void> {
    await cell.lastPersist;
    let meta: PartitionMeta | undefined;
    try {
      meta = (await this.store.loadAll()).get(cell.p);
    } catch (e) {
      this.log.error({ p: cell.p, err: e }, `partition ${cell.p}: cannot reload its log position after a refused write`);
      return;
    }
    const stored = meta?.last ?? EMPTY_POSITION;
    if (cell.replica.last.seq === stored.seq && sameEpoch(cell.replica.last.epoch, stored.epoch)) return;
    this.log.warn({ p: cell.p, memory: cell.replica.last.seq, stored: stored.seq }, `partition ${cell.p}: a write was refused; the log goes back to seq ${stored.seq} as stored`);
    // The promise stays the higher of the two: one made in memory was never acted on before it was on disk.
    const promised = meta !== undefined && compareEpoch(meta.promised, cell.replica.promised) > 0 ? meta.promised : cell.replica.promised;
    cell.replica = { ...cell.replica, promised, last: stored, history: meta?.history ?? [], commit: Math.min(cell.replica.commit, stored.seq) };
    cell.recent = cell.recent.filter((e) => e.seq <= stored.seq);
  }

  /**
   * Sends `msg` after what is queued to the store; with `stored` (the persist of the step that
   * produced `msg`), only if that persist succeeded — a refused one sends nothing, and the peer
   * times out and asks again.
   */
  private sendAfterPersist(cell: Cell, to: number, msg: WireMessage, stored?: Promise<void>): void {
    if (stored === undefined) void cell.lastPersist.then(() => this.send(to, msg));
    else
      stored.then(
        () => this.send(to, msg),
        () => this.log.debug({ p: cell.p, to, type: msg.type }, `partition ${cell.p}: ${msg.type} to node ${to} not sent: its write was refused`),
      );
  }

  /** One message as its own payload, now: a snapshot page must not share a frame with others. */
  private sendAlone(to: number, msg: WireMessage): void {
    const address = this.addresses.get(to);
    if (this.closed || this.transport === undefined || address === undefined) return;
    this.transport.send(address, [R_REPL, [msg]], 'actor');
  }

  /** Queues a message for `to`; every peer's messages of this turn leave as one payload. */
  private send(to: number, msg: ReplFrameMessage): void {
    if (this.closed || this.transport === undefined) return;
    let box = this.outbox.get(to);
    if (box === undefined) this.outbox.set(to, (box = []));
    box.push(msg);
    if (this.outboxQueued) return;
    this.outboxQueued = true;
    this.clock.setImmediate(() => this.flushOutbox());
  }

  private flushOutbox(): void {
    this.outboxQueued = false;
    const outbox = this.outbox;
    this.outbox = new Map();
    for (const [to, msgs] of outbox) {
      // A draining old primary is off the ring but still answers its handoff (and the fence after it).
      const address = this.addresses.get(to) ?? this.handoffPeers.get(to);
      if (address === undefined || this.transport === undefined) continue; // not up: the fence or resend covers it
      this.transport.send(address, [R_REPL, msgs], 'actor');
    }
  }

  /**
   * `fenceOnFailover`: an idle copy with data whose last epoch's primary is off the ring, seen
   * by a node that has peers (a node alone on its ring before joining has not seen a failover).
   */
  private failedOverTo(cell: Cell, ring: HashRing): boolean {
    if (!this.fenceOnFailover || cell.role !== 'idle' || ring.size < 2) return false;
    const last = cell.replica.history[cell.replica.history.length - 1];
    return last !== undefined && cell.replica.last.seq > 0 && !ring.has(last.epoch.node);
  }

  /** Collects partitions newly established here; announced once per turn, after the stale ones. */
  private markEstablished(p: number): void {
    if (this.onEstablished === undefined) return;
    if (this.established.size === 0)
      queueMicrotask(() => {
        const ps = [...this.established];
        this.established = new Set();
        this.onEstablished!(ps);
      });
    this.established.add(p);
  }

  /** Collects partitions whose resident actors may be stale; announced once per turn. */
  private markStale(p: number): void {
    if (this.onStale === undefined) return;
    if (this.stale.size === 0)
      queueMicrotask(() => {
        const ps = [...this.stale];
        this.stale = new Set();
        this.onStale!(ps);
      });
    this.stale.add(p);
  }

  private cellOf(p: number): Cell {
    let cell = this.cells.get(p);
    if (cell === undefined) {
      this.cells.set(p, (cell = new Cell(p, undefined)));
      if (this.replacedHost) this.markUnclean(cell);
    }
    return cell;
  }

  /** True when the store was empty at open: a new host, or one replaced under an old id. */
  get freshStore(): boolean {
    return this.termFloor > 0;
  }

  /**
   * This node's store is empty but its id lived before (a replaced host): a copy it gives of
   * any partition counts toward no fencing quorum until a primary of a later epoch has caught it
   * up (REPLICATION.md, unclean replicas) — else the survivors' fence could count its empty log
   * as a copy and serve without writes only the unreachable holders have.
   */
  markReplaced(): void {
    this.identityPending = false;
    if (this.replacedHost) return;
    this.replacedHost = true;
    for (const cell of this.cells.values()) this.markUnclean(cell);
  }

  /** The node joined, and its id did not live before: an empty store's copies count from now on. */
  identityKnown(): void {
    this.identityPending = false;
  }

  private markUnclean(cell: Cell): void {
    const step = replicaReducer(cell.replica, { type: 'mark-unclean' });
    if (step.state === cell.replica) return;
    cell.replica = step.state;
    this.persist(cell, {});
  }

  private releaseWaiters(cell: Cell): void {
    const waiters = cell.waiters;
    cell.waiters = [];
    for (const w of waiters) {
      this.clock.clearTimeout(w.timer);
      w.resolve();
    }
  }

  private rejectWaiters(cell: Cell, e: Error): void {
    const waiters = cell.waiters;
    cell.waiters = [];
    for (const w of waiters) {
      this.clock.clearTimeout(w.timer);
      w.reject(e);
    }
  }

  private clearTimers(cell: Cell): void {
    if (cell.fenceTimer !== undefined) this.clock.clearTimeout(cell.fenceTimer);
    if (cell.retryTimer !== undefined) this.clock.clearTimeout(cell.retryTimer);
    if (cell.applyTimer !== undefined) this.clock.clearTimeout(cell.applyTimer);
    cell.fenceTimer = cell.retryTimer = cell.applyTimer = undefined;
  }
}

/** What the store keeps of a partition: the replica's state (`applied` is the store's own). */
function metaOf(cell: Cell): PartitionMeta {
  const r = cell.replica;
  return { promised: r.promised, history: r.history, last: r.last, commit: r.commit, applied: cell.applied, clean: r.clean };
}

/** The replica's log cut after `after` and continued with fetched entries `got`: its new end and epoch history. */
/** @internal The log position and history after keeping entries ≤ `after` and appending `got` (exported for its table test). */
export function logWithFetched(r: ReplicaState, after: number, got: readonly LogEntry[]): { last: Position; history: EpochHistory } {
  let history = truncateHistory(r.history, after);
  for (const e of got) if (e.start !== undefined) history = [...history, e.start];
  const lastEntry = got[got.length - 1];
  if (lastEntry !== undefined) return { last: { epoch: lastEntry.epoch, seq: lastEntry.seq }, history };
  // Nothing fetched, but our own divergent tail past `after` goes (the source's position is higher
  // by epoch, not by length): the log ends at `after` — not where it ended before (5-node simulator
  // seed 5098: the store refused a log end past the truncation, and every fence after it, forever).
  return { last: after < r.last.seq ? { epoch: epochAt(r.history, after), seq: after } : r.last, history };
}

/** The ring without one member (a draining node proposes itself for nothing). */
function withoutNode(ring: HashRing, id: number): HashRing {
  return new HashRing(
    ring.members.filter((m) => m.id !== id),
    { epoch: ring.epoch, virtualNodes: ring.virtualNodes },
  );
}

/** What describe() shows of a partition's handoff: learning or sealing here, or sealed / handing off as the old primary. */
function handoffState(c: Cell): string | undefined {
  if (c.learn !== undefined) return c.learn.phase === 'queued' ? 'queued' : c.learn.phase === 'fetching' ? 'learning' : 'sealing';
  if (c.handoff !== undefined) return c.handoff.seal !== undefined ? 'sealed' : `handing-off to ${c.handoff.to}`;
  return undefined;
}

function fmt(e: Epoch): string {
  return `(${e.term},${e.node})`;
}

function notPrimary(p: number, self: number) {
  return troupeError('ERR_NOT_PRIMARY', `node ${self} is not the primary of partition ${p}`, { p, node: self });
}

function staleEpoch(p: number) {
  return troupeError('ERR_STALE_EPOCH', `partition ${p}'s primary was replaced while this write was in flight: its outcome is unknown (retry with the same message id)`, {
    p,
  });
}
