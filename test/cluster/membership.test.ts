import { describe, expect, it } from 'vitest';
import { Harness, sends } from './membership-harness.ts';
import {
  applyAwareness,
  createMembershipState,
  failedProbePenalty,
  lateTickPenalty,
  membershipReducer,
  retransmitLimit,
  scaleTimeout,
  supersedes,
  suspicionDeadline,
  suspicionStart,
  upMembers,
  type MemberStatus,
  type MembershipState,
} from '../../src/cluster/membership.ts';
import { downBound, LAN_PROFILE, resolveMembershipConfig, SEED_10S_PROFILE } from '../../src/cluster/membership-profiles.ts';
import { isTroupeError } from '../../src/core/errors.ts';
import { addressOf, SimCluster } from './sim-cluster.ts';

const lan = LAN_PROFILE;

// ---------------------------------------------------------------------------------------------
// Pure time math

describe('membership time math', () => {
  it.each([
    { name: 'healthy', timeout: 100, awareness: 0, want: 100 },
    { name: 'one strike', timeout: 100, awareness: 1, want: 200 },
    { name: 'sickest', timeout: 1000, awareness: 7, want: 8000 },
  ])('scaleTimeout: $name', ({ timeout, awareness, want }) => {
    expect(scaleTimeout(timeout, awareness)).toBe(want);
  });

  it.each([
    { name: 'rises', score: 0, delta: 2, max: 8, want: 2 },
    { name: 'capped at max - 1', score: 6, delta: 5, max: 8, want: 7 },
    { name: 'falls', score: 3, delta: -1, max: 8, want: 2 },
    { name: 'floored at 0', score: 0, delta: -1, max: 8, want: 0 },
  ])('applyAwareness: $name', ({ score, delta, max, want }) => {
    expect(applyAwareness(score, delta, max)).toBe(want);
  });

  it.each([
    { name: 'all nacks came: the target is the problem', expected: 3, nacks: 3, want: 0 },
    { name: 'two nacks missing: we are the problem', expected: 3, nacks: 1, want: 2 },
    { name: 'nobody to ask: no evidence about us', expected: 0, nacks: 0, want: 0 },
  ])('failedProbePenalty: $name', ({ expected, nacks, want }) => {
    expect(failedProbePenalty(expected, nacks)).toBe(want);
  });

  it.each([
    { name: 'on time', lateness: 0, want: 0 },
    { name: 'jitter below the threshold', lateness: 100, want: 0 },
    { name: 'a 1 s stall: one point per probe interval', lateness: 1000, want: 5 },
    { name: 'a 250 ms stall rounds up', lateness: 250, want: 2 },
  ])('lateTickPenalty (lan): $name', ({ lateness, want }) => {
    expect(lateTickPenalty(lateness, lan)).toBe(want);
  });

  it.each([
    { name: 'fresh rumour', now: 5000, age: 0, want: 5000 },
    { name: 'aged rumour starts in the past', now: 5000, age: 300, want: 4700 },
    { name: 'age is clamped to the timeout', now: 5000, age: 99_999, want: 4000 },
    { name: 'negative age is ignored', now: 5000, age: -50, want: 5000 },
  ])('suspicionStart (lan): $name', ({ now, age, want }) => {
    expect(suspicionStart(now, age, lan)).toBe(want);
  });

  it.each([
    { name: 'healthy node', start: 1000, awareness: 0, want: 2000 },
    { name: 'a node that knows it is slow waits longer', start: 1000, awareness: 2, want: 4000 },
  ])('suspicionDeadline (lan): $name', ({ start, awareness, want }) => {
    expect(suspicionDeadline(start, awareness, lan)).toBe(want);
  });

  it.each([
    { n: 1, want: 4 },
    { n: 9, want: 4 },
    { n: 10, want: 8 },
    { n: 999, want: 12 },
    { n: 1000, want: 16 },
  ])('retransmitLimit(4, $n) = $want', ({ n, want }) => {
    expect(retransmitLimit(4, n)).toBe(want);
  });

  const rec = (incarnation: number, status: MemberStatus) => ({ incarnation, status });
  it.each([
    { name: 'higher incarnation wins even as alive', u: rec(2, 'alive'), cur: rec(1, 'down'), want: true },
    { name: 'lower incarnation loses even as down', u: rec(1, 'down'), cur: rec(2, 'alive'), want: false },
    { name: 'equal: suspect beats alive', u: rec(1, 'suspect'), cur: rec(1, 'alive'), want: true },
    { name: 'equal: down beats suspect', u: rec(1, 'down'), cur: rec(1, 'suspect'), want: true },
    { name: 'equal: left beats down', u: rec(1, 'left'), cur: rec(1, 'down'), want: true },
    { name: 'equal: alive does not beat suspect', u: rec(1, 'alive'), cur: rec(1, 'suspect'), want: false },
    { name: 'same record is not news', u: rec(1, 'alive'), cur: rec(1, 'alive'), want: false },
  ])('merge rule: $name', ({ u, cur, want }) => {
    expect(supersedes(u, cur)).toBe(want);
  });

  it.each([
    { name: 'lan', profile: LAN_PROFILE, want: 1460, limit: 1500 },
    { name: 'seed-10s', profile: SEED_10S_PROFILE, want: 43_000, limit: 45_000 },
  ])('downBound: $name', ({ profile, want, limit }) => {
    expect(downBound(profile)).toBe(want);
    expect(downBound(profile)).toBeLessThanOrEqual(limit);
  });
});

describe('membership config', () => {
  it.each([
    {
      name: 'non-positive option',
      args: ['lan', { tickInterval: 0 }],
      message: 'options.membership.tickInterval must be a positive integer (got 0)',
    },
    {
      name: 'fractional option',
      args: ['lan', { gossipFanout: 2.5 }],
      message: 'options.membership.gossipFanout must be a positive integer (got 2.5)',
    },
    { name: 'unknown profile', args: ['wan'], message: 'options.membership.profile must be one of lan, seed-10s (got "wan")' },
    {
      name: 'tick coarser than a timeout',
      args: ['lan', { tickInterval: 150 }],
      message: 'options.membership.tickInterval must not exceed probeTimeout, indirectProbeTimeout and gossipInterval (20) (got 150)',
    },
  ])('validates: $name', ({ args, message }) => {
    let e: unknown;
    try {
      resolveMembershipConfig(...(args as Parameters<typeof resolveMembershipConfig>));
    } catch (err) {
      e = err;
    }
    expect(isTroupeError(e, 'ERR_INVALID_OPTION')).toBe(true);
    expect((e as Error).message).toBe(message);
  });

  it('applies overrides on a profile', () => {
    expect(resolveMembershipConfig('seed-10s', { gossipFanout: 5 })).toMatchObject({ probeInterval: 10_000, gossipFanout: 5 });
  });

  it('validates the reducer state options', () => {
    expect(() => createMembershipState({ self: { id: 2000, address: 'a' } }, 0)).toThrow(
      'options.self.id must be an integer in 0..1023 (got 2000)',
    );
    expect(() => createMembershipState({ self: { id: 1, address: 'a' }, incarnation: -1 }, 0)).toThrow(
      'options.incarnation must be a non-negative integer (got -1)',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The reducer, one event at a time

/** Node 0 at mem:0 with members 1..n-1 alive. */
function stateOf(n: number, overrides: Partial<typeof lan> = {}): MembershipState {
  const members = Array.from({ length: n }, (_, id) => ({ id, address: addressOf(id) }));
  return createMembershipState({ self: { id: 0, address: addressOf(0) }, members, seed: 42, config: { ...lan, ...overrides } }, 0);
}

describe('membership reducer', () => {
  it('answers a ping with an ack, and ignores a ping meant for another node id', () => {
    const h = new Harness(stateOf(3));
    const effects = h.receive(1, { proto: 'swim', type: 'ping', seq: 9, target: 0, updates: [] });
    expect(sends(effects, 'ack')).toEqual([
      { type: 'send', address: 'mem:1', lane: 'system', payload: { proto: 'swim', type: 'ack', seq: 9, updates: [] } },
    ]);
    expect(sends(h.receive(1, { proto: 'swim', type: 'ping', seq: 10, target: 7, updates: [] }))).toEqual([]);
  });

  it('probes directly, then through k peers, then suspects, then declares down', () => {
    const h = new Harness(stateOf(6, { probeInterval: 10_000 }));
    // The first probe round starts at a random phase within the first probe interval.
    h.tickTo(h.state.nextProbeAt);
    const pings = sends(h.effects, 'ping');
    expect(pings.length).toBeGreaterThanOrEqual(1);
    const probe = [...h.state.probes.values()][0]!;
    const start = h.now;
    h.effects = [];

    h.tickTo(start + lan.probeTimeout);
    const reqs = sends(h.effects, 'ping-req').filter((e) => (e.payload as { target: number }).target === probe.target);
    expect(reqs).toHaveLength(lan.indirectChecks);
    expect(new Set(reqs.map((r) => r.address)).size).toBe(lan.indirectChecks);
    expect(reqs.map((r) => r.address)).not.toContain(addressOf(probe.target));

    h.tickTo(start + lan.probeTimeout + lan.indirectProbeTimeout);
    expect(h.state.members.get(probe.target)!.status).toBe('suspect');
    // No nack came back from the 3 peers asked: that blames us (Lifeguard).
    expect(h.state.awareness).toBeGreaterThan(0);
    const suspected = h.effects.find((e) => e.type === 'member-changed' && e.member.id === probe.target);
    expect(suspected).toMatchObject({ previous: 'alive', up: true, wasUp: true });

    h.tickTo(start + 10_000 + scaleTimeout(lan.suspicionTimeout, h.state.awareness));
    expect(h.state.members.get(probe.target)!.status).toBe('down');
    expect(upMembers(h.state).map((m) => m.id)).not.toContain(probe.target);
  });

  it('clears a probe on ack and lowers awareness', () => {
    const h = new Harness({ ...stateOf(4), awareness: 3 });
    h.tickTo(h.state.nextProbeAt);
    for (const p of [...h.state.probes.values()]) h.receive(p.target, { proto: 'swim', type: 'ack', seq: p.seq, updates: [] });
    expect(h.state.probes.size).toBe(0);
    expect(h.state.awareness).toBeLessThan(3);
  });

  it('relays a ping-req: pings the target, forwards its ack, or nacks when it stays silent', () => {
    const h = new Harness(stateOf(4));
    const [ping] = sends(
      h.receive(1, { proto: 'swim', type: 'ping-req', seq: 77, target: 2, targetAddress: 'mem:2', updates: [] }),
      'ping',
    );
    expect(ping!.address).toBe('mem:2');
    const relaySeq = (ping!.payload as { seq: number }).seq;
    const [fwd] = sends(h.receive(2, { proto: 'swim', type: 'ack', seq: relaySeq, updates: [] }), 'ack');
    expect(fwd).toMatchObject({ address: 'mem:1', payload: { seq: 77 } });

    h.receive(1, { proto: 'swim', type: 'ping-req', seq: 78, target: 3, targetAddress: 'mem:3', updates: [] });
    const nacks = sends(h.tickTo(lan.indirectProbeTimeout), 'nack');
    expect(nacks).toEqual([{ type: 'send', address: 'mem:1', lane: 'system', payload: { proto: 'swim', type: 'nack', seq: 78 } }]);
  });

  it('times a suspicion from its first appearance anywhere (the rumour carries its age)', () => {
    const h = new Harness(stateOf(4, { probeInterval: 1_000_000 }), 10_000); // no probes to muddle awareness
    h.receive(1, { proto: 'swim', type: 'gossip', updates: [{ id: 2, address: 'mem:2', incarnation: 0, status: 'suspect', age: 400 }] });
    expect(h.state.suspicions.get(2)).toBe(9600);
    // Heard again, older: the earlier start wins, so every member fires at the same moment.
    h.receive(3, { proto: 'swim', type: 'gossip', updates: [{ id: 2, address: 'mem:2', incarnation: 0, status: 'suspect', age: 700 }] });
    expect(h.state.suspicions.get(2)).toBe(9300);
    h.tickTo(9300 + lan.suspicionTimeout - lan.tickInterval);
    expect(h.state.members.get(2)!.status).toBe('suspect');
    h.tickTo(9300 + lan.suspicionTimeout + lan.tickInterval);
    expect(h.state.members.get(2)!.status).toBe('down');
  });

  it('refutes a suspicion about itself: bumps its incarnation and tells the rumour-monger and the cluster', () => {
    const h = new Harness(stateOf(6));
    const effects = h.receive(3, {
      proto: 'swim',
      type: 'gossip',
      updates: [{ id: 0, address: 'mem:0', incarnation: 0, status: 'suspect', age: 50 }],
    });
    expect(h.state.incarnation).toBe(1);
    expect(h.state.members.get(0)).toMatchObject({ status: 'alive', incarnation: 1 });
    const gossip = sends(effects, 'gossip');
    const carriesRefutation = (e: (typeof gossip)[number]) =>
      (e.payload as { updates: { id: number; incarnation: number; status: string }[] }).updates.some(
        (u) => u.id === 0 && u.incarnation === 1 && u.status === 'alive',
      );
    expect(gossip.filter(carriesRefutation).map((e) => e.address)).toContain('mem:3');
    expect(gossip.filter(carriesRefutation).length).toBeGreaterThan(1); // also pushed to random peers at once
    // An older rumour is not refuted twice.
    h.receive(4, { proto: 'swim', type: 'gossip', updates: [{ id: 0, address: 'mem:0', incarnation: 0, status: 'down' }] });
    expect(h.state.incarnation).toBe(1);
  });

  it('applies the merge rule to gossip and re-gossips only real changes', () => {
    const h = new Harness(stateOf(3));
    const up = (id: number, incarnation: number, status: MemberStatus) => ({ id, address: addressOf(id), incarnation, status });
    h.receive(1, { proto: 'swim', type: 'gossip', updates: [up(2, 3, 'alive')] });
    expect(h.state.members.get(2)).toMatchObject({ incarnation: 3, status: 'alive' });
    h.receive(1, { proto: 'swim', type: 'gossip', updates: [up(2, 2, 'down')] });
    expect(h.state.members.get(2)).toMatchObject({ incarnation: 3, status: 'alive' });
    h.receive(1, { proto: 'swim', type: 'gossip', updates: [up(2, 3, 'down')] });
    expect(h.state.members.get(2)).toMatchObject({ incarnation: 3, status: 'down' });
    h.receive(1, { proto: 'swim', type: 'gossip', updates: [up(2, 3, 'alive')] });
    expect(h.state.members.get(2)!.status).toBe('down');
    h.receive(1, { proto: 'swim', type: 'gossip', updates: [up(7, 0, 'left')] });
    expect(h.state.members.get(7)!.status).toBe('left');
    expect(h.state.broadcasts.map((b) => b.id).sort()).toEqual([2, 7]);
  });

  it('ignores malformed updates and payloads from the network', () => {
    const h = new Harness(stateOf(3));
    const before = h.state.members;
    h.receive(1, { proto: 'swim', type: 'gossip', updates: [{ id: 5000, address: 'x', incarnation: 0, status: 'alive' }, null, 7] });
    h.receive(1, { proto: 'swim', type: 'gossip', updates: [{ id: 5, address: 'mem:5', incarnation: -1, status: 'alive' }] });
    h.receive(1, { proto: 'swim', type: 'gossip', updates: [{ id: 5, address: 'mem:5', incarnation: 0, status: 'zombie' }] });
    h.receive(1, { proto: 'swim', type: 'nonsense' });
    h.receive(1, { hello: 'world' });
    expect(h.state.members).toBe(before);
  });

  it('extends its own deadlines by a stall and raises awareness instead of blaming peers', () => {
    const h = new Harness(stateOf(4));
    h.tickTo(h.state.nextProbeAt);
    const probes = [...h.state.probes.values()];
    expect(probes.length).toBeGreaterThan(0);
    // The loop was blocked for 1 s: the next tick arrives 1000 ms late.
    h.now += 1000 + lan.tickInterval;
    h.dispatch({ type: 'tick', lateness: 1000 });
    for (const p of probes) {
      expect(h.state.probes.get(p.seq)!.directDeadline).toBe(p.directDeadline + 1000);
      // Its acks were waiting behind the stall; they arrive now and count.
      h.receive(p.target, { proto: 'swim', type: 'ack', seq: p.seq, updates: [] });
    }
    for (const p of probes) expect(h.state.probes.has(p.seq)).toBe(false);
    expect([...h.state.members.values()].every((m) => m.status === 'alive')).toBe(true);
    // +5 for a 1 s stall (one per probe interval), −1 per answered probe.
    expect(h.state.awareness).toBe(5 - probes.length);
  });

  it('joins through seeds: sends join, merges the seed table, and becomes known to the seed', () => {
    const seed = new Harness(stateOf(3));
    const joiner = new Harness(createMembershipState({ self: { id: 9, address: 'mem:9' }, seed: 1 }, 0));
    const [join] = sends(joiner.dispatch({ type: 'join', seeds: ['mem:0', 'mem:9'] }), 'join');
    expect(join!.address).toBe('mem:0'); // its own address is skipped
    const [ack] = sends(seed.receive(9, join!.payload), 'join-ack');
    expect(seed.state.members.get(9)).toMatchObject({ status: 'alive' });
    joiner.receive(0, ack!.payload);
    expect(joiner.state.joined).toBe(true);
    expect(upMembers(joiner.state).map((m) => m.id)).toEqual([0, 1, 2, 9]);
  });

  it('announces a leave as "left", stops probing, and reports when the announcement is out', () => {
    const h = new Harness(stateOf(5));
    const effects = h.dispatch({ type: 'leave' });
    expect(h.state.members.get(0)!.status).toBe('left');
    expect(sends(effects, 'gossip').length).toBeGreaterThan(0);
    const out = h.tickTo(2000);
    expect(sends(out, 'ping')).toEqual([]);
    expect(out.some((e) => e.type === 'left')).toBe(true);
    expect(upMembers(h.state).map((m) => m.id)).not.toContain(0);
  });

  it('never mutates the state it is given', () => {
    const h = new Harness(stateOf(8));
    const snapshot = (s: MembershipState) => JSON.stringify(s, (_k, v) => (v instanceof Map ? [...v.entries()] : v));
    for (let i = 0; i < 60; i++) {
      const before = h.state;
      const text = snapshot(before);
      if (i % 3 === 0)
        h.receive(1 + (i % 7), {
          proto: 'swim',
          type: 'gossip',
          updates: [{ id: 1 + (i % 7), address: addressOf(1 + (i % 7)), incarnation: i, status: 'alive' }],
        });
      else h.tickTo(h.now + 50);
      expect(snapshot(before)).toBe(text);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Small clusters over the in-memory network

/** Time until every live node holds `victim` down, after killing it; Infinity if not within `maxMs`. */
function timeToDown(sim: SimCluster, victim: number, maxMs = 5000): number {
  sim.kill(victim);
  const others = sim.others();
  return sim.runUntil(() => sim.count(others, victim, 'down') === others.length, maxMs);
}

describe('membership: two members with stale rumours of each other (5-node simulator seed 3609)', () => {
  // Each holds the other suspect at incarnation 1 while both refuted long ago (incarnation 2): the
  // partition that carried the refutations is over. Any message between them must lead to quiet
  // — before the fix each answered the other's message with its rumour, one message per message, forever.
  const member = (self: number, other: number) =>
    createMembershipState(
      { self: { id: self, address: addressOf(self) }, incarnation: 2, members: [{ id: other, address: addressOf(other), incarnation: 1, status: 'suspect' }], seed: self, config: lan },
      0,
    );
  it.each([
    ['an empty gossip', { proto: 'swim', type: 'gossip', updates: [] }],
    ['a ping', { proto: 'swim', type: 'ping', seq: 1, target: 3, updates: [] }],
  ] as const)('%s from 1 to 3: both see each other alive at 2 within a few messages, then silence', (_, first) => {
    const states = new Map([
      [1, member(1, 3)],
      [3, member(3, 1)],
    ]);
    const queue: Array<{ from: number; to: number; payload: unknown }> = [{ from: 1, to: 3, payload: first }];
    let delivered = 0;
    while (queue.length > 0 && delivered < 50) {
      const m = queue.shift()!;
      delivered++;
      const step = membershipReducer(states.get(m.to)!, { type: 'message-received', from: { id: m.from, address: addressOf(m.from) }, payload: m.payload }, 10);
      states.set(m.to, step.state);
      for (const e of sends(step.effects)) queue.push({ from: m.to, to: Number(e.address.slice(e.address.indexOf(':') + 1)), payload: e.payload });
    }
    expect(delivered).toBeLessThan(10);
    expect(queue).toEqual([]);
    expect(states.get(1)!.members.get(3)).toMatchObject({ status: 'alive', incarnation: 2 });
    expect(states.get(3)!.members.get(1)).toMatchObject({ status: 'alive', incarnation: 2 });
  });
});

describe('membership over the in-memory network', () => {
  it.each([
    { name: '2 nodes', size: 2, victims: [0, 1] },
    { name: '3 nodes', size: 3, victims: [0, 1, 2] },
    { name: '5 nodes', size: 5, victims: [0, 2, 4] },
    { name: '20 nodes', size: 20, victims: [3, 11, 19] },
  ])('marks a dead node down everywhere within the lan bound (1.5 s): $name', ({ size, victims }) => {
    const bound = downBound(lan);
    expect(bound).toBeLessThanOrEqual(1500);
    for (const [i, victim] of victims.entries()) {
      const sim = new SimCluster({ size, seed: 11 + i });
      sim.run(700 + 37 * i); // vary the phase of the death against the probe schedule
      const elapsed = timeToDown(sim, victim);
      expect(elapsed).toBeLessThanOrEqual(bound);
      // ...and not absurdly early either: the suspicion timeout is respected.
      expect(elapsed).toBeGreaterThanOrEqual(lan.suspicionTimeout);
    }
  });

  it('seed-10s profile: down after three missed heartbeats, within its bound', () => {
    const sim = new SimCluster({ size: 5, seed: 3, config: SEED_10S_PROFILE });
    sim.run(15_000);
    const elapsed = timeToDown(sim, 2, 60_000);
    const c = SEED_10S_PROFILE;
    expect(elapsed).toBeGreaterThanOrEqual(c.probeTimeout + c.indirectProbeTimeout + c.suspicionTimeout);
    expect(elapsed).toBeLessThanOrEqual(downBound(c));
  });

  it('refutes a suspicion by an incarnation bump: a node cut off for 300 ms is suspected, never down', () => {
    const sim = new SimCluster({ size: 12, seed: 5 });
    sim.run(500);
    sim.recordChanges = true;
    const cut = sim.network.intercept((m) => (m.from.address === 'mem:4' || m.to === 'mem:4' ? 'drop' : undefined));
    const others = sim.others([4]);
    const suspectedAfter = sim.runUntil(() => sim.count(others, 4, 'suspect') > 0, 1000);
    expect(suspectedAfter).toBeLessThan(1000);
    cut();
    sim.run(2000);
    const node4 = sim.drivers.get(4)!;
    expect(node4.state.incarnation).toBeGreaterThanOrEqual(1);
    for (const d of sim.others()) expect(d.member(4)).toMatchObject({ status: 'alive', incarnation: node4.state.incarnation });
    expect(sim.changes.filter((c) => c.change.member.status === 'down')).toEqual([]);
  });

  it('handles a graceful leave: everyone sees "left" (never down), and leave() resolves', async () => {
    const sim = new SimCluster({ size: 10, seed: 8 });
    sim.run(500);
    sim.recordChanges = true;
    let resolved = false;
    const leaving = sim.drivers
      .get(6)!
      .leave()
      .then(() => (resolved = true));
    const others = sim.others([6]);
    const elapsed = sim.runUntil(() => sim.count(others, 6, 'left') === others.length, 1000);
    expect(elapsed / lan.gossipInterval).toBeLessThanOrEqual(12);
    sim.run(500);
    await leaving;
    expect(resolved).toBe(true);
    const about6 = sim.changes.filter((c) => c.change.member.id === 6 && c.observer !== 6);
    expect(about6.map((c) => c.change.member.status)).toEqual(others.map(() => 'left'));
    for (const d of others) expect(d.upMembers().map((m) => m.id)).not.toContain(6);
  });

  it('rejoins after a leave with a higher incarnation, overriding its own tombstone', () => {
    const sim = new SimCluster({ size: 6, seed: 9 });
    sim.run(300);
    void sim.drivers.get(2)!.leave();
    sim.run(1000);
    sim.kill(2);
    // Restarted with the same id, address and (wrongly) the same incarnation 0.
    const back = sim.add(2, {});
    back.start([addressOf(0)]);
    const others = sim.others([2]);
    const elapsed = sim.runUntil(() => sim.count(others, 2, 'alive') === others.length, 2000);
    expect(elapsed).toBeLessThan(2000);
    expect(back.state.incarnation).toBe(1);
    expect(back.upMembers()).toHaveLength(6);
  });

  it('forms a cluster from scratch through a seed', () => {
    const sim = new SimCluster({ size: 0, seed: 4 });
    const seedNode = sim.add(0, {});
    seedNode.start();
    for (let id = 1; id < 8; id++) sim.add(id, {}).start([addressOf(0)]);
    const all = sim.others();
    const elapsed = sim.runUntil(() => all.every((d) => d.upMembers().length === 8), 5000);
    expect(elapsed).toBeLessThanOrEqual(lan.joinRetryInterval + 100);
  });

  it('converges after a partition heals', () => {
    const sim = new SimCluster({ size: 20, seed: 6 });
    sim.run(500);
    const left = Array.from({ length: 10 }, (_, i) => i);
    const right = Array.from({ length: 10 }, (_, i) => i + 10);
    sim.network.partition(left.map(addressOf), right.map(addressOf));
    const all = sim.others();
    const sideOf = (id: number) => (id < 10 ? right : left);
    const split = sim.runUntil(() => all.every((d) => sideOf(d.state.self.id).every((id) => d.member(id)?.status === 'down')), 10_000);
    expect(split).toBeLessThan(10_000);
    sim.network.heal();
    const healed = sim.runUntil(() => all.every((d) => [...d.state.members.values()].every((m) => m.status === 'alive')), 15_000);
    expect(healed).toBeLessThan(lan.pushPullInterval * 2);
    const tables = new Set(all.map((d) => JSON.stringify([...d.state.members.values()].map((m) => [m.id, m.incarnation]).sort())));
    expect(tables.size).toBe(1);
  });

  it('tolerates 5% message loss and duplicates without a false down', () => {
    const sim = new SimCluster({ size: 30, seed: 12, network: { dropRate: 0.05, duplicateRate: 0.05, jitter: 2 } });
    sim.recordChanges = true;
    sim.run(10_000);
    expect(sim.changes.filter((c) => c.change.member.status === 'down')).toEqual([]);
    expect(sim.network.stats.dropped).toBeGreaterThan(0);
    expect(sim.network.stats.duplicated).toBeGreaterThan(0);
  });

  it.each([0, 40, 80, 120, 160])('a 1 s event-loop stall of one node makes nobody down (100 nodes, stall at +%i ms)', (phase) => {
    const sim = new SimCluster({ size: 100, seed: 21 + phase });
    sim.run(1000 + phase);
    sim.recordChanges = true;
    const stalled = sim.drivers.get(37)!;
    stalled.pause();
    sim.run(1000);
    stalled.resume();
    sim.run(3000);
    expect(sim.changes.filter((c) => c.change.member.status === 'down')).toEqual([]);
    // The stalled node itself marked nobody down, and others' suspicion of it was refuted.
    expect([...stalled.state.members.values()].every((m) => m.status === 'alive')).toBe(true);
    for (const d of sim.others([37])) expect(d.member(37)!.status).toBe('alive');
  });
});

// ---------------------------------------------------------------------------------------------
// 1,000 nodes: rounds are counted in gossip intervals (lan: 20 ms)

describe(`membership at ${Number(process.env.TROUPE_SIM_NODES ?? 1000).toLocaleString('en')} nodes`, () => {
  // The mutation run (vitest.mutation.config.ts) sets 100: every mutant these cover reruns them,
  // and 1,000 nodes take ~9 s per pass. The round bounds hold at both sizes (they grow with log N).
  const N = Number(process.env.TROUPE_SIM_NODES ?? 1000);
  const rounds = (ms: number) => ms / lan.gossipInterval;
  const stalledId = Math.floor(N * 0.777);

  it('converges on a graceful leave within 12 gossip rounds', () => {
    const sim = new SimCluster({ size: N, seed: 101 });
    sim.run(300);
    void sim.drivers.get(N / 2)!.leave();
    const others = sim.others([N / 2]);
    const elapsed = sim.runUntil(() => sim.count(others, N / 2, 'left') === others.length, 12 * lan.gossipInterval);
    expect(rounds(elapsed)).toBeLessThanOrEqual(12);
  });

  it('converges on a join within 12 gossip rounds', () => {
    const sim = new SimCluster({ size: N, seed: 102 });
    sim.run(300);
    const joiner = sim.add(N, {});
    joiner.start([addressOf(0), addressOf(1)]);
    const others = sim.others([N]);
    const elapsed = sim.runUntil(
      () => joiner.upMembers().length === N + 1 && sim.count(others, N, 'alive') === others.length,
      12 * lan.gossipInterval,
    );
    expect(rounds(elapsed)).toBeLessThanOrEqual(12);
  });

  it('spreads a death within 12 gossip rounds of the first suspicion, and all mark it down within the lan bound', () => {
    const sim = new SimCluster({ size: N, seed: 103 });
    sim.run(300);
    const victim = Math.floor(N / 3);
    sim.kill(victim);
    const others = sim.others();
    const killedAt = sim.clock.now();
    sim.runUntil(() => sim.count(others, victim, 'suspect') > 0, 1000);
    const suspectedAt = sim.clock.now();
    const spread = sim.runUntil(
      () => sim.count(others, victim, 'suspect') + sim.count(others, victim, 'down') === others.length,
      12 * lan.gossipInterval,
    );
    expect(rounds(spread)).toBeLessThanOrEqual(12);
    sim.runUntil(() => sim.count(others, victim, 'down') === others.length, 2000);
    expect(sim.clock.now() - killedAt).toBeLessThanOrEqual(downBound(lan));
    expect(suspectedAt - killedAt).toBeLessThanOrEqual(
      lan.probeInterval + lan.probeTimeout + lan.indirectProbeTimeout + 2 * lan.tickInterval,
    );
  });

  it('marks nobody down when one node stalls for 1 s, and the stalled node marks nobody down', () => {
    const sim = new SimCluster({ size: N, seed: 104 });
    sim.run(500);
    sim.recordChanges = true;
    const stalled = sim.drivers.get(stalledId)!;
    stalled.pause();
    sim.run(1000);
    // While it was stalled, the cluster suspected it (as it must: it was silent for 1 s).
    expect(sim.count(sim.others([stalledId]), stalledId, 'suspect')).toBeGreaterThan(N / 2);
    stalled.resume();
    sim.run(2000);
    expect(sim.changes.filter((c) => c.change.member.status === 'down')).toEqual([]);
    expect(stalled.state.incarnation).toBe(1); // it refuted once
    expect(sim.count(sim.others([stalledId]), stalledId, 'alive')).toBe(N - 1);
    expect([...stalled.state.members.values()].every((m) => m.status === 'alive')).toBe(true);
  });
});
