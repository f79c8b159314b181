import { describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.ts';
import { createLogger } from '../../src/core/logger.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';

const fixtures = new URL('../fixtures/actors.ts', import.meta.url).href;

describe('a worker thread that cannot start', () => {
  it('fails the start with ERR_WORKER_START, never an unhandled error event, and is not restarted', async () => {
    // A heap too small to load the app: the thread dies before its host task runs.
    const sup = new Supervisor({
      workers: 1,
      modules: [fixtures],
      journal: { type: 'memory' },
      clock: systemClock,
      log: createLogger({}, 'silent'),
      node: 't',
      resourceLimits: { maxOldGenerationSizeMb: 2, maxYoungGenerationSizeMb: 1, codeRangeSizeMb: 1 },
    });
    let restarted = 0;
    sup.on('worker-exit', () => restarted++);
    await expect(sup.start()).rejects.toMatchObject({ code: 'ERR_WORKER_START', message: expect.stringMatching(/memory limit/) });
    expect(restarted).toBe(0);
  });
});

describe('a worker thread whose loader is missing', () => {
  it('fails the start with ERR_WORKER_START naming the loader, never an unhandled error event', async () => {
    const sup = new Supervisor({
      workers: 2,
      modules: [fixtures],
      journal: { type: 'memory' },
      clock: systemClock,
      log: createLogger({}, 'silent'),
      node: 't',
      execArgv: ['--import', 'file:///nonexistent/loader.mjs'],
    });
    await expect(sup.start()).rejects.toMatchObject({ code: 'ERR_WORKER_START', message: expect.stringMatching(/nonexistent\/loader/) });
  });
});
