import { describe, expect, it } from 'vitest';
import { SimulatedClock, systemClock } from '../../src/core/clock.ts';
import { fromErrorRecord, invalidOption, isTroupeError, toErrorRecord, troupeError } from '../../src/core/errors.ts';
import { hash32 } from '../../src/core/hash.ts';

describe('SimulatedClock', () => {
  it('fires timers in deadline order, ties in creation order, only when time reaches them', () => {
    const clock = new SimulatedClock(100);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('b@50'), 50);
    clock.setTimeout(() => fired.push('a@10'), 10);
    clock.setTimeout(() => fired.push('c@50'), 50);
    const cancelled = clock.setTimeout(() => fired.push('never'), 20);
    clock.clearTimeout(cancelled);
    clock.advance(9);
    expect(fired).toEqual([]);
    clock.advance(1);
    expect(fired).toEqual(['a@10']);
    expect(clock.now()).toBe(110);
    clock.advance(100);
    expect(fired).toEqual(['a@10', 'b@50', 'c@50']);
    expect(clock.pending).toBe(0);
  });

  it('runs a timer armed by a firing timer within the same advance when it is due', () => {
    const clock = new SimulatedClock();
    const at: number[] = [];
    clock.setTimeout(() => {
      at.push(clock.now());
      clock.setTimeout(() => at.push(clock.now()), 5);
    }, 5);
    clock.advance(20);
    expect(at).toEqual([5, 10]);
    expect(clock.now()).toBe(20);
  });

  it('runs setImmediate work on the next advance, at the same instant, never on its own', async () => {
    const clock = new SimulatedClock(50);
    const ran: Array<[string, number]> = [];
    clock.setTimeout(() => ran.push(['timer', clock.now()]), 0);
    clock.setImmediate(() => {
      ran.push(['immediate', clock.now()]);
      clock.setImmediate(() => ran.push(['chained', clock.now()]));
    });
    // A real event-loop turn passes: the simulation, not Node, decides when the work runs.
    await new Promise((r) => setImmediate(r));
    expect(ran).toEqual([]);
    clock.advance(0);
    expect(ran).toEqual([
      ['timer', 50],
      ['immediate', 50],
      ['chained', 50],
    ]);
    expect(clock.now()).toBe(50);
  });

  it('SystemClock.setImmediate runs once the current code is done, ahead of a 5 ms timer', async () => {
    const order: string[] = [];
    const done = new Promise<void>((resolve) => {
      systemClock.setImmediate(() => order.push('immediate'));
      setTimeout(() => {
        order.push('timer');
        resolve();
      }, 5);
      order.push('sync');
    });
    await done;
    expect(order).toEqual(['sync', 'immediate', 'timer']);
  });

  it('steps wall time without moving monotonic time', () => {
    const clock = new SimulatedClock(0, 1_000_000);
    clock.advance(10);
    clock.stepWall(-5_000);
    expect(clock.now()).toBe(10);
    expect(clock.wallNow()).toBe(1_000_010 - 5_000);
  });
});

describe('error catalog', () => {
  it('round-trips a TroupeError through its wire record', () => {
    const e = troupeError('ERR_MAILBOX_FULL', 'full', { capacity: 3 });
    const back = fromErrorRecord(JSON.parse(JSON.stringify(toErrorRecord(e))));
    expect(isTroupeError(back, 'ERR_MAILBOX_FULL')).toBe(true);
    expect(back.message).toBe('full');
    expect(back.details).toEqual({ capacity: 3 });
  });

  it.each([
    { name: 'a plain Error', error: new Error('boom'), code: 'ERR_INTERNAL', message: 'boom' },
    { name: 'a thrown string', error: 'oops', code: 'ERR_INTERNAL', message: 'oops' },
  ])('maps $name to ERR_INTERNAL', ({ error, code, message }) => {
    expect(toErrorRecord(error)).toEqual({ code, message });
  });

  it('maps an unknown wire code to ERR_INTERNAL instead of trusting it', () => {
    expect(fromErrorRecord({ code: 'ERR_MADE_UP' as never, message: 'x' }).code).toBe('ERR_INTERNAL');
  });

  it('names the option in validation errors', () => {
    expect(invalidOption('options.workers', 'must be a positive integer', -1).message).toBe(
      'options.workers must be a positive integer (got -1)',
    );
  });
});

describe('hash32', () => {
  it('keeps its values: ring positions and worker placement of stored actors depend on them', () => {
    // Golden values: if this fails, the hash changed and every key would move.
    expect([hash32(''), hash32('a'), hash32('session-1')]).toEqual([2872998923, 444641715, 599268235]);
    expect(hash32('session-1')).not.toBe(hash32('session-2'));
    expect(hash32('x')).toBeGreaterThanOrEqual(0);
    expect(hash32('x')).toBeLessThan(2 ** 32);
  });
});
