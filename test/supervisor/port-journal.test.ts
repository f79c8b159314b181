/**
 * The journal seam for `journal: { type: 'node' }`: actors on a worker thread (through the slot's
 * port) and in-process hosts (directly) read and write through the node's journal service, with
 * the epoch the service gave at activation, and the service's refusals reach the askers with
 * their own codes. The same assertions run against a real `Supervisor` with one worker thread
 * and against `InProcessActors` on a `SimulatedClock`.
 */
import { MessageChannel } from 'node:worker_threads';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadActorModules } from '../../src/actors/registry.ts';
import { SimulatedClock, systemClock } from '../../src/core/clock.ts';
import { toErrorRecord, troupeError, type ErrorCode } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { InProcessActors } from '../../src/node/in-process-actors.ts';
import type { LocalActors } from '../../src/node/local-actors.ts';
import { createJournal } from '../../src/persistence/create-journal.ts';
import type { ActorHistory, ActorWrite, EventRecord, Journal } from '../../src/persistence/journal.ts';
import { MemoryJournal } from '../../src/persistence/memory-journal.ts';
import type { Epoch } from '../../src/replication/epoch.ts';
import { PortJournal, serveJournalRequest } from '../../src/supervisor/port-journal.ts';
import { PortReader, PortWriter } from '../../src/supervisor/port-protocol.ts';
import { actorRestartPolicy } from '../../src/supervisor/restart-window.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';

const fixtures = new URL('../fixtures/actors.ts', import.meta.url).href;
const GRACE_MS = 200;

/**
 * A journal service that records what reaches it and refuses on cue, over a `MemoryJournal`
 * (which fences stale epochs itself). Its `read` grants `grant` to an actor that has no epoch yet,
 * as a primary grants its own epoch.
 */
class RecordingService implements Journal {
  readonly inner = new MemoryJournal({ compactOnSnapshot: false });
  grant: Epoch = { term: 3, node: 1 };
  readonly reads: string[] = [];
  readonly batches: ActorWrite[][] = [];
  /** While set, every read rejects with this code. */
  refuseReads: ErrorCode | null = null;
  /** The next writes (one per entry) are refused with these codes. */
  readonly refuseWrites: ErrorCode[] = [];
  /** While set, writeMany never answers. */
  hangWrites = false;
  closed = false;
  private onBatch: (() => void) | null = null;

  async read(kind: string, key: string): Promise<ActorHistory> {
    this.reads.push(`${kind}/${key}`);
    if (this.refuseReads !== null) throw troupeError(this.refuseReads, `refused read of ${kind}/${key}`, { kind, key });
    const history = await this.inner.read(kind, key);
    return { ...history, epoch: history.epoch ?? this.grant };
  }

  readFrom(kind: string, key: string, afterSeq: number, limit: number): Promise<EventRecord[]> {
    return this.inner.readFrom(kind, key, afterSeq, limit);
  }

  write(w: ActorWrite): Promise<void> {
    return this.writeMany([w]).then(([e]) => {
      if (e) throw e;
    });
  }

  writeMany(writes: readonly ActorWrite[]): Promise<Array<Error | null>> {
    this.batches.push([...writes]);
    this.onBatch?.();
    if (this.hangWrites) return new Promise(() => undefined);
    const code = this.refuseWrites.shift();
    if (code !== undefined) return Promise.resolve(writes.map((w) => troupeError(code, `refused write of ${w.kind}/${w.key}`)));
    return this.inner.writeMany(writes);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  readsOf(key: string): number {
    return this.reads.filter((r) => r === `counter/${key}`).length;
  }

  writesOf(key: string): ActorWrite[] {
    return this.batches.flat().filter((w) => w.key === key);
  }

  /** Resolves at the next writeMany that reaches the service. */
  nextBatch(): Promise<void> {
    return new Promise((resolve) => (this.onBatch = resolve));
  }
}

interface Rig {
  actors: LocalActors;
  service: RecordingService;
  /** `p` settled, the rig's clock moving as it needs to; fails past a deadline. */
  settle<T>(p: Promise<T>): Promise<T>;
}

/** `p`, or a rejection once `ms` of real time passed (a deadline, not a wait). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

async function supervisorRig(): Promise<Rig> {
  const service = new RecordingService();
  const actors = new Supervisor({
    workers: 1,
    modules: [fixtures],
    journal: { type: 'node' },
    journalService: service,
    journalStopGraceMs: GRACE_MS,
    clock: systemClock,
    log: silentLogger,
    node: 'test',
  });
  await actors.start();
  return { actors, service, settle: (p) => within(p, 5_000, 'a worker-thread ask') };
}

async function inProcessRig(): Promise<Rig> {
  const service = new RecordingService();
  const clock = new SimulatedClock();
  const actors = new InProcessActors({
    registry: await loadActorModules([fixtures]),
    journal: { type: 'node' },
    journalService: service,
    journalStopGraceMs: GRACE_MS,
    clock,
    log: silentLogger,
    node: 1,
  });
  await actors.start();
  const settle = async <T>(p: Promise<T>): Promise<T> => {
    let settled = false;
    const watched = p.finally(() => (settled = true));
    watched.catch(() => undefined);
    // One real turn per simulated 10 ms: the hosts' microtasks and the service's run in between.
    for (let step = 0; step < 1_000 && !settled; step++) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (!settled) clock.advance(10);
    }
    if (!settled) throw new Error('not settled within 10 simulated seconds');
    return watched;
  };
  return { actors, service, settle };
}

/** The assertions both implementations must pass; the stop test runs last, as it stops the rig. */
function journalSeam(name: string, makeRig: () => Promise<Rig>): void {
  describe(name, () => {
    let rig: Rig;
    let service: RecordingService;
    const ask = (key: string, command = 'incr') => rig.settle(rig.actors.ask('counter', key, { command }));
    beforeAll(async () => {
      rig = await makeRig();
      service = rig.service;
    });
    afterAll(() => rig.actors.stop());
    beforeEach(() => {
      // A test that fails half-way must not leave the service refusing for the next one.
      service.refuseReads = null;
      service.refuseWrites.length = 0;
      service.hangWrites = false;
    });

    it("activates through the service's read, and every write carries the epoch that read gave", async () => {
      await expect(ask('a')).resolves.toEqual({ n: 1 });
      await expect(ask('a')).resolves.toEqual({ n: 2 });
      expect(service.readsOf('a')).toBe(1);
      const writes = service.writesOf('a');
      expect(writes.map((w) => w.events.map((e) => e.seq))).toEqual([[1], [2]]);
      expect(writes.map((w) => w.epoch)).toEqual([
        { term: 3, node: 1 },
        { term: 3, node: 1 },
      ]);
    });

    it("a batch of turns is one writeMany request: 20 actors' turns of one drain reach the service together", async () => {
      const keys = Array.from({ length: 20 }, (_, i) => `b${i}`);
      await rig.settle(Promise.all(keys.map((k) => rig.actors.ask('counter', k, { command: 'incr' }))));
      const before = service.batches.length;
      const replies = await rig.settle(Promise.all(keys.map((k) => rig.actors.ask('counter', k, { command: 'incr' }))));
      expect(replies).toEqual(keys.map(() => ({ n: 2 })));
      expect(service.batches.length - before).toBe(1);
      expect(service.batches.at(-1)!.map((w) => w.key)).toEqual(keys);
    });

    it.each(['ERR_NOT_PRIMARY', 'ERR_PARTITION_UNAVAILABLE'] as const)(
      'an activation read refused with %s reaches the asker with that code; the next ask activates once the service accepts',
      async (code) => {
        const key = `read-${code}`;
        service.refuseReads = code;
        await expect(ask(key)).rejects.toMatchObject({ code, message: `refused read of counter/${key}` });
        service.refuseReads = null;
        await expect(ask(key)).resolves.toEqual({ n: 1 });
        expect(service.readsOf(key)).toBe(2);
      },
    );

    it('a write fenced with ERR_STALE_EPOCH fails its ask with that code; the actor reloads and writes in the newer epoch', async () => {
      await expect(ask('c')).resolves.toEqual({ n: 1 });
      // A newer primary takes the actor over: the journal now holds its epoch.
      const newer = { term: 5, node: 2 };
      await service.inner.write({ kind: 'counter', key: 'c', events: [], epoch: newer });
      await expect(ask('c')).rejects.toMatchObject({ code: 'ERR_STALE_EPOCH' });
      // The refused increment is gone from memory: the state is the journal's again.
      await expect(ask('c', 'get')).resolves.toEqual({ n: 1 });
      expect(service.readsOf('c')).toBe(2);
      await expect(ask('c')).resolves.toEqual({ n: 2 });
      expect(service.writesOf('c').at(-1)!.epoch).toEqual(newer);
    });

    it('a write refused with ERR_NOT_PRIMARY fails its ask with that code and drops what it applied', async () => {
      await expect(ask('d')).resolves.toEqual({ n: 1 });
      service.refuseWrites.push('ERR_NOT_PRIMARY');
      await expect(ask('d')).rejects.toMatchObject({ code: 'ERR_NOT_PRIMARY', message: 'refused write of counter/d' });
      await expect(ask('d', 'get')).resolves.toEqual({ n: 1 });
      expect(service.readsOf('d')).toBe(2);
    });

    it('fenced writes never escalate the actor: past its restart intensity, each ask still gets the fence code', async () => {
      await ask('f');
      const fences = actorRestartPolicy.maxRestarts + 2;
      for (let i = 0; i < fences; i++) {
        service.refuseWrites.push('ERR_NOT_PRIMARY');
        await expect(ask('f')).rejects.toMatchObject({ code: 'ERR_NOT_PRIMARY' });
      }
      await expect(ask('f')).resolves.toEqual({ n: 2 });
      expect(service.readsOf('f')).toBe(fences + 1);
    });

    it('stop does not hang on a service that never answers: the waiting ask fails with ERR_STOPPED; the service stays open', async () => {
      await ask('e');
      service.hangWrites = true;
      const arrived = service.nextBatch();
      const hung = rig.actors.ask('counter', 'e', { command: 'incr' });
      hung.catch(() => undefined);
      await rig.settle(arrived);
      await rig.settle(rig.actors.stop());
      await expect(hung).rejects.toMatchObject({ code: 'ERR_STOPPED' });
      expect(service.closed).toBe(false);
    });
  });
}

journalSeam('Supervisor, one worker thread, journal served by the main thread', supervisorRig);
journalSeam('InProcessActors, journal served by the node', inProcessRig);

describe('InProcessActors stop with a service that never answers', () => {
  it('waits for writes in flight exactly the grace period on its clock, then fails them', async () => {
    const service = new RecordingService();
    const clock = new SimulatedClock();
    const actors = new InProcessActors({
      registry: await loadActorModules([fixtures]),
      journal: { type: 'node' },
      journalService: service,
      journalStopGraceMs: GRACE_MS,
      clock,
      log: silentLogger,
      node: 1,
    });
    await actors.start();
    service.hangWrites = true;
    const arrived = service.nextBatch();
    const hung = actors.ask('counter', 'k', { command: 'incr' });
    hung.catch(() => undefined);
    await within(arrived, 5_000, 'the write reaching the service');
    let stopped = false;
    const stopping = actors.stop().then(() => (stopped = true));
    clock.advance(GRACE_MS - 1);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(stopped).toBe(false);
    clock.advance(1);
    await within(stopping, 5_000, 'stop after the grace period');
    await expect(hung).rejects.toMatchObject({ code: 'ERR_STOPPED' });
  });
});

describe("journal type 'node' options", () => {
  const service = new RecordingService();
  const base = { clock: systemClock, log: silentLogger, node: 1 };
  const constructors = {
    Supervisor: (o: object) => new Supervisor({ workers: 1, modules: [fixtures], journal: { type: 'memory' }, ...base, ...o }),
    InProcessActors: (o: object) => new InProcessActors({ registry: {} as never, journal: { type: 'memory' }, ...base, ...o }),
  };
  const cases: Array<[string, object, RegExp]> = [
    [
      "type 'node' without a service",
      { journal: { type: 'node' } },
      /^options\.journalService is required with options\.journal \{ type: 'node' \}/,
    ],
    [
      "a service without type 'node'",
      { journalService: service },
      /^options\.journalService is served to the actors only with options\.journal \{ type: 'node' \}/,
    ],
    [
      'a service that is not a Journal',
      { journal: { type: 'node' }, journalService: { read: 1 } },
      /^options\.journalService must be a Journal/,
    ],
    [
      'a negative stop grace',
      { journal: { type: 'node' }, journalService: service, journalStopGraceMs: -1 },
      /^options\.journalStopGraceMs must be a non-negative/,
    ],
  ];
  for (const [ctor, make] of Object.entries(constructors)) {
    it.each(cases)(`${ctor} refuses %s with ERR_INVALID_OPTION`, (_, options, message) => {
      expect(() => make(options)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringMatching(message) }));
    });
  }

  it("createJournal refuses type 'node': no thread builds the service for itself", () => {
    expect(() => createJournal({ type: 'node' })).toThrow(
      expect.objectContaining({
        code: 'ERR_INVALID_OPTION',
        message: expect.stringMatching(/^config\.type must be 'memory' or 'lmdb' here/),
      }),
    );
  });
});

describe('PortJournal over a real MessageChannel (both ends in this thread)', () => {
  /** The worker end (`PortJournal.over` a writer) and a main end serving `service` as the Supervisor does. */
  function channel(service: Journal) {
    const { port1, port2 } = new MessageChannel();
    const journal = PortJournal.over(new PortWriter(port1));
    const ids: number[] = [];
    const none = () => undefined;
    const workerEnd = new PortReader({ msg: none, reply: (id, ok, v) => journal.answer(id, ok, v), control: none, event: none });
    port1.on('message', (batch: unknown[]) => workerEnd.decode(batch));
    const main = new PortWriter(port2);
    const mainEnd = new PortReader({
      msg: none,
      reply: none,
      control: (id, name, arg) => {
        ids.push(id);
        serveJournalRequest(service, name, arg).then(
          (v) => main.reply(id, true, v),
          (e: unknown) => main.reply(id, false, toErrorRecord(e)),
        );
      },
      event: none,
    });
    port2.on('message', (batch: unknown[]) => mainEnd.decode(batch));
    const close = () => {
      port1.close();
      port2.close();
    };
    return { journal, ids, close };
  }

  it('carries reads and writes with negative ids; a batch answers per write, a fenced one with its code', async () => {
    const service = new MemoryJournal();
    const { journal, ids, close } = channel(service);
    try {
      const newer = { term: 2, node: 1 };
      await service.write({ kind: 'k', key: 'fenced', events: [], epoch: newer });
      const results = await journal.writeMany([
        { kind: 'k', key: 'ok', events: [{ seq: 1, v: 1, event: 'e1' }], epoch: { term: 1, node: 1 } },
        { kind: 'k', key: 'fenced', events: [{ seq: 1, v: 1, event: 'e1' }], epoch: { term: 1, node: 1 } },
      ]);
      expect(results[0]).toBeNull();
      expect(results[1]).toMatchObject({ code: 'ERR_STALE_EPOCH', name: 'TroupeError' });
      await expect(journal.read('k', 'ok')).resolves.toMatchObject({ events: [{ seq: 1, event: 'e1' }], epoch: { term: 1, node: 1 } });
      await expect(journal.readFrom('k', 'ok', 0, 10)).resolves.toEqual([{ seq: 1, v: 1, event: 'e1' }]);
      await expect(journal.readFrom('k', 'ok', -1, 10)).rejects.toMatchObject({ code: 'ERR_JOURNAL_READ' });
      expect(ids).toEqual([-1, -2, -3, -4]);
    } finally {
      close();
    }
  });

  it('a batch the port cannot carry fails each of its writes with ERR_NOT_SERIALIZABLE', async () => {
    const { journal, close } = channel(new MemoryJournal());
    try {
      const results = await journal.writeMany([
        { kind: 'k', key: 'a', events: [{ seq: 1, v: 1, event: () => 1 }] },
        { kind: 'k', key: 'b', events: [{ seq: 1, v: 1, event: 'fine' }] },
      ]);
      expect(results.map((e) => (e as { code?: string } | null)?.code)).toEqual(['ERR_NOT_SERIALIZABLE', 'ERR_NOT_SERIALIZABLE']);
    } finally {
      close();
    }
  });

  it('close fails what is waiting with ERR_STOPPED and refuses later calls', async () => {
    const never: Journal = {
      read: () => new Promise(() => undefined),
      readFrom: () => new Promise(() => undefined),
      write: () => new Promise(() => undefined),
      close: () => Promise.resolve(),
    };
    const { journal, close } = channel(never);
    try {
      const waiting = journal.read('k', 'a');
      const write = journal.write({ kind: 'k', key: 'a', events: [] });
      await journal.close();
      await expect(waiting).rejects.toMatchObject({ code: 'ERR_STOPPED' });
      await expect(write).rejects.toMatchObject({ code: 'ERR_STOPPED' });
      await expect(journal.read('k', 'a')).rejects.toMatchObject({ code: 'ERR_STOPPED' });
      expect(journal.pending).toBe(0);
    } finally {
      close();
    }
  });
});
