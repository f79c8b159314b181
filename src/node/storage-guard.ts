/**
 * A node whose disk fills up stops leading partitions until space returns.
 *
 * A full disk refuses every write the node would make as a partition's primary, so without this
 * the partitions it leads stay unavailable for as long as the disk stays full: the node is alive,
 * still the ring's owner, and nobody else fences them (issue 10, scenario 7). So on the first
 * write refused with ERR_STORAGE_FULL the node *cordons* itself (membership.ts `Member.cordoned`):
 * it stays a member — probed, gossiping, its gateway forwarding — but every ring leaves it out, so
 * the next replica of each partition it led learns, seals and fences it, as in a drain. The node
 * then checks every `probeMs` whether its filesystem has room again (at least `resumeFreeBytes`
 * free: a margin, so a disk with a few KiB back does not flap between cordoned and not) and
 * whether a small real write goes through (`PartitionStore.probeWrite`); once both hold it ends
 * the cordon and receives partitions back by handoff, as a joining node does.
 *
 * A node with no other member on its ring does not cordon: nobody else could lead, so it keeps
 * refusing with ERR_STORAGE_FULL and keeps serving reads.
 *
 * @example
 *   const guard = new StorageGuard({ clock, log, space: () => freeSpace(dir), cordon: (on, why) => membership.cordon(on, why), canCordon: () => others > 0 });
 *   const store = guard.watch(new LmdbPartitionStore({ path: dir }));
 */
import { statfs } from 'node:fs/promises';
import type { Clock, TimerHandle } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import type { PartitionStore } from '../replication/partition-store.ts';

export interface StorageGuardOptions {
  clock: Clock;
  log: Logger;
  /** Cordon this node (true) or end the cordon (false); `why` is logged with it. */
  cordon(on: boolean, why: string): void;
  /** Whether another member could lead this node's partitions now (one on the ring). */
  canCordon(): boolean;
  /** The store's filesystem: bytes free to this process and in all. Absent: the probe write alone decides. */
  space?: () => Promise<{ free: number; total: number }>;
  /** How often a cordoned node checks for space, ms. Default 1,000. */
  probeMs?: number;
  /** Free bytes needed before the cordon ends. Default: 4 MiB or 1% of the filesystem, the larger. */
  resumeFreeBytes?: (total: number) => number;
}

/** The writes whose refusal for want of space cordons the node. */
const WRITES = new Set<PropertyKey>(['persist', 'apply', 'truncatePrefix', 'install', 'recordBoot', 'recordLives']);

export const storageGuardDefaults = {
  probeMs: 1_000,
  resumeFreeBytes: (total: number) => Math.max(4 * 1024 * 1024, Math.floor(total / 100)),
};

export class StorageGuard {
  private readonly o: StorageGuardOptions;
  private store: PartitionStore | undefined;
  private timer: TimerHandle | undefined;
  private probing = false;
  private closed = false;
  /** Whether this guard cordoned the node (and so must end it). */
  cordoned = false;

  constructor(o: StorageGuardOptions) {
    this.o = o;
  }

  /**
   * The store as the node should use it: the same object behind a proxy that notices writes
   * refused with ERR_STORAGE_FULL (and still rejects them: the caller's refusal path is unchanged).
   */
  watch(store: PartitionStore): PartitionStore {
    this.store = store;
    // One wrapper per method, made on first use: persist, entries and apply are on the write path.
    const methods = new Map<PropertyKey, (...args: unknown[]) => unknown>();
    const wrap = (prop: PropertyKey, method: (...args: unknown[]) => unknown) =>
      !WRITES.has(prop)
        ? method.bind(store)
        : (...args: unknown[]) =>
            (method.apply(store, args) as Promise<unknown>).catch((e: unknown) => {
              if ((e as { code?: unknown } | null)?.code === 'ERR_STORAGE_FULL') this.refused(e as Error);
              throw e;
            });
    return new Proxy(store, {
      get: (target, prop) => {
        const value: unknown = Reflect.get(target, prop, target);
        if (typeof value !== 'function') return value;
        let wrapped = methods.get(prop);
        if (wrapped === undefined) methods.set(prop, (wrapped = wrap(prop, value as (...args: unknown[]) => unknown)));
        return wrapped;
      },
    });
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) this.o.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private refused(e: Error): void {
    if (this.cordoned || this.closed || !this.o.canCordon()) return;
    this.cordoned = true;
    this.o.log.warn({ err: e.message }, 'storage is full: cordoning this node so the others lead its partitions until space returns');
    this.o.cordon(true, `storage is full (${e.message})`);
    this.arm();
  }

  private arm(): void {
    if (this.closed) return;
    this.timer = this.o.clock.setTimeout(() => {
      this.timer = undefined;
      void this.probe();
    }, this.o.probeMs ?? storageGuardDefaults.probeMs);
  }

  /** Room again, and a real write goes through: end the cordon; otherwise look again later. */
  private async probe(): Promise<void> {
    if (this.probing || this.closed || !this.cordoned) return;
    this.probing = true;
    try {
      const space = await this.o.space?.().catch(() => undefined);
      if (space !== undefined && space.free < (this.o.resumeFreeBytes ?? storageGuardDefaults.resumeFreeBytes)(space.total)) return;
      await this.store!.probeWrite();
      if (this.closed) return;
      this.cordoned = false;
      this.o.log.info({ ...(space !== undefined && { freeBytes: space.free }) }, 'storage has room again: ending the cordon');
      this.o.cordon(false, 'storage has room again');
    } catch {
      // Still full (or the store is closing): the next probe decides.
    } finally {
      this.probing = false;
      if (this.cordoned) this.arm();
    }
  }
}

/** Free and total bytes of the filesystem holding `path` (for `StorageGuardOptions.space`). */
export async function freeSpace(path: string): Promise<{ free: number; total: number }> {
  const s = await statfs(path);
  return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
}
