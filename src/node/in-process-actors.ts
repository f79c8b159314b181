import { EventEmitter } from 'node:events';
import { threadId } from 'node:worker_threads';
import { ActorHost, type ActorInspection, type SlotTop } from '../actors/actor-host.ts';
import type { SystemOp } from '../actors/envelope.ts';
import type { MessageRouter } from '../actors/actor-ref.ts';
import type { AnyMessage, AskOptions } from '../actors/define-actor.ts';
import type { ReplyChannel } from '../actors/envelope.ts';
import type { ActorRegistry } from '../actors/registry.ts';
import type { RingMember } from '../cluster/ring.ts';
import type { Clock, TimerHandle } from '../core/clock.ts';
import { fromErrorRecord, toErrorRecord, troupeError, type ErrorRecord, type TroupeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { checkValue } from '../core/value-domain.ts';
import { createJournal } from '../persistence/create-journal.ts';
import type { Journal, JournalConfig } from '../persistence/journal.ts';
import { partitionOf } from '../replication/partition-table.ts';
import { slotOf } from '../supervisor/placement.ts';
import { journalServiceDefaults, journalServiceOf, type ServiceJournal } from '../supervisor/port-journal.ts';
import type { Supervisor } from '../supervisor/supervisor.ts';
import { ownershipOf, workerCount, type LocalActors } from './local-actors.ts';

export interface InProcessActorsOptions {
  /** Actor kinds, already loaded (the node loads its modules once). */
  registry: ActorRegistry;
  /** Hosts (slots) in this thread; default 1. Keys are placed on them as on worker threads. */
  workers?: number;
  /** Each host builds its own journal from it, as each worker thread does; with 'node', every host uses `journalService`. */
  journal: JournalConfig;
  /**
   * With `journal: { type: 'node' }` (and only then, required): the node's journal service (the
   * replication driver), handed to every host. Not closed by `stop`: its owner closes it.
   */
  journalService?: Journal;
  /** How long `stop` waits for the journal service to answer calls in flight, ms on `clock`; default 2,000. */
  journalStopGraceMs?: number;
  /** Drives every deadline, restart backoff and idle sweep: a `SimulatedClock` in tests. */
  clock: Clock;
  log: Logger;
  /** Node id or name, for logs. */
  node: number | string;
  defaultAskTimeoutMs?: number;
  /** Actor messages per turn. */
  throughput?: number;
  /** Per-host limits, as for worker threads. */
  host?: { maxResident?: number; maxHeapBytes?: number; maxMessageBytes?: number; maxMailboxBytes?: number };
  /** Where hosts' messages for keys they do not own go (the cluster router); default: these hosts. */
  upstream?: MessageRouter & { askRaw: Supervisor['askRaw'] };
}

class PendingAsk {
  constructor(
    readonly resolve: (v: unknown) => void,
    readonly reject: (e: TroupeError) => void,
    readonly timer: TimerHandle,
  ) {}
}

/**
 * A node's actors without threads: one `ActorHost` per slot in the calling thread, placed,
 * owned and answered exactly as `Supervisor` does with worker threads (same `slotOf`, same
 * ownership rule from the ring, same stats), but every step happens on the injected clock and
 * in this thread's microtasks. Over a `MemoryNetwork` and one `SimulatedClock`, whole nodes
 * then run deterministically in one test process, failures included.
 *
 * Values crossing a host boundary (inputs, replies, host-to-host messages) are structured
 * clones, as they are between threads: a caller that mutates a reply never reaches into an
 * actor's state. There is no thread to die, so no 'worker-exit' and no slot restarts.
 *
 * @example
 *   const clock = new SimulatedClock();
 *   const actors = new InProcessActors({ registry, journal: { type: 'memory' }, clock, log, node: 1, workers: 2 });
 *   await actors.start();
 *   const reply = actors.ask('counter', 'k1', { command: 'incr' });
 *   await reply; // answered in microtasks: no clock advance needed without a network in between
 */
export class InProcessActors extends EventEmitter implements LocalActors {
  readonly workers: number;
  private readonly o: InProcessActorsOptions;
  private readonly hosts: ActorHost[] = [];
  /** The journal of each host (the same `served` for all with journal type 'node'). */
  private readonly journals: Journal[] = [];
  private readonly served: ServiceJournal | undefined;
  /** Each host's reply channel for asks it relayed to another host (replies cloned on the way back). */
  private readonly backChannels: ReplyChannel[] = [];
  private readonly asks = new Map<number, PendingAsk>();
  private nextAskId = 0;
  private started = false;
  private stopping = false;
  private readonly defaultAskTimeoutMs: number;
  /** Replies to asks this object made, by ask id. */
  private readonly replies: ReplyChannel = { reply: (askId, ok, value) => this.settle(askId, ok, value) };

  constructor(options: InProcessActorsOptions) {
    super();
    this.workers = workerCount(options.workers, 1);
    this.o = options;
    this.defaultAskTimeoutMs = options.defaultAskTimeoutMs ?? 5_000;
    this.served = journalServiceOf(options.journal, options.journalService, options.journalStopGraceMs);
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    for (let slot = 0; slot < this.workers; slot++) {
      const journal = this.served ?? createJournal(this.o.journal);
      this.journals.push(journal);
      this.hosts.push(
        new ActorHost({
          registry: this.o.registry,
          journal,
          clock: this.o.clock,
          log: this.o.log.child({ worker: slot }),
          slot,
          slots: this.workers,
          outbound: (kind, key, command, input, askId, msgId) => this.relay(slot, kind, key, command, input, askId, msgId),
          onEscalated: (kind, key, error) => this.emit('escalated', { kind, key, error }),
          onPush: (nodes, note) => this.emit('push', nodes, note),
          ...(this.o.throughput !== undefined && { throughput: this.o.throughput }),
          ...this.o.host,
          defaultAskTimeoutMs: this.defaultAskTimeoutMs,
        }),
      );
      const host = this.hosts[slot]!;
      this.backChannels.push({ reply: (askId, ok, value) => host.reply(askId, ...this.cloned(ok, value, 'reply')) });
    }
    for (let slot = 0; slot < this.workers; slot++) this.emit('worker-ready', slot);
  }

  slotOf(key: string): number {
    return slotOf(key, this.workers);
  }

  tell(kind: string, key: string, message: AnyMessage): void {
    if (this.stopping || !this.started) return; // as a stopped thread would: the tell is lost
    const input = this.cloneInput(message.input, `input of tell to ${kind}/${key} '${message.command}'`);
    if (input instanceof Error) return this.o.log.warn({ kind, key, code: input.code }, input.message);
    this.hostOf(key).deliver(kind, key, message.command, input.value, 0, message.id, undefined);
  }

  ask(kind: string, key: string, message: AnyMessage, options?: AskOptions): Promise<unknown> {
    return this.askRaw(kind, key, message.command, message.input, message.id, options?.timeoutMs ?? this.defaultAskTimeoutMs);
  }

  /** The gateway's and the router's path: no message object, same semantics as `ask`. */
  askRaw(kind: string, key: string, command: string, input: unknown, msgId: string | undefined, timeoutMs: number): Promise<unknown> {
    if (this.stopping || !this.started) return Promise.reject(troupeError('ERR_STOPPED', 'node is stopping'));
    const copy = this.cloneInput(input, `input of ask to ${kind}/${key} '${command}'`);
    if (copy instanceof Error) return Promise.reject(copy);
    const askId = ++this.nextAskId;
    return new Promise((resolve, reject) => {
      const timer = this.o.clock.setTimeout(() => {
        if (this.asks.delete(askId))
          reject(troupeError('ERR_ASK_TIMEOUT', `ask ${kind}/${key} '${command}' timed out after ${timeoutMs} ms`, { timeoutMs }));
      }, timeoutMs);
      this.asks.set(askId, new PendingAsk(resolve, reject, timer));
      this.hostOf(key).deliver(kind, key, command, copy.value, askId, msgId, this.replies);
    });
  }

  reloadPartitions(partitions: readonly number[], count: number): void {
    const stale = new Set(partitions);
    for (const host of this.hosts) host.reloadWhere((_kind, key) => stale.has(partitionOf(key, count)));
  }

  activate(kind: string, keys: readonly string[]): void {
    for (const key of keys) this.hosts[this.slotOf(key)]!.wake(kind, key);
  }

  placement(members: readonly RingMember[], selfId: number): void {
    const owns = ownershipOf(members, selfId);
    for (const host of this.hosts) host.setOwnership(owns);
  }

  async stats(): Promise<unknown[]> {
    return this.hosts.map((host, slot) => {
      const durability = (this.journals[slot] as { durability?: string }).durability;
      return { ...host.stats(), journal: { type: this.o.journal.type, durability } };
    });
  }

  threadIds(): number[] {
    return this.hosts.map(() => threadId);
  }

  async inspect(kind: string, key: string): Promise<ActorInspection> {
    // Cloned as a port would: the REPL must never hold a reference into an actor's state.
    return structuredClone(await this.hostOf(key).inspect(kind, key));
  }

  async steer(kind: string, key: string, op: SystemOp): Promise<boolean> {
    return this.hostOf(key).system(kind, key, op);
  }

  async top(n: number): Promise<SlotTop[]> {
    return this.hosts.map((h) => h.top(n));
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // Hosts wait for their writes in flight; a service that does not answer within the grace
    // fails them (Supervisor.stop's twin), and is left open for its owner to close.
    const served = this.served;
    const grace = served && this.o.clock.setTimeout(() => served.stop(), this.o.journalStopGraceMs ?? journalServiceDefaults.stopGraceMs);
    await Promise.all(this.hosts.map((h) => h.stop()));
    if (grace) this.o.clock.clearTimeout(grace);
    if (served) served.stop();
    else await Promise.all(this.journals.map((j) => j.close()));
    for (const [askId, p] of this.asks) {
      this.asks.delete(askId);
      this.o.clock.clearTimeout(p.timer);
      p.reject(troupeError('ERR_STOPPED', 'node stopped'));
    }
  }

  // ── Between hosts ───────────────────────────────────────────────────────────────────────

  private hostOf(key: string): ActorHost {
    return this.hosts[slotOf(key, this.workers)]!;
  }

  /** A host's message for a key it does not host or this node does not own (Supervisor.relay's twin). */
  private relay(from: number, kind: string, key: string, command: string, input: unknown, askId: number, msgId: string | undefined): void {
    const upstream = this.o.upstream;
    if (upstream === undefined) {
      const copy = this.cloneInput(input, `input of ${askId === 0 ? 'tell' : 'ask'} to ${kind}/${key} '${command}'`);
      if (copy instanceof Error) {
        if (askId !== 0) this.hosts[from]!.reply(askId, false, toErrorRecord(copy));
        else this.o.log.warn({ worker: from, code: copy.code }, copy.message);
        return;
      }
      this.hostOf(key).deliver(kind, key, command, copy.value, askId, msgId, askId === 0 ? undefined : this.backChannels[from]);
      return;
    }
    const message = msgId === undefined ? { command, input } : { command, input, id: msgId };
    if (askId === 0) {
      try {
        upstream.tell(kind, key, message);
      } catch (e) {
        this.o.log.warn({ worker: from, kind, key, err: e }, 'tell refused');
      }
      return;
    }
    const host = this.hosts[from]!;
    // The host keeps its own deadline; this one only bounds the relay's bookkeeping.
    upstream.askRaw(kind, key, command, input, msgId, this.defaultAskTimeoutMs * 2).then(
      (value) => host.reply(askId, ...this.cloned(true, value, 'reply')),
      (e: unknown) => host.reply(askId, false, toErrorRecord(e)),
    );
  }

  private settle(askId: number, ok: boolean, value: unknown): void {
    const p = this.asks.get(askId);
    if (p === undefined) return; // timed out already
    this.asks.delete(askId);
    this.o.clock.clearTimeout(p.timer);
    const [cloneOk, copy] = this.cloned(ok, value, 'reply');
    if (cloneOk) p.resolve(copy);
    else p.reject(fromErrorRecord(copy as ErrorRecord));
  }

  /** A value as a thread would receive it, or the error a port gives for one it cannot carry. */
  private cloneInput(value: unknown, what: string): { value: unknown } | TroupeError {
    try {
      return { value: structuredClone(value) };
    } catch (e) {
      return notCloneable(value, what, e);
    }
  }

  /** A reply as it would cross a port: an uncloneable one becomes the asker's ERR_NOT_SERIALIZABLE. */
  private cloned(ok: boolean, value: unknown, what: string): [boolean, unknown] {
    try {
      return [ok, structuredClone(value)];
    } catch (e) {
      return [false, toErrorRecord(notCloneable(value, what, e))];
    }
  }
}

function notCloneable(value: unknown, what: string, e: unknown): TroupeError {
  const reason = e instanceof Error ? e.message : String(e);
  return checkValue(value, what) ?? troupeError('ERR_NOT_SERIALIZABLE', `${what} cannot be sent to another thread: ${reason}`);
}
