// Drives a real VS Code (code-server, in headless Chromium through
// playwright-core) with the Basis extension through the shared editor scenario
// (editors/scenario.json): every step goes through VS Code's own interface (the
// command palette, input boxes, the QuickPick, the diff preview, the quick fix
// menu), waits until its result is on screen, saves a screenshot, and reverts
// the workspace for the next step. It writes the results JSON that
// tests/vscode.rs checks against the feedback store:
//   {steps: [{name, skill, choice, suggestionId, seen, uiMs, serverMs, screenshots, error?}]}
// The suggestion ids and the extension's own timings come from the extension's
// trace file (BASIS_VSCODE_TRACE), written as the user acts.
//
// Environment: BASIS_E2E_URL (code-server), BASIS_E2E_SCENARIO, BASIS_E2E_REPO
// (the workspace, a git repository), BASIS_E2E_TRACE, BASIS_E2E_ARTIFACTS (the
// screenshots' folder), BASIS_E2E_RESULTS, BASIS_E2E_BROWSER_DIR (a fresh
// profile folder), CHROMIUM (default /usr/bin/chromium), BASIS_E2E_STEPS (names
// of the steps to run, comma-separated; default all).
'use strict';

const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { chromium } = require('playwright-core');

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    throw new Error(`${name} is not set`);
  }
  return v;
};

const URL_ = env('BASIS_E2E_URL');
const SCENARIO = JSON.parse(fs.readFileSync(env('BASIS_E2E_SCENARIO'), 'utf8'));
const REPO = env('BASIS_E2E_REPO');
const TRACE = env('BASIS_E2E_TRACE');
const ARTIFACTS = env('BASIS_E2E_ARTIFACTS');
const RESULTS = env('BASIS_E2E_RESULTS');
const BROWSER_DIR = env('BASIS_E2E_BROWSER_DIR');
const ONLY = process.env.BASIS_E2E_STEPS ? process.env.BASIS_E2E_STEPS.split(',') : undefined;

/** How long one model answer or sandbox run may take on a busy 2-core machine. */
const MODEL_WAIT = 240_000;
const UI_WAIT = 60_000;

function log(...args) {
  console.log(`[driver ${new Date().toISOString().slice(11, 19)}]`, ...args);
}

function traceEvents() {
  if (!fs.existsSync(TRACE)) {
    return [];
  }
  return fs
    .readFileSync(TRACE, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return undefined;
      }
    })
    .filter(Boolean);
}

/** Waits for the first trace event after index `from` that `pred` accepts. */
async function waitEvent(from, pred, what, timeout = MODEL_WAIT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const found = traceEvents().slice(from).find(pred);
    if (found) {
      return found;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}`);
    }
    // Often, so that the times measured from here are not the poll's.
    await new Promise((r) => setTimeout(r, 20));
  }
}

class Driver {
  constructor(page) {
    this.page = page;
    this.shots = [];
  }

  async screenshot(step, name) {
    const file = path.join(ARTIFACTS, `${String(this.shots.length + 1).padStart(2, '0')}-${step}-${name}.png`);
    await this.page.screenshot({ path: file });
    this.shots.push(file);
    return file;
  }

  quickInput() {
    return this.page.locator('.quick-input-widget');
  }

  /** Opens the command palette and runs the command titled `title`. */
  async palette(title) {
    // No Escape first: in the editor it would drop the selection.
    const page = this.page;
    await page.keyboard.press('F1');
    const input = this.quickInput().locator('input.input');
    await input.waitFor({ state: 'visible', timeout: UI_WAIT });
    await input.fill(`>${title}`);
    const row = this.quickInput().locator('.monaco-list-row', { hasText: title }).first();
    await row.waitFor({ state: 'visible', timeout: UI_WAIT });
    await input.press('Enter');
  }

  /** Answers the open input box with `text`. */
  async answer(text) {
    const input = this.quickInput().locator('input.input');
    await input.waitFor({ state: 'visible', timeout: UI_WAIT });
    await input.fill(text);
    await input.press('Enter');
  }

  /** Opens a workspace file with quick open. */
  async openFile(rel) {
    await this.page.keyboard.press('Escape');
    await this.page.keyboard.press('F1');
    const input = this.quickInput().locator('input.input');
    await input.waitFor({ state: 'visible', timeout: UI_WAIT });
    await input.fill(rel);
    const name = path.basename(rel);
    await this.quickInput().locator('.monaco-list-row', { hasText: name }).first().waitFor({ timeout: UI_WAIT });
    await input.press('Enter');
    await this.page
      .locator('.tabs-container .tab.active', { hasText: name })
      .waitFor({ state: 'visible', timeout: UI_WAIT });
    await this.page.locator('.editor-instance .monaco-editor .view-lines').first().waitFor({ timeout: UI_WAIT });
  }

  /** Puts the cursor at a 0-based LSP position of the active editor (Go to Line/Column). */
  async goto(pos) {
    const want = `Ln ${pos.line + 1}, Col ${pos.character + 1}`;
    const cursor = this.page.locator('.statusbar-item', { hasText: /^Ln \d+, Col \d+/ }).first();
    for (let attempt = 0; attempt < 3; attempt++) {
      await this.page.keyboard.press('Escape');
      await this.page.keyboard.press('F1');
      const input = this.quickInput().locator('input.input');
      await input.waitFor({ state: 'visible', timeout: UI_WAIT });
      await input.fill(`:${pos.line + 1}:${pos.character + 1}`);
      await input.press('Enter');
      await this.quickInput().waitFor({ state: 'hidden', timeout: UI_WAIT });
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline) {
        const text = (await cursor.innerText().catch(() => '')).trim();
        if (text.startsWith(want)) {
          return;
        }
        await this.page.waitForTimeout(100);
      }
    }
    throw new Error(`the cursor did not get to ${want}`);
  }

  /** Selects a 0-based range of the active editor (from the cursor at its start). */
  async select(range) {
    await this.goto(range.start);
    for (let l = range.start.line; l < range.end.line; l++) {
      await this.page.keyboard.press('Shift+ArrowDown');
    }
    if (range.end.character > 0) {
      await this.page.keyboard.press('Shift+Home');
      for (let c = 0; c < range.end.character; c++) {
        await this.page.keyboard.press('Shift+ArrowRight');
      }
    }
  }

  /** Opens the code action menu (Ctrl+., or the palette command `menu`) and takes the action whose title contains `text`; false when none. */
  async codeAction(texts, menu) {
    if (menu) {
      await this.palette(menu);
    } else {
      await this.page.keyboard.press('Control+.');
    }
    const widget = this.page.locator('.action-widget:not(.action-list-submenu-panel)').first();
    await widget.waitFor({ state: 'visible', timeout: UI_WAIT });
    for (const text of texts) {
      const row = widget.locator('.monaco-list-row', { hasText: text }).first();
      if (await row.count()) {
        await row.click();
        return text;
      }
    }
    const titles = await widget.locator('.monaco-list-row').allInnerTexts();
    await this.page.keyboard.press('Escape');
    throw new Error(`no code action among ${JSON.stringify(texts)}; the menu had ${JSON.stringify(titles)}`);
  }

  /** Closes every editor without saving and puts the repository back as committed. */
  async revert() {
    const page = this.page;
    await page.keyboard.press('Escape');
    await this.palette('View: Close All Editors');
    const dontSave = page.locator('.monaco-dialog-box .monaco-button', { hasText: "Don't Save" });
    for (let i = 0; i < 20; i++) {
      if (process.env.BASIS_E2E_DEBUG_REVERT && i < 3) {
        await this.screenshot('revert', String(i));
      }
      if (await dontSave.count()) {
        await dontSave.first().click();
      }
      if ((await page.locator('.editor-group-container .tab').count()) === 0) {
        break;
      }
      await page.waitForTimeout(250);
    }
    // Until the tree stays clean for a moment (VS Code may still be writing).
    let status = '';
    for (let i = 0; i < 10; i++) {
      execFileSync('git', ['-C', REPO, 'checkout', '-q', '--', '.']);
      execFileSync('git', ['-C', REPO, 'clean', '-qfd']);
      await page.waitForTimeout(500);
      status = execFileSync('git', ['-C', REPO, 'status', '--porcelain'], { encoding: 'utf8' });
      if (status === '') {
        break;
      }
    }
    return status;
  }

  /** Waits until a diff editor shows a Basis proposal (or the command failed); returns what was seen. */
  async waitPreview(from, command) {
    const ev = await waitEvent(
      from,
      (e) => e.event === 'preview' || e.event === 'previewFailed' || (e.event === 'error' && e.command === command),
      `the preview of ${command}`,
    );
    if (ev.event === 'error') {
      throw new Error(`${command} failed: ${ev.message}`);
    }
    if (ev.event === 'previewFailed') {
      throw new Error(`the preview of ${command} failed: ${ev.reason}`);
    }
    const diff = this.page.locator('.monaco-diff-editor').first();
    await diff.waitFor({ state: 'visible', timeout: UI_WAIT });
    // A diff prepared when the command started is filled in now: the proposed
    // text is on screen when its first changed line is drawn, and VS Code
    // colours the differences a little later (a proposal may also only delete).
    const modified = diff.locator('.editor.modified .view-lines').first();
    if (ev.firstChange) {
      await modified
        .filter({ hasText: ev.firstChange.slice(0, 60) })
        .waitFor({ state: 'visible', timeout: 3000 })
        .catch(() => undefined);
    }
    const onScreenAt = Date.now();
    await diff
      .locator('.line-insert, .char-insert, .line-delete, .char-delete')
      .first()
      .waitFor({ state: 'attached', timeout: 3000 })
      .catch(() => undefined);
    const coloredAt = Date.now();
    const tab = await this.page.locator('.tabs-container .tab.active').first().innerText();
    const added = await modified.innerText();
    return { onScreenAt, coloredAt, seen: { tab: tab.trim(), proposalText: added.slice(0, 2000), preview: ev } };
  }

  async choose(choice) {
    await this.palette(choice === 'accept' ? 'Basis: Accept Proposed Change' : 'Basis: Reject Proposed Change');
  }
}

/**
 * From the user's Enter (now): waits for the command's preview, times it,
 * screenshots it, then accepts or rejects it as the step says.
 */
async function previewAndChoose(d, step, result, from, command) {
  const tAsk = Date.now();
  result.askedAt = tAsk;
  const shown = await d.waitPreview(from, command);
  Object.assign(result.seen, shown.seen);
  result.uiMs = shown.onScreenAt - tAsk;
  result.coloredMs = shown.coloredAt - tAsk;
  await d.screenshot(step.name, 'preview');
  await d.choose(step.choice);
  const decided = await waitEvent(from, (e) => e.event === 'decided' && e.label, 'the decision', UI_WAIT);
  result.seen.applied = decided.applied;
}

async function runStep(d, step, index) {
  const page = d.page;
  const from = traceEvents().length;
  const result = { name: step.name, skill: step.skill, choice: step.choice, seen: {} };
  const firstShot = d.shots.length;
  const t0 = Date.now();
  const commandOf = { localize: 'basis/localize', edit: 'basis.edit', testgen: 'basis.testgen', reproduce: 'basis.reproduce', review: 'basis.review' };
  try {
    switch (step.skill) {
      case 'localize': {
        await d.palette('Basis: Localize an Issue');
        await d.answer(step.query);
        const tAsk = Date.now();
        result.askedAt = tAsk;
        const shownEv = await waitEvent(
          from,
          (e) => (e.event === 'shown' && e.what === 'localize') || (e.event === 'error' && e.command === 'basis/localize'),
          'the localize QuickPick',
        );
        if (shownEv.event === 'error') {
          throw new Error(`localize failed: ${shownEv.message}`);
        }
        const rows = d.quickInput().locator('.monaco-list-row');
        await rows.first().waitFor({ state: 'visible', timeout: UI_WAIT });
        result.uiMs = Date.now() - tAsk;
        result.seen.items = (await rows.allInnerTexts()).map((t) => t.replace(/\s+/g, ' ').trim()).slice(0, 10);
        result.seen.title = (await d.quickInput().locator('.quick-input-title').innerText().catch(() => '')).trim();
        await d.screenshot(step.name, 'locations');
        if (step.choice === 'accept') {
          await d.quickInput().locator('input.input').press('Enter');
          const ev = await waitEvent(from, (e) => e.event === 'decided' && e.what === 'localize', 'the opened location', UI_WAIT);
          result.seen.opened = ev.uri;
          await page.locator('.tabs-container .tab.active').first().waitFor({ timeout: UI_WAIT });
          result.seen.tab = (await page.locator('.tabs-container .tab.active').first().innerText()).trim();
        } else {
          await page.keyboard.press('Escape');
          await waitEvent(from, (e) => e.event === 'decided' && e.what === 'localize', 'the dismissal', UI_WAIT);
        }
        await d.screenshot(step.name, step.choice === 'accept' ? 'opened' : 'dismissed');
        break;
      }
      case 'edit':
      case 'testgen': {
        await d.openFile(step.file);
        if (step.skill === 'edit') {
          await d.select(step.range);
        } else {
          await d.goto(step.position);
        }
        // The accepted step goes through the server's code action, the other through the palette.
        if (step.choice === 'accept') {
          // Tests are a source action (source.basis.testgen), not in the Ctrl+. menu.
          result.seen.codeAction =
            step.skill === 'edit'
              ? await d.codeAction(['Basis: edit'])
              : await d.codeAction(['Basis: generate tests'], 'Source Action...');
        } else {
          await d.palette(step.skill === 'edit' ? 'Basis: Edit Selection' : 'Basis: Generate Tests');
        }
        if (step.skill === 'edit') {
          await d.answer(step.instruction);
        }
        await previewAndChoose(d, step, result, from, commandOf[step.skill]);
        if (step.skill === 'testgen' && step.choice === 'accept') {
          const msg = await waitEvent(
            from,
            (e) => e.event === 'message' && /tests? (passed|failed)|timed out|could not run|test run failed/.test(e.message),
            'the sandbox test run',
          );
          result.seen.testRun = msg.message;
          const toast = page.locator('.notification-toast', { hasText: msg.message.slice(0, 40) }).first();
          result.seen.toastVisible = await toast
            .waitFor({ state: 'visible', timeout: 15_000 })
            .then(() => true)
            .catch(() => false);
          const diags = traceEvents().slice(from).filter((e) => e.event === 'diagnostics' && e.items.length);
          result.seen.failureDiagnostics = diags.length ? diags[diags.length - 1].items.length : 0;
        }
        await d.page.waitForTimeout(300);
        await d.screenshot(step.name, step.choice === 'accept' ? 'accepted' : 'rejected');
        break;
      }
      case 'reproduce': {
        await d.palette('Basis: Reproduce an Issue');
        await d.answer(step.issue);
        await previewAndChoose(d, step, result, from, 'basis.reproduce');
        const answer = await waitEvent(from, (e) => e.event === 'answer' && e.command === 'basis.reproduce', 'the answer', UI_WAIT);
        result.seen.reproduced = answer.reproduced;
        result.seen.message = answer.message;
        await d.page.waitForTimeout(300);
        await d.screenshot(step.name, step.choice === 'accept' ? 'accepted' : 'rejected');
        break;
      }
      case 'review': {
        await d.openFile(step.file);
        await d.goto({ line: step.change.line, character: 0 });
        await page.keyboard.press('Shift+End');
        await page.keyboard.press('Shift+Home');
        await page.keyboard.press('Shift+Home');
        await page.keyboard.insertText(step.change.text);
        await d.palette('Basis: Review Uncommitted Changes');
        await d.answer(step.intent ?? '');
        const tAsk = Date.now();
        result.askedAt = tAsk;
        const answer = await waitEvent(
          from,
          (e) => (e.event === 'answer' || e.event === 'error') && e.command === 'basis.review',
          'the review',
        );
        if (answer.event === 'error') {
          throw new Error(`review failed: ${answer.message}`);
        }
        result.uiMs = Date.now() - tAsk;
        result.seen.verdict = answer.verdict;
        result.seen.comments = answer.comments;
        result.seen.statusBar = (await page.locator('.statusbar-item', { hasText: 'Basis review' }).first().innerText().catch(() => '')).trim();
        await d.screenshot(step.name, 'verdict');
        // The verdict is judged from the command palette (the status bar item
        // offers the same); a comment's quick fixes are the server's commands.
        await d.palette(step.choice === 'accept' ? "Basis: The Review's Verdict Is Right" : "Basis: The Review's Verdict Is Wrong");
        await waitEvent(from, (e) => e.event === 'feedback' && e.suggestionId === answer.suggestionId && e.kind !== 'shown', 'the judgement', UI_WAIT);
        await d.page.waitForTimeout(300);
        await d.screenshot(step.name, step.choice === 'accept' ? 'agreed' : 'disagreed');
        break;
      }
      default:
        throw new Error(`unknown skill ${step.skill}`);
    }
  } catch (e) {
    result.error = String(e && e.stack ? e.stack : e);
    log(`step ${step.name} failed: ${result.error}`);
    await d.screenshot(step.name, 'error').catch(() => {});
  }
  const events = traceEvents().slice(from);
  const answer = events.find(
    (e) => (e.event === 'answer' || e.event === 'error') && e.command === commandOf[step.skill],
  );
  if (answer) {
    result.suggestionId = answer.suggestionId;
    result.serverMs = answer.ms;
  }
  if (!result.suggestionId) {
    const shown = events.find((e) => e.event === 'shown' && e.suggestionId);
    result.suggestionId = shown && shown.suggestionId;
  }
  // Where the time between the user's Enter and the suggestion on screen goes:
  // to the extension's command, the request, the extension's showing it.
  const command = events.find((e) => e.event === 'command' && e.command === commandOf[step.skill]);
  const shownEv = events.find((e) => e.event === 'shown' && e.suggestionId && e.suggestionId === result.suggestionId);
  // The first partial answer drawn in a prepared diff (edit: the first line of the replacement).
  const partialEv = events.find((e) => e.event === 'partial');
  if (partialEv) {
    result.firstPartialMs = partialEv.msSinceCommand;
  }
  if (command && shownEv && result.askedAt && result.serverMs !== undefined) {
    result.toCommandMs = command.t - result.askedAt;
    result.extensionMs = shownEv.t - command.t - result.serverMs;
  }
  result.feedbackSent = events.filter((e) => e.event === 'feedback' && e.suggestionId === result.suggestionId).map((e) => e.kind);
  result.screenshots = d.shots.slice(firstShot);
  result.stepMs = Date.now() - t0;
  log(
    `step ${index + 1} ${step.name}: id ${result.suggestionId} ui ${result.uiMs} ms server ${result.serverMs} ms` +
      ` (Enter to command ${result.toCommandMs} ms, extension ${result.extensionMs} ms, first partial ${result.firstPartialMs} ms)${result.error ? ' ERROR' : ''}`,
  );
  try {
    result.revertStatus = await d.revert();
  } catch (e) {
    result.revertError = String(e);
  }
  return result;
}

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const context = await chromium.launchPersistentContext(BROWSER_DIR, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const results = { steps: [], url: URL_ };
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(UI_WAIT);
    await page.goto(`${URL_}/?folder=${encodeURIComponent(REPO)}`);
    await page.locator('.monaco-workbench').waitFor({ timeout: 120_000 });
    const d = new Driver(page);
    await waitEvent(0, (e) => e.event === 'started', 'the Basis language server', 120_000);
    await page.locator('.statusbar-item', { hasText: 'Basis' }).first().waitFor({ timeout: UI_WAIT });
    results.statusBar = (await page.locator('.statusbar-item', { hasText: 'Basis:' }).first().innerText()).trim();
    await d.screenshot('start', 'workbench');
    for (const [i, step] of SCENARIO.steps.entries()) {
      if (ONLY && !ONLY.includes(step.name)) {
        continue;
      }
      log(`step ${i + 1} ${step.name}`);
      results.steps.push(await runStep(d, step, i));
      fs.writeFileSync(RESULTS, JSON.stringify(results, null, 2));
    }
    // Everything the extension reported is on disk before the test reads the store.
    const from = traceEvents().length;
    await d.palette('Basis: Write Pending Feedback to Disk');
    await waitEvent(from, (e) => e.event === 'flushed', 'the feedback flush', UI_WAIT);
    results.statusBarEnd = (await page.locator('.statusbar-item', { hasText: 'Basis:' }).first().innerText().catch(() => '')).trim();
  } finally {
    fs.writeFileSync(RESULTS, JSON.stringify(results, null, 2));
    await context.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
