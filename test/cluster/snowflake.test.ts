import { describe, expect, it } from 'vitest';
import { SimulatedClock } from '../../src/core/clock.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import { decodeSnowflake, SNOWFLAKE_EPOCH, snowflakeAt, SnowflakeGenerator } from '../../src/cluster/snowflake.ts';

const WALL = Date.UTC(2025, 5, 1, 12, 0, 0);

function simulated(wall = WALL) {
  const clock = new SimulatedClock(0, wall);
  return { clock, onSpin: () => clock.advance(1) };
}

function expectStrictlyIncreasing(ids: bigint[]) {
  for (let i = 1; i < ids.length; i++) {
    if (!(ids[i]! > ids[i - 1]!)) throw new Error(`id ${i} (${ids[i]}) is not above id ${i - 1} (${ids[i - 1]})`);
  }
  expect(new Set(ids).size).toBe(ids.length);
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('SnowflakeGenerator', () => {
  it('lays out 42-bit time, 10-bit node id and 12-bit counter', () => {
    const { clock } = simulated();
    const gen = new SnowflakeGenerator({ nodeId: 1023, clock });
    const id = gen.next();
    expect(id).toBe((BigInt(WALL - SNOWFLAKE_EPOCH) << 22n) | (1023n << 12n));
    expect(decodeSnowflake(id)).toEqual({ timestamp: WALL, nodeId: 1023, counter: 0 });
    expect(decodeSnowflake(gen.next()).counter).toBe(1);
  });

  it('stays unique and strictly increasing across counter exhaustion, waiting for the next ms', () => {
    const { clock, onSpin } = simulated();
    let spins = 0;
    const gen = new SnowflakeGenerator({ nodeId: 5, clock, onSpin: () => (spins++, onSpin()) });
    const ids = Array.from({ length: 3 * 4096 + 100 }, () => gen.next());
    expectStrictlyIncreasing(ids);
    const decoded = ids.map(decodeSnowflake);
    expect(decoded[4095]).toEqual({ timestamp: WALL, nodeId: 5, counter: 4095 });
    expect(decoded[4096]).toEqual({ timestamp: WALL + 1, nodeId: 5, counter: 0 });
    expect(decoded.at(-1)).toEqual({ timestamp: WALL + 3, nodeId: 5, counter: 99 });
    expect(spins).toBe(3); // one simulated millisecond per exhausted counter, no more
  });

  it('never duplicates or goes backwards when the wall clock steps back 5 s', () => {
    const { clock, onSpin } = simulated();
    const gen = new SnowflakeGenerator({ nodeId: 9, clock, onSpin });
    const ids: bigint[] = [];
    for (let i = 0; i < 5000; i++) ids.push(gen.next());
    clock.advance(3);
    for (let i = 0; i < 10; i++) ids.push(gen.next());
    const before = decodeSnowflake(ids.at(-1)!).timestamp;
    clock.stepWall(-5000);
    // 10 000 ids while behind: the counter runs out twice and must borrow ms, not wait 5 s.
    for (let i = 0; i < 10_000; i++) ids.push(gen.next());
    expectStrictlyIncreasing(ids);
    const behind = decodeSnowflake(ids.at(-1)!).timestamp;
    expect(behind).toBeGreaterThanOrEqual(before);
    expect(behind - before).toBeLessThanOrEqual(3); // logical time, ahead only by what was issued
    // Once the wall clock catches up, ids carry wall time again.
    clock.advance(6000);
    const caughtUp = gen.next();
    expect(caughtUp).toBeGreaterThan(ids.at(-1)!);
    expect(decodeSnowflake(caughtUp).timestamp).toBe(clock.wallNow());
  });

  it('does not repeat ids after a restart from the persisted timestamp while the wall clock is behind', () => {
    const { clock, onSpin } = simulated();
    let persisted = 0;
    const first = new SnowflakeGenerator({ nodeId: 3, clock, onSpin, onAdvance: (ts) => (persisted = ts) });
    const ids = Array.from({ length: 6000 }, () => first.next());
    expect(persisted).toBe(first.lastTimestamp);
    // The process dies mid-millisecond; it restarts with the wall clock 5 s behind.
    clock.stepWall(-5000);
    const second = new SnowflakeGenerator({ nodeId: 3, clock, onSpin, lastTimestamp: persisted });
    expect(second.lastTimestamp).toBe(persisted);
    const more = Array.from({ length: 6000 }, () => second.next());
    expectStrictlyIncreasing([...ids, ...more]);
    // The persisted millisecond may have been partly used: the restart starts after it.
    expect(decodeSnowflake(more[0]!)).toEqual({ timestamp: persisted + 1, nodeId: 3, counter: 0 });
  });

  it('reports each new millisecond to onAdvance once, in increasing order', () => {
    const { clock, onSpin } = simulated();
    const seen: number[] = [];
    const gen = new SnowflakeGenerator({ nodeId: 1, clock, onSpin, onAdvance: (ts) => seen.push(ts) });
    for (let i = 0; i < 4096 * 2 + 1; i++) gen.next();
    expect(seen).toEqual([WALL, WALL + 1, WALL + 2]);
  });

  it.each([
    { name: 'early in the epoch (no high decimal part)', wall: SNOWFLAKE_EPOCH + 3 },
    { name: 'a low part with leading zeros', wall: SNOWFLAKE_EPOCH + 250 },
    { name: 'a typical 2025 time', wall: WALL },
    { name: 'near the 42-bit end', wall: SNOWFLAKE_EPOCH + 2 ** 42 - 10 },
  ])('prints nextString() exactly as the bigint would: $name', ({ wall }) => {
    for (const nodeId of [0, 1, 511, 1023]) {
      const a = simulated(wall);
      const b = simulated(wall);
      const strings = new SnowflakeGenerator({ nodeId, clock: a.clock, onSpin: a.onSpin });
      const bigints = new SnowflakeGenerator({ nodeId, clock: b.clock, onSpin: b.onSpin });
      // Every counter of several milliseconds, so carries past 1e9 in the low part are covered.
      for (let i = 0; i < 4096 * 3; i++) {
        const s = strings.nextString();
        const v = bigints.next();
        if (s !== v.toString()) throw new Error(`id ${i} at node ${nodeId}: ${s} !== ${v}`);
      }
    }
  });

  it('round-trips decode for bigint and string ids', () => {
    const { clock, onSpin } = simulated();
    const gen = new SnowflakeGenerator({ nodeId: 700, clock, onSpin });
    for (let i = 0; i < 5000; i++) {
      const id = gen.next();
      const d = decodeSnowflake(id);
      expect(decodeSnowflake(id.toString())).toEqual(d);
      expect((BigInt(d.timestamp - SNOWFLAKE_EPOCH) << 22n) | (BigInt(d.nodeId) << 12n) | BigInt(d.counter)).toBe(id);
    }
    expect(snowflakeAt(WALL)).toBe(BigInt(WALL - SNOWFLAKE_EPOCH) << 22n);
  });

  it.each([
    { name: 'negative', id: '-1' },
    { name: 'not a number', id: 'abc' },
    { name: 'over 64 bits', id: '18446744073709551616' },
  ])('rejects a malformed id in decode: $name', ({ id }) => {
    expect(
      isTroupeError(
        caught(() => decodeSnowflake(id)),
        'ERR_INVALID_INPUT',
      ),
    ).toBe(true);
  });

  it.each([
    { name: 'too large', nodeId: 1024, message: 'options.nodeId must be an integer in 0..1023 (got 1024)' },
    { name: 'negative', nodeId: -1, message: 'options.nodeId must be an integer in 0..1023 (got -1)' },
    { name: 'fractional', nodeId: 1.5, message: 'options.nodeId must be an integer in 0..1023 (got 1.5)' },
    { name: 'a string', nodeId: '7', message: 'options.nodeId must be an integer in 0..1023 (got "7")' },
  ])('validates the node id: $name', ({ nodeId, message }) => {
    const { clock } = simulated();
    const e = caught(() => new SnowflakeGenerator({ nodeId: nodeId as number, clock }));
    expect(isTroupeError(e, 'ERR_INVALID_OPTION')).toBe(true);
    expect((e as Error).message).toBe(message);
  });

  it('validates lastTimestamp', () => {
    const { clock } = simulated();
    expect(() => new SnowflakeGenerator({ nodeId: 1, clock, lastTimestamp: 5 })).toThrow(
      'options.lastTimestamp must be an integer Unix ms timestamp from 2024-01-01 on (got 5)',
    );
  });

  it('fails with ERR_CLOCK on a wall clock before the epoch with no history', () => {
    const { clock } = simulated(SNOWFLAKE_EPOCH - 1000);
    const gen = new SnowflakeGenerator({ nodeId: 1, clock });
    expect(
      isTroupeError(
        caught(() => gen.next()),
        'ERR_CLOCK',
      ),
    ).toBe(true);
  });

  it('fails with ERR_CLOCK rather than hang when the wall clock never moves', () => {
    const { clock } = simulated();
    const gen = new SnowflakeGenerator({ nodeId: 1, clock }); // no onSpin: the simulated clock is stuck
    for (let i = 0; i < 4096; i++) gen.next();
    expect(
      isTroupeError(
        caught(() => gen.next()),
        'ERR_CLOCK',
      ),
    ).toBe(true);
  });
});
