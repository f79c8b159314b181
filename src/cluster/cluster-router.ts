import type { MessageRouter } from '../actors/actor-ref.ts';
import type { AnyMessage, AskOptions } from '../actors/define-actor.ts';
import type { Clock, TimerHandle } from '../core/clock.ts';
import { fromErrorRecord, isTroupeError, toErrorRecord, troupeError, type ErrorRecord, type TroupeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { checkValue } from '../core/value-domain.ts';
import type { MembershipDriver } from './membership-driver.ts';
import { MAX_HOPS, parseRemote, R_ASK, R_REPLY, R_TELL, type RemoteAsk, type RemoteTell } from './remote-protocol.ts';
import { HashRing, type RingMember } from './ring.ts';
import { PartitionTable, partitionOf } from '../replication/partition-table.ts';
import { R_REPL } from '../replication/wire.ts';
import type { PeerIdentity, Transport } from './transport.ts';

/** The node's own actors: what the router hands local work to (the Supervisor). */
export interface LocalActors {
  askRaw(kind: string, key: string, command: string, input: unknown, msgId: string | undefined, timeoutMs: number): Promise<unknown>;
  tell(kind: string, key: string, message: AnyMessage): void;
  /** New ring: workers learn which keys this node owns, to keep same-thread traffic local. */
  placement?(members: readonly RingMember[], selfId: number): void;
}

export interface ClusterRouterOptions {
  transport: Transport;
  membership: MembershipDriver;
  local: LocalActors;
  clock: Clock;
  log: Logger;
  /** Virtual nodes per member on the ring. */
  virtualNodes?: number;
  defaultAskTimeoutMs?: number;
  /** Called with every new ring of up members (and once at construction): replication follows it. */
  onRing?: (ring: HashRing) => void;
  /**
   * Commands that change nothing (`readOnly`): an ask of one in flight to a node that dies may be
   * sent again. Any other ask is resent only with a message id (then a second delivery answers
   * from the recorded reply); without one its outcome is unknown, and it fails with
   * ERR_NODE_UNREACHABLE rather than risk applying it twice.
   */
  isReadOnly?: (kind: string, command: string) => boolean;
}

/** Between resends of an ask its partition's primary refused (ERR_NOT_PRIMARY: nothing was applied), ms. */
export const NOT_PRIMARY_RETRY_MS = 25;

class RemoteAskState {
  timer: TimerHandle | null = null;
  constructor(
    readonly kind: string,
    readonly key: string,
    readonly command: string,
    readonly input: unknown,
    readonly msgId: string | null,
    readonly deadline: number,
    public target: number,
    public targetAddress: string,
    readonly hops: number,
    readonly resolve: (v: unknown) => void,
    readonly reject: (e: TroupeError) => void,
  ) {}
}

export interface RouterStats {
  epoch: number;
  members: number;
  pendingRemote: number;
  sentRemote: number;
  servedRemote: number;
  forwarded: number;
  rerouted: number;
  badPayloads: number;
  deadLetters: number;
}

/**
 * Routes actor messages across the cluster: key → partition → its proposed primary (the hash
 * ring of up members places partitions, see partition-table.ts), local
 * work to this node's supervisor, the rest over the transport's 'actor' lane. Asks in flight to
 * a node that leaves or dies are re-sent to the key's new owner (within their deadline); a
 * payload the transport cannot deliver is rerouted if the owner changed, or fails with
 * ERR_NODE_UNREACHABLE. While rings disagree a request is forwarded at most MAX_HOPS times.
 *
 * The ring epoch grows by one on every change of the up set this node observes.
 */
export class ClusterRouter implements MessageRouter {
  private ring: HashRing;
  private table: PartitionTable;
  /** The ring's members by id: a partition's primary is an id, a request needs its address. */
  private byId: Map<number, RingMember>;
  private epoch = 0;
  private readonly self: PeerIdentity;
  private readonly pending = new Map<number, RemoteAskState>();
  private nextReq = 0;
  private stopped = false;
  private readonly defaultAskTimeoutMs: number;
  private readonly counters = { sentRemote: 0, servedRemote: 0, forwarded: 0, rerouted: 0, badPayloads: 0, deadLetters: 0 };
  private lastWarn = -Infinity;
  private readonly unsubscribe: () => void;

  constructor(private readonly o: ClusterRouterOptions) {
    this.self = o.transport.self;
    this.defaultAskTimeoutMs = o.defaultAskTimeoutMs ?? 5_000;
    this.ring = this.buildRing();
    this.table = new PartitionTable(this.ring);
    this.byId = new Map(this.ring.members.map((m) => [m.id, m]));
    o.transport.onMessage((from, payload, lane) => {
      if (lane === 'actor') this.onPayload(from, payload);
    });
    o.transport.onUndeliverable((address, payload, error) => this.onUndeliverable(address, payload, error));
    this.unsubscribe = o.membership.onMemberChanged((c) => {
      if (c.up !== c.wasUp) this.membershipChanged();
    });
    o.local.placement?.(this.ring.members, this.self.id);
    o.onRing?.(this.ring);
  }

  /** The node that leads the key's partition, as this node's membership proposes it. */
  ownerOf(key: string): RingMember {
    const owner = this.safeOwner(key);
    if (owner === undefined) throw noNodes();
    return owner;
  }

  stats(): RouterStats {
    return { epoch: this.epoch, members: this.ring.size, pendingRemote: this.pending.size, ...this.counters };
  }

  /** Throws ERR_NOT_SERIALIZABLE for an input outside the value domain (it may cross a socket). */
  tell(kind: string, key: string, message: AnyMessage): void {
    const bad = checkValue(message.input, `input of tell to ${kind}/${key} '${message.command}'`);
    if (bad !== null) throw bad;
    this.sendTell(kind, key, message.command, message.input, message.id ?? null, 0);
  }

  ask(kind: string, key: string, message: AnyMessage, options?: AskOptions): Promise<unknown> {
    return this.askRaw(kind, key, message.command, message.input, message.id, options?.timeoutMs ?? this.defaultAskTimeoutMs);
  }

  /**
   * An ask refused with ERR_NOT_PRIMARY (rings disagree for a moment, or the partition's fence
   * moved it: nothing was applied) is resent to the partition's current primary until its
   * deadline.
   */
  askRaw(kind: string, key: string, command: string, input: unknown, msgId: string | undefined, timeoutMs: number): Promise<unknown> {
    const deadline = this.o.clock.now() + timeoutMs;
    const attempt = (): Promise<unknown> =>
      this.askOnce(kind, key, command, input, msgId, Math.max(1, Math.ceil(deadline - this.o.clock.now()))).catch((e: unknown) => {
        if (!isTroupeError(e, 'ERR_NOT_PRIMARY') || this.stopped) throw e;
        if (deadline - this.o.clock.now() <= NOT_PRIMARY_RETRY_MS) throw e;
        this.counters.rerouted++;
        return new Promise<void>((resolve) => this.o.clock.setTimeout(() => resolve(), NOT_PRIMARY_RETRY_MS)).then(attempt);
      });
    return attempt();
  }

  private askOnce(kind: string, key: string, command: string, input: unknown, msgId: string | undefined, timeoutMs: number): Promise<unknown> {
    if (this.stopped) return Promise.reject(troupeError('ERR_STOPPED', 'node is stopping'));
    const owner = this.safeOwner(key);
    if (owner === undefined) return Promise.reject(noNodes());
    if (owner.id === this.self.id) return this.o.local.askRaw(kind, key, command, input, msgId, timeoutMs);
    // Refused here, not by the transport's encoder: that would report the peer unreachable.
    const bad = checkValue(input, `input of ask to ${kind}/${key} '${command}'`);
    if (bad !== null) return Promise.reject(bad);
    return this.askRemote(owner, kind, key, command, input, msgId ?? null, timeoutMs, 0);
  }

  /** Fails what is in flight; the transport and membership are closed by their owner. */
  stop(): void {
    this.stopped = true;
    this.unsubscribe();
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      this.settle(p, false, { code: 'ERR_STOPPED', message: 'node stopped' });
    }
  }

  // ── Sending ─────────────────────────────────────────────────────────────────────────────

  private askRemote(
    owner: RingMember,
    kind: string,
    key: string,
    command: string,
    input: unknown,
    msgId: string | null,
    timeoutMs: number,
    hops: number,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const reqId = ++this.nextReq;
      const deadline = this.o.clock.now() + timeoutMs;
      const p = new RemoteAskState(kind, key, command, input, msgId, deadline, owner.id, owner.address, hops, resolve, reject);
      p.timer = this.o.clock.setTimeout(() => {
        if (this.pending.delete(reqId))
          reject(
            troupeError('ERR_ASK_TIMEOUT', `ask ${kind}/${key} '${command}' timed out after ${timeoutMs} ms (node ${p.target})`, {
              timeoutMs,
              node: p.target,
            }),
          );
      }, timeoutMs);
      this.pending.set(reqId, p);
      this.transmit(reqId, p);
    });
  }

  private transmit(reqId: number, p: RemoteAskState): void {
    const remaining = Math.max(1, Math.ceil(p.deadline - this.o.clock.now()));
    const msg: RemoteAsk = [R_ASK, reqId, p.kind, p.key, p.command, p.input, p.msgId, remaining, p.hops];
    this.counters.sentRemote++;
    this.o.transport.send(p.targetAddress, msg, 'actor');
  }

  private sendTell(kind: string, key: string, command: string, input: unknown, msgId: string | null, hops: number): void {
    const owner = this.safeOwner(key);
    if (owner === undefined) return this.deadLetter(kind, key, command, toErrorRecord(noNodes()));
    if (owner.id === this.self.id) {
      this.o.local.tell(kind, key, msgId === null ? { command, input } : { command, input, id: msgId });
      return;
    }
    const msg: RemoteTell = [R_TELL, kind, key, command, input, msgId, hops];
    this.o.transport.send(owner.address, msg, 'actor');
  }

  // ── Receiving ───────────────────────────────────────────────────────────────────────────

  private onPayload(from: PeerIdentity, payload: unknown): void {
    if (Array.isArray(payload) && payload[0] === R_REPL) return; // replication's, on the same lane
    const p = parseRemote(payload);
    if (p === undefined) {
      this.counters.badPayloads++;
      return this.warn({ from: from.id }, 'malformed actor payload dropped');
    }
    if (p[0] === R_REPLY) {
      const pending = this.pending.get(p[1]);
      if (pending === undefined) return; // timed out, or already answered after a reroute
      this.pending.delete(p[1]);
      return this.settle(pending, p[2], p[3]);
    }
    if (p[0] === R_TELL) {
      const [, kind, key, command, input, msgId, hops] = p;
      const owner = this.safeOwner(key);
      if (owner === undefined || owner.id === this.self.id || hops >= MAX_HOPS) {
        this.o.local.tell(kind, key, msgId === null ? { command, input } : { command, input, id: msgId });
      } else {
        this.counters.forwarded++;
        this.sendTell(kind, key, command, input, msgId, hops + 1);
      }
      return;
    }
    const [, reqId, kind, key, command, input, msgId, timeoutMs, hops] = p;
    const bounded = Math.min(timeoutMs, 10 * this.defaultAskTimeoutMs);
    const reply = (ok: boolean, value: unknown) => this.o.transport.send(from.address, [R_REPLY, reqId, ok, value], 'actor');
    const owner = this.safeOwner(key);
    let work: Promise<unknown>;
    if (owner === undefined || owner.id === this.self.id) {
      this.counters.servedRemote++;
      work = this.o.local.askRaw(kind, key, command, input, msgId ?? undefined, bounded);
    } else if (hops < MAX_HOPS) {
      // Our ring says someone else owns the key: pass it on rather than activate a second copy.
      this.counters.forwarded++;
      work = this.askRemote(owner, kind, key, command, input, msgId, bounded, hops + 1);
    } else {
      work = Promise.reject(
        troupeError('ERR_NOT_OWNER', `node ${this.self.id} does not own ${kind}/${key} and the hop limit is reached`, {
          node: this.self.id,
        }),
      );
    }
    work.then(
      (v) => {
        // Workers check their replies; this keeps any other value from failing in the encoder,
        // where the asker would only see its deadline pass.
        const bad = checkValue(v, `reply of ${kind}/${key} '${command}'`);
        reply(bad === null, bad === null ? v : toErrorRecord(bad));
      },
      (e: unknown) => reply(false, toErrorRecord(e)),
    );
  }

  private onUndeliverable(address: string, payload: unknown, error: Error): void {
    const p = parseRemote(payload);
    if (p === undefined) return;
    if (p[0] === R_ASK) {
      const pending = this.pending.get(p[1]);
      if (pending === undefined || pending.targetAddress !== address) return;
      const owner = this.safeOwner(pending.key);
      // Never delivered: safe to send to the key's owner now (the same address too, when the
      // peer restarted and the frames queued for its old process were dropped).
      const restarted = (error as TroupeError).details?.restarted === true;
      if (owner !== undefined && (owner.address !== address || restarted)) return this.reroute(p[1], pending, owner);
      this.pending.delete(p[1]);
      const code = (error as TroupeError).code ?? 'ERR_NODE_UNREACHABLE';
      if (code === 'ERR_BAD_FRAME') {
        // The encoder refused the input: the peer is fine, the ask is not.
        return this.settle(pending, false, {
          code: 'ERR_NOT_SERIALIZABLE',
          message: `input of ask to ${pending.kind}/${pending.key} '${pending.command}' cannot be sent: ${error.message}`,
        });
      }
      return this.settle(pending, false, {
        code: code === 'ERR_STOPPED' ? 'ERR_NODE_UNREACHABLE' : code,
        message: `node ${pending.target} at ${address} is unreachable: ${error.message}`,
      });
    }
    if (p[0] === R_TELL) {
      const [, kind, key, command, input, msgId, hops] = p;
      const owner = this.safeOwner(key);
      if (owner !== undefined && owner.address !== address && hops < MAX_HOPS)
        return this.sendTell(kind, key, command, input, msgId, hops + 1);
      return this.deadLetter(kind, key, command, { code: 'ERR_NODE_UNREACHABLE', message: error.message });
    }
    const code = (error as TroupeError).code;
    if (p[0] === R_REPLY && (code === 'ERR_BAD_FRAME' || code === 'ERR_FRAME_TOO_LARGE')) {
      // The reply itself cannot be encoded: its asker gets that error rather than a timeout.
      // (A few plain strings: this one always encodes, so it cannot come back here.)
      const failed: ErrorRecord = {
        code: code === 'ERR_BAD_FRAME' ? 'ERR_NOT_SERIALIZABLE' : code,
        message: `reply to request ${p[1]} cannot be sent: ${error.message}`,
      };
      return this.o.transport.send(address, [R_REPLY, p[1], false, failed], 'actor');
    }
    this.warn({ address, err: error }, 'reply could not be delivered');
  }

  // ── Membership ──────────────────────────────────────────────────────────────────────────

  private membershipChanged(): void {
    this.ring = this.buildRing();
    this.table = new PartitionTable(this.ring);
    this.byId = new Map(this.ring.members.map((m) => [m.id, m]));
    this.o.onRing?.(this.ring);
    this.o.log.info({ epoch: this.epoch, members: this.ring.members.map((m) => m.id) }, 'ring changed');
    this.o.local.placement?.(this.ring.members, this.self.id);
    // Asks waiting on a node that left the ring: the node may have applied them before it died
    // (committed on W replicas, then gone before its reply left). Only what is safe to deliver
    // twice goes to the key's new owner.
    for (const [reqId, p] of this.pending) {
      if (this.ring.has(p.target)) continue;
      if (p.msgId === null && !(this.o.isReadOnly?.(p.kind, p.command) ?? false)) {
        this.pending.delete(reqId);
        this.settle(p, false, {
          code: 'ERR_NODE_UNREACHABLE',
          message: `node ${p.target} left the cluster with ask ${p.kind}/${p.key} '${p.command}' in flight: it may or may not have been applied (send an idempotency key to make retries safe)`,
          details: { node: p.target, outcome: 'unknown' },
        });
        continue;
      }
      const owner = this.safeOwner(p.key);
      if (owner === undefined) continue; // no nodes: the deadline will answer
      this.reroute(reqId, p, owner);
    }
  }

  private reroute(reqId: number, p: RemoteAskState, owner: RingMember): void {
    this.counters.rerouted++;
    if (owner.id === this.self.id) {
      this.pending.delete(reqId);
      const remaining = Math.max(1, Math.ceil(p.deadline - this.o.clock.now()));
      this.o.local.askRaw(p.kind, p.key, p.command, p.input, p.msgId ?? undefined, remaining).then(
        (v) => this.settle(p, true, v),
        (e: unknown) => this.settle(p, false, toErrorRecord(e)),
      );
      return;
    }
    p.target = owner.id;
    p.targetAddress = owner.address;
    this.transmit(reqId, p);
  }

  private buildRing(): HashRing {
    return new HashRing(this.o.membership.upMembers(), {
      epoch: ++this.epoch,
      ...(this.o.virtualNodes !== undefined && { virtualNodes: this.o.virtualNodes }),
    });
  }

  /** The key's owner, or undefined while no node is up (this node has left, or not joined). */
  private safeOwner(key: string): RingMember | undefined {
    if (this.ring.size === 0) return undefined;
    const id = this.table.primaryOf(partitionOf(key, this.table.partitions));
    return id === undefined ? undefined : this.byId.get(id);
  }

  private settle(p: RemoteAskState, ok: boolean, value: unknown): void {
    if (p.timer !== null) this.o.clock.clearTimeout(p.timer);
    if (ok) p.resolve(value);
    else p.reject(fromErrorRecord(value as ErrorRecord));
  }

  private deadLetter(kind: string, key: string, command: string, error: ErrorRecord): void {
    this.counters.deadLetters++;
    this.warn({ kind, key, command, code: error.code }, `dead letter: ${error.message}`);
  }

  /** At most one warning a second: a misbehaving peer must not flood the log. */
  private warn(obj: object, msg: string): void {
    const now = this.o.clock.now();
    if (now - this.lastWarn < 1_000) return;
    this.lastWarn = now;
    this.o.log.warn(obj, msg);
  }
}

function noNodes() {
  return troupeError('ERR_NO_NODES', 'no node is up in the cluster to own this key');
}
