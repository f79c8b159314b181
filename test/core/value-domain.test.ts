import { Packr, Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { messageFingerprint } from '../../src/core/fingerprint.ts';
import { assertValue, checkValue, findOffence, notSerializable } from '../../src/core/value-domain.ts';

const nullProto = (o: object) => Object.assign(Object.create(null) as object, o);
const cyclic = () => {
  const o: Record<string, unknown> = { a: [1] };
  (o.a as unknown[]).push({ back: o });
  return o;
};
const nested = (levels: number) => {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
};
class Point {
  x = 1;
}

/** Inside the domain: JSON and msgpack both carry these unchanged. */
const accepted: Array<[name: string, value: unknown]> = [
  ['null', null],
  ['undefined as the whole value (no value)', undefined],
  ['true', true],
  ['zero', 0],
  ['a negative fraction', -1.5],
  ['MAX_SAFE_INTEGER', Number.MAX_SAFE_INTEGER],
  ['an empty string', ''],
  ['text with an emoji (a surrogate pair)', 'tea 🍵'],
  ['an empty object', {}],
  ['an empty array', []],
  ['a small plain object', { n: 1, s: 'x', ok: true, none: null }],
  ['an object property that is undefined (absent, as in JSON)', { a: 1, b: undefined }],
  ['an object with a null prototype', nullProto({ ok: true })],
  [
    'nested arrays and objects',
    {
      items: [
        { sku: 'tea', qty: 2 },
        { sku: 'cup', qty: [1, 2, 3] },
      ],
    },
  ],
  [
    'the same object twice (not a cycle)',
    (() => {
      const shared = { a: 1 };
      return { x: shared, y: [shared, shared] };
    })(),
  ],
  ['64 levels of nesting', nested(64)],
  ["keys named 'constructor' and 'prototype'", { constructor: 1, prototype: 2 }],
];

/** Outside the domain: [name, value, path, reason (a substring)]. */
const refused: Array<[name: string, value: unknown, path: string, reason: string]> = [
  ['a BigInt', { n: 1n }, '$.n', 'a BigInt'],
  ['a BigInt at the top', 10n, '$', 'a BigInt'],
  ['a BigInt deep in an array', { a: { b: [0, 1, 2n] } }, '$.a.b[2]', 'a BigInt'],
  ['a function', { f: () => 1 }, '$.f', 'a function'],
  ['a symbol', [Symbol('s')], '$[0]', 'a symbol'],
  ['NaN', { x: NaN }, '$.x', 'NaN'],
  ['Infinity', { x: Infinity }, '$.x', 'Infinity'],
  ['-Infinity', [-Infinity], '$[0]', '-Infinity'],
  ['undefined in an array', [1, undefined], '$[1]', 'undefined (inside an array)'],
  ['a sparse array', [1, , 3], '$[1]', 'a hole'], // eslint-disable-line no-sparse-arrays
  ['a Date', { at: new Date(0) }, '$.at', 'a Date'],
  ['a Map', new Map([[1, 2]]), '$', 'a Map'],
  ['a Set', { s: new Set([1]) }, '$.s', 'a Set'],
  ['a Uint8Array', { b: new Uint8Array(2) }, '$.b', 'binary data'],
  ['a Buffer', Buffer.from('x'), '$', 'binary data'],
  ['a class instance', { p: new Point() }, '$.p', 'an instance of Point'],
  ['an Error', { e: new Error('x') }, '$.e', 'an instance of Error'],
  ['a boxed number', { n: Object(1) as unknown }, '$.n', 'an instance of Number'],
  ['a cycle', cyclic(), '$.a[1].back', 'a circular reference to $'],
  [
    'a self-reference',
    (() => {
      const o: Record<string, unknown> = {};
      o.me = o;
      return { wrap: o };
    })(),
    '$.wrap.me',
    'a circular reference to $.wrap',
  ],
  ['65 levels of nesting', nested(65), '$' + '[0]'.repeat(64), 'nested deeper than 64 levels'],
  ['a lone surrogate', { s: 'a\ud800' }, '$.s', 'a lone surrogate'],
  ["an own '__proto__' key", JSON.parse('{"ok":{"__proto__":1}}') as unknown, '$.ok.__proto__', "a key named '__proto__'"],
  ['an odd key in the path', { 'a b': { 'c-d': 1n } }, '$["a b"]["c-d"]', 'a BigInt'],
  [
    'a getter that throws',
    Object.defineProperty({}, 'x', {
      enumerable: true,
      get: () => {
        throw new Error('nope');
      },
    }),
    '$',
    'threw (nope)',
  ],
];

describe('the value domain', () => {
  it.each(accepted)('accepts %s', (_name, value) => {
    expect(checkValue(value, 'reply')).toBeNull();
  });

  it.each(refused)('refuses %s', (_name, value, path, reason) => {
    const e = checkValue(value, "reply of counter/k1 'incr'");
    expect(e?.code).toBe('ERR_NOT_SERIALIZABLE');
    expect(e?.message).toContain(`reply of counter/k1 'incr' is not serializable: ${path} is `);
    expect(e?.message).toContain(reason);
    expect(e?.details).toMatchObject({ what: "reply of counter/k1 'incr'", path });
  });

  it('what JSON and msgpack carry: every accepted value reads back equal through both', () => {
    const packr = new Packr({ useRecords: false, structuredClone: false });
    const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, structuredClone: false });
    for (const [name, value] of accepted) {
      if (value === undefined) continue; // "no value": the gateway sends null
      const plain = JSON.parse(JSON.stringify(value)) as unknown;
      expect(plain, name).toEqual(value);
      expect(unpackr.unpack(packr.pack(value)), name).toEqual(plain);
    }
  });

  it('findOffence finds the same offence without a description; notSerializable names it', () => {
    expect(findOffence({ a: [1, 2, { b: 'c' }] })).toBeNull();
    const offence = findOffence({ a: { b: [1n] } });
    expect(offence).not.toBeNull();
    expect(notSerializable('event', offence!).message).toMatch(/^event is not serializable: \$\.a\.b\[0\] is a BigInt/);
    // Describing it twice gives the same path (the offence is not consumed).
    expect(notSerializable('state', offence!).message).toMatch(/^state is not serializable: \$\.a\.b\[0\] is a BigInt/);
  });

  it('maxDepth and maxBytes bound the walk when given', () => {
    expect(checkValue(nested(3), 'v', { maxDepth: 3 })).toBeNull();
    expect(checkValue(nested(4), 'v', { maxDepth: 3 })?.message).toContain('nested deeper than 3 levels');
    expect(checkValue({ s: 'x'.repeat(100) }, 'v', { maxBytes: 1_000 })).toBeNull();
    expect(checkValue({ s: 'x'.repeat(100) }, 'v', { maxBytes: 50 })?.message).toContain('$.s is where the value grows past maxBytes 50');
  });

  it('a refused check leaves nothing behind: the next check of a good value passes', () => {
    expect(checkValue(cyclic(), 'v')).not.toBeNull();
    expect(checkValue({ a: { b: { c: 1 } } }, 'v')).toBeNull();
  });

  it('assertValue throws the same error', () => {
    expect(() => assertValue({ f: () => 1 }, 'input of tell to cart/x')).toThrow(
      /input of tell to cart\/x is not serializable: \$\.f is a function/,
    );
    expect(() => assertValue({ ok: 1 }, 'input')).not.toThrow();
  });
});

describe('the message fingerprint (idempotency)', () => {
  const cases: Array<[name: string, a: [string, unknown], b: [string, unknown], same: boolean]> = [
    ['same command and input', ['add', { sku: 'tea', qty: 2 }], ['add', { sku: 'tea', qty: 2 }], true],
    ['keys in another order', ['add', { sku: 'tea', qty: 2 }], ['add', { qty: 2, sku: 'tea' }], true],
    ['an undefined property is absent', ['add', { sku: 'tea', note: undefined }], ['add', { sku: 'tea' }], true],
    ['no input and null', ['get', undefined], ['get', null], true],
    ['another command', ['add', { sku: 'tea' }], ['remove', { sku: 'tea' }], false],
    ['another value', ['add', { qty: 2 }], ['add', { qty: 3 }], false],
    ['a number and a string', ['add', { qty: 2 }], ['add', { qty: '2' }], false],
    ['array order matters', ['add', [1, 2]], ['add', [2, 1]], false],
    ['nesting matters', ['add', { a: { b: 1 } }], ['add', { a: { c: 1 } }], false],
    ['command and input do not run together', ['ab', 'c'], ['a', 'bc'], false],
  ];
  it.each(cases)('%s', (_name, a, b, same) => {
    expect(messageFingerprint(...a) === messageFingerprint(...b)).toBe(same);
  });

  it('is short and stable (it is stored in the journal)', () => {
    expect(messageFingerprint('add', { sku: 'tea', qty: 2 })).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(messageFingerprint('add', { sku: 'tea', qty: 2 })).toBe(messageFingerprint('add', { qty: 2, sku: 'tea' }));
  });

  it('never throws on values outside the domain', () => {
    expect(() => messageFingerprint('x', { a: 1n, f: () => 1, d: new Date(0), c: cyclic() })).not.toThrow();
  });
});
