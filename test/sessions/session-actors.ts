/**
 * Actor kinds keyed by each of the gateway's session sources, for the sticky-session tests
 * (unit tests build a registry of them; process tests load this module with `--app`).
 */
import { defineActor, optionalInt, type AuthorizeRequest } from '../../src/actors/define-actor.ts';

type Count = { n: number };
const counting = {
  initial: (): Count => ({ n: 0 }),
  apply: (s: Count, e: { by: number }): Count => ({ n: s.n + e.by }),
  commands: {
    hit: {
      input: (raw: unknown) => ({ by: optionalInt(raw, 'by', 1, 1, 100) }),
      handle: (ctx: { emit(e: { by: number }): void; state: Count; key: string }, { by }: { by: number }) => {
        ctx.emit({ by });
        return { n: ctx.state.n, key: ctx.key };
      },
    },
    get: { readOnly: true, handle: (ctx: { state: Count; key: string }) => ({ n: ctx.state.n, key: ctx.key }) },
  },
};

/** A visit counter per browser: its key is the signed `sid` cookie. */
export const cookieVisits = defineActor({ kind: 'cookie-visits', session: 'cookie', ...counting });

/** A visit counter per client address. */
export const addressVisits = defineActor({ kind: 'address-visits', session: 'address', ...counting });

/** The secret a caller must bring, and a command nobody may call. */
export const GUARD_TOKEN = 'Bearer let-me-in';

/** Path-keyed, behind an authorization hook: needs GUARD_TOKEN, and `get` of key 'secret' is refused to all. */
export const guarded = defineActor({
  kind: 'guarded',
  ...counting,
  authorize: (r: AuthorizeRequest) => r.headers.authorization === GUARD_TOKEN && !(r.key === 'secret' && r.command === 'get'),
});
