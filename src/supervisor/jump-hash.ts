import { fmix32 } from '../core/hash.ts';

/**
 * Jump consistent hash (Lamping & Veach, 2014): maps a 32-bit key hash to a bucket in
 * [0, buckets). Growing from n to n+1 buckets moves only ~1/(n+1) of the keys, all of them
 * into the new bucket. The paper's 64-bit LCG needs BigInt in JS; any deterministic uniform
 * sequence seeded by the key keeps the property, so this uses a 32-bit splitmix-style step.
 */
export function jumpHash(keyHash: number, buckets: number): number {
  // An integer: with Infinity (or NaN) the loop below would never end.
  if (!Number.isSafeInteger(buckets) || buckets < 1) throw new RangeError(`buckets must be an integer >= 1 (got ${buckets})`);
  let state = keyHash >>> 0;
  // The paper starts b at -1; any value does, since buckets >= 1 runs the loop at least once.
  let b = 0;
  let j = 0;
  while (j < buckets) {
    b = j;
    state = (state + 0x9e3779b9) >>> 0;
    // r is uniform in (0, 1]: never 0, so the division below is finite.
    const r = (fmix32(state) + 1) / 4294967296;
    j = Math.floor((b + 1) / r);
  }
  return b;
}
