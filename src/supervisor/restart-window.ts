import { invalidOption } from '../core/errors.ts';

/**
 * Restart intensity and backoff, as pure functions of (window, now): OTP's
 * `add_restart(Restarts, Now, Period)` plus exponential backoff. Used for actors (one-for-one
 * inside a worker) and for worker threads (inside a node).
 */
export interface RestartPolicy {
  /** Restarts allowed within `periodMs`; one more escalates. */
  maxRestarts: number;
  /** Sliding window for counting restarts, ms. */
  periodMs: number;
  /** Delay before the first restart in a window, ms. */
  backoffInitialMs: number;
  /** Ceiling of the delay, ms. */
  backoffMaxMs: number;
  /** delay(n) = min(backoffMaxMs, backoffInitialMs * backoffFactor^(n-1)), n = restarts in window. */
  backoffFactor: number;
}

export const actorRestartPolicy: RestartPolicy = {
  maxRestarts: 5, // a handler that throws 6 times in 10 s is broken, not unlucky
  periodMs: 10_000, // ms
  backoffInitialMs: 5, // ms; most throws are one bad message, so the first restart is quick
  backoffMaxMs: 2_000, // ms; keeps a failing actor from spinning
  backoffFactor: 2,
};

export const workerRestartPolicy: RestartPolicy = {
  maxRestarts: 10, // worker threads: crashes of 10 threads within a minute means a sick node
  periodMs: 60_000, // ms
  backoffInitialMs: 10, // ms; piscina starts the thread itself
  backoffMaxMs: 5_000, // ms
  backoffFactor: 2,
};

/** Timestamps (ms) of the restarts still inside the policy's period, oldest first. */
export type RestartWindow = readonly number[];

export type RestartDecision = { action: 'restart'; delayMs: number; window: RestartWindow } | { action: 'escalate'; window: RestartWindow };

export function decideRestart(window: RestartWindow, now: number, policy: RestartPolicy): RestartDecision {
  const kept = window.filter((t) => now - t < policy.periodMs);
  kept.push(now);
  if (kept.length > policy.maxRestarts) return { action: 'escalate', window: kept };
  return { action: 'restart', delayMs: backoffDelay(kept.length, policy), window: kept };
}

export function backoffDelay(restartsInWindow: number, policy: RestartPolicy): number {
  if (restartsInWindow <= 0) return 0;
  return Math.min(policy.backoffMaxMs, policy.backoffInitialMs * Math.pow(policy.backoffFactor, restartsInWindow - 1));
}

/** Throws ERR_INVALID_OPTION naming the first bad field, e.g. `options.restart.periodMs`. */
export function validateRestartPolicy(p: RestartPolicy, name: string): void {
  const nonNeg = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  if (!Number.isInteger(p.maxRestarts) || p.maxRestarts < 0)
    throw invalidOption(`${name}.maxRestarts`, 'must be a non-negative integer', p.maxRestarts);
  if (!nonNeg(p.periodMs) || p.periodMs === 0) throw invalidOption(`${name}.periodMs`, 'must be a positive number', p.periodMs);
  if (!nonNeg(p.backoffInitialMs)) throw invalidOption(`${name}.backoffInitialMs`, 'must be a non-negative number', p.backoffInitialMs);
  if (!nonNeg(p.backoffMaxMs)) throw invalidOption(`${name}.backoffMaxMs`, 'must be a non-negative number', p.backoffMaxMs);
  if (!(typeof p.backoffFactor === 'number' && p.backoffFactor >= 1))
    throw invalidOption(`${name}.backoffFactor`, 'must be a number >= 1', p.backoffFactor);
}
