import { troupeError } from '../core/errors.ts';
import type { ActorHistory, ActorWrite, EventRecord, Journal, RecordedReply, SnapshotRecord } from './journal.ts';

interface Log {
  snapshot?: SnapshotRecord;
  events: EventRecord[];
  lastSeq: number;
  replies: RecordedReply[];
}

const resolved = Promise.resolve();

/**
 * A journal in this thread's memory: durable for as long as the thread lives, which is enough
 * for an actor restarted after its handler threw, not for a dead worker. States and events are
 * kept by reference (they are immutable by contract), and a snapshot drops the events it covers;
 * a write that carries its resulting state (`latest`) is kept as that state alone.
 */
export class MemoryJournal implements Journal {
  private readonly logs = new Map<string, Map<string, Log>>();
  private closed = false;

  constructor(private readonly recentReplies = 128) {}

  write(w: ActorWrite): Promise<void> {
    const error = this.apply(w);
    return error === null ? resolved : Promise.reject(error);
  }

  private apply(w: ActorWrite): Error | null {
    if (this.closed) return troupeError('ERR_STOPPED', 'journal is closed');
    let byKey = this.logs.get(w.kind);
    if (byKey === undefined) this.logs.set(w.kind, (byKey = new Map()));
    let log = byKey.get(w.key);
    const lastSeq = log?.lastSeq ?? 0;
    const events = w.events;
    for (let i = 0; i < events.length; i++) {
      if (events[i]!.seq !== lastSeq + 1 + i) {
        return troupeError('ERR_JOURNAL_WRITE', `event seq ${events[i]!.seq} does not follow ${lastSeq + i} for ${w.kind}/${w.key}`);
      }
    }
    const newLast = lastSeq + events.length;
    if (w.snapshot && w.snapshot.seq > newLast) {
      return troupeError('ERR_JOURNAL_WRITE', `snapshot seq ${w.snapshot.seq} is past the last event ${newLast} for ${w.kind}/${w.key}`);
    }
    if (log === undefined) byKey.set(w.key, (log = { snapshot: undefined, events: [], lastSeq: 0, replies: [] }));
    log.lastSeq = newLast;
    const snapshot = w.latest !== undefined && w.latest.seq === newLast ? w.latest : w.snapshot;
    if (snapshot !== undefined && snapshot.seq === newLast) {
      // The state at the latest seq stands for every event: keep it, not the events.
      log.snapshot = snapshot;
      if (log.events.length > 0) log.events = [];
    } else {
      for (let i = 0; i < events.length; i++) log.events.push(events[i]!);
      if (snapshot !== undefined) {
        log.snapshot = snapshot;
        log.events = log.events.filter((e) => e.seq > snapshot.seq);
      }
    }
    if (w.replies) {
      for (const r of w.replies) log.replies.push(r);
      if (log.replies.length > this.recentReplies) log.replies.splice(0, log.replies.length - this.recentReplies);
    }
    return null;
  }

  writeMany(writes: readonly ActorWrite[]): Promise<Array<Error | null>> {
    const results = new Array<Error | null>(writes.length);
    for (let i = 0; i < writes.length; i++) results[i] = this.apply(writes[i]!);
    return Promise.resolve(results);
  }

  read(kind: string, key: string): Promise<ActorHistory> {
    const log = this.logs.get(kind)?.get(key);
    if (!log) return Promise.resolve({ events: [], replies: [] });
    const history: ActorHistory = { events: log.events.slice(), replies: log.replies.slice() };
    if (log.snapshot) history.snapshot = log.snapshot;
    return Promise.resolve(history);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}
