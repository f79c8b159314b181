/**
 * A userspace TCP proxy to put on one node-to-node link (the kernel here has no `tc netem`):
 * every accepted connection is forwarded to `target`, each direction through its own pipe that
 *   - delays every chunk by `delayMs` (changeable while running), keeping the byte order: a chunk
 *     is written once it is due and every chunk before it was written;
 *   - with `framing`, cuts the stream into units and, for DATA units only, duplicates some and
 *     swaps some adjacent pairs (`frames`):
 *       'troupe-frames'  the transport's length-prefixed frames (frame-codec.ts: u32 length, then
 *                        type, sender stamp, body); DATA = SystemData/ActorData. Handshake frames
 *                        always pass untouched: the fault is on an authenticated link.
 *       'tls-records'    TLS records (type u8, version u16, length u16); DATA = application data
 *                        (23). TLS 1.3 sends its later handshake messages as application data
 *                        too, so a handshake made while the faults are on may be disturbed.
 *
 *   node 1 ──(nft DNAT in ns1: ip(3):7401 → proxy)──▶ LinkProxy ──▶ node 3 :7401
 *             client→server  [delay] [dup/swap DATA frames]  ──▶
 *             server→client  [delay]                         ◀──
 *
 * Loss is not the proxy's job (it would corrupt the byte stream): real packet loss is nft's
 * `numgen random` on the proxy's legs (NetLab.loss), so TCP retransmits as it would on a bad link.
 *
 * ```ts
 * const proxy = new LinkProxy({ target: { host: '10.0.0.3', port: 7401 }, listen: { host: '10.0.0.254' } });
 * const port = await proxy.start();
 * proxy.delayMs = 200;                        // the fault
 * proxy.frames = { duplicate: 0.05, swap: 0.05 };
 * await proxy.close();
 * ```
 */
import net from 'node:net';

/** Per DATA frame probabilities, each in [0, 1]. */
export interface FrameFaults {
  duplicate: number;
  swap: number;
}

export interface LinkProxyOptions {
  target: { host: string; port: number };
  /** Where to listen; default 127.0.0.1 on an ephemeral port. */
  listen?: { host: string; port?: number };
  /** One-way delay applied to each direction, ms; default 0. */
  delayMs?: number;
  /** Cut each stream into these units, so that `frames` faults can be applied; default none (bytes only). */
  framing?: Framing;
  /** DATA unit faults (needs `framing`); changeable while running through `set`. */
  frames?: FrameFaults;
  /** Source of the duplicate/swap draws, in [0, 1); seedable for the unit test. */
  random?: () => number;
  /** How long a frame held back for a swap waits for a successor before it goes alone, ms; default 20. */
  swapHoldMs?: number;
}

export interface LinkProxyStats {
  connections: number;
  /** Bytes received from either side (before any duplication). */
  bytes: number;
  /** DATA frames seen (framing). */
  dataFrames: number;
  duplicated: number;
  swapped: number;
}

export type Framing = 'troupe-frames' | 'tls-records';

/** How to cut a stream into units: header size, a unit's total size from its header, which units are DATA. */
const FRAMINGS: Record<Framing, { header: number; size(b: Buffer): number; isData(b: Buffer): boolean }> = {
  // frame-codec.ts: FrameType.SystemData 0x10, ActorData 0x11 at offset 4.
  'troupe-frames': { header: 5, size: (b) => 4 + b.readUInt32BE(0), isData: (b) => b[4] === 0x10 || b[4] === 0x11 },
  // RFC 8446 §5.1: ContentType application_data(23).
  'tls-records': { header: 5, size: (b) => 5 + b.readUInt16BE(3), isData: (b) => b[0] === 23 },
};
/** A unit declared larger than this is not one of ours: the pipe falls back to bytes (the node refuses it anyway). */
const MAX_SANE_FRAME = 64 * 1024 * 1024;
/** Bytes a pipe may hold (queued for their delay) before it stops reading its source. */
const HIGH_WATER = 4 * 1024 * 1024;

export class LinkProxy {
  delayMs: number;
  frames: FrameFaults | undefined;
  readonly stats: LinkProxyStats = { connections: 0, bytes: 0, dataFrames: 0, duplicated: 0, swapped: 0 };
  readonly random: () => number;
  readonly swapHoldMs: number;
  readonly framing: Framing | undefined;
  // Half-open: a FIN must follow the delayed bytes before it, not cut them off.
  private readonly server = net.createServer({ allowHalfOpen: true }, (s) => this.accept(s));
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly o: LinkProxyOptions) {
    validateFaults(o.frames);
    if (o.frames !== undefined && o.framing === undefined) throw new Error('LinkProxy frames needs a framing');
    if (o.framing !== undefined && !(o.framing in FRAMINGS))
      throw new Error(`LinkProxy framing must be 'troupe-frames' or 'tls-records' (got ${String(o.framing)})`);
    validateDelay(o.delayMs);
    this.delayMs = o.delayMs ?? 0;
    this.frames = o.frames;
    this.random = o.random ?? Math.random;
    this.swapHoldMs = o.swapHoldMs ?? 20;
    this.framing = o.framing;
  }

  /** Listens; resolves with the port. */
  start(): Promise<number> {
    const { host, port } = this.o.listen ?? { host: '127.0.0.1' };
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port ?? 0, host, () => resolve((this.server.address() as net.AddressInfo).port));
    });
  }

  /**
   * Replaces the frame faults (none when `frames` is left out: units are still parsed, and pass
   * untouched) and, when given, the delay. Both are validated as in the constructor.
   */
  set(faults: { delayMs?: number; frames?: FrameFaults }): void {
    validateFaults(faults.frames);
    validateDelay(faults.delayMs);
    if (faults.frames !== undefined && this.framing === undefined) throw new Error('LinkProxy frames needs a framing');
    if (faults.delayMs !== undefined) this.delayMs = faults.delayMs;
    this.frames = faults.frames;
  }

  /** Stops listening and destroys every connection (the nodes see resets and reconnect elsewhere). */
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    this.stats.connections++;
    const upstream = net.connect({ port: this.o.target.port, host: this.o.target.host, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.once('close', () => this.sockets.delete(s));
    }
    // Either side failing takes the other down at once, as a broken link would.
    const kill = () => (client.destroy(), upstream.destroy());
    client.once('error', kill).once('close', kill);
    upstream.once('error', kill).once('close', kill);
    new Pipe(this, client, upstream);
    new Pipe(this, upstream, client);
  }
}

function validateDelay(ms: number | undefined): void {
  if (ms !== undefined && !(Number.isFinite(ms) && ms >= 0)) throw new Error(`LinkProxy delayMs must be a non-negative number (got ${ms})`);
}

function validateFaults(f: FrameFaults | undefined): void {
  if (f === undefined) return;
  for (const k of ['duplicate', 'swap'] as const)
    if (!(f[k] >= 0 && f[k] <= 1)) throw new Error(`LinkProxy frames.${k} must be a probability in [0, 1] (got ${f[k]})`);
}

/** One direction of one proxied connection. */
class Pipe {
  /** Chunks (or frames) waiting for their due time, in order; `null` is the source's FIN. */
  private readonly queue: Array<{ due: number; data: Buffer | null }> = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Frame mode: the bytes of an incomplete frame. */
  private partial: Buffer = Buffer.alloc(0);
  /** Frame mode: a DATA frame held back to go after the next one. */
  private held: Buffer | undefined;
  private holdTimer: NodeJS.Timeout | undefined;
  /** Once the stream stops looking like frames, it is forwarded as bytes to the end. */
  private bytesOnly = false;

  constructor(
    private readonly proxy: LinkProxy,
    private readonly from: net.Socket,
    private readonly to: net.Socket,
  ) {
    from.on('data', (chunk: Buffer) => this.onData(chunk));
    from.on('end', () => {
      this.release();
      this.push(null);
    });
    to.on('drain', () => from.resume());
    to.once('close', () => (clearTimeout(this.timer), clearTimeout(this.holdTimer)));
  }

  private onData(chunk: Buffer): void {
    this.proxy.stats.bytes += chunk.length;
    const framing = this.proxy.framing === undefined ? undefined : FRAMINGS[this.proxy.framing];
    if (framing === undefined || this.bytesOnly) {
      this.release();
      return this.push(chunk);
    }
    let buf = this.partial.length === 0 ? chunk : Buffer.concat([this.partial, chunk]);
    while (buf.length >= framing.header) {
      const size = framing.size(buf);
      if (size > MAX_SANE_FRAME) {
        this.bytesOnly = true;
        this.release();
        this.push(buf);
        buf = Buffer.alloc(0);
        break;
      }
      if (buf.length < size) break;
      // A copy: the chunk's memory must not be shared by a frame sent twice or late.
      const unit = Buffer.from(buf.subarray(0, size));
      this.onFrame(unit, framing.isData(unit));
      buf = buf.subarray(size);
    }
    this.partial = Buffer.from(buf);
  }

  private onFrame(frame: Buffer, isData: boolean): void {
    const faults = this.proxy.frames;
    if (faults === undefined || !isData) {
      this.release();
      return this.push(frame);
    }
    this.proxy.stats.dataFrames++;
    if (this.held !== undefined) {
      // The swap: this frame overtakes the one held back.
      const first = this.held;
      this.held = undefined;
      clearTimeout(this.holdTimer);
      this.emit(frame);
      this.emit(first);
      this.proxy.stats.swapped++;
      return;
    }
    if (this.proxy.random() < faults.swap) {
      this.held = frame;
      this.holdTimer = setTimeout(() => this.release(), this.proxy.swapHoldMs);
      return;
    }
    this.emit(frame);
  }

  /** Sends a DATA frame, twice if the draw says so. */
  private emit(frame: Buffer): void {
    this.push(frame);
    if (this.proxy.frames !== undefined && this.proxy.random() < this.proxy.frames.duplicate) {
      this.proxy.stats.duplicated++;
      this.push(frame);
    }
  }

  /** A held frame goes on alone (no successor came in time, or a non-DATA frame must follow it). */
  private release(): void {
    if (this.held === undefined) return;
    clearTimeout(this.holdTimer);
    const frame = this.held;
    this.held = undefined;
    this.emit(frame);
  }

  private push(data: Buffer | null): void {
    const delay = this.proxy.delayMs;
    if (delay === 0 && this.queue.length === 0) return this.write(data);
    this.queue.push({ due: Date.now() + delay, data });
    this.queuedBytes += data?.length ?? 0;
    if (this.queuedBytes > HIGH_WATER) this.from.pause();
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== undefined || this.queue.length === 0) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        const now = Date.now();
        // In order: a later chunk never goes before an earlier one, even if the delay shrank meanwhile.
        while (this.queue.length > 0 && this.queue[0]!.due <= now) {
          const { data } = this.queue.shift()!;
          this.queuedBytes -= data?.length ?? 0;
          this.write(data);
        }
        if (this.queuedBytes <= HIGH_WATER) this.from.resume();
        this.schedule();
      },
      Math.max(0, this.queue[0]!.due - Date.now()),
    );
  }

  private write(data: Buffer | null): void {
    if (this.to.destroyed) return;
    if (data === null) return void this.to.end();
    if (!this.to.write(data)) this.from.pause();
  }
}
