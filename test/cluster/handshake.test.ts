import { describe, expect, it } from 'vitest';
import {
  claimedVersion,
  handshakeProof,
  NONCE_BYTES,
  NonceCache,
  newNonce,
  parseAuth,
  parseChallenge,
  parseHello,
  parseRefusal,
  PROOF_BYTES,
  refusalBody,
  verifyProof,
  type Transcript,
} from '../../src/cluster/handshake.ts';

// The handshake's pure parts: proofs, body parsers, the replay cache. The socket side is in
// test/transport/tcp-transport.test.ts and abuse.test.ts; test/transport/frame-codec.test.ts
// checks that each transcript field changes the proof.

const secret = Buffer.from('s3cret');
const transcript: Transcript = {
  lane: 'actor',
  client: { id: 1, incarnation: 7, address: '10.0.0.1:7401' },
  server: { id: 2, incarnation: 9, address: '10.0.0.2:7401' },
  clientNonce: Buffer.alloc(NONCE_BYTES, 1),
  serverNonce: Buffer.alloc(NONCE_BYTES, 2),
};
const nonce = Buffer.alloc(NONCE_BYTES, 3);
const proof = Buffer.alloc(PROOF_BYTES, 4);

describe('handshakeProof', () => {
  // Known answers, checked once against the documented construction with node:crypto:
  // HMAC-SHA256(secret, "troupe-handshake/1\0" ‖ role ‖ Nc ‖ Ns ‖ JSON [lane, client id,
  // incarnation, address, server id, incarnation, address]). Peers of different releases must
  // compute the same proof, so the label, the order and the encoding are part of the protocol.
  it.each([
    { role: 'client' as const, hex: '29817629872ec1efde349473c43eaa7885ba1cfa4f5d7615bd69b889696e0eb4' },
    { role: 'server' as const, hex: '9b6cc001544f51dfdbd2c08b6393db0dbfe9c9372702301ce1f702789dd966eb' },
  ])('computes the documented $role proof', ({ role, hex }) => {
    expect(handshakeProof(secret, role, transcript).toString('hex')).toBe(hex);
  });

  it.each([
    { name: 'the client address', t: { client: { ...transcript.client, address: '10.0.0.3:7401' } } },
    { name: 'the server id', t: { server: { ...transcript.server, id: 3 } } },
    { name: 'the server address', t: { server: { ...transcript.server, address: '10.0.0.3:7401' } } },
  ])('binds $name', ({ t }) => {
    const good = handshakeProof(secret, 'client', transcript);
    expect(verifyProof(secret, 'client', { ...transcript, ...t }, good)).toBe(false);
  });

  it.each([
    { name: 'a proof one byte too long', proof: Buffer.concat([handshakeProof(secret, 'client', transcript), Buffer.alloc(1)]) },
    { name: 'an array of the right length', proof: Array.from(handshakeProof(secret, 'client', transcript)) },
    { name: 'undefined', proof: undefined },
  ])('refuses $name without throwing', ({ proof: candidate }) => {
    expect(verifyProof(secret, 'client', transcript, candidate)).toBe(false);
  });

  it('accepts the proof as a Uint8Array view, not only as a Buffer', () => {
    const good = handshakeProof(secret, 'server', transcript);
    expect(verifyProof(secret, 'server', transcript, new Uint8Array(good))).toBe(true);
  });
});

describe('parseHello', () => {
  it.each([
    { name: 'the actor lane', body: [1, 'actor', '10.0.0.1:7401', nonce], lane: 'actor' },
    { name: 'the system lane', body: [1, 'system', 'mem:1', nonce], lane: 'system' },
    { name: 'a one-character address', body: [1, 'actor', 'a', nonce], lane: 'actor' },
    { name: 'a 300-character address', body: [1, 'actor', 'a'.repeat(300), nonce], lane: 'actor' },
  ])('accepts $name', ({ body, lane }) => {
    expect(parseHello(body)).toEqual({ lane, address: body[2], nonce });
  });

  it.each([
    { name: 'not an array', body: { 0: 1, length: 4 }, error: 'HELLO body must be a 4-element array' },
    { name: 'three elements', body: [1, 'actor', 'a'], error: 'HELLO body must be a 4-element array' },
    { name: 'five elements', body: [1, 'actor', 'a', nonce, 0], error: 'HELLO body must be a 4-element array' },
    { name: 'another version', body: [2, 'actor', 'a', nonce], error: /version 2/ },
    { name: 'an unknown lane', body: [1, 'bulk', 'a', nonce], error: 'HELLO lane must be "system" or "actor"' },
    { name: 'an empty address', body: [1, 'actor', '', nonce], error: 'HELLO address must be a short string' },
    { name: 'a 301-character address', body: [1, 'actor', 'a'.repeat(301), nonce], error: 'HELLO address must be a short string' },
    { name: 'a numeric address', body: [1, 'actor', 7401, nonce], error: 'HELLO address must be a short string' },
    { name: 'a short nonce', body: [1, 'actor', 'a', Buffer.alloc(31)], error: 'HELLO nonce must be 32 bytes' },
    { name: 'a long nonce', body: [1, 'actor', 'a', Buffer.alloc(33)], error: 'HELLO nonce must be 32 bytes' },
    { name: 'a nonce that is not bytes', body: [1, 'actor', 'a', 'x'.repeat(32)], error: 'HELLO nonce must be 32 bytes' },
  ])('refuses $name', ({ body, error }) => {
    const parsed = parseHello(body);
    expect(typeof parsed).toBe('string');
    if (typeof error === 'string') expect(parsed).toBe(error);
    else expect(parsed).toMatch(error);
  });
});

describe('parseChallenge', () => {
  it('accepts a well-formed CHALLENGE', () => {
    expect(parseChallenge([1, '10.0.0.2:7401', nonce, proof])).toEqual({ address: '10.0.0.2:7401', nonce, proof });
  });

  it.each([
    { name: 'not an array', body: 'challenge', error: 'CHALLENGE body must be a 4-element array' },
    { name: 'three elements', body: [1, 'a', nonce], error: 'CHALLENGE body must be a 4-element array' },
    { name: 'another version', body: [0, 'a', nonce, proof], error: /version 0/ },
    { name: 'an empty address', body: [1, '', nonce, proof], error: 'CHALLENGE address must be a short string' },
    { name: 'a 301-character address', body: [1, 'a'.repeat(301), nonce, proof], error: 'CHALLENGE address must be a short string' },
    { name: 'a short nonce', body: [1, 'a', Buffer.alloc(31), proof], error: 'CHALLENGE nonce must be 32 bytes' },
    { name: 'a short proof', body: [1, 'a', nonce, Buffer.alloc(31)], error: 'CHALLENGE proof must be 32 bytes' },
    { name: 'a long proof', body: [1, 'a', nonce, Buffer.alloc(33)], error: 'CHALLENGE proof must be 32 bytes' },
    { name: 'a proof that is not bytes', body: [1, 'a', nonce, 'p'.repeat(32)], error: 'CHALLENGE proof must be 32 bytes' },
  ])('refuses $name', ({ body, error }) => {
    const parsed = parseChallenge(body);
    expect(typeof parsed).toBe('string');
    if (typeof error === 'string') expect(parsed).toBe(error);
    else expect(parsed).toMatch(error);
  });
});

describe('parseAuth', () => {
  it('accepts a one-element body holding a 32-byte proof', () => {
    expect(parseAuth([proof])).toBe(proof);
  });

  it.each([
    { name: 'not an array', body: proof, error: 'AUTH body must be a 1-element array' },
    { name: 'an empty array', body: [], error: 'AUTH body must be a 1-element array' },
    { name: 'two elements', body: [proof, proof], error: 'AUTH body must be a 1-element array' },
    { name: 'a short proof', body: [Buffer.alloc(31)], error: 'AUTH proof must be 32 bytes' },
    { name: 'a long proof', body: [Buffer.alloc(33)], error: 'AUTH proof must be 32 bytes' },
    { name: 'a proof that is not bytes', body: ['p'.repeat(32)], error: 'AUTH proof must be 32 bytes' },
  ])('refuses $name', ({ body, error }) => {
    expect(parseAuth(body)).toBe(error);
  });
});

describe('NonceCache', () => {
  it('forgets the oldest nonce first once over capacity', () => {
    const cache = new NonceCache(2);
    const [a, b, c] = [newNonce(), newNonce(), newNonce()];
    expect(cache.checkAndRemember(a)).toBe(false);
    expect(cache.checkAndRemember(b)).toBe(false);
    expect(cache.checkAndRemember(c)).toBe(false); // a goes
    expect(cache.size).toBe(2);
    expect(cache.checkAndRemember(b)).toBe(true);
    expect(cache.checkAndRemember(c)).toBe(true);
    expect(cache.checkAndRemember(a)).toBe(false); // forgotten, so new again; now b goes
    expect(cache.checkAndRemember(b)).toBe(false);
  });

  it('keys a nonce by its bytes, not by the buffer holding it', () => {
    // A nonce decoded off the wire is a view into a larger receive buffer.
    const backing = Buffer.alloc(NONCE_BYTES * 2, 9);
    backing.fill(5, NONCE_BYTES);
    const cache = new NonceCache(4);
    expect(cache.checkAndRemember(backing.subarray(0, NONCE_BYTES))).toBe(false);
    expect(cache.checkAndRemember(backing.subarray(NONCE_BYTES))).toBe(false);
    expect(cache.checkAndRemember(Buffer.alloc(NONCE_BYTES, 5))).toBe(true);
  });

  it('with capacity 0 names no replay and holds nothing', () => {
    const cache = new NonceCache(0);
    expect(cache.checkAndRemember(nonce)).toBe(false);
    expect(cache.checkAndRemember(nonce)).toBe(false);
    expect(cache.size).toBe(0);
  });
});

describe('newNonce', () => {
  it('draws fresh 32-byte nonces', () => {
    const [a, b] = [newNonce(), newNonce()];
    expect(a).toHaveLength(32);
    expect(a.equals(b)).toBe(false);
  });
});

describe('claimedVersion', () => {
  it.each([
    { name: 'version 1', body: [1, 'actor'], version: 1 },
    { name: 'version 0', body: [0], version: 0 },
    { name: 'a future version with another layout', body: [7, { anything: true }], version: 7 },
    { name: 'an empty array', body: [], version: undefined },
    { name: 'not an array', body: { 0: 1 }, version: undefined },
    { name: 'a negative version', body: [-1], version: undefined },
    { name: 'a fractional version', body: [1.5], version: undefined },
    { name: 'a string version', body: ['1'], version: undefined },
  ])('reads $name', ({ body, version }) => {
    expect(claimedVersion(body)).toBe(version);
  });
});

describe('parseRefusal', () => {
  it.each([
    { reason: 'protocol-version' as const, version: 2 },
    { reason: 'auth-failed' as const, version: 0 },
  ])('round-trips a $reason refusal', ({ reason, version }) => {
    expect(parseRefusal(refusalBody(reason, version))).toEqual({ reason, version });
  });

  it.each([
    { name: 'not an array', body: 'no', error: 'REFUSE body must be a 2-element array' },
    { name: 'one element', body: ['auth-failed'], error: 'REFUSE body must be a 2-element array' },
    { name: 'three elements', body: ['auth-failed', 1, 2], error: 'REFUSE body must be a 2-element array' },
    { name: 'an unknown reason', body: ['busy', 1], error: 'REFUSE reason must be "protocol-version" or "auth-failed"' },
    { name: 'a negative version', body: ['auth-failed', -1], error: 'REFUSE version must be a non-negative integer' },
    { name: 'a fractional version', body: ['auth-failed', 1.5], error: 'REFUSE version must be a non-negative integer' },
    { name: 'a string version', body: ['auth-failed', '1'], error: 'REFUSE version must be a non-negative integer' },
  ])('refuses $name', ({ body, error }) => {
    expect(parseRefusal(body)).toBe(error);
  });
});

describe('proofs across versions', () => {
  it('binds the protocol version: a proof for version 2 does not verify as version 1', () => {
    const v2 = handshakeProof(secret, 'client', { ...transcript, version: 2 });
    expect(verifyProof(secret, 'client', { ...transcript, version: 1 }, v2)).toBe(false);
    expect(verifyProof(secret, 'client', { ...transcript, version: 2 }, v2)).toBe(true);
  });
});
