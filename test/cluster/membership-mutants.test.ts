import { describe, expect, it } from 'vitest';
import { Harness, sends, updatesOf } from './membership-harness.ts';
import {
  createMembershipState,
  isMembershipMessage,
  retransmitLimit,
  upMembers,
  type MemberStatus,
  type MemberUpdate,
  type MembershipEffect,
  type MembershipEvent,
  type MembershipState,
  type MembershipStateOptions,
} from '../../src/cluster/membership.ts';
import { LAN_PROFILE, resolveMembershipConfig, SEED_10S_PROFILE, type MembershipConfig } from '../../src/cluster/membership-profiles.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import { hash32 } from '../../src/core/hash.ts';
import { addressOf } from './sim-cluster.ts';

/**
 * The membership reducer's behaviours one by one, each pinned by what it returns: the next
 * state's members and schedule, and the effects (messages sent, member changes, logs). Written
 * against the survivors of a StrykerJS run (issue 12): each case names the rule it pins.
 * membership.test.ts holds the main paths and the simulated clusters; this file the edges.
 */

const lan = LAN_PROFILE;

// ---------------------------------------------------------------------------------------------
// Harness

type Send = Extract<MembershipEffect, { type: 'send' }>;
type Changed = Extract<MembershipEffect, { type: 'member-changed' }>;
type Log = Extract<MembershipEffect, { type: 'log' }>;

interface StateOf {
  n?: number;
  self?: number;
  config?: Partial<MembershipConfig>;
  members?: MembershipStateOptions['members'];
  /** Which of the reducer's own timers stay where createMembershipState put them; the rest are parked. */
  timers?: ('probe' | 'gossip' | 'pushPull' | 'reconnect')[];
  seed?: number;
  now?: number;
}

/**
 * Node `self` (default 0) with members 0..n-1 alive (or `members`). Timers not named in `timers`
 * are parked at Infinity, so a test sees only the behaviour it is about.
 */
function stateOf(o: StateOf = {}): MembershipState {
  const n = o.n ?? 4;
  const self = o.self ?? 0;
  const members = o.members ?? Array.from({ length: n }, (_, id) => ({ id, address: addressOf(id) }));
  const now = o.now ?? 0;
  const s = createMembershipState(
    { self: { id: self, address: addressOf(self) }, members, seed: o.seed ?? 42, config: { ...lan, ...o.config } },
    now,
  );
  const on = new Set(o.timers ?? []);
  return {
    ...s,
    nextProbeAt: on.has('probe') ? s.nextProbeAt : Infinity,
    nextGossipAt: on.has('gossip') ? s.nextGossipAt : Infinity,
    nextPushPullAt: on.has('pushPull') ? s.nextPushPullAt : Infinity,
    nextReconnectAt: on.has('reconnect') ? s.nextReconnectAt : Infinity,
  };
}

function changes(effects: MembershipEffect[]): Changed[] {
  return effects.flatMap((e) => (e.type === 'member-changed' ? [e] : []));
}
function logs(effects: MembershipEffect[]): Log[] {
  return effects.flatMap((e) => (e.type === 'log' ? [e] : []));
}
/** Every member update carried by the messages in `effects`. */
function carried(effects: MembershipEffect[]): MemberUpdate[] {
  return sends(effects).flatMap((e) => {
    const p = e.payload as { updates?: MemberUpdate[]; members?: MemberUpdate[]; member?: MemberUpdate };
    return [...(p.updates ?? []), ...(p.members ?? []), ...(p.member ? [p.member] : [])];
  });
}
/** A full table (join-ack, sync) in id order: the order on the wire carries no meaning. */
function tableOf(e: Send | undefined): MemberUpdate[] {
  return [...(e?.payload as { members: MemberUpdate[] }).members].sort((a, b) => a.id - b.id);
}
function rec(id: number, incarnation: number, status: MemberStatus, extra: Partial<MemberUpdate> = {}): MemberUpdate {
  return { id, address: addressOf(id), incarnation, status, ...extra };
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Small pure helpers not covered elsewhere

describe('membership helpers', () => {
  it.each([
    { n: 0, want: 4 }, // never fewer than one round of log10
    { n: 99, want: 8 },
    { n: 100, want: 12 },
  ])('retransmitLimit(4, $n) = $want', ({ n, want }) => {
    expect(retransmitLimit(4, n)).toBe(want);
  });

  it('upMembers lists alive and suspect members, us included, sorted by id', () => {
    const s = stateOf({
      self: 5,
      members: [
        { id: 9, address: 'mem:9' },
        { id: 2, address: 'mem:2', status: 'suspect' },
        { id: 7, address: 'mem:7', status: 'down' },
        { id: 3, address: 'mem:3', status: 'left' },
        { id: 1, address: 'mem:1' },
      ],
    });
    expect(upMembers(s)).toEqual([
      { id: 1, address: 'mem:1' },
      { id: 2, address: 'mem:2' },
      { id: 5, address: 'mem:5' },
      { id: 9, address: 'mem:9' },
    ]);
  });

  it.each([
    { name: 'a swim message', payload: { proto: 'swim', type: 'ping' }, want: true },
    { name: 'another protocol', payload: { proto: 'raft', type: 'ping' }, want: false },
    { name: 'null', payload: null, want: false },
    { name: 'a string', payload: 'swim', want: false },
    { name: 'no proto', payload: { type: 'ping' }, want: false },
    { name: 'a function with a proto property', payload: Object.assign(() => {}, { proto: 'swim' }), want: false },
  ])('isMembershipMessage: $name', ({ payload, want }) => {
    expect(isMembershipMessage(payload)).toBe(want);
  });
});

// ---------------------------------------------------------------------------------------------
// resolveMembershipConfig: the messages membership.test.ts does not already check

describe('resolveMembershipConfig', () => {
  it.each([
    {
      name: 'awareness multiplier above 64',
      args: ['lan', { awarenessMaxMultiplier: 65 }],
      message: 'options.membership.awarenessMaxMultiplier must be at most 64 (got 65)',
    },
    {
      name: 'a profile that is a number',
      args: [7],
      message: 'options.membership.profile must be a profile name or a config object (got 7)',
    },
    { name: 'a null profile', args: [null], message: 'options.membership.profile must be a profile name or a config object (got null)' },
    {
      name: 'a profile name from Object.prototype',
      args: ['toString'],
      message: 'options.membership.profile must be one of lan, seed-10s (got "toString")',
    },
    {
      name: 'a string option',
      args: ['lan', { probeTimeout: '100' }],
      message: 'options.membership.probeTimeout must be a positive integer (got "100")',
    },
    {
      name: 'a bad field of a config object',
      args: [{ ...LAN_PROFILE, suspicionTimeout: -1 }],
      message: 'options.membership.suspicionTimeout must be a positive integer (got -1)',
    },
    {
      name: 'another prefix',
      args: ['lan', { gossipFanout: 0 }, 'cluster'],
      message: 'cluster.gossipFanout must be a positive integer (got 0)',
    },
  ])('refuses $name', ({ args, message }) => {
    const e = thrown(() => resolveMembershipConfig(...(args as Parameters<typeof resolveMembershipConfig>)));
    expect(isTroupeError(e, 'ERR_INVALID_OPTION')).toBe(true);
    expect((e as Error).message).toBe(message);
  });

  it('accepts a config object, fills what it lacks from lan, and freezes the result', () => {
    const c = resolveMembershipConfig({ ...SEED_10S_PROFILE, tickInterval: 500 } as MembershipConfig, { awarenessMaxMultiplier: 64 });
    expect(c).toMatchObject({ tickInterval: 500, probeInterval: 10_000, awarenessMaxMultiplier: 64 });
    expect(Object.isFrozen(c)).toBe(true);
    expect(resolveMembershipConfig({ probeInterval: 300 } as MembershipConfig)).toEqual({ ...LAN_PROFILE, probeInterval: 300 });
  });

  it('allows a tick as coarse as the finest timeout, not coarser', () => {
    expect(resolveMembershipConfig('lan', { tickInterval: 20 }).tickInterval).toBe(20);
    expect(resolveMembershipConfig('lan', { tickInterval: 50, gossipInterval: 50 }).tickInterval).toBe(50);
    expect(() => resolveMembershipConfig('lan', { tickInterval: 51, gossipInterval: 50 })).toThrow(/tickInterval must not exceed/);
  });
});

// ---------------------------------------------------------------------------------------------
// createMembershipState: validation and the initial state

describe('createMembershipState', () => {
  const self = { id: 1, address: 'mem:1' };
  it.each([
    { name: 'options not an object', options: null, message: 'options must be an object (got null)' },
    { name: 'options a string', options: 'x', message: 'options must be an object (got "x")' },
    { name: 'self missing', options: {}, message: 'options.self must be { id, address } (got undefined)' },
    { name: 'self null', options: { self: null }, message: 'options.self must be { id, address } (got null)' },
    {
      name: 'self id negative',
      options: { self: { id: -1, address: 'a' } },
      message: 'options.self.id must be an integer in 0..1023 (got -1)',
    },
    {
      name: 'self id 1024',
      options: { self: { id: 1024, address: 'a' } },
      message: 'options.self.id must be an integer in 0..1023 (got 1024)',
    },
    {
      name: 'self id fractional',
      options: { self: { id: 1.5, address: 'a' } },
      message: 'options.self.id must be an integer in 0..1023 (got 1.5)',
    },
    {
      name: 'self address empty',
      options: { self: { id: 1, address: '' } },
      message: 'options.self.address must be a non-empty string (got "")',
    },
    {
      name: 'self address a number',
      options: { self: { id: 1, address: 7 } },
      message: 'options.self.address must be a non-empty string (got 7)',
    },
    {
      name: 'incarnation fractional',
      options: { self, incarnation: 0.5 },
      message: 'options.incarnation must be a non-negative integer (got 0.5)',
    },
    { name: 'seed fractional', options: { self, seed: 1.5 }, message: 'options.seed must be an integer (got 1.5)' },
    {
      name: 'member null',
      options: { self, members: [{ id: 2, address: 'mem:2' }, null] },
      message: 'options.members[1] must be { id: 0..1023, address: string, incarnation?, status? } (got null)',
    },
    {
      name: 'member a number',
      options: { self, members: [3] },
      message: 'options.members[0] must be { id: 0..1023, address: string, incarnation?, status? } (got 3)',
    },
    {
      name: 'member id out of range',
      options: { self, members: [{ id: 1024, address: 'x' }] },
      message: 'options.members[0] must be { id: 0..1023, address: string, incarnation?, status? } (got an object)',
    },
    {
      name: 'member address not a string',
      options: { self, members: [{ id: 2, address: 5 }] },
      message: 'options.members[0] must be { id: 0..1023, address: string, incarnation?, status? } (got an object)',
    },
    {
      name: 'member status unknown',
      options: { self, members: [{ id: 2, address: 'mem:2', status: 'zombie' }] },
      message: 'options.members[0].status must be alive, suspect, down or left (got "zombie")',
    },
    {
      name: 'member status in an array',
      options: { self, members: [{ id: 2, address: 'mem:2', status: ['alive'] }] },
      message: 'options.members[0].status must be alive, suspect, down or left (got an array)',
    },
    {
      name: 'member incarnation negative',
      options: {
        self,
        members: [
          { id: 2, address: 'mem:2' },
          { id: 3, address: 'mem:3', incarnation: -1 },
        ],
      },
      message: 'options.members[1].incarnation must be a non-negative integer (got -1)',
    },
  ])('refuses $name, naming the option', ({ options, message }) => {
    const e = thrown(() => createMembershipState(options as unknown as MembershipStateOptions, 0));
    expect(isTroupeError(e, 'ERR_INVALID_OPTION')).toBe(true);
    expect((e as Error).message).toBe(message);
  });

  it('refuses a member entry that is a function, even one with id and address', () => {
    const e = thrown(() => createMembershipState({ self, members: [Object.assign(() => {}, { id: 2, address: 'mem:2' })] as never }, 0));
    expect(isTroupeError(e, 'ERR_INVALID_OPTION')).toBe(true);
    expect((e as Error).message).toMatch(/^options\.members\[0\] must be \{ id: 0\.\.1023, address: string, incarnation\?, status\? \}/);
  });

  // A bug this test found: the status check was `status in STATUS_RANK`, which also accepted
  // Object.prototype's names; parseUpdate (the wire) used Object.hasOwn and refused them.
  it('refuses a member status inherited from Object.prototype', () => {
    const e = thrown(() => createMembershipState({ self, members: [{ id: 2, address: 'mem:2', status: 'toString' as MemberStatus }] }, 0));
    expect(isTroupeError(e, 'ERR_INVALID_OPTION')).toBe(true);
  });

  it.each([
    { name: 'id 0', self: { id: 0, address: 'mem:0' } },
    { name: 'id 1023', self: { id: 1023, address: 'mem:1023' } },
  ])('accepts the edge node id: $name', ({ self }) => {
    expect(createMembershipState({ self }, 0).self).toEqual(self);
  });

  it('starts alone: not joined, only itself, alive at incarnation 0, on the lan profile', () => {
    const s = createMembershipState({ self }, 500);
    expect(s.joined).toBe(false);
    expect(s.config).toBe(LAN_PROFILE);
    expect(s.incarnation).toBe(0);
    expect([...s.members.values()]).toEqual([{ ...self, incarnation: 0, status: 'alive', statusSince: 500 }]);
    expect(s.upIds).toEqual([]);
    expect(s.leaving).toBe(false);
    expect(s.awareness).toBe(0);
  });

  it('builds the table: defaults, our own record from our options, up ids sorted, suspicions and down members counted', () => {
    const s = createMembershipState(
      {
        self,
        incarnation: 3,
        members: [
          { id: 9, address: 'mem:9' },
          { id: 1, address: 'elsewhere', incarnation: 7, status: 'down' }, // ours: ignored
          { id: 4, address: 'mem:4', incarnation: 2, status: 'suspect' },
          { id: 6, address: 'mem:6', status: 'down' },
          { id: 8, address: 'mem:8', status: 'left' },
          { id: 2, address: 'mem:2' },
        ],
      },
      1000,
    );
    expect(s.joined).toBe(true);
    expect(s.incarnation).toBe(3);
    expect(s.members.get(1)).toEqual({ id: 1, address: 'mem:1', incarnation: 3, status: 'alive', statusSince: 1000 });
    expect(s.members.get(9)).toEqual({ id: 9, address: 'mem:9', incarnation: 0, status: 'alive', statusSince: 1000 });
    expect(s.members.get(4)).toEqual({ id: 4, address: 'mem:4', incarnation: 2, status: 'suspect', statusSince: 1000 });
    expect(s.upIds).toEqual([2, 4, 9]);
    expect([...s.probeOrder].sort((a, b) => a - b)).toEqual([2, 4, 9]);
    expect([...s.suspicions]).toEqual([[4, 1000]]);
    expect(s.downCount).toBe(1);
  });

  // The protocol's RNG is mulberry32 (state in MembershipState.rng), so one seed replays one
  // simulation exactly. A reference copy of the published algorithm checks the phases and the
  // first probe order it draws, in the order createMembershipState draws them.
  function mulberry32(seed: number) {
    let v = seed | 0;
    return () => {
      v = (v + 0x6d2b79f5) | 0;
      let t = v;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  it.each([
    { seed: 42, ids: [] as number[] },
    { seed: -7, ids: [3, 8] },
    { seed: 2 ** 31 + 5, ids: [2, 4, 6, 8, 10, 12, 14] },
  ])('draws its probe order and timer phases from mulberry32 (seed $seed, $ids.length members)', ({ seed, ids }) => {
    const now = 1000;
    const s = createMembershipState({ self, seed, members: ids.map((id) => ({ id, address: addressOf(id) })) }, now);
    const random = mulberry32(seed);
    const order = ids.slice();
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    expect(s.probeOrder).toEqual(order);
    expect(s.nextProbeAt).toBe(now + Math.floor(random() * lan.probeInterval));
    expect(s.nextGossipAt).toBe(now + Math.floor(random() * lan.gossipInterval));
    expect(s.nextPushPullAt).toBe(now + Math.floor((0.5 + random()) * lan.pushPullInterval));
    expect(s.nextReconnectAt).toBe(now + Math.floor((0.5 + random()) * lan.reconnectInterval));
  });

  it('derives its default seed from the node id and address', () => {
    const byDefault = createMembershipState({ self }, 0);
    expect(byDefault).toEqual(createMembershipState({ self, seed: hash32('swim:1:mem:1') }, 0));
    expect(byDefault).not.toEqual(createMembershipState({ self, seed: hash32('swim:2:mem:1') }, 0));
  });

  it('starts its timers at random phases: probe and gossip within one interval, push-pull and reconnect within 0.5..1.5', () => {
    const now = 10_000;
    const c = lan;
    const states = Array.from({ length: 64 }, (_, seed) => createMembershipState({ self, seed }, now));
    for (const s of states) {
      expect(s.nextProbeAt).toBeGreaterThanOrEqual(now);
      expect(s.nextProbeAt).toBeLessThan(now + c.probeInterval);
      expect(s.nextGossipAt).toBeGreaterThanOrEqual(now);
      expect(s.nextGossipAt).toBeLessThan(now + c.gossipInterval);
      expect(s.nextPushPullAt).toBeGreaterThanOrEqual(now + c.pushPullInterval / 2);
      expect(s.nextPushPullAt).toBeLessThan(now + (c.pushPullInterval * 3) / 2);
      expect(s.nextReconnectAt).toBeGreaterThanOrEqual(now + c.reconnectInterval / 2);
      expect(s.nextReconnectAt).toBeLessThan(now + (c.reconnectInterval * 3) / 2);
      expect(s.nextJoinAt).toBe(now);
    }
    // Spread over the interval, not all at one phase (64 seeds: at least a quarter distinct).
    const distinct = (f: (s: MembershipState) => number) => new Set(states.map(f)).size;
    expect(distinct((s) => s.nextProbeAt)).toBeGreaterThan(16);
    expect(distinct((s) => s.nextGossipAt)).toBeGreaterThan(10);
    expect(distinct((s) => s.nextPushPullAt)).toBeGreaterThan(16);
    expect(distinct((s) => s.nextReconnectAt)).toBeGreaterThan(16);
    // Both halves of the 0.5..1.5 window are used.
    expect(states.some((s) => s.nextPushPullAt < now + c.pushPullInterval)).toBe(true);
    expect(states.some((s) => s.nextPushPullAt > now + c.pushPullInterval)).toBe(true);
    expect(states.some((s) => s.nextReconnectAt < now + c.reconnectInterval)).toBe(true);
    expect(states.some((s) => s.nextReconnectAt > now + c.reconnectInterval)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Events the reducer does not know, payloads that are not membership messages

describe('membership reducer: foreign input', () => {
  it('logs an unknown event and changes nothing', () => {
    const h = new Harness(stateOf());
    const before = h.state;
    const effects = h.dispatch({ type: 'bogus' } as unknown as MembershipEvent);
    expect(effects).toEqual([{ type: 'log', level: 'warn', msg: 'unknown membership event', data: { self: 0, event: 'bogus' } }]);
    expect(h.state.members).toBe(before.members);
  });

  it.each([
    { name: 'a foreign payload', from: { id: 1, address: 'mem:1' }, payload: { proto: 'raft' } },
    { name: 'a null payload', from: { id: 1, address: 'mem:1' }, payload: null },
    { name: 'no sender', from: null, payload: { proto: 'swim', type: 'ping', seq: 1, target: 0, updates: [] } },
    { name: 'a sender without address', from: { id: 1 }, payload: { proto: 'swim', type: 'ping', seq: 1, target: 0, updates: [] } },
    {
      name: 'a sender that is a function',
      from: Object.assign(() => {}, { id: 1, address: 'mem:1' }),
      payload: { proto: 'swim', type: 'ping', seq: 1, target: 0, updates: [] },
    },
  ])('ignores $name with a debug log', ({ from, payload }) => {
    const h = new Harness(stateOf());
    const effects = h.dispatch({ type: 'message-received', from, payload } as unknown as MembershipEvent);
    expect(effects).toEqual([{ type: 'log', level: 'debug', msg: 'ignored a non-membership payload', data: { self: 0 } }]);
  });

  it('logs an unknown membership message type', () => {
    const h = new Harness(stateOf());
    expect(h.receive(1, { proto: 'swim', type: 'hello' })).toEqual([
      { type: 'log', level: 'debug', msg: 'ignored an unknown membership message', data: { self: 0, type: 'hello' } },
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Stalls and lateness (Lifeguard)

describe('membership reducer: late ticks', () => {
  const stallLogs = (effects: MembershipEffect[]) =>
    logs(effects).filter((l) => l.msg === 'event loop stalled; pending deadlines extended');

  it.each([
    { name: 'the first tick is never late', ticks: [{ at: 50_000 }], stall: undefined },
    { name: 'on time', ticks: [{ at: 0 }, { at: 20 }], stall: undefined },
    { name: 'late by exactly the threshold: jitter', ticks: [{ at: 0 }, { at: 20 + 100 }], stall: undefined },
    { name: 'late by one more ms: a stall', ticks: [{ at: 0 }, { at: 20 + 101 }], stall: { lateness: 101, awareness: 1 } },
    { name: 'measured from the previous tick', ticks: [{ at: 0 }, { at: 20 }, { at: 40 + 350 }], stall: { lateness: 350, awareness: 2 } },
    {
      name: 'the driver’s figure wins over the measured one',
      ticks: [{ at: 0 }, { at: 20, lateness: 500 }],
      stall: { lateness: 500, awareness: 3 },
    },
    { name: 'a reported 0 wins too', ticks: [{ at: 0 }, { at: 5000, lateness: 0 }], stall: undefined },
  ])('$name', ({ ticks, stall }) => {
    const h = new Harness(stateOf({ n: 1 }));
    let last: MembershipEffect[] = [];
    const found: Log[] = [];
    for (const t of ticks) {
      h.now = t.at;
      last = h.dispatch(t.lateness === undefined ? { type: 'tick' } : { type: 'tick', lateness: t.lateness });
      found.push(...stallLogs(last));
    }
    if (stall === undefined) {
      expect(found).toEqual([]);
      expect(h.state.awareness).toBe(0);
    } else {
      expect(found).toEqual([
        { type: 'log', level: 'warn', msg: 'event loop stalled; pending deadlines extended', data: { self: 0, ...stall } },
      ]);
      expect(stallLogs(last)).toHaveLength(1);
      expect(h.state.awareness).toBe(stall.awareness);
    }
  });

  it('caps the stall penalty at awarenessMaxMultiplier - 1', () => {
    const h = new Harness(stateOf({ n: 1 }));
    h.tickAt(0);
    h.tickAt(20, 60_000);
    expect(h.state.awareness).toBe(lan.awarenessMaxMultiplier - 1);
  });

  it('moves an indirect probe’s deadline by the stall: the target is suspected that much later', () => {
    const h = new Harness(stateOf({ n: 2, timers: ['probe'] }));
    h.tickTo(h.state.nextProbeAt);
    const started = h.now;
    h.tickTo(started + lan.probeTimeout); // direct deadline passed: indirect phase (no peers to ask)
    // A 300 ms stall: the tick that ends it comes at started + 400.
    h.tickAt(started + lan.probeTimeout + 300, 300);
    expect(h.member(1)!.status).toBe('alive');
    h.tickAt(started + lan.probeTimeout + lan.indirectProbeTimeout + 300 - 1);
    expect(h.member(1)!.status).toBe('alive');
    h.tickAt(started + lan.probeTimeout + lan.indirectProbeTimeout + 300);
    expect(h.member(1)!.status).toBe('suspect');
  });

  it('moves a relay’s nack by the stall', () => {
    const h = new Harness(stateOf({ n: 4 }));
    h.tickAt(0);
    h.receive(1, { proto: 'swim', type: 'ping-req', seq: 5, target: 2, targetAddress: 'mem:2', updates: [] });
    const nackAt = lan.indirectProbeTimeout / 2;
    expect(sends(h.tickAt(nackAt + 300 - 1, 300), 'nack')).toEqual([]);
    expect(sends(h.tickAt(nackAt + 300), 'nack')).toHaveLength(1);
  });

  it('moves a suspicion’s start by the stall: down that much later', () => {
    const h = new Harness(stateOf({ n: 4 }));
    h.tickAt(0);
    h.gossip(1, rec(2, 0, 'suspect'));
    h.tickAt(400, 400); // awareness 2 now: the deadline is (1 + 2) · suspicionTimeout after the moved start
    const deadline = 400 + 3 * lan.suspicionTimeout;
    h.tickAt(deadline - 1);
    expect(h.member(2)!.status).toBe('suspect');
    h.tickAt(deadline);
    expect(h.member(2)!.status).toBe('down');
  });
});

// ---------------------------------------------------------------------------------------------
// The probe schedule

describe('membership reducer: probing', () => {
  /** The tick times among `times` that started a probe round; every ping is answered at once. */
  const pingTimes = (h: Harness, times: number[]) =>
    times.filter((t) => {
      const pings = sends(h.tickAt(t), 'ping');
      for (const p of pings) h.receive(0, { proto: 'swim', type: 'ack', seq: (p.payload as { seq: number }).seq, updates: [] });
      return pings.length > 0;
    });

  it('keeps the probe rounds on their grid when ticks come at odd times', () => {
    const h = new Harness(stateOf({ n: 3, timers: ['probe'] }));
    const first = h.state.nextProbeAt;
    // Ticks 13 ms after each grid point, then one 3 ms before the next: only the grid fires.
    const probed = pingTimes(h, [first + 13, first + 200 - 3, first + 200, first + 400, first + 600 + 13, first + 800 - 1]);
    expect(probed).toEqual([first + 13, first + 200, first + 400, first + 600 + 13]);
  });

  it('after a stall restarts the grid from now instead of probing in a burst', () => {
    const h = new Harness(stateOf({ n: 3, timers: ['probe'] }));
    const first = h.state.nextProbeAt;
    const probed = pingTimes(h, [first, first + 1000, first + 1100, first + 1199, first + 1200]);
    expect(probed).toEqual([first, first + 1000, first + 1200]);
  });

  it('a tick exactly one interval late probes once and resumes the grid one interval later', () => {
    const h = new Harness(stateOf({ n: 3, timers: ['probe'] }));
    const first = h.state.nextProbeAt;
    const probed = pingTimes(h, [first, first + 400, first + 401, first + 599, first + 600]);
    expect(probed).toEqual([first, first + 400, first + 600]);
  });

  it('stretches the probe interval by awareness', () => {
    const h = new Harness({ ...stateOf({ n: 3, timers: ['probe'] }), awareness: 1 });
    const first = h.state.nextProbeAt;
    const probed = pingTimes(h, [first, first + 200, first + 399, first + 400]);
    expect(probed).toEqual([first, first + 400]);
  });

  it('stretches both probe deadlines by awareness', () => {
    const h = new Harness({ ...stateOf({ n: 2, timers: ['probe'] }), awareness: 1 });
    h.tickAt(h.state.nextProbeAt);
    const start = h.now;
    h.tickAt(start + 2 * lan.probeTimeout + 2 * lan.indirectProbeTimeout - 1);
    expect(h.member(1)!.status).toBe('alive');
    h.tickAt(start + 2 * lan.probeTimeout + 2 * lan.indirectProbeTimeout);
    expect(h.member(1)!.status).toBe('suspect');
  });

  it('sends nothing when alone', () => {
    const h = new Harness(stateOf({ n: 1, timers: ['probe', 'gossip', 'pushPull', 'reconnect'] }));
    expect(sends(h.tickTo(3000))).toEqual([]);
  });

  it.each([
    { name: 'the next id after ours', self: 5, ids: [1, 3, 5, 7, 9], successor: 7 },
    { name: 'wraps past the highest id', self: 9, ids: [1, 3, 5, 7, 9], successor: 1 },
    { name: 'our id below all others', self: 0, ids: [0, 4, 8], successor: 4 },
  ])('probes its ring successor every round: $name', ({ self, ids, successor }) => {
    const h = new Harness(stateOf({ self, members: ids.map((id) => ({ id, address: addressOf(id) })), timers: ['probe'], seed: 7 }));
    for (let round = 0; round < 6; round++) {
      const pings = sends(h.tickAt(h.state.nextProbeAt), 'ping');
      expect(pings).toHaveLength(2); // the successor, and one other member by round robin
      expect(pings[0]).toMatchObject({ address: addressOf(successor), payload: { target: successor } });
      expect(pings[1]!.address).not.toBe(addressOf(successor));
      // Answer both, so nothing is suspected and no ping-req muddles the count.
      for (const p of pings) h.receive(0, { proto: 'swim', type: 'ack', seq: (p.payload as { seq: number }).seq, updates: [] });
    }
  });

  it('finds its successor among members that came and went in any order', () => {
    const h = new Harness(stateOf({ self: 5, members: [], timers: ['probe'] }));
    const successor = () => {
      h.state = { ...h.state, nextProbeAt: h.now };
      const pings = sends(h.tickAt(h.now + 1), 'ping');
      for (const p of pings) h.receive(0, { proto: 'swim', type: 'ack', seq: (p.payload as { seq: number }).seq, updates: [] });
      return (pings[0]!.payload as { target: number }).target;
    };
    h.gossip(9, rec(9, 0, 'alive'), rec(3, 0, 'alive'), rec(7, 0, 'alive'), rec(1, 0, 'alive'), rec(6, 0, 'alive'));
    expect(successor()).toBe(6);
    h.gossip(9, rec(6, 0, 'down'));
    expect(successor()).toBe(7);
    h.gossip(9, rec(7, 0, 'left'), rec(9, 0, 'down'));
    expect(successor()).toBe(1);
    h.gossip(9, rec(7, 1, 'alive'));
    expect(successor()).toBe(7);
    h.gossip(9, rec(1, 0, 'down'));
    expect(successor()).toBe(7);
    h.gossip(9, rec(7, 1, 'down'));
    expect(successor()).toBe(3);
  });

  it('probes every other member by round robin within one round of rounds', () => {
    const h = new Harness(stateOf({ n: 7, timers: ['probe'] }));
    const targets = new Set<number>();
    for (let round = 0; round < 6; round++) {
      const pings = sends(h.tickAt(h.state.nextProbeAt), 'ping');
      expect(pings).toHaveLength(2);
      const [, other] = pings;
      targets.add((other!.payload as { target: number }).target);
      for (const p of pings) h.receive(0, { proto: 'swim', type: 'ack', seq: (p.payload as { seq: number }).seq, updates: [] });
    }
    // Successor 1 is probed anyway; the round robin covers the other five in five or six rounds.
    expect([...targets].filter((t) => t !== 1).sort()).toEqual([2, 3, 4, 5, 6]);
  });

  it('pings the one other member once per round (successor and round robin are the same), with nothing but pending news', () => {
    const h = new Harness(stateOf({ n: 2, timers: ['probe'] }));
    const pings = sends(h.tickAt(h.state.nextProbeAt), 'ping');
    expect(pings).toEqual([
      {
        type: 'send',
        address: 'mem:1',
        lane: 'system',
        payload: { proto: 'swim', type: 'ping', seq: expect.any(Number), target: 1, updates: [] },
      },
    ]);
  });

  it('skips members gone down since the round was shuffled: still two probes per round', () => {
    const h = new Harness(stateOf({ n: 6, timers: ['probe'] }));
    h.gossip(1, rec(3, 0, 'down'), rec(4, 0, 'left'));
    for (let round = 0; round < 8; round++) {
      const pings = sends(h.tickAt(h.state.nextProbeAt), 'ping');
      expect(pings).toHaveLength(2);
      for (const p of pings) {
        expect([1, 2, 5]).toContain((p.payload as { target: number }).target);
        h.receive(0, { proto: 'swim', type: 'ack', seq: (p.payload as { seq: number }).seq, updates: [] });
      }
    }
  });

  it('never probes down or left members, and numbers each probe afresh', () => {
    const h = new Harness(
      stateOf({
        members: [
          { id: 0, address: 'mem:0' },
          { id: 1, address: 'mem:1', status: 'down' },
          { id: 2, address: 'mem:2' },
          { id: 3, address: 'mem:3', status: 'left' },
          { id: 4, address: 'mem:4' },
        ],
        timers: ['probe'],
      }),
    );
    const seqs: number[] = [];
    for (let round = 0; round < 4; round++) {
      const pings = sends(h.tickAt(h.state.nextProbeAt), 'ping');
      for (const p of pings) {
        expect([2, 4]).toContain((p.payload as { target: number }).target);
        seqs.push((p.payload as { seq: number }).seq);
        h.receive(0, { proto: 'swim', type: 'ack', seq: (p.payload as { seq: number }).seq, updates: [] });
      }
    }
    expect(seqs).toHaveLength(8);
    expect(new Set(seqs).size).toBe(8);
  });

  it('a member that comes up joins the current round robin', () => {
    const h = new Harness(stateOf({ n: 3, timers: ['probe'] }));
    h.gossip(1, rec(9, 0, 'alive'));
    const targets = new Set<number>();
    for (let round = 0; round < 3; round++) {
      for (const p of sends(h.tickAt(h.state.nextProbeAt), 'ping')) {
        targets.add((p.payload as { target: number }).target);
        h.receive(0, { proto: 'swim', type: 'ack', seq: (p.payload as { seq: number }).seq, updates: [] });
      }
    }
    expect(targets.has(9)).toBe(true);
  });

  it('puts a member that comes up at a random place still ahead in the current round', () => {
    const places = new Set<string>();
    for (let seed = 0; seed < 120; seed++) {
      const h = new Harness(stateOf({ n: 6, seed, timers: ['probe'] }));
      for (let round = 0; round < seed % 4; round++) {
        for (const p of sends(h.tickAt(h.state.nextProbeAt), 'ping')) {
          h.receive(0, { proto: 'swim', type: 'ack', seq: (p.payload as { seq: number }).seq, updates: [] });
        }
      }
      const { probeCursor } = h.state;
      h.gossip(1, rec(9, 0, 'alive'));
      const order = h.state.probeOrder;
      expect(order.filter((id) => id === 9)).toHaveLength(1);
      const at = order.indexOf(9);
      expect(at).toBeGreaterThanOrEqual(probeCursor);
      places.add(at === probeCursor ? 'next' : at === order.length - 1 ? 'last' : 'between');
    }
    expect([...places].sort()).toEqual(['between', 'last', 'next']);
  });

  it('pings a suspect with its own suspicion first (Lifeguard buddy), once', () => {
    const h = new Harness(stateOf({ n: 2, timers: ['probe'] }));
    h.now = 100;
    h.gossip(3, rec(1, 0, 'suspect', { age: 30 }), rec(7, 0, 'alive'));
    const [ping] = sends(h.tickAt(Math.max(h.state.nextProbeAt, 150)), 'ping');
    const updates = updatesOf(ping);
    expect(updates[0]).toEqual({ id: 1, address: 'mem:1', incarnation: 0, status: 'suspect', age: h.now - 70 });
    expect(updates.filter((u) => u.id === 1)).toHaveLength(1);
    expect(updates.map((u) => u.id)).toContain(7);
  });
});

// ---------------------------------------------------------------------------------------------
// Failed probes: ping-req, nacks, suspicion

describe('membership reducer: indirect probes and suspicion', () => {
  /** Node 0 probing node 1 (its successor) in a cluster of n; returns the probe's start time and seq. */
  function probing(n: number, config: Partial<MembershipConfig> = {}) {
    const h = new Harness(stateOf({ n, config, timers: ['probe'] }));
    const pings = sends(h.tickAt(h.state.nextProbeAt), 'ping');
    const start = h.now;
    // Answer every probe but the successor's.
    for (const p of pings.slice(1)) h.receive(0, { proto: 'swim', type: 'ack', seq: (p.payload as { seq: number }).seq, updates: [] });
    h.state = { ...h.state, nextProbeAt: Infinity };
    const seq = (pings[0]!.payload as { seq: number }).seq;
    return { h, start, seq };
  }

  it('asks k distinct peers, never the target, exactly at the direct deadline', () => {
    const { h, start, seq } = probing(20);
    expect(sends(h.tickAt(start + lan.probeTimeout - 1), 'ping-req')).toEqual([]);
    const reqs = sends(h.tickAt(start + lan.probeTimeout), 'ping-req');
    expect(reqs).toHaveLength(lan.indirectChecks);
    expect(new Set(reqs.map((r) => r.address)).size).toBe(lan.indirectChecks);
    for (const r of reqs) {
      expect(r.address).not.toBe('mem:1');
      expect(r.address).not.toBe('mem:0');
      expect(r.payload).toEqual({ proto: 'swim', type: 'ping-req', seq, target: 1, targetAddress: 'mem:1', updates: [] });
    }
    // Only once.
    expect(sends(h.tickAt(start + lan.probeTimeout + 20), 'ping-req')).toEqual([]);
  });

  it('in a large cluster asks k distinct peers other than the target, whatever the seed', () => {
    for (let seed = 0; seed < 40; seed++) {
      const h = new Harness(stateOf({ n: 12, seed, timers: ['probe'] }));
      const [ping] = sends(h.tickAt(h.state.nextProbeAt), 'ping');
      const target = (ping!.payload as { target: number }).target;
      const reqs = sends(h.tickAt(h.now + lan.probeTimeout), 'ping-req').filter((r) => (r.payload as { target: number }).target === target);
      expect(reqs).toHaveLength(lan.indirectChecks);
      expect(new Set(reqs.map((r) => r.address)).size).toBe(lan.indirectChecks);
      expect(reqs.map((r) => r.address)).not.toContain(addressOf(target));
    }
  });

  it('asks as many peers as there are when fewer than k', () => {
    const { h, start } = probing(3);
    const reqs = sends(h.tickAt(start + lan.probeTimeout), 'ping-req');
    expect(reqs.map((r) => r.address)).toEqual(['mem:2']);
  });

  it('asks nobody when indirectChecks is 0', () => {
    const { h, start } = probing(6, { indirectChecks: 0 });
    expect(sends(h.tickAt(start + lan.probeTimeout), 'ping-req')).toEqual([]);
  });

  it.each([
    { name: 'no nack came: we are to blame for all three', nacks: 0, awareness: 3 },
    { name: 'one nack: two points', nacks: 1, awareness: 2 },
    { name: 'all three nacked: the target is to blame', nacks: 3, awareness: 0 },
  ])('suspects at the indirect deadline; awareness: $name', ({ nacks, awareness }) => {
    const { h, start, seq } = probing(20);
    h.tickAt(start + lan.probeTimeout);
    for (let i = 0; i < nacks; i++) h.receive(5, { proto: 'swim', type: 'nack', seq });
    h.tickAt(start + lan.probeTimeout + lan.indirectProbeTimeout - 1);
    expect(h.member(1)!.status).toBe('alive');
    const effects = h.tickAt(start + lan.probeTimeout + lan.indirectProbeTimeout);
    expect(h.member(1)).toMatchObject({ status: 'suspect', statusSince: h.now });
    expect(h.state.awareness).toBe(awareness);
    expect(changes(effects)).toEqual([{ type: 'member-changed', member: h.member(1), previous: 'alive', up: true, wasUp: true }]);
    expect(logs(effects)).toContainEqual({
      type: 'log',
      level: 'info',
      msg: 'member suspected',
      data: { self: 0, member: 1, incarnation: 0 },
    });
    // The suspicion is gossiped with its age.
    expect(h.pingedBy(2)).toContainEqual({ id: 1, address: 'mem:1', incarnation: 0, status: 'suspect', age: 0 });
  });

  it('a failed probe with nobody to ask costs no awareness', () => {
    const { h, start } = probing(2);
    h.tickAt(start + lan.probeTimeout);
    h.tickAt(start + lan.probeTimeout + lan.indirectProbeTimeout);
    expect(h.member(1)!.status).toBe('suspect');
    expect(h.state.awareness).toBe(0);
  });

  it.each([
    { name: 'an unknown seq', seq: 999 },
    { name: 'a malformed seq', seq: 'x' },
    { name: 'a fractional seq', seq: 1.5 },
  ])('a nack with $name counts for nothing', ({ seq }) => {
    const { h, start } = probing(20);
    h.tickAt(start + lan.probeTimeout);
    h.receive(5, { proto: 'swim', type: 'nack', seq });
    h.tickAt(start + lan.probeTimeout + lan.indirectProbeTimeout);
    expect(h.state.awareness).toBe(3);
  });

  it('an ack during the indirect phase clears the probe and lowers awareness by one', () => {
    const { h, start, seq } = probing(20);
    h.state = { ...h.state, awareness: 3 };
    h.tickAt(start + lan.probeTimeout);
    const effects = h.receive(5, { proto: 'swim', type: 'ack', seq, updates: [] });
    expect(sends(effects)).toEqual([]);
    expect(h.state.awareness).toBe(2);
    h.tickAt(start + 1000);
    expect(h.member(1)!.status).toBe('alive');
  });

  it('does not suspect a member that refuted while we probed it', () => {
    const { h, start } = probing(4);
    h.gossip(2, rec(1, 1, 'alive'));
    h.tickAt(start + lan.probeTimeout);
    expect(sends(h.effects, 'ping-req').length).toBeGreaterThan(0);
    h.tickAt(start + lan.probeTimeout + lan.indirectProbeTimeout);
    expect(h.member(1)).toMatchObject({ status: 'alive', incarnation: 1 });
  });

  it('does not restart the suspicion of a member already suspect', () => {
    const { h, start } = probing(4);
    h.now = start + 10;
    h.gossip(2, rec(1, 0, 'suspect', { age: 90 }));
    h.tickAt(start + lan.probeTimeout);
    const effects = h.tickAt(start + lan.probeTimeout + lan.indirectProbeTimeout);
    expect(changes(effects)).toEqual([]);
    expect(h.member(1)).toMatchObject({ status: 'suspect', statusSince: start - 80 });
  });

  it('declares down exactly at the suspicion deadline, gossips it and logs how long it was suspected', () => {
    const h = new Harness(stateOf({ n: 4 }));
    h.now = 1000;
    h.gossip(3, rec(2, 0, 'suspect', { age: 200 }));
    h.tickAt(800 + lan.suspicionTimeout - 1);
    expect(h.member(2)!.status).toBe('suspect');
    const effects = h.tickAt(800 + lan.suspicionTimeout);
    expect(h.member(2)).toMatchObject({ status: 'down', statusSince: h.now });
    expect(changes(effects)).toEqual([{ type: 'member-changed', member: h.member(2), previous: 'suspect', up: false, wasUp: true }]);
    expect(logs(effects)).toContainEqual({
      type: 'log',
      level: 'info',
      msg: 'member down',
      data: { self: 0, member: 2, incarnation: 0, suspectedFor: lan.suspicionTimeout },
    });
    expect(h.pingedBy(1)).toContainEqual(rec(2, 0, 'down'));
    expect(upMembers(h.state).map((m) => m.id)).toEqual([0, 1, 3]);
    // Once.
    expect(changes(h.tickAt(h.now + 5000))).toEqual([]);
  });

  it('a node that knows itself slow waits (awareness + 1) times the suspicion timeout', () => {
    const h = new Harness({ ...stateOf({ n: 4 }), awareness: 2 });
    h.gossip(3, rec(2, 0, 'suspect'));
    h.tickAt(3 * lan.suspicionTimeout - 1);
    expect(h.member(2)!.status).toBe('suspect');
    h.tickAt(3 * lan.suspicionTimeout);
    expect(h.member(2)!.status).toBe('down');
  });

  it('a refuted suspicion never fires', () => {
    const h = new Harness(stateOf({ n: 4 }));
    h.gossip(3, rec(2, 0, 'suspect'));
    h.gossip(2, rec(2, 1, 'alive'));
    expect(changes(h.tickAt(lan.suspicionTimeout * 2))).toEqual([]);
    expect(h.member(2)).toMatchObject({ status: 'alive', incarnation: 1 });
  });
});

// ---------------------------------------------------------------------------------------------
// Answering pings, acks, ping-reqs

describe('membership reducer: answering', () => {
  it.each([
    { name: 'a malformed seq', seq: 'x' },
    { name: 'a fractional seq', seq: 2.5 },
    { name: 'an unsafe seq', seq: 2 ** 53 },
  ])('merges the updates of a ping with $name but does not answer it', ({ seq }) => {
    const h = new Harness(stateOf());
    const effects = h.receive(1, { proto: 'swim', type: 'ping', seq, target: 0, updates: [rec(8, 0, 'alive')] });
    expect(sends(effects)).toEqual([]);
    expect(h.member(8)!.status).toBe('alive');
  });

  it('acks a ping with seq 0 and piggybacks pending updates', () => {
    const h = new Harness(stateOf());
    h.gossip(2, rec(8, 0, 'alive'));
    const [ack] = sends(h.receive(1, { proto: 'swim', type: 'ping', seq: 0, target: 0, updates: [] }), 'ack');
    expect(ack).toEqual({
      type: 'send',
      address: 'mem:1',
      lane: 'system',
      payload: { proto: 'swim', type: 'ack', seq: 0, updates: [rec(8, 0, 'alive')] },
    });
  });

  it('merges an ack’s updates whatever its seq, and an unknown or malformed seq changes nothing else', () => {
    const h = new Harness({ ...stateOf(), awareness: 2 });
    expect(sends(h.receive(1, { proto: 'swim', type: 'ack', seq: 'x', updates: [rec(8, 0, 'alive')] }))).toEqual([]);
    expect(sends(h.receive(1, { proto: 'swim', type: 'ack', seq: 4242, updates: [rec(9, 0, 'alive')] }))).toEqual([]);
    expect(h.member(8)!.status).toBe('alive');
    expect(h.member(9)!.status).toBe('alive');
    expect(h.state.awareness).toBe(2);
  });

  it('relays a ping-req once: the target’s ack is forwarded with the requester’s seq, and no nack follows', () => {
    const h = new Harness(stateOf());
    h.tickAt(0);
    const [ping] = sends(
      h.receive(1, { proto: 'swim', type: 'ping-req', seq: 31, target: 2, targetAddress: 'mem:2', updates: [rec(8, 0, 'alive')] }),
      'ping',
    );
    expect(h.member(8)!.status).toBe('alive');
    expect(ping!.address).toBe('mem:2');
    expect(ping!.payload).toMatchObject({ proto: 'swim', type: 'ping', target: 2 });
    const seq = (ping!.payload as { seq: number }).seq;
    const fwd = sends(h.receive(2, { proto: 'swim', type: 'ack', seq, updates: [] }));
    expect(fwd).toEqual([
      { type: 'send', address: 'mem:1', lane: 'system', payload: { proto: 'swim', type: 'ack', seq: 31, updates: [] } },
    ]);
    expect(sends(h.receive(2, { proto: 'swim', type: 'ack', seq, updates: [] }))).toEqual([]);
    expect(sends(h.tickTo(500), 'nack')).toEqual([]);
  });

  it('nacks exactly at half the indirect timeout, once', () => {
    const h = new Harness(stateOf());
    h.tickAt(0);
    h.receive(1, { proto: 'swim', type: 'ping-req', seq: 31, target: 2, targetAddress: 'mem:2', updates: [] });
    expect(sends(h.tickAt(lan.indirectProbeTimeout / 2 - 1), 'nack')).toEqual([]);
    expect(sends(h.tickAt(lan.indirectProbeTimeout / 2), 'nack')).toEqual([
      { type: 'send', address: 'mem:1', lane: 'system', payload: { proto: 'swim', type: 'nack', seq: 31 } },
    ]);
    expect(sends(h.tickTo(500), 'nack')).toEqual([]);
  });

  it('relays with fresh seqs that do not collide with its own probes', () => {
    const h = new Harness(stateOf({ timers: ['probe'] }));
    const seqOf = (e: Send) => (e.payload as { seq: number }).seq;
    const probes = sends(h.tickAt(h.state.nextProbeAt), 'ping').map(seqOf);
    const relayed = [1, 2, 3].map((n) =>
      seqOf(
        sends(
          h.receive(n, { proto: 'swim', type: 'ping-req', seq: 7, target: n === 2 ? 3 : 2, targetAddress: 'mem:2', updates: [] }),
          'ping',
        )[0]!,
      ),
    );
    const later = sends(h.tickAt(h.state.nextProbeAt), 'ping').map(seqOf);
    const all = [...probes, ...relayed, ...later];
    expect(all).toHaveLength(7);
    expect(new Set(all).size).toBe(7);
  });

  it.each([
    { name: 'a malformed seq', req: { seq: 'x', target: 2, targetAddress: 'mem:2' } },
    { name: 'a target id out of range', req: { seq: 1, target: 1024, targetAddress: 'mem:2' } },
    { name: 'a target address not a string', req: { seq: 1, target: 2, targetAddress: 2 } },
    { name: 'ourselves as the target', req: { seq: 1, target: 0, targetAddress: 'mem:0' } },
  ])('ignores a ping-req with $name (but merges its updates)', ({ req }) => {
    const h = new Harness(stateOf());
    const effects = h.receive(1, { proto: 'swim', type: 'ping-req', ...req, updates: [rec(8, 0, 'alive')] });
    expect(sends(effects)).toEqual([]);
    expect(h.member(8)!.status).toBe('alive');
    expect(sends(h.tickTo(500), 'nack')).toEqual([]);
  });

  it('relays a ping to a suspect target with its suspicion first, even when that news is no longer pending', () => {
    const h = new Harness(stateOf());
    h.gossip(3, rec(2, 0, 'suspect'));
    for (let i = 0; i < 4; i++) h.pingedBy(3, i); // the suspicion's 4 sends are done
    const [ping] = sends(h.receive(1, { proto: 'swim', type: 'ping-req', seq: 3, target: 2, targetAddress: 'mem:2', updates: [] }), 'ping');
    expect(ping!.payload).toMatchObject({ proto: 'swim', type: 'ping', target: 2, updates: [rec(2, 0, 'suspect', { age: 0 })] });
  });

  it('relays a ping to an alive target with nothing but pending news', () => {
    const h = new Harness(stateOf());
    const [ping] = sends(h.receive(1, { proto: 'swim', type: 'ping-req', seq: 3, target: 2, targetAddress: 'mem:2', updates: [] }), 'ping');
    expect(updatesOf(ping)).toEqual([]);
  });

  it('tells a sender we hold as suspect or down what we think, so it refutes at once', () => {
    const h = new Harness(stateOf());
    const self = { id: 0, address: 'mem:0', incarnation: h.state.incarnation, status: 'alive' };
    h.now = 100;
    h.gossip(3, rec(2, 0, 'suspect', { age: 40 }), rec(1, 0, 'down'));
    h.now = 150;
    const toSuspect = sends(h.receive(2, { proto: 'swim', type: 'gossip', updates: [] }));
    expect(toSuspect).toEqual([
      {
        type: 'send',
        address: 'mem:2',
        lane: 'system',
        // Our own record too: if it holds a stale rumour of us, this corrects it (seed 3609).
        payload: { proto: 'swim', type: 'gossip', updates: [rec(2, 0, 'suspect', { age: 90 }), self] },
      },
    ]);
    const toDown = sends(h.receive(1, { proto: 'swim', type: 'gossip', updates: [] }));
    expect(toDown).toEqual([
      { type: 'send', address: 'mem:1', lane: 'system', payload: { proto: 'swim', type: 'gossip', updates: [rec(1, 0, 'down'), self] } },
    ]);
    // An alive sender, a sender at another address (a new process) and any sender while we leave: nothing.
    expect(sends(h.receive(3, { proto: 'swim', type: 'gossip', updates: [] }))).toEqual([]);
    expect(sends(h.receive(2, { proto: 'swim', type: 'gossip', updates: [] }, 'mem:2b'))).toEqual([]);
    h.dispatch({ type: 'leave' });
    expect(sends(h.receive(2, { proto: 'swim', type: 'gossip', updates: [] }))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// The merge rule as the reducer applies it

describe('membership reducer: merging', () => {
  it.each([
    {
      name: 'new alive member',
      cur: undefined,
      u: rec(5, 0, 'alive'),
      want: 'alive',
      change: { previous: undefined, up: true, wasUp: false },
    },
    {
      name: 'new down member',
      cur: undefined,
      u: rec(5, 0, 'down'),
      want: 'down',
      change: { previous: undefined, up: false, wasUp: false },
    },
    {
      name: 'alive → suspect',
      cur: rec(5, 0, 'alive'),
      u: rec(5, 0, 'suspect'),
      want: 'suspect',
      change: { previous: 'alive', up: true, wasUp: true },
    },
    {
      name: 'suspect → down',
      cur: rec(5, 0, 'suspect'),
      u: rec(5, 0, 'down'),
      want: 'down',
      change: { previous: 'suspect', up: false, wasUp: true },
    },
    {
      name: 'down → left',
      cur: rec(5, 0, 'down'),
      u: rec(5, 0, 'left'),
      want: 'left',
      change: { previous: 'down', up: false, wasUp: false },
    },
    {
      name: 'down → alive at a higher incarnation',
      cur: rec(5, 0, 'down'),
      u: rec(5, 1, 'alive'),
      want: 'alive',
      change: { previous: 'down', up: true, wasUp: false },
    },
    {
      name: 'left → alive at a higher incarnation',
      cur: rec(5, 2, 'left'),
      u: rec(5, 3, 'alive'),
      want: 'alive',
      change: { previous: 'left', up: true, wasUp: false },
    },
    {
      name: 'suspect ↛ alive at the same incarnation',
      cur: rec(5, 1, 'suspect'),
      u: rec(5, 1, 'alive'),
      want: 'suspect',
      change: undefined,
    },
    { name: 'alive ↛ down at a lower incarnation', cur: rec(5, 2, 'alive'), u: rec(5, 1, 'down'), want: 'alive', change: undefined },
    { name: 'left ↛ down at the same incarnation', cur: rec(5, 0, 'left'), u: rec(5, 0, 'down'), want: 'left', change: undefined },
  ])('gossip: $name', ({ cur, u, want, change }) => {
    const members = [{ id: 0, address: 'mem:0' }, { id: 1, address: 'mem:1' }, ...(cur ? [cur] : [])];
    const h = new Harness(stateOf({ members }));
    const effects = h.gossip(1, u);
    expect(h.member(5)!.status).toBe(want);
    if (change === undefined) {
      expect(changes(effects)).toEqual([]);
      expect(h.pingedBy(1)).toEqual([]);
    } else {
      expect(changes(effects)).toEqual([{ type: 'member-changed', member: h.member(5), ...change }]);
      // Re-gossiped.
      expect(h.pingedBy(1).map((x) => x.id)).toEqual([5]);
    }
  });

  it.each([
    { name: 'alive → suspect (up to up)', members: [1, 2], news: rec(2, 0, 'suspect'), peers: ['mem:1', 'mem:2'] },
    { name: 'down → left (down to down)', members: [1, 2, 3], down: 2, news: rec(2, 0, 'left'), peers: ['mem:1', 'mem:3'] },
    { name: 'alive → down', members: [1, 2, 3], news: rec(2, 0, 'down'), peers: ['mem:1', 'mem:3'] },
    { name: 'down → alive', members: [1, 2, 3], down: 2, news: rec(2, 1, 'alive'), peers: ['mem:1', 'mem:2', 'mem:3'] },
  ])('keeps the list of up members exact: $name', ({ members, down, news, peers }) => {
    const table = [0, ...members].map((id) => ({
      id,
      address: addressOf(id),
      status: id === down ? ('down' as const) : ('alive' as const),
    }));
    const h = new Harness(stateOf({ members: table, timers: ['gossip'], config: { gossipFanout: 8 } }));
    h.gossip(1, news);
    const out = sends(h.tickAt(h.state.nextGossipAt), 'gossip').map((e) => e.address);
    expect(out.sort()).toEqual(peers);
  });

  it('re-gossips a newer incarnation even when nothing a user sees changed, and reports no change', () => {
    const h = new Harness(stateOf());
    const effects = h.gossip(1, rec(2, 4, 'alive'));
    expect(changes(effects)).toEqual([]);
    expect(h.member(2)!.incarnation).toBe(4);
    expect(h.pingedBy(1)).toEqual([rec(2, 4, 'alive')]);
  });

  it('reports an address change at the same status (a restarted process)', () => {
    const h = new Harness(stateOf());
    const effects = h.gossip(1, { id: 2, address: 'mem:2-new', incarnation: 1, status: 'alive' });
    expect(changes(effects)).toEqual([
      {
        type: 'member-changed',
        member: { id: 2, address: 'mem:2-new', incarnation: 1, status: 'alive', statusSince: 0 },
        previous: 'alive',
        up: true,
        wasUp: true,
      },
    ]);
  });

  it('the same suspicion heard older moves its start earlier; heard younger, keeps it', () => {
    const h = new Harness(stateOf());
    h.now = 5000;
    h.gossip(1, rec(2, 0, 'suspect', { age: 100 }));
    h.gossip(3, rec(2, 0, 'suspect', { age: 50 }));
    expect(h.member(2)!.statusSince).toBe(4900);
    h.gossip(3, rec(2, 0, 'suspect', { age: 300 }));
    expect(h.member(2)!.statusSince).toBe(4700);
    // The age we pass on is the older one.
    h.now = 5010;
    expect(h.pingedBy(1)).toContainEqual(rec(2, 0, 'suspect', { age: 310 }));
    // And it fires from the earliest start.
    h.tickAt(4700 + lan.suspicionTimeout - 1);
    expect(h.member(2)!.status).toBe('suspect');
    h.tickAt(4700 + lan.suspicionTimeout);
    expect(h.member(2)!.status).toBe('down');
  });

  it('a suspicion at an older incarnation does not move the start of the current one', () => {
    const h = new Harness(
      stateOf({
        members: [
          { id: 0, address: 'mem:0' },
          { id: 2, address: 'mem:2', incarnation: 1 },
        ],
      }),
    );
    h.now = 5000;
    h.gossip(1, rec(2, 1, 'suspect'));
    h.gossip(1, rec(2, 0, 'suspect', { age: 900 }));
    expect(h.member(2)).toMatchObject({ incarnation: 1, statusSince: 5000 });
  });

  it.each([
    { name: 'no age', extra: {}, since: 5000 },
    { name: 'an age that is not a number', extra: { age: '300' }, since: 5000 },
    { name: 'an infinite age', extra: { age: Infinity }, since: 5000 },
    { name: 'a NaN age', extra: { age: NaN }, since: 5000 },
    { name: 'a negative age', extra: { age: -300 }, since: 5000 },
    { name: 'an age beyond the timeout', extra: { age: 99_999 }, since: 5000 - lan.suspicionTimeout },
  ])('a suspicion with $name', ({ extra, since }) => {
    const h = new Harness(stateOf());
    h.now = 5000;
    h.gossip(1, { ...rec(2, 0, 'suspect'), ...extra } as MemberUpdate);
    expect(h.member(2)).toMatchObject({ status: 'suspect', statusSince: since });
  });

  it('an age on anything but a suspicion is ignored: no age on the wire', () => {
    const h = new Harness(stateOf());
    h.now = 5000;
    h.gossip(1, rec(2, 0, 'down', { age: 300 }));
    expect(h.member(2)!.statusSince).toBe(5000);
    expect(h.pingedBy(1)).toEqual([rec(2, 0, 'down')]);
  });

  it.each([
    { name: 'an empty address', u: { id: 5, address: '', incarnation: 0, status: 'alive' } },
    { name: 'a 257-character address', u: { id: 5, address: 'a'.repeat(257), incarnation: 0, status: 'alive' } },
    { name: 'a numeric address', u: { id: 5, address: 5, incarnation: 0, status: 'alive' } },
    { name: 'a fractional id', u: { id: 5.5, address: 'mem:5', incarnation: 0, status: 'alive' } },
    { name: 'a negative id', u: { id: -1, address: 'mem:5', incarnation: 0, status: 'alive' } },
    { name: 'a fractional incarnation', u: { id: 5, address: 'mem:5', incarnation: 0.5, status: 'alive' } },
    { name: 'a status from Object.prototype', u: { id: 5, address: 'mem:5', incarnation: 0, status: 'toString' } },
    { name: 'a numeric status', u: { id: 5, address: 'mem:5', incarnation: 0, status: 1 } },
    { name: 'a status in an array', u: { id: 5, address: 'mem:5', incarnation: 0, status: ['alive'] } },
    {
      name: 'a function with the fields of an update',
      u: Object.assign(() => {}, { id: 5, address: 'mem:5', incarnation: 0, status: 'alive' }),
    },
  ])('drops an update with $name', ({ u }) => {
    const h = new Harness(stateOf());
    const before = h.state.members;
    expect(h.gossip(1, u as unknown as MemberUpdate)).toEqual([]);
    expect(h.state.members).toBe(before);
  });

  it('accepts a 256-character address and an id of 1023', () => {
    const h = new Harness(stateOf());
    h.gossip(1, { id: 1023, address: 'a'.repeat(256), incarnation: 0, status: 'alive' });
    expect(h.member(1023)!.address).toHaveLength(256);
  });

  it('ignores an update list that is not an array', () => {
    const h = new Harness(stateOf());
    expect(h.receive(1, { proto: 'swim', type: 'gossip', updates: { 0: rec(5, 0, 'alive'), length: 1 } })).toEqual([]);
    expect(h.member(5)).toBeUndefined();
  });

  it.each([
    { type: 'gossip', key: 'updates' },
    { type: 'sync-ack', key: 'members' },
  ])('reads at most 1,024 entries of a $type', ({ type, key }) => {
    const h = new Harness(stateOf());
    const list: unknown[] = Array.from({ length: 1025 }, () => null);
    list[1023] = rec(5, 0, 'alive');
    list[1024] = rec(6, 0, 'alive');
    h.receive(1, { proto: 'swim', type, [key]: list });
    expect(h.member(5)!.status).toBe('alive');
    expect(h.member(6)).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Bookkeeping the state carries

describe('membership reducer: state bookkeeping', () => {
  it('counts down members as they go down, come back, leave and are forgotten', () => {
    const h = new Harness(
      stateOf({ n: 4, timers: ['reconnect'], config: { tombstoneTimeout: 1000, reconnectInterval: 1, reconnectPerInterval: 1 } }),
    );
    const counts: number[] = [h.state.downCount];
    const step = (...updates: MemberUpdate[]) => {
      h.gossip(1, ...updates);
      counts.push(h.state.downCount);
    };
    step(rec(2, 0, 'down'));
    step(rec(3, 0, 'suspect'));
    step(rec(3, 0, 'down'), rec(7, 0, 'down'));
    step(rec(2, 1, 'alive'));
    step(rec(7, 0, 'left'));
    step(rec(8, 0, 'left'));
    h.now = 500;
    step(rec(2, 1, 'down'));
    h.tickAt(1000); // 3 (down since 0) and the left tombstones are forgotten
    counts.push(h.state.downCount);
    h.tickAt(1500); // 2 (down since 500)
    counts.push(h.state.downCount);
    expect(counts).toEqual([0, 1, 1, 3, 2, 1, 1, 2, 1, 0]);
  });

  it('keeps a suspicion timer for exactly the suspect members', () => {
    const h = new Harness(stateOf({ n: 6 }));
    const timers: number[][] = [];
    for (const updates of [
      [rec(2, 0, 'suspect'), rec(3, 0, 'suspect'), rec(9, 0, 'alive')],
      [rec(2, 1, 'alive')],
      [rec(3, 0, 'down'), rec(4, 0, 'suspect')],
      [rec(4, 0, 'left'), rec(5, 0, 'down')],
    ]) {
      h.gossip(1, ...updates);
      timers.push([...h.state.suspicions.keys()].sort());
    }
    expect(timers).toEqual([[2, 3], [3], [4], []]);
  });

  it('never changes the up list or probe order of the state it was given', () => {
    const h = new Harness(stateOf({ n: 6, timers: ['probe'] }));
    for (const updates of [[rec(3, 0, 'down')], [rec(9, 0, 'alive')], [rec(3, 1, 'alive')], [rec(1, 0, 'left')]]) {
      const before = h.state;
      const upIds = [...before.upIds];
      const probeOrder = [...before.probeOrder];
      h.gossip(2, ...updates);
      expect(before.upIds).toEqual(upIds);
      expect(before.probeOrder).toEqual(probeOrder);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Rumours about ourselves

describe('membership reducer: refutation', () => {
  const about = (incarnation: number, status: MemberStatus, address = 'mem:0') => ({ id: 0, address, incarnation, status });

  it.each([
    { name: 'alive, same incarnation: nothing to do', u: about(2, 'alive'), incarnation: 2, awareness: 0, refuted: false },
    { name: 'alive, older: nothing to do', u: about(1, 'alive'), incarnation: 2, awareness: 0, refuted: false },
    { name: 'alive, newer, our address: adopt it quietly', u: about(5, 'alive'), incarnation: 5, awareness: 0, refuted: false },
    { name: 'alive, newer, another address: outbid it', u: about(5, 'alive', 'mem:0-old'), incarnation: 6, awareness: 0, refuted: true },
    // A previous life cordoned itself at a higher incarnation than this life started with (seed 4828).
    { name: 'alive, newer, our address, but cordoned: outbid it', u: { ...about(5, 'alive'), cordoned: true }, incarnation: 6, awareness: 0, refuted: true },
    { name: 'alive, newer, our address, another zone: outbid it', u: { ...about(5, 'alive'), zone: 'z9' }, incarnation: 6, awareness: 0, refuted: true },
    {
      name: 'alive, same incarnation, another address: ignored',
      u: about(2, 'alive', 'mem:0-old'),
      incarnation: 2,
      awareness: 0,
      refuted: false,
    },
    {
      name: 'suspect, same incarnation: refute, and we are likely slow',
      u: about(2, 'suspect'),
      incarnation: 3,
      awareness: 1,
      refuted: true,
    },
    { name: 'suspect, newer: outbid it', u: about(4, 'suspect'), incarnation: 5, awareness: 1, refuted: true },
    // Older rumours of our death: nothing to outbid, but the teller is told what we are now (seed 3609).
    { name: 'suspect, older: already refuted', u: about(1, 'suspect'), incarnation: 2, awareness: 0, refuted: false, corrected: true },
    { name: 'down, same incarnation', u: about(2, 'down'), incarnation: 3, awareness: 1, refuted: true },
    { name: 'down, older', u: about(1, 'down'), incarnation: 2, awareness: 0, refuted: false, corrected: true },
    { name: 'left, same incarnation: refute without blame', u: about(2, 'left'), incarnation: 3, awareness: 0, refuted: true },
  ])('$name', ({ u, incarnation, awareness, refuted, corrected }) => {
    const h = new Harness(
      createMembershipState(
        {
          self: { id: 0, address: 'mem:0' },
          incarnation: 2,
          seed: 1,
          members: [1, 2, 3, 4, 5, 6].map((id) => ({ id, address: addressOf(id) })),
          config: lan,
        },
        0,
      ),
    );
    h.state = { ...h.state, nextProbeAt: Infinity, nextGossipAt: Infinity, nextPushPullAt: Infinity, nextReconnectAt: Infinity };
    const effects = h.gossip(3, u as MemberUpdate);
    expect(h.state.incarnation).toBe(incarnation);
    expect(h.member(0)).toMatchObject({ status: 'alive', incarnation, address: 'mem:0' });
    expect(h.state.awareness).toBe(awareness);
    expect(changes(effects)).toEqual([]);
    const refutations = sends(effects, 'gossip').filter((e) => updatesOf(e).some((x) => x.id === 0 && x.incarnation === incarnation));
    const warned = logs(effects).filter((l) => l.msg === 'refuted a rumour about this node');
    if (refuted) {
      // Straight back to the rumour-monger, and at once to gossipFanout peers.
      expect(refutations[0]!.address).toBe('mem:3');
      expect(refutations[0]!.payload).toEqual({
        proto: 'swim',
        type: 'gossip',
        updates: [{ id: 0, address: 'mem:0', incarnation, status: 'alive' }],
      });
      expect(refutations.length).toBe(1 + lan.gossipFanout);
      expect(warned).toEqual([
        { type: 'log', level: 'warn', msg: 'refuted a rumour about this node', data: { self: 0, rumour: u.status, incarnation } },
      ]);
    } else {
      // Corrected: our record as it is, to the teller only; no new incarnation, no broadcast.
      const told = { proto: 'swim', type: 'gossip', updates: [{ id: 0, address: 'mem:0', incarnation, status: 'alive' }] };
      expect(sends(effects)).toEqual(corrected ? [{ type: 'send', address: 'mem:3', lane: 'system', payload: told }] : []);
      expect(warned).toEqual([]);
    }
    if (incarnation !== 2)
      expect(h.pingedBy(1).filter((x) => x.id === 0)).toEqual(refuted ? [] : [{ id: 0, address: 'mem:0', incarnation, status: 'alive' }]);
  });

  it('refutes a full table that holds us down (a partition healing), not as a mere suspicion', () => {
    const h = new Harness(stateOf());
    const [ack] = sends(h.receive(1, { proto: 'swim', type: 'sync', members: [rec(0, 0, 'down'), rec(1, 0, 'alive')] }), 'sync-ack');
    expect(h.state.incarnation).toBe(1);
    expect(h.state.awareness).toBe(1);
    expect((ack!.payload as { members: MemberUpdate[] }).members).toContainEqual(rec(0, 1, 'alive'));
    expect(logs(h.effects).find((l) => l.msg === 'refuted a rumour about this node')!.data).toEqual({
      self: 0,
      rumour: 'down',
      incarnation: 1,
    });
  });

  it('while leaving, answers a newer rumour with "left" at that incarnation, and ignores the rest', () => {
    const h = new Harness(stateOf({ n: 4, config: { gossipFanout: 1 } }));
    h.dispatch({ type: 'leave' }); // the announcement's first send of 4
    h.pingedBy(1, 1);
    h.pingedBy(1, 2);
    h.gossip(3, about(0, 'suspect'));
    expect(h.member(0)).toMatchObject({ status: 'left', incarnation: 0 });
    // Not announced again: the fourth send is the last.
    expect([h.pingedBy(1, 3), h.pingedBy(1, 4)]).toEqual([[about(0, 'left')], []]);
    const effects = h.gossip(3, about(4, 'alive'));
    expect(h.state.incarnation).toBe(4);
    expect(h.member(0)).toMatchObject({ status: 'left', incarnation: 4 });
    expect(sends(effects)).toEqual([]);
    expect(h.pingedBy(1)).toContainEqual(about(4, 'left'));
  });
});

// ---------------------------------------------------------------------------------------------
// Dissemination: what rides on each message

describe('membership reducer: piggyback selection', () => {
  it('caps each message at maxUpdatesPerMessage, newest first, then the least sent', () => {
    const h = new Harness(stateOf({ n: 2, config: { maxUpdatesPerMessage: 2 } }));
    h.gossip(1, rec(10, 0, 'alive'));
    h.gossip(1, rec(11, 0, 'alive'));
    h.gossip(1, rec(12, 0, 'alive'));
    expect(h.pingedBy(1, 1).map((u) => u.id)).toEqual([12, 11]);
    // 10 has gone out least (never), then the newest of those sent once.
    expect(h.pingedBy(1, 2).map((u) => u.id)).toEqual([10, 12]);
    expect(h.pingedBy(1, 3).map((u) => u.id)).toEqual([11, 10]);
  });

  it('sends each update retransmitMult · ceil(log10(N + 1)) times, then drops it', () => {
    // 5 members: limit 4 · ceil(log10 6) = 4.
    const h = new Harness(stateOf({ n: 4 }));
    h.gossip(1, rec(10, 0, 'alive'));
    const counts = Array.from({ length: 6 }, (_, i) => h.pingedBy(1, i).length);
    expect(counts).toEqual([1, 1, 1, 1, 0, 0]);
  });

  it('the limit grows with the cluster: 10 members, 8 sends', () => {
    const h = new Harness(stateOf({ n: 9 }));
    h.gossip(1, rec(10, 0, 'alive'));
    const counts = Array.from({ length: 10 }, (_, i) => h.pingedBy(1, i).length);
    expect(counts).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
  });

  it('a newer record for the same member replaces the pending one and starts its count again', () => {
    const h = new Harness(stateOf({ n: 4 }));
    h.gossip(1, rec(10, 0, 'alive'));
    h.pingedBy(1, 1);
    h.pingedBy(1, 2);
    h.gossip(1, rec(10, 0, 'suspect'));
    const sent = Array.from({ length: 5 }, (_, i) => h.pingedBy(1, 3 + i));
    expect(sent.map((u) => u.length)).toEqual([1, 1, 1, 1, 0]);
    expect(sent[0]![0]).toMatchObject({ id: 10, status: 'suspect' });
  });

  it('gossips pending updates to gossipFanout peers each interval, and only while there are any', () => {
    const h = new Harness(stateOf({ n: 10, timers: ['gossip'], config: { gossipFanout: 2, retransmitMult: 2 } }));
    // Nothing pending: nothing sent.
    expect(sends(h.tickTo(200))).toEqual([]);
    h.gossip(1, rec(20, 0, 'alive'));
    // 11 members: limit 2 · ceil(log10 12) = 4 sends, two per round.
    const rounds: string[][] = [];
    for (let i = 0; i < 4; i++) {
      const out = sends(h.tickAt(h.state.nextGossipAt), 'gossip');
      rounds.push(out.map((e) => e.address));
      for (const e of out) expect(e.payload).toEqual({ proto: 'swim', type: 'gossip', updates: [rec(20, 0, 'alive')] });
    }
    expect(rounds.map((r) => r.length)).toEqual([2, 2, 0, 0]);
    expect(new Set(rounds[0]).size).toBe(2);
    expect(rounds[0]).not.toContain('mem:0');
  });

  it('gossips to the only other member', () => {
    const h = new Harness(stateOf({ n: 2, timers: ['gossip'] }));
    h.gossip(1, rec(20, 0, 'down')); // news, but no new peer to gossip to
    expect(sends(h.tickAt(h.state.nextGossipAt)).map((e) => e.address)).toEqual(['mem:1']);
  });

  it('sends no empty gossip when the updates run out within a round', () => {
    // 10 members, retransmitMult 1: limit 1 · ceil(log10 11) = 2 sends, fanout 4.
    const h = new Harness(stateOf({ n: 9, timers: ['gossip'], config: { retransmitMult: 1 } }));
    h.gossip(1, rec(20, 0, 'alive'));
    const out = sends(h.tickAt(h.state.nextGossipAt));
    expect(out).toHaveLength(2);
    for (const e of out) expect(updatesOf(e)).toEqual([rec(20, 0, 'alive')]);
  });

  it('gossips every gossipInterval on its grid, at most once per tick', () => {
    const h = new Harness(
      stateOf({ n: 3, timers: ['gossip'], config: { tickInterval: 10, gossipInterval: 40, gossipFanout: 1, retransmitMult: 10 } }),
    );
    h.gossip(1, rec(20, 0, 'alive'));
    const first = h.state.nextGossipAt;
    const times: number[] = [];
    for (let t = first; t < first + 200; t += 10) if (sends(h.tickAt(t), 'gossip').length > 0) times.push(t);
    expect(times).toEqual([first, first + 40, first + 80, first + 120, first + 160]);
  });

  it('after a stall gossips at the next tick, not in a burst', () => {
    const h = new Harness(
      stateOf({ n: 3, timers: ['gossip'], config: { tickInterval: 10, gossipInterval: 40, gossipFanout: 1, retransmitMult: 10 } }),
    );
    h.gossip(1, rec(20, 0, 'alive'));
    const first = h.state.nextGossipAt;
    const times: number[] = [];
    for (const t of [first + 500, first + 501, first + 510, first + 540, first + 541])
      if (sends(h.tickAt(t), 'gossip').length > 0) times.push(t);
    expect(times).toEqual([first + 500, first + 501, first + 541]);
  });
});

// ---------------------------------------------------------------------------------------------
// Anti-entropy: push-pull, reconnect, tombstones

describe('membership reducer: push-pull, reconnect and tombstones', () => {
  it('syncs its full table with one random member every pushPullInterval', () => {
    const h = new Harness(stateOf({ n: 4, timers: ['pushPull'] }));
    const first = h.state.nextPushPullAt;
    expect(sends(h.tickAt(first - 1))).toEqual([]);
    const [sync, ...rest] = sends(h.tickAt(first));
    expect(rest).toEqual([]);
    expect(['mem:1', 'mem:2', 'mem:3']).toContain(sync!.address);
    expect(sync!.payload).toMatchObject({ proto: 'swim', type: 'sync' });
    expect(tableOf(sync)).toEqual([0, 1, 2, 3].map((id) => rec(id, 0, 'alive')));
    expect(sends(h.tickAt(first + lan.pushPullInterval - 1))).toEqual([]);
    expect(sends(h.tickAt(first + lan.pushPullInterval), 'sync')).toHaveLength(1);
  });

  it('answers a sync with its table and merges the sender’s; a sync-ack gets no answer', () => {
    const h = new Harness(stateOf({ n: 2 }));
    const [ack, ...rest] = sends(h.receive(1, { proto: 'swim', type: 'sync', members: [rec(1, 0, 'alive'), rec(7, 2, 'alive')] }));
    expect(rest).toEqual([]);
    expect(ack).toMatchObject({ type: 'send', address: 'mem:1', lane: 'system', payload: { proto: 'swim', type: 'sync-ack' } });
    expect(tableOf(ack)).toEqual([rec(0, 0, 'alive'), rec(1, 0, 'alive'), rec(7, 2, 'alive')]);
    expect(sends(h.receive(1, { proto: 'swim', type: 'sync-ack', members: [rec(8, 0, 'alive')] }))).toEqual([]);
    expect(h.member(8)!.status).toBe('alive');
  });

  it('a table’s "down" for a member we see up only makes it suspect (fresh), and is re-gossiped', () => {
    const h = new Harness(stateOf({ n: 3 }));
    h.now = 700;
    h.receive(1, { proto: 'swim', type: 'sync-ack', members: [rec(2, 0, 'down')] });
    expect(h.member(2)).toMatchObject({ status: 'suspect', statusSince: 700 });
    expect(h.pingedBy(1)).toEqual([rec(2, 0, 'suspect', { age: 0 })]);
  });

  it('a table’s "down" for a member we hold suspect makes it suspect still, at its own start', () => {
    const h = new Harness(stateOf({ n: 3 }));
    h.now = 700;
    h.gossip(1, rec(2, 0, 'suspect', { age: 200 }));
    h.receive(1, { proto: 'swim', type: 'sync-ack', members: [rec(2, 0, 'down')] });
    expect(h.member(2)).toMatchObject({ status: 'suspect', statusSince: 500 });
  });

  it('a table’s "down" for a member we hold down or do not know is taken as it is; unknown ones are not re-gossiped', () => {
    const h = new Harness(stateOf({ n: 3 }));
    h.gossip(1, rec(2, 0, 'down'));
    h.pingedBy(1, 1);
    h.pingedBy(1, 2);
    h.pingedBy(1, 3);
    h.pingedBy(1, 4);
    h.receive(1, { proto: 'swim', type: 'sync-ack', members: [rec(2, 1, 'down'), rec(9, 0, 'down'), rec(8, 0, 'alive')] });
    expect(h.member(2)).toMatchObject({ status: 'down', incarnation: 1 });
    expect(h.member(9)!.status).toBe('down');
    expect(h.member(8)!.status).toBe('alive');
    expect(h.pingedBy(1).map((u) => u.id)).toEqual([2]);
  });

  it('ignores a table that is not an array', () => {
    const h = new Harness(stateOf({ n: 2 }));
    h.receive(1, { proto: 'swim', type: 'sync-ack', members: 'everyone' });
    h.receive(1, { proto: 'swim', type: 'join-ack', members: null });
    expect([...h.state.members.keys()].sort()).toEqual([0, 1]);
  });

  it('does not push-pull while leaving', () => {
    const h = new Harness(stateOf({ n: 4, timers: ['pushPull'] }));
    h.dispatch({ type: 'leave' });
    expect(sends(h.tickAt(h.state.nextPushPullAt), 'sync')).toEqual([]);
  });

  it('push-pulls with the only other member', () => {
    const h = new Harness(stateOf({ n: 2, timers: ['pushPull'] }));
    expect(sends(h.tickAt(h.state.nextPushPullAt)).map((e) => e.address)).toEqual(['mem:1']);
  });

  it('push-pull alone sends nothing and keeps its schedule', () => {
    const h = new Harness(stateOf({ n: 1, timers: ['pushPull'] }));
    const first = h.state.nextPushPullAt;
    expect(sends(h.tickAt(first))).toEqual([]);
    expect(h.state.nextPushPullAt).toBe(first + lan.pushPullInterval);
  });

  /** Node 0 with members 1, 2 alive and 3 down. */
  const withDown = (config: Partial<MembershipConfig> = {}) =>
    stateOf({
      members: [
        { id: 0, address: 'mem:0' },
        { id: 1, address: 'mem:1' },
        { id: 2, address: 'mem:2' },
        { id: 3, address: 'mem:3', status: 'down' },
      ],
      config,
      timers: ['reconnect'],
    });

  it('syncs with a down member every reconnectInterval (few members: every time)', () => {
    const h = new Harness(withDown());
    const first = h.state.nextReconnectAt;
    expect(sends(h.tickAt(first - 1))).toEqual([]);
    const [sync] = sends(h.tickAt(first));
    expect(sync).toMatchObject({ address: 'mem:3', payload: { proto: 'swim', type: 'sync' } });
    expect(tableOf(sync).map((u) => u.id)).toEqual([0, 1, 2, 3]);
    expect(sends(h.tickAt(first + lan.reconnectInterval - 1))).toEqual([]);
    expect(sends(h.tickAt(first + lan.reconnectInterval), 'sync')).toHaveLength(1);
  });

  it('picks the down member to sync with at random among all of them', () => {
    const h = new Harness(
      stateOf({
        members: [
          { id: 0, address: 'mem:0' },
          { id: 1, address: 'mem:1' },
          { id: 3, address: 'mem:3', status: 'down' },
          { id: 4, address: 'mem:4', status: 'down' },
          { id: 5, address: 'mem:5', status: 'down' },
        ],
        timers: ['reconnect'],
      }),
    );
    const to = new Set<string>();
    for (let i = 0; i < 30; i++) for (const e of sends(h.tickAt(h.state.nextReconnectAt), 'sync')) to.add(e.address);
    expect([...to].sort()).toEqual(['mem:3', 'mem:4', 'mem:5']);
  });

  it('sends no reconnect sync without down members (left ones are not retried)', () => {
    const h = new Harness(
      stateOf({
        members: [
          { id: 0, address: 'mem:0' },
          { id: 1, address: 'mem:1' },
          { id: 3, address: 'mem:3', status: 'left' },
        ],
        timers: ['reconnect'],
      }),
    );
    expect(sends(h.tickTo(10_000))).toEqual([]);
  });

  it('stops reconnecting once the down member is back', () => {
    const h = new Harness(withDown());
    h.gossip(3, rec(3, 1, 'alive'));
    expect(sends(h.tickTo(10_000), 'sync')).toEqual([]);
  });

  it('starts reconnecting when a member goes down', () => {
    const h = new Harness(stateOf({ n: 3, timers: ['reconnect'] }));
    h.gossip(1, rec(2, 0, 'down'));
    expect(sends(h.tickTo(3000), 'sync').map((e) => e.address)).toContain('mem:2');
  });

  it('in a large cluster each member tries with probability reconnectPerInterval / N', () => {
    const members = Array.from({ length: 21 }, (_, id) => ({ id, address: addressOf(id) }));
    members.push({ id: 21, address: 'mem:21', status: 'down' } as (typeof members)[number]);
    const h = new Harness(stateOf({ members, timers: ['reconnect'], config: { tombstoneTimeout: 1e12 } }));
    let tries = 0;
    for (let i = 0; i < 400; i++) tries += sends(h.tickAt(h.state.nextReconnectAt), 'sync').length;
    // p = 4 / 21 ≈ 0.19: about 76 of 400 (seeded, so exact; the bounds are ±4 σ).
    expect(tries).toBeGreaterThan(45);
    expect(tries).toBeLessThan(107);
  });

  it('with 4 members up, tries with probability 4 / 5', () => {
    const members = [0, 1, 2, 3, 4].map((id) => ({ id, address: addressOf(id) }));
    members.push({ id: 5, address: 'mem:5', status: 'down' } as (typeof members)[number]);
    const h = new Harness(stateOf({ members, timers: ['reconnect'], config: { tombstoneTimeout: 1e12 } }));
    let tries = 0;
    for (let i = 0; i < 200; i++) tries += sends(h.tickAt(h.state.nextReconnectAt), 'sync').length;
    // About 160 of 200 (σ ≈ 5.7; seeded, so exact): not every time.
    expect(tries).toBeGreaterThan(130);
    expect(tries).toBeLessThan(185);
  });

  it('does not reconnect while leaving', () => {
    const h = new Harness(withDown());
    h.dispatch({ type: 'leave' });
    expect(sends(h.tickTo(5000), 'sync')).toEqual([]);
  });

  // reconnectInterval 1: every tick is a reconnect tick, where tombstones are reaped.
  it('forgets down and left members tombstoneTimeout after they went', () => {
    const h = new Harness(stateOf({ n: 3, timers: ['reconnect'], config: { tombstoneTimeout: 1000, reconnectInterval: 1 } }));
    h.now = 50;
    h.gossip(1, rec(5, 0, 'down'), rec(6, 0, 'left'));
    h.now = 400;
    h.gossip(1, rec(7, 0, 'left'));
    // Sent out fully (limit 4 for < 10 members), so no pending update hides the result.
    for (let i = 0; i < 4; i++) h.pingedBy(1, i);
    h.tickAt(1049);
    expect([...h.state.members.keys()].sort()).toEqual([0, 1, 2, 5, 6, 7]);
    h.tickAt(1050);
    expect([...h.state.members.keys()].sort()).toEqual([0, 1, 2, 7]);
    h.tickAt(1400);
    expect([...h.state.members.keys()].sort()).toEqual([0, 1, 2]);
    // No down member left: no reconnect syncs.
    expect(sends(h.tickTo(5000), 'sync')).toEqual([]);
  });

  it('forgetting a left member keeps reconnecting to a down one', () => {
    const h = new Harness(stateOf({ n: 2, timers: ['reconnect'], config: { tombstoneTimeout: 1000, reconnectInterval: 1 } }));
    h.gossip(1, rec(6, 0, 'left'));
    h.now = 800;
    h.gossip(1, rec(5, 0, 'down'));
    h.tickAt(1000);
    expect(h.member(6)).toBeUndefined();
    expect(sends(h.tickAt(1100), 'sync').map((e) => e.address)).toEqual(['mem:5']);
  });

  it('a forgotten member’s pending update is dropped, not gossiped any more', () => {
    const h = new Harness(stateOf({ n: 2, timers: ['reconnect'], config: { tombstoneTimeout: 1000, reconnectInterval: 1 } }));
    h.gossip(1, rec(6, 0, 'left'), rec(7, 0, 'alive'));
    h.tickAt(1000);
    expect(h.state.broadcasts.map((b) => b.id)).toEqual([7]);
    expect(h.pingedBy(1)).toEqual([rec(7, 0, 'alive')]);
  });

  it('forgets tombstones even while leaving, never up members nor itself', () => {
    const h = new Harness(stateOf({ n: 3, timers: ['reconnect'], config: { tombstoneTimeout: 1000, reconnectInterval: 1 } }));
    h.gossip(1, rec(6, 0, 'down'));
    h.dispatch({ type: 'leave' });
    h.tickTo(5000);
    expect([...h.state.members.keys()].sort()).toEqual([0, 1, 2]);
  });
});

// ---------------------------------------------------------------------------------------------
// Join, join-ack, leave

describe('membership reducer: join and leave', () => {
  const alone = (id = 9) => stateOf({ self: id, members: [], timers: [] });

  it.each([
    { name: 'not an array', seeds: 'mem:0' },
    { name: 'an empty address', seeds: ['mem:0', ''] },
    { name: 'a non-string address', seeds: [0] },
  ])('ignores a join whose seeds are $name, with a warning', ({ seeds }) => {
    const h = new Harness(alone());
    const effects = h.dispatch({ type: 'join', seeds } as unknown as MembershipEvent);
    expect(effects).toEqual([
      { type: 'log', level: 'warn', msg: 'join ignored: seeds must be non-empty address strings', data: { self: 9 } },
    ]);
    expect(h.state.joined).toBe(false);
  });

  it('a node whose only seed is itself founds the cluster: joined, nothing sent, no retries', () => {
    const h = new Harness(alone());
    expect(h.dispatch({ type: 'join', seeds: ['mem:9'] })).toEqual([]);
    expect(h.state.joined).toBe(true);
    expect(sends(h.tickTo(5000))).toEqual([]);
  });

  it('sends join with its own record to every other seed, and retries every joinRetryInterval until answered', () => {
    const h = new Harness(createMembershipState({ self: { id: 9, address: 'mem:9' }, incarnation: 4, seed: 1 }, 0));
    h.state = { ...h.state, nextProbeAt: Infinity, nextGossipAt: Infinity, nextPushPullAt: Infinity, nextReconnectAt: Infinity };
    h.now = 100;
    const joins = sends(h.dispatch({ type: 'join', seeds: ['mem:0', 'mem:9', 'mem:1'] }));
    const join = { proto: 'swim', type: 'join', member: { id: 9, address: 'mem:9', incarnation: 4, status: 'alive' } };
    expect(joins).toEqual([
      { type: 'send', address: 'mem:0', lane: 'system', payload: join },
      { type: 'send', address: 'mem:1', lane: 'system', payload: join },
    ]);
    expect(sends(h.tickAt(100 + lan.joinRetryInterval - 1))).toEqual([]);
    expect(sends(h.tickAt(100 + lan.joinRetryInterval)).map((e) => e.address)).toEqual(['mem:0', 'mem:1']);
    expect(sends(h.tickAt(100 + 2 * lan.joinRetryInterval - 1))).toEqual([]);
    expect(sends(h.tickAt(100 + 2 * lan.joinRetryInterval))).toHaveLength(2);
    h.receive(0, { proto: 'swim', type: 'join-ack', members: [rec(0, 0, 'alive')] });
    expect(sends(h.tickTo(10_000), 'join')).toEqual([]);
  });

  it('a joined member that sees nobody up asks its seeds again; while leaving it does not', () => {
    const h = new Harness(createMembershipState({ self: { id: 9, address: 'mem:9' }, seed: 1 }, 0));
    h.state = { ...h.state, nextProbeAt: Infinity, nextGossipAt: Infinity, nextPushPullAt: Infinity, nextReconnectAt: Infinity };
    h.dispatch({ type: 'join', seeds: ['mem:0'] });
    h.receive(0, { proto: 'swim', type: 'join-ack', members: [rec(0, 0, 'alive')] });
    expect(sends(h.tickTo(3000), 'join')).toEqual([]);
    h.gossip(0, rec(0, 0, 'down'));
    expect(sends(h.tickTo(4100), 'join').length).toBeGreaterThan(0);
    h.dispatch({ type: 'leave' });
    expect(sends(h.tickTo(8000), 'join')).toEqual([]);
  });

  it('the seed records the joiner, gossips it, and answers with its table; a malformed join gets nothing', () => {
    const h = new Harness(stateOf({ n: 2 }));
    expect(h.receive(9, { proto: 'swim', type: 'join', member: { id: 9, address: '' } })).toEqual([]);
    expect(h.member(9)).toBeUndefined();
    const effects = h.receive(9, { proto: 'swim', type: 'join', member: rec(9, 0, 'alive') });
    const [ack, ...rest] = sends(effects);
    expect(rest).toEqual([]);
    expect(ack).toMatchObject({ type: 'send', address: 'mem:9', lane: 'system', payload: { proto: 'swim', type: 'join-ack' } });
    expect(tableOf(ack)).toEqual([rec(0, 0, 'alive'), rec(1, 0, 'alive'), rec(9, 0, 'alive')]);
    expect(h.pingedBy(1)).toEqual([rec(9, 0, 'alive')]);
  });

  it('on its first join-ack: logs, announces itself, pulls a table again within joinRetryInterval; later acks do neither', () => {
    const h = new Harness(createMembershipState({ self: { id: 9, address: 'mem:9' }, seed: 3 }, 0));
    h.state = { ...h.state, nextProbeAt: Infinity, nextGossipAt: Infinity, nextReconnectAt: Infinity };
    h.dispatch({ type: 'join', seeds: ['mem:0'] });
    h.now = 50;
    const table = [rec(0, 0, 'alive'), rec(1, 0, 'alive'), rec(2, 0, 'alive')];
    const effects = h.receive(0, { proto: 'swim', type: 'join-ack', members: table });
    expect(logs(effects)).toEqual([{ type: 'log', level: 'info', msg: 'joined the cluster', data: { self: 9, via: 'mem:0', members: 4 } }]);
    expect(h.state.joined).toBe(true);
    // The seed's table is not re-gossiped; our own record is (4 sends: 4 members).
    const selfSends = () => h.pingedBy(1).filter((u) => u.id === 9).length;
    expect(h.pingedBy(1)).toEqual([rec(9, 0, 'alive')]);
    expect(selfSends()).toBe(1);
    // The early push-pull.
    const pulled = h.state.nextPushPullAt;
    expect(pulled).toBeGreaterThanOrEqual(50);
    expect(pulled).toBeLessThan(50 + lan.joinRetryInterval);
    expect(sends(h.tickAt(pulled), 'sync')).toHaveLength(1);
    // A second ack: no log, no second announcement (the first one's count goes on).
    const again = h.receive(1, { proto: 'swim', type: 'join-ack', members: table });
    expect(logs(again)).toEqual([]);
    expect([selfSends(), selfSends(), selfSends()]).toEqual([1, 1, 0]);
  });

  it('a join-ack does not pull the push-pull later than it already was', () => {
    const h = new Harness(createMembershipState({ self: { id: 9, address: 'mem:9' }, seed: 3 }, 0));
    h.state = { ...h.state, nextPushPullAt: 10 };
    h.dispatch({ type: 'join', seeds: ['mem:0'] });
    h.receive(0, { proto: 'swim', type: 'join-ack', members: [rec(0, 0, 'alive')] });
    expect(h.state.nextPushPullAt).toBe(10);
  });

  it('the join-ack’s early push-pull lands at random phases over joinRetryInterval', () => {
    const phases = new Set<number>();
    for (let seed = 0; seed < 32; seed++) {
      const h = new Harness(createMembershipState({ self: { id: 9, address: 'mem:9' }, seed }, 0));
      h.dispatch({ type: 'join', seeds: ['mem:0'] });
      h.receive(0, { proto: 'swim', type: 'join-ack', members: [rec(0, 0, 'alive')] });
      phases.add(h.state.nextPushPullAt);
    }
    expect(phases.size).toBeGreaterThan(8);
  });

  it('leaves once: "left" at its incarnation, gossiped at once, a log line, no more probes', () => {
    const h = new Harness({ ...stateOf({ n: 6, timers: ['probe'] }), incarnation: 0 });
    h.tickAt(h.state.nextProbeAt);
    const effects = h.dispatch({ type: 'leave' });
    expect(changes(effects)).toEqual([{ type: 'member-changed', member: h.member(0), previous: 'alive', up: false, wasUp: true }]);
    expect(h.member(0)).toMatchObject({ status: 'left', incarnation: 0, statusSince: h.now });
    expect(sends(effects, 'gossip').length).toBe(lan.gossipFanout);
    for (const g of sends(effects, 'gossip')) expect(updatesOf(g)).toEqual([rec(0, 0, 'left')]);
    expect(logs(effects)).toEqual([{ type: 'log', level: 'info', msg: 'leaving the cluster', data: { self: 0, incarnation: 0 } }]);
    expect(h.dispatch({ type: 'leave' })).toEqual([]);
    // The probes in flight were dropped: no ping-req, no suspicion, no more pings.
    const later = h.tickTo(3000);
    expect(sends(later, 'ping-req')).toEqual([]);
    expect(sends(later, 'ping')).toEqual([]);
    expect(changes(later)).toEqual([]);
  });

  it('reports "left" once its announcement is out, not before', () => {
    const h = new Harness(stateOf({ n: 4, timers: ['gossip'], config: { gossipFanout: 1 } }));
    const effects = [...h.dispatch({ type: 'leave' })];
    let announced = 0;
    while (!effects.some((e) => e.type === 'left')) {
      const out = h.tickAt(h.state.nextGossipAt);
      announced += carried(out).filter((u) => u.id === 0).length;
      effects.push(...out);
      expect(h.now).toBeLessThan(1000);
    }
    // 1 at once (urgent), then the rest of the 4 sends on gossip rounds.
    expect(announced).toBe(3);
    expect(effects.filter((e) => e.type === 'left')).toHaveLength(1);
    expect(h.tickTo(h.now + 1000).filter((e) => e.type === 'left')).toEqual([]);
  });

  it('with one other member, tells it and waits for the announcement before reporting "left"', () => {
    const h = new Harness(stateOf({ n: 2 }));
    const effects = h.dispatch({ type: 'leave' });
    expect(sends(effects, 'gossip').map((e) => e.address)).toEqual(['mem:1']);
    expect(h.tickAt(20).filter((e) => e.type === 'left')).toEqual([]);
  });

  it('reports "left" when its own announcement is out, whatever other news is still pending', () => {
    const h = new Harness(stateOf({ n: 4, timers: ['gossip'], config: { gossipFanout: 1 } }));
    h.dispatch({ type: 'leave' }); // 1 of 4 sends
    h.gossip(1, rec(7, 0, 'alive')); // news that outlives ours by one round
    const rounds: boolean[] = [];
    for (let i = 0; i < 4; i++) rounds.push(h.tickAt(h.state.nextGossipAt).some((e) => e.type === 'left'));
    expect(rounds).toEqual([false, false, true, false]);
  });

  it('alone, reports "left" at the next tick', () => {
    const h = new Harness(stateOf({ n: 1 }));
    h.dispatch({ type: 'leave' });
    expect(h.tickAt(20).filter((e) => e.type === 'left')).toEqual([{ type: 'left' }]);
  });
});

describe('membership reducer: leaving beside a member that is leaving too', () => {
  // Two nodes stopped at once: each drains, waiting for the other to take its partitions, and
  // gossip goes only to members that are up — so each would never hear that the other left, and
  // would wait out its whole drain timeout (30 s; node-options' two-node test, 1 run in 3 under load).
  it.each([
    ['a member that left 1 s ago hears our leave directly', 1_000, true],
    ['a member that left 70 s ago (long gone) is not sent to', 70_000, false],
  ] as const)('%s', (_, now, told) => {
    const h = new Harness(
      createMembershipState({ self: { id: 0, address: 'mem:0' }, seed: 1, members: [{ id: 2, address: addressOf(2), status: 'left' }, { id: 3, address: addressOf(3) }], config: lan }, 0),
      now,
    );
    const toLeft = sends(h.dispatch({ type: 'leave' })).filter((e) => e.address === addressOf(2));
    expect(toLeft.map((e) => e.payload)).toEqual(
      told ? [{ proto: 'swim', type: 'gossip', updates: [expect.objectContaining({ id: 0, status: 'left' })] }] : [],
    );
  });
});
