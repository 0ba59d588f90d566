// The dashboard's first load, measured in a real browser (the system's chromium, through
// playwright-core) against a running `warden up`: how long from the start of navigation until
// the overview is populated — the agents table has rows and the live feed shows the latest
// records — over several cold loads (a new browser context each: no cache, no storage).
//
// Run by scripts/bench-control-plane (which starts Warden on a big journal), or by hand:
//   WARDEN_DASHBOARD_URL=http://127.0.0.1:7412/ WARDEN_OPERATOR_TOKEN=wdo_… node first-load.mjs
// Environment:
//   WARDEN_DASHBOARD_URL   the control plane's root (http://HOST:PORT/)
//   WARDEN_OPERATOR_TOKEN  an operator's token (any role)
//   WARDEN_CHROMIUM        the browser (default /usr/bin/chromium)
//   LOADS                  cold loads to measure (default 10)
// The operator is signed in the way a returning one is: the token is in the tab's
// sessionStorage before the page's scripts run. Prints one line per load, then p50 and max,
// then one JSON line. Exits 1 if a load did not populate the overview.

import { chromium } from 'playwright-core';

const LOAD_TIMEOUT = 120_000;

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`first-load.mjs: ${name} is not set (scripts/bench-control-plane sets it)`);
    process.exit(2);
  }
  return value;
}

const DASHBOARD = required('WARDEN_DASHBOARD_URL');
const TOKEN = required('WARDEN_OPERATOR_TOKEN');
const CHROMIUM = process.env.WARDEN_CHROMIUM || '/usr/bin/chromium';
const LOADS = Number.parseInt(process.env.LOADS || '10', 10);
if (!Number.isInteger(LOADS) || LOADS < 1) {
  console.error(`first-load.mjs: LOADS must be a positive number, not ${process.env.LOADS}`);
  process.exit(2);
}

// Runs in the page before its own scripts: signs in, and notes (in ms since navigation start)
// when each overview panel first has content, and the frame after both the agents table and
// the feed have rows — the overview as the operator sees it.
function probe({ token, origin }) {
  if (location.origin !== origin) return;
  sessionStorage.setItem('warden.operator-token', token);
  const seen = {};
  window.__firstLoad = seen;
  const marks = {
    agents: '#agents-table tbody tr',
    feed: '#feed-table tbody tr',
    alerts: '#recent-alerts table, #recent-alerts .empty',
    approvals: '#pending table, #pending .empty',
    error: '#view .error, #banner:not([hidden])',
  };
  const look = () => {
    for (const [name, selector] of Object.entries(marks)) {
      if (seen[name] === undefined && document.querySelector(selector)) seen[name] = performance.now();
    }
    if (seen.agents !== undefined && seen.feed !== undefined && seen.overview === undefined) {
      seen.overview = null;
      requestAnimationFrame(() => { seen.overview = performance.now(); });
    }
  };
  new MutationObserver(look).observe(document, { childList: true, subtree: true, attributes: true });
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)];
}

const ms = (v) => (typeof v === 'number' ? `${v.toFixed(0)} ms` : '—');

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu'],
});
const loads = [];
let failed = 0;
try {
  const origin = new URL(DASHBOARD).origin;
  for (let i = 1; i <= LOADS; i += 1) {
    const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    await context.addInitScript(probe, { token: TOKEN, origin });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    try {
      await page.goto(DASHBOARD, { waitUntil: 'load', timeout: LOAD_TIMEOUT });
      await page.waitForFunction(
        () => window.__firstLoad && (typeof window.__firstLoad.overview === 'number'
          || window.__firstLoad.error !== undefined),
        null,
        { timeout: LOAD_TIMEOUT, polling: 50 },
      );
      const result = await page.evaluate(() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const api = performance.getEntriesByType('resource')
          .filter((r) => r.name.includes('/api/v1/'))
          .map((r) => ({ route: new URL(r.name).pathname.replace('/api/v1', ''), ms: r.duration }));
        const problem = document.querySelector('#view .error, #banner:not([hidden])');
        return {
          marks: window.__firstLoad,
          dcl: nav.domContentLoadedEventEnd,
          load: nav.loadEventEnd,
          api,
          problem: problem ? problem.textContent : null,
        };
      });
      if (result.problem || typeof result.marks.overview !== 'number') {
        throw new Error(`the overview shows an error: ${result.problem}`);
      }
      const slowest = result.api.sort((a, b) => b.ms - a.ms).slice(0, 3)
        .map((r) => `${r.route} ${ms(r.ms)}`).join(', ');
      console.log(`load ${i}: overview ${ms(result.marks.overview)} (agents ${ms(result.marks.agents)}, `
        + `feed ${ms(result.marks.feed)}, alerts ${ms(result.marks.alerts)}, `
        + `approvals ${ms(result.marks.approvals)}); DOMContentLoaded ${ms(result.dcl)}, `
        + `load ${ms(result.load)}; ${result.api.length} API calls, slowest: ${slowest}`);
      loads.push(result);
    } catch (err) {
      failed += 1;
      console.log(`load ${i}: FAILED: ${err.message}${errors.length ? ` (page errors: ${errors.join('; ')})` : ''}`);
    } finally {
      await context.close();
    }
  }
} finally {
  await browser.close();
}

if (loads.length) {
  const pick = (f) => loads.map(f);
  const round = (v) => Math.round(v * 10) / 10;
  const summary = {
    bench: 'dashboard_first_load',
    loads: loads.length,
    failed,
    overview_p50_ms: round(percentile(pick((l) => l.marks.overview), 0.5)),
    overview_max_ms: round(Math.max(...pick((l) => l.marks.overview))),
    dom_content_loaded_p50_ms: round(percentile(pick((l) => l.dcl), 0.5)),
    dom_content_loaded_max_ms: round(Math.max(...pick((l) => l.dcl))),
    load_p50_ms: round(percentile(pick((l) => l.load), 0.5)),
    load_max_ms: round(Math.max(...pick((l) => l.load))),
  };
  const verdict = summary.overview_max_ms <= 1000 ? 'met' : 'MISSED';
  console.log(`\noverview populated: p50 ${ms(summary.overview_p50_ms)}, max ${ms(summary.overview_max_ms)} `
    + `over ${loads.length} cold loads (target ≤ 1000 ms: ${verdict}); `
    + `DOMContentLoaded p50 ${ms(summary.dom_content_loaded_p50_ms)}, max ${ms(summary.dom_content_loaded_max_ms)}; `
    + `load p50 ${ms(summary.load_p50_ms)}, max ${ms(summary.load_max_ms)}`);
  console.log(JSON.stringify(summary));
}
process.exit(failed || !loads.length ? 1 : 0);
