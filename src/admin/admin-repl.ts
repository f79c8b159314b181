import { homedir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { start as startRepl, type REPLServer } from 'node:repl';
import type { Readable, Writable } from 'node:stream';
import { systemClock, type Clock } from '../core/clock.ts';
import { isTroupeError, troupeError } from '../core/errors.ts';
import { logLevels } from '../core/logger.ts';
import { handoffDefaults } from '../replication/handoff.ts';
import type { AdminClient } from './admin-client.ts';
import { adminCommands } from './admin-commands.ts';
import type { AdminResult } from './admin-protocol.ts';

/**
 * `troupe repl`: node:repl over an admin connection. A line is `[@<node>] <command> [args…]`;
 * `ask`'s last argument is the rest of the line (JSON may hold spaces). Tab completes commands,
 * kinds and `@<node>`; history persists in ~/.troupe_repl_history. With piped standard input
 * (`echo members | troupe repl --data-dir d`) each line runs in turn and the output is plain.
 */
export interface ReplOptions {
  input: Readable & { isTTY?: boolean };
  output: Writable;
  errors?: Writable;
  /** History file; undefined: none. */
  historyPath?: string | undefined;
  /** Paces `top` and `tail` (default: the system clock). */
  clock?: Clock;
}

export const replLoopDefaults = {
  topEveryMs: 1_000, // top's refresh, like observer_cli
  tailPollMs: 200, // how often tail reads the node's buffer of log lines for it
  pipedTailMs: 2_000, // piped `tail` without a duration: scripts must end
  topBusiest: 3, // busiest actors shown per node
  drainEveryMs: 1_000, // drain's progress line: how many partitions the node still leads
  // How long drain's progress is watched: the node's own drain gives up after drainTimeoutMs, then
  // stops (lingering a moment); the slack covers that and one unanswered poll (a peer's 5 s deadline).
  drainWatchMs: handoffDefaults.drainTimeoutMs + 15_000,
};

/** How `top` and `tail` stream: to a terminal until a key, or a bounded number of frames when piped. */
interface LoopIo {
  write(text: string): void;
  interactive: boolean;
  /** Resolves when the operator presses a key (interactive only). */
  keyPressed: Promise<void>;
  clock: Clock;
}

export interface ParsedLine {
  node?: number;
  command: string;
  args: string[];
}

/** `@2 where counter k1` → { node: 2, command: 'where', args: ['counter', 'k1'] }. */
export function parseCommandLine(line: string): ParsedLine | undefined {
  const m = /^\s*(?:@(\d{1,4})\s+)?(\S+)\s*(.*?)\s*$/s.exec(line);
  if (m === null) return undefined;
  const node = m[1] === undefined ? undefined : Number(m[1]);
  const command = m[2]!;
  const rest = m[3]!;
  let args: string[];
  if (command === 'ask') {
    const a = /^(\S+)\s+(\S+)\s+(\S+)(?:\s+(.+))?$/s.exec(rest);
    args = a === null ? rest.split(/\s+/).filter(Boolean) : [a[1]!, a[2]!, a[3]!, ...(a[4] === undefined ? [] : [a[4]])];
  } else args = rest.split(/\s+/).filter(Boolean);
  return { ...(node !== undefined && { node }), command, args };
}

/** A result as the terminal shows it: aligned columns, numbers to the right. */
export function formatResult(r: AdminResult): string {
  if (r.kind === 'text') return r.text;
  if (r.kind === 'value') return JSON.stringify(r.value, null, 2);
  const cells = [r.columns, ...r.rows.map((row) => row.map((c) => (c === null ? '' : String(c))))];
  const widths = r.columns.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  const numeric = r.columns.map((_, i) => r.rows.length > 0 && r.rows.every((row) => typeof row[i] === 'number'));
  const line = (row: string[]) =>
    row
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [line(cells[0]!), widths.map((w) => '─'.repeat(w)).join('  '), ...cells.slice(1).map(line)];
  if (r.title !== undefined) out.unshift(r.title);
  if (r.rows.length === 0) out.push('(none)');
  return out.join('\n');
}

export function formatError(e: unknown): string {
  return isTroupeError(e) ? `${e.code}: ${e.message}` : String((e as Error)?.message ?? e);
}

/** Runs one line; resolves with what to print (top and tail print as they go). */
async function runLine(client: AdminClient, line: string, io?: LoopIo): Promise<string | undefined> {
  if (line.trim() === '') return undefined;
  const parsed = parseCommandLine(line);
  if (parsed === undefined) throw troupeError('ERR_INVALID_INPUT', 'type a command, or help');
  if (io !== undefined && parsed.command === 'top') return runTop(client, parsed.args, io);
  if (io !== undefined && parsed.command === 'tail') return runTail(client, parsed.args, parsed.node, io);
  if (io !== undefined && parsed.command === 'drain') return runDrain(client, parsed.args, parsed.node, io);
  // The directory is the operator's: a relative one means relative to where the REPL runs.
  if (parsed.command === 'backup' && parsed.args[0] !== undefined && parsed.node === undefined) parsed.args[0] = resolve(parsed.args[0]);
  return formatResult(await client.call(parsed.command, parsed.args, parsed.node));
}

/** Waits `ms`, or less if a key is pressed; true when it was the key. */
function pause(io: LoopIo, ms: number): Promise<boolean> {
  return new Promise((done) => {
    const t = io.clock.setTimeout(() => done(false), ms);
    void io.keyPressed.then(() => {
      io.clock.clearTimeout(t);
      done(true);
    });
  });
}

interface Sample {
  node: number;
  processed: number;
  asks: number;
  resident: number;
  queued: number;
  lagP99Ms: number;
  busiest: Array<{ kind: string; key: string; recent: number }>;
}

/**
 * `top [snapshots]`: every second, per up member, the rates between two samples (so even the
 * first frame has rates: it waits a second first). Interactive: redraws until a key; piped:
 * prints `snapshots` frames (default 1) one after another.
 */
async function runTop(client: AdminClient, args: string[], io: LoopIo): Promise<undefined> {
  const frames = args[0] === undefined ? (io.interactive ? Infinity : 1) : positive(args[0], 'top [snapshots]');
  const members = await client.call('members', []);
  const nodes = members.kind === 'table' ? members.rows.filter((r) => r[1] === 'alive' || r[1] === 'suspect').map((r) => Number.parseInt(String(r[0]), 10)) : [client.node];
  const sample = async () => {
    const at = io.clock.now();
    const got = await Promise.all(
      nodes.map((n) =>
        client.call('sample', [String(replLoopDefaults.topBusiest)], n === client.node ? undefined : n).then(
          (r) => (r.kind === 'value' ? (r.value as Sample) : undefined),
          (e: unknown) => formatError(e),
        ),
      ),
    );
    return { at, got };
  };
  let before = await sample();
  for (let frame = 0; frame < frames; frame++) {
    if (await pause(io, replLoopDefaults.topEveryMs)) break;
    const now = await sample();
    const seconds = Math.max(0.001, (now.at - before.at) / 1000);
    const rows = nodes.map((node, i) => {
      const a = before.got[i];
      const b = now.got[i];
      if (typeof b !== 'object' || b === undefined) return [node, '-', '-', '-', '-', '-', typeof b === 'string' ? b : 'no answer'];
      const rate = (x: number, y: number | undefined) => (y === undefined ? '-' : Math.max(0, Math.round((x - y) / seconds)));
      const prev = typeof a === 'object' ? a : undefined;
      return [
        node === client.node ? `${node} (this)` : node,
        rate(b.processed, prev?.processed),
        rate(b.asks, prev?.asks),
        b.resident,
        b.queued,
        b.lagP99Ms > 0 ? `${b.lagP99Ms} ms` : '-',
        b.busiest.map((x) => `${x.kind}/${x.key} (${x.recent})`).join(', ') || '-',
      ];
    });
    const table = formatResult({
      kind: 'table',
      title: `top: ${new Date().toISOString().slice(11, 19)}, every ${replLoopDefaults.topEveryMs / 1000} s${io.interactive ? ' (any key ends it)' : ''}`,
      columns: ['node', 'msgs/s', 'asks/s', 'resident', 'queued', 'repl lag p99', 'busiest (recent msgs)'],
      rows,
    });
    // A terminal redraws in place, like observer_cli; a pipe gets one frame after another.
    io.write(io.interactive ? `\x1b[2J\x1b[H${table}\n` : `${table}\n`);
    before = now;
  }
  return undefined;
}

/**
 * `tail [level] [duration]`: the node's log lines at level and above, read every 200 ms from a
 * bounded buffer the node keeps for this REPL (a slow REPL loses lines, counted, never slows the
 * node). Until a key is pressed, or for `duration`; piped without one: 2 s.
 */
async function runTail(client: AdminClient, args: string[], node: number | undefined, io: LoopIo): Promise<undefined> {
  let [level, duration] = args;
  if (level !== undefined && durationMs(level) !== undefined) [level, duration] = [undefined, level];
  const forMs = duration !== undefined ? durationMs(duration) : io.interactive ? Infinity : replLoopDefaults.pipedTailMs;
  if (forMs === undefined) throw troupeError('ERR_INVALID_INPUT', `usage: tail [level] [duration]: duration is like 2s, 500ms or 1m; got '${duration!.slice(0, 40)}'`);
  const opened = await client.call('tail-open', [level ?? 'info'], node);
  const follower = String((opened as { value?: { follower?: number } }).value?.follower);
  const started = io.clock.now();
  const read = async () => {
    const r = await client.call('tail-read', [follower], node);
    const got = (r.kind === 'value' ? r.value : {}) as { lines?: string[]; dropped?: number };
    if (got.dropped) io.write(`… ${got.dropped} lines dropped (the REPL read too slowly)\n`);
    for (const line of got.lines ?? []) io.write(`${formatLogLine(line)}\n`);
  };
  try {
    for (;;) {
      const left = forMs - (io.clock.now() - started);
      if (left <= 0) break;
      if (await pause(io, Math.min(left, replLoopDefaults.tailPollMs))) break;
      await read();
    }
    await read();
  } finally {
    await client.call('tail-close', [follower], node).catch(() => undefined);
  }
  return undefined;
}

/** Errors that mean the node no longer answers: it stopped (or left and was forgotten). */
const GONE = ['ERR_NODE_UNREACHABLE', 'ERR_UNKNOWN_NODE', 'ERR_STOPPED'] as const;

/**
 * `drain` (or `@<node> drain`): starts the graceful leave, then every second prints how many
 * partitions the node still leads (its `summary`), until it stops answering — it handed off and
 * stopped — and says so. Bounded by the node's own drain timeout (plus the time to stop), piped or
 * not; in a terminal a key stops the watching, not the drain.
 */
async function runDrain(client: AdminClient, args: string[], node: number | undefined, io: LoopIo): Promise<string> {
  const target = node ?? client.node;
  io.write(`${formatResult(await client.call('drain', args, node))}\n`);
  const started = io.clock.now();
  // The first line comes at once (a drain where every partition has its copies may take under a second).
  for (let first = true; ; first = false) {
    const left = replLoopDefaults.drainWatchMs - (io.clock.now() - started);
    if (left <= 0) return `node ${target} still answers after ${Math.round(replLoopDefaults.drainWatchMs / 1000)} s: stopped watching (members shows whether it left)`;
    if (!first && (await pause(io, Math.min(left, replLoopDefaults.drainEveryMs)))) return `stopped watching node ${target}; its drain goes on`;
    let leads: number;
    try {
      const r = await client.call('summary', [], node);
      leads = Number((r.kind === 'value' ? (r.value as { leads?: unknown }) : {}).leads);
    } catch (e) {
      if (GONE.some((code) => isTroupeError(e, code))) return `node ${target} drained and stopped`;
      throw e;
    }
    io.write(`node ${target} drains: leads ${Number.isFinite(leads) ? leads : '?'} partitions${leads === 0 ? ', stopping' : ''}\n`);
  }
}

const LEVEL_NAMES: Record<number, string> = Object.fromEntries(Object.entries(logLevels).map(([name, n]) => [n, name.toUpperCase()]));

/** A pino JSON line as one readable line: time, level, node (and worker), message, the other fields. */
export function formatLogLine(line: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { time, level, msg, node, worker, pid: _pid, hostname: _host, ...rest } = o;
  const when = typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : '';
  const who = `node ${String(node ?? '?')}${worker === undefined ? '' : `/w${String(worker)}`}`;
  const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
  return `${when} ${LEVEL_NAMES[level as number] ?? String(level)} [${who}] ${String(msg ?? '')}${extra}`;
}

/** '2s', '500ms', '1m' → ms; undefined when it is not a duration. */
export function durationMs(s: string): number | undefined {
  const m = /^(\d{1,6})(ms|s|m)$/.exec(s);
  if (m === null) return undefined;
  return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 's' ? 1_000 : 60_000);
}

function positive(s: string, usage: string): number {
  if (!/^\d{1,6}$/.test(s) || Number(s) < 1) throw troupeError('ERR_INVALID_INPUT', `usage: ${usage} (a positive integer)`);
  return Number(s);
}

export function completer(client: AdminClient, nodes: () => number[]) {
  const commands = [...client.commands, 'help'];
  /** A command's first argument: its `complete` hint (admin-commands.ts), or the REPL's own words. */
  const firstArgument = (command: string): string[] => {
    if (command === 'tail') return Object.keys(logLevels);
    if (command === 'actors') return ['top'];
    const hint = adminCommands.find((c) => c.name === command)?.complete?.[0];
    return hint === 'kind' ? client.kinds : hint === 'node' ? nodes().map(String) : [];
  };
  return (line: string): [string[], string] => {
    const words = line.split(/\s+/);
    const last = words[words.length - 1] ?? '';
    const at = words[0]?.startsWith('@') ? 1 : 0;
    const position = words.length - 1 - at;
    let candidates: string[] = [];
    if (position === 0) candidates = [...commands, ...(words.length === 1 ? nodes().map((n) => `@${n}`) : [])];
    else if (position === 1) candidates = firstArgument(words[at]!);
    return [candidates.filter((c) => c.startsWith(last)), last];
  };
}

/** The interactive REPL or, with piped input, one line after another. Resolves when input ends. */
export async function runRepl(client: AdminClient, o: ReplOptions): Promise<{ failures: number }> {
  const errors = o.errors ?? o.output;
  const clock = o.clock ?? systemClock;
  if (!o.input.isTTY) {
    let failures = 0;
    // Piped: no key ends a loop; each runs its bounded form.
    const io: LoopIo = { write: (t) => o.output.write(t), interactive: false, keyPressed: new Promise(() => undefined), clock };
    const lines = createInterface({ input: o.input, crlfDelay: Infinity });
    for await (const line of lines) {
      try {
        const out = await runLine(client, line, io);
        if (out !== undefined) o.output.write(`${out}\n`);
      } catch (e) {
        failures++;
        errors.write(`${formatError(e)}\n`);
      }
    }
    return { failures };
  }
  let nodes: number[] = [client.node];
  const refreshNodes = () =>
    client.call('members', []).then(
      (r) => {
        if (r.kind === 'table') nodes = r.rows.map((row) => Number.parseInt(String(row[0]), 10)).filter(Number.isInteger);
      },
      () => undefined,
    );
  await refreshNodes();
  const server: REPLServer = startRepl({
    prompt: `troupe(node ${client.node})> `,
    input: o.input,
    output: o.output,
    terminal: true,
    completer: completer(client, () => nodes),
    eval: (line, _context, _file, callback) => {
      // top and tail run until the next key (Ctrl-C included: the terminal is in raw mode).
      let onKey = () => undefined as void;
      const keyPressed = new Promise<void>((resolve) => (onKey = resolve));
      o.input.once('data', onKey);
      // While top or tail streams, the key that ends it is theirs: readline must not take it as
      // input (it would land, invisible, in the next line) nor Ctrl-C as the REPL's own SIGINT.
      const streaming = ['top', 'tail', 'drain'].includes(parseCommandLine(line)?.command ?? '');
      const readlineKeys = streaming ? o.input.listeners('keypress') : [];
      for (const l of readlineKeys) o.input.off('keypress', l as (...a: unknown[]) => void);
      const done = runLine(client, line, { write: (t) => o.output.write(t), interactive: true, keyPressed, clock });
      void done
        .finally(() => {
          o.input.off('data', onKey);
          for (const l of readlineKeys) o.input.on('keypress', l as (...a: unknown[]) => void);
        })
        .catch(() => undefined);
      done.then(
        (out) => {
          if (out !== undefined) o.output.write(`${out}\n`);
          callback(null, undefined);
          void refreshNodes();
        },
        (e: unknown) => {
          o.output.write(`${formatError(e)}\n`);
          callback(null, undefined);
        },
      );
    },
    writer: () => '',
    ignoreUndefined: true,
  });
  server.defineCommand('help', {
    help: 'list the admin commands',
    action() {
      runLine(client, 'help').then(
        (out) => {
          o.output.write(`${out}\n`);
          this.displayPrompt();
        },
        () => this.displayPrompt(),
      );
    },
  });
  if (o.historyPath !== undefined) await new Promise<void>((resolve) => server.setupHistory(o.historyPath!, () => resolve()));
  await new Promise<void>((resolve) => server.on('exit', () => resolve()));
  return { failures: 0 };
}

export function defaultHistoryPath(): string {
  return process.env.TROUPE_REPL_HISTORY ?? join(homedir(), '.troupe_repl_history');
}

/** The local user the REPL reports over the owner-only socket (for the audit log). */
export function localUser(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}
