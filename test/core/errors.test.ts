import { describe, expect, it } from 'vitest';
import { isTroupeError, toErrorRecord, troupeError } from '../../src/core/errors.ts';

/** What another installed copy of troupe's `invalidInput` throws: its own class, the same brand. */
function fromAnotherCopy(code: string, message: string): Error {
  class TroupeError extends Error {
    override readonly name = 'TroupeError';
    constructor(
      readonly code: string,
      message: string,
    ) {
      super(message);
      Object.defineProperty(this, Symbol.for('troupe.TroupeError'), { value: true });
    }
  }
  return new TroupeError(code, message);
}

describe('TroupeError across copies of troupe', () => {
  it.each([
    ['this copy', troupeError('ERR_INVALID_INPUT', 'cart is empty'), true],
    ['another copy', fromAnotherCopy('ERR_INVALID_INPUT', 'cart is empty'), true],
    ['a plain Error', new Error('cart is empty'), false],
    ['a look-alike without the brand', Object.assign(new Error('x'), { name: 'TroupeError', code: 'ERR_INVALID_INPUT' }), false],
    ['null', null, false],
  ])('%s: recognised = %s', (_, e, recognised) => {
    expect(isTroupeError(e)).toBe(recognised);
    expect(isTroupeError(e, 'ERR_INVALID_INPUT')).toBe(recognised);
    expect(isTroupeError(e, 'ERR_STOPPED')).toBe(false);
  });

  it("another copy's refusal keeps its code and message on the wire", () => {
    expect(toErrorRecord(fromAnotherCopy('ERR_INVALID_INPUT', 'cart is empty'))).toEqual({ code: 'ERR_INVALID_INPUT', message: 'cart is empty' });
  });
});
