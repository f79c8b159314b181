import type { HashRing, RingMember } from '../cluster/ring.ts';
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
import { createPrimaryState, primaryReducer, truncationPoint, type PrimaryEvent, type PrimaryState } from './primary.ts';
import { createReplicaState, replicaReducer, type ReplicaState } from './replica.ts';
import { RESTORED_FROM_BACKUP } from '../persistence/lmdb-env.ts';
import { parseWireMessage, R_REPL, type FetchMessage, type SnapshotMessage, type WireMessage } from './wire.ts';

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
  /** Entries appended here recently, contiguous, ending at the log's end (primary only). */
  recent: LogEntry[] = [];
  /** Writes of this turn, appended as one entry in a microtask. */
  batch: { writes: ActorWrite[]; settle: Array<(e: Error | null) => void> } | null = null;
  fetch: Fetch | undefined;
  fenceTimer: TimerHandle | undefined;
  retryTimer: TimerHandle | undefined;
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

  constructor(
    readonly p: number,
    meta: PartitionMeta | undefined,
  ) {
    this.replica = createReplicaState(p, meta && { promised: meta.promised, last: meta.last, history: meta.history, commit: meta.commit, clean: meta.clean });
    this.applied = meta?.applied ?? 0;
    this.maxTerm = meta?.promised.term ?? 0;
    this.base = meta ? baseOf(meta) : EMPTY_POSITION;
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
  private outbox = new Map<number, WireMessage[]>();
  private outboxQueued = false;
  private nextReq = 0;
  private closed = false;
  private resendTimer: TimerHandle | undefined;
  private readonly onStale: ((partitions: number[]) => void) | undefined;
  private stale = new Set<number>();
  private readonly counters = { fences: 0, failedFences: 0, depositions: 0, appendsSent: 0, badMessages: 0, truncations: 0, snapshotsSent: 0, snapshotsInstalled: 0 };

  private constructor(o: ReplicationOptions, metas: Map<number, PartitionMeta>) {
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
  }

  /** A new up set: the proposed replica sets of every partition follow it. */
  setMembers(ring: HashRing): void {
    this.addresses = new Map(ring.members.map((m: RingMember) => [m.id, m.address]));
    this.table = new PartitionTable(ring, { replicas: this.replicas, partitions: this.partitions });
    for (const cell of this.cells.values()) {
      const primary = cell.primary;
      if (primary !== undefined && !this.placedAsEpoch(cell.p, primary)) cell.placementMoved = true;
      if (this.table.primaryOf(cell.p) === this.self) {
        // A primary whose set changed fences again now, not on the next write: a set that lost
        // a member regains R copies before a second failure, even in a partition only read
        // from resident actors (which never reach the driver). Partitions this node does not
        // lead yet are fenced lazily, on first use.
        if (cell.waiters.length > 0 || (cell.role === 'primary' && cell.placementMoved)) this.advance(cell);
        continue;
      }
      // Not ours any more: a fence in progress stops; a serving primary keeps committing what
      // it has in flight until the new primary's fence deposes it, and takes nothing new.
      if (cell.role === 'candidate') this.abandonFence(cell, 'the partition moved');
      if (cell.role === 'primary') this.markStale(cell.p);
      this.rejectWaiters(cell, notPrimary(cell.p, this.self));
    }
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
    return { partitions: this.cells.size, primaries, established, candidates, pendingEntries, logEntries, ...this.counters };
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
    }));
  }

  // ── Journal: what worker threads call ────────────────────────────────────────────────────

  async read(kind: string, key: string): Promise<ActorHistory> {
    const cell = await this.ready(partitionOf(key, this.partitions));
    await this.appliedThrough(cell, cell.replica.commit);
    const history = await this.store.actors.read(kind, key);
    return { ...history, epoch: cell.actorEpoch };
  }

  async readFrom(kind: string, key: string, afterSeq: number, limit: number): Promise<EventRecord[]> {
    const cell = await this.ready(partitionOf(key, this.partitions));
    await this.appliedThrough(cell, cell.replica.commit);
    return this.store.actors.readFrom(kind, key, afterSeq, limit);
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
    const stopped = troupeError('ERR_STOPPED', 'node is stopping');
    for (const cell of this.cells.values()) {
      this.clearTimers(cell);
      this.rejectWaiters(cell, stopped);
      this.failPending(cell, stopped);
      this.rejectApplyWaiters(cell, stopped);
    }
    await Promise.allSettled([...this.cells.values()].map((c) => c.lastPersist));
  }

  // ── Writing ──────────────────────────────────────────────────────────────────────────────

  private writeOne(w: ActorWrite): Promise<Error | null> {
    const cell = this.cellOf(partitionOf(w.key, this.partitions));
    const go = (): Promise<Error | null> => {
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
    if (this.isReady(cell)) return go();
    return this.ready(cell.p).then(go, (e: Error) => e);
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
    cell.pending.push({ seq, settle: batch.settle });
    this.appendOwn(cell, entry);
  }

  /** The primary's own entry: persisted while it ships (raft's parallel write), durable → counted. */
  private appendOwn(cell: Cell, entry: LogEntry, history?: EpochHistory): void {
    const persisted = this.persist(cell, { entries: [entry] });
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
    if (cell.role !== 'primary' || primary === undefined || primary.status !== 'serving' || cell.sealing || cell.placementMoved) return false;
    if (primary.commit < primary.startSeq || cell.applied < primary.startSeq) return false;
    return this.placedAsEpoch(cell.p, primary);
  }

  /** Membership proposes this node as primary with exactly the set the epoch serves. */
  private placedAsEpoch(p: number, primary: PrimaryState): boolean {
    const table = this.table;
    if (table === undefined || table.primaryOf(p) !== this.self) return false;
    return sameSet(primary.sets[primary.sets.length - 1]!, this.proposedSet(p));
  }

  private proposedSet(p: number): ReplicaSet {
    const members = this.table!.replicasOf(p);
    return { members, w: Math.min(this.writeQuorum, members.length) };
  }

  private ready(p: number): Promise<Cell> {
    const cell = this.cellOf(p);
    if (this.isReady(cell)) return Promise.resolve(cell);
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', 'node is stopping'));
    if (this.table === undefined || this.table.primaryOf(p) !== this.self) return Promise.reject(notPrimary(p, this.self));
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
    if (cell.role === 'candidate' || cell.retryTimer !== undefined || cell.held !== undefined) return;
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
    cell.sealing = false;
    // Resident actors stay valid across this fence only if this node served until now and the
    // fence finds no other node's later entries (then it fetches, see writeStart).
    cell.continuous = cell.role === 'primary' && cell.primary?.status === 'serving' && cell.continuous;
    cell.placementMoved = false;
    cell.fetchedFromPeer = false;
    cell.role = 'candidate';
    cell.primary = undefined;
    cell.recent = [];
    let term = Math.max(cell.maxTerm, cell.replica.promised.term);
    for (const h of cell.replica.history) term = Math.max(term, h.epoch.term);
    const epoch: Epoch = { term: term + 1, node: this.self };
    cell.maxTerm = epoch.term;
    this.counters.fences++;
    const r = cell.replica;
    const step = startCandidate({
      p,
      self: this.self,
      epoch,
      proposed: this.proposedSet(p),
      own: { last: r.last, history: r.history, commit: r.commit, clean: r.clean },
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
    for (const e of effects) {
      switch (e.type) {
        case 'persist-promise':
          cell.replica = { ...cell.replica, promised: e.epoch };
          this.persist(cell, {});
          break;
        case 'send':
          this.sendAfterPersist(cell, e.to, e.msg);
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
      this.markStale(cell.p);
    }
    cell.continuous = true;
    cell.role = 'primary';
    cell.candidate = undefined;
    cell.recent = [entry];
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
    cell.continuous = false;
    this.log.info({ p: cell.p, why }, `partition ${cell.p}: fence abandoned (${why})`);
    if (retry) this.retryLater(cell);
  }

  /** With requests waiting, fence again after a jittered back-off (never in a tight loop). */
  private retryLater(cell: Cell): void {
    if (cell.waiters.length === 0 || cell.retryTimer !== undefined || this.closed) return;
    const delay = this.retryMs * (1 + this.random());
    cell.retryTimer = this.clock.setTimeout(() => {
      cell.retryTimer = undefined;
      if (cell.waiters.length > 0) this.advance(cell);
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
    this.markStale(cell.p);
    this.failPending(cell, cause ?? staleEpoch(cell.p));
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
        this.maybeTruncate(cell);
      }
    }
    for (const e of step.effects) {
      switch (e.type) {
        case 'ship':
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
            { p: cell.p, epoch: e.epoch, startSeq: cell.primary!.startSeq, sets: cell.primary!.sets },
            `partition ${cell.p}: primary in epoch ${fmt(e.epoch)}`,
          );
          break;
        case 'step-down':
          cell.maxTerm = Math.max(cell.maxTerm, e.promised.term);
          this.depose(cell, `a replica promised epoch ${fmt(e.promised)}`);
          break;
      }
    }
  }

  /** Sends entries (after, last] to a member, in pages, from memory or the store. */
  private ship(cell: Cell, to: number, after: number, last: number, commit: number): void {
    const primary = cell.primary!;
    const recent = cell.recent;
    const firstRecent = recent.length > 0 ? recent[0]!.seq : last + 1;
    const fromRecent = (lo: number) => recent.slice(Math.max(0, lo + 1 - firstRecent), last - firstRecent + 1);
    if (after + 1 >= firstRecent) return this.sendPages(cell, to, primary.epoch, after, fromRecent(after), commit);
    // Older than what memory holds: read it (it is durable, recent entries are trimmed only once durable).
    void this.store.entries(cell.p, after, firstRecent - 1 - after).then(
      (older) => {
        if (cell.primary !== primary) return;
        this.sendPages(cell, to, primary.epoch, after, [...older, ...fromRecent(firstRecent - 1)], commit);
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
    if (cell.sealing && cell.pending.length === 0 && cell.batch === null) {
      cell.sealing = false;
      this.advance(cell);
    }
  }

  private failPending(cell: Cell, e: Error): void {
    const pending = cell.pending;
    cell.pending = [];
    for (const entry of pending) for (const s of entry.settle) s(e);
  }

  // ── Receiving ────────────────────────────────────────────────────────────────────────────

  private onPayload(from: PeerIdentity, payload: unknown): void {
    if (!Array.isArray(payload) || payload[0] !== R_REPL || this.closed) return;
    // A joiner may fence before gossip has brought it into this node's ring: its answers must
    // reach it all the same (a dropped promise stalled a moved partition for a whole fence
    // timeout). The transport authenticated the peer; the next ring replaces the map anyway.
    if (!this.addresses.has(from.id)) this.addresses.set(from.id, from.address);
    const msgs = payload[1];
    if (!Array.isArray(msgs)) return void this.counters.badMessages++;
    for (const raw of msgs) {
      const msg = parseWireMessage(raw, this.partitions);
      if (msg === undefined) {
        this.counters.badMessages++;
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
    if (changed) this.persist(cell, { ...(truncateAfter !== undefined && { truncateAfter }), ...(entries && { entries }) });
    for (const s of sends) this.sendAfterPersist(cell, s.to, s.msg);
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
    const store = () => {
      let history = truncateHistory(cell.replica.history, after);
      for (const e of got) if (e.start !== undefined) history = [...history, e.start];
      const lastEntry = got[got.length - 1];
      const last = lastEntry ? { epoch: lastEntry.epoch, seq: lastEntry.seq } : cell.replica.last;
      cell.replica = { ...cell.replica, last, history };
      this.persist(cell, image === undefined ? { truncateAfter: after, entries: got } : { entries: got }).then(
        () => {
          if (cell.candidate === candidate) this.stepCandidate(cell, { type: 'fetched', last, history });
        },
        (e: unknown) => this.abandonFence(cell, `cannot store fetched entries: ${(e as Error).message}`, true),
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

  // ── Store and network ────────────────────────────────────────────────────────────────────

  /** Queues a change of the partition's store with its current state; sends wait for it. */
  private persist(cell: Cell, change: { truncateAfter?: number; entries?: readonly LogEntry[] }): Promise<void> {
    const done = this.store.persist(cell.p, { ...change, meta: metaOf(cell) });
    // A failed change fails its own step; later sends must not wait forever on it.
    cell.lastPersist = done.catch(() => undefined);
    return done;
  }

  private sendAfterPersist(cell: Cell, to: number, msg: WireMessage): void {
    void cell.lastPersist.then(() => this.send(to, msg));
  }

  /** One message as its own payload, now: a snapshot page must not share a frame with others. */
  private sendAlone(to: number, msg: WireMessage): void {
    const address = this.addresses.get(to);
    if (this.closed || this.transport === undefined || address === undefined) return;
    this.transport.send(address, [R_REPL, [msg]], 'actor');
  }

  /** Queues a message for `to`; every peer's messages of this turn leave as one payload. */
  private send(to: number, msg: WireMessage): void {
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
      const address = this.addresses.get(to);
      if (address === undefined || this.transport === undefined) continue; // not up: the fence or resend covers it
      this.transport.send(address, [R_REPL, msgs], 'actor');
    }
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
    if (cell === undefined) this.cells.set(p, (cell = new Cell(p, undefined)));
    return cell;
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
