/**
 * Where a process's JavaScript-thread microseconds went, from a V8 `.cpuprofile` (node
 * --cpu-prof): self time grouped into a few buckets (msgpack, LMDB, sockets and streams, GC,
 * the benchmark's own code, idle) and the top functions by self time. Native threads (lmdb-js's
 * commit thread, libuv's pool) are not in a JS profile: the spike reports them from /proc.
 *
 *   node --import tsx bench/spike/cpuprofile-summary.ts <file.cpuprofile> [--top 20]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '20' } } });
const file = positionals[0];
if (file === undefined) throw new Error('usage: cpuprofile-summary.ts <file.cpuprofile> [--top N]');
const top = Number(values.top);
if (!Number.isInteger(top) || top < 1) throw new Error(`--top must be a positive integer (got ${values.top})`);

const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map<number, number>();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i]!;
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}

/** The bucket a frame's self time belongs to, by its script URL or V8's pseudo-frames. */
function bucket(n: ProfileNode): string {
  const { functionName: f, url } = n.callFrame;
  if (f === '(idle)') return 'idle';
  if (f === '(garbage collector)') return 'GC';
  if (f === '(program)') return 'V8/native (program)';
  if (url.includes('msgpackr')) return 'msgpackr';
  if (url.includes('/lmdb/') || url.includes('ordered-binary')) return 'lmdb-js (JS side + native calls)';
  if (/node:(net|stream|internal\/stream|internal\/net|internal\/streams|_stream|internal\/stream_base)/.test(url))
    return 'sockets/streams';
  if (url.includes('node:internal/child_process') || url.includes('node:child_process')) return 'IPC';
  if (url.includes('replication-spike') || url.includes('/src/')) return 'spike code (batching, hashing, payloads)';
  if (url.startsWith('node:')) return 'node core (timers, promises, buffer, …)';
  if (url === '') return `native: ${f || '(anonymous)'}`;
  return 'other';
}

const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
const busy = total - [...selfUs].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((a, [, us]) => a + us, 0);
const buckets = new Map<string, number>();
const functions = new Map<string, number>();
for (const [id, us] of selfUs) {
  const n = byId.get(id)!;
  buckets.set(bucket(n), (buckets.get(bucket(n)) ?? 0) + us);
  const { functionName, url, lineNumber } = n.callFrame;
  const name = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/bench\//, 'bench/')}:${lineNumber + 1}`;
  functions.set(name, (functions.get(name) ?? 0) + us);
}

const pct = (us: number, of: number) => `${((100 * us) / of).toFixed(1).padStart(5)}%`;
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s not idle`);
console.log('self time by bucket (share of non-idle):');
for (const [name, us] of [...buckets].sort((a, b) => b[1] - a[1])) {
  if (name === 'idle') continue;
  console.log(`  ${pct(us, busy)}  ${name}`);
}
console.log(`top ${top} functions by self time (share of non-idle):`);
for (const [name, us] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, top + 1)) {
  if (name.startsWith('(idle)')) continue;
  console.log(`  ${pct(us, busy)}  ${name}`);
}
