#!/usr/bin/env node
/**
 * The calls dashboard watching a real call: headless Chromium (Debian's, via playwright-core)
 * opens /dashboard signed in with a secret key, then places a web call from /demo in a second
 * tab (publishable key, fake microphone). The dashboard's list must show the call active while
 * it runs and completed after the hang-up, without a reload; the call's page must show the
 * transcript and the charts. Screenshots of both views are kept.
 *
 *   node web/e2e/dashboard-call.mjs config.json
 *
 * config.json: {dashboard_url, demo_url, secret_key, publishable_key, agent_id,
 *               participant_name, wav, greeting, caller_contains, reply, list_screenshot,
 *               call_screenshot, chromium?, user_data_dir?, console_log?, failure_screenshot?,
 *               timeout_ms?}
 *
 * Every wait is on page state (data-* attributes), never on time. Progress goes to stdout as
 * JSON lines {"step", "t"}; the last line is {"result": {...}} or {"error": "..."}; exit 0 when
 * the whole flow passed. The demo page's part is the same as web/e2e/browser-call.mjs: join with
 * the microphone off, turn it on after the greeting (the WAV plays once).
 */
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const TIMEOUT = config.timeout_ms ?? 120_000;
const t0 = Date.now();
const elapsed = () => Math.round((Date.now() - t0) / 100) / 10;
const emit = (obj) => process.stdout.write(`${JSON.stringify({ t: elapsed(), ...obj })}\n`);
const steps = {};
let stopping = false;
const step = (name, extra = {}) => {
  steps[name] = elapsed();
  emit({ step: name, ...extra });
};

function chromiumArgs() {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${config.wav}%noloop`,
    '--autoplay-policy=no-user-gesture-required',
    '--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
  ];
}

async function waitForDemoLine(page, role, index, contains) {
  await page.waitForFunction(
    ({ role, index, contains }) => {
      const li = [...document.querySelectorAll(`#transcript li[data-role="${role}"]`)][index];
      return (
        li !== undefined &&
        li.dataset.final === 'true' &&
        (li.querySelector('.text')?.textContent ?? '').includes(contains)
      );
    },
    { role, index, contains },
    { timeout: TIMEOUT, polling: 100 },
  );
}

/** The dashboard's row of ``callId`` reaches ``status`` (the page polls; we only watch). */
async function waitForRow(dash, callId, status) {
  await dash.waitForSelector(`#calls tr[data-call-id="${callId}"][data-status="${status}"]`);
  return dash.$eval(`#calls tr[data-call-id="${callId}"]`, (tr) =>
    [...tr.querySelectorAll('td')].map((td) => td.textContent.trim()),
  );
}

/** Make the page's tab hidden (or visible again) as far as the page can tell. */
async function setHidden(page, hidden) {
  await page.evaluate((hidden) => {
    Object.defineProperty(document, 'visibilityState', {
      configurable: true,
      get: () => (hidden ? 'hidden' : 'visible'),
    });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

/** What the call's page shows: transcript lines, chart marks with their data, the timeline. */
async function detail(dash) {
  return dash.evaluate(() => {
    const marks = (id) =>
      [...document.querySelectorAll(`#${id} svg rect.bar[data-value]`)].map((r) => ({
        label: r.dataset.label,
        series: r.dataset.series ?? null,
        value: Number(r.dataset.value),
        width: Number(r.getAttribute('width')),
        height: Number(r.getAttribute('height')),
      }));
    return {
      status: document.querySelector('#detail-view')?.dataset.status,
      report: document.querySelector('#detail-view')?.dataset.report,
      transcript: [...document.querySelectorAll('#d-transcript li')].map((li) => ({
        role: li.dataset.role,
        member: li.dataset.member,
        speaker: li.querySelector('.who')?.textContent ?? '',
        text: li.querySelector('.text')?.textContent ?? '',
      })),
      cost_by_component: marks('chart-cost-component'),
      cost_by_member: marks('chart-cost-member'),
      latency: marks('chart-latency'),
      latency_summary: document.querySelector('#latency-summary')?.textContent ?? '',
      timeline: [...document.querySelectorAll('#timeline li')].map((li) => ({
        kind: li.dataset.kind,
        text: li.textContent.trim(),
        delivery: li.querySelector('.delivery')?.dataset.status ?? null,
      })),
      cost: document.querySelector('#d-cost')?.textContent ?? '',
      live: document.querySelector('#detail-live')?.dataset.state,
      error_text: document.querySelector('#error')?.textContent?.trim() ?? '',
    };
  });
}

async function main() {
  const userDataDir = config.user_data_dir ?? mkdtempSync(join(tmpdir(), 'convoi-chromium-'));
  mkdirSync(userDataDir, { recursive: true });
  const consoleLog = config.console_log;
  if (consoleLog) writeFileSync(consoleLog, '');
  const log = (line) => consoleLog && appendFileSync(consoleLog, `${elapsed()}s ${line}\n`);
  let context = null;
  const cleanup = async () => {
    await context?.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  };
  for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130], ['SIGHUP', 129]]) {
    process.once(signal, () => {
      stopping = true;
      emit({ error: `stopped by ${signal}`, steps });
      void cleanup().finally(() => process.exit(code));
    });
  }
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: config.chromium ?? '/usr/bin/chromium',
    headless: true,
    args: chromiumArgs(),
    ignoreDefaultArgs: ['--mute-audio'],
    viewport: { width: 1100, height: 700 },
    timeout: TIMEOUT,
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  let dash;
  let demo;
  try {
    step('browser started', { version: context.browser()?.version() ?? 'chromium' });
    await context.grantPermissions(['microphone'], { origin: new URL(config.demo_url).origin });
    dash = context.pages()[0] ?? (await context.newPage());
    for (const [name, page] of [['dashboard', dash]]) {
      page.on('console', (m) => log(`${name} console.${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => log(`${name} pageerror: ${e.stack ?? e}`));
    }
    dash.setDefaultTimeout(TIMEOUT);
    const requests = [];
    const listRequests = [];
    dash.on('request', (r) => {
      requests.push(r.url());
      if (new URL(r.url()).pathname === '/api/v1/public/calls') listRequests.push(elapsed());
    });

    // -- sign in; the list is live before the call exists ---------------------------------------
    const resp = await dash.goto(config.dashboard_url, { waitUntil: 'load' });
    if (!resp || resp.status() !== 200) throw new Error(`GET ${config.dashboard_url}: HTTP ${resp?.status()}`);
    await dash.fill('#key', 'sk_live_not_a_key_of_this_account');
    await dash.click('#sign-in');
    await dash.waitForSelector('#error:not([hidden])');
    const badKeyError = (await dash.textContent('#error')).trim();
    step('a bad key is refused', { error: badKeyError });
    await dash.fill('#key', config.secret_key);
    await dash.click('#sign-in');
    await dash.waitForSelector('body[data-view="list"]');
    await dash.waitForSelector('#list-live[data-state="live"]');
    await dash.evaluate(() => {
      window.__convoiNoReload = 'same page'; // gone if the page were reloaded
    });
    step('dashboard signed in', { rows: Number(await dash.getAttribute('#calls', 'data-count')) });

    // -- place a web call from the demo page ----------------------------------------------------
    demo = await context.newPage();
    demo.on('console', (m) => log(`demo console.${m.type()}: ${m.text()}`));
    demo.on('pageerror', (e) => log(`demo pageerror: ${e.stack ?? e}`));
    demo.setDefaultTimeout(TIMEOUT);
    await demo.goto(config.demo_url, { waitUntil: 'load' });
    await demo.fill('#api-key', config.publishable_key);
    await demo.fill('#agent-id', config.agent_id);
    await demo.fill('#participant-name', config.participant_name);
    await demo.uncheck('#mic-on-join');
    await demo.click('#start');
    await demo.waitForSelector('body[data-state="connected"]');
    const callId = (await demo.textContent('#call-id')).trim();
    step('demo joined the call', { call_id: callId });
    await demo.waitForSelector('#call-status[data-status="active"]');
    step('demo shows the call active');

    // -- the dashboard shows it active, live ----------------------------------------------------
    await dash.bringToFront();
    const activeRow = await waitForRow(dash, callId, 'active');
    await dash.screenshot({ path: config.list_screenshot, fullPage: true });
    step('dashboard list shows the call active', { row: activeRow });
    const visibility = { dashboard_while_demo_in_front: null };

    // -- the conversation, on the demo page; the dashboard tab is hidden meanwhile -------------
    await demo.bringToFront();
    visibility.dashboard_while_demo_in_front = await dash.evaluate(() => document.visibilityState);
    // headless Chromium keeps background tabs "visible": hide the dashboard the way a browser
    // does (visibilityState + visibilitychange) to see its polling pause
    await setHidden(dash, true);
    await dash.waitForSelector('#list-live[data-state="paused"]');
    const pausedAt = listRequests.length;
    await waitForDemoLine(demo, 'agent', 0, config.greeting);
    step('greeting shown');
    await demo.click('#mic-toggle');
    await demo.waitForSelector('#mic-state[data-state="heard"]');
    await waitForDemoLine(demo, 'caller', 0, config.caller_contains ?? '');
    await waitForDemoLine(demo, 'agent', 1, config.reply);
    step('reply shown');
    await demo.click('#hangup');
    await demo.waitForSelector('#call-status[data-status="completed"]');
    step('demo hung up: completed');

    // -- the dashboard follows without a reload -------------------------------------------------
    const whileHidden = listRequests.length - pausedAt; // over the whole conversation
    await dash.bringToFront();
    await setHidden(dash, false);
    const completedRow = await waitForRow(dash, callId, 'completed');
    const noReload = await dash.evaluate(() => window.__convoiNoReload ?? null);
    step('dashboard list shows the call completed', { row: completedRow, no_reload: noReload });
    const listRows = Number(await dash.getAttribute('#calls', 'data-count'));

    await dash.click(`#calls tr[data-call-id="${callId}"] a`);
    await dash.waitForSelector(`#detail-view[data-call-id="${callId}"][data-report="ready"]`);
    await dash.waitForFunction(
      () => document.querySelectorAll('#d-transcript li').length >= 3,
      null,
      { timeout: TIMEOUT, polling: 100 },
    );
    await dash.waitForSelector('#detail-live[data-state="done"]'); // deliveries settled too
    await dash.screenshot({ path: config.call_screenshot, fullPage: true });
    const shown = await detail(dash);
    step('call page shown', { transcript: shown.transcript });

    emit({
      result: {
        call_id: callId,
        bad_key_error: badKeyError,
        active_row: activeRow,
        completed_row: completedRow,
        no_reload: noReload,
        list_rows: listRows,
        visibility,
        list_requests_while_hidden: whileHidden,
        list_requests: listRequests.length,
        detail: shown,
        key_in_urls: requests.filter((u) => u.includes(config.secret_key)).length,
        session_storage_keys: await dash.evaluate(() => Object.keys(sessionStorage)),
        page_url: dash.url(),
        steps,
      },
    });
  } catch (err) {
    if (stopping) return;
    const extra = {};
    if (dash) {
      extra.dashboard_error = (await dash.textContent('#error').catch(() => null))?.trim();
      extra.dashboard_view = await dash.getAttribute('body', 'data-view').catch(() => null);
      extra.rows = await dash
        .$$eval('#calls tr[data-call-id]', (rows) => rows.map((r) => [r.dataset.callId, r.dataset.status]))
        .catch(() => null);
      if (config.failure_screenshot) {
        await dash.screenshot({ path: config.failure_screenshot, fullPage: true }).catch(() => {});
      }
    }
    if (demo) {
      extra.demo_state = await demo.getAttribute('body', 'data-state').catch(() => null);
      extra.demo_error = (await demo.textContent('#error').catch(() => null))?.trim();
    }
    emit({ error: String(err?.stack ?? err), steps, ...extra });
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

await main();
