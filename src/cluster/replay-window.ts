/**
 * Which request ids a sender has used already: a sliding anti-replay window (as IPsec's, RFC 4303
 * §3.4.3) over ids that one sender's life draws from a counter. A forwarded ask arriving twice —
 * a frame duplicated on the link, or replayed by someone on the path (the chaos suite's scenario
 * 8) — must be served once: the first copy's reply answers the sender, the second is dropped.
 *
 * The window remembers the highest id seen and which of the `size` ids below it were seen. An id
 * older than that is reported as seen too: a sender's ids reach us over one ordered connection
 * at a time, so one that old can only be a copy (its sender has long timed it out).
 *
 * @example
 *   const w = new ReplayWindow(1024);
 *   w.firstTime(5); // true
 *   w.firstTime(5); // false: a copy
 *   w.firstTime(3); // true: late, but new
 */
export class ReplayWindow {
  private highest = 0;
  /** Bit i of word ⌊i/32⌋: whether id `highest - i` was seen (bit 0: highest itself). */
  private readonly bits: Uint32Array;

  constructor(readonly size = 1024) {
    if (!Number.isInteger(size) || size < 32 || size % 32 !== 0) throw new RangeError(`window size must be a positive multiple of 32, got ${size}`);
    this.bits = new Uint32Array(size / 32);
  }

  /** True the first time `id` (a positive integer) is offered, false for a copy or an id too old to tell. */
  firstTime(id: number): boolean {
    if (id > this.highest) {
      this.shift(id - this.highest);
      this.highest = id;
      this.bits[0]! |= 1;
      return true;
    }
    const back = this.highest - id;
    if (back >= this.size) return false;
    const word = back >>> 5;
    const bit = 1 << (back & 31);
    if ((this.bits[word]! & bit) !== 0) return false;
    this.bits[word]! |= bit;
    return true;
  }

  /** Moves the window up by `n` ids: bit i becomes bit i + n. */
  private shift(n: number): void {
    const words = this.bits.length;
    if (n >= this.size) {
      this.bits.fill(0);
      return;
    }
    const whole = n >>> 5;
    const part = n & 31;
    for (let w = words - 1; w >= 0; w--) {
      const from = w - whole;
      const lo = from >= 0 ? this.bits[from]! : 0;
      const below = from - 1 >= 0 ? this.bits[from - 1]! : 0;
      this.bits[w] = part === 0 ? lo : ((lo << part) | (below >>> (32 - part))) >>> 0;
    }
  }
}
