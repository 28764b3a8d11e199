/*
 * The cni-ts agent's dashboard (served at / by agent/dashboard/routes.ts, embedded in the
 * executable). Plain browser JavaScript, no framework; charts by uPlot (loaded before this file).
 * Reads the agent's HTTP API on the same origin:
 *   GET /api/v1/history[?namespace=][&since=]  every endpoint's figures of the last 15 minutes
 *                                              (then only the samples newer than `since`)
 *   GET /api/v1/alerts                         current alerts (404: alerts are off: said so)
 *   GET /api/v1/services                       service ports and their backends' health
 *   GET /api/v1/policy-drops                   the policy table's drop counters (404: not shown)
 *   GET /api/v1/status                         node and reconcilers
 * `window.cniDashboard` holds the state (tests read the charts' data from it).
 */
/* global uPlot, document, window, fetch, URLSearchParams */
'use strict';
(function () {
  const state = {
    windowSeconds: 900,
    intervalSeconds: 5,
    namespace: '',
    filter: '',
    /** sample times (Unix seconds), oldest first */
    t: [],
    /** key -> endpoint (labels + series arrays aligned to t) */
    endpoints: new Map(),
    /** key -> { card, visible, traffic: uPlot, quality: uPlot } (charts made once the card is on screen) */
    charts: new Map(),
    alerts: [],
    alertsAvailable: undefined,
    services: [],
    /** counter -> { packets, at } of the previous poll (packets/s) */
    drops: new Map(),
    polls: 0,
    errors: 0,
  };
  window.cniDashboard = state;

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) if (c !== undefined && c !== null) e.append(c instanceof window.Node ? c : String(c));
    return e;
  };

  // ---- formatting ----
  const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];
  function fmtBytes(v) {
    if (v === null || v === undefined || !Number.isFinite(v)) return '–';
    let i = 0;
    while (Math.abs(v) >= 1000 && i < UNITS.length - 1) {
      v /= 1000;
      i++;
    }
    return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${UNITS[i]}/s`;
  }
  const fmtNum = (v, d = 1) =>
    v === null || v === undefined || !Number.isFinite(v) ? '–' : v >= 100 ? String(Math.round(v)) : v.toFixed(d);
  const fmtPct = (v) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : `${(v * 100).toFixed(v < 0.1 ? 2 : 1)} %`);
  const fmtMs = (s) => (s === null || s === undefined || !Number.isFinite(s) ? '–' : `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`);
  const last = (arr) => {
    for (let i = arr.length - 1; i >= 0; i--) if (arr[i] !== null && arr[i] !== undefined) return arr[i];
    return null;
  };
  const ago = (iso) => {
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return s < 90 ? `${s}s ago` : s < 5400 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
  };

  async function getJson(url) {
    const r = await fetch(url, { cache: 'no-store' });
    if (r.status === 404) return { missing: true };
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return { body: await r.json() };
  }

  // ---- history: merge what the agent sends into state.t / state.endpoints ----
  const SERIES = [
    'rxBytes',
    'txBytes',
    'rxPackets',
    'txPackets',
    'errorRatio',
    'latencySeconds',
    'utilization',
    'connections',
    'drops',
    'errors',
  ];

  function mergeHistory(h, full) {
    state.windowSeconds = h.windowSeconds || state.windowSeconds;
    state.intervalSeconds = h.intervalSeconds || state.intervalSeconds;
    if (full) {
      state.t = [];
      state.endpoints = new Map();
    }
    const before = state.t.length;
    const n = h.t.length;
    state.t.push(...h.t);
    const seen = new Set();
    for (const e of h.endpoints) {
      seen.add(e.key);
      let cur = state.endpoints.get(e.key);
      if (!cur) {
        cur = { ...e, series: {} };
        for (const s of SERIES) cur.series[s] = new Array(before).fill(null);
        state.endpoints.set(e.key, cur);
      }
      Object.assign(cur, { ips: e.ips, limitBitsPerSecond: e.limitBitsPerSecond, hostInterface: e.hostInterface });
      for (const s of SERIES) cur.series[s].push(...(e.series[s] || new Array(n).fill(null)));
    }
    for (const [k, cur] of state.endpoints) if (!seen.has(k)) for (const s of SERIES) cur.series[s].push(...new Array(n).fill(null));
    // keep the window: drop samples older than the newest minus windowSeconds
    const newest = state.t[state.t.length - 1];
    let cut = 0;
    while (cut < state.t.length && state.t[cut] < newest - state.windowSeconds) cut++;
    if (cut) {
      state.t.splice(0, cut);
      for (const cur of state.endpoints.values()) for (const s of SERIES) cur.series[s].splice(0, cut);
    }
    // endpoints with nothing left in the window are gone
    for (const [k, cur] of state.endpoints) if (cur.series.rxBytes.every((v) => v === null)) state.endpoints.delete(k);
  }

  async function pollHistory() {
    const q = new URLSearchParams();
    if (state.namespace) q.set('namespace', state.namespace);
    const full = state.t.length === 0;
    if (!full) q.set('since', String(state.t[state.t.length - 1]));
    const r = await getJson(`/api/v1/history?${q}`);
    if (r.missing) {
      $('endpoints').replaceChildren(el('p', { class: 'muted' }, 'This agent keeps no history (metrics are off).'));
      return;
    }
    mergeHistory(r.body, full);
    $('node').textContent = r.body.node || 'agent';
    $('window').textContent = String(Math.round(state.windowSeconds / 60));
    $('interval').textContent = String(state.intervalSeconds);
    renderEndpoints();
  }

  // ---- endpoint cards ----
  const matches = (e) => {
    if (!state.filter) return true;
    const hay = `${e.namespace}/${e.pod} ${e.network} ${e.interface} ${(e.ips || []).join(' ')}`.toLowerCase();
    return hay.includes(state.filter.toLowerCase());
  };

  function chartWidth(card) {
    return Math.max(200, card.clientWidth - 20);
  }

  function makeCharts(card) {
    const w = chartWidth(card);
    const bytesAxis = (u, vals) => vals.map((v) => fmtBytes(v).replace('/s', ''));
    const traffic = new uPlot(
      {
        width: w,
        height: 150,
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max, 1)] } },
        axes: [{}, { values: bytesAxis, size: 60 }],
        series: [
          {},
          { label: 'rx', stroke: '#2f6fd6', fill: 'rgba(47,111,214,0.10)', width: 1.5, value: (u, v) => fmtBytes(v) },
          { label: 'tx', stroke: '#e0761f', fill: 'rgba(224,118,31,0.10)', width: 1.5, value: (u, v) => fmtBytes(v) },
        ],
      },
      [[], [], []],
      card.querySelector('.traffic'),
    );
    const quality = new uPlot(
      {
        width: w,
        height: 110,
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: true },
          err: { range: (u, min, max) => [0, Math.max(max, 0.05)] },
          lat: { range: (u, min, max) => [0, Math.max(max, 0.001)] },
        },
        axes: [
          {},
          { scale: 'err', values: (u, vals) => vals.map((v) => `${+(v * 100).toFixed(1)}%`), size: 50 },
          { scale: 'lat', side: 1, values: (u, vals) => vals.map((v) => `${+(v * 1000).toFixed(1)}ms`), size: 60, grid: { show: false } },
        ],
        series: [
          {},
          { label: 'errors', scale: 'err', stroke: '#c62b2b', width: 1.5, value: (u, v) => fmtPct(v) },
          { label: 'latency', scale: 'lat', stroke: '#7a4cc2', width: 1.5, value: (u, v) => fmtMs(v) },
        ],
      },
      [[], [], []],
      card.querySelector('.quality'),
    );
    return { traffic, quality };
  }

  /** Charts only for cards on (or near) the screen: a node with hundreds of endpoints stays light. */
  function drawCharts(c, e) {
    if (!e) return;
    if (!c.traffic) Object.assign(c, makeCharts(c.card));
    c.traffic.setData([state.t, e.series.rxBytes, e.series.txBytes]);
    c.quality.setData([state.t, e.series.errorRatio, e.series.latencySeconds]);
  }
  const observer = new window.IntersectionObserver(
    (entries) => {
      for (const en of entries) {
        const key = en.target.getAttribute('data-key');
        const c = state.charts.get(key);
        if (!c) continue;
        c.visible = en.isIntersecting;
        if (c.visible) drawCharts(c, state.endpoints.get(key));
      }
    },
    { rootMargin: '300px' },
  );
  function dropCard(k, c) {
    c.traffic?.destroy();
    c.quality?.destroy();
    observer.unobserve(c.card);
    c.card.remove();
    state.charts.delete(k);
  }

  function figures(e) {
    const s = e.series;
    const f = (label, value, cls) => el('div', {}, el('span', {}, label), el('b', cls ? { class: cls } : {}, value));
    const err = last(s.errorRatio);
    return [
      f('rx', fmtBytes(last(s.rxBytes)), 'rx'),
      f('tx', fmtBytes(last(s.txBytes)), 'tx'),
      f('packets rx/tx', `${fmtNum(last(s.rxPackets))} / ${fmtNum(last(s.txPackets))} /s`),
      f('connections', fmtNum(last(s.connections), 0)),
      f('error ratio', fmtPct(err), err > 0.05 ? 'bad' : ''),
      f('drops', `${fmtNum(last(s.drops))} /s`, last(s.drops) > 0 ? 'bad' : ''),
      f('latency', fmtMs(last(s.latencySeconds))),
      f('utilization', e.limitBitsPerSecond ? fmtPct(last(s.utilization)) : 'no limit'),
    ];
  }

  function renderEndpoints() {
    const box = $('endpoints');
    const shown = [...state.endpoints.values()].filter(matches);
    $('endpoints-count').textContent = String(shown.length);
    if (!shown.length) {
      for (const [k, c] of state.charts) dropCard(k, c);
      box.replaceChildren(
        el('p', { class: 'muted' }, state.endpoints.size ? 'No endpoint matches the filter.' : 'No endpoints on this node yet.'),
      );
      return;
    }
    if (box.querySelector('p')) box.replaceChildren();
    const keep = new Set(shown.map((e) => e.key));
    for (const [k, c] of state.charts) if (!keep.has(k)) dropCard(k, c);
    let prev = null;
    for (const e of shown) {
      let c = state.charts.get(e.key);
      if (!c) {
        const card = el(
          'section',
          { class: 'ep', 'data-key': e.key },
          el(
            'header',
            {},
            el('b', {}, `${e.namespace}/${e.pod}`),
            el(
              'span',
              { class: 'muted small' },
              `${e.network} · ${e.interface}${e.hostInterface ? ` (${e.hostInterface})` : ''} · ${(e.ips || []).join(', ')}`,
            ),
          ),
          el('div', { class: 'figs' }),
          el('div', { class: 'chart traffic' }),
          el('div', { class: 'chart quality' }),
        );
        if (prev) prev.card.after(card);
        else box.prepend(card);
        c = { card, visible: false, traffic: null, quality: null };
        state.charts.set(e.key, c);
        observer.observe(card);
      }
      c.card.querySelector('.figs').replaceChildren(...figures(e));
      if (c.visible) drawCharts(c, e);
      prev = c;
    }
    markAlerting();
    const namespaces = [...new Set([...state.endpoints.values()].map((e) => e.namespace))].sort();
    const sel = $('namespace');
    for (const ns of namespaces) if (![...sel.options].some((o) => o.value === ns)) sel.append(el('option', { value: ns }, ns));
  }

  /** Firing alerts per pod: the card's border takes the worst severity's colour. */
  function markAlerting() {
    const worst = new Map();
    for (const a of state.alerts) {
      if (a.state !== 'firing') continue;
      const k = `${a.labels.namespace}/${a.labels.pod}`;
      if (a.severity === 'critical' || !worst.has(k)) worst.set(k, a.severity);
    }
    for (const [key, c] of state.charts) {
      const e = state.endpoints.get(key);
      const sev = e && worst.get(`${e.namespace}/${e.pod}`);
      c.card.classList.toggle('alerting-critical', sev === 'critical');
      c.card.classList.toggle('alerting-warning', sev !== undefined && sev !== 'critical');
    }
  }

  // ---- alerts ----
  async function pollAlerts() {
    const r = await getJson('/api/v1/alerts');
    const box = $('alerts');
    if (r.missing) {
      state.alertsAvailable = false;
      state.alerts = [];
      $('alerts-count').textContent = '';
      box.replaceChildren(el('p', { class: 'muted' }, 'Alerts are not evaluated by this agent (no /api/v1/alerts).'));
      return;
    }
    state.alertsAvailable = true;
    const list = Array.isArray(r.body) ? r.body : r.body.alerts || [];
    state.alerts = list.filter((a) => !state.namespace || a.labels.namespace === undefined || a.labels.namespace === state.namespace);
    const order = { firing: 0, pending: 1, resolved: 2 };
    const rows = [...state.alerts].sort((a, b) => order[a.state] - order[b.state] || a.name.localeCompare(b.name));
    $('alerts-count').textContent = String(rows.filter((a) => a.state === 'firing').length);
    markAlerting();
    if (!rows.length) {
      box.replaceChildren(el('p', { class: 'muted' }, 'No alerts.'));
      return;
    }
    box.replaceChildren(
      el(
        'table',
        { class: 'data' },
        el(
          'thead',
          {},
          el('tr', {}, ...['state', 'severity', 'alert', 'endpoint', 'value', 'description', 'since'].map((h) => el('th', {}, h))),
        ),
        el(
          'tbody',
          {},
          ...rows.map((a) =>
            el(
              'tr',
              { class: `alert state-${a.state}`, 'data-alert': a.name, 'data-state': a.state },
              el('td', {}, a.state),
              el('td', {}, el('span', { class: `sev ${a.severity}` }, a.severity)),
              el('td', {}, a.name),
              el(
                'td',
                {},
                a.labels.pod
                  ? `${a.labels.namespace}/${a.labels.pod}`
                  : Object.entries(a.labels)
                      .filter(([k]) => k !== 'alertname' && k !== 'severity')
                      .map(([k, v]) => `${k}=${v}`)
                      .join(' '),
              ),
              el('td', { class: 'num' }, fmtNum(a.value, 3)),
              el('td', {}, a.description),
              el('td', {}, ago(a.resolvedAt || a.firedAt || a.activeAt)),
            ),
          ),
        ),
      ),
    );
  }

  // ---- services ----
  async function pollServices() {
    const r = await getJson('/api/v1/services');
    const box = $('services');
    if (r.missing) {
      box.replaceChildren(el('p', { class: 'muted' }, 'This agent does not report services.'));
      return;
    }
    state.services = (r.body.services || []).filter((s) => !state.namespace || s.namespace === state.namespace);
    $('services-count').textContent = String(state.services.length);
    if (!state.services.length) {
      box.replaceChildren(el('p', { class: 'muted' }, 'No services.'));
      return;
    }
    const backend = (b) =>
      el(
        'span',
        { class: 'backend', title: b.reason || '' },
        el('span', { class: `dot ${!b.healthy ? 'down' : b.active ? 'up' : 'drained'}` }),
        `${b.address}:${b.port}`,
        b.connections !== undefined ? el('span', { class: 'muted small' }, ` ${b.connections} conn`) : null,
        !b.healthy ? el('span', { class: 'muted small' }, ` (${b.reason || 'unhealthy'})`) : null,
      );
    box.replaceChildren(
      el(
        'table',
        { class: 'data' },
        el('thead', {}, el('tr', {}, ...['service', 'address', 'algorithm', 'healthy', 'backends'].map((h) => el('th', {}, h)))),
        el(
          'tbody',
          {},
          ...state.services.map((s) =>
            el(
              'tr',
              { 'data-service': `${s.namespace}/${s.name}` },
              el('td', {}, `${s.namespace}/${s.name}${s.portName ? ` (${s.portName})` : ''}`),
              el('td', {}, `${s.vip}:${s.port}/${s.protocol}`),
              el('td', {}, s.algorithm),
              el('td', { class: s.healthy < s.backends.length ? 'bad' : '' }, `${s.healthy}/${s.backends.length}`),
              el('td', {}, ...(s.backends.length ? s.backends.map(backend) : [el('span', { class: 'muted' }, 'none')])),
            ),
          ),
        ),
      ),
    );
  }

  // ---- policy drops ----
  async function pollDrops() {
    const r = await getJson('/api/v1/policy-drops');
    const box = $('drops');
    if (r.missing) {
      box.replaceChildren(el('p', { class: 'muted' }, 'This agent does not report policy drops.'));
      return;
    }
    const at = Date.parse(r.body.at);
    const rows = r.body.drops.filter((d) => !state.namespace || d.namespace === undefined || d.namespace === state.namespace);
    const rate = (d) => {
      const prev = state.drops.get(d.counter);
      return prev && at > prev.at && d.packets >= prev.packets ? ((d.packets - prev.packets) * 1000) / (at - prev.at) : null;
    };
    const rates = new Map(rows.map((d) => [d.counter, rate(d)]));
    state.drops = new Map(r.body.drops.map((d) => [d.counter, { packets: d.packets, at }]));
    const hit = rows.filter((d) => d.packets > 0);
    $('drops-count').textContent = String(hit.length);
    if (!rows.length) {
      box.replaceChildren(el('p', { class: 'muted' }, 'No policy drops anything on this node (no isolated pod, no Deny rule).'));
      return;
    }
    const what = (d) =>
      d.isolated
        ? `default deny (isolated pods, no rule allowed it)`
        : `${d.kind} ${d.namespace ? `${d.namespace}/` : ''}${d.name || d.counter}${d.rule !== undefined ? ` rule ${d.ruleName || d.rule}` : ''}`;
    box.replaceChildren(
      el(
        'table',
        { class: 'data' },
        el('thead', {}, el('tr', {}, ...['policy', 'direction', 'packets', 'bytes', 'packets/s'].map((h) => el('th', {}, h)))),
        el(
          'tbody',
          {},
          ...rows.map((d) =>
            el(
              'tr',
              { 'data-counter': d.counter, class: d.packets > 0 ? '' : 'state-resolved' },
              el('td', {}, what(d)),
              el('td', {}, d.direction),
              el('td', { class: 'num' }, String(d.packets)),
              el('td', { class: 'num' }, fmtBytes(d.bytes).replace('/s', '')),
              el('td', { class: `num ${rates.get(d.counter) > 0 ? 'bad' : ''}` }, fmtNum(rates.get(d.counter))),
            ),
          ),
        ),
      ),
    );
  }

  async function pollStatus() {
    const r = await getJson('/api/v1/status');
    if (r.missing) return;
    const s = r.body;
    const bad = s.reconcilers.filter((x) => x.state === 'failing').map((x) => x.name);
    $('node').textContent = s.node;
    $('status').textContent =
      `${s.store} · ${s.reconcilers.length} reconcilers${bad.length ? `, failing: ${bad.join(', ')}` : ', all ok'} · updated ${new Date().toLocaleTimeString()}`;
  }

  // ---- loop ----
  async function tick(fn) {
    try {
      await fn();
    } catch (e) {
      state.errors++;
      $('status').textContent = `agent unreachable: ${e.message}`;
    }
  }
  function every(ms, fn) {
    const run = async () => {
      await tick(fn);
      window.setTimeout(run, typeof ms === 'function' ? ms() : ms);
    };
    run();
  }
  every(
    () => Math.max(1, state.intervalSeconds) * 1000,
    async () => {
      await pollHistory();
      state.polls++;
    },
  );
  every(2000, pollAlerts);
  every(5000, pollServices);
  every(5000, pollDrops);
  every(10000, pollStatus);

  $('namespace').addEventListener('change', (ev) => {
    state.namespace = ev.target.value;
    state.t = [];
    void tick(pollHistory);
    void tick(pollAlerts);
    void tick(pollServices);
    void tick(pollDrops);
  });
  $('filter').addEventListener('input', (ev) => {
    state.filter = ev.target.value.trim();
    renderEndpoints();
  });
  let resizeTimer;
  window.addEventListener('resize', () => {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(() => {
      for (const c of state.charts.values()) {
        if (!c.traffic) continue;
        const w = chartWidth(c.card);
        c.traffic.setSize({ width: w, height: 150 });
        c.quality.setSize({ width: w, height: 110 });
      }
    }, 150);
  });
})();
