/** troupe's public API. */
export { defineActor, invalidInput, inputObject, optionalInt, requiredString } from './actors/define-actor.ts';
export { ACTOR_DEFINITION } from './actors/define-actor.ts';
export type { ActorDefinition, DefinedActor, AnyMessage, AskOptions, AuthorizeRequest, CommandSpec, HandlerContext, MessageOf, SessionSource } from './actors/define-actor.ts';
export { ActorRef } from './actors/actor-ref.ts';
export { TroupeNode, type NodeOptions } from './node/troupe-node.ts';
export { ErrorCodes, TroupeError, isTroupeError, type ErrorCode } from './core/errors.ts';
export { SimulatedClock, SystemClock, systemClock, type Clock } from './core/clock.ts';
export { MemoryJournal } from './persistence/memory-journal.ts';
export type { Journal, JournalConfig } from './persistence/journal.ts';
export { SnowflakeGenerator, decodeSnowflake } from './cluster/snowflake.ts';
export { newSessionId } from './ids/session-id.ts';
