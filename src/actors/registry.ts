import { troupeError } from '../core/errors.ts';
import { importModule } from '../core/import-module.ts';
import { defaultMailboxOptions, type MailboxOptions } from '../mailbox/mailbox.ts';
import { actorRestartPolicy, validateRestartPolicy, type RestartPolicy } from '../supervisor/restart-window.ts';
import { isActorDefinition, type AnyActorDefinition, type CommandSpec } from './define-actor.ts';

/** A definition with its defaults filled in and commands in a Map (no prototype lookups). */
export interface ActorKind {
  readonly kind: string;
  readonly def: AnyActorDefinition;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly commands: ReadonlyMap<string, CommandSpec<any, any, any, any>>;
  readonly version: number;
  readonly idleTimeoutMs: number;
  /** Sessions idle this long are deleted (undefined: never). */
  readonly ttlMs: number | undefined;
  readonly snapshotEvery: number;
  readonly mailbox: MailboxOptions;
  readonly restart: RestartPolicy;
}

export const actorDefaults = {
  idleTimeoutMs: 5 * 60_000, // ms; an idle session actor leaves memory after 5 minutes
  snapshotEvery: 100, // events; bounds replay on activation to ~100 applies
};

/** The actor kinds a node serves. Built identically on the main thread and in every worker. */
export class ActorRegistry {
  private readonly kinds = new Map<string, ActorKind>();

  constructor(definitions: Iterable<AnyActorDefinition> = []) {
    for (const d of definitions) this.add(d);
  }

  add(def: AnyActorDefinition): void {
    if (this.kinds.has(def.kind)) throw troupeError('ERR_INVALID_DEFINITION', `actor kind '${def.kind}' is defined twice`);
    const restart = { ...actorRestartPolicy, ...def.restart };
    validateRestartPolicy(restart, `${def.kind}.restart`);
    this.kinds.set(def.kind, {
      kind: def.kind,
      def,
      commands: new Map(Object.entries(def.commands)),
      version: def.version ?? 1,
      idleTimeoutMs: def.idleTimeoutMs ?? actorDefaults.idleTimeoutMs,
      ttlMs: def.ttlMs,
      snapshotEvery: def.snapshotEvery ?? actorDefaults.snapshotEvery,
      mailbox: { ...defaultMailboxOptions, ...def.mailbox },
      restart,
    });
  }

  get(kind: string): ActorKind | undefined {
    return this.kinds.get(kind);
  }

  list(): ActorKind[] {
    return [...this.kinds.values()];
  }

  /** Checks kind and command exist: the gateway answers 400 without a thread hop. */
  check(kind: string, command: string): ActorKind {
    const k = this.kinds.get(kind);
    if (!k) throw troupeError('ERR_UNKNOWN_KIND', `unknown actor kind '${truncate(kind)}'`, { kind: truncate(kind) });
    if (!k.commands.has(command))
      throw troupeError('ERR_UNKNOWN_COMMAND', `actor kind '${kind}' has no command '${truncate(command)}'`, {
        kind,
        command: truncate(command),
      });
    return k;
  }
}

function truncate(s: string): string {
  return s.length > 64 ? s.slice(0, 64) + '…' : s;
}

/**
 * Imports app modules and collects every exported actor definition (named exports, a default
 * export, or arrays of definitions). Workers call this with the same specifiers as the main
 * thread, so both hold the same kinds.
 */
export async function loadActorModules(specifiers: readonly string[]): Promise<ActorRegistry> {
  const registry = new ActorRegistry();
  const seen = new Set<AnyActorDefinition>();
  for (const spec of specifiers) {
    const mod = await importModule(spec);
    for (const value of Object.values(mod)) {
      for (const v of Array.isArray(value) ? value : [value]) {
        if (isActorDefinition(v) && !seen.has(v)) {
          seen.add(v);
          registry.add(v);
        }
      }
    }
  }
  return registry;
}
