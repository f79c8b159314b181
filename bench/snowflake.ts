/**
 * Snowflake throughput: ids/s of `nextString()` and `next()` against the format's ceiling of
 * 4096 ids per millisecond (4.096M/s), with a loop of bare wall-clock reads as the same-run
 * baseline (each id reads the wall clock once). Runs ~18 s.
 *
 *   node --import tsx bench/snowflake.ts
 */
import { systemClock } from '../src/core/clock.ts';
import { SnowflakeGenerator } from '../src/cluster/snowflake.ts';
import { printResult } from './lib.ts';

const CEILING = 4_096_000;
const SECONDS = 3;

function measure(label: string, run: (n: number) => unknown): number {
  // Warm up so the JIT has compiled the loop before timing.
  for (let i = 0; i < 20; i++) run(10_000);
  const end = systemClock.now() + SECONDS * 1000;
  const start = systemClock.now();
  let count = 0;
  let sink: unknown;
  while (systemClock.now() < end) {
    sink = run(10_000);
    count += 10_000;
  }
  const elapsed = (systemClock.now() - start) / 1000;
  const rate = count / elapsed;
  if (sink === 'never') console.log(sink);
  console.log(`${label.padEnd(34)} ${(rate / 1e6).toFixed(3).padStart(8)} M/s  ${(1e9 / rate).toFixed(1).padStart(7)} ns/op`);
  return rate;
}

const stringGen = new SnowflakeGenerator({ nodeId: 513, clock: systemClock });
const bigintGen = new SnowflakeGenerator({ nodeId: 513, clock: systemClock });

console.log(`snowflake bench: ${SECONDS} s per figure, ceiling ${CEILING / 1e6} M ids/s (4096 per ms)`);
const baseline = measure('baseline: clock.wallNow() loop', (n) => {
  let x = 0;
  for (let i = 0; i < n; i++) x += systemClock.wallNow();
  return x;
});
const s = measure('nextString()', (n) => {
  let last = '';
  for (let i = 0; i < n; i++) last = stringGen.nextString();
  return last;
});
const b = measure('next() (bigint)', (n) => {
  let last = 0n;
  for (let i = 0; i < n; i++) last = bigintGen.next();
  return last;
});
// The same ids consumed the way a JSON response does, so lazy string concatenation is paid for.
const j = measure('nextString() + JSON.stringify', (n) => {
  let len = 0;
  for (let i = 0; i < n; i++) len += JSON.stringify(stringGen.nextString()).length;
  return len;
});
// Headroom: the same calls on a clock that turns over every 4096 reads, so the generator never
// waits; this is the raw cost per id that the ceiling hides.
let reads = 0;
const turnover = { ...systemClock, wallNow: () => 1_750_000_000_000 + (reads++ >>> 12), now: () => 0 };
const rawGen = new SnowflakeGenerator({ nodeId: 513, clock: turnover });
const raw = measure('nextString(), never waiting (raw)', (n) => {
  let last = '';
  for (let i = 0; i < n; i++) last = rawGen.nextString();
  return last;
});
const rawBig = measure('next(), never waiting (raw)', (n) => {
  let last = 0n;
  for (let i = 0; i < n; i++) last = rawGen.next();
  return last;
});
const pct = (r: number) => `${((100 * r) / CEILING).toFixed(1)}% of ceiling`;
console.log(`nextString(): ${pct(s)}; next(): ${pct(b)}; nextString()+JSON: ${pct(j)}`);
console.log(`ratio to baseline wallNow() loop: nextString ${(s / baseline).toFixed(3)}, next ${(b / baseline).toFixed(3)}`);
console.log(`raw capacity: nextString ${(raw / CEILING).toFixed(2)}x, next ${(rawBig / CEILING).toFixed(2)}x the ceiling`);
printResult({
  bench: 'snowflake',
  ceiling: CEILING,
  nextStringPerSec: Math.round(s),
  nextPerSec: Math.round(b),
  nextStringJsonPerSec: Math.round(j),
  ratio: Number((s / CEILING).toFixed(3)),
  rawCapacity: Number((raw / CEILING).toFixed(2)),
  target: 0.95,
  pass: s / CEILING >= 0.95,
});
