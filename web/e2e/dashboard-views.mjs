#!/usr/bin/env node
/**
 * The dashboard's views against a seeded convoi-api (no call runs): "load more" with the
 * cursor, the status and type filters, a refused key during a session, a network error, and
 * what a publishable key sees (its limited view, a web call watched by id, a phone call refused).
 *
 *   node web/e2e/dashboard-views.mjs config.json
 *
 * config.json: {dashboard_url, secret_key, publishable_key, unknown_key, web_call_id,
 *               phone_call_id, pk_screenshot, chromium?, console_log?, failure_screenshot?,
 *               timeout_ms?}
 *
 * Every wait is on page state. Output as web/e2e/dashboard-call.mjs: JSON lines, the last one
 * {"result": {...}} or {"error": "..."}.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const TIMEOUT = config.timeout_ms ?? 60_000;
const t0 = Date.now();
const elapsed = () => Math.round((Date.now() - t0) / 100) / 10;
const emit = (obj) => process.stdout.write(`${JSON.stringify({ t: elapsed(), ...obj })}\n`);
const steps = {};
const step = (name, extra = {}) => {
  steps[name] = elapsed();
  emit({ step: name, ...extra });
};

const rows = (page) =>
  page.$$eval('#calls tr[data-call-id]', (trs) =>
    trs.map((tr) => ({ id: tr.dataset.callId, status: tr.dataset.status })),
  );
const rowCount = (page, n) =>
  page.waitForFunction(
    (n) => document.querySelectorAll('#calls tr[data-call-id]').length === n,
    n,
    { timeout: TIMEOUT, polling: 50 },
  );
const errorText = async (page) => (await page.textContent('#error'))?.trim() ?? '';

async function main() {
  const userDataDir = config.user_data_dir ?? mkdtempSync(join(tmpdir(), 'convoi-chromium-'));
  if (config.console_log) writeFileSync(config.console_log, '');
  const log = (line) => config.console_log && appendFileSync(config.console_log, `${elapsed()}s ${line}\n`);
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: config.chromium ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1100, height: 700 },
    timeout: TIMEOUT,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => log(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log(`pageerror: ${e.stack ?? e}`));
  const pkRequests = [];
  let signedInAs = 'sk';
  page.on('request', (r) => {
    if (signedInAs === 'pk' && r.url().includes('/api/v1/public/')) pkRequests.push(new URL(r.url()).pathname + new URL(r.url()).search);
  });
  const result = { steps };
  try {
    await page.goto(config.dashboard_url, { waitUntil: 'load' });
    await page.fill('#key', config.secret_key);
    await page.click('#sign-in');
    await page.waitForSelector('body[data-view="list"]');
    await rowCount(page, 20);
    result.first_page = await rows(page);
    result.load_more_shown = await page.isVisible('#load-more');
    await page.click('#load-more');
    await page.waitForSelector('#load-more', { state: 'hidden' });
    result.all_rows = await rows(page);
    step('load more', { rows: result.all_rows.length });

    await page.selectOption('#filter-status', 'active');
    await page.waitForFunction(
      () => [...document.querySelectorAll('#calls tr[data-call-id]')].length > 0 &&
        [...document.querySelectorAll('#calls tr[data-call-id]')].every((tr) => tr.dataset.status === 'active'),
      null,
      { timeout: TIMEOUT, polling: 50 },
    );
    result.active_rows = await rows(page);
    await page.selectOption('#filter-status', '');
    await page.selectOption('#filter-type', 'outbound_phone');
    await page.waitForFunction(
      (id) => {
        const trs = [...document.querySelectorAll('#calls tr[data-call-id]')];
        return trs.length > 0 && trs.every((tr) => tr.dataset.callId === id);
      },
      config.phone_call_id,
      { timeout: TIMEOUT, polling: 50 },
    );
    result.phone_rows = await rows(page);
    step('filters');

    // the API unreachable: said plainly, polling goes on, and the message goes once it answers
    const listUrl = (url) => url.pathname === '/api/v1/public/calls';
    await page.route(listUrl, (route) => route.abort('connectionrefused'));
    await page.waitForSelector('#error:not([hidden])');
    result.network_error = await errorText(page);
    await page.unroute(listUrl);
    await page.waitForSelector('#error', { state: 'hidden' });
    step('network error shown, then cleared');

    // a key the API refuses during a session (revoked, say): signed out, told why
    await page.evaluate((k) => sessionStorage.setItem('convoi.dashboard.key', k), config.unknown_key);
    await page.reload({ waitUntil: 'load' });
    await page.waitForSelector('body[data-view="signin"]');
    await page.waitForSelector('#error:not([hidden])');
    result.refused_error = await errorText(page);
    result.storage_after_refusal = await page.evaluate(() => Object.keys(sessionStorage));
    step('refused key signs out');

    // a publishable key: the limited view, one web call by id, phone calls refused
    signedInAs = 'pk';
    await page.fill('#key', config.publishable_key);
    await page.click('#sign-in');
    await page.waitForSelector('body[data-view="pk"]');
    result.pk_view_text = (await page.textContent('#pk-view')).replace(/\s+/g, ' ').trim();
    await page.screenshot({ path: config.pk_screenshot, fullPage: true });
    await page.fill('#watch-id', config.web_call_id);
    await page.click('#watch-form button');
    await page.waitForSelector(`#detail-view[data-call-id="${config.web_call_id}"][data-status="active"]`);
    result.pk_detail = {
      status: await page.getAttribute('#detail-view', 'data-status'),
      cost: await page.textContent('#d-cost'),
      limited_shown: await page.isVisible('#d-limited'),
      full_shown: await page.isVisible('#d-full'),
    };
    await page.click('#back');
    await page.waitForSelector('body[data-view="pk"]');
    await page.fill('#watch-id', config.phone_call_id);
    await page.click('#watch-form button');
    await page.waitForSelector('#error:not([hidden])');
    result.pk_phone_error = await errorText(page);
    result.pk_requests = pkRequests;
    step('publishable key');
    emit({ result });
  } catch (err) {
    if (config.failure_screenshot) {
      await page.screenshot({ path: config.failure_screenshot, fullPage: true }).catch(() => {});
    }
    emit({ error: String(err?.stack ?? err), steps, page_error: await errorText(page).catch(() => null) });
    process.exitCode = 1;
  } finally {
    await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

await main();
