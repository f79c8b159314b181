import { invalidOption } from '../core/errors.ts';
import { hash32 } from '../core/hash.ts';
import { LAN_PROFILE, type MembershipConfig } from './membership-profiles.ts';
import type { RingMember } from './ring.ts';

/**
 * SWIM membership with gossip dissemination and Lifeguard's local-health awareness, as a pure
 * reducer: `membershipReducer(state, event, now) → { state, effects }`. A driver
 * (`membership-driver.ts`) feeds it ticks and messages and performs its effects.
 *
 * Failure detection, per member, every `probeInterval`:
 *
 * ```
 *   ping ──────────────► target            direct probe (successor on the id ring + one round-robin member)
 *   ... probeTimeout, no ack
 *   ping-req ──► k peers ──ping──► target  indirect probe; each peer nacks if the target is silent too
 *   ... indirectProbeTimeout, no ack
 *   suspect(target, incarnation)           gossiped with its age; the target refutes by bumping its incarnation
 *   ... suspicionTimeout after the first suspicion anywhere
 *   down(target, incarnation)              gossiped; the ring drops it
 * ```
 *
 * Merge rule for a member's record: higher incarnation wins; at equal incarnation
 * left > down > suspect > alive. Only the member itself raises its incarnation (to refute).
 *
 * Dissemination: every change enters a queue and rides on gossip messages (to `gossipFanout`
 * random members every `gossipInterval`) and on pings and acks, each update sent
 * retransmitMult · ceil(log10(N + 1)) times. A full-table push-pull every `pushPullInterval`, and
 * a sync with a random down member every `reconnectInterval`, repair whatever rumours missed
 * (partitions heal through the latter).
 *
 * Local health (Lifeguard): `awareness` rises when our probes fail without the expected nacks
 * (so the fault is likely ours), when we must refute a suspicion, and when a tick arrives late
 * (our event loop stalled); probe timeouts, the probe interval and our suspicion timeout scale by
 * (awareness + 1). Time our loop spent stalled is also added to our pending deadlines, so a
 * stall never counts as silence of our peers.
 *
 * @example
 *   let state = createMembershipState({ self: { id: 1, address: 'mem:1' }, seed: 1 }, clock.now());
 *   let step = membershipReducer(state, { type: 'join', seeds: ['mem:0'] }, clock.now());
 *   state = step.state; // step.effects: [{ type: 'send', address: 'mem:0', payload: { proto: 'swim', type: 'join', ... } }]
 */

export type MemberStatus = 'alive' | 'suspect' | 'down' | 'left';

export interface Member {
  readonly id: number;
  readonly address: string;
  readonly incarnation: number;
  readonly status: MemberStatus;
  /** Local clock ms when this status began (for a suspicion: the first suspicion anywhere, estimated). */
  readonly statusSince: number;
  /** Host or zone label the member started with (`--zone`); absent = a zone of its own. */
  readonly zone?: string;
  /**
   * Alive but holding no partitions (true), as a cordoned Kubernetes node takes no new pods: a
   * node whose disk refuses writes cordons itself so the others lead and hold its partitions.
   * Set by the member itself with a new incarnation, so the newer record wins everywhere.
   */
  readonly cordoned?: true;
}

/** A member record on the wire. `age` (ms) rides only on suspicions. */
export interface MemberUpdate {
  id: number;
  address: string;
  incarnation: number;
  status: MemberStatus;
  age?: number;
  /** The member's zone label; updates from nodes that predate zones carry none. */
  zone?: string;
  /** Present only when the member is cordoned (`Member.cordoned`). */
  cordoned?: true;
}

/**
 * A zone label: short, printable, safe in logs and URLs. Nodes without one count as distinct
 * zones, so an unlabelled cluster places replicas exactly as before.
 */
export const ZONE_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

export function isZone(v: unknown): v is string {
  return typeof v === 'string' && ZONE_PATTERN.test(v);
}

export type MembershipMessage =
  | { proto: 'swim'; type: 'ping'; seq: number; target: number; updates: MemberUpdate[] }
  | { proto: 'swim'; type: 'ack'; seq: number; updates: MemberUpdate[] }
  | { proto: 'swim'; type: 'ping-req'; seq: number; target: number; targetAddress: string; updates: MemberUpdate[] }
  | { proto: 'swim'; type: 'nack'; seq: number }
  | { proto: 'swim'; type: 'gossip'; updates: MemberUpdate[] }
  | { proto: 'swim'; type: 'join'; member: MemberUpdate }
  /** `earlier`: the incarnation the seed knew the joiner's id at, when below the joiner's (an earlier life of that id). */
  | { proto: 'swim'; type: 'join-ack'; members: MemberUpdate[]; earlier?: number }
  | { proto: 'swim'; type: 'sync'; members: MemberUpdate[] }
  | { proto: 'swim'; type: 'sync-ack'; members: MemberUpdate[] };

export type MembershipEvent =
  /** Driven every `config.tickInterval`; `lateness` = how late this tick fired (ms), if the driver knows. */
  | { type: 'tick'; lateness?: number }
  | { type: 'message-received'; from: { id: number; address: string }; payload: unknown }
  | { type: 'join'; seeds: readonly string[] }
  | { type: 'leave' }
  /** This node cordons itself (holds no partitions while staying a member) or ends it; `reason` is logged. */
  | { type: 'cordon'; on: boolean; reason?: string };

export type MembershipEffect =
  | { type: 'send'; address: string; payload: MembershipMessage; lane: 'system' }
  /** A member appeared, changed status, address, zone or cordon. `up` = belongs on the ring (alive or suspect, not cordoned). */
  | { type: 'member-changed'; member: Member; previous: MemberStatus | undefined; up: boolean; wasUp: boolean }
  /** Our leave announcement has been gossiped; the node may stop. */
  | { type: 'left' }
  | { type: 'log'; level: 'debug' | 'info' | 'warn'; msg: string; data?: Record<string, unknown> };

export interface PendingProbe {
  readonly seq: number;
  readonly target: number;
  readonly address: string;
  /** The target's incarnation when probed: a refutation meanwhile cancels the suspicion. */
  readonly incarnation: number;
  readonly directDeadline: number;
  readonly indirectDeadline: number;
  readonly indirect: boolean;
  readonly expectedNacks: number;
  readonly nacks: number;
}

/** A ping we send on behalf of a ping-req. */
export interface Relay {
  readonly requester: string;
  readonly requesterSeq: number;
  readonly nackAt: number;
}

export interface Broadcast {
  readonly id: number;
  readonly transmits: number;
}

export interface MembershipState {
  readonly config: MembershipConfig;
  readonly self: RingMember;
  /** Our own incarnation; raised only to refute a rumour about us. */
  readonly incarnation: number;
  /** The incarnation this life started with: a record of us below it is of an earlier life. */
  readonly startIncarnation: number;
  /** The highest incarnation of an earlier life of this node id that peers told us of (0: none). */
  readonly earlierLife: number;
  /**
   * As a seed: node id → the incarnation a join (or any newer record) replaced, so a retried join
   * is told it too; starts from `MembershipStateOptions.lives`.
   */
  readonly replacedLives: ReadonlyMap<number, number>;
  readonly leaving: boolean;
  readonly leftAnnounced: boolean;
  readonly joined: boolean;
  readonly seeds: readonly string[];
  /** Every known member, us included, with tombstones for down and left ones. */
  readonly members: ReadonlyMap<number, Member>;
  /** Ids of alive and suspect members other than us, ascending: probe, gossip and ring order. */
  readonly upIds: readonly number[];
  readonly downCount: number;
  readonly probeOrder: readonly number[];
  readonly probeCursor: number;
  readonly probes: ReadonlyMap<number, PendingProbe>;
  readonly relays: ReadonlyMap<number, Relay>;
  /** Suspect member id → suspicion start (local ms). */
  readonly suspicions: ReadonlyMap<number, number>;
  /** Pending updates, newest first. */
  readonly broadcasts: readonly Broadcast[];
  /** Lifeguard local-health score, 0..awarenessMaxMultiplier - 1. */
  readonly awareness: number;
  readonly rng: number;
  readonly seq: number;
  readonly lastTickAt: number | undefined;
  readonly nextProbeAt: number;
  readonly nextGossipAt: number;
  readonly nextPushPullAt: number;
  readonly nextReconnectAt: number;
  readonly nextJoinAt: number;
}

export interface MembershipStateOptions {
  self: RingMember;
  /** Starting incarnation; grow it across restarts (e.g. the node's restart counter). Default 0. */
  incarnation?: number;
  /** A resolved config (see `resolveMembershipConfig`). Default: the `lan` profile. */
  config?: MembershipConfig;
  /** Seeds the protocol's RNG (peer choice, probe order). Default: derived from the node id. */
  seed?: number;
  /** A known table to start from (a persisted one, or a simulation's bootstrap); all alive by default. */
  members?: readonly { id: number; address: string; incarnation?: number; status?: MemberStatus; zone?: string }[];
  /** This member's zone label (`ZONE_PATTERN`), gossiped with its record. Default: none. */
  zone?: string;
  /**
   * Member id → the highest incarnation an earlier run of this node knew it at (its data
   * directory's record): a seed tells a joiner whose id it knew before, as for `replacedLives`,
   * even when that id's earlier life ended before this node restarted. Default: none.
   */
  lives?: ReadonlyMap<number, number>;
}

export interface MembershipStep {
  state: MembershipState;
  effects: MembershipEffect[];
}

// ---------------------------------------------------------------------------------------------
// Pure time math

/** Lifeguard: a timeout stretched by our own ill health. */
export function scaleTimeout(timeout: number, awareness: number): number {
  return timeout * (awareness + 1);
}

/** Lifeguard: the health score after a delta, kept in 0..max - 1. */
export function applyAwareness(score: number, delta: number, max: number): number {
  return Math.max(0, Math.min(max - 1, score + delta));
}

/**
 * Awareness penalty for a failed probe: each nack that did not come blames us (the peers we
 * asked could not answer either, so our own links or loop are the likelier fault). With no peer
 * to ask (a two-node cluster) a failure says nothing about us; memberlist charges 1 there, which
 * would stretch a two-node cluster's detection far past its bound.
 */
export function failedProbePenalty(expectedNacks: number, nacks: number): number {
  return Math.max(0, expectedNacks - nacks);
}

/** Awareness penalty for a tick this late: one point per probe interval our loop was stalled. */
export function lateTickPenalty(lateness: number, config: MembershipConfig): number {
  return lateness > config.lateTickThreshold ? Math.ceil(lateness / config.probeInterval) : 0;
}

/** Local start of a suspicion that reached us `age` ms after it began (age clamped to the timeout). */
export function suspicionStart(now: number, age: number, config: MembershipConfig): number {
  return now - Math.max(0, Math.min(config.suspicionTimeout, age));
}

/** When a suspicion that started at `start` makes the member down, for our health score. */
export function suspicionDeadline(start: number, awareness: number, config: MembershipConfig): number {
  return start + scaleTimeout(config.suspicionTimeout, awareness);
}

/** Times each member sends each update (memberlist: retransmitMult · ceil(log10(N + 1))). */
export function retransmitLimit(retransmitMult: number, clusterSize: number): number {
  return retransmitMult * Math.max(1, Math.ceil(Math.log10(clusterSize + 1)));
}

const STATUS_RANK: Record<MemberStatus, number> = { alive: 0, suspect: 1, down: 2, left: 3 };

/** The merge rule: does `u` replace `cur`? */
export function supersedes(u: { incarnation: number; status: MemberStatus }, cur: { incarnation: number; status: MemberStatus }): boolean {
  return u.incarnation > cur.incarnation || (u.incarnation === cur.incarnation && STATUS_RANK[u.status] > STATUS_RANK[cur.status]);
}

export function isUp(status: MemberStatus): boolean {
  return status === 'alive' || status === 'suspect';
}

/** Whether a member belongs on the hash ring: up (alive or suspect) and not cordoned. */
export function onRing(m: Pick<Member, 'status' | 'cordoned'>): boolean {
  return isUp(m.status) && m.cordoned !== true;
}

// ---------------------------------------------------------------------------------------------
// Queries

/** The members that belong on the hash ring (alive or suspect and not cordoned, us included), by id. */
export function upMembers(state: MembershipState): RingMember[] {
  const out: RingMember[] = [];
  for (const m of state.members.values()) if (onRing(m)) out.push(m.zone === undefined ? { id: m.id, address: m.address } : { id: m.id, address: m.address, zone: m.zone });
  return out.sort((a, b) => a.id - b.id);
}

export function isMembershipMessage(payload: unknown): payload is MembershipMessage {
  return payload !== null && typeof payload === 'object' && (payload as { proto?: unknown }).proto === 'swim';
}

// ---------------------------------------------------------------------------------------------
// State

export function createMembershipState(options: MembershipStateOptions, now: number): MembershipState {
  if (options === null || typeof options !== 'object') throw invalidOption('options', 'must be an object', options);
  const self = options.self;
  if (self === null || typeof self !== 'object') throw invalidOption('options.self', 'must be { id, address }', self);
  if (!isNodeId(self.id)) throw invalidOption('options.self.id', 'must be an integer in 0..1023', self.id);
  if (typeof self.address !== 'string' || self.address === '') {
    throw invalidOption('options.self.address', 'must be a non-empty string', self.address);
  }
  const incarnation = options.incarnation ?? 0;
  if (!isIncarnation(incarnation)) throw invalidOption('options.incarnation', 'must be a non-negative integer', incarnation);
  const seed = options.seed ?? hash32(`swim:${self.id}:${self.address}`);
  if (!Number.isInteger(seed)) throw invalidOption('options.seed', 'must be an integer', seed);
  const config = options.config ?? LAN_PROFILE;
  if (options.zone !== undefined && !isZone(options.zone)) throw invalidOption('options.zone', 'must be 1-64 characters of A-Z a-z 0-9 . _ -', options.zone);

  const lives = new Map<number, number>();
  for (const [id, inc] of options.lives ?? []) {
    if (!isNodeId(id) || !isIncarnation(inc)) throw invalidOption('options.lives', 'must map node ids (0..1023) to incarnations (non-negative integers)', [id, inc]);
    if (id !== self.id) lives.set(id, inc);
  }

  const members = new Map<number, Member>();
  let downCount = 0;
  for (const [i, m] of (options.members ?? []).entries()) {
    if (m === null || typeof m !== 'object' || !isNodeId(m.id) || typeof m.address !== 'string') {
      throw invalidOption(`options.members[${i}]`, 'must be { id: 0..1023, address: string, incarnation?, status? }', m);
    }
    if (m.id === self.id) continue;
    const status = m.status ?? 'alive';
    // Own keys only: `in` would also accept Object.prototype's names ('toString'…), as the wire's
    // parseUpdate already refuses.
    if (typeof status !== 'string' || !Object.hasOwn(STATUS_RANK, status)) throw invalidOption(`options.members[${i}].status`, 'must be alive, suspect, down or left', status);
    const inc = m.incarnation ?? 0;
    if (!isIncarnation(inc)) throw invalidOption(`options.members[${i}].incarnation`, 'must be a non-negative integer', inc);
    if (m.zone !== undefined && !isZone(m.zone)) throw invalidOption(`options.members[${i}].zone`, 'must be 1-64 characters of A-Z a-z 0-9 . _ -', m.zone);
    // A restored suspicion restarts its clock: we cannot know how old it is.
    members.set(m.id, { id: m.id, address: m.address, incarnation: inc, status, statusSince: now, ...(m.zone !== undefined && { zone: m.zone }) });
    if (status === 'down') downCount++;
  }
  members.set(self.id, { id: self.id, address: self.address, incarnation, status: 'alive', statusSince: now, ...(options.zone !== undefined && { zone: options.zone }) });
  const upIds: number[] = [];
  const suspicions = new Map<number, number>();
  for (const m of members.values()) {
    if (m.id !== self.id && isUp(m.status)) upIds.push(m.id);
    if (m.status === 'suspect') suspicions.set(m.id, now);
  }
  upIds.sort((a, b) => a - b);

  const rng = { v: seed | 0 };
  const probeOrder = shuffled(upIds, rng);
  return {
    config,
    self: { id: self.id, address: self.address },
    incarnation,
    startIncarnation: incarnation,
    earlierLife: 0,
    replacedLives: lives,
    leaving: false,
    leftAnnounced: false,
    joined: members.size > 1,
    seeds: [],
    members,
    upIds,
    downCount,
    probeOrder,
    probeCursor: 0,
    probes: new Map(),
    relays: new Map(),
    suspicions,
    broadcasts: [],
    awareness: 0,
    seq: 0,
    lastTickAt: undefined,
    // Random phases, so members started together do not probe and gossip in lockstep.
    nextProbeAt: now + Math.floor(random(rng) * config.probeInterval),
    nextGossipAt: now + Math.floor(random(rng) * config.gossipInterval),
    nextPushPullAt: now + Math.floor((0.5 + random(rng)) * config.pushPullInterval),
    nextReconnectAt: now + Math.floor((0.5 + random(rng)) * config.reconnectInterval),
    nextJoinAt: now,
    rng: rng.v,
  };
}

// ---------------------------------------------------------------------------------------------
// Reducer

/** The membership protocol: one event in, the next state and the effects to perform out. */
export function membershipReducer(state: MembershipState, event: MembershipEvent, now: number): MembershipStep {
  const step = new Step(state, now);
  switch (event.type) {
    case 'tick':
      step.tick(event.lateness);
      break;
    case 'message-received':
      step.receive(event.from, event.payload);
      break;
    case 'join':
      step.join(event.seeds);
      break;
    case 'leave':
      step.leave();
      break;
    case 'cordon':
      step.cordon(event.on, event.reason);
      break;
    default:
      step.log('warn', 'unknown membership event', { event: (event as { type?: unknown }).type });
  }
  return step.finish();
}

/** A member that left less than this long ago may still be draining (drains last ≤ 30 s). */
const RECENTLY_LEFT_MS = 60_000;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * One reduction. Copies each collection of the input state at most once, on first write, so an
 * event that changes nothing costs no copying and the caller's state is never mutated.
 */
class Step {
  private readonly s: Mutable<MembershipState>;
  private readonly c: MembershipConfig;
  private readonly effects: MembershipEffect[] = [];
  private readonly rng: { v: number };
  private members: Map<number, Member> | undefined;
  private upIds: number[] | undefined;
  private probeOrder: number[] | undefined;
  private probes: Map<number, PendingProbe> | undefined;
  private relays: Map<number, Relay> | undefined;
  private suspicions: Map<number, number> | undefined;
  private urgent = false;
  /** Sender of the message being handled: a rumour about us is refuted straight back to it. */
  private from: string | undefined;
  private refuteTo: string | undefined;

  constructor(
    state: MembershipState,
    private readonly now: number,
  ) {
    this.s = { ...state };
    this.c = state.config;
    this.rng = { v: state.rng };
  }

  finish(): MembershipStep {
    if (this.refuteTo !== undefined) {
      this.send(this.refuteTo, { proto: 'swim', type: 'gossip', updates: [this.wire(this.selfRecord())] });
    }
    if (this.urgent) this.gossip();
    this.s.rng = this.rng.v;
    return { state: this.s, effects: this.effects };
  }

  // -- copy on write ---------------------------------------------------------------------------

  private wMembers(): Map<number, Member> {
    return (this.members ??= this.s.members = new Map(this.s.members));
  }
  private wUpIds(): number[] {
    return (this.upIds ??= this.s.upIds = this.s.upIds.slice());
  }
  private wProbeOrder(): number[] {
    return (this.probeOrder ??= this.s.probeOrder = this.s.probeOrder.slice());
  }
  private wProbes(): Map<number, PendingProbe> {
    return (this.probes ??= this.s.probes = new Map(this.s.probes));
  }
  private wRelays(): Map<number, Relay> {
    return (this.relays ??= this.s.relays = new Map(this.s.relays));
  }
  private wSuspicions(): Map<number, number> {
    return (this.suspicions ??= this.s.suspicions = new Map(this.s.suspicions));
  }

  // -- events ----------------------------------------------------------------------------------

  tick(reportedLateness: number | undefined): void {
    const { s, c, now } = this;
    const lateness = reportedLateness ?? (s.lastTickAt === undefined ? 0 : Math.max(0, now - s.lastTickAt - c.tickInterval));
    s.lastTickAt = now;
    if (lateness > c.lateTickThreshold) this.stalled(lateness);

    this.expireProbes();
    this.expireRelays();
    this.expireSuspicions();
    if (!s.leaving && now >= s.nextProbeAt) {
      const interval = scaleTimeout(c.probeInterval, s.awareness);
      // Stay on the schedule's grid; after a stall, restart it rather than probe in a burst.
      s.nextProbeAt = s.nextProbeAt + interval > now ? s.nextProbeAt + interval : now + interval;
      this.probeRound();
    }
    if (now >= s.nextGossipAt) {
      s.nextGossipAt = Math.max(s.nextGossipAt + c.gossipInterval, now + 1);
      this.gossip();
    }
    if (s.leaving && !s.leftAnnounced && (s.upIds.length === 0 || !s.broadcasts.some((b) => b.id === s.self.id))) {
      s.leftAnnounced = true;
      this.effects.push({ type: 'left' });
    }
    if (!s.leaving && now >= s.nextPushPullAt) {
      s.nextPushPullAt = now + c.pushPullInterval;
      const [peer] = this.sample(1, -1);
      if (peer !== undefined) this.send(this.addressOf(peer), { proto: 'swim', type: 'sync', members: this.table() });
    }
    if (now >= s.nextReconnectAt) {
      s.nextReconnectAt = now + c.reconnectInterval;
      if (!s.leaving) this.reconnect();
      this.reap();
    }
    if (!s.leaving && s.seeds.length > 0 && (!s.joined || s.upIds.length === 0) && now >= s.nextJoinAt) {
      s.nextJoinAt = now + c.joinRetryInterval;
      this.sendJoin();
    }
  }

  join(seeds: readonly string[]): void {
    const { s } = this;
    if (!Array.isArray(seeds) || seeds.some((a) => typeof a !== 'string' || a === '')) {
      this.log('warn', 'join ignored: seeds must be non-empty address strings');
      return;
    }
    s.seeds = seeds.filter((a) => a !== s.self.address);
    if (s.seeds.length === 0) {
      s.joined = true; // the first node of a cluster
      return;
    }
    s.joined = false;
    s.nextJoinAt = this.now + this.c.joinRetryInterval;
    this.sendJoin();
  }

  leave(): void {
    const { s } = this;
    if (s.leaving) return;
    s.leaving = true;
    this.s.probes = new Map();
    this.probes = undefined;
    this.setMember({ ...this.selfRecord(), status: 'left', statusSince: this.now });
    this.enqueue(s.self.id);
    this.urgent = true;
    // Members that left a moment ago may still be draining — waiting, say, for this node to take
    // their partitions — and gossip goes only to members that are up: tell them directly, or a
    // member draining beside us waits out its whole drain timeout (two nodes stopped at once).
    const me = this.wire(this.selfRecord());
    for (const m of s.members.values())
      if (m.id !== s.self.id && m.status === 'left' && this.now - m.statusSince < RECENTLY_LEFT_MS)
        this.send(m.address, { proto: 'swim', type: 'gossip', updates: [me] });
    this.log('info', 'leaving the cluster', { incarnation: s.incarnation });
  }

  /**
   * Cordon this node (on) or end it. A new incarnation carries the change, so it overrides every
   * older record of us wherever it spreads, as a refutation does; nothing changes while leaving.
   */
  cordon(on: boolean, reason: string | undefined): void {
    const { s } = this;
    const me = this.selfRecord();
    if (s.leaving || (me.cordoned === true) === on) return;
    s.incarnation = me.incarnation + 1;
    const { cordoned: _was, ...rest } = me;
    this.setMember({ ...rest, incarnation: s.incarnation, statusSince: this.now, ...(on && { cordoned: true as const }) });
    this.enqueue(s.self.id);
    this.urgent = true;
    this.log(on ? 'warn' : 'info', on ? 'cordoned: this node holds no partitions until it ends the cordon' : 'cordon ended: this node holds partitions again', {
      incarnation: s.incarnation,
      ...(reason !== undefined && { reason }),
    });
  }

  receive(from: { id: number; address: string }, payload: unknown): void {
    if (!isMembershipMessage(payload) || from === null || typeof from !== 'object' || typeof from.address !== 'string') {
      this.log('debug', 'ignored a non-membership payload');
      return;
    }
    const m = payload as Partial<Record<string, unknown>>;
    this.from = from.address;
    this.handle(from, m);
    // A member we hold as suspect or down is talking to us: tell it, so it refutes now rather
    // than whenever the rumour happens to reach it (this is what heals stragglers after a partition).
    // Our own record goes with it: if it holds a stale rumour about us too, this answer corrects
    // it, and its answer does not tell us ours back — two members each holding the other suspect
    // at an old incarnation otherwise told each other so forever, one message per message
    // (simulator, 5-node seed 3609: a livelock that froze the run once frames were duplicated).
    const sender = this.s.members.get(from.id);
    if (sender && sender.address === from.address && (sender.status === 'suspect' || sender.status === 'down') && !this.s.leaving) {
      this.send(from.address, { proto: 'swim', type: 'gossip', updates: [this.wire(sender), this.wire(this.selfRecord())] });
    }
  }

  private handle(from: { id: number; address: string }, m: Partial<Record<string, unknown>>): void {
    switch (m.type) {
      case 'ping': {
        this.mergeUpdates(m.updates);
        if (!isSeq(m.seq)) return;
        // A ping for another node id at our address (we restarted under a new id): stay silent.
        if (m.target !== this.s.self.id) return;
        this.send(from.address, { proto: 'swim', type: 'ack', seq: m.seq, updates: this.takeUpdates() });
        return;
      }
      case 'ack': {
        this.mergeUpdates(m.updates);
        if (!isSeq(m.seq)) return;
        const probe = this.s.probes.get(m.seq);
        if (probe) {
          this.wProbes().delete(m.seq);
          this.s.awareness = applyAwareness(this.s.awareness, -1, this.c.awarenessMaxMultiplier);
          return;
        }
        const relay = this.s.relays.get(m.seq);
        if (relay) {
          this.wRelays().delete(m.seq);
          this.send(relay.requester, { proto: 'swim', type: 'ack', seq: relay.requesterSeq, updates: [] });
        }
        return;
      }
      case 'ping-req': {
        this.mergeUpdates(m.updates);
        if (!isSeq(m.seq) || !isNodeId(m.target) || typeof m.targetAddress !== 'string') return;
        if (m.target === this.s.self.id) return;
        const seq = ++this.s.seq;
        this.wRelays().set(seq, {
          requester: from.address,
          requesterSeq: m.seq,
          // Half the timeout, so the nack beats the requester's deadline despite tick rounding.
          nackAt: this.now + this.c.indirectProbeTimeout / 2,
        });
        const target = this.s.members.get(m.target);
        const buddy = target && target.status === 'suspect' ? target.id : undefined;
        this.send(m.targetAddress, { proto: 'swim', type: 'ping', seq, target: m.target, updates: this.takeUpdates(buddy) });
        return;
      }
      case 'nack': {
        if (!isSeq(m.seq)) return;
        const probe = this.s.probes.get(m.seq);
        if (probe) this.wProbes().set(m.seq, { ...probe, nacks: probe.nacks + 1 });
        return;
      }
      case 'gossip':
        this.mergeUpdates(m.updates);
        return;
      case 'join': {
        const u = parseUpdate(m.member);
        if (!u) return;
        this.apply(u, true);
        // A record of this id from before this life (replaced by the join, or earlier by any
        // message of the new life, which can reach us before its join does).
        const earlier = this.s.replacedLives.get(u.id);
        const ack = { proto: 'swim' as const, type: 'join-ack' as const, members: this.table() };
        this.send(from.address, earlier !== undefined && earlier < u.incarnation ? { ...ack, earlier } : ack);
        return;
      }
      case 'join-ack':
        this.mergeTable(m.members);
        if (isIncarnation(m.earlier) && m.earlier < this.s.startIncarnation && m.earlier > this.s.earlierLife) this.s.earlierLife = m.earlier;
        if (!this.s.joined) {
          this.log('info', 'joined the cluster', { via: from.address, members: this.s.members.size });
          // Announce ourselves too, and pull a full table again soon: members that joined at the
          // same moment as us are not in this seed's answer yet.
          this.enqueue(this.s.self.id);
          this.s.nextPushPullAt = Math.min(this.s.nextPushPullAt, this.now + Math.floor(random(this.rng) * this.c.joinRetryInterval));
        }
        this.s.joined = true;
        return;
      case 'sync':
        this.mergeTable(m.members);
        this.send(from.address, { proto: 'swim', type: 'sync-ack', members: this.table() });
        return;
      case 'sync-ack':
        this.mergeTable(m.members);
        return;
      default:
        this.log('debug', 'ignored an unknown membership message', { type: String(m.type) });
    }
  }

  // -- failure detection -----------------------------------------------------------------------

  /** Our loop stalled for `lateness` ms: that time must not count as our peers' silence. */
  private stalled(lateness: number): void {
    const { s, c } = this;
    s.awareness = applyAwareness(s.awareness, lateTickPenalty(lateness, c), c.awarenessMaxMultiplier);
    if (s.probes.size > 0) {
      const probes = this.wProbes();
      for (const [seq, p] of probes) {
        probes.set(seq, { ...p, directDeadline: p.directDeadline + lateness, indirectDeadline: p.indirectDeadline + lateness });
      }
    }
    if (s.relays.size > 0) {
      const relays = this.wRelays();
      for (const [seq, r] of relays) relays.set(seq, { ...r, nackAt: r.nackAt + lateness });
    }
    if (s.suspicions.size > 0) {
      const suspicions = this.wSuspicions();
      for (const [id, start] of suspicions) suspicions.set(id, start + lateness);
    }
    this.log('warn', 'event loop stalled; pending deadlines extended', { lateness, awareness: s.awareness });
  }

  private probeRound(): void {
    const { s } = this;
    if (s.upIds.length === 0) return;
    const successor = this.successor();
    this.startProbe(successor);
    const other = this.nextRoundRobin(successor);
    if (other !== undefined) this.startProbe(other);
  }

  /** The next up id after ours on the id ring: every up member is probed by its predecessor each round. */
  private successor(): number {
    const ids = this.s.upIds;
    const self = this.s.self.id;
    let lo = 0;
    let hi = ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ids[mid]! <= self) lo = mid + 1;
      else hi = mid;
    }
    return ids[lo === ids.length ? 0 : lo]!;
  }

  /** SWIM's randomized round robin: every member once per round, order reshuffled each round. */
  private nextRoundRobin(skip: number): number | undefined {
    const { s } = this;
    for (let attempts = 0; attempts <= s.probeOrder.length + 1; attempts++) {
      if (s.probeCursor >= s.probeOrder.length) {
        s.probeOrder = this.probeOrder = shuffled(s.upIds, this.rng);
        s.probeCursor = 0;
        if (s.probeOrder.length === 0) return undefined;
      }
      const id = s.probeOrder[s.probeCursor++]!;
      if (id === skip) continue;
      const m = s.members.get(id);
      if (m && isUp(m.status)) return id;
    }
    return undefined;
  }

  private startProbe(target: number): void {
    const { s, c, now } = this;
    const m = s.members.get(target);
    if (!m || !isUp(m.status)) return;
    const seq = ++s.seq;
    const direct = now + scaleTimeout(c.probeTimeout, s.awareness);
    this.wProbes().set(seq, {
      seq,
      target,
      address: m.address,
      incarnation: m.incarnation,
      directDeadline: direct,
      indirectDeadline: direct + scaleTimeout(c.indirectProbeTimeout, s.awareness),
      indirect: false,
      expectedNacks: 0,
      nacks: 0,
    });
    // Lifeguard's buddy system: a suspect hears of its suspicion on the very next ping.
    const buddy = m.status === 'suspect' ? m.id : undefined;
    this.send(m.address, { proto: 'swim', type: 'ping', seq, target, updates: this.takeUpdates(buddy) });
  }

  private expireProbes(): void {
    const { s, now } = this;
    if (s.probes.size === 0) return;
    for (const p of s.probes.values()) {
      if (!p.indirect && now >= p.directDeadline) this.indirectProbe(p);
      else if (p.indirect && now >= p.indirectDeadline) this.probeFailed(p);
    }
  }

  private indirectProbe(p: PendingProbe): void {
    const peers = this.sample(this.c.indirectChecks, p.target);
    for (const peer of peers) {
      this.send(this.addressOf(peer), {
        proto: 'swim',
        type: 'ping-req',
        seq: p.seq,
        target: p.target,
        targetAddress: p.address,
        updates: this.takeUpdates(),
      });
    }
    this.wProbes().set(p.seq, { ...p, indirect: true, expectedNacks: peers.length });
  }

  private probeFailed(p: PendingProbe): void {
    const { s, c, now } = this;
    this.wProbes().delete(p.seq);
    s.awareness = applyAwareness(s.awareness, failedProbePenalty(p.expectedNacks, p.nacks), c.awarenessMaxMultiplier);
    const m = s.members.get(p.target);
    if (!m || m.status !== 'alive' || m.incarnation > p.incarnation) return;
    this.setMember({ ...m, status: 'suspect', statusSince: now });
    this.enqueue(m.id);
    this.log('info', 'member suspected', { member: m.id, incarnation: m.incarnation });
  }

  private expireRelays(): void {
    const { s, now } = this;
    if (s.relays.size === 0) return;
    for (const [seq, r] of s.relays) {
      if (now < r.nackAt) continue;
      this.wRelays().delete(seq);
      this.send(r.requester, { proto: 'swim', type: 'nack', seq: r.requesterSeq });
    }
  }

  private expireSuspicions(): void {
    const { s, c, now } = this;
    if (s.suspicions.size === 0) return;
    for (const [id, start] of s.suspicions) {
      if (now < suspicionDeadline(start, s.awareness, c)) continue;
      const m = s.members.get(id);
      if (!m || m.status !== 'suspect') {
        this.wSuspicions().delete(id);
        continue;
      }
      this.setMember({ ...m, status: 'down', statusSince: now });
      this.enqueue(id);
      this.log('info', 'member down', { member: id, incarnation: m.incarnation, suspectedFor: now - start });
    }
  }

  // -- dissemination ---------------------------------------------------------------------------

  /** Push pending updates to `gossipFanout` random up members. */
  private gossip(): void {
    this.urgent = false;
    if (this.s.broadcasts.length === 0) return;
    for (const peer of this.sample(this.c.gossipFanout, -1)) {
      const updates = this.takeUpdates();
      if (updates.length === 0) break;
      this.send(this.addressOf(peer), { proto: 'swim', type: 'gossip', updates });
    }
  }

  /**
   * Up to maxUpdatesPerMessage pending updates, least-sent first, counting this send; `buddy`'s
   * record goes first whether pending or not.
   */
  private takeUpdates(buddy?: number): MemberUpdate[] {
    const { s, c } = this;
    const out: MemberUpdate[] = [];
    if (buddy !== undefined) {
      const m = s.members.get(buddy);
      if (m) out.push(this.wire(m));
    }
    if (s.broadcasts.length === 0) return out;
    const limit = retransmitLimit(c.retransmitMult, s.members.size);
    // Newest-first order is kept among equal counts (Array#sort is stable).
    const order = s.broadcasts.map((b, i) => i).sort((a, b) => s.broadcasts[a]!.transmits - s.broadcasts[b]!.transmits);
    const next = s.broadcasts.slice() as (Broadcast | undefined)[];
    for (const i of order) {
      if (out.length >= c.maxUpdatesPerMessage) break;
      const b = s.broadcasts[i]!;
      if (b.id === buddy) continue;
      const m = s.members.get(b.id);
      if (m) out.push(this.wire(m));
      next[i] = m && b.transmits + 1 < limit ? { id: b.id, transmits: b.transmits + 1 } : undefined;
    }
    s.broadcasts = next.filter((b): b is Broadcast => b !== undefined);
    return out;
  }

  /** Queue member `id`'s current record for gossip, replacing any older pending update for it. */
  private enqueue(id: number): void {
    const rest = this.s.broadcasts.filter((b) => b.id !== id);
    rest.unshift({ id, transmits: 0 });
    this.s.broadcasts = rest;
  }

  private wire(m: Member): MemberUpdate {
    const u: MemberUpdate = { id: m.id, address: m.address, incarnation: m.incarnation, status: m.status };
    if (m.status === 'suspect') u.age = Math.max(0, this.now - m.statusSince);
    if (m.zone !== undefined) u.zone = m.zone;
    if (m.cordoned === true) u.cordoned = true;
    return u;
  }

  private table(): MemberUpdate[] {
    const out: MemberUpdate[] = [];
    for (const m of this.s.members.values()) out.push(this.wire(m));
    return out;
  }

  private sendJoin(): void {
    const me = this.wire(this.selfRecord());
    for (const address of this.s.seeds) this.send(address, { proto: 'swim', type: 'join', member: me });
  }

  /** Partitions heal here: a down member that answers our table learns it is down and refutes. */
  private reconnect(): void {
    const { s, c } = this;
    if (s.downCount === 0) return;
    if (random(this.rng) >= c.reconnectPerInterval / (s.upIds.length + 1)) return;
    const down: number[] = [];
    for (const m of s.members.values()) if (m.status === 'down') down.push(m.id);
    if (down.length === 0) return;
    const id = down[Math.floor(random(this.rng) * down.length)]!;
    this.send(this.addressOf(id), { proto: 'swim', type: 'sync', members: this.table() });
  }

  private reap(): void {
    const { s, c, now } = this;
    if (s.members.size - s.upIds.length <= 1) return; // no tombstones (only us besides the up ones)
    for (const m of s.members.values()) {
      if (m.id === s.self.id || isUp(m.status) || now - m.statusSince < c.tombstoneTimeout) continue;
      this.wMembers().delete(m.id);
      if (m.status === 'down') s.downCount--;
      s.broadcasts = s.broadcasts.filter((b) => b.id !== m.id);
    }
  }

  // -- merging ---------------------------------------------------------------------------------

  private mergeUpdates(raw: unknown): void {
    if (!Array.isArray(raw)) return;
    for (let i = 0; i < raw.length && i < 1024; i++) {
      const u = parseUpdate(raw[i]);
      if (u) this.apply(u, true);
    }
  }

  /**
   * A full table (join-ack, sync). Members we did not know are recorded but not re-gossiped, or
   * a joiner would re-broadcast the whole cluster to the whole cluster. As in memberlist, a
   * remote "down" for a member we see up only makes it suspect here: after a partition each
   * side holds the other as down, and a suspicion gives the member time to refute.
   */
  private mergeTable(raw: unknown): void {
    if (!Array.isArray(raw)) return;
    for (let i = 0; i < raw.length && i < 1024; i++) {
      let u = parseUpdate(raw[i]);
      if (!u) continue;
      const cur = this.s.members.get(u.id);
      if (u.status === 'down' && cur && isUp(cur.status) && u.id !== this.s.self.id) u = { ...u, status: 'suspect', age: 0 };
      this.apply(u, cur !== undefined);
    }
  }

  /** The merge rule, applied to one update. */
  private apply(u: MemberUpdate, gossipIt: boolean): void {
    const { s, c, now } = this;
    if (u.id === s.self.id) {
      this.aboutSelf(u);
      return;
    }
    const cur = s.members.get(u.id);
    if (cur && !supersedes(u, cur)) {
      // The same suspicion heard again: keep the earliest start, so all members fire together.
      if (u.status === 'suspect' && cur.status === 'suspect' && u.incarnation === cur.incarnation) {
        const start = suspicionStart(now, u.age ?? 0, c);
        const mine = s.suspicions.get(u.id);
        if (mine !== undefined && start < mine) {
          this.wSuspicions().set(u.id, start);
          this.wMembers().set(u.id, { ...cur, statusSince: start });
        }
      }
      return;
    }
    // A record replaced by a higher incarnation: kept (per id, the highest) so a joiner can be told
    // its id lived before — a replaced host under an old id (join-ack's `earlier`).
    if (cur !== undefined && u.incarnation > cur.incarnation && cur.incarnation > (s.replacedLives.get(u.id) ?? -1))
      s.replacedLives = new Map(s.replacedLives).set(u.id, cur.incarnation);
    const since = u.status === 'suspect' ? suspicionStart(now, u.age ?? 0, c) : now;
    // A zone is fixed for a member's life: an update relayed by a node that predates zones keeps
    // the one we know for that incarnation; a new incarnation (a restart) brings its own.
    const zone = u.zone ?? (cur !== undefined && cur.incarnation === u.incarnation ? cur.zone : undefined);
    // A cordon changes only with a new incarnation (the member's own): each record says it whole.
    this.setMember({
      id: u.id,
      address: u.address,
      incarnation: u.incarnation,
      status: u.status,
      statusSince: since,
      ...(zone !== undefined && { zone }),
      ...(u.cordoned === true && { cordoned: true as const }),
    });
    if (gossipIt) this.enqueue(u.id);
  }

  /** A rumour about us: refute anything but the truth by outbidding its incarnation. */
  private aboutSelf(u: MemberUpdate): void {
    const { s, c } = this;
    const me = this.selfRecord();
    // This id lived before (a restart, or a replaced host): the node decides what that means.
    if (u.incarnation < s.startIncarnation && u.incarnation > s.earlierLife) s.earlierLife = u.incarnation;
    if (s.leaving) {
      if (u.incarnation > me.incarnation) this.bumpSelf(u.incarnation, 'left');
      return;
    }
    if (u.status === 'alive' ? u.incarnation <= me.incarnation : u.incarnation < me.incarnation) {
      // An old rumour of our death: nothing to outbid, but its teller is behind on us — tell it
      // what we are now, or it keeps the rumour (and keeps telling it) until gossip happens by.
      if (u.status !== 'alive') this.refuteTo = this.from;
      return;
    }
    if (u.status === 'alive' && u.address === me.address && (u.cordoned === true) === (me.cordoned === true) && u.zone === me.zone) {
      // Our own record from a previous life, same address: adopt its incarnation, nothing to fight.
      // One that says otherwise about the cordon or the zone is outbid below, or the others keep it
      // (5-node simulator seed 4828: a node that cordoned itself at incarnation 3, then restarted as
      // 2, stayed cordoned — off every ring — in everyone's view but its own).
      this.bumpSelf(u.incarnation, 'alive');
      return;
    }
    this.bumpSelf(u.incarnation + 1, 'alive');
    if (u.status === 'suspect' || u.status === 'down') {
      s.awareness = applyAwareness(s.awareness, 1, c.awarenessMaxMultiplier);
    }
    this.urgent = true;
    this.refuteTo = this.from;
    this.log('warn', 'refuted a rumour about this node', { rumour: u.status, incarnation: s.incarnation });
  }

  private bumpSelf(incarnation: number, status: 'alive' | 'left'): void {
    this.s.incarnation = incarnation;
    this.setMember({ ...this.selfRecord(), incarnation, status, statusSince: this.now });
    this.enqueue(this.s.self.id);
  }

  /** Replace a member's record, keeping the up list, suspicions and counters in step. */
  private setMember(next: Member): void {
    const { s } = this;
    const prev = s.members.get(next.id);
    this.wMembers().set(next.id, next);
    if (next.id !== s.self.id) {
      const wasUp = prev !== undefined && isUp(prev.status);
      const up = isUp(next.status);
      if (wasUp !== up) {
        const ids = this.wUpIds();
        const at = lowerBound(ids, next.id);
        if (up) {
          ids.splice(at, 0, next.id);
          // New members join the current probe round at a random place still ahead of the cursor.
          const order = this.wProbeOrder();
          const pos = s.probeCursor + Math.floor(random(this.rng) * (order.length - s.probeCursor + 1));
          order.splice(pos, 0, next.id);
        } else {
          ids.splice(at, 1);
        }
      }
      if ((prev?.status === 'down') !== (next.status === 'down')) s.downCount += next.status === 'down' ? 1 : -1;
      if (next.status === 'suspect') this.wSuspicions().set(next.id, next.statusSince);
      else if (s.suspicions.has(next.id)) this.wSuspicions().delete(next.id);
    }
    if (!prev || prev.status !== next.status || prev.address !== next.address || prev.zone !== next.zone || prev.cordoned !== next.cordoned) {
      this.effects.push({
        type: 'member-changed',
        member: next,
        previous: prev?.status,
        up: onRing(next),
        wasUp: prev !== undefined && onRing(prev),
      });
    }
  }

  // -- helpers ---------------------------------------------------------------------------------

  private selfRecord(): Member {
    return this.s.members.get(this.s.self.id)!;
  }

  private addressOf(id: number): string {
    return this.s.members.get(id)!.address;
  }

  /** Up to k distinct random up members, never `exclude`. */
  private sample(k: number, exclude: number): number[] {
    const ids = this.s.upIds;
    const n = ids.length;
    if (k <= 0 || n === 0) return [];
    if (n <= 2 * k + 2) {
      const pool = ids.filter((id) => id !== exclude);
      return shuffled(pool, this.rng).slice(0, k);
    }
    const picked: number[] = [];
    while (picked.length < k) {
      const id = ids[Math.floor(random(this.rng) * n)]!;
      if (id !== exclude && !picked.includes(id)) picked.push(id);
    }
    return picked;
  }

  private send(address: string, payload: MembershipMessage): void {
    this.effects.push({ type: 'send', address, payload, lane: 'system' });
  }

  log(level: 'debug' | 'info' | 'warn', msg: string, data?: Record<string, unknown>): void {
    const effect: MembershipEffect = { type: 'log', level, msg, data: { self: this.s.self.id, ...data } };
    this.effects.push(effect);
  }
}

// ---------------------------------------------------------------------------------------------
// Wire validation and small utilities

/** A member record from the network, or undefined when malformed (never trusted blindly). */
function parseUpdate(raw: unknown): MemberUpdate | undefined {
  if (raw === null || typeof raw !== 'object') return undefined;
  const r = raw as Record<string, unknown>;
  if (!isNodeId(r.id) || typeof r.address !== 'string' || r.address === '' || r.address.length > 256) return undefined;
  if (!isIncarnation(r.incarnation) || typeof r.status !== 'string' || !Object.hasOwn(STATUS_RANK, r.status)) return undefined;
  const u: MemberUpdate = { id: r.id, address: r.address, incarnation: r.incarnation, status: r.status as MemberStatus };
  if (u.status === 'suspect') u.age = typeof r.age === 'number' && Number.isFinite(r.age) ? r.age : 0;
  // Absent is fine (older nodes); present but malformed makes the whole record suspect.
  if (r.zone !== undefined) {
    if (!isZone(r.zone)) return undefined;
    u.zone = r.zone;
  }
  if (r.cordoned !== undefined) {
    if (r.cordoned !== true) return undefined;
    u.cordoned = true;
  }
  return u;
}

function isNodeId(v: unknown): v is number {
  return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 1023;
}

function isIncarnation(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

function isSeq(v: unknown): v is number {
  return Number.isSafeInteger(v);
}

function lowerBound(ids: readonly number[], id: number): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid]! < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** mulberry32: a 32-bit state, uniform in [0, 1). The state lives in `MembershipState.rng`. */
function random(rng: { v: number }): number {
  rng.v = (rng.v + 0x6d2b79f5) | 0;
  let t = rng.v;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

function shuffled(ids: readonly number[], rng: { v: number }): number[] {
  const a = ids.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random(rng) * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}
