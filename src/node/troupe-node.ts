import type { AddressInfo } from 'node:net';
import { ActorRef, invalidKey, checkKey, type MessageRouter } from '../actors/actor-ref.ts';
import type { AnyMessage, AskOptions, Commands, ActorDefinition } from '../actors/define-actor.ts';
import { loadActorModules, type ActorRegistry } from '../actors/registry.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { invalidOption } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/logger.ts';
import { HttpGateway, type GatewayOptions } from '../gateway/http-gateway.ts';
import type { JournalConfig } from '../persistence/journal.ts';
import type { RestartPolicy } from '../supervisor/restart-window.ts';
import { Supervisor } from '../supervisor/supervisor.ts';
import type { ResourceLimits } from 'node:worker_threads';

export interface NodeOptions {
  /** 0..1023; also the Snowflake machine id. */
  id?: number;
  /** Modules exporting the actor kinds this node serves (file paths, file URLs or packages). */
  modules: string[];
  /** Worker threads; default: available cores. */
  workers?: number;
  /** HTTP gateway options, or false for none. */
  http?: GatewayOptions | false;
  /** Default: in memory (state lives as long as its thread). */
  journal?: JournalConfig;
  /** Worker-thread restart intensity and backoff. */
  restart?: Partial<RestartPolicy>;
  resourceLimits?: ResourceLimits;
  defaultAskTimeoutMs?: number;
  clock?: Clock;
  log?: Logger;
  logLevel?: string;
}

/**
 * One troupe node: worker threads hosting actors, and the HTTP gateway in front of them.
 *
 * @example
 *   const node = await TroupeNode.start({ modules: ['./app.ts'], http: { port: 8080 } });
 *   await node.ref(counter, 'k1').ask({ command: 'incr', input: { by: 1 } });
 *   await node.stop();
 */
export class TroupeNode implements MessageRouter {
  private gateway: HttpGateway | undefined;
  private httpAddress: AddressInfo | undefined;

  private constructor(
    readonly id: number,
    readonly registry: ActorRegistry,
    readonly supervisor: Supervisor,
    readonly log: Logger,
  ) {}

  static async start(options: NodeOptions): Promise<TroupeNode> {
    const id = options.id ?? 0;
    if (!Number.isInteger(id) || id < 0 || id > 1023) throw invalidOption('options.id', 'must be an integer in [0, 1023]', id);
    const log = options.log ?? createLogger({ node: id }, options.logLevel);
    const registry = await loadActorModules(options.modules);
    if (registry.list().length === 0) throw invalidOption('options.modules', 'must export at least one actor definition', options.modules);
    const supervisor = new Supervisor({
      modules: options.modules,
      journal: options.journal ?? { type: 'memory' },
      clock: options.clock ?? systemClock,
      log,
      node: id,
      ...(options.workers !== undefined && { workers: options.workers }),
      ...(options.restart && { restart: options.restart }),
      ...(options.resourceLimits && { resourceLimits: options.resourceLimits }),
      ...(options.defaultAskTimeoutMs !== undefined && { defaultAskTimeoutMs: options.defaultAskTimeoutMs }),
      ...(options.logLevel !== undefined && { logLevel: options.logLevel }),
    });
    await supervisor.start();
    const node = new TroupeNode(id, registry, supervisor, log);
    if (options.http !== false) {
      try {
        node.gateway = new HttpGateway(registry, supervisor, log, options.http ?? {});
        node.httpAddress = await node.gateway.listen();
      } catch (e) {
        await supervisor.stop();
        throw e;
      }
    }
    log.info({ workers: supervisor.workers, http: node.url }, 'node started');
    return node;
  }

  /** Base URL of the gateway, e.g. http://127.0.0.1:8080 */
  get url(): string | undefined {
    if (!this.httpAddress) return undefined;
    const { address, port, family } = this.httpAddress;
    return `http://${family === 'IPv6' ? `[${address}]` : address}:${port}`;
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  ref<S, E, C extends Commands<S, E>>(def: ActorDefinition<S, E, C>, key: string): ActorRef<C> {
    if (checkKey(key)) throw invalidKey(key);
    return new ActorRef<C>(this, def.kind, key);
  }

  tell(kind: string, key: string, message: AnyMessage): void {
    this.supervisor.tell(kind, key, message);
  }

  ask(kind: string, key: string, message: AnyMessage, options?: AskOptions): Promise<unknown> {
    if (checkKey(key)) return Promise.reject(invalidKey(key));
    return this.supervisor.ask(kind, key, message, options);
  }

  async stop(): Promise<void> {
    await this.gateway?.close();
    await this.supervisor.stop();
    this.log.info('node stopped');
  }
}
