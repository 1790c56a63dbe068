// End to end: the live status pages of `tsgi front --admin` and `tsgi serve --admin`, in headless
// Chromium (Debian's package, driven by playwright-core; no browser is downloaded). The page
// loads, shows the backend's address, and its request counter changes after requests are made;
// in an incident (a third of the responses are an app's 500s, a request hangs) both pages show
// the 5xx share in red, per backend and per worker, the request in flight with its method, path,
// backend and age, the processes' CPU and memory, and the 500s among the recent errors.
// Screenshots go to .tmp/test-output/status-page/ (ignored by git), and a red-pixel count of
// the 5xx card's screenshot, before and during the incident, checks that 5xx became visible.
// Required under CI=true (.ci/run installs chromium); otherwise skipped with one line if
// Chromium is missing. (Page-side conditions are strings: this project's tsconfig has no DOM types.)
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { type Agent, request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, ROOT, startBackend, startFront, tempDir } from '../helpers/procs.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WAIT_MS = 20_000;

interface PageCtx extends Ctx {
  admin: string;
  profile: string;
  /** The two backends' addresses, as the page should show them. */
  names: string[];
  browser?: BrowserContext;
  page?: Page;
}

function pageSuite(): void {
  const test = suite<PageCtx>('e2e/admin-page', { ...newCtx(), admin: '', profile: '', names: [] });

  setUp(test, async (ctx) => {
    ctx.backend = await startBackend(fixture('hello.js'));
    const second = await startBackend(fixture('hello.js'));
    ctx.extra.push(second);
    ctx.names = [`unix:${ctx.backend.socket}`, `unix:${second.socket}`];
    ctx.front = await startFront([ctx.backend.socket, second.socket], ['--admin', '127.0.0.1:0']);
    const m = await ctx.front!.waitForStderr(/admin on http (127\.0\.0\.1:\d+)/);
    ctx.admin = `http://${m[1]}`;
    ctx.agent = newAgent();
    ctx.profile = tempDir('tsgi-e2e-chromium-');
    ctx.browser = await chromium.launchPersistentContext(ctx.profile, {
      executablePath: CHROMIUM, headless: true, args: ARGS, timeout: WAIT_MS,
    });
    ctx.page = ctx.browser.pages()[0] ?? await ctx.browser.newPage();
  });

  test.after(async (ctx) => {
    await ctx.browser?.close().catch(() => {});
    if (ctx.profile) rmSync(ctx.profile, { recursive: true, force: true });
  });

  test('the page loads and lists each backend by its address, up', async (ctx) => {
    const page = ctx.page!;
    const res = await page.goto(`${ctx.admin}/`, { timeout: WAIT_MS });
    assert.is(res?.status(), 200);
    assert.is(await page.title(), 'tsgi status');
    for (const name of ctx.names) {
      await page.waitForFunction(`document.getElementById('rows').textContent.includes(${JSON.stringify(name)})`, undefined,
        { timeout: WAIT_MS });
      const row = await page.locator('#rows tr', { hasText: name }).innerText();
      assert.match(row, /\bup\b/, row);
    }
    assert.is(await page.locator('#rows tr').count(), 2);
    assert.is(await page.locator('#kind').innerText(), 'front');
  });

  test('the request counter updates by itself after requests are made', async (ctx) => {
    const page = ctx.page!;
    await page.waitForFunction(`document.getElementById('pid').textContent !== '?'`, undefined, { timeout: WAIT_MS });
    const before = Number(await page.locator('#requests').innerText());
    for (let i = 0; i < 3; i++) assert.is((await call(`${ctx.front!.url}/p${i}`, { dispatcher: ctx.agent })).status, 200);
    // No reload: the page polls /status and rewrites the counter.
    await page.waitForFunction(`Number(document.getElementById('requests').textContent) >= ${before + 3}`, undefined,
      { timeout: WAIT_MS });
    assert.is(Number(await page.locator('#requests').innerText()), before + 3);
    // The backends' rows show their request counts, which add up to the total.
    await page.waitForFunction(`[...document.querySelectorAll('#rows tr')].reduce((n, tr) => n + Number(tr.children[5].textContent), 0) === ${before + 3}`,
      undefined, { timeout: WAIT_MS });
  });

  test.run();
}

/** Where the screenshots are kept (under .tmp/, which git ignores). */
const SHOTS = join(ROOT, '.tmp', 'test-output', 'status-page');

/** Pixels of a PNG that are clearly red (the page's 5xx colour), counted by the browser itself on a canvas. */
async function redPixels(page: Page, png: Buffer): Promise<number> {
  return page.evaluate(`(async () => {
    const img = new Image();
    img.src = 'data:image/png;base64,${png.toString('base64')}';
    await img.decode();
    const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] > 150 && d[i + 1] < 80 && d[i + 2] < 80) n++;
    return n;
  })()`);
}

interface IncidentCtx extends PageCtx {
  serveAdmin: string;
  hold?: AbortController;
  held?: Promise<unknown>;
  /** The client of the request held in flight (its own: after() ends it). */
  holder?: Agent;
  /** The 5xx card's red pixels before any 500. */
  calmRed: number;
}

function incidentSuite(): void {
  const test = suite<IncidentCtx>('e2e/admin-page: an incident', { ...newCtx(), admin: '', profile: '', names: [], serveAdmin: '', calmRed: -1 });

  setUp(test, async (ctx) => {
    mkdirSync(SHOTS, { recursive: true });
    ctx.backend = await startBackend(fixture('incident.js'), ['--workers', '2', '--admin', '127.0.0.1:0']);
    ctx.serveAdmin = `http://${(await ctx.backend.waitForStderr(/admin on http (127\.0\.0\.1:\d+)/))[1]}`;
    ctx.names = [`unix:${ctx.backend.socket}`];
    ctx.front = await startFront([ctx.backend.socket], ['--admin', '127.0.0.1:0', '--max-in-flight', '64']);
    ctx.admin = `http://${(await ctx.front.waitForStderr(/admin on http (127\.0\.0\.1:\d+)/))[1]}`;
    ctx.agent = newAgent();
    ctx.profile = tempDir('tsgi-e2e-chromium-');
    ctx.browser = await chromium.launchPersistentContext(ctx.profile, {
      executablePath: CHROMIUM, headless: true, args: ARGS, timeout: WAIT_MS, viewport: { width: 1400, height: 1000 },
    });
    ctx.page = ctx.browser.pages()[0] ?? await ctx.browser.newPage();
  });

  test.after(async (ctx) => {
    ctx.hold?.abort();
    await ctx.held?.catch(() => {});
    await ctx.holder?.destroy().catch(() => {});
    await ctx.browser?.close().catch(() => {});
    if (ctx.profile) rmSync(ctx.profile, { recursive: true, force: true });
  });

  test('before the incident: no 5xx, nothing red on the 5xx card', async (ctx) => {
    const page = ctx.page!;
    for (let i = 0; i < 4; i++) assert.is((await call(`${ctx.front!.url}/ok${i}`, { dispatcher: ctx.agent })).status, 200);
    await page.goto(`${ctx.admin}/`, { timeout: WAIT_MS });
    await page.waitForFunction(`document.getElementById('countmin').textContent === '4'`, undefined, { timeout: WAIT_MS });
    assert.is(await page.locator('#share5xx').innerText(), '0 %');
    const shot = await page.locator('#card-5xx').screenshot({ path: join(SHOTS, 'front-calm-5xx-card.png') });
    ctx.calmRed = await redPixels(page, shot);
    assert.is(ctx.calmRed, 0);
  });

  test('front page: the 5xx share, per backend, the request in flight, the processes, the 500s', async (ctx) => {
    const page = ctx.page!;
    // 4 more 200s and 4 500s: a third of the 12 responses are the app's 500s.
    for (let i = 0; i < 4; i++) {
      assert.is((await call(`${ctx.front!.url}/ok`, { dispatcher: ctx.agent })).status, 200);
      assert.is((await call(`${ctx.front!.url}/fail?token=secret`, { dispatcher: ctx.agent })).status, 500);
    }
    ctx.hold = new AbortController();
    ctx.holder = newAgent();
    ctx.held = request(`${ctx.front!.url}/hold?token=secret`, { dispatcher: ctx.holder, signal: ctx.hold.signal })
      .then((r) => r.body.text());
    ctx.held.catch(() => {}); // aborted in after()
    await page.waitForFunction(`document.getElementById('share5xx').textContent === '33 %'`, undefined, { timeout: WAIT_MS });
    assert.is(await page.locator('#count5xx').innerText(), '4');
    assert.match(String(await page.locator('#card-5xx').getAttribute('class')), /\bbad\b/);
    // The backend's row: 4 in the 5xx column, 33 % beside it, both marked.
    const row = page.locator('#rows tr', { hasText: ctx.names[0]! });
    const cells = await row.locator('td').allInnerTexts();
    const header = await page.locator('#thead th').allInnerTexts();
    assert.is(cells[header.indexOf('5xx')], '4');
    assert.is(cells[header.indexOf('5xx %')], '33 %');
    assert.is(cells[header.indexOf('2xx')], '8');
    assert.ok(Number(cells[header.indexOf('p99 ms')]) > 0, cells.join(' | '));
    // The request in flight: method, path (query cut), backend, phase, an age.
    await page.waitForFunction(`document.getElementById('inflight-rows').textContent.includes('/hold')`, undefined, { timeout: WAIT_MS });
    const inflight = await page.locator('#inflight-rows tr').first().locator('td').allInnerTexts();
    assert.equal(inflight.slice(1, 5), ['GET', '/hold?…', ctx.names[0]!, 'backend']);
    assert.match(inflight[5]!, /^[A-Za-z0-9_-]{12}-[0-9a-z]+$/, 'the request id the front made');
    assert.match(inflight[0]!, /^\d+(\.\d)? m?s$/);
    assert.match(await page.locator('#inflight').innerText(), /^1 \/ 64$/);
    assert.match(await page.locator('#queued').innerText(), /^0 \/ 1024$/);
    assert.match(await page.locator('#connections').innerText(), /^\d+ \/ 10000$/);
    // The front process, with its CPU and RSS.
    const proc = await page.locator('#procs tr', { hasText: String(ctx.front!.pid) }).locator('td').allInnerTexts();
    assert.is(proc[0], 'front');
    assert.ok(Number(proc[3]) > 1, `RSS ${proc[3]} MB`);
    // The app's 500s among the recent errors, though the front logged none.
    const responses = await page.locator('#responses').innerText();
    assert.match(responses, new RegExp(`500 GET /fail\\?… from unix:${ctx.backend!.socket.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
    assert.not.match(responses, /secret/);
    // And it shows: the 5xx card is red now.
    const shot = await page.locator('#card-5xx').screenshot({ path: join(SHOTS, 'front-incident-5xx-card.png') });
    const red = await redPixels(page, shot);
    assert.ok(red > 50 && red > ctx.calmRed, `red pixels: ${red}, before: ${ctx.calmRed}`);
    await page.screenshot({ path: join(SHOTS, 'front-incident.png'), fullPage: true });
    assert.ok(statSync(join(SHOTS, 'front-incident.png')).size > 1000);
  });

  test('serve page: the workers\' 5xx, the request in flight at its worker, each worker\'s CPU and RSS', async (ctx) => {
    const page = ctx.page!;
    await page.goto(`${ctx.serveAdmin}/`, { timeout: WAIT_MS });
    await page.waitForFunction(`document.getElementById('share5xx').textContent === '33 %'`, undefined, { timeout: WAIT_MS });
    const header = await page.locator('#thead th').allInnerTexts();
    const rows = await page.locator('#rows tr').all();
    assert.is(rows.length, 2);
    let fails = 0;
    for (const r of rows) {
      const cells = await r.locator('td').allInnerTexts();
      fails += Number(cells[header.indexOf('5xx')]);
      assert.ok(Number(cells[header.indexOf('RSS MB')]) > 1, cells.join(' | '));
      assert.match(cells[header.indexOf('CPU %')]!, /^\d+(\.\d+)?$/);
    }
    assert.is(fails, 4);
    await page.waitForFunction(`document.getElementById('inflight-rows').textContent.includes('/hold')`, undefined, { timeout: WAIT_MS });
    const inflight = await page.locator('#inflight-rows tr').first().locator('td').allInnerTexts();
    assert.equal([inflight[1], inflight[2], inflight[4]], ['GET', '/hold?…', 'app']);
    assert.match(inflight[3]!, /^[12]$/);
    // The supervisor and both workers in the process table.
    const procs = await page.locator('#procs tr').allInnerTexts();
    assert.is(procs.length, 3, procs.join('\n'));
    assert.match(procs[0]!, new RegExp(`^supervisor\\s+${ctx.backend!.pid}\\b`));
    assert.match(await page.locator('#responses').innerText(), /500 GET \/fail\?… from worker [12]/);
    // The req/s card is the server's steady figure (the last 10 s), not a difference of heartbeats.
    const rps = Number(await page.locator('#rps').innerText());
    assert.ok(Number.isFinite(rps) && rps >= 0);
    const shot = await page.locator('#card-5xx').screenshot({ path: join(SHOTS, 'serve-incident-5xx-card.png') });
    assert.ok(await redPixels(page, shot) > 50);
    await page.screenshot({ path: join(SHOTS, 'serve-incident.png'), fullPage: true });
  });

  test.run();
}

if (existsSync(CHROMIUM)) {
  pageSuite();
  incidentSuite();
}
else if (process.env.CI === 'true') {
  const test = suite('e2e/admin-page');
  test('CI=true: Chromium is installed', () => {
    assert.unreachable(`${CHROMIUM} is missing (.ci/run installs it with apt-get install chromium)`);
  });
  test.run();
} else {
  process.stdout.write(`admin-page: skipping the status page test — ${CHROMIUM} is missing (apt-get install chromium)\n`);
}
