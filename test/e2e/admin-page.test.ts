// End to end: the live status page of `tsgi front --admin`, in headless Chromium (Debian's
// package, driven by playwright-core; no browser is downloaded). The page loads, shows the
// backend's address, and its request counter changes after requests are made. Required under
// CI=true (.ci/run installs chromium); otherwise skipped with one line if Chromium is missing.
// (Page-side conditions are strings: this project's tsconfig has no DOM types.)
import { existsSync, rmSync } from 'node:fs';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, startBackend, startFront, tempDir } from '../helpers/procs.js';

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

if (existsSync(CHROMIUM)) pageSuite();
else if (process.env.CI === 'true') {
  const test = suite('e2e/admin-page');
  test('CI=true: Chromium is installed', () => {
    assert.unreachable(`${CHROMIUM} is missing (.ci/run installs it with apt-get install chromium)`);
  });
  test.run();
} else {
  process.stdout.write(`admin-page: skipping the status page test — ${CHROMIUM} is missing (apt-get install chromium)\n`);
}
