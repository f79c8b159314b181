import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * The node's pino logger. JSON lines by default; readable lines when the process writes to a
 * terminal (or `TROUPE_LOG_FORMAT=pretty`; `=json` forces JSON). `TROUPE_LOG_LEVEL` sets the
 * level (tests run `silent`). Children carry context: `{ node }` on the main thread,
 * `{ node, worker }` in a worker thread.
 */
export function createLogger(context: Record<string, unknown> = {}, level?: string, format: LogFormat = defaultLogFormat()): Logger {
  const options = { level: level ?? process.env.TROUPE_LOG_LEVEL ?? 'info', base: { pid: process.pid, ...context } };
  if (format === 'json') return pino(options);
  // Synchronous and in-process: no transport thread, and lines of one node stay in order.
  return pino(options, pretty({ sync: true, colorize: true, singleLine: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' }));
}

export type LogFormat = 'json' | 'pretty';

/** 'pretty' on a terminal unless TROUPE_LOG_FORMAT says otherwise. Workers get the main thread's choice. */
export function defaultLogFormat(): LogFormat {
  const env = process.env.TROUPE_LOG_FORMAT;
  if (env === 'json' || env === 'pretty') return env;
  return process.stdout.isTTY ? 'pretty' : 'json';
}

export const silentLogger: Logger = pino({ level: 'silent' });
