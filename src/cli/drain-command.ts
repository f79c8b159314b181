import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { systemClock, type Clock } from '../core/clock.ts';
import { troupeError } from '../core/errors.ts';
import { isLive, liveHolder, type LockRecord } from '../node/data-dir-lock.ts';
import { handoffDefaults } from '../replication/handoff.ts';
import { intFlag, UsageError } from './flags.ts';

export interface DrainFlags {
  dataDir?: string;
  timeout?: string;
}

/** How often `troupe drain` checks whether the node's process is gone, ms. */
const POLL_MS = 100;
/** How often it says it is still waiting, ms. */
const PROGRESS_MS = 1_000;

/**
 * `troupe drain --data-dir <dir>`: gracefully remove a running node from its cluster. The node's
 * pid comes from its data directory's lock record; SIGTERM makes a `troupe start` node drain
 * (hand every partition it leads to its next primary, then stop). Operating-system permissions
 * are the authentication: only a user allowed to signal the process can drain it, and no network
 * endpoint can. Exit 0 once the process is gone, 1 if it is still there after `--timeout`.
 *
 * @example
 *   troupe drain --data-dir data/node-2   # "drained: node process 4242 exited after 1.3 s"
 */
export async function drainCommand(flags: DrainFlags, clock: Clock = systemClock): Promise<number> {
  if (flags.dataDir === undefined) throw new UsageError('--data-dir <dir> is required (the data directory of the node to drain)');
  // The node's own drain gives up after drainTimeoutMs; then it stops, which takes a moment more.
  const timeoutS = flags.timeout === undefined ? handoffDefaults.drainTimeoutMs / 1000 + 30 : intFlag('--timeout', flags.timeout, 1, 86_400);
  const dir = resolve(flags.dataDir);
  if (!existsSync(dir)) throw troupeError('ERR_NOT_A_DATA_DIR', `--data-dir ${dir} does not exist`, { path: dir });
  const holder = await liveHolder(dir);
  if (holder === undefined)
    throw troupeError('ERR_STOPPED', `no node is running with --data-dir ${dir} (its lock file is missing, or the process that held it is gone)`, { path: dir });
  if (holder.host !== hostname())
    throw troupeError('ERR_NODE_UNREACHABLE', `--data-dir ${dir} is held by pid ${holder.pid} on host ${holder.host}: run troupe drain on that host`, {
      path: dir,
      pid: holder.pid,
      host: holder.host,
    });
  if (holder.pid === process.pid) throw troupeError('ERR_INVALID_OPTION', `--data-dir ${dir} is held by this very process`, { path: dir });
  try {
    process.kill(holder.pid, 'SIGTERM');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') return gone(holder, 0);
    if (code === 'EPERM') throw troupeError('ERR_INVALID_OPTION', `not allowed to signal pid ${holder.pid} (it belongs to another user): run troupe drain as that user`, { pid: holder.pid });
    throw e;
  }
  const started = clock.now();
  process.stdout.write(`draining node process ${holder.pid} (data directory ${dir}): it hands its partitions to the other members, then stops\n`);
  let said = started;
  while (await isLive(holder)) {
    const now = clock.now();
    if (now - started >= timeoutS * 1000) {
      process.stderr.write(`troupe drain: pid ${holder.pid} is still running after ${timeoutS} s (see its log); it was sent SIGTERM once\n`);
      return 1;
    }
    if (now - said >= PROGRESS_MS) {
      said = now;
      process.stdout.write(`  still draining… ${((now - started) / 1000).toFixed(0)} s\n`);
    }
    // A timer that keeps the process alive (the clock's are unref'd): this wait is all the CLI does.
    await delay(POLL_MS);
  }
  return gone(holder, clock.now() - started);
}

function gone(holder: LockRecord, ms: number): number {
  process.stdout.write(`drained: node process ${holder.pid} exited after ${(ms / 1000).toFixed(1)} s\n`);
  return 0;
}
