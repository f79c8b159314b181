/**
 * The invariant checker against the classic replication bugs. A seeded chaos schedule
 * (writes, lost and duplicated frames, process crashes, OS crashes that lose an unsynced tail,
 * failovers, a primary cut off and replaced) runs over the pure reducers in `PartitionModel`:
 * with the reducers as they are, no seed shows a violation; with each bug planted in the model's
 * stand-in for the driver, some seed within the first SEEDS does. A checker that cannot fail
 * proves nothing, so each bug's first failing seed is asserted, not only the clean run.
 */
import { describe, expect, it } from 'vitest';
import type { ReplicaSet } from '../../src/replication/epoch.ts';
import { PartitionModel, type PlantedBugs } from './model.ts';

const SEEDS = 300;
const STEPS = 80;
const IDS = [1, 2, 3];

function setOf(candidate: number): ReplicaSet {
  return { members: [candidate, ...IDS.filter((i) => i !== candidate)], w: 2 };
}

/** Runs one seed's schedule; returns the first violations seen (empty: none) and how much was acknowledged. */
function chaos(seed: number, bugs: PlantedBugs = {}): { violations: string[]; acked: number; failovers: number } {
  const m = new PartitionModel(IDS, seed, { drop: 0.05, duplicate: 0.1 }, bugs);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(m.random() * xs.length)]!;
  let primary: number | undefined;
  let zombie: number | undefined;
  let writes = 0;
  let failovers = 0;

  /** Fences `c` until it serves with its start entry committed, or gives up (lost frames, no quorum). */
  const elect = (c: number): boolean => {
    m.campaign(c, setOf(c));
    for (let round = 0; round < 12; round++) {
      m.run();
      const pr = m.node(c).primary;
      if (pr?.status === 'serving' && pr.commit >= pr.startSeq) return true;
      if (pr) m.tick();
      else m.campaign(c, setOf(c)); // a prepare or promise was lost: a new term
    }
    return false;
  };
  const others = (x: number | undefined): number[] => IDS.filter((i) => i !== x && m.node(i).alive);
  const failover = (): void => {
    const survivors = others(primary).filter((i) => i !== zombie); // a cut-off node cannot fence
    for (const c of survivors) {
      if (elect(c)) {
        primary = c;
        failovers++;
        return;
      }
    }
    primary = undefined;
  };

  if (elect(1)) primary = 1;
  for (let step = 0; step < STEPS; step++) {
    const r = m.random();
    if (r < 0.5) {
      if (primary !== undefined) m.write(primary, `w${writes++}`);
      if (zombie !== undefined) m.write(zombie, `z${writes++}`); // a replaced primary, unaware
      m.run(Math.floor(m.random() * 6));
    } else if (r < 0.65) {
      m.tick();
      m.run(Math.floor(m.random() * 10));
    } else if (r < 0.75) {
      const victim = pick(others(primary));
      if (victim !== undefined) {
        m.kill(victim); // a process crash: the store survives
        m.restart(victim);
      }
    } else if (r < 0.82) {
      const victim = pick(others(primary));
      if (victim !== undefined) m.osCrash(victim, 1 + Math.floor(m.random() * 3));
    } else if (r < 0.9) {
      if (primary !== undefined) {
        const old = primary;
        m.kill(old);
        failover();
        m.restart(old);
      } else failover();
    } else if (r < 0.95) {
      if (primary !== undefined && zombie === undefined) {
        // The primary is cut off but keeps running: the others replace it.
        zombie = primary;
        m.partition([zombie], others(zombie));
        failover();
      }
    } else if (zombie !== undefined) {
      m.heal();
      zombie = undefined;
      if (primary === undefined) failover();
    }
    const v = m.violations('newest');
    if (v.length > 0) return { violations: v, acked: m.acked.length, failovers };
  }
  m.heal();
  if (primary === undefined || !m.node(primary).primary) failover();
  for (let round = 0; round < 5; round++) {
    m.tick();
    m.run();
  }
  return { violations: m.violations('newest'), acked: m.acked.length, failovers };
}

function firstFailingSeed(bugs: PlantedBugs): number | undefined {
  for (let seed = 1; seed <= SEEDS; seed++) if (chaos(seed, bugs).violations.length > 0) return seed;
  return undefined;
}

describe('the invariant checker over a seeded chaos schedule', () => {
  it(`the reducers as they are: no violation in ${SEEDS} seeds, with real progress`, () => {
    let acked = 0;
    let failovers = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const run = chaos(seed);
      expect(run.violations, `seed ${seed}`).toEqual([]);
      acked += run.acked;
      failovers += run.failovers;
    }
    // The schedule must exercise what the bugs break: acknowledged writes and failovers.
    expect(acked).toBeGreaterThan(SEEDS * 10);
    expect(failovers).toBeGreaterThan(SEEDS / 2);
  });

  it('one seed run twice gives the same outcome', () => {
    expect(chaos(42)).toEqual(chaos(42));
    expect(chaos(42, { skipRecovery: true })).toEqual(chaos(42, { skipRecovery: true }));
  });

  it.each<[string, PlantedBugs]>([
    ['an acknowledgement counted before the replica persisted', { ackBeforePersist: true }],
    ['a follower log truncated to its high watermark, not by epoch (KIP-101)', { truncateToHighWatermark: true }],
    ['a replica that lost its page cache counted in the recovery quorum (KIP-966)', { uncleanCounted: true }],
    ['a new primary serving from its own log without recovering the highest one', { skipRecovery: true }],
    ['replicas accepting appends from an older epoch (a deposed primary still acknowledging)', { acceptOlderEpoch: true }],
  ])(`planted: %s — caught within ${SEEDS} seeds`, (_, bugs) => {
    const seed = firstFailingSeed(bugs);
    expect(seed, 'no seed showed a violation').toBeDefined();
    console.log(`  first failing seed: ${seed} — ${chaos(seed!, bugs).violations[0]}`);
  });
});
