import { troupeError } from '../core/errors.ts';
import type { ActorHistory, ActorWrite, Journal, RecordedReply, SnapshotRecord, EventRecord } from './journal.ts';

interface Log {
  snapshot?: SnapshotRecord;
  events: EventRecord[];
  lastSeq: number;
  replies: RecordedReply[];
}

/**
 * A journal in this thread's memory: durable for as long as the thread lives, which is enough
 * for an actor restarted after its handler threw, not for a dead worker. States and events are
 * kept by reference (they are immutable by contract), and a snapshot drops the events it covers.
 */
export class MemoryJournal implements Journal {
  private readonly logs = new Map<string, Log>();
  private closed = false;

  constructor(private readonly recentReplies = 128) {}

  write(w: ActorWrite): Promise<void> {
    if (this.closed) return Promise.reject(troupeError('ERR_STOPPED', 'journal is closed'));
    const id = w.kind + '\u0000' + w.key;
    let log = this.logs.get(id);
    const first = w.events[0];
    const lastSeq = log?.lastSeq ?? 0;
    if (first && first.seq !== lastSeq + 1) {
      return Promise.reject(
        troupeError('ERR_JOURNAL_WRITE', `event seq ${first.seq} does not follow ${lastSeq} for ${w.kind}/${w.key}`),
      );
    }
    if (!log) {
      log = { events: [], lastSeq: 0, replies: [] };
      this.logs.set(id, log);
    }
    for (const e of w.events) log.events.push(e);
    if (w.events.length > 0) log.lastSeq = w.events[w.events.length - 1]!.seq;
    if (w.snapshot) {
      log.snapshot = w.snapshot;
      const keepFrom = w.snapshot.seq;
      log.events = log.events.filter((e) => e.seq > keepFrom);
    }
    if (w.replies) {
      for (const r of w.replies) log.replies.push(r);
      if (log.replies.length > this.recentReplies) log.replies.splice(0, log.replies.length - this.recentReplies);
    }
    return Promise.resolve();
  }

  read(kind: string, key: string): Promise<ActorHistory> {
    const log = this.logs.get(kind + '\u0000' + key);
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
