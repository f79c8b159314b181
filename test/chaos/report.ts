/**
 * One line per scenario run: printed, and appended as JSON to the results file named by
 * `CHAOS_RESULTS` (scripts/chaos.mjs sets it to test/chaos/results/latest.jsonl and turns it into
 * the table docs/reliability.md is written from; the fast subset under `npm test` only prints). A scenario reports before it asserts, so a
 * failing run still leaves its figures.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Figures } from './workload.ts';

export interface ScenarioLine {
  scenario: string;
  load: string;
  fault: string;
  acknowledged: number;
  lost: number;
  duplicated: number;
  unknown: number;
  /** From the fault (or the heal) to every key acknowledged again, ms; null when not measured. */
  recoverMs: number | null;
  /** The nodes' peak RSS (VmHWM), MiB. */
  peakRssMb: number;
  /** What must hold for the line to pass, in words. */
  criterion: string;
  pass: boolean;
  /** Anything else measured (refusal codes seen, epochs, fds). */
  notes?: string;
  /** The wall-clock time the scenario took, s. */
  seconds: number;
}

/** Prints the scenario's line and appends it to the results file. */
export function report(line: ScenarioLine): void {
  const f = (n: number | null) => (n === null ? '—' : String(n));
  console.log(
    `CHAOS ${line.pass ? 'PASS' : 'FAIL'} ${line.scenario} | load: ${line.load} | fault: ${line.fault} | acknowledged ${line.acknowledged}, lost ${line.lost}, duplicated ${line.duplicated}, unknown ${line.unknown} | recovered in ${f(line.recoverMs)} ms | peak RSS ${line.peakRssMb} MiB | ${line.seconds} s | criterion: ${line.criterion}${line.notes ? ` | ${line.notes}` : ''}`,
  );
  const file = process.env.CHAOS_RESULTS;
  if (file === undefined) return;
  mkdirSync(dirname(file), { recursive: true });
  appendFileSync(file, JSON.stringify({ ...line, at: new Date().toISOString() }) + '\n');
}

/** The line's figures from a workload check. */
export function figuresOf(f: Figures): Pick<ScenarioLine, 'acknowledged' | 'lost' | 'duplicated' | 'unknown'> {
  return { acknowledged: f.acknowledged, lost: f.lost, duplicated: f.duplicated, unknown: f.unknown };
}
