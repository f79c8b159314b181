import { describe, expect, it } from 'vitest';
import { Harness, sends } from './membership-harness.ts';
import { SimulatedClock } from '../../src/core/clock.ts';
import { MembershipDriver } from '../../src/cluster/membership-driver.ts';
import {
  createMembershipState,
  type MemberStatus,
  type MemberUpdate,
  type MembershipEffect,
  type MembershipMessage,
  type MembershipState,
  type MembershipStateOptions,
} from '../../src/cluster/membership.ts';
import { LAN_PROFILE } from '../../src/cluster/membership-profiles.ts';
import type { Transport } from '../../src/cluster/transport.ts';
import { addressOf } from './sim-cluster.ts';

/**
 * A node joining through seeds is in only once a seed's join-ack came, not as soon as some member
 * is up (docs/reliability.md, session 6): the join-ack carries `earlier`, the incarnation the seed
 * knew the joiner's id at, and a replaced host must learn that before it promises anything. Here:
 * a peer's ping, gossip or table before the join-ack lets nobody in and the joiner keeps asking
 * its seeds; the join-ack does, and its `earlier` becomes `earlierLife`; a seed tells a joiner
 * (and a retried one) the life its join replaced, or the one its `lives` remember; the driver's
 * `onJoined` fires at the join-ack only.
 */

const lan = LAN_PROFILE;
const SEED = 0;
const PEER = 1;
const JOINER = 9;
/** The joiner's incarnation in this life: anything below it is an earlier life of id 9. */
const LIFE = 5;

function joinedLogs(effects: MembershipEffect[]) {
  return effects.filter((e) => e.type === 'log' && e.msg === 'joined the cluster');
}
function rec(id: number, incarnation: number, status: MemberStatus = 'alive'): MemberUpdate {
  return { id, address: addressOf(id), incarnation, status };
}

/**
 * Node `id` with its protocol timers parked (no probes, so no member it learns of turns suspect
 * or down: any join it sends is the join retry, never the "nobody up" one).
 */
function parked(options: Omit<MembershipStateOptions, 'self'> & { id: number }): MembershipState {
  const { id, ...rest } = options;
  const s = createMembershipState({ self: { id, address: addressOf(id) }, seed: 7, ...rest }, 0);
  return { ...s, nextProbeAt: Infinity, nextGossipAt: Infinity, nextPushPullAt: Infinity, nextReconnectAt: Infinity };
}

/** Node 9 at incarnation LIFE that has sent its join to seed 0 at t = 0. */
function joiner(): Harness {
  const h = new Harness(parked({ id: JOINER, incarnation: LIFE }));
  const joins = sends(h.dispatch({ type: 'join', seeds: [addressOf(SEED)] }), 'join');
  expect(joins.map((e) => e.address)).toEqual([addressOf(SEED)]);
  expect(h.state.joined).toBe(false);
  return h;
}

const clusterTable = [rec(SEED, 0), rec(PEER, 0), rec(2, 0), rec(JOINER, LIFE)];

// ---------------------------------------------------------------------------------------------

describe('a joiner is let in by a seed’s join-ack, not by a member being up', () => {
  it.each([
    { name: 'a ping for it', payload: { proto: 'swim', type: 'ping', seq: 1, target: JOINER, updates: [rec(PEER, 0), rec(2, 0)] }, up: [1, 2] },
    { name: 'gossip', payload: { proto: 'swim', type: 'gossip', updates: [rec(PEER, 0), rec(2, 0)] }, up: [1, 2] },
    { name: 'an ack it never asked for', payload: { proto: 'swim', type: 'ack', seq: 77, updates: [rec(PEER, 0)] }, up: [1] },
    {
      name: 'a ping-req',
      payload: { proto: 'swim', type: 'ping-req', seq: 3, target: 2, targetAddress: addressOf(2), updates: [rec(PEER, 0), rec(2, 0)] },
      up: [1, 2],
    },
    { name: 'a push-pull sync with the whole table', payload: { proto: 'swim', type: 'sync', members: clusterTable }, up: [0, 1, 2] },
    { name: 'a sync-ack with the whole table', payload: { proto: 'swim', type: 'sync-ack', members: clusterTable }, up: [0, 1, 2] },
    // A misconfigured node using the joiner as its seed: the joiner answers, and is still not in.
    { name: 'another node’s join', payload: { proto: 'swim', type: 'join', member: rec(PEER, 0) }, up: [1] },
  ])('$name from member 1 before any join-ack: not joined, and the join is retried to the seed', ({ payload, up }) => {
    const h = joiner();
    h.now = 10;
    const effects = h.receive(PEER, payload);
    expect(h.state.upIds).toEqual(up); // some member is up...
    expect(h.state.joined).toBe(false); // ...and that is not enough
    expect(joinedLogs(effects)).toEqual([]);

    // Retries every joinRetryInterval from the join (t = 0), to the seed only, with our record.
    const retries = sends(h.tickTo(3 * lan.joinRetryInterval + 500), 'join');
    expect(retries).toEqual(
      [1, 2, 3].map(() => ({ type: 'send', address: addressOf(SEED), lane: 'system', payload: { proto: 'swim', type: 'join', member: rec(JOINER, LIFE) } })),
    );
    expect(h.state.joined).toBe(false);
    expect(h.state.upIds).toEqual(up); // the retries happened while the member was still up

    // The seed's answer lets it in, with the log line, and the retries stop.
    const acked = h.receive(SEED, { proto: 'swim', type: 'join-ack', members: clusterTable });
    expect(h.state.joined).toBe(true);
    expect(joinedLogs(acked)).toEqual([
      { type: 'log', level: 'info', msg: 'joined the cluster', data: { self: JOINER, via: addressOf(SEED), members: h.state.members.size } },
    ]);
    expect(sends(h.tickTo(h.now + 5 * lan.joinRetryInterval), 'join')).toEqual([]);
  });

  it('a peer telling it of its id’s earlier life records that life, but does not let it in either', () => {
    const h = joiner();
    const effects = h.receive(PEER, { proto: 'swim', type: 'gossip', updates: [rec(PEER, 0), rec(JOINER, 3, 'down')] });
    expect(h.state.earlierLife).toBe(3);
    expect(h.state.incarnation).toBe(LIFE); // an older rumour: nothing to outbid...
    expect(sends(effects, 'gossip').map((e) => e.address)).toEqual([addressOf(PEER)]); // ...but its teller is told the truth
    expect(h.state.joined).toBe(false);
    expect(sends(h.tickTo(lan.joinRetryInterval), 'join')).toHaveLength(1);
  });

  it('a join-ack whose table shows nobody else up lets it in, but it keeps asking its seeds until someone is', () => {
    const h = joiner();
    h.receive(SEED, { proto: 'swim', type: 'join-ack', members: [rec(JOINER, LIFE)] });
    expect(h.state.joined).toBe(true);
    expect(h.state.upIds).toEqual([]);
    expect(sends(h.tickTo(2 * lan.joinRetryInterval + 100), 'join')).toHaveLength(2);
    h.receive(SEED, { proto: 'swim', type: 'join-ack', members: clusterTable });
    expect(sends(h.tickTo(h.now + 3 * lan.joinRetryInterval), 'join')).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('join-ack’s `earlier`: the joiner records an earlier life of its id', () => {
  it.each([
    { name: 'absent: no earlier life', earlier: undefined, want: 0 },
    { name: 'below our incarnation', earlier: 3, want: 3 },
    { name: 'just below our incarnation', earlier: LIFE - 1, want: LIFE - 1 },
    { name: 'equal to ours: this life, not an earlier one', earlier: LIFE, want: 0 },
    { name: 'above ours: not an earlier life', earlier: LIFE + 4, want: 0 },
    { name: 'zero: indistinguishable from "none"', earlier: 0, want: 0 },
    { name: 'negative: malformed', earlier: -1, want: 0 },
    { name: 'fractional: malformed', earlier: 2.5, want: 0 },
    { name: 'a string: malformed', earlier: '3', want: 0 },
    { name: 'null: malformed', earlier: null, want: 0 },
  ])('$name ($earlier → earlierLife $want); joined either way', ({ earlier, want }) => {
    const h = joiner();
    const effects = h.receive(SEED, { proto: 'swim', type: 'join-ack', members: clusterTable, ...(earlier !== undefined && { earlier }) });
    expect(h.state.joined).toBe(true);
    expect(joinedLogs(effects)).toHaveLength(1);
    expect(h.state.earlierLife).toBe(want);
    expect(h.state.startIncarnation).toBe(LIFE);
  });

  it('keeps the highest earlier life over several join-acks, also those after it joined (without a second log)', () => {
    const h = joiner();
    const ack = (earlier: number) => h.receive(SEED, { proto: 'swim', type: 'join-ack', members: clusterTable, earlier });
    const seen = [3, 2, 4, 1].map((e) => {
      const effects = ack(e);
      return { earlierLife: h.state.earlierLife, logged: joinedLogs(effects).length };
    });
    expect(seen).toEqual([
      { earlierLife: 3, logged: 1 },
      { earlierLife: 3, logged: 0 },
      { earlierLife: 4, logged: 0 },
      { earlierLife: 4, logged: 0 },
    ]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('the seed tells a joiner the earlier life of its id', () => {
  it.each([
    { name: 'a new id', members: [], lives: undefined, want: undefined, replaced: undefined },
    { name: 'an alive record of a lower incarnation (a replaced host)', members: [{ id: JOINER, address: addressOf(JOINER), incarnation: 3 }], lives: undefined, want: 3, replaced: 3 },
    { name: 'a down tombstone of a lower incarnation', members: [{ id: JOINER, address: addressOf(JOINER), incarnation: 3, status: 'down' as const }], lives: undefined, want: 3, replaced: 3 },
    { name: 'a left tombstone of a lower incarnation', members: [{ id: JOINER, address: addressOf(JOINER), incarnation: 4, status: 'left' as const }], lives: undefined, want: 4, replaced: 4 },
    { name: 'a record of this same life', members: [{ id: JOINER, address: addressOf(JOINER), incarnation: LIFE }], lives: undefined, want: undefined, replaced: undefined },
    { name: 'only its stored lives (a restarted seed)', members: [], lives: new Map([[JOINER, 3]]), want: 3, replaced: 3 },
    { name: 'stored lives at this same life', members: [], lives: new Map([[JOINER, LIFE]]), want: undefined, replaced: LIFE },
    { name: 'stored lives above a lower record: the higher', members: [{ id: JOINER, address: addressOf(JOINER), incarnation: 2 }], lives: new Map([[JOINER, 4]]), want: 4, replaced: 4 },
    { name: 'a record above stored lives: the higher', members: [{ id: JOINER, address: addressOf(JOINER), incarnation: 4 }], lives: new Map([[JOINER, 2]]), want: 4, replaced: 4 },
  ])('$name → earlier $want', ({ members, lives, want, replaced }) => {
    const seed = new Harness(parked({ id: SEED, members: [{ id: SEED, address: addressOf(SEED) }, ...members], ...(lives && { lives }) }));
    const [ack, ...rest] = sends(seed.receive(JOINER, { proto: 'swim', type: 'join', member: rec(JOINER, LIFE) }));
    expect(rest).toEqual([]);
    expect(ack).toMatchObject({ address: addressOf(JOINER), payload: { proto: 'swim', type: 'join-ack' } });
    expect((ack!.payload as { earlier?: number }).earlier).toBe(want);
    expect(Object.hasOwn(ack!.payload, 'earlier')).toBe(want !== undefined);
    expect(seed.state.replacedLives.get(JOINER)).toBe(replaced);
    expect(seed.state.members.get(JOINER)).toMatchObject({ incarnation: LIFE, status: 'alive' });
  });

  it.each([
    { name: 'a retried join (the first join-ack was lost)', before: { proto: 'swim', type: 'join', member: rec(JOINER, LIFE) } },
    { name: 'a join after gossip of the new life reached the seed first', before: { proto: 'swim', type: 'gossip', updates: [rec(JOINER, LIFE)] } },
    { name: 'a join after a ping carrying the new life reached the seed first', before: { proto: 'swim', type: 'ping', seq: 4, target: SEED, updates: [rec(JOINER, LIFE)] } },
  ])('still says `earlier` on $name', ({ before }) => {
    const seed = new Harness(parked({ id: SEED, members: [{ id: SEED, address: addressOf(SEED) }, { id: JOINER, address: addressOf(JOINER), incarnation: 3, status: 'down' }] }));
    seed.receive(before.type === 'join' ? JOINER : PEER, before);
    expect(seed.state.members.get(JOINER)).toMatchObject({ incarnation: LIFE }); // the old record is gone
    const [ack] = sends(seed.receive(JOINER, { proto: 'swim', type: 'join', member: rec(JOINER, LIFE) }), 'join-ack');
    expect((ack!.payload as { earlier?: number }).earlier).toBe(3);
  });

  it('a seed ignores its own id in stored lives', () => {
    const s = parked({ id: SEED, lives: new Map([[SEED, 3], [JOINER, 2]]) });
    expect([...s.replacedLives]).toEqual([[JOINER, 2]]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('end to end: seed, peer and a replaced host under the old id', () => {
  it('the peer’s ping comes first, the first join is lost; the retried join’s ack lets it in and tells it of life 7', () => {
    const NEW_LIFE = 1_700_000_000_000; // an empty-disk restart takes the wall clock as its incarnation
    const table = [
      { id: SEED, address: addressOf(SEED) },
      { id: PEER, address: addressOf(PEER) },
      { id: JOINER, address: addressOf(JOINER), incarnation: 7, status: 'down' as const },
    ];
    const seed = new Harness(parked({ id: SEED, members: table }));
    const j = new Harness(parked({ id: JOINER, incarnation: NEW_LIFE }));

    j.dispatch({ type: 'join', seeds: [addressOf(SEED)] }); // lost on the way
    j.now = 5;
    const pinged = j.receive(PEER, { proto: 'swim', type: 'ping', seq: 1, target: JOINER, updates: [rec(SEED, 0), rec(PEER, 0)] });
    expect(sends(pinged, 'ack').map((e) => e.address)).toEqual([addressOf(PEER)]);
    expect(j.state.upIds).toEqual([SEED, PEER]);
    expect(j.state.joined).toBe(false);
    expect(j.state.earlierLife).toBe(0);

    const [retry] = sends(j.tickTo(lan.joinRetryInterval), 'join');
    seed.now = j.now;
    const [ack] = sends(seed.receive(JOINER, retry!.payload), 'join-ack');
    j.receive(SEED, ack!.payload);
    expect(j.state.joined).toBe(true);
    expect(j.state.earlierLife).toBe(7);
    expect(j.state.incarnation).toBe(NEW_LIFE);
  });
});

// ---------------------------------------------------------------------------------------------

describe('MembershipDriver.onJoined', () => {
  it('fires once, at the seed’s join-ack, not when a peer’s messages bring members up', () => {
    const clock = new SimulatedClock(0);
    const sent: { address: string; payload: MembershipMessage }[] = [];
    const transport: Transport = {
      self: { id: JOINER, incarnation: LIFE, address: addressOf(JOINER) },
      send: (address, payload) => void sent.push({ address, payload: payload as MembershipMessage }),
      onMessage: () => {},
      onUndeliverable: () => {},
      start: async () => addressOf(JOINER),
      close: async () => {},
    };
    const driver = new MembershipDriver({ transport, clock, subscribe: false, seed: 7 });
    let joined = 0;
    driver.onJoined(() => joined++);
    driver.start([addressOf(SEED)]);

    driver.receive({ id: PEER, address: addressOf(PEER) }, { proto: 'swim', type: 'ping', seq: 1, target: JOINER, updates: [rec(PEER, 0)] });
    driver.receive({ id: PEER, address: addressOf(PEER) }, { proto: 'swim', type: 'sync', members: clusterTable });
    expect(driver.upMembers().map((m) => m.id)).toEqual([0, 1, 2, JOINER]);
    expect(joined).toBe(0);
    clock.advance(2 * lan.joinRetryInterval + 10);
    expect(joined).toBe(0);
    expect(sent.filter((s) => s.payload.type === 'join').map((s) => s.address)).toEqual([addressOf(SEED), addressOf(SEED), addressOf(SEED)]);

    driver.receive({ id: SEED, address: addressOf(SEED) }, { proto: 'swim', type: 'join-ack', members: clusterTable, earlier: 3 });
    expect(joined).toBe(1);
    expect(driver.earlierLife).toBe(3);
    driver.receive({ id: SEED, address: addressOf(SEED) }, { proto: 'swim', type: 'join-ack', members: clusterTable });
    expect(joined).toBe(1);
    driver.stop();
  });
});
