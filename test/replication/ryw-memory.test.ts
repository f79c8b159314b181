/**
 * Read-your-writes tokens through whole nodes, in-process (three replicated `TroupeNode`s over
 * one `MemoryNetwork` on one `SimulatedClock`, see sim-cluster.ts): a token comes back through
 * one-hop forwarding, survives the death of the primary that issued it, and is never answered
 * from state that does not cover it. Every figure is simulated time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { compareEpoch } from '../../src/replication/epoch.ts';
import { partitionOf } from '../../src/replication/partition-table.ts';
import { formatToken, parseTokens, type Token } from '../../src/replication/token.ts';
import { SimNodeCluster } from './sim-cluster.ts';

const KEYS = Array.from({ length: 60 }, (_, i) => `k-${i}`);

let cluster: SimNodeCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

/** A client session: every ask brings the last token set and keeps the one its reply carries. */
class Session {
  token: string | undefined;
  constructor(private readonly c: SimNodeCluster) {}
  ask(via: number, key: string, command: string, timeoutMs = 2_000): Promise<unknown> {
    const token = this.token;
    return this.c.settle(
      this.c
        .node(via)
        .ask('counter', key, { command }, { timeoutMs, ...(token !== undefined && { token }), onToken: (t) => (this.token = t) }),
      timeoutMs + 1_000,
    );
  }
  /** The session's token for the key's partition. */
  of(key: string): Token | undefined {
    return this.token === undefined ? undefined : parseTokens(this.token, 1024).get(partitionOf(key));
  }
}

describe('read-your-writes tokens on three in-process nodes (simulated clock, memory network)', () => {
  it('a client writes through A to primary B; B dies; reading through C with the token returns the write', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 21 }));
    const key = KEYS.find((k) => c.ownerOf(k, 1) === 2)!;
    const s = new Session(c);
    for (let i = 1; i <= 3; i++) expect(await s.ask(1, key, 'incr')).toEqual({ n: i });
    // The token came back through node 1's forwarding, from B's epoch, covering the writes.
    const written = s.of(key)!;
    expect(written).toBeDefined();
    expect(written.epoch.node).toBe(2);
    expect(written.seq).toBeGreaterThanOrEqual(3);

    c.kill(2);
    await c.untilDown(2, [1, 3]);
    expect(await s.ask(3, key, 'get', 5_000)).toEqual({ n: 3 });
    // Served by the new primary, whose token names its own later epoch past the write.
    const read = s.of(key)!;
    expect(compareEpoch(read.epoch, written.epoch)).toBeGreaterThan(0);
    expect(read.epoch.node).not.toBe(2);
    expect(read.seq).toBeGreaterThan(written.seq);
  });

  it("a token from an epoch later than the serving primary's is refused and resent until the deadline, never answered", async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 22 }));
    const key = KEYS.find((k) => c.ownerOf(k, 1) === 2)!;
    const s = new Session(c);
    expect(await s.ask(1, key, 'incr')).toEqual({ n: 1 });
    const real = s.of(key)!;
    // What a deposed or not-yet-informed primary sees: a token of an epoch after its own.
    const later = formatToken({ p: real.p, epoch: { term: real.epoch.term + 1, node: 3 }, seq: 1 });
    const rerouted = c.node(3).clusterRouter!.stats().rerouted;
    const got = c.node(3).ask('counter', key, { command: 'get' }, { timeoutMs: 300, token: later });
    await expect(c.settle(got)).rejects.toMatchObject({ code: 'ERR_NOT_PRIMARY', message: expect.stringMatching(/is from a later epoch/) });
    // Resent (every 25 ms) rather than given up at once: the client's router looks for a primary that covers it.
    expect(c.node(3).clusterRouter!.stats().rerouted - rerouted).toBeGreaterThan(5);
    // The same ask with the real token is served.
    expect(await s.ask(3, key, 'get')).toEqual({ n: 1 });
  });

  it('a malformed token is refused with ERR_INVALID_OPTION naming options.token, before anything is sent', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 23 }));
    const sent = c.node(1).clusterRouter!.stats().sentRemote;
    for (const token of ['nope', '__proto__:1.1:1', '5000:1.1:1'])
      await expect(c.node(1).ask('counter', 'k-1', { command: 'get' }, { token })).rejects.toMatchObject({
        code: 'ERR_INVALID_OPTION',
        message: expect.stringMatching(/^options\.token /),
      });
    expect(c.node(1).clusterRouter!.stats().sentRemote).toBe(sent);
  });
});
