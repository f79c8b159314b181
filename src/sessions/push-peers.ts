import type { PushItem, PushNote } from '../actors/watchers.ts';
import type { Transport } from '../cluster/transport.ts';
import type { Clock, TimerHandle } from '../core/clock.ts';
import { troupeError } from '../core/errors.ts';
import { findForbiddenKey } from '../gateway/forbidden-keys.ts';
import type { SessionHub } from './session-hub.ts';

/**
 * Session traffic between members, over the cluster transport (authenticated like all of it):
 *
 *   [R_PUSH, kind, key, from, to, items, lost]   a watched actor's durable write, primary → watching node ('actor' lane)
 *   [R_CONNS, reqId]                             how many sockets do you hold? ('system' lane)
 *   [R_CONNS_REPLY, reqId, connections, sessions]
 *
 * A push frame that is lost costs nothing but latency: the watching node sees the gap at the next
 * note, or at its next renewal, and reads the pushes back from the log.
 */
export const R_PUSH = 32;
export const R_CONNS = 33;
export const R_CONNS_REPLY = 34;

export interface PushPeersOptions {
  transport: Transport;
  clock: Clock;
  hub: SessionHub;
  /** Address of an up member by id. */
  addressOf: (id: number) => string | undefined;
}

export interface NodeConnections {
  node: number;
  connections?: number;
  sessions?: number;
  error?: string;
}

export class PushPeers {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: NodeConnections) => void; node: number; timer: TimerHandle }>();
  /** Push frames from peers that did not parse (a peer of another version, a bug). */
  dropped = 0;

  constructor(private readonly o: PushPeersOptions) {
    o.transport.onMessage((from, payload) => {
      if (!Array.isArray(payload)) return;
      const type = payload[0];
      if (type === R_PUSH) this.received(payload);
      else if (type === R_CONNS && Number.isSafeInteger(payload[1]))
        o.transport.send(from.address, [R_CONNS_REPLY, payload[1], o.hub.connectionCount, o.hub.sessions().length], 'system');
      else if (type === R_CONNS_REPLY) this.answered(payload);
    });
  }

  /** Sends a note to a watching member; one that is no longer a member is skipped (its lease ends). */
  send(node: number, note: PushNote): void {
    const address = this.o.addressOf(node);
    if (address === undefined) return;
    this.o.transport.send(address, [R_PUSH, note.kind, note.key, note.from, note.to, note.items, note.lost === true], 'actor');
  }

  /** A member's socket and session counts; an unreachable one answers with `error` after `timeoutMs`. */
  connections(node: number, timeoutMs = 1_000): Promise<NodeConnections> {
    const address = this.o.addressOf(node);
    if (address === undefined) return Promise.resolve({ node, error: 'not an up member' });
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = this.o.clock.setTimeout(() => {
        this.pending.delete(id);
        resolve({ node, error: `no answer within ${timeoutMs} ms` });
      }, timeoutMs);
      this.pending.set(id, { resolve, node, timer });
      this.o.transport.send(address, [R_CONNS, id], 'system');
    });
  }

  close(): void {
    for (const [id, p] of this.pending) {
      this.o.clock.clearTimeout(p.timer);
      p.resolve({ node: p.node, error: 'node is stopping' });
      this.pending.delete(id);
    }
  }

  private received(payload: unknown[]): void {
    const [, kind, key, from, to, items, lost] = payload;
    const seq = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= -1;
    if (typeof kind !== 'string' || typeof key !== 'string' || !seq(from) || !seq(to) || !Array.isArray(items) || !items.every(isItem) || findForbiddenKey(items) !== undefined) {
      this.dropped++;
      return;
    }
    this.o.hub.deliver({ kind, key, from: from as number, to: to as number, items: items as PushItem[], ...(lost === true && { lost: true }) });
  }

  private answered(payload: unknown[]): void {
    const [, id, connections, sessions] = payload;
    const p = typeof id === 'number' ? this.pending.get(id) : undefined;
    if (p === undefined) return;
    this.pending.delete(id as number);
    this.o.clock.clearTimeout(p.timer);
    if (!Number.isSafeInteger(connections) || !Number.isSafeInteger(sessions)) return p.resolve({ node: p.node, error: troupeError('ERR_BAD_FRAME', 'bad connection counts').message });
    p.resolve({ node: p.node, connections: connections as number, sessions: sessions as number });
  }
}

function isItem(v: unknown): boolean {
  return typeof v === 'object' && v !== null && Number.isSafeInteger((v as PushItem).seq);
}
