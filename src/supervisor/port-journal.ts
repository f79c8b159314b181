/**
 * The journal seam between actor hosts and the node's main thread, for `journal: { type: 'node' }`
 * (replicated clusters): the main thread owns the one journal service (the replication driver)
 * and every host's reads and writes go to it.
 *
 *   worker thread                         port (batched)                    main thread
 *   ActorHost ─▶ PortJournal ─ OP_CONTROL id<0 'journal.writeMany' ─▶ Supervisor ─▶ ServiceJournal ─▶ service
 *             ◀─────────────── OP_REPLY_OK / OP_REPLY_ERR id ◀─────────────────────
 *
 * In-process hosts (`InProcessActors`) skip the port and call a `ServiceJournal` directly.
 * Requests use negative ids, so they never meet the host's own asks (positive) on the same port.
 * One write-pipeline batch is one `journal.writeMany` request, and the port batches requests of
 * one event-loop turn into one message, so the seam adds nothing per actor message.
 */
import {
  fromErrorRecord,
  invalidOption,
  isTroupeError,
  toErrorRecord,
  troupeError,
  type ErrorRecord,
  type TroupeError,
} from '../core/errors.ts';
import type { ActorHistory, ActorWrite, EventRecord, Journal, JournalConfig } from '../persistence/journal.ts';
import type { PortWriter } from './port-protocol.ts';

/** Request names on the port (worker → main, as OP_CONTROL records with a negative id). */
export const JOURNAL_READ = 'journal.read';
export const JOURNAL_READ_FROM = 'journal.readFrom';
export const JOURNAL_WRITE_MANY = 'journal.writeMany';

export const journalServiceDefaults = {
  // ms a stopping node waits for the service to settle requests already handed to it before
  // failing them with ERR_STOPPED: far above a healthy replicated commit, short enough that a
  // service that never answers (a lost quorum) does not hold a shutdown.
  stopGraceMs: 2_000,
};

/** Where a `PortJournal` sends its requests: the worker's `PortWriter`. */
export type JournalRequestSink = Pick<PortWriter, 'control'>;

class Waiting {
  constructor(
    readonly resolve: (value: unknown) => void,
    readonly reject: (e: TroupeError) => void,
  ) {}
}

/**
 * A worker thread's journal when the node's main thread serves it: each call is one request
 * over the slot's port, answered by the main thread's `Supervisor` from its journal service.
 * Errors come back with their original code (`ERR_STALE_EPOCH`, `ERR_NOT_PRIMARY` …).
 * `close` is local: it fails what is still waiting with ERR_STOPPED and refuses later calls.
 *
 * @example
 *   const writer = new PortWriter(port);
 *   const journal = PortJournal.over(writer);
 *   // the port's reader hands the answers back: reply: (id, ok, v) => id < 0 && journal.answer(id, ok, v)
 *   const history = await journal.read('counter', 'k1');
 */
export class PortJournal implements Journal {
  private readonly waiting = new Map<number, Waiting>();
  private lastId = 0;
  private closed = false;

  constructor(private readonly sink: JournalRequestSink) {}

  /**
   * A journal over a worker's port writer, which then also fails a request the port could not
   * carry (a value that cannot be cloned) in this journal, and passes other refusals on as before.
   */
  static over(writer: PortWriter): PortJournal {
    const journal = new PortJournal(writer);
    const refused = writer.onRefused;
    writer.onRefused = (askId, error) => (askId < 0 ? journal.answer(askId, false, error) : refused(askId, error));
    return journal;
  }

  write(w: ActorWrite): Promise<void> {
    return this.writeMany([w]).then(([error]) => {
      if (error) throw error;
    });
  }

  /** One request for the whole batch; never rejects (a lost request fails each write with its error). */
  writeMany(writes: readonly ActorWrite[]): Promise<Array<Error | null>> {
    return this.request(JOURNAL_WRITE_MANY, writes).then(
      (results) => (results as Array<ErrorRecord | null>).map((r) => (r === null ? null : fromErrorRecord(r))),
      (e: TroupeError) => writes.map(() => e),
    );
  }

  read(kind: string, key: string): Promise<ActorHistory> {
    return this.request(JOURNAL_READ, [kind, key]) as Promise<ActorHistory>;
  }

  readFrom(kind: string, key: string, afterSeq: number, limit: number): Promise<EventRecord[]> {
    return this.request(JOURNAL_READ_FROM, [kind, key, afterSeq, limit]) as Promise<EventRecord[]>;
  }

  close(): Promise<void> {
    this.closed = true;
    this.failAll(troupeError('ERR_STOPPED', 'journal is closed'));
    return Promise.resolve();
  }

  /** The main thread's answer to request `id` (a negative id read from the port). */
  answer(id: number, ok: boolean, value: unknown): void {
    const w = this.waiting.get(id);
    if (w === undefined) return; // closed meanwhile
    this.waiting.delete(id);
    if (ok) w.resolve(value);
    else w.reject(fromErrorRecord(value as ErrorRecord));
  }

  /** Requests waiting for an answer. */
  get pending(): number {
    return this.waiting.size;
  }

  private request(name: string, arg: unknown): Promise<unknown> {
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', 'journal is closed'));
    const id = --this.lastId;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, new Waiting(resolve, reject));
      this.sink.control(id, name, arg);
    });
  }

  private failAll(error: TroupeError): void {
    for (const [id, w] of this.waiting) {
      this.waiting.delete(id);
      w.reject(error);
    }
  }
}

/**
 * The node's journal service as actor hosts see it: calls pass through to `service`, and `stop`
 * ends those still waiting with ERR_STOPPED (so a stopping node never waits on a service that
 * does not answer) and refuses later ones. `close` is local: the service's owner (the node)
 * closes the service itself.
 */
export class ServiceJournal implements Journal {
  private readonly waiting = new Set<(e: TroupeError) => void>();
  private stopped = false;

  constructor(readonly service: Journal) {}

  /** The service's own durability, when it names one (GET /stats). */
  get durability(): string | undefined {
    return (this.service as { durability?: string }).durability;
  }

  write(w: ActorWrite): Promise<void> {
    return this.call(() => this.service.write(w));
  }

  writeMany(writes: readonly ActorWrite[]): Promise<Array<Error | null>> {
    return this.call(() => writeEach(this.service, writes)).catch((e: unknown) => writes.map(() => asError(e)));
  }

  read(kind: string, key: string): Promise<ActorHistory> {
    return this.call(() => this.service.read(kind, key));
  }

  readFrom(kind: string, key: string, afterSeq: number, limit: number): Promise<EventRecord[]> {
    return this.call(() => this.service.readFrom(kind, key, afterSeq, limit));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Fails every call still waiting with ERR_STOPPED, and every later one. */
  stop(): void {
    this.stopped = true;
    const error = troupeError('ERR_STOPPED', 'node stopped while the journal service had not answered');
    for (const reject of this.waiting) reject(error);
    this.waiting.clear();
  }

  private call<T>(run: () => Promise<T>): Promise<T> {
    if (this.stopped) return Promise.reject(troupeError('ERR_STOPPED', 'node stopped'));
    return new Promise<T>((resolve, reject) => {
      this.waiting.add(reject);
      const done = () => this.waiting.delete(reject);
      let p: Promise<T>;
      try {
        p = run();
      } catch (e) {
        p = Promise.reject(e); // a service that throws instead of rejecting
      }
      // `done()` is false once `stop` has answered the call: the service's late answer is dropped.
      p.then(
        (v) => done() && resolve(v),
        (e: unknown) => done() && reject(e),
      );
    });
  }
}

function writeEach(service: Journal, writes: readonly ActorWrite[]): Promise<Array<Error | null>> {
  if (service.writeMany) return service.writeMany(writes);
  return Promise.all(
    writes.map((w) =>
      service.write(w).then(
        () => null,
        (e: unknown) => asError(e),
      ),
    ),
  );
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/**
 * Answers one worker request (`name`, `arg` as `PortJournal` sent them) from `journal`. Resolves
 * with the value to send back; rejects with the error to send back. Errors that are not
 * TroupeErrors become ERR_JOURNAL_READ / ERR_JOURNAL_WRITE, as a host in the same thread names them.
 */
export function serveJournalRequest(journal: Journal, name: string, arg: unknown): Promise<unknown> {
  switch (name) {
    case JOURNAL_READ: {
      const [kind, key] = arg as [string, string];
      return journal.read(kind, key).catch((e: unknown) => Promise.reject(named(e, 'ERR_JOURNAL_READ')));
    }
    case JOURNAL_READ_FROM: {
      const [kind, key, afterSeq, limit] = arg as [string, string, number, number];
      return journal.readFrom(kind, key, afterSeq, limit).catch((e: unknown) => Promise.reject(named(e, 'ERR_JOURNAL_READ')));
    }
    case JOURNAL_WRITE_MANY: {
      const writes = arg as ActorWrite[];
      return writeEach(journal, writes).then(
        (errors) => errors.map((e) => (e === null ? null : toErrorRecord(named(e, 'ERR_JOURNAL_WRITE')))),
        // Against the contract (writeMany never rejects), but still an answer per write.
        (e: unknown) => writes.map(() => toErrorRecord(named(e, 'ERR_JOURNAL_WRITE'))),
      );
    }
    default:
      return Promise.reject(troupeError('ERR_INVALID_OPTION', `unknown journal request '${name}'`, { request: name }));
  }
}

function named(e: unknown, code: 'ERR_JOURNAL_READ' | 'ERR_JOURNAL_WRITE'): TroupeError {
  return isTroupeError(e) ? e : troupeError(code, e instanceof Error ? e.message : String(e));
}

/**
 * Checks the pair of options `journal` and `journalService` (Supervisor, InProcessActors): type
 * 'node' needs a service and the service needs type 'node' (writes that silently bypassed a
 * replicated service would be lost on failover). Returns the wrapped service, or undefined.
 */
export function journalServiceOf(
  config: JournalConfig,
  service: Journal | undefined,
  stopGraceMs: number | undefined,
): ServiceJournal | undefined {
  if (stopGraceMs !== undefined && !(typeof stopGraceMs === 'number' && stopGraceMs >= 0 && Number.isFinite(stopGraceMs)))
    throw invalidOption('options.journalStopGraceMs', 'must be a non-negative number of ms', stopGraceMs);
  if (config?.type !== 'node') {
    if (service !== undefined)
      throw invalidOption('options.journalService', "is served to the actors only with options.journal { type: 'node' }", service);
    return undefined;
  }
  if (service === undefined)
    throw invalidOption(
      'options.journalService',
      "is required with options.journal { type: 'node' } (the journal the node's main thread serves)",
      service,
    );
  const s = service as Partial<Journal> | null;
  if (
    s === null ||
    typeof s !== 'object' ||
    typeof s.read !== 'function' ||
    typeof s.readFrom !== 'function' ||
    typeof s.write !== 'function'
  )
    throw invalidOption('options.journalService', 'must be a Journal (read, readFrom and write methods)', service);
  return new ServiceJournal(service);
}
