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
  wallNow(): number {
    return Date.now();
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
