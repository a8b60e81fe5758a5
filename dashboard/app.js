// The abp dashboard: plain DOM, no framework. Every piece of job data (payloads,
// prompts, agent output, errors) reaches the page through textContent only, never
// as markup, so an item that contains <script> or onerror is shown, not run.
// The page is served with a strict Content-Security-Policy as a second wall.

const view = document.getElementById('view');
const live = document.getElementById('live');
const toast = document.getElementById('toast');

// The session's page key (src/http/sessions.ts): the login redirect hands it over in the fragment,
// which no server sees; it is kept in localStorage, which belongs to this origin alone (port
// included), and sent with every API call. The session cookie alone loads this page and no data:
// browsers send it to every port of this host, so other programs there may see it.
const SESSION_KEY = 'abp_session_key';
let memoryKey = '';
{
  const m = /^#session=([A-Za-z0-9_-]+)$/.exec(location.hash);
  if (m) {
    memoryKey = m[1];
    try {
      localStorage.setItem(SESSION_KEY, m[1]);
    } catch {
      // No storage (a locked-down browser): the key lives as long as this page.
    }
    history.replaceState(null, '', `${location.pathname}${location.search}#/`);
  }
}
function sessionKey() {
  try {
    return localStorage.getItem(SESSION_KEY) ?? memoryKey;
  } catch {
    return memoryKey;
  }
}
/** A same-origin URL with the page key as a query parameter: for what cannot send a header (EventSource, download links). */
function withKey(path) {
  return `${path}${path.includes('?') ? '&' : '?'}session_key=${encodeURIComponent(sessionKey())}`;
}

/** Builds an element. Strings and numbers become text nodes; attributes are set as properties or data. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  // Nested lists of children (a map that yields [separator, link] pairs) are flattened all the way,
  // never turned into text: an array's text is its items joined by commas, an anchor's its href.
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces an element's children; arrays are flattened and empty values dropped (never shown as "null"). */
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false).map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function showError(message) {
  toast.textContent = message;
  toast.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => (toast.hidden = true), 6000);
}

/** Calls the API with the session cookie and the page key; errors arrive in the one envelope {error: {code, message}}. */
async function api(path, options = {}) {
  const init = { credentials: 'same-origin', ...options, headers: { 'x-abp-session-key': sessionKey() } };
  if (options.body !== undefined) {
    init.body = JSON.stringify(options.body);
    init.headers['content-type'] = 'application/json';
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: { message: text } };
  }
  if (!res.ok) {
    // A 401 here means the session is gone (sessions live in the server's memory) or this page lacks its key.
    const message = res.status === 401 ? 'Your dashboard session has ended (did the server restart?). Open a fresh link from `abp dashboard`.' : data?.error?.message;
    const err = new Error(message ?? `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

const fmt = {
  pct: (p) => `${Math.round((p ?? 0) * 100)}%`,
  usd: (n) => (n === null || n === undefined ? '—' : `$${Number(n).toFixed(n < 1 ? 4 : 2)}`),
  rate: (r) => (r === null || r === undefined ? '—' : `${r}/s`),
  eta: (sec) => {
    if (sec === null || sec === undefined) return '—';
    if (sec < 60) return `${sec}s`;
    if (sec < 3600) return `${Math.floor(sec / 60)}m ${sec % 60}s`;
    return `${Math.floor(sec / 3600)}h ${Math.floor((sec % 3600) / 60)}m`;
  },
  ms: (ms) => (ms === null || ms === undefined ? '—' : ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`),
  json: (v) => (typeof v === 'string' ? v : JSON.stringify(v, null, 2)),
  ago: (ms) => {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
    const sec = Math.max(0, Math.round(ms / 1000));
    if (sec < 60) return `${sec}s ago`;
    if (sec < 3600) return `${Math.floor(sec / 60)}m ${sec % 60}s ago`;
    return `${Math.floor(sec / 3600)}h ${Math.floor((sec % 3600) / 60)}m ago`;
  },
};

/**
 * The server's clock as this page sees it: each frame's `at` is the server's now,
 * so "how long ago" stays right even when the two clocks disagree.
 */
const serverClock = {
  skew: 0,
  saw(at) {
    const t = Date.parse(at);
    if (!Number.isNaN(t)) this.skew = t - Date.now();
  },
  since(at) {
    const t = Date.parse(at);
    return Number.isNaN(t) ? null : Date.now() + this.skew - t;
  },
};

const badge = (state) => h('span', { class: `badge ${state}`, 'data-testid': 'state' }, state);

function progressBar(job) {
  const total = job.total || 1;
  const ok = (job.counts.succeeded / total) * 100;
  const bad = (job.counts.failed / total) * 100;
  const bar = h('div', { class: 'bar', title: `${job.counts.succeeded} succeeded, ${job.counts.failed} failed of ${job.total}` });
  const okSpan = h('span');
  okSpan.style.width = `${ok}%`;
  const badSpan = h('span', { class: 'failed' });
  badSpan.style.left = `${ok}%`;
  badSpan.style.width = `${bad}%`;
  bar.append(okSpan, badSpan);
  return bar;
}

// ---- routing ---------------------------------------------------------------

let cleanup = () => {};

function route() {
  cleanup();
  cleanup = () => {};
  live.dataset.state = 'idle';
  live.textContent = '';
  const hash = location.hash.replace(/^#/, '') || '/';
  let m;
  if ((m = /^\/jobs\/(\d+)\/units\/(\d+)$/.exec(hash))) return unitPage(Number(m[1]), Number(m[2]));
  if ((m = /^\/jobs\/(\d+)$/.exec(hash))) return jobPage(Number(m[1]));
  return jobList();
}

window.addEventListener('hashchange', route);
route();

// ---- job list ----------------------------------------------------------------

function jobList() {
  const body = h('tbody');
  const table = h(
    'table',
    { 'data-testid': 'jobs' },
    h('thead', {}, h('tr', {}, ['Job', 'Name', 'State', 'Progress', '', 'Rate', 'ETA', 'Cost'].map((t) => h('th', {}, t)))),
    body,
  );
  const empty = h('p', { class: 'muted', hidden: true }, 'No jobs yet. Create one with abp create, POST /jobs or the MCP create_job tool.');
  fill(view, h('h1', {}, 'Jobs'), table, empty);

  let stopped = false;
  async function refresh() {
    try {
      const { jobs } = await api('/jobs?limit=100');
      empty.hidden = jobs.length > 0;
      fill(body,
        ...jobs.map((job) =>
          h(
            'tr',
            { 'data-job': job.job_id },
            h('td', {}, h('a', { href: `#/jobs/${job.job_id}` }, `#${job.job_id}`)),
            h('td', {}, h('a', { href: `#/jobs/${job.job_id}` }, job.name)),
            h('td', {}, badge(job.status), job.status_reason ? h('div', { class: 'reason' }, job.status_reason) : null),
            h('td', {}, progressBar(job)),
            h('td', { class: 'num', 'data-testid': 'done' }, `${job.counts.succeeded + job.counts.failed + job.counts.cancelled}/${job.total}`),
            h('td', { class: 'num' }, fmt.rate(job.rate_per_second)),
            h('td', { class: 'num' }, fmt.eta(job.eta_seconds)),
            h('td', { class: 'num' }, fmt.usd(job.cost_usd)),
          ),
        ),
      );
    } catch (err) {
      showError(err.message);
    }
    if (!stopped) timer = setTimeout(refresh, 2000);
  }
  let timer = setTimeout(refresh, 0);
  cleanup = () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// ---- job page ----------------------------------------------------------------

const CONTROLS = [
  { label: 'Start (test one unit)', id: 'start', when: ['CREATED'], call: (id) => api(`/jobs/${id}/start`, { method: 'POST', body: {} }), primary: true },
  { label: 'Start without test', id: 'skip-test', when: ['CREATED'], call: (id) => api(`/jobs/${id}/start`, { method: 'POST', body: { skip_test: true } }) },
  { label: 'Approve test unit', id: 'approve', when: ['TESTING'], needsFinishedTest: true, call: (id) => api(`/jobs/${id}/start`, { method: 'POST', body: { approve: true } }), primary: true },
  { label: 'Reject test unit', id: 'reject', when: ['TESTING'], needsFinishedTest: true, call: (id) => api(`/jobs/${id}/start`, { method: 'POST', body: { reject: true } }) },
  { label: 'Pause', id: 'pause', when: ['RUNNING'], call: (id) => api(`/jobs/${id}/pause`, { method: 'POST' }) },
  { label: 'Resume', id: 'resume', when: ['PAUSED'], call: (id) => api(`/jobs/${id}/resume`, { method: 'POST' }) },
  { label: 'Retry failed', id: 'retry', when: ['FAILED', 'RUNNING', 'PAUSED'], needsFailed: true, call: (id) => api(`/jobs/${id}/retry`, { method: 'POST' }) },
  {
    label: 'Cancel job',
    id: 'cancel',
    when: ['CREATED', 'TESTING', 'RUNNING', 'PAUSED'],
    danger: true,
    confirm: 'Cancel this job? Pending units are dropped and running ones are stopped. This cannot be undone.',
    call: (id) => api(`/jobs/${id}`, { method: 'DELETE' }),
  },
];

const UNIT_FILTERS = ['', 'PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'];

/** How the live panel names the sort of a unit's latest step; any other event goes by its kind. */
const ACTIVITY_WHAT = { tool_use: 'tool call', tool_result: 'tool result', text: 'text', thinking: 'thinking' };

function jobPage(id) {
  const title = h('h1', {}, `Job #${id}`);
  const state = h('div');
  const stats = h('div', { class: 'stats' });
  const controls = h('div', { class: 'controls' });
  const testPanel = h('div');
  const batchPanel = h('div');
  const activityPanel = h('div', { class: 'activity', 'data-testid': 'live-activity' });
  const completedChart = h('div', { class: 'chart' });
  const costChart = h('div', { class: 'chart' });
  const filter = h('select', { 'data-testid': 'unit-filter', 'aria-label': 'Show units in state' }, UNIT_FILTERS.map((f) => h('option', { value: f }, f || 'all states')));
  const prev = h('button', {}, '‹ Prev');
  const next = h('button', {}, 'Next ›');
  const pageInfo = h('span', { class: 'muted' });
  const unitBody = h('tbody');
  const events = h('div', { class: 'events', 'data-testid': 'events' });
  fill(view,
    h('p', {}, h('a', { href: '#/' }, '← all jobs')),
    title,
    state,
    stats,
    controls,
    testPanel,
    batchPanel,
    h('h2', {}, 'Live activity'),
    activityPanel,
    h(
      'p',
      { class: 'muted' },
      'Download results: ',
      Object.entries({ csv: 'CSV', jsonl: 'JSONL', json: 'JSON', markdown: 'Markdown' }).map(([f, label], i) => [
        i ? ' · ' : '',
        h('a', { href: withKey(`/jobs/${id}/results?format=${f}`), download: '', 'data-testid': `download-${f}` }, label),
      ]),
    ),
    h('h2', {}, 'Progress over time'),
    h('div', { class: 'charts' }, completedChart, costChart),
    h('h2', {}, 'Units'),
    h('div', { class: 'filters' }, h('label', {}, 'State ', filter), prev, next, pageInfo),
    h(
      'table',
      { 'data-testid': 'units' },
      h('thead', {}, h('tr', {}, ['Unit', 'Item', 'State', 'Attempt', 'Duration', 'Cost', 'Error'].map((t) => h('th', {}, t)))),
      unitBody,
    ),
    h('h2', {}, 'Events'),
    events,
  );

  let job = null;
  let testUnit = null;
  let offset = 0;
  const limit = 50;
  let stopped = false;

  function renderJob() {
    title.textContent = `Job #${job.job_id}: ${job.name}`;
    fill(
      state,
      badge(job.status),
      job.status_reason ? h('span', { class: 'reason' }, ` ${job.status_reason}`) : null,
      job.approved_by ? h('span', { class: 'reason', 'data-testid': 'approved-by' }, ` · approved by ${job.approved_by}`) : null,
    );
    const done = job.counts.succeeded + job.counts.failed + job.counts.cancelled;
    fill(stats,
      h('div', {}, h('b', { 'data-testid': 'progress' }, fmt.pct(job.progress)), h('span', {}, 'progress'), progressBar(job)),
      h('div', {}, h('b', { 'data-testid': 'done' }, `${done}/${job.total}`), h('span', {}, 'units done')),
      h('div', {}, h('b', { 'data-testid': 'succeeded' }, job.counts.succeeded), h('span', {}, 'succeeded')),
      h('div', {}, h('b', {}, job.counts.failed), h('span', {}, 'failed')),
      h('div', {}, h('b', {}, job.counts.running), h('span', {}, 'running')),
      job.counts.submitted ? h('div', {}, h('b', { 'data-testid': 'submitted' }, job.counts.submitted), h('span', {}, 'in provider batches')) : null,
      h('div', {}, h('b', {}, fmt.rate(job.rate_per_second)), h('span', {}, 'rate')),
      h('div', {}, h('b', {}, fmt.eta(job.eta_seconds)), h('span', {}, 'ETA')),
      h('div', {}, h('b', {}, fmt.usd(job.cost_usd)), h('span', {}, 'cost')),
    );
    const testFinished = testUnit && ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(testUnit.status);
    fill(controls,
      ...CONTROLS.filter((c) => c.when.includes(job.status)).map((c) =>
        h(
          'button',
          {
            class: c.primary ? 'primary' : c.danger ? 'danger' : '',
            'data-action': c.id,
            disabled: (c.needsFinishedTest && !testFinished) || (c.needsFailed && job.counts.failed === 0),
            onclick: async (ev) => {
              if (c.confirm && !window.confirm(c.confirm)) return;
              ev.currentTarget.disabled = true;
              try {
                await c.call(job.job_id);
              } catch (err) {
                showError(err.message);
              }
              refresh();
            },
          },
          c.label,
        ),
      ),
    );
    const open = (job.batches && job.batches.open) || [];
    fill(batchPanel,
      ...(open.length
        ? [
            h('h2', {}, 'Provider batches'),
            h(
              'table',
              { 'data-testid': 'batches' },
              h('thead', {}, h('tr', {}, ['Batch', 'Provider', 'Provider id', 'State', 'Requests', 'Counts'].map((t) => h('th', {}, t)))),
              h(
                'tbody',
                {},
                ...open.map((b) =>
                  h(
                    'tr',
                    {},
                    h('td', {}, `#${b.batch_id}`),
                    h('td', {}, b.provider),
                    h('td', {}, b.provider_id || '(posting)'),
                    h('td', {}, b.cancel_requested ? `${b.state}, cancel requested` : b.state),
                    h('td', {}, String(b.requests)),
                    h('td', {}, b.counts ? Object.entries(b.counts).map(([k, v]) => `${k} ${v}`).join(', ') : ''),
                  ),
                ),
              ),
            ),
          ]
        : []),
    );
    if (job.status === 'TESTING' && testUnit) {
      fill(testPanel,
        h(
          'div',
          { class: 'test-unit', 'data-testid': 'test-unit' },
          h('b', {}, 'Test unit '),
          h('a', { href: `#/jobs/${job.job_id}/units/${testUnit.unit_id}` }, `#${testUnit.unit_id}`),
          ' ',
          badge(testUnit.status),
          testFinished ? h('p', { class: 'muted' }, 'Check its output, then approve to run every unit, or reject to edit the prompt.') : h('p', { class: 'muted' }, 'Running the test unit…'),
          testUnit.output !== null ? h('pre', {}, testUnit.output) : null,
          testUnit.error ? h('pre', { class: 'reason' }, testUnit.error) : null,
        ),
      );
    } else fill(testPanel);
  }

  function renderUnits(units, nextOffset) {
    fill(unitBody,
      ...units.map((u) =>
        h(
          'tr',
          { 'data-unit': u.unit_id },
          h('td', {}, h('a', { href: `#/jobs/${id}/units/${u.unit_id}` }, `#${u.unit_id}`)),
          h('td', {}, u.item_id),
          h('td', {}, badge(u.status)),
          h('td', { class: 'num' }, u.attempt),
          h('td', { class: 'num' }, fmt.ms(u.duration_ms)),
          h('td', { class: 'num' }, fmt.usd(u.cost_usd)),
          h('td', {}, u.error ?? ''),
        ),
      ),
    );
    prev.disabled = offset === 0;
    next.disabled = nextOffset === null;
    pageInfo.textContent = units.length ? `units ${offset + 1}–${offset + units.length}` : 'no units';
  }

  async function refresh() {
    try {
      job = await api(`/jobs/${id}`);
      testUnit = job.status === 'TESTING' && job.test_unit_id ? await api(`/jobs/${id}/units/${job.test_unit_id}`) : null;
      renderJob();
      const status = filter.value ? `&status=${filter.value}` : '';
      const page = await api(`/jobs/${id}/units?limit=${limit}&offset=${offset}${status}`);
      renderUnits(page.units, page.next_offset);
      const timeline = await api(`/jobs/${id}/timeline?buckets=60`);
      lineChart(completedChart, 'Units finished', timeline.points, (p) => p.succeeded + p.failed, (v) => String(Math.round(v)), 'chart-completed');
      lineChart(costChart, 'Cost (USD)', timeline.points, (p) => p.cost_usd, (v) => `$${v.toFixed(4)}`, 'chart-cost');
    } catch (err) {
      showError(err.message);
    }
  }

  // Bursts of events (a hundred units finishing) cause one refresh, not a hundred.
  let pending = null;
  const refreshSoon = () => {
    if (pending || stopped) return;
    pending = setTimeout(async () => {
      await refresh();
      pending = null;
    }, 300);
  };

  filter.addEventListener('change', () => {
    offset = 0;
    refresh();
  });
  prev.addEventListener('click', () => {
    offset = Math.max(0, offset - limit);
    refresh();
  });
  next.addEventListener('click', () => {
    offset += limit;
    refresh();
  });

  const logLine = (type, e) => {
    const d = e.data ?? {};
    const what =
      type === 'status'
        ? `job → ${d.status}${d.reason ? ` (${d.reason})` : ''}`
        : type === 'unit'
          ? `unit #${d.unit_id} → ${d.status}${d.error ? `: ${d.error}` : ''}`
          : type === 'checkpoint'
            ? `checkpoint ${d.type}: ${JSON.stringify(d.data)}`
            : `${e.kind}: ${JSON.stringify(d).slice(0, 200)}`;
    events.prepend(h('div', { 'data-type': type }, `${e.at?.slice(11, 19) ?? ''} [${e.seq ?? '-'}] ${what}`));
    while (events.childElementCount > 200) events.lastElementChild.remove();
  };

  // Each running unit's latest activity, from the stream's activity frames (a live view, never replayed).
  const activity = new Map();
  const activityAgo = (a) => (a.latest?.at ? serverClock.since(a.latest.at) : a.started_at ? serverClock.since(a.started_at) : null);
  function renderActivity() {
    const units = [...activity.values()].sort((a, b) => a.unit_id - b.unit_id);
    if (units.length === 0) {
      fill(activityPanel, h('p', { class: 'muted', 'data-testid': 'live-activity-empty' }, 'No unit is running.'));
      return;
    }
    fill(activityPanel,
      h(
        'table',
        {},
        h('thead', {}, h('tr', {}, ['Unit', 'Item', 'Attempt', 'Latest activity', 'When'].map((t) => h('th', {}, t)))),
        h(
          'tbody',
          {},
          units.map((a) =>
            h(
              'tr',
              { 'data-unit': a.unit_id },
              h('td', {}, h('a', { href: `#/jobs/${id}/units/${a.unit_id}` }, `#${a.unit_id}`)),
              h('td', {}, a.item_id),
              h('td', { class: 'num' }, a.attempt),
              h(
                'td',
                { class: 'summary', 'data-testid': 'activity-summary' },
                a.latest
                  ? [h('span', { class: `kind ${a.latest.what ?? ''}`, 'data-testid': 'activity-what' }, ACTIVITY_WHAT[a.latest.what] ?? a.latest.kind), ' ', a.latest.summary]
                  : h('span', { class: 'muted' }, 'started, nothing recorded yet'),
              ),
              h('td', { class: 'num ago', 'data-testid': 'activity-ago' }, fmt.ago(activityAgo(a))),
            ),
          ),
        ),
      ),
    );
  }
  // The "when" column counts up between frames.
  const ticker = setInterval(() => {
    for (const row of activityPanel.querySelectorAll('tr[data-unit]')) {
      const a = activity.get(Number(row.dataset.unit));
      const cell = row.querySelector('.ago');
      if (a && cell) cell.textContent = fmt.ago(activityAgo(a));
    }
  }, 1000);
  renderActivity();

  // Live updates: the browser's EventSource resumes with Last-Event-ID by itself after a drop.
  const source = new EventSource(withKey(`/jobs/${id}/events`));
  source.addEventListener('open', () => {
    live.dataset.state = 'open';
    live.textContent = 'live';
  });
  // Every connection starts with hello and then sends each running unit afresh.
  source.addEventListener('hello', (msg) => {
    serverClock.saw(JSON.parse(msg.data).at);
    activity.clear();
    renderActivity();
  });
  source.addEventListener('activity', (msg) => {
    const e = JSON.parse(msg.data);
    serverClock.saw(e.at);
    const a = e.data ?? {};
    if (a.running) activity.set(a.unit_id, a);
    else activity.delete(a.unit_id);
    renderActivity();
  });
  for (const type of ['status', 'unit', 'checkpoint', 'log']) {
    source.addEventListener(type, (msg) => {
      logLine(type, JSON.parse(msg.data));
      if (type !== 'log') refreshSoon();
    });
  }
  source.addEventListener('end', () => {
    source.close();
    live.dataset.state = 'ended';
    live.textContent = 'job finished';
    activity.clear();
    renderActivity();
    refreshSoon();
  });
  // A paused or created job sends few events; a slow poll keeps the page honest anyway.
  const slow = setInterval(refreshSoon, 5000);
  refresh();
  cleanup = () => {
    stopped = true;
    source.close();
    clearInterval(slow);
    clearInterval(ticker);
    clearTimeout(pending);
  };
}

/** A cumulative line chart as inline SVG. */
function lineChart(container, title, points, value, label, testid) {
  const W = 400;
  const H = 130;
  const pad = 4;
  const values = points.map(value);
  const max = Math.max(1e-9, ...values);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': title, 'data-testid': testid });
  svg.append(s('line', { x1: 0, y1: H - pad, x2: W, y2: H - pad, stroke: '#d0d5dd' }));
  if (values.length > 0) {
    const xy = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * (W - 2 * pad) + pad},${H - pad - (v / max) * (H - 2 * pad)}`);
    svg.append(s('polyline', { points: xy.join(' '), fill: 'none', stroke: '#1570ef', 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' }));
  }
  const last = values.at(-1) ?? 0;
  fill(container, h('div', { class: 'title' }, `${title}: `, h('b', { 'data-testid': `${testid}-last` }, label(last))), svg);
}

// ---- unit page ------------------------------------------------------------------

const FINAL_UNIT = ['SUCCEEDED', 'FAILED', 'CANCELLED'];
const FOLLOWED_UNIT = ['PENDING', 'RUNNING'];

async function unitPage(jobId, unitId) {
  const hash = location.hash;
  fill(view, h('p', { class: 'muted' }, 'Loading…'));
  let unit;
  try {
    unit = await api(`/jobs/${jobId}/units/${unitId}`);
  } catch (err) {
    fill(view, h('p', {}, h('a', { href: `#/jobs/${jobId}` }, `← job #${jobId}`)), h('p', { class: 'reason' }, err.message));
    return;
  }
  // Another page was opened while this one loaded.
  if (location.hash !== hash) return;

  const root = h('div', { 'data-testid': 'unit' });
  fill(view, root);
  let stopped = false;
  let shown = '';

  // What a re-render would change; the page is redrawn only when this does.
  const signature = (u) => JSON.stringify([u.status, u.attempt, u.failures, u.output, u.error, u.cost_usd, u.duration_ms, u.conversation?.length ?? 0]);

  function render() {
    const sig = signature(unit);
    if (sig === shown) return;
    shown = sig;
    // Events only ever append, so the details a person opened keep their place.
    const open = [...root.querySelectorAll('[data-testid="conversation"] details')].map((d, i) => (d.open ? i : -1)).filter((i) => i >= 0);
    const field = (name, value) => [h('dt', {}, name), h('dd', {}, value ?? '—')];
    const section = (name, value, testid) =>
      value === null || value === undefined || value === '' ? null : [h('h2', {}, name), h('pre', { 'data-testid': testid }, fmt.json(value))];
    // h() flattens the sections and drops the empty ones.
    fill(root,
      h('p', {}, h('a', { href: `#/jobs/${jobId}` }, `← job #${jobId}`)),
      h('h1', {}, `Unit #${unit.unit_id} `, badge(unit.status), ' ', followIndicator),
      unitControls(),
      h(
        'dl',
        { class: 'fields' },
        field('item', unit.item_id),
        field('attempt', String(unit.attempt)),
        field('failures', String(unit.failures ?? 0)),
        field('duration', fmt.ms(unit.duration_ms)),
        field('cost', fmt.usd(unit.cost_usd)),
        field('exit code', unit.exit_code === null || unit.exit_code === undefined ? null : String(unit.exit_code)),
        field('error kind', unit.error_kind),
        field('session', unit.session_id),
      ),
      section('Error', unit.error, 'error'),
      section('Payload', unit.payload, 'payload'),
      section('Rendered prompt', unit.prompt, 'prompt'),
      section('Output', unit.output, 'output'),
      section('Structured output', unit.structured_output, 'structured-output'),
      section('stderr (tail)', unit.stderr_tail, 'stderr'),
      h('h2', {}, 'Conversation'),
      conversation(unit.conversation ?? [], FOLLOWED_UNIT.includes(unit.status)),
    );
    const details = root.querySelectorAll('[data-testid="conversation"] details');
    for (const i of open) if (details[i]) details[i].open = true;
  }

  /** Retry for a final unit; Stop (then failed, or back to pending) for a running one. */
  function unitControls() {
    const act = async (button, call) => {
      button.disabled = true;
      try {
        show(await call());
      } catch (err) {
        showError(err.message);
      }
      button.disabled = false;
      await reload();
    };
    if (FINAL_UNIT.includes(unit.status)) {
      const retry = h('button', { class: 'primary', 'data-testid': 'unit-retry', 'data-action': 'unit-retry' }, 'Retry this unit');
      retry.addEventListener('click', () => act(retry, () => api(`/jobs/${jobId}/units/${unitId}/retry`, { method: 'POST', body: {} })));
      return h('div', { class: 'controls' }, retry);
    }
    if (unit.status === 'RUNNING') {
      const then = h(
        'select',
        { 'data-testid': 'unit-stop-then', 'aria-label': 'After stopping' },
        h('option', { value: 'failed' }, 'then: mark failed'),
        h('option', { value: 'pending' }, 'then: put back to pending'),
      );
      const stop = h('button', { class: 'danger', 'data-testid': 'unit-stop', 'data-action': 'unit-stop' }, 'Stop');
      stop.addEventListener('click', () => {
        const after = then.value === 'pending' ? 'put back to pending' : 'marked failed';
        if (!window.confirm(`Stop unit #${unitId}? Its process is killed and the unit is ${after}.`)) return;
        act(stop, () => api(`/jobs/${jobId}/units/${unitId}/stop`, { method: 'POST', body: { then: then.value } }));
      });
      return h('div', { class: 'controls' }, stop, then);
    }
    return null;
  }

  // ---- following a unit that is not final yet ----
  const followIndicator = h('span', { class: 'following', 'data-testid': 'unit-live', hidden: true }, 'live');
  let source = null;
  let slow = null;
  let pending = null;
  let lastEvent = null;

  /** Shows the unit as read and, in the same moment, follows it or stops: the state and the live mark never disagree. */
  function show(fresh) {
    unit = fresh;
    render();
    if (FOLLOWED_UNIT.includes(unit.status)) follow();
    else unfollow();
  }

  async function reload() {
    try {
      const fresh = await api(`/jobs/${jobId}/units/${unitId}`);
      if (stopped) return;
      show(fresh);
    } catch (err) {
      showError(err.message);
    }
  }
  // A burst of frames causes one fetch.
  const reloadSoon = () => {
    if (pending || stopped) return;
    pending = setTimeout(async () => {
      await reload();
      pending = null;
    }, 150);
  };

  function follow() {
    if (source || stopped) return;
    followIndicator.hidden = false;
    live.dataset.state = 'open';
    live.textContent = `following unit #${unitId}`;
    // Only what happens from now on: this page has just read the unit.
    source = new EventSource(withKey(`/jobs/${jobId}/events?since=now`));
    // A new connection may have missed something while it was down.
    source.addEventListener('hello', reloadSoon);
    source.addEventListener('activity', (msg) => {
      const a = JSON.parse(msg.data).data ?? {};
      if (a.unit_id !== unitId) return;
      const seen = a.running ? (a.latest?.event_id ?? null) : 'stopped';
      if (seen !== lastEvent) {
        lastEvent = seen;
        reloadSoon();
      }
    });
    source.addEventListener('unit', (msg) => {
      if (JSON.parse(msg.data).data?.unit_id === unitId) reloadSoon();
    });
    source.addEventListener('status', reloadSoon);
    source.addEventListener('end', () => {
      source?.close();
      reloadSoon();
    });
    // A unit that runs and ends between two polls sends no activity; this catches it anyway.
    slow = setInterval(reloadSoon, 5000);
  }

  function unfollow() {
    source?.close();
    source = null;
    clearInterval(slow);
    slow = null;
    lastEvent = null;
    followIndicator.hidden = true;
    live.dataset.state = 'ended';
    live.textContent = `unit ${unit.status.toLowerCase()}`;
  }

  show(unit);
  cleanup = () => {
    stopped = true;
    source?.close();
    clearInterval(slow);
    clearTimeout(pending);
  };
}

/** Text of a tool result's content: a string, or text blocks. */
function resultText(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((b) => (typeof b?.text === 'string' ? b.text : JSON.stringify(b))).join('\n');
  return JSON.stringify(content, null, 2);
}

/**
 * The agent's conversation: assistant text, and each tool call with the result
 * that answered it (paired by tool_use id), in order. Other events are shown raw.
 */
function conversation(events, running = false) {
  if (events.length === 0) return h('p', { class: 'muted', 'data-testid': 'conversation' }, running ? 'Nothing recorded yet.' : 'No conversation was recorded for this unit.');
  const root = h('div', { 'data-testid': 'conversation' });
  const calls = new Map();
  for (const ev of events) {
    const content = Array.isArray(ev.data?.content) ? ev.data.content : null;
    if (ev.kind === 'assistant' && content) {
      const turn = h('div', { class: 'turn', 'data-kind': 'assistant' }, h('div', { class: 'who' }, `assistant · attempt ${ev.attempt}`));
      for (const block of content) {
        if (block?.type === 'text') turn.append(h('pre', {}, block.text));
        else if (block?.type === 'tool_use') {
          const call = h('div', { class: 'tool', 'data-tool-use': block.id }, h('b', {}, `tool call: ${block.name}`), h('pre', {}, fmt.json(block.input ?? {})));
          calls.set(block.id, call);
          turn.append(call);
        } else if (block?.type === 'thinking') turn.append(h('details', {}, h('summary', {}, 'thinking'), h('pre', {}, block.thinking ?? '')));
        else turn.append(h('pre', {}, fmt.json(block)));
      }
      root.append(turn);
    } else if (ev.kind === 'user' && content && content.some((b) => b?.type === 'tool_result')) {
      for (const block of content) {
        if (block?.type !== 'tool_result') continue;
        const result = h('div', { class: `result${block.is_error ? ' error' : ''}`, 'data-tool-result': block.tool_use_id }, h('b', {}, block.is_error ? 'result (error)' : 'result'), h('pre', {}, resultText(block.content)));
        const call = calls.get(block.tool_use_id);
        if (call) call.append(result);
        else root.append(h('div', { class: 'turn' }, h('div', { class: 'who' }, 'tool result without its call'), result));
      }
    } else {
      root.append(h('details', { class: 'turn', 'data-kind': ev.kind }, h('summary', {}, `${ev.kind}${ev.at ? ` · ${ev.at.slice(11, 19)}` : ''}`), h('pre', {}, fmt.json(ev.data))));
    }
  }
  return root;
}
