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
    expect(m.drain()).toEqual(kept);
  });

  it('never refuses system messages, even when user capacity is exhausted', () => {
    const m = new Mailbox<string>({ capacity: 1, overflow: 'reject' });
    m.enqueue('u');
    for (let i = 0; i < 5; i++) m.enqueueSystem(`s${i}`);
    expect(m.size).toBe(6);
    expect(m.dequeue()).toBe('s0');
  });
});
