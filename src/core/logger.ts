import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * The node's pino logger. JSON lines by default; readable lines when the process writes to a
 * terminal (or `TROUPE_LOG_FORMAT=pretty`; `=json` forces JSON). `TROUPE_LOG_LEVEL` sets the
 * level (tests run `silent`). Children carry context: `{ node }` on the main thread,
 * `{ node, worker }` in a worker thread. Every line also goes to `logTap`, which copies it to
 * whoever follows the logs (the admin REPL's `tail`).
 */
export function createLogger(context: Record<string, unknown> = {}, level?: string, format: LogFormat = defaultLogFormat()): Logger {
  const options = { level: level ?? process.env.TROUPE_LOG_LEVEL ?? 'info', base: { pid: process.pid, ...context } };
  // Synchronous and in-process: no transport thread, and lines of one node stay in order.
  const out = format === 'json' ? pino.destination({ dest: 1, sync: true }) : pretty({ sync: true, colorize: true, singleLine: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' });
  return pino(options, pino.multistream([{ stream: out, level: 'trace' }, { stream: logTap, level: 'trace' }]));
}

export type LogFormat = 'json' | 'pretty';

/** 'pretty' on a terminal unless TROUPE_LOG_FORMAT says otherwise. Workers get the main thread's choice. */
export function defaultLogFormat(): LogFormat {
  const env = process.env.TROUPE_LOG_FORMAT;
  if (env === 'json' || env === 'pretty') return env;
  return process.stdout.isTTY ? 'pretty' : 'json';
}

export const silentLogger: Logger = pino({ level: 'silent' });

/** pino's level names and numbers, lowest first. */
export const logLevels = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
export type LogLevelName = keyof typeof logLevels;

export const logTapDefaults = {
  /** Lines a follower's buffer holds; past it the oldest are dropped and counted. */
  bufferLines: 1_000,
  /** Followers at once; a new one past it replaces the longest-idle (a REPL that went away). */
  maxFollowers: 16,
};

/** One follower of the logs: lines at or above its level, for one node, in a bounded buffer. */
export interface LogFollower {
  readonly id: number;
  /** Takes what was buffered since the last take, and how many lines were dropped meanwhile. */
  take(): { lines: string[]; dropped: number };
  close(): void;
}

/**
 * Copies log lines to followers. A follower that does not read (a slow or vanished REPL) never
 * blocks the node: its buffer is bounded, the oldest lines go, and it is told how many.
 * With no follower a line costs one size check.
 *
 * @example
 *   const f = logTap.follow('warn', 1);      // node 1's lines at warn and above
 *   log.warn('disk almost full');
 *   f.take();                                // → { lines: ['{"level":40,…,"msg":"disk almost full"}'], dropped: 0 }
 *   f.close();
 */
export class LogTap extends Writable {
  private readonly followers = new Map<number, { level: number; node: number | undefined; lines: string[]; dropped: number; taken: number }>();
  private nextId = 1;
  private takes = 0;

  constructor(private readonly limits = logTapDefaults) {
    super({ decodeStrings: false });
  }

  /** Follows lines at `level` or above; with `node`, only lines whose context names that node. */
  follow(level: LogLevelName, node?: number): LogFollower {
    if (this.followers.size >= this.limits.maxFollowers) {
      let idlest: number | undefined;
      let oldest = Infinity;
      for (const [id, f] of this.followers) if (f.taken < oldest) [idlest, oldest] = [id, f.taken];
      if (idlest !== undefined) this.followers.delete(idlest);
    }
    const id = this.nextId++;
    const f = { level: logLevels[level], node, lines: [] as string[], dropped: 0, taken: this.takes++ };
    this.followers.set(id, f);
    return this.follower(id)!;
  }

  /** The follower with this id, if it is still following. */
  follower(id: number): LogFollower | undefined {
    const f = this.followers.get(id);
    if (f === undefined) return undefined;
    return {
      id,
      take: () => {
        f.taken = this.takes++;
        const out = { lines: f.lines, dropped: f.dropped };
        f.lines = [];
        f.dropped = 0;
        return out;
      },
      close: () => void this.followers.delete(id),
    };
  }

  /** pino's multistream writes each line here, synchronously. */
  override write(chunk: unknown): boolean {
    if (this.followers.size === 0) return true;
    const line = String(chunk).trimEnd();
    const level = Number(/"level":(\d+)/.exec(line)?.[1] ?? 0);
    const node = /"node":(\d+)/.exec(line)?.[1];
    for (const f of this.followers.values()) {
      if (level < f.level || (f.node !== undefined && node !== String(f.node))) continue;
      f.lines.push(line);
      if (f.lines.length > this.limits.bufferLines) {
        f.lines.shift();
        f.dropped++;
      }
    }
    return true;
  }
}

/** The process's tap: every logger `createLogger` builds in this thread writes to it. */
export const logTap = new LogTap();
