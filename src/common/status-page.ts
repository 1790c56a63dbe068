// The live status page the admin server serves at `/`: one self-contained HTML document (no
// external assets) whose script polls ./status every second and renders, for the front's
// backends or the backend's workers: responses by status class and the 5xx share, latency
// percentiles over the last minute, sparklines of the last minutes, the requests in flight
// (oldest first), the limits, a front's upgraded connections (tunnels), each process's CPU and
// memory, and the recent errors.
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tsgi status</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
 h1 { font-size: 1.3em; margin: 0 0 .3em; } h2 { font-size: 1.1em; margin: 1em 0 .4em; }
 .meta { color: #666; margin-bottom: 1em; }
 .cards { display: flex; flex-wrap: wrap; gap: .8em; margin-bottom: 1em; }
 .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .5em .9em; min-width: 8em; }
 .card b { display: block; font-size: 1.5em; font-variant-numeric: tabular-nums; }
 .card span { color: #666; font-size: .85em; }
 .card.bad { border-color: #d33; background: #fff3f3; } .card.bad b { color: #b00; }
 .card.warn { border-color: #e90; background: #fffaf0; }
 .sparks { display: flex; flex-wrap: wrap; gap: 1.2em; margin-bottom: .5em; }
 .spark { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .3em .6em; }
 .spark > span { color: #666; font-size: .85em; display: block; }
 svg.line { display: block; }
 table { border-collapse: collapse; background: #fff; margin-bottom: .8em; }
 th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; font-variant-numeric: tabular-nums; }
 th { background: #f0f0f0; font-weight: 600; }
 td.num { text-align: right; }
 td.err5 { color: #b00; font-weight: 600; }
 .up, .ready { color: #080; } .down, .stopping { color: #b00; } .connecting, .starting, .draining, .retiring { color: #a60; }
 .errors li { font-family: ui-monospace, monospace; font-size: .85em; margin-bottom: .2em; }
 .errors .error, .errors .s5 { color: #b00; } .errors .warn { color: #a60; }
 #offline { color: #b00; display: none; }
 .note { color: #666; font-size: .85em; }
</style>
</head>
<body>
<h1>tsgi <span id="kind">…</span> <span id="offline">(not answering)</span></h1>
<div class="meta">version <span id="version">?</span> · pid <span id="pid">?</span> · up <span id="uptime">?</span> · <span id="listen"></span></div>
<div class="cards">
 <div class="card"><b id="requests">0</b><span>requests</span></div>
 <div class="card"><b id="rps">0</b><span>requests / s (last 10 s)</span></div>
 <div class="card" id="card-5xx"><b id="share5xx">0 %</b><span>5xx, last minute (<span id="count5xx">0</span> of <span id="countmin">0</span>)</span></div>
 <div class="card"><b id="latency">–</b><span>p50 / p95 / p99 ms, last minute</span></div>
 <div class="card" id="card-inflight"><b id="inflight">0</b><span id="inflight-label">in flight</span></div>
 <div class="card" id="card-queued"><b id="queued">0</b><span id="queued-label">queued</span></div>
 <div class="card" id="card-conns"><b id="connections">0</b><span id="connections-label">connections</span></div>
 <div class="card"><b id="extra">0</b><span id="extra-label"></span></div>
 <div class="card" id="tunnels-card" style="display: none"><b id="tunnels">0</b><span>upgraded connections open</span></div>
</div>
<div class="sparks">
 <div class="spark"><span>requests / s, last <span class="span-min">5</span> min</span><svg class="line" id="spark-rps" width="240" height="40"></svg></div>
 <div class="spark"><span>5xx / s</span><svg class="line" id="spark-errors" width="240" height="40"></svg></div>
 <div class="spark"><span>p99 ms</span><svg class="line" id="spark-p99" width="240" height="40"></svg></div>
</div>
<div class="meta" id="tunnel-line"></div>
<h2 id="table-title">Backends</h2>
<table id="table"><thead id="thead"></thead><tbody id="rows"></tbody></table>
<h2>Requests in flight <span class="note">(oldest first)</span></h2>
<table id="inflight-table"><thead><tr><th>age</th><th>method</th><th>path</th><th id="inflight-by">backend</th><th>phase</th><th>request id</th></tr></thead><tbody id="inflight-rows"></tbody></table>
<h2>Processes</h2>
<table id="procs-table"><thead><tr><th>process</th><th>pid</th><th>CPU %</th><th>RSS MB</th></tr></thead><tbody id="procs"></tbody></table>
<h2>Recent errors</h2>
<h3 class="note" id="responses-title">5xx responses</h3>
<ul class="errors" id="responses"><li>none</li></ul>
<h3 class="note">Logged warnings and errors</h3>
<ul class="errors" id="errors"><li>none</li></ul>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function text(id, v) { const e = $(id); const s = String(v); if (e.textContent !== s) e.textContent = s; }
function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + (d || h || m ? m + 'm ' : '') + (s % 60) + 's';
}
function ms(v) { return v === null || v === undefined ? '–' : v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : String(Math.round(v)); }
function pct(x) { return (x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0) + ' %'; }
function ofLimit(n, max) { return max > 0 ? n + ' / ' + max : String(n); }
function age(v) { return v < 1000 ? v + ' ms' : (v / 1000).toFixed(1) + ' s'; }
const NS = 'http://www.w3.org/2000/svg';
function sparkline(svg, values, color) {
  const w = Number(svg.getAttribute('width')), h = Number(svg.getAttribute('height'));
  const nums = values.map((v) => (v === null ? 0 : v));
  const max = Math.max(1e-9, ...nums);
  const step = nums.length > 1 ? w / (nums.length - 1) : w;
  const pts = nums.map((v, i) => (i * step).toFixed(1) + ',' + (h - 2 - (v / max) * (h - 4)).toFixed(1)).join(' ');
  const line = document.createElementNS(NS, 'polyline');
  line.setAttribute('points', pts); line.setAttribute('fill', 'none'); line.setAttribute('stroke', color); line.setAttribute('stroke-width', '1.5');
  const title = document.createElementNS(NS, 'title');
  title.textContent = 'max ' + (Math.round(max * 100) / 100) + ', now ' + (nums.length ? nums[nums.length - 1] : 0);
  svg.replaceChildren(title, line);
  svg.dataset.max = String(max);
}
function td(tr, v, cls) { const c = document.createElement('td'); c.textContent = String(v); if (cls) c.className = cls; tr.appendChild(c); return c; }
function emptyRow(cols) { const tr = document.createElement('tr'); const c = td(tr, 'none'); c.colSpan = cols; return tr; }
function rowsTable(columns, rows) {
  const head = document.createElement('tr');
  for (const [label] of columns) { const th = document.createElement('th'); th.textContent = label; head.appendChild(th); }
  $('thead').replaceChildren(head);
  const trs = rows.map((r) => {
    const tr = document.createElement('tr');
    for (const [, get, cls] of columns) {
      const v = get(r);
      if (v instanceof Node) { const c = document.createElement('td'); c.appendChild(v); tr.appendChild(c); }
      else td(tr, v, typeof cls === 'function' ? cls(r) : cls);
    }
    return tr;
  });
  $('rows').replaceChildren(...(trs.length ? trs : [emptyRow(columns.length)]));
}
function miniSpark(values) {
  const svg = document.createElementNS(NS, 'svg'); svg.setAttribute('width', '120'); svg.setAttribute('height', '18'); svg.setAttribute('class', 'line');
  sparkline(svg, values.slice(-36), '#36c');
  return svg;
}
const m = (r) => (r.recent ? r.recent.minute : null);
const classCols = [
  ['2xx', (r) => (m(r) ? m(r).classes['2xx'] : 0), 'num'], ['3xx', (r) => (m(r) ? m(r).classes['3xx'] : 0), 'num'],
  ['4xx', (r) => (m(r) ? m(r).classes['4xx'] : 0), 'num'],
  ['5xx', (r) => (m(r) ? m(r).classes['5xx'] : 0), (r) => (m(r) && m(r).classes['5xx'] > 0 ? 'num err5' : 'num')],
  ['5xx %', (r) => (m(r) ? pct(m(r).share5xx) : '–'), (r) => (m(r) && m(r).share5xx > 0 ? 'num err5' : 'num')],
  ['p50 ms', (r) => ms(m(r) && m(r).p50), 'num'], ['p95 ms', (r) => ms(m(r) && m(r).p95), 'num'], ['p99 ms', (r) => ms(m(r) && m(r).p99), 'num'],
  ['req/s', (r) => (r.recent ? r.recent.rps : 0), 'num'],
  ['last 3 min', (r) => miniSpark(r.recent ? r.recent.spark.rps : []), ''],
];
function card(id, level) { $(id).classList.toggle('bad', level === 2); $(id).classList.toggle('warn', level === 1); }
function render(s) {
  text('kind', s.kind);
  text('version', s.version); text('pid', s.pid); text('uptime', duration(s.uptime)); text('listen', s.listen || '');
  text('requests', s.requests);
  const r = s.recent;
  if (r) {
    text('rps', r.rps);
    text('share5xx', pct(r.minute.share5xx)); text('count5xx', r.minute.classes['5xx']); text('countmin', r.minute.requests);
    card('card-5xx', r.minute.share5xx >= 0.05 ? 2 : r.minute.share5xx > 0 ? 1 : 0);
    text('latency', ms(r.minute.p50) + ' / ' + ms(r.minute.p95) + ' / ' + ms(r.minute.p99));
    for (const e of document.querySelectorAll('.span-min')) e.textContent = String(Math.round(r.spark.rps.length * r.spark.step / 60));
    sparkline($('spark-rps'), r.spark.rps, '#36c');
    sparkline($('spark-errors'), r.spark.errors, '#c33');
    sparkline($('spark-p99'), r.spark.p99, '#a60');
  }
  const usage = new Map((s.processUsage || []).map((p) => [p.pid, p]));
  if (s.kind === 'front') {
    const l = s.limits || { queueSize: 0, maxInFlight: 0, maxConnections: 0, processes: 1 };
    const per = l.processes > 1 ? ' (each of ' + l.processes + ' processes)' : '';
    text('inflight', ofLimit(s.inFlight, l.maxInFlight * l.processes)); text('inflight-label', 'in flight' + (l.maxInFlight ? ' / --max-in-flight' + per : ''));
    text('queued', ofLimit(s.queued, l.queueSize * l.processes)); text('queued-label', 'queued / --queue-size' + per);
    text('connections', ofLimit(s.connections, l.maxConnections * l.processes)); text('connections-label', 'connections' + (l.maxConnections ? ' / --max-connections' + per : ''));
    card('card-inflight', l.maxInFlight && s.inFlight >= 0.8 * l.maxInFlight * l.processes ? 2 : 0);
    card('card-queued', s.queued > 0 ? (l.queueSize && s.queued >= 0.8 * l.queueSize * l.processes ? 2 : 1) : 0);
    card('card-conns', l.maxConnections && s.connections >= 0.8 * l.maxConnections * l.processes ? 2 : 0);
    text('extra', s.backends.filter((b) => b.state === 'up').length + ' / ' + s.backends.length); text('extra-label', 'backends up');
    text('table-title', 'Backends'); text('inflight-by', 'backend'); text('responses-title', '5xx responses (as the front saw them, per backend)');
    rowsTable([['backend', (b) => b.name], ['state', (b) => b.state, (b) => b.state], ['source', (b) => b.source],
      ['connections', (b) => b.links, 'num'], ['in flight', (b) => b.inFlight, 'num'], ['requests', (b) => b.requests, 'num'],
      ['failures', (b) => b.failures, (b) => (b.failures > 0 ? 'num err5' : 'num')], ...classCols], s.backends);
    const t = s.tunnels;
    if (t) {
      $('tunnels-card').style.display = '';
      text('tunnels', t.open);
      const closed = Object.entries(t.closed || {}).map(([k, v]) => k + ' ' + v).join(', ') || 'none';
      text('tunnel-line', 'upgraded connections: ' + t.opened + ' opened; closed: ' + closed + '; bytes from clients '
        + t.bytesIn + ', to clients ' + t.bytesOut);
    }
  } else {
    text('inflight', s.inFlight); text('inflight-label', 'in flight');
    text('queued', s.workers.length + ' / ' + s.workersTarget); text('queued-label', 'workers / target');
    text('connections', s.connections); text('connections-label', 'front connections');
    card('card-inflight', 0); card('card-queued', s.workers.length < s.workersTarget ? 1 : 0); card('card-conns', 0);
    const restarts = Object.values(s.restarts || {}).reduce((a, b) => a + b, 0);
    text('extra', restarts); text('extra-label', 'worker restarts');
    text('table-title', 'Workers (generation ' + s.generation + ')'); text('inflight-by', 'worker'); text('responses-title', '5xx responses of the app');
    const u = (w) => usage.get(w.pid);
    rowsTable([['worker', (w) => w.id], ['pid', (w) => w.pid], ['generation', (w) => w.generation], ['state', (w) => w.state, (w) => w.state],
      ['connections', (w) => w.connections, 'num'], ['in flight', (w) => w.inFlight, 'num'], ['requests', (w) => w.requests, 'num'],
      ['CPU %', (w) => (u(w) ? u(w).cpu : '–'), 'num'], ['RSS MB', (w) => (u(w) ? (u(w).rss / 1048576).toFixed(1) : '–'), 'num'],
      ...classCols], s.workers);
  }
  const inflight = (s.requestsInFlight || []).map((q) => {
    const tr = document.createElement('tr');
    td(tr, age(q.ageMs), 'num'); td(tr, q.method); td(tr, q.path); td(tr, q.backend !== undefined ? q.backend : q.worker); td(tr, q.phase || 'app');
    td(tr, q.id || '–');
    return tr;
  });
  $('inflight-rows').replaceChildren(...(inflight.length ? inflight : [emptyRow(6)]));
  const procs = (s.processUsage || []).map((p) => {
    const tr = document.createElement('tr');
    td(tr, p.role); td(tr, p.pid, 'num'); td(tr, p.cpu.toFixed(1), 'num'); td(tr, (p.rss / 1048576).toFixed(1), 'num');
    return tr;
  });
  $('procs').replaceChildren(...(procs.length ? procs : [emptyRow(4)]));
  const responses = (s.recentResponses || []).map((e) => {
    const li = document.createElement('li'); li.className = 's' + Math.floor(e.status / 100);
    li.textContent = e.time + ' ' + e.status + ' ' + e.method + ' ' + e.path + ' from ' + e.by + ' (' + e.ms + ' ms)' + (e.more ? ' and ' + e.more + ' more that second' : '');
    return li;
  });
  if (responses.length === 0) { const li = document.createElement('li'); li.textContent = 'none'; responses.push(li); }
  $('responses').replaceChildren(...responses);
  const items = (s.recentErrors || []).map((e) => {
    const li = document.createElement('li'); li.className = e.level; li.textContent = e.time + ' ' + e.level + ': ' + e.message; return li;
  });
  if (items.length === 0) { const li = document.createElement('li'); li.textContent = 'none'; items.push(li); }
  $('errors').replaceChildren(...items);
}
async function poll() {
  try {
    const r = await fetch('status', { cache: 'no-store' });
    render(await r.json());
    $('offline').style.display = 'none';
  } catch (e) {
    $('offline').style.display = 'inline';
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
`;
