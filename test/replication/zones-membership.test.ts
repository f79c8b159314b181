/**
 * The zone label in the membership reducer: carried on the wire with the member's record, kept
 * when a relay that predates zones forwards the record without it, replaced by a restart, and
 * refused when malformed (on the wire: the record is dropped; as an option: a named error).
 */
import { describe, expect, it } from 'vitest';
import {
  createMembershipState,
  membershipReducer,
  upMembers,
  type MemberUpdate,
  type MembershipEffect,
  type MembershipState,
} from '../../src/cluster/membership.ts';
import { HashRing } from '../../src/cluster/ring.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import { PartitionTable } from '../../src/replication/partition-table.ts';

const addr = (id: number) => `mem:${id}`;

function node(zone?: string, members: { id: number; address: string; zone?: string }[] = []): MembershipState {
  return createMembershipState({ self: { id: 0, address: addr(0) }, members, seed: 1, ...(zone !== undefined && { zone }) }, 0);
}

function gossip(s: MembershipState, updates: unknown[], from = 9): { state: MembershipState; effects: MembershipEffect[] } {
  return membershipReducer(s, { type: 'message-received', from: { id: from, address: addr(from) }, payload: { proto: 'swim', type: 'gossip', updates } }, 10);
}

const alive = (id: number, incarnation: number, zone?: string): MemberUpdate => ({
  id,
  address: addr(id),
  incarnation,
  status: 'alive',
  ...(zone !== undefined && { zone }),
});

describe('zone labels in membership', () => {
  it('sends its own zone with its record (join)', () => {
    const step = membershipReducer(node('rack-1'), { type: 'join', seeds: [addr(5)] }, 0);
    const join = step.effects.find((e) => e.type === 'send');
    expect(join).toMatchObject({ payload: { type: 'join', member: { id: 0, zone: 'rack-1' } } });
  });

  it('sends no zone field when it has none (older nodes see the record they always did)', () => {
    const step = membershipReducer(node(), { type: 'join', seeds: [addr(5)] }, 0);
    const join = step.effects.find((e) => e.type === 'send') as { payload: { member: MemberUpdate } };
    expect(Object.hasOwn(join.payload.member, 'zone')).toBe(false);
  });

  const cases: { name: string; updates: MemberUpdate[]; zone: string | undefined }[] = [
    { name: 'a labelled record', updates: [alive(1, 1, 'hostA')], zone: 'hostA' },
    { name: 'a record from a node that predates zones', updates: [alive(1, 1)], zone: undefined },
    { name: 'the same incarnation relayed without its zone keeps it', updates: [alive(1, 1, 'hostA'), { ...alive(1, 1), status: 'suspect' }], zone: 'hostA' },
    { name: 'a restart (new incarnation) brings its own zone', updates: [alive(1, 1, 'hostA'), alive(1, 2, 'hostB')], zone: 'hostB' },
    { name: 'a restart without a zone drops the old one', updates: [alive(1, 1, 'hostA'), alive(1, 2)], zone: undefined },
  ];
  for (const c of cases) {
    it(`learns: ${c.name}`, () => {
      let s = node();
      for (const u of c.updates) s = gossip(s, [u]).state;
      expect(s.members.get(1)?.zone).toBe(c.zone);
      expect(upMembers(s).find((m) => m.id === 1)?.zone).toBe(c.zone);
    });
  }

  it('reports a zone change as a member change (the ring is rebuilt from it)', () => {
    const s = gossip(node(), [alive(1, 1, 'hostA')]).state;
    const step = gossip(s, [alive(1, 2, 'hostB')]);
    expect(step.effects).toContainEqual(expect.objectContaining({ type: 'member-changed', member: expect.objectContaining({ id: 1, zone: 'hostB' }) }));
  });

  for (const bad of ['', 'a b', 'x'.repeat(65), 'node:1', 7, null]) {
    it(`drops a wire record whose zone is ${JSON.stringify(bad)}`, () => {
      const step = gossip(node(), [{ ...alive(1, 1), zone: bad }]);
      expect(step.state.members.has(1)).toBe(false);
    });
  }

  it('refuses a malformed zone option, naming it', () => {
    for (const [opts, option] of [
      [{ zone: 'has space' }, 'options.zone'],
      [{ members: [{ id: 1, address: addr(1), zone: '' }] }, 'options.members[0].zone'],
    ] as const) {
      let error: unknown;
      try {
        createMembershipState({ self: { id: 0, address: addr(0) }, ...opts }, 0);
      } catch (e) {
        error = e;
      }
      expect(isTroupeError(error, 'ERR_INVALID_OPTION')).toBe(true);
      expect((error as Error).message).toContain(option);
    }
  });

  it('hands the gossiped zones to a partition table built from the ring', () => {
    let s = node('hostA');
    s = gossip(s, [alive(1, 1, 'hostA'), alive(2, 1, 'hostB')]).state;
    const table = new PartitionTable(new HashRing(upMembers(s)), { replicas: 2 });
    for (let p = 0; p < table.partitions; p++) {
      const zones = table.replicasOf(p).map((id) => (id === 2 ? 'hostB' : 'hostA'));
      expect(new Set(zones).size, `p${p}: ${table.replicasOf(p)}`).toBe(2);
    }
  });
});
