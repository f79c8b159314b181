/**
 * When the client tries again, and how long it waits first. Pure: `now`-free math the client
 * drives with its own clock, so the unit tests script every case.
 */

/** Defaults of `TroupeClient`; one line each with its unit. */
export const clientDefaults = {
  timeoutMs: 10_000, // ms for one ask, all its attempts together
  attemptTimeoutMs: 6_000, // ms for one HTTP attempt; above the gateway's 5 s ask timeout so the server answers first
  maxAttempts: 6, // attempts per ask, the first counted
  backoffBaseMs: 25, // ms before the second attempt; doubles per attempt
  backoffMaxMs: 1_000, // ms; the cap of one wait
  refreshIntervalMs: 5_000, // ms; an older table is refreshed in the background (joins move partitions silently)
  minRefreshGapMs: 200, // ms between refreshes asked for by failures (a dead node fails every request at once)
  downForMs: 2_000, // ms a node that failed at the network level is skipped for
};

/**
 * The wait before attempt `attempt + 1` (attempt 1 just failed): exponential with full jitter
 * (AWS's "Exponential Backoff and Jitter"), so clients that failed together do not retry together.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random * ceiling);
}

/**
 * Codes after which the same request may go again (to the key's primary after a table refresh,
 * or another node): nothing was applied, or the client's idempotency key makes a second delivery
 * harmless. The gateway answers all of them with 503.
 */
const RETRYABLE: ReadonlySet<string> = new Set([
  'ERR_NOT_PRIMARY',
  'ERR_NOT_OWNER',
  'ERR_NO_NODES',
  'ERR_PARTITION_UNAVAILABLE',
  'ERR_NODE_UNREACHABLE',
  'ERR_STALE_EPOCH',
  'ERR_STOPPED',
  'ERR_WORKER_DIED',
  'ERR_SEND_QUEUE_FULL',
  'ERR_MAILBOX_FULL',
]);

/** Codes that say the client's table is wrong: refresh it before the next attempt. */
const STALE_TABLE: ReadonlySet<string> = new Set(['ERR_NOT_PRIMARY', 'ERR_NOT_OWNER', 'ERR_STOPPED', 'ERR_NO_NODES', 'ERR_NODE_UNREACHABLE']);

export function isRetryable(code: string): boolean {
  return RETRYABLE.has(code);
}

export function meansStaleTable(code: string): boolean {
  return STALE_TABLE.has(code);
}
