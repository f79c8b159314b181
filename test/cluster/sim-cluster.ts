import { SimulatedClock } from '../../src/core/clock.ts';
import { MemoryNetwork, type MemoryNetworkOptions } from '../../src/cluster/memory-network.ts';
import { MembershipDriver, type MemberChange } from '../../src/cluster/membership-driver.ts';
import type { MemberStatus } from '../../src/cluster/membership.ts';
import { resolveMembershipConfig, type MembershipConfig } from '../../src/cluster/membership-profiles.ts';

export const addressOf = (id: number) => `mem:${id}`;

export interface SimClusterOptions {
  /** Nodes 0..size-1, started with a full table (all alive), as if they had already joined. */
  size: number;
  config?: Partial<MembershipConfig>;
  seed?: number;
  network?: Omit<MemoryNetworkOptions, 'clock'>;
}

/**
 * A cluster of membership drivers over one MemoryNetwork and one SimulatedClock. Time moves
 * one tick at a time so that tests can count rounds and stop at the first tick a condition holds.
 */
export class SimCluster {
  readonly clock = new SimulatedClock(0);
  readonly network: MemoryNetwork;
  readonly config: MembershipConfig;
  readonly drivers = new Map<number, MembershipDriver>();
  readonly changes: { at: number; observer: number; change: MemberChange }[] = [];
  recordChanges = false;
  private readonly seed: number;

  constructor(options: SimClusterOptions) {
    this.seed = options.seed ?? 1;
    this.config = resolveMembershipConfig('lan', options.config ?? {});
    this.network = new MemoryNetwork({ clock: this.clock, seed: this.seed, ...options.network });
    const table = Array.from({ length: options.size }, (_, id) => ({ id, address: addressOf(id) }));
    for (let id = 0; id < options.size; id++) this.add(id, { members: table }).start();
  }

  add(id: number, extra: { members?: { id: number; address: string }[]; incarnation?: number } = {}): MembershipDriver {
    const transport = this.network.transport({ id, incarnation: extra.incarnation ?? 0, address: addressOf(id) });
    const driver = new MembershipDriver({
      transport,
      clock: this.clock,
      profile: this.config,
      seed: this.seed * 7919 + id,
      ...(extra.members ? { members: extra.members } : {}),
    });
    driver.onMemberChanged((change) => {
      if (this.recordChanges) this.changes.push({ at: this.clock.now(), observer: id, change });
    });
    this.drivers.set(id, driver);
    return driver;
  }

  /** Kill node `id`: its driver stops and the network drops everything to and from it. */
  kill(id: number): void {
    this.drivers.get(id)?.stop();
    this.drivers.delete(id);
    this.network.kill(addressOf(id));
  }

  /** Live drivers other than `except`. */
  others(except: number[] = []): MembershipDriver[] {
    return [...this.drivers.entries()].filter(([id]) => !except.includes(id)).map(([, d]) => d);
  }

  statusAt(observer: MembershipDriver, id: number): MemberStatus | undefined {
    return observer.member(id)?.status;
  }

  /** How many of `observers` currently hold `id` with `status`. */
  count(observers: MembershipDriver[], id: number, status: MemberStatus): number {
    let n = 0;
    for (const d of observers) if (d.member(id)?.status === status) n++;
    return n;
  }

  tick(): void {
    this.clock.advance(this.config.tickInterval);
  }

  /** Advance tick by tick until `done()` or `maxMs`; returns the elapsed ms, or Infinity. */
  runUntil(done: () => boolean, maxMs: number): number {
    const start = this.clock.now();
    while (this.clock.now() - start < maxMs) {
      this.tick();
      if (done()) return this.clock.now() - start;
    }
    return Infinity;
  }

  run(ms: number): void {
    const end = this.clock.now() + ms;
    while (this.clock.now() < end) this.tick();
  }
}
