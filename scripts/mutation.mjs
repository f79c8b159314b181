#!/usr/bin/env node
// Runs StrykerJS one module at a time (see stryker.config.mjs for the modules).
//
//   npm run test:mutation                                  every module in turn
//   npm run test:mutation -- mailbox ring                  named modules
//   npm run test:mutation -- --mutate src/cluster/ring.ts  a module by its source file
//   npm run test:mutation -- ring --force                  other flags go to Stryker as they are
//   npm run test:mutation -- actor-host --concurrency 2    (with their values)
//
// One Stryker run per module, each with its own incremental file
// (reports/mutation/<module>.incremental.json): Stryker rewrites the incremental file with the
// results of the current run only, so one shared file would forget every module not in the run.
// Incremental runs retest the mutants whose source changed; Stryker 9.5's vitest runner reports
// no test locations, so an edited test is not noticed: after changing tests, pass --force.
import { spawnSync } from 'node:child_process';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { modules } from '../stryker.config.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The package's exports hide bin/, so name the file the npm bin link points at.
const strykerBin = join(root, 'node_modules', '@stryker-mutator', 'core', 'bin', 'stryker.js');

function moduleOfFile(file) {
  const rel = relative(root, resolve(file)).split('\\').join('/');
  return Object.keys(modules).find((name) => modules[name].includes(rel));
}

function usage(message) {
  console.error(`test:mutation: ${message}`);
  console.error(`modules: ${Object.keys(modules).join(', ')}`);
  process.exit(2);
}

const chosen = [];
const passThrough = [];
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (arg === '--mutate' || arg === '-m') {
    const file = args[++i];
    if (file === undefined) usage(`${arg} needs a source file`);
    const name = moduleOfFile(file);
    if (name === undefined) usage(`--mutate ${file} is not a file in scope`);
    chosen.push(name);
  } else if (arg.startsWith('-')) {
    passThrough.push(arg);
    // A Stryker flag's value (`--concurrency 2`, `--logLevel debug`): not a module name.
    const next = args[i + 1];
    if (!arg.includes('=') && next !== undefined && !next.startsWith('-') && !(next in modules)) passThrough.push(args[++i]);
  } else if (arg in modules) {
    chosen.push(arg);
  } else {
    const name = moduleOfFile(arg);
    if (name === undefined) usage(`unknown module ${arg}`);
    chosen.push(name);
  }
}

const runList = chosen.length > 0 ? [...new Set(chosen)] : Object.keys(modules);
let failed = 0;
for (const name of runList) {
  const started = Date.now();
  console.log(`\n=== mutation: ${name} (${modules[name].join(', ')}) ===`);
  const run = spawnSync(process.execPath, [strykerBin, 'run', 'stryker.config.mjs', ...passThrough], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, TROUPE_MUTATION_MODULE: name },
  });
  const seconds = Math.round((Date.now() - started) / 1000);
  console.log(`=== mutation: ${name} finished in ${seconds} s (exit ${run.status ?? run.signal}) ===`);
  if (run.status !== 0) failed++;
}
process.exit(failed > 0 ? 1 : 0);
