import { getEnvironmentData, isMainThread, setEnvironmentData } from 'node:worker_threads';
import { invalidOption, troupeError } from './errors.ts';

/**
 * The only module that reads real time or arms real timers. Everything else takes a `Clock`,
 * so protocols and restart math run under a `SimulatedClock` in tests.
 *
 * @example
 *   const clock = new SimulatedClock();
 *   clock.setTimeout(() => console.log('fired at', clock.now()), 100);
 *   clock.advance(100); // prints "fired at 100"
 */
export interface Clock {
  /** Milliseconds; monotonic for `SystemClock` (performance.timeOrigin based). */
  now(): number;
  /** Wall-clock milliseconds since the Unix epoch (Snowflake ids, logs). */
  wallNow(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  /**
   * Runs `fn` after the current event-loop turn (I/O first), without waiting for time to pass:
   * work that yields so ports and sockets get a turn. Under a `SimulatedClock` it runs at the
   * same simulated instant, on the next `advance`, so a simulation decides when it happens.
   */
  setImmediate(fn: () => void): void;
}

export type TimerHandle = { readonly __timer: true } | object;

export class SystemClock implements Clock {
  now(): number {
    return performance.now();
  }
  /** `Date.now()`, plus the fault-injection step (`enableWallClockSteps`) when one is on. */
  wallNow(): number {
    return wallStep === undefined ? Date.now() : Date.now() + Atomics.load(wallStep, 0);
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const t = setTimeout(fn, ms);
    // A pending timer (an ask deadline, an idle sweep) must never keep a process alive.
    t.unref();
    return t;
  }
  clearTimeout(handle: TimerHandle): void {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  }
  setImmediate(fn: () => void): void {
    setImmediate(fn);
  }
}

export const systemClock: Clock = new SystemClock();

// ── Fault injection: a stepped wall clock (tests only) ─────────────────────────────────────
//
// The OS cannot step one process's wall clock (a time namespace offsets only the monotonic
// clocks), so the chaos suite steps it here: an offset, in ms, added to `SystemClock.wallNow()`.
// It lives in a SharedArrayBuffer that `enableWallClockSteps` hands to every worker thread
// started afterwards as worker environment data, so the threads that stamp reminders and
// session deadlines step with the main thread that issues Snowflake ids. Monotonic `now()` and
// timers never move: membership, ask deadlines and leases run on them.

const WALL_STEP_KEY = 'troupe:wallStepMs';
/** Largest offset, ms (an Int32 for Atomics): ±24.8 days, plenty for a test's steps. */
export const MAX_WALL_STEP_MS = 2 ** 31 - 1;

let wallStep: Int32Array | undefined = inheritedWallStep();

/** In a worker thread started after `enableWallClockSteps`: the parent's shared offset. */
function inheritedWallStep(): Int32Array | undefined {
  if (isMainThread) return undefined;
  const shared = getEnvironmentData(WALL_STEP_KEY);
  return shared instanceof SharedArrayBuffer ? new Int32Array(shared) : undefined;
}

/** The handle that steps this process's wall clock (`SystemClock.wallNow`), from `enableWallClockSteps`. */
export interface WallClockSteps {
  /** The offset now, ms: what `wallNow()` adds to the true time. */
  offset(): number;
  /** Moves the wall clock by `deltaMs` (negative: back); returns the new offset. */
  step(deltaMs: number): number;
  /** Back to the true time (offset 0). */
  reset(): void;
}

/**
 * Turns wall-clock stepping on for this process: `SystemClock.wallNow()` here and in every worker
 * thread started from now on adds the offset the handle sets (for a `SimulatedClock`: a handle on
 * its own `stepWall`). For fault-injection tests only
 * (`troupe start --fault-injection`); call it before the node starts its worker threads (a
 * thread started earlier keeps the true time). Idempotent: every call returns the same handle.
 *
 * @example
 *   const steps = enableWallClockSteps();
 *   steps.step(-30_000); // systemClock.wallNow() is now 30 s behind Date.now()
 *   steps.reset();
 */
export function enableWallClockSteps(clock: Clock = systemClock): WallClockSteps {
  // A simulated node steps its own clock: nothing process-wide, nothing shared with threads.
  if (clock instanceof SimulatedClock) return clock.wallSteps;
  if (!(clock instanceof SystemClock))
    throw invalidOption('clock', 'must be a SystemClock or a SimulatedClock to step its wall clock', clock);
  if (wallStep === undefined) {
    const shared = new SharedArrayBuffer(4);
    setEnvironmentData(WALL_STEP_KEY, shared);
    wallStep = new Int32Array(shared);
  }
  const cell = wallStep;
  return {
    offset: () => Atomics.load(cell, 0),
    step(deltaMs) {
      const next = Atomics.load(cell, 0) + deltaMs;
      if (!Number.isInteger(deltaMs) || Math.abs(next) > MAX_WALL_STEP_MS)
        throw troupeError(
          'ERR_INVALID_INPUT',
          `a wall-clock step must be an integer ms keeping the offset within ±${MAX_WALL_STEP_MS} ms`,
          {
            deltaMs: String(deltaMs),
            offsetMs: Atomics.load(cell, 0),
          },
        );
      Atomics.store(cell, 0, next);
      return next;
    },
    reset: () => void Atomics.store(cell, 0, 0),
  };
}

interface SimTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * Deterministic clock for tests: time moves only through `advance`/`advanceTo`, timers fire in
 * (deadline, creation order), and a timer armed while firing fires in the same advance if due.
 */
export class SimulatedClock implements Clock {
  private time: number;
  private wallOffset: number;
  /** The sum of `stepWall` deltas, ms. */
  private stepped = 0;
  private seq = 0;
  private timers: SimTimer[] = [];

  constructor(start = 0, wallStart = 1_700_000_000_000) {
    this.time = start;
    this.wallOffset = wallStart - start;
  }

  now(): number {
    return this.time;
  }
  wallNow(): number {
    return this.time + this.wallOffset;
  }
  /** Moves wall time only (a stepped system clock); monotonic `now` is untouched. */
  stepWall(deltaMs: number): void {
    this.wallOffset += deltaMs;
    this.stepped += deltaMs;
  }
  /** This clock's steps as the fault-injection handle (`enableWallClockSteps(simulatedClock)`). */
  get wallSteps(): WallClockSteps {
    return {
      offset: () => this.stepped,
      step: (deltaMs) => {
        if (!Number.isInteger(deltaMs))
          throw troupeError('ERR_INVALID_INPUT', 'a wall-clock step must be an integer ms', { deltaMs: String(deltaMs) });
        this.stepWall(deltaMs);
        return this.stepped;
      },
      reset: () => this.stepWall(-this.stepped),
    };
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: SimTimer = { at: this.time + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return timer;
  }
  clearTimeout(handle: TimerHandle): void {
    (handle as SimTimer).cancelled = true;
  }
  /** A zero-delay timer: it fires on the next `advance` (even `advance(0)`), in creation order with timers due now. */
  setImmediate(fn: () => void): void {
    this.setTimeout(fn, 0);
  }
  /** Number of armed, uncancelled timers. */
  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }
  advance(ms: number): void {
    this.advanceTo(this.time + ms);
  }
  advanceTo(target: number): void {
    for (;;) {
      const next = this.nextDue(target);
      if (!next) break;
      this.time = Math.max(this.time, next.at);
      next.cancelled = true;
      next.fn();
    }
    this.time = Math.max(this.time, target);
    this.timers = this.timers.filter((t) => !t.cancelled);
  }
  private nextDue(target: number): SimTimer | undefined {
    let best: SimTimer | undefined;
    for (const t of this.timers) {
      if (t.cancelled || t.at > target) continue;
      if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }
}
