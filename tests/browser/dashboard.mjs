// Drives Warden's dashboard in a real browser (the system's chromium, through playwright-core)
// against a running `warden up`, while real agents act through its MCP gateway.
//
// Run by crates/warden/tests/browser.rs, which starts Warden and sets:
//   WARDEN_DASHBOARD_URL  the control plane's root (http://HOST:PORT/)
//   WARDEN_ADMIN_TOKEN    an admin operator's token (wdo_…)
//   WARDEN_VIEWER_TOKEN   a viewer operator's token
//   WARDEN_MCP_URL        the agents' MCP endpoint
//   WARDEN_AGENT_TOKEN    the token of agent "tester" (may do anything with "files"; files/echo
//                         needs a human's approval)
//   WARDEN_ROGUE_TOKEN    the token of agent "mallory" (the example policies only)
//   WARDEN_CHROMIUM       the browser (default /usr/bin/chromium)
//   WARDEN_SCREENSHOTS    a folder: if set, screenshots of every page are written there
// Exits 0 when every check passed; prints one line per check.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';

const STEP_TIMEOUT = 20_000;
const CALL_TIMEOUT = 60_000;

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`dashboard.mjs: ${name} is not set (crates/warden/tests/browser.rs sets it)`);
    process.exit(2);
  }
  return value;
}

const DASHBOARD = required('WARDEN_DASHBOARD_URL');
const ADMIN = required('WARDEN_ADMIN_TOKEN');
const VIEWER = required('WARDEN_VIEWER_TOKEN');
const MCP_URL = required('WARDEN_MCP_URL');
const TESTER = required('WARDEN_AGENT_TOKEN');
const MALLORY = required('WARDEN_ROGUE_TOKEN');
const CHROMIUM = process.env.WARDEN_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.WARDEN_SCREENSHOTS || '';

class CheckFailed extends Error {}

function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

// === An agent: MCP over Streamable HTTP, with fetch ==============================================

class Agent {
  constructor(name, token) {
    this.name = name;
    this.token = token;
    this.session = null;
    this.nextId = 1;
  }

  async post(message) {
    const headers = {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization: `Bearer ${this.token}`,
    };
    if (this.session) headers['mcp-session-id'] = this.session;
    return fetch(MCP_URL, {
      method: 'POST',
      headers,
      body: JSON.stringify(message),
      signal: AbortSignal.timeout(CALL_TIMEOUT),
    });
  }

  /** A request; resolves to the JSON-RPC response (from JSON or from an SSE stream). */
  async request(method, params) {
    const id = this.nextId++;
    const response = await this.post({ jsonrpc: '2.0', id, method, params });
    if (method === 'initialize') this.session = response.headers.get('mcp-session-id');
    const text = await response.text();
    const type = response.headers.get('content-type') || '';
    let messages;
    if (type.includes('text/event-stream')) {
      messages = text.replace(/\r\n/g, '\n').split('\n\n').map((event) => event.split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).replace(/^ /, ''))
        .join('\n')).filter(Boolean).map((data) => JSON.parse(data));
    } else {
      check(text, `${this.name}: ${method} got HTTP ${response.status} with no body`);
      messages = [JSON.parse(text)];
    }
    const answer = messages.find((m) => m.id === id && !m.method);
    check(answer, `${this.name}: no answer to ${method} (HTTP ${response.status}): ${text.slice(0, 300)}`);
    return answer;
  }

  async open() {
    const answer = await this.request('initialize', {
      protocolVersion: '2025-06-18',
      capabilities: {},
      clientInfo: { name: 'warden-browser-test', version: '1' },
    });
    check(answer.result && this.session, `${this.name} could not open a session: ${JSON.stringify(answer)}`);
    await this.post({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }

  call(tool, args) {
    return this.request('tools/call', { name: tool, arguments: args });
  }
}

function resultText(answer) {
  const content = answer && answer.result && answer.result.content;
  return Array.isArray(content) ? content.map((c) => c.text || '').join('\n') : JSON.stringify(answer);
}

function decisionOf(answer) {
  const meta = answer && answer.result && answer.result._meta;
  return meta && meta['warden/decision'] ? meta['warden/decision'].effect : null;
}

async function operatorGet(token, route) {
  const response = await fetch(new URL(`api/v1${route}`, DASHBOARD), {
    headers: { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(STEP_TIMEOUT),
  });
  check(response.ok, `GET ${route}: HTTP ${response.status}`);
  return response.json();
}

// === The browser ================================================================================

const problems = [];

async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (message) => {
    const text = message.text();
    // Refused API calls (401, 403) are logged by the browser itself; they are tested for.
    if (message.type() === 'error' && !/Failed to load resource/.test(text)) {
      problems.push(`console error: ${text}`);
    }
  });
  return page;
}

async function screenshot(page, name) {
  if (!SHOTS) return;
  // Fresh rows flash for a moment: let the flash end so pictures are stable.
  await page.waitForFunction(() => document.getAnimations().length === 0).catch(() => {});
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
  console.log(`   screenshot ${name}.png`);
}

async function signIn(page, token) {
  await page.goto(DASHBOARD);
  await page.locator('#signin-token').fill(token);
  await page.locator('#signin-submit').click();
}

const results = [];

async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    results.push([name, true]);
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    results.push([name, false]);
    console.log(`FAIL ${name}: ${err instanceof CheckFailed ? err.message : err.stack || err}`);
    throw err;
  }
}

async function main() {
  if (SHOTS) await mkdir(SHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu'],
  });
  try {
    await run(browser);
  } finally {
    await browser.close();
  }
}

async function run(browser) {
  const page = await newPage(browser);
  const tester = new Agent('tester', TESTER);
  const mallory = new Agent('mallory', MALLORY);

  await step('the page is served with a strict content security policy', async () => {
    const response = await page.goto(DASHBOARD);
    const csp = response.headers()['content-security-policy'] || '';
    check(csp.includes("default-src 'self'") && csp.includes("frame-ancestors 'none'") && !csp.includes('unsafe'),
      `content-security-policy: ${csp}`);
    await page.locator('#signin-token').waitFor();
  });

  await step('a bad token is refused with the server\'s message', async () => {
    await signIn(page, 'wdo_this-is-not-a-token');
    const error = page.locator('#signin-error');
    await error.waitFor();
    const text = (await error.textContent()).trim();
    check(text.length > 0, 'the sign-in error is empty');
    check(await page.locator('#app').isHidden(), 'the dashboard was shown for a bad token');
    console.log(`   said: ${text}`);
  });

  await step('an admin signs in and the live stream connects', async () => {
    await signIn(page, ADMIN);
    await page.locator('#who').filter({ hasText: 'admin' }).waitFor();
    await page.locator('#live[data-state="live"]').waitFor();
    await page.locator('#agents-table, #agents .empty').first().waitFor();
  });

  await step('the live feed shows an agent\'s action without a reload', async () => {
    await page.evaluate(() => { window.wardenTestMarker = 'no reload'; });
    const row = page.locator('#feed-table tr[data-kind="decision"]', { hasText: 'files/read_file' })
      .filter({ hasText: 'tester' });
    check(await row.count() === 0, 'the feed shows the call before it was made');
    await tester.open();
    const answer = await tester.call('files__read_file', { path: 'notes.txt' });
    check(resultText(answer).includes('the notes'), `the call failed: ${JSON.stringify(answer)}`);
    await row.first().waitFor();
    check(await page.evaluate(() => window.wardenTestMarker) === 'no reload', 'the page was reloaded');
  });

  let alertSeq = null;
  await step('an alert appears live and its page shows the evidence', async () => {
    await mallory.open();
    for (let i = 0; i < 5; i++) {
      const answer = await mallory.call('files__read_file', { path: 'secrets/key.env' });
      check(decisionOf(answer) === 'deny', `mallory's read of secrets/ was not denied: ${JSON.stringify(answer)}`);
    }
    const alert = page.locator('#alerts-table tr', { hasText: 'denial_burst' }).first();
    await alert.waitFor();
    alertSeq = await alert.getAttribute('data-seq');
    await alert.locator('a', { hasText: 'denial_burst' }).click();
    await page.waitForURL(`**/#/alerts/${alertSeq}`);
    await page.locator('#alert-summary').waitFor();
    await page.locator('#evidence-table tr[data-kind="decision"]').first().waitFor();
    const evidence = await page.locator('#evidence-table tr[data-kind="decision"]').count();
    check(evidence >= 5, `the alert shows ${evidence} evidence records, wanted at least 5`);
    check(await page.locator('#evidence-table', { hasText: 'secrets/key.env' }).count() > 0,
      'the evidence does not show the refused reads');
    await screenshot(page, 'alert');
  });

  await step('approving a held call releases it to the agent with the tool\'s result', async () => {
    await page.locator('nav a[data-nav="approvals"]').click();
    await page.locator('#approvals').waitFor();
    let settled = false;
    const held = tester.call('files__echo', { note: 'approved-by-a-human' }).finally(() => { settled = true; });
    const card = page.locator('article.approval', { hasText: 'files/echo' });
    await card.waitFor();
    check(!settled, 'the call decided ask was not held');
    await page.locator('#approvals-count').filter({ hasText: /^[1-9]/ }).waitFor();
    await screenshot(page, 'approvals');
    await card.locator('input.reason').fill('expected by the browser test');
    await card.locator('button[data-answer="approve"]').click();
    await card.locator('.notice', { hasText: 'Approved' }).waitFor();
    const answer = await held;
    check(decisionOf(answer) === null, `the approved call was refused: ${JSON.stringify(answer)}`);
    check(resultText(answer).includes('approved-by-a-human'), `the tool's result is missing: ${JSON.stringify(answer)}`);
  });

  await step('the journal explorer verifies the chain and filters on the server', async () => {
    await page.locator('nav a[data-nav="journal"]').click();
    await page.locator('#verify-status', { hasText: 'intact' }).waitFor();
    await page.locator('#journal-table tbody tr').first().waitFor();
    await screenshot(page, 'journal');
    await page.locator('#filter-agent').fill('mallory');
    await page.locator('#filter-kind').selectOption('decision');
    await page.locator('#journal-filters button[type="submit"]').click();
    await page.waitForURL(/agent=mallory/);
    // The page is rebuilt for the new filter: wait for the new table's rows, not the old one's
    // (which may still be in the page, or already gone while the new page loads).
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#journal-table tbody tr[data-kind]')];
      return rows.length >= 5 && rows.every((r) => r.querySelector('td:nth-child(3)')?.textContent === 'mallory');
    });
    const kinds = await page.locator('#journal-table tbody tr[data-kind]').evaluateAll(
      (rows) => rows.map((r) => r.dataset.kind));
    check(kinds.length >= 5 && kinds.every((k) => k === 'decision'), `filtered rows: ${kinds}`);
    const agents = await page.locator('#journal-table tbody tr[data-kind] td:nth-child(3)').allTextContents();
    check(agents.every((a) => a === 'mallory'), `rows of other agents: ${agents}`);
  });

  await step('the policy view lists the policies in force', async () => {
    await page.locator('nav a[data-nav="policies"]').click();
    await page.locator('[data-policy="tester-all"]').waitFor();
    await page.locator('[data-policy="echo-needs-approval"]').waitFor();
    await screenshot(page, 'policies');
  });

  await step('a viewer cannot quarantine: the refusal is shown and nothing changes', async () => {
    const viewerPage = await newPage(browser);
    await signIn(viewerPage, VIEWER);
    await viewerPage.locator('#who').filter({ hasText: 'viewer' }).waitFor();
    await viewerPage.goto(`${DASHBOARD}#/agents/tester`);
    await viewerPage.locator('#contain-reason').fill('a viewer tries');
    await viewerPage.locator('#quarantine').click();
    const error = viewerPage.locator('#contain-result .error');
    await error.waitFor();
    const text = (await error.textContent()).trim();
    check(/admin/.test(text), `the refusal does not say what role is needed: ${text}`);
    console.log(`   said: ${text}`);
    const { quarantined } = await operatorGet(ADMIN, '/quarantine');
    check(!quarantined.some((q) => q.agent === 'tester'), 'a viewer quarantined tester');
    await viewerPage.context().close();
  });

  await step('an admin quarantines from the agent page: the agent\'s next call is refused', async () => {
    await page.goto(`${DASHBOARD}#/agents/tester`);
    await page.locator('#agent-state', { hasText: 'active' }).waitFor();
    await page.locator('#timeline-table tbody tr').first().waitFor();
    await page.locator('#contain-reason').fill('contained from the dashboard by the browser test');
    await page.locator('#quarantine').click();
    await page.locator('#contain-result .notice', { hasText: 'Quarantined' }).waitFor();
    await page.locator('#agent-state', { hasText: 'quarantined' }).waitFor();
    await page.locator('#timeline-table tr[data-kind="quarantined"]').first().waitFor();
    const answer = await tester.call('files__read_file', { path: 'notes.txt' });
    const said = JSON.stringify(answer);
    check(said.includes('quarantined') && said.includes('contained from the dashboard'),
      `the call after the quarantine was not refused for it: ${said}`);
    await screenshot(page, 'agent');
  });

  await step('the overview shows the agents, the feed, the alerts and the approvals', async () => {
    await page.locator('nav a[data-nav="overview"]').click();
    await page.locator('#agents-table tr[data-agent="tester"]', { hasText: 'quarantined' }).waitFor();
    await page.locator('#agents-table tr[data-agent="mallory"]').waitFor();
    await page.locator('#alerts-table tr', { hasText: 'denial_burst' }).first().waitFor();
    await page.locator('#feed-table tr[data-kind="quarantined"]').first().waitFor();
    await screenshot(page, 'overview');
  });

  await step('the page raised no script error and no policy violation', async () => {
    check(problems.length === 0, problems.join('\n'));
  });
}

try {
  await main();
} catch (err) {
  // A failing step printed why; anything else (the browser would not start) is said here.
  if (!results.some(([, ok]) => !ok)) {
    results.push(['start', false]);
    console.log(`FAIL ${err.stack || err}`);
  }
}
const failed = results.filter(([, ok]) => !ok).length;
const passed = results.length - failed;
console.log(`dashboard: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
