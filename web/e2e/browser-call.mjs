#!/usr/bin/env node
/**
 * A real browser on a web call: headless Chromium (Debian's, via playwright-core) opens the demo
 * page served by convoi-api, creates a web call with the form, joins it, listens to the greeting,
 * speaks through a fake microphone fed from a WAV file, sees the agent's reply, takes a
 * screenshot, hangs up and waits for the call to be completed.
 *
 *   node web/e2e/browser-call.mjs config.json
 *
 * config.json: {page_url, api_key, agent_id, participant_name, wav, screenshot, greeting, reply,
 *               caller_contains?, chromium?, user_data_dir?, console_log?, failure_screenshot?,
 *               timeout_ms?}
 *
 * Every wait is on page state (data-* attributes the page sets), never on time. Progress goes to
 * stdout as JSON lines {"step", "t"}; the last line is {"result": {...}} or {"error": "..."}.
 * Exit code 0 when the whole flow passed.
 *
 * The microphone: Chromium starts reading the WAV when getUserMedia opens the fake device, once
 * (`%noloop`). The page joins with the microphone off and this script turns it on only after the
 * greeting has been spoken, like a person answering; the WAV starts with silence so that the
 * agent is subscribed (and its STT stream open) before the words come.
 */
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const TIMEOUT = config.timeout_ms ?? 120_000;
const t0 = Date.now();
const elapsed = () => Math.round((Date.now() - t0) / 100) / 10;
const emit = (obj) => process.stdout.write(`${JSON.stringify({ t: elapsed(), ...obj })}\n`);
const steps = {};
let stopping = false; // a signal arrived: the browser is being closed, the run is over
const step = (name, extra = {}) => {
  steps[name] = elapsed();
  emit({ step: name, ...extra });
};

/** The off-network flags this machine needs, plus the fake media devices. */
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
    // WebRTC to livekit-server on 127.0.0.1: plain host candidates, loopback allowed
    '--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
  ];
}

async function transcript(page) {
  return page.$$eval('#transcript li', (items) =>
    items.map((li) => ({
      role: li.dataset.role,
      final: li.dataset.final === 'true',
      text: li.querySelector('.text')?.textContent ?? '',
    })),
  );
}

async function waitForLine(page, role, index, contains) {
  await page.waitForFunction(
    ({ role, index, contains }) => {
      const lines = [...document.querySelectorAll(`#transcript li[data-role="${role}"]`)];
      const li = lines[index];
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

async function main() {
  // a fresh profile each run (Playwright passes it as --user-data-dir); the test names it so that
  // it can tell this run's Chromium processes from any other
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
    ignoreDefaultArgs: ['--mute-audio'], // the agent's audio really plays (to a null sink here)
    viewport: { width: 820, height: 600 }, // fullPage screenshots grow to fit
    timeout: TIMEOUT,
    handleSIGINT: false, // ours above: close the browser, remove the profile, then exit
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  let page;
  try {
    step('browser started', { version: context.browser()?.version() ?? 'chromium' });
    await context.grantPermissions(['microphone'], { origin: new URL(config.page_url).origin });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => log(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => log(`pageerror: ${e.stack ?? e}`));
    page.on('requestfailed', (r) => log(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
    page.setDefaultTimeout(TIMEOUT);

    const resp = await page.goto(config.page_url, { waitUntil: 'load' });
    if (!resp || resp.status() !== 200) {
      throw new Error(`GET ${config.page_url}: HTTP ${resp?.status()}: ${await resp?.text()}`);
    }
    step('page loaded');

    await page.fill('#api-key', config.api_key);
    await page.fill('#agent-id', config.agent_id);
    await page.fill('#participant-name', config.participant_name);
    await page.uncheck('#mic-on-join'); // microphone on after the greeting, see the docstring
    await page.click('#start');
    await page.waitForSelector('body[data-state="connected"]');
    const callId = await page.textContent('#call-id');
    step('joined the room', { call_id: callId });

    await page.waitForSelector('#agent-audio[data-state="playing"]');
    step('agent audio received', { agent_audio: await page.textContent('#agent-audio') });

    await waitForLine(page, 'agent', 0, config.greeting);
    step('greeting shown', { transcript: await transcript(page) });

    await page.click('#mic-toggle');
    await page.waitForSelector('#mic-state[data-state="heard"]');
    step('microphone on, the agent subscribed');

    await waitForLine(page, 'caller', 0, config.caller_contains ?? '');
    step('caller line shown', { transcript: await transcript(page) });
    await waitForLine(page, 'agent', 1, config.reply);
    step('reply shown', { transcript: await transcript(page) });

    await page.waitForSelector('#call-status[data-status="active"]');
    await page.screenshot({ path: config.screenshot, fullPage: true });
    step('screenshot', { path: config.screenshot });
    const midCall = {
      status: await page.textContent('#call-status'),
      duration: await page.textContent('#call-duration'),
      cost: await page.textContent('#call-cost'),
      agent_audio: await page.textContent('#agent-audio'),
      agent_audio_bytes: Number(await page.getAttribute('#agent-audio', 'data-bytes')),
      agent_state: await page.textContent('#agent-state'),
    };

    await page.click('#hangup');
    await page.waitForSelector('body[data-state="ended"], body[data-state="left"]');
    step('hung up');
    const terminal = '#call-status:is([data-status="completed"], [data-status="failed"], ' +
      '[data-status="busy"], [data-status="no_answer"], [data-status="canceled"])';
    await page.waitForSelector(terminal);
    step('call ended');

    emit({
      result: {
        call_id: callId,
        mid_call: midCall,
        transcript: await transcript(page),
        status: await page.getAttribute('#call-status', 'data-status'),
        ended_reason: await page.getAttribute('#ended-reason', 'data-reason'),
        duration: await page.textContent('#call-duration'),
        cost: await page.textContent('#call-cost'),
        page_state: await page.getAttribute('body', 'data-state'),
        error_text: (await page.textContent('#error'))?.trim() ?? '',
        steps,
      },
    });
  } catch (err) {
    if (stopping) return;
    let detail = {};
    if (page) {
      detail = await transcript(page).then((t) => ({ transcript: t })).catch(() => ({}));
      detail.page_error = (await page.textContent('#error').catch(() => null))?.trim();
      detail.page_state = await page.getAttribute('body', 'data-state').catch(() => null);
      if (config.failure_screenshot) {
        await page.screenshot({ path: config.failure_screenshot, fullPage: true }).catch(() => {});
      }
    }
    emit({ error: String(err?.stack ?? err), steps, ...detail });
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

await main();
