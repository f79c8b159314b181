/**
 * The one error catalog. Codes are stable API: clients, the gateway's HTTP mapping and tests
 * match on `code`, never on message text. Errors cross threads and sockets as plain
 * `{ code, message, details }` records (see `toErrorRecord` / `fromErrorRecord`).
 */
export const ErrorCodes = {
  // Messaging
  ERR_ASK_TIMEOUT: 'ERR_ASK_TIMEOUT',
  ERR_MAILBOX_FULL: 'ERR_MAILBOX_FULL',
  ERR_UNKNOWN_KIND: 'ERR_UNKNOWN_KIND',
  ERR_UNKNOWN_COMMAND: 'ERR_UNKNOWN_COMMAND',
  ERR_INVALID_INPUT: 'ERR_INVALID_INPUT',
  ERR_INVALID_KEY: 'ERR_INVALID_KEY',
  /** A value a handler returned, emitted or sent is outside the value domain (see value-domain.ts). */
  ERR_NOT_SERIALIZABLE: 'ERR_NOT_SERIALIZABLE',
  /** An idempotency key (message id) reused with a different command or input. */
  ERR_IDEMPOTENCY_MISMATCH: 'ERR_IDEMPOTENCY_MISMATCH',
  // Supervision
  ERR_HANDLER_FAILED: 'ERR_HANDLER_FAILED',
  ERR_ACTOR_ESCALATED: 'ERR_ACTOR_ESCALATED',
  ERR_WORKER_DIED: 'ERR_WORKER_DIED',
  ERR_STOPPED: 'ERR_STOPPED',
  // Options and configuration
  ERR_INVALID_OPTION: 'ERR_INVALID_OPTION',
  ERR_INVALID_DEFINITION: 'ERR_INVALID_DEFINITION',
  /** Another live process holds the data directory's lock. */
  ERR_DATA_DIR_IN_USE: 'ERR_DATA_DIR_IN_USE',
  /** A directory given as a node's data directory (or a backup) is missing or is not troupe's. */
  ERR_NOT_A_DATA_DIR: 'ERR_NOT_A_DATA_DIR',
  /** A worker thread could not start (a module that fails to load, a missing loader). */
  ERR_WORKER_START: 'ERR_WORKER_START',
  // Gateway
  ERR_MALFORMED_JSON: 'ERR_MALFORMED_JSON',
  ERR_BODY_TOO_LARGE: 'ERR_BODY_TOO_LARGE',
  ERR_FORBIDDEN_KEY: 'ERR_FORBIDDEN_KEY',
  ERR_NOT_FOUND: 'ERR_NOT_FOUND',
  ERR_METHOD_NOT_ALLOWED: 'ERR_METHOD_NOT_ALLOWED',
  /** A `sid` cookie that is malformed or not signed by any of the cluster's session secrets (forged, tampered): never replaced silently. */
  ERR_BAD_SESSION: 'ERR_BAD_SESSION',
  /** A `sid` cookie whose signed expiry has passed. */
  ERR_SESSION_EXPIRED: 'ERR_SESSION_EXPIRED',
  /** The kind's authorization hook refused the request, or a CORS preflight came from an origin not allowed. */
  ERR_FORBIDDEN: 'ERR_FORBIDDEN',
  /** A WebSocket message that is not the protocol's JSON (docs/websocket.md): that socket closes, nothing else. */
  ERR_BAD_MESSAGE: 'ERR_BAD_MESSAGE',
  /** A WebSocket client left more pushes unacknowledged than the gateway's cap, or a node is at its connection cap. */
  ERR_OVERLOADED: 'ERR_OVERLOADED',
  // Persistence
  ERR_JOURNAL_WRITE: 'ERR_JOURNAL_WRITE',
  ERR_JOURNAL_READ: 'ERR_JOURNAL_READ',
  ERR_STORAGE_FULL: 'ERR_STORAGE_FULL',
  /** A write from an owner whose epoch a later owner has replaced (fenced): retry at the new owner. */
  ERR_STALE_EPOCH: 'ERR_STALE_EPOCH',
  ERR_UPCAST: 'ERR_UPCAST',
  // Cluster
  ERR_NOT_OWNER: 'ERR_NOT_OWNER',
  /** This node does not (or no longer) lead the key's partition; nothing was applied: resend to its primary. */
  ERR_NOT_PRIMARY: 'ERR_NOT_PRIMARY',
  /** The partition has no established primary (too few live replicas, or a fence in progress past its bound). */
  ERR_PARTITION_UNAVAILABLE: 'ERR_PARTITION_UNAVAILABLE',
  /** A read-your-writes token names a write the partition lost (acknowledged under `lazy`, never replicated): never served older state. */
  ERR_TOKEN_LOST: 'ERR_TOKEN_LOST',
  ERR_NODE_UNREACHABLE: 'ERR_NODE_UNREACHABLE',
  ERR_UNKNOWN_NODE: 'ERR_UNKNOWN_NODE',
  ERR_NO_NODES: 'ERR_NO_NODES',
  ERR_FRAME_TOO_LARGE: 'ERR_FRAME_TOO_LARGE',
  ERR_SEND_QUEUE_FULL: 'ERR_SEND_QUEUE_FULL',
  ERR_BAD_FRAME: 'ERR_BAD_FRAME',
  ERR_AUTH_FAILED: 'ERR_AUTH_FAILED',
  /** A peer speaks an incompatible node-to-node protocol version. */
  ERR_PROTOCOL_VERSION: 'ERR_PROTOCOL_VERSION',
  ERR_CLOCK: 'ERR_CLOCK',
  ERR_INTERNAL: 'ERR_INTERNAL',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/**
 * Marks a TroupeError whichever copy of troupe made it: an app may import `invalidInput` from
 * its own installed copy while the CLI runs another (or the sources and the build meet in one
 * process), and `instanceof` would then call its refusal a crash.
 */
const BRAND = Symbol.for('troupe.TroupeError');

export class TroupeError extends Error {
  override readonly name = 'TroupeError';
  readonly [BRAND] = true;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
  toJSON(): ErrorRecord {
    return toErrorRecord(this);
  }
}

/** The wire form of an error: what crosses a MessagePort, a TCP frame or an HTTP body. */
export interface ErrorRecord {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export function troupeError(code: ErrorCode, message: string, details?: Record<string, unknown>): TroupeError {
  return new TroupeError(code, message, details);
}

export function isTroupeError(e: unknown, code?: ErrorCode): e is TroupeError {
  if (!(e instanceof TroupeError) && (typeof e !== 'object' || e === null || (e as { [BRAND]?: unknown })[BRAND] !== true)) return false;
  return code === undefined || (e as TroupeError).code === code;
}

export function toErrorRecord(e: unknown): ErrorRecord {
  if (isTroupeError(e)) {
    return e.details === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, details: e.details };
  }
  const message = e instanceof Error ? e.message : String(e);
  return { code: 'ERR_INTERNAL', message };
}

export function fromErrorRecord(r: ErrorRecord): TroupeError {
  const code = r.code in ErrorCodes ? r.code : 'ERR_INTERNAL';
  return new TroupeError(code, r.message, r.details);
}

/** `'options.workers must be a positive integer'`-style validation at API boundaries. */
export function invalidOption(name: string, requirement: string, got: unknown): TroupeError {
  return new TroupeError('ERR_INVALID_OPTION', `${name} ${requirement} (got ${describe(got)})`, { option: name });
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (v === null || typeof v !== 'object') return String(v);
  return Array.isArray(v) ? 'an array' : 'an object';
}
