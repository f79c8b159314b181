import { describe, expect, it } from 'vitest';
import {
  decodeBody,
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameType,
  type ReceiveBufferGauge,
} from '../../src/cluster/frame-codec.ts';
import { handshakeProof, NonceCache, newNonce, parseHello, verifyProof, type Transcript } from '../../src/cluster/handshake.ts';
import { reconnectDelay } from '../../src/cluster/reconnect-backoff.ts';
import { isTroupeError, type TroupeError } from '../../src/core/errors.ts';

const stamp = { id: 42, incarnation: 1_700_000_000_123 };
const MAX = 1 << 20;

interface Decoded {
  type: number;
  id: number;
  incarnation: number;
  body: unknown;
}

function decoderFor(max = MAX, gauge?: ReceiveBufferGauge): { d: FrameDecoder; out: Decoded[] } {
  const out: Decoded[] = [];
  const d = new FrameDecoder(
    max,
    (type, id, incarnation, buf, start, end) => {
      out.push({ type, id, incarnation, body: end > start ? decodeBody(buf, start, end) : undefined });
      return true;
    },
    gauge,
  );
  return { d, out };
}

function prefix(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

describe('frame codec', () => {
  const payloads: unknown[] = [
    [0, 'counter', 'key-123', 'incr', { by: 1 }],
    { nested: { a: [1, 2, 3], s: 'ünïcødé' } },
    'x'.repeat(70_000),
    null,
    Buffer.from([1, 2, 3]),
  ];

  it('round-trips frames with the sender stamp', () => {
    const { d, out } = decoderFor();
    for (const p of payloads) expect(d.push(encodeFrame(FrameType.ActorData, stamp, p, MAX))).toBeUndefined();
    expect(out.map((f) => f.body)).toEqual(payloads);
    for (const f of out) expect(f).toMatchObject({ type: FrameType.ActorData, id: 42, incarnation: 1_700_000_000_123 });
  });

  it('reassembles frames split at every byte boundary and many frames per chunk', () => {
    const stream = Buffer.concat(payloads.map((p, i) => encodeFrame(i % 2 ? FrameType.SystemData : FrameType.ActorData, stamp, p, MAX)));
    for (const size of [1, 2, 3, 4, 5, 7, 15, 16, 100, 4096, stream.length]) {
      const gauge = { buffers: 0, bytes: 0 };
      const { d, out } = decoderFor(MAX, gauge);
      for (let off = 0; off < stream.length; off += size) expect(d.push(stream.subarray(off, off + size))).toBeUndefined();
      expect(
        out.map((f) => f.body),
        `chunk size ${size}`,
      ).toEqual(payloads);
      d.release();
      expect(gauge).toEqual({ buffers: 0, bytes: 0 });
    }
  });

  it('hands out complete frames without buffering them', () => {
    const gauge = { buffers: 0, bytes: 0 };
    const { d, out } = decoderFor(MAX, gauge);
    const chunk = Buffer.concat(Array.from({ length: 100 }, (_, i) => encodeFrame(FrameType.ActorData, stamp, i, MAX)));
    d.push(chunk);
    expect(out).toHaveLength(100);
    expect(gauge.buffers).toBe(0);
  });

  it('grows the receive buffer with the bytes that arrive, not with the declared length', () => {
    const gauge = { buffers: 0, bytes: 0 };
    const { d } = decoderFor(8 << 20, gauge);
    // A peer declares 8 MiB and sends 10 bytes: we hold a small buffer, not 8 MiB.
    d.push(Buffer.concat([prefix(8 << 20), Buffer.alloc(10)]));
    expect(gauge.buffers).toBe(1);
    expect(gauge.bytes).toBeLessThanOrEqual(256);
    d.push(Buffer.alloc(100_000));
    expect(gauge.bytes).toBeLessThanOrEqual(2 * 100_014);
    d.release();
    expect(gauge).toEqual({ buffers: 0, bytes: 0 });
  });

  const violations: Array<{ name: string; bytes: Buffer; code: string }> = [
    { name: 'length prefix 0xFFFFFFFF', bytes: prefix(0xffffffff), code: 'ERR_FRAME_TOO_LARGE' },
    { name: 'length prefix one over the maximum', bytes: prefix(MAX + 1), code: 'ERR_FRAME_TOO_LARGE' },
    { name: 'zero-length frame', bytes: prefix(0), code: 'ERR_BAD_FRAME' },
    {
      name: 'frame shorter than the header',
      bytes: Buffer.concat([prefix(FRAME_HEADER_BYTES - 1), Buffer.alloc(10)]),
      code: 'ERR_BAD_FRAME',
    },
  ];
  for (const v of violations) {
    it(`rejects a ${v.name} from the prefix alone, allocating nothing`, () => {
      const gauge = { buffers: 0, bytes: 0 };
      const { d, out } = decoderFor(MAX, gauge);
      const err = d.push(v.bytes);
      expect(err?.code).toBe(v.code);
      expect(out).toHaveLength(0);
      expect(gauge.bytes).toBe(0);
    });
    it(`rejects a ${v.name} arriving one byte at a time`, () => {
      const { d } = decoderFor(MAX);
      let err: TroupeError | undefined;
      for (const b of v.bytes) err ??= d.push(Buffer.from([b]));
      expect(err?.code).toBe(v.code);
    });
  }

  it('refuses to encode a payload over the maximum, and one msgpack cannot encode', () => {
    expect(() => encodeFrame(FrameType.ActorData, stamp, 'x'.repeat(2000), 1024)).toThrow(
      expect.objectContaining({ code: 'ERR_FRAME_TOO_LARGE' }),
    );
    for (const unencodable of [Symbol('x'), 2n ** 70n]) {
      let err: unknown;
      try {
        encodeFrame(FrameType.ActorData, stamp, [unencodable], MAX);
      } catch (e) {
        err = e;
      }
      expect(isTroupeError(err, 'ERR_BAD_FRAME')).toBe(true);
    }
  });

  it('rejects trailing bytes and truncated msgpack inside a frame', () => {
    const good = encodeFrame(FrameType.ActorData, stamp, [1, 2, 3], MAX);
    const body = good.subarray(15);
    expect(() => decodeBody(Buffer.concat([body, Buffer.from([0xc0])]), 0, body.length + 1)).toThrow(/valid msgpack/);
    expect(() => decodeBody(body, 0, body.length - 1)).toThrow(/valid msgpack/);
  });
});

describe('decoding never reaches a prototype', () => {
  // Hand-written msgpack, so the bytes are exactly what an attacker would send.
  const str = (s: string): Buffer => {
    const b = Buffer.from(s);
    return Buffer.concat([Buffer.from([0xa0 | b.length]), b]);
  };
  const str8 = (s: string): Buffer => {
    const b = Buffer.from(s);
    return Buffer.concat([Buffer.from([0xd9, b.length]), b]);
  };
  const map = (...kv: Buffer[]): Buffer => Buffer.concat([Buffer.from([0x80 | (kv.length / 2)]), ...kv]);
  const arr = (...items: Buffer[]): Buffer => Buffer.concat([Buffer.from([0x90 | items.length]), ...items]);
  const polluted = map(str('polluted'), str('yes'));

  const cases: Array<{ name: string; bytes: Buffer }> = [
    { name: '{"__proto__": {...}} as a fixstr key', bytes: map(str('__proto__'), polluted) },
    { name: '{"__proto__": {...}} as a str8 key', bytes: map(str8('__proto__'), polluted) },
    { name: '{"constructor": {"prototype": {...}}}', bytes: map(str('constructor'), map(str('prototype'), polluted)) },
    { name: '__proto__ nested in an array', bytes: arr(Buffer.from([0x01]), map(str('a'), map(str('__proto__'), polluted))) },
    { name: '{"__proto__": "string"}', bytes: map(str('__proto__'), str('x')) },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const value = decodeBody(c.bytes, 0, c.bytes.length) as Record<string, unknown>;
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect((Object.prototype as unknown as Record<string, unknown>).polluted).toBeUndefined();
      expect(Object.prototype.constructor).toBe(Object);
      const objects: unknown[] = [value];
      while (objects.length > 0) {
        const o = objects.pop();
        if (o === null || typeof o !== 'object') continue;
        expect(Object.getPrototypeOf(o) === Object.prototype || Array.isArray(o)).toBe(true);
        // Only the attacker's own inner object may carry the key; nothing inherits it.
        if (!Object.hasOwn(o, 'polluted')) expect((o as Record<string, unknown>).polluted).toBeUndefined();
        objects.push(...Object.values(o));
      }
    });
  }

  it('refuses a map key that is an array (it would stringify to "__proto__")', () => {
    const bytes = map(arr(str('__proto__')), polluted);
    expect(() => decodeBody(bytes, 0, bytes.length)).toThrow(expect.objectContaining({ code: 'ERR_BAD_FRAME' }));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('an own "__proto__" key survives encoding as data, not as a prototype', () => {
    const input = JSON.parse('{"__proto__": {"polluted": "yes"}, "ok": 1}') as unknown;
    const frame = encodeFrame(FrameType.ActorData, stamp, input, MAX);
    const value = decodeBody(frame, 15, frame.length) as Record<string, unknown>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(value.polluted).toBeUndefined();
    expect(value.ok).toBe(1);
  });
});

describe('handshake proofs', () => {
  const secret = Buffer.from('cluster-secret');
  const base: Transcript = {
    lane: 'actor',
    client: { id: 1, incarnation: 1, address: '127.0.0.1:1001' },
    server: { id: 2, incarnation: 5, address: '127.0.0.1:1002' },
    clientNonce: newNonce(),
    serverNonce: newNonce(),
  };
  const proof = handshakeProof(secret, 'client', base);

  const mismatches: Array<{ name: string; secret?: Buffer; role?: 'server'; t?: Partial<Transcript>; proof?: unknown }> = [
    { name: 'a different secret', secret: Buffer.from('cluster-secreT') },
    { name: 'the other role (reflection)', role: 'server' },
    { name: 'a fresh server nonce (replay)', t: { serverNonce: newNonce() } },
    { name: 'a fresh client nonce', t: { clientNonce: newNonce() } },
    { name: 'another lane', t: { lane: 'system' } },
    { name: 'another client id', t: { client: { ...base.client, id: 9 } } },
    { name: 'another client incarnation', t: { client: { ...base.client, incarnation: 2 } } },
    { name: 'another server', t: { server: { ...base.server, incarnation: 6 } } },
    { name: 'a truncated proof', proof: proof.subarray(0, 31) },
    { name: 'a proof that is not bytes', proof: proof.toString('hex') },
  ];

  it('verifies the matching transcript', () => {
    expect(verifyProof(secret, 'client', base, proof)).toBe(true);
  });
  for (const m of mismatches) {
    it(`fails with ${m.name}`, () => {
      expect(verifyProof(m.secret ?? secret, m.role ?? 'client', { ...base, ...m.t }, m.proof ?? proof)).toBe(false);
    });
  }

  it('parses only well-formed HELLOs', () => {
    expect(parseHello([1, 'actor', '127.0.0.1:1', newNonce()])).toMatchObject({ lane: 'actor' });
    expect(parseHello([2, 'actor', '127.0.0.1:1', newNonce()])).toMatch(/version/);
    expect(parseHello([1, 'other', '127.0.0.1:1', newNonce()])).toMatch(/lane/);
    expect(parseHello([1, 'actor', 'x'.repeat(400), newNonce()])).toMatch(/address/);
    expect(parseHello([1, 'actor', '127.0.0.1:1', Buffer.alloc(5)])).toMatch(/nonce/);
    expect(parseHello({ 0: 1 })).toMatch(/array/);
  });

  it('remembers a bounded number of nonces', () => {
    const cache = new NonceCache(2);
    const [a, b, c] = [newNonce(), newNonce(), newNonce()];
    expect(cache.checkAndRemember(a)).toBe(false);
    expect(cache.checkAndRemember(a)).toBe(true);
    cache.checkAndRemember(b);
    cache.checkAndRemember(c);
    expect(cache.size).toBe(2);
    expect(cache.checkAndRemember(a)).toBe(false); // evicted: the proof check still refuses a replay
    expect(new NonceCache(0).checkAndRemember(a)).toBe(false);
  });
});

describe('reconnectDelay', () => {
  const cases: Array<[name: string, attempt: number, jitter: number, expected: number]> = [
    ['first retry, no jitter', 1, 0, 50],
    ['first retry, full jitter', 1, 1, 100],
    ['doubles per attempt', 3, 0, 200],
    ['doubles per attempt, full jitter', 4, 1, 800],
    ['caps at max', 10, 1, 5_000],
    ['caps at max, no jitter', 10, 0, 2_500],
    ['huge attempt count stays finite', 10_000, 0.5, 3_750],
    ['attempt 0 behaves like 1', 0, 0, 50],
  ];
  for (const [name, attempt, jitter, expected] of cases) {
    it(name, () => expect(reconnectDelay(attempt, 100, 5_000, jitter)).toBe(expected));
  }
});

describe('frame codec boundaries', () => {
  function frameOfLength(length: number, type: number = FrameType.ActorData): Buffer {
    // A raw frame: prefix, header (type, id 7, incarnation 3) and `length - 11` zero body bytes.
    const f = Buffer.alloc(4 + Math.max(length, FRAME_HEADER_BYTES));
    f.writeUInt32BE(length, 0);
    f[4] = type;
    f.writeUInt16BE(7, 5);
    f.writeDoubleBE(3, 7);
    return f.subarray(0, 4 + length);
  }

  it('lays out the header as documented: u32 length, u8 type, u16 id, f64 incarnation', () => {
    const f = encodeFrame(FrameType.SystemData, { id: 0x0102, incarnation: 1.5 }, 'hi', MAX);
    expect(f.readUInt32BE(0)).toBe(f.length - 4);
    expect(f[4]).toBe(FrameType.SystemData);
    expect(f.readUInt16BE(5)).toBe(0x0102);
    expect(f.readDoubleBE(7)).toBe(1.5);
    expect(decodeBody(f, 15, f.length)).toBe('hi');
  });

  it('encodes READY as a header with no body, and any other undefined body as msgpack', () => {
    const ready = encodeFrame(FrameType.Ready, stamp, undefined, MAX);
    expect(ready).toHaveLength(15);
    expect(ready.readUInt32BE(0)).toBe(FRAME_HEADER_BYTES);
    const data = encodeFrame(FrameType.ActorData, stamp, undefined, MAX);
    expect(data.length).toBeGreaterThan(15);
    expect(decodeBody(data, 15, data.length)).toBeUndefined();
    const readyWithBody = encodeFrame(FrameType.Ready, stamp, 'x', MAX);
    expect(decodeBody(readyWithBody, 15, readyWithBody.length)).toBe('x');
  });

  it.each([
    { name: 'exactly the maximum', max: 'exact', ok: true },
    { name: 'one byte over the maximum', max: 'one less', ok: false },
  ])('encodes a frame of $name only if it fits', ({ max, ok }) => {
    const length = encodeFrame(FrameType.ActorData, stamp, 'x'.repeat(100), MAX).length - 4;
    const limit = max === 'exact' ? length : length - 1;
    const encode = () => encodeFrame(FrameType.ActorData, stamp, 'x'.repeat(100), limit);
    if (ok) expect(encode().length - 4).toBe(length);
    else {
      expect(encode).toThrow(`frame of ${length} bytes exceeds the maximum of ${limit}`);
      expect(encode).toThrow(expect.objectContaining({ code: 'ERR_FRAME_TOO_LARGE', details: { length, maxFrameBytes: limit } }));
    }
  });

  it('names the encoding failure', () => {
    expect(() => encodeFrame(FrameType.ActorData, stamp, [Symbol('x')], MAX)).toThrow(/^payload cannot be encoded: /);
  });

  it.each([
    { name: 'the header alone (11 bytes)', length: FRAME_HEADER_BYTES },
    { name: 'exactly the maximum', length: 64 },
  ])('accepts a frame of $name', ({ length }) => {
    const frames: number[][] = [];
    const d = new FrameDecoder(64, (type, id, incarnation, _buf, start, end) => frames.push([type, id, incarnation, end - start]) > 0);
    expect(d.push(frameOfLength(length))).toBeUndefined();
    expect(frames).toEqual([[FrameType.ActorData, 7, 3, length - FRAME_HEADER_BYTES]]);
  });

  it.each([
    {
      name: 'one over the maximum',
      length: 65,
      error: 'frame length 65 exceeds the maximum of 64',
      code: 'ERR_FRAME_TOO_LARGE',
      details: { length: 65, maxFrameBytes: 64 },
    },
    {
      name: 'one under the header',
      length: 10,
      error: 'frame length 10 is shorter than the 11-byte header',
      code: 'ERR_BAD_FRAME',
      details: { length: 10 },
    },
  ])('names a frame of $name', ({ length, error, code, details }) => {
    const { d } = decoderFor(64);
    const err = d.push(frameOfLength(length));
    expect(err?.code).toBe(code);
    expect(err?.message).toBe(error);
    expect(err?.details).toEqual(details);
  });

  it('holds every byte of a partial frame it has received', () => {
    // A buffer smaller than the bytes held would lose the tail of the frame.
    const gauge = { buffers: 0, bytes: 0 };
    const d = new FrameDecoder(MAX, () => true, gauge);
    const frame = frameOfLength(4_000);
    d.push(frame.subarray(0, 1_000));
    expect(d.bufferedBytes).toBeGreaterThanOrEqual(1_000);
    expect(gauge.bytes).toBeGreaterThanOrEqual(1_000);
  });

  it('refuses an empty body by name', () => {
    expect(() => decodeBody(Buffer.alloc(20), 15, 15)).toThrow('frame body is empty');
    expect(() => decodeBody(Buffer.alloc(20), 15, 14)).toThrow('frame body is empty');
  });

  it('stops handing out frames when the handler returns false, and after release', () => {
    const seen: number[] = [];
    const d = new FrameDecoder(MAX, (_t, id) => {
      seen.push(id);
      return false;
    });
    const two = Buffer.concat([
      encodeFrame(FrameType.ActorData, { id: 1, incarnation: 1 }, 1, MAX),
      encodeFrame(FrameType.ActorData, { id: 2, incarnation: 1 }, 2, MAX),
    ]);
    expect(d.push(two)).toBeUndefined();
    expect(seen).toEqual([1]);
    const { d: d2, out } = decoderFor();
    d2.release();
    expect(d2.push(two)).toBeUndefined();
    expect(out).toHaveLength(0);
    expect(d2.bufferedBytes).toBe(0);
  });

  it('keeps a small receive buffer for reuse and drops one over 64 KiB once its frame completes', () => {
    for (const { size, kept } of [
      { size: 1_000, kept: 1 },
      { size: 100_000, kept: 0 },
    ]) {
      const gauge = { buffers: 0, bytes: 0 };
      const { d, out } = decoderFor(MAX, gauge);
      const frame = encodeFrame(FrameType.ActorData, stamp, 'x'.repeat(size), MAX);
      d.push(frame.subarray(0, 10));
      expect(d.bufferedBytes).toBeGreaterThan(0);
      d.push(frame.subarray(10));
      expect(out).toHaveLength(1);
      expect(gauge.buffers).toBe(kept);
      expect(d.bufferedBytes === 0).toBe(kept === 0);
    }
  });

  it('puts plain msgpack on the wire: no records, which would make frames depend on each other', () => {
    const f = encodeFrame(FrameType.ActorData, stamp, { a: 1 }, MAX);
    expect(f.subarray(15).toString('hex')).toBe('de0001a16101'); // map16 { "a": 1 }
  });

  it('hands out binary values that do not alias the receive buffer', () => {
    const frame = encodeFrame(FrameType.ActorData, stamp, Buffer.from([1, 2, 3]), MAX);
    const value = decodeBody(frame, 15, frame.length) as Buffer;
    frame.fill(0xee); // the decoder reuses its buffer for the next frame
    expect([...value]).toEqual([1, 2, 3]);
  });

  it('stops at a frame completed from held bytes when the handler returns false', () => {
    const seen: number[] = [];
    const d = new FrameDecoder(MAX, (_t, id) => seen.push(id) < 0);
    const first = encodeFrame(FrameType.ActorData, { id: 1, incarnation: 1 }, 1, MAX);
    const second = encodeFrame(FrameType.ActorData, { id: 2, incarnation: 1 }, 2, MAX);
    d.push(first.subarray(0, 6));
    d.push(Buffer.concat([first.subarray(6), second]));
    expect(seen).toEqual([1]);
  });

  it('stops when the handler releases the decoder, even if it returns true', () => {
    const seen: number[] = [];
    const d: FrameDecoder = new FrameDecoder(MAX, (_t, id) => {
      seen.push(id);
      d.release();
      return true;
    });
    const two = Buffer.concat([1, 2].map((id) => encodeFrame(FrameType.ActorData, { id, incarnation: 1 }, id, MAX)));
    d.push(two);
    expect(seen).toEqual([1]);
  });

  it('never grows the receive buffer past the declared frame', () => {
    const gauge = { buffers: 0, bytes: 0 };
    const d = new FrameDecoder(MAX, () => true, gauge);
    const frame = frameOfLength(1000); // 1,004 bytes with the prefix
    for (const [from, to] of [
      [0, 10],
      [10, 310],
      [310, 1003],
    ]) {
      d.push(frame.subarray(from, to));
      expect(gauge.bytes).toBeLessThanOrEqual(1004);
    }
  });

  it('keeps a receive buffer of exactly 64 KiB for reuse', () => {
    const gauge = { buffers: 0, bytes: 0 };
    const frames: number[] = [];
    const d = new FrameDecoder(MAX, (_t, id) => frames.push(id) > 0, gauge);
    const frame = frameOfLength(65_536 - 4); // grows 256, 512, … 65,536: exactly the frame
    for (let off = 0; off < frame.length; off += 100) d.push(frame.subarray(off, off + 100));
    expect(frames).toEqual([7]);
    expect(gauge).toEqual({ buffers: 1, bytes: 65_536 });
  });
});
