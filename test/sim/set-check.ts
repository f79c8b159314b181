/**
 * The set checker (Jepsen's set workload) for carts: every `add` puts a unique item (sku) in a
 * cart, once. After the cluster is quiet, read each cart:
 *   - every acknowledged item is present        (else: lost)
 *   - no item is present more than once          (qty > 1: applied twice, e.g. a resend or a replay)
 *   - an item whose add was refused is absent    (failed means known not applied)
 *   - nothing is present that was never added    (a phantom)
 * An add with an unknown outcome may be present or not.
 */
import type { Outcome } from '../helpers/history.ts';

export interface SetOperation {
  cart: string;
  sku: string;
  outcome: Outcome;
  error?: string;
  start: number;
  end: number;
  via: number;
}

/** Violations, one line each (empty: the history is valid). `finals`: cart → its items (sku → qty). */
export function checkSets(ops: readonly SetOperation[], finals: ReadonlyMap<string, Readonly<Record<string, number>>>): string[] {
  const out: string[] = [];
  const attempted = new Map<string, SetOperation>();
  for (const op of ops) attempted.set(`${op.cart}\u0000${op.sku}`, op);
  for (const op of ops) {
    const qty = finals.get(op.cart)?.[op.sku];
    if (op.outcome === 'ok' && qty === undefined)
      out.push(`cart ${op.cart}: acknowledged item ${op.sku} (through node ${op.via} at ${op.end} ms) is lost`);
    if (op.outcome === 'failed' && qty !== undefined)
      out.push(`cart ${op.cart}: item ${op.sku} is present though its add was refused (${op.error})`);
  }
  for (const [cart, items] of finals) {
    for (const [sku, qty] of Object.entries(items)) {
      if (!attempted.has(`${cart}\u0000${sku}`)) out.push(`cart ${cart}: item ${sku} was never added`);
      else if (qty !== 1) out.push(`cart ${cart}: item ${sku} is there ${qty} times`);
    }
  }
  return out;
}
