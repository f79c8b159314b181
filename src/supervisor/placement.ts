import { hash32 } from '../core/hash.ts';
import { jumpHash } from './jump-hash.ts';

/**
 * Which worker slot of a node hosts `key`. Placement uses the key alone, not the kind, so all
 * actors of one session key (its cart, its chat) share a thread and talk without a hop.
 */
export function slotOf(key: string, slots: number): number {
  return slots === 1 ? 0 : jumpHash(hash32(key), slots);
}

/** Longest actor key accepted anywhere (path segment, cookie, client API). */
export const MAX_KEY_LENGTH = 256;
