import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MessageChannel, type MessagePort, type ResourceLimits } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { ActorInspection, SlotTop } from '../actors/actor-host.ts';
import type { AnyMessage, AskOptions } from '../actors/define-actor.ts';
import type { SystemOp } from '../actors/envelope.ts';
import type { MessageRouter } from '../actors/actor-ref.ts';
import type { Clock, TimerHandle } from '../core/clock.ts';
import { fromErrorRecord, invalidOption, toErrorRecord, troupeError, type ErrorRecord, type TroupeError } from '../core/errors.ts';
import { resolveModuleSpecifier, siblingModule, sourceLoaderExecArgv } from '../core/import-module.ts';
import { defaultLogFormat, logTap, type Logger } from '../core/logger.ts';
import { workerCount, type LocalActors } from '../node/local-actors.ts';
import type { Journal, JournalConfig } from '../persistence/journal.ts';
import { slotOf } from './placement.ts';
import { journalServiceDefaults, journalServiceOf, serveJournalRequest, type ServiceJournal } from './port-journal.ts';
import { checkByteCap, messageBytes, messageLimits, messageTooLarge } from '../mailbox/message-size.ts';
import { PortReader, PortWriter } from './port-protocol.ts';
import { decideRestart, validateRestartPolicy, workerRestartPolicy, type RestartPolicy, type RestartWindow } from './restart-window.ts';
import type { WorkerTask } from './worker-host.ts';

export interface SupervisorOptions {
  /** Worker threads (slots); default: available cores. */
  workers?: number;
  /** Module specifiers (file URLs or package names) exporting actor definitions. */
  modules: string[];
  journal: JournalConfig;
  /**
   * With `journal: { type: 'node' }` (and only then, required): the journal this main thread
   * serves to every worker's actors (the replication driver). Not closed by `stop`: its owner
   * closes it.
   */
  journalService?: Journal;
  /** How long `stop` waits for the journal service to answer requests in flight, ms; default 2,000. */
  journalStopGraceMs?: number;
  clock: Clock;
  log: Logger;
  /** Node id or name, for logs. */
  node: number | string;
  restart?: Partial<RestartPolicy>;
  /** Per-thread heap limits, passed to piscina. */
  resourceLimits?: ResourceLimits;
  /** Node flags for the worker threads (e.g. `--enable-source-maps`); default: the process's own. */
  execArgv?: string[];
  defaultAskTimeoutMs?: number;
  /** Actor messages per turn inside workers. */
  throughput?: number;
  /** Per-worker actor host limits. */
  host?: WorkerTask['host'];
  /**
   * Where workers' messages to other actors go. Default: this supervisor (keys placed on this
   * node's slots). A clustered node passes its cluster router, which finds the owning node.
   */
  upstream?: MessageRouter & { askRaw: Supervisor['askRaw'] };
  logLevel?: string;
}

/** A message this node relays for someone else: a worker's ask to another slot. */
type Forward = { slot: number; askId: number } | null;

class PendingAsk {
  constructor(
    /** The slot the ask went to: if that thread dies, the ask fails fast. */
    readonly slot: number,
    readonly resolve: ((v: unknown) => void) | null,
    readonly reject: ((e: TroupeError) => void) | null,
    readonly timer: TimerHandle | null,
    readonly forward: Forward,
  ) {}
}

/** One worker slot: the port to its current thread and that thread's life. */
class Slot {
  /** Bumped when the slot is re-hosted: replies for an older thread's asks are dropped. */
  generation = 0;
  up = false;
  restarts: RestartWindow = [];
  threadId = -1;
  readonly writer: PortWriter;
  /** Resolves when the slot's current thread has loaded the app and listens. */
  ready!: Promise<void>;
  markReady!: () => void;

  constructor(
    readonly index: number,
    public port: MessagePort,
  ) {
    this.writer = new PortWriter(port);
    this.resetReady();
  }

  resetReady(): void {
    this.ready = new Promise<void>((resolve) => (this.markReady = resolve));
  }
}

const workerEntry = siblingModule(import.meta.url, './worker-host');

/**
 * Owns the node's worker threads (through piscina) and carries actor traffic to them: key →
 * slot by jump hash, one long-lived MessagePort per slot with batched envelopes, asks tracked
 * here with deadlines. When a thread dies every ask in flight to it fails with ERR_WORKER_DIED
 * at once, the slot is re-hosted on a fresh thread (one-for-one, with intensity and backoff),
 * and its actors come back on their next message.
 *
 * Events: 'worker-exit' (slot, error), 'worker-ready' (slot), 'escalated' (info).
 */
export class Supervisor extends EventEmitter implements LocalActors {
  readonly workers: number;
  private readonly o: SupervisorOptions;
  private readonly restart: RestartPolicy;
  private pool!: Piscina;
  private readonly slots: Slot[] = [];
  private readonly asks = new Map<number, PendingAsk>();
  private nextAskId = 0;
  private stopping = false;
  /** Until every slot is ready once: a thread that fails now fails the start instead of restarting. */
  private starting = true;
  private readonly defaultAskTimeoutMs: number;
  /** `host.maxMessageBytes`: inputs over it are refused here, before the port copies them into a thread. */
  private readonly maxMessageBytes: number;
  /** When a tell over it was last logged (one line a second at most). */
  private lastTooLargeLog = -Infinity;
  /** The journal service the workers' requests go to (journal type 'node'). */
  private readonly served: ServiceJournal | undefined;
  /** Re-sent to a re-hosted slot, which starts without it. */
  private lastPlacement: { members: readonly { id: number; address: string }[]; selfId: number } | undefined;

  constructor(options: SupervisorOptions) {
    super();
    const workers = workerCount(options.workers, availableParallelism());
    if (!Array.isArray(options.modules) || options.modules.length === 0)
      throw invalidOption('options.modules', 'must list at least one actor module', options.modules);
    this.workers = workers;
    // Resolved once here, so every thread loads the same files whatever its current directory.
    this.o = { ...options, modules: options.modules.map((m) => resolveModuleSpecifier(m)) };
    this.restart = { ...workerRestartPolicy, ...options.restart };
    validateRestartPolicy(this.restart, 'options.restart');
    this.defaultAskTimeoutMs = options.defaultAskTimeoutMs ?? 5_000;
    this.maxMessageBytes = checkByteCap('options.host.maxMessageBytes', options.host?.maxMessageBytes ?? messageLimits.maxMessageBytes);
    if (options.host?.maxMailboxBytes !== undefined) checkByteCap('options.host.maxMailboxBytes', options.host.maxMailboxBytes);
    this.served = journalServiceOf(options.journal, options.journalService, options.journalStopGraceMs);
  }

  async start(): Promise<void> {
    const loader = sourceLoaderExecArgv();
    const execArgv = this.o.execArgv ?? (loader.length > 0 ? withoutTsx(process.execArgv) : undefined);
    this.pool = new Piscina({
      filename: fileURLToPath(workerEntry),
      minThreads: this.workers,
      maxThreads: this.workers,
      // One long-lived host task per thread: a second task would land on a busy slot.
      concurrentTasksPerWorker: 1,
      idleTimeout: Number.MAX_SAFE_INTEGER,
      ...(this.o.resourceLimits && { resourceLimits: this.o.resourceLimits }),
      // Troupe's own TypeScript sources (tests, a clone before `npm run build`) load through tsx.
      ...(execArgv !== undefined && { execArgv: execArgv.concat(loader) }),
    });
    // piscina reports a thread that dies before its task runs (a loader that cannot be found, a
    // worker entry that throws at import) as an 'error' event: unheard, it would kill the process.
    this.pool.on('error', (e: unknown) => this.threadError(e));
    for (let i = 0; i < this.workers; i++) {
      const { port1, port2 } = new MessageChannel();
      const slot = new Slot(i, port1);
      // An ask whose input cannot cross the port (a function in it) fails alone, at once.
      slot.writer.onRefused = (askId, error) => {
        const p = this.asks.get(askId);
        if (p !== undefined && this.asks.delete(askId)) this.settle(p, false, error);
        else this.o.log.warn({ worker: i, code: error.code }, error.message);
      };
      this.slots.push(slot);
      this.host(slot, port2);
    }
    // A slot that cannot start (an app module that fails to load) fails the whole start.
    const failed = new Promise<never>((_, reject) => this.once('start-failed', reject));
    try {
      await Promise.race([Promise.all(this.slots.map((s) => s.ready)), failed]);
      this.starting = false;
    } catch (e) {
      this.stopping = true;
      await this.pool.destroy();
      throw e;
    }
  }

  slotOf(key: string): number {
    return slotOf(key, this.workers);
  }

  tell(kind: string, key: string, message: AnyMessage): void {
    const tooLarge = this.tooLarge(kind, key, message.command, message.input);
    if (tooLarge !== undefined) {
      // A tell has nobody to answer: it is logged, at most once a second as the host logs its dead letters.
      const now = this.o.clock.now();
      if (now - this.lastTooLargeLog >= 1_000) {
        this.lastTooLargeLog = now;
        this.o.log.warn({ kind, key, command: message.command, code: tooLarge.code }, tooLarge.message);
      }
      return;
    }
    this.slots[slotOf(key, this.workers)]!.writer.msg(kind, key, message.command, message.input, 0, message.id);
  }

  ask(kind: string, key: string, message: AnyMessage, options?: AskOptions): Promise<unknown> {
    return this.askRaw(kind, key, message.command, message.input, message.id, options?.timeoutMs ?? this.defaultAskTimeoutMs);
  }

  /** The gateway's path: no message object, same semantics as `ask`. */
  askRaw(kind: string, key: string, command: string, input: unknown, msgId: string | undefined, timeoutMs: number): Promise<unknown> {
    if (this.stopping) return Promise.reject(troupeError('ERR_STOPPED', 'node is stopping'));
    const tooLarge = this.tooLarge(kind, key, command, input);
    if (tooLarge !== undefined) return Promise.reject(tooLarge);
    const slot = slotOf(key, this.workers);
    const askId = ++this.nextAskId;
    return new Promise((resolve, reject) => {
      const timer = this.o.clock.setTimeout(() => {
        if (this.asks.delete(askId))
          reject(troupeError('ERR_ASK_TIMEOUT', `ask ${kind}/${key} '${command}' timed out after ${timeoutMs} ms`, { timeoutMs }));
      }, timeoutMs);
      this.asks.set(askId, new PendingAsk(slot, resolve, reject, timer, null));
      this.slots[slot]!.writer.msg(kind, key, command, input, askId, msgId);
    });
  }

  /**
   * An input over `maxMessageBytes` is refused before the port clones it: a thread's
   * `resourceLimits` do not bound the copy, and a 200 MB Buffer would cost the process 200 MB
   * more per ask. The worker's host checks again (every path into a mailbox does).
   */
  private tooLarge(kind: string, key: string, command: string, input: unknown): TroupeError | undefined {
    const bytes = messageBytes(input, this.maxMessageBytes);
    return bytes > this.maxMessageBytes ? messageTooLarge(`input of ${kind}/${key} '${command}'`, bytes, this.maxMessageBytes) : undefined;
  }

  /** Sends a control request to one worker (stats, restart-actor). */
  control(slot: number, name: string, arg?: unknown, timeoutMs = 5_000): Promise<unknown> {
    const askId = ++this.nextAskId;
    return new Promise((resolve, reject) => {
      const timer = this.o.clock.setTimeout(() => {
        if (this.asks.delete(askId)) reject(troupeError('ERR_ASK_TIMEOUT', `control '${name}' to worker ${slot} timed out`));
      }, timeoutMs);
      this.asks.set(askId, new PendingAsk(slot, resolve, reject, timer, null));
      this.slots[slot]!.writer.control(askId, name, arg);
    });
  }

  /** Resident actors of these partitions may be stale: every worker drops or reloads them. */
  reloadPartitions(partitions: readonly number[], count: number): void {
    for (const s of this.slots) s.writer.control(0, 'reload-partitions', { partitions, count });
  }

  activate(kind: string, keys: readonly string[]): void {
    const bySlot = new Map<number, string[]>();
    for (const key of keys) {
      const slot = this.slotOf(key);
      const list = bySlot.get(slot);
      if (list === undefined) bySlot.set(slot, [key]);
      else list.push(key);
    }
    for (const [slot, list] of bySlot) this.slots[slot]!.writer.control(0, 'activate', { kind, keys: list });
  }

  /** Tells every worker which keys this node owns, so actors on it keep local traffic local. */
  placement(members: readonly { id: number; address: string }[], selfId: number): void {
    for (const s of this.slots) s.writer.control(0, 'placement', { members, selfId });
    this.lastPlacement = { members, selfId };
  }

  stats(): Promise<unknown[]> {
    return Promise.all(this.slots.map((s) => this.control(s.index, 'stats')));
  }

  inspect(kind: string, key: string): Promise<ActorInspection> {
    return this.control(this.slotOf(key), 'inspect', { kind, key }) as Promise<ActorInspection>;
  }

  steer(kind: string, key: string, op: SystemOp): Promise<boolean> {
    return this.control(this.slotOf(key), 'steer-actor', { kind, key, op }) as Promise<boolean>;
  }

  top(n: number): Promise<SlotTop[]> {
    return Promise.all(this.slots.map((s) => this.control(s.index, 'top', { n }) as Promise<SlotTop>));
  }

  /** Thread id hosting each slot (changes when a slot is re-hosted). */
  threadIds(): number[] {
    return this.slots.map((s) => s.threadId);
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // Workers finish their journal writes before they stop; a service that does not answer
    // them within the grace fails them, so that no thread waits on it for ever.
    const served = this.served;
    const grace = served && this.o.clock.setTimeout(() => served.stop(), this.o.journalStopGraceMs ?? journalServiceDefaults.stopGraceMs);
    await Promise.allSettled(this.slots.filter((s) => s.up).map((s) => this.control(s.index, 'stop', undefined, 10_000)));
    if (grace) this.o.clock.clearTimeout(grace);
    served?.stop();
    for (const [id, p] of this.asks) {
      this.asks.delete(id);
      this.settle(p, false, { code: 'ERR_STOPPED', message: 'node stopped' });
    }
    for (const s of this.slots) s.port.close();
    await this.pool.destroy();
  }

  // ── Slots ───────────────────────────────────────────────────────────────────────────────

  private host(slot: Slot, remote: MessagePort): void {
    const task: WorkerTask = {
      port: remote,
      slot: slot.index,
      slots: this.workers,
      modules: this.o.modules,
      journal: this.o.journal,
      node: this.o.node,
      ...(this.o.logLevel !== undefined && { logLevel: this.o.logLevel }),
      // A worker's stdout is a pipe, never a terminal: it takes the main thread's format.
      logFormat: defaultLogFormat(),
      ...(this.o.throughput !== undefined && { throughput: this.o.throughput }),
      ...(this.o.host && { host: this.o.host }),
      defaultAskTimeoutMs: this.defaultAskTimeoutMs,
    };
    const reader = this.readerFor(slot);
    slot.port.on('message', (batch: unknown[]) => reader.decode(batch));
    this.pool.run(task, { transferList: [remote] }).then(
      () => undefined, // the slot stopped on request
      (error: Error) => this.workerExited(slot, error),
    );
  }

  private readerFor(slot: Slot): PortReader {
    return new PortReader({
      msg: (kind, key, command, input, askId, msgId) => this.relay(slot, kind, key, command, input, askId, msgId),
      reply: (askId, ok, value) => {
        const p = this.asks.get(askId);
        if (p === undefined) return; // timed out, or its slot died
        this.asks.delete(askId);
        this.settle(p, ok, value);
      },
      control: (askId, name, arg) => this.journalRequest(slot, askId, name, arg),
      event: (name, data) => {
        if (name === 'ready') {
          slot.up = true;
          slot.threadId = (data as { threadId: number }).threadId;
          slot.markReady();
          this.emit('worker-ready', slot.index);
        } else if (name === 'escalated') {
          this.emit('escalated', data);
        } else if (name === 'push') {
          // A watched actor's durable write: its pushes, for the watching nodes' session hubs.
          const { nodes, note } = data as { nodes: number[]; note: unknown };
          this.emit('push', nodes, note);
        } else if (name === 'log') {
          // A worker's warn-and-above lines, for whoever follows the node's logs (`tail`).
          const lines = (data as { lines?: unknown }).lines;
          if (Array.isArray(lines)) for (const line of lines) if (typeof line === 'string') logTap.write(line);
        } else if (name === 'failed') {
          const { message } = data as ErrorRecord;
          this.o.log.error({ worker: slot.index, error: data }, 'worker failed to start');
          this.emit(
            'start-failed',
            troupeError('ERR_WORKER_START', `worker thread ${slot.index} could not start: ${message}`, { slot: slot.index }),
          );
        }
      },
    });
  }

  /** A worker's message for an actor it does not host. */
  private relay(from: Slot, kind: string, key: string, command: string, input: unknown, askId: number, msgId: string | undefined): void {
    const upstream = this.o.upstream;
    if (upstream === undefined) {
      const to = slotOf(key, this.workers);
      if (askId === 0) {
        this.slots[to]!.writer.msg(kind, key, command, input, 0, msgId);
        return;
      }
      const id = ++this.nextAskId;
      this.asks.set(id, new PendingAsk(to, null, null, null, { slot: from.index, askId }));
      this.slots[to]!.writer.msg(kind, key, command, input, id, msgId);
      return;
    }
    if (askId === 0) return upstream.tell(kind, key, msgId === undefined ? { command, input } : { command, input, id: msgId });
    const generation = from.generation;
    // The worker keeps its own deadline; this one only bounds the relay's bookkeeping.
    upstream.askRaw(kind, key, command, input, msgId, this.defaultAskTimeoutMs * 2).then(
      (value) => from.generation === generation && from.writer.reply(askId, true, value),
      (e: unknown) => from.generation === generation && from.writer.reply(askId, false, toErrorRecord(e)),
    );
  }

  /** A worker's journal request (port-journal.ts), answered on its port unless the thread was replaced meanwhile. */
  private journalRequest(slot: Slot, id: number, name: string, arg: unknown): void {
    const generation = slot.generation;
    const answer = (ok: boolean, value: unknown) => slot.generation === generation && slot.writer.reply(id, ok, value);
    if (this.served === undefined) {
      answer(false, {
        code: 'ERR_INVALID_OPTION',
        message: `worker ${slot.index} sent '${name}', but this node serves no journal (options.journal { type: 'node' } with options.journalService)`,
      } satisfies ErrorRecord);
      return;
    }
    serveJournalRequest(this.served, name, arg).then(
      (value) => answer(true, value),
      (e: unknown) => answer(false, toErrorRecord(e)),
    );
  }

  private settle(p: PendingAsk, ok: boolean, value: unknown): void {
    if (p.forward !== null) {
      this.slots[p.forward.slot]!.writer.reply(p.forward.askId, ok, value);
      return;
    }
    if (p.timer !== null) this.o.clock.clearTimeout(p.timer);
    if (ok) p.resolve!(value);
    else p.reject!(fromErrorRecord(value as ErrorRecord));
  }

  /** A thread that died outside its task (piscina's 'error' event). */
  private threadError(e: unknown): void {
    const message = e instanceof Error ? e.message : String(e);
    if (this.starting) {
      this.emit('start-failed', troupeError('ERR_WORKER_START', `a worker thread could not start: ${message}`));
    } else {
      this.o.log.error({ err: e }, 'worker thread error');
    }
  }

  private workerExited(slot: Slot, error: Error): void {
    slot.up = false;
    slot.port.removeAllListeners('message');
    slot.port.close();
    if (this.stopping) return;
    if (this.starting) {
      this.emit(
        'start-failed',
        troupeError('ERR_WORKER_START', `worker thread ${slot.index} exited while starting: ${error.message}`, { slot: slot.index }),
      );
      return;
    }
    // A thread's uncaught DOMException (a DataCloneError) arrives here as a bare `{}`: say so, not `err:{}`.
    const reason =
      typeof error?.message === 'string' ? error.message : 'an uncaught error Node could not pass between threads (a DOMException?)';
    this.o.log.error(
      { worker: slot.index, err: error instanceof Error ? error : { message: reason } },
      'worker thread exited; failing its asks and re-hosting the slot',
    );
    const died: ErrorRecord = {
      code: 'ERR_WORKER_DIED',
      message: `worker thread of slot ${slot.index} exited: ${reason}`,
      details: { slot: slot.index },
    };
    for (const [id, p] of this.asks) {
      if (p.slot === slot.index) {
        this.asks.delete(id);
        this.settle(p, false, died);
      } else if (p.forward?.slot === slot.index) {
        this.asks.delete(id); // its asker is gone; ids restart in the new thread
      }
    }
    this.emit('worker-exit', slot.index, error);
    // Messages sent from now on queue in the new channel until the new thread takes it.
    const { port1, port2 } = new MessageChannel();
    slot.generation++;
    slot.port = port1;
    slot.writer.retarget(port1);
    slot.resetReady();
    if (this.lastPlacement) slot.writer.control(0, 'placement', this.lastPlacement);
    const decision = decideRestart(slot.restarts, this.o.clock.now(), this.restart);
    slot.restarts = decision.window;
    if (decision.action === 'escalate') {
      this.o.log.fatal({ worker: slot.index }, 'worker restart intensity exceeded');
      this.emit('escalated', { slot: slot.index, error: died });
    }
    const delay = decision.action === 'restart' ? decision.delayMs : this.restart.backoffMaxMs;
    this.o.clock.setTimeout(() => {
      if (!this.stopping) this.host(slot, port2);
    }, delay);
  }
}

/** The parent's exec flags without its tsx imports (the supervisor adds its own, resolved from troupe). */
function withoutTsx(execArgv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!;
    if (a === '--import' && execArgv[i + 1]?.includes('tsx')) i++;
    else if (!(a.startsWith('--import=') && a.includes('tsx'))) out.push(a);
  }
  return out;
}
