/**
 * RSS under a resident-actor cap while cycling far more keys than fit: an ActorHost with the
 * LMDB journal and `maxResident`, asked about 5M distinct counter keys (every 10th an `incr`,
 * the rest `get`), a bounded number in flight. Samples RSS and the host's resident count every
 * 0.25 s and reports the peaks against the budget and the cap; the run fails (exit 1) if RSS
 * exceeds the budget, resident actors ever exceed the cap, or fewer than keys − cap were evicted
 * (a cap that is not enforced would otherwise look like a good RSS figure on a small run). Baseline in the same run: the same key stream into a plain
 * Map<key, {n}> (unbounded), to show what the cap saves.
 *
 *   node --expose-gc --import tsx bench/rss-cycle.ts [--keys 5000000] [--max-resident 100000] [--rss-cap-mb 700]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ActorHost } from '../src/actors/actor-host.ts';
import { ActorRegistry } from '../src/actors/registry.ts';
import { systemClock } from '../src/core/clock.ts';
import { silentLogger } from '../src/core/logger.ts';
import { counter } from '../src/demo/app.ts';
import { LmdbJournal } from '../src/persistence/lmdb-journal.ts';
import { check, machineLine, main, printResult } from './lib.ts';

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '5000000' },
    'max-resident': { type: 'string', default: '100000' },
    'rss-cap-mb': { type: 'string', default: '700' },
    inflight: { type: 'string', default: '2000' },
  },
});
const KEYS = Number(args.keys);
const MAX_RESIDENT = Number(args['max-resident']);
const CAP = Number(args['rss-cap-mb']) * 1024 * 1024;
const INFLIGHT = Number(args.inflight);
const mb = (b: number) => (b / 1024 / 1024).toFixed(0) + ' MB';

main(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-rss-'));
  try {
    const journal = new LmdbJournal({ type: 'lmdb', path: dir, durability: 'commit' });
    const host = new ActorHost({
      registry: new ActorRegistry([counter]),
      journal,
      clock: systemClock,
      log: silentLogger,
      slot: 0,
      slots: 1,
      maxResident: MAX_RESIDENT,
    });

    console.log(
      `rss-cycle: ${KEYS.toLocaleString()} keys, maxResident ${MAX_RESIDENT.toLocaleString()}, RSS budget ${mb(CAP)}, ${machineLine()}`,
    );
    const rssStart = process.memoryUsage().rss;
    let peak = rssStart;
    let peakResident = 0;
    const sample = () => {
      peak = Math.max(peak, process.memoryUsage().rss);
      peakResident = Math.max(peakResident, host.stats().resident);
    };
    const sampler = setInterval(sample, 250);
    const started = performance.now();
    let next = 0;
    let writes = 0;
    await new Promise<void>((resolve, reject) => {
      let inflight = 0;
      const pump = () => {
        while (inflight < INFLIGHT && next < KEYS) {
          const i = next++;
          const write = i % 10 === 0;
          if (write) writes++;
          inflight++;
          host.ask('counter', `c-${i}`, { command: write ? 'incr' : 'get' }, { timeoutMs: 60_000 }).then(() => {
            inflight--;
            if (next < KEYS) pump();
            else if (inflight === 0) resolve();
          }, reject);
        }
      };
      pump();
    });
    const seconds = (performance.now() - started) / 1000;
    sample();
    clearInterval(sampler);
    const stats = host.stats();
    await host.stop();
    await journal.close();

    // Baseline: the same keys in an unbounded Map, which is what "keep every session in memory" costs.
    // Heap, not RSS: the process's RSS does not shrink back after the run above.
    global.gc?.();
    const mapStart = process.memoryUsage().heapUsed;
    const map = new Map<string, { n: number }>();
    for (let i = 0; i < KEYS; i++) map.set(`c-${i}`, { n: i % 10 === 0 ? 1 : 0 });
    global.gc?.();
    const mapRss = process.memoryUsage().heapUsed - mapStart;

    console.log(`troupe ActorHost + LMDB, cap ${MAX_RESIDENT.toLocaleString()} resident`);
    console.log(`  ${Math.round(KEYS / seconds).toLocaleString()} keys/s (${writes.toLocaleString()} writes), ${seconds.toFixed(1)} s`);
    const capHeld = peakResident <= MAX_RESIDENT && stats.evicted >= KEYS - MAX_RESIDENT;
    console.log(
      `  resident at end ${stats.resident.toLocaleString()}, peak sampled ${peakResident.toLocaleString()} (cap ${MAX_RESIDENT.toLocaleString()}), evicted ${stats.evicted.toLocaleString()} (≥ ${Math.max(0, KEYS - MAX_RESIDENT).toLocaleString()} expected): ${capHeld ? 'PASS' : 'FAIL'}`,
    );
    console.log(`  RSS start ${mb(rssStart)}, peak ${mb(peak)} — budget ${mb(CAP)}: ${peak <= CAP ? 'PASS' : 'FAIL'}`);
    console.log(
      `baseline: an unbounded Map of ${map.size.toLocaleString()} { n } entries holds ${mb(mapRss)} of heap (run with --expose-gc)`,
    );
    printResult({
      bench: 'rss-cycle',
      keys: KEYS,
      maxResident: MAX_RESIDENT,
      writes,
      keysPerSec: Math.round(KEYS / seconds),
      rssPeakMb: Math.round(peak / 1024 / 1024),
      rssCapMb: Math.round(CAP / 1024 / 1024),
      residentAtEnd: stats.resident,
      residentPeak: peakResident,
      evicted: stats.evicted,
      baselineMapHeapMb: Math.round(mapRss / 1024 / 1024),
      capHeld,
      pass: peak <= CAP && capHeld,
    });
    check(peakResident <= MAX_RESIDENT, `resident actors peaked at ${peakResident}, above the cap of ${MAX_RESIDENT}`);
    check(stats.evicted >= KEYS - MAX_RESIDENT, `only ${stats.evicted} evictions for ${KEYS} keys under a cap of ${MAX_RESIDENT}`);
    check(peak <= CAP, `peak RSS ${mb(peak)} is over the budget of ${mb(CAP)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true }); // also when the run fails
  }
});
