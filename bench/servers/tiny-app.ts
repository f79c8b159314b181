/**
 * The admin-latency benchmark's fixture app: a `tiny` actor that is as small as an actor gets
 * (empty state, no events, one read-only command), and a `seeder` whose one command tells a
 * range of tiny actors to wake up. One HTTP request to a seeder activates up to `count` actors
 * inside the worker thread, with no per-actor HTTP request, JSON body or port crossing: this is
 * how bench/admin-latency.ts makes a node hold 1,000,000 resident actors in seconds.
 *
 *   troupe start --app ./bench/servers/tiny-app.ts --max-resident 2000000
 *   curl -XPOST localhost:8080/actors/seeder/s0/seed -d '{"from":0,"count":100000}'   → {"told":100000}
 */
import { defineActor, optionalInt } from '../../src/actors/define-actor.ts';

type Empty = Record<string, never>;

/** Tiny actors stay resident for the whole run: the bench measures admin calls over them. */
const DAY_MS = 24 * 3600 * 1000;

export const tiny = defineActor({
  kind: 'tiny',
  initial: (): Empty => ({}),
  apply: (s: Empty): Empty => s,
  idleTimeoutMs: DAY_MS,
  commands: {
    touch: { readOnly: true, handle: () => null },
  },
});

/** Seeds at most this many actors per request, so one handler turn stays well under a second. */
const MAX_SEED = 1_000_000;

export const seeder = defineActor({
  kind: 'seeder',
  initial: (): Empty => ({}),
  apply: (s: Empty): Empty => s,
  idleTimeoutMs: DAY_MS,
  commands: {
    /** Tells `tiny/t<from>` … `tiny/t<from+count-1>` to `touch`: each one activates. */
    seed: {
      readOnly: true,
      input: (raw) => ({ from: optionalInt(raw, 'from', 0, 0), count: optionalInt(raw, 'count', 1000, 1, MAX_SEED) }),
      handle: (ctx, { from, count }: { from: number; count: number }) => {
        for (let i = from; i < from + count; i++) ctx.tell('tiny', `t${i}`, { command: 'touch' });
        return { told: count };
      },
    },
  },
});
