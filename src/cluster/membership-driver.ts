import type { Clock, TimerHandle } from '../core/clock.ts';
import { invalidOption, troupeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import {
  createMembershipState,
  isMembershipMessage,
  membershipReducer,
  upMembers,
  type Member,
  type MembershipEffect,
  type MembershipEvent,
  type MembershipState,
  type MemberStatus,
} from './membership.ts';
import { resolveMembershipConfig, type MembershipConfig, type MembershipProfileName } from './membership-profiles.ts';
import type { RingMember } from './ring.ts';
import type { PeerIdentity, Transport } from './transport.ts';

export interface MembershipDriverOptions {
  /** Sends the protocol's messages (lane 'system'); its `self` is this member's identity. */
  transport: Transport;
  clock: Clock;
  /** A profile name or a full config. Default 'lan'. */
  profile?: MembershipProfileName | MembershipConfig;
  /** Per-option overrides on top of the profile, validated. */
  config?: Partial<MembershipConfig>;
  /** RNG seed for the protocol's random choices. Default: derived from the node id and address. */
  seed?: number;
  /** Starting incarnation. Default `transport.self.incarnation` (grows on every restart). */
  incarnation?: number;
  /** A table to start from (a persisted one, or a simulation's bootstrap). */
  members?: readonly { id: number; address: string; incarnation?: number; status?: MemberStatus; zone?: string }[];
  /** This node's host or zone label, gossiped with its record (`ZONE_PATTERN`). Default: none. */
  zone?: string;
  /** Member id → the highest incarnation an earlier run knew it at (`MembershipStateOptions.lives`). */
  lives?: ReadonlyMap<number, number>;
  /**
   * Register on `transport.onMessage` and take the payloads that are membership messages.
   * Default true. Set false when the node routes payloads itself and calls `receive`.
   */
  subscribe?: boolean;
  logger?: Pick<Logger, 'debug' | 'info' | 'warn'>;
}

export interface MemberChange {
  member: Member;
  previous: MemberStatus | undefined;
  /** Belongs on the hash ring now: alive or suspect, and not cordoned. */
  up: boolean;
  wasUp: boolean;
}

/**
 * Runs the membership reducer over a `Clock` and a `Transport`: arms the tick timer, feeds
 * received messages, performs `send` effects and reports member changes. It knows nothing of
 * the transport's kind; the node uses it with `TcpTransport`, tests with `MemoryNetwork`.
 *
 * @example
 *   const driver = new MembershipDriver({ transport, clock: systemClock });
 *   let epoch = 0;
 *   driver.onMemberChanged((c) => {
 *     if (c.up !== c.wasUp) ring = new HashRing(driver.upMembers(), { epoch: ++epoch });
 *   });
 *   driver.start(['10.0.0.1:7401', '10.0.0.2:7401']);
 *   // ... on shutdown:
 *   await driver.leave();
 */
export class MembershipDriver {
  private current: MembershipState;
  private readonly transport: Transport;
  private readonly clock: Clock;
  private readonly logger: Pick<Logger, 'debug' | 'info' | 'warn'> | undefined;
  private readonly changeListeners = new Set<(change: MemberChange) => void>();
  private readonly joinedListeners = new Set<() => void>();
  private readonly leftWaiters: (() => void)[] = [];
  private timer: TimerHandle | undefined;
  private expectedTickAt = 0;
  private running = false;
  private stopped = false;
  private dispatching = false;
  private readonly queue: MembershipEvent[] = [];
  private paused = false;
  private readonly held: MembershipEvent[] = [];

  constructor(options: MembershipDriverOptions) {
    if (options === null || typeof options !== 'object') throw invalidOption('options', 'must be an object', options);
    const { transport, clock } = options;
    if (transport === null || typeof transport !== 'object' || typeof transport.send !== 'function') {
      throw invalidOption('options.transport', 'must be a Transport', transport);
    }
    if (clock === null || typeof clock !== 'object' || typeof clock.setTimeout !== 'function') {
      throw invalidOption('options.clock', 'must be a Clock', clock);
    }
    this.transport = transport;
    this.clock = clock;
    this.logger = options.logger;
    const config = resolveMembershipConfig(options.profile ?? 'lan', options.config ?? {});
    const stateOptions: Parameters<typeof createMembershipState>[0] = {
      self: { id: transport.self.id, address: transport.self.address },
      incarnation: options.incarnation ?? transport.self.incarnation,
      config,
    };
    if (options.seed !== undefined) stateOptions.seed = options.seed;
    if (options.members !== undefined) stateOptions.members = options.members;
    if (options.zone !== undefined) stateOptions.zone = options.zone;
    if (options.lives !== undefined) stateOptions.lives = options.lives;
    this.current = createMembershipState(stateOptions, clock.now());
    if (options.subscribe ?? true) {
      transport.onMessage((from, payload) => {
        if (isMembershipMessage(payload)) this.receive(from, payload);
      });
    }
  }

  /** The reducer's current state (read-only; replaced on every event). */
  get state(): MembershipState {
    return this.current;
  }

  get config(): MembershipConfig {
    return this.current.config;
  }

  /** The highest incarnation of an earlier life of this node id that peers told us of (0: none). */
  get earlierLife(): number {
    return this.current.earlierLife;
  }

  /** Start ticking, and join through `seeds` (addresses; our own is skipped) if any. */
  start(seeds: readonly string[] = []): void {
    if (this.stopped) throw troupeError('ERR_STOPPED', 'membership driver was stopped');
    if (this.running) return;
    this.running = true;
    this.arm();
    if (seeds.length > 0) this.dispatch({ type: 'join', seeds });
  }

  /**
   * Announce a graceful leave; resolves once the announcement has been gossiped (or after
   * `leaveTimeout`). The driver keeps answering until `stop()`.
   */
  leave(): Promise<void> {
    if (this.stopped) return Promise.reject(troupeError('ERR_STOPPED', 'membership driver was stopped'));
    if (this.current.leftAnnounced) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timeout = this.clock.setTimeout(done, this.current.config.leaveTimeout);
      const clock = this.clock;
      function done() {
        clock.clearTimeout(timeout);
        resolve();
      }
      this.leftWaiters.push(done);
      this.dispatch({ type: 'leave' });
    });
  }

  /** Stop ticking and ignore further messages. Does not close the transport (the node owns it). */
  stop(): void {
    this.stopped = true;
    this.running = false;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    for (const w of this.leftWaiters.splice(0)) w();
  }

  /** Feed a membership payload received by other means (when `subscribe` is false). */
  receive(from: Pick<PeerIdentity, 'id' | 'address'>, payload: unknown): void {
    if (this.stopped) return;
    this.dispatch({ type: 'message-received', from: { id: from.id, address: from.address }, payload });
  }

  /** Called when a seed's join-ack lets this node in (`state.joined` turns true); returns an unsubscribe function. */
  onJoined(listener: () => void): () => void {
    this.joinedListeners.add(listener);
    return () => this.joinedListeners.delete(listener);
  }

  /** Listen for member changes; returns an unsubscribe function. */
  onMemberChanged(listener: (change: MemberChange) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Members that belong on the hash ring (alive or suspect and not cordoned, this node included), by id. */
  upMembers(): RingMember[] {
    return upMembers(this.current);
  }

  member(id: number): Member | undefined {
    return this.current.members.get(id);
  }

  /**
   * Simulation only: behave like a node whose event loop is blocked. Ticks stop and received
   * messages are held; `resume()` then runs the overdue tick first and the held messages after,
   * in the order Node runs timers before I/O after a long block.
   */
  pause(): void {
    if (!this.running || this.paused) return;
    this.paused = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.onTick();
    for (const e of this.held.splice(0)) this.dispatch(e);
  }

  /**
   * Cordon this node (it stays a member, probed and gossiping, but holds no partitions: off every
   * ring) or end the cordon. Idempotent; spreads with a new incarnation, urgently.
   */
  cordon(on: boolean, reason?: string): void {
    if (this.stopped) return;
    this.dispatch(reason === undefined ? { type: 'cordon', on } : { type: 'cordon', on, reason });
  }

  /** Whether this node is cordoned now. */
  get cordoned(): boolean {
    return this.current.members.get(this.current.self.id)?.cordoned === true;
  }

  private arm(): void {
    const interval = this.current.config.tickInterval;
    this.expectedTickAt = this.clock.now() + interval;
    this.timer = this.clock.setTimeout(() => this.onTick(), interval);
  }

  private onTick(): void {
    this.timer = undefined;
    if (!this.running) return;
    const lateness = Math.max(0, this.clock.now() - this.expectedTickAt);
    this.dispatch({ type: 'tick', lateness });
    if (this.running && !this.paused) this.arm();
  }

  private dispatch(event: MembershipEvent): void {
    if (this.paused && event.type === 'message-received') {
      this.held.push(event);
      return;
    }
    // Listeners may call back into the driver: queue, never re-enter the reducer.
    this.queue.push(event);
    if (this.dispatching) return;
    this.dispatching = true;
    try {
      for (let e = this.queue.shift(); e !== undefined; e = this.queue.shift()) {
        const wasJoined = this.current.joined;
        const step = membershipReducer(this.current, e, this.clock.now());
        this.current = step.state;
        for (const effect of step.effects) this.perform(effect);
        if (!wasJoined && this.current.joined) for (const l of [...this.joinedListeners]) l();
      }
    } finally {
      this.dispatching = false;
    }
  }

  private perform(effect: MembershipEffect): void {
    switch (effect.type) {
      case 'send':
        this.transport.send(effect.address, effect.payload, effect.lane);
        return;
      case 'member-changed': {
        const change: MemberChange = { member: effect.member, previous: effect.previous, up: effect.up, wasUp: effect.wasUp };
        for (const l of this.changeListeners) {
          try {
            l(change);
          } catch (e) {
            this.logger?.warn({ err: e }, 'member-changed listener threw');
          }
        }
        return;
      }
      case 'left':
        for (const w of this.leftWaiters.splice(0)) w();
        return;
      case 'log':
        this.logger?.[effect.level](effect.data ?? {}, effect.msg);
        return;
    }
  }
}
