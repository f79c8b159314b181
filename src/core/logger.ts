import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The node's pino logger. JSON by default; `TROUPE_LOG_LEVEL` sets the level (tests run
 * `silent`). Children carry context: `{ node }` on the main thread, `{ node, worker }` in a
 * worker thread.
 */
export function createLogger(context: Record<string, unknown> = {}, level?: string): Logger {
  return pino({
    level: level ?? process.env.TROUPE_LOG_LEVEL ?? 'info',
    base: { pid: process.pid, ...context },
  });
}

export const silentLogger: Logger = pino({ level: 'silent' });
