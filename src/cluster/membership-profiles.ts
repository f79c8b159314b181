import { invalidOption } from '../core/errors.ts';

/**
 * Timing and sizing of the SWIM membership protocol (see `membership.ts`). All durations in ms.
 *
 * Failure-detection bound — a node that dies at t is marked down by every live member by
 *
 *   downBound = probeInterval + probeTimeout + indirectProbeTimeout + suspicionTimeout + 3 · tickInterval
 *
 * because: its ring predecessor probes it at least once per probeInterval (+1 tick to start);
 * the probe fails after probeTimeout + indirectProbeTimeout (+1 tick to notice); the suspicion
 * carries its age, so every member that heard it fires at the same moment, suspicionTimeout
 * after the first suspicion (+1 tick to notice). Gossip must carry the suspicion everywhere
 * before then: needs gossipInterval · rounds(N) < suspicionTimeout, true by far for N ≤ 1000.
 * The bound ignores network latency (a few hops of it) and assumes healthy members (Lifeguard
 * awareness 0; a member that knows itself slow waits up to awarenessMaxMultiplier times longer).
 *
 * Stall tolerance — a member whose event loop stops for `s` ms is not marked down if
 *
 *   s + refutationSpread < probeTimeout + indirectProbeTimeout + suspicionTimeout
 *
 * (the earliest a probe sent just before the stall can start a suspicion, plus the suspicion
 * timeout), where refutationSpread ≈ rounds(N) · gossipInterval for its incarnation bump to reach
 * everyone. For `lan`: 1000 + ~150 < 1200.
 */
export interface MembershipConfig {
  /** The driver's tick period: the resolution of every timer below. */
  readonly tickInterval: number;
  /** Each member probes its ring successor plus one round-robin member this often. */
  readonly probeInterval: number;
  /** Direct ack deadline before asking `indirectChecks` peers to probe (ping-req). */
  readonly probeTimeout: number;
  /** After the ping-req, how much longer any ack may take before the target is suspected. */
  readonly indirectProbeTimeout: number;
  /** Peers asked to probe on our behalf when a direct probe times out. */
  readonly indirectChecks: number;
  /** Suspect → down, measured from the first suspicion anywhere (the suspicion carries its age). */
  readonly suspicionTimeout: number;
  /** Pending updates are pushed to `gossipFanout` random members this often. */
  readonly gossipInterval: number;
  readonly gossipFanout: number;
  /** Each member sends each update retransmitMult · ceil(log10(N + 1)) times (memberlist's rule). */
  readonly retransmitMult: number;
  /** Updates per gossip, ping or ack message; bounds message size whatever the churn. */
  readonly maxUpdatesPerMessage: number;
  /** Full-table push-pull with one random member this often (anti-entropy for lost rumours). */
  readonly pushPullInterval: number;
  /** Down members are re-contacted with a full-table sync this often, to heal partitions. */
  readonly reconnectInterval: number;
  /** Cluster-wide reconnect attempts per interval: each member tries with probability k / N. */
  readonly reconnectPerInterval: number;
  /** A member that is not joined (or sees nobody up) re-sends `join` to its seeds this often. */
  readonly joinRetryInterval: number;
  /** Lifeguard: timeouts scale by (awareness + 1), awareness in 0..awarenessMaxMultiplier - 1. */
  readonly awarenessMaxMultiplier: number;
  /** A tick later than this means our own event loop stalled: don't count that time against peers. */
  readonly lateTickThreshold: number;
  /** Down and left members are forgotten after this long (kept so stale gossip cannot revive them). */
  readonly tombstoneTimeout: number;
  /** How long a graceful leave waits for its announcement to be gossiped before giving up. */
  readonly leaveTimeout: number;
}

/**
 * `lan` (default): a dead node is down everywhere within 1.44 s (bound above:
 * 200 + 100 + 100 + 1000 + 3·20), and a 1 s event-loop stall does not make anyone down.
 */
export const LAN_PROFILE: MembershipConfig = Object.freeze({
  tickInterval: 20, // ms; the timer resolution, adds up to 3 ticks to the down bound
  probeInterval: 200, // ms; 2 pings/member each → ~20 small messages/s per node
  probeTimeout: 100, // ms; LAN RTT is < 1 ms, this leaves room for a GC pause of the target
  indirectProbeTimeout: 100, // ms; a probe is decided 200 ms after it starts
  indirectChecks: 3, // peers; memberlist's default, tolerates one slow link per probe
  suspicionTimeout: 1000, // ms; > 1 s stall + refutation spread − 200 ms of probing (stall tolerance)
  gossipInterval: 20, // ms; only sent when updates are pending, so idle clusters pay nothing
  gossipFanout: 4, // peers per round; reaches 1000 nodes in ~7 rounds
  retransmitMult: 4, // memberlist's LAN value: 16 sends per update per member at N = 1000
  maxUpdatesPerMessage: 32, // updates; ~2 KB per message at worst
  pushPullInterval: 5000, // ms; repairs missed rumours; at 1000 nodes (~60 KB tables) ~25 KB/s each way per node
  reconnectInterval: 1000, // ms; a healed partition is noticed within ~1 s
  reconnectPerInterval: 4, // attempts/interval cluster-wide, so a dead node is not hammered by all
  joinRetryInterval: 1000, // ms
  awarenessMaxMultiplier: 8, // memberlist's value: a sick node waits up to 8× longer
  lateTickThreshold: 100, // ms; 5 ticks late is a stall, not jitter
  tombstoneTimeout: 3_600_000, // ms; 1 h, far beyond any rumour's lifetime
  leaveTimeout: 2000, // ms; 12 gossip rounds are 240 ms, this is slack
});

/**
 * `seed-10s`: the seed design's "heartbeat every 10 s, unreachable after 3 misses". The first
 * missed probe suspects, two more probe intervals of silence make it down; down bound =
 * 10 + 3 + 7 + 20 + 3·1 = 43 s.
 */
export const SEED_10S_PROFILE: MembershipConfig = Object.freeze({
  tickInterval: 1000, // ms
  probeInterval: 10_000, // ms; the seed design's heartbeat period
  probeTimeout: 3000, // ms; miss #1 is decided within its own period...
  indirectProbeTimeout: 7000, // ms; ...probeTimeout + this = one period
  indirectChecks: 3, // peers
  suspicionTimeout: 20_000, // ms; misses #2 and #3: two more heartbeat periods
  gossipInterval: 1000, // ms
  gossipFanout: 3, // peers
  retransmitMult: 4, // sends per update = 4 · ceil(log10(N + 1))
  maxUpdatesPerMessage: 32, // updates
  pushPullInterval: 60_000, // ms
  reconnectInterval: 10_000, // ms; one heartbeat period
  reconnectPerInterval: 4, // attempts/interval cluster-wide
  joinRetryInterval: 10_000, // ms
  awarenessMaxMultiplier: 8, // ×
  lateTickThreshold: 5000, // ms
  tombstoneTimeout: 3_600_000, // ms; 1 h
  leaveTimeout: 30_000, // ms
});

export const MEMBERSHIP_PROFILES = Object.freeze({ lan: LAN_PROFILE, 'seed-10s': SEED_10S_PROFILE });
export type MembershipProfileName = keyof typeof MEMBERSHIP_PROFILES;

/** Worst-case time from a node's death to every live member marking it down (see above). */
export function downBound(c: MembershipConfig): number {
  return c.probeInterval + c.probeTimeout + c.indirectProbeTimeout + c.suspicionTimeout + 3 * c.tickInterval;
}

/**
 * A profile, optionally with overrides, validated. `name` prefixes option names in errors.
 *
 * @example
 *   resolveMembershipConfig('lan', { suspicionTimeout: 1500 });
 */
export function resolveMembershipConfig(
  profile: MembershipProfileName | MembershipConfig = 'lan',
  overrides: Partial<MembershipConfig> = {},
  name = 'options.membership',
): MembershipConfig {
  let base: MembershipConfig;
  if (typeof profile === 'string') {
    if (!Object.hasOwn(MEMBERSHIP_PROFILES, profile)) {
      throw invalidOption(`${name}.profile`, `must be one of ${Object.keys(MEMBERSHIP_PROFILES).join(', ')}`, profile);
    }
    base = MEMBERSHIP_PROFILES[profile];
  } else if (profile !== null && typeof profile === 'object') {
    base = profile;
  } else {
    throw invalidOption(`${name}.profile`, 'must be a profile name or a config object', profile);
  }
  const c: MembershipConfig = { ...LAN_PROFILE, ...base, ...overrides };
  for (const key of Object.keys(LAN_PROFILE) as (keyof MembershipConfig)[]) {
    const v = c[key];
    if (!Number.isInteger(v) || v < 1) throw invalidOption(`${name}.${key}`, 'must be a positive integer', v);
  }
  if (c.awarenessMaxMultiplier > 64) {
    throw invalidOption(`${name}.awarenessMaxMultiplier`, 'must be at most 64', c.awarenessMaxMultiplier);
  }
  const finest = Math.min(c.probeTimeout, c.indirectProbeTimeout, c.gossipInterval);
  if (c.tickInterval > finest) {
    throw invalidOption(
      `${name}.tickInterval`,
      `must not exceed probeTimeout, indirectProbeTimeout and gossipInterval (${finest})`,
      c.tickInterval,
    );
  }
  return Object.freeze(c);
}
