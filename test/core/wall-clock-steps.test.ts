/**
 * The fault-injection wall-clock step (`enableWallClockSteps`, `troupe start --fault-injection`):
 * it moves `systemClock.wallNow()` here and in worker threads started afterwards, never the
 * monotonic `now()`, and refuses steps it cannot hold.
 */
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { enableWallClockSteps, MAX_WALL_STEP_MS, SimulatedClock, systemClock } from '../../src/core/clock.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import { decodeSnowflake, SnowflakeGenerator } from '../../src/cluster/snowflake.ts';

/** The built clock module, as a worker thread of a node loads it (dist/ is rebuilt by the global setup). */
const builtClock = new URL('../../dist/core/clock.js', import.meta.url).href;

/** `systemClock.wallNow() - Date.now()` as a fresh worker thread reads it, and again after `then` ran here. */
function workerOffsets(then: () => void): Promise<[number, number]> {
  const code = `
    const { parentPort } = require('node:worker_threads');
    import(${JSON.stringify(builtClock)}).then(({ systemClock }) => {
      const read = () => Math.round((systemClock.wallNow() - Date.now()) / 1000) * 1000;
      parentPort.postMessage(read());
      parentPort.once('message', () => parentPort.postMessage(read()));
    });`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true });
    const seen: number[] = [];
    w.on('error', reject);
    w.on('message', (m: number) => {
      seen.push(m);
      if (seen.length === 1) (then(), w.postMessage('again'));
      else void w.terminate().then(() => resolve([seen[0]!, seen[1]!]));
    });
  });
}

const steps = enableWallClockSteps();
afterEach(() => steps.reset());

const near = (a: number, b: number) => Math.abs(a - b) < 1_000;

describe('enableWallClockSteps', () => {
  it('moves wallNow by the offset, back and forward, and never moves the monotonic now', () => {
    const mono = systemClock.now();
    expect(steps.step(-30_000)).toBe(-30_000);
    expect(near(systemClock.wallNow(), Date.now() - 30_000)).toBe(true);
    expect(steps.step(60_000)).toBe(30_000);
    expect(near(systemClock.wallNow(), Date.now() + 30_000)).toBe(true);
    expect(systemClock.now() - mono).toBeLessThan(1_000);
    steps.reset();
    expect(steps.offset()).toBe(0);
    expect(near(systemClock.wallNow(), Date.now())).toBe(true);
  });

  it('returns the one process-wide handle', () => {
    enableWallClockSteps().step(5_000);
    expect(steps.offset()).toBe(5_000);
  });

  it.each([
    ['a fraction', 0.5],
    ['NaN', Number.NaN],
    ['past the Int32 offset', MAX_WALL_STEP_MS + 1],
  ])('refuses %s with ERR_INVALID_INPUT and keeps the offset', (_name, delta) => {
    steps.step(1_000);
    let caught: unknown;
    try {
      steps.step(delta);
    } catch (e) {
      caught = e;
    }
    expect(isTroupeError(caught, 'ERR_INVALID_INPUT')).toBe(true);
    expect((caught as Error).message).toMatch(/wall-clock step/);
    expect(steps.offset()).toBe(1_000);
  });

  it('reaches a worker thread started after it, for steps made before and after the thread started', async () => {
    steps.step(-30_000);
    expect(await workerOffsets(() => steps.step(90_000))).toEqual([-30_000, 60_000]);
  });

  it('stamps a Snowflake id issued after a forward step with the stepped time; ids stay increasing over a step back', () => {
    const ids = new SnowflakeGenerator({ nodeId: 2, clock: systemClock });
    const before = ids.next();
    steps.step(60_000);
    const ahead = ids.next();
    expect(near(decodeSnowflake(ahead).timestamp, Date.now() + 60_000)).toBe(true);
    steps.reset(); // 60 s back: the generator keeps its logical time
    const after = ids.next();
    expect(before < ahead && ahead < after).toBe(true);
    expect(decodeSnowflake(after).timestamp).toBeGreaterThanOrEqual(decodeSnowflake(ahead).timestamp);
  });

  it('steps a SimulatedClock on its own, without touching the process clock', () => {
    const clock = new SimulatedClock(0, 1_700_000_000_000);
    const sim = enableWallClockSteps(clock);
    expect(sim.step(-30_000)).toBe(-30_000);
    expect(clock.wallNow()).toBe(1_700_000_000_000 - 30_000);
    expect(steps.offset()).toBe(0);
    sim.reset();
    expect(clock.wallNow()).toBe(1_700_000_000_000);
    expect(clock.now()).toBe(0);
  });

  it('refuses a clock it cannot step, naming the option', () => {
    const other = { now: () => 0, wallNow: () => 0, setTimeout: () => ({}), clearTimeout: () => undefined, setImmediate: () => undefined };
    expect(() => enableWallClockSteps(other)).toThrow(/^clock must be a SystemClock or a SimulatedClock/);
  });
});
