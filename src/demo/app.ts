/**
 * The demo app `npm start` serves: session actors a newcomer can poke with curl.
 *
 *   curl -XPOST localhost:8080/actors/counter/k1/incr -d '{"by":2}'   → {"n":2}
 *   curl -XPOST localhost:8080/actors/cart/s1/add -d '{"sku":"tea","qty":2}'
 */
import { defineActor, inputObject, invalidInput, optionalInt, requiredString } from '../actors/define-actor.ts';

type Counter = { n: number };
type CounterEvent = { by: number };

/** `incr` (optional `{ "by": n }`) and `get`, each replying `{ "n": <count> }`. Used by the benchmarks. */
export const counter = defineActor({
  kind: 'counter',
  initial: (): Counter => ({ n: 0 }),
  apply: (s: Counter, e: CounterEvent): Counter => ({ n: s.n + e.by }),
  commands: {
    incr: {
      input: (raw) => ({ by: optionalInt(raw, 'by', 1, -1_000_000, 1_000_000) }),
      handle: (ctx, { by }) => {
        ctx.emit({ by });
        return { n: ctx.state.n };
      },
    },
    get: { readOnly: true, handle: (ctx) => ({ n: ctx.state.n }) },
  },
});

type Cart = { items: Record<string, number>; checkedOut: boolean };
type CartEvent = { type: 'added'; sku: string; qty: number } | { type: 'removed'; sku: string } | { type: 'checked-out' };

/** A shopping cart: the session actor troupe exists for. */
export const cart = defineActor({
  kind: 'cart',
  initial: (): Cart => ({ items: {}, checkedOut: false }),
  apply: (s: Cart, e: CartEvent): Cart => {
    switch (e.type) {
      case 'added':
        return { ...s, items: { ...s.items, [e.sku]: (s.items[e.sku] ?? 0) + e.qty } };
      case 'removed': {
        const items = { ...s.items };
        delete items[e.sku];
        return { ...s, items };
      }
      case 'checked-out':
        return { ...s, checkedOut: true };
    }
  },
  commands: {
    add: {
      input: (raw) => ({ sku: requiredString(raw, 'sku', 64), qty: optionalInt(raw, 'qty', 1, 1, 1000) }),
      handle: (ctx, { sku, qty }) => {
        if (ctx.state.checkedOut) throw invalidInput('cart is checked out');
        ctx.emit({ type: 'added', sku, qty });
        return view(ctx.state);
      },
    },
    remove: {
      input: (raw) => ({ sku: requiredString(raw, 'sku', 64) }),
      handle: (ctx, { sku }) => {
        if (ctx.state.items[sku] !== undefined) ctx.emit({ type: 'removed', sku });
        return view(ctx.state);
      },
    },
    checkout: {
      input: (raw) => inputObject(raw),
      handle: (ctx) => {
        if (Object.keys(ctx.state.items).length === 0) throw invalidInput('cart is empty');
        if (!ctx.state.checkedOut) ctx.emit({ type: 'checked-out' });
        return view(ctx.state);
      },
    },
    get: { readOnly: true, handle: (ctx) => view(ctx.state) },
  },
});

function view(s: Cart) {
  return { items: s.items, count: Object.values(s.items).reduce((a, b) => a + b, 0), checkedOut: s.checkedOut };
}

type Said = { from: string; text: string; at: number };
type Room = { count: number; recent: Said[] };

/** Messages a room keeps in its state for a newcomer (its log holds them all until snapshots truncate it). */
const ROOM_RECENT = 50;

/**
 * A chat room: every tab in the room holds a WebSocket to it (`/ws/room/<name>`), and what one
 * says reaches the others as a push — journaled with the event, so a tab that reconnects to any
 * node after its node died gets what it missed, in order, once.
 */
export const room = defineActor({
  kind: 'room',
  initial: (): Room => ({ count: 0, recent: [] }),
  apply: (s: Room, e: Said): Room => ({ count: s.count + 1, recent: [...s.recent.slice(-(ROOM_RECENT - 1)), e] }),
  commands: {
    say: {
      input: (raw) => ({ from: requiredString(raw, 'from', 32), text: requiredString(raw, 'text', 1000) }),
      handle: (ctx, { from, text }) => {
        const said = { from, text, at: Date.now() };
        ctx.emit(said);
        ctx.push({ n: ctx.state.count, ...said });
        return { n: ctx.state.count };
      },
    },
    recent: { readOnly: true, handle: (ctx) => ({ count: ctx.state.count, recent: ctx.state.recent }) },
  },
});
