/**
 * The faults of one simulated run, drawn from its seed (a pure function: the same seed and
 * profile give the same schedule on every machine). Times are simulated ms from the end of the
 * cluster's start; every fault ends by `profile.faultsUntilMs`, when the run heals everything.
 *
 *   0 ─ warm-up ─┬──────── faults (overlapping, any order) ────────┬─ heal, restart the dead ─ quiet ─ finals
 *                warmupMs                                      faultsUntilMs
 */
import { seededRandom } from '../replication/sim-cluster.ts';

export type Fault =
  /** The node's process dies (its disk survives). */
  | { type: 'kill'; at: number; node: number }
  /** A killed node starts again on its disk (its next incarnation); `empty`: on a new, empty disk (a replaced host). */
  | { type: 'restart'; at: number; node: number; empty: boolean }
  /** Two groups that cannot reach each other, both directions. */
  | { type: 'partition'; at: number; until: number; groups: [number[], number[]] }
  /** Frames from `from` to `to` are lost; the other direction is delivered. */
  | { type: 'one-way'; at: number; until: number; from: number[]; to: number[] }
  /** Everything to and from the node is held until `until` (a stopped process: the kernel buffers it), then delivered. */
  | { type: 'pause'; at: number; until: number; node: number }
  /** The node's wall clock jumps by `deltaMs` (back when negative); monotonic time is untouched. */
  | { type: 'clock-step'; at: number; node: number; deltaMs: number }
  /** Every link loses, duplicates and delays (so reorders) frames at these rates. */
  | { type: 'lossy'; at: number; until: number; dropRate: number; duplicateRate: number; maxDelayMs: number }
  /** The node's disk refuses every write (full, or failing). */
  | { type: 'disk'; at: number; until: number; node: number; code: 'ERR_STORAGE_FULL' | 'ERR_JOURNAL_WRITE' };

export type FaultType = Fault['type'];
export const FAULT_TYPES: readonly FaultType[] = ['kill', 'restart', 'partition', 'one-way', 'pause', 'clock-step', 'lossy', 'disk'];

export interface ScheduleProfile {
  /** Node ids. */
  nodes: readonly number[];
  /** Load before the first fault, ms. */
  warmupMs: number;
  /** Every fault has ended by then, ms. */
  faultsUntilMs: number;
  /** How many faults to draw: uniform in [min, max]. */
  faults: { min: number; max: number };
  /** Fault types to draw from (a `restart` follows a `kill`: it needs 'kill'). Default: every type. */
  types?: readonly FaultType[];
  /** Whether a restart may be on an empty disk (a replaced host). Default true. */
  emptyRestarts?: boolean;
  /** The lan profile's failure-detection bound (1.46 s): a pause longer than this gets the node declared down. */
  detectionMs: number;
}

/** At most this many nodes dead at once: a majority stays up, so the cluster can serve meanwhile. */
export const maxDead = (nodes: number) => Math.floor((nodes - 1) / 2);

/**
 * Draws the schedule. Kills keep a majority alive, and a dead node is restarted by a later
 * `restart` (with its disk, or now and then on an empty one) or at the heal; every other fault is
 * a window inside the fault phase. Sorted by start time.
 */
export function drawSchedule(seed: number, profile: ScheduleProfile): Fault[] {
  const rnd = seededRandom(seed * 2_654_435 + 11);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const { nodes, warmupMs, faultsUntilMs } = profile;
  const span = faultsUntilMs - warmupMs;
  const window = (minMs: number, maxMs: number) => {
    const length = Math.min(int(minMs, maxMs), span);
    const at = warmupMs + int(0, span - length);
    return { at, until: at + length };
  };
  const split = (): [number[], number[]] => {
    const shuffled = [...nodes].sort(() => rnd() - 0.5);
    const cut = int(1, nodes.length - 1);
    return [shuffled.slice(0, cut).sort(), shuffled.slice(cut).sort()];
  };
  const out: Fault[] = [];
  // Each kill's dead interval [kill, restart]; kills are drawn in no time order, so a new one is
  // checked against all of them: the "majority alive" rule must hold at every instant.
  const dead: Array<{ node: number; from: number; to: number }> = [];
  let wiped = false;
  const count = int(profile.faults.min, profile.faults.max);
  // Kills twice as often as the rest: they move primaries, which is where replication can go wrong.
  const enabled = profile.types ?? FAULT_TYPES;
  const kinds = (['kill', 'kill', 'partition', 'one-way', 'pause', 'clock-step', 'lossy', 'disk'] as const).filter((t) =>
    enabled.includes(t),
  );
  if (kinds.length === 0) return [];
  for (let i = 0; i < count; i++) {
    const type = pick(kinds);
    switch (type) {
      case 'kill': {
        const restarted = rnd() < 0.7;
        const w = window(300, 2_500);
        const to = restarted ? w.until : faultsUntilMs;
        const overlapping = dead.filter((d) => d.from <= to && w.at <= d.to);
        if (overlapping.length >= maxDead(nodes.length)) break;
        // Not a node dead around then (a restart needs 200 ms before the next kill of it).
        const node = pick(nodes.filter((n) => !dead.some((d) => d.node === n && d.from - 200 <= to && w.at <= d.to + 200)));
        if (node === undefined) break;
        out.push({ type: 'kill', at: w.at, node });
        dead.push({ node, from: w.at, to });
        if (restarted) {
          // One replaced host per run at most: two empty disks could lose what only they held.
          const empty: boolean = profile.emptyRestarts !== false && !wiped && rnd() < 0.15;
          wiped ||= empty;
          out.push({ type: 'restart', at: to, node, empty });
        }
        break;
      }
      case 'partition':
        out.push({ type: 'partition', ...window(300, 3_000), groups: split() });
        break;
      case 'one-way': {
        const [from, to] = split();
        out.push({ type: 'one-way', ...window(300, 3_000), from, to });
        break;
      }
      case 'pause':
        // Longer than the detection bound two times in three: the node is declared down meanwhile.
        out.push({
          type: 'pause',
          ...(rnd() < 2 / 3 ? window(profile.detectionMs + 200, profile.detectionMs * 2) : window(100, 1_000)),
          node: pick(nodes),
        });
        break;
      case 'clock-step':
        out.push({ type: 'clock-step', at: warmupMs + int(0, span), node: pick(nodes), deltaMs: pick([-1, 1]) * int(50, 30_000) });
        break;
      case 'lossy':
        out.push({
          type: 'lossy',
          ...window(300, 3_000),
          dropRate: pick([0, 0.01, 0.05, 0.2]),
          duplicateRate: pick([0, 0.02, 0.1]),
          maxDelayMs: pick([0, 5, 20, 100]),
        });
        break;
      case 'disk':
        out.push({ type: 'disk', ...window(50, 1_000), node: pick(nodes), code: pick(['ERR_STORAGE_FULL', 'ERR_JOURNAL_WRITE'] as const) });
        break;
    }
  }
  return out.sort((a, b) => a.at - b.at);
}

/** One line per fault, for `--verbose` and a failing seed's report. */
export function describeFault(f: Fault): string {
  const span = 'until' in f ? `${f.at}–${f.until} ms` : `${f.at} ms`;
  switch (f.type) {
    case 'kill':
      return `${span}: kill node ${f.node}`;
    case 'restart':
      return `${span}: restart node ${f.node} ${f.empty ? 'on an empty disk (replaced host)' : 'with its data'}`;
    case 'partition':
      return `${span}: partition {${f.groups[0]}}|{${f.groups[1]}}`;
    case 'one-way':
      return `${span}: one-way, {${f.from}} → {${f.to}} lost`;
    case 'pause':
      return `${span}: pause node ${f.node} (its traffic held)`;
    case 'clock-step':
      return `${span}: node ${f.node}'s wall clock steps ${f.deltaMs > 0 ? '+' : ''}${f.deltaMs} ms`;
    case 'lossy':
      return `${span}: every link drops ${f.dropRate}, duplicates ${f.duplicateRate}, delays up to ${f.maxDelayMs} ms`;
    case 'disk':
      return `${span}: node ${f.node}'s disk refuses writes (${f.code})`;
  }
}
