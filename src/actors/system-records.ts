import type { EventRecord } from '../persistence/journal.ts';

/**
 * Version 0 marks the runtime's own records in an actor's log, beside the kind's events
 * (whose versions start at 1): pushes to connected clients (`ctx.push`), and the session
 * lifecycle's records. They take a seq like any event, so they replicate, fence, truncate and
 * come back after a failover with the log, but `apply` and the upcasters never see them.
 *
 * The journals store `[v, event]` as they always did: no format changes, and a log written
 * before these records existed reads the same.
 */
export const SYSTEM_VERSION = 0;

/** A push: `message` goes to the actor's connected WebSocket clients once the write is durable. */
export interface PushRecord {
  push: unknown;
}

export function isSystemRecord(rec: Pick<EventRecord, 'v'>): boolean {
  return rec.v === SYSTEM_VERSION;
}

/** The message of a push record, or undefined for any other record. */
export function pushOf(rec: EventRecord): unknown {
  if (rec.v !== SYSTEM_VERSION || rec.event === null || typeof rec.event !== 'object') return undefined;
  return (rec.event as Partial<PushRecord>).push;
}

// ── Session lifecycle (docs/sessions-lifecycle.md) ─────────────────────────────────────────

/**
 * A tombstone (`ctx.delete()`, or an expired `ttlMs`): the session ended at this seq. Replay
 * starts over from `initial(key)` here with no reminders, and the journal deletes what is
 * stored under it (`ActorWrite.tombstone`), so nothing older can come back.
 */
export interface TombstoneRecord {
  deleted: true;
}

/** What a reminder delivers: a command of the actor's own kind and its input (never an id: the fire derives one). */
export interface ReminderMessage {
  command: string;
  input?: unknown;
}

/** One pending reminder: its wall-clock due time (ms since the epoch) and what it delivers. */
export interface PendingReminder {
  due: number;
  message: ReminderMessage;
}

/** Pending reminders by name. Never mutated: a change makes a new map (a turn can be rolled back to an older one). */
export type ReminderTable = ReadonlyMap<string, PendingReminder>;

/** `ctx.remind`: sets (or replaces) reminder `name`. */
export interface RemindRecord {
  remind: { name: string; due: number; message: ReminderMessage };
}

/** `ctx.cancelReminder`, or a one-shot reminder that fired (in the turn that delivered its message). */
export interface UnremindRecord {
  unremind: string;
}

/**
 * Every pending reminder, written just after a snapshot: a journal's `read` returns only the
 * events after the latest snapshot, and the snapshot holds the kind's state alone, so the
 * reminders set before it ride along here.
 */
export interface RemindersRecord {
  reminders: Array<[name: string, due: number, message: ReminderMessage]>;
}

export const EMPTY_REMINDERS: ReminderTable = new Map();

/** The reserved reminder of a kind with `ttlMs`; user reminder names may not start with `$`. */
export const TTL_REMINDER = '$ttl';

export const reminderLimits = {
  nameChars: 64, // a reminder name is 1..64 characters
  maxDelayMs: 366 * 24 * 3_600_000, // a year and a day: farther than any session outlives a deploy
};

export const reminderDefaults = {
  /** How often a node looks for actors with a reminder due soon that are not resident, ms. */
  scanEveryMs: 5_000,
  /** "Soon": due within this many ms of a scan (≥ 2 scans, so a reminder is never missed between two). */
  horizonMs: 15_000,
  /** Actors woken per scan page. */
  pageActors: 1_024,
};

/**
 * TTL bookkeeping slack, ms, for a kind with `ttlMs`: the `$ttl` reminder is journaled again only
 * when activity moved its deadline by more than this (not on every message), and it is due this
 * much after the deadline, so activity the journal has not seen yet can never expire a session
 * early: expiry comes between the deadline and twice the slack after it.
 */
export function ttlSlackMs(ttlMs: number): number {
  return Math.max(1, Math.min(Math.floor(ttlMs / 16), 60_000));
}

export function isTombstone(rec: Pick<EventRecord, 'v' | 'event'>): boolean {
  return rec.v === SYSTEM_VERSION && (rec.event as Partial<TombstoneRecord> | null)?.deleted === true;
}

/**
 * Folds one record into a reminder table (pure; the table is returned unchanged for a record
 * that does not concern reminders). Replay and a turn's rollback both fold with it.
 */
export function foldReminders(table: ReminderTable, rec: Pick<EventRecord, 'v' | 'event'>): ReminderTable {
  if (rec.v !== SYSTEM_VERSION || rec.event === null || typeof rec.event !== 'object') return table;
  const e = rec.event as Partial<TombstoneRecord & RemindRecord & UnremindRecord & RemindersRecord>;
  if (e.deleted === true) return EMPTY_REMINDERS;
  if (e.remind !== undefined) {
    const next = new Map(table);
    next.set(e.remind.name, { due: e.remind.due, message: e.remind.message });
    return next;
  }
  if (e.unremind !== undefined) {
    if (!table.has(e.unremind)) return table;
    const next = new Map(table);
    next.delete(e.unremind);
    return next;
  }
  if (e.reminders !== undefined) return new Map(e.reminders.map(([name, due, message]) => [name, { due, message }]));
  return table;
}

/** The earliest due time of a table, or null when nothing is pending (what `ActorWrite.due` carries). */
export function earliestDue(table: ReminderTable): number | null {
  let min: number | null = null;
  for (const r of table.values()) if (min === null || r.due < min) min = r.due;
  return min;
}

/** The message id a fire of reminder `name` due at `due` carries: a fire applied twice is applied once. */
export function reminderMessageId(name: string, due: number): string {
  return `reminder:${name}@${due}`;
}
