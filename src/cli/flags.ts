/**
 * Flag values checked at the command line, before a node starts: each bad value is a
 * `UsageError` whose message names the flag (`--http must be …`), and each option a node
 * reports as invalid is named back as the flag that set it (`options.http.port` → `--http`).
 */
import { isIP } from 'node:net';
import { ZONE_PATTERN } from '../cluster/membership.ts';
import type { TroupeError } from '../core/errors.ts';

/** A bad flag or command: one line on stderr, exit code 2. */
export class UsageError extends Error {}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** An integer flag in [min, max]. */
export function intFlag(flag: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n)) throw new UsageError(`${flag} must be an integer (got ${JSON.stringify(v)})`);
  if (n < min || n > max) throw new UsageError(`${flag} must be in [${min}, ${max}] (got ${v})`);
  return n;
}

/** A TCP port; `zero` allows 0 (the OS picks one). */
export function portFlag(flag: string, v: string, zero = true): number {
  const n = Number(v);
  const min = zero ? 0 : 1;
  if (v.trim() === '' || !Number.isInteger(n) || n < min || n > 65535)
    throw new UsageError(`${flag} must be a port number in [${min}, 65535] (got ${JSON.stringify(v)})`);
  return n;
}

export function oneOf<T extends string>(flag: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v))
    throw new UsageError(`${flag} must be one of ${allowed.join(', ')} (got ${JSON.stringify(v)})`);
  return v as T;
}

// RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** An IP address or a host name; `999.1.1.1` is neither (digits and dots must be an IPv4 address). */
export function hostFlag(flag: string, v: string): string {
  if (isIP(v) !== 0) return v;
  if (/^[\d.]+$/.test(v) || !HOSTNAME.test(v))
    throw new UsageError(`${flag} must be an IP address or a host name (got ${JSON.stringify(v)})`);
  return v;
}

/** "host:port" (IPv6 in brackets: "[::1]:7401"). */
export function addressFlag(flag: string, v: string, zeroPort: boolean): { host: string; port: number } {
  const colon = v.lastIndexOf(':');
  let host = colon > 0 ? v.slice(0, colon) : '';
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  else if (host.includes(':')) host = '';
  if (host === '') throw new UsageError(`${flag} must be host:port (got ${JSON.stringify(v)})`);
  return { host: hostFlag(flag, host), port: portFlag(flag, v.slice(colon + 1), zeroPort) };
}

export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Comma-separated "host:port" seeds; empty entries are ignored. */
export function seedsFlag(v: string): string[] {
  const seeds = v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (seeds.length === 0) throw new UsageError(`--seeds must list host:port addresses (got ${JSON.stringify(v)})`);
  return seeds.map((s) => {
    const { host, port } = addressFlag('--seeds', s, false);
    return formatAddress(host, port);
  });
}

/** A host or zone label (`--zone`): the pattern membership gossips. */
export function zoneFlag(v: string): string {
  if (!ZONE_PATTERN.test(v)) throw new UsageError(`--zone must be 1-64 characters of A-Z a-z 0-9 . _ - (got ${JSON.stringify(v)})`);
  return v;
}

/** The flag that sets each node option (`NodeOptions` path → flag). */
const FLAG_OF: Record<string, string> = {
  'options.id': '--id',
  'options.modules': '--app',
  'options.workers': '--workers',
  'options.http.port': '--http',
  'options.http.host': '--host',
  'options.http.sessionSecrets': '--session-secret',
  'options.http.headersTimeoutMs': '--headers-timeout',
  'options.http.corsOrigins': '--cors-origin',
  'options.dataDir': '--data-dir',
  'options.durability': '--durability',
  'options.maxResidentPerWorker': '--max-resident',
  'options.maxMessageBytes': '--max-message-bytes',
  'options.maxMailboxBytes': '--max-mailbox-bytes',
  'options.sessions.maxConnections': '--ws-max-connections',
  'options.sessions.maxUnacked': '--ws-max-unacked',
  'options.logLevel': '--log-level',
  'options.cluster.secret': '--secret',
  'options.cluster.host': '--listen',
  'options.cluster.port': '--port',
  'options.cluster.advertise': '--advertise',
  'options.cluster.seeds': '--seeds',
  'options.cluster.profile': '--profile',
  'options.tls.cert': '--tls-cert',
  'options.zone': '--zone',
  'options.gateways': '--gateways',
};

/** What the user typed for a flag, to repeat it in a message (`--http 8080: address in use`). */
export type FlagValues = Record<string, string | undefined>;

/**
 * A node's ERR_INVALID_OPTION in the user's terms: the flag instead of the option path, and for
 * an address that cannot be had, what to do about it. Undefined when no flag sets that option.
 */
export function explainOptionError(e: TroupeError, typed: FlagValues): string | undefined {
  const option = e.details?.option as string | undefined;
  let flag = option === undefined ? undefined : FLAG_OF[option];
  if (flag === undefined) return undefined;
  // The transport's port comes from --listen when --port was not given.
  if (flag === '--port' && typed['--port'] === undefined && typed['--listen'] !== undefined) flag = '--listen';
  const value = typed[flag];
  const at = value === undefined ? flag : `${flag} ${value}`;
  switch (e.details?.cause) {
    case 'EADDRINUSE':
      return `${at}: address in use; pick another port${flag === '--listen' ? '' : ` or ${flag} 0`}`;
    case 'EACCES':
      return `${at}: permission denied; ports below 1024 need privileges, pick a higher one`;
    case 'EADDRNOTAVAIL':
      return `${at}: not an address of this machine; use one of its interfaces' addresses (or 0.0.0.0)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${at}: host name does not resolve`;
  }
  return e.message.startsWith(option!) ? flag + e.message.slice(option!.length) : `${flag}: ${e.message}`;
}
