import { describe, expect, it } from 'vitest';
import { Fifo } from '../../src/mailbox/fifo.ts';
import { Mailbox } from '../../src/mailbox/mailbox.ts';

describe('Fifo', () => {
  it('keeps order across growth and wrap-around', () => {
    const q = new Fifo<number>(2);
    const out: number[] = [];
    let next = 0;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < round % 7; i++) q.push(next++);
      for (let i = 0; i < round % 5 && q.length > 0; i++) out.push(q.shift()!);
    }
    out.push(...q.drain());
    expect(out).toEqual(Array.from({ length: next }, (_, i) => i));
    expect(q.length).toBe(0);
    expect(q.shift()).toBeUndefined();
  });

  it.each([
    { name: 'default size', initial: undefined },
    { name: 'size 1', initial: 1 },
    { name: 'size 3 (rounded up to 4)', initial: 3 },
    { name: 'size 64', initial: 64 },
  ])('wraps and grows from $name without losing or reordering items', ({ initial }) => {
    const q = new Fifo<number>(initial);
    // Leave the head mid-buffer, then fill past capacity so growth unwraps a wrapped buffer.
    for (let i = 0; i < 3; i++) q.push(-1);
    for (let i = 0; i < 3; i++) q.shift();
    for (let i = 0; i < 200; i++) q.push(i);
    expect(q.length).toBe(200);
    expect(q.drain()).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(q.length).toBe(0);
    expect(q.drain()).toEqual([]);
  });
});

describe('Mailbox', () => {
  it('is FIFO for user messages', () => {
    const m = new Mailbox<number>({ capacity: 10, overflow: 'reject' });
    for (let i = 0; i < 10; i++) expect(m.enqueue(i)).toBeUndefined();
    expect(Array.from({ length: 10 }, () => m.dequeue())).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('delivers system messages before user messages', () => {
    const m = new Mailbox<string>({ capacity: 10, overflow: 'reject' });
    m.enqueue('u1');
    m.enqueue('u2');
    m.enqueueSystem('s1');
    m.enqueue('u3');
    m.enqueueSystem('s2');
    expect([m.dequeue(), m.dequeue(), m.dequeue(), m.dequeue(), m.dequeue(), m.dequeue()]).toEqual([
      's1',
      's2',
      'u1',
      'u2',
      'u3',
      undefined,
    ]);
  });

  it.each([
    { overflow: 'reject' as const, refused: 'c', kept: ['a', 'b'] },
    { overflow: 'drop-oldest' as const, refused: 'a', kept: ['b', 'c'] },
  ])('overflow $overflow refuses $refused with ERR_MAILBOX_FULL', ({ overflow, refused, kept }) => {
    const m = new Mailbox<string>({ capacity: 2, overflow });
    m.enqueue('a');
    m.enqueue('b');
    const r = m.enqueue('c');
    expect(r?.refused).toBe(refused);
    expect(r?.error.code).toBe('ERR_MAILBOX_FULL');
    // The sender sees the message and the caller's logs and HTTP body carry the details.
    expect(r?.error.message).toBe('mailbox full (capacity 2)');
    expect(r?.error.details).toEqual({ capacity: 2 });
    expect(m.drain()).toEqual(kept);
  });

  it.each([
    { name: 'new', user: 0, system: 0, size: 0 },
    { name: 'user messages only', user: 2, system: 0, size: 2 },
    { name: 'system messages only', user: 0, system: 3, size: 3 },
    { name: 'both', user: 2, system: 1, size: 3 },
  ])('counts its size and emptiness: $name', ({ user, system, size }) => {
    const m = new Mailbox<string>({ capacity: 10, overflow: 'reject' });
    for (let i = 0; i < user; i++) m.enqueue(`u${i}`);
    for (let i = 0; i < system; i++) m.enqueueSystem(`s${i}`);
    expect(m.size).toBe(size);
    expect(m.isEmpty).toBe(size === 0);
    m.drain();
    expect(m.size).toBe(0);
    expect(m.isEmpty).toBe(true);
  });

  it('drains system messages first, then user messages, oldest first', () => {
    const m = new Mailbox<string>({ capacity: 10, overflow: 'reject' });
    m.enqueue('u1');
    m.enqueueSystem('s1');
    m.enqueue('u2');
    m.enqueueSystem('s2');
    expect(m.drain()).toEqual(['s1', 's2', 'u1', 'u2']);
    expect(m.dequeue()).toBeUndefined();
  });

  it('never refuses system messages, even when user capacity is exhausted', () => {
    const m = new Mailbox<string>({ capacity: 1, overflow: 'reject' });
    m.enqueue('u');
    for (let i = 0; i < 5; i++) m.enqueueSystem(`s${i}`);
    expect(m.size).toBe(6);
    expect(m.dequeue()).toBe('s0');
  });
});
