// Drive the envmgr staff page (a JupyterHub service) in headless Chromium for
// tests/test_hub_service.py.
//
//   node hub_service.mjs --hub URL --service /services/envmgr/ --password PW --out DIR
//                        --family FAMILY --scenario build|rollback
//                        [--staff NAME] [--viewer NAME] [--outsider NAME]
//
// build:    staff logs in, clicks Build now, clicks it again while it runs, watches the
//           log to the end and reads the outcome; a viewer sees disabled buttons and
//           forces POSTs; an outsider (no access scope) is refused.
// rollback: staff clicks Roll back and confirms.
// Prints one JSON object on stdout; screenshots go to DIR. Exits non-zero on failure.

import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS } from './chromium.mjs';

const TIMEOUT = 60_000;
const BUILD_TIMEOUT = 240_000;

const { values: opts } = parseArgs({
  options: {
    hub: { type: 'string' },
    service: { type: 'string', default: '/services/envmgr/' },
    password: { type: 'string' },
    out: { type: 'string' },
    family: { type: 'string' },
    scenario: { type: 'string', default: 'build' },
    staff: { type: 'string', default: 'staff' },
    viewer: { type: 'string', default: 'viewer' },
    outsider: { type: 'string', default: 'outsider' },
    chromium: { type: 'string', default: '/usr/bin/chromium' }
  }
});

const serviceUrl = opts.hub + opts.service;
const row = `tr[data-family="${opts.family}"]`;

/** A fresh cookie jar per user; uncaught page errors and console errors are collected. */
async function session(browser, user) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  const errors = [];
  const consoleErrors = [];
  page.on('pageerror', e => errors.push(String(e)));
  page.on('console', m => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  await page.goto(`${opts.hub}/hub/login?next=${encodeURIComponent('/hub/home')}`);
  await page.fill('#username_input', user);
  await page.fill('#password_input', opts.password);
  await Promise.all([page.waitForURL(/\/hub\/home/), page.click('#login_submit')]);
  const response = await page.goto(serviceUrl);
  return { context, page, errors, consoleErrors, status: response.status() };
}

/** POST from inside the page, as the page's own code would (optionally without the XSRF token). */
function post(page, path, { xsrf = true } = {}) {
  return page.evaluate(async ([url, withToken]) => {
    const headers = { 'Content-Type': 'application/json' };
    if (withToken) headers['X-XSRFToken'] = document.body.dataset.xsrf;
    const r = await fetch(url, { method: 'POST', headers, body: '{}', credentials: 'same-origin' });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    return { status: r.status, data };
  }, [serviceUrl + path, xsrf]);
}

function readRow(page) {
  return page.$eval(row, tr => {
    const field = name => tr.querySelector(`[data-field="${name}"]`)?.textContent.trim() ?? null;
    const button = action => {
      const b = tr.querySelector(`button[data-action="${action}"]`);
      return b ? { disabled: b.disabled, label: b.textContent.trim(), title: b.title } : null;
    };
    return {
      latest: field('latest'), age: field('age'), packages: field('packages'),
      lastResult: field('last-result'),
      stable: [...tr.querySelectorAll('[data-release]')].map(li => ({
        release: li.dataset.release, text: li.textContent.trim(), className: li.className })),
      group: tr.closest('section').dataset.group,
      advisories: (() => {
        const badge = tr.querySelector('[data-field="advisories"] summary');
        return badge ? { text: badge.textContent.trim(), title: badge.title } : null;
      })(),
      build: button('build'), rollback: button('rollback')
    };
  });
}

function readPanel(page) {
  return page.$eval('#job', panel => ({
    state: panel.dataset.state ?? null,
    status: panel.dataset.status ?? null,
    jobId: panel.dataset.jobId ?? null,
    title: panel.querySelector('[data-field=title]').textContent,
    summary: panel.querySelector('[data-field=summary]').textContent,
    log: document.querySelector('#log').textContent,
    diff: [...document.querySelectorAll('#diff tbody tr')].map(tr => ({
      name: tr.dataset.package, kind: tr.dataset.kind,
      cells: [...tr.children].map(td => td.textContent) }))
  }));
}

async function staffBuild(browser) {
  const s = await session(browser, opts.staff);
  const { page } = s;
  await page.waitForSelector(row);
  const groups = await page.$$eval('section[data-group]', sections => sections.map(sec => ({
    group: sec.dataset.group, families: [...sec.querySelectorAll('tr[data-family]')].map(tr => tr.dataset.family) })));
  const before = await readRow(page);
  const role = await page.textContent('[data-field=role]');
  const noXsrf = await post(page, `api/families/${opts.family}/build`, { xsrf: false });

  await page.click(`${row} button[data-action=build]`);
  await page.waitForSelector('#job[data-job-id]');
  await page.waitForFunction(() => document.querySelector('#log').textContent.trim().length > 0);
  const firstJob = await page.getAttribute('#job', 'data-job-id');
  // A second request while it runs shows the running build instead of starting another.
  const secondPost = await post(page, `api/families/${opts.family}/build`);
  await page.click(`${row} button[data-action=build]`);
  await page.waitForFunction(() => /already being built/.test(document.querySelector('#notice').textContent));
  const secondClick = { jobId: await page.getAttribute('#job', 'data-job-id'),
    notice: await page.textContent('#notice') };
  await page.screenshot({ path: join(opts.out, 'staff-running.png'), fullPage: true });

  await page.waitForSelector('#job[data-state=done]', { timeout: BUILD_TIMEOUT });
  const panel = await readPanel(page);
  await page.waitForFunction(([sel, old]) => {
    const cell = document.querySelector(`${sel} [data-field=latest]`);
    return cell && cell.textContent.trim() !== old;
  }, [row, before.latest], { timeout: TIMEOUT });
  const after = await readRow(page);
  await page.screenshot({ path: join(opts.out, 'staff-done.png'), fullPage: true });
  const state = await page.evaluate(async url => (await fetch(url, {
    headers: { 'X-XSRFToken': document.body.dataset.xsrf } })).json(), serviceUrl + 'api/state');
  await s.context.close();
  return { status: s.status, errors: s.errors, consoleErrors: s.consoleErrors, role, groups, before, noXsrf, firstJob, secondPost,
    secondClick, panel, after, state };
}

async function viewer(browser) {
  const s = await session(browser, opts.viewer);
  const { page } = s;
  await page.waitForSelector(row);
  const view = await readRow(page);
  const role = await page.textContent('[data-field=role]');
  const build = await post(page, `api/families/${opts.family}/build`);
  const rollback = await post(page, `api/families/${opts.family}/rollback`);
  const state = await page.evaluate(async url => (await fetch(url, {
    headers: { 'X-XSRFToken': document.body.dataset.xsrf } })).status, serviceUrl + 'api/state');
  await page.screenshot({ path: join(opts.out, 'viewer.png'), fullPage: true });
  await s.context.close();
  return { status: s.status, errors: s.errors, consoleErrors: s.consoleErrors, role, row: view, build, rollback, state };
}

async function outsider(browser) {
  const s = await session(browser, opts.outsider);
  const text = await s.page.textContent('body');
  const api = await s.page.evaluate(async url => (await fetch(url)).status, serviceUrl + 'api/state');
  await s.page.screenshot({ path: join(opts.out, 'outsider.png'), fullPage: true });
  await s.context.close();
  return { status: s.status, text: text.replace(/\s+/g, ' ').trim().slice(0, 400), api };
}

async function staffRollback(browser) {
  const s = await session(browser, opts.staff);
  const { page } = s;
  await page.waitForSelector(row);
  const before = await readRow(page);
  const dialogs = [];
  page.on('dialog', d => { dialogs.push(d.message()); d.accept(); });
  await page.click(`${row} button[data-action=rollback]`);
  await page.waitForSelector('#job[data-state=done]');
  const panel = await readPanel(page);
  await page.waitForFunction(([sel, old]) => {
    const cell = document.querySelector(`${sel} [data-field=latest]`);
    return cell && cell.textContent.trim() !== old;
  }, [row, before.latest]);
  const after = await readRow(page);
  await page.screenshot({ path: join(opts.out, 'staff-rollback.png'), fullPage: true });
  await s.context.close();
  return { status: s.status, errors: s.errors, consoleErrors: s.consoleErrors, before, dialogs, panel, after };
}

const browser = await chromium.launch({ executablePath: opts.chromium, args: CHROMIUM_ARGS });
try {
  let result;
  if (opts.scenario === 'build') {
    result = { staff: await staffBuild(browser), viewer: await viewer(browser), outsider: await outsider(browser) };
  } else if (opts.scenario === 'rollback') {
    result = { staff: await staffRollback(browser) };
  } else {
    throw new Error(`unknown scenario ${opts.scenario}`);
  }
  process.stdout.write(JSON.stringify(result, null, 1) + '\n');
} catch (err) {
  process.stderr.write(`${err.stack || err}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
