// Drive JupyterLab's launcher in headless Chromium for tests/test_lab_browser.py.
//
//   node lab_launcher.mjs --url URL --token TOKEN --out DIR --mode grouped|stock
//                         [--open-kernel NAME] [--console-kernel NAME]
//                         [--code CODE] [--docs-screenshot FILE]
//
// Prints one JSON object on stdout: what the launcher shows (sections, cards,
// folded parts, page config) and, in grouped mode, what happened when a card
// was clicked (output of the executed cell, sessions, Select Kernel dialog).
// Screenshots go to DIR. Exits non-zero with a message on stderr on failure.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS } from './chromium.mjs';

// The fresh profile is passed as launchPersistentContext's userDataDir
// (playwright's spelling of --user-data-dir).
const TIMEOUT = 90_000;

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    out: { type: 'string' },
    mode: { type: 'string', default: 'grouped' },
    'open-kernel': { type: 'string' },
    'console-kernel': { type: 'string' },
    code: { type: 'string', default: 'import sys; print(sys.prefix)' },
    'docs-screenshot': { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' }
  }
});

/** The launcher as the DOM shows it, read through the data-* hooks. */
function readLauncher() {
  const text = el => (el ? el.textContent.trim() : null);
  const kernel = el => ({
    kernel: el.dataset.envmgrKernel,
    family: el.dataset.envmgrFamily,
    channel: el.dataset.envmgrChannel,
    release: el.dataset.envmgrRelease ?? null,
    badge: text(el.querySelector('[data-envmgr-badge]')),
    label: text(el.querySelector('.jp-LauncherCard-label p')),
    title: el.getAttribute('title'),
    launch: [...el.querySelectorAll('[data-envmgr-launch]')].map(
      e => e.dataset.envmgrLaunch
    )
  });
  const launcher = document.querySelector('.jp-Launcher:not(.lm-mod-hidden)');
  const sections = [...launcher.querySelectorAll('.jp-Launcher-section')];
  return {
    envmgrClass: launcher.classList.contains('envmgr-Launcher'),
    sections: sections.map(section => {
      const folded = section.querySelector(':scope > [data-envmgr-folded]');
      const main = section.querySelector(':scope > .jp-Launcher-cardContainer');
      return {
        title: text(section.querySelector('.jp-Launcher-sectionTitle')),
        group: section.dataset.envmgrGroup ?? null,
        current: [
          ...main.querySelectorAll(':scope > [data-envmgr-kernel]')
        ].map(kernel),
        folded: folded
          ? {
              open: folded.open,
              summary: text(folded.querySelector('summary')),
              kernels: [...folded.querySelectorAll('[data-envmgr-kernel]')].map(
                kernel
              )
            }
          : null,
        cards: [...main.querySelectorAll(':scope > .jp-LauncherCard')].map(
          card => ({
            category: card.dataset.category,
            label: text(card.querySelector('.jp-LauncherCard-label p'))
          })
        )
      };
    })
  };
}

/** Wait until both kernel categories have their items in the launcher. */
async function waitForLauncher(page) {
  await page.waitForSelector('.jp-Launcher:not(.lm-mod-hidden)', {
    timeout: TIMEOUT
  });
  await page.waitForFunction(
    () => {
      const launcher = document.querySelector(
        '.jp-Launcher:not(.lm-mod-hidden)'
      );
      const has = sel => launcher.querySelector(sel) !== null;
      const notebook =
        has('[data-envmgr-launch="notebook"]') ||
        has('.jp-LauncherCard[data-category="Notebook"]');
      const console =
        has('[data-envmgr-launch="console"]') ||
        has('.jp-LauncherCard[data-category="Console"]');
      return notebook && console;
    },
    null,
    { timeout: TIMEOUT }
  );
  // Items of both categories arrive in separate renders; let them settle.
  await page.waitForTimeout(1000);
}

async function sessions(page) {
  const response = await page.request.get(`${opts.url}/api/sessions`, {
    headers: { Authorization: `token ${opts.token}` }
  });
  const list = await response.json();
  return list.map(s => ({
    type: s.type,
    path: s.path,
    kernel: s.kernel?.name,
    kernelId: s.kernel?.id
  }));
}

/** Click a kernel's notebook card, run a cell, read its output. */
async function openNotebook(page, out, kernelName) {
  await page
    .locator(
      `[data-envmgr-kernel="${kernelName}"] [data-envmgr-launch="notebook"]`
    )
    .click();
  const panel = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden)');
  await panel.waitFor({ timeout: TIMEOUT });
  // A cell run before the kernel is connected is silently not executed.
  await waitForSession(page, 'notebook', kernelName);
  const editor = panel.locator('.jp-Cell').first().locator('.cm-content');
  await editor.click();
  await page.keyboard.type(opts.code);
  await page.waitForFunction(
    ({ el, code }) => el.textContent === code,
    { el: await editor.elementHandle(), code: opts.code },
    { timeout: TIMEOUT }
  );
  await page.keyboard.press('Shift+Enter');
  const output = panel.locator('.jp-OutputArea-output').first();
  await waitForOutput(output, editor, page);
  const kernelLabel = panel.locator('.jp-Toolbar-kernelName');
  const result = {
    output: (await output.innerText()).trim(),
    toolbarKernel: (await kernelLabel.innerText()).trim(),
    selectKernel: await readSelectKernel(page, kernelLabel)
  };
  await page.screenshot({ path: join(out, 'notebook.png') });
  return result;
}

/**
 * Wait for the cell's output. On a loaded machine an execute request sent while
 * the kernel's websocket is still settling can be dropped without an error, so
 * the cell is run again (Ctrl+Enter on it) until output appears or time runs out.
 */
async function waitForOutput(output, editor, page) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    try {
      await output.waitFor({ timeout: Math.min(20000, Math.max(1000, deadline - Date.now())) });
      return;
    } catch (error) {
      if (Date.now() >= deadline) throw error;
      await editor.click();
      await page.keyboard.press('Control+Enter');
    }
  }
}

/** Open the Select Kernel dialog from the toolbar and read its choices. */
async function readSelectKernel(page, kernelLabel) {
  await kernelLabel.click();
  const dialog = page.locator('.jp-Dialog');
  await dialog.locator('select').waitFor({ timeout: TIMEOUT });
  const groups = await dialog.locator('optgroup').evaluateAll(nodes =>
    nodes.map(g => ({
      label: g.label,
      options: [...g.querySelectorAll('option')].map(o => ({
        value: JSON.parse(o.value),
        text: o.text,
        title: o.title,
        selected: o.selected
      }))
    }))
  );
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached', timeout: TIMEOUT });
  return groups;
}

/** Open a new launcher with the tab bar's "+" and start a kernel's console. */
async function openConsole(page, kernelName) {
  await page
    .locator('.lm-DockPanel-tabBar .lm-TabBar-addButton')
    .first()
    .click();
  await waitForLauncher(page);
  await page
    .locator(
      `.jp-Launcher:not(.lm-mod-hidden) [data-envmgr-kernel="${kernelName}"] [data-envmgr-launch="console"]`
    )
    .click();
  await page
    .locator('.jp-CodeConsole:not(.lm-mod-hidden)')
    .waitFor({ timeout: TIMEOUT });
  await waitForSession(page, 'console', kernelName);
}

/** Wait until the page is connected to an idle kernel of a new session. */
async function waitForSession(page, type, kernelName) {
  await page.waitForFunction(
    async ({ token, type, name }) => {
      const r = await fetch('/api/sessions', {
        headers: { Authorization: `token ${token}` }
      });
      const list = await r.json();
      return list.some(
        s =>
          s.type === type &&
          s.kernel?.name === name &&
          s.kernel.connections > 0 &&
          s.kernel.execution_state === 'idle'
      );
    },
    { token: opts.token, type, name: kernelName },
    { timeout: TIMEOUT, polling: 500 }
  );
}

async function grouped(page, out) {
  const result = { launcher: await page.evaluate(readLauncher) };
  await page.screenshot({ path: join(out, 'launcher.png') });
  const summary = page.locator('[data-envmgr-folded] > summary').first();
  await summary.click();
  result.afterUnfold = await page.evaluate(readLauncher);
  await page.screenshot({ path: join(out, 'launcher-unfolded.png') });
  if (opts['docs-screenshot']) {
    await page.screenshot({ path: opts['docs-screenshot'] });
  }
  if (opts['open-kernel']) {
    result.notebook = await openNotebook(page, out, opts['open-kernel']);
  }
  if (opts['console-kernel']) {
    await openConsole(page, opts['console-kernel']);
  }
  result.sessions = await sessions(page);
  return result;
}

async function stock(page, out) {
  const result = { launcher: await page.evaluate(readLauncher) };
  await page.screenshot({ path: join(out, 'launcher-stock.png') });
  return result;
}

async function visit(page) {
  await page.goto(`${opts.url}/lab?token=${opts.token}`);
  await waitForLauncher(page);
  const pageConfig = await page.evaluate(() =>
    JSON.parse(document.getElementById('jupyter-config-data').textContent)
  );
  const entryPoints = await launcherEntryPoints(page);
  const run = opts.mode === 'stock' ? stock : grouped;
  const result = await run(page, opts.out);
  return {
    ...result,
    ...entryPoints,
    disabledExtensions: pageConfig.disabledExtensions
  };
}

/** How many File menu items and file browser buttons open a launcher. */
async function launcherEntryPoints(page) {
  const selector = '[data-command="launcher:create"]';
  const newLauncherButtons = await page
    .locator(`.jp-FileBrowser-toolbar ${selector}`)
    .count();
  await page.locator('.lm-MenuBar-item', { hasText: 'File' }).click();
  const menu = page.locator('.lm-Menu:not(.lm-MenuBar)').first();
  await menu.waitFor({ timeout: TIMEOUT });
  const fileMenuItems = await menu.locator(`.lm-Menu-item${selector}`).count();
  await page.keyboard.press('Escape');
  await menu.waitFor({ state: 'detached', timeout: TIMEOUT });
  return { newLauncherButtons, fileMenuItems };
}

async function main() {
  const profile = mkdtempSync(join(tmpdir(), 'envmgr-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 }
  });
  const errors = [];
  try {
    const page = await context.newPage();
    page.on('pageerror', err => errors.push(String(err)));
    const result = await visit(page).catch(async err => {
      await page.screenshot({ path: join(opts.out, 'failure.png') });
      throw err;
    });
    result.pageErrors = errors;
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

main().catch(err => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
