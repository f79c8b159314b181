/**
 * The chat page `troupe cluster` serves at `GET /` (with app.ts): every tab a WebSocket session
 * on the `room` actor, every browser a `visitor` actor keyed by its `sid` cookie. Its nodes need
 * one session secret (the launcher keeps one in the data directory).
 *
 *   open http://127.0.0.1:8081/?room=lobby in two tabs, say something, kill -9 a node
 *   curl -c jar -b jar -XPOST localhost:8081/sessions/visitor/name -d '{"name":"ada"}'
 *   curl -b jar localhost:8081/sessions/visitor/get                                   → {"name":"ada"}
 */
import { defineActor, invalidInput, requiredString } from '../actors/define-actor.ts';
import { CHAT_PAGE_HTML } from './chat-page.ts';

/** The sticky-cookie load scenario's counter (`troupe bench --scenario sticky-cookie`): served wherever the chat page is, as its nodes have a session secret. */
export { visits } from './visits.ts';

type Visitor = { name: string | null };
type Named = { name: string };

/** As the room's `say` takes `from`. */
const NAME_MAX = 32;

/** A browser's session: the name its tabs say things under, kept across reloads and nodes. */
export const visitor = defineActor({
  kind: 'visitor',
  session: 'cookie',
  // A sid cookie lives a week (--session-max-age): a visitor idle longer than that is unreachable.
  ttlMs: 8 * 24 * 3_600_000,
  initial: (): Visitor => ({ name: null }),
  apply: (_s: Visitor, e: Named): Visitor => ({ name: e.name }),
  commands: {
    name: {
      input: (raw) => {
        const name = requiredString(raw, 'name', NAME_MAX).trim();
        // Control characters would garble every other tab's list; an all-space name says nothing.
        if (name.length === 0 || /[\u0000-\u001f\u007f]/.test(name)) throw invalidInput('name must have a visible character and no control characters', { field: 'name' });
        return { name };
      },
      handle: (ctx, { name }) => {
        if (ctx.state.name !== name) ctx.emit({ name });
        return { name };
      },
    },
    get: { readOnly: true, handle: (ctx) => ({ name: ctx.state.name }) },
  },
});

/** Served at `GET /` by every node (src/node/app-pages.ts). */
export const page = { html: CHAT_PAGE_HTML };
