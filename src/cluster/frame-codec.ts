import { Packr, Unpackr, RESERVE_START_SPACE } from 'msgpackr';
import { troupeError, type TroupeError } from '../core/errors.ts';

/**
 * The node-to-node wire format. Every frame, handshake frames included:
 *
 * ```
 *  0        4      5            7                     15
 *  +--------+------+------------+---------------------+------------------------+
 *  | length | type | sender id  | sender incarnation  | body (msgpack, may be  |
 *  | u32 BE | u8   | u16 BE     | f64 BE              |  empty for READY)      |
 *  +--------+------+------------+---------------------+------------------------+
 *            \__________________ length bytes __________________________________/
 * ```
 *
 * `length` counts everything after the prefix, so it is at least FRAME_HEADER_BYTES and at most
 * the receiver's maximum; both are checked from the prefix alone, before any byte is buffered.
 * The incarnation is a float64 so any non-negative safe integer fits (a counter, or a start time
 * in milliseconds).
 */
export const FRAME_PREFIX_BYTES = 4;
export const FRAME_HEADER_BYTES = 11;
const PREAMBLE_BYTES = FRAME_PREFIX_BYTES + FRAME_HEADER_BYTES;

export const FrameType = {
  /** client → server: `[version, lane, address, clientNonce]` */
  Hello: 0x01,
  /** server → client: `[version, address, serverNonce, serverProof]` */
  Challenge: 0x02,
  /** client → server: `[clientProof]` */
  Auth: 0x03,
  /** server → client: empty body; the link is authenticated */
  Ready: 0x04,
  /** either way, before closing a handshake: `[reason, version]` (see handshake.ts) */
  Refuse: 0x05,
  /** client → server: one payload on the 'system' lane */
  SystemData: 0x10,
  /** client → server: one payload on the 'actor' lane */
  ActorData: 0x11,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

export interface FrameStamp {
  readonly id: number;
  readonly incarnation: number;
}

// Records would let a peer define object shapes that persist across frames: useRecords: false
// keeps every frame self-contained. msgpackr renames a `__proto__` key to `__proto_` and never
// assigns prototypes, `constructor` is just an own key, and array-valued keys are refused.
const packr = new Packr({ useRecords: false, structuredClone: false });
// copyBuffers: a `bin` value must not alias the receive buffer, which is reused for the next frame.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, structuredClone: false, copyBuffers: true });

/**
 * Encodes one frame in a single buffer: msgpackr reserves the preamble in front of the body, so
 * the payload is never copied to prepend the header. The returned buffer is a view into
 * msgpackr's slab and stays valid (msgpackr moves to a fresh slab rather than overwrite).
 * Throws ERR_FRAME_TOO_LARGE / ERR_BAD_FRAME (the caller turns that into onUndeliverable).
 */
export function encodeFrame(type: FrameTypeCode, stamp: FrameStamp, body: unknown, maxFrameBytes: number): Buffer {
  let frame: Buffer;
  if (body === undefined && type === FrameType.Ready) {
    frame = Buffer.allocUnsafe(PREAMBLE_BYTES);
  } else {
    try {
      frame = packr.pack(body, RESERVE_START_SPACE | PREAMBLE_BYTES) as Buffer;
    } catch (e) {
      throw troupeError('ERR_BAD_FRAME', `payload cannot be encoded: ${(e as Error).message}`);
    }
  }
  const length = frame.length - FRAME_PREFIX_BYTES;
  if (length > maxFrameBytes) {
    throw troupeError('ERR_FRAME_TOO_LARGE', `frame of ${length} bytes exceeds the maximum of ${maxFrameBytes}`, {
      length,
      maxFrameBytes,
    });
  }
  frame.writeUInt32BE(length, 0);
  frame[4] = type;
  frame.writeUInt16BE(stamp.id, 5);
  frame.writeDoubleBE(stamp.incarnation, 7);
  return frame;
}

const range = { start: 0, end: 0 };

/** Decodes a msgpack body in place (`buf[start..end)`), with no copy of the frame. Throws on malformed input. */
export function decodeBody(buf: Buffer, start: number, end: number): unknown {
  if (end <= start) throw troupeError('ERR_BAD_FRAME', 'frame body is empty');
  range.start = start;
  range.end = end;
  try {
    return unpackr.unpack(buf, range);
  } catch (e) {
    throw troupeError('ERR_BAD_FRAME', `frame body is not valid msgpack: ${(e as Error).message}`);
  }
}

/** Receives one decoded frame header; the body is `buf[bodyStart..bodyEnd)`, valid only during the call. Return false to stop. */
export type FrameHandler = (
  type: number,
  senderId: number,
  incarnation: number,
  buf: Buffer,
  bodyStart: number,
  bodyEnd: number,
) => boolean;

/** Shared across decoders so a transport can report how much memory partial frames hold. */
export interface ReceiveBufferGauge {
  buffers: number;
  bytes: number;
}

/** A partial-frame buffer above this size is dropped after its frame completes rather than kept for reuse. */
const RETAIN_BYTES = 64 * 1024;
const MIN_BUFFER_BYTES = 256;

/**
 * Splits a byte stream into frames.
 *
 * Complete frames are handed out as views of the socket's own chunk (no copy). Only the tail of a
 * chunk that holds a partial frame is copied, into a receive buffer that grows (doubling, never
 * past the declared frame length) as the rest arrives; the declared length has already been
 * checked against the maximum, so a 4-byte prefix can never make us allocate more than the bytes
 * actually received, times two.
 */
export class FrameDecoder {
  private buf: Buffer | null = null;
  /** Bytes of the partial frame held in `buf` (prefix included). */
  private held = 0;
  /** Total size (prefix included) of the partial frame, once its prefix is known; 0 before. */
  private need = 0;
  private stopped = false;

  constructor(
    public maxFrameBytes: number,
    private readonly onFrame: FrameHandler,
    private readonly gauge: ReceiveBufferGauge = { buffers: 0, bytes: 0 },
  ) {}

  get bufferedBytes(): number {
    return this.buf === null ? 0 : this.buf.length;
  }

  /** Feeds one chunk; returns the protocol error that must close the connection, if any. */
  push(chunk: Buffer): TroupeError | undefined {
    if (this.stopped) return undefined;
    const len = chunk.length;
    let off = 0;
    if (this.held > 0) {
      if (this.need === 0) {
        const take = Math.min(FRAME_PREFIX_BYTES - this.held, len);
        chunk.copy(this.buf!, this.held, 0, take);
        this.held += take;
        off = take;
        if (this.held < FRAME_PREFIX_BYTES) return undefined;
        const err = this.check(this.buf!.readUInt32BE(0));
        if (err) return err;
        this.need = FRAME_PREFIX_BYTES + this.buf!.readUInt32BE(0);
      }
      const take = Math.min(this.need - this.held, len - off);
      this.reserve(this.held + take);
      chunk.copy(this.buf!, this.held, off, off + take);
      this.held += take;
      off += take;
      if (this.held < this.need) return undefined;
      const buf = this.buf!;
      const end = this.need;
      this.held = 0;
      this.need = 0;
      const go = this.emit(buf, 0, end);
      if (buf.length > RETAIN_BYTES) this.dropBuffer();
      if (!go) return undefined;
    }
    while (len - off >= FRAME_PREFIX_BYTES) {
      const length = chunk.readUInt32BE(off);
      const err = this.check(length);
      if (err) return err;
      if (len - off - FRAME_PREFIX_BYTES < length) break;
      const start = off;
      off += FRAME_PREFIX_BYTES + length;
      if (!this.emit(chunk, start, off)) return undefined;
    }
    if (off < len) {
      const rest = len - off;
      this.need = rest >= FRAME_PREFIX_BYTES ? FRAME_PREFIX_BYTES + chunk.readUInt32BE(off) : 0;
      this.reserve(Math.max(rest, FRAME_PREFIX_BYTES));
      chunk.copy(this.buf!, 0, off, len);
      this.held = rest;
    }
    return undefined;
  }

  /** Stops decoding and releases the receive buffer (the connection is closing). */
  release(): void {
    this.stopped = true;
    this.held = 0;
    this.need = 0;
    this.dropBuffer();
  }

  private check(length: number): TroupeError | undefined {
    if (length > this.maxFrameBytes) {
      return troupeError('ERR_FRAME_TOO_LARGE', `frame length ${length} exceeds the maximum of ${this.maxFrameBytes}`, {
        length,
        maxFrameBytes: this.maxFrameBytes,
      });
    }
    if (length < FRAME_HEADER_BYTES) {
      return troupeError('ERR_BAD_FRAME', `frame length ${length} is shorter than the ${FRAME_HEADER_BYTES}-byte header`, {
        length,
      });
    }
    return undefined;
  }

  private emit(buf: Buffer, start: number, end: number): boolean {
    const h = start + FRAME_PREFIX_BYTES;
    const go = this.onFrame(buf[h]!, buf.readUInt16BE(h + 1), buf.readDoubleBE(h + 3), buf, h + FRAME_HEADER_BYTES, end);
    return go && !this.stopped;
  }

  /** Grows the receive buffer to hold `bytes`, doubling but never beyond the declared frame. */
  private reserve(bytes: number): void {
    const cap = this.buf === null ? 0 : this.buf.length;
    if (cap >= bytes) return;
    let size = Math.max(bytes, cap * 2, MIN_BUFFER_BYTES);
    if (this.need > 0) size = Math.min(size, this.need);
    size = Math.max(size, bytes);
    const next = Buffer.allocUnsafe(size);
    if (this.buf !== null && this.held > 0) this.buf.copy(next, 0, 0, this.held);
    this.gauge.bytes += size - cap;
    if (this.buf === null) this.gauge.buffers++;
    this.buf = next;
  }

  private dropBuffer(): void {
    if (this.buf === null) return;
    this.gauge.bytes -= this.buf.length;
    this.gauge.buffers--;
    this.buf = null;
  }
}
