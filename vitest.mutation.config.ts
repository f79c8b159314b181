import { defineConfig } from 'vitest/config';

/**
 * The tests StrykerJS runs against each mutant (see stryker.config.mjs and docs/testing.md).
 *
 * Only in-process tests of the mutated modules: Stryker runs vitest in one worker thread with
 * instrumented sources, and tests that start real worker threads or child processes fail there
 * (the thread or process loads the uninstrumented files and cannot see the active mutant).
 * Property tests read TROUPE_PROPERTY_RUNS and use fewer keys, because each surviving mutant
 * reruns every test that covers it.
 */
export default defineConfig({
  test: {
    include: [
      'test/mailbox/*.test.ts',
      'test/supervisor/restart-window.test.ts',
      'test/supervisor/jump-hash.test.ts',
      'test/cluster/ring.test.ts',
      'test/cluster/membership-mutants.test.ts',
      'test/cluster/membership.test.ts',
      'test/transport/frame-codec.test.ts',
      'test/cluster/handshake.test.ts',
      'test/persistence/journal-contract.test.ts',
      'test/persistence/memory-journal.test.ts',
      'test/actors/actor-host.test.ts',
      'test/actors/actor-host-edges.test.ts',
      'test/actors/actor-host-mutants.test.ts',
      'test/actors/hostile-values.test.ts',
      'test/actors/replay.test.ts',
      'test/actors/write-pipeline.test.ts',
      // The reducers' tests by name: the failover suites beside them run whole clusters
      // (seconds per test, for every mutant they cover) or start processes.
      'test/replication/epoch.test.ts',
      'test/replication/partition-table.test.ts',
      'test/replication/reducers.test.ts',
      'test/replication/reducer-edges.test.ts',
      'test/replication/planted-bugs.test.ts',
    ],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // TROUPE_SIM_NODES: the membership simulations at 100 nodes rather than 1,000 (see membership.test.ts).
    env: { TROUPE_LOG_LEVEL: 'silent', TROUPE_PROPERTY_RUNS: '10000', TROUPE_SIM_NODES: '100' },
  },
});
