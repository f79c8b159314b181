import { troupeError } from '../core/errors.ts';
import { findForbiddenKey } from '../gateway/forbidden-keys.ts';

/**
 * The admin connection's wire format: one JSON object per line, both ways.
 *
 * ```
 *   client ─► { hello: 1, user, token? }                 first line; a bad token gets nothing back
 *   client ─► { id, command, args: string[], node? }     a request (node: run it on that member)
 *   server ─► { id, chunk }                              a streaming command's lines (tail, top)
 *   server ─► { id, ok: true, result } | { id, ok: false, error: { code, message } }
 * ```
 *
 * Lines are capped (MAX_LINE) before they are parsed, and a parsed line naming a prototype key
 * is refused, as everywhere else input enters the node.
 */
export const MAX_LINE = 1 << 20;

export interface Hello {
  hello: 1;
  /** Who runs the REPL: the token's name over TCP, the local user over the owner-only socket. */
  user: string;
  token?: string;
}

export interface AdminRequest {
  id: number;
  command: string;
  args: string[];
  /** A member id: run the command there (over the cluster transport) instead of here. */
  node?: number;
}

export type TableCell = string | number | boolean | null;

/** What a command answers: a table, a line of text, or a plain value (printed as JSON). */
export type AdminResult =
  | { kind: 'table'; title?: string; columns: string[]; rows: TableCell[][] }
  | { kind: 'text'; text: string }
  | { kind: 'value'; value: unknown };

export type AdminReply =
  | { id: number; ok: true; result: AdminResult }
  | { id: number; ok: false; error: { code: string; message: string } }
  | { id: number; chunk: string };

/** Splits a byte stream into lines; a line over MAX_LINE is an error (the connection closes). */
export class LineReader {
  private buffer = '';

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      if (line.length > 0) this.onLine(line);
    }
    if (this.buffer.length > MAX_LINE) throw troupeError('ERR_BODY_TOO_LARGE', `an admin line is over ${MAX_LINE} bytes`);
  }
}

/** Parses one line into a plain object, or throws a named error. */
export function parseLine(line: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw troupeError('ERR_MALFORMED_JSON', 'an admin line is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw troupeError('ERR_INVALID_INPUT', 'an admin line must be a JSON object');
  const forbidden = findForbiddenKey(value);
  if (forbidden !== undefined) throw troupeError('ERR_FORBIDDEN_KEY', `an admin line names the key "${forbidden}"`);
  return value as Record<string, unknown>;
}

export function asHello(v: Record<string, unknown>): Hello | undefined {
  if (v.hello !== 1 || typeof v.user !== 'string' || v.user.length === 0 || v.user.length > 128) return undefined;
  if (v.token !== undefined && typeof v.token !== 'string') return undefined;
  return { hello: 1, user: v.user, ...(typeof v.token === 'string' && { token: v.token }) };
}

export function asRequest(v: Record<string, unknown>): AdminRequest {
  const { id, command, args, node } = v;
  if (!Number.isSafeInteger(id)) throw troupeError('ERR_INVALID_INPUT', 'an admin request needs an integer id');
  if (typeof command !== 'string' || !/^[a-z][a-z-]{0,31}$/.test(command)) throw troupeError('ERR_INVALID_INPUT', 'an admin request needs a command name');
  if (!Array.isArray(args) || args.length > 16 || !args.every((a) => typeof a === 'string' && a.length <= 65_536))
    throw troupeError('ERR_INVALID_INPUT', 'admin args must be at most 16 strings');
  if (node !== undefined && !(Number.isInteger(node) && (node as number) >= 0 && (node as number) <= 1023))
    throw troupeError('ERR_INVALID_INPUT', 'node must be a member id, 0..1023');
  return { id: id as number, command, args: args as string[], ...(node !== undefined && { node: node as number }) };
}
