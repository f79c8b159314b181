/**
 * The faults of chaos scenario 3 (test/chaos/worker-faults.chaos.ts), as commands of one actor
 * kind served beside the demo app. Each misbehaves inside the worker thread that hosts it:
 *
 *   throw      the handler throws                        → ERR_HANDLER_FAILED, the actor restarts
 *   exit       process.exit(1) (ends the thread only)    → ERR_WORKER_DIED, the slot is re-hosted
 *   hog        allocates until the heap limit            → ERR_WORKER_DIED (resourceLimits)
 *   bigReply   answers `bytes` of text                   → ERR_NOT_SERIALIZABLE past maxMessageBytes
 *   bigTell    tells `sink` `bytes` of text              → ERR_NOT_SERIALIZABLE past maxMessageBytes
 *   bigBuffer  fills a Buffer of `mb` MiB (off the heap,  → ERR_NOT_SERIALIZABLE (binary data), the
 *              so resourceLimits do not see it), answers it   thread lives: its heap limit is not hit
 *   flood      asks `sink` `n` times with `bytes` each    → { ok, ERR_MAILBOX_FULL, … } counts
 *              (sink/<same key>: same partition, so same node and thread, delivered in one turn)
 *
 * `sink` takes anything and keeps nothing (no event), so a flood costs no journal space.
 */
import { defineActor } from '../../../src/actors/define-actor.ts';

type Sizes = { bytes?: number; mb?: number; n?: number; to?: string };

const num = (v: unknown, fallback: number) => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : fallback);

export const faults = defineActor({
  kind: 'faults',
  initial: () => ({ n: 0 }),
  apply: (s: { n: number }) => ({ n: s.n + 1 }),
  commands: {
    ok: { handle: (ctx) => (ctx.emit({}), { n: ctx.state.n }) },
    throw: {
      handle: () => {
        throw new Error('injected: the handler throws');
      },
    },
    exit: {
      handle: () => {
        // Inside a worker thread this ends the thread, not the process.
        process.exit(1);
      },
    },
    hog: {
      handle: () => {
        // Bounded, so a node whose heap limit did not reach its threads answers instead of eating the machine.
        const keep: unknown[] = [];
        for (let i = 0; i < 20_000_000; i++) keep.push({ i, s: `hog-${i}` });
        return { survived: keep.length };
      },
    },
    bigReply: { handle: (_ctx, input: Sizes) => 'r'.repeat(num(input?.bytes, 8 << 20)) },
    bigTell: {
      handle: (ctx, input: Sizes) => {
        ctx.tell('sink', input?.to ?? ctx.key, { command: 'take', input: 't'.repeat(num(input?.bytes, 8 << 20)) });
        return null;
      },
    },
    bigBuffer: {
      handle: (_ctx, input: Sizes) => {
        const buffer = Buffer.alloc(num(input?.mb, 64) << 20, 1);
        return buffer as unknown as null;
      },
    },
    flood: {
      handle: async (ctx, input: Sizes) => {
        const payload = 'f'.repeat(num(input?.bytes, 100_000));
        const asks = Array.from({ length: num(input?.n, 40) }, () =>
          ctx.ask('sink', input?.to ?? ctx.key, { command: 'take', input: payload }, { timeoutMs: 10_000 }),
        );
        const counts: Record<string, number> = {};
        for (const r of await Promise.allSettled(asks)) {
          const code = r.status === 'fulfilled' ? 'ok' : String((r.reason as { code?: string }).code);
          counts[code] = (counts[code] ?? 0) + 1;
        }
        return counts;
      },
    },
  },
});

export const sink = defineActor({
  kind: 'sink',
  initial: () => ({}),
  apply: (s: Record<string, never>) => s,
  commands: {
    take: { readOnly: true, handle: (_ctx, input: unknown) => ({ took: typeof input === 'string' ? input.length : 0 }) },
  },
});
