import type { TimerHandle } from '../core/clock.ts';
import type { Mailbox } from '../mailbox/mailbox.ts';
import type { EventRecord, RecordedReply } from '../persistence/journal.ts';
import type { Epoch } from '../replication/epoch.ts';
import type { RestartWindow } from '../supervisor/restart-window.ts';
import type { Envelope } from './envelope.ts';
import type { ActorKind } from './registry.ts';
import type { PendingWrite } from './write-pipeline.ts';
import { EMPTY_REMINDERS, type ReminderTable } from './system-records.ts';

export type CellStatus =
  | 'activating' // loading snapshot + events; messages queue
  | 'active' // processing
  | 'busy' // inside an async handler; no other message of this actor runs
  | 'restarting' // waiting for backoff / in-flight writes before reloading from the journal
  | 'failed'; // escalated: refuses messages until `failedUntil`

/** A reply held until the journal write it depends on is durable. */
export interface HeldReply {
  env: Envelope;
  ok: boolean;
  value: unknown;
}

/**
 * One resident actor. Kept small: an idle cell is its key, state, log position and an empty
 * mailbox (≈ a few hundred bytes); everything turn-related is null between turns.
 */
export class ActorCell {
  state: unknown = undefined;
  /** Seq of the last event applied to `state` (durable or not). */
  seq = 0;
  /** Seq of the last record known durable: what a WebSocket watcher may be shown (src/actors/watchers.ts). */
  durableSeq = 0;
  /**
   * The epoch the journal gave at activation (`ActorHistory.epoch`): every write of this
   * activation carries it, so a journal that has seen a newer primary fences it. Undefined on a
   * single node, whose writes carry none.
   */
  epoch: Epoch | undefined = undefined;
  status: CellStatus = 'activating';
  scheduled = false;
  lastActive = 0;
  eventsSinceSnapshot = 0;
  /** Events and recorded replies of the current turn, not yet handed to the journal. */
  pendingEvents: EventRecord[] | null = null;
  pendingReplies: RecordedReply[] | null = null;
  /** Replies waiting for the current turn's write (or the in-flight one). */
  held: HeldReply[] | null = null;
  /** The most recent journal write not yet settled; writes of one actor settle in order. */
  lastWrite: PendingWrite | null = null;
  inflightWrites = 0;
  /** Runs when `inflightWrites` drops to 0 (a restart waiting to reload). */
  onSettled: (() => void) | null = null;
  /** Recent message ids → recorded replies, for retry dedupe (insertion ordered, bounded). */
  replies: Map<string, RecordedReply> | null = null;
  restartWindow: RestartWindow | null = null;
  failedUntil = 0;
  timers: Set<TimerHandle> | null = null;
  /** Pending durable reminders (rebuilt by replay; changed only through system records). */
  reminders: ReminderTable = EMPTY_REMINDERS;
  /** The table as this turn found it, once a system record of the turn touched it: a failed message folds the survivors again from here. */
  turnReminders: ReminderTable | undefined = undefined;
  /** The one timer armed for the earliest pending reminder not yet queued. */
  reminderTimer: TimerHandle | null = null;
  /** Reminders whose fire is queued in the mailbox (not armed again until it is processed). */
  firing: Set<string> | null = null;
  /** A kind with `ttlMs`: wall time of the last message from outside (reminder fires do not count). */
  lastActivityWall = 0;
  /** Bumped on every (re)activation; a stale async completion compares it. */
  generation = 0;
  /** Messages this activation processed, and in the host's current and previous recency window (admin `actors top`). */
  processed = 0;
  recent = 0;
  recentPrev = 0;
  recentWindow = 0;
  /** Neighbours in the host's least-recently-used list. */
  lruPrev: ActorCell | null = null;
  lruNext: ActorCell | null = null;

  constructor(
    readonly kind: ActorKind,
    readonly key: string,
    readonly mailbox: Mailbox<Envelope>,
  ) {}
}
