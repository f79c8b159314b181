/**
 * Node-to-node transport. Addresses are strings ("127.0.0.1:7401" for TCP, "mem:3" in the
 * in-memory network) because a joining node knows its seeds' addresses before their ids.
 * Implementations: `TcpTransport` (length-prefixed msgpack frames, authenticated handshake)
 * and `MemoryNetwork#transport` (deterministic, scripted faults, for tests).
 */
export interface Transport {
  /** This node's identity, stamped on every frame it sends. */
  readonly self: PeerIdentity;
  /**
   * Queue `payload` for `address`. Never throws: a payload that cannot be delivered is reported
   * through `onUndeliverable` (the peer is unreachable, the frame too large...), so the caller
   * can reroute or fail its asks with a named error. `lane` 'system' (gossip, heartbeats) is
   * never queued behind 'actor' traffic.
   */
  send(address: string, payload: unknown, lane?: Lane): void;
  onMessage(handler: (from: PeerIdentity, payload: unknown, lane: Lane) => void): void;
  onUndeliverable(handler: (address: string, payload: unknown, error: Error) => void): void;
  /** Start accepting (TCP: listen). Resolves with the bound address. */
  start(): Promise<string>;
  close(): Promise<void>;
}

export type Lane = 'system' | 'actor';

export interface PeerIdentity {
  /** 0..1023; also the Snowflake machine id. */
  id: number;
  /** Grows on every restart of the node; a frame from an older incarnation is stale. */
  incarnation: number;
  /** The address others reach this node at. */
  address: string;
}
