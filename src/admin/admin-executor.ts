import { appendFile } from 'node:fs/promises';
import { troupeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { findCommand, helpResult, type AdminTarget } from './admin-commands.ts';
import type { AdminPeers } from './admin-peers.ts';
import type { AdminResult } from './admin-protocol.ts';

export interface AdminExecutorOptions {
  target: AdminTarget;
  log: Logger;
  /** Where state-changing commands are recorded (JSON lines, mode 0600); undefined: the log only. */
  auditPath?: string;
  /** Other members, for commands addressed to them. */
  peers?: AdminPeers;
}

/**
 * Runs admin commands for whoever asks — the REPL's connection, a peer's `@<node>` request, the
 * status page — so the audit rule lives in one place: every state-changing command is recorded
 * (who, from where, when, what, on which node) before it runs.
 */
export class AdminExecutor {
  constructor(private readonly o: AdminExecutorOptions) {}

  get target(): AdminTarget {
    return this.o.target;
  }

  get peers(): AdminPeers | undefined {
    return this.o.peers;
  }

  /** Runs `command` on `node` (default: here). */
  async run(command: string, args: string[], user: string, via: string, node?: number): Promise<AdminResult> {
    if (command === 'help') return helpResult();
    const c = findCommand(command); // an unknown command fails here, not after a round trip
    const target = node ?? this.o.target.id;
    if (c.mutates) await this.audit(user, via, command, args, target);
    if (target === this.o.target.id) return c.run(this.o.target, args, { user, via });
    if (this.o.peers === undefined) throw troupeError('ERR_UNKNOWN_NODE', `not in a cluster: there is no node ${target}`);
    return this.o.peers.call(target, command, args, user);
  }

  private async audit(user: string, via: string, command: string, args: string[], node: number): Promise<void> {
    const self = this.o.target.id;
    const record = { time: new Date().toISOString(), node: self, target: node, user, via, command, args };
    this.o.log.info({ audit: record }, `admin: ${user} (${via}) ran ${command}${node === self ? '' : ` on node ${node}`}`);
    if (this.o.auditPath !== undefined) await appendFile(this.o.auditPath, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  }
}
