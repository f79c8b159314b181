import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../core/clock.ts';
import { troupeError } from '../core/errors.ts';
import { lockDataDir, type DataDirLock } from '../node/data-dir-lock.ts';

/** What a node remembers about itself across restarts, in `<dataDir>/identity.json`. */
export interface IdentityRecord {
  id: number;
  /** Grows by one on every start; peers prefer the higher incarnation of a node id. */
  incarnation: number;
  /** A wall-clock ms the Snowflake generator has not reached; ids restart above it. */
  snowflakeFloor: number;
}

/**
 * The incarnation of a node's next life: the previous one + 1 when its data directory remembers
 * it; otherwise (no data directory, or a first start in one — perhaps a replaced host reusing a
 * dead node's id) the wall clock in ms, which puts it above every incarnation that id had.
 */
export function nextIncarnation(previous: number | undefined, wallNowMs: number): number {
  return previous === undefined ? Math.floor(wallNowMs) : previous + 1;
}

/**
 * Loads the node's identity and persists the next incarnation before the node speaks to anyone,
 * so two lives of one node id never share an incarnation. Without a data directory the
 * incarnation is the wall clock in ms (grows across restarts unless the clock steps back).
 *
 * With a data directory it first takes the directory's exclusive lock (`data-dir-lock.ts`):
 * every node with a data directory comes through here before it opens its journal, so a second
 * node on the same directory is refused (ERR_DATA_DIR_IN_USE) before it can write. `close()`
 * releases the lock when the node stops.
 */
export class NodeIdentity {
  private constructor(
    private readonly path: string | undefined,
    private record: IdentityRecord,
    /** The floor the previous run left: this run's ids start above it. */
    readonly previousSnowflakeFloor: number,
    private readonly lock: DataDirLock | undefined,
  ) {}

  /**
   * Reads the previous run's record and persists this run's in one write: the next incarnation,
   * and a Snowflake floor `floorAheadMs` past now (ids handed out before it is raised again).
   */
  static async load(id: number, dataDir: string | undefined, clock: Clock, floorAheadMs = 2_000): Promise<NodeIdentity> {
    const floor = Math.floor(clock.wallNow()) + floorAheadMs;
    if (dataDir === undefined) {
      return new NodeIdentity(undefined, { id, incarnation: nextIncarnation(undefined, clock.wallNow()), snowflakeFloor: floor }, 0, undefined);
    }
    await mkdir(dataDir, { recursive: true });
    const lock = await lockDataDir(dataDir, clock);
    try {
      return await NodeIdentity.loadLocked(id, dataDir, floor, lock, Math.floor(clock.wallNow()));
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  private static async loadLocked(id: number, dataDir: string, floor: number, lock: DataDirLock, now: number): Promise<NodeIdentity> {
    const path = join(dataDir, 'identity.json');
    let previous: IdentityRecord | undefined;
    try {
      previous = JSON.parse(await readFile(path, 'utf8')) as IdentityRecord;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        throw troupeError('ERR_JOURNAL_READ', `cannot read ${path}: ${(e as Error).message}`);
    }
    if (previous && previous.id !== id) {
      throw troupeError('ERR_INVALID_OPTION', `data directory ${dataDir} belongs to node ${previous.id}, not ${id}`);
    }
    const before = previous?.snowflakeFloor ?? 0;
    const incarnation = nextIncarnation(previous?.incarnation, now);
    const identity = new NodeIdentity(
      path,
      { id, incarnation, snowflakeFloor: Math.max(before, floor) },
      before,
      lock,
    );
    await identity.persist();
    return identity;
  }

  /** Releases the data directory's lock (the node has stopped). Idempotent. */
  async close(): Promise<void> {
    await this.lock?.release();
  }

  get id(): number {
    return this.record.id;
  }
  get incarnation(): number {
    return this.record.incarnation;
  }
  get snowflakeFloor(): number {
    return this.record.snowflakeFloor;
  }

  /** Raises the Snowflake floor (the caller throttles: e.g. once a second, now + 2 s). */
  async raiseSnowflakeFloor(ts: number): Promise<void> {
    if (ts <= this.record.snowflakeFloor) return;
    this.record = { ...this.record, snowflakeFloor: ts };
    await this.persist();
  }

  /** Write-then-rename with fsync: a crash leaves the old file or the new one, never half. */
  private async persist(): Promise<void> {
    if (this.path === undefined) return;
    const tmp = this.path + '.tmp';
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(this.record));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path);
  }
}
