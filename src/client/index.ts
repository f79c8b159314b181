/**
 * `troupe/client`: the TypeScript client for Node and browsers (no `node:` imports anywhere
 * beneath this entry). It routes each request straight to its key's primary.
 *
 * @example
 *   import { TroupeClient } from 'troupe/client';
 *   const client = new TroupeClient({ nodes: ['http://127.0.0.1:8080', 'http://127.0.0.1:8081'] });
 *   await client.askRaw('counter', 'k1', 'incr', { by: 2 });   // → { n: 2 }
 *   const lobby = client.session('room', 'lobby');               // a WebSocket session: asks and pushes
 *   lobby.onPush((m) => console.log(m));
 */
export { TroupeClient, type ClientActor, type ClientAskOptions, type ClientOptions, type ClientStats } from './troupe-client.ts';
export { Session, sessionDefaults, type SessionEvents, type SessionOpen, type SessionOptions, type SessionStats } from './ws-session.ts';
export { parseRoutingTable, partitionOfKey, primaryOfKey, type RoutingTable } from './routing-table.ts';
export { backoffDelay, clientDefaults, isRetryable } from './retry-policy.ts';
export { TroupeError, isTroupeError, type ErrorCode } from '../core/errors.ts';
