/**
 * Driving the membership reducer (src/cluster/membership.ts) one event at a time, for the
 * reducer's table tests (membership.test.ts, membership-mutants.test.ts, membership-join-ack.test.ts).
 */
import {
  membershipReducer,
  type MemberUpdate,
  type MembershipEffect,
  type MembershipEvent,
  type MembershipMessage,
  type MembershipState,
} from '../../src/cluster/membership.ts';
import { addressOf } from './sim-cluster.ts';

export type Send = Extract<MembershipEffect, { type: 'send' }>;

/** The messages among `effects`, of one type if given. */
export function sends(effects: MembershipEffect[], type?: MembershipMessage['type']): Send[] {
  return effects.flatMap((e) => (e.type === 'send' && (type === undefined || e.payload.type === type) ? [e] : []));
}

export function updatesOf(e: Send | undefined): MemberUpdate[] {
  return (e?.payload as { updates: MemberUpdate[] }).updates;
}

/** One node's state, with the effects of every event it was given. */
export class Harness {
  effects: MembershipEffect[] = [];
  constructor(
    public state: MembershipState,
    public now = 0,
  ) {}
  dispatch(event: MembershipEvent): MembershipEffect[] {
    const step = membershipReducer(this.state, event, this.now);
    this.state = step.state;
    this.effects.push(...step.effects);
    return step.effects;
  }
  /** One tick at `at` (on time: lateness 0 unless given). */
  tickAt(at: number, lateness = 0): MembershipEffect[] {
    this.now = at;
    return this.dispatch({ type: 'tick', lateness });
  }
  /** Ticks every tickInterval until the first tick at or after `until`. */
  tickTo(until: number): MembershipEffect[] {
    const out: MembershipEffect[] = [];
    while (this.now < until) out.push(...this.tickAt(this.now + this.state.config.tickInterval));
    return out;
  }
  receive(fromId: number, payload: unknown, address = addressOf(fromId)): MembershipEffect[] {
    return this.dispatch({ type: 'message-received', from: { id: fromId, address }, payload });
  }
  gossip(fromId: number, ...updates: MemberUpdate[]): MembershipEffect[] {
    return this.receive(fromId, { proto: 'swim', type: 'gossip', updates });
  }
  member(id: number) {
    return this.state.members.get(id);
  }
  /** What a ping from `fromId` gets piggybacked on its ack: the pending updates, least-sent first. */
  pingedBy(fromId: number, seq = 1): MemberUpdate[] {
    return updatesOf(sends(this.receive(fromId, { proto: 'swim', type: 'ping', seq, target: this.state.self.id, updates: [] }), 'ack')[0]);
  }
}
