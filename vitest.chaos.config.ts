import { defineConfig } from 'vitest/config';

/**
 * `npm run test:chaos` (scripts/chaos.mjs): the real-process fault scenarios, test/chaos/*.chaos.ts
 * (and test/security/*.chaos.ts),
 * one file at a time (they start up to five nodes each and measure recovery in wall-clock time).
 */
export default defineConfig({
  test: {
    // The security suite's 10,000 idle connections (~35 s) run here too, not in npm test.
    include: ['test/chaos/**/*.chaos.ts', 'test/security/**/*.chaos.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 60_000,
    env: { TROUPE_LOG_LEVEL: 'silent' },
  },
});
