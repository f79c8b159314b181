import { describe, expect, it } from 'vitest';
import { Mailbox, type MailboxBytes } from '../../src/mailbox/mailbox.ts';
import { checkByteCap, messageBytes } from '../../src/mailbox/message-size.ts';

const MiB = 1024 * 1024;

describe('messageBytes', () => {
  const long = 'a'.repeat(100); // past the short-string shortcut: scanned, counted by UTF-8 bytes
  it.each([
    { name: 'a number', value: 42, bytes: 8 },
    { name: 'a boolean', value: true, bytes: 1 },
    { name: 'null', value: null, bytes: 1 },
    { name: 'undefined', value: undefined, bytes: 1 },
    { name: 'a bigint', value: 12n, bytes: 8 },
    { name: 'a short string: 3 bytes per code unit, unscanned', value: 'abc', bytes: 9 },
    { name: 'a long ASCII string: its UTF-8 bytes', value: long, bytes: 100 },
    { name: 'a long string of 2-byte UTF-8 characters', value: 'é'.repeat(100), bytes: 200 },
    { name: 'a long string of 3-byte UTF-8 characters', value: '€'.repeat(100), bytes: 300 },
    { name: 'a Buffer: its bytes', value: Buffer.alloc(5_000), bytes: 5_000 },
    { name: 'a typed array: its bytes, not its length', value: new Float64Array(100), bytes: 800 },
    { name: 'a view on part of a buffer: the view only', value: new Uint8Array(new ArrayBuffer(1_000), 10, 20), bytes: 20 },
    { name: 'an ArrayBuffer', value: new ArrayBuffer(3_000), bytes: 3_000 },
    { name: 'an empty object', value: {}, bytes: 8 },
    { name: '{ by: 1 }: container + key + number', value: { by: 1 }, bytes: 8 + 6 + 8 },
    { name: 'an array of numbers', value: [1, 2, 3], bytes: 8 + 24 },
    { name: 'a Buffer inside an object', value: { blob: Buffer.alloc(2_000) }, bytes: 8 + 12 + 2_000 },
    { name: 'a Map: keys and values', value: new Map([['k', 1]]), bytes: 8 + 3 + 8 },
    { name: 'a Set', value: new Set([1, 2]), bytes: 8 + 16 },
    { name: 'a Date', value: new Date(0), bytes: 8 },
    { name: 'the same object twice counts twice', value: ((o) => [o, o])({ x: long }), bytes: 8 + 2 * (8 + 3 + 100) },
  ])('$name: $bytes', ({ value, bytes }) => {
    expect(messageBytes(value)).toBe(bytes);
  });

  it.each([
    { name: 'a 20 MB string', value: () => 'x'.repeat(20_000_000) },
    { name: 'a 20 MB string in an object', value: () => ({ payload: 'x'.repeat(20_000_000) }) },
    { name: '200k numbers', value: () => Array.from({ length: 200_000 }, (_, i) => i) },
    { name: 'a cycle', value: () => ((o: Record<string, unknown>) => ((o.self = o), (o.again = o), o))({}) },
    { name: 'a Buffer of 2 MiB', value: () => Buffer.alloc(2 * MiB) },
  ])('$name is over a 1 MiB limit, and the walk stops there', ({ value }) => {
    const v = value();
    expect(messageBytes(v, MiB)).toBeGreaterThan(MiB);
  });

  it('reads no further than the limit: a 1 KiB limit reads about a hundred of a million items', () => {
    let reads = 0;
    const item = {
      get n(): number {
        reads++;
        return 1;
      },
    };
    const many = Array.from({ length: 1_000_000 }, () => item);
    expect(messageBytes(many, 1_024)).toBeGreaterThan(1_024);
    expect(reads).toBeLessThan(100); // each item counts 8 + 3 + 8 bytes
  });

  it('a value whose getter throws counts as over the limit', () => {
    const hostile = {
      get x(): never {
        throw new Error('no');
      },
    };
    expect(messageBytes(hostile, 100)).toBeGreaterThan(100);
  });

  it.each([
    { name: 'zero', v: 0 },
    { name: 'a negative number', v: -1 },
    { name: 'a fraction', v: 1.5 },
    { name: 'a string', v: '1024' },
    { name: 'NaN', v: Number.NaN },
  ])('checkByteCap refuses $name, naming the option', ({ v }) => {
    expect(() => checkByteCap('options.maxMessageBytes', v)).toThrow(
      /^options\.maxMessageBytes must be a positive integer \(bytes\) or Infinity/,
    );
  });

  it('checkByteCap accepts a positive integer and Infinity', () => {
    expect(checkByteCap('options.maxMessageBytes', 1)).toBe(1);
    expect(checkByteCap('options.maxMessageBytes', Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('Mailbox byte cap', () => {
  /** Messages are their own size, in bytes. */
  const bytes = (maxBytes: number): MailboxBytes<number> => ({ maxBytes, sizeOf: (m) => m });

  it('counts queued bytes up as messages come and down as they are taken', () => {
    const m = new Mailbox<number>({ capacity: 100, overflow: 'reject' }, bytes(1_000));
    const steps: Array<[string, number]> = [];
    for (const size of [100, 200, 300]) (m.enqueue(size), steps.push([`+${size}`, m.queuedBytes]));
    m.enqueueSystem(999); // the runtime's own lane: not counted, never refused
    steps.push(['+system', m.queuedBytes]);
    for (let i = 0; i < 4; i++) {
      const taken = m.dequeue();
      steps.push([`-${taken}`, m.queuedBytes]);
    }
    expect(steps).toEqual([
      ['+100', 100],
      ['+200', 300],
      ['+300', 600],
      ['+system', 600],
      ['-999', 600],
      ['-100', 500],
      ['-200', 300],
      ['-300', 0],
    ]);
  });

  it.each([
    { name: 'fits exactly', queued: [400, 500], next: 100, refused: false },
    { name: 'one byte over', queued: [400, 500], next: 101, refused: true },
    { name: 'alone larger than the cap', queued: [], next: 1_001, refused: true },
    { name: 'after the queue drained', queued: [], next: 1_000, refused: false },
  ])('$name: refused $refused', ({ queued, next, refused }) => {
    const m = new Mailbox<number>({ capacity: 100, overflow: 'reject' }, bytes(1_000));
    for (const size of queued) expect(m.enqueue(size)).toBeUndefined();
    const before = m.queuedBytes;
    const r = m.enqueue(next);
    if (!refused) {
      expect(r).toBeUndefined();
      expect(m.queuedBytes).toBe(before + next);
      return;
    }
    expect(r?.refused).toBe(next);
    expect(r?.error.code).toBe('ERR_MAILBOX_FULL');
    expect(r?.error.message).toMatch(/maxMailboxBytes 1000/);
    expect(r?.error.details).toEqual({ maxBytes: 1_000, queuedBytes: before, bytes: next });
    // Nothing changed: the refused message was never queued.
    expect(m.queuedBytes).toBe(before);
    expect(m.size).toBe(queued.length);
  });

  it('refuses the new message under drop-oldest too (room would take any number of older ones)', () => {
    const m = new Mailbox<number>({ capacity: 100, overflow: 'drop-oldest' }, bytes(1_000));
    m.enqueue(600);
    const r = m.enqueue(500);
    expect(r?.refused).toBe(500);
    expect(m.drain()).toEqual([600]);
  });

  it('drop-oldest by count keeps the byte count right', () => {
    const m = new Mailbox<number>({ capacity: 2, overflow: 'drop-oldest' }, bytes(1_000));
    m.enqueue(100);
    m.enqueue(200);
    expect(m.enqueue(300)?.refused).toBe(100);
    expect(m.queuedBytes).toBe(500);
  });

  it('room comes back as messages are taken: a refused size fits after a dequeue', () => {
    const m = new Mailbox<number>({ capacity: 100, overflow: 'reject' }, bytes(1_000));
    m.enqueue(700);
    expect(m.enqueue(400)?.error.code).toBe('ERR_MAILBOX_FULL');
    m.dequeue();
    expect(m.enqueue(400)).toBeUndefined();
    expect(m.queuedBytes).toBe(400);
  });

  it('drain empties the byte count', () => {
    const m = new Mailbox<number>({ capacity: 100, overflow: 'reject' }, bytes(1_000));
    m.enqueue(300);
    m.enqueue(300);
    m.drain();
    expect(m.queuedBytes).toBe(0);
    expect(m.enqueue(1_000)).toBeUndefined();
  });

  it('without a byte cap nothing is measured', () => {
    const m = new Mailbox<number>({ capacity: 100, overflow: 'reject' });
    expect(m.enqueue(10 ** 12)).toBeUndefined();
    expect(m.queuedBytes).toBe(0);
  });
});
