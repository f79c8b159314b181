/**
 * Network namespaces for real partitions (multi-host.test.ts's layout): node i runs in namespace
 * `ns(i)` with address `ip(i)` on a veth whose other end sits on a bridge in a hub namespace; the
 * test process (in the root namespace) reaches the gateways through one more veth onto that
 * bridge, at `ip(254)`. Faults are nftables rules inside a node's own namespace (table
 * `inet chaos`, hooks input and output), matched on the peers' addresses and the node-to-node
 * port, so client traffic to the gateways is never cut:
 *
 *      root ns (test, 10.214.S.254) ──veth──┐
 *      ns1 (node 1, 10.214.S.1)    ──veth──┤ br0 in the hub ns
 *      ns2 (node 2, 10.214.S.2)    ──veth──┤
 *      ns3 (node 3, 10.214.S.3)    ──veth──┘   ← `nft` rules in ns3 cut {1,2}|{3}
 *
 * The transport opens one outbound connection per peer and lane and only receives on inbound
 * ones, so dropping the SYNs one way (`refuseConnections`) stops messages one way once the
 * existing connections are gone; `deafen` also resets the existing ones (a one-way partition).
 * `redirect` sends a node's connections to one peer through a LinkProxy in the root namespace
 * (nft DNAT in a table `ip chaosnat`), for delay and frame faults. Everything is removed by
 * `destroy()` (deleting a namespace takes its interfaces and nft tables along).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { LAB_CLUSTER_PORT } from './chaos-cluster.ts';

/** Why namespaces and nftables cannot be used here, or undefined when they can. */
export function labUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespaces and nftables need root';
  for (const [cmd, args] of [
    ['ip', ['netns', 'list']],
    ['nft', ['--version']],
  ] as const) {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.error || r.status !== 0) return `'${cmd} ${args.join(' ')}' fails: ${r.error?.message ?? r.stderr.trim()}`;
  }
  return undefined;
}

export class NetLab {
  readonly tag = randomBytes(3).toString('hex');
  /** 10.214.S: a subnet that exists only on this lab's interfaces (multi-host.test.ts uses 10.213). */
  readonly subnet = `10.214.${1 + (parseInt(this.tag, 16) % 250)}`;
  readonly ipCommand = resolveCommand('ip');
  private readonly hub = `troupe-${this.tag}-hub`;
  private readonly namespaces: string[] = [];
  private readonly rootVeth = `tr${this.tag}`;

  constructor(readonly size: number) {}

  ns(i: number): string {
    return `troupe-${this.tag}-${i}`;
  }

  ip(i: number): string {
    return `${this.subnet}.${i}`;
  }

  /** Creates the hub, one namespace per node and the test process's link; on failure removes what it made. */
  create(): this {
    try {
      this.add(this.hub);
      this.inNs(this.hub, 'ip', 'link', 'add', 'br0', 'type', 'bridge');
      this.inNs(this.hub, 'ip', 'link', 'set', 'br0', 'up');
      for (let i = 1; i <= this.size; i++) {
        this.add(this.ns(i));
        this.plug(`th${this.tag}${i}`, `tp${this.tag}${i}`, this.ns(i), i);
        this.inNs(this.ns(i), 'ip', 'link', 'set', 'lo', 'up');
        // One table per node namespace; rules are added to and flushed from its two chains.
        this.nft(i, [
          'add table inet chaos',
          'add chain inet chaos input { type filter hook input priority 0; policy accept; }',
          'add chain inet chaos output { type filter hook output priority 0; policy accept; }',
        ]);
      }
      // The test process's end stays in the root namespace.
      this.plug(this.rootVeth, `tp${this.tag}r`, undefined, 254);
    } catch (e) {
      this.destroy();
      throw e;
    }
    return this;
  }

  /** Applies nft commands inside node i's namespace (one transaction). */
  nft(i: number, commands: string[]): void {
    const r = spawnSync('ip', ['netns', 'exec', this.ns(i), 'nft', '-f', '-'], { input: commands.join('\n') + '\n', encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`nft in ${this.ns(i)}: ${r.stderr.trim()}\n${commands.join('\n')}`);
  }

  /** Two-way cut between node `i` and `peers` on the node-to-node port (rules in i's namespace). */
  cut(i: number, peers: readonly number[]): void {
    const set = `{ ${peers.map((p) => this.ip(p)).join(', ')} }`;
    this.nft(i, this.bothWays(set, ''));
  }

  /** Drops `percent`% of node-to-node packets between node `i` and `peer`, each way (`numgen random`). */
  loss(i: number, peer: number, percent: number): void {
    this.nft(i, this.bothWays(this.ip(peer), `numgen random mod 100 < ${percent} `));
  }

  /**
   * `peers` cannot open node-to-node connections to node `i` (their SYNs are dropped at i), while
   * i can still open its own to them and every established connection carries on.
   */
  refuseConnections(i: number, peers: readonly number[]): void {
    const set = `{ ${peers.map((p) => this.ip(p)).join(', ')} }`;
    this.nft(i, [`add rule inet chaos input ip saddr ${set} tcp dport ${LAB_CLUSTER_PORT} tcp flags & (syn | ack) == syn drop`]);
  }

  /**
   * A one-way partition, node `i` deaf to `peers`: every node-to-node packet from them to i's
   * port is answered with a TCP reset. The transport sends data only from a connection's client
   * to its server (the server answers on its own outbound connection), so this kills their
   * connections to i — the established ones at their next packet, new ones at the SYN — while
   * i's connections to them, whose packets to i come from the peers' port, carry on: i can
   * send to `peers` but never hears them. (`refuseConnections` alone leaves the established
   * connections working; a reset rather than a drop makes the peers notice at once, and retry
   * into the same reset, instead of waiting out TCP's retransmissions.)
   */
  deafen(i: number, peers: readonly number[]): void {
    const set = `{ ${peers.map((p) => this.ip(p)).join(', ')} }`;
    const p = LAB_CLUSTER_PORT;
    this.nft(i, [
      `add rule inet chaos input ip saddr ${set} tcp dport ${p} counter reject with tcp reset`,
      // Counted, not cut: i's own links to the peers, each way (what `counted` reads as evidence).
      `add rule inet chaos output ip daddr ${set} tcp dport ${p} counter comment "sent"`,
      `add rule inet chaos input ip saddr ${set} tcp sport ${p} counter comment "acked"`,
    ]);
  }

  /** Packets counted by node i's rules tagged `comment` (rules that count without cutting). */
  counted(i: number, comment: string): number {
    const lines = this.rules(i).split('\n').filter((l) => l.includes(`comment "${comment}"`));
    return lines.reduce((n, l) => n + Number(/packets (\d+)/.exec(l)?.[1] ?? 0), 0);
  }

  /**
   * Node `i`'s new node-to-node connections to `peer` go to `to` instead (nft DNAT in i's
   * namespace, table `ip chaosnat`): a LinkProxy there forwards them to the peer. Connections
   * already open keep their path (NAT is decided on a connection's first packet), so redirect
   * before the nodes start. The peer sees the proxy's address as the source, which the transport
   * does not check: the handshake binds the addresses the nodes claim, not the socket's.
   */
  redirect(i: number, peer: number, to: { host: string; port: number }): void {
    this.nft(i, [
      'add table ip chaosnat',
      'add chain ip chaosnat output { type nat hook output priority -100; policy accept; }',
      `add rule ip chaosnat output ip daddr ${this.ip(peer)} tcp dport ${LAB_CLUSTER_PORT} counter dnat to ${to.host}:${to.port}`,
    ]);
  }

  /** Connections node i opened through `redirect`'s rules so far (their counters count first packets only). */
  redirected(i: number): number {
    const r = spawnSync('ip', ['netns', 'exec', this.ns(i), 'nft', 'list', 'table', 'ip', 'chaosnat'], { encoding: 'utf8' }).stdout;
    return [...r.matchAll(/packets (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  }

  /** Removes every rule from node i's namespace (the table and chains stay). */
  heal(i: number): void {
    this.nft(i, ['flush chain inet chaos input', 'flush chain inet chaos output']);
  }

  healAll(): void {
    for (let i = 1; i <= this.size; i++) this.heal(i);
  }

  /** Node i's rules with their packet counters, for a failure's message and the report. */
  rules(i: number): string {
    return spawnSync('ip', ['netns', 'exec', this.ns(i), 'nft', 'list', 'table', 'inet', 'chaos'], { encoding: 'utf8' }).stdout;
  }

  /** Packets node i's rules dropped (or reset) so far: their counters, less the count-only rules'. */
  dropped(i: number): number {
    const cutting = this.rules(i).split('\n').filter((l) => !l.includes('comment "'));
    return cutting.reduce((n, l) => n + Number(/packets (\d+)/.exec(l)?.[1] ?? 0), 0);
  }

  /** Deletes every namespace this lab made (their interfaces and nft tables go with them) and the root veth. */
  destroy(): void {
    spawnSync('ip', ['link', 'del', this.rootVeth]);
    for (const name of this.namespaces.splice(0)) spawnSync('ip', ['netns', 'del', name]);
  }

  /** Whether anything of this lab is left (for the cleanup check). */
  leftovers(): string[] {
    const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    const links = spawnSync('ip', ['-o', 'link'], { encoding: 'utf8' }).stdout;
    return [...list.split('\n').filter((l) => l.includes(`troupe-${this.tag}`)), ...links.split('\n').filter((l) => l.includes(this.rootVeth))];
  }

  /** Node-to-node packets between this namespace and `addresses`, both directions, with an optional match before the verdict. */
  private bothWays(addresses: string, match: string): string[] {
    const p = LAB_CLUSTER_PORT;
    return [
      `add rule inet chaos input ip saddr ${addresses} tcp dport ${p} ${match}counter drop`,
      `add rule inet chaos input ip saddr ${addresses} tcp sport ${p} ${match}counter drop`,
      `add rule inet chaos output ip daddr ${addresses} tcp dport ${p} ${match}counter drop`,
      `add rule inet chaos output ip daddr ${addresses} tcp sport ${p} ${match}counter drop`,
    ];
  }

  private add(name: string): void {
    sh('ip', 'netns', 'add', name);
    this.namespaces.push(name);
  }

  /** A veth from namespace `ns` (root when undefined) to the hub's bridge, with address ip(i). */
  private plug(end: string, port: string, ns: string | undefined, i: number): void {
    sh('ip', 'link', 'add', end, 'type', 'veth', 'peer', 'name', port);
    if (ns !== undefined) sh('ip', 'link', 'set', end, 'netns', ns);
    sh('ip', 'link', 'set', port, 'netns', this.hub);
    this.inNs(this.hub, 'ip', 'link', 'set', port, 'master', 'br0');
    this.inNs(this.hub, 'ip', 'link', 'set', port, 'up');
    const at = ns === undefined ? [] : ['ip', 'netns', 'exec', ns];
    sh(...at, 'ip', 'addr', 'add', `${this.ip(i)}/24`, 'dev', end);
    sh(...at, 'ip', 'link', 'set', end, 'up');
  }

  private inNs(name: string, ...args: string[]): void {
    sh('ip', 'netns', 'exec', name, ...args);
  }
}

function sh(...args: string[]): void {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.error?.message ?? r.stderr.trim()}`);
}

/** The absolute path of a command (fork's execPath does not search PATH reliably). */
function resolveCommand(name: string): string {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return r.stdout.trim() || name;
}
