/**
 * Entry of a worker thread, run by piscina as one long-lived task per slot. The task holds a
 * transferred MessagePort for the slot's actor traffic and resolves only when the main thread
 * asks it to stop; if the thread dies, piscina rejects the task and the supervisor re-hosts
 * the slot on a fresh thread.
 */
import type { MessagePort } from 'node:worker_threads';
import { threadId } from 'node:worker_threads';
import { ActorHost, type HostLimits } from '../actors/actor-host.ts';
import { loadActorModules } from '../actors/registry.ts';
import { systemClock } from '../core/clock.ts';
import { toErrorRecord } from '../core/errors.ts';
import { createLogger, logTap, type LogFormat } from '../core/logger.ts';
import type { Journal, JournalConfig } from '../persistence/journal.ts';
import { createJournal } from '../persistence/create-journal.ts';
import { PortJournal } from './port-journal.ts';
import { PortReader, PortWriter } from './port-protocol.ts';
import type { RingMember } from '../cluster/ring.ts';
import { ownershipOf } from '../node/local-actors.ts';
import { partitionOf } from '../replication/partition-table.ts';

export interface WorkerTask {
  port: MessagePort;
  slot: number;
  slots: number;
  modules: string[];
  journal: JournalConfig;
  node: number | string;
  logLevel?: string;
  logFormat?: LogFormat;
  throughput?: number;
  defaultAskTimeoutMs?: number;
  /** Per-worker actor host limits (ActorHostOptions of the same names). */
  host?: HostLimits;
}

/** How often a worker hands its warn-and-above log lines to the main thread, ms. */
const LOG_FORWARD_MS = 200;

/**
 * A worker's warn-and-above lines (a handler that failed, an actor that escalated) reach the main
 * thread's log tap, so the REPL's `tail` shows them with the node's own. Batched every 200 ms over
 * the slot's port; the worker's tap buffer is bounded (its oldest lines go, counted), so a burst
 * never blocks the worker. Lower levels stay in the worker's own output.
 */
function forwardLogLines(writer: PortWriter, node: number | string): void {
  const follower = logTap.follow('warn');
  const timer = setInterval(() => {
    const { lines, dropped } = follower.take();
    if (dropped > 0) lines.unshift(JSON.stringify({ level: 40, time: Date.now(), node, msg: `${dropped} worker log lines dropped before forwarding` }));
    if (lines.length > 0) writer.event('log', { lines });
  }, LOG_FORWARD_MS);
  timer.unref();
}

export default async function hostSlot(task: WorkerTask): Promise<void> {
  const { port } = task;
  const log = createLogger({ node: task.node, worker: task.slot, thread: threadId }, task.logLevel, task.logFormat ?? 'json');
  const writer = new PortWriter(port);
  forwardLogLines(writer, task.node);
  // With `journal: { type: 'node' }` the main thread serves the journal over this same port.
  const portJournal = task.journal.type === 'node' ? PortJournal.over(writer) : undefined;
  let host: ActorHost;
  let journal: Journal;
  try {
    const registry = await loadActorModules(task.modules);
    journal = portJournal ?? createJournal(task.journal);
    host = new ActorHost({
      registry,
      journal,
      clock: systemClock,
      log,
      slot: task.slot,
      slots: task.slots,
      outbound: (kind, key, command, input, askId, msgId) => writer.msg(kind, key, command, input, askId, msgId),
      onEscalated: (kind, key, error) => writer.event('escalated', { kind, key, error }),
      onPush: (nodes, note) => writer.event('push', { nodes, note }),
      ...(task.throughput !== undefined && { throughput: task.throughput }),
      ...task.host,
      ...(task.defaultAskTimeoutMs !== undefined && { defaultAskTimeoutMs: task.defaultAskTimeoutMs }),
    });
  } catch (e) {
    writer.event('failed', toErrorRecord(e));
    writer.flush();
    throw e;
  }
  // Asks from the main thread are answered over the same port.
  const fromMain = { reply: (askId: number, ok: boolean, value: unknown) => writer.reply(askId, ok, value) };

  return new Promise<void>((resolve) => {
    const stop = async (askId: number) => {
      await host.stop();
      await journal.close();
      writer.reply(askId, true, host.stats());
      writer.flush();
      port.close();
      resolve();
    };
    const reader = new PortReader({
      msg: (kind, key, command, input, askId, msgId) =>
        host.deliver(kind, key, command, input, askId, msgId, askId === 0 ? undefined : fromMain),
      // Negative ids answer this thread's journal requests; positive ones the host's asks.
      reply: (askId, ok, value) => (askId < 0 ? portJournal?.answer(askId, ok, value) : host.reply(askId, ok, value)),
      control: (askId, name, arg) => {
        // The journal's own durability, so a test can see that `--durability` reached the thread.
        if (name === 'stats') {
          const durability = (journal as { durability?: string }).durability;
          writer.reply(askId, true, { ...host.stats(), journal: { type: task.journal.type, durability } });
        } else if (name === 'stop') void stop(askId);
        else if (name === 'placement') {
          const { members, selfId } = arg as { members: RingMember[]; selfId: number };
          host.setOwnership(ownershipOf(members, selfId));
        } else if (name === 'reload-partitions') {
          const { partitions, count } = arg as { partitions: number[]; count: number };
          const stale = new Set(partitions);
          host.reloadWhere((_kind, key) => stale.has(partitionOf(key, count)));
        } else if (name === 'activate') {
          const { kind, keys } = arg as { kind: string; keys: string[] };
          for (const key of keys) host.wake(kind, key);
        } else if (name === 'inspect') {
          const { kind, key } = arg as { kind: string; key: string };
          host.inspect(kind, key).then(
            (v) => writer.reply(askId, true, v),
            (e: unknown) => writer.reply(askId, false, toErrorRecord(e)),
          );
        } else if (name === 'steer-actor' || name === 'restart-actor') {
          // restart-actor: steer-actor with op 'restart' (the older control name, kept for callers).
          const { kind, key, op } = arg as { kind: string; key: string; op?: 'restart' | 'passivate' };
          writer.reply(askId, true, host.system(kind, key, name === 'restart-actor' ? 'restart' : op!));
        } else if (name === 'top') {
          writer.reply(askId, true, host.top((arg as { n: number }).n));
        } else writer.reply(askId, false, { code: 'ERR_INVALID_OPTION', message: `unknown control '${name}'` });
      },
      event: () => undefined,
    });
    port.on('message', (batch: unknown[]) => reader.decode(batch));
    writer.event('ready', { slot: task.slot, threadId });
  });
}
