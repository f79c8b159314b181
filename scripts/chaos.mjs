#!/usr/bin/env node
// `npm run test:chaos [-- <vitest file filters>]`: the real-process fault scenarios
// (test/chaos/*.chaos.ts, vitest.chaos.config.ts), one file at a time. Every scenario appends
// its line to test/chaos/results/latest.jsonl (emptied first); at the end the lines are printed
// as the table docs/reliability.md is written from, and saved as test/chaos/results/latest.md
// with the machine's date, Node version, commit and load average.
//
// `--soak <seconds>` runs scenario 13 alone (test/chaos/soak.chaos.ts, skipped without it):
// three nodes under load with random faults drawn from a printed seed for that long, their RSS,
// open fds and log volume checked flat. `CHAOS_SOAK_SEED=<n>` replays a fault schedule.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const resultsDir = `${root}test/chaos/results`;
const jsonl = `${resultsDir}/latest.jsonl`;
const args = process.argv.slice(2);
const soak = soakSeconds(args);
function soakSeconds(argv) {
  const at = argv.findIndex((a) => a === '--soak' || a.startsWith('--soak='));
  if (at < 0) return undefined;
  const [flag, inline] = argv[at].split('=');
  const value = inline ?? argv[at + 1];
  argv.splice(at, inline === undefined ? 2 : 1);
  // At least a minute: the flatness check compares the run's second and last thirds.
  if (!/^\d{1,6}$/.test(value ?? '') || Number(value) < 60 || Number(value) > 86_400) {
    console.error(`test:chaos: ${flag} must be a whole number of seconds in [60, 86400], e.g. --soak 600 (got ${JSON.stringify(value ?? null)})`);
    process.exit(2);
  }
  return Number(value);
}
mkdirSync(resultsDir, { recursive: true });
rmSync(jsonl, { force: true });
const started = Date.now();
const load = loadavg().map((n) => n.toFixed(2)).join(' ');
const files = soak === undefined ? args : ['test/chaos/soak.chaos.ts', ...args];
const run = spawnSync('npx', ['vitest', 'run', '--config', 'vitest.chaos.config.ts', ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, CHAOS_RESULTS: jsonl, ...(soak !== undefined && { CHAOS_SOAK_SECONDS: String(soak) }) },
});
const seconds = Math.round((Date.now() - started) / 1000);
const lines = existsSync(jsonl) ? readFileSync(jsonl, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
const commit = spawnSync('git', ['describe', '--always', '--dirty'], { cwd: root, encoding: 'utf8' }).stdout.trim();
const header = `${new Date(started).toISOString()}, Node ${process.version}, ${commit}, load average at start ${load}, ${seconds} s in all`;
const table = [
  '| scenario | load | fault | acknowledged | lost | duplicated | unknown | recovered (ms) | peak RSS (MiB) | time (s) | pass | criterion | notes |',
  '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |',
  ...lines.map((l) =>
    [l.scenario, l.load, l.fault, l.acknowledged, l.lost, l.duplicated, l.unknown, l.recoverMs ?? '—', l.peakRssMb, l.seconds, l.pass ? 'PASS' : '**FAIL**', l.criterion, l.notes ?? '']
      .map((c) => String(c).replaceAll('|', '\\|'))
      .join(' | ')
      .replace(/^/, '| ')
      .concat(' |'),
  ),
].join('\n');
writeFileSync(`${resultsDir}/latest.md`, `${header}\n\n${table}\n`);
console.log(`\n${header}\n\n${table}\n`);
process.exit(run.status ?? 1);
