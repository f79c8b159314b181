/**
 * The cordon in the membership reducer (`Member.cordoned`, src/node/storage-guard.ts uses it): a
 * node that cordons itself stays alive and probed but leaves every ring; the change rides a new
 * incarnation so it overrides older records wherever it spreads, survives a refutation, and is
 * refused on the wire when malformed.
 */
import { describe, expect, it } from 'vitest';
import { createMembershipState, membershipReducer, upMembers, type MemberUpdate, type MembershipEffect, type MembershipState } from '../../src/cluster/membership.ts';
import { SimCluster } from './sim-cluster.ts';

const addr = (id: number) => `mem:${id}`;

function node(members: { id: number; address: string }[] = [{ id: 1, address: addr(1) }]): MembershipState {
  return createMembershipState({ self: { id: 0, address: addr(0) }, members, seed: 1, incarnation: 5 }, 0);
}

function gossip(s: MembershipState, updates: unknown[], from = 9): { state: MembershipState; effects: MembershipEffect[] } {
  return membershipReducer(s, { type: 'message-received', from: { id: from, address: addr(from) }, payload: { proto: 'swim', type: 'gossip', updates } }, 10);
}

const rec = (id: number, incarnation: number, extra: Partial<MemberUpdate> = {}): MemberUpdate => ({ id, address: addr(id), incarnation, status: 'alive', ...extra });

describe('cordon in membership', () => {
  it('cordoning itself: a new incarnation, still alive, off its own ring, gossiped at once', () => {
    const step = membershipReducer(node(), { type: 'cordon', on: true, reason: 'storage is full' }, 1);
    const me = step.state.members.get(0)!;
    expect(me).toMatchObject({ status: 'alive', incarnation: 6, cordoned: true });
    expect(upMembers(step.state).map((m) => m.id)).toEqual([1]);
    expect(step.state.upIds).toEqual([1]); // it still probes its peers
    expect(step.effects).toContainEqual(expect.objectContaining({ type: 'member-changed', up: false, wasUp: true }));
    expect(step.effects).toContainEqual(expect.objectContaining({ type: 'log', level: 'warn', data: expect.objectContaining({ reason: 'storage is full' }) }));
    expect(step.state.broadcasts[0]).toMatchObject({ id: 0 });
  });

  it.each([
    { name: 'cordon twice: the second changes nothing', events: [true, true], incarnation: 6, cordoned: true },
    { name: 'cordon then end it: two incarnations, back on the ring', events: [true, false], incarnation: 7, cordoned: undefined },
    { name: 'ending a cordon never begun changes nothing', events: [false], incarnation: 5, cordoned: undefined },
  ])('$name', ({ events, incarnation, cordoned }) => {
    let s = node();
    for (const on of events) s = membershipReducer(s, { type: 'cordon', on }, 1).state;
    expect(s.members.get(0)).toMatchObject({ incarnation });
    expect(s.members.get(0)!.cordoned).toBe(cordoned);
    expect(upMembers(s).some((m) => m.id === 0)).toBe(cordoned === undefined);
  });

  it('a leaving node does not cordon', () => {
    let s = membershipReducer(node(), { type: 'leave' }, 1).state;
    s = membershipReducer(s, { type: 'cordon', on: true }, 2).state;
    expect(s.members.get(0)!.cordoned).toBeUndefined();
  });

  const cases: { name: string; updates: MemberUpdate[]; cordoned: true | undefined; onRing: boolean }[] = [
    { name: 'a cordoned record', updates: [rec(1, 1), rec(1, 2, { cordoned: true })], cordoned: true, onRing: false },
    { name: 'an older uncordoned record after it is ignored', updates: [rec(1, 2, { cordoned: true }), rec(1, 1)], cordoned: true, onRing: false },
    { name: 'the cordon ended by a newer incarnation', updates: [rec(1, 2, { cordoned: true }), rec(1, 3)], cordoned: undefined, onRing: true },
    { name: 'a suspicion of a cordoned member keeps it off the ring', updates: [rec(1, 2, { cordoned: true }), rec(1, 2, { status: 'suspect', cordoned: true })], cordoned: true, onRing: false },
  ];
  for (const c of cases) {
    it(`learns: ${c.name}`, () => {
      let s = node();
      for (const u of c.updates) s = gossip(s, [u]).state;
      expect(s.members.get(1)!.cordoned).toBe(c.cordoned);
      expect(upMembers(s).some((m) => m.id === 1)).toBe(c.onRing);
      expect(s.upIds).toContain(1);
    });
  }

  it('reports a cordon as a member change off the ring, with the status unchanged', () => {
    const s = gossip(node(), [rec(1, 1)]).state;
    const step = gossip(s, [rec(1, 2, { cordoned: true })]);
    expect(step.effects).toContainEqual(expect.objectContaining({ type: 'member-changed', previous: 'alive', up: false, wasUp: true, member: expect.objectContaining({ id: 1, status: 'alive' }) }));
  });

  it('keeps its cordon when it refutes a suspicion of itself', () => {
    let s = membershipReducer(node(), { type: 'cordon', on: true }, 1).state;
    s = gossip(s, [{ ...rec(0, 6), status: 'suspect' }]).state;
    expect(s.members.get(0)).toMatchObject({ incarnation: 7, cordoned: true, status: 'alive' });
  });

  for (const bad of [false, 'yes', 1, null]) {
    it(`drops a wire record whose cordoned is ${JSON.stringify(bad)}`, () => {
      const step = gossip(node([]), [{ ...rec(1, 1), cordoned: bad }]);
      expect(step.state.members.has(1)).toBe(false);
    });
  }

  it('spreads over a cluster: every node leaves the cordoned one off its ring and still holds it alive', () => {
    const sim = new SimCluster({ size: 5, seed: 4 });
    sim.run(1_000);
    const [n0, ...rest] = sim.others();
    n0!.cordon(true, 'test');
    const ms = sim.runUntil(() => rest.every((d) => !d.upMembers().some((m) => m.id === n0!.state.self.id)), 2_000);
    expect(ms).toBeLessThan(1_000);
    for (const d of rest) expect(d.member(n0!.state.self.id)?.status).toBe('alive');
    n0!.cordon(false);
    expect(sim.runUntil(() => rest.every((d) => d.upMembers().some((m) => m.id === n0!.state.self.id)), 2_000)).toBeLessThan(1_000);
    sim.run(3_000);
    for (const d of rest) expect(d.member(n0!.state.self.id)).toMatchObject({ status: 'alive' });
    expect(n0!.cordoned).toBe(false);
  });
});
