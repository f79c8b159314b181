import { nanoid } from 'nanoid';

/** A session id for cookies and client sessions: 21 URL-safe characters, ~126 random bits. */
export function newSessionId(): string {
  return nanoid();
}
