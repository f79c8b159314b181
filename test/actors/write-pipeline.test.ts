import { describe, expect, it } from 'vitest';
import { ActorCell, type HeldReply } from '../../src/actors/actor-cell.ts';
import { defineActor } from '../../src/actors/define-actor.ts';
import type { Envelope } from '../../src/actors/envelope.ts';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { WritePipeline } from '../../src/actors/write-pipeline.ts';
import { troupeError } from '../../src/core/errors.ts';
import { Mailbox } from '../../src/mailbox/mailbox.ts';
import type { ActorHistory, ActorWrite, EventRecord, Journal } from '../../src/persistence/journal.ts';

const counter = defineActor({
  kind: 'counter',
  initial: () => ({ n: 0 }),
  apply: (s: { n: number }) => ({ n: s.n + 1 }),
  commands: { get: { readOnly: true, handle: (ctx) => ctx.state } },
});
const kind = new ActorRegistry([counter]).get('counter')!;

const cellOf = (key: string) => new ActorCell(kind, key, new Mailbox<Envelope>());
const env = (askId: number): Envelope => ({ command: 'incr', input: undefined, msgId: undefined, askId, channel: undefined });
const write = (key: string, seq: number): ActorWrite => ({ kind: 'counter', key, events: [{ seq, v: 1, event: {} }] });

/** A journal whose `writeMany` calls wait until the test settles them, one call at a time. */
class ManualJournal implements Journal {
  readonly calls: Array<{ writes: readonly ActorWrite[]; settle: (errors: Array<Error | null>) => void }> = [];
  writeMany(writes: readonly ActorWrite[]): Promise<Array<Error | null>> {
    return new Promise((settle) => this.calls.push({ writes, settle }));
  }
  write(): Promise<void> {
    return Promise.reject(new Error('the pipeline should use writeMany'));
  }
  read(): Promise<ActorHistory> {
    return Promise.resolve({ events: [], replies: [] });
  }
  readFrom(): Promise<EventRecord[]> {
    return Promise.resolve([]);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Records what the pipeline reports, in order, by the held replies' ask ids. */
function recorder() {
  const log: string[] = [];
  const ids = (held: HeldReply[]) => held.map((h) => h.env.askId).join(',');
  return {
    log,
    callbacks: {
      released: (cell: ActorCell, held: HeldReply[]) => log.push(`released ${cell.key} ${ids(held)}`),
      failed: (cell: ActorCell, held: HeldReply[], e: unknown) => log.push(`failed ${cell.key} ${ids(held)} ${(e as Error).message}`),
      writeFailed: (cell: ActorCell, e: unknown) => log.push(`writeFailed ${cell.key} ${(e as Error).message}`),
    },
  };
}

/** Lets queued microtasks run (the batch goes out in one); not a timed wait. */
const microtasks = () => new Promise<void>((r) => setImmediate(r));

/** Ends a turn the way the host does: its held replies travel with its write. */
function endTurn(pipeline: WritePipeline, cell: ActorCell, w: ActorWrite | null): void {
  const held = cell.held;
  cell.held = null;
  if (w !== null) pipeline.submit(cell, w, held);
  else if (held !== null) pipeline.releaseAfterLastWrite(cell, held);
}

describe('WritePipeline', () => {
  it('batches every turn of a microtask into one journal call and releases replies only when it is durable', async () => {
    const journal = new ManualJournal();
    const { log, callbacks } = recorder();
    const pipeline = new WritePipeline(journal, callbacks);
    const [a, b] = [cellOf('a'), cellOf('b')];
    a.pendingEvents = [];
    expect(pipeline.hold(a, env(1), true, 1)).toBe(true);
    a.pendingEvents = null;
    endTurn(pipeline, a, write('a', 1));
    b.pendingEvents = [];
    pipeline.hold(b, env(2), true, 1);
    b.pendingEvents = null;
    endTurn(pipeline, b, write('b', 1));
    await microtasks();
    expect(journal.calls.map((c) => c.writes.map((w) => w.key))).toEqual([['a', 'b']]);
    expect(log).toEqual([]);
    journal.calls[0]!.settle([null, null]);
    await microtasks();
    expect(log).toEqual(['released a 1', 'released b 2']);
    expect([a.inflightWrites, b.inflightWrites, a.lastWrite, b.lastWrite]).toEqual([0, 0, null, null]);
  });

  it('an idle actor with nothing in flight answers at once', () => {
    const pipeline = new WritePipeline(new ManualJournal(), recorder().callbacks);
    const cell = cellOf('a');
    expect(pipeline.hold(cell, env(1), true, 1)).toBe(false);
    expect(cell.held).toBeNull();
  });

  it('a reply that saw a state still being written waits for that write, even from a turn that wrote nothing', async () => {
    const journal = new ManualJournal();
    const { log, callbacks } = recorder();
    const pipeline = new WritePipeline(journal, callbacks);
    const cell = cellOf('a');
    endTurn(pipeline, cell, write('a', 1)); // turn 1 wrote, answered nobody
    await microtasks();
    // Turn 2 is a read: nothing to write, but its answer reflects event 1, not yet durable.
    expect(pipeline.hold(cell, env(7), true, { n: 1 })).toBe(true);
    endTurn(pipeline, cell, null);
    await microtasks();
    expect(log).toEqual([]);
    journal.calls[0]!.settle([null]);
    await microtasks();
    expect(log).toEqual(['released a 7']);
  });

  it('a failed write fails its replies, then reports the actor; the other writes of the batch stand', async () => {
    const journal = new ManualJournal();
    const { log, callbacks } = recorder();
    const pipeline = new WritePipeline(journal, callbacks);
    const [a, b] = [cellOf('a'), cellOf('b')];
    for (const [cell, id] of [[a, 1], [b, 2]] as const) {
      cell.pendingEvents = [];
      pipeline.hold(cell, env(id), true, 1);
      cell.pendingEvents = null;
      endTurn(pipeline, cell, write(cell.key, 1));
    }
    await microtasks();
    journal.calls[0]!.settle([troupeError('ERR_STORAGE_FULL', 'disk full'), null]);
    await microtasks();
    expect(log).toEqual(['failed a 1 disk full', 'writeFailed a disk full', 'released b 2']);
  });

  it('a journal that throws synchronously fails every write of the batch', async () => {
    const { log, callbacks } = recorder();
    const journal = new ManualJournal();
    journal.writeMany = () => {
      throw new Error('closed');
    };
    const pipeline = new WritePipeline(journal, callbacks);
    endTurn(pipeline, cellOf('a'), write('a', 1));
    endTurn(pipeline, cellOf('b'), write('b', 1));
    await microtasks();
    expect(log).toEqual(['writeFailed a closed', 'writeFailed b closed']);
  });

  it('without writeMany it writes each turn with write()', async () => {
    const { log, callbacks } = recorder();
    const written: string[] = [];
    const journal: Journal = {
      write: (w) => (written.push(w.key), w.key === 'b' ? Promise.reject(new Error('nope')) : Promise.resolve()),
      read: () => Promise.resolve({ events: [], replies: [] }),
      readFrom: () => Promise.resolve([]),
      close: () => Promise.resolve(),
    };
    const pipeline = new WritePipeline(journal, callbacks);
    endTurn(pipeline, cellOf('a'), write('a', 1));
    endTurn(pipeline, cellOf('b'), write('b', 1));
    await microtasks();
    expect(written).toEqual(['a', 'b']);
    expect(log).toEqual(['writeFailed b nope']);
  });

  it('runs onSettled once the last in-flight write of the actor settles (a restart waiting to reload)', async () => {
    const journal = new ManualJournal();
    const pipeline = new WritePipeline(journal, recorder().callbacks);
    const cell = cellOf('a');
    endTurn(pipeline, cell, write('a', 1));
    await microtasks();
    endTurn(pipeline, cell, write('a', 2));
    await microtasks();
    let reloaded = 0;
    cell.onSettled = () => reloaded++;
    journal.calls[0]!.settle([null]);
    await microtasks();
    expect(reloaded).toBe(0); // write 2 still in flight
    journal.calls[1]!.settle([null]);
    await microtasks();
    expect([reloaded, cell.onSettled]).toEqual([1, null]);
  });

  it('drain() hands over what is queued and resolves once every write has settled', async () => {
    const journal = new ManualJournal();
    const { log, callbacks } = recorder();
    const pipeline = new WritePipeline(journal, callbacks);
    const cell = cellOf('a');
    cell.pendingEvents = [];
    pipeline.hold(cell, env(3), true, 1);
    cell.pendingEvents = null;
    endTurn(pipeline, cell, write('a', 1));
    let drained = false;
    const done = pipeline.drain().then(() => (drained = true));
    expect(journal.calls).toHaveLength(1); // flushed synchronously, not a microtask later
    await microtasks();
    expect(drained).toBe(false);
    journal.calls[0]!.settle([null]);
    await done;
    expect(log).toEqual(['released a 3']);
  });
});
