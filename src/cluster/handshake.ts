import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Lane } from './transport.ts';

/**
 * The challenge-response that turns a TCP (or TLS) connection into an authenticated link.
 * Both sides prove knowledge of the cluster secret over a transcript that includes a fresh nonce
 * from each side, so a recorded handshake is useless on a new connection (the server's nonce
 * differs), a proof cannot be reflected (the role is in the MAC), and the identities and lane
 * claimed in the clear are bound to the proof.
 *
 * ```
 *  client                                               server
 *    | HELLO     [v, lane, clientAddr, Nc]   stamp=client  |  check v first (no secret work for a
 *    |------------------------------------------------->  |  peer of another version), remember Nc
 *    | CHALLENGE [v, serverAddr, Ns, proof(server)]        |
 *    | <-------------------------------------------------  |
 *    | check v, proof(server)                              |
 *    | AUTH      [proof(client)]             stamp=client  |  timingSafeEqual(proof(client))
 *    |------------------------------------------------->  |
 *    | READY     []                                        |
 *    | <-------------------------------------------------  |
 *    | DATA frames, each stamped with the client's id and incarnation
 *
 *  Either side that refuses the other says why before closing, so both can log it:
 *    | REFUSE    [reason, v]   reason: "protocol-version" (v is the refuser's version) or
 *    |                         "auth-failed" (the other side's proof did not verify)
 * ```
 * proof(role) = HMAC-SHA256(secret, "troupe-handshake/<v>" ‖ role ‖ Nc ‖ Ns ‖ [lane, client id,
 * incarnation, address, server id, incarnation, address]).
 *
 * `v` is the node-to-node protocol version (NODE_PROTOCOL_VERSION). It is in the HMAC's label, so
 * a man in the middle cannot make two peers believe they agreed on another one. A REFUSE frame
 * is not authenticated (it cannot be: it says authentication failed); it only decides what is
 * logged, never what is trusted.
 */
/** The node-to-node protocol this build speaks: HELLO carries it, a peer of another version is refused. */
export const NODE_PROTOCOL_VERSION = 1;
/** @deprecated The same number as NODE_PROTOCOL_VERSION (its old name). */
export const HANDSHAKE_VERSION = NODE_PROTOCOL_VERSION;
export const NONCE_BYTES = 32;
export const PROOF_BYTES = 32;
/** Handshake frames are tiny: before authentication a peer gets a 1 KiB frame budget, not the data maximum. */
export const MAX_HANDSHAKE_FRAME_BYTES = 1024;
const MAX_ADDRESS_CHARS = 300;

export interface HandshakeParty {
  id: number;
  incarnation: number;
  address: string;
}

export interface Transcript {
  /** The protocol version both sides spoke; default NODE_PROTOCOL_VERSION. */
  version?: number;
  lane: Lane;
  client: HandshakeParty;
  server: HandshakeParty;
  clientNonce: Uint8Array;
  serverNonce: Uint8Array;
}

export type ProofRole = 'client' | 'server';

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

export function handshakeProof(secret: Buffer, role: ProofRole, t: Transcript): Buffer {
  const bound = JSON.stringify([
    t.lane,
    t.client.id,
    t.client.incarnation,
    t.client.address,
    t.server.id,
    t.server.incarnation,
    t.server.address,
  ]);
  const label = `troupe-handshake/${t.version ?? NODE_PROTOCOL_VERSION}\u0000`;
  return createHmac('sha256', secret).update(label).update(role).update(t.clientNonce).update(t.serverNonce).update(bound).digest();
}

/** Constant-time check of a proof received off the wire (of any type). */
export function verifyProof(secret: Buffer, role: ProofRole, t: Transcript, proof: unknown): boolean {
  if (!(proof instanceof Uint8Array) || proof.length !== PROOF_BYTES) return false;
  return timingSafeEqual(handshakeProof(secret, role, t), proof);
}

export interface Hello {
  lane: Lane;
  address: string;
  nonce: Uint8Array;
}

export interface Challenge {
  address: string;
  nonce: Uint8Array;
  proof: Uint8Array;
}

/**
 * The protocol version a HELLO or CHALLENGE claims, read before anything else in it: a peer of
 * another version may lay out the rest differently. Undefined when there is no version to read.
 */
export function claimedVersion(body: unknown): number | undefined {
  if (!Array.isArray(body) || body.length === 0) return undefined;
  const v: unknown = body[0];
  return Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : undefined;
}

/** The body of a HELLO, or why it is not one. */
export function parseHello(body: unknown, expectedVersion = NODE_PROTOCOL_VERSION): Hello | string {
  if (!Array.isArray(body) || body.length !== 4) return 'HELLO body must be a 4-element array';
  const [version, lane, address, nonce] = body as unknown[];
  if (version !== expectedVersion) return `unsupported handshake version ${String(version)}`;
  if (lane !== 'system' && lane !== 'actor') return 'HELLO lane must be "system" or "actor"';
  if (!isAddress(address)) return 'HELLO address must be a short string';
  if (!isNonce(nonce)) return `HELLO nonce must be ${NONCE_BYTES} bytes`;
  return { lane, address, nonce };
}

export function parseChallenge(body: unknown, expectedVersion = NODE_PROTOCOL_VERSION): Challenge | string {
  if (!Array.isArray(body) || body.length !== 4) return 'CHALLENGE body must be a 4-element array';
  const [version, address, nonce, proof] = body as unknown[];
  if (version !== expectedVersion) return `unsupported handshake version ${String(version)}`;
  if (!isAddress(address)) return 'CHALLENGE address must be a short string';
  if (!isNonce(nonce)) return `CHALLENGE nonce must be ${NONCE_BYTES} bytes`;
  if (!(proof instanceof Uint8Array) || proof.length !== PROOF_BYTES) return `CHALLENGE proof must be ${PROOF_BYTES} bytes`;
  return { address, nonce, proof };
}

export function parseAuth(body: unknown): Uint8Array | string {
  if (!Array.isArray(body) || body.length !== 1) return 'AUTH body must be a 1-element array';
  const proof: unknown = body[0];
  if (!(proof instanceof Uint8Array) || proof.length !== PROOF_BYTES) return `AUTH proof must be ${PROOF_BYTES} bytes`;
  return proof;
}

export type RefusalReason = 'protocol-version' | 'auth-failed';

export interface Refusal {
  reason: RefusalReason;
  /** The refusing side's protocol version. */
  version: number;
}

export function refusalBody(reason: RefusalReason, version: number): [RefusalReason, number] {
  return [reason, version];
}

export function parseRefusal(body: unknown): Refusal | string {
  if (!Array.isArray(body) || body.length !== 2) return 'REFUSE body must be a 2-element array';
  const [reason, version] = body as unknown[];
  if (reason !== 'protocol-version' && reason !== 'auth-failed') return 'REFUSE reason must be "protocol-version" or "auth-failed"';
  if (!Number.isSafeInteger(version) || (version as number) < 0) return 'REFUSE version must be a non-negative integer';
  return { reason, version: version as number };
}

function isAddress(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_ADDRESS_CHARS;
}

function isNonce(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array && v.length === NONCE_BYTES;
}

/**
 * The most recent client nonces a server has accepted a HELLO for. A HELLO that repeats one is a
 * replay and is named as such; one older than the cache still fails, on its proof, because the
 * server's nonce is fresh. Capacity 0 disables naming (the proof check remains).
 */
export class NonceCache {
  private readonly seen = new Set<string>();

  constructor(private readonly capacity: number) {}

  /** True when `nonce` was seen before; otherwise remembers it. */
  checkAndRemember(nonce: Uint8Array): boolean {
    if (this.capacity === 0) return false;
    const key = Buffer.from(nonce.buffer, nonce.byteOffset, nonce.byteLength).toString('base64');
    if (this.seen.has(key)) return true;
    this.seen.add(key);
    if (this.seen.size > this.capacity) {
      // A Set iterates in insertion order: the first key is the oldest.
      const oldest = this.seen.values().next().value as string;
      this.seen.delete(oldest);
    }
    return false;
  }

  get size(): number {
    return this.seen.size;
  }
}
