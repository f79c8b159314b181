/**
 * Session lifecycle on a replicated cluster in one process (test/replication/sim-cluster.ts:
 * three whole nodes, R=3, W=2, in-process actors, one simulated clock, the memory network):
 * a tombstone replicates and stays through a failover and through a replica that missed it and
 * came back; a reminder set before its primary dies fires on the new primary, once, with no
 * message sent; a `ttlMs` session expires after its primary died.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { reminderDefaults, ttlSlackMs } from '../../src/actors/system-records.ts';
import type { ActorWrite, EventRecord } from '../../src/persistence/journal.ts';
import { partitionOf } from '../../src/replication/partition-table.ts';
import { R_REPL } from '../../src/replication/wire.ts';
import type { TroupeNode } from '../../src/node/troupe-node.ts';
import type { PartitionStore } from '../../src/replication/partition-store.ts';
import { addressOf, SimNodeCluster } from '../replication/sim-cluster.ts';

const fixtures = new URL('./lifecycle-actors.ts', import.meta.url).href;

let cluster: SimNodeCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

/** The node's partition store: its actor tables, read directly (no activation, no fence). Private on TroupeNode, so reached by a cast. */
function storeOf(n: TroupeNode): PartitionStore {
  return (n as unknown as { replication: { store: PartitionStore } }).replication.store;
}

/** What node `id`'s actor tables hold for (kind, key): every stored event. */
async function stored(c: SimNodeCluster, id: number, kind: string, key: string): Promise<EventRecord[]> {
  return storeOf(c.node(id)).actors.readFrom(kind, key, 0, 10_000);
}

function ask(c: SimNodeCluster, via: number, kind: string, key: string, command: string, input?: unknown): Promise<unknown> {
  return c.settle(c.node(via).ask(kind, key, { command, ...(input !== undefined && { input }) }, { timeoutMs: 4_000 }));
}

/** Reads node `id`'s stored events for (kind, key) between simulated steps until `done` holds. */
async function untilStored(
  c: SimNodeCluster,
  id: number,
  kind: string,
  key: string,
  done: (events: EventRecord[]) => boolean,
  maxMs: number,
  what: string,
) {
  let events: EventRecord[] = [];
  let reading = false;
  await c.runUntil(
    () => {
      if (!reading) {
        reading = true;
        void stored(c, id, kind, key).then((e) => ((events = e), (reading = false)));
      }
      return done(events);
    },
    maxMs,
    what,
  );
  return events;
}

const deleted = (events: EventRecord[]) => events.some((e) => (e.event as { deleted?: true } | null)?.deleted === true);
const fired = (events: EventRecord[]) => events.filter((e) => (e.event as { fired?: true } | null)?.fired === true).length;

describe('delete on a replicated cluster', () => {
  it('the tombstone survives a failover, and a replica that missed it cannot bring the session back', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 11, modules: [fixtures], stepMs: 2 }));
    const key = 'doomed';
    const p = partitionOf(key);
    const primary = c.ownerOf(key, 1);
    const others = [1, 2, 3].filter((n) => n !== primary);
    const [away, stays] = others as [number, number];
    // Acknowledged at W = 2: the primary's copy and at least one replica's hold each write.
    for (let i = 0; i < 20; i++) await ask(c, stays, 'note', key, 'incr', { by: 1 });
    await c.runFor(1_000); // the third copy too
    expect(await tombstonesLogged(c, away, p, key), 'the replica holds the old session, no tombstone').toBe(0);

    // The replica is cut off from replication (membership still reaches it, so nobody marks it
    // down); the session is deleted while it cannot hear of it.
    let cut = true;
    const heal = c.net.intercept((m) =>
      cut && m.to === addressOf(away) && Array.isArray(m.payload) && m.payload[0] === R_REPL ? 'drop' : undefined,
    );
    expect(await ask(c, stays, 'note', key, 'del', { after: 3 })).toEqual({ n: 3, fired: 0 });
    await c.runFor(2_000);
    expect(await tombstonesLogged(c, away, p, key), 'partitioned away: it missed the delete').toBe(0);

    // It returns; resends and anti-entropy's digests bring it the tombstone like any write.
    cut = false;
    heal();
    let seen = 0;
    await c.runUntil(
      () => {
        void tombstonesLogged(c, away, p, key).then((n) => (seen = n));
        return seen === 1;
      },
      10_000,
      'the returning replica logs the tombstone',
    );
    await c.runFor(3_000); // several anti-entropy periods: nothing brings the old session back

    // The primary dies; whoever leads next serves the deleted session, and its actor tables hold
    // only the tombstone and what followed it (the 20 old events and the 1000-event are gone).
    c.kill(primary);
    await c.untilDown(primary, others);
    for (const via of others) expect(await ask(c, via, 'note', key, 'get'), `read through node ${via}`).toEqual({ n: 3, fired: 0 });
    const heir = c.ownerOf(key, stays);
    expect((await stored(c, heir, 'note', key)).map((e) => e.seq)).toEqual([22, 23]);
    expect(await ask(c, away, 'note', key, 'incr', { by: 1 })).toEqual({ n: 4, fired: 0 });
  });
});

/** Tombstones of (note, key) in node `id`'s partition log of p (the entries not yet truncated). */
async function tombstonesLogged(c: SimNodeCluster, id: number, p: number, key: string): Promise<number> {
  const store = storeOf(c.node(id));
  const base = (await store.loadAll()).get(p)?.base?.seq ?? 0;
  let n = 0;
  for (const entry of await store.entries(p, base, 100_000)) {
    for (const w of (entry.data ?? []) as readonly ActorWrite[]) if (w.key === key && w.tombstone !== undefined) n++;
  }
  return n;
}

describe('reminders on a replicated cluster', () => {
  it('a reminder set before its primary dies fires on the new primary, once, without any message', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 12, modules: [fixtures], stepMs: 2 }));
    const key = 'alarm';
    const primary = c.ownerOf(key, 1);
    const survivors = [1, 2, 3].filter((n) => n !== primary);
    const via = survivors[0]!;
    expect(await ask(c, via, 'note', key, 'remind', { name: 'wake', delayMs: 4_000 })).toBe('ok');
    // Acknowledged: on W = 2 copies, so the next primary has it whichever survivor it is.
    c.kill(primary);
    await c.untilDown(primary, survivors);
    const heir = c.ownerOf(key, via);
    // No message to the actor: the heir's waker finds it in its copy of the index and the fire
    // is journaled there (its stored log shows the delivered event).
    await untilStored(
      c,
      heir,
      'note',
      key,
      (e) => fired(e) === 1,
      4_000 + reminderDefaults.scanEveryMs + 5_000,
      'fired on the new primary',
    );
    await c.runFor(reminderDefaults.scanEveryMs * 2);
    expect(await ask(c, via, 'note', key, 'get')).toEqual({ n: 0, fired: 1 });
    expect(fired(await stored(c, heir, 'note', key)), 'delivered once').toBe(1);
  });
});

describe('ttlMs on a replicated cluster', () => {
  it('an idle session expires after its primary died', async () => {
    const c = (cluster = await SimNodeCluster.start({ seed: 13, modules: [fixtures], stepMs: 2 }));
    const key = 'visitor';
    const primary = c.ownerOf(key, 1);
    const survivors = [1, 2, 3].filter((n) => n !== primary);
    const via = survivors[0]!;
    expect(await ask(c, via, 'visit', key, 'hit')).toEqual({ n: 1 });
    c.kill(primary);
    await c.untilDown(primary, survivors);
    const heir = c.ownerOf(key, via);
    await untilStored(
      c,
      heir,
      'visit',
      key,
      deleted,
      10_000 + 2 * ttlSlackMs(10_000) + reminderDefaults.scanEveryMs + 5_000,
      'expired on the new primary',
    );
    expect(await ask(c, via, 'visit', key, 'get')).toEqual({ n: 0 });
  });
});
