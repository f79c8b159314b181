/**
 * How a node numbers its lives (src/cluster/node-identity.ts): + 1 on the data it left, the wall
 * clock in ms on an empty or missing data directory (a replaced host reusing a dead node's id
 * then starts above every incarnation that id had). The simulator numbers lives with the same
 * function (test/replication/sim-cluster.ts, `restart`).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NodeIdentity, nextIncarnation } from '../../src/cluster/node-identity.ts';
import { SimulatedClock } from '../../src/core/clock.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('node lives', () => {
  it.each([
    ['no record: the wall clock, whole ms', undefined, 1_767_225_600_123.9, 1_767_225_600_123],
    ['a record: one more', 41, 1_767_225_600_123, 42],
    ['a record far above the clock (it stepped back): still one more', 1_900_000_000_000, 1_767_225_600_000, 1_900_000_000_001],
  ] as const)('nextIncarnation, %s', (_, previous, wall, want) => {
    expect(nextIncarnation(previous, wall)).toBe(want);
  });

  it('a data directory: the first life at the wall clock, each restart one more; an empty one starts at the clock again', async () => {
    const clock = new SimulatedClock(0, 1_767_225_600_000);
    const dir = await mkdtemp(join(tmpdir(), 'troupe-identity-'));
    dirs.push(dir);
    const first = await NodeIdentity.load(7, dir, clock);
    expect(first.incarnation).toBe(1_767_225_600_000);
    await first.close();
    clock.advance(5_000);
    const second = await NodeIdentity.load(7, dir, clock);
    expect(second.incarnation).toBe(1_767_225_600_001);
    await second.close();
    const replaced = await mkdtemp(join(tmpdir(), 'troupe-identity-'));
    dirs.push(replaced);
    const host = await NodeIdentity.load(7, replaced, clock);
    expect(host.incarnation).toBe(1_767_225_605_000);
    expect(host.incarnation).toBeGreaterThan(second.incarnation);
    await host.close();
    expect((await NodeIdentity.load(7, undefined, clock)).incarnation).toBe(1_767_225_605_000);
  });
});
