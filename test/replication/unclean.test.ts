/**
 * REPLICATION.md, Unclean replicas: a store that commits without fsync ('replicated') may lose
 * its last commits in an OS crash. A driver opened under another OS boot than the store's last
 * commit marks every partition it holds unclean, durably; under the same boot (a process crash)
 * nothing changes. The replica reducer then answers prepares with `unclean`, so the candidate
 * does not count it (test/replication/reducers.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryNetwork } from '../../src/cluster/memory-network.ts';
import { SimulatedClock, systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { LmdbPartitionStore } from '../../src/replication/lmdb-partition-store.ts';
import { MemoryPartitionStore } from '../../src/replication/memory-partition-store.ts';
import { emptyPartitionMeta } from '../../src/replication/partition-store.ts';
import { ReplicationDriver } from '../../src/replication/replication-driver.ts';
import { R_REPL } from '../../src/replication/wire.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const e = { term: 1, node: 1 };
async function storeWithPartitions(path: string): Promise<void> {
  const store = new LmdbPartitionStore({ path, durability: 'commit' });
  for (const p of [3, 9]) {
    await store.persist(p, {
      entries: [{ seq: 1, epoch: e, start: { epoch: e, startSeq: 1, sets: [{ members: [1, 2, 3], w: 2 }] } }],
      meta: {
        ...emptyPartitionMeta(),
        promised: e,
        last: { epoch: e, seq: 1 },
        history: [{ epoch: e, startSeq: 1, sets: [{ members: [1, 2, 3], w: 2 }] }],
      },
    });
  }
  await store.close();
}

async function openUnder(
  path: string,
  bootId: string | undefined,
  durability: 'commit' | 'flush' = 'commit',
): Promise<Map<number, boolean>> {
  const store = new LmdbPartitionStore({ path, durability });
  const driver = await ReplicationDriver.open({
    self: 1,
    store,
    clock: systemClock,
    log: silentLogger,
    ...(bootId !== undefined && { bootId }),
  });
  await driver.close();
  const clean = new Map([...(await store.loadAll())].map(([p, m]) => [p, m.clean]));
  await store.close();
  return clean;
}

describe('a replicated store after an OS reboot', () => {
  it('is marked unclean, every partition, durably; a process restart under the same boot changes nothing', async () => {
    const path = mkdtempSync(join(tmpdir(), 'troupe-unclean-'));
    dirs.push(path);
    await storeWithPartitions(path);
    // The first open records the boot; restarts under it (a SIGKILL, an OOM) keep the store clean.
    expect(Object.fromEntries(await openUnder(path, 'boot-a'))).toEqual({ 3: true, 9: true });
    expect(Object.fromEntries(await openUnder(path, 'boot-a'))).toEqual({ 3: true, 9: true });
    // Another boot: the OS may have dropped commits that were never synced.
    expect(Object.fromEntries(await openUnder(path, 'boot-b'))).toEqual({ 3: false, 9: false });
    // Still unclean after yet another restart: only a later primary's catch-up cleans it.
    expect(Object.fromEntries(await openUnder(path, 'boot-b'))).toEqual({ 3: false, 9: false });
  });

  it('is marked unclean after `troupe restore` put it back from a backup, whatever the durability', async () => {
    const path = mkdtempSync(join(tmpdir(), 'troupe-unclean-src-'));
    const copy = mkdtempSync(join(tmpdir(), 'troupe-unclean-bak-'));
    const restored = mkdtempSync(join(tmpdir(), 'troupe-unclean-dst-'));
    dirs.push(path, copy, restored);
    await storeWithPartitions(path);
    // A journal marker makes it a troupe data directory for backup and restore.
    const { LmdbJournal } = await import('../../src/persistence/lmdb-journal.ts');
    await new LmdbJournal({ type: 'lmdb', path }).close();
    const { backup, restore } = await import('../../src/persistence/backup.ts');
    rmSync(copy, { recursive: true, force: true });
    await backup({ type: 'lmdb', path }, copy);
    await restore(copy, join(restored, 'journal'));
    // 'replicated+flush' passes no boot id: the restore mark alone decides.
    expect(Object.fromEntries(await openUnder(join(restored, 'journal'), undefined, 'flush'))).toEqual({ 3: false, 9: false });
    // The original, never restored, opened the same way, stays clean.
    expect(Object.fromEntries(await openUnder(path, undefined, 'flush'))).toEqual({ 3: true, 9: true });
  });
});

describe('an empty store before its node has joined (5-node simulator seed 4349)', () => {
  // It may be a replaced host's: only the join-ack says whether its id lived before. Until then
  // it promises but answers `unclean`, so no fence counts the copy it lost.
  it.each([
    ['awaitIdentity, not joined yet', true, undefined, 'unclean'],
    ['awaitIdentity, joined as a new host (identityKnown)', true, 'known', 'promise'],
    ['awaitIdentity, joined as a replaced host (markReplaced)', true, 'replaced', 'unclean'],
    ['without awaitIdentity (a driver used on its own)', false, undefined, 'promise'],
  ] as const)('%s → %s', async (_, awaitIdentity, joined, answer) => {
    const clock = new SimulatedClock(0, 1_767_225_600_000);
    const net = new MemoryNetwork({ clock, latency: 1 });
    const driver = await ReplicationDriver.open({ self: 2, store: new MemoryPartitionStore(), clock, log: silentLogger, awaitIdentity });
    driver.attach(net.transport({ id: 2, incarnation: 1, address: 'mem:2' }));
    if (joined === 'known') driver.identityKnown();
    if (joined === 'replaced') driver.markReplaced();
    const peer = net.transport({ id: 1, incarnation: 1, address: 'mem:1' });
    const answers: string[] = [];
    peer.onMessage((_from, payload) => {
      for (const m of (payload as [number, Array<{ type: string }>])[1]) answers.push(m.type);
    });
    peer.send('mem:2', [R_REPL, [{ type: 'prepare', p: 5, epoch: { term: 1_767_225_700_000, node: 1 } }]], 'actor');
    for (let i = 0; i < 20 && answers.length === 0; i++) {
      clock.advance(1);
      await new Promise<void>((r) => setImmediate(r));
    }
    expect(answers).toEqual([answer]);
    await driver.close();
  });
});
