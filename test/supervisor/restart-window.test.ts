import { describe, expect, it } from 'vitest';
import {
  actorRestartPolicy,
  backoffDelay,
  decideRestart,
  validateRestartPolicy,
  workerRestartPolicy,
  type RestartPolicy,
} from '../../src/supervisor/restart-window.ts';

const policy: RestartPolicy = { maxRestarts: 3, periodMs: 1_000, backoffInitialMs: 10, backoffMaxMs: 50, backoffFactor: 2 };

describe('decideRestart', () => {
  const cases: Array<{ name: string; window: number[]; now: number; expect: { action: string; delayMs?: number; window: number[] } }> = [
    { name: 'first restart', window: [], now: 0, expect: { action: 'restart', delayMs: 10, window: [0] } },
    { name: 'second restart doubles the delay', window: [0], now: 100, expect: { action: 'restart', delayMs: 20, window: [0, 100] } },
    { name: 'third restart', window: [0, 100], now: 200, expect: { action: 'restart', delayMs: 40, window: [0, 100, 200] } },
    {
      name: 'fourth within the period escalates',
      window: [0, 100, 200],
      now: 300,
      expect: { action: 'escalate', window: [0, 100, 200, 300] },
    },
    {
      name: 'old restarts slide out of the period',
      window: [0, 100, 200],
      now: 1_150,
      expect: { action: 'restart', delayMs: 20, window: [200, 1_150] },
    },
    {
      name: 'a restart exactly one period later no longer counts',
      window: [0],
      now: 1_000,
      expect: { action: 'restart', delayMs: 10, window: [1_000] },
    },
    {
      name: 'everything expired resets the backoff',
      window: [0, 1, 2],
      now: 5_000,
      expect: { action: 'restart', delayMs: 10, window: [5_000] },
    },
  ];
  it.each(cases)('$name', ({ window, now, expect: want }) => {
    const d = decideRestart(window, now, policy);
    expect(d.action).toBe(want.action);
    expect(d.window).toEqual(want.window);
    if (d.action === 'restart') expect(d.delayMs).toBe(want.delayMs);
  });

  it('does not mutate the window it is given', () => {
    const w = [0, 100];
    decideRestart(w, 200, policy);
    expect(w).toEqual([0, 100]);
  });

  it('maxRestarts 0 escalates on the first failure', () => {
    expect(decideRestart([], 0, { ...policy, maxRestarts: 0 }).action).toBe('escalate');
  });
});

describe('backoffDelay', () => {
  it.each([
    { n: 0, delay: 0 },
    { n: 1, delay: 10 },
    { n: 2, delay: 20 },
    { n: 3, delay: 40 },
    { n: 4, delay: 50 }, // capped
    { n: 30, delay: 50 },
  ])('restart $n waits $delay ms', ({ n, delay }) => {
    expect(backoffDelay(n, policy)).toBe(delay);
  });
});

describe('validateRestartPolicy', () => {
  // Each field at its smallest allowed value: the boundaries the checks must not refuse.
  it.each([
    { name: 'maxRestarts 0 (escalate on the first failure)', override: { maxRestarts: 0 } },
    { name: 'a sub-millisecond period', override: { periodMs: 0.5 } },
    { name: 'no backoff', override: { backoffInitialMs: 0, backoffMaxMs: 0 } },
    { name: 'a constant backoff (factor 1)', override: { backoffFactor: 1 } },
  ])('accepts $name', ({ override }) => {
    expect(() => validateRestartPolicy({ ...policy, ...override }, 'options.restart')).not.toThrow();
  });

  it.each([
    { name: 'actorRestartPolicy', profile: actorRestartPolicy },
    { name: 'workerRestartPolicy', profile: workerRestartPolicy },
  ])('accepts the shipped $name', ({ profile }) => {
    expect(() => validateRestartPolicy(profile, 'profile')).not.toThrow();
  });

  it.each([
    { field: 'maxRestarts', value: -1, message: 'options.restart.maxRestarts must be a non-negative integer (got -1)' },
    { field: 'maxRestarts', value: 1.5, message: 'options.restart.maxRestarts must be a non-negative integer (got 1.5)' },
    { field: 'periodMs', value: 0, message: 'options.restart.periodMs must be a positive number (got 0)' },
    { field: 'periodMs', value: -5, message: 'options.restart.periodMs must be a positive number (got -5)' },
    { field: 'periodMs', value: Infinity, message: 'options.restart.periodMs must be a positive number (got Infinity)' },
    { field: 'backoffInitialMs', value: Number.NaN, message: 'options.restart.backoffInitialMs must be a non-negative number (got NaN)' },
    { field: 'backoffInitialMs', value: -1, message: 'options.restart.backoffInitialMs must be a non-negative number (got -1)' },
    { field: 'backoffMaxMs', value: -1, message: 'options.restart.backoffMaxMs must be a non-negative number (got -1)' },
    { field: 'backoffMaxMs', value: Infinity, message: 'options.restart.backoffMaxMs must be a non-negative number (got Infinity)' },
    { field: 'backoffFactor', value: 0.5, message: 'options.restart.backoffFactor must be a number >= 1 (got 0.5)' },
    { field: 'backoffFactor', value: '2', message: 'options.restart.backoffFactor must be a number >= 1 (got "2")' },
    { field: 'backoffFactor', value: Number.NaN, message: 'options.restart.backoffFactor must be a number >= 1 (got NaN)' },
  ])('names $field = $value', ({ field, value, message }) => {
    expect(() => validateRestartPolicy({ ...policy, [field]: value }, 'options.restart')).toThrow(message);
  });

  it('throws ERR_INVALID_OPTION', () => {
    expect(() => validateRestartPolicy({ ...policy, maxRestarts: -1 }, 'options.restart')).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION' }),
    );
  });
});
