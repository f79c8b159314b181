import { describe, expect, it } from 'vitest';
import { SimulatedClock } from '../../src/core/clock.ts';
import { MemoryNetwork } from '../../src/cluster/memory-network.ts';
import { MembershipDriver, type MemberChange } from '../../src/cluster/membership-driver.ts';
import { HashRing } from '../../src/cluster/ring.ts';
import { LAN_PROFILE } from '../../src/cluster/membership-profiles.ts';

function cluster(size: number) {
  const clock = new SimulatedClock(0);
  const net = new MemoryNetwork({ clock, seed: 2 });
  const drivers = Array.from({ length: size }, (_, id) => {
    const transport = net.transport({ id, incarnation: 3, address: `mem:${id}` });
    return new MembershipDriver({ transport, clock, seed: id });
  });
  return { clock, net, drivers };
}

describe('MembershipDriver', () => {
  it('wires the reducer to a transport: joins, ticks, reports changes, and feeds a ring', () => {
    const { clock, drivers } = cluster(4);
    const rings: HashRing[] = [];
    let epoch = 0;
    drivers[0]!.onMemberChanged((c) => {
      if (c.up !== c.wasUp) rings.push(new HashRing(drivers[0]!.upMembers(), { epoch: ++epoch }));
    });
    drivers[0]!.start();
    for (const d of drivers.slice(1)) d.start(['mem:0']);
    clock.advance(500);
    for (const d of drivers) expect(d.upMembers().map((m) => m.id)).toEqual([0, 1, 2, 3]);
    expect(rings.at(-1)!.size).toBe(4);
    expect(rings.at(-1)!.epoch).toBe(3);
    // The transport's incarnation is the starting incarnation.
    expect(drivers[2]!.state.incarnation).toBe(3);
    expect(drivers[0]!.member(2)).toMatchObject({ status: 'alive', incarnation: 3 });
  });

  it('can be fed by the node instead of subscribing, and ignores foreign payloads', () => {
    const clock = new SimulatedClock(0);
    const net = new MemoryNetwork({ clock });
    const ta = net.transport({ id: 1, incarnation: 0, address: 'mem:1' });
    const tb = net.transport({ id: 2, incarnation: 0, address: 'mem:2' });
    const a = new MembershipDriver({ transport: ta, clock, subscribe: false });
    const b = new MembershipDriver({ transport: tb, clock });
    const actorTraffic: unknown[] = [];
    ta.onMessage((from, payload) => {
      if ((payload as { proto?: string }).proto === 'swim') a.receive(from, payload);
      else actorTraffic.push(payload);
    });
    a.start();
    b.start(['mem:1']);
    tb.send('mem:1', { actor: 'cart:1', msg: 'add' }, 'actor');
    clock.advance(300);
    expect(a.upMembers().map((m) => m.id)).toEqual([1, 2]);
    expect(actorTraffic).toEqual([{ actor: 'cart:1', msg: 'add' }]);
  });

  it('leave() resolves once the announcement is out; stop() silences the driver', async () => {
    const { clock, drivers } = cluster(5);
    drivers[0]!.start();
    for (const d of drivers.slice(1)) d.start(['mem:0']);
    clock.advance(1500);
    const leaving = drivers[3]!.leave();
    clock.advance(500);
    await leaving;
    for (const d of [0, 1, 2, 4].map((i) => drivers[i]!)) expect(d.member(3)!.status).toBe('left');
    drivers[3]!.stop();
    await expect(drivers[3]!.leave()).rejects.toMatchObject({ code: 'ERR_STOPPED' });
  });

  it('leave() of a lone node resolves at the next tick', async () => {
    const { clock, drivers } = cluster(1);
    drivers[0]!.start();
    let resolved = false;
    const leaving = drivers[0]!.leave().then(() => (resolved = true));
    await Promise.resolve();
    expect(resolved).toBe(false); // not before the tick...
    expect(drivers[0]!.state.leaving).toBe(true);
    clock.advance(LAN_PROFILE.tickInterval);
    await leaving;
    expect(resolved).toBe(true); // ...but at it, long before leaveTimeout
    expect(clock.now()).toBeLessThan(LAN_PROFILE.leaveTimeout);
  });

  it('leave() gives up after leaveTimeout when the announcement cannot go out', async () => {
    const { clock, drivers } = cluster(3);
    for (const d of drivers) d.start(['mem:0']);
    clock.advance(500);
    drivers[1]!.pause(); // no ticks, so no gossip rounds
    let resolved = false;
    const leaving = drivers[1]!.leave().then(() => (resolved = true));
    clock.advance(LAN_PROFILE.leaveTimeout - 1);
    await Promise.resolve();
    expect(resolved).toBe(false);
    clock.advance(1);
    await leaving;
  });

  it('lets a listener call back into the driver without re-entering the reducer', () => {
    const { clock, drivers } = cluster(3);
    const seen: MemberChange[] = [];
    drivers[0]!.onMemberChanged((c) => {
      seen.push(c);
      if (c.member.id === 2 && c.up) void drivers[0]!.leave(); // re-entrant dispatch
    });
    drivers[0]!.start();
    drivers[1]!.start(['mem:0']);
    drivers[2]!.start(['mem:0']);
    clock.advance(300);
    expect(drivers[0]!.state.leaving).toBe(true);
    expect(seen.some((c) => c.member.id === 0 && c.member.status === 'left')).toBe(true);
  });

  it('pause()/resume() simulate a stalled loop: the late tick runs before the held messages', () => {
    const { clock, drivers } = cluster(3);
    drivers[0]!.start();
    drivers[1]!.start(['mem:0']);
    drivers[2]!.start(['mem:0']);
    clock.advance(1000);
    drivers[1]!.pause();
    clock.advance(1000);
    drivers[1]!.resume();
    expect(drivers[1]!.state.awareness).toBeGreaterThan(0); // the stall was noticed
    clock.advance(3000);
    for (const d of drivers) expect(d.upMembers()).toHaveLength(3);
  });

  it('validates its options, naming them', () => {
    const clock = new SimulatedClock(0);
    const transport = new MemoryNetwork({ clock }).transport({ id: 1, incarnation: 0, address: 'mem:1' });
    expect(() => new MembershipDriver({ transport, clock, config: { gossipFanout: 0 } })).toThrow(
      'options.membership.gossipFanout must be a positive integer (got 0)',
    );
    expect(() => new MembershipDriver({ transport: {} as never, clock })).toThrow('options.transport must be a Transport');
  });
});
