import { describe, expect, it } from 'vitest';
import { isTroupeError } from '../../src/core/errors.ts';
import { FailingJournal, HoldingJournal } from '../../src/persistence/failing-journal.ts';
import type { EventRecord } from '../../src/persistence/journal.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';

const ev = (seq: number): EventRecord => ({ seq, v: 1, event: { n: seq } });

describe('test doubles pass readFrom through', () => {
  it('FailingJournal reads the inner log, and failNextReads fails readFrom as it fails read', async () => {
    const journal = new FailingJournal(new MemoryJournal());
    await journal.write({ kind: 'k', key: 'x', events: [ev(1), ev(2), ev(3)] });
    expect(await journal.readFrom('k', 'x', 1, 1)).toEqual([ev(2)]);
    journal.failNextReads(1);
    const e = await journal.readFrom('k', 'x', 0, 10).catch((err: unknown) => err);
    expect(isTroupeError(e, 'ERR_JOURNAL_READ')).toBe(true);
    expect(await journal.readFrom('k', 'x', 0, 10)).toEqual([ev(1), ev(2), ev(3)]);
  });

  it('HoldingJournal reads only what reached the inner journal: a held write is not readable yet', async () => {
    const journal = new HoldingJournal(new MemoryJournal(), (w) => w.events[0]?.seq === 2);
    await journal.write({ kind: 'k', key: 'x', events: [ev(1)] });
    const held = journal.write({ kind: 'k', key: 'x', events: [ev(2)] });
    expect(await journal.readFrom('k', 'x', 0, 10)).toEqual([ev(1)]);
    journal.release();
    await held;
    expect(await journal.readFrom('k', 'x', 0, 10)).toEqual([ev(1), ev(2)]);
  });
});
