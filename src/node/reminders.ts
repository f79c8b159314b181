import { reminderDefaults } from '../actors/system-records.ts';
import type { Clock, TimerHandle } from '../core/clock.ts';
import { isTroupeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { PartitionStore } from '../replication/partition-store.ts';
import type { LocalActors } from './local-actors.ts';

export interface ReminderWakerOptions {
  /** The node's partition store: its reminder index (`dueActors`), which replicates with the log. */
  store: Pick<PartitionStore, 'dueActors'>;
  actors: Pick<LocalActors, 'activate'>;
  /** Partitions this node's ring proposes it as primary of (`ReplicationDriver.proposedHere`). */
  proposedHere: () => ReadonlySet<number>;
  /**
   * Fences the partitions of `ps` that failed over to this node and are not served yet
   * (`ReplicationDriver.fenceFailedOver`): a replica applies its log lazily, so the index of a
   * copy that never led is only complete once it fences; the partition's `established` then
   * brings a scan.
   */
  fenceFailedOver?: (ps: ReadonlySet<number>) => void;
  clock: Clock;
  log: Pick<Logger, 'debug' | 'warn'>;
  /** Defaults: `reminderDefaults` (system-records.ts). */
  scanEveryMs?: number;
  horizonMs?: number;
  pageActors?: number;
}

/**
 * Durable reminders on a replicated node (docs/sessions-lifecycle.md): every `scanEveryMs`, and
 * at once when partitions become established here, the actors of the partitions this node is
 * proposed to lead whose earliest reminder is due within `horizonMs` are activated; each then
 * arms its own timer and fires on time. Only those: 100,000 sessions with a 30-minute `ttlMs`
 * are woken a few at a time as their deadlines come, not all at a failover. The index is
 * ordered by due time, so a page holds the soonest; a resident actor stays resident while its
 * next reminder is within the horizon (the host's sweep keeps it).
 *
 * After a failover the heir's next scan fences the partitions that failed over to it (not at
 * the ring change: a draining primary's handoff offers arrive first and keep their handoff);
 * each one established applies its log, so the index (it replicates with the writes) is
 * complete, and the scan that `established` brings wakes the due actors — no request needed.
 * An actor activated on a partition this node cannot serve is refused by the journal and
 * dropped: harmless.
 *
 * @example
 *   const waker = new ReminderWaker({ store, actors, proposedHere: () => driver.proposedHere(), clock, log });
 *   waker.start();
 */
export class ReminderWaker {
  private readonly scanEveryMs: number;
  private readonly horizonMs: number;
  private readonly pageActors: number;
  private timer: TimerHandle | undefined;
  private scanning = false;
  private again = false;
  private stopped = false;
  /** Activations asked for so far (tests, stats). */
  woken = 0;

  constructor(private readonly o: ReminderWakerOptions) {
    this.scanEveryMs = o.scanEveryMs ?? reminderDefaults.scanEveryMs;
    this.horizonMs = o.horizonMs ?? reminderDefaults.horizonMs;
    this.pageActors = o.pageActors ?? reminderDefaults.pageActors;
  }

  start(): void {
    this.arm(this.scanEveryMs);
  }

  /** Partitions newly established here (the driver's `onEstablished`): look now rather than at the next period. */
  established(_partitions: readonly number[]): void {
    this.scan();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.o.clock.clearTimeout(this.timer);
  }

  private arm(ms: number): void {
    if (this.stopped) return;
    if (this.timer !== undefined) this.o.clock.clearTimeout(this.timer);
    this.timer = this.o.clock.setTimeout(() => {
      this.timer = undefined;
      this.scan();
      this.arm(this.scanEveryMs);
    }, ms);
  }

  /** One scan at a time; a scan asked for meanwhile runs once after it. */
  private scan(): void {
    if (this.stopped) return;
    if (this.scanning) {
      this.again = true;
      return;
    }
    this.scanning = true;
    void this.scanOnce()
      .catch((e: unknown) => {
        if (!isTroupeError(e, 'ERR_STOPPED')) this.o.log.warn({ err: e }, 'reminders: index read failed; next scan retries');
      })
      .finally(() => {
        this.scanning = false;
        if (this.again) {
          this.again = false;
          this.scan();
        }
      });
  }

  private async scanOnce(): Promise<void> {
    const ps = this.o.proposedHere();
    if (ps.size === 0) return;
    this.o.fenceFailedOver?.(ps);
    const due = await this.o.store.dueActors(ps, this.o.clock.wallNow() + this.horizonMs, this.pageActors);
    if (due.length === 0 || this.stopped) return;
    const byKind = new Map<string, string[]>();
    for (const a of due) {
      let keys = byKind.get(a.kind);
      if (keys === undefined) byKind.set(a.kind, (keys = []));
      keys.push(a.key);
    }
    // Resident ones are left as they are by `activate` (ActorHost.wake).
    for (const [kind, keys] of byKind) this.o.actors.activate(kind, keys);
    this.woken += due.length;
    this.o.log.debug({ actors: due.length }, 'reminders: woke actors with a reminder due soon');
  }
}
