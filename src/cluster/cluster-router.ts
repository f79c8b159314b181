import type { MessageRouter } from '../actors/actor-ref.ts';
import type { AnyMessage, AskOptions } from '../actors/define-actor.ts';
import type { Clock, TimerHandle } from '../core/clock.ts';
import { fromErrorRecord, invalidOption, isTroupeError, toErrorRecord, troupeError, type ErrorRecord, type TroupeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { checkValue } from '../core/value-domain.ts';
import type { MembershipDriver } from './membership-driver.ts';
import { isUp } from './membership.ts';
import { ReplayWindow } from './replay-window.ts';
import { MAX_HOPS, parseRemote, R_ASK, R_REPLY, R_TELL, type RemoteAsk, type RemoteTell } from './remote-protocol.ts';
import { HashRing, type RingMember } from './ring.ts';
import { PartitionTable, partitionOf } from '../replication/partition-table.ts';
import { R_REPL } from '../replication/wire.ts';
import { HANDOFF_HOPS } from '../replication/handoff.ts';
import { formatTokens, fromWireToken, mergeTokens, parseTokens, toWireToken, type Token, type TokenExchange } from '../replication/token.ts';
import type { PeerIdentity, Transport } from './transport.ts';

/** The node's own actors: what the router hands local work to (the Supervisor). */
export interface LocalActors {
  /** `rw` (read-your-writes tokens) is the router's business: local actors ignore it. */
  askRaw(kind: string, key: string, command: string, input: unknown, msgId: string | undefined, timeoutMs: number, rw?: TokenExchange): Promise<unknown>;
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
  /**
   * Read-your-writes (the replication driver, when the node replicates): the token of a reply
   * served here, and the wait a request bringing a token does before it is served here.
   */
  tokens?: TokenService;
  /**
   * Handoff (replication/handoff.ts): while this node learns a partition it is now proposed for,
   * the node that still serves it; requests for the partition go there (flagged HANDOFF_HOPS).
   */
  handoffTarget?: (p: number) => { id: number; address: string } | undefined;
}

/** What the router needs of replication for read-your-writes tokens (ReplicationDriver has both). */
export interface TokenService {
  tokenOf(kind: string, key: string): Token | undefined;
  awaitToken(token: Token, timeoutMs: number): Promise<void>;
}

/** A reply inside the router: the value and, from a replicated partition, its token. */
interface Reply {
  value: unknown;
  token?: Token;
}

/** Between resends of an ask its partition's primary refused (ERR_NOT_PRIMARY: nothing was applied), ms. */
export const NOT_PRIMARY_RETRY_MS = 25;

/** One ask as the router's steps hand it on (serve here, send, forward, reroute); the wire packs it flat (`RemoteAsk`). */
interface RoutedAsk {
  readonly kind: string;
  readonly key: string;
  readonly command: string;
  readonly input: unknown;
  /** Its idempotency key; null: none (as on the wire). */
  readonly msgId: string | null;
  /** The caller's token for the key's partition: travels with every (re)send. */
  readonly token: Token | undefined;
}

class RemoteAskState {
  timer: TimerHandle | null = null;
  /** Its request id now: a reroute sends it under a new one (the receiver drops a reused id as a copy). */
  reqId = 0;
  constructor(
    readonly ask: RoutedAsk,
    readonly deadline: number,
    public target: number,
    public targetAddress: string,
    readonly hops: number,
    readonly resolve: (v: Reply) => void,
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
  /** Asks and tells received twice from one sender (a duplicated or replayed frame): delivered once. */
  duplicateAsks: number;
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
  private readonly counters = { sentRemote: 0, servedRemote: 0, forwarded: 0, rerouted: 0, badPayloads: 0, deadLetters: 0, duplicateAsks: 0 };
  /** Per sender node: its life's incarnation and the ask ids it has sent us (replay-window.ts). */
  private readonly askIds = new Map<number, { incarnation: number; window: ReplayWindow }>();
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
      // A cordoned member is off the ring already; its death still fails what waits on it.
      if (c.up !== c.wasUp || (c.member.cordoned === true && c.previous !== c.member.status)) this.membershipChanged();
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

  /**
   * With `options.token` (a token set from an earlier reply) the ask is served only from state
   * covering it; `options.onToken` receives the reply's token merged into that set.
   *
   * @example
   *   let token: string | undefined;
   *   await router.ask('counter', 'k1', { command: 'incr' }, { onToken: (t) => (token = t) });
   *   await router.ask('counter', 'k1', { command: 'get' }, { token, onToken: (t) => (token = t) }); // sees the incr
   */
  ask(kind: string, key: string, message: AnyMessage, options?: AskOptions): Promise<unknown> {
    const timeoutMs = options?.timeoutMs ?? this.defaultAskTimeoutMs;
    if (options?.token === undefined && options?.onToken === undefined) return this.askRaw(kind, key, message.command, message.input, message.id, timeoutMs);
    let tokens: ReadonlyMap<number, Token>;
    try {
      tokens = options.token === undefined ? new Map() : parseTokens(options.token, this.table.partitions, 'options.token');
    } catch (e) {
      return Promise.reject(e);
    }
    const onToken = options.onToken;
    const rw: TokenExchange = { tokens, ...(onToken && { onToken: (t: Token) => onToken(formatTokens(mergeTokens(tokens, t))) }) };
    return this.askRaw(kind, key, message.command, message.input, message.id, timeoutMs, rw);
  }

  /**
   * An ask refused with ERR_NOT_PRIMARY or ERR_NOT_OWNER (rings disagree for a moment, or the
   * partition's fence moved it: nothing was applied) is resent to the partition's current primary
   * until its deadline.
   */
  askRaw(
    kind: string,
    key: string,
    command: string,
    input: unknown,
    msgId: string | undefined,
    timeoutMs: number,
    rw?: TokenExchange,
  ): Promise<unknown> {
    const deadline = this.o.clock.now() + timeoutMs;
    const ask: RoutedAsk = { kind, key, command, input, msgId: msgId ?? null, token: rw?.tokens?.get(partitionOf(key, this.table.partitions)) };
    const attempt = (): Promise<unknown> =>
      this.askOnce(ask, Math.max(1, Math.ceil(deadline - this.o.clock.now()))).then((reply) => {
        if (reply.token !== undefined) rw?.onToken?.(reply.token);
        return reply.value;
      }, (e: unknown) => {
        // ERR_NOT_OWNER too: the rings of the nodes on the way disagreed for a moment (a drain's
        // leave spreading) and the hop limit was reached before serving — nothing was applied
        // (session 7's fresh-clone CI saw two asks end with it during handoff-process' drain).
        if (!(isTroupeError(e, 'ERR_NOT_PRIMARY') || isTroupeError(e, 'ERR_NOT_OWNER')) || this.stopped) throw e;
        if (deadline - this.o.clock.now() <= NOT_PRIMARY_RETRY_MS) throw e;
        this.counters.rerouted++;
        return new Promise<void>((resolve) => this.o.clock.setTimeout(() => resolve(), NOT_PRIMARY_RETRY_MS)).then(attempt);
      });
    return attempt();
  }

  private askOnce(ask: RoutedAsk, timeoutMs: number): Promise<Reply> {
    const { kind, key, command, input } = ask;
    if (this.stopped) return Promise.reject(troupeError('ERR_STOPPED', 'node is stopping'));
    let owner = this.safeOwner(key);
    let hops = 0;
    if (owner === undefined) return Promise.reject(noNodes());
    if (owner.id === this.self.id) {
      const via = this.handoffVia(key);
      if (via === undefined) return this.serveLocal(ask, timeoutMs);
      owner = via; // learning: the old primary serves it meanwhile
      hops = HANDOFF_HOPS;
    }
    // Refused here, not by the transport's encoder: that would report the peer unreachable.
    const bad = checkValue(input, `input of ask to ${kind}/${key} '${command}'`);
    if (bad !== null) return Promise.reject(bad);
    return this.askRemote(owner, ask, timeoutMs, hops);
  }

  /** The node serving the key's partition while this node (its proposed primary) learns it, if any. */
  private handoffVia(key: string): RingMember | undefined {
    return this.o.handoffTarget?.(partitionOf(key, this.table.partitions));
  }

  /**
   * An ask this node serves. A token first waits until the partition's state here covers it (or
   * is refused: ERR_NOT_PRIMARY, which the asker's router resends, or ERR_TOKEN_LOST). The
   * reply's token is taken as the reply is produced: it left only after its write settled, so
   * the partition's position now covers it (no token crosses the worker port).
   */
  private serveLocal({ kind, key, command, input, msgId: id, token }: RoutedAsk, timeoutMs: number): Promise<Reply> {
    const msgId = id ?? undefined;
    const tokens = this.o.tokens;
    if (tokens === undefined) return this.o.local.askRaw(kind, key, command, input, msgId, timeoutMs).then((value) => ({ value }));
    const deadline = this.o.clock.now() + timeoutMs;
    const ask = () => this.o.local.askRaw(kind, key, command, input, msgId, Math.max(1, Math.ceil(deadline - this.o.clock.now())));
    const work = token === undefined ? ask() : tokens.awaitToken(token, timeoutMs).then(ask);
    return work.then((value) => {
      const t = tokens.tokenOf(kind, key);
      return t === undefined ? { value } : { value, token: t };
    });
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

  private askRemote(owner: RingMember, ask: RoutedAsk, timeoutMs: number, hops: number): Promise<Reply> {
    const { kind, key, command } = ask;
    return new Promise((resolve, reject) => {
      const reqId = ++this.nextReq;
      const deadline = this.o.clock.now() + timeoutMs;
      const p = new RemoteAskState(ask, deadline, owner.id, owner.address, hops, resolve, reject);
      p.reqId = reqId;
      p.timer = this.o.clock.setTimeout(() => {
        if (this.pending.delete(p.reqId))
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
    const { kind, key, command, input, msgId, token } = p.ask;
    const msg: RemoteAsk =
      token === undefined
        ? [R_ASK, reqId, kind, key, command, input, msgId, remaining, p.hops]
        : [R_ASK, reqId, kind, key, command, input, msgId, remaining, p.hops, toWireToken(token)];
    this.counters.sentRemote++;
    this.o.transport.send(p.targetAddress, msg, 'actor');
  }

  private sendTell(kind: string, key: string, command: string, input: unknown, msgId: string | null, hops: number): void {
    const owner = this.safeOwner(key);
    if (owner === undefined) return this.deadLetter(kind, key, command, toErrorRecord(noNodes()));
    if (owner.id === this.self.id) {
      const via = this.handoffVia(key);
      if (via !== undefined) return void this.o.transport.send(via.address, [R_TELL, kind, key, command, input, msgId, HANDOFF_HOPS, ++this.nextReq], 'actor');
      this.o.local.tell(kind, key, msgId === null ? { command, input } : { command, input, id: msgId });
      return;
    }
    const msg: RemoteTell = [R_TELL, kind, key, command, input, msgId, hops, ++this.nextReq];
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
      const token = p[4] === undefined ? undefined : fromWireToken(p[4], this.table.partitions);
      return this.settle(pending, p[2], p[3], token);
    }
    if (p[0] === R_TELL) {
      const [, kind, key, command, input, msgId, hops, sendId] = p;
      // As for asks: a second copy (a duplicated or replayed frame) would apply a tell twice.
      if (sendId !== undefined && !this.firstCopy(from, sendId)) {
        this.counters.duplicateAsks++;
        return this.warn({ from: from.id, sendId }, 'a second copy of a forwarded tell dropped');
      }
      const owner = this.safeOwner(key);
      const via = owner?.id === this.self.id && hops < HANDOFF_HOPS ? this.handoffVia(key) : undefined;
      if (via !== undefined) {
        this.o.transport.send(via.address, [R_TELL, kind, key, command, input, msgId, HANDOFF_HOPS, ++this.nextReq], 'actor');
      } else if (owner === undefined || owner.id === this.self.id || hops >= MAX_HOPS) {
        this.o.local.tell(kind, key, msgId === null ? { command, input } : { command, input, id: msgId });
      } else {
        this.counters.forwarded++;
        this.sendTell(kind, key, command, input, msgId, hops + 1);
      }
      return;
    }
    const [, reqId, kind, key, command, input, msgId, timeoutMs, hops, wireToken] = p;
    // A copy of an ask already taken (a duplicated or replayed frame) is dropped: the first
    // copy's reply answers the sender, and a second run could apply it twice (scenario 8).
    if (!this.firstCopy(from, reqId)) {
      this.counters.duplicateAsks++;
      return this.warn({ from: from.id, reqId }, 'a second copy of a forwarded ask dropped');
    }
    const bounded = Math.min(timeoutMs, 10 * this.defaultAskTimeoutMs);
    const reply = (ok: boolean, value: unknown, token?: Token) =>
      this.o.transport.send(from.address, token === undefined ? [R_REPLY, reqId, ok, value] : [R_REPLY, reqId, ok, value, toWireToken(token)], 'actor');
    const token = wireToken === undefined ? undefined : fromWireToken(wireToken, this.table.partitions);
    const ask = (): RoutedAsk => ({ kind, key, command, input, msgId, token });
    const owner = this.safeOwner(key);
    const via = owner?.id === this.self.id && hops < HANDOFF_HOPS ? this.handoffVia(key) : undefined;
    let work: Promise<Reply>;
    if (wireToken !== undefined && token === undefined) {
      // Served without its token it could answer older state than the client saw: refuse.
      work = Promise.reject(invalidOption(`token of ask ${kind}/${key}`, `must name one of ${this.table.partitions} partitions`, wireToken));
    } else if (via !== undefined) {
      // Learning this partition: its old primary serves it meanwhile. Only a request sent here
      // directly goes on (two hops at most); one forwarded here already is refused, and resent.
      this.counters.forwarded++;
      work =
        hops === 0
          ? this.askRemote(via, ask(), bounded, HANDOFF_HOPS)
          : Promise.reject(troupeError('ERR_NOT_PRIMARY', `node ${this.self.id} is learning ${kind}/${key}'s partition from node ${via.id}`, { node: this.self.id }));
    } else if (owner === undefined || owner.id === this.self.id || hops >= HANDOFF_HOPS) {
      // HANDOFF_HOPS: this node's successor is learning the partition; served here, never forwarded.
      this.counters.servedRemote++;
      work = this.serveLocal(ask(), bounded);
    } else if (hops < MAX_HOPS) {
      // Our ring says someone else owns the key: pass it on rather than activate a second copy.
      this.counters.forwarded++;
      work = this.askRemote(owner, ask(), bounded, hops + 1);
    } else {
      work = Promise.reject(
        troupeError('ERR_NOT_OWNER', `node ${this.self.id} does not own ${kind}/${key} and the hop limit is reached`, {
          node: this.self.id,
        }),
      );
    }
    work.then(
      ({ value: v, token: t }) => {
        // Workers check their replies; this keeps any other value from failing in the encoder,
        // where the asker would only see its deadline pass.
        const bad = checkValue(v, `reply of ${kind}/${key} '${command}'`);
        if (bad === null) reply(true, v, t);
        else reply(false, toErrorRecord(bad));
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
      const owner = this.safeOwner(pending.ask.key);
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
          message: `input of ask to ${pending.ask.kind}/${pending.ask.key} '${pending.ask.command}' cannot be sent: ${error.message}`,
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

  /** Whether this ask id (or tell sendId) is new from that sender's life (one counter per router life). */
  private firstCopy(from: PeerIdentity, reqId: number): boolean {
    let seen = this.askIds.get(from.id);
    if (seen === undefined || seen.incarnation !== from.incarnation) this.askIds.set(from.id, (seen = { incarnation: from.incarnation, window: new ReplayWindow() }));
    return seen.window.firstTime(reqId);
  }

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
      // A graceful leaver drains (replication/handoff.ts), and a cordoned member hands off as it
      // does (src/node/storage-guard.ts): each still answers what it received — served, or
      // ERR_NOT_PRIMARY, which is resent — so its asks wait for that (or their deadline).
      const target = this.o.membership.member(p.target);
      if (target?.status === 'left' || (target?.cordoned === true && isUp(target.status))) continue;
      const { kind, key, command, msgId } = p.ask;
      if (msgId === null && !(this.o.isReadOnly?.(kind, command) ?? false)) {
        this.pending.delete(reqId);
        this.settle(p, false, {
          code: 'ERR_NODE_UNREACHABLE',
          message: `node ${p.target} left the cluster with ask ${kind}/${key} '${command}' in flight: it may or may not have been applied (send an idempotency key to make retries safe)`,
          details: { node: p.target, outcome: 'unknown' },
        });
        continue;
      }
      const owner = this.safeOwner(key);
      if (owner === undefined) continue; // no nodes: the deadline will answer
      this.reroute(reqId, p, owner);
    }
  }

  private reroute(reqId: number, p: RemoteAskState, owner: RingMember): void {
    this.counters.rerouted++;
    if (owner.id === this.self.id) {
      this.pending.delete(reqId);
      const remaining = Math.max(1, Math.ceil(p.deadline - this.o.clock.now()));
      this.serveLocal(p.ask, remaining).then(
        (r) => this.settle(p, true, r.value, r.token),
        (e: unknown) => this.settle(p, false, toErrorRecord(e)),
      );
      return;
    }
    p.target = owner.id;
    p.targetAddress = owner.address;
    // A new id: the receivers' replay windows drop an id they saw (the ask may have been there
    // before, A → B → A), and a late reply to the old id is no answer to this transmission.
    this.pending.delete(reqId);
    p.reqId = ++this.nextReq;
    this.pending.set(p.reqId, p);
    this.transmit(p.reqId, p);
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

  private settle(p: RemoteAskState, ok: boolean, value: unknown, token?: Token): void {
    if (p.timer !== null) this.o.clock.clearTimeout(p.timer);
    if (ok) p.resolve(token === undefined ? { value } : { value, token });
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
