/**
 * The chat page (served at `GET /` through chat.ts's `page` export): one self-contained HTML file,
 * no asset routes, plain JavaScript implementing the client side of docs/websocket.md:
 *
 * - asks carry ids (`<tab>-<n>`) and stay pending until their reply; after a reconnect they are
 *   sent again, in order, with the same ids, so the room applies each once;
 * - pushes are acked by seq; the highest seq (or `sync`) seen is the resume point `?from=`, and a
 *   push at or below it is dropped as a duplicate;
 * - when the socket closes, the page reconnects with backoff to the next of its own origin and
 *   the cluster's gateways (`GET /cluster/gateways`, fetched at load), so it survives the death of
 *   the node it was loaded from;
 * - the header shows the node serving the room (`GET /cluster/where`, asked of the node the
 *   socket is on: the page's own node may be dead) and the node of the socket (the `hello` frame).
 *
 * The visitor's name lives in the `visitor` actor, keyed by the sid cookie (`/sessions/visitor/…`).
 * `window.chat` holds the page's state for tests and the curious.
 */
export const CHAT_PAGE_HTML = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>troupe chat</title>
<style>
  :root { font: 15px/1.4 system-ui, sans-serif; color: #1d2733; background: #f4f6f8; }
  body { margin: 0; }
  header { background: #1f3a5f; color: #fff; padding: 12px 20px; }
  header h1 { margin: 0 0 4px; font-size: 20px; }
  .nodes b { display: inline-block; min-width: 1.4em; text-align: center; border-radius: 4px; background: #fff; color: #1f3a5f; padding: 0 4px; }
  #state[data-state=connected] { color: #8fe3a1; }
  #state[data-state=reconnecting], #state[data-state=connecting] { color: #ffd27a; }
  main { max-width: 760px; margin: 0 auto; padding: 12px 20px; }
  form { display: flex; gap: 8px; margin: 8px 0; }
  input { flex: 1; padding: 6px 8px; font: inherit; }
  #messages { list-style: none; padding: 0; margin: 12px 0; background: #fff; border: 1px solid #d5dbe1; border-radius: 6px; min-height: 240px; }
  #messages li { padding: 6px 10px; border-bottom: 1px solid #eef1f4; }
  #messages .from { font-weight: 600; margin-right: 6px; }
  #messages time { color: #7a8794; font-size: 12px; float: right; }
  #messages li.note { color: #7a5b00; font-style: italic; }
  #notice { color: #9b2c2c; min-height: 1.4em; }
  footer { color: #7a8794; font-size: 13px; }
</style>
</head>
<body>
<header>
  <h1>troupe chat · <span id="room"></span></h1>
  <div class="nodes">room served by node <b id="owner">?</b> · this tab's socket on node <b id="node">?</b> · <span id="state" data-state="connecting">connecting</span></div>
</header>
<main>
  <form id="name-form"><input id="name" maxlength="32" placeholder="your name" autocomplete="nickname"><button>Save name</button></form>
  <div id="notice"></div>
  <ol id="messages"></ol>
  <form id="say-form"><input id="text" maxlength="1000" placeholder="say something" autocomplete="off"><button>Send</button></form>
  <footer><span id="unsent">0</span> unsent · <span id="reconnects">0</span> reconnects · <a href="/status">cluster status</a></footer>
</main>
<script>
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const room = new URLSearchParams(location.search).get('room') || 'lobby';
  const bytes = crypto.getRandomValues(new Uint8Array(8)); // randomUUID needs a secure context; this does not
  const tab = Array.from(bytes, (b) => b.toString(36).padStart(2, '0')).join('');
  const RETRYABLE = ['ERR_NOT_PRIMARY', 'ERR_NOT_OWNER', 'ERR_NO_NODES', 'ERR_PARTITION_UNAVAILABLE', 'ERR_NODE_UNREACHABLE',
    'ERR_STALE_EPOCH', 'ERR_STOPPED', 'ERR_WORKER_DIED', 'ERR_SEND_QUEUE_FULL', 'ERR_MAILBOX_FULL', 'ERR_ASK_TIMEOUT', 'ERR_OVERLOADED'];
  const BACKOFF_MS = [100, 250, 500, 1000, 2000]; // per failed attempt in a row; the last repeats
  // A node sends 'sync' once it has read the room's log from our resume point; none this long
  // after 'hello' means its read failed (the room's primary was failing over) and nothing will
  // come on this socket: try the next node. A room's catch-up takes milliseconds, a failover ~2 s.
  const SYNC_TIMEOUT_MS = 4000;

  const chat = (window.chat = {
    room, tab, name: null, node: null, owner: null, gateway: null, state: 'connecting',
    messages: [],       // { n, from, text, at }, ascending n, each n once
    lastSeq: 0,         // every push up to this seq arrived: the resume point
    synced: false,      // the first sync came: history is in
    reconnects: 0, gaps: 0, duplicates: 0,
    anomalies: [],      // pushes out of order or shown twice: should stay empty
    gateways: [],
  });
  const pending = new Map(); // id → { frame, resolve, reject, tries }, in send order
  let asks = 0;
  let socket = null;         // the open socket, once its hello came
  let attempt = 0;           // failed connection attempts in a row
  let next = 0;              // index into candidates() of the next connection: after a close, the next node

  $('room').textContent = room;

  // ── Messages ────────────────────────────────────────────────────────────────────────────
  function show(m) {
    if (chat.messages.some((x) => x.n === m.n)) return false;
    let i = chat.messages.length;
    while (i > 0 && chat.messages[i - 1].n > m.n) i--;
    chat.messages.splice(i, 0, m);
    const li = document.createElement('li');
    li.dataset.n = String(m.n);
    const from = document.createElement('span');
    from.className = 'from';
    from.textContent = m.from;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.text; // text, never HTML: what others say cannot script this page
    const at = document.createElement('time');
    at.textContent = new Date(m.at).toLocaleTimeString();
    li.append(from, text, at);
    const list = $('messages');
    list.insertBefore(li, list.children[i] || null);
    li.scrollIntoView({ block: 'nearest' });
    return true;
  }

  function note(text) {
    const li = document.createElement('li');
    li.className = 'note';
    li.textContent = text;
    $('messages').append(li);
  }

  function notice(text) {
    $('notice').textContent = text;
  }

  // ── The socket ──────────────────────────────────────────────────────────────────────────
  function candidates() {
    return [...new Set([location.origin, ...chat.gateways])];
  }

  function setState(state) {
    chat.state = state;
    $('state').textContent = state;
    $('state').dataset.state = state;
    $('node').textContent = chat.node === null ? '?' : String(chat.node);
    $('unsent').textContent = String(pending.size);
    $('reconnects').textContent = String(chat.reconnects);
  }

  function connect() {
    const list = candidates();
    const base = list[next % list.length];
    next++;
    const ws = new WebSocket(base.replace(/^http/, 'ws') + '/ws/room/' + encodeURIComponent(room) + '?from=' + chat.lastSeq);
    let helloed = false;
    ws.onmessage = (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (f.t === 'hello') {
        helloed = true;
        attempt = 0;
        socket = ws;
        chat.node = f.node;
        chat.gateway = base;
        chat.synced = false;
        setTimeout(() => {
          if (socket === ws && !chat.synced) ws.close(4000, 'no sync');
        }, SYNC_TIMEOUT_MS);
        setState('connected');
        for (const [, p] of pending) send(p.frame); // in order, same ids: applied once
        void refreshOwner();
      } else if (f.t === 'reply') replied(f);
      else if (f.t === 'push') pushed(f);
      else if (f.t === 'sync') {
        if (f.seq > chat.lastSeq) chat.lastSeq = f.seq;
        chat.synced = true;
      } else if (f.t === 'gap') {
        chat.gaps++;
        note('messages ' + (f.from + 1) + '..' + f.to + ' of the log are gone; showing the room\\'s recent ones');
        ask('recent', undefined).then(fillRecent, () => undefined);
      } else if (f.t === 'error') notice(f.error.code + ': ' + f.error.message);
    };
    ws.onclose = () => {
      if (socket === ws) socket = null;
      if (helloed) chat.reconnects++;
      else attempt++;
      setState('reconnecting');
      setTimeout(connect, BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]);
    };
  }

  function send(frame) {
    if (socket !== null && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  function pushed(f) {
    if (f.seq <= chat.lastSeq) {
      chat.duplicates++; // redelivered after a reconnect: already shown
      send({ t: 'ack', seq: chat.lastSeq });
      return;
    }
    chat.lastSeq = f.seq;
    send({ t: 'ack', seq: f.seq });
    const m = f.msg;
    const last = chat.messages.length === 0 ? 0 : chat.messages[chat.messages.length - 1].n;
    if (m.n !== last + 1 && chat.gaps === 0) chat.anomalies.push('push n=' + m.n + ' after n=' + last);
    if (!show(m)) chat.anomalies.push('push n=' + m.n + ' shown twice');
  }

  function replied(f) {
    const p = pending.get(f.id);
    if (p === undefined) return; // an answer to a resend whose first reply came already
    if (f.ok) {
      pending.delete(f.id);
      setState(chat.state);
      return p.resolve(f.value);
    }
    if (RETRYABLE.includes(f.error.code) && ++p.tries < 30) {
      // Nothing applied, or the id makes a second delivery harmless: try again shortly.
      setTimeout(() => pending.has(f.id) && send(p.frame), 300);
      return;
    }
    pending.delete(f.id);
    setState(chat.state);
    p.reject(f.error);
  }

  function ask(command, input) {
    const id = tab + '-' + ++asks;
    const frame = input === undefined ? { t: 'ask', id, command } : { t: 'ask', id, command, input };
    return new Promise((resolve, reject) => {
      pending.set(id, { frame, resolve, reject, tries: 0 });
      setState(chat.state);
      send(frame);
    });
  }

  function fillRecent(r) {
    const first = r.count - r.recent.length + 1;
    r.recent.forEach((m, i) => show({ n: first + i, ...m }));
  }

  async function refreshOwner() {
    if (chat.gateway === null) return;
    try {
      const res = await fetch(chat.gateway + '/cluster/where?kind=room&key=' + encodeURIComponent(room), { signal: AbortSignal.timeout(1500) });
      if (res.ok) chat.owner = (await res.json()).node;
    } catch {
      // that node is going away: the socket's close moves us on
    }
    $('owner').textContent = chat.owner === null ? '?' : String(chat.owner);
  }

  // ── The visitor (sid cookie session) ──────────────────────────────────────────────────────
  async function visitor(command, init) {
    const res = await fetch('/sessions/visitor/' + command, { credentials: 'same-origin', ...init });
    const body = await res.json();
    if (!res.ok) throw body.error;
    return body;
  }

  function sessionTrouble(e) {
    if (e && (e.code === 'ERR_BAD_SESSION' || e.code === 'ERR_SESSION_EXPIRED'))
      notice(e.code + ': this browser\\'s sid cookie is not one this cluster signed (another cluster on this host?); clear this site\\'s cookies for a new session. Your name stays in this tab only.');
    else notice('cannot reach your session: ' + (e && e.code ? e.code + ': ' + e.message : String(e)));
  }

  $('name-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = $('name').value.trim();
    if (name === '') return notice('type a name first');
    chat.name = name;
    try {
      chat.name = (await visitor('name', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) })).name;
      notice('');
      document.body.dataset.named = chat.name;
    } catch (e) {
      sessionTrouble(e);
    }
  });

  $('say-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('text').value;
    if (text.trim() === '') return;
    $('text').value = '';
    ask('say', { from: chat.name || 'guest-' + tab.slice(0, 4), text }).then(
      () => undefined,
      (e) => notice('not sent: ' + e.code + ': ' + e.message),
    );
  });

  setInterval(() => void refreshOwner(), 2000);

  (async () => {
    try {
      chat.gateways = (await (await fetch('/cluster/gateways')).json()).gateways;
    } catch {
      chat.gateways = []; // the origin alone: right behind a load balancer
    }
    connect();
    try {
      chat.name = (await visitor('get')).name;
      if (chat.name !== null) $('name').value = chat.name;
    } catch (e) {
      sessionTrouble(e);
    }
    document.body.dataset.loaded = 'true';
  })();
})();
</script>
</body>
</html>
`;
