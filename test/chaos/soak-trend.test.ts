/** Scenario 13's pass rule (soak-trend.ts) on made-up series: what it flags and what it lets pass. */
import { describe, expect, it } from 'vitest';
import { median, soakTrend, type SoakSample } from './soak-trend.ts';

const START = 1_000_000;
const END = START + 600_000;

/** One node's samples every 5 s from `from` to END: RSS and fds as functions of the time into the run (s). */
function series(o: {
  id?: number;
  pid?: number;
  from?: number;
  rssMb: (s: number) => number;
  fds?: (s: number) => number;
  logPerMin?: (s: number) => number;
}): SoakSample[] {
  const out: SoakSample[] = [];
  let logBytes = 0;
  for (let at = o.from ?? START; at <= END; at += 5_000) {
    const s = (at - START) / 1000;
    logBytes += ((o.logPerMin ?? (() => 30_000))(s) * 5) / 60;
    out.push({ at, id: o.id ?? 1, pid: o.pid ?? 100, rssKb: o.rssMb(s) * 1024, fds: (o.fds ?? (() => 60))(s), logBytes });
  }
  return out;
}

describe('soakTrend', () => {
  it.each([
    ['flat, with GC saw-teeth', series({ rssMb: (s) => 150 + (s % 60) / 3 }), []],
    ['growth inside the slack (16 MiB over the run)', series({ rssMb: (s) => 150 + s / 40 }), []],
    ['RSS growing linearly (a leak: +100 MiB per third)', series({ rssMb: (s) => 120 + s / 2 }), [/node 1 \(pid 100\) RSS grew/]],
    [
      'a 20 MiB/min leak over a settled 150 MiB',
      series({ rssMb: (s) => 150 + s / 3 }),
      [/RSS grew: median 249\.2 MiB in the second third, 316\.7 MiB in the last/],
    ],
    [
      'fds growing (a socket leak: one a second)',
      series({ rssMb: () => 150, fds: (s) => 50 + s }),
      [/open fds grew: median [\d.]+ in the second third/],
    ],
    ['logs speeding up', series({ rssMb: () => 150, logPerMin: (s) => (s < 400 ? 30_000 : 300_000) }), [/node 1 logs faster/]],
    [
      'logs over the absolute bound from the start',
      series({ rssMb: () => 150, logPerMin: () => 5_000_000 }),
      [/third 1/, /third 2/, /third 3/],
    ],
  ])('%s', (_name, samples, expected) => {
    const { violations } = soakTrend(samples, START, END);
    expect(violations).toHaveLength(expected.length);
    expected.forEach((re, i) => expect(violations[i]).toMatch(re));
  });

  it('leaves out a process started after the warm-up (its own warm-up is not a trend), and says when nothing is left', () => {
    const restarted = series({ pid: 200, from: START + 250_000, rssMb: (s) => 80 + s / 4 });
    const t = soakTrend(restarted, START, END);
    expect(t.processes).toEqual([]);
    expect(t.violations).toEqual(['no process lived from the warm-up to the end: nothing to compare']);
    const withSurvivor = soakTrend([...restarted, ...series({ id: 2, pid: 300, rssMb: () => 150 })], START, END);
    expect(withSurvivor.processes.map((p) => p.pid)).toEqual([300]);
    expect(withSurvivor.violations).toEqual([]);
  });

  it('rates logs per node over its incarnations, per third', () => {
    const t = soakTrend(series({ rssMb: () => 150, logPerMin: () => 60_000 }), START, END);
    expect(t.logs[0]!.perMin.map((r) => Math.round(r / 1000))).toEqual([60, 60, 60]);
  });

  it('median', () => {
    expect([median([3, 1, 2]), median([4, 1, 3, 2]), median([])]).toEqual([2, 2.5, Number.NaN]);
  });
});
