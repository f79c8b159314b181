import { troupeError, type TroupeError } from '../core/errors.ts';
import type { EventRecord } from '../persistence/journal.ts';
import { pushOf } from './system-records.ts';

/** One push as it leaves the actor's host: its seq in the actor's log, and the message. */
export interface PushItem {
  seq: number;
  msg: unknown;
}

/**
 * The pushes of one durable stretch of an actor's log, `(from, to]`: every push record with a seq
 * in it is in `items`, ascending. A subscriber that has seen the log up to `from` (or beyond)
 * has seen everything before `to` once it takes these; one that has seen less has a gap, and
 * reads it (`$watch` with its position) instead of guessing.
 */
export interface PushNote {
  kind: string;
  key: string;
  from: number;
  to: number;
  items: PushItem[];
  /** The log no longer holds every record after `from` (truncated): pushes in between are gone. */
  lost?: boolean;
}

/** A node watching an actor: it holds `connections` WebSocket clients of it, until its lease ends. */
export interface Watcher {
  node: number;
  connections: number;
  until: number;
}

export const watchLimits = {
  leaseMs: 15_000, // a watcher not renewed in this long is dropped (its node died, or its clients left)
  maxPage: 1_000, // log records read per $watch
  maxWatchersPerActor: 1_024, // nodes: a cluster has at most 1,024 ids
};

/**
 * Which nodes watch which actors of one host, by lease: a node's session hub renews its watch
 * every few seconds (a heartbeat), and a watcher whose lease ran out is gone. Kept beside the
 * actors, not in them, so a watched actor may passivate and come back without losing its
 * watchers. Empty and untouched (one `size` check per durable write) when nothing watches.
 */
export class Watchers {
  private readonly byActor = new Map<string, Map<number, Watcher>>();

  get size(): number {
    return this.byActor.size;
  }

  watch(kind: string, key: string, node: number, connections: number, now: number): void {
    const id = actorId(kind, key);
    let nodes = this.byActor.get(id);
    if (nodes === undefined) this.byActor.set(id, (nodes = new Map()));
    if (connections === 0) {
      nodes.delete(node);
      if (nodes.size === 0) this.byActor.delete(id);
      return;
    }
    if (!nodes.has(node) && nodes.size >= watchLimits.maxWatchersPerActor) return;
    nodes.set(node, { node, connections, until: now + watchLimits.leaseMs });
  }

  /** The nodes watching (kind, key) now; expired leases are dropped on the way. */
  nodes(kind: string, key: string, now: number): number[] | undefined {
    const live = this.live(kind, key, now);
    return live === undefined ? undefined : [...live.keys()];
  }

  list(kind: string, key: string, now: number): Array<{ node: number; connections: number; expiresInMs: number }> {
    const live = this.live(kind, key, now);
    return live === undefined ? [] : [...live.values()].map((w) => ({ node: w.node, connections: w.connections, expiresInMs: w.until - now }));
  }

  private live(kind: string, key: string, now: number): Map<number, Watcher> | undefined {
    const id = actorId(kind, key);
    const nodes = this.byActor.get(id);
    if (nodes === undefined) return undefined;
    for (const [node, w] of nodes) if (w.until <= now) nodes.delete(node);
    if (nodes.size === 0) {
      this.byActor.delete(id);
      return undefined;
    }
    return nodes;
  }
}

/** The pushes among `events` (one write's, or a page read back), ascending. */
export function pushItems(events: readonly EventRecord[]): PushItem[] {
  const items: PushItem[] = [];
  for (const e of events) {
    const msg = pushOf(e);
    if (msg !== undefined) items.push({ seq: e.seq, msg });
  }
  return items;
}

/** `$watch`'s input, checked: it comes over a port or from another node. */
export interface WatchRequest {
  node: number;
  connections: number;
  /** The log position the watcher has seen; -1: none, it wants what comes from now on. */
  from: number;
  max: number;
}

export function parseWatch(input: unknown): WatchRequest {
  const o = (input ?? {}) as Record<string, unknown>;
  const int = (v: unknown, min: number, max: number) => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
  if (!int(o.node, 0, 1023) || !int(o.connections, 0, 1_000_000) || !int(o.from, -1, Number.MAX_SAFE_INTEGER) || !int(o.max, 1, watchLimits.maxPage))
    throw troupeError('ERR_INVALID_INPUT', '$watch takes { node: 0..1023, connections ≥ 0, from ≥ -1, max: 1..1000 }');
  return o as unknown as WatchRequest;
}

/** Reserved commands ('$…') are the runtime's: user command names cannot start with '$'. */
export function isReserved(command: string): boolean {
  return command.charCodeAt(0) === 36;
}

/** A reserved command sent through an app's API (a handler's ctx, `node.ask`): refused, named. */
export function reservedCommand(kind: string, command: string): TroupeError {
  return troupeError('ERR_UNKNOWN_COMMAND', `'${command}' of '${kind}' is reserved for the runtime; apps cannot send it`, { kind, command });
}

/** One string per actor, for maps keyed by (kind, key). */
export function actorId(kind: string, key: string): string {
  return `${kind}\u0000${key}`;
}
