/**
 * The admin commands of the fault-injection switch (`clock`, `ids`) against a fake target:
 * refused with a named error on a node without `--fault-injection`, effective on one with it,
 * and audited (a step is a change to a live node).
 */
import { describe, expect, it } from 'vitest';
import type { AdminTarget, FaultInjection } from '../../src/admin/admin-commands.ts';
import { AdminExecutor } from '../../src/admin/admin-executor.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import { createLogger } from '../../src/core/logger.ts';

function fakeFaults(): FaultInjection & { offset: number } {
  let n = 0;
  const f = {
    offset: 0,
    wallOffset: () => f.offset,
    stepWall: (d: number) => (f.offset += d),
    wallNow: () => 1_800_000_000_000 + f.offset,
    ids: (count: number) => Array.from({ length: count }, () => String(++n)),
  };
  return f;
}

function executor(faults?: FaultInjection): { run: (line: string) => Promise<unknown>; audited: string[] } {
  const audited: string[] = [];
  const log = createLogger({ node: 4 }, 'silent');
  log.info = ((o: { audit?: { command: string; args: string[] } }) =>
    void (o.audit && audited.push([o.audit.command, ...o.audit.args].join(' ')))) as typeof log.info;
  const target = { id: 4, ...(faults && { faults }) } as unknown as AdminTarget;
  const x = new AdminExecutor({ target, log });
  return {
    audited,
    run: async (line) => {
      const [command, ...args] = line.split(' ');
      const r = await x.run(command!, args, 'tester', 'test');
      return r.kind === 'value' ? r.value : r;
    },
  };
}

async function refusal(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a refusal');
}

describe('admin clock and ids commands', () => {
  it.each(['clock step -30000', 'clock reset', 'ids 5'])(
    'refuses `%s` without --fault-injection, naming the switch (ERR_FORBIDDEN)',
    async (line) => {
      const e = await refusal(executor().run(line));
      expect(isTroupeError(e, 'ERR_FORBIDDEN')).toBe(true);
      expect(e.message).toMatch(/node 4 was not started with --fault-injection/);
    },
  );

  it('shows the switch off, with no offset, without --fault-injection', async () => {
    expect(await executor().run('clock')).toEqual({ node: 4, faultInjection: false, offsetMs: 0, wallNow: null });
  });

  it('steps back and forward, resets, and audits each step', async () => {
    const faults = fakeFaults();
    const x = executor(faults);
    expect(await x.run('clock step -30000')).toMatchObject({
      offsetMs: -30_000,
      wallNow: new Date(1_800_000_000_000 - 30_000).toISOString(),
    });
    expect(await x.run('clock step +60000')).toMatchObject({ offsetMs: 30_000 });
    expect(await x.run('clock')).toMatchObject({ faultInjection: true, offsetMs: 30_000 });
    expect(await x.run('clock reset')).toMatchObject({ offsetMs: 0 });
    expect(faults.offset).toBe(0);
    expect(x.audited).toEqual(['clock step -30000', 'clock step +60000', 'clock', 'clock reset']);
  });

  it('hands out n ids in the order issued', async () => {
    expect(await executor(fakeFaults()).run('ids 3')).toEqual({ node: 4, ids: ['1', '2', '3'] });
  });

  it.each([
    ['clock step', /usage: clock \[step <±ms> \| reset\]/],
    ['clock step 1.5', /clock step takes a whole number of ms/],
    ['clock step soon', /clock step takes a whole number of ms/],
    ['clock reset now', /usage: clock/],
    ['clock jump 5', /usage: clock/],
    ['ids 0', /usage: ids \[n\]/],
    ['ids 10001', /at most 10000/],
  ])('refuses `%s` with ERR_INVALID_INPUT', async (line, message) => {
    const faults = fakeFaults();
    const e = await refusal(executor(faults).run(line));
    expect(isTroupeError(e, 'ERR_INVALID_INPUT')).toBe(true);
    expect(e.message).toMatch(message);
    expect(faults.offset).toBe(0);
  });
});
