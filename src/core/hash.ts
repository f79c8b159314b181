/**
 * 32-bit string hash: FNV-1a over UTF-16 code units, then murmur3's fmix32 finalizer so that
 * nearby keys ("user-1", "user-2") land far apart. Stable across processes and versions: ring
 * positions and worker placement depend on it, so never change it without a migration.
 */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
