// Drive kernel end-of-support notices and the saved build in JupyterLab for
// tests/test_lab_lifecycle.py.
//
//   node lab_lifecycle.mjs --url URL --token TOKEN --out DIR
//                          --expiring NB --retired NB --latest NB --successor LABEL
//
// For the expiring and the retired notebook: open it, read the notification,
// check no dialog is open, click "Switch to LABEL", run the first cell on the
// new kernel, save. For the latest notebook: run, save. Prints one JSON object
// (notification texts, toolbar kernel, outputs, saved metadata, page errors).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS } from './chromium.mjs';

const TIMEOUT = 90_000;

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    out: { type: 'string' },
    expiring: { type: 'string' },
    retired: { type: 'string' },
    latest: { type: 'string' },
    successor: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' }
  }
});

async function open(page, name) {
  await page.goto(`${opts.url}/lab/tree/${name}?reset&token=${opts.token}`);
  const panel = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden)');
  await panel.waitFor({ timeout: TIMEOUT });
  return panel;
}

/** The notification toast mentioning `text`. */
async function toast(page, text) {
  const found = page.locator('.Toastify__toast', { hasText: text }).first();
  await found.waitFor({ timeout: TIMEOUT });
  return found;
}

async function waitForKernel(panel, label) {
  const name = panel.locator('.jp-Toolbar-kernelName');
  await name.filter({ hasText: label }).waitFor({ timeout: TIMEOUT });
  // idle: connected and ready to execute
  await panel
    .locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
    .waitFor({ timeout: TIMEOUT })
    .catch(() => undefined);
  return (await name.innerText()).trim();
}

/** Run the first cell until output appears (a request sent too early can be dropped). */
async function runFirstCell(page, panel) {
  const cell = panel.locator('.jp-Cell').first();
  const output = cell.locator('.jp-OutputArea-output').first();
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    await cell.locator('.jp-InputArea').click();
    await page.keyboard.press('Escape');
    await page.keyboard.press('Control+Enter');
    try {
      await output.waitFor({ timeout: 15000 });
      return (await output.innerText()).trim();
    } catch (error) {
      if (Date.now() >= deadline) throw error;
    }
  }
}

/** Save, then read the notebook back through the contents API until `metadata.envmgr` is there. */
async function saveAndRead(page, name) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    await page.keyboard.press('Control+s');
    await page.waitForTimeout(1500);
    const nb = await page.evaluate(
      async ({ name, token }) => {
        const r = await fetch(`/api/contents/${name}?content=1&token=${token}`);
        return (await r.json()).content;
      },
      { name, token: opts.token }
    );
    if (nb?.metadata?.envmgr?.build || Date.now() >= deadline) {
      return nb?.metadata ?? null;
    }
  }
}

async function switchFlow(page, name, expectText) {
  const panel = await open(page, name);
  const note = await toast(page, expectText);
  const text = (await note.innerText()).trim();
  await page.waitForTimeout(2000); // a dialog would be up by now
  const dialogs = await page.locator('.jp-Dialog').count();
  await page.screenshot({ path: join(opts.out, `${name}-notice.png`) });
  await note.getByRole('button', { name: `Switch to ${opts.successor}` }).click();
  const toolbar = await waitForKernel(panel, opts.successor);
  const output = await runFirstCell(page, panel);
  const saved = await saveAndRead(page, name);
  return { notification: text, dialogs, toolbar, output, saved };
}

async function main() {
  const profile = mkdtempSync(join(tmpdir(), 'envmgr-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 }
  });
  const errors = [];
  const page = await context.newPage();
  page.on('pageerror', err => errors.push(String(err)));
  try {
    const result = {};
    result.expiring = await switchFlow(page, opts.expiring, 'supported until');
    result.retired = await switchFlow(page, opts.retired, 'retired');
    const panel = await open(page, opts.latest);
    await waitForKernel(panel, 'latest');
    result.latest = { output: await runFirstCell(page, panel) };
    result.latest.saved = await saveAndRead(page, opts.latest);
    result.pageErrors = errors;
    process.stdout.write(JSON.stringify(result) + '\n');
  } catch (err) {
    await page.screenshot({ path: join(opts.out, 'failure.png') }).catch(() => undefined);
    throw err;
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

main().catch(err => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
