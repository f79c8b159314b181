/**
 * A simulated node's disk: one `MemoryPartitionStore` that outlives the node's lives, so a killed
 * node can restart with its data (`SimNodeCluster.restart` with the `partitionStore` option).
 *
 * Each start of the node gets its own handle (`open()`). Killing the node (`crash()`) ends that
 * handle: whatever the dead life's leftovers call afterwards is refused, as a dead process writes
 * nothing more; calls it made before the crash still land, as a committed transaction does. (The
 * memory store commits without fsync, like `replicated` durability; an OS crash losing the last
 * commits is not modelled.) Closing a handle never closes the disk.
 *
 * Faults: `failWrites(untilMs, code)` refuses every write (persist, apply, truncation, install)
 * until that simulated time, nothing of it applied — a full or failing disk that recovers.
 *
 * Planted bug (for the simulator's own test only): `plantAckWithoutData()` makes `persist`
 * store its entries without their actor writes and still resolve, so the node acknowledges data it
 * does not hold: the checkers must catch it once that copy is the one read.
 */
import type { Clock } from '../../src/core/clock.ts';
import { troupeError, type ErrorCode } from '../../src/core/errors.ts';
import type { LogEntry } from '../../src/replication/messages.ts';
import { MemoryPartitionStore } from '../../src/replication/memory-partition-store.ts';
import type { PartitionStore } from '../../src/replication/partition-store.ts';

type PersistChange = Parameters<PartitionStore['persist']>[1];

export class SimDisk {
  readonly store = new MemoryPartitionStore();
  /** Writes refused by an injected failure, for the run's report. */
  refused = 0;
  private life = 0;
  private failUntil = -Infinity;
  private failCode: ErrorCode = 'ERR_STORAGE_FULL';
  private ackWithoutData = false;

  constructor(private readonly clock: Pick<Clock, 'now'>) {}

  /** A handle for the node's next life; the previous one is dead from now on. */
  open(): PartitionStore {
    const life = ++this.life;
    return new DiskHandle(this, () => this.life === life);
  }

  /** The node died: its current handle refuses everything from now on. */
  crash(): void {
    this.life++;
  }

  /** Every write refuses with `code` until simulated time `untilMs`. */
  failWrites(untilMs: number, code: ErrorCode = 'ERR_STORAGE_FULL'): void {
    this.failUntil = untilMs;
    this.failCode = code;
  }

  /** The planted bug: persisted entries lose their actor writes (see the file's comment). */
  plantAckWithoutData(): void {
    this.ackWithoutData = true;
  }

  /** @internal The injected failure for a write now, if any. */
  writeFault(): Error | undefined {
    if (this.clock.now() >= this.failUntil) return undefined;
    this.refused++;
    return troupeError(
      this.failCode,
      this.failCode === 'ERR_STORAGE_FULL' ? 'storage is full (injected by the simulator)' : 'write failed (injected by the simulator)',
      { injected: true },
    );
  }

  /** @internal What persist hands the store: the change itself, or with the planted bug its entries stripped of data. */
  persisted(change: PersistChange): PersistChange {
    if (!this.ackWithoutData || change.entries === undefined) return change;
    const strip = (e: LogEntry): LogEntry => {
      const { data: _data, ...rest } = e;
      return rest as LogEntry;
    };
    return { ...change, entries: change.entries.map(strip) };
  }
}

/** One life's view of a `SimDisk`. */
class DiskHandle implements PartitionStore {
  constructor(
    private readonly disk: SimDisk,
    private readonly alive: () => boolean,
  ) {}

  get partitions(): number {
    return this.disk.store.partitions;
  }
  get actors(): PartitionStore['actors'] {
    return this.disk.store.actors;
  }
  get durability(): PartitionStore['durability'] {
    return this.disk.store.durability;
  }

  loadAll: PartitionStore['loadAll'] = () => this.read(() => this.disk.store.loadAll());
  entries: PartitionStore['entries'] = (p, after, limit) => this.read(() => this.disk.store.entries(p, after, limit));
  snapshot: PartitionStore['snapshot'] = (p) => this.read(() => this.disk.store.snapshot(p));
  actorKeys: PartitionStore['actorKeys'] = (kind, ps, after, limit) => this.read(() => this.disk.store.actorKeys(kind, ps, after, limit));
  dueActors: PartitionStore['dueActors'] = (ps, before, limit) => this.read(() => this.disk.store.dueActors(ps, before, limit));
  sync: PartitionStore['sync'] = () => this.read(() => this.disk.store.sync());
  lastBoot: PartitionStore['lastBoot'] = () => this.disk.store.lastBoot();

  persist: PartitionStore['persist'] = (p, change) => this.write(() => this.disk.store.persist(p, this.disk.persisted(change)));
  apply: PartitionStore['apply'] = (p, upTo) => this.write(() => this.disk.store.apply(p, upTo));
  truncatePrefix: PartitionStore['truncatePrefix'] = (p, upTo) => this.write(() => this.disk.store.truncatePrefix(p, upTo));
  install: PartitionStore['install'] = (p, snap, meta) => this.write(() => this.disk.store.install(p, snap, meta));
  recordBoot: PartitionStore['recordBoot'] = (bootId) => this.write(() => this.disk.store.recordBoot(bootId));
  probeWrite: PartitionStore['probeWrite'] = () => this.write(() => this.disk.store.probeWrite());
  knownLives: PartitionStore['knownLives'] = () => this.disk.store.knownLives();
  recordLives: PartitionStore['recordLives'] = (lives) => this.write(() => this.disk.store.recordLives(lives));

  /** Closing a life's handle leaves the disk as it is (the next life opens it again). */
  close(): Promise<void> {
    return Promise.resolve();
  }

  private read<T>(op: () => Promise<T>): Promise<T> {
    if (!this.alive()) return Promise.reject(troupeError('ERR_STOPPED', 'this life of the node has ended (killed)'));
    return op();
  }

  private write<T>(op: () => Promise<T>): Promise<T> {
    if (!this.alive()) return Promise.reject(troupeError('ERR_STOPPED', 'this life of the node has ended (killed)'));
    const fault = this.disk.writeFault();
    return fault ? Promise.reject(fault) : op();
  }
}
