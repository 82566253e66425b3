// Drives ITAP's dashboard in headless Chromium for the end-to-end test.
//
//   node dashboard.mjs --url http://127.0.0.1:PORT/ --family Temperature \
//     --screenshot OUT.png [--timeout-ms 60000] [--chromium /usr/bin/chromium]
//     [--max-layout-shift 0.1]
//
// It opens the page at 1366x768, records the first contentful paint, waits for a
// closed alert row of the family, chooses it, checks that the explanation's largest family
// is that family, opens the alert's device view, waits for the score chart to be
// drawn, takes a full-page screenshot and prints ONE line of JSON on stdout:
//   {"ok":true,"first_contentful_paint_ms":…,"layout_shift":…,"alert_id":…,"family":…,"device":…,"screenshot":…}
// or {"ok":false,"error":"…"} with exit status 1. Console errors, uncaught page
// errors and a page that moves as data arrives (cumulative layout shift above 0.1
// before anything is clicked) fail the run. The DOM contract it relies on is in src/http/dashboard.html:
// data-testid = alert-row (data-alert-id, data-family, data-device), alert-explanation
// (data-state, data-alert-id), family-share (data-family), device-tile (data-device),
// device-view (data-device, data-state), score-chart.

import { chromium } from 'playwright-core';

function parseArgs(argv) {
  const opts = { timeoutMs: 60000, maxLayoutShift: 0.1, chromium: process.env.ITAP_TEST_CHROMIUM || '/usr/bin/chromium' };
  const names = { '--url': 'url', '--family': 'family', '--screenshot': 'screenshot', '--timeout-ms': 'timeoutMs', '--chromium': 'chromium', '--max-layout-shift': 'maxLayoutShift' };
  for (let i = 0; i < argv.length; i++) {
    const key = names[argv[i]];
    if (!key) throw new Error(`unknown argument ${JSON.stringify(argv[i])}; expected ${Object.keys(names).join(', ')}`);
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    opts[key] = argv[++i];
  }
  for (const k of ['url', 'family', 'screenshot']) if (!opts[k]) throw new Error(`--${k} is required`);
  opts.timeoutMs = Number(opts.timeoutMs);
  opts.maxLayoutShift = Number(opts.maxLayoutShift);
  if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) throw new Error('--timeout-ms must be a positive number of milliseconds');
  return opts;
}

// A CSS string literal for an attribute selector (ids come from the data).
const cssString = (s) => '"' + String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\a ') + '"';

function fail(message) {
  process.stdout.write(JSON.stringify({ ok: false, error: message }) + '\n');
  process.exit(1);
}

/** What of each device tile is cut off: its name, its state and score (on one
 * line, inside the tile) or its health. */
async function tileProblems(page) {
  return page.$$eval('[data-testid="device-tile"]', (tiles) => {
    const bad = [];
    for (const t of tiles) {
      const box = t.getBoundingClientRect();
      const part = (sel) => t.querySelector(sel).getBoundingClientRect();
      for (const [name, sel] of [['name', '.tile-id'], ['state and score', '.tile-row'], ['health', '.tile-health']]) {
        const r = part(sel);
        if (r.height < 8 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5) {
          bad.push(`${t.dataset.device}: its ${name} is at ${Math.round(r.top - box.top)}–${Math.round(r.bottom - box.top)} px of a ${Math.round(box.height)} px tile`);
        }
      }
      // Only a long device name may be shortened (with an ellipsis).
      for (const [name, sel] of [['state', '.tile-state'], ['score', '.tile-score'], ['health', '.tile-health']]) {
        const el = t.querySelector(sel);
        if (el.scrollWidth > el.clientWidth + 0.5) bad.push(`${t.dataset.device}: its ${name} ${JSON.stringify(el.textContent)} is cut short`);
      }
      const state = part('.tile-state'), score = part('.tile-score');
      const size = parseFloat(getComputedStyle(t.querySelector('.tile-score')).fontSize);
      if (score.height > 1.6 * size || Math.abs(score.top - state.top) > 0.5 || score.right > box.right + 0.5 || score.left < state.right - 0.5) {
        bad.push(`${t.dataset.device}: its score ${JSON.stringify(t.querySelector('.tile-score').textContent)} does not sit whole beside the state`);
      }
    }
    return bad;
  });
}

async function main() {
  let opts;
  try { opts = parseArgs(process.argv.slice(2)); } catch (e) { fail(e.message); }
  const deadline = Date.now() + opts.timeoutMs;
  const left = () => Math.max(1000, deadline - Date.now());
  // A hung browser must not hang the test: give up a little after the budget.
  const guard = setTimeout(() => fail(`gave up after ${opts.timeoutMs} ms (browser did not answer)`), opts.timeoutMs + 30000);
  guard.unref();

  const problems = [];
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: opts.chromium,
      headless: true,
      args: ['--no-sandbox', '--disable-dev-shm-usage'],
      timeout: left(),
    });
    const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    // Layout shifts not caused by input (the page moving as data arrives),
    // summed as Chromium's cumulative layout shift.
    await context.addInitScript(() => {
      window.__itapShift = 0;
      window.__itapShifted = [];
      const name = (n) => (n && n.nodeType === 1
        ? `${n.tagName.toLowerCase()}${n.id ? `#${n.id}` : ''}${n.className && typeof n.className === 'string' ? `.${n.className.trim().split(/\s+/).join('.')}` : ''}`
        : String(n && n.nodeName));
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          if (e.hadRecentInput) continue;
          window.__itapShift += e.value;
          const what = (e.sources || []).map((s) => name(s.node)).join(', ');
          window.__itapShifted.push(`${e.value.toFixed(4)} at ${Math.round(e.startTime)} ms: ${what}`);
        }
      }).observe({ type: 'layout-shift', buffered: true });
    });
    const page = await context.newPage();
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      // A server without stored telemetry answers the readings route 404 (docs/api.md);
      // the page shows that, and Chromium logs the failed load. Nothing else is excused.
      const url = (msg.location() && msg.location().url) || '';
      if (/status of 404/.test(msg.text()) && /\/api\/devices\/[^/?]+\/readings(\?|$)/.test(url)) return;
      problems.push(`console error: ${msg.text()}${url ? ` (${url})` : ''}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));

    await page.goto(opts.url, { waitUntil: 'load', timeout: left() });
    const fcp = await page.waitForFunction(() => {
      const e = performance.getEntriesByType('paint').find((p) => p.name === 'first-contentful-paint');
      return e ? e.startTime : false;
    }, null, { timeout: Math.min(left(), 10000), polling: 100 }).then((h) => h.jsonValue(), () => null);
    if (fcp == null) throw new Error('no first-contentful-paint entry was recorded');
    // For a caller that starts the data once the page is up.
    process.stderr.write('page ready\n');

    // An alert row of the family.
    let row;
    try {
      row = await page.waitForFunction((family) => {
        // A closed alert: an open one may still grow and change its dominant
        // family between the list's poll and the explanation's fetch.
        const r = [...document.querySelectorAll('[data-testid="alert-row"]')]
          .find((el) => el.dataset.family === family && el.dataset.open === 'false');
        return r ? { id: r.dataset.alertId, device: r.dataset.device } : false;
      }, opts.family, { timeout: left(), polling: 200 }).then((h) => h.jsonValue());
    } catch (e) {
      const seen = await page.$$eval('[data-testid="alert-row"]', (rs) => rs.map((r) => r.dataset.family)).catch(() => []);
      const families = [...new Set(seen)].sort();
      const status = await page.$eval('#status', (el) => el.innerText).catch(() => '');
      throw new Error(`no closed alert row of family ${JSON.stringify(opts.family)} within ${opts.timeoutMs} ms; `
        + `${seen.length} rows seen, families: ${JSON.stringify(families)}; status line: ${JSON.stringify(status)}`);
    }
    if (!row.id) throw new Error('the alert row has no data-alert-id');
    // Data has been arriving since the page loaded; nothing was clicked yet.
    const shift = await page.evaluate(() => window.__itapShift);
    if (!(shift <= opts.maxLayoutShift)) {
      const shifted = await page.evaluate(() => window.__itapShifted.join('; '));
      throw new Error(`the page moved as data arrived: cumulative layout shift ${shift} (at most ${opts.maxLayoutShift} allowed): ${shifted}`);
    }

    await page.locator(`[data-testid="alert-row"][data-alert-id=${cssString(row.id)}]`).click({ timeout: left() });
    try {
      await page.waitForFunction(({ id, family }) => {
        const p = document.querySelector('[data-testid="alert-explanation"]');
        return !!p && p.dataset.state === 'ready' && p.dataset.alertId === id && p.textContent.includes(family);
      }, { id: row.id, family: opts.family }, { timeout: left(), polling: 100 });
    } catch (e) {
      const text = await page.$eval('[data-testid="alert-explanation"]', (el) => el.textContent.slice(0, 300)).catch(() => '(no explanation panel)');
      throw new Error(`the explanation of ${row.id} did not show ${JSON.stringify(opts.family)}: ${JSON.stringify(text)}`);
    }
    const families = await page.$$eval('[data-testid="alert-explanation"] [data-testid="family-share"]', (els) => els.map((el) => el.dataset.family));
    if (families[0] !== opts.family) {
      throw new Error(`the explanation's largest family is ${JSON.stringify(families[0] ?? null)}, not ${JSON.stringify(opts.family)} (all: ${JSON.stringify(families)})`);
    }

    // The alert's device view: its tile, then the score chart drawn for that device.
    const device = row.device || await page.$eval('[data-testid="alert-explanation"]', (el) => el.dataset.device);
    await page.locator(`[data-testid="device-tile"][data-device=${cssString(device)}]`).click({ timeout: left() });
    try {
      await page.waitForFunction((dev) => {
        const v = document.querySelector('[data-testid="device-view"]');
        if (!v || v.dataset.device !== dev || v.dataset.state !== 'ready') return false;
        const svg = v.querySelector('[data-testid="score-chart"]');
        if (!svg) return false;
        return [...svg.querySelectorAll('path, polyline')].some((el) => (el.getAttribute('d') || el.getAttribute('points') || '').length > 0);
      }, device, { timeout: left(), polling: 100 });
    } catch (e) {
      const label = await page.$eval('[data-testid="score-chart"]', (el) => el.getAttribute('aria-label')).catch(() => '(no score chart)');
      throw new Error(`the score chart of ${device} was not drawn: ${JSON.stringify(label)}`);
    }
    await page.screenshot({ path: opts.screenshot, fullPage: true, timeout: left() });

    // Every line of every tile stays in view: the real fleet's tiles, then the
    // widest a tile gets (MAINT, a flagged score at the residual detector's cap,
    // many open alerts, a long name), served in place of /api/devices.
    const cut = await tileProblems(page);
    if (cut.length) throw new Error(`a tile hides part of its content: ${cut.join('; ')}`);
    const wide = [
      { device: 'DEV-0009', state: 'MAINT', last_score: 30, flagged: true, health: 'alert', open_alerts: 12, alerts: 40, rows: 9999, last_seen: '2026-01-01T00:00:00Z' },
      { device: 'PRESS-LINE-7-HYDRAULIC-UNIT-0001', state: 'IDLE', last_score: 1234.56, flagged: true, health: 'stale', open_alerts: 0, alerts: 3, rows: 10, last_seen: '2026-01-01T00:00:00Z' },
    ];
    await page.route(/\/api\/devices(\?|$)/, (route) => route.fulfill({ json: { devices: wide } }));
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="device-tile"]').length === n
      && document.querySelector('[data-testid="device-tile"][data-device="DEV-0009"] .tile-state')?.textContent === 'MAINT',
    wide.length, { timeout: left(), polling: 100 });
    const cutWide = await tileProblems(page);
    if (cutWide.length) throw new Error(`a tile with the widest content hides part of it: ${cutWide.join('; ')}`);

    if (problems.length) throw new Error(`the page reported errors: ${problems.join(' | ')}`);
    await browser.close();
    browser = null;
    process.stdout.write(JSON.stringify({
      ok: true,
      first_contentful_paint_ms: Math.round(fcp * 10) / 10,
      layout_shift: Math.round(shift * 10000) / 10000,
      alert_id: row.id,
      family: opts.family,
      device,
      screenshot: opts.screenshot,
    }) + '\n');
    process.exit(0);
  } catch (e) {
    if (browser) await browser.close().catch(() => {});
    const more = problems.length && !String(e.message).includes('the page reported errors') ? ` (page errors: ${problems.join(' | ')})` : '';
    fail(String(e && e.message ? e.message : e).split('\n')[0] + more);
  }
}

main();
