/**
 * When one write's reply may leave, per actor kind (issue 7, item 1). The partition's commit
 * point — what apply and truncation follow — always needs the node's W copies; a kind may settle
 * its own writes earlier (`lazy`: the primary's own commit; a smaller `writeQuorum`) or later (a
 * larger one). Pure functions; the driver counts copies with `copiesHolding`.
 *
 * ```
 *   one log entry, three kinds' writes        settled when
 *     cart   (node default: W=2)              commit point ≥ seq     (2 copies)
 *     clicks (durability 'lazy')              own store committed    (1 copy)
 *     ledger (writeQuorum 3)                  3 members hold seq     (after the commit point)
 * ```
 */
import { ownSet, type PrimaryState } from './primary.ts';

/** The durabilities a replicated node (and a kind on it) may use. */
export type ReplicatedDurability = 'replicated' | 'replicated+flush' | 'lazy';

/** A kind's own settings (defineActor's `durability` and `writeQuorum`); unset means the node's. */
export interface KindDurability {
  readonly durability?: ReplicatedDurability;
  readonly writeQuorum?: number;
}

/** `commit`: at the partition's commit point; `copies`: once that many members of the epoch's set hold the entry. */
export type SettleRule = { readonly type: 'commit' } | { readonly type: 'copies'; readonly copies: number };

const AT_COMMIT: SettleRule = { type: 'commit' };
const LOCAL: SettleRule = { type: 'copies', copies: 1 };

/** The rule for a write of a kind with `kind` settings on a node whose durability and W are `node`'s. */
export function settleRuleOf(
  kind: KindDurability | undefined,
  node: { durability: ReplicatedDurability; writeQuorum: number },
): SettleRule {
  if ((kind?.durability ?? node.durability) === 'lazy') return LOCAL;
  const w = kind?.writeQuorum ?? node.writeQuorum;
  return w === node.writeQuorum ? AT_COMMIT : { type: 'copies', copies: w };
}

/**
 * The W a fence must assume: the smallest W any write may be acknowledged with. A fence gathers
 * |S| − W + 1 promises so that every W-subset of S meets one of them (pigeonhole: the promises
 * and a W-set together exceed |S|); the smaller W, the more promises that takes, so the smallest
 * W of any kind is the strictest. Lazy kinds are left out: they acknowledge at one copy by
 * choice and accept losing it (REPLICATION.md, lazy), so they must not make every fence need
 * all of S (which would leave a partition unavailable after any one death).
 */
export function fenceWriteQuorum(nodeW: number, kinds: Iterable<KindDurability>, nodeDurability: ReplicatedDurability): number {
  let w = nodeW;
  for (const k of kinds) {
    if ((k.durability ?? nodeDurability) === 'lazy') continue;
    if (k.writeQuorum !== undefined) w = Math.min(w, k.writeQuorum);
  }
  return w;
}

/** Members of the epoch's own set (named last) that hold entry `seq`: the primary by its own store, the others by what they confirmed. */
export function copiesHolding(primary: PrimaryState, seq: number): number {
  let n = 0;
  for (const m of ownSet(primary).members) {
    const held = m === primary.self ? primary.durable : (primary.matched.get(m) ?? 0);
    if (held >= seq) n++;
  }
  return n;
}
