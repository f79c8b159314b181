/**
 * A visit counter per browser, keyed by its signed `sid` cookie: what `troupe bench --scenario
 * sticky-cookie` drives. Its own module, not app.ts: a cookie kind makes every node that serves
 * it require a session secret, and app.ts is started without one everywhere (tests, `troupe demo`).
 * `troupe cluster` serves it through chat.ts, whose nodes always have a secret.
 *
 *   curl -c jar -b jar -XPOST localhost:8081/sessions/visits/hit   → {"n":1}
 *   curl -b jar localhost:8081/sessions/visits/get                  → {"n":1}
 */
import { defineActor } from '../actors/define-actor.ts';

type Visits = { n: number };

export const visits = defineActor({
  kind: 'visits',
  session: 'cookie',
  initial: (): Visits => ({ n: 0 }),
  apply: (s: Visits): Visits => ({ n: s.n + 1 }),
  commands: {
    // Input is ignored: a hit is a hit, so a browser can POST with no body.
    hit: {
      handle: (ctx) => {
        ctx.emit({});
        return { n: ctx.state.n };
      },
    },
    get: { readOnly: true, handle: (ctx) => ({ n: ctx.state.n }) },
  },
});
