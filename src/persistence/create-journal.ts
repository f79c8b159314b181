import { invalidOption } from '../core/errors.ts';
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
  if (config === null || typeof config !== 'object') throw invalidOption('config', 'must be a journal config object', config);
  switch (config.type) {
    case 'memory':
      return new MemoryJournal();
    case 'lmdb':
      return new LmdbJournal(config, options);
    default:
      throw invalidOption('config.type', "must be 'memory' or 'lmdb'", (config as { type: unknown }).type);
  }
}
