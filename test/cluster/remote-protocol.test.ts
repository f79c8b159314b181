import { describe, expect, it } from 'vitest';
import { parseRemote, R_ASK, R_REPLY, R_TELL } from '../../src/cluster/remote-protocol.ts';

describe('parseRemote', () => {
  it.each([
    { name: 'an ask', p: [R_ASK, 1, 'counter', 'k', 'incr', { by: 1 }, null, 5000, 0] },
    { name: 'an ask with a message id', p: [R_ASK, 2, 'counter', 'k', 'incr', undefined, 'm-1', 1, 2] },
    { name: 'a tell', p: [R_TELL, 'counter', 'k', 'incr', { by: 1 }, null, 0] },
    { name: 'a tell with its sendId', p: [R_TELL, 'counter', 'k', 'incr', { by: 1 }, null, 0, 17] },
    { name: 'a reply', p: [R_REPLY, 7, true, { n: 1 }] },
    { name: 'an error reply', p: [R_REPLY, 7, false, { code: 'ERR_ASK_TIMEOUT', message: 'late' }] },
  ])('accepts $name', ({ p }) => {
    expect(parseRemote(p)).toBe(p);
  });

  it.each([
    { name: 'not an array', p: { op: R_ASK } },
    { name: 'an unknown op', p: [99, 1] },
    { name: 'an ask missing fields', p: [R_ASK, 1, 'counter', 'k', 'incr'] },
    { name: 'a negative request id', p: [R_ASK, -1, 'counter', 'k', 'incr', {}, null, 5000, 0] },
    { name: 'a fractional timeout', p: [R_ASK, 1, 'counter', 'k', 'incr', {}, null, 1.5, 0] },
    { name: 'an empty key', p: [R_ASK, 1, 'counter', '', 'incr', {}, null, 5000, 0] },
    { name: 'an over-long key', p: [R_ASK, 1, 'counter', 'k'.repeat(257), 'incr', {}, null, 5000, 0] },
    { name: 'a numeric kind', p: [R_TELL, 5, 'k', 'incr', {}, null, 0] },
    { name: 'a message id that is not a string', p: [R_TELL, 'counter', 'k', 'incr', {}, 42, 0] },
    { name: 'a tell whose sendId is not a count', p: [R_TELL, 'counter', 'k', 'incr', {}, null, 0, -1] },
    { name: 'a tell with a ninth element', p: [R_TELL, 'counter', 'k', 'incr', {}, null, 0, 1, 2] },
    { name: 'a reply whose ok is not a boolean', p: [R_REPLY, 1, 'yes', {}] },
    { name: 'a reply with a string id', p: [R_REPLY, '1', true, {}] },
  ])('refuses $name', ({ p }) => {
    expect(parseRemote(p)).toBeUndefined();
  });
});
