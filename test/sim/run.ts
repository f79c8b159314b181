/**
 * `npm run test:sim -- [--seeds N] [--from S] [--nodes 3|5] [--seed S] [--verbose] [--all-faults] [--quick]`
 *
 * Runs seeds of the deterministic simulator (sim-run.ts) one after another: a progress line every
 * few seconds, then a summary (seeds, faults injected by type, operations, violations). A failing
 * seed prints its violations and the command that replays it; the run exits 1 if any seed failed,
 * 2 on a bad flag.
 *
 * @example
 *   npm run test:sim -- --seeds 1000              # seeds 1..1000, 3 nodes, the full profile
 *   npm run test:sim -- --seeds 500 --from 7000 --nodes 5
 *   npm run test:sim -- --seed 1234 --verbose     # replay one seed and print its story
 *   SIM_FIELDS=1 npm run test:sim -- --seed 1234 --verbose   # the story's log lines with their fields (sets, W, errors)
 */
import { FAULT_TYPES, type FaultType } from './fault-schedule.ts';
import { FULL_PROFILE, QUICK_PROFILE, replayCommand, runSeed, type SimProfile } from './sim-run.ts';

interface Flags {
  seeds: number;
  from: number;
  nodes: number;
  verbose: boolean;
  allFaults: boolean;
  quick: boolean;
}

function usage(message: string): never {
  console.error(`test:sim: ${message}`);
  console.error('usage: npm run test:sim -- [--seeds N] [--from S] [--nodes 3|5] [--seed S] [--verbose] [--all-faults] [--quick]');
  process.exit(2);
}

function parse(argv: readonly string[]): Flags {
  const f: Flags = { seeds: 100, from: 1, nodes: 3, verbose: false, allFaults: false, quick: false };
  const int = (flag: string, raw: string | undefined, min: number): number => {
    const n = Number(raw);
    if (raw === undefined || !Number.isSafeInteger(n) || n < min) usage(`${flag} must be an integer ≥ ${min} (got ${raw ?? 'nothing'})`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--seeds') f.seeds = int('--seeds', argv[++i], 1);
    else if (a === '--from') f.from = int('--from', argv[++i], 0);
    else if (a === '--seed') {
      f.from = int('--seed', argv[++i], 0);
      f.seeds = 1;
    } else if (a === '--nodes') {
      f.nodes = int('--nodes', argv[++i], 1);
      if (f.nodes !== 3 && f.nodes !== 5) usage(`--nodes must be 3 or 5 (got ${f.nodes})`);
    } else if (a === '--verbose') f.verbose = true;
    else if (a === '--all-faults') f.allFaults = true;
    else if (a === '--quick') f.quick = true;
    else usage(`unknown flag ${a}`);
  }
  return f;
}

const flags = parse(process.argv.slice(2));
const base = flags.quick ? QUICK_PROFILE : FULL_PROFILE;
const profile: SimProfile = { ...base, nodes: flags.nodes, ...(flags.allFaults && { types: FAULT_TYPES, emptyRestarts: true }) };
// The replay command must carry every flag that changes the run.
const extra = `${flags.quick ? ' --quick' : ''}${flags.allFaults ? ' --all-faults' : ''}`;

const injected = Object.fromEntries(FAULT_TYPES.map((t) => [t, 0])) as Record<FaultType, number>;
const ops = { ok: 0, failed: 0, unknown: 0 };
const failing: Array<{ seed: number; violations: string[] }> = [];
const started = performance.now();
let lastProgress = started;
let simulatedMs = 0;

for (let seed = flags.from; seed < flags.from + flags.seeds; seed++) {
  let violations: string[];
  try {
    const r = await runSeed(seed, profile, flags.verbose ? { verbose: (line) => console.log(line) } : {});
    violations = r.violations;
    for (const t of FAULT_TYPES) injected[t] += r.injected[t];
    for (const op of [...r.counterOps, ...r.cartOps]) ops[op.outcome]++;
    simulatedMs += profile.faultsUntilMs + r.quietAfterMs;
  } catch (e) {
    // A run that throws (a node that cannot start, a wait that never ends) fails its seed too.
    violations = [`the run failed: ${(e as Error).stack ?? String(e)}`];
  }
  if (violations.length > 0) {
    failing.push({ seed, violations });
    console.log(`seed ${seed} FAILED (${violations.length} violations):`);
    for (const v of violations.slice(0, 10)) console.log(`  ${v}`);
    if (violations.length > 10) console.log(`  … and ${violations.length - 10} more`);
    console.log(`  replay: ${replayCommand(seed, flags.nodes)}${extra}`);
  }
  const now = performance.now();
  if (now - lastProgress > 5_000 || seed === flags.from + flags.seeds - 1) {
    lastProgress = now;
    const done = seed - flags.from + 1;
    console.log(
      `[${done}/${flags.seeds}] seed ${seed}, ${((now - started) / 1000).toFixed(1)} s, ${((now - started) / done).toFixed(0)} ms a seed, ${failing.length} failing`,
    );
  }
}

const seconds = (performance.now() - started) / 1000;
console.log('');
console.log(
  `seeds: ${flags.seeds} (${flags.from}..${flags.from + flags.seeds - 1}), ${flags.nodes} nodes, ${flags.quick ? 'quick' : 'full'} profile${flags.allFaults ? ', all faults' : ''}, ${seconds.toFixed(1)} s (${((seconds * 1000) / flags.seeds).toFixed(0)} ms a seed, ${(simulatedMs / 1000).toFixed(0)} simulated s)`,
);
console.log(`faults injected: ${FAULT_TYPES.map((t) => `${t} ${injected[t]}`).join(', ')}`);
console.log(`operations: ${ops.ok + ops.failed + ops.unknown} (ok ${ops.ok}, failed ${ops.failed}, unknown ${ops.unknown})`);
console.log(`violations: ${failing.reduce((n, f) => n + f.violations.length, 0)} in ${failing.length} seeds`);
if (failing.length > 0) {
  console.log('replay the failing seeds with:');
  for (const f of failing.slice(0, 20)) console.log(`  ${replayCommand(f.seed, flags.nodes)}${extra}`);
  if (failing.length > 20) console.log(`  … and ${failing.length - 20} more`);
  process.exit(1);
}
