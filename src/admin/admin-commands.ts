import type { ActorInspection, SlotTop } from '../actors/actor-host.ts';
import { isTroupeError, troupeError } from '../core/errors.ts';
import { logLevels, type LogLevelName } from '../core/logger.ts';
import type { AdminResult, TableCell } from './admin-protocol.ts';

/**
 * What the admin REPL can see and steer on one node. `TroupeNode` provides it; tests can give a
 * fake. Every method answers about this node only: a command for another member travels there
 * (admin-peers.ts) and runs against that member's target.
 */
export interface AdminTarget {
  readonly id: number;
  /** Membership as this node sees it. */
  members(): Array<{ id: number; address: string; incarnation: number; status: string; zone?: string; forMs?: number }>;
  /** Partition placement: which member is proposed primary of how many partitions, and the replica count. */
  placement(): { partitions: number; replicas: number; primaries: Record<string, number>; copies: Record<string, number> } | undefined;
  /** Where a key lives: its partition, replica set (primary first) and this node's slot for it. */
  where(kind: string, key: string): { partition: number | null; replicas: number[]; slot: number; thread: number };
  /** One record per worker slot (the actor host's stats). */
  workers(): Promise<Array<Record<string, unknown>>>;
  /** This node's copies of partitions: role, epoch, log positions. */
  partitions(): Array<Record<string, unknown>>;
  /** Counters: router, replication, transport. */
  counters(): Record<string, unknown>;
  kinds(): string[];
  ask(kind: string, key: string, command: string, input: unknown): Promise<unknown>;
  /** Graceful leave with handoff; resolves when the node has stopped. */
  drain(): Promise<void>;
  stop(): Promise<void>;
  /** One actor, read-only (its slot's `ActorHost.inspect`): a passive actor is read from the journal, not activated. */
  inspect(kind: string, key: string): Promise<ActorView>;
  /** Queues a restart or passivation for a resident actor; false when it is not resident here. */
  steer(kind: string, key: string, op: 'restart' | 'passivate'): Promise<boolean>;
  /** Per slot: resident count, messages and asks processed, the busiest and largest actors (bounded work). */
  top(n: number): Promise<SlotView[]>;
  /** Follows this node's log lines at `level` and above; returns the follower's id. */
  follow(level: LogLevelName): number;
  /** What a follower buffered since its last read; undefined when it is gone. */
  followed(id: number): { lines: string[]; dropped: number } | undefined;
  unfollow(id: number): void;
  /** Hot backup of this node's journal (or partition store) into `dir`; resolves with the path backed up. */
  backup(dir: string): Promise<string>;
  /** What would move, from the partition table alone: `leave` a member, or a node `join` (its id). */
  movePlan(change: { leave: number } | { join: number }): MovePlan | undefined;
  /** WebSocket sockets per member; with a key, the members holding that actor's sockets (GET /cluster/connections). */
  connections?(kind?: string, key?: string): Promise<ConnectionsView>;
  /** The test-only fault switches, present only on a node started with `--fault-injection`. */
  faults?: FaultInjection;
}

/**
 * What a node started with `--fault-injection` lets the chaos suite do through its admin
 * endpoint (tests only; absent otherwise, and every command using it is refused).
 */
export interface FaultInjection {
  /** The node's wall-clock offset, ms (0: true time). */
  wallOffset(): number;
  /** Steps the node's wall clock (ids, reminders, cookies) by `deltaMs`; returns the new offset. Monotonic time does not move. */
  stepWall(deltaMs: number): number;
  /** Unix ms as the node's wall clock reads it now (the offset included). */
  wallNow(): number;
  /** `n` fresh Snowflake ids from the node's generator, decimal, in the order issued. */
  ids(n: number): string[];
}

export type ConnectionsView =
  | { total: number; nodes: Array<{ node: number; connections?: number; sessions?: number; error?: string }> }
  | { kind: string; key: string; watchers: Array<{ node: number; connections: number; expiresInMs: number }> };

/**
 * What `inspect` and `top` show are the actor host's own records, passed through unchanged: the
 * admin layer adds formatting only.
 */
export type ActorView = ActorInspection;
export type SlotView = SlotTop;

/** A dry run of a membership change. */
export interface MovePlan {
  /** The change, as a sentence ("node 3 leaves"). */
  change: string;
  partitions: number;
  /** Partitions whose primary changes, and copies that must be streamed to a new holder. */
  primariesMoved: number;
  copiesMoved: number;
  /** Per member after the change: partitions it leads and holds, before → after. */
  perNode: Array<{ node: number; leadsBefore: number; leadsAfter: number; copiesBefore: number; copiesAfter: number }>;
  /** What the counts leave out, when something does. */
  note?: string;
}

export interface CommandContext {
  /** Who asked: the REPL's reported user or token name, and from where. */
  user: string;
  via: string;
}

export interface AdminCommand {
  name: string;
  usage: string;
  summary: string;
  /** State-changing: written to the audit log with who ran it. */
  mutates: boolean;
  /** Completion hints per argument position. */
  complete?: Array<'kind' | 'node' | 'command'>;
  /** A building block of a REPL loop (top, tail): left out of help and completion. */
  internal?: boolean;
  run(target: AdminTarget, args: string[], ctx: CommandContext): Promise<AdminResult>;
}

function table(columns: string[], rows: TableCell[][], title?: string): AdminResult {
  return { kind: 'table', columns, rows, ...(title !== undefined && { title }) };
}

function need(args: string[], n: number, usage: string): void {
  if (args.length < n) throw troupeError('ERR_INVALID_INPUT', `usage: ${usage}`);
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/** Every admin command, in the order `help` lists them. */
export const adminCommands: readonly AdminCommand[] = [
  {
    name: 'members',
    usage: 'members',
    summary: 'members with status, incarnation, zone, address and how long they have been in that status',
    mutates: false,
    async run(t) {
      return table(
        ['id', 'status', 'incarnation', 'zone', 'address', 'for'],
        t.members().map((m) => [
          m.id === t.id ? `${m.id} (this)` : m.id,
          m.status,
          m.incarnation,
          m.zone ?? '',
          m.address,
          m.forMs === undefined ? '' : formatAge(m.forMs),
        ]),
      );
    },
  },
  {
    name: 'ring',
    usage: 'ring',
    summary: 'partitions per member: how many it leads and how many copies it holds',
    mutates: false,
    async run(t) {
      const p = t.placement();
      if (p === undefined) return { kind: 'text', text: 'not in a cluster: this node holds every actor' };
      const ids = [...new Set([...Object.keys(p.primaries), ...Object.keys(p.copies)])].sort((a, b) => Number(a) - Number(b));
      return table(
        ['node', 'primary of', 'share', 'copies'],
        ids.map((id) => [id, p.primaries[id] ?? 0, `${(((p.primaries[id] ?? 0) / p.partitions) * 100).toFixed(1)}%`, p.copies[id] ?? 0]),
        `${p.partitions} partitions, ${p.replicas} copies each`,
      );
    },
  },
  {
    name: 'where',
    usage: 'where <kind> <key>',
    summary: "a key's partition, primary and replicas, and its slot (worker thread) on this node",
    mutates: false,
    complete: ['kind'],
    async run(t, args) {
      need(args, 2, this.usage);
      const w = t.where(args[0]!, args[1]!);
      return table(['kind', 'key', 'partition', 'primary', 'replicas', 'slot', 'thread'], [
        [args[0]!, args[1]!, w.partition, w.replicas[0] ?? t.id, w.replicas.slice(1).join(',') || '-', w.slot, w.thread],
      ]);
    },
  },
  {
    name: 'connections',
    usage: 'connections [<kind> <key>]',
    summary: "WebSocket sockets per member; with a key: the members holding that actor's sockets, as its primary knows them",
    mutates: false,
    complete: ['kind'],
    async run(t, args) {
      if (args.length !== 0 && args.length !== 2) throw troupeError('ERR_INVALID_INPUT', `usage: ${this.usage}`);
      if (t.connections === undefined) throw troupeError('ERR_INVALID_OPTION', 'this node serves no WebSocket sessions');
      const v = await t.connections(args[0], args[1]);
      if ('watchers' in v)
        return table(['node', 'sockets', 'lease left'], v.watchers.map((w) => [w.node, w.connections, `${(w.expiresInMs / 1000).toFixed(1)} s`]), `${v.kind}/${v.key}`);
      return table(['node', 'sockets', 'actors'], v.nodes.map((n) => [n.node, n.connections ?? n.error ?? '-', n.sessions ?? '-']), `${v.total} sockets`);
    },
  },
  {
    name: 'actors',
    usage: 'actors [top [n]]',
    summary: 'resident actors per worker slot and kind, mailbox depth, messages processed; top: the n busiest and largest per slot',
    mutates: false,
    async run(t, args) {
      if (args[0] === 'top') return topActors(t, args[1] === undefined ? 10 : count(args[1], 'actors top [n]'));
      if (args[0] !== undefined) throw troupeError('ERR_INVALID_INPUT', `usage: ${this.usage}`);
      const rows: Array<Array<string | number>> = [];
      for (const w of await t.workers()) {
        const byKind = (w.byKind ?? {}) as Record<string, number>;
        const kinds = Object.entries(byKind).map(([k, n]) => `${k}:${n}`).join(' ');
        rows.push([num(w.slot), num(w.resident), kinds || '-', num(w.queued), num(w.pendingAsks), num(w.processed), num(w.restarts), num(w.deadLetters)]);
      }
      return table(['slot', 'resident', 'by kind', 'queued', 'asks', 'processed', 'restarts', 'dead letters'], rows);
    },
  },
  {
    name: 'partitions',
    usage: 'partitions [role]',
    summary: "this node's copies of partitions (role primary|replica|idle filters): epoch, log end, commit, applied",
    mutates: false,
    async run(t, args) {
      const role = args[0];
      const rows = t
        .partitions()
        .filter((p) => role === undefined || p.role === role)
        .map((p) => [num(p.p), String(p.role ?? ''), String(p.epoch ?? ''), num(p.end), num(p.commit), num(p.applied), String(p.handoff ?? '')]);
      return table(['partition', 'role', 'epoch', 'end', 'commit', 'applied', 'handoff'], rows, `${rows.length} partitions`);
    },
  },
  {
    name: 'summary',
    usage: 'summary',
    summary: "this node's actors by kind and message counters as one value (the status page reads it from every member)",
    mutates: false,
    async run(t) {
      const byKind: Record<string, number> = {};
      let resident = 0;
      let queued = 0;
      let processed = 0;
      let restarts = 0;
      let deadLetters = 0;
      for (const w of await t.workers()) {
        resident += num(w.resident);
        queued += num(w.queued);
        processed += num(w.processed);
        restarts += num(w.restarts);
        deadLetters += num(w.deadLetters);
        for (const [k, n] of Object.entries((w.byKind ?? {}) as Record<string, unknown>)) byKind[k] = (byKind[k] ?? 0) + num(n);
      }
      const leads = t.partitions().filter((p) => p.role === 'primary').length;
      return { kind: 'value', value: { node: t.id, resident, byKind, queued, processed, restarts, deadLetters, leads } };
    },
  },
  {
    name: 'stats',
    usage: 'stats',
    summary: 'asks per kind (outcomes, latency p50/p99), router, replication (lag per peer), transport counters',
    mutates: false,
    async run(t) {
      return { kind: 'value', value: t.counters() };
    },
  },
  {
    name: 'kinds',
    usage: 'kinds',
    summary: 'actor kinds this node serves',
    mutates: false,
    async run(t) {
      return table(['kind'], t.kinds().map((k) => [k]));
    },
  },
  {
    name: 'ask',
    usage: 'ask <kind> <key> <command> [json]',
    summary: 'send a message as a client would and print the reply',
    mutates: true,
    complete: ['kind'],
    async run(t, args) {
      need(args, 3, this.usage);
      let input: unknown;
      if (args[3] !== undefined) {
        try {
          input = JSON.parse(args[3]);
        } catch {
          throw troupeError('ERR_MALFORMED_JSON', `the input of ask is not JSON: ${args[3].slice(0, 80)}`);
        }
      }
      return { kind: 'value', value: await t.ask(args[0]!, args[1]!, args[2]!, input) };
    },
  },
  {
    name: 'inspect',
    usage: 'inspect <kind> <key>',
    summary: 'one actor: state, last events, mailbox, resident or not, slot (read-only: never activates it)',
    mutates: false,
    complete: ['kind'],
    async run(t, args) {
      need(args, 2, this.usage);
      const [kind, key] = [args[0]!, args[1]!];
      knownKind(t, kind);
      let v: ActorView;
      try {
        v = await t.inspect(kind, key);
      } catch (e) {
        throw notHere(t, kind, key, e);
      }
      const lines = [
        `${kind}/${key} on node ${t.id}, slot ${v.slot}: ${v.resident ? `resident (${v.status ?? '?'})` : 'not resident (shown from the journal; not activated)'}`,
        `seq ${v.seq}, mailbox ${v.mailbox}, processed ${v.processed} (${v.recent} recently)`,
        `state (${v.stateBytes} bytes of JSON): ${typeof v.state === 'string' && v.stateBytes > v.state.length ? v.state : JSON.stringify(v.state)}`,
        v.events.length === 0 ? 'last events: none stored' : `last ${v.events.length} events:`,
        ...v.events.map((e) => `  #${e.seq} v${e.v} ${JSON.stringify(e.event)}`),
      ];
      return { kind: 'text', text: lines.join('\n') };
    },
  },
  steerCommand('restart', 'reload a resident actor from its journal, as its supervisor would (queued messages are kept)'),
  steerCommand('passivate', 'deactivate a resident actor now (ignored while it has queued messages); its next message reactivates it'),
  {
    name: 'backup',
    usage: 'backup <dir>',
    summary: "hot backup of this node's journal into <dir> (new or empty; a path on the node's machine)",
    mutates: true,
    async run(t, args) {
      need(args, 1, this.usage);
      const from = await t.backup(args[0]!);
      return { kind: 'text', text: `node ${t.id}: backed up ${from} to ${args[0]}` };
    },
  },
  {
    name: 'leave-plan',
    usage: 'leave-plan <node>',
    summary: 'dry run: how many partitions and copies move if that member leaves (changes nothing)',
    mutates: false,
    complete: ['node'],
    async run(t, args) {
      need(args, 1, this.usage);
      const node = memberId(args[0]!, 'leave-plan <node>');
      if (!t.members().some((m) => m.id === node)) throw troupeError('ERR_UNKNOWN_NODE', `leave-plan: node ${node} is not a member`);
      return planResult(t.movePlan({ leave: node }));
    },
  },
  {
    name: 'join-plan',
    usage: 'join-plan [id]',
    summary: 'dry run: how many partitions and copies move if a new node (default: the next free id) joins',
    mutates: false,
    async run(t, args) {
      const ids = t.members().map((m) => m.id);
      const node = args[0] === undefined ? Math.max(-1, ...ids) + 1 : memberId(args[0], 'join-plan [id]');
      if (ids.includes(node)) throw troupeError('ERR_INVALID_INPUT', `join-plan [id]: node ${node} is a member already`);
      return planResult(t.movePlan({ join: node }));
    },
  },
  {
    name: 'sample',
    usage: 'sample [n]',
    summary: "this node's counters for top: messages and asks processed, resident, queued, replication lag, busiest actors",
    mutates: false,
    internal: true,
    async run(t, args) {
      const n = args[0] === undefined ? 5 : count(args[0], 'sample [n]');
      const [slots, workers] = await Promise.all([t.top(n), t.workers()]);
      const busiest = slots.flatMap((s) => s.busiest.map((a) => ({ ...a, slot: s.slot }))).sort((a, b) => b.recent - a.recent).slice(0, n);
      const lag = (t.counters().replication as { lag?: Record<string, { p50Ms?: number; p99Ms?: number }> } | undefined)?.lag ?? {};
      const lagP99 = Object.values(lag).reduce((m, f) => Math.max(m, num(f.p99Ms)), 0);
      return {
        kind: 'value',
        value: {
          node: t.id,
          processed: slots.reduce((a, s) => a + s.processed, 0),
          asks: slots.reduce((a, s) => a + s.asks, 0),
          resident: slots.reduce((a, s) => a + s.resident, 0),
          queued: workers.reduce((a, w) => a + num(w.queued), 0),
          lagP99Ms: lagP99,
          busiest,
        },
      };
    },
  },
  {
    name: 'tail-open',
    usage: 'tail-open [level]',
    summary: "follow this node's log lines at level and above (the REPL's tail reads them)",
    mutates: false,
    internal: true,
    async run(t, args) {
      return { kind: 'value', value: { follower: t.follow(levelArg(args[0] ?? 'info')) } };
    },
  },
  {
    name: 'tail-read',
    usage: 'tail-read <follower>',
    summary: 'the lines a follower buffered since its last read, and how many it dropped',
    mutates: false,
    internal: true,
    async run(t, args) {
      need(args, 1, this.usage);
      const got = t.followed(count(args[0]!, this.usage));
      if (got === undefined) throw troupeError('ERR_NOT_FOUND', `no log follower ${args[0]} on node ${t.id} (it was closed or replaced)`);
      return { kind: 'value', value: got };
    },
  },
  {
    name: 'tail-close',
    usage: 'tail-close <follower>',
    summary: 'stop following',
    mutates: false,
    internal: true,
    async run(t, args) {
      need(args, 1, this.usage);
      t.unfollow(count(args[0]!, this.usage));
      return { kind: 'text', text: 'closed' };
    },
  },
  {
    name: 'clock',
    usage: 'clock [step <±ms> | reset]',
    summary: "this node's wall clock and its offset; step or reset it (only on a node started with --fault-injection, for tests)",
    // A step is a fault injected into a live node: audited, like every change.
    mutates: true,
    async run(t, args) {
      const f = t.faults;
      if (args.length === 0) {
        const offsetMs = f?.wallOffset() ?? 0;
        return { kind: 'value', value: { node: t.id, faultInjection: f !== undefined, offsetMs, wallNow: f === undefined ? null : new Date(f.wallNow()).toISOString() } };
      }
      const sub = args[0];
      if ((sub !== 'step' || args.length !== 2) && (sub !== 'reset' || args.length !== 1)) throw troupeError('ERR_INVALID_INPUT', `usage: ${this.usage}`);
      const faults = faultsOf(t, `clock ${sub}`);
      let offsetMs: number;
      if (sub === 'reset') offsetMs = faults.stepWall(-faults.wallOffset());
      else {
        if (!/^[+-]?\d{1,10}$/.test(args[1]!)) throw troupeError('ERR_INVALID_INPUT', `clock step takes a whole number of ms, e.g. -30000 or +60000; got '${args[1]!.slice(0, 40)}'`);
        offsetMs = faults.stepWall(Number(args[1]));
      }
      return { kind: 'value', value: { node: t.id, offsetMs, wallNow: new Date(faults.wallNow()).toISOString() } };
    },
  },
  {
    name: 'ids',
    usage: 'ids [n]',
    summary: "n (default 1, at most 10000) fresh Snowflake ids from this node's generator, in the order issued (--fault-injection only)",
    mutates: false,
    internal: true,
    async run(t, args) {
      if (args.length > 1) throw troupeError('ERR_INVALID_INPUT', `usage: ${this.usage}`);
      const n = args[0] === undefined ? 1 : count(args[0], this.usage);
      if (n > 10_000) throw troupeError('ERR_INVALID_INPUT', `usage: ${this.usage} (n must be at most 10000)`);
      return { kind: 'value', value: { node: t.id, ids: faultsOf(t, 'ids').ids(n) } };
    },
  },
  {
    name: 'drain',
    usage: 'drain',
    summary: 'graceful leave: hand every partition off, then stop (the node this REPL is on, or `@<node> drain`); the REPL prints the partitions it still leads every second until it stops',
    mutates: true,
    async run(t) {
      void t.drain().catch(() => undefined);
      return { kind: 'text', text: `node ${t.id} is draining: its partitions move to the others, then it stops` };
    },
  },
  {
    name: 'stop',
    usage: 'stop',
    summary: 'stop the node at once (its partitions fail over)',
    mutates: true,
    async run(t) {
      void t.stop().catch(() => undefined);
      return { kind: 'text', text: `node ${t.id} is stopping` };
    },
  },
];

export function findCommand(name: string): AdminCommand {
  const c = adminCommands.find((x) => x.name === name);
  if (c === undefined) throw troupeError('ERR_UNKNOWN_COMMAND', `no admin command "${name}" (try help)`);
  return c;
}

/** Commands the REPL runs itself, as loops over the commands above (they stream to the terminal). */
export const replCommands: ReadonlyArray<{ name: string; usage: string; summary: string }> = [
  { name: 'top', usage: 'top [snapshots]', summary: 'every second, per node: messages/s, asks/s, resident, queued, replication lag, busiest actors (a key or Ctrl-C ends it; piped: that many snapshots, default 1)' },
  { name: 'tail', usage: 'tail [level] [duration]', summary: "live log lines of the node (@<node> tail: another's) at level and above, until a key or Ctrl-C, or for duration (2s, 500ms; piped default 2s)" },
];

/** Names for completion: the commands an operator types. */
export function visibleCommandNames(): string[] {
  return [...adminCommands.filter((c) => c.internal !== true).map((c) => c.name), ...replCommands.map((c) => c.name)];
}

export function helpResult(): AdminResult {
  return table(
    ['command', 'does'],
    [
      ...adminCommands.filter((c) => c.internal !== true).map((c) => [c.usage, c.summary]),
      ...replCommands.map((c) => [c.usage, c.summary]),
      ['@<node> <command>', 'run the command on another member'],
      ['help', 'this list'],
    ],
  );
}

// ── Helpers of the commands above ─────────────────────────────────────────────────────────

/** The node's fault switches, or the refusal that says how a test turns them on. */
function faultsOf(t: AdminTarget, what: string): FaultInjection {
  if (t.faults !== undefined) return t.faults;
  // ERR_FORBIDDEN until the catalog has a code of its own for a switched-off fault injection.
  throw troupeError('ERR_FORBIDDEN', `${what} is refused: node ${t.id} was not started with --fault-injection (a switch for tests only)`, { option: '--fault-injection' });
}

function knownKind(t: AdminTarget, kind: string): void {
  if (!t.kinds().includes(kind)) throw troupeError('ERR_UNKNOWN_KIND', `node ${t.id} serves no actor kind '${kind}' (kinds lists them)`, { kind });
}

/** A journal that refuses on this node (another member leads the partition) names the member to ask. */
function notHere(t: AdminTarget, kind: string, key: string, e: unknown): unknown {
  if (!isTroupeError(e, 'ERR_NOT_PRIMARY') && !isTroupeError(e, 'ERR_PARTITION_UNAVAILABLE')) return e;
  const primary = t.where(kind, key).replicas[0];
  return troupeError(e.code, `${e.message} (${kind}/${key} is led by node ${primary ?? '?'}: try @${primary ?? '<node>'} inspect ${kind} ${key})`);
}

/** `restart <kind> <key>` or `passivate <kind> <key>`: one resident actor steered where it lives. */
function steerCommand(op: 'restart' | 'passivate', summary: string): AdminCommand {
  const usage = `${op} <kind> <key>`;
  return { name: op, usage, summary, mutates: true, complete: ['kind'], run: (t, args) => steer(t, args, op, usage) };
}

async function steer(t: AdminTarget, args: string[], op: 'restart' | 'passivate', usage: string): Promise<AdminResult> {
  need(args, 2, usage);
  const [kind, key] = [args[0]!, args[1]!];
  knownKind(t, kind);
  if (!(await t.steer(kind, key, op)))
    throw troupeError('ERR_NOT_FOUND', `${kind}/${key} is not resident on node ${t.id}: nothing to ${op} (where shows its primary)`, { kind });
  const done = op === 'restart' ? 'restarts: it reloads from its journal; its queued messages wait for it' : 'passivates once its mailbox is empty';
  return { kind: 'text', text: `${kind}/${key} on node ${t.id} ${done}` };
}

async function topActors(t: AdminTarget, n: number): Promise<AdminResult> {
  const rows: TableCell[][] = [];
  let note = '';
  for (const s of await t.top(n)) {
    for (const [list, actors] of [['busiest', s.busiest], ['largest', s.largest]] as const)
      for (const a of actors) rows.push([s.slot, list, a.kind, a.key, a.recent, a.mailbox, a.processed, a.status]);
    if (s.scanned < s.resident) note = ` (each slot read its ${s.scanned} most recently active of ${s.resident} resident)`;
  }
  return table(['slot', 'list', 'kind', 'key', 'recent msgs', 'mailbox', 'processed', 'status'], rows, `top ${n} actors per slot on node ${t.id}${note}`);
}

function planResult(plan: MovePlan | undefined): AdminResult {
  if (plan === undefined) return { kind: 'text', text: 'not in a cluster: nothing moves' };
  const title = `${plan.change}: ${plan.primariesMoved} of ${plan.partitions} partitions change primary, ${plan.copiesMoved} copies move${plan.note ? `; ${plan.note}` : ''}`;
  return table(
    ['node', 'leads now', 'leads after', 'copies now', 'copies after'],
    plan.perNode.map((r) => [r.node, r.leadsBefore, r.leadsAfter, r.copiesBefore, r.copiesAfter]),
    title,
  );
}

function count(s: string, usage: string): number {
  const n = Number(s);
  if (!/^\d{1,6}$/.test(s) || n < 1) throw troupeError('ERR_INVALID_INPUT', `usage: ${usage} (n must be a positive integer)`);
  return n;
}

function memberId(s: string, usage: string): number {
  const n = Number(s);
  if (!/^\d{1,4}$/.test(s) || n > 1023) throw troupeError('ERR_INVALID_INPUT', `usage: ${usage} (a node id, 0..1023)`);
  return n;
}

function levelArg(s: string): LogLevelName {
  if (!Object.hasOwn(logLevels, s)) throw troupeError('ERR_INVALID_INPUT', `tail level must be one of ${Object.keys(logLevels).join(', ')}; got '${s.slice(0, 40)}'`);
  return s as LogLevelName;
}

export function formatAge(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}
