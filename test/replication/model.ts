/**
 * A deterministic model of one partition replicated over a few nodes, driving the pure reducers
 * (replica, candidate, primary) the way a node's driver would, over a message queue whose
 * delivery order, duplicates and losses come from a seed. Persistence is instantaneous; what a
 * test checks are the invariants of REPLICATION.md over the nodes' logs and the acknowledged
 * writes.
 */
import { startCandidate, candidateReducer, type CandidateEffect, type CandidateState } from '../../src/replication/candidate.ts';
import { compareEpoch, epochAt, truncateHistory, type Epoch, type ReplicaSet } from '../../src/replication/epoch.ts';
import type { LogEntry, ReplicationMessage } from '../../src/replication/messages.ts';
import { createPrimaryState, primaryReducer, type PrimaryEffect, type PrimaryState } from '../../src/replication/primary.ts';
import { createReplicaState, replicaReducer, type ReplicaEffect, type ReplicaState } from '../../src/replication/replica.ts';

export interface ModelNode {
  readonly id: number;
  replica: ReplicaState;
  log: LogEntry[];
  candidate?: CandidateState;
  primary?: PrimaryState;
  /** Highest term this node has seen or promised. */
  maxTerm: number;
  alive: boolean;
  /** ackBeforePersist: the node's state before its last append, what a crash falls back to. */
  beforeAppend?: { replica: ReplicaState; log: LogEntry[] };
}

interface InFlight {
  from: number;
  to: number;
  msg: ReplicationMessage;
}

export interface Fault {
  /** Probability a message is dropped / delivered twice. */
  drop?: number;
  duplicate?: number;
}

/**
 * The classic replication bugs, planted in the model's stand-in for a node's driver (the
 * reducers stay as they are), so a test can show the checker catches each within a fixed number
 * of seeds — a checker that never fails proves nothing.
 */
export interface PlantedBugs {
  /** A replica answers `appended` before its entries are on disk: a crash loses what it acknowledged. */
  ackBeforePersist?: boolean;
  /** A restarted replica truncates its log to its commit point (high watermark), not by epoch (KIP-101). */
  truncateToHighWatermark?: boolean;
  /** After an OS crash lost its unsynced tail, a replica still answers as clean (KIP-966). */
  uncleanCounted?: boolean;
  /** A new primary serves from its own log without fetching the highest respondent's. */
  skipRecovery?: boolean;
  /** Replicas accept appends from an epoch older than their promise: a deposed primary keeps acknowledging. */
  acceptOlderEpoch?: boolean;
}

/** mulberry32: a tiny seeded PRNG, so one seed replays one run exactly. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class PartitionModel {
  readonly nodes = new Map<number, ModelNode>();
  readonly queue: InFlight[] = [];
  /** Writes acknowledged to a client: (epoch, seq, data). */
  readonly acked: Array<{ epoch: Epoch; seq: number; data: unknown }> = [];
  /** Writes a client sent, with the node and seq they got, waiting for the commit. */
  private readonly waiting: Array<{ node: number; epoch: Epoch; seq: number; data: unknown }> = [];
  /** Epochs in which some node acted as primary: node per epoch key (I1). */
  readonly primaries = new Map<string, number>();
  /** Links cut: "a>b" blocks messages from a to b. */
  readonly cut = new Set<string>();
  readonly random: () => number;

  constructor(
    ids: number[],
    seed = 1,
    readonly fault: Fault = {},
    readonly bugs: PlantedBugs = {},
  ) {
    this.random = rng(seed);
    for (const id of ids) this.nodes.set(id, { id, replica: createReplicaState(0), log: [], maxTerm: 0, alive: true });
  }

  node(id: number): ModelNode {
    return this.nodes.get(id)!;
  }

  /** Membership proposes `id` as primary with the set `proposed`: it runs the fence. */
  campaign(id: number, proposed: ReplicaSet): void {
    const n = this.node(id);
    const epoch = { term: n.maxTerm + 1, node: id };
    n.maxTerm = epoch.term;
    const { replica } = n;
    const step = startCandidate({
      p: 0,
      self: id,
      epoch,
      proposed,
      own: { last: replica.last, history: replica.history, commit: replica.commit, clean: replica.clean },
    });
    n.candidate = step.state;
    this.candidateEffects(n, step.effects);
  }

  /** A client write at `id`; it is acknowledged when the primary's commit passes it. */
  write(id: number, data: unknown): boolean {
    const n = this.node(id);
    const pr = n.primary;
    if (!n.alive || pr === undefined || pr.status !== 'serving' || pr.commit < pr.startSeq) return false;
    const entry: LogEntry = { seq: n.replica.last.seq + 1, epoch: pr.epoch, data };
    this.appendOwn(n, [entry]);
    this.waiting.push({ node: id, epoch: pr.epoch, seq: entry.seq, data });
    this.primaryStep(n, { type: 'wrote', last: entry.seq });
    this.primaryStep(n, { type: 'durable', seq: entry.seq });
    return true;
  }

  kill(id: number): void {
    const n = this.node(id);
    n.alive = false;
    n.candidate = undefined;
    n.primary = undefined;
    // Its in-flight client writes are now unknown: never acknowledged.
    for (let i = this.waiting.length - 1; i >= 0; i--) if (this.waiting[i]!.node === id) this.waiting.splice(i, 1);
  }

  /** Restarts with its store (promise, log) intact, as after a process crash. */
  restart(id: number): void {
    const n = this.node(id);
    n.alive = true;
    if (this.bugs.ackBeforePersist && n.beforeAppend) {
      n.replica = n.beforeAppend.replica;
      n.log = n.beforeAppend.log;
    }
    n.beforeAppend = undefined;
    if (this.bugs.truncateToHighWatermark) this.loseTail(n, n.replica.last.seq - n.replica.commit);
  }

  /**
   * An OS crash: the last `lost` entries were committed but not yet synced, and are gone. The
   * store notices (another boot id) and marks itself unclean, as the LMDB store does.
   */
  osCrash(id: number, lost: number): void {
    const n = this.node(id);
    this.kill(id);
    n.alive = true;
    n.beforeAppend = undefined;
    this.loseTail(n, lost);
    if (!this.bugs.uncleanCounted) n.replica = replicaReducer(n.replica, { type: 'mark-unclean' }).state;
  }

  private loseTail(n: ModelNode, lost: number): void {
    const keep = Math.max(0, n.replica.last.seq - lost);
    if (keep === n.replica.last.seq) return;
    n.log.length = keep;
    const history = truncateHistory(n.replica.history, keep);
    n.replica = {
      ...n.replica,
      history,
      last: { epoch: epochAt(history, keep), seq: keep },
      commit: Math.min(n.replica.commit, keep),
    };
  }

  partition(a: number[], b: number[]): void {
    for (const x of a) for (const y of b) this.cut.add(`${x}>${y}`).add(`${y}>${x}`);
  }

  heal(): void {
    this.cut.clear();
  }

  /** Delivers messages (in seeded random order) until none are left or `max` were delivered. */
  run(max = 10_000): void {
    for (let i = 0; i < max && this.queue.length > 0; i++) {
      const k = Math.floor(this.random() * this.queue.length);
      const m = this.queue.splice(k, 1)[0]!;
      this.deliver(m);
    }
  }

  /** Retransmission: every serving primary ships again what is not confirmed. */
  tick(): void {
    for (const n of this.nodes.values()) if (n.alive && n.primary) this.primaryStep(n, { type: 'resend' });
  }

  private send(from: number, to: number, msg: ReplicationMessage): void {
    if (this.fault.drop && this.random() < this.fault.drop) return;
    this.queue.push({ from, to, msg });
    if (this.fault.duplicate && this.random() < this.fault.duplicate) this.queue.push({ from, to, msg });
  }

  private deliver({ from, to, msg }: InFlight): void {
    const n = this.nodes.get(to);
    if (!n || !n.alive || this.cut.has(`${from}>${to}`)) return;
    if ('epoch' in msg) n.maxTerm = Math.max(n.maxTerm, msg.epoch.term);
    if (msg.type === 'stale') n.maxTerm = Math.max(n.maxTerm, msg.promised.term);
    if (msg.type === 'prepare' || msg.type === 'append') {
      if (msg.type === 'append' && this.bugs.ackBeforePersist) n.beforeAppend = { replica: n.replica, log: n.log.slice() };
      if (msg.type === 'append' && this.bugs.acceptOlderEpoch && compareEpoch(msg.epoch, n.replica.promised) < 0)
        n.replica = { ...n.replica, promised: msg.epoch };
      const step = replicaReducer(n.replica, { type: 'message', from, msg });
      n.replica = step.state;
      this.replicaEffects(n, step.effects);
      this.promisedMoved(n);
      return;
    }
    if (n.candidate) {
      const step = candidateReducer(n.candidate, { type: 'message', from, msg });
      n.candidate = step.state;
      this.candidateEffects(n, step.effects);
    }
    if (n.primary) this.primaryStep(n, { type: 'message', from, msg });
  }

  /** As the driver does: once a node's own replica promised a later epoch, its primary or candidate is over. */
  private promisedMoved(n: ModelNode): void {
    const promised = n.replica.promised;
    if (n.candidate && compareEpoch(promised, n.candidate.epoch) > 0) n.candidate = undefined;
    const pr = n.primary;
    if (pr && pr.status === 'serving' && compareEpoch(promised, pr.epoch) > 0) {
      n.primary = { ...pr, status: 'deposed' };
      this.primaryEffects(n, [{ type: 'step-down', p: 0, epoch: pr.epoch, promised }]);
    }
  }

  private replicaEffects(n: ModelNode, effects: ReplicaEffect[]): void {
    for (const e of effects) {
      if (e.type === 'truncate') n.log.length = e.after;
      else if (e.type === 'persist-entries') for (const entry of e.entries) n.log[entry.seq - 1] = entry;
      else if (e.type === 'send' && e.to !== n.id) this.send(n.id, e.to, e.msg);
    }
  }

  /** Appends to the node's own log through its own replica reducer (as its store would). */
  private appendOwn(n: ModelNode, entries: LogEntry[]): void {
    const prev = n.replica.last;
    const step = replicaReducer(n.replica, {
      type: 'message',
      from: n.id,
      msg: { type: 'append', p: 0, epoch: entries[0]!.epoch, prev, entries, commit: n.replica.commit },
    });
    n.replica = step.state;
    this.replicaEffects(n, step.effects);
  }

  private candidateEffects(n: ModelNode, effects: CandidateEffect[]): void {
    for (const e of effects) {
      switch (e.type) {
        case 'persist-promise': {
          const step = replicaReducer(n.replica, { type: 'message', from: n.id, msg: { type: 'prepare', p: 0, epoch: e.epoch } });
          n.replica = step.state;
          break;
        }
        case 'send':
          this.send(n.id, e.to, e.msg);
          break;
        case 'fetch': {
          if (this.bugs.skipRecovery) {
            const step = candidateReducer(n.candidate!, { type: 'fetched', last: n.replica.last, history: n.replica.history });
            n.candidate = step.state;
            this.candidateEffects(n, step.effects);
            break;
          }
          // The model reads the source's log directly; a node fetches it with messages.
          const src = this.node(e.source);
          const entries = src.log.slice(e.after, e.upTo.seq);
          // The source lost entries since it promised (an OS crash): the fence is abandoned, as
          // the driver does when fetched entries are not contiguous up to the promised position.
          if (!src.alive || entries.length !== e.upTo.seq - e.after || entries.some((x, i) => x === undefined || x.seq !== e.after + 1 + i)) {
            n.candidate = undefined;
            break;
          }
          n.log.length = e.after;
          n.replica = {
            ...n.replica,
            history: truncateHistory(src.replica.history, e.upTo.seq),
            last: { epoch: epochAt(src.replica.history, e.upTo.seq), seq: e.upTo.seq },
            clean: true,
          };
          for (const entry of entries) n.log[entry.seq - 1] = entry;
          const step = candidateReducer(n.candidate!, { type: 'fetched', last: n.replica.last, history: n.replica.history });
          n.candidate = step.state;
          this.candidateEffects(n, step.effects);
          break;
        }
        case 'write-start': {
          const key = `${e.start.epoch.term}/${e.start.epoch.node}`;
          if (this.primaries.has(key) && this.primaries.get(key) !== n.id) throw new Error(`I1: two primaries in epoch ${key}`);
          this.primaries.set(key, n.id);
          this.appendOwn(n, [{ seq: e.start.startSeq, epoch: e.start.epoch, start: e.start }]);
          n.primary = createPrimaryState({
            p: 0,
            self: n.id,
            epoch: e.start.epoch,
            sets: e.start.sets,
            startSeq: e.start.startSeq,
            history: n.replica.history,
            last: e.start.startSeq,
            durable: e.start.startSeq,
            known: e.known,
          });
          n.candidate = undefined;
          this.primaryStep(n, { type: 'wrote', last: e.start.startSeq });
          this.primaryStep(n, { type: 'durable', seq: e.start.startSeq });
          break;
        }
        case 'stale':
        case 'unavailable':
          n.candidate = undefined;
          break;
      }
    }
  }

  private primaryStep(n: ModelNode, event: Parameters<typeof primaryReducer>[1]): void {
    const step = primaryReducer(n.primary!, event);
    n.primary = step.state;
    this.primaryEffects(n, step.effects);
  }

  private primaryEffects(n: ModelNode, effects: PrimaryEffect[]): void {
    for (const e of effects) {
      if (e.type === 'ship') {
        const prev = { epoch: epochAt(n.replica.history, e.after), seq: e.after };
        const entries = n.log.slice(e.after, e.last);
        this.send(n.id, e.to, { type: 'append', p: 0, epoch: n.primary!.epoch, prev, entries, commit: e.commit });
      } else if (e.type === 'commit') {
        const released = this.waiting.filter((w) => w.node === n.id && w.seq <= e.seq);
        for (const w of released) this.acked.push({ epoch: w.epoch, seq: w.seq, data: w.data });
        this.waiting.splice(0, this.waiting.length, ...this.waiting.filter((w) => !released.includes(w)));
      } else if (e.type === 'step-down') {
        for (let i = this.waiting.length - 1; i >= 0; i--) if (this.waiting[i]!.node === n.id) this.waiting.splice(i, 1);
      }
    }
  }

  /**
   * The invariants over the current logs; returns the violations found. `newest`: I3 is checked
   * only on the primary of the latest epoch started — a primary cut off from the others may
   * serve on, unaware it was replaced (reads there may be stale, REPLICATION.md "Reads"), but it
   * can acknowledge nothing more, so acknowledged writes it lacks are not lost.
   */
  violations(scope: 'every-primary' | 'newest' = 'every-primary'): string[] {
    const out: string[] = [];
    const nodes = [...this.nodes.values()];
    const established = nodes.filter((n) => n.alive && n.primary?.status === 'serving' && n.primary.commit >= n.primary.startSeq);
    // The latest epoch any candidate started: a primary of an older one was fenced by its quorum.
    let latest: Epoch | undefined;
    for (const key of this.primaries.keys()) {
      const [term, node] = key.split('/').map(Number) as [number, number];
      if (latest === undefined || compareEpoch({ term, node }, latest) > 0) latest = { term, node };
    }
    const newest = established.find((n) => latest !== undefined && compareEpoch(n.primary!.epoch, latest) === 0);
    // I2/I3: every acknowledged write is in the log of every serving, established primary.
    for (const n of established) {
      const pr = n.primary!;
      if (scope === 'newest' && n !== newest) continue;
      for (const a of this.acked) {
        const found = n.log.some((en) => en !== undefined && en.data === a.data);
        if (!found) out.push(`I3: node ${n.id} (primary of ${pr.epoch.term}/${pr.epoch.node}) lacks acknowledged ${String(a.data)}`);
      }
    }
    // I4: same seq and epoch → same entry, on every pair of logs.
    for (const a of nodes)
      for (const b of nodes) {
        if (a.id >= b.id) continue;
        const len = Math.min(a.log.length, b.log.length);
        for (let i = 0; i < len; i++) {
          const x = a.log[i];
          const y = b.log[i];
          if (x && y && x.epoch.term === y.epoch.term && x.epoch.node === y.epoch.node && x.data !== y.data)
            out.push(`I4: nodes ${a.id} and ${b.id} differ at seq ${i + 1} in one epoch`);
        }
      }
    // Acknowledged writes are unique.
    const seen = new Set<unknown>();
    for (const a of this.acked) {
      if (seen.has(a.data)) out.push(`acknowledged twice: ${String(a.data)}`);
      seen.add(a.data);
    }
    return out;
  }
}
