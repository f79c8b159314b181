/** The anti-replay window the router drops duplicated forwarded asks with (src/cluster/replay-window.ts). */
import { describe, expect, it } from 'vitest';
import { ReplayWindow } from '../../src/cluster/replay-window.ts';

describe('ReplayWindow', () => {
  it.each([
    { name: 'in order, each id once', ids: [1, 2, 3, 4], want: [true, true, true, true] },
    { name: 'a copy of the newest', ids: [1, 2, 2], want: [true, true, false] },
    { name: 'a copy of an older id', ids: [1, 2, 3, 1], want: [true, true, true, false] },
    { name: 'late but new (reordered)', ids: [1, 3, 2, 2], want: [true, true, true, false] },
    { name: 'a jump within the window keeps what was seen', ids: [5, 40, 5, 6, 40], want: [true, true, false, true, false] },
    { name: 'a jump of exactly 32 (word boundary)', ids: [1, 33, 1, 2], want: [true, true, false, true] },
    { name: 'a jump of 31 and 33 (bits across words)', ids: [3, 34, 67, 3, 4, 34, 35], want: [true, true, true, false, true, false, true] },
    { name: 'an id the window has left behind counts as a copy', ids: [1, 2000, 2], want: [true, true, false] },
    { name: 'the oldest id still inside the window', ids: [1, 1024, 1, 2], want: [true, true, false, true] },
    { name: 'a jump past the whole window forgets everything', ids: [10, 5000, 4000, 3977, 3976], want: [true, true, true, true, false] },
  ])('$name', ({ ids, want }) => {
    const w = new ReplayWindow(1024);
    expect(ids.map((id) => w.firstTime(id))).toEqual(want);
  });

  it('agrees with a set over a long shuffled stream (ids reordered within 100 of their place)', () => {
    const w = new ReplayWindow(1024);
    const seen = new Set<number>();
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const stream: number[] = [];
    for (let id = 1; id <= 20_000; id++) stream.push(id);
    for (let i = 0; i < stream.length; i++) {
      const j = Math.min(stream.length - 1, i + Math.floor(rnd() * 100));
      [stream[i], stream[j]] = [stream[j]!, stream[i]!];
      if (rnd() < 0.1) stream.splice(i + 1, 0, stream[i]!); // a copy right after
    }
    for (const id of stream) {
      const first = !seen.has(id);
      seen.add(id);
      expect(w.firstTime(id), `id ${id}`).toBe(first);
    }
  });

  it('refuses a size that is not a positive multiple of 32', () => {
    for (const size of [0, 31, 100, -32, 1.5]) expect(() => new ReplayWindow(size)).toThrow(/multiple of 32/);
  });
});
