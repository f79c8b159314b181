import type { Clock } from '../core/clock.ts';
import { invalidOption, troupeError } from '../core/errors.ts';

/**
 * 64-bit Snowflake ids, most significant bit first:
 *
 * ```
 *  63                                      22 21        12 11          0
 * ┌──────────────────────────────────────────┬────────────┬─────────────┐
 * │ 42-bit ms since 2024-01-01T00:00:00Z     │ 10-bit node│ 12-bit count│
 * └──────────────────────────────────────────┴────────────┴─────────────┘
 * ```
 *
 * Ids from one generator are strictly increasing; ids from different nodes never collide.
 * 42 bits of milliseconds last until 2163.
 */
export const SNOWFLAKE_EPOCH = Date.UTC(2024, 0, 1);

const NODE_BITS = 10;
const COUNTER_BITS = 12;
const MAX_NODE_ID = (1 << NODE_BITS) - 1;
const MAX_COUNTER = (1 << COUNTER_BITS) - 1;
const MAX_TIMESTAMP = 2 ** 42 - 1;
/** Spins on a wall clock that will not move before giving up: ~0.3 s of a real clock's reads. */
const MAX_SPINS = 10_000_000;

/** Small counters as bigints, so `next()` ORs two bigints instead of converting per id. */
const COUNTERS: readonly bigint[] = Array.from({ length: MAX_COUNTER + 1 }, (_, i) => BigInt(i));

export interface SnowflakeOptions {
  /** 0..1023, unique in the cluster. */
  nodeId: number;
  /** Reads `wallNow()`; ids carry wall-clock time. */
  clock: Clock;
  /**
   * Unix ms of the newest timestamp a previous run of this node may have used (see `onAdvance`).
   * The generator starts strictly after it, so a restart behind a stepped-back clock cannot repeat ids.
   */
  lastTimestamp?: number;
  /**
   * Called with the new Unix ms timestamp each time the id timestamp moves forward (at most once a
   * ms). Persist something >= it, throttled: e.g. every second persist `timestamp + 2000` (a
   * reservation) and pass that back as `lastTimestamp` after a restart.
   */
  onAdvance?: (timestamp: number) => void;
  /**
   * Called on every spin while waiting for the next millisecond once 4096 ids were used in one.
   * Production leaves it unset (the wall clock moves by itself); a test on a `SimulatedClock`
   * passes `() => clock.advance(1)`.
   */
  onSpin?: () => void;
}

export interface DecodedSnowflake {
  /** Unix ms. */
  timestamp: number;
  nodeId: number;
  counter: number;
}

/**
 * Generates Snowflake ids for one node.
 *
 * Clock steps: the timestamp is `max(wall clock, last timestamp used)`. When the wall clock steps
 * back, ids keep the last timestamp (logical time) and, once its 4096 counters are used, borrow
 * the next millisecond instead of waiting for the wall clock to catch up; ids stay unique and
 * increasing, and their time drifts ahead of the wall clock only by the ids issued meanwhile / 4096 ms.
 *
 * @example
 *   const ids = new SnowflakeGenerator({ nodeId: 7, clock: systemClock });
 *   ids.nextString(); // → "1234567890123456789"
 *   decodeSnowflake(ids.next()).nodeId; // → 7
 */
export class SnowflakeGenerator {
  readonly nodeId: number;
  private readonly clock: Clock;
  private readonly onAdvance: ((timestamp: number) => void) | undefined;
  private readonly onSpin: (() => void) | undefined;
  /** ms since SNOWFLAKE_EPOCH of the current id; -1 before the first id. */
  private ts: number;
  private counter: number;
  // Per-millisecond caches: the id without its counter, as a bigint and as decimal = q·1e9 + r.
  private base = 0n;
  private decimalHigh = '';
  private decimalLow = 0;
  /** Smallest `decimalLow + counter` that prints as exactly 9 digits after `decimalHigh`. */
  private fastLowMin = Infinity;

  constructor(options: SnowflakeOptions) {
    if (options === null || typeof options !== 'object') throw invalidOption('options', 'must be an object', options);
    const { nodeId, clock, lastTimestamp } = options;
    if (!Number.isInteger(nodeId) || nodeId < 0 || nodeId > MAX_NODE_ID) {
      throw invalidOption('options.nodeId', `must be an integer in 0..${MAX_NODE_ID}`, nodeId);
    }
    if (clock === null || typeof clock !== 'object' || typeof clock.wallNow !== 'function') {
      throw invalidOption('options.clock', 'must be a Clock', clock);
    }
    if (
      lastTimestamp !== undefined &&
      (!Number.isInteger(lastTimestamp) || lastTimestamp < SNOWFLAKE_EPOCH || lastTimestamp > SNOWFLAKE_EPOCH + MAX_TIMESTAMP)
    ) {
      throw invalidOption('options.lastTimestamp', 'must be an integer Unix ms timestamp from 2024-01-01 on', lastTimestamp);
    }
    if (options.onAdvance !== undefined && typeof options.onAdvance !== 'function') {
      throw invalidOption('options.onAdvance', 'must be a function', options.onAdvance);
    }
    if (options.onSpin !== undefined && typeof options.onSpin !== 'function') {
      throw invalidOption('options.onSpin', 'must be a function', options.onSpin);
    }
    this.nodeId = nodeId;
    this.clock = clock;
    this.onAdvance = options.onAdvance;
    this.onSpin = options.onSpin;
    this.ts = lastTimestamp === undefined ? -1 : lastTimestamp - SNOWFLAKE_EPOCH;
    // The persisted millisecond may be partly used and its counter is unknown: treat it as full.
    this.counter = MAX_COUNTER;
  }

  /** Unix ms of the newest id's timestamp (or of `options.lastTimestamp` before the first id). */
  get lastTimestamp(): number | undefined {
    return this.ts < 0 ? undefined : this.ts + SNOWFLAKE_EPOCH;
  }

  /** The next id. Throws ERR_CLOCK if the wall clock is before 2024 with no history, or stuck. */
  next(): bigint {
    this.step();
    return this.base | COUNTERS[this.counter]!;
  }

  /** The next id as a decimal string (how ids travel in JSON), without a bigint per id. */
  nextString(): string {
    this.step();
    const low = this.decimalLow + this.counter;
    if (low >= this.fastLowMin && low < 1e9) return this.decimalHigh + low;
    return (this.base | COUNTERS[this.counter]!).toString();
  }

  private step(): void {
    const now = this.clock.wallNow() - SNOWFLAKE_EPOCH;
    if (now > this.ts) {
      this.enter(now);
    } else if (this.counter < MAX_COUNTER) {
      this.counter++;
    } else if (now === this.ts) {
      this.enter(this.waitPast(this.ts));
    } else {
      // Wall clock behind our logical time (stepped back, or a restart behind the persisted
      // timestamp): borrow the next millisecond rather than block until the wall catches up.
      if (this.ts < 0) {
        throw troupeError('ERR_CLOCK', 'wall clock is before the Snowflake epoch (2024-01-01)', { wallNow: now + SNOWFLAKE_EPOCH });
      }
      this.enter(this.ts + 1);
    }
  }

  private waitPast(ts: number): number {
    for (let spins = 0; spins < MAX_SPINS; spins++) {
      this.onSpin?.();
      const now = this.clock.wallNow() - SNOWFLAKE_EPOCH;
      if (now > ts) return now;
      // Stepped back while we spun: logical time it is.
      if (now < ts) return ts + 1;
    }
    throw troupeError('ERR_CLOCK', 'wall clock did not advance while waiting for the next millisecond');
  }

  /** Moves to millisecond `ts` with counter 0 and refreshes the per-millisecond caches. */
  private enter(ts: number): void {
    if (ts > MAX_TIMESTAMP) throw troupeError('ERR_CLOCK', 'Snowflake timestamp overflow (past year 2163)');
    this.ts = ts;
    this.counter = 0;
    this.base = (BigInt(ts) << 22n) | BigInt(this.nodeId << COUNTER_BITS);
    const high = this.base / 1_000_000_000n;
    this.decimalLow = Number(this.base - high * 1_000_000_000n);
    // With a zero high part the low part prints without padding: let the slow path handle it.
    this.decimalHigh = high === 0n ? '' : high.toString();
    this.fastLowMin = high === 0n ? Infinity : 1e8;
    this.onAdvance?.(ts + SNOWFLAKE_EPOCH);
  }
}

/** Splits an id (bigint or decimal string) into its fields. Throws ERR_INVALID_INPUT on a malformed id. */
export function decodeSnowflake(id: bigint | string): DecodedSnowflake {
  let v: bigint;
  if (typeof id === 'bigint') v = id;
  else if (typeof id === 'string' && /^[0-9]{1,20}$/.test(id)) v = BigInt(id);
  else throw troupeError('ERR_INVALID_INPUT', 'a Snowflake id must be a bigint or a decimal string', { id: String(id) });
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) {
    throw troupeError('ERR_INVALID_INPUT', 'a Snowflake id must fit in 64 unsigned bits', { id: String(id) });
  }
  const low22 = Number(v & 0x3f_ffffn);
  return {
    timestamp: Number(v >> 22n) + SNOWFLAKE_EPOCH,
    nodeId: low22 >>> COUNTER_BITS,
    counter: low22 & MAX_COUNTER,
  };
}

/** The smallest id that can be issued at Unix ms `timestamp` (for range scans by time). */
export function snowflakeAt(timestamp: number): bigint {
  if (!Number.isInteger(timestamp) || timestamp < SNOWFLAKE_EPOCH || timestamp > SNOWFLAKE_EPOCH + MAX_TIMESTAMP) {
    throw invalidOption('timestamp', 'must be an integer Unix ms timestamp from 2024-01-01 on', timestamp);
  }
  return BigInt(timestamp - SNOWFLAKE_EPOCH) << 22n;
}
