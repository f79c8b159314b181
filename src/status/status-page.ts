import type { AdminExecutor } from '../admin/admin-executor.ts';

/** A membership change as the status page lists it. */
export interface MemberEvent {
  at: string;
  member: number;
  from: string;
  to: string;
}

/** What the status page polls (`GET /status/data`). */
export interface StatusData {
  self: number;
  at: string;
  members: Array<{ id: number; address: string; status: string; incarnation: number; zone?: string; forMs?: number }>;
  placement: { partitions: number; replicas: number; primaries: Record<string, number>; copies: Record<string, number> } | null;
  /** Each up member's summary, asked over the cluster (a member that does not answer shows its error). */
  nodes: Array<{ node: number; resident?: number; byKind?: Record<string, number>; processed?: number; queued?: number; leads?: number; error?: string }>;
  events: MemberEvent[];
}

/** How long the page waits for a member's summary before showing it as unanswered. */
const SUMMARY_TIMEOUT_MS = 1000;

export async function statusData(executor: AdminExecutor, events: readonly MemberEvent[]): Promise<StatusData> {
  const t = executor.target;
  const members = t.members();
  const up = members.filter((m) => m.status === 'alive' || m.status === 'suspect');
  const nodes = await Promise.all(
    up.map(async (m) => {
      try {
        const r =
          m.id === t.id
            ? await executor.run('summary', [], 'status page', 'http', undefined)
            : await executor.peers!.call(m.id, 'summary', [], 'status page', SUMMARY_TIMEOUT_MS);
        return r.kind === 'value' ? (r.value as StatusData['nodes'][number]) : { node: m.id, error: 'unexpected answer' };
      } catch (e) {
        return { node: m.id, error: (e as { code?: string }).code ?? String(e) };
      }
    }),
  );
  return { self: t.id, at: new Date().toISOString(), members, placement: t.placement() ?? null, nodes, events: [...events] };
}

/**
 * The status page: one self-contained HTML document (no framework, no external assets — the
 * machines have no internet), polling `/status/data` every second. Members with their health,
 * the ring as an SVG donut (each node's share of partitions, this node outlined), actors per
 * node and kind, live message rates, recent membership changes.
 */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>troupe status</title>
<style>
  :root { --fg: #1d2330; --muted: #6b7385; --line: #e3e6ee; --bg: #f7f8fb; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
  header { padding: 14px 22px; background: #1d2330; color: #fff; display: flex; gap: 18px; align-items: baseline; }
  header h1 { margin: 0; font-size: 18px; }
  header .meta { color: #b8bfd0; }
  main { display: grid; grid-template-columns: 340px 1fr; gap: 18px; padding: 18px 22px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
  section h2 { margin: 0 0 8px; font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 4px 8px 4px 0; border-bottom: 1px solid var(--line); white-space: nowrap; }
  td.num, th.num { text-align: right; }
  .dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 6px; }
  .alive { background: #2e9e5b; } .suspect { background: #e0a100; } .down { background: #d64545; } .left { background: #9aa1b1; }
  .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
  #ring svg { display: block; margin: 0 auto; }
  #events li { margin: 2px 0; color: var(--muted); } #events b { color: var(--fg); font-weight: 600; }
  #error { color: #d64545; }
  .wide { grid-column: 1 / -1; }
</style>
</head>
<body>
<header><h1>troupe</h1><span class="meta" id="summary">loading…</span><span id="error"></span></header>
<main>
  <section id="ring"><h2>Ring — share of partitions led</h2><div id="ring-svg"></div><table id="ring-legend"></table></section>
  <section><h2>Members</h2><table id="members"></table></section>
  <section class="wide"><h2>Actors per node and kind · live counters</h2><table id="actors"></table></section>
  <section class="wide"><h2>Recent membership changes</h2><ul id="events"></ul></section>
</main>
<script>
"use strict";
const COLORS = ['#3b6fd8', '#e07b39', '#2e9e5b', '#a14fc1', '#d64570', '#1597a6', '#8a6d3b', '#6b7385'];
const color = (id) => COLORS[id % COLORS.length];
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
const svgEl = (tag, attrs) => {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};
const age = (ms) => ms == null ? '' : ms < 1000 ? ms + ' ms' : ms < 120000 ? (ms / 1000).toFixed(1) + ' s' : Math.round(ms / 60000) + ' min';
let previous = null;

function arc(cx, cy, r, from, to) {
  const p = (a) => [cx + r * Math.sin(a), cy - r * Math.cos(a)];
  const [x1, y1] = p(from), [x2, y2] = p(to);
  return 'M' + x1.toFixed(2) + ' ' + y1.toFixed(2) + ' A' + r + ' ' + r + ' 0 ' + (to - from > Math.PI ? 1 : 0) + ' 1 ' + x2.toFixed(2) + ' ' + y2.toFixed(2);
}

function renderRing(d) {
  const box = document.getElementById('ring-svg');
  const legend = document.getElementById('ring-legend');
  const svg = svgEl('svg', { width: 220, height: 220, viewBox: '0 0 220 220', role: 'img', 'aria-label': 'ring' });
  const shares = d.placement ? Object.entries(d.placement.primaries).map(([id, n]) => [Number(id), n]).sort((a, b) => a[0] - b[0]) : [[d.self, 1]];
  const total = shares.reduce((s, [, n]) => s + n, 0) || 1;
  let at = 0;
  for (const [id, n] of shares) {
    const span = (n / total) * Math.PI * 2;
    const end = at + Math.min(span, Math.PI * 2 - 1e-4);
    const path = svgEl('path', { d: arc(110, 110, 80, at, end), fill: 'none', stroke: color(id), 'stroke-width': id === d.self ? 34 : 24, 'data-node': id });
    const title = svgEl('title', {});
    title.textContent = 'node ' + id + ': ' + n + ' partitions';
    path.append(title);
    svg.append(path);
    at += span;
  }
  const label = svgEl('text', { x: 110, y: 106, 'text-anchor': 'middle', 'font-size': 15, 'font-weight': 600 });
  label.textContent = 'node ' + d.self;
  const sub = svgEl('text', { x: 110, y: 126, 'text-anchor': 'middle', 'font-size': 12, fill: '#6b7385' });
  sub.textContent = 'you are here';
  svg.append(label, sub);
  box.replaceChildren(svg);
  legend.replaceChildren(el('tr', {}, el('th', {}, 'node'), el('th', { class: 'num' }, 'leads'), el('th', { class: 'num' }, 'share'), el('th', { class: 'num' }, 'copies')));
  for (const [id, n] of shares)
    legend.append(el('tr', { 'data-node': id }, el('td', {}, el('span', { class: 'swatch', style: 'background:' + color(id) }), 'node ' + id + (id === d.self ? ' (this)' : '')),
      el('td', { class: 'num' }, n), el('td', { class: 'num' }, ((n / total) * 100).toFixed(1) + '%'), el('td', { class: 'num' }, d.placement ? (d.placement.copies[id] || 0) : '')));
}

function renderMembers(d) {
  const t = document.getElementById('members');
  t.replaceChildren(el('tr', {}, el('th', {}, 'node'), el('th', {}, 'status'), el('th', {}, 'for'), el('th', {}, 'zone'), el('th', {}, 'address')));
  for (const m of d.members)
    t.append(el('tr', { 'data-member': m.id, 'data-status': m.status }, el('td', {}, 'node ' + m.id + (m.id === d.self ? ' (this)' : '')),
      el('td', {}, el('span', { class: 'dot ' + m.status }), m.status), el('td', {}, age(m.forMs)), el('td', {}, m.zone || ''), el('td', {}, m.address)));
}

function renderActors(d, dt) {
  const kinds = [...new Set(d.nodes.flatMap((n) => Object.keys(n.byKind || {})))].sort();
  const t = document.getElementById('actors');
  t.replaceChildren(el('tr', {}, el('th', {}, 'node'), ...kinds.map((k) => el('th', { class: 'num' }, k)), el('th', { class: 'num' }, 'resident'),
    el('th', { class: 'num' }, 'queued'), el('th', { class: 'num' }, 'messages/s'), el('th', { class: 'num' }, 'processed'), el('th', {}, '')));
  for (const n of d.nodes) {
    const before = previous && previous.nodes.find((p) => p.node === n.node);
    const rate = before && dt > 0 && n.processed != null ? Math.max(0, (n.processed - before.processed) / dt).toFixed(0) : '';
    t.append(el('tr', { 'data-node': n.node }, el('td', {}, el('span', { class: 'swatch', style: 'background:' + color(n.node) }), 'node ' + n.node),
      ...kinds.map((k) => el('td', { class: 'num' }, (n.byKind || {})[k] || 0)), el('td', { class: 'num' }, n.resident ?? ''),
      el('td', { class: 'num' }, n.queued ?? ''), el('td', { class: 'num' }, rate), el('td', { class: 'num' }, n.processed ?? ''), el('td', {}, n.error || '')));
  }
}

function renderEvents(d) {
  const ul = document.getElementById('events');
  ul.replaceChildren(...(d.events.length ? d.events.slice().reverse().map((e) => el('li', {}, e.at.slice(11, 19) + ' ', el('b', {}, 'node ' + e.member), ' ' + e.from + ' → ' + e.to)) : [el('li', {}, 'none since this node started')]));
}

async function refresh() {
  try {
    const r = await fetch('/status/data', { cache: 'no-store' });
    const d = await r.json();
    const dt = previous ? (Date.parse(d.at) - Date.parse(previous.at)) / 1000 : 0;
    const up = d.members.filter((m) => m.status === 'alive' || m.status === 'suspect').length;
    document.getElementById('summary').textContent = 'node ' + d.self + ' · ' + up + ' of ' + d.members.length + ' members up' + (d.placement ? ' · ' + d.placement.partitions + ' partitions × ' + d.placement.replicas + ' copies' : '');
    renderMembers(d); renderRing(d); renderActors(d, dt); renderEvents(d);
    document.getElementById('error').textContent = '';
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    previous = d;
  } catch (e) {
    document.getElementById('error').textContent = 'cannot reach this node: ' + e.message;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
`;
