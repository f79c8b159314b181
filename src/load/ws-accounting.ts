/**
 * What the WebSocket load driver saw, session by session, and what must hold of it: every
 * acknowledged ask's push arrived exactly once, in log order, none arrived for an ask never sent,
 * and no stretch of the log was reported gone. Pure: every method takes `now` (ms), so a test
 * replays a script of frames without sockets or a clock.
 *
 * The driver asks `say` with the ask's id as the text, so the push the room sends back names
 * the ask it came from (`msg.text`).
 *
 * @example
 *   const a = new WsAccounting();
 *   a.sent('room-1', 'a1', 0);
 *   a.replied('room-1', 'a1', true, 1);                               // → 1 (round trip, ms)
 *   a.pushed('room-1', 5, { n: 1, text: 'a1' }, 1.2);                // → 'delivered'
 *   a.violations();                                                   // []
 */
import { LatencyHistogram } from './latency-histogram.ts';

/** One session's asks and pushes. */
interface SessionTally {
  /** Asks sent and not answered yet: id → when. */
  waiting: Map<string, number>;
  /** Acknowledged asks whose push has not arrived: id → when the ask was sent. */
  unpushed: Map<string, number>;
  /** Ids of pushes delivered before their reply (the push took the faster road). */
  early: Set<string>;
  /** Every ask id sent, to tell an orphan push from a late one. */
  sentIds: Set<string>;
  /** Ids whose push arrived. */
  pushedIds: Set<string>;
  /** Highest push seq delivered: what the driver acks. */
  lastSeq: number;
  /** The room's count in the last push (strictly increasing). */
  lastN: number;
}

export type PushOutcome = 'delivered' | 'duplicate';

export class WsAccounting {
  private readonly sessions = new Map<string, SessionTally>();
  /** Ask sent → reply, ms (acknowledged asks only). */
  readonly roundTrip = new LatencyHistogram();
  /**
   * Ask sent → its push, ms. Measured from the send, not the reply: the push often overtakes the
   * reply (both leave once the write is durable), so reply → push is mostly negative.
   */
  readonly pushLatency = new LatencyHistogram();
  asks = 0;
  acknowledged = 0;
  refused = 0;
  /** Refusals by error code. */
  readonly refusals: Record<string, number> = {};
  pushes = 0;
  /** Pushes that came before their ask's reply. */
  pushesBeforeReply = 0;
  /** Pushes at or below the session's last seq: redelivered, dropped as the protocol says. */
  duplicates = 0;
  private readonly problems: string[] = [];

  private tally(key: string): SessionTally {
    let t = this.sessions.get(key);
    if (t === undefined)
      this.sessions.set(key, (t = { waiting: new Map(), unpushed: new Map(), early: new Set(), sentIds: new Set(), pushedIds: new Set(), lastSeq: 0, lastN: 0 }));
    return t;
  }

  sent(key: string, id: string, now: number): void {
    const t = this.tally(key);
    t.waiting.set(id, now);
    t.sentIds.add(id);
    this.asks++;
  }

  /** A reply to ask `id`; the round trip in ms, or undefined for a reply to no ask in flight. */
  replied(key: string, id: string, ok: boolean, now: number, code?: string): number | undefined {
    const t = this.tally(key);
    const sentAt = t.waiting.get(id);
    if (sentAt === undefined) {
      this.problems.push(`${key}: a reply to ask ${id}, which is not in flight`);
      return undefined;
    }
    t.waiting.delete(id);
    if (!ok) {
      this.refused++;
      const c = code ?? 'unknown';
      this.refusals[c] = (this.refusals[c] ?? 0) + 1;
      return now - sentAt;
    }
    this.acknowledged++;
    this.roundTrip.record(now - sentAt);
    if (t.early.delete(id)) this.pushesBeforeReply++;
    else t.unpushed.set(id, sentAt);
    return now - sentAt;
  }

  /** A push frame; `msg.text` names the ask it came from. Returns whether to deliver or drop it. */
  pushed(key: string, seq: number, msg: unknown, now: number): PushOutcome {
    const t = this.tally(key);
    if (seq <= t.lastSeq) {
      this.duplicates++;
      return 'duplicate';
    }
    t.lastSeq = seq;
    this.pushes++;
    const m = (msg ?? {}) as { n?: unknown; text?: unknown };
    const id = typeof m.text === 'string' ? m.text : undefined;
    if (typeof m.n === 'number') {
      if (m.n <= t.lastN) this.problems.push(`${key}: push seq ${seq} carries count ${m.n}, not above the previous ${t.lastN}`);
      t.lastN = m.n;
    }
    if (id === undefined || !t.sentIds.has(id)) {
      this.problems.push(`${key}: push seq ${seq} for no ask this driver sent (${JSON.stringify(m.text)?.slice(0, 40)})`);
      return 'delivered';
    }
    if (t.pushedIds.has(id)) {
      this.problems.push(`${key}: a second push for ask ${id} (seq ${seq})`);
      return 'delivered';
    }
    t.pushedIds.add(id);
    const sentAt = t.unpushed.get(id) ?? t.waiting.get(id);
    if (sentAt !== undefined) this.pushLatency.record(now - sentAt);
    if (!t.unpushed.delete(id) && t.waiting.has(id)) t.early.add(id);
    return 'delivered';
  }

  /** The log no longer holds (from, to]: pushes there are lost to this session. */
  gap(key: string, from: number, to: number): void {
    this.problems.push(`${key}: the node reported pushes (${from}, ${to}] gone`);
  }

  /** The seq to ack for `key`: every push up to it arrived. */
  lastSeq(key: string): number {
    return this.sessions.get(key)?.lastSeq ?? 0;
  }

  /** Asks not answered yet, over every session. */
  get inFlight(): number {
    let n = 0;
    for (const t of this.sessions.values()) n += t.waiting.size;
    return n;
  }

  /** Acknowledged asks whose push has not arrived yet. */
  get pushesDue(): number {
    let n = 0;
    for (const t of this.sessions.values()) n += t.unpushed.size;
    return n;
  }

  /** Everything that must not happen; call once the run has drained. Empty: all consistent. */
  violations(): string[] {
    const out = [...this.problems];
    for (const [key, t] of this.sessions)
      for (const id of t.unpushed.keys()) out.push(`${key}: ask ${id} was acknowledged but its push never arrived`);
    return out;
  }
}
