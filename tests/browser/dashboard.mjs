// The dashboard in Debian's chromium, driven by Playwright (playwright-core: no browser
// download). crates/baton-tests/tests/dashboard.rs starts `baton serve --listen`, brings
// the projects up and runs this with the URL, tokens and names in the environment.
// Each scenario prints "ok: …" or throws; the last line is "ALL PASSED".
import { chromium } from 'playwright-core';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const URL_ = env('BATON_URL');
const ADMIN = env('BATON_ADMIN_TOKEN');
const OPERATOR = env('BATON_OPERATOR_TOKEN');
const VIEWER = env('BATON_VIEWER_TOKEN');
const DEMO = env('BATON_DEMO');
const CANARY = env('BATON_CANARY');
const BATON = env('BATON_BIN');
const STATE = env('BATON_STATE_DIR');
const CANARY_DIR = env('BATON_CANARY_DIR');
const SHOTS = env('SCREENSHOTS');

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--no-first-run', '--disable-sync', '--disable-quic'];

function ok(what) { console.log(`ok: ${what}`); }
function check(cond, what) { if (!cond) throw new Error(`failed: ${what}`); }
const enc = encodeURIComponent;

// A fresh browser profile each time: nothing cached, nothing remembered.
async function browser(viewport = { width: 1280, height: 900 }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-dash-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: '/usr/bin/chromium', headless: true, args: ARGS, viewport,
  });
  const page = ctx.pages()[0] ?? await ctx.newPage();
  page.on('pageerror', (e) => { console.log(`page error: ${e.message}`); pageErrors.push(e.message); });
  page.on('console', (m) => { if (m.type() === 'error') console.log(`console: ${m.text()}`); });
  // Closed, then its profile removed (chromium may still be writing it for a moment).
  const done = async () => {
    await ctx.close();
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
  };
  return { ctx, page, done };
}
const pageErrors = [];
let runPath = null;

async function shot(page, name) {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

async function login(page, token) {
  await page.goto(`${URL_}/ui/`);
  check(page.url().includes('/ui/login'), 'without a session, the dashboard asks to log in');
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${URL_}/ui/`);
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });

  // ---- log in, first load size, the example project's services ----
  {
    const { ctx, page, done } = await browser();
    await page.goto(`${URL_}/ui/login`);
    await shot(page, '01-login');
    await page.getByLabel('API token').fill('baton_not-a-token');
    await page.getByRole('button', { name: 'Log in' }).click();
    check(await page.getByRole('alert').isVisible(), 'a wrong token is refused with a message');
    ok('a wrong token is refused');

    await page.getByLabel('API token').fill(ADMIN);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.waitForURL(`${URL_}/ui/`);
    const cookies = await ctx.cookies();
    const session = cookies.find((c) => c.name === 'baton_session');
    check(session && session.httpOnly && session.sameSite === 'Strict', `the session cookie is HttpOnly and SameSite=Strict (${JSON.stringify(session)})`);
    check(!cookies.some((c) => c.value.includes(ADMIN)), 'the token is not in a cookie');
    ok('logged in: HttpOnly, SameSite=Strict session cookie');

    // First load: the overview with an empty cache, every byte the browser fetched.
    const cdp = await ctx.newCDPSession(page);
    await cdp.send('Network.clearBrowserCache');
    await page.goto(`${URL_}/ui/`, { waitUntil: 'load' });
    await page.waitForTimeout(500);
    const bytes = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const res = performance.getEntriesByType('resource');
      return { total: nav.transferSize + res.reduce((n, r) => n + r.transferSize, 0),
        page: nav.transferSize, files: res.map((r) => [r.name.replace(location.origin, ''), r.transferSize]) };
    });
    console.log(`FIRST_LOAD_BYTES ${bytes.total} (page ${bytes.page}; ${bytes.files.map(([n, s]) => `${n} ${s}`).join(', ')})`);
    check(bytes.total > 0 && bytes.total <= 200 * 1024, `first load ${bytes.total} bytes ≤ 200 KB`);
    ok(`first load ${bytes.total} bytes`);

    const demo = page.locator('section.project', { has: page.getByRole('heading', { name: DEMO }) });
    for (const svc of ['app', 'db', 'front', 'migrate']) {
      await demo.locator(`tr[data-service="${svc}"]`).waitFor({ timeout: 10000 });
    }
    ok('the example project\'s services appear');
    await shot(page, '02-overview');

    // Keyboard: the first Tab reaches the skip link, which is visible when focused.
    await page.keyboard.press('Tab');
    const first = await page.evaluate(() => document.activeElement?.textContent?.trim());
    check(first === 'Skip to content', `the first Tab stop is the skip link (${first})`);
    ok('keyboard: skip link first');

    // Phone width: one column, nothing wider than the screen but tables' own scrollers.
    await page.setViewportSize({ width: 375, height: 800 });
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) {
      const wide = await page.evaluate(() => [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.scroll'))
        .slice(0, 5).map((e) => `${e.tagName}.${e.className}: ${(e.textContent || '').slice(0, 40)}`));
      console.log(`too wide at 375 px: ${wide.join(' | ')}`);
    }
    check(overflow <= 1, `no sideways scrolling at 375 px (${overflow} px too wide)`);
    await shot(page, '03-overview-phone');
    ok('readable at phone width');
    await page.setViewportSize({ width: 1280, height: 900 });

    // ---- a killed replica: down, then back, within 3 s, without a reload ----
    await page.goto(`${URL_}/ui/projects/${enc(DEMO)}/services/app`);
    const replica = `${DEMO}-app-1`;
    const row = `tr[data-replica="${replica}"] td.state`;
    await page.locator(row).waitFor();
    check((await page.locator(row).textContent()).trim() === 'running', 'app-1 runs before the kill');
    await page.evaluate(() => { window.__batonMark = 'no reload'; });
    // Record every state the row shows, with its time.
    await page.evaluate((sel) => {
      window.__states = [];
      const note = () => {
        const el = document.querySelector(sel);
        const t = el ? el.textContent.trim() : '(gone)';
        const last = window.__states[window.__states.length - 1];
        if (!last || last[0] !== t) window.__states.push([t, performance.now()]);
      };
      note();
      new MutationObserver(note).observe(document.body, { subtree: true, childList: true, characterData: true });
    }, row);
    const t0 = await page.evaluate(() => performance.now());
    await run('docker', ['kill', replica]);
    const back = await page.waitForFunction(() => {
      const s = window.__states;
      const down = s.findIndex(([t]) => t !== 'running');
      return down >= 0 && s.slice(down).some(([t]) => t === 'running');
    }, null, { timeout: 10000, polling: 50 }).then(() => true, () => false);
    const states = await page.evaluate(() => window.__states);
    const mark = await page.evaluate(() => window.__batonMark);
    console.log(`replica states after the kill: ${states.map(([t, at]) => `${t} @${Math.round(at - t0)} ms`).join(', ')}`);
    if (!back) {
      console.log(`the service page now: ${(await page.locator('table.replicas').textContent()).replace(/\s+/g, ' ')}`);
      console.log(`its events: ${(await page.locator('ol.events').last().textContent()).replace(/\s+/g, ' ')}`);
    }
    check(back, 'the replica showed as down and then back');
    const downAt = states.find(([t]) => t !== 'running')[1] - t0;
    const upAt = states.slice(states.findIndex(([t]) => t !== 'running')).find(([t]) => t === 'running')[1] - t0;
    check(upAt <= 3000, `back within 3 s (${Math.round(upAt)} ms)`);
    check(mark === 'no reload', 'without a reload');
    console.log(`KILL_SHOWN_DOWN_MS ${Math.round(downAt)} KILL_SHOWN_BACK_MS ${Math.round(upAt)}`);
    ok(`a killed replica showed down after ${Math.round(downAt)} ms and back after ${Math.round(upAt)} ms, without a reload`);
    await page.waitForTimeout(500);
    await shot(page, '04-service');

    // ---- the canary, promoted from its button behind a confirmation ----
    await page.goto(`${URL_}/ui/projects/${enc(CANARY)}/services/web`);
    await page.evaluate(() => { window.__batonMark = 'no reload'; });
    const status = page.locator('[data-rollout-status]');
    check((await status.getAttribute('data-rollout-status')) === 'running', 'the canary rollout runs');
    check((await page.locator('[data-weight-new]').getAttribute('data-weight-new')) === '34', 'at 34 %');
    await shot(page, '05-service-canary');

    // ---- history graphs: drawn, re-read for another range ----
    await page.waitForFunction(() => document.querySelector('figure[data-chart="replicas"]')?.getAttribute('data-state') === 'drawn',
      null, { timeout: 30000, polling: 200 });
    const replicasChart = async () => page.evaluate(() => {
      const f = document.querySelector('figure[data-chart="replicas"]');
      const c = f.querySelector('.chart-plot canvas');
      if (!c) return { canvas: false, state: f.getAttribute('data-state') };
      const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      // Axes, grid and text are grey; the lines are coloured.
      let coloured = 0;
      for (let i = 0; i < px.length; i += 4) {
        if (px[i + 3] > 128 && Math.max(px[i], px[i + 1], px[i + 2]) - Math.min(px[i], px[i + 1], px[i + 2]) > 60) coloured++;
      }
      return { canvas: true, width: c.width, height: c.height, coloured, lines: Number(f.getAttribute('data-lines')),
        state: f.getAttribute('data-state'),
        legend: [...f.querySelectorAll('.u-legend .u-series .u-label')].map((e) => e.textContent.trim()) };
    });
    // The history is seconds old here: wait (the chart reads it again every 10 s) until
    // a line or a dot is on the canvas.
    let drawn = await replicasChart();
    for (let i = 0; i < 150 && !(drawn.coloured > 20); i++) {
      await page.waitForTimeout(200);
      drawn = await replicasChart();
    }
    console.log(`replicas chart: ${JSON.stringify(drawn)}`);
    check(drawn.canvas && drawn.width > 100 && drawn.height > 100, 'the replicas chart has a canvas');
    check(drawn.lines >= 1 && drawn.coloured > 20, `at least one series is drawn (${drawn.lines} lines, ${drawn.coloured} coloured pixels)`);
    for (const st of ['desired', 'running', 'healthy']) check(drawn.legend.includes(st), `the legend says ${st} (${drawn.legend})`);
    check(await page.getByRole('button', { name: '1h', exact: true }).getAttribute('aria-pressed') === 'true', 'the range is 1h at first');
    ok('the replicas chart draws desired, running and healthy');
    await page.evaluate(() => { window.__replicasFig = document.querySelector('figure[data-chart="replicas"]'); });
    const range = (want, query) => (r) => {
      if (!r.url().includes('/ui/series?')) return false;
      const u = new URL(r.url());
      return Number(u.searchParams.get('to')) - Number(u.searchParams.get('from')) === want && query(u.searchParams.get('query'));
    };
    const sixHours = page.waitForRequest(range(21600, (q) => q.startsWith('baton_service_replicas{')), { timeout: 15000 });
    const sixHoursRate = page.waitForRequest(range(21600, (q) => q.includes('rate(') && q.includes('[240s]')), { timeout: 15000 });
    await page.getByRole('button', { name: '6h', exact: true }).click();
    const six = new URL((await sixHours).url());
    await sixHoursRate;
    check(six.searchParams.get('step') === '120', `6 h in steps of 2 min (${six.searchParams.get('step')})`);
    check(six.searchParams.get('query') === `baton_service_replicas{project="${CANARY}",service="web"}`, `the replicas' query (${six.searchParams.get('query')})`);
    check(await page.getByRole('button', { name: '6h', exact: true }).getAttribute('aria-pressed') === 'true'
      && await page.getByRole('button', { name: '1h', exact: true }).getAttribute('aria-pressed') === 'false', 'the 6h button is pressed, 1h no longer');
    await page.waitForFunction(() => document.querySelector('figure[data-chart="replicas"]')?.getAttribute('data-state') === 'drawn',
      null, { timeout: 15000, polling: 200 });
    ok('a range button reads the series again for its range (6 h, step 120 s, rates over 240 s)');
    // The screenshots at 15 min: the test's history is a minute old.
    await page.getByRole('button', { name: '15m', exact: true }).click();
    await page.waitForTimeout(1000);
    await shot(page, '05b-service-charts');
    await page.locator('section.charts').screenshot({ path: path.join(SHOTS, '05c-service-charts-detail.png') });
    // By keyboard first: Enter opens the confirmation, Escape cancels it.
    await page.getByRole('button', { name: 'Promote' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('dialog').waitFor();
    await shot(page, '06-confirm');
    await page.keyboard.press('Escape');
    await page.getByRole('dialog').waitFor({ state: 'hidden' });
    await page.waitForTimeout(300);
    check((await status.getAttribute('data-rollout-status')) === 'running', 'a cancelled confirmation changes nothing');
    ok('the confirmation opens from the keyboard and cancels');
    await page.getByRole('button', { name: 'Promote' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Promote' }).click();
    await page.locator('#flash .flash.ok').waitFor({ timeout: 15000 });
    await page.waitForFunction(() => document.querySelector('[data-rollout-status]')?.getAttribute('data-rollout-status') === 'completed',
      null, { timeout: 90000, polling: 200 });
    check(await page.evaluate(() => window.__batonMark) === 'no reload', 'the rollout finished on the page without a reload');
    ok('the canary was promoted from its button and completed live');
    await shot(page, '07-service-promoted');
    // The live region was read again many times meanwhile; the charts are outside it.
    const after = await replicasChart();
    check(await page.evaluate(() => document.querySelector('figure[data-chart="replicas"]') === window.__replicasFig),
      'the chart survived the live refreshes (same element)');
    check(after.state === 'drawn' && after.lines >= 1, `the chart is still drawn (${JSON.stringify(after)})`);
    ok('the charts survive the page\'s live refreshes');

    // A service without a proxy has no request series: its chart says so.
    await page.goto(`${URL_}/ui/projects/${enc(DEMO)}/services/db`);
    const latency = page.locator('figure[data-chart="latency"]');
    await page.waitForFunction(() => document.querySelector('figure[data-chart="latency"]')?.getAttribute('data-state') === 'empty',
      null, { timeout: 15000, polling: 200 });
    check(await latency.locator('.chart-empty').isVisible() && (await latency.locator('.chart-empty').textContent()).trim() === 'no data yet',
      'an empty chart says "no data yet"');
    check(await latency.locator('canvas').count() === 0, 'and draws no empty box');
    ok('an empty series shows "no data yet"');

    // ---- a pipeline run's DAG turns green job by job ----
    await page.goto(`${URL_}/ui/pipelines`);
    await page.evaluate(() => { window.__batonMark = 'no reload'; });
    const childEnv = { ...process.env, BATON_STATE_DIR: STATE, COMPOSE_PROJECT_NAME: CANARY };
    delete childEnv.BATON_SERVER;
    delete childEnv.BATON_TOKEN;
    const child = spawn(BATON, ['pipeline', 'run', 'ci'], { cwd: CANARY_DIR, stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
    let pipelineOut = '';
    child.stdout.on('data', (d) => { pipelineOut += d; });
    child.stderr.on('data', (d) => { pipelineOut += d; });
    const finished = new Promise((resolve) => child.on('exit', resolve));
    const runRow = page.locator('tr[data-run]').first();
    await runRow.waitFor({ timeout: 20000 }).catch((e) => {
      throw new Error(`${e.message}\nbaton pipeline run said: ${pipelineOut}`);
    });
    check(await page.evaluate(() => window.__batonMark) === 'no reload', 'the run appeared without a reload');
    ok('the new run appeared on the pipelines page live');
    await runRow.getByRole('link').click();
    await page.locator('svg [data-job="build"]').waitFor();
    await page.evaluate(() => {
      window.__batonMark = 'no reload';
      window.__green = {};
      window.__seen = {};
      const look = () => {
        document.querySelectorAll('svg [data-job]').forEach((n) => {
          const job = n.getAttribute('data-job');
          const st = n.getAttribute('data-status');
          (window.__seen[job] ??= []).includes(st) || window.__seen[job].push(st);
          if (st === 'success' && !(job in window.__green)) window.__green[job] = performance.now();
        });
      };
      look();
      new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true });
    });
    await shot(page, '08-run-in-progress');
    await page.waitForFunction(() => ['build', 'lint', 'test', 'deploy'].every((j) => j in window.__green),
      null, { timeout: 60000, polling: 100 });
    const code = await finished;
    check(code === 0, `the pipeline ran (${code}): ${pipelineOut}`);
    const green = await page.evaluate(() => window.__green);
    const seen = await page.evaluate(() => window.__seen);
    console.log(`DAG turned green at (ms): ${Object.entries(green).map(([j, t]) => `${j} ${Math.round(t)}`).join(', ')}; states seen: ${JSON.stringify(seen)}`);
    check(green.build < green.lint && green.build < green.test, 'build before lint and test');
    check(green.lint < green.deploy && green.test < green.deploy, 'lint and test before deploy');
    check(seen.deploy.some((s) => s !== 'success'), 'deploy was shown before it passed');
    check(await page.evaluate(() => window.__batonMark) === 'no reload', 'without a reload');
    ok('the DAG turned green job by job, live');
    await page.locator('[data-run-status="success"]').waitFor({ timeout: 15000 });
    // The job log and an artifact download; a path with .. is refused.
    await page.locator('svg [data-job="build"]').click();
    await page.locator('pre.logs').filter({ hasText: 'build done' }).waitFor({ timeout: 10000 });
    ok('a job\'s log shows');
    const runUrl = page.url().split('?')[0];
    runPath = new URL(runUrl).pathname;
    check(await page.getByRole('button', { name: 'Rerun' }).count() === 1, 'a finished run has its rerun button');
    check(await page.getByRole('button', { name: 'Cancel run' }).count() === 0, 'a finished run has no cancel button');
    const art = await page.request.get(`${runUrl}/artifacts/dist/app.txt`);
    check(art.status() === 200 && (await art.text()).trim() === 'built', `the artifact downloads (${art.status()})`);
    const evil = await page.request.get(`${runUrl}/artifacts/dist/..%2F..%2F..%2Fetc%2Fpasswd`);
    check(evil.status() === 400, `a path with .. is refused (${evil.status()})`);
    ok('artifacts download; path traversal is refused');
    await shot(page, '09-run');
    // Rerun from its button, behind the confirmation: a new run of the same pipeline.
    await page.getByRole('button', { name: 'Rerun' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Rerun' }).click();
    const rerunFlash = page.locator('#flash .flash');
    await rerunFlash.waitFor({ timeout: 15000 });
    const rerunText = (await rerunFlash.textContent()).trim();
    check(await page.locator('#flash .flash.ok').count() === 1 && /started/.test(rerunText), `the rerun started (${rerunText})`);
    ok(`rerun from its button: ${rerunText}`);

    // A running run cancelled from its button: the run's process stops and says so.
    const slow = spawn(BATON, ['pipeline', 'run', 'slow'], { cwd: CANARY_DIR, stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
    let slowOut = '';
    slow.stdout.on('data', (d) => { slowOut += d; });
    slow.stderr.on('data', (d) => { slowOut += d; });
    const slowDone = new Promise((resolve) => slow.on('exit', resolve));
    await page.goto(`${URL_}/ui/pipelines`);
    const slowRow = page.locator('tr[data-run][data-status="running"]', { has: page.locator('td', { hasText: /^slow$/ }) }).first();
    await slowRow.waitFor({ timeout: 20000 }).catch((e) => { throw new Error(`${e.message}\nbaton pipeline run slow said: ${slowOut}`); });
    await slowRow.getByRole('link').click();
    await page.getByRole('button', { name: 'Cancel run' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel run' }).click();
    await page.locator('#flash .flash.ok').waitFor({ timeout: 15000 });
    await page.locator('[data-run-status="cancelled"]').waitFor({ timeout: 30000 });
    const slowCode = await Promise.race([slowDone, new Promise((r) => setTimeout(() => r('still running'), 15000))]);
    check(slowCode !== 'still running', `the cancelled run's process ended (${slowOut})`);
    check(await page.getByRole('button', { name: 'Rerun' }).count() === 1, 'a cancelled run can be run again');
    ok('a running run was cancelled from its button');
    await shot(page, '09b-run-cancelled');

    // A silence made and ended from the alerts page, each behind its confirmation.
    await page.goto(`${URL_}/ui/alerts`);
    const sec = page.locator(`section[data-project="${CANARY}"]`);
    await sec.locator('input[name="matchers"]').fill('alertname="ReplicaUnhealthy" service="web"');
    await sec.locator('select[name="duration"]').selectOption('1h');
    await sec.locator('input[name="comment"]').fill('from the browser');
    await sec.getByRole('button', { name: 'Silence' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Silence' }).click();
    await page.locator('#flash .flash.ok').waitFor({ timeout: 15000 });
    const silenced = sec.locator('tr[data-silence]', { hasText: 'from the browser' });
    await silenced.waitFor({ timeout: 15000 });
    check((await silenced.textContent()).includes('alertname="ReplicaUnhealthy"'), 'the silence lists its matchers');
    await shot(page, '12c-alerts');
    await silenced.getByRole('button', { name: 'End' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'End' }).click();
    await page.locator('#flash .flash.ok').waitFor({ timeout: 15000 });
    await page.waitForFunction((p) => {
      const r = [...document.querySelectorAll(`section[data-project="${p}"] tr[data-silence]`)].find((x) => x.textContent.includes('from the browser'));
      return r && !r.querySelector('button');
    }, CANARY, { timeout: 15000 });
    ok('a silence was made and ended from the alerts page');

    for (const [name, p] of [['10-pipelines', '/ui/pipelines'], ['11-vms', '/ui/vms'], ['12-fleet', '/ui/fleet'], ['12b-routes', '/ui/routes'],
      ['13-events', '/ui/events'], ['14-audit', '/ui/audit']]) {
      await page.goto(`${URL_}${p}`);
      await page.waitForTimeout(300);
      await shot(page, name);
    }
    const audit = await page.locator('table.audit').textContent();
    check(audit.includes('rollout.promote') && audit.includes('dash-admin'), 'the promote is in the audit log, with who did it');
    ok('the audit log names the promote and its author');

    // Logout ends the session on the server.
    await page.goto(`${URL_}/ui/`);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(/\/ui\/login/);
    await page.goto(`${URL_}/ui/`);
    check(page.url().includes('/ui/login'), 'after logout the dashboard asks to log in again');
    ok('logout');
    await done();
  }

  // ---- a viewer: no buttons, and changes refused ----
  {
    const { ctx, page, done } = await browser();
    await login(page, VIEWER);
    check(await page.locator('nav a', { hasText: 'Audit' }).count() === 0, 'a viewer has no audit link');
    for (const p of [`/ui/`, `/ui/projects/${enc(CANARY)}/services/web`, `/ui/projects/${enc(DEMO)}/services/app`, '/ui/pipelines', '/ui/alerts', runPath]) {
      await page.goto(`${URL_}${p}`);
      // The charts' range buttons only change the view.
      const buttons = await page.locator('main button:not([data-range])').count();
      check(buttons === 0, `a viewer sees no action button on ${p} (${buttons})`);
    }
    await shot(page, '15-service-viewer');
    ok('a viewer sees no action buttons');
    // The dashboard refuses a viewer's change even with a valid form token...
    const csrf = await page.evaluate(() => JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']);
    const dash = await page.evaluate(async ([url, token]) => (await fetch(url, { method: 'POST', headers: { 'X-CSRF-Token': token } })).status,
      [`/ui/projects/${enc(CANARY)}/services/web/rollout/abort`, csrf]);
    check(dash === 403, `the dashboard answers a viewer's change with 403 (${dash})`);
    const rerun = await page.evaluate(async ([url, token]) => (await fetch(url, { method: 'POST', headers: { 'X-CSRF-Token': token } })).status,
      [`${runPath}/rerun`, csrf]);
    check(rerun === 403, `the dashboard answers a viewer's rerun with 403 (${rerun})`);
    // ...and so does the API, for the viewer's token.
    for (const [method, p] of [['POST', `/api/v1/projects/${enc(CANARY)}/services/web/rollout/undo`],
      ['POST', `/api/v1/projects/${enc(DEMO)}/restart`], ['POST', `/api/v1/projects/${enc(DEMO)}/down`]]) {
      const r = await fetch(`${URL_}${p}`, { method, headers: { Authorization: `Bearer ${VIEWER}` } });
      check(r.status === 403, `the API answers the viewer's ${method} ${p} with 403 (${r.status})`);
    }
    ok('a viewer\'s changes get 403 from the dashboard and the API');
    // A change without the form token, or from another origin, is refused too.
    const noToken = await page.evaluate(async (url) => (await fetch(url, { method: 'POST' })).status,
      `/ui/projects/${enc(CANARY)}/services/web/rollout/abort`);
    check(noToken === 403, `a change without the form token is refused (${noToken})`);
    ok('CSRF: a change without the form token is refused');
    await done();
  }

  // ---- an operator sees the buttons ----
  {
    const { ctx, page, done } = await browser();
    await login(page, OPERATOR);
    await page.goto(`${URL_}/ui/projects/${enc(CANARY)}/services/web`);
    check(await page.getByRole('button', { name: 'Undo' }).count() === 1, 'an operator has the undo button');
    check(await page.locator('nav a', { hasText: 'Audit' }).count() === 0, 'an operator has no audit link');
    const audit = await page.goto(`${URL_}/ui/audit`);
    check(audit.status() === 403, `the audit page is for admins (${audit.status()})`);
    ok('an operator sees the buttons, not the audit log');
    await done();
  }

  check(pageErrors.length === 0, `no script error on any page: ${pageErrors.join('; ')}`);
  console.log('ALL PASSED');
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
