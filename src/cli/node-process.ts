import { fork, type ChildProcess, type ForkOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** What a node started under a parent process reports over IPC once it serves. */
export interface ReadyMessage {
  type: 'ready';
  id: number;
  url: string;
  /** Node-to-node address, when clustered. */
  cluster?: string;
  pid: number;
}

export interface NodeProcess {
  child: ChildProcess;
  /** Resolves with the node's ready report; rejects if it exits first or misses the deadline. */
  ready: Promise<ReadyMessage>;
}

export const troupeBin = fileURLToPath(new URL('../../bin/troupe.js', import.meta.url));

/**
 * Forks `troupe <args>` with an IPC channel; `ready` resolves when the node reports it serves,
 * and rejects if it exits first or misses the deadline (then it is killed). Used by `troupe cluster`, the
 * multi-process tests and the benchmarks.
 */
export function forkNode(args: string[], options: ForkOptions & { readyTimeoutMs?: number } = {}): NodeProcess {
  const { readyTimeoutMs = 30_000, ...forkOptions } = options;
  const child = fork(troupeBin, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], ...forkOptions });
  const ready = new Promise<ReadyMessage>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`troupe ${args.join(' ')}: not ready within ${readyTimeoutMs} ms`));
    }, readyTimeoutMs);
    const onExit = (code: number | null, signal: string | null) => {
      clearTimeout(timer);
      reject(new Error(`troupe ${args.join(' ')}: exited (${signal ?? code}) before it was ready`));
    };
    child.once('exit', onExit);
    child.on('message', (m: Partial<ReadyMessage>) => {
      if (m?.type !== 'ready') return;
      clearTimeout(timer);
      child.off('exit', onExit);
      resolve(m as ReadyMessage);
    });
  });
  return { child, ready };
}
