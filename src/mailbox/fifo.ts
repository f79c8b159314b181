/**
 * A growable circular FIFO. `Array#shift` is O(n) once arrays leave V8's fast path; this keeps
 * push/shift O(1) and reuses its buffer, which matters at millions of messages per second.
 *
 *   head ──► [ m3 | m4 | m5 |    |    | m1 | m2 ]  (wraps: mask = capacity - 1)
 */
export class Fifo<T> {
  private buf: (T | undefined)[];
  private head = 0;
  private count = 0;

  constructor(initialCapacity = 4) {
    // The starting size is only a hint: any power of two works (push grows on demand), so a
    // mutant that starts at 1 or at twice the size behaves the same.
    let cap = 1;
    // Stryker disable next-line ConditionalExpression: starting at 1 is a valid size, see above
    while (cap < initialCapacity) cap <<= 1;
    // Stryker disable next-line ArrayDeclaration: an empty array grows to 1, 2, 4… on push
    this.buf = new Array(cap);
  }

  get length(): number {
    return this.count;
  }

  push(item: T): void {
    if (this.count === this.buf.length) this.grow();
    this.buf[(this.head + this.count) & (this.buf.length - 1)] = item;
    this.count++;
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) & (this.buf.length - 1);
    this.count--;
    return item;
  }

  /** Removes and returns everything, oldest first. */
  drain(): T[] {
    const out: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) out.push(item);
    return out;
  }

  /** Called only when full, so the items are old[head..] followed by old[..head). */
  private grow(): void {
    const old = this.buf;
    const next = old.slice(this.head).concat(old.slice(0, this.head));
    next.length = old.length * 2;
    this.buf = next;
    this.head = 0;
  }
}
