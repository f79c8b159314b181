/**
 * The summary table of `troupe bench` and `npm run bench:load`: one row per target and scenario.
 * CPU per request appears only where the caller started the server (and so can read its CPU
 * time); the ratio only where a raw baseline of the same scenario was measured in the same run.
 *
 *   target        scenario        req/s   p50 ms  p99 ms  non-2xx  errors  CPU µs/req  × raw
 *   one node      write-heavy     9,512    4.21    9.80        0       0       141.2   0.41
 */
import type { LoadReport } from './load-run.ts';

export interface SummaryRow {
  target: string;
  report: LoadReport;
  /** Server CPU (all its processes and threads) per 2xx response, µs. */
  cpuUsPerReq?: number;
  /** The raw baseline's req/s for the same scenario. */
  rawReqPerSec?: number;
}

const COLUMNS = ['target', 'scenario', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'CPU µs/req', '× raw'] as const;

export function formatSummary(rows: readonly SummaryRow[]): string {
  const cells = rows.map((r) => [
    r.target,
    r.report.scenario,
    Math.round(r.report.reqPerSec).toLocaleString('en-US'),
    fixed(r.report.p50Ms, 2),
    fixed(r.report.p99Ms, 2),
    String(r.report.non2xx),
    String(r.report.errors),
    r.cpuUsPerReq === undefined ? '-' : fixed(r.cpuUsPerReq, 1),
    r.rawReqPerSec === undefined ? '-' : fixed(r.report.reqPerSec / r.rawReqPerSec, 2),
  ]);
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  // Text columns left-aligned, figures right-aligned.
  const line = (row: readonly string[]) =>
    row.map((v, i) => (i < 2 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(COLUMNS), ...cells.map(line)].join('\n') + '\n';
}

function fixed(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}
