import type { Clock, TimerHandle } from '../core/clock.ts';
import { fromErrorRecord, invalidOption, isTroupeError, toErrorRecord, troupeError, type ErrorRecord, type TroupeError } from '../core/errors.ts';
import { messageFingerprint } from '../core/fingerprint.ts';
import type { Logger } from '../core/logger.ts';
import { findOffence, notSerializable } from '../core/value-domain.ts';
import { Fifo } from '../mailbox/fifo.ts';
import { Mailbox, type MailboxBytes } from '../mailbox/mailbox.ts';
import { checkByteCap, messageBytes, messageLimits, messageTooLarge, valueTooLarge } from '../mailbox/message-size.ts';
import type { ActorHistory, ActorWrite, Journal, RecordedReply } from '../persistence/journal.ts';
import { slotOf } from '../supervisor/placement.ts';
import { decideRestart } from '../supervisor/restart-window.ts';
import { ActorCell, type HeldReply } from './actor-cell.ts';
import type { AnyMessage, AskOptions, HandlerContext } from './define-actor.ts';
import type { Envelope, ReplyChannel, SystemOp } from './envelope.ts';
import type { ActorKind, ActorRegistry } from './registry.ts';
import type { MessageRouter } from './actor-ref.ts';
import { needsFullLog, replay, type Replayed } from './replay.ts';
import { WritePipeline } from './write-pipeline.ts';
import { SYSTEM_VERSION, type PushRecord } from './system-records.ts';
import {
  earliestDue,
  foldReminders,
  isTombstone,
  reminderDefaults,
  reminderLimits,
  reminderMessageId,
  TTL_REMINDER,
  ttlSlackMs,
  type ReminderMessage,
  type RemindersRecord,
} from './system-records.ts';
import { isReserved, parseWatch, pushItems, reservedCommand, Watchers, type PushNote, type WatchRequest } from './watchers.ts';

export interface ActorHostOptions {
  registry: ActorRegistry;
  journal: Journal;
  clock: Clock;
  log: Logger;
  /** This host's worker slot and the node's slot count: keys of other slots go `outbound`. */
  slot: number;
  slots: number;
  /** Sends a message for a key this host does not own (to the main thread). */
  outbound?: (kind: string, key: string, command: string, input: unknown, askId: number, msgId: string | undefined) => void;
  /** An actor exceeded its restart intensity. */
  onEscalated?: (kind: string, key: string, error: ErrorRecord) => void;
  /** Messages one actor handles per turn before others get the thread. */
  throughput?: number;
  /** Messages handled per drain before yielding to the event loop (port, timers, I/O). */
  drainBudget?: number;
  /** Recorded replies kept per resident actor for retry dedupe. */
  recentReplies?: number;
  defaultAskTimeoutMs?: number;
  /** Most resident actors in this host; past it the least recently used idle ones passivate. */
  maxResident?: number;
  /** Heap used (bytes) above which the idle sweep passivates least recently used actors. */
  maxHeapBytes?: number;
  /** Reads the heap in use, bytes (injected in tests). */
  heapUsed?: () => number;
  /**
   * Largest message, bytes as src/mailbox/message-size.ts counts them: an ask's or tell's input
   * (refused at delivery with ERR_BODY_TOO_LARGE), and a handler's reply, event, push or
   * `ctx.tell`/`ctx.ask` input (that message fails with ERR_NOT_SERIALIZABLE, its events undone).
   */
  maxMessageBytes?: number;
  /** Most bytes of user messages queued in one actor's mailbox; the next is refused with ERR_MAILBOX_FULL. */
  maxMailboxBytes?: number;
  /** A durable write of an actor that nodes watch: its pushes go to those nodes' session hubs (src/sessions). */
  onPush?: (nodes: number[], note: PushNote) => void;
}

/** The host limits a node passes to every slot's host (worker threads and in-process alike). */
export type HostLimits = Pick<ActorHostOptions, 'maxResident' | 'maxHeapBytes' | 'maxMessageBytes' | 'maxMailboxBytes'>;

export const actorHostDefaults = {
  throughput: 100, // messages per actor turn: one journal write covers up to this many
  drainBudget: 20_000, // messages per drain (~5-10 ms) before letting the port deliver more
  recentReplies: 128, // message ids remembered per actor
  defaultAskTimeoutMs: 5_000, // ms
  maxResident: 1_000_000, // actors per worker; at ≤ 1 KiB each, ~1 GiB at the very most
  maxHeapBytes: Number.POSITIVE_INFINITY, // bytes; set it below the thread's resourceLimits
  heapUsed: () => process.memoryUsage().heapUsed,
  maxMessageBytes: messageLimits.maxMessageBytes, // bytes: see message-size.ts
  maxMailboxBytes: messageLimits.maxMailboxBytes, // bytes per actor mailbox
};

export interface HostStats {
  slot: number;
  resident: number;
  byKind: Record<string, number>;
  queued: number;
  pendingAsks: number;
  processed: number;
  restarts: number;
  escalations: number;
  deadLetters: number;
  passivated: number;
  /** Passivated early by the resident cap or the heap threshold. */
  evicted: number;
}

/** One actor as the admin REPL's `inspect` shows it (read-only: a passive actor is not activated). */
export interface ActorInspection {
  kind: string;
  key: string;
  slot: number;
  resident: boolean;
  /** The cell's status when resident ('activating', 'active', 'busy', 'restarting', 'failed'). */
  status?: string;
  /** The state in memory when resident, else as the journal rebuilds it; a preview string past `inspectLimits.stateChars`. */
  state: unknown;
  /** Approximate state size: characters of its JSON. */
  stateBytes: number;
  seq: number;
  mailbox: number;
  /** Messages this activation processed; in the last recency windows. */
  processed: number;
  recent: number;
  /** The latest stored events (from the journal), oldest first. */
  events: Array<{ seq: number; v: number; event: unknown }>;
}

/** One resident actor in a top-N list. */
export interface TopActor {
  kind: string;
  key: string;
  /** Messages processed in the last one to two recency windows (see `topLimits.windowMs`). */
  recent: number;
  processed: number;
  mailbox: number;
  status: string;
}

/** The busiest and largest actors of one slot, from at most `scanned` of its most recently active. */
export interface SlotTop {
  slot: number;
  resident: number;
  scanned: number;
  /** Messages this slot processed, and asks among them, since it started (rates come from two samples). */
  processed: number;
  asks: number;
  busiest: TopActor[];
  largest: TopActor[];
}

export const topLimits = {
  windowMs: 5_000, // recency window: "busiest" counts messages of the current and previous window
  scan: 20_000, // cells read per slot and call, newest first: busy actors are always near the newest end
  maxN: 50, // rows per list
};

export const inspectLimits = {
  stateChars: 16_384, // a larger state is shown as a preview of this many characters of its JSON
  events: 10, // latest events shown
};

class PendingAsk {
  constructor(
    readonly resolve: (v: unknown) => void,
    readonly reject: (e: TroupeError) => void,
    readonly timer: TimerHandle,
  ) {}
}

/**
 * Hosts the actors of one worker slot: mailboxes, turns, journaling, replies, restarts and
 * passivation. Runs in a worker thread (see worker-host.ts), or directly in a test or bench.
 *
 * A message's life: `deliver` → mailbox → run queue → `runCell` (up to `throughput` messages)
 * → handler emits events → one journal write per turn → replies released when it is durable.
 */
export class ActorHost implements MessageRouter, ReplyChannel {
  private readonly cells = new Map<string, Map<string, ActorCell>>();
  private readonly runQueue = new Fifo<ActorCell>(64);
  private readonly asks = new Map<number, PendingAsk>();
  private nextAskId = 0;
  private drainScheduled = false;
  private resident = 0;
  private stopped = false;
  private sweepTimer: TimerHandle | null = null;
  /** Single-node journals (`Journal.dueActors`): the timer of the next look for actors with a reminder due soon. */
  private dueScanTimer: TimerHandle | null = null;
  /** Least recently used resident cell; `lruNewest` is the most recent. */
  private lruOldest: ActorCell | null = null;
  private lruNewest: ActorCell | null = null;
  private readonly o: Required<Omit<ActorHostOptions, 'outbound' | 'onEscalated' | 'onPush'>> & Pick<ActorHostOptions, 'outbound' | 'onEscalated' | 'onPush'>;
  /** Nodes whose WebSocket clients watch actors of this host, by lease. */
  private readonly watchers = new Watchers();
  private readonly counters = { processed: 0, activated: 0, restarts: 0, escalations: 0, deadLetters: 0, passivated: 0, evicted: 0 };
  /** Asks processed (outside `counters`: stats() keeps its shape). */
  private asksProcessed = 0;
  /** Messages in all mailboxes, kept as they come and go: stats() must not walk a million cells to sum them. */
  private queued = 0;
  private lastDeadLetterLog = -Infinity;
  private ownsKey: (key: string) => boolean = () => true;
  /** The clock read once per drain: turns within a drain share it. */
  private now = 0;
  private lastKind: string | undefined;
  private lastCells: Map<string, ActorCell> | undefined;
  /** Turns' writes on their way to the journal, and the replies held until they are durable. */
  private readonly writes: WritePipeline;
  private readonly drainBound = () => this.drain();
  /** Every mailbox's byte cap: one shared object, so a cell pays a reference for it (none: no cap, nothing counted). */
  private readonly mailboxBytes: MailboxBytes<Envelope> | undefined;

  constructor(options: ActorHostOptions) {
    this.o = { ...actorHostDefaults, ...options };
    checkByteCap('options.maxMessageBytes', this.o.maxMessageBytes);
    checkByteCap('options.maxMailboxBytes', this.o.maxMailboxBytes);
    this.mailboxBytes = this.o.maxMailboxBytes === Number.POSITIVE_INFINITY ? undefined : { maxBytes: this.o.maxMailboxBytes, sizeOf: envelopeBytes };
    this.writes = new WritePipeline(this.o.journal, {
      released: (cell, held) => this.release(cell, held),
      failed: (cell, held, e) => this.failHeld(cell, held, e),
      writeFailed: (cell, e) => this.writeFailed(cell, e),
      durable: (cell, write) => this.durable(cell, write),
    });
    this.armSweep();
    this.armDueScan();
  }

  // ── Entry points ────────────────────────────────────────────────────────────────────────

  /** Delivers a message addressed to this slot. Unknown kinds and full mailboxes answer with errors. */
  deliver(
    kind: string,
    key: string,
    command: string,
    input: unknown,
    askId: number,
    msgId: string | undefined,
    channel: ReplyChannel | undefined,
  ): void {
    const bytes = messageBytes(input, this.o.maxMessageBytes);
    const env: Envelope = { command, input, msgId, askId, channel, bytes };
    if (this.stopped) return this.refuse(kind, key, env, troupeError('ERR_STOPPED', 'actor host is stopping'));
    // Before the actor is looked up or activated: a refused message costs nothing more.
    if (bytes > this.o.maxMessageBytes)
      return this.refuse(kind, key, env, messageTooLarge(`input of ${kind}/${key} '${command}'`, bytes, this.o.maxMessageBytes));
    const cell = this.cellFor(kind, key, env);
    if (!cell) return;
    const overflow = cell.mailbox.enqueue(env);
    if (overflow === undefined) this.queued++; // else one was refused: the count stands
    if (overflow) this.refuse(kind, key, overflow.refused, overflow.error);
    if (cell.status === 'active') this.schedule(cell);
  }

  /**
   * Resident actors `stale` selects may hold state another node has since changed (their
   * partition's primary moved and came back, or moved away): idle ones are dropped, busy ones
   * reload once their writes in flight settle. Their next message reads them again, through the
   * journal, which waits until this node serves the partition or refuses (ERR_NOT_PRIMARY).
   */
  reloadWhere(stale: (kind: string, key: string) => boolean): number {
    let n = 0;
    for (const [kind, cells] of this.cells) {
      for (const cell of [...cells.values()]) {
        if (cell.status !== 'active' || !stale(kind, cell.key)) continue;
        n++;
        if (this.isIdle(cell)) this.passivate(cell);
        else this.reload(cell, 0);
      }
    }
    return n;
  }

  /**
   * Activates actor (kind, key) now, without a message, unless it is resident already: kinds
   * defined with `remember: true` come back when this node becomes their partition's primary.
   * False for an unknown kind or an actor stopped after repeated failures.
   */
  wake(kind: string, key: string): boolean {
    // Resident already, or stopped after repeated failures (it returns on a message after its period).
    const cell = this.cells.get(kind)?.get(key);
    if (cell !== undefined) return cell.status !== 'failed';
    const none: Envelope = { command: '', input: undefined, msgId: undefined, askId: 0, channel: undefined };
    return this.cellFor(kind, key, none) !== undefined;
  }

  /** Queues a system message (ahead of user messages) for a resident actor. */
  system(kind: string, key: string, op: SystemOp): boolean {
    const cell = this.cells.get(kind)?.get(key);
    if (!cell) return false;
    cell.mailbox.enqueueSystem({ command: '', input: undefined, msgId: undefined, askId: 0, channel: undefined, system: op });
    this.queued++;
    if (cell.status === 'active') this.schedule(cell);
    return true;
  }

  tell(kind: string, key: string, message: AnyMessage): void {
    this.route(kind, key, message.command, message.input, 0, message.id);
  }

  ask(kind: string, key: string, message: AnyMessage, options?: AskOptions): Promise<unknown> {
    const timeoutMs = options?.timeoutMs ?? this.o.defaultAskTimeoutMs;
    return new Promise((resolve, reject) => {
      const askId = ++this.nextAskId;
      const timer = this.o.clock.setTimeout(() => {
        if (this.asks.delete(askId))
          reject(troupeError('ERR_ASK_TIMEOUT', `ask ${kind}/${key} '${message.command}' timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.asks.set(askId, new PendingAsk(resolve, reject, timer));
      this.route(kind, key, message.command, message.input, askId, message.id);
    });
  }

  /** ReplyChannel for asks this host started (local targets, or replies relayed from main). */
  reply(askId: number, ok: boolean, value: unknown): void {
    const pending = this.asks.get(askId);
    if (!pending) return; // timed out already
    this.asks.delete(askId);
    this.o.clock.clearTimeout(pending.timer);
    if (ok) pending.resolve(value);
    else pending.reject(fromErrorRecord(value as ErrorRecord));
  }

  /**
   * One actor for the admin REPL, read-only: the resident cell as it is, or — when not resident —
   * its state as the journal rebuilds it, without activating it. The latest events come from the
   * journal either way (`readFrom`), so they are the durable ones.
   */
  async inspect(kind: string, key: string, lastEvents = inspectLimits.events): Promise<ActorInspection> {
    const actorKind = this.o.registry.get(kind);
    if (!actorKind) throw troupeError('ERR_UNKNOWN_KIND', `unknown actor kind '${kind}'`, { kind });
    const cell = this.cells.get(kind)?.get(key);
    let state: unknown;
    let seq: number;
    if (cell !== undefined) {
      state = cell.state;
      seq = cell.seq;
    } else {
      const r = replay(actorKind, key, await this.loadHistory(actorKind, key));
      state = r.state;
      seq = r.seq;
    }
    const n = Math.max(0, Math.min(lastEvents, 100));
    const events = n === 0 ? [] : await this.o.journal.readFrom(kind, key, Math.max(0, seq - n), n);
    const json = previewJson(state);
    return {
      kind,
      key,
      slot: this.o.slot,
      resident: cell !== undefined,
      ...(cell !== undefined && { status: cell.status }),
      state: json.length > inspectLimits.stateChars ? `${json.slice(0, inspectLimits.stateChars)}…` : state,
      stateBytes: json.length,
      seq,
      mailbox: cell?.mailbox.size ?? 0,
      processed: cell?.processed ?? 0,
      recent: cell === undefined ? 0 : recentOf(cell, windowOf(this.o.clock.now())),
      events: events.map((e) => ({ seq: e.seq, v: e.v, event: e.event })),
    };
  }

  /**
   * The busiest (messages in the recency windows) and largest (mailbox depth) resident actors.
   * Bounded work whatever the resident count: it reads at most `topLimits.scan` cells from the
   * most recently used end of the LRU list — an actor that processed messages lately was
   * touched lately — so with a million idle actors the answer still costs a few milliseconds.
   */
  top(n: number): SlotTop {
    const limit = Math.max(1, Math.min(Math.floor(n), topLimits.maxN));
    const window = windowOf(this.o.clock.now());
    const busiest: TopActor[] = [];
    const largest: TopActor[] = [];
    let scanned = 0;
    for (let cell = this.lruNewest; cell !== null && scanned < topLimits.scan; cell = cell.lruPrev, scanned++) {
      const recent = recentOf(cell, window);
      const mailbox = cell.mailbox.size;
      if (recent > 0) keepTop(busiest, limit, recent, (a) => a.recent, () => topActor(cell!, recent, mailbox));
      if (mailbox > 0) keepTop(largest, limit, mailbox, (a) => a.mailbox, () => topActor(cell!, recent, mailbox));
    }
    return { slot: this.o.slot, resident: this.resident, scanned, processed: this.counters.processed, asks: this.asksProcessed, busiest, largest };
  }

  stats(): HostStats {
    const byKind: Record<string, number> = {};
    for (const [kind, cells] of this.cells) byKind[kind] = cells.size;
    return { slot: this.o.slot, resident: this.resident, byKind, queued: this.queued, pendingAsks: this.asks.size, ...this.counters };
  }

  /** Stops taking messages, waits for in-flight journal writes, refuses what is queued. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.sweepTimer) this.o.clock.clearTimeout(this.sweepTimer);
    if (this.dueScanTimer) this.o.clock.clearTimeout(this.dueScanTimer);
    for (const cells of this.cells.values()) {
      for (const cell of cells.values()) {
        this.endTurn(cell);
        for (const env of this.drainMailbox(cell))
          this.refuse(cell.kind.kind, cell.key, env, troupeError('ERR_STOPPED', 'actor host stopped'));
        this.cancelTimers(cell);
      }
    }
    await this.writes.drain();
    for (const [askId, p] of this.asks) {
      this.o.clock.clearTimeout(p.timer);
      p.reject(troupeError('ERR_STOPPED', 'actor host stopped'));
      this.asks.delete(askId);
    }
  }

  // ── Routing ─────────────────────────────────────────────────────────────────────────────

  /**
   * In a cluster, which keys this node owns (from the ring); keys it does not own go outbound
   * even when their slot is this one. Default: a single node owns every key.
   */
  setOwnership(ownsKey: (key: string) => boolean): void {
    this.ownsKey = ownsKey;
  }

  private route(kind: string, key: string, command: string, input: unknown, askId: number, msgId: string | undefined): void {
    const local = (this.o.slots === 1 || slotOf(key, this.o.slots) === this.o.slot) && this.ownsKey(key);
    if (local || !this.o.outbound) {
      this.deliver(kind, key, command, input, askId, msgId, askId === 0 ? undefined : this);
    } else {
      this.o.outbound(kind, key, command, input, askId, msgId);
    }
  }

  private cellFor(kind: string, key: string, env: Envelope): ActorCell | undefined {
    // Port batches come in runs of one kind: skip the kind lookup for a run.
    let cells = kind === this.lastKind ? this.lastCells : this.cells.get(kind);
    if (cells !== undefined) {
      this.lastKind = kind;
      this.lastCells = cells;
    }
    let cell = cells?.get(key);
    if (cell) {
      if (cell.status !== 'failed') return cell;
      if (this.o.clock.now() < cell.failedUntil) {
        this.refuse(kind, key, env, troupeError('ERR_ACTOR_ESCALATED', `actor ${kind}/${key} is stopped after repeated failures`));
        return undefined;
      }
      // The escalation period has passed: a fresh activation with a fresh restart window.
      cell.restartWindow = null;
      this.activate(cell);
      return cell;
    }
    const actorKind = this.o.registry.get(kind);
    if (!actorKind) {
      this.refuse(kind, key, env, troupeError('ERR_UNKNOWN_KIND', `unknown actor kind '${kind}'`, { kind }));
      return undefined;
    }
    if (!cells) this.cells.set(kind, (cells = new Map()));
    cell = new ActorCell(actorKind, key, new Mailbox<Envelope>(actorKind.mailbox, this.mailboxBytes));
    cells.set(key, cell);
    this.resident++;
    this.counters.activated++;
    this.touch(cell);
    if (this.resident > this.o.maxResident) this.evict(this.resident - this.o.maxResident);
    this.activate(cell);
    return cell;
  }

  // ── Activation ──────────────────────────────────────────────────────────────────────────

  private activate(cell: ActorCell): void {
    cell.status = 'activating';
    const generation = ++cell.generation;
    this.loadHistory(cell.kind, cell.key).then(
      (history) => {
        if (cell.generation !== generation) return;
        let r: Replayed;
        try {
          r = replay(cell.kind, cell.key, history);
        } catch (e) {
          return this.activationFailed(cell, e);
        }
        cell.state = r.state;
        cell.seq = r.seq;
        cell.durableSeq = r.seq;
        cell.epoch = history.epoch;
        cell.eventsSinceSnapshot = r.eventsSinceSnapshot;
        // No recorded replies in the journal: keep what memory has (a restart after a handler threw).
        if (r.replies !== null) cell.replies = r.replies;
        cell.reminders = r.reminders;
        cell.firing = null;
        this.activatedTtl(cell);
        cell.status = 'active';
        cell.lastActive = this.o.clock.now();
        this.armReminders(cell);
        if (!cell.mailbox.isEmpty) this.schedule(cell);
      },
      (e: unknown) => {
        if (cell.generation === generation) this.activationFailed(cell, e);
      },
    );
  }

  /** The actor's history; with a snapshot of an older version, the events under it as well. */
  private async loadHistory(kind: ActorKind, key: string): Promise<ActorHistory> {
    const history = await this.o.journal.read(kind.kind, key);
    const upTo = needsFullLog(kind, history);
    if (upTo === undefined) return history;
    const older = await this.o.journal.readFrom(kind.kind, key, 0, upTo);
    return { ...history, events: [...older, ...history.events.filter((e) => e.seq > upTo)] };
  }

  private activationFailed(cell: ActorCell, e: unknown): void {
    const error = isTroupeError(e)
      ? e
      : troupeError('ERR_JOURNAL_READ', `cannot activate ${cell.kind.kind}/${cell.key}: ${errorMessage(e)}`);
    // Another node serves the actor (or none can yet): routine during failover, and the asker
    // gets the code to resend on; an error log per message would flood a deposed node.
    if (error.code === 'ERR_NOT_PRIMARY' || error.code === 'ERR_PARTITION_UNAVAILABLE' || error.code === 'ERR_STALE_EPOCH')
      this.o.log.debug({ kind: cell.kind.kind, key: cell.key, code: error.code }, 'activation refused by the journal');
    else this.o.log.error({ kind: cell.kind.kind, key: cell.key, err: error }, 'activation failed');
    for (const env of this.drainMailbox(cell)) this.refuse(cell.kind.kind, cell.key, env, error);
    this.remove(cell);
  }

  // ── Turns ───────────────────────────────────────────────────────────────────────────────

  private schedule(cell: ActorCell): void {
    if (cell.scheduled) return;
    cell.scheduled = true;
    this.runQueue.push(cell);
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      // A microtask, right after the batch that woke us: messages handled this soon die young
      // (cheap scavenges); letting several batches pile up first costs more in GC than it saves.
      queueMicrotask(this.drainBound);
    }
  }

  private drain(): void {
    this.now = this.o.clock.now();
    let budget = this.o.drainBudget;
    for (let cell = this.runQueue.shift(); cell !== undefined; cell = this.runQueue.shift()) {
      cell.scheduled = false;
      budget -= this.runCell(cell);
      if (budget <= 0) break;
    }
    if (this.runQueue.length > 0) this.o.clock.setImmediate(this.drainBound);
    else this.drainScheduled = false;
  }

  private runCell(cell: ActorCell): number {
    let n = 0;
    const limit = this.o.throughput;
    while (n < limit && cell.status === 'active') {
      const env = cell.mailbox.dequeue();
      if (env === undefined) break;
      n++;
      if (env.system !== undefined) this.runSystem(cell, env.system);
      else if (env.reminder !== undefined) this.runReminder(cell, env, env.reminder);
      else {
        if (env.askId !== 0) this.asksProcessed++;
        if (cell.kind.ttlMs !== undefined) cell.lastActivityWall = this.o.clock.wallNow();
        this.process(cell, env);
      }
    }
    this.counters.processed += n;
    this.queued -= n;
    if (n > 0) countRecent(cell, n, windowOf(this.now));
    if (cell.status === 'active') {
      if (n > 0 && cell.kind.ttlMs !== undefined) this.touchTtl(cell);
      this.endTurn(cell);
      if (!cell.mailbox.isEmpty) this.schedule(cell);
    }
    cell.lastActive = this.now;
    // A turn may have removed the cell (a system passivate): touching it would put a phantom
    // back in the LRU list, which every later eviction would "evict" without freeing anything.
    if (this.cells.get(cell.kind.kind)?.get(cell.key) === cell) this.touch(cell);
    return n;
  }

  private process(cell: ActorCell, env: Envelope): void {
    const spec = cell.kind.commands.get(env.command);
    if (spec === undefined) {
      if (isReserved(env.command)) return this.reserved(cell, env);
      return this.answer(
        cell,
        env,
        false,
        errorRecord('ERR_UNKNOWN_COMMAND', `actor kind '${cell.kind.kind}' has no command '${env.command}'`),
      );
    }
    // Computed once per message with an id: compared with a recorded reply, or recorded with it.
    const fingerprint = env.msgId === undefined ? undefined : messageFingerprint(env.command, env.input);
    if (env.msgId !== undefined && cell.replies !== null) {
      const recorded = cell.replies.get(env.msgId);
      if (recorded) {
        if (recorded.fingerprint !== undefined && recorded.fingerprint !== fingerprint) {
          return this.answer(cell, env, false, toErrorRecord(idempotencyMismatch(cell, env)));
        }
        return this.answer(cell, env, recorded.ok, recorded.ok ? recorded.value : recorded.error);
      }
    }
    let input = env.input;
    if (spec.input) {
      try {
        input = spec.input(env.input);
      } catch (e) {
        const error = isTroupeError(e) ? e : troupeError('ERR_INVALID_INPUT', errorMessage(e));
        return this.answer(cell, env, false, toErrorRecord(error));
      }
    }
    const stateBefore = cell.state;
    const seqBefore = cell.seq;
    const mark = cell.pendingEvents?.length ?? 0;
    const ctx = new Context(this, cell, env.command, spec.readOnly === true);
    let result: unknown;
    try {
      result = spec.handle(ctx, input);
    } catch (e) {
      ctx.closed = true;
      return this.handlerFailed(cell, env, e, stateBefore, seqBefore, mark);
    }
    if (isThenable(result)) {
      // No other message of this actor runs until the handler settles.
      cell.status = 'busy';
      const generation = cell.generation;
      result.then(
        (value) => {
          ctx.closed = true;
          if (cell.generation !== generation) return this.lostToRestart(cell, env);
          cell.status = 'active';
          this.completed(cell, env, spec.readOnly === true, value, fingerprint, stateBefore, seqBefore, mark);
          this.endTurn(cell);
          if (!cell.mailbox.isEmpty) this.schedule(cell);
        },
        (e: unknown) => {
          ctx.closed = true;
          if (cell.generation !== generation) return this.lostToRestart(cell, env);
          cell.status = 'active';
          this.handlerFailed(cell, env, e, stateBefore, seqBefore, mark);
          if (cell.status === 'active') {
            this.endTurn(cell);
            if (!cell.mailbox.isEmpty) this.schedule(cell);
          }
        },
      );
      return;
    }
    ctx.closed = true;
    this.completed(cell, env, spec.readOnly === true, result, fingerprint, stateBefore, seqBefore, mark);
  }

  /** An async handler outlived its activation (a failed journal write restarted the actor). */
  private lostToRestart(cell: ActorCell, env: Envelope): void {
    const message = `${cell.kind.kind}/${cell.key} restarted while '${env.command}' was running; its effects were discarded`;
    this.send(cell, env, false, errorRecord('ERR_JOURNAL_WRITE', message));
  }

  /**
   * Called by Context#emit: apply now, journal at the end of the turn. An event the journal
   * could not carry is refused before it is applied, and so is one whose resulting state could
   * not become a snapshot: the throw fails the message, whose events are then undone.
   */
  emitEvent(cell: ActorCell, command: string, event: unknown): void {
    const badEvent = findOffence(event);
    if (badEvent !== null) throw notSerializable(`event of ${cell.kind.kind}/${cell.key} '${command}'`, badEvent);
    this.checkSize(event, `event of ${cell.kind.kind}/${cell.key} '${command}'`);
    const state = cell.kind.def.apply(cell.state, event);
    // States are immutable by contract: the same reference is the same, already checked, state.
    if (state !== cell.state) {
      const badState = findOffence(state);
      if (badState !== null) throw notSerializable(`state of ${cell.kind.kind}/${cell.key} after '${command}'`, badState);
    }
    cell.state = state;
    const rec = { seq: ++cell.seq, v: cell.kind.version, event };
    if (cell.pendingEvents === null) cell.pendingEvents = [rec];
    else cell.pendingEvents.push(rec);
  }

  /** Throws ERR_NOT_SERIALIZABLE for a value a handler produced that is over `maxMessageBytes` (the message then fails alone). */
  checkSize(value: unknown, what: string): void {
    const bytes = messageBytes(value, this.o.maxMessageBytes);
    if (bytes > this.o.maxMessageBytes) throw valueTooLarge(what, bytes, this.o.maxMessageBytes);
  }

  /** A write is durable: watchers may see up to it, and watching nodes get its pushes. */
  private durable(cell: ActorCell, write: ActorWrite): void {
    const events = write.events;
    if (events.length === 0) return;
    const to = events[events.length - 1]!.seq;
    if (to > cell.durableSeq) cell.durableSeq = to;
    if (this.watchers.size === 0 || this.o.onPush === undefined) return;
    const nodes = this.watchers.nodes(cell.kind.kind, cell.key, this.o.clock.now());
    if (nodes === undefined) return;
    this.o.onPush(nodes, { kind: cell.kind.kind, key: cell.key, from: events[0]!.seq - 1, to, items: pushItems(events) });
  }

  /**
   * The runtime's own commands ('$…', never a user command's name; the gateway routes only
   * declared commands, so they come from session hubs over ports and the cluster transport):
   * `$watch` registers or renews a node's watch and answers the durable pushes after `from`;
   * `$watchers` lists who watches (GET /cluster/connections?kind=&key=).
   */
  private reserved(cell: ActorCell, env: Envelope): void {
    const { kind } = cell.kind;
    const now = this.o.clock.now();
    if (env.command === '$watchers') return this.send(cell, env, true, { watchers: this.watchers.list(kind, cell.key, now) });
    if (env.command !== '$watch')
      return this.send(cell, env, false, errorRecord('ERR_UNKNOWN_COMMAND', `actor kind '${kind}' has no command '${env.command}'`));
    let w: WatchRequest;
    try {
      w = parseWatch(env.input);
    } catch (e) {
      return this.send(cell, env, false, toErrorRecord(e));
    }
    // Registered before the read: a write durable after this point reaches the watcher as a
    // note, one durable before it is in the read; the watcher drops what it sees twice.
    this.watchers.watch(kind, cell.key, w.node, w.connections, now);
    const upTo = cell.durableSeq;
    if (w.from < 0 || w.from >= upTo) return this.send(cell, env, true, { to: upTo, items: [] });
    this.o.journal.readFrom(kind, cell.key, w.from, w.max).then(
      (events) => {
        const page = events.filter((e) => e.seq <= upTo);
        const full = events.length === w.max && page.length === events.length && page[page.length - 1]!.seq < upTo;
        const to = full ? page[page.length - 1]!.seq : upTo;
        const lost = (page[0]?.seq ?? upTo + 1) > w.from + 1;
        this.send(cell, env, true, { to, items: pushItems(page), ...(full && { more: true }), ...(lost && { lost: true }) });
      },
      (e: unknown) => this.send(cell, env, false, toErrorRecord(isTroupeError(e) ? e : troupeError('ERR_JOURNAL_READ', errorMessage(e)))),
    );
  }

  /** Called by Context#push: a system record (src/actors/system-records.ts) journaled with the turn. */
  pushRecord(cell: ActorCell, command: string, message: unknown): void {
    const bad = findOffence(message);
    if (bad !== null) throw notSerializable(`push of ${cell.kind.kind}/${cell.key} '${command}'`, bad);
    this.checkSize(message, `push of ${cell.kind.kind}/${cell.key} '${command}'`);
    const rec = { seq: ++cell.seq, v: SYSTEM_VERSION, event: { push: message } satisfies PushRecord };
    if (cell.pendingEvents === null) cell.pendingEvents = [rec];
    else cell.pendingEvents.push(rec);
  }

  /**
   * A handler returned `value`. Checked before it is recorded or sent, while the turn is still
   * open: a reply that could not cross the port, the journal or HTTP undoes the message's events
   * (a retry then applies them once), instead of committing them and failing only the reply.
   */
  private completed(
    cell: ActorCell,
    env: Envelope,
    readOnly: boolean,
    value: unknown,
    fingerprint: string | undefined,
    stateBefore: unknown,
    seqBefore: number,
    mark: number,
  ): void {
    // A tell without an id: its reply is neither sent nor recorded, so it needs no check.
    if (env.askId !== 0 || env.msgId !== undefined) {
      const what = `reply of ${cell.kind.kind}/${cell.key} '${env.command}'`;
      const bad = findOffence(value);
      // Checked like an event: it crosses a port, a socket and maybe the journal (a recorded reply).
      const bytes = bad === null ? messageBytes(value, this.o.maxMessageBytes) : 0;
      if (bad !== null || bytes > this.o.maxMessageBytes) {
        const error = bad !== null ? notSerializable(what, bad) : valueTooLarge(what, bytes, this.o.maxMessageBytes);
        return this.handlerFailed(cell, env, error, stateBefore, seqBefore, mark);
      }
    }
    if (env.msgId !== undefined && !readOnly) {
      const rec: RecordedReply = { msgId: env.msgId, ok: true, value };
      if (fingerprint !== undefined) rec.fingerprint = fingerprint;
      (cell.pendingReplies ??= []).push(rec);
      this.remember(cell, rec);
    }
    this.answer(cell, env, true, value);
  }

  private remember(cell: ActorCell, rec: RecordedReply): void {
    const replies = (cell.replies ??= new Map());
    replies.set(rec.msgId, rec);
    if (replies.size > this.o.recentReplies) replies.delete(replies.keys().next().value as string);
  }

  /** Sends a reply now, or holds it until the journal write it depends on is durable. */
  private answer(cell: ActorCell, env: Envelope, ok: boolean, value: unknown): void {
    if (!this.writes.hold(cell, env, ok, value)) this.send(cell, env, ok, value);
  }

  private send(cell: ActorCell, env: Envelope, ok: boolean, value: unknown): void {
    if (env.askId !== 0 && env.channel !== undefined) env.channel.reply(env.askId, ok, value);
    else if (!ok) this.deadLetter(cell.kind.kind, cell.key, env, value as ErrorRecord);
  }

  /**
   * Ends a turn: its events and recorded replies (and a snapshot every `snapshotEvery` events)
   * become one write handed to the write pipeline, and its replies wait for that write. A turn
   * that wrote nothing answers at once, unless an earlier write of the actor is still in flight
   * (see WritePipeline).
   */
  private endTurn(cell: ActorCell): void {
    const events = cell.pendingEvents;
    const replies = cell.pendingReplies;
    const held = cell.held;
    cell.held = null;
    // The turn changed the reminders (or deleted the session): the write says so.
    const remindersChanged = cell.turnReminders !== undefined;
    cell.turnReminders = undefined;
    if (events === null && replies === null) {
      if (held !== null) this.writes.releaseAfterLastWrite(cell, held);
      return;
    }
    cell.pendingEvents = null;
    cell.pendingReplies = null;
    const write: ActorWrite = { kind: cell.kind.kind, key: cell.key, events: events ?? [] };
    if (replies !== null) write.replies = replies;
    if (cell.epoch !== undefined) write.epoch = cell.epoch;
    if (events !== null) {
      let tomb: number | undefined;
      if (remindersChanged) {
        for (const rec of events) if (isTombstone(rec)) tomb = rec.seq;
        write.due = earliestDue(cell.reminders);
      }
      if (tomb !== undefined) {
        // The journal deletes what is stored under the tombstone (ActorWrite.tombstone).
        write.tombstone = tomb;
        cell.eventsSinceSnapshot = cell.seq - tomb;
      } else cell.eventsSinceSnapshot += events.length;
      if (cell.eventsSinceSnapshot >= cell.kind.snapshotEvery) {
        write.snapshot = { seq: cell.seq, v: cell.kind.version, state: cell.state };
        cell.eventsSinceSnapshot = 0;
        if (cell.reminders.size > 0) {
          // `read` returns only what follows the snapshot: the pending reminders ride along.
          const carry: RemindersRecord = { reminders: [...cell.reminders].map(([name, r]) => [name, r.due, r.message]) };
          events.push({ seq: ++cell.seq, v: SYSTEM_VERSION, event: carry });
          cell.eventsSinceSnapshot = 1;
        }
      }
    }
    if (remindersChanged) this.armReminders(cell);
    this.writes.submit(cell, write, held);
  }

  private release(cell: ActorCell, held: HeldReply[]): void {
    for (const h of held) this.send(cell, h.env, h.ok, h.value);
  }

  private failHeld(cell: ActorCell, held: HeldReply[], e: unknown): void {
    const error = toErrorRecord(isTroupeError(e) ? e : troupeError('ERR_JOURNAL_WRITE', errorMessage(e)));
    for (const h of held) this.send(cell, h.env, false, error);
  }

  // ── Failure and restart ─────────────────────────────────────────────────────────────────

  private handlerFailed(cell: ActorCell, env: Envelope, e: unknown, stateBefore: unknown, seqBefore: number, mark: number): void {
    // Undo this message's events; earlier messages of the turn stand and are written now.
    cell.state = stateBefore;
    cell.seq = seqBefore;
    if (cell.pendingEvents !== null) {
      cell.pendingEvents.length = mark;
      if (mark === 0) cell.pendingEvents = null;
    }
    // Reminders set, cancelled or cleared by this message go with its events.
    if (cell.turnReminders !== undefined) cell.reminders = (cell.pendingEvents ?? []).reduce(foldReminders, cell.turnReminders);
    if (isTroupeError(e, 'ERR_INVALID_INPUT') || isTroupeError(e, 'ERR_NOT_SERIALIZABLE')) {
      // A refusal (`throw invalidInput(...)`, or a value outside the value domain), not a
      // crash: the state is whole again, so answer it and keep the actor.
      if (e.code === 'ERR_NOT_SERIALIZABLE')
        this.o.log.warn({ kind: cell.kind.kind, key: cell.key, command: env.command, err: e }, e.message);
      return this.answer(cell, env, false, toErrorRecord(e));
    }
    const { kind } = cell.kind;
    // The thrown message goes to the caller across ports and sockets: bounded like any value a handler produces.
    const error = troupeError('ERR_HANDLER_FAILED', `${kind}/${cell.key} '${env.command}' failed: ${clip(errorMessage(e))}`, {
      kind,
      key: cell.key,
      command: env.command,
    });
    this.o.log.warn({ kind, key: cell.key, command: env.command, err: loggable(e) }, 'handler failed; restarting actor');
    this.answer(cell, env, false, toErrorRecord(error));
    this.endTurn(cell);
    this.restart(cell, error);
  }

  private writeFailed(cell: ActorCell, e: unknown): void {
    if (cell.status === 'restarting' || cell.status === 'failed') return;
    // Memory holds events the journal refused: drop them by reloading from the journal.
    cell.pendingEvents = null;
    cell.pendingReplies = null;
    cell.replies = null;
    if (isFenced(e)) {
      // Not the actor's failure: a newer primary owns it. Reload at once and outside the restart
      // window (ownership moving must never escalate an actor); the journal's read then says
      // whether this node still serves it, and its error reaches the messages waiting.
      this.o.log.warn({ kind: cell.kind.kind, key: cell.key, code: e.code }, 'journal write fenced; reloading actor');
      this.cancelTimers(cell);
      return this.reload(cell, 0);
    }
    this.o.log.error({ kind: cell.kind.kind, key: cell.key, err: loggable(e) }, 'journal write failed; reloading actor');
    this.restart(cell, isTroupeError(e) ? e : troupeError('ERR_JOURNAL_WRITE', errorMessage(e)));
  }

  private restart(cell: ActorCell, reason: TroupeError): void {
    const decision = decideRestart(cell.restartWindow ?? [], this.o.clock.now(), cell.kind.restart);
    cell.restartWindow = decision.window;
    this.cancelTimers(cell);
    if (decision.action === 'escalate') return this.escalate(cell, reason);
    this.counters.restarts++;
    this.reload(cell, decision.delayMs);
  }

  /** Drops the actor's memory: it activates again after `delayMs`, once its writes in flight settle; messages wait. */
  private reload(cell: ActorCell, delayMs: number): void {
    cell.status = 'restarting';
    const generation = ++cell.generation;
    const reload = () => {
      if (cell.generation !== generation) return;
      if (cell.inflightWrites > 0) cell.onSettled = reload;
      else this.activate(cell);
    };
    if (delayMs > 0) this.o.clock.setTimeout(reload, delayMs);
    else reload();
  }

  private escalate(cell: ActorCell, reason: TroupeError): void {
    this.counters.escalations++;
    cell.status = 'failed';
    cell.generation++;
    cell.failedUntil = this.o.clock.now() + cell.kind.restart.periodMs;
    const { kind } = cell.kind;
    const error = troupeError(
      'ERR_ACTOR_ESCALATED',
      `actor ${kind}/${cell.key} exceeded ${cell.kind.restart.maxRestarts} restarts in ${cell.kind.restart.periodMs} ms: ${reason.message}`,
      {
        kind,
        key: cell.key,
      },
    );
    this.o.log.error({ kind, key: cell.key, err: reason }, 'restart intensity exceeded; actor stopped');
    for (const env of this.drainMailbox(cell)) this.refuse(kind, cell.key, env, error);
    this.o.onEscalated?.(kind, cell.key, toErrorRecord(error));
  }

  private runSystem(cell: ActorCell, op: SystemOp): void {
    if (op === 'restart') {
      this.endTurn(cell);
      this.restart(cell, troupeError('ERR_STOPPED', 'restart requested'));
    } else if (op === 'passivate' && cell.mailbox.isEmpty) {
      this.endTurn(cell);
      this.passivate(cell);
    }
  }

  // ── Passivation ─────────────────────────────────────────────────────────────────────────

  private armSweep(): void {
    let shortest = Infinity;
    for (const k of this.o.registry.list()) shortest = Math.min(shortest, k.idleTimeoutMs);
    if (!Number.isFinite(shortest)) return;
    // Half the shortest idle timeout: an actor leaves within 1.5× its timeout.
    const every = Math.max(50, Math.min(shortest / 2, 30_000));
    const tick = () => {
      this.sweep();
      if (!this.stopped) this.sweepTimer = this.o.clock.setTimeout(tick, every);
    };
    this.sweepTimer = this.o.clock.setTimeout(tick, every);
  }

  /** Passivates actors idle past their kind's timeout. Frees memory, never data. */
  sweep(): number {
    const now = this.o.clock.now();
    let n = 0;
    if (this.o.heapUsed() > this.o.maxHeapBytes) {
      // Over the heap threshold: shed the least recently used tenth, idle ones only.
      n += this.evict(Math.max(1, Math.ceil(this.resident / 10)));
    }
    for (const cells of this.cells.values()) {
      for (const cell of cells.values()) {
        if (cell.status === 'failed' && now >= cell.failedUntil) {
          this.remove(cell);
          n++;
        } else if (this.isIdle(cell) && now - cell.lastActive >= cell.kind.idleTimeoutMs && !this.dueSoon(cell)) {
          this.passivate(cell);
          n++;
        }
      }
    }
    return n;
  }

  private drainMailbox(cell: ActorCell): Envelope[] {
    const all = cell.mailbox.drain();
    this.queued -= all.length;
    return all;
  }

  private isIdle(cell: ActorCell): boolean {
    return (
      cell.status === 'active' &&
      !cell.scheduled &&
      cell.mailbox.isEmpty &&
      cell.inflightWrites === 0 &&
      cell.held === null &&
      cell.pendingEvents === null &&
      cell.pendingReplies === null
    );
  }

  private passivate(cell: ActorCell): void {
    this.counters.passivated++;
    this.cancelTimers(cell);
    this.remove(cell);
  }

  private remove(cell: ActorCell): void {
    cell.generation++;
    const cells = this.cells.get(cell.kind.kind);
    if (cells?.get(cell.key) === cell) {
      cells.delete(cell.key);
      this.resident--;
      this.unlink(cell);
    }
  }

  // ── LRU ─────────────────────────────────────────────────────────────────────────────────

  /** Moves `cell` to the most recently used end (O(1): an intrusive doubly linked list). */
  private touch(cell: ActorCell): void {
    if (this.lruNewest === cell) return;
    this.unlink(cell);
    cell.lruPrev = this.lruNewest;
    cell.lruNext = null;
    if (this.lruNewest !== null) this.lruNewest.lruNext = cell;
    this.lruNewest = cell;
    if (this.lruOldest === null) this.lruOldest = cell;
  }

  private unlink(cell: ActorCell): void {
    if (cell.lruPrev !== null) cell.lruPrev.lruNext = cell.lruNext;
    else if (this.lruOldest === cell) this.lruOldest = cell.lruNext;
    if (cell.lruNext !== null) cell.lruNext.lruPrev = cell.lruPrev;
    else if (this.lruNewest === cell) this.lruNewest = cell.lruPrev;
    cell.lruPrev = cell.lruNext = null;
  }

  /** Passivates up to `count` idle actors, least recently used first. Busy ones are skipped. */
  private evict(count: number): number {
    let evicted = 0;
    let cell = this.lruOldest;
    while (cell !== null && evicted < count) {
      const next = cell.lruNext;
      if (this.isIdle(cell)) {
        this.passivate(cell);
        this.counters.evicted++;
        evicted++;
      }
      cell = next;
    }
    return evicted;
  }

  // ── Session lifecycle: delete, reminders, ttlMs (docs/sessions-lifecycle.md) ──────────────

  /** Called by Context#delete and by an expired `ttlMs`: the session starts over at a tombstone. */
  deleteSession(cell: ActorCell): void {
    cell.state = cell.kind.def.initial(cell.key);
    this.systemRecord(cell, { deleted: true });
    // The fresh session has seen no message yet: its `ttlMs` clock starts at its first one.
    cell.lastActivityWall = 0;
  }

  /** Called by Context#remind: checks every argument before anything changes (ERR_INVALID_OPTION naming it). */
  setReminder(cell: ActorCell, name: unknown, delayMs: unknown, message: unknown): void {
    checkReminderName(name);
    if (!Number.isSafeInteger(delayMs) || (delayMs as number) < 0 || (delayMs as number) > reminderLimits.maxDelayMs)
      throw invalidOption('ctx.remind delayMs', `must be an integer in [0, ${reminderLimits.maxDelayMs}]`, delayMs);
    const m = checkReminderMessage(cell.kind, message);
    this.systemRecord(cell, { remind: { name: name as string, due: this.o.clock.wallNow() + (delayMs as number), message: m } });
  }

  /** Called by Context#cancelReminder: nothing is journaled for a name that is not pending. */
  cancelReminder(cell: ActorCell, name: unknown): void {
    checkReminderName(name);
    if (cell.reminders.has(name as string)) this.systemRecord(cell, { unremind: name as string });
  }

  /** A lifecycle record of this turn: its seq, and the reminder table folded at once (undone with the message on failure). */
  private systemRecord(cell: ActorCell, event: object): void {
    const rec = { seq: ++cell.seq, v: SYSTEM_VERSION, event };
    if (cell.pendingEvents === null) cell.pendingEvents = [rec];
    else cell.pendingEvents.push(rec);
    if (cell.turnReminders === undefined) cell.turnReminders = cell.reminders;
    cell.reminders = foldReminders(cell.reminders, rec);
  }

  /** Arms the one timer for the earliest pending reminder whose fire is not queued yet. */
  private armReminders(cell: ActorCell): void {
    if (cell.reminderTimer !== null) this.o.clock.clearTimeout(cell.reminderTimer);
    cell.reminderTimer = null;
    if (cell.reminders.size === 0 || this.stopped) return;
    let next = Infinity;
    for (const [name, r] of cell.reminders) if (r.due < next && cell.firing?.has(name) !== true) next = r.due;
    if (next === Infinity) return;
    const generation = cell.generation;
    // Wall time, since a reminder crosses nodes; a timer holds at most 2^31 - 1 ms, so a
    // farther reminder arms again on the way.
    const delay = Math.min(Math.max(0, next - this.o.clock.wallNow()), MAX_TIMER_MS);
    cell.reminderTimer = this.o.clock.setTimeout(() => {
      cell.reminderTimer = null;
      if (cell.generation === generation) this.fireDue(cell);
    }, delay);
  }

  /** Queues a fire for every reminder due now (the system lane: the runtime's own, never refused by a full mailbox). */
  private fireDue(cell: ActorCell): void {
    if (this.stopped || (cell.status !== 'active' && cell.status !== 'busy')) return;
    const now = this.o.clock.wallNow();
    let queued = false;
    for (const [name, r] of cell.reminders) {
      if (r.due > now || cell.firing?.has(name) === true) continue;
      const env: Envelope = {
        command: r.message.command,
        input: r.message.input,
        msgId: reminderMessageId(name, r.due),
        askId: 0,
        channel: undefined,
        reminder: { name, due: r.due },
      };
      cell.mailbox.enqueueSystem(env);
      this.queued++;
      (cell.firing ??= new Set()).add(name);
      queued = true;
    }
    this.armReminders(cell);
    if (queued && cell.status === 'active') this.schedule(cell);
  }

  /**
   * A fire's turn: delivered only while the reminder is pending with the fire's due (a fire
   * queued before a cancel, a replacement or a reload is dropped), and removed in the same turn
   * as the message it delivers — before the handler runs, so a handler that throws does not
   * bring it back. Its message id makes a second delivery answer from the recorded reply.
   */
  private runReminder(cell: ActorCell, env: Envelope, fire: { name: string; due: number }): void {
    cell.firing?.delete(fire.name);
    const r = cell.reminders.get(fire.name);
    if (r === undefined || r.due !== fire.due) return;
    if (fire.name === TTL_REMINDER) return this.ttlDue(cell);
    this.systemRecord(cell, { unremind: fire.name });
    this.process(cell, env);
  }

  /** At activation: the journaled `$ttl` reminder says when activity was last recorded. */
  private activatedTtl(cell: ActorCell): void {
    const ttl = cell.kind.ttlMs;
    if (ttl === undefined) return;
    const r = cell.reminders.get(TTL_REMINDER);
    cell.lastActivityWall = r === undefined ? 0 : r.due - ttl - ttlSlackMs(ttl);
  }

  /**
   * End of a turn of a kind with `ttlMs`: the `$ttl` reminder is journaled again (a record in
   * this turn's write, never a write of its own) only when activity moved its deadline by more
   * than the slack, so a busy session costs one record per slack period, not one per message.
   */
  private touchTtl(cell: ActorCell): void {
    if (cell.lastActivityWall === 0) return; // no message from outside since the session began
    const ttl = cell.kind.ttlMs!;
    const slack = ttlSlackMs(ttl);
    const due = cell.lastActivityWall + ttl + slack;
    const r = cell.reminders.get(TTL_REMINDER);
    if (r === undefined || due - r.due > slack) this.systemRecord(cell, { remind: { name: TTL_REMINDER, due, message: { command: '' } } });
  }

  /** The `$ttl` reminder fired: expire the session, or push the deadline on when it saw activity since. */
  private ttlDue(cell: ActorCell): void {
    const ttl = cell.kind.ttlMs;
    if (ttl === undefined) return this.systemRecord(cell, { unremind: TTL_REMINDER }); // the kind dropped its ttlMs
    if (cell.lastActivityWall !== 0 && this.o.clock.wallNow() < cell.lastActivityWall + ttl) {
      const due = cell.lastActivityWall + ttl + ttlSlackMs(ttl);
      return this.systemRecord(cell, { remind: { name: TTL_REMINDER, due, message: { command: '' } } });
    }
    this.o.log.debug({ kind: cell.kind.kind, key: cell.key }, 'session expired (ttlMs)');
    this.deleteSession(cell);
  }

  /** Keeps a resident actor whose next reminder is due within the waking horizon (it would only be woken again). */
  private dueSoon(cell: ActorCell): boolean {
    if (cell.reminders.size === 0) return false;
    const next = earliestDue(cell.reminders);
    return next !== null && next <= this.o.clock.wallNow() + reminderDefaults.horizonMs;
  }

  /**
   * Single-node journals (`Journal.dueActors`: memory and LMDB): look now — pending reminders
   * come back after a restart without a caller — and every `scanEveryMs`. A replicated node's
   * hosts have no such journal; the node wakes their actors (src/node/reminders.ts).
   */
  private armDueScan(): void {
    if (this.o.journal.dueActors === undefined) return;
    const tick = () => {
      this.dueScanTimer = null;
      this.scanDue().then(
        () => {
          if (!this.stopped) this.dueScanTimer = this.o.clock.setTimeout(tick, reminderDefaults.scanEveryMs);
        },
        (e: unknown) => {
          if (!this.stopped) {
            this.o.log.warn({ err: loggable(e) }, 'reminder scan failed; retrying');
            this.dueScanTimer = this.o.clock.setTimeout(tick, reminderDefaults.scanEveryMs);
          }
        },
      );
    };
    this.dueScanTimer = this.o.clock.setTimeout(tick, 0);
  }

  /** Activates this slot's actors with a reminder due within the horizon that are not resident; how many. */
  async scanDue(): Promise<number> {
    const due = await this.o.journal.dueActors!(this.o.clock.wallNow() + reminderDefaults.horizonMs, reminderDefaults.pageActors);
    let n = 0;
    for (const a of due) {
      if (this.stopped) break;
      if ((this.o.slots > 1 && slotOf(a.key, this.o.slots) !== this.o.slot) || !this.ownsKey(a.key)) continue;
      if (this.cells.get(a.kind)?.has(a.key) === true) continue;
      if (this.wake(a.kind, a.key)) n++;
    }
    return n;
  }

  // ── Timers ──────────────────────────────────────────────────────────────────────────────

  scheduleSelf(cell: ActorCell, delayMs: number, message: AnyMessage): () => void {
    const timers = (cell.timers ??= new Set());
    const handle = this.o.clock.setTimeout(() => {
      timers.delete(handle);
      this.deliver(cell.kind.kind, cell.key, message.command, message.input, 0, message.id, undefined);
    }, delayMs);
    timers.add(handle);
    return () => {
      if (timers.delete(handle)) this.o.clock.clearTimeout(handle);
    };
  }

  private cancelTimers(cell: ActorCell): void {
    // Reminders are durable: only their in-memory timer goes; the next activation arms it again.
    if (cell.reminderTimer !== null) this.o.clock.clearTimeout(cell.reminderTimer);
    cell.reminderTimer = null;
    cell.firing = null;
    if (cell.timers === null) return;
    for (const t of cell.timers) this.o.clock.clearTimeout(t);
    cell.timers = null;
  }

  // ── Errors nobody asked for ─────────────────────────────────────────────────────────────

  /** Refuses a message: an ask gets the error, a tell becomes a counted, logged dead letter. */
  private refuse(kind: string, key: string, env: Envelope, error: TroupeError): void {
    if (env.askId !== 0 && env.channel !== undefined) env.channel.reply(env.askId, false, toErrorRecord(error));
    else this.deadLetter(kind, key, env, toErrorRecord(error));
  }

  private deadLetter(kind: string, key: string, env: Envelope, error: ErrorRecord): void {
    this.counters.deadLetters++;
    const now = this.o.clock.now();
    // One warning a second at most: a flood of refused tells must not become a flood of logs.
    if (now - this.lastDeadLetterLog >= 1_000) {
      this.lastDeadLetterLog = now;
      this.o.log.warn(
        { kind, key, command: env.command, code: error.code, deadLetters: this.counters.deadLetters },
        `dead letter: ${error.message}`,
      );
    }
  }

  get clock(): Clock {
    return this.o.clock;
  }

  get log(): Logger {
    return this.o.log;
  }
}

/** The handler's view of its actor; closed once the handler has returned. */
class Context implements HandlerContext<unknown, unknown> {
  closed = false;

  constructor(
    private readonly host: ActorHost,
    private readonly cell: ActorCell,
    private readonly command: string,
    private readonly readOnly: boolean,
  ) {}

  get kind(): string {
    return this.cell.kind.kind;
  }
  get key(): string {
    return this.cell.key;
  }
  get state(): unknown {
    return this.cell.state;
  }
  get log(): Logger {
    return this.host.log;
  }
  emit(event: unknown): void {
    if (this.closed) throw troupeError('ERR_INVALID_DEFINITION', `${this.kind}: emit() after the handler returned`);
    if (this.readOnly) throw troupeError('ERR_INVALID_DEFINITION', `${this.kind}: a read-only command cannot emit`);
    this.host.emitEvent(this.cell, this.command, event);
  }
  push(message: unknown): void {
    if (this.closed) throw troupeError('ERR_INVALID_DEFINITION', `${this.kind}: push() after the handler returned`);
    if (this.readOnly) throw troupeError('ERR_INVALID_DEFINITION', `${this.kind}: a read-only command cannot push (a push is journaled)`);
    this.host.pushRecord(this.cell, this.command, message);
  }
  delete(): void {
    this.writing('delete');
    this.host.deleteSession(this.cell);
  }
  remind(name: string, delayMs: number, message: { command: string; input?: unknown }): void {
    this.writing('remind');
    this.host.setReminder(this.cell, name, delayMs, message);
  }
  cancelReminder(name: string): void {
    this.writing('cancelReminder');
    this.host.cancelReminder(this.cell, name);
  }
  /** Lifecycle calls are journaled: refused after the handler returned and in read-only commands, as emit is. */
  private writing(what: string): void {
    if (this.closed) throw troupeError('ERR_INVALID_DEFINITION', `${this.kind}: ${what}() after the handler returned`);
    if (this.readOnly) throw troupeError('ERR_INVALID_DEFINITION', `${this.kind}: a read-only command cannot ${what} (it is journaled)`);
  }
  /** Throws ERR_NOT_SERIALIZABLE for an input outside the value domain: it may cross a port or a socket. */
  tell(kind: string, key: string, message: AnyMessage): void {
    if (isReserved(message.command)) throw reservedCommand(kind, message.command);
    const bad = findOffence(message.input);
    if (bad !== null) throw notSerializable(`input of tell to ${kind}/${key} '${message.command}'`, bad);
    this.host.checkSize(message.input, `input of tell to ${kind}/${key} '${message.command}'`);
    this.host.tell(kind, key, message);
  }
  /** Rejects with ERR_NOT_SERIALIZABLE for an input outside the value domain. */
  ask(kind: string, key: string, message: AnyMessage, options?: AskOptions): Promise<unknown> {
    if (isReserved(message.command)) return Promise.reject(reservedCommand(kind, message.command));
    const bad = findOffence(message.input);
    if (bad !== null) return Promise.reject(notSerializable(`input of ask to ${kind}/${key} '${message.command}'`, bad));
    try {
      this.host.checkSize(message.input, `input of ask to ${kind}/${key} '${message.command}'`);
    } catch (e) {
      return Promise.reject(e as TroupeError);
    }
    return this.host.ask(kind, key, message, options);
  }
  schedule(delayMs: number, message: AnyMessage): () => void {
    return this.host.scheduleSelf(this.cell, delayMs, message);
  }
  now(): number {
    return this.host.clock.now();
  }
}

/** The longest delay a timer holds (setTimeout's limit): farther reminders arm again on the way. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function checkReminderName(name: unknown): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > reminderLimits.nameChars || name.startsWith('$'))
    throw invalidOption('ctx.remind name', `must be a string of 1..${reminderLimits.nameChars} characters not starting with '$' (reserved)`, name);
}

/** A reminder's message: a command of the actor's own kind, an input in the value domain, no id (the fire derives one). */
function checkReminderMessage(kind: ActorKind, message: unknown): ReminderMessage {
  if (message === null || typeof message !== 'object' || Array.isArray(message))
    throw invalidOption('ctx.remind message', 'must be an object { command, input? }', message);
  const m = message as { command?: unknown; input?: unknown; id?: unknown };
  if (typeof m.command !== 'string' || !kind.commands.has(m.command))
    throw troupeError('ERR_UNKNOWN_COMMAND', `ctx.remind message.command: actor kind '${kind.kind}' has no command '${String(m.command)}'`, {
      kind: kind.kind,
    });
  if (m.id !== undefined) throw invalidOption('ctx.remind message.id', 'must be absent: a fire derives its id from the reminder', m.id);
  const bad = findOffence(m.input);
  if (bad !== null) throw notSerializable(`input of reminder of ${kind.kind} '${m.command}'`, bad);
  return m.input === undefined ? { command: m.command } : { command: m.command, input: m.input };
}

/** The journal refused because another primary owns the actor (REPLICATION.md: a refused primary steps down). */
function isFenced(e: unknown): e is TroupeError {
  return isTroupeError(e, 'ERR_STALE_EPOCH') || isTroupeError(e, 'ERR_NOT_PRIMARY');
}

/** A mailbox's `sizeOf`: the size `deliver` measured (system messages and wake-ups carry none). */
function envelopeBytes(env: Envelope): number {
  return env.bytes ?? 0;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Longest thrown message passed on to the caller of a failed handler, characters. */
const MAX_FAILURE_TEXT = 1_000;

function clip(text: string): string {
  return text.length <= MAX_FAILURE_TEXT ? text : `${text.slice(0, MAX_FAILURE_TEXT)}… (${text.length} characters)`;
}

function idempotencyMismatch(cell: ActorCell, env: Envelope): TroupeError {
  return troupeError(
    'ERR_IDEMPOTENCY_MISMATCH',
    `message id '${env.msgId}' was already used for ${cell.kind.kind}/${cell.key} with another command or input; use a new id for a new message`,
    { kind: cell.kind.kind, key: cell.key, command: env.command },
  );
}

/** pino serializes Errors under `err`; anything else thrown (a string, `{}`) is logged by its text. */
function loggable(e: unknown): unknown {
  return e instanceof Error ? e : { message: String(e), thrown: typeof e };
}

function errorRecord(code: ErrorRecord['code'], message: string): ErrorRecord {
  return { code, message };
}

// ── Admin views (inspect, top) ──────────────────────────────────────────────────────────────

function windowOf(now: number): number {
  return Math.floor(now / topLimits.windowMs);
}

/** Per-cell recency counters: two windows, so a count never drops to 0 the instant a window turns. */
function countRecent(cell: ActorCell, n: number, window: number): void {
  if (cell.recentWindow !== window) {
    cell.recentPrev = cell.recentWindow === window - 1 ? cell.recent : 0;
    cell.recent = 0;
    cell.recentWindow = window;
  }
  cell.recent += n;
  cell.processed += n;
}

function recentOf(cell: ActorCell, window: number): number {
  if (cell.recentWindow === window) return cell.recent + cell.recentPrev;
  return cell.recentWindow === window - 1 ? cell.recent : 0;
}

function topActor(cell: ActorCell, recent: number, mailbox: number): TopActor {
  return { kind: cell.kind.kind, key: cell.key, recent, processed: cell.processed, mailbox, status: cell.status };
}

/** Keeps `list` the `limit` largest by `score`, descending (a short insertion: limit ≤ topLimits.maxN). */
function keepTop(list: TopActor[], limit: number, score: number, of: (a: TopActor) => number, make: () => TopActor): void {
  if (list.length === limit && of(list[limit - 1]!) >= score) return;
  let i = list.length;
  while (i > 0 && of(list[i - 1]!) < score) i--;
  list.splice(i, 0, make());
  if (list.length > limit) list.pop();
}

/** JSON of a state for the admin REPL; BigInt (in the value domain, not in JSON) as text. */
function previewJson(state: unknown): string {
  try {
    return JSON.stringify(state, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)) ?? 'undefined';
  } catch (e) {
    return `(not printable: ${errorMessage(e)})`;
  }
}
