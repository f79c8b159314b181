/**
 * The WebSocket load run: `sessions` sockets, one per room (`/ws/room/<prefix>-k<i>`), spread
 * over the gateway URLs, all connected before the clock starts. Then a closed loop keeps
 * `inflight` asks outstanding over all of them, handing each freed slot to the next idle session
 * in turn, so every session takes part while the queueing matches an HTTP run with as many
 * connections. Each ask is `say {from, text: <ask id>}`; the room replies and pushes the message
 * back, and the driver acks every push. Reports acknowledged asks per second (each one is also a
 * push: 2 frames in, 2 out), the ask round trip p50/p99 (sent → reply), the push latency (sent →
 * push), and every violation of `WsAccounting` (acknowledged asks whose push never came …).
 *
 * @example
 *   const r = await runWsLoad({ urls: ['http://127.0.0.1:8080'], sessions: 1000, inflight: 50, seconds: 5, prefix: 'ws1' });
 *   r.reqPerSec; r.p50Ms; r.pushP50Ms;
 */
import { randomBytes } from 'node:crypto';
import { cpuUsage } from 'node:process';
import WebSocket from 'ws';
import { systemClock, type Clock } from '../core/clock.ts';
import type { WriteLedger } from './counter-check.ts';
import type { LoadReport, Progress } from './load-run.ts';
import { keyName } from './scenarios.ts';
import { WsAccounting } from './ws-accounting.ts';

export interface WsLoadOptions {
  /** Gateway base URLs (http://…); session i connects through urls[i % urls.length]. */
  urls: readonly string[];
  /** WebSocket sessions, one room each. */
  sessions: number;
  /** Asks outstanding at once over all sessions (at most `sessions`). */
  inflight: number;
  seconds: number;
  /** Room names of this run: `<prefix>-k<i>`, fresh rooms so a check starts from zero. */
  prefix: string;
  /** Records each `say` sent and the count each acknowledged one returned, per room. */
  ledger?: WriteLedger;
  onProgress?: (p: Progress) => void;
  /** After the run, how long replies and pushes still due may take before they count as missing, ms; default 10,000. */
  drainMs?: number;
  clock?: Clock;
}

export interface WsLoadReport extends LoadReport {
  /** Pushes delivered (each acknowledged ask's push, once). */
  pushes: number;
  /** Ask sent → its push's arrival, ms. */
  pushP50Ms: number;
  pushP99Ms: number;
  /** Pushes that arrived before their ask's reply. */
  pushesBeforeReply: number;
  /** Redelivered pushes dropped by seq. */
  duplicates: number;
  /** Seconds to open every socket and get its `hello`. */
  connectSeconds: number;
  /** This process's CPU (the driver) per acknowledged ask, µs: above ~1,000 µs the driver is the limit. */
  driverCpuUsPerAsk: number;
  /** What `WsAccounting` found wrong after the run drained (empty: consistent). */
  violations: string[];
}

/** The room command every ask sends. */
const KIND = 'room';
const COMMAND = 'say';
/** Sockets being opened at once: a thousand simultaneous handshakes would only queue in the kernel. */
const OPENING_AT_ONCE = 64;
/** Every socket must be open (its `hello` read) by then, ms. */
const CONNECT_DEADLINE_MS = 60_000;
/** After the run: how long replies and pushes still due may take before they count as missing, ms (twice the gateway's ask timeout). */
const DRAIN_MS = 10_000;
/** How often the drain looks whether everything due has arrived, ms. */
const DRAIN_POLL_MS = 20;

interface Session {
  key: string;
  socket: WebSocket;
  /** The ask in flight, if any: one per session, so replies and pushes stay in order. */
  busy: boolean;
  asks: number;
  open: boolean;
}

export async function runWsLoad(o: WsLoadOptions): Promise<WsLoadReport> {
  const clock = o.clock ?? systemClock;
  const acc = new WsAccounting();
  const errorCodes: Record<string, number> = {};
  const fail = (code: string) => (errorCodes[code] = (errorCodes[code] ?? 0) + 1);
  let errors = 0;
  let running = false;
  let okInWindow = 0;
  const sessions: Session[] = [];

  const connectStarted = clock.now();
  const deadline = connectStarted + CONNECT_DEADLINE_MS;
  let nextToOpen = 0;
  const opener = async () => {
    while (nextToOpen < o.sessions) {
      const i = nextToOpen++;
      if (clock.now() > deadline) throw new Error(`not every WebSocket session was open within ${CONNECT_DEADLINE_MS} ms (${sessions.length} of ${o.sessions})`);
      sessions.push(await openSession(i));
    }
  };

  const openSession = (i: number): Promise<Session> =>
    new Promise((resolve, reject) => {
      const key = keyName(o.prefix, i);
      const url = `${o.urls[i % o.urls.length]!.replace(/^http/, 'ws')}/ws/${KIND}/${encodeURIComponent(key)}`;
      const socket = new WebSocket(url, { perMessageDeflate: false });
      const s: Session = { key, socket, busy: false, asks: 0, open: false };
      socket.on('message', (data, binary) => {
        if (binary) return void fail('binary frame');
        const f = JSON.parse(data.toString()) as {
          t: string;
          id?: string;
          ok?: boolean;
          value?: { n?: number };
          error?: { code?: string };
          seq?: number;
          msg?: unknown;
          from?: number;
          to?: number;
        };
        switch (f.t) {
          case 'hello':
            s.open = true;
            return resolve(s);
          case 'reply': {
            const ok = f.ok === true;
            acc.replied(key, f.id!, ok, clock.now(), f.error?.code);
            if (ok) {
              if (running) okInWindow++;
              if (typeof f.value?.n === 'number') o.ledger?.acknowledge(key, f.value.n);
            }
            s.busy = false;
            if (running) sendNext();
            return;
          }
          case 'push':
            acc.pushed(key, f.seq!, f.msg, clock.now());
            // Cumulative: everything up to the last seq delivered, which a duplicate does not move.
            return socket.send(`{"t":"ack","seq":${acc.lastSeq(key)}}`);
          case 'gap':
            return acc.gap(key, f.from!, f.to!);
          case 'error':
            errors++;
            return void fail(f.error?.code ?? 'protocol error');
          default:
            return; // 'sync': the position after a resume; a fresh session has nothing to resume
        }
      });
      socket.on('error', (e: NodeJS.ErrnoException) => {
        if (!s.open) return reject(new Error(`${url}: ${e.code ?? e.message}`));
        errors++;
        fail(e.code ?? e.message);
      });
      socket.on('unexpected-response', (_req, res) => reject(new Error(`${url}: HTTP ${res.statusCode} instead of a WebSocket`)));
      socket.on('close', (code) => {
        if (!s.open) return reject(new Error(`${url}: closed with ${code} before its hello`));
        s.open = false;
        if (running) {
          errors++;
          fail(`closed ${code}`);
        }
      });
    });

  // Ask ids are message ids: an actor answers a reused one with its recorded reply and applies
  // nothing, so a second run on the same rooms (a warm-up first) needs ids of its own.
  const run = randomBytes(3).toString('hex');
  let turn = 0;
  /** Hands a freed slot to the next idle open session after the last one served. */
  const sendNext = () => {
    for (let tried = 0; tried < sessions.length; tried++) {
      const s = sessions[turn]!;
      turn = (turn + 1) % sessions.length;
      if (s.busy || !s.open) continue;
      const id = `${run}.${s.asks++}`;
      s.busy = true;
      o.ledger?.attempt(s.key);
      acc.sent(s.key, id, clock.now());
      s.socket.send(`{"t":"ask","id":"${id}","command":"${COMMAND}","input":{"from":"bench","text":"${id}"}}`);
      return;
    }
  };

  try {
    // Settled, not raced: a failed open must not leave the others opening after the sockets are closed.
    const opened = await Promise.allSettled(Array.from({ length: Math.min(OPENING_AT_ONCE, o.sessions) }, opener));
    const refused = opened.find((r) => r.status === 'rejected');
    if (refused) throw refused.reason;
    const connectSeconds = (clock.now() - connectStarted) / 1000;

    const cpu0 = cpuUsage();
    const started = clock.now();
    let last = { at: started, ok: 0, errors: 0, refused: 0 };
    const tick = () => {
      const now = clock.now();
      o.onProgress?.({
        elapsedS: (now - started) / 1000,
        reqPerSec: ((okInWindow - last.ok) * 1000) / Math.max(1, now - last.at),
        non2xx: acc.refused - last.refused,
        errors: errors - last.errors,
      });
      last = { at: now, ok: okInWindow, errors, refused: acc.refused };
      ticker = clock.setTimeout(tick, 1000);
    };
    let ticker = o.onProgress ? clock.setTimeout(tick, 1000) : undefined;
    running = true;
    for (let i = 0; i < Math.min(o.inflight, sessions.length); i++) sendNext();
    await new Promise<void>((r) => clock.setTimeout(r, o.seconds * 1000));
    running = false;
    if (ticker !== undefined) clock.clearTimeout(ticker);
    const seconds = (clock.now() - started) / 1000;

    // Replies still in flight and pushes still due: a missing one is a finding, not a hang.
    const drainUntil = clock.now() + (o.drainMs ?? DRAIN_MS);
    while ((acc.inFlight > 0 || acc.pushesDue > 0) && clock.now() < drainUntil && sessions.some((s) => s.open))
      await new Promise<void>((r) => clock.setTimeout(r, DRAIN_POLL_MS));
    const cpu = cpuUsage(cpu0);

    return {
      scenario: 'websocket',
      urls: o.urls,
      connections: o.inflight,
      keys: o.sessions,
      seconds,
      ok: acc.acknowledged,
      non2xx: acc.refused,
      errors,
      timeouts: acc.inFlight,
      reqPerSec: okInWindow / seconds,
      p50Ms: acc.roundTrip.percentile(50),
      p99Ms: acc.roundTrip.percentile(99),
      // Refused asks by error code: a WebSocket run has no HTTP statuses.
      statuses: { ...acc.refusals },
      errorCodes,
      pushes: acc.pushes,
      pushP50Ms: acc.pushLatency.percentile(50),
      pushP99Ms: acc.pushLatency.percentile(99),
      pushesBeforeReply: acc.pushesBeforeReply,
      duplicates: acc.duplicates,
      connectSeconds,
      driverCpuUsPerAsk: (cpu.user + cpu.system) / Math.max(1, acc.acknowledged),
      violations: acc.violations(),
    };
  } finally {
    running = false;
    await closeAll(sessions, clock);
  }
}

/** Closes every socket with 1000; any that has not finished its closing handshake in 5 s is cut. */
async function closeAll(sessions: readonly Session[], clock: Clock): Promise<void> {
  const open = sessions.map((s) => s.socket).filter((w) => w.readyState !== WebSocket.CLOSED);
  const closed = open.map((w) => new Promise<void>((r) => w.once('close', () => r())));
  for (const w of open) w.close(1000);
  let timer: ReturnType<Clock['setTimeout']> | undefined;
  await Promise.race([Promise.all(closed), new Promise<void>((r) => (timer = clock.setTimeout(r, 5_000)))]);
  if (timer !== undefined) clock.clearTimeout(timer);
  for (const w of open) if (w.readyState !== WebSocket.CLOSED) w.terminate();
}
