import { writeFileSync } from 'node:fs';

// Mutation testing for the pure and core modules (issue 12). Not part of `npm test`: it takes
// minutes per module on 2 cores. Run it through scripts/mutation.mjs (`npm run test:mutation`),
// which runs one module at a time, each with its own incremental file; see docs/testing.md.

/** The modules in scope, by short name; scripts/mutation.mjs reads this list. */
export const modules = {
  mailbox: ['src/mailbox/mailbox.ts'],
  fifo: ['src/mailbox/fifo.ts'],
  'restart-window': ['src/supervisor/restart-window.ts'],
  'jump-hash': ['src/supervisor/jump-hash.ts'],
  ring: ['src/cluster/ring.ts'],
  membership: ['src/cluster/membership.ts'],
  'frame-codec': ['src/cluster/frame-codec.ts'],
  handshake: ['src/cluster/handshake.ts'],
  'memory-journal': ['src/persistence/memory-journal.ts'],
  'actor-host': ['src/actors/actor-host.ts'],
  replication: [
    'src/replication/epoch.ts',
    'src/replication/replica.ts',
    'src/replication/primary.ts',
    'src/replication/candidate.ts',
    'src/replication/partition-table.ts',
  ],
};

// scripts/mutation.mjs names one module per Stryker run; without it the run covers them all.
const only = process.env.TROUPE_MUTATION_MODULE;
if (only !== undefined && !(only in modules)) {
  throw new Error(`TROUPE_MUTATION_MODULE must be one of ${Object.keys(modules).join(', ')} (got ${only})`);
}
const name = only ?? 'all';

// The TypeScript checker of a one-module run sees that module and what it imports, nothing else:
// a half-edited file elsewhere in the tree then cannot stop the run, and each compile check is
// smaller. The file is written here (not committed) because it names the module being run.
// One file (and one temp dir, below) per module, so runs of different modules can go side by side.
const moduleTsconfig = `.stryker-tsconfig.${name}.json`;
if (only !== undefined) {
  const tsconfig = {
    extends: './tsconfig.json',
    // Node 20 has String#isWellFormed (src/core/value-domain.ts); ES2022 alone does not declare it.
    compilerOptions: { lib: ['ES2022', 'ES2024.String'] },
    include: [],
    files: modules[only],
  };
  writeFileSync(moduleTsconfig, JSON.stringify(tsconfig, null, 2) + '\n');
}

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts' },
  // Discards mutants that do not compile instead of counting them as killed.
  checkers: ['typescript'],
  tsconfigFile: only === undefined ? 'tsconfig.json' : moduleTsconfig,
  mutate: only ? modules[only] : Object.values(modules).flat(),
  // Each mutant runs only the tests that executed its code in the dry run.
  coverageAnalysis: 'perTest',
  // Reuses results for unchanged code and tests; the file is committed so a fresh clone is
  // incremental too. scripts/mutation.mjs gives each module its own file under reports/mutation/.
  incremental: true,
  incrementalFile: `reports/mutation/${name}.incremental.json`,
  // Two cores, shared with other test runs: one mutant at a time.
  concurrency: 1,
  reporters: ['clear-text', 'progress', 'html'],
  htmlReporter: { fileName: `reports/mutation/html/${name}.html` },
  tempDirName: `.stryker-tmp/${name}`,
  // Stryker skips its own temp dir only: not the sandboxes of other modules' runs beside it.
  ignorePatterns: ['/.stryker-tmp', '/dist', '/bench/out', '/reports'],
  cleanTempDir: 'always',
  thresholds: { high: 90, low: 80, break: null },
};
