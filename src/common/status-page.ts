// The live status page the admin server serves at `/`: one self-contained HTML document (no
// external assets) whose script polls ./status every second and renders the front's backends
// or the backend's workers, requests per second (from the counters), queue and recent errors.
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tsgi status</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
 h1 { font-size: 1.3em; margin: 0 0 .3em; }
 .meta { color: #666; margin-bottom: 1em; }
 .cards { display: flex; flex-wrap: wrap; gap: .8em; margin-bottom: 1.2em; }
 .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .5em .9em; min-width: 8em; }
 .card b { display: block; font-size: 1.5em; font-variant-numeric: tabular-nums; }
 .card span { color: #666; font-size: .85em; }
 table { border-collapse: collapse; background: #fff; margin-bottom: 1.2em; }
 th, td { border: 1px solid #ddd; padding: .3em .7em; text-align: left; font-variant-numeric: tabular-nums; }
 th { background: #f0f0f0; }
 .up, .ready { color: #080; } .down, .stopping { color: #b00; } .connecting, .starting, .draining, .retiring { color: #a60; }
 #errors li { font-family: ui-monospace, monospace; font-size: .85em; margin-bottom: .2em; }
 #errors .error { color: #b00; } #errors .warn { color: #a60; }
 #offline { color: #b00; display: none; }
</style>
</head>
<body>
<h1>tsgi <span id="kind">…</span> <span id="offline">(not answering)</span></h1>
<div class="meta">version <span id="version">?</span> · pid <span id="pid">?</span> · up <span id="uptime">?</span> · <span id="listen"></span></div>
<div class="cards">
 <div class="card"><b id="requests">0</b><span>requests</span></div>
 <div class="card"><b id="rps">0</b><span>requests / s</span></div>
 <div class="card"><b id="inflight">0</b><span>in flight</span></div>
 <div class="card"><b id="queued">0</b><span id="queued-label">queued</span></div>
 <div class="card"><b id="extra">0</b><span id="extra-label"></span></div>
</div>
<h2 id="table-title">Backends</h2>
<table id="table"><thead id="thead"></thead><tbody id="rows"></tbody></table>
<h2>Recent errors</h2>
<ul id="errors"><li>none</li></ul>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let prev = null;
function text(id, v) { const e = $(id); const s = String(v); if (e.textContent !== s) e.textContent = s; }
function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + (d || h || m ? m + 'm ' : '') + (s % 60) + 's';
}
function cell(tr, v, cls) { const td = document.createElement('td'); td.textContent = String(v); if (cls) td.className = cls; tr.appendChild(td); }
function table(columns, rows) {
  const head = document.createElement('tr');
  for (const [label] of columns) { const th = document.createElement('th'); th.textContent = label; head.appendChild(th); }
  $('thead').replaceChildren(head);
  const trs = rows.map((r) => {
    const tr = document.createElement('tr');
    for (const [, key] of columns) cell(tr, r[key], key === 'state' ? r[key] : '');
    return tr;
  });
  if (trs.length === 0) {
    const tr = document.createElement('tr');
    const td = document.createElement('td'); td.colSpan = columns.length; td.textContent = 'none'; tr.appendChild(td);
    trs.push(tr);
  }
  $('rows').replaceChildren(...trs);
}
function render(s) {
  const now = performance.now();
  text('kind', s.kind);
  text('version', s.version); text('pid', s.pid); text('uptime', duration(s.uptime)); text('listen', s.listen || '');
  text('requests', s.requests); text('inflight', s.inFlight);
  if (prev !== null && now > prev.at) text('rps', Math.max(0, (s.requests - prev.requests) / ((now - prev.at) / 1000)).toFixed(1));
  prev = { at: now, requests: s.requests };
  if (s.kind === 'front') {
    text('queued', s.queued); text('queued-label', 'queued');
    text('extra', s.backends.filter((b) => b.state === 'up').length + ' / ' + s.backends.length); text('extra-label', 'backends up');
    text('table-title', 'Backends');
    table([['backend', 'name'], ['state', 'state'], ['source', 'source'], ['connections', 'links'], ['in flight', 'inFlight'],
      ['requests', 'requests'], ['failures', 'failures']], s.backends);
  } else {
    text('queued', s.connections); text('queued-label', 'front connections');
    const restarts = Object.values(s.restarts || {}).reduce((a, b) => a + b, 0);
    text('extra', restarts); text('extra-label', 'worker restarts');
    text('table-title', 'Workers (generation ' + s.generation + ')');
    table([['worker', 'id'], ['pid', 'pid'], ['generation', 'generation'], ['state', 'state'], ['connections', 'connections'],
      ['in flight', 'inFlight'], ['requests', 'requests']], s.workers);
  }
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
