import type { Clock } from '../core/clock.ts';
import { isTroupeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { PartitionStore } from '../replication/partition-store.ts';
import type { LocalActors } from './local-actors.ts';

export const rememberDefaults = {
  /**
   * Keys listed and activated per event-loop turn. A failover of thousands of remembered actors
   * then proceeds a page per turn, between the turns that serve requests, rather than in one
   * burst that holds every request behind it.
   */
  pageKeys: 256,
};

export interface RememberedActorsOptions {
  /** The node's partition store: lists a kind's keys in the partitions established here. */
  store: Pick<PartitionStore, 'actorKeys'>;
  actors: Pick<LocalActors, 'activate'>;
  /** Kinds defined with `remember: true`. */
  kinds: readonly string[];
  clock: Clock;
  log: Pick<Logger, 'debug' | 'info' | 'warn'>;
  /** Keys activated per turn (default `rememberDefaults.pageKeys`). */
  pageKeys?: number;
}

/**
 * `remember: true`: when this node becomes the established primary of partitions (the driver's
 * `onEstablished`), the actors of remembered kinds that have state there are activated at once,
 * not on their next message. Work is paged (`pageKeys` a turn) and runs one batch of partitions
 * at a time; partitions established meanwhile form the next batch.
 *
 * @example
 *   const remembered = new RememberedActors({ store, actors, kinds: ['ticker'], clock, log });
 *   driver = await ReplicationDriver.open({ ..., onEstablished: (ps) => remembered.established(ps) });
 */
export class RememberedActors {
  private readonly pageKeys: number;
  private queued = new Set<number>();
  private running = false;
  /** Actors activated so far (for stats and tests). */
  activated = 0;

  constructor(private readonly o: RememberedActorsOptions) {
    this.pageKeys = o.pageKeys ?? rememberDefaults.pageKeys;
  }

  /** Partitions now established here: their remembered actors are activated soon. */
  established(partitions: readonly number[]): void {
    if (this.o.kinds.length === 0) return;
    for (const p of partitions) this.queued.add(p);
    if (!this.running) {
      this.running = true;
      void this.run();
    }
  }

  private async run(): Promise<void> {
    try {
      while (this.queued.size > 0) {
        const batch = this.queued;
        this.queued = new Set();
        for (const kind of this.o.kinds) await this.activateKind(kind, batch);
      }
    } catch (e) {
      // The node is stopping (the store is closed): nothing left to activate.
      if (!isTroupeError(e, 'ERR_STOPPED')) this.o.log.warn({ err: e }, 'remembered actors: listing failed; they activate on their next message');
      this.queued.clear();
    } finally {
      this.running = false;
    }
  }

  private async activateKind(kind: string, partitions: ReadonlySet<number>): Promise<void> {
    let after: string | undefined;
    let total = 0;
    for (;;) {
      const keys = await this.o.store.actorKeys(kind, partitions, after, this.pageKeys);
      if (keys.length > 0) {
        this.o.actors.activate(kind, keys);
        total += keys.length;
        this.activated += keys.length;
      }
      if (keys.length < this.pageKeys) break;
      after = keys[keys.length - 1];
      // One page per turn: requests waiting in this turn's I/O run before the next page.
      await new Promise<void>((resolve) => this.o.clock.setImmediate(resolve));
    }
    if (total > 0) this.o.log.info({ kind, actors: total, partitions: partitions.size }, `activated ${total} remembered ${kind} actors`);
  }
}
