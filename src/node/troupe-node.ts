import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { ResourceLimits } from 'node:worker_threads';
import { ActorRef, checkKey, invalidKey, type MessageRouter } from '../actors/actor-ref.ts';
import type { ActorDefinition, AnyMessage, AskOptions, Commands } from '../actors/define-actor.ts';
import { loadActorModules, type ActorRegistry } from '../actors/registry.ts';
import { ClusterRouter } from '../cluster/cluster-router.ts';
import { MembershipDriver } from '../cluster/membership-driver.ts';
import type { MembershipProfileName } from '../cluster/membership-profiles.ts';
import { NodeIdentity } from '../cluster/node-identity.ts';
import { SnowflakeGenerator } from '../cluster/snowflake.ts';
import { TcpTransport, type TcpTransportOptions } from '../cluster/tcp-transport.ts';
import type { Transport } from '../cluster/transport.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { invalidOption } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/logger.ts';
import { HttpGateway, type GatewayOptions } from '../gateway/http-gateway.ts';
import type { JournalConfig } from '../persistence/journal.ts';
import type { RestartPolicy } from '../supervisor/restart-window.ts';
import { Supervisor } from '../supervisor/supervisor.ts';

/** The node's LMDB environment lives in `<dataDir>/journal`. */
export const JOURNAL_DIR = 'journal';

export interface ClusterOptions {
  /** Shared by every node; authenticates the transport handshake. No default, on purpose. */
  secret?: string | Buffer;
  /** Node-to-node listen address (TCP). */
  host?: string;
  port?: number;
  /** The address peers should dial, if not host:port (NAT, 0.0.0.0 listeners). */
  advertise?: string;
  /** Addresses ("host:port") of nodes to join through; none = the first node. */
  seeds?: string[];
  /** Failure-detection profile: 'lan' (default, down within 1.5 s) or 'seed-10s'. */
  profile?: MembershipProfileName;
  /** Mutual TLS for the transport. */
  tls?: TcpTransportOptions['tls'];
  /** A ready transport instead of TCP (the in-memory network in tests). */
  transport?: Transport;
  /** With seeds: how long to wait for a seed before serving alone, ms (default 30 s). */
  joinTimeoutMs?: number;
}

export interface NodeOptions {
  /** 0..1023; also the Snowflake machine id. */
  id?: number;
  /** Modules exporting the actor kinds this node serves (file paths, file URLs or packages). */
  modules: string[];
  /** Worker threads; default: available cores. */
  workers?: number;
  /** HTTP gateway options, or false for none. */
  http?: GatewayOptions | false;
  /** Join a cluster. Without it the node owns every key. */
  cluster?: ClusterOptions;
  /** Where the node keeps its identity and, by default, its LMDB journal (`<dataDir>/journal`). */
  dataDir?: string;
  /**
   * Default: LMDB under `dataDir` (durable: a reply waits for the flush to disk); without a
   * data directory, in memory (state lives as long as its thread).
   */
  journal?: JournalConfig;
  /** With the default LMDB journal: 'flush' (a reply waits for the disk, default) or 'commit'. */
  durability?: 'flush' | 'commit';
  /** Resident actors per worker before the least recently used passivate (default 1M). */
  maxResidentPerWorker?: number;
  /** Heap in use per worker (bytes) above which the idle sweep sheds least recently used actors. */
  maxHeapBytesPerWorker?: number;
  /** Worker-thread restart intensity and backoff. */
  restart?: Partial<RestartPolicy>;
  resourceLimits?: ResourceLimits;
  defaultAskTimeoutMs?: number;
  clock?: Clock;
  log?: Logger;
  logLevel?: string;
}

interface ClusterParts {
  transport: Transport;
  membership: MembershipDriver;
  router: ClusterRouter;
}

/**
 * One troupe node: worker threads hosting actors, the HTTP gateway in front of them and,
 * when clustered, the transport, membership and router that reach the other nodes.
 *
 * @example
 *   const node = await TroupeNode.start({ modules: ['./app.ts'], http: { port: 8080 } });
 *   await node.ref(counter, 'k1').ask({ command: 'incr', input: { by: 1 } });
 *   await node.stop();
 */
export class TroupeNode implements MessageRouter {
  private gateway: HttpGateway | undefined;
  private httpAddress: AddressInfo | undefined;
  private cluster: ClusterParts | undefined;
  private router: MessageRouter & { askRaw: Supervisor['askRaw'] };
  private stopping: Promise<void> | undefined;
  private constructor(
    readonly id: number,
    readonly identity: NodeIdentity,
    readonly registry: ActorRegistry,
    readonly supervisor: Supervisor,
    readonly log: Logger,
    /** 64-bit Snowflake ids unique in the cluster (node id = machine id); `ids.nextString()` for JSON. */
    readonly ids: SnowflakeGenerator,
  ) {
    this.router = supervisor;
  }

  static async start(options: NodeOptions): Promise<TroupeNode> {
    const id = options.id ?? 0;
    if (!Number.isInteger(id) || id < 0 || id > 1023) throw invalidOption('options.id', 'must be an integer in [0, 1023]', id);
    const clock = options.clock ?? systemClock;
    const log = options.log ?? createLogger({ node: id }, options.logLevel);
    if (options.cluster && options.cluster.transport === undefined && options.cluster.secret === undefined)
      throw invalidOption('options.cluster.secret', 'is required to join a cluster (no default, on purpose)', undefined);
    const registry = await loadActorModules(options.modules);
    if (registry.list().length === 0) throw invalidOption('options.modules', 'must export at least one actor definition', options.modules);
    const identity = await NodeIdentity.load(id, options.dataDir, clock);
    // Workers' messages for actors they do not host go through the node's router (set below).
    let node: TroupeNode | undefined;
    const upstream = {
      tell: (kind: string, key: string, m: AnyMessage) => node!.router.tell(kind, key, m),
      ask: (kind: string, key: string, m: AnyMessage, o?: AskOptions) => node!.router.ask(kind, key, m, o),
      askRaw: (kind: string, key: string, command: string, input: unknown, msgId: string | undefined, timeoutMs: number) =>
        node!.router.askRaw(kind, key, command, input, msgId, timeoutMs),
    };
    const supervisor = new Supervisor({
      modules: options.modules,
      journal:
        options.journal ??
        (options.dataDir !== undefined ? { type: 'lmdb', path: join(options.dataDir, JOURNAL_DIR) } : { type: 'memory' }),
      clock,
      log,
      node: id,
      ...(options.cluster && { upstream }),
      ...(options.workers !== undefined && { workers: options.workers }),
      ...(options.restart && { restart: options.restart }),
      ...(options.resourceLimits && { resourceLimits: options.resourceLimits }),
      ...(options.defaultAskTimeoutMs !== undefined && { defaultAskTimeoutMs: options.defaultAskTimeoutMs }),
      ...(options.logLevel !== undefined && { logLevel: options.logLevel }),
    });
    await supervisor.start();
    node = new TroupeNode(id, identity, registry, supervisor, log, snowflakes(id, identity, clock, log));
    try {
      if (options.cluster) await node.joinCluster(options.cluster, clock, options.defaultAskTimeoutMs);
      if (options.http !== false) {
        node.gateway = new HttpGateway(registry, node.router, log, options.http ?? {}, node.views());
        node.httpAddress = await node.gateway.listen();
      }
    } catch (e) {
      await node.stop();
      throw e;
    }
    log.info(
      { workers: supervisor.workers, http: node.url, cluster: node.cluster?.transport.self.address, incarnation: identity.incarnation },
      'node started',
    );
    return node;
  }

  private async joinCluster(c: ClusterOptions, clock: Clock, defaultAskTimeoutMs: number | undefined): Promise<void> {
    const transport =
      c.transport ??
      new TcpTransport({
        id: this.id,
        incarnation: this.identity.incarnation,
        secret: c.secret!,
        host: c.host ?? '127.0.0.1',
        port: c.port ?? 0,
        ...(c.advertise !== undefined && { advertiseAddress: c.advertise }),
        ...(c.tls && { tls: c.tls }),
        clock,
        logger: this.log,
      });
    await transport.start();
    const membership = new MembershipDriver({ transport, clock, profile: c.profile ?? 'lan', logger: this.log });
    const router = new ClusterRouter({
      transport,
      membership,
      local: this.supervisor,
      clock,
      log: this.log,
      ...(defaultAskTimeoutMs !== undefined && { defaultAskTimeoutMs }),
    });
    this.cluster = { transport, membership, router };
    this.router = router;
    membership.onMemberChanged((ch) => {
      if (ch.previous !== ch.member.status)
        this.log.info(
          { member: ch.member.id, incarnation: ch.member.incarnation, from: ch.previous, to: ch.member.status },
          'member changed',
        );
    });
    membership.start(c.seeds ?? []);
    // A node that joins through seeds serves nothing until it has joined: alone, its ring would
    // hold only itself and it would activate a second copy of every actor it was asked about.
    const seeds = (c.seeds ?? []).filter((a) => a !== transport.self.address);
    if (seeds.length > 0) await this.joined(membership, clock, c.joinTimeoutMs ?? 30_000);
  }

  private joined(membership: MembershipDriver, clock: Clock, timeoutMs: number): Promise<void> {
    if (membership.upMembers().length > 1) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = clock.setTimeout(() => {
        off();
        this.log.warn({ timeoutMs }, 'no seed answered; serving alone until the cluster forms');
        resolve();
      }, timeoutMs);
      const off = membership.onMemberChanged(() => {
        if (membership.upMembers().length < 2) return;
        clock.clearTimeout(timer);
        off();
        resolve();
      });
    });
  }

  /** Base URL of the gateway, e.g. http://127.0.0.1:8080 */
  get url(): string | undefined {
    if (!this.httpAddress) return undefined;
    const { address, port, family } = this.httpAddress;
    return `http://${family === 'IPv6' ? `[${address}]` : address}:${port}`;
  }

  /** Node-to-node address when clustered. */
  get clusterAddress(): string | undefined {
    return this.cluster?.transport.self.address;
  }

  get membership(): MembershipDriver | undefined {
    return this.cluster?.membership;
  }

  get clusterRouter(): ClusterRouter | undefined {
    return this.cluster?.router;
  }

  /** Members as this node sees them: id, address, incarnation, status. */
  members(): Array<{ id: number; address: string; incarnation: number; status: string }> {
    if (!this.cluster) return [{ id: this.id, address: 'local', incarnation: this.identity.incarnation, status: 'alive' }];
    return [...this.cluster.membership.state.members.values()]
      .map(({ id, address, incarnation, status }) => ({ id, address, incarnation, status }))
      .sort((a, b) => a.id - b.id);
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  ref<S, E, C extends Commands<S, E>>(def: ActorDefinition<S, E, C>, key: string): ActorRef<C> {
    if (checkKey(key)) throw invalidKey(key);
    return new ActorRef<C>(this, def.kind, key);
  }

  /** Fire and forget. A malformed key is a programming error: it throws ERR_INVALID_KEY at once. */
  tell(kind: string, key: string, message: AnyMessage): void {
    if (checkKey(key)) throw invalidKey(key);
    this.router.tell(kind, key, message);
  }

  ask(kind: string, key: string, message: AnyMessage, options?: AskOptions): Promise<unknown> {
    if (checkKey(key)) return Promise.reject(invalidKey(key));
    return this.router.ask(kind, key, message, options);
  }

  /** Graceful: stop taking requests, announce the leave, then stop threads. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    await this.gateway?.close();
    if (this.cluster) {
      const { membership, router, transport } = this.cluster;
      await membership.leave().catch(() => undefined);
      membership.stop();
      router.stop();
      await transport.close();
    }
    await this.supervisor.stop();
    this.log.info('node stopped');
  }

  private views(): Record<string, () => unknown> {
    return {
      '/cluster/members': () => ({ self: this.id, incarnation: this.identity.incarnation, members: this.members() }),
      '/cluster/ring': () => this.cluster?.router.stats() ?? { epoch: 0, members: 1 },
      // Frames, writes (frames ÷ writes = coalescing), queued bytes, rejected connections by reason.
      '/cluster/transport': () => (this.cluster?.transport as { stats?: () => unknown } | undefined)?.stats?.() ?? {},
    };
  }
}

/**
 * The node's Snowflake generator. Ids restart above the floor persisted by the previous run, and
 * the floor is raised about once a second to 2 s ahead of the ids handed out, so a restart behind
 * a stepped-back clock never repeats an id.
 */
function snowflakes(id: number, identity: NodeIdentity, clock: Clock, log: Logger): SnowflakeGenerator {
  // Ids of the previous run stay below its floor; `load` already reserved the next 2 s.
  const previousFloor = identity.previousSnowflakeFloor;
  let persistedUntil = identity.snowflakeFloor;
  let writing = false;
  return new SnowflakeGenerator({
    nodeId: id,
    clock,
    ...(previousFloor > 0 && { lastTimestamp: previousFloor }),
    onAdvance: (ts) => {
      if (ts + 1_000 < persistedUntil || writing) return;
      writing = true;
      const floor = ts + 2_000;
      identity.raiseSnowflakeFloor(floor).then(
        () => {
          persistedUntil = floor;
          writing = false;
        },
        (e: unknown) => {
          writing = false;
          log.error({ err: e }, 'cannot persist the Snowflake floor');
        },
      );
    },
  });
}
