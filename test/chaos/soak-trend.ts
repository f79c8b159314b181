/**
 * Scenario 13's pass rule over its samples (pure, so test/chaos/soak-trend.test.ts checks it
 * without processes). The soak's time [start, end] is cut in thirds: the first is warm-up (the
 * first faults, JIT, caches, LMDB maps, connection pools filling), and the last third is compared
 * with the second:
 *
 *   memory   per process that lived through both (started in the warm-up): the median VmRSS of
 *            the last third ≤ 1.15 × the second third's + 16 MiB;
 *   fds      the same with open file descriptors: ≤ 1.15 × + 16;
 *   logs     per node (all its incarnations): bytes logged per minute in the last third
 *            ≤ 1.5 × the second third's + 64 KiB/min, and no third above 4 MiB/min.
 *
 * Why these numbers: medians, not maxima, so one GC cycle or one fault's burst does not decide
 * (V8's heap saws ±30 MiB under this load). The slack covers what is not a leak: the heap grows
 * in steps of a few MiB, and connections come and go with the faults (a reconnection is an fd
 * for a while). The ratio is small because it multiplies a baseline a leak has already raised:
 * for RSS a + b·t over a run of T, the rule flags b·T·(1/3 − 0.075) > 0.15·a + 16 MiB, i.e. with
 * a settled 150–230 MiB a leak over ~150 MiB per 10-minute run (~15 MiB/min; 1.3× would let
 * ~330 MiB pass). A 10-minute soak cannot see slower leaks; an hour sees ~2.5 MiB/min. In three
 * 10-minute runs the medians grew by 19 MiB at most (warm-up tailing off), 28 MiB or more under the bound.
 * Logs get more room (1.5×) because the faults are random: one third may draw two restarts (each
 * logs the partitions it takes over) and the other none.
 */

export interface SoakSample {
  /** Unix ms. */
  at: number;
  id: number;
  pid: number;
  rssKb: number;
  fds: number;
  /** Bytes the node (all its incarnations) logged to stdout and stderr so far. */
  logBytes: number;
}

export const soakRule = {
  ratio: 1.15, // last third's median ≤ ratio × the second third's + slack
  rssSlackKb: 16 * 1024, // KiB
  fdSlack: 16, // file descriptors
  logRatio: 1.5, // last third's log rate ≤ logRatio × the second's + logSlack
  logSlackPerMin: 64 * 1024, // bytes per minute
  logMaxPerMin: 4 * 1024 * 1024, // bytes per minute in any third
};

export interface ProcessTrend {
  id: number;
  pid: number;
  /** Median VmRSS in the second and last thirds, KiB. */
  rssKb: [number, number];
  fds: [number, number];
}

export interface LogTrend {
  id: number;
  /** Bytes logged per minute in each third. */
  perMin: [number, number, number];
}

export interface SoakTrend {
  processes: ProcessTrend[];
  logs: LogTrend[];
  violations: string[];
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Applies `soakRule` to the samples of a soak that ran from `start` to `end` (Unix ms). */
export function soakTrend(samples: readonly SoakSample[], start: number, end: number): SoakTrend {
  const third = (end - start) / 3;
  const [t1, t2] = [start + third, start + 2 * third];
  const violations: string[] = [];
  const mib = (kb: number) => `${(kb / 1024).toFixed(1)} MiB`;

  const processes: ProcessTrend[] = [];
  const pids = new Map<number, SoakSample[]>();
  for (const s of samples) {
    const own = pids.get(s.pid);
    if (own === undefined) pids.set(s.pid, [s]);
    else own.push(s);
  }
  for (const [pid, own] of pids) {
    const second = own.filter((s) => s.at >= t1 && s.at < t2);
    const last = own.filter((s) => s.at >= t2 && s.at <= end);
    // A process started after the warm-up would compare its own warm-up with its settled size.
    if (own[0]!.at >= t1 || second.length === 0 || last.length === 0) continue;
    const p: ProcessTrend = {
      id: own[0]!.id,
      pid,
      rssKb: [median(second.map((s) => s.rssKb)), median(last.map((s) => s.rssKb))],
      fds: [median(second.map((s) => s.fds)), median(last.map((s) => s.fds))],
    };
    processes.push(p);
    if (p.rssKb[1] > soakRule.ratio * p.rssKb[0] + soakRule.rssSlackKb)
      violations.push(`node ${p.id} (pid ${pid}) RSS grew: median ${mib(p.rssKb[0])} in the second third, ${mib(p.rssKb[1])} in the last`);
    if (p.fds[1] > soakRule.ratio * p.fds[0] + soakRule.fdSlack)
      violations.push(`node ${p.id} (pid ${pid}) open fds grew: median ${p.fds[0]} in the second third, ${p.fds[1]} in the last`);
  }
  if (processes.length === 0) violations.push('no process lived from the warm-up to the end: nothing to compare');

  const logs: LogTrend[] = [];
  for (const id of [...new Set(samples.map((s) => s.id))].sort((a, b) => a - b)) {
    const own = samples.filter((s) => s.id === id);
    // logBytes is cumulative: the last reading at or before a boundary.
    const at = (t: number) => own.filter((s) => s.at <= t).at(-1)?.logBytes ?? 0;
    const minutes = third / 60_000;
    const perMin = [start, t1, t2].map((from, i) => Math.round((at([t1, t2, end][i]!) - at(from)) / minutes)) as LogTrend['perMin'];
    logs.push({ id, perMin });
    if (perMin[2] > soakRule.logRatio * perMin[1] + soakRule.logSlackPerMin)
      violations.push(`node ${id} logs faster: ${perMin[1]} bytes/min in the second third, ${perMin[2]} in the last`);
    for (const [i, rate] of perMin.entries())
      if (rate > soakRule.logMaxPerMin)
        violations.push(`node ${id} logged ${rate} bytes/min in third ${i + 1} (bound ${soakRule.logMaxPerMin})`);
  }
  return { processes, logs, violations };
}
