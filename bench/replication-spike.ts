/**
 * The replication spike (issue 7, order of work 1): what one replicated write costs, before the
 * project builds replication on it. Three OS processes on 127.0.0.1 — this file forked with
 * `--role primary` and twice with `--role replica` — each with its own LMDB environment laid out
 * as per-partition logs:
 *
 * ```
 * environment (data.mdb), one per process
 * ├─ plog   [p, seq]               → [epochTerm, epochNode, payload]   one sequenced log per partition
 * ├─ pmeta  p                      → [lastSeq, promisedTerm, promisedNode]   one put per partition per batch
 * └─ actor  [kind, key, actorSeq]  → [p, seq, payload]   only with --layout plog+actor: the
 *                                                        per-actor table activation reads
 * ```
 *
 * Two more layouts answer "per-partition log + index, or per-actor logs?": `plog+index` keeps
 * only a pointer per event in the actor table (`→ [p, seq]`; activation then reads plog), and
 * `actor` has no plog at all — per-actor logs `[kind, key, actorSeq] → [term, node, p, seq,
 * payload]`, today's journal shape, where catch-up by partition position needs a scan.
 * `wal` is a control for page locality: one append-only log per process keyed by a local
 * counter (`[n] → [term, node, p, seq, payload]`), so a batch dirties a few tail pages instead
 * of one B-tree leaf per entry.
 *
 * The primary runs a closed loop of `--inflight` logical clients writing ~100-byte events to
 * `--actors` keys (`k<i>`) hashed into P = 1024 partitions (`partitionOf`). Writes submitted in
 * one event-loop turn form a batch: one LMDB transaction on the primary (lmdb-js default commit,
 * no fsync wait: the `replicated` durability) and ONE length-prefixed msgpack `Append` frame per
 * replica carrying every partition's entries. A replica checks epoch and seq continuity per
 * partition, commits the batch in one transaction and answers one `Appended` frame with the
 * per-partition high seqs. A write is acknowledged once the primary's commit AND one replica's
 * commit have happened (W = 2 of R = 3).
 *
 * Baselines, in interleaved rounds on the same processes: `local` — the same batches committed
 * to the primary's LMDB only (the single-node `commit` figure) — and `raw` — lmdb-js async
 * `put()`s of the same entries, acknowledged on their promise (lmdb-js batches a turn's puts).
 * CPU is read from /proc for all three processes (every thread, lmdb-js's write thread
 * included) at the start and end of each measured window.
 *
 *   node --import tsx bench/replication-spike.ts [--seconds 3] [--rounds 3] [--inflight 256]
 *        [--layout plog,plog+actor (any of plog, plog+actor, plog+index, actor, wal)]
 *        [--actors 10000] [--modes replicated,local,raw]
 *        [--profile DIR]   # a V8 CPU profile of each process over each measured window (not
 *                          # startup), into DIR; summarize with bench/spike/cpuprofile-summary.ts
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { open, type Database, type RootDatabase } from 'lmdb';
import { Packr, Unpackr } from 'msgpackr';
import { hash32 } from '../src/core/hash.ts';
import { PARTITIONS, partitionKey, partitionOf } from '../src/replication/partition-table.ts';
import { jumpHash } from '../src/supervisor/jump-hash.ts';
import { slotOf } from '../src/supervisor/placement.ts';
import { check, cpuSecondsOf, cpuSecondsOfMainThread, fixed, int, machineLine, main, median, now, percentile, printResult } from './lib.ts';

const { values: args } = parseArgs({
  options: {
    role: { type: 'string', default: 'bench' },
    seconds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    inflight: { type: 'string', default: '256' },
    actors: { type: 'string', default: '10000' },
    layout: { type: 'string', default: 'plog,plog+actor' },
    modes: { type: 'string', default: 'replicated,local,raw' },
    profile: { type: 'string' },
  },
});

type Layout = 'plog' | 'plog+actor' | 'plog+index' | 'actor' | 'wal';
type Mode = 'replicated' | 'local' | 'raw';
const LAYOUTS: readonly Layout[] = ['plog', 'plog+actor', 'plog+index', 'actor', 'wal'];
const MODES: readonly Mode[] = ['replicated', 'local', 'raw'];

const KIND = 'cart';
const EPOCH_TERM = 1; // every entry carries the primary's epoch (term, node); one epoch here
const EPOCH_NODE = 1;
const MAX_FRAME_BYTES = 64 * 1024 * 1024; // a corrupt length must not make a reader buffer forever
const DEADLINE_MS = 60_000; // any child step (start, open, a run, close) taking longer is a hang

// Message types on the replication socket (the first element of every frame).
const APPEND = 0;
const APPENDED = 1;
const ENTRY_FIELDS = 5; // entries travel flat: p, seq, key, actorSeq, payload

// ── Framing: u32 length (LE) + msgpack body, shared by both ends ─────────────────────────────

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

function frame(message: unknown): Buffer {
  const body = packr.pack(message);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32LE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** Splits a byte stream into frame bodies. */
function frameReader(onFrame: (body: Buffer) => void): (chunk: Buffer) => void {
  let pending: Buffer | undefined;
  return (chunk) => {
    const b = pending ? Buffer.concat([pending, chunk]) : chunk;
    let off = 0;
    while (b.length - off >= 4) {
      const len = b.readUInt32LE(off);
      if (len > MAX_FRAME_BYTES) throw new Error(`frame of ${len} bytes exceeds ${MAX_FRAME_BYTES}`);
      if (b.length - off - 4 < len) break;
      onFrame(b.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    pending = off === b.length ? undefined : b.subarray(off);
  };
}

// ── LMDB layout ──────────────────────────────────────────────────────────────────────────────

interface Store {
  root: RootDatabase;
  plog: Database;
  pmeta: Database;
  actor: Database;
  /** The next key of the `wal` layout's append-only log. */
  walSeq: number;
}

function openStore(dir: string, mode: Mode): Store {
  mkdirSync(dir, { recursive: true });
  const root = open({
    path: dir,
    maxDbs: 8,
    // As the journal does (lmdb-env.ts): explicit transactions batch on their own. The raw
    // baseline keeps lmdb-js's default so its async puts batch per turn.
    ...(mode === 'raw' ? {} : { eventTurnBatching: false }),
  });
  return { root, plog: root.openDB('plog', {}), pmeta: root.openDB('pmeta', {}), actor: root.openDB('actor', {}), walSeq: 0 };
}

async function closeStore(store: Store, dir: string): Promise<void> {
  await store.root.close();
  rmSync(dir, { recursive: true, force: true });
}

/** The puts of one batch, inside its write transaction: both the primary and the replicas run this. */
function putBatch(store: Store, layout: Layout, entries: readonly unknown[], touched: readonly number[], lastSeq: ArrayLike<number>): void {
  const { plog, pmeta, actor } = store;
  for (let i = 0; i < entries.length; i += ENTRY_FIELDS) {
    const p = entries[i] as number;
    const seq = entries[i + 1] as number;
    const payload = entries[i + 4] as Buffer;
    if (layout === 'wal') {
      void plog.put(++store.walSeq, [EPOCH_TERM, EPOCH_NODE, p, seq, payload]);
      continue;
    }
    const actorKey = [KIND, entries[i + 2] as string, entries[i + 3] as number];
    if (layout === 'actor') {
      void actor.put(actorKey, [EPOCH_TERM, EPOCH_NODE, p, seq, payload]);
      continue;
    }
    void plog.put([p, seq], [EPOCH_TERM, EPOCH_NODE, payload]);
    if (layout === 'plog+actor') void actor.put(actorKey, [p, seq, payload]);
    else if (layout === 'plog+index') void actor.put(actorKey, [p, seq]);
  }
  for (const p of touched) void pmeta.put(p, [lastSeq[p]!, EPOCH_TERM, EPOCH_NODE]);
}

// ── IPC between the bench and its children ──────────────────────────────────────────────────

type Msg = { t: string; [k: string]: unknown };

function send(msg: Msg): void {
  process.send!(msg);
}

/** The next message of type `t` from `child`, or a rejection at the deadline or if it exits. */
function nextMessage(child: ChildProcess, t: string, label: string): Promise<Msg> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: Msg) => {
      if (m.t !== t) return;
      done();
      resolve(m);
    };
    const onExit = (code: number | null, signal: string | null) => {
      done();
      reject(new Error(`${label} exited (code ${code}, signal ${signal}) while the bench waited for "${t}"`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${label}: no "${t}" within ${DEADLINE_MS} ms`));
    }, DEADLINE_MS);
    const done = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/**
 * The CPU profile of the measured window only: `--cpu-prof` would also record tsx compiling this
 * file at startup, which in a few-second run is a large share of the samples.
 */
let profiler: Session | undefined;

function onProfileMessage(m: Msg): boolean {
  if (m.t === 'profile-start') {
    profiler = new Session();
    profiler.connect();
    profiler.post('Profiler.enable', () => profiler!.post('Profiler.start'));
    return true;
  }
  if (m.t === 'profile-stop') {
    const session = profiler!;
    profiler = undefined;
    session.post('Profiler.stop', (err, result) => {
      if (err) fail(err);
      writeFileSync(m.file as string, JSON.stringify(result.profile));
      session.disconnect();
      send({ t: 'profile-stopped' });
    });
    return true;
  }
  return false;
}

// ── Replica ──────────────────────────────────────────────────────────────────────────────────

function runReplica(): void {
  let store: Store | undefined;
  let dir = '';
  let layout: Layout = 'plog';
  let lastSeq = new Float64Array(PARTITIONS);
  const stamp = new Uint32Array(PARTITIONS); // dedupes touched partitions per batch without a Set
  let frames = 0;
  let lastCommit: Promise<unknown> = Promise.resolve();

  const server = createServer((sock) => {
    sock.setNoDelay(true);
    sock.on(
      'data',
      frameReader((body) => {
        const m = unpackr.unpack(body) as [number, number, number, number, number, unknown[]];
        check(m[0] === APPEND, `replica: unexpected frame type ${m[0]}`);
        check(store !== undefined, 'replica: Append before open');
        const [, batch, term] = m;
        const entries = m[5];
        // Fencing and continuity, as REPLICATION.md's Append: refuse an older epoch, refuse a gap.
        check(term >= EPOCH_TERM, `replica: Append of epoch ${term} below the promise ${EPOCH_TERM}`);
        const touched: number[] = [];
        const mark = ++frames;
        for (let i = 0; i < entries.length; i += ENTRY_FIELDS) {
          const p = entries[i] as number;
          const seq = entries[i + 1] as number;
          check(seq === lastSeq[p]! + 1, `replica: partition ${p} seq ${seq} does not follow ${lastSeq[p]}`);
          lastSeq[p] = seq;
          if (stamp[p] !== mark) {
            stamp[p] = mark;
            touched.push(p);
          }
        }
        const s = store;
        const seqs = lastSeq;
        const committed = s.root.transaction(() => putBatch(s, layout, entries, touched, seqs));
        lastCommit = committed;
        committed.then(() => {
          // Per-partition high seqs: what the primary needs for its commit point and truncation.
          const highs = new Array<number>(touched.length * 2);
          for (let j = 0; j < touched.length; j++) {
            highs[2 * j] = touched[j]!;
            highs[2 * j + 1] = seqs[touched[j]!]!;
          }
          if (!sock.destroyed) sock.write(frame([APPENDED, batch, highs]));
        }, fail);
      }),
    );
    sock.on('error', () => sock.destroy());
  });

  process.on('message', (m: Msg) => {
    if (onProfileMessage(m)) return;
    if (m.t === 'open') {
      dir = m.dir as string;
      layout = m.layout as Layout;
      lastSeq = new Float64Array(PARTITIONS);
      store = openStore(dir, 'replicated');
      send({ t: 'opened' });
    } else if (m.t === 'close') {
      const s = store!;
      store = undefined;
      void lastCommit.then(() => closeStore(s, dir)).then(() => send({ t: 'closed' }), fail);
    } else if (m.t === 'exit') {
      server.close();
      process.exit(0);
    }
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    send({ t: 'ready', port: typeof address === 'object' && address ? address.port : 0 });
  });
}

// ── Primary ──────────────────────────────────────────────────────────────────────────────────

interface Write {
  t0: number;
  p: number;
  seq: number;
  key: string;
  actorSeq: number;
  payload: Buffer;
}

interface Batch {
  id: number;
  writes: Write[];
  local: boolean;
  replicas: number;
}

interface RunSpec {
  mode: Mode;
  layout: Layout;
  dir: string;
  seconds: number;
  warmup: number;
  inflight: number;
  actors: number;
}

/** A ~100-byte event plus its message id (the recorded reply replicates with it). */
function makePayload(key: number, actorSeq: number): Buffer {
  return packr.pack([
    `7${String(key).padStart(9, '0')}${String(actorSeq).padStart(9, '0')}`,
    {
      type: 'item-added',
      sku: `sku-${String((actorSeq * 7919) % 100000).padStart(6, '0')}`,
      qty: 2,
      price: 1999,
      currency: 'EUR',
      at: 1_700_000_000_000 + actorSeq,
    },
  ]);
}

function runPrimary(): void {
  const peers: Socket[] = [];
  const onAppended: Array<(body: Buffer) => void> = [];

  async function connectPeers(ports: number[]): Promise<void> {
    for (const port of ports) {
      const sock = connect({ host: '127.0.0.1', port });
      await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
      sock.setNoDelay(true);
      const index = peers.length;
      peers.push(sock);
      sock.on(
        'data',
        frameReader((body) => onAppended[index]!(body)),
      );
      sock.on('error', fail);
    }
  }

  async function run(spec: RunSpec): Promise<void> {
    const { mode, layout } = spec;
    const store = openStore(spec.dir, mode);
    const partitionSeq = new Float64Array(PARTITIONS);
    const actorSeq = new Uint32Array(spec.actors);
    const stamp = new Uint32Array(PARTITIONS);
    const ackers = mode === 'replicated' ? peers : [];
    // Acknowledged high seq per replica and partition: the primary's view for its commit point.
    const confirmed = ackers.map(() => new Float64Array(PARTITIONS));
    const replicaAcksNeeded = Math.min(1, ackers.length); // W = 2: the primary's own commit + one replica's

    let current: Write[] = [];
    let scheduled = false;
    let nextBatchId = 1;
    const unacked: Batch[] = []; // in id order; ids are consecutive
    let head = 0;
    let committedBatch = 0; // highest fully acknowledged batch: the commit point shipped in Appends

    let measuring = false;
    let stopping = false;
    let outstanding = 0;
    let acked = 0;
    let batches = 0;
    let frameBytes = 0;
    let batchedWrites = 0;
    const latencies: number[] = [];
    let drained: () => void = () => {};

    const acknowledge = (w: Write, t: number): void => {
      outstanding--;
      if (measuring) {
        acked++;
        latencies.push(t - w.t0);
      }
      if (!stopping) issue();
      else if (outstanding === 0) drained();
    };

    const ackReady = (): void => {
      const t = now();
      while (head < unacked.length) {
        const b = unacked[head]!;
        if (!b.local || b.replicas < replicaAcksNeeded) break;
        head++;
        committedBatch = b.id;
        for (const w of b.writes) acknowledge(w, t);
      }
      if (head > 1024) {
        unacked.splice(0, head);
        head = 0;
      }
    };

    const batchById = (id: number): Batch | undefined => {
      const first = unacked[head];
      return first === undefined ? undefined : unacked[head + (id - first.id)];
    };

    onAppended.length = 0;
    ackers.forEach((_, i) => {
      onAppended[i] = (body) => {
        const m = unpackr.unpack(body) as [number, number, number[]];
        check(m[0] === APPENDED, `primary: unexpected frame type ${m[0]}`);
        const highs = m[2];
        const seen = confirmed[i]!;
        for (let j = 0; j < highs.length; j += 2) seen[highs[j]!] = highs[j + 1]!;
        const b = batchById(m[1]);
        if (b === undefined) return; // already acknowledged through the other replica
        b.replicas++;
        ackReady();
      };
    });

    const flush = (): void => {
      scheduled = false;
      const writes = current;
      current = [];
      const batch: Batch = { id: nextBatchId++, writes, local: false, replicas: 0 };
      unacked.push(batch);
      const entries: unknown[] = new Array(writes.length * ENTRY_FIELDS);
      const touched: number[] = [];
      for (let i = 0; i < writes.length; i++) {
        const w = writes[i]!;
        const o = i * ENTRY_FIELDS;
        entries[o] = w.p;
        entries[o + 1] = w.seq;
        entries[o + 2] = w.key;
        entries[o + 3] = w.actorSeq;
        entries[o + 4] = w.payload;
        if (stamp[w.p] !== batch.id) {
          stamp[w.p] = batch.id;
          touched.push(w.p);
        }
      }
      const seqs = partitionSeq;
      store.root
        .transaction(() => putBatch(store, layout, entries, touched, seqs))
        .then(() => {
          batch.local = true;
          ackReady();
        }, fail);
      if (ackers.length > 0) {
        // One frame, encoded once, written to every replica: many partitions' appends.
        const f = frame([APPEND, batch.id, EPOCH_TERM, EPOCH_NODE, committedBatch, entries]);
        for (const peer of ackers) peer.write(f);
        if (measuring) frameBytes += f.length;
      }
      if (measuring) {
        batches++;
        batchedWrites += writes.length;
      }
    };

    const issue = (): void => {
      outstanding++;
      const a = (Math.random() * spec.actors) | 0;
      const key = `k${a}`;
      const p = partitionOf(key);
      const w: Write = { t0: now(), p, seq: ++partitionSeq[p]!, key, actorSeq: ++actorSeq[a]!, payload: makePayload(a, actorSeq[a]!) };
      current.push(w);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    };

    // The raw baseline: async puts, acknowledged on the promise of the write's last put.
    const issueRaw = (): void => {
      outstanding++;
      const a = (Math.random() * spec.actors) | 0;
      const key = `k${a}`;
      const p = partitionOf(key);
      const w: Write = { t0: now(), p, seq: ++partitionSeq[p]!, key, actorSeq: ++actorSeq[a]!, payload: makePayload(a, actorSeq[a]!) };
      const actorKey = [KIND, key, w.actorSeq];
      let put: Promise<boolean>;
      if (layout === 'actor') put = store.actor.put(actorKey, [EPOCH_TERM, EPOCH_NODE, w.p, w.seq, w.payload]);
      else if (layout === 'wal') put = store.plog.put(++store.walSeq, [EPOCH_TERM, EPOCH_NODE, w.p, w.seq, w.payload]);
      else {
        put = store.plog.put([w.p, w.seq], [EPOCH_TERM, EPOCH_NODE, w.payload]);
        if (layout === 'plog+actor') put = store.actor.put(actorKey, [w.p, w.seq, w.payload]);
        else if (layout === 'plog+index') put = store.actor.put(actorKey, [w.p, w.seq]);
      }
      put.then(() => acknowledgeRaw(w), fail);
    };
    const acknowledgeRaw = (w: Write): void => {
      outstanding--;
      if (measuring) {
        acked++;
        latencies.push(now() - w.t0);
      }
      if (!stopping) issueRaw();
      else if (outstanding === 0) drained();
    };

    const start = mode === 'raw' ? issueRaw : issue;
    for (let c = 0; c < spec.inflight; c++) start();
    await new Promise((r) => setTimeout(r, spec.warmup * 1000));
    measuring = true;
    const markedAt = now();
    send({ t: 'mark' });
    await new Promise((r) => setTimeout(r, spec.seconds * 1000));
    measuring = false;
    const elapsed = (now() - markedAt) / 1000;
    const sorted = latencies.sort((a, b) => a - b);
    send({
      t: 'end',
      elapsed,
      acked,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      batches,
      writesPerBatch: batches > 0 ? batchedWrites / batches : NaN,
      frameBytes: batches > 0 ? frameBytes / batches : NaN,
    });
    stopping = true;
    await new Promise<void>((r) => {
      drained = r;
      if (outstanding === 0) r();
    });
    await closeStore(store, spec.dir);
    send({ t: 'done' });
  }

  process.on('message', (m: Msg) => {
    if (onProfileMessage(m)) return;
    if (m.t === 'connect') connectPeers(m.ports as number[]).then(() => send({ t: 'connected' }), fail);
    else if (m.t === 'run') run(m.spec as RunSpec).catch(fail);
    else if (m.t === 'exit') {
      for (const s of peers) s.destroy();
      process.exit(0);
    }
  });
  send({ t: 'ready' });
}

function fail(e: unknown): never {
  console.error(`${args.role} failed:`, e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
}

// ── The bench: forks the three processes, runs interleaved rounds, prints figures ───────────

interface Figures {
  perSec: number;
  p50: number;
  p99: number;
  /** CPU µs per acknowledged write: all three processes, then each. */
  cpuUs: number;
  primaryUs: number;
  replicaUs: [number, number];
  /** CPU µs per write on each process's main thread (its event loop) alone; the rest is lmdb-js's write thread. */
  primaryMainUs: number;
  replicaMainUs: number;
  cores: number;
  writesPerBatch: number;
  frameBytes: number;
}

async function runBench(): Promise<void> {
  const seconds = Number(args.seconds);
  const warmup = Number(args.warmup);
  const rounds = Number(args.rounds);
  const inflight = Number(args.inflight);
  const actors = Number(args.actors);
  check(seconds > 0, '--seconds must be > 0');
  check(warmup >= 0, '--warmup must be ≥ 0');
  check(Number.isInteger(rounds) && rounds >= 1, '--rounds must be an integer ≥ 1');
  check(Number.isInteger(inflight) && inflight >= 1 && inflight <= 100_000, '--inflight must be an integer in [1, 100000]');
  check(Number.isInteger(actors) && actors >= 1, '--actors must be an integer ≥ 1');
  const layouts = args.layout!.split(',') as Layout[];
  check(
    layouts.every((l) => LAYOUTS.includes(l)),
    `--layout must list some of ${LAYOUTS.join(',')} (got ${args.layout})`,
  );
  const modes = args.modes!.split(',') as Mode[];
  check(modes.length > 0 && modes.every((m) => MODES.includes(m)), `--modes must list some of ${MODES.join(',')} (got ${args.modes})`);

  const payloadBytes = makePayload(1234, 56).length;
  console.log(
    `replication-spike: 1 primary + 2 replicas (R=3, W=2, commit without fsync wait), P=${PARTITIONS}, ` +
      `${int(actors)} actors, ${inflight} writes in flight, payload ${payloadBytes} B; ` +
      `${rounds} rounds × ${modes.join('/')} × ${layouts.join('/')}, ${warmup}+${seconds} s each`,
  );
  console.log(machineLine());
  printPlacement(actors);

  const base = mkdtempSync(join(tmpdir(), 'troupe-bench-replication-'));
  const self = fileURLToPath(import.meta.url);
  const children: ChildProcess[] = [];
  const spawnRole = (role: 'primary' | 'replica', label: string): Promise<{ child: ChildProcess; msg: Msg }> => {
    const child = fork(self, ['--role', role], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(child);
    return nextMessage(child, 'ready', label).then((msg) => ({ child, msg }));
  };
  try {
    const [primary, replicaA, replicaB] = await Promise.all([
      spawnRole('primary', 'primary'),
      spawnRole('replica', 'replica A'),
      spawnRole('replica', 'replica B'),
    ]);
    const replicas = [replicaA.child, replicaB.child];
    primary.child.send({ t: 'connect', ports: [replicaA.msg.port, replicaB.msg.port] });
    await nextMessage(primary.child, 'connected', 'primary');
    const pids = [primary.child.pid!, replicaA.child.pid!, replicaB.child.pid!];

    const results = new Map<string, Figures[]>();
    let n = 0;
    for (let round = 0; round < rounds; round++) {
      // Rotate the order each round so a burst of load from elsewhere does not always hit one mode.
      const order = modes.map((_, i) => modes[(i + round) % modes.length]!);
      for (const layout of layouts) {
        for (const mode of order) {
          const dir = join(base, `run-${n++}`);
          if (mode === 'replicated') {
            replicas.forEach((r, i) => r.send({ t: 'open', dir: `${dir}-replica-${i}`, layout }));
            await Promise.all(replicas.map((r, i) => nextMessage(r, 'opened', `replica ${i}`)));
          }
          const spec: RunSpec = { mode, layout, dir, seconds, warmup, inflight, actors };
          primary.child.send({ t: 'run', spec });
          await nextMessage(primary.child, 'mark', 'primary');
          const cpu0 = pids.map(cpuSecondsOf);
          const main0 = pids.map(cpuSecondsOfMainThread);
          if (args.profile !== undefined) for (const c of [primary.child, ...replicas]) c.send({ t: 'profile-start' });
          const end = await nextMessage(primary.child, 'end', 'primary');
          const done = nextMessage(primary.child, 'done', 'primary'); // listen now: it may come during the profile stop
          const cpu1 = pids.map(cpuSecondsOf);
          const main1 = pids.map(cpuSecondsOfMainThread);
          if (args.profile !== undefined) {
            const roles = ['primary', 'replica-a', 'replica-b'];
            [primary.child, ...replicas].forEach((c, i) =>
              c.send({ t: 'profile-stop', file: join(args.profile!, `${roles[i]}-${layout}-${mode}-round${round + 1}.cpuprofile`) }),
            );
            await Promise.all([primary.child, ...replicas].map((c, i) => nextMessage(c, 'profile-stopped', roles[i]!)));
          }
          await done;
          if (mode === 'replicated') {
            replicas.forEach((r) => r.send({ t: 'close' }));
            await Promise.all(replicas.map((r, i) => nextMessage(r, 'closed', `replica ${i}`)));
          }
          const acked = end.acked as number;
          check(acked > 0, `${mode}/${layout}: no write was acknowledged`);
          const us = cpu1.map((c, i) => ((c - cpu0[i]!) * 1e6) / acked);
          const f: Figures = {
            perSec: acked / (end.elapsed as number),
            p50: end.p50 as number,
            p99: end.p99 as number,
            cpuUs: us[0]! + us[1]! + us[2]!,
            primaryUs: us[0]!,
            replicaUs: [us[1]!, us[2]!],
            primaryMainUs: ((main1[0]! - main0[0]!) * 1e6) / acked,
            replicaMainUs: ((main1[1]! - main0[1]! + main1[2]! - main0[2]!) * 1e6) / 2 / acked,
            cores: cpu1.reduce((s, c, i) => s + c - cpu0[i]!, 0) / (end.elapsed as number),
            writesPerBatch: end.writesPerBatch as number,
            frameBytes: end.frameBytes as number,
          };
          console.log(
            `  round ${round + 1} ${layout.padEnd(10)} ${mode.padEnd(10)} ${int(f.perSec).padStart(7)} writes/s  ` +
              `p50 ${fixed(f.p50)} ms  p99 ${fixed(f.p99)} ms  CPU ${fixed(f.cpuUs, 1)} µs/write ` +
              `(primary ${fixed(f.primaryUs, 1)} [main thread ${fixed(f.primaryMainUs, 1)}], replicas ${fixed(f.replicaUs[0], 1)} + ${fixed(f.replicaUs[1], 1)} [main ${fixed(f.replicaMainUs, 1)} each])  ` +
              `${fixed(f.cores)} cores` +
              (mode === 'raw' ? '' : `  ${fixed(f.writesPerBatch, 1)} writes/batch`) +
              (mode === 'replicated' ? `, ${int(f.frameBytes)} B/frame` : ''),
          );
          const k = `${layout}/${mode}`;
          results.set(k, [...(results.get(k) ?? []), f]);
        }
      }
    }

    console.log(`\nmedians over ${rounds} rounds (${machineLine()}):`);
    const figures: Record<string, unknown> = {};
    for (const layout of layouts) {
      const med = (mode: Mode) => {
        const runs = results.get(`${layout}/${mode}`);
        if (runs === undefined) return undefined;
        const m = (f: (x: Figures) => number) => median(runs.map(f));
        return {
          writesPerSec: Math.round(m((x) => x.perSec)),
          p50Ms: Number(m((x) => x.p50).toFixed(3)),
          p99Ms: Number(m((x) => x.p99).toFixed(3)),
          cpuUsPerWrite: Number(m((x) => x.cpuUs).toFixed(1)),
          primaryUsPerWrite: Number(m((x) => x.primaryUs).toFixed(1)),
          primaryMainThreadUsPerWrite: Number(m((x) => x.primaryMainUs).toFixed(1)),
          replicaUsPerWrite: Number(m((x) => (x.replicaUs[0] + x.replicaUs[1]) / 2).toFixed(1)),
          replicaMainThreadUsPerWrite: Number(m((x) => x.replicaMainUs).toFixed(1)),
          cores: Number(m((x) => x.cores).toFixed(2)),
          rounds: runs.map((x) => Math.round(x.perSec)),
        };
      };
      const rep = med('replicated');
      const loc = med('local');
      const raw = med('raw');
      const entry: Record<string, unknown> = { replicated: rep, local: loc, raw };
      for (const [name, f] of [
        ['replicated', rep],
        ['local', loc],
        ['raw', raw],
      ] as const) {
        if (f === undefined) continue;
        console.log(
          `${layout.padEnd(10)} ${name.padEnd(10)} ${int(f.writesPerSec).padStart(7)} writes/s  p50 ${fixed(f.p50Ms)} ms  p99 ${fixed(f.p99Ms)} ms  ` +
            `CPU ${fixed(f.cpuUsPerWrite, 1)} µs/write = ${fixed(f.cpuUsPerWrite, 1)} ms per 1000 (${fixed(f.cores)} cores busy)`,
        );
      }
      if (rep && loc) {
        entry.replicatedPerLocal = Number((rep.writesPerSec / loc.writesPerSec).toFixed(3));
        entry.cpuReplicatedPerLocal = Number((rep.cpuUsPerWrite / loc.cpuUsPerWrite).toFixed(2));
        console.log(
          `${layout.padEnd(10)} replicated / local: ${fixed(entry.replicatedPerLocal as number, 3)} of the writes/s, ` +
            `${fixed(entry.cpuReplicatedPerLocal as number)}× the CPU per write`,
        );
      }
      if (loc && raw) {
        entry.localPerRaw = Number((loc.writesPerSec / raw.writesPerSec).toFixed(3));
        console.log(`${layout.padEnd(10)} local / raw put: ${fixed(entry.localPerRaw as number, 3)} of the writes/s`);
      }
      figures[layout] = entry;
    }
    printResult({ bench: 'replication-spike', seconds, rounds, inflight, actors, partitions: PARTITIONS, payloadBytes, ...figures });

    for (const c of children) c.send({ t: 'exit' });
    await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(base, { recursive: true, force: true });
  }
}

/**
 * Partition → worker slot: each partition's log needs a single writer, so a node's worker slot
 * must come from the partition, not the key. Prints how even that placement is over this key
 * set, and how many keys would change thread against today's key placement (`slotOf`).
 */
function printPlacement(actors: number): void {
  const parts: string[] = [];
  for (const slots of [2, 4]) {
    const perSlot = new Array<number>(slots).fill(0);
    let moved = 0;
    for (let a = 0; a < actors; a++) {
      const key = `k${a}`;
      const slot = jumpHash(hash32(partitionKey(partitionOf(key))), slots);
      perSlot[slot]!++;
      if (slot !== slotOf(key, slots)) moved++;
    }
    parts.push(
      `${slots} slots: busiest ${fixed(Math.max(...perSlot) / (actors / slots))}× the mean, ${fixed((100 * moved) / actors, 0)}% of keys on another thread than slotOf(key)`,
    );
  }
  console.log(`placement by partition (jumpHash of the partition's ring key): ${parts.join('; ')}`);
}

if (args.role !== 'bench') process.on('disconnect', () => process.exit(1)); // the bench died: do not linger
if (args.role === 'primary') runPrimary();
else if (args.role === 'replica') runReplica();
else main(runBench);
