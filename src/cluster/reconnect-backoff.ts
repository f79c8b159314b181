/**
 * Delay before reconnect attempt number `attempt` (1 = the first retry after a failure):
 * `min(maxMs, baseMs · 2^(attempt-1))`, with "equal jitter": half of it fixed, half scaled by
 * `jitter` ∈ [0, 1), so nodes that lost the same peer at the same moment do not retry in step.
 * Pure: the caller supplies the random draw.
 *
 * @example
 *   reconnectDelay(1, 100, 5_000, 0)   // 50
 *   reconnectDelay(4, 100, 5_000, 1)   // 800
 *   reconnectDelay(20, 100, 5_000, 1)  // 5000
 */
export function reconnectDelay(attempt: number, baseMs: number, maxMs: number, jitter: number): number {
  const exponent = Math.min(Math.max(0, attempt - 1), 30);
  const ceiling = Math.min(maxMs, baseMs * 2 ** exponent);
  return ceiling / 2 + (ceiling / 2) * Math.min(Math.max(jitter, 0), 1);
}
