import { describe, expect, it } from 'vitest';
import { backoffDelay, decideRestart, validateRestartPolicy, type RestartPolicy } from '../../src/supervisor/restart-window.ts';

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
  it.each([
    { field: 'maxRestarts', value: -1, message: 'options.restart.maxRestarts must be a non-negative integer (got -1)' },
    { field: 'periodMs', value: 0, message: 'options.restart.periodMs must be a positive number (got 0)' },
    { field: 'backoffFactor', value: 0.5, message: 'options.restart.backoffFactor must be a number >= 1 (got 0.5)' },
    { field: 'backoffInitialMs', value: Number.NaN, message: 'options.restart.backoffInitialMs must be a non-negative number (got NaN)' },
  ])('names $field', ({ field, value, message }) => {
    expect(() => validateRestartPolicy({ ...policy, [field]: value }, 'options.restart')).toThrow(message);
  });
});
