import { createServer } from 'node:net';
import type { ChildProcess } from 'node:child_process';

/** Resolves once the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** SIGTERM, SIGKILL if it has not exited after 5 s; resolves once it has exited. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = exited(child);
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await done;
  clearTimeout(timer);
}

/**
 * Polls `check` every 50 ms until it holds (a poll of real processes' state, with a deadline —
 * not a sleep); throws at the deadline. Resolves with how long it took, ms.
 */
export async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string | (() => string)): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await check().catch(() => false)) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`not within ${timeoutMs} ms: ${typeof what === 'string' ? what : what()}`);
}

/** `count` consecutive ports free on 127.0.0.1, below the ephemeral range other tests draw from. */
export async function freePorts(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * 20_000);
    const servers = [];
    try {
      for (let i = 0; i < count; i++) {
        const srv = createServer();
        await new Promise<void>((resolve, reject) => {
          srv.once('error', reject);
          srv.listen(base + i, '127.0.0.1', resolve);
        });
        servers.push(srv);
      }
      return base;
    } catch {
      // taken: try another run
    } finally {
      await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))));
    }
  }
  throw new Error('no free run of ports');
}
