// Warden's dashboard: plain JavaScript, no build step.
//
// Every figure comes from the control plane's API, called with the operator's token (kept in
// sessionStorage: this tab only). Every string from the server reaches the page through
// textContent or an attribute set by hand, never parsed as HTML. Live updates come from
// /api/v1/stream, read with fetch (EventSource cannot send an Authorization header); where the
// server has no stream yet, the journal is polled instead.
'use strict';

(() => {
  const TOKEN_KEY = 'warden.operator-token';
  const API = '/api/v1';
  const FEED_ROWS = 60;
  const TIMELINE_ROWS = 100;
  // How far back (in journal records) a "latest N" search looks before giving up: a bound on
  // the work one page view asks of the server on a journal of millions of records.
  const LOOKBACK_LIMIT = 200000;
  const KINDS = [
    'decision', 'outcome', 'alert', 'quarantined', 'released', 'approval_requested',
    'approval_answered', 'session_started', 'session_ended', 'access_refused', 'agent_changed',
    'sandbox_started', 'sandbox_ended', 'sandbox_killed', 'sandbox_limit',
  ];

  // === Small helpers =========================================================================

  /** An element with attributes (`on…` are listeners) and children (strings become text). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith('on') && typeof value === 'function') {
        node.addEventListener(key.slice(2), value);
      } else if (key === 'class') {
        node.className = value;
      } else if (key === 'dataset') {
        Object.assign(node.dataset, value);
      } else if (value === true) {
        node.setAttribute(key, '');
      } else {
        node.setAttribute(key, String(value));
      }
    }
    append(node, children);
    return node;
  }

  function append(node, ...children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function clear(node) {
    node.replaceChildren();
    return node;
  }

  const $ = (id) => document.getElementById(id);

  function fmtTime(ms) {
    if (typeof ms !== 'number') return '—';
    return new Date(ms).toLocaleString();
  }

  function fmtClock(ms) {
    if (typeof ms !== 'number') return '—';
    const d = new Date(ms);
    const today = new Date();
    return d.toDateString() === today.toDateString()
      ? d.toLocaleTimeString()
      : d.toLocaleString();
  }

  function fmtAgo(ms) {
    if (typeof ms !== 'number') return '';
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 5) return 'just now';
    if (s < 90) return `${s} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} days ago`;
  }

  function fmtLeft(ms) {
    const s = Math.max(0, Math.round((ms - Date.now()) / 1000));
    if (s >= 120) return `${Math.floor(s / 60)} min ${s % 60} s left`;
    return `${s} s left`;
  }

  function fmtNum(n) {
    return typeof n === 'number' ? n.toLocaleString() : '—';
  }

  function time(ms, short) {
    return el('time', {
      datetime: typeof ms === 'number' ? new Date(ms).toISOString() : null,
      title: typeof ms === 'number' ? fmtTime(ms) : null,
    }, short ? fmtClock(ms) : fmtTime(ms));
  }

  function badge(text, kind) {
    return el('span', { class: `badge ${kind || text || ''}` }, text);
  }

  function agentLink(name) {
    if (typeof name !== 'string' || name === '') return '—';
    return el('a', { href: `#/agents/${encodeURIComponent(name)}` }, name);
  }

  function alertLink(seq, text) {
    return el('a', { href: `#/alerts/${encodeURIComponent(String(seq))}` }, text);
  }

  function pretty(value) {
    return el('pre', {}, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
  }

  function str(value) {
    if (value === undefined || value === null) return '';
    return typeof value === 'string' ? value : JSON.stringify(value);
  }

  function truncate(text, n) {
    return text.length > n ? `${text.slice(0, n - 1)}…` : text;
  }

  function errorBox(err) {
    return el('p', { class: 'error', role: 'alert' }, messageOf(err));
  }

  function messageOf(err) {
    if (err instanceof ApiError) return err.message;
    return `Something went wrong in the page: ${err && err.message ? err.message : err}`;
  }

  /** One line that says what a journal record is about. */
  function summarize(record) {
    const b = record.body || {};
    switch (record.kind) {
      case 'decision': {
        const args = b.args && typeof b.args === 'object' && Object.keys(b.args).length
          ? ` ${truncate(JSON.stringify(b.args), 120)}` : '';
        return `${str(b.action)} ${str(b.target)}${args}${b.reason ? ` — ${str(b.reason)}` : ''}`;
      }
      case 'outcome':
        return `result of #${str(b.decision_seq)}: ${str(b.outcome)}${b.detail ? ` — ${str(b.detail)}` : ''}`;
      case 'alert':
        return `${str(b.detector)} (${str(b.severity)}): ${str(b.summary)}`;
      case 'quarantined':
        return `${str(b.level || 'quarantine')} by ${str(b.by)}: ${str(b.reason)}`;
      case 'released':
        return `released by ${str(b.by)}: ${str(b.reason)}`;
      case 'approval_requested':
        return `approval asked for #${str(b.decision_seq)}, until ${fmtClock(b.expires_ms)}`;
      case 'approval_answered':
        return `#${str(b.decision_seq)}: ${str(b.answer).replace('_', ' ')} by ${str(b.by)}: ${str(b.reason)}`;
      case 'session_started':
        return `session on ${str(b.server)}${b.parent ? ` (from ${str(b.parent)})` : ''}`;
      case 'session_ended':
        return str(b.detail);
      case 'access_refused':
        return `${str(b.reason)} (${str(b.remote)})`;
      case 'agent_changed':
        return `credentials ${str(b.change)}`;
      case 'sandbox_started':
        return `sandbox: ${Array.isArray(b.command) ? b.command.map(str).join(' ') : ''}`;
      case 'sandbox_ended':
        return str(b.status);
      case 'sandbox_killed':
        return `killed ${str(b.processes)} processes (${str(b.by)}, ${str(b.method)})`;
      case 'sandbox_limit':
        return b.limit === 'memory'
          ? `memory limit: ${str(b.times)} processes killed by the kernel`
          : `process limit (${str(b.max)}): ${str(b.times)} process starts refused`;
      default: {
        const { kind: _kind, ...rest } = b;
        return truncate(JSON.stringify(rest), 200);
      }
    }
  }

  /** An agent's state as the dashboard names it (a restriction's level is accepted too). */
  function stateName(state) {
    return { quarantine: 'quarantined', throttle: 'throttled' }[state] || str(state) || 'active';
  }

  /** The badge of a record: its effect for decisions, else its kind. */
  function recordBadge(record) {
    const b = record.body || {};
    if (record.kind === 'decision') return badge(str(b.effect), str(b.effect));
    if (record.kind === 'alert') return badge(`alert ${str(b.severity)}`, str(b.severity));
    if (record.kind === 'outcome') return badge(str(b.outcome), b.outcome === 'ok' ? 'ok' : 'outcome');
    return badge(record.kind.replace(/_/g, ' '), record.kind);
  }

  // === The API ===============================================================================

  class ApiError extends Error {
    constructor(status, message, missingRoute) {
      super(message);
      this.status = status;
      // A 404 without Warden's JSON error: this Warden does not serve the route at all.
      this.missingRoute = Boolean(missingRoute);
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  }

  async function api(path, options) {
    const { method = 'GET', body } = options || {};
    const headers = { authorization: `Bearer ${token()}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response;
    try {
      response = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (err) {
      throw new ApiError(0, `Warden cannot be reached (${err.message}).`);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (response.ok) {
      if (data === null) throw new ApiError(response.status, `${path}: the answer is not JSON.`);
      return data;
    }
    const said = data && typeof data.error === 'string' ? data.error : null;
    const error = new ApiError(
      response.status,
      said || `${method} ${path}: HTTP ${response.status}`,
      response.status === 404 && !said,
    );
    if (response.status === 401) signOut(said || 'Your session has ended: sign in again.');
    throw error;
  }

  const get = (path) => api(path);
  const post = (path, body) => api(path, { method: 'POST', body });

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
    }
    const s = q.toString();
    return s ? `?${s}` : '';
  }

  /** A page of the journal (server-side filter and cursor). */
  function journalPage(params) {
    return get(`/journal${query(params)}`);
  }

  // Whether the server pages newest first (`order=newest`, `before=`); older ones page
  // forward only, and the dashboard then looks back in windows (see `latest`).
  let newestFirst = true;

  function orderUnsupported(err) {
    return err instanceof ApiError && err.status === 400 && /"order"|"before"/.test(err.message);
  }

  /** The sequence number of the newest record (0 for an empty journal). */
  async function headSeq() {
    if (newestFirst) {
      try {
        const page = await journalPage({ order: 'newest', limit: 1 });
        return page.records.length ? page.records[0].seq : 0;
      } catch (err) {
        if (!orderUnsupported(err)) throw err;
        newestFirst = false;
      }
    }
    // Gallop forward with one-record pages, then bisect: O(log n) requests on any journal.
    let lo = 0;
    let step = 1024;
    let hi = null;
    while (hi === null) {
      const probe = await journalPage({ after: lo + step, limit: 1 });
      if (probe.records.length) {
        lo = probe.records[0].seq;
        step *= 2;
      } else {
        hi = lo + step;
      }
    }
    while (hi - lo > 1000) {
      const mid = Math.floor((lo + hi) / 2);
      const probe = await journalPage({ after: mid, limit: 1 });
      if (probe.records.length) lo = probe.records[0].seq;
      else hi = mid;
    }
    const last = await journalPage({ after: lo, limit: 1000 });
    return last.records.length ? last.records[last.records.length - 1].seq : lo;
  }

  /**
   * The newest `n` records matching `filter` up to `head`, oldest first, and whether older
   * matches may exist beyond what was searched (`complete: false`).
   */
  async function latest(filter, n, head, path) {
    const route = path || '/journal';
    const key = route === '/alerts' ? 'alerts' : 'records';
    if (newestFirst) {
      try {
        const page = await get(`${route}${query({ ...filter, order: 'newest', before: head + 1, limit: n })}`);
        return { records: page[key].slice().reverse(), complete: true, next: page.next };
      } catch (err) {
        if (!orderUnsupported(err)) throw err;
        newestFirst = false;
      }
    }
    // Forward-only paging: look back from the head in growing windows, never further than
    // LOOKBACK_LIMIT records, a bound on the work one view asks of the server.
    let window = Math.max(n * 4, 1000);
    for (;;) {
      const start = Math.max(0, head - window);
      let found = [];
      let after = start;
      for (;;) {
        const page = await get(`${route}${query({ ...filter, after, limit: 1000 })}`);
        found = found.concat(page[key].filter((r) => r.seq <= head)).slice(-n);
        if (page.next === null || page.next === undefined || page.next >= head) break;
        after = page.next;
      }
      if (found.length >= n || start === 0) return { records: found, complete: start === 0, next: null };
      if (window >= LOOKBACK_LIMIT) return { records: found, complete: false, next: null };
      window = Math.min(window * 4, LOOKBACK_LIMIT);
    }
  }

  // === Session ===============================================================================

  const session = { me: null, head: 0 };

  function showSignIn(message) {
    $('app').hidden = true;
    $('signin').hidden = false;
    const error = $('signin-error');
    error.textContent = message || '';
    error.hidden = !message;
    $('signin-token').focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    session.me = null;
    verified = null;
    live.stop();
    disposeView();
    clear($('view'));
    showSignIn(message);
  }

  async function whoAmI() {
    try {
      return await get('/me');
    } catch (err) {
      if (!(err instanceof ApiError) || !err.missingRoute) throw err;
      // An older Warden: any viewer route checks the token.
      await journalPage({ limit: 1 });
      return { name: 'operator', role: 'unknown' };
    }
  }

  async function signIn(candidate) {
    sessionStorage.setItem(TOKEN_KEY, candidate);
    try {
      session.me = await whoAmI();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return; // signOut showed the message
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn(messageOf(err));
      return;
    }
    $('signin').hidden = true;
    $('app').hidden = false;
    $('who').textContent = `${str(session.me.name)} · ${str(session.me.role)}`;
    try {
      session.head = await headSeq();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      banner(messageOf(err));
    }
    live.start(session.head);
    refreshApprovalCount();
    route();
  }

  function banner(message) {
    const node = $('banner');
    node.textContent = message || '';
    node.hidden = !message;
  }

  function canDo(role) {
    const order = ['viewer', 'approver', 'admin'];
    const mine = session.me ? order.indexOf(session.me.role) : -1;
    return mine === -1 || mine >= order.indexOf(role); // unknown role: let the server decide
  }

  function roleHint(role) {
    return canDo(role)
      ? null
      : el('span', { class: 'muted' }, `needs the ${role} role; yours is ${session.me.role}`);
  }

  // === Live updates ==========================================================================

  const live = {
    after: 0,
    controller: null,
    timer: null,
    running: false,
    listeners: new Set(),
    failures: 0,

    start(after) {
      this.stop();
      this.after = after;
      this.running = true;
      this.failures = 0;
      this.connect();
    },

    stop() {
      this.running = false;
      if (this.controller) this.controller.abort();
      this.controller = null;
      clearTimeout(this.timer);
      this.setState('off', 'offline');
    },

    setState(state, text) {
      const node = $('live');
      node.dataset.state = state;
      node.textContent = text;
    },

    deliver(record) {
      if (!record || typeof record.seq !== 'number' || record.seq <= this.after) return;
      this.after = record.seq;
      session.head = Math.max(session.head, record.seq);
      for (const listener of this.listeners) {
        try {
          listener(record);
        } catch (err) {
          console.error(err);
        }
      }
    },

    retry() {
      if (!this.running) return;
      this.failures += 1;
      const delay = Math.min(10000, 500 * 2 ** Math.min(this.failures, 5));
      this.setState('reconnecting', 'reconnecting…');
      this.timer = setTimeout(() => this.connect(), delay);
    },

    async connect() {
      if (!this.running) return;
      const controller = new AbortController();
      this.controller = controller;
      let watchdog = null;
      // Keepalives arrive regularly; a silent connection is a dead one.
      const arm = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => controller.abort(), 45000);
      };
      try {
        const response = await fetch(`${API}/stream${query({ after: this.after })}`, {
          headers: { authorization: `Bearer ${token()}`, accept: 'text/event-stream' },
          cache: 'no-store',
          credentials: 'omit',
          signal: controller.signal,
        });
        if (response.status === 401) {
          const data = await response.json().catch(() => null);
          signOut(data && data.error ? data.error : 'Your session has ended: sign in again.');
          return;
        }
        if (response.status === 404) {
          this.poll();
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        this.failures = 0;
        this.setState('live', 'live');
        arm();
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          arm();
          buffer += value;
          buffer = buffer.replace(/\r\n/g, '\n');
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            this.event(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (err) {
        if (!this.running || (controller.signal.aborted && this.controller !== controller)) return;
      } finally {
        clearTimeout(watchdog);
      }
      if (this.controller === controller) this.retry();
    },

    event(block) {
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') name = value;
        else if (field === 'data') data.push(value);
      }
      if (!data.length || (name !== 'record' && name !== 'message')) return;
      try {
        this.deliver(JSON.parse(data.join('\n')));
      } catch (err) {
        console.error('a stream event that is not JSON', err);
      }
    },

    /** For a Warden without /stream: the journal, every two seconds. */
    async poll() {
      if (!this.running) return;
      this.setState('polling', 'polling');
      try {
        for (;;) {
          const page = await journalPage({ after: this.after, limit: 1000 });
          page.records.forEach((r) => this.deliver(r));
          if (page.next === null || !page.records.length) break;
        }
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) return;
      }
      if (this.running) this.timer = setTimeout(() => this.poll(), 2000);
    },
  };

  /** Calls `fn` at most once per `ms`, after the last of a burst of calls. */
  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  const refreshApprovalCount = debounce(async () => {
    const count = $('approvals-count');
    try {
      const { approvals } = await get('/approvals');
      count.textContent = String(approvals.length);
      count.hidden = approvals.length === 0;
    } catch {
      count.hidden = true;
    }
  }, 300);

  live.listeners.add((record) => {
    if (record.kind === 'approval_requested' || record.kind === 'approval_answered') {
      refreshApprovalCount();
    }
  });

  // === Routing ===============================================================================

  let view = null; // {onRecord?, dispose?}
  let generation = 0;

  function disposeView() {
    if (view) {
      if (view.onRecord) live.listeners.delete(view.onRecord);
      if (view.dispose) view.dispose();
    }
    view = null;
    generation += 1;
  }

  function parseHash() {
    const raw = location.hash.replace(/^#/, '') || '/';
    const [path, search] = raw.split('?');
    let parts;
    try {
      parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    } catch {
      parts = ['?'];
    }
    return { parts, params: new URLSearchParams(search || '') };
  }

  function route() {
    if (!session.me) return;
    disposeView();
    banner('');
    const { parts, params } = parseHash();
    const root = clear($('view'));
    const mine = generation;
    const section = parts[0] || 'overview';
    for (const link of document.querySelectorAll('[data-nav]')) {
      link.classList.toggle('active', link.dataset.nav === section
        || (section === 'agents' && link.dataset.nav === 'overview')
        || (section === 'alerts' && link.dataset.nav === 'overview'));
    }
    const views = {
      overview: () => overviewView(root),
      agents: () => (parts[1] ? agentView(root, parts[1]) : overviewView(root)),
      approvals: () => approvalsView(root),
      journal: () => journalView(root, params),
      alerts: () => alertView(root, parts[1]),
      policies: () => policiesView(root),
    };
    const make = views[section];
    if (!make) {
      append(root, el('p', { class: 'error' }, 'There is no such page.'), el('a', { href: '#/' }, 'Overview'));
      return;
    }
    view = make() || {};
    view.alive = () => mine === generation;
    if (view.onRecord) live.listeners.add(view.onRecord);
    document.title = `Warden — ${section[0].toUpperCase()}${section.slice(1)}`;
  }

  /** A panel with a title, an optional tool row, and a body to fill. */
  function panel(title, options) {
    const { tools, cls, id } = options || {};
    const body = el('div', { class: 'body' });
    const node = el('section', { class: `panel ${cls || ''}`, id },
      el('header', {}, el('h2', {}, title), el('span', { class: 'spacer' }), tools || null),
      body);
    return { node, body };
  }

  /** Fills `target` with what `load` resolves to, or its error, if the view is still shown. */
  async function fill(target, load, alive) {
    try {
      const content = await load();
      if (!alive()) return;
      clear(target);
      append(target, [content]);
    } catch (err) {
      if (!alive()) return;
      if (err instanceof ApiError && err.status === 401) return;
      clear(target);
      target.append(errorBox(err));
    }
  }

  function notServed(what) {
    return el('p', { class: 'warning' }, `This Warden does not serve ${what} yet.`);
  }

  // === Overview ==============================================================================

  function agentsTable(agents) {
    if (!agents.length) return el('p', { class: 'empty' }, 'No agent has acted yet.');
    const rows = agents.map((a) => el('tr', { dataset: { agent: str(a.name) } },
      el('td', {}, agentLink(a.name)),
      el('td', {}, badge(str(a.state), str(a.state)),
        a.quarantine ? el('div', { class: 'muted' }, truncate(str(a.quarantine.reason), 80)) : null),
      el('td', { class: 'time' }, a.last_time_ms ? time(a.last_time_ms, true) : '—'),
      el('td', { class: 'num' }, fmtNum(a.decisions && a.decisions.allow)),
      el('td', { class: 'num' }, fmtNum(a.decisions && a.decisions.deny)),
      el('td', { class: 'num' }, fmtNum(a.decisions && a.decisions.ask)),
      el('td', { class: 'num' }, fmtNum(a.alerts)),
      el('td', { class: 'num' }, fmtNum(a.sessions_open))));
    return el('table', { id: 'agents-table' },
      el('thead', {}, el('tr', {},
        el('th', {}, 'Agent'), el('th', {}, 'State'), el('th', {}, 'Last action'),
        el('th', { class: 'num' }, 'Allowed'), el('th', { class: 'num' }, 'Denied'),
        el('th', { class: 'num' }, 'Asked'), el('th', { class: 'num' }, 'Alerts'),
        el('th', { class: 'num' }, 'Open sessions'))),
      el('tbody', {}, rows));
  }

  /** The agent list, or (on a Warden without /agents) the quarantine list. */
  async function loadAgents() {
    try {
      const { agents } = await get('/agents');
      return agentsTable(agents.map((a) => ({ ...a, state: stateName(a.state) })));
    } catch (err) {
      if (!(err instanceof ApiError) || !err.missingRoute) throw err;
      const { quarantined } = await get('/quarantine');
      return [notServed('the agent list'), agentsTable(quarantined.map((q) => ({
        name: q.agent, state: stateName(q.level), quarantine: q,
      })))];
    }
  }

  function feedRow(record, fresh) {
    return el('tr', { class: fresh ? 'fresh' : '', dataset: { seq: String(record.seq), kind: record.kind } },
      el('td', { class: 'time' }, time(record.time_ms, true)),
      el('td', {}, agentLink(record.agent)),
      el('td', {}, recordBadge(record)),
      el('td', { class: 'summary' }, record.kind === 'alert'
        ? alertLink(record.seq, summarize(record)) : summarize(record)));
  }

  function approvalsSummary(approvals) {
    if (!approvals.length) return el('p', { class: 'empty' }, 'Nothing is waiting for a human.');
    return el('table', {}, el('tbody', {}, approvals.map((a) => el('tr', {},
      el('td', {}, agentLink(a.agent)),
      el('td', { class: 'mono' }, `${str(a.action)} ${str(a.target)}`),
      el('td', { class: 'time' }, fmtLeft(a.expires_ms))))),
    el('p', {}, el('a', { href: '#/approvals' }, 'Answer them →')));
  }

  function alertsSummary(result) {
    const alerts = result.records.slice().reverse();
    if (!alerts.length) {
      return el('p', { class: 'empty' }, result.complete
        ? 'No alert has been raised.'
        : `No alert in the last ${fmtNum(LOOKBACK_LIMIT)} records.`);
    }
    return el('table', { id: 'alerts-table' }, el('tbody', {}, alerts.map((r) => el('tr', { dataset: { seq: String(r.seq) } },
      el('td', { class: 'time' }, time(r.time_ms, true)),
      el('td', {}, badge(str(r.body.severity), str(r.body.severity))),
      el('td', {}, agentLink(r.agent)),
      el('td', { class: 'summary' }, alertLink(r.seq, `${str(r.body.detector)}: ${str(r.body.summary)}`))))));
  }

  function overviewView(root) {
    const agents = panel('Agents', { id: 'agents' });
    const feed = panel('Live actions', { id: 'feed', cls: 'scroll' });
    const approvals = panel('Pending approvals', { id: 'pending' });
    const alerts = panel('Recent alerts', { id: 'recent-alerts', cls: 'scroll' });
    append(root,
      el('div', { class: 'page-head' }, el('h1', {}, 'Overview'),
        el('span', { class: 'sub' }, 'Agents, what they do now, and what needs a human.')),
      el('div', { class: 'grid overview' },
        el('div', { class: 'stack' }, agents.node, feed.node),
        el('div', { class: 'stack' }, approvals.node, alerts.node)));
    const state = {};
    const alive = () => state.view.alive();

    const feedBody = el('tbody', {});
    const feedTable = el('table', { id: 'feed-table' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Time'), el('th', {}, 'Agent'), el('th', {}, 'What'), el('th', {}, 'Detail'))),
      feedBody);
    const feedEmpty = el('p', { class: 'empty' }, 'Waiting for the first action…');
    const feedHead = session.head;
    fill(feed.body, async () => {
      const { records } = await latest({}, FEED_ROWS, feedHead);
      // Live records that arrived meanwhile are on top already: the page goes below them.
      const older = records.filter((r) => r.seq <= feedHead).reverse();
      for (const r of older) feedBody.append(feedRow(r, false));
      feedEmpty.hidden = feedBody.childElementCount > 0;
      return [feedEmpty, feedTable];
    }, alive);

    const loadApprovals = () => fill(approvals.body, async () => {
      try {
        const { approvals: list } = await get('/approvals');
        return approvalsSummary(list);
      } catch (err) {
        if (err instanceof ApiError && err.missingRoute) return notServed('approvals');
        throw err;
      }
    }, alive);
    const loadAlerts = () => fill(alerts.body, async () => alertsSummary(
      await latest({}, 15, session.head, '/alerts')), alive);
    const loadAgentsPanel = () => fill(agents.body, loadAgents, alive);
    loadAgentsPanel();
    loadApprovals();
    loadAlerts();

    const refreshAgents = debounce(() => alive() && loadAgentsPanel(), 400);
    const refreshApprovals = debounce(() => alive() && loadApprovals(), 300);
    const refreshAlerts = debounce(() => alive() && loadAlerts(), 300);
    // Lists are refreshed while the page is open, in case a change came from elsewhere.
    const ticker = setInterval(() => { refreshAgents(); refreshApprovals(); }, 15000);

    state.view = {
      onRecord(record) {
        feedBody.prepend(feedRow(record, true));
        feedEmpty.hidden = true;
        while (feedBody.childElementCount > FEED_ROWS) feedBody.lastElementChild.remove();
        refreshAgents();
        if (record.kind.startsWith('approval_')) refreshApprovals();
        if (record.kind === 'alert') refreshAlerts();
      },
      dispose() { clearInterval(ticker); },
    };
    return state.view;
  }

  // === Agent page ============================================================================

  function sessionTree(sessions) {
    if (!sessions.length) return el('p', { class: 'empty' }, 'No session yet.');
    const byId = new Map(sessions.map((s) => [s.id, s]));
    const children = new Map();
    const roots = [];
    for (const s of sessions) {
      if (s.parent && byId.has(s.parent)) {
        if (!children.has(s.parent)) children.set(s.parent, []);
        children.get(s.parent).push(s);
      } else {
        roots.push(s);
      }
    }
    const item = (s, depth) => el('li', { dataset: { session: str(s.id) } },
      el('span', { class: 'mono' }, truncate(str(s.id), 14)), ' ',
      s.ended_ms ? badge('ended', 'ended') : badge('open', 'active'), ' ',
      el('span', { class: 'muted' }, `${str(s.server)} · ${fmtClock(s.started_ms)}`),
      s.parent && !byId.has(s.parent) ? el('span', { class: 'muted' }, ` · from ${truncate(str(s.parent), 14)}`) : null,
      children.has(s.id) && depth < 32
        ? el('ul', {}, children.get(s.id).map((c) => item(c, depth + 1))) : null);
    return el('ul', { class: 'tree' }, roots.map((s) => item(s, 0)));
  }

  function policyList(policies) {
    if (!policies.length) return el('p', { class: 'empty' }, 'No policy names this agent.');
    return el('div', { class: 'card-list' }, policies.map((p) => el('div', { class: 'policy' },
      el('div', { class: 'row' }, badge(str(p.effect), str(p.effect)), p.ask ? badge('asks a human', 'ask') : null,
        el('strong', { class: 'mono' }, str(p.id))),
      pretty(str(p.text)))));
  }

  /** A JSON value as nested definition lists; text only. */
  function valueView(value, depth) {
    if (value === null || typeof value !== 'object' || depth > 6) {
      return el('span', { class: typeof value === 'string' ? '' : 'mono' }, str(value));
    }
    if (Array.isArray(value)) {
      if (!value.length) return el('span', { class: 'muted' }, 'none');
      if (value.every((v) => v === null || typeof v !== 'object')) {
        return el('span', { class: 'mono' }, value.map(str).join(', '));
      }
      return el('ul', {}, value.map((v) => el('li', {}, valueView(v, depth + 1))));
    }
    const entries = Object.entries(value);
    if (!entries.length) return el('span', { class: 'muted' }, 'empty');
    return el('dl', { class: 'facts' }, entries.map(([k, v]) => [el('dt', {}, k), el('dd', {}, valueView(v, depth + 1))]));
  }

  /** The containment form; `reason` is kept by the page so a refresh does not lose what was typed. */
  function containForm(name, agent, reason, result, onDone) {
    const quarantined = agent && agent.state === 'quarantined';
    const restricted = agent && agent.state && agent.state !== 'active';
    const act = async (what, button) => {
      clear(result);
      const text = reason.value.trim();
      if (!text) {
        result.append(el('p', { class: 'error', role: 'alert' }, 'A reason is required: it is journaled.'));
        return;
      }
      button.disabled = true;
      try {
        const answer = await post(`/agents/${encodeURIComponent(name)}/${what}`, { reason: text });
        reason.value = '';
        const done = what === 'quarantine'
          ? (answer.changed === false ? 'Already quarantined.' : `Quarantined${answer.seq ? ` (record #${answer.seq})` : ''}.`)
          : `Released${answer.seq ? ` (record #${answer.seq})` : ''}.`;
        result.append(el('p', { class: 'notice', role: 'status' }, done));
        onDone();
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 401)) result.append(errorBox(err));
      } finally {
        button.disabled = false;
      }
    };
    const quarantineButton = el('button', { type: 'button', id: 'quarantine', class: 'danger' }, 'Quarantine');
    const releaseButton = el('button', { type: 'button', id: 'release', class: 'good' }, 'Release');
    quarantineButton.addEventListener('click', () => act('quarantine', quarantineButton));
    releaseButton.addEventListener('click', () => act('release', releaseButton));
    return el('div', { class: 'form' },
      el('p', { class: 'muted' }, quarantined
        ? 'Every action of this agent is refused until a human releases it.'
        : 'Quarantine refuses every further action of this agent, in every Warden, at once.'),
      el('label', { for: 'contain-reason' }, 'Reason'),
      reason,
      el('div', { class: 'row' }, quarantined ? null : quarantineButton,
        restricted || !agent ? releaseButton : null, roleHint('admin')));
  }

  function timelineRow(record, fresh) {
    return el('tr', { class: fresh ? 'fresh' : '', dataset: { seq: String(record.seq), kind: record.kind } },
      el('td', { class: 'num mono' }, String(record.seq)),
      el('td', { class: 'time' }, time(record.time_ms, true)),
      el('td', {}, recordBadge(record)),
      el('td', { class: 'mono' }, truncate(str(record.session), 10)),
      el('td', { class: 'summary' }, record.kind === 'alert'
        ? alertLink(record.seq, summarize(record)) : summarize(record)));
  }

  function agentView(root, name) {
    const title = el('h1', {}, name);
    const stateBadge = el('span', { id: 'agent-state' });
    const head = el('div', { class: 'page-head' }, title, stateBadge, el('span', { class: 'sub', id: 'agent-facts' }));
    const contain = panel('Containment', { id: 'contain' });
    const lineage = panel('Sessions and lineage', { id: 'lineage', cls: 'scroll' });
    const scope = panel('Scope: policies naming this agent', { id: 'scope', cls: 'scroll' });
    const baseline = panel('Learned baseline', { id: 'baseline', cls: 'scroll' });
    const timeline = panel('Timeline', {
      id: 'timeline',
      tools: el('a', { href: `#/journal${query({ agent: name })}` }, 'In the journal explorer →'),
    });
    append(root, head, el('div', { class: 'grid agent' },
      el('div', { class: 'stack' }, contain.node, lineage.node, scope.node, baseline.node),
      el('div', { class: 'stack' }, timeline.node)));
    const state = {};
    const alive = () => state.view.alive();
    const containResult = el('div', { id: 'contain-result', 'aria-live': 'polite' });
    const containReason = el('textarea', { id: 'contain-reason', placeholder: 'Why (journaled with your name)', rows: 2 });
    const containForms = el('div', {});
    contain.body.append(containForms, containResult);

    const load = async () => {
      let detail = null;
      try {
        detail = await get(`/agents/${encodeURIComponent(name)}`);
      } catch (err) {
        if (!(err instanceof ApiError) || !err.missingRoute) throw err;
      }
      if (!alive()) return null;
      let agent = detail ? { ...detail.agent, state: stateName(detail.agent.state) } : null;
      if (!detail) {
        // An older Warden: the state from the quarantine list only.
        const { quarantined } = await get('/quarantine');
        const q = quarantined.find((e) => e.agent === name);
        agent = { name, state: q ? stateName(q.level) : 'active', quarantine: q || null };
      }
      clear(stateBadge).append(badge(str(agent.state), str(agent.state)));
      const facts = clear($('agent-facts'));
      if (agent.quarantine) {
        facts.append(`${str(agent.quarantine.level)} by ${str(agent.quarantine.by)} since ${fmtTime(agent.quarantine.since_ms)}: ${str(agent.quarantine.reason)}`);
      } else if (agent.last_time_ms) {
        facts.append(`last action ${fmtAgo(agent.last_time_ms)}`);
      }
      clear(containForms).append(containForm(name, agent, containReason, containResult, () => reload()));
      if (detail) {
        clear(lineage.body).append(sessionTree(detail.sessions || []));
        clear(scope.body).append(policyList(detail.policies || []));
        clear(baseline.body).append(detail.baseline
          ? valueView(detail.baseline, 0)
          : el('p', { class: 'empty' }, 'No baseline learned for this agent (warden learn).'));
      } else {
        for (const p of [lineage, scope, baseline]) clear(p.body).append(notServed('agent details'));
      }
      return agent;
    };
    const reload = () => load().catch((err) => {
      if (!alive() || (err instanceof ApiError && err.status === 401)) return;
      clear(containForms).append(errorBox(err));
    });
    containForms.append(el('p', { class: 'empty' }, 'Loading…'));
    for (const p of [lineage, scope, baseline]) p.body.append(el('p', { class: 'empty' }, 'Loading…'));
    reload();

    const rows = el('tbody', {});
    const table = el('table', { id: 'timeline-table' },
      el('thead', {}, el('tr', {}, el('th', { class: 'num' }, '#'), el('th', {}, 'Time'), el('th', {}, 'What'),
        el('th', {}, 'Session'), el('th', {}, 'Detail'))),
      rows);
    const empty = el('p', { class: 'empty' }, 'No record of this agent yet.');
    const timelineHead = session.head;
    fill(timeline.body, async () => {
      const { records, complete } = await latest({ agent: name }, TIMELINE_ROWS, timelineHead);
      // Live records that arrived meanwhile are on top already: these go below them.
      for (const r of records.filter((x) => x.seq <= timelineHead).reverse()) rows.append(timelineRow(r, false));
      empty.hidden = rows.childElementCount > 0;
      if (!complete && !records.length) {
        empty.textContent = `No record of this agent in the last ${fmtNum(LOOKBACK_LIMIT)} records.`;
      }
      return [empty, table, complete ? null : el('p', { class: 'muted' },
        'Newest records first. ', el('a', { href: `#/journal${query({ agent: name, after: 0 })}` }, 'Older records in the journal explorer.'))];
    }, alive);

    const refresh = debounce(() => alive() && reload(), 300);
    state.view = {
      onRecord(record) {
        if (record.agent !== name) return;
        rows.prepend(timelineRow(record, true));
        empty.hidden = true;
        while (rows.childElementCount > TIMELINE_ROWS * 3) rows.lastElementChild.remove();
        if (['quarantined', 'released', 'session_started', 'session_ended', 'alert'].includes(record.kind)) refresh();
      },
    };
    return state.view;
  }

  // === Approvals =============================================================================

  function approvalCard(a, onAnswered) {
    const reason = el('input', {
      type: 'text', placeholder: 'Why (journaled with your name)', 'aria-label': 'Reason', class: 'reason', size: 40,
    });
    const result = el('div', { 'aria-live': 'polite' });
    const expires = el('span', { class: 'expires' }, fmtLeft(a.expires_ms));
    const buttons = [];
    const answer = async (what) => {
      clear(result);
      const text = reason.value.trim();
      if (!text) {
        result.append(el('p', { class: 'error', role: 'alert' }, 'A reason is required: it is journaled.'));
        return;
      }
      buttons.forEach((b) => { b.disabled = true; });
      try {
        const done = await post(`/approvals/${encodeURIComponent(String(a.seq))}`, { answer: what, reason: text });
        const said = { approve: 'Approved', approve_session: 'Approved for the session', deny: 'Denied' }[what];
        result.append(done.taken === false
          ? el('p', { class: 'warning', role: 'status' }, `Someone answered first (record #${str(done.answer_seq)}); their answer stands.`)
          : el('p', { class: 'notice', role: 'status' }, `${said} (record #${str(done.answer_seq)}).`));
        onAnswered();
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 401)) result.append(errorBox(err));
        buttons.forEach((b) => { b.disabled = false; });
      }
    };
    const button = (label, what, cls) => {
      const b = el('button', { type: 'button', class: cls, dataset: { answer: what } }, label);
      b.addEventListener('click', () => answer(what));
      buttons.push(b);
      return b;
    };
    const node = el('article', { class: 'panel approval', dataset: { seq: String(a.seq) } },
      el('div', { class: 'head' },
        el('span', { class: 'target' }, `${str(a.action)} ${str(a.target)}`),
        el('span', {}, 'by ', agentLink(a.agent)),
        el('span', { class: 'muted' }, `session ${truncate(str(a.session), 14)} · asked ${fmtClock(a.requested_ms)} · record #${str(a.seq)}`),
        el('span', { class: 'spacer' }), expires),
      el('div', { class: 'body' },
        el('div', {}, el('h3', {}, 'Arguments'), pretty(a.args)),
        el('div', { class: 'form' },
          el('h3', {}, 'Why it needs a human'), el('p', {}, str(a.reason)),
          reason,
          el('div', { class: 'row' },
            button('Approve', 'approve', 'good'),
            button('Approve for the session', 'approve_session', ''),
            button('Deny', 'deny', 'danger'),
            roleHint('approver')),
          result)));
    return { node, tick: () => { expires.textContent = fmtLeft(a.expires_ms); } };
  }

  function approvalsView(root) {
    const list = el('div', { class: 'card-list', id: 'approvals' });
    append(root,
      el('div', { class: 'page-head' }, el('h1', {}, 'Approvals'),
        el('span', { class: 'sub' }, 'Calls held until a human answers. Unanswered calls are refused when their time runs out.')),
      list);
    const state = {};
    const alive = () => state.view.alive();
    let cards = new Map();
    let busy = false;
    const load = async () => {
      if (busy) { refresh(); return; }
      busy = true;
      try {
        const { approvals } = await get('/approvals');
        if (!alive()) return;
        const seen = new Set();
        for (const a of approvals) {
          seen.add(a.seq);
          if (!cards.has(a.seq)) {
            const card = approvalCard(a, () => refresh());
            cards.set(a.seq, card);
            list.append(card.node);
          }
        }
        // Answered elsewhere or expired: gone from the queue (answered here: shown a moment).
        for (const [seq, card] of cards) {
          if (!seen.has(seq)) {
            card.node.classList.add('gone');
            setTimeout(() => card.node.remove(), 4000);
            cards.delete(seq);
          }
        }
        const empty = list.querySelector('.empty');
        if (!approvals.length && !empty) list.append(el('p', { class: 'empty panel' }, 'Nothing is waiting for a human.'));
        if (approvals.length && empty) empty.remove();
      } catch (err) {
        if (!alive() || (err instanceof ApiError && err.status === 401)) return;
        clear(list).append(err instanceof ApiError && err.missingRoute ? notServed('approvals') : errorBox(err));
        cards = new Map();
      } finally {
        busy = false;
      }
    };
    const refresh = debounce(() => alive() && load(), 250);
    load();
    const ticker = setInterval(() => {
      for (const card of cards.values()) card.tick();
    }, 1000);
    const poll = setInterval(refresh, 10000);
    state.view = {
      onRecord(record) {
        if (record.kind === 'approval_requested' || record.kind === 'approval_answered') refresh();
      },
      dispose() { clearInterval(ticker); clearInterval(poll); },
    };
    return state.view;
  }

  // === Journal explorer ======================================================================

  function recordRows(record, fresh) {
    const detail = el('tr', { class: 'detail', hidden: true },
      el('td', { colspan: 6 }, pretty(record.body)));
    const row = el('tr', {
      class: `clickable ${fresh ? 'fresh' : ''}`,
      dataset: { seq: String(record.seq), kind: record.kind },
      title: 'Show the whole record',
    },
    el('td', { class: 'num mono' }, String(record.seq)),
    el('td', { class: 'time' }, time(record.time_ms, true)),
    el('td', {}, agentLink(record.agent)),
    el('td', { class: 'mono' }, truncate(str(record.session), 10)),
    el('td', {}, recordBadge(record)),
    el('td', { class: 'summary' }, record.kind === 'alert' ? alertLink(record.seq, summarize(record)) : summarize(record)));
    row.addEventListener('click', (event) => {
      if (event.target.closest('a')) return;
      detail.hidden = !detail.hidden;
    });
    return [row, detail];
  }

  // The last verification: it reads the whole journal, so it runs once per sign-in unless
  // asked again.
  let verified = null;

  function verifyPanel() {
    const status = el('div', { class: 'verify', id: 'verify-status' });
    const again = el('button', { type: 'button', id: 'verify-again' }, 'Verify again');
    const p = panel('Chain verification', { id: 'verify', tools: again });
    p.body.append(status);
    const show = ({ v, at }) => {
      clear(status);
      if (v.intact) {
        status.append(badge('intact', 'ok'),
          el('span', {}, `${fmtNum(v.records_checked)} records and ${fmtNum(v.checkpoints_checked)} signed checkpoints check out; last record #${str(v.last_seq)}.`));
      } else {
        status.append(badge('broken', 'bad'),
          el('span', { class: 'error' }, v.breach && v.breach.detail
            ? `The chain is broken at record #${str(v.breach.seq)} (${str(v.breach.kind).replace(/_/g, ' ')}): ${str(v.breach.detail)}`
            : `The chain is broken: ${JSON.stringify(v.breach)}`));
      }
      status.append(el('span', { class: 'muted' }, v.shared
        ? `verified ${fmtClock(at)} (one verification a minute is shared by every request; \`warden audit verify\` checks the file now)`
        : `verified ${fmtClock(at)}`),
        el('span', { class: 'muted mono', title: 'Public key of the checkpoints' }, `key ${truncate(str(v.public_key), 20)}`));
    };
    const run = async () => {
      again.disabled = true;
      clear(status).append(el('span', { class: 'muted' }, 'Verifying every record and checkpoint…'));
      try {
        const v = await get('/journal/verify');
        // The server shares one verification for a minute: show when it was made.
        verified = { v, at: Number.isFinite(v.verified_at_ms) ? v.verified_at_ms : Date.now() };
        show(verified);
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 401)) clear(status).append(errorBox(err));
      } finally {
        again.disabled = false;
      }
    };
    again.addEventListener('click', run);
    if (verified) show(verified);
    else run();
    return p.node;
  }

  function journalView(root, params) {
    const seqParam = (name) => {
      const v = params.get(name);
      return v !== null && /^\d+$/.test(v) ? Number(v) : null;
    };
    const filter = {
      agent: params.get('agent') || '',
      kind: params.get('kind') || '',
      after: seqParam('after'),
      before: seqParam('before'),
      limit: [50, 100, 500, 1000].includes(Number(params.get('limit'))) ? Number(params.get('limit')) : 100,
    };
    const agentInput = el('input', { id: 'filter-agent', type: 'text', value: filter.agent, placeholder: 'any', size: 16 });
    const kindSelect = el('select', { id: 'filter-kind' },
      el('option', { value: '' }, 'any'),
      KINDS.map((k) => el('option', { value: k, selected: k === filter.kind }, k)));
    const afterInput = el('input', {
      id: 'filter-after', type: 'number', min: 0, value: filter.after === null ? '' : filter.after, placeholder: 'newest first',
    });
    const limitSelect = el('select', { id: 'filter-limit' },
      [50, 100, 500, 1000].map((n) => el('option', { value: n, selected: n === filter.limit }, String(n))));
    const form = el('form', { class: 'filters', id: 'journal-filters' },
      el('div', { class: 'field' }, el('label', { for: 'filter-agent' }, 'Agent'), agentInput),
      el('div', { class: 'field' }, el('label', { for: 'filter-kind' }, 'Kind'), kindSelect),
      el('div', { class: 'field' }, el('label', { for: 'filter-after' }, 'After record'), afterInput),
      el('div', { class: 'field' }, el('label', { for: 'filter-limit' }, 'Per page'), limitSelect),
      el('button', { type: 'submit', class: 'primary' }, 'Show'),
      el('button', { type: 'button', id: 'filter-newest' }, 'Newest'),
      el('button', { type: 'button', id: 'filter-oldest' }, 'From the start'));
    const go = (cursor) => {
      location.hash = `#/journal${query({
        agent: agentInput.value.trim(), kind: kindSelect.value, limit: limitSelect.value, ...cursor,
      })}`;
    };
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      go(afterInput.value === '' ? {} : { after: afterInput.value });
    });
    form.querySelector('#filter-newest').addEventListener('click', () => go({}));
    form.querySelector('#filter-oldest').addEventListener('click', () => go({ after: 0 }));

    const results = panel('Records', { id: 'records' });
    append(root,
      el('div', { class: 'page-head' }, el('h1', {}, 'Journal'),
        el('span', { class: 'sub' }, 'Every decision and event, hash-chained and signed. Filters and pages are served by Warden.')),
      el('div', { class: 'stack' }, verifyPanel(), el('section', { class: 'panel' }, form), results.node));
    const state = {};
    const alive = () => state.view.alive();
    const rows = el('tbody', {});
    const pager = el('div', { class: 'pager' });
    const wanted = { agent: filter.agent || undefined, kind: filter.kind || undefined };
    // Newest first at the head of the journal: new records go on top. Oldest first: they go
    // at the bottom once the last page is reached. Otherwise the page stays as it is.
    const forward = filter.after !== null;
    let liveEdge = false;
    let loaded = false;
    const early = [];
    const listHead = session.head;
    fill(results.body, async () => {
      let records;
      let note = null;
      if (forward) {
        const page = await journalPage({ ...wanted, after: filter.after, limit: filter.limit });
        records = page.records;
        liveEdge = page.next === null;
        if (page.next !== null) {
          pager.append(el('button', { type: 'button', id: 'next-page', onclick: () => go({ after: page.next }) }, 'Next page →'));
        }
      } else {
        const head = filter.before === null ? listHead : filter.before - 1;
        const found = await latest(wanted, filter.limit, head);
        records = found.records.slice().reverse();
        liveEdge = filter.before === null;
        if (!found.complete) {
          note = `Showing matches among the last ${fmtNum(LOOKBACK_LIMIT)} records at most; set "After record" to look earlier.`;
        }
        if (filter.before !== null) pager.append(el('button', { type: 'button', onclick: () => go({}) }, '↑ Newest'));
        if (found.next !== null && found.next !== undefined) {
          pager.append(el('button', { type: 'button', id: 'older-page', onclick: () => go({ before: found.next }) }, 'Older →'));
        }
      }
      for (const r of records) rows.append(...recordRows(r, false));
      loaded = true;
      const seqs = records.map((r) => r.seq);
      const newest = seqs.length ? Math.max(...seqs) : -1;
      for (const r of early) if (r.seq > newest) showLive(r);
      pager.prepend(el('span', { class: 'muted' }, records.length
        ? `${fmtNum(records.length)} records, #${Math.min(...seqs)} to #${newest}${liveEdge ? '; new ones appear as they are journaled' : ''}.`
        : 'No record matches.'));
      return [note ? el('p', { class: 'muted' }, note) : null,
        el('table', { id: 'journal-table' },
          el('thead', {}, el('tr', {}, el('th', { class: 'num' }, '#'), el('th', {}, 'Time'), el('th', {}, 'Agent'),
            el('th', {}, 'Session'), el('th', {}, 'Kind'), el('th', {}, 'Detail'))),
          rows),
        pager];
    }, alive);

    function showLive(record) {
      if (!liveEdge) return;
      if (forward) rows.append(...recordRows(record, true));
      else rows.prepend(...recordRows(record, true));
    }

    state.view = {
      onRecord(record) {
        if (wanted.agent && record.agent !== wanted.agent) return;
        if (wanted.kind && record.kind !== wanted.kind) return;
        if (!loaded) early.push(record);
        else showLive(record);
      },
    };
    return state.view;
  }

  // === Alert detail ==========================================================================

  async function loadAlert(seq) {
    try {
      return await get(`/alerts/${encodeURIComponent(String(seq))}`);
    } catch (err) {
      if (!(err instanceof ApiError) || !err.missingRoute) throw err;
    }
    // An older Warden: the record and its evidence, one page each.
    const page = await journalPage({ after: seq - 1, limit: 1 });
    const alert = page.records[0];
    if (!alert || alert.seq !== seq || alert.kind !== 'alert') {
      throw new ApiError(404, `record ${seq} is not an alert`);
    }
    const evidence = [];
    for (const e of (alert.body.evidence || []).slice(0, 50)) {
      const p = await journalPage({ after: e - 1, limit: 1 });
      if (p.records[0] && p.records[0].seq === e) evidence.push(p.records[0]);
    }
    return { alert, evidence };
  }

  function alertView(root, raw) {
    const seq = Number(raw);
    const state = {};
    const alive = () => state.view.alive();
    state.view = {};
    if (!Number.isSafeInteger(seq) || seq < 1) {
      root.append(el('p', { class: 'error' }, 'An alert is named by its record number.'));
      return state.view;
    }
    const body = el('div', { class: 'stack', id: 'alert' }, el('p', { class: 'empty' }, 'Loading…'));
    root.append(body);
    fill(body, async () => {
      const { alert, evidence } = await loadAlert(seq);
      const b = alert.body || {};
      const rows = el('tbody', {});
      for (const r of evidence) rows.append(...recordRows(r, false));
      return [
        el('div', { class: 'page-head' },
          el('h1', {}, `Alert #${alert.seq}`), badge(str(b.severity), str(b.severity)),
          el('span', { class: 'sub' }, str(b.detector))),
        el('section', { class: 'panel' },
          el('h2', { id: 'alert-summary' }, str(b.summary)),
          el('dl', { class: 'facts' },
            el('dt', {}, 'Agent'), el('dd', {}, agentLink(alert.agent), ' — ',
              el('a', { href: `#/agents/${encodeURIComponent(alert.agent)}` }, 'open its page to quarantine or release it')),
            el('dt', {}, 'Session'), el('dd', { class: 'mono' }, str(alert.session)),
            el('dt', {}, 'Raised'), el('dd', {}, time(alert.time_ms, false)),
            el('dt', {}, 'Detector'), el('dd', {}, str(b.detector)),
            el('dt', {}, 'Evidence'), el('dd', {}, `${(b.evidence || []).length} records`))),
        el('section', { class: 'panel', id: 'evidence' },
          el('header', {}, el('h2', {}, 'Evidence')),
          evidence.length
            ? el('table', { id: 'evidence-table' },
              el('thead', {}, el('tr', {}, el('th', { class: 'num' }, '#'), el('th', {}, 'Time'), el('th', {}, 'Agent'),
                el('th', {}, 'Session'), el('th', {}, 'Kind'), el('th', {}, 'Detail'))),
              rows)
            : el('p', { class: 'empty' }, 'This alert cites no record.')),
      ];
    }, alive);
    return state.view;
  }

  // === Policies ==============================================================================

  function policiesView(root) {
    const search = el('input', { type: 'search', id: 'policy-search', placeholder: 'Filter by id or text', size: 30 });
    const body = el('div', { class: 'stack', id: 'policies' }, el('p', { class: 'empty' }, 'Loading…'));
    append(root,
      el('div', { class: 'page-head' }, el('h1', {}, 'Policies'),
        el('span', { class: 'sub' }, 'The policies in force. Change them through the policy lifecycle, not here.'),
        el('span', { class: 'spacer' }), search),
      body);
    const state = {};
    const alive = () => state.view.alive();
    state.view = {};
    fill(body, async () => {
      let data;
      try {
        data = await get('/policies');
      } catch (err) {
        if (err instanceof ApiError && err.missingRoute) return notServed('the policies');
        throw err;
      }
      const cards = data.policies.map((p) => {
        const card = el('section', { class: 'panel policy', dataset: { policy: str(p.id) } },
          el('header', {}, badge(str(p.effect), str(p.effect)), p.ask ? badge('asks a human', 'ask') : null,
            el('h2', {}, str(p.id))),
          pretty(str(p.text)));
        return { card, haystack: `${str(p.id)}\n${str(p.text)}`.toLowerCase() };
      });
      search.addEventListener('input', () => {
        const needle = search.value.trim().toLowerCase();
        for (const { card, haystack } of cards) card.hidden = needle !== '' && !haystack.includes(needle);
      });
      return [
        el('p', { class: 'muted' }, `${data.policies.length} policies · digest `, el('span', { class: 'mono' }, str(data.digest))),
        cards.length ? cards.map((c) => c.card) : el('p', { class: 'empty' }, 'No policy is loaded: everything is refused.'),
      ];
    }, alive);
    return state.view;
  }

  // === Start =================================================================================

  document.addEventListener('DOMContentLoaded', () => {
    $('signin-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const input = $('signin-token');
      const candidate = input.value.trim();
      input.value = '';
      if (!candidate) {
        showSignIn('Paste your operator token (wdo_…).');
        return;
      }
      signIn(candidate);
    });
    $('signout').addEventListener('click', () => signOut(''));
    window.addEventListener('hashchange', route);
    if (token()) signIn(token());
    else showSignIn('');
  });
})();
