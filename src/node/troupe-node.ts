import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { ResourceLimits } from 'node:worker_threads';
import { ActorRef, checkKey, invalidKey, type MessageRouter } from '../actors/actor-ref.ts';
import type { ActorDefinition, AnyMessage, AskOptions, Commands } from '../actors/define-actor.ts';
import { loadActorModules, type ActorRegistry } from '../actors/registry.ts';
import { ClusterRouter } from '../cluster/cluster-router.ts';
import { MembershipDriver } from '../cluster/membership-driver.ts';
import { isUp, isZone } from '../cluster/membership.ts';
import type { MembershipProfileName } from '../cluster/membership-profiles.ts';
import { NodeIdentity } from '../cluster/node-identity.ts';
import { SnowflakeGenerator } from '../cluster/snowflake.ts';
import { MIN_CLUSTER_SECRET_LENGTH, parseAddress, TcpTransport, type TcpTransportOptions } from '../cluster/tcp-transport.ts';
import type { Transport } from '../cluster/transport.ts';
import { HashRing } from '../cluster/ring.ts';
import { PARTITIONS, PartitionTable } from '../replication/partition-table.ts';
import { enableWallClockSteps, systemClock, type Clock, type TimerHandle } from '../core/clock.ts';
import { invalidOption, isTroupeError, troupeError, type TroupeError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/logger.ts';
import { gatewayDefaults, HttpGateway, RawResponse, type GatewayOptions, type Sender } from '../gateway/http-gateway.ts';
import { STATUS_PAGE_HTML, statusData, type MemberEvent } from '../status/status-page.ts';
import { appPageViews, checkGateways, loadAppPage, type AppPage } from './app-pages.ts';
import type { JournalConfig } from '../persistence/journal.ts';
import type { RestartPolicy } from '../supervisor/restart-window.ts';
import { Supervisor } from '../supervisor/supervisor.ts';
import { LmdbPartitionStore } from '../replication/lmdb-partition-store.ts';
import { MemoryPartitionStore } from '../replication/memory-partition-store.ts';
import type { PartitionStore } from '../replication/partition-store.ts';
import { ReplicationDriver, replicationDefaults } from '../replication/replication-driver.ts';
import { freeSpace, StorageGuard } from './storage-guard.ts';
import type { KindDurability } from '../replication/settle-rule.ts';
import { handoffDefaults } from '../replication/handoff.ts';
import { AdminPeers } from '../admin/admin-peers.ts';
import { AdminExecutor } from '../admin/admin-executor.ts';
import { AdminServer } from '../admin/admin-server.ts';
import { InProcessActors } from './in-process-actors.ts';
import { nodeAdminTarget } from './node-admin.ts';
import type { ConnectionsView } from '../admin/admin-commands.ts';
import { NodeMetrics } from '../metrics/node-metrics.ts';
import type { LocalActors } from './local-actors.ts';
import { RememberedActors } from './remembered-actors.ts';
import { ReminderWaker } from './reminders.ts';
import { SessionHub, type SessionHubOptions } from '../sessions/session-hub.ts';
import { PushPeers, type NodeConnections } from '../sessions/push-peers.ts';
import { isReserved, reservedCommand, type PushNote } from '../actors/watchers.ts';
import type { HostLimits } from '../actors/actor-host.ts';
import { checkByteCap } from '../mailbox/message-size.ts';

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
  /** R: copies of each partition's log, the primary counted (default 3, capped by the cluster size). */
  replicas?: number;
  /** W: copies committed before a write is acknowledged (default 2, capped by the replica set). */
  writeQuorum?: number;
  /**
   * With seeds: serve alone if no seed answers within `joinTimeoutMs`. Off by default: a node
   * that serves alone owns every key, a second cluster beside the real one (split brain), so
   * without this it keeps trying its seeds and refuses requests (503 `ERR_NO_NODES`) meanwhile.
   */
  allowSolo?: boolean;
  /** With `allowSolo`: how long to wait for a seed before serving alone, ms (default 30 s). */
  joinTimeoutMs?: number;
}

/** Joining through seeds. */
export const joinDefaults = {
  joinTimeoutMs: 30_000, // ms; only with allowSolo: then the node serves alone
  waitingWarningMs: 10_000, // ms between 'still waiting for seeds' warnings
};

export interface NodeOptions {
  /** 0..1023; also the Snowflake machine id. */
  id?: number;
  /** Modules exporting the actor kinds this node serves (file paths, file URLs or packages). */
  modules: string[];
  /** Worker threads (or in-process hosts); default: available cores for threads, 1 in-process. */
  workers?: number;
  /**
   * Where actors run: 'threads' (default: one worker thread per slot, a crashed thread is
   * re-hosted) or 'in-process' (every slot's host in this thread, driven by `clock`: whole nodes
   * on a `SimulatedClock` over a `MemoryNetwork` in one test process; no thread isolation, so
   * `resourceLimits` and `restart` do not apply).
   */
  actors?: 'threads' | 'in-process';
  /** HTTP gateway options, or false for none. */
  http?: GatewayOptions | false;
  /** Join a cluster. Without it the node owns every key. */
  cluster?: ClusterOptions;
  /**
   * Host or zone label (1-64 of A-Z a-z 0-9 . _ -), gossiped to every member: replicas of a
   * partition go to different labels where possible. Nodes sharing a host do not survive that
   * host's death, so give them the host's name. Default: none (the node is a zone of its own).
   */
  zone?: string;
  /** Where the node keeps its identity and, by default, its LMDB journal (`<dataDir>/journal`). */
  dataDir?: string;
  /**
   * The admin endpoint `troupe repl` attaches to (src/admin). `socket`: a Unix socket path, mode
   * 0600 (default `<dataDir>/admin.sock` with a data directory, else none; false: none). `tcp`:
   * loopback or remote TCP, off unless given, every connection must bring `token` (≥ 16 chars).
   * State-changing commands are audited in `<dataDir>/audit.log` (and the log).
   */
  admin?: { socket?: string | false; tcp?: { host: string; port: number; token: string; tokenName?: string } };
  /** Prometheus metrics at `GET /metrics` (default on; false: none, and nothing is counted). */
  metrics?: boolean;
  /**
   * WebSocket sessions on the HTTP port (`/ws/...`, docs/websocket.md): caps and heartbeats, or
   * false for none. On by default wherever the gateway is.
   */
  sessions?: (Omit<SessionHubOptions, 'sender' | 'self' | 'clock' | 'log'> & { pingMs?: number }) | false;
  /**
   * The cluster's public gateway URLs (http(s)://host:port), served at `GET /cluster/gateways` for
   * an app page (src/node/app-pages.ts) to reconnect to when its node dies. Default none: a page
   * retries its own origin, which is right behind a load balancer.
   */
  gateways?: readonly string[];
  /**
   * Default: LMDB under `dataDir` (durable: a reply waits for the flush to disk); without a
   * data directory, in memory (state lives as long as its thread).
   */
  journal?: JournalConfig;
  /**
   * When a reply may leave. In a cluster the default is 'replicated': committed on W nodes'
   * stores (fsync in the background), so any one process or host may die; 'replicated+flush'
   * waits for W copies on disk; 'lazy' leaves after the primary's own commit (replicas catch up in
   * the background; the primary's death may lose its last unreplicated writes). 'flush' (on this node's disk, the single-node default) and
   * 'commit' keep each node's actors on that node alone: its death loses them until it returns.
   */
  durability?: Durability;
  /** Resident actors per worker before the least recently used passivate (default 1M). */
  maxResidentPerWorker?: number;
  /** Heap in use per worker (bytes) above which the idle sweep sheds least recently used actors. */
  maxHeapBytesPerWorker?: number;
  /** Largest message into or out of an actor, bytes (docs/actors-limits.md; default 1 MiB). */
  maxMessageBytes?: number;
  /** Most bytes queued in one actor's mailbox (docs/actors-limits.md; default 16 MiB). */
  maxMailboxBytes?: number;
  /** Worker-thread restart intensity and backoff (threads only). */
  restart?: Partial<RestartPolicy>;
  resourceLimits?: ResourceLimits;
  defaultAskTimeoutMs?: number;
  clock?: Clock;
  /**
   * Tests only (`troupe start --fault-injection`): the admin endpoint may step this node's wall
   * clock (`clock step <±ms>`, in every worker thread too) and hand out Snowflake ids (`ids`) for
   * the chaos suite to watch. Off by default; every such command is refused without it.
   */
  faultInjection?: boolean;
  /**
   * Test seam: the replicated partition store to use instead of building one from `journal` /
   * `dataDir`. The deterministic simulator (test/sim) gives a restarted in-process node the store
   * its previous life wrote (a disk that outlives the process). The node closes it on stop.
   */
  partitionStore?: PartitionStore;
  log?: Logger;
  logLevel?: string;
  /** Aborting it while `start` runs (or waits for seeds) stops the node; `start` then rejects with ERR_STOPPED. */
  signal?: AbortSignal;
}

/** 'lazy' (clusters): the reply leaves after the primary's own commit; see docs/lazy-durability.md for what a death may lose. */
export type Durability = 'replicated' | 'replicated+flush' | 'lazy' | 'flush' | 'commit';

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
  private router: MessageRouter & { askRaw: LocalActors['askRaw'] };
  private stopping: Promise<void> | undefined;
  /** False until the node may serve: while it joins through seeds, and once it stops. */
  private serving = false;
  private notServingReason = 'node is starting';
  private abortJoin: (() => void) | undefined;
  /** Replicated partition logs (clusters with 'replicated' durability): the workers' journal. */
  private replication: { driver: ReplicationDriver; store: PartitionStore; guard: StorageGuard } | undefined;
  /** The node's clock (a drain waits on it). */
  private clock: Clock = systemClock;
  /** Admin commands (the REPL's socket, peers' `@<node>` requests, the status page) and who runs them. */
  private admin: { executor: AdminExecutor; server: AdminServer | undefined; peers: AdminPeers | undefined } | undefined;
  /** The last membership changes this node saw, for the status page. */
  private readonly memberEvents: MemberEvent[] = [];
  /** Prometheus metrics (`GET /metrics`); undefined with `metrics: false`. */
  metrics: NodeMetrics | undefined;
  /** Replicated nodes: wakes actors whose durable reminders are due soon (single nodes' hosts do it themselves). */
  private reminders: ReminderWaker | undefined;
  /** WebSocket sessions held here, and the members' share of their traffic (pushes, counts). */
  private sessions: { hub: SessionHub; peers: PushPeers | undefined } | undefined;
  /** The app's page at `GET /` (a module's `page` export) and the gateway URLs it reconnects to. */
  private app: { page: AppPage | undefined; gateways: readonly string[] } = { page: undefined, gateways: [] };
  private markStopped: () => void = () => undefined;
  /** Resolves once the node has stopped, whoever stopped it (a signal, the admin REPL, a drain). */
  readonly stopped: Promise<void> = new Promise((resolve) => (this.markStopped = resolve));
  private constructor(
    readonly id: number,
    readonly identity: NodeIdentity,
    readonly registry: ActorRegistry,
    /** The node's own actors: worker threads (`Supervisor`) or `InProcessActors`. */
    readonly actors: LocalActors,
    readonly log: Logger,
    /** 64-bit Snowflake ids unique in the cluster (node id = machine id); `ids.nextString()` for JSON. */
    readonly ids: SnowflakeGenerator,
  ) {
    this.router = actors;
  }

  /** The node's local actors under their older name (they are a `Supervisor` unless `actors: 'in-process'`). */
  get supervisor(): LocalActors {
    return this.actors;
  }

  static async start(options: NodeOptions): Promise<TroupeNode> {
    const id = options.id ?? 0;
    if (!Number.isInteger(id) || id < 0 || id > 1023) throw invalidOption('options.id', 'must be an integer in [0, 1023]', id);
    if (options.zone !== undefined && !isZone(options.zone))
      throw invalidOption('options.zone', 'must be 1-64 characters of A-Z a-z 0-9 . _ -', options.zone);
    const clock = options.clock ?? systemClock;
    if (options.faultInjection !== undefined && typeof options.faultInjection !== 'boolean')
      throw invalidOption('options.faultInjection', 'must be a boolean', options.faultInjection);
    // Before any worker thread starts: threads inherit the stepped clock only from here on.
    if (options.faultInjection === true) enableWallClockSteps(clock);
    const log = options.log ?? createLogger({ node: id }, options.logLevel);
    const replicated = replicationOf(options);
    const journal: JournalConfig = replicated ? { type: 'node' } : journalOf(options);
    const host = hostLimitsOf(options);
    const where = actorsOf(options);
    log.debug(
      { id, workers: options.workers, journal, host, http: options.http, cluster: clusterSummary(options.cluster) },
      'node options',
    );
    if (options.cluster && options.cluster.transport === undefined && options.cluster.secret === undefined)
      throw invalidOption('options.cluster.secret', 'is required to join a cluster (no default, on purpose)', undefined);
    const secretLength = options.cluster?.transport === undefined ? options.cluster?.secret?.length : undefined;
    if (secretLength !== undefined && secretLength < MIN_CLUSTER_SECRET_LENGTH)
      throw invalidOption('options.cluster.secret', `must be at least ${MIN_CLUSTER_SECRET_LENGTH} characters (bytes for a Buffer)`, `${secretLength} characters`);
    const gateways = checkGateways(options.gateways);
    const registry = await loadActorModules(options.modules);
    const page = await loadAppPage(options.modules);
    if (registry.list().length === 0) throw invalidOption('options.modules', 'must export at least one actor definition', options.modules);
    // Workers' messages for actors they do not host go through the node's router (set below).
    let node: TroupeNode | undefined;
    const upstream = {
      tell: (kind: string, key: string, m: AnyMessage) => node!.router.tell(kind, key, m),
      ask: (kind: string, key: string, m: AnyMessage, o?: AskOptions) => node!.router.ask(kind, key, m, o),
      askRaw: (kind: string, key: string, command: string, input: unknown, msgId: string | undefined, timeoutMs: number) =>
        node!.router.askRaw(kind, key, command, input, msgId, timeoutMs),
    };
    // Takes the data directory's lock: from here on, a failure must release it.
    const identity = await NodeIdentity.load(id, options.dataDir, clock);
    let replication: { driver: ReplicationDriver; store: PartitionStore; guard: StorageGuard } | undefined;
    // The driver announces partitions whose resident actors may be stale; the actors exist later.
    let reloadPartitions: (ps: number[], count: number) => void = () => undefined;
    // `remember: true` kinds come back when this node becomes a partition's primary (set below).
    const rememberedKinds = registry.list().filter((k) => k.def.remember === true).map((k) => k.def.kind);
    let establishedHere: (ps: number[]) => void = () => undefined;
    if (replicated) {
      try {
        const kinds = kindDurabilities(registry, replicated.durability);
        const boot = bootId();
        const disk = options.partitionStore ?? (replicated.path !== undefined ? new LmdbPartitionStore({ path: replicated.path, durability: replicated.durability }) : new MemoryPartitionStore());
        // A full disk cordons the node, so the others lead its partitions until space returns.
        const dataPath = replicated.path;
        const guard = new StorageGuard({
          clock,
          log,
          cordon: (on, why) => node?.cluster?.membership.cordon(on, why),
          // Only while the others on the ring could hold W copies and are a majority of the members
          // known: below that, leaving the ring would make every partition's set too small to
          // commit (W is capped by the cluster's size, not the ring's), and help nobody.
          canCordon: () => {
            const membership = node?.cluster?.membership;
            if (membership === undefined) return false;
            const others = membership.upMembers().filter((m) => m.id !== id).length;
            return others >= (options.cluster?.writeQuorum ?? replicationDefaults.writeQuorum) && others * 2 > knownMembers(membership);
          },
          ...(dataPath !== undefined && options.partitionStore === undefined && { space: () => freeSpace(dataPath) }),
        });
        const store = guard.watch(disk);
        const c = options.cluster!;
        const driver = await ReplicationDriver.open({
          self: id,
          store,
          clock,
          log,
          ...(c.replicas !== undefined && { replicas: c.replicas }),
          ...(c.writeQuorum !== undefined && { writeQuorum: c.writeQuorum }),
          ...((options.durability === 'lazy' || options.durability === 'replicated+flush') && { durability: options.durability }),
          ...(kinds.size > 0 && { kinds }),
          onStale: (ps) => reloadPartitions(ps, driver.partitions),
          // Remembered kinds and durable reminders (src/node/reminders.ts) come back here.
          onEstablished: (ps: number[]) => establishedHere(ps),
          fenceOnFailover: rememberedKinds.length > 0,
          // An empty store is a new host or a replaced one: its promises count once joining said which.
          awaitIdentity: true,
          // Commits without fsync: an OS reboot since the last one marks the store unclean.
          ...(replicated.path !== undefined && replicated.durability === 'commit' && boot !== undefined && { bootId: boot }),
        });
        replication = { driver, store, guard };
      } catch (e) {
        await identity.close();
        throw e;
      }
    }
    // Counted on the main thread as they happen; the rest is read from its owners at each scrape.
    const metrics =
      options.metrics === false
        ? undefined
        : new NodeMetrics({
            node: id,
            kinds: registry.list().map((k) => k.def.kind),
            workers: async () => (await node!.actors.stats()) as Array<Record<string, unknown>>,
            router: () => node?.cluster?.router.stats() as Record<string, unknown> | undefined,
            replication: () => replication?.driver.stats() as Record<string, unknown> | undefined,
            transport: () => node?.transportStats(),
            members: () => node?.members() ?? [],
            sessions: () => node?.sessions?.hub.stats(),
          });
    const shared = {
      journal,
      ...(replication && { journalService: metrics ? metrics.timedJournal(replication.driver) : replication.driver }),
      clock,
      log,
      node: id,
      ...(options.cluster && { upstream }),
      ...(options.workers !== undefined && { workers: options.workers }),
      ...(host && { host }),
      ...(options.defaultAskTimeoutMs !== undefined && { defaultAskTimeoutMs: options.defaultAskTimeoutMs }),
    };
    const actors: LocalActors =
      where === 'in-process'
        ? new InProcessActors({ ...shared, registry })
        : new Supervisor({
            ...shared,
            modules: options.modules,
            ...(options.restart && { restart: options.restart }),
            ...(options.resourceLimits && { resourceLimits: options.resourceLimits }),
            ...(options.logLevel !== undefined && { logLevel: options.logLevel }),
          });
    reloadPartitions = (ps, count) => actors.reloadPartitions(ps, count);
    if (replication && rememberedKinds.length > 0) {
      const remembered = new RememberedActors({ store: replication.store, actors, kinds: rememberedKinds, clock, log });
      establishedHere = (ps) => remembered.established(ps);
    }
    try {
      await actors.start();
    } catch (e) {
      replication?.guard.close();
      await replication?.driver.close();
      await replication?.store.close();
      await identity.close(); // the data directory's lock: a retry in this process may take it
      throw e;
    }
    node = new TroupeNode(id, identity, registry, actors, log, snowflakes(id, identity, clock, log));
    node.metrics = metrics;
    node.replication = replication;
    node.clock = clock;
    if (replication) {
      const { driver, store } = replication;
      const waker = (node.reminders = new ReminderWaker({ store, actors, proposedHere: () => driver.proposedHere(), fenceFailedOver: (ps) => driver.fenceFailedOver(ps), clock, log }));
      const remembered = establishedHere;
      establishedHere = (ps) => {
        remembered(ps);
        waker.established(ps);
      };
      waker.start();
    }
    node.app = { page, gateways };
    const started = node;
    const onAbort = () => void started.stop();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (options.signal?.aborted) throw troupeError('ERR_STOPPED', 'node start was aborted');
      // The gateway listens before the join so that, while the node waits for its seeds, clients
      // and load balancers get a 503 they can act on rather than a refused connection.
      const self = node;
      const sender = { askRaw: (...a: Parameters<Sender['askRaw']>) => self.askFromGateway(...a) };
      let pingMs: number | undefined;
      if (options.sessions !== false) {
        const { pingMs: ping, ...limits } = options.sessions ?? {};
        pingMs = ping;
        // Without HTTP the hub still serves sockets handed to it (`sessionHub.open`: tests, embedders).
        const hub = new SessionHub({ ...limits, sender, self: id, clock, log });
        node.sessions = { hub, peers: undefined };
        // A watched actor's durable write, from this node's hosts: to each watching node's hub.
        actors.on('push', (nodes: number[], note: PushNote) => {
          for (const n of nodes) {
            if (n === id) hub.deliver(note);
            else self.sessions?.peers?.send(n, note);
          }
        });
      }
      if (options.http !== false) {
        node.gateway = new HttpGateway(registry, sender, log, options.http ?? {}, node.views(), metrics && ((code) => metrics.httpError(code)), clock);
        if (node.sessions) node.gateway.acceptWebSockets(node.sessions.hub, pingMs);
        node.httpAddress = await listenOrExplain(node.gateway, options.http ?? {});
      }
      if (options.cluster) await node.joinCluster(options.cluster, clock, options.defaultAskTimeoutMs, options.zone);
    } catch (e) {
      await node.stop();
      throw e;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    node.serving = true;
    try {
      await node.startAdmin(options, clock);
    } catch (e) {
      await node.stop();
      throw e;
    }
    log.info(
      {
        workers: actors.workers,
        ...(node.admin?.server && { admin: node.admin.server.socketPath ?? node.admin.server.tcpEndpoint }),
        ...(where === 'in-process' && { actors: where }),
        http: node.url,
        cluster: node.cluster?.transport.self.address,
        incarnation: identity.incarnation,
        journal: replicated
          ? { type: 'replicated', path: replicated.path, durability: options.durability ?? 'replicated' }
          : journal.type === 'lmdb'
            ? { type: 'lmdb', path: journal.path, durability: journal.durability }
            : journal,
        ...(host && { host }),
      },
      'node started',
    );
    return node;
  }

  /** The admin endpoint `troupe repl` attaches to, and its reach to the other members. */
  private async startAdmin(options: NodeOptions, clock: Clock): Promise<void> {
    const a = options.admin ?? {};
    const socketPath = a.socket === false ? undefined : (a.socket ?? (options.dataDir !== undefined ? join(options.dataDir, 'admin.sock') : undefined));
    // The REPL's `backup`: the partition store in a replicated cluster, else an LMDB journal.
    const j = replicationOf(options) ?? journalOf(options);
    const backupPath = 'path' in j && typeof j.path === 'string' ? j.path : undefined;
    const target = nodeAdminTarget({
      id: this.id,
      members: () => this.members(),
      kinds: () => this.registry.list().map((k) => k.def.kind),
      actors: this.actors,
      placement: () => this.replication?.driver.placement,
      partitions: () => this.replication?.driver.describe() ?? [],
      counters: () => ({
        // Asks answered here per kind: outcomes and latency percentiles (from the metrics' tallies).
        ...(this.metrics && { asks: this.metrics.askSummary() }),
        router: this.cluster?.router.stats(),
        replication: this.replication?.driver.stats(),
        transport: this.transportStats(),
      }),
      ask: (kind, key, command, input) => this.ask(kind, key, input === undefined ? { command } : { command, input }),
      drain: () => this.drain(),
      stop: () => this.stop(),
      ...(this.sessions && {
        connections: (kind?: string, key?: string) => this.connections(new URLSearchParams(kind === undefined ? {} : { kind, key: key ?? '' })) as Promise<ConnectionsView>,
      }),
      ...(backupPath !== undefined && { backup: async (dir: string) => (await import('../persistence/backup.ts')).backup({ type: 'lmdb', path: backupPath }, dir).then(() => backupPath) }),
    });
    if (options.faultInjection === true) {
      const steps = enableWallClockSteps(clock);
      target.faults = { wallOffset: steps.offset, stepWall: steps.step, wallNow: () => clock.wallNow(), ids: (n) => Array.from({ length: n }, () => this.ids.nextString()) };
    }
    let executor: AdminExecutor | undefined;
    const cluster = this.cluster;
    const peers = cluster
      ? new AdminPeers({
          transport: cluster.transport,
          clock,
          // A member that left may still be draining: the REPL watches its progress until it stops answering.
          addressOf: (id) => this.members().find((m) => m.id === id && m.status !== 'down')?.address,
          run: (command, args, user, via) => executor!.run(command, args, user, via),
        })
      : undefined;
    executor = new AdminExecutor({
      target,
      log: this.log,
      ...(options.dataDir !== undefined && { auditPath: join(options.dataDir, 'audit.log') }),
      ...(peers && { peers }),
    });
    const server =
      socketPath === undefined && a.tcp === undefined
        ? undefined
        : await AdminServer.start({
            executor,
            log: this.log,
            ...(socketPath !== undefined && { socketPath }),
            ...(a.tcp !== undefined && { tcp: a.tcp }),
          });
    this.admin = { executor, server, peers };
  }

  /** Until the node has joined its cluster it owns nothing it may serve. */
  private askFromGateway(...a: Parameters<Sender['askRaw']>): Promise<unknown> {
    if (!this.serving) return Promise.reject(troupeError('ERR_NO_NODES', this.notServingReason));
    // The session hub's own asks ('$watch' renewals) are not the app's: they stay out of the ask metrics.
    return this.metrics && !isReserved(a[2]) ? this.metrics.timeAsk(a[0], () => this.router.askRaw(...a)) : this.router.askRaw(...a);
  }

  private async joinCluster(c: ClusterOptions, clock: Clock, defaultAskTimeoutMs: number | undefined, zone?: string): Promise<void> {
    validateClusterOptions(c);
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
    await transport.start().catch((e: unknown) => {
      throw clusterListenError(e, c);
    });
    const store = this.replication?.store;
    const membership = new MembershipDriver({
      transport,
      clock,
      profile: c.profile ?? 'lan',
      logger: this.log,
      ...(zone !== undefined && { zone }),
      ...(store !== undefined && { lives: store.knownLives() }),
    });
    if (store !== undefined) keepLives(membership, store, clock, this.log);
    const driver = this.replication?.driver;
    driver?.attach(transport);
    // Partitions are placed only once the node has joined: before that its ring holds itself
    // alone, and it would fence partitions it never held as their only replica (W capped to 1)
    // and acknowledge writes that the real replica set's log overrides once it joins — or whose
    // epoch overrides the real primary's (found by the fault-injection suite, scenario 2).
    const seeds = (c.seeds ?? []).filter((a) => a !== transport.self.address);
    let joined = seeds.length === 0;
    let latestRing: HashRing | undefined;
    // And each ring says whether it holds a majority of the members this node knows (down ones
    // included, until membership forgets them after an hour): a node cut off from most of its
    // cluster must not found, alone, the first epoch of a partition it never held.
    const place = (ring: HashRing) => {
      const known = knownMembers(membership);
      driver!.setMembers(ring, ring.members.length * 2 > known, known);
    };
    const placeWhenJoined = (ring: HashRing) => {
      latestRing = ring;
      if (joined) place(ring);
    };
    const router = new ClusterRouter({
      transport,
      membership,
      local: this.actors,
      clock,
      log: this.log,
      ...(driver && { onRing: (ring: HashRing) => placeWhenJoined(ring) }),
      isReadOnly: (kind: string, command: string) => this.registry.get(kind)?.commands.get(command)?.readOnly === true,
      ...(driver && { tokens: driver }),
      ...(driver && { handoffTarget: (p: number) => driver.handoffTarget(p) }),
      ...(defaultAskTimeoutMs !== undefined && { defaultAskTimeoutMs }),
    });
    this.cluster = { transport, membership, router };
    this.router = router;
    if (this.sessions) {
      const hub = this.sessions.hub;
      // One map lookup per push note (not a scan of the up list): notes are on the write path.
      const addressOf = (id: number) => {
        const m = membership.state.members.get(id);
        return m !== undefined && isUp(m.status) ? m.address : undefined;
      };
      this.sessions.peers = new PushPeers({ transport, clock, hub, addressOf });
      // A member came or went: watched actors may have new primaries that know nothing of this node's sockets.
      membership.onMemberChanged((ch) => {
        if (ch.previous !== ch.member.status || ch.up !== ch.wasUp) hub.rewatchAll();
      });
    }
    membership.onMemberChanged((ch) => {
      // Same status, on or off the ring: a cordon began or ended (src/node/storage-guard.ts).
      if (ch.previous === ch.member.status && ch.up !== ch.wasUp && ch.member.id !== this.id)
        this.log.info({ member: ch.member.id, incarnation: ch.member.incarnation, cordoned: ch.member.cordoned === true }, ch.up ? 'member cordon ended' : 'member cordoned');
      if (ch.previous === ch.member.status) return;
      this.metrics?.memberChanged(ch.member.status);
      this.memberEvents.push({ at: new Date().toISOString(), member: ch.member.id, from: ch.previous ?? 'new', to: ch.member.status });
      if (this.memberEvents.length > 50) this.memberEvents.shift();
      this.log.info({ member: ch.member.id, incarnation: ch.member.incarnation, from: ch.previous, to: ch.member.status }, 'member changed');
    });
    membership.start(c.seeds ?? []);
    // A node that joins through seeds serves nothing until it has joined: alone, its ring would
    // hold only itself and it would activate a second copy of every actor it was asked about.
    if (seeds.length > 0) await this.joined(membership, clock, seeds, c);
    // An empty store under an id the cluster knew: a replaced host. Its copies count for nothing
    // until caught up (docs/reliability.md); a new host under a new id is not affected.
    if (driver?.freshStore === true && membership.earlierLife > 0) {
      this.log.warn({ earlierIncarnation: membership.earlierLife }, 'this node id lived before and its store is empty (a replaced host): its copies count toward no quorum until caught up');
      driver.markReplaced();
    } else driver?.identityKnown();
    joined = true;
    if (latestRing !== undefined && driver !== undefined) place(latestRing);
  }

  /**
   * Resolves once a seed has let this node in. Meanwhile it warns every `waitingWarningMs` and,
   * only with `allowSolo`, gives up after `joinTimeoutMs` and serves alone.
   */
  private joined(membership: MembershipDriver, clock: Clock, seeds: string[], c: ClusterOptions): Promise<void> {
    // Joined = a seed's join-ack came (it says whether this id lived before: a replaced host must
    // know that before it promises anything) and another member is up, a cordoned one too.
    const inCluster = () => membership.state.joined && membership.state.upIds.length > 0;
    if (inCluster()) return Promise.resolve();
    const since = clock.now();
    const list = seeds.join(',');
    this.notServingReason = `not serving: waiting to join the cluster through seeds ${list}`;
    this.log.info({ seeds, http: this.url }, `joining the cluster through seeds ${list}; not serving until joined`);
    return new Promise((resolve, reject) => {
      let warning: TimerHandle;
      const warnLater = () => {
        warning = clock.setTimeout(() => {
          const waitedS = Math.round((clock.now() - since) / 1000);
          this.log.warn({ seeds, waitedS }, `still waiting for seeds ${list} (${waitedS} s); not serving (--allow-solo serves alone)`);
          warnLater();
        }, joinDefaults.waitingWarningMs);
      };
      warnLater();
      const timeoutMs = c.joinTimeoutMs ?? joinDefaults.joinTimeoutMs;
      const solo = c.allowSolo
        ? clock.setTimeout(() => {
            done();
            this.log.warn({ timeoutMs, seeds }, `no seed answered within ${timeoutMs} ms; serving alone (allowSolo)`);
            resolve();
          }, timeoutMs)
        : undefined;
      // Either may come last: the join-ack, or the first other member up (it may have been known,
      // from a peer's ping, before the join-ack, which then changes no member).
      const check = () => {
        if (!inCluster()) return;
        done();
        resolve();
      };
      const offChanged = membership.onMemberChanged(check);
      const offJoined = membership.onJoined(check);
      const off = () => (offChanged(), offJoined());
      // stop() while waiting: start() rejects instead of hanging.
      this.abortJoin = () => {
        done();
        reject(troupeError('ERR_STOPPED', `node stopped while waiting for seeds ${list}`));
      };
      function done() {
        clock.clearTimeout(warning);
        if (solo !== undefined) clock.clearTimeout(solo);
        off();
      }
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

  /** The node's WebSocket sessions (undefined with `sessions: false`). */
  get sessionHub(): SessionHub | undefined {
    return this.sessions?.hub;
  }

  /** Members as this node sees them: id, address, incarnation, status (and zone, when labelled; `cordoned` when so). */
  members(): Array<{ id: number; address: string; incarnation: number; status: string; zone?: string; cordoned?: true; forMs?: number }> {
    if (!this.cluster) return [{ id: this.id, address: 'local', incarnation: this.identity.incarnation, status: 'alive' }];
    const now = this.clock.now();
    return [...this.cluster.membership.state.members.values()]
      .map(({ id, address, incarnation, status, zone, cordoned, statusSince }) => ({
        id,
        address,
        incarnation,
        status,
        ...(zone !== undefined && { zone }),
        ...(cordoned === true && { cordoned }),
        // How long it has been in this status (as this node saw it).
        forMs: Math.max(0, Math.round(now - statusSince)),
      }))
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
    if (isReserved(message.command)) throw reservedCommand(kind, message.command);
    this.router.tell(kind, key, message);
  }

  ask(kind: string, key: string, message: AnyMessage, options?: AskOptions): Promise<unknown> {
    if (checkKey(key)) return Promise.reject(invalidKey(key));
    if (isReserved(message.command)) return Promise.reject(reservedCommand(kind, message.command));
    return this.router.ask(kind, key, message, options);
  }

  /** Graceful: stop taking requests, announce the leave, then stop threads. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  /**
   * Graceful leave with handoff (what SIGTERM does to `troupe start`): offers every partition
   * this node leads to its next primary, announces the leave, and keeps serving until it leads
   * none — each new primary learns, seals and fences it (replication/handoff.ts) — or until
   * `timeoutMs` (then it stops as `stop()` does; fencing keeps that safe). Resolves once stopped.
   *
   * @example
   *   process.once('SIGTERM', () => void node.drain().then(() => process.exit(0)));
   */
  drain(options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? handoffDefaults.drainTimeoutMs;
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) return Promise.reject(invalidOption('options.timeoutMs', 'must be a non-negative number (ms)', timeoutMs));
    this.stopping ??= this.doDrain(timeoutMs).then(() => this.doStop());
    return this.stopping;
  }

  private async doDrain(timeoutMs: number): Promise<void> {
    const driver = this.replication?.driver;
    const cluster = this.cluster;
    if (driver === undefined || cluster === undefined || cluster.membership.upMembers().filter((m) => m.id !== this.id).length === 0) return;
    const clock = this.clock;
    const started = clock.now();
    const sleep = (ms: number) => new Promise<void>((resolve) => clock.setTimeout(resolve, ms));
    const led = driver.leads();
    this.log.info({ partitions: led, timeoutMs }, `draining: handing off ${led} partitions`);
    driver.drain();
    await cluster.membership.leave().catch(() => undefined);
    // Nobody left to hand off to (every other member left too, e.g. a whole cluster sent SIGTERM): stop now.
    const others = () => cluster.membership.upMembers().some((m) => m.id !== this.id);
    while (driver.leads() > 0 && others() && clock.now() - started < timeoutMs) await sleep(handoffDefaults.drainPollMs);
    const left = driver.leads();
    if (left > 0 && !others()) this.log.info({ partitions: left }, `drain: no other member left to hand ${left} partitions to; stopping`);
    else if (left > 0) this.log.warn({ partitions: left, timeoutMs }, `drain timed out after ${timeoutMs} ms with ${left} partitions still led; stopping (their next primaries fence them)`);
    else this.log.info({ ms: clock.now() - started }, `drained: every partition handed off in ${clock.now() - started} ms`);
    await sleep(handoffDefaults.drainLingerMs);
  }

  private async doStop(): Promise<void> {
    this.serving = false;
    this.notServingReason = 'node is stopping';
    this.abortJoin?.();
    this.sessions?.hub.close();
    await this.gateway?.close();
    if (this.cluster) {
      const { membership, router, transport } = this.cluster;
      await membership.leave().catch(() => undefined);
      membership.stop();
      router.stop();
      await transport.close();
    }
    this.reminders?.stop();
    await this.actors.stop();
    if (this.replication) {
      this.replication.guard.close();
      await this.replication.driver.close();
      await this.replication.store.close();
    }
    this.admin?.peers?.close();
    this.sessions?.peers?.close();
    await this.admin?.server?.close();
    await this.identity.close(); // the data directory's lock, once the journal is closed
    this.log.info('node stopped');
    this.markStopped();
  }

  /**
   * What `troupe/client` needs to send each request straight to its key's primary: the serving
   * node by partition (the old primary while the proposed one learns it in a handoff), the up
   * members, and this node's own id and URL. It lists no other node's URL on purpose: clients
   * map ids to URLs by asking each address they were given (DNS records) which node answers
   * there, so they dial what they can reach, not an address a node bound (0.0.0.0, a container's).
   */
  private routingTable(): { node: number; url: string | undefined; epoch: number; members: number[]; partitions: number; primaries: number[] } {
    const router = this.cluster?.router;
    const driver = this.replication?.driver;
    const epoch = router?.stats().epoch ?? 0;
    let table = driver?.placement;
    if (table === undefined && this.cluster !== undefined) {
      // No replication ('flush'/'commit' clusters): the router's table, rebuilt as it builds it, once per ring.
      if (this.tableCache?.epoch !== epoch) this.tableCache = { epoch, table: new PartitionTable(new HashRing(this.cluster.membership.upMembers())) };
      table = this.tableCache.table;
    }
    const partitions = table?.partitions ?? PARTITIONS;
    const primaries: number[] = new Array<number>(partitions);
    for (let p = 0; p < partitions; p++) primaries[p] = table === undefined ? this.id : (driver?.handoffTarget(p)?.id ?? table.primaryOf(p) ?? -1);
    const members = this.cluster ? this.cluster.membership.upMembers().map((m) => m.id) : [this.id];
    return { node: this.id, url: this.url, epoch, members, partitions, primaries };
  }

  private tableCache: { epoch: number; table: PartitionTable } | undefined;

  /** The transport's counters, when it keeps them (TcpTransport does; a test transport may not). */
  private transportStats(): Record<string, unknown> | undefined {
    return (this.cluster?.transport as { stats?: () => Record<string, unknown> } | undefined)?.stats?.();
  }

  private views(): Record<string, (query: URLSearchParams) => unknown> {
    return {
      // Per worker: resident and evicted actors, queues, and the journal each thread runs with.
      '/stats': async () => ({ node: this.id, serving: this.serving, workers: await this.actors.stats() }),
      '/cluster/members': () => ({ self: this.id, incarnation: this.identity.incarnation, members: this.members() }),
      '/cluster/ring': () => ({
        ...(this.cluster?.router.stats() ?? { epoch: 0, members: 1 }),
        ...(this.replication && { replication: this.replication.driver.stats() }),
      }),
      // Every partition this node holds a copy of: role, epoch, log end, commit and applied points.
      '/cluster/partitions': () => ({ node: this.id, partitions: this.replication?.driver.describe() ?? [] }),
      // The client library's routing table (src/client): partition → the node serving it.
      '/cluster/table': () => this.routingTable(),
      // Prometheus text (src/metrics), and the status page with what it polls (src/status).
      ...(this.metrics && { '/metrics': async () => new RawResponse(this.metrics!.contentType, await this.metrics!.text()) }),
      '/status': () => new RawResponse('text/html; charset=utf-8', STATUS_PAGE_HTML),
      '/': () => new RawResponse('text/html; charset=utf-8', STATUS_PAGE_HTML),
      '/status/data': () => (this.admin ? statusData(this.admin.executor, this.memberEvents) : Promise.reject(troupeError('ERR_NO_NODES', 'the node is starting'))),
      // Frames, writes (frames ÷ writes = coalescing), queued bytes, rejected connections by reason.
      '/cluster/transport': () => this.transportStats() ?? {},
      // Who is connected where: sockets per node, or (?kind=&key=) which nodes hold one actor's sockets.
      '/cluster/connections': (query) => this.connections(query),
      // The app's page at / (else the status page), where a key lives, and the gateways to reconnect to.
      ...appPageViews({ registry: this.registry, table: () => this.routingTable(), ...this.app }),
    };
  }

  /**
   * WebSocket connections in the cluster. Without a key: each up member's socket and session
   * counts (asked over the transport, 1 s each). With `?kind=&key=`: the actor's watchers as its
   * primary's host holds them — the nodes its sockets are on, kept by their renewals (every
   * 5 s) and dropped when a lease ends (15 s), so a dead node's sockets vanish from it.
   */
  private async connections(query: URLSearchParams): Promise<unknown> {
    const kind = query.get('kind');
    const key = query.get('key');
    if (kind !== null || key !== null) {
      if (kind === null || key === null) throw troupeError('ERR_INVALID_INPUT', 'give both kind and key, or neither');
      if (this.registry.get(kind) === undefined) throw troupeError('ERR_UNKNOWN_KIND', `unknown actor kind '${kind}'`, { kind });
      if (checkKey(key)) throw invalidKey(key);
      const r = (await this.askFromGateway(kind, key, '$watchers', undefined, undefined, 5_000)) as { watchers: unknown[] };
      return { kind, key, watchers: r.watchers };
    }
    const hub = this.sessions?.hub;
    const self: NodeConnections = { node: this.id, connections: hub?.connectionCount ?? 0, sessions: hub?.sessions().length ?? 0 };
    const others = this.cluster ? this.cluster.membership.upMembers().filter((m) => m.id !== this.id).map((m) => m.id) : [];
    const peers = this.sessions?.peers;
    const nodes = [self, ...(await Promise.all(others.map((id) => peers?.connections(id) ?? Promise.resolve<NodeConnections>({ node: id, error: 'WebSocket sessions are off' }))))];
    nodes.sort((a, b) => a.node - b.node);
    return { node: this.id, total: nodes.reduce((n, x) => n + (x.connections ?? 0), 0), nodes };
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

const DURABILITIES: readonly string[] = ['replicated', 'replicated+flush', 'lazy', 'flush', 'commit'];

/**
 * The kinds with a durability or write quorum of their own (defineActor), for the replication
 * driver on this thread: it settles each write by its kind's rule and fences with the smallest W.
 */
function kindDurabilities(registry: ActorRegistry, storeFlush: 'commit' | 'flush'): Map<string, KindDurability> {
  const kinds = new Map<string, KindDurability>();
  for (const { kind, def } of registry.list()) {
    if (def.durability === undefined && def.writeQuorum === undefined) continue;
    // The store flushes (or not) for the whole node: one kind cannot have it alone.
    if (def.durability === 'replicated+flush' && storeFlush !== 'flush')
      throw invalidOption(`${kind}.durability`, "'replicated+flush' needs the node's durability 'replicated+flush' (options.durability)", def.durability);
    kinds.set(kind, { ...(def.durability !== undefined && { durability: def.durability }), ...(def.writeQuorum !== undefined && { writeQuorum: def.writeQuorum }) });
  }
  return kinds;
}

/** This OS boot's id (Linux), or undefined where the OS does not tell. */
function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Replication's store, for a clustered node whose durability is 'replicated' (the cluster
 * default) or 'replicated+flush': its LMDB directory (undefined: in memory) and the durability
 * a local append waits for. Undefined when the node does not replicate.
 */
function replicationOf(options: NodeOptions): { path: string | undefined; durability: 'commit' | 'flush' } | undefined {
  const d = options.durability;
  if (d !== undefined && !DURABILITIES.includes(d))
    throw invalidOption('options.durability', "must be 'replicated', 'replicated+flush', 'lazy', 'flush' or 'commit'", d);
  if (options.cluster === undefined) {
    if (d === 'replicated' || d === 'replicated+flush' || d === 'lazy')
      throw invalidOption('options.durability', 'replicates across a cluster: it needs options.cluster', d);
    return undefined;
  }
  if (d === 'flush' || d === 'commit') return undefined;
  const j = options.journal;
  if (j !== undefined && j.type === 'memory') return { path: undefined, durability: 'commit' };
  const path = j?.type === 'lmdb' ? j.path : options.dataDir !== undefined ? join(options.dataDir, JOURNAL_DIR) : undefined;
  return { path, durability: d === 'replicated+flush' || (d === undefined && j?.type === 'lmdb' && j.durability === 'flush') ? 'flush' : 'commit' };
}

/** The journal the workers build: `options.journal`, else LMDB under `dataDir`, else memory. */
function journalOf(options: NodeOptions): JournalConfig {
  const d = options.durability;
  const journal: JournalConfig =
    options.journal ?? (options.dataDir !== undefined ? { type: 'lmdb', path: join(options.dataDir, JOURNAL_DIR) } : { type: 'memory' });
  if (d === undefined) return journal;
  if (d !== 'flush' && d !== 'commit') throw invalidOption('options.durability', "must be 'flush' or 'commit' on a single node", d);
  if (journal.type !== 'lmdb')
    throw invalidOption('options.durability', 'needs a durable journal (options.dataDir or an lmdb options.journal)', d);
  if (journal.durability !== undefined && journal.durability !== d)
    throw invalidOption('options.durability', `contradicts options.journal.durability '${journal.durability}'`, d);
  return { ...journal, durability: d };
}

/** Where the node's actors run; the thread-only options are refused in-process rather than ignored. */
function actorsOf(options: NodeOptions): 'threads' | 'in-process' {
  const a = options.actors ?? 'threads';
  if (a !== 'threads' && a !== 'in-process') throw invalidOption('options.actors', "must be 'threads' or 'in-process'", a);
  if (a === 'in-process') {
    if (options.resourceLimits !== undefined)
      throw invalidOption('options.resourceLimits', "applies to worker threads only, not to actors: 'in-process'", options.resourceLimits);
    if (options.restart !== undefined)
      throw invalidOption('options.restart', "restarts worker threads only, not actors: 'in-process'", options.restart);
  }
  return a;
}

/** The per-worker caps the actor hosts enforce, or undefined for their defaults. */
function hostLimitsOf(options: NodeOptions): HostLimits | undefined {
  const { maxResidentPerWorker: maxResident, maxHeapBytesPerWorker: maxHeapBytes, maxMessageBytes, maxMailboxBytes } = options;
  if (maxMessageBytes !== undefined) checkByteCap('options.maxMessageBytes', maxMessageBytes);
  if (maxMailboxBytes !== undefined) checkByteCap('options.maxMailboxBytes', maxMailboxBytes);
  const caps = { ...(maxMessageBytes !== undefined && { maxMessageBytes }), ...(maxMailboxBytes !== undefined && { maxMailboxBytes }) };
  if (maxResident !== undefined && (!Number.isSafeInteger(maxResident) || maxResident < 1))
    throw invalidOption('options.maxResidentPerWorker', 'must be a positive integer', maxResident);
  if (maxHeapBytes !== undefined && (!Number.isSafeInteger(maxHeapBytes) || maxHeapBytes < 1))
    throw invalidOption('options.maxHeapBytesPerWorker', 'must be a positive integer (bytes)', maxHeapBytes);
  if (maxResident === undefined && maxHeapBytes === undefined && maxMessageBytes === undefined && maxMailboxBytes === undefined) return undefined;
  return { ...(maxResident !== undefined && { maxResident }), ...(maxHeapBytes !== undefined && { maxHeapBytes }), ...caps };
}

function validateClusterOptions(c: ClusterOptions): void {
  if (c.seeds !== undefined) {
    if (!Array.isArray(c.seeds)) throw invalidOption('options.cluster.seeds', 'must be an array of "host:port" strings', c.seeds);
    for (const seed of c.seeds)
      if (parseAddress(seed) === undefined) throw invalidOption('options.cluster.seeds', 'must hold "host:port" strings', seed);
  }
  if (c.advertise !== undefined && parseAddress(c.advertise) === undefined)
    throw invalidOption('options.cluster.advertise', 'must be "host:port"', c.advertise);
  if (c.joinTimeoutMs !== undefined && (!Number.isSafeInteger(c.joinTimeoutMs) || c.joinTimeoutMs < 0))
    throw invalidOption('options.cluster.joinTimeoutMs', 'must be a non-negative integer (ms)', c.joinTimeoutMs);
}

/**
 * Listens, and names the option at fault when the address cannot be had: an unresolvable or
 * foreign `host` is options.http.host, a busy or privileged port options.http.port. The OS
 * error code travels in `details.cause` (the CLI turns EADDRINUSE into a hint).
 */
async function listenOrExplain(gateway: HttpGateway, http: GatewayOptions): Promise<AddressInfo> {
  try {
    return await gateway.listen();
  } catch (e) {
    if (isTroupeError(e)) {
      const cause = /\((E[A-Z]+)\)/.exec(e.message)?.[1];
      if (cause === undefined) throw e;
      throw troupeError('ERR_INVALID_OPTION', e.message, { ...e.details, cause });
    }
    const err = e as NodeJS.ErrnoException;
    const host = http.host ?? gatewayDefaults.host;
    throw troupeError('ERR_INVALID_OPTION', `options.http.host cannot listen on ${host} (${err.code ?? err.message})`, {
      option: 'options.http.host',
      cause: err.code,
    });
  }
}

/** The transport's bind failure, named for the cluster option it came from. */
function clusterListenError(e: unknown, c: ClusterOptions): TroupeError | unknown {
  if (!isTroupeError(e) || e.details?.option !== 'options.port') return e;
  const cause = e.details.cause as string | undefined;
  const hostProblem = cause === 'ENOTFOUND' || cause === 'EADDRNOTAVAIL' || cause === 'EAI_AGAIN';
  const option = hostProblem ? 'options.cluster.host' : 'options.cluster.port';
  const where = `${c.host ?? '127.0.0.1'}:${c.port ?? 0}`;
  return troupeError('ERR_INVALID_OPTION', `${option} cannot listen on ${where} (${cause ?? e.message})`, { option, cause });
}

/** The cluster options worth logging (never the secret or TLS keys). */
function clusterSummary(c: ClusterOptions | undefined): unknown {
  if (c === undefined) return undefined;
  const { host, port, advertise, seeds, profile, allowSolo, joinTimeoutMs } = c;
  return { host, port, advertise, seeds, profile, allowSolo, joinTimeoutMs, tls: c.tls !== undefined };
}

/**
 * Membership's lives outlast this run: each member id's highest known incarnation is stored
 * (`PartitionStore.recordLives`, at most once a second, only when it changed), and the next run
 * starts from it (`MembershipDriver` option `lives`). So a seed that restarted since still tells a
 * replaced host under an old id that its id lived before (the simulator's seed 27).
 */
function keepLives(membership: MembershipDriver, store: PartitionStore, clock: Clock, log: Logger): void {
  const text = (lives: ReadonlyMap<number, number>) => JSON.stringify([...lives].sort((a, b) => a[0] - b[0]));
  let written = text(store.knownLives());
  let timer: TimerHandle | undefined;
  const write = () => {
    timer = undefined;
    const s = membership.state;
    const lives = new Map(s.replacedLives);
    for (const m of s.members.values()) if (m.id !== s.self.id && m.incarnation > (lives.get(m.id) ?? -1)) lives.set(m.id, m.incarnation);
    const next = text(lives);
    if (next === written) return;
    written = next;
    store.recordLives(lives).catch((e: unknown) => {
      written = ''; // written again at the next change
      log.debug({ err: (e as Error).message }, 'could not store the members\' lives');
    });
  };
  membership.onMemberChanged(() => {
    if (timer === undefined) timer = clock.setTimeout(write, 1_000);
  });
}

/** Members the cluster has — down and cordoned ones included, not those that left: what W and the majority rule count. */
function knownMembers(membership: MembershipDriver): number {
  let n = 0;
  for (const m of membership.state.members.values()) if (m.status !== 'left') n++;
  return n;
}
