import { invalidOption } from '../core/errors.ts';
import { HoldingJournal } from './failing-journal.ts';
import type { Journal, JournalConfig } from './journal.ts';
import { LmdbJournal, type LmdbJournalOptions } from './lmdb-journal.ts';
import { MemoryJournal } from './memory-journal.ts';

/**
 * Builds the journal a `JournalConfig` names. Worker threads receive the config (it is plain
 * data) and call this once each; for LMDB every thread of a process then shares one
 * environment.
 *
 * @example
 *   const journal = createJournal({ type: 'lmdb', path: 'data/node-1', durability: 'flush' });
 */
export function createJournal(config: JournalConfig, options: LmdbJournalOptions = {}): Journal {
  const journal = buildJournal(config, options);
  const holdPrefix = process.env[HOLD_WRITES_ENV];
  return holdPrefix ? holdWrites(journal, holdPrefix) : journal;
}

function buildJournal(config: JournalConfig, options: LmdbJournalOptions): Journal {
  if (config === null || typeof config !== 'object') throw invalidOption('config', 'must be a journal config object', config);
  switch (config.type) {
    case 'memory':
      return new MemoryJournal();
    case 'lmdb':
      return new LmdbJournal(config, options);
    case 'node':
      // Not built in a thread at all: the main thread's journal service answers (port-journal.ts).
      throw invalidOption(
        'config.type',
        "must be 'memory' or 'lmdb' here: 'node' names the main thread's journal service, which the Supervisor or InProcessActors take as options.journalService",
        config.type,
      );
    default:
      throw invalidOption('config.type', "must be 'memory' or 'lmdb'", (config as { type: unknown }).type);
  }
}

/**
 * TEST HOOK, never set in production: with `TROUPE_TEST_HOLD_WRITES=<prefix>` in a node's
 * environment, every journal write of an actor whose key starts with <prefix> is held forever
 * (never committed, never acknowledged) and announced on stderr as
 * `troupe-test-hook: holding <kind>/<key>`. It lets a test of a real node process (which it can
 * only reach through its environment) kill the node at a known point between "handed to the
 * journal" and "durable". Read once per journal, so it costs the write path nothing.
 */
export const HOLD_WRITES_ENV = 'TROUPE_TEST_HOLD_WRITES';

function holdWrites(journal: Journal, prefix: string): Journal {
  return new HoldingJournal(
    journal,
    (w) => w.key.startsWith(prefix),
    (w) => process.stderr.write(`troupe-test-hook: holding ${w.kind}/${w.key}\n`),
  );
}
