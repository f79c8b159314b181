import { troupeError } from '../core/errors.ts';
import type { ActorHistory, RecordedReply } from '../persistence/journal.ts';
import type { ActorKind } from './registry.ts';
import { EMPTY_REMINDERS, foldReminders, isSystemRecord, isTombstone, type ReminderTable } from './system-records.ts';

/** An actor rebuilt from its history: what an activation starts from. */
export interface Replayed {
  state: unknown;
  /** Seq of the last event applied (the snapshot's when no event follows it). */
  seq: number;
  /** Events applied since the last snapshot: the host snapshots again after `snapshotEvery`. */
  eventsSinceSnapshot: number;
  /** Recorded replies by message id (null when none), so a retried id gets its recorded reply. */
  replies: Map<string, RecordedReply> | null;
  /** Pending durable reminders, from the lifecycle's system records (system-records.ts). */
  reminders: ReminderTable;
}

/**
 * Rebuilds an actor's state from a journal history: the snapshot when it has the kind's current
 * version, else `initial(key)`, then every event after it, each lifted to the current version by
 * the kind's upcasters. Pure (no host, no journal, no clock), so a replica or a new primary can
 * rebuild an actor from its log the way an activation does. Throws what `apply` or an upcaster
 * throws, and ERR_UPCAST for a missing upcaster.
 *
 *   const { state, seq } = replay(registry.get('counter')!, 'k1', await journal.read('counter', 'k1'));
 */
export function replay(kind: ActorKind, key: string, history: ActorHistory): Replayed {
  let state: unknown;
  let seq = 0;
  const usable = usableSnapshot(kind, history);
  let events = history.events;
  // A deleted session's log starts over at its (last) tombstone, as from a snapshot of
  // `initial(key)`: nothing under it counts, and the journal may have dropped it.
  const tomb = lastTombstone(events, usable?.seq ?? 0);
  const snap = tomb >= 0 ? { seq: events[tomb]!.seq, v: kind.version, state: kind.def.initial(key) } : usable;
  if (tomb >= 0) {
    events = events.slice(tomb + 1);
    state = snap!.state;
    seq = snap!.seq;
  } else if (snap) {
    state = snap.state;
    seq = snap.seq;
    events = events.filter((e) => e.seq > snap.seq);
  } else {
    // A snapshot of another version holds a state shape `apply` may no longer understand: the
    // whole log is replayed instead, and it must be whole (see `needsFullLog`).
    if (history.snapshot && (events[0]?.seq ?? history.snapshot.seq + 1) !== 1)
      throw troupeError(
        'ERR_UPCAST',
        `${kind.kind}/${key}: its snapshot is of version ${history.snapshot.v} (the kind is at ${kind.version}) and the events under it are gone; add compatible snapshots or keep the log`,
        { kind: kind.kind, version: history.snapshot.v },
      );
    state = kind.def.initial(key);
  }
  let reminders = EMPTY_REMINDERS;
  for (const rec of events) {
    // The runtime's own records (pushes, lifecycle) take a seq but are not the kind's events.
    if (!isSystemRecord(rec)) state = kind.def.apply(state, upcast(kind, rec.event, rec.v));
    else reminders = foldReminders(reminders, rec);
    seq = rec.seq;
  }
  return {
    state,
    seq,
    eventsSinceSnapshot: snap ? seq - snap.seq : seq,
    replies: history.replies.length > 0 ? new Map(history.replies.map((r) => [r.msgId, r])) : null,
    reminders,
  };
}

/** Index of the last tombstone among `events` past seq `above`, or -1. */
function lastTombstone(events: ActorHistory['events'], above: number): number {
  for (let i = events.length - 1; i >= 0; i--) if (events[i]!.seq > above && isTombstone(events[i]!)) return i;
  return -1;
}

function usableSnapshot(kind: ActorKind, history: ActorHistory): ActorHistory['snapshot'] {
  return history.snapshot?.v === kind.version ? history.snapshot : undefined;
}

/**
 * A journal's `read` returns the latest snapshot and the events after it. When that snapshot is
 * of an older version than the kind, replay needs the events under it too: the seq to read
 * them up to, or undefined when the history is enough as it is.
 */
export function needsFullLog(kind: ActorKind, history: ActorHistory): number | undefined {
  const snap = history.snapshot;
  if (!snap || snap.v === kind.version || snap.seq === 0) return undefined;
  // A tombstone after the snapshot: replay starts there, and nothing under it matters.
  if (history.events.some(isTombstone)) return undefined;
  return history.events[0]?.seq === 1 ? undefined : snap.seq;
}

/** Lifts an event of schema version `v` to the kind's current version, one upcaster per step. */
export function upcast(kind: ActorKind, event: unknown, v: number): unknown {
  let e = event;
  for (let version = v; version < kind.version; version++) {
    const up = kind.def.upcasters?.[version];
    if (!up) throw troupeError('ERR_UPCAST', `${kind.kind}: no upcaster from event version ${version}`, { kind: kind.kind, version });
    e = up(e);
  }
  return e;
}
