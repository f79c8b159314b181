import type { Transport } from '../cluster/transport.ts';
import type { Clock, TimerHandle } from '../core/clock.ts';
import { fromErrorRecord, toErrorRecord, troupeError, type ErrorRecord } from '../core/errors.ts';
import { findForbiddenKey } from '../gateway/forbidden-keys.ts';
import type { AdminResult } from './admin-protocol.ts';

/**
 * Admin commands between members, so one REPL attach reaches the whole cluster: `@2 actors`
 * runs `actors` on node 2. Frames ride the transport's 'system' lane (authenticated like all
 * cluster traffic, and not queued behind actor messages — an operator can still look at an
 * overloaded node):
 *
 *   [R_ADMIN, reqId, command, args, user]          → run it there
 *   [R_ADMIN_REPLY, reqId, ok, result | error]     ← its answer
 */
export const R_ADMIN = 30;
export const R_ADMIN_REPLY = 31;

export interface AdminPeersOptions {
  transport: Transport;
  clock: Clock;
  /** Address of a member by id (undefined: not a member). */
  addressOf: (id: number) => string | undefined;
  /** Runs a command here for a peer; `via` names the peer. */
  run: (command: string, args: string[], user: string, via: string) => Promise<AdminResult>;
  timeoutMs?: number;
}

export class AdminPeers {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: AdminResult) => void; reject: (e: Error) => void; timer: TimerHandle }>();

  constructor(private readonly o: AdminPeersOptions) {
    o.transport.onMessage((from, payload, lane) => {
      if (lane !== 'system' || !Array.isArray(payload)) return;
      if (payload[0] === R_ADMIN) this.serve(from.address, from.id, payload);
      else if (payload[0] === R_ADMIN_REPLY) this.settle(payload);
    });
  }

  call(node: number, command: string, args: string[], user: string, timeoutMs = this.o.timeoutMs ?? 5000): Promise<AdminResult> {
    const address = this.o.addressOf(node);
    if (address === undefined) return Promise.reject(troupeError('ERR_UNKNOWN_NODE', `node ${node} is not a member this node knows`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = this.o.clock.setTimeout(() => {
        this.pending.delete(id);
        reject(troupeError('ERR_NODE_UNREACHABLE', `node ${node} did not answer the admin command within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.o.transport.send(address, [R_ADMIN, id, command, args, user], 'system');
    });
  }

  close(): void {
    for (const [id, p] of this.pending) {
      this.o.clock.clearTimeout(p.timer);
      p.reject(troupeError('ERR_STOPPED', 'node is stopping'));
      this.pending.delete(id);
    }
  }

  private serve(address: string, fromId: number, payload: unknown[]): void {
    const [, id, command, args, user] = payload;
    if (!Number.isSafeInteger(id) || typeof command !== 'string' || !Array.isArray(args) || !args.every((a) => typeof a === 'string') || typeof user !== 'string') return;
    const reply = (ok: boolean, value: unknown) => this.o.transport.send(address, [R_ADMIN_REPLY, id, ok, value], 'system');
    this.o.run(command, args as string[], user, `node ${fromId}`).then(
      (result) => reply(true, result),
      (e: unknown) => {
        const r = toErrorRecord(e);
        reply(false, { code: r.code, message: r.message });
      },
    );
  }

  private settle(payload: unknown[]): void {
    const [, id, ok, value] = payload;
    const p = typeof id === 'number' ? this.pending.get(id) : undefined;
    if (p === undefined) return;
    this.pending.delete(id as number);
    this.o.clock.clearTimeout(p.timer);
    if (findForbiddenKey(value) !== undefined) return p.reject(troupeError('ERR_BAD_FRAME', 'an admin reply names a prototype key'));
    if (ok === true) return p.resolve(value as AdminResult);
    const e = value as Partial<ErrorRecord> | null;
    p.reject(fromErrorRecord({ code: e?.code ?? 'ERR_INTERNAL', message: typeof e?.message === 'string' ? e.message : 'the peer failed the admin command' }));
  }
}
