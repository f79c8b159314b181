/**
 * What the security tests read from a node from the outside, to say "nothing happened": its
 * membership view and its Prometheus counters (actor messages processed, membership changes).
 */
import { getJson } from '../helpers/process-cluster.ts';

export interface MemberView {
  id: number;
  status: string;
  incarnation: number;
  address: string;
}

/** The members a node sees (`GET /cluster/members`), sorted by id, as id/status/incarnation/address only. */
export async function membersOf(node: { url: string }): Promise<MemberView[]> {
  const view = await getJson<{ members: MemberView[] }>(node.url + '/cluster/members', 2_000);
  return view.members.map(({ id, status, incarnation, address }) => ({ id, status, incarnation, address })).sort((a, b) => a.id - b.id);
}

/** Every node's membership view, in the order of `nodes`. */
export function membershipOf(nodes: ReadonlyArray<{ url: string }>): Promise<MemberView[][]> {
  return Promise.all(nodes.map(membersOf));
}

/**
 * The sum of every sample of `name` in a node's `GET /metrics` (all label sets), 0 when absent.
 * A plain text scan: these tests only need a few counters, not the exposition format's checks.
 */
export async function metric(node: { url: string }, name: string): Promise<number> {
  const text = await (await fetch(node.url + '/metrics', { signal: AbortSignal.timeout(2_000) })).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-z_:][a-z0-9_:]*)(\{[^}]*\})? (\S+)/i.exec(line);
    if (m && m[1] === name) sum += Number(m[3]);
  }
  return sum;
}

/** Actor messages processed on every node, summed: a handler that ran anywhere moves it. */
export async function messagesProcessed(nodes: ReadonlyArray<{ url: string }>): Promise<number> {
  const counts = await Promise.all(nodes.map((n) => metric(n, 'troupe_actor_processed_total')));
  return counts.reduce((a, b) => a + b, 0);
}

/** Membership status changes every node has seen, summed: a rogue that joined, or a peer suspected, moves it. */
export async function membershipChanges(nodes: ReadonlyArray<{ url: string }>): Promise<number> {
  const counts = await Promise.all(nodes.map((n) => metric(n, 'troupe_membership_changes_total')));
  return counts.reduce((a, b) => a + b, 0);
}
