// Basis for VS Code: starts `basis lsp` and adds the five skills.
//   Basis: Localize an Issue…        ranked locations in a QuickPick, each previewed
//   Basis: Edit Selection…           (and the code action "Basis: edit…") a diff to accept or reject
//   Basis: Generate Tests…           (and the code action) the test file previewed, then run in the sandbox
//   Basis: Reproduce an Issue…       a test run in the sandbox, previewed
//   Basis: Review Uncommitted Changes… comments as diagnostics with quick fixes, verdict in the status bar
// Every suggestion the user sees is reported as `shown`, and what they do with it
// as accepted / partially_accepted / rejected (`basis/feedback`).

import * as fs from 'fs';
import * as path from 'path';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  MessageType,
  RevealOutputChannelOn,
  ServerOptions,
  ShowMessageNotification,
  ApplyWorkspaceEditRequest,
  State,
} from 'vscode-languageclient/node';
import * as logic from './logic';
import { Previews } from './preview';

let client: LanguageClient | undefined;
let log: vscode.LogOutputChannel;
let tests: vscode.OutputChannel;
let status: vscode.StatusBarItem;
let reviewStatus: vscode.StatusBarItem;
/** The last review with a verdict, until the user judges it. */
let lastReview: string | undefined;
let previews: Previews;
const served: { model?: string; version?: string } = {};
/** JSON-RPC error codes of the LSP: the request was cancelled; the documents changed under it. */
const REQUEST_CANCELLED = -32800;
const CONTENT_MODIFIED = -32801;
const shownIds = new Set<string>();
/** When the latest command of each applyEdit label started (for the time to the preview). */
const commandStarts = new Map<string, number>();
const LABELS: Record<string, string> = {
  'basis.edit': 'Basis: edit',
  'basis.testgen': 'Basis: generate tests',
  'basis.reproduce': 'Basis: reproduction test',
};

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration('basis');
}

/** A test and debugging aid: with `BASIS_VSCODE_TRACE` set, every event is appended there as a JSON line. */
function trace(event: Record<string, unknown>): void {
  const line = JSON.stringify({ t: Date.now(), ...event });
  log.info(`event ${line}`);
  const file = process.env.BASIS_VSCODE_TRACE;
  if (file) {
    try {
      fs.appendFileSync(file, `${line}\n`);
    } catch (e) {
      log.warn(`cannot write the trace file ${file}: ${e}`);
    }
  }
}

function feedback(params: Record<string, unknown>): void {
  if (!client || client.state !== State.Running) {
    return;
  }
  void client.sendNotification('basis/feedback', params);
  trace({ event: 'feedback', ...params });
}

function shown(id: string, what: string, extra: Record<string, unknown> = {}): void {
  if (shownIds.has(id)) {
    return;
  }
  shownIds.add(id);
  feedback({ suggestionId: id, kind: 'shown' });
  trace({ event: 'shown', what, suggestionId: id, ...extra });
}

/** The `basis` binary: the `basis.path` setting, else `basis` on PATH. */
export function findBasis(setting: string, envPath: string | undefined): { path?: string; problem?: string } {
  const executable = (p: string) => {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return fs.statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (setting.trim() !== '') {
    const p = setting.trim();
    return executable(p) ? { path: p } : { problem: `the setting basis.path is "${p}", which is not an executable file` };
  }
  for (const dir of (envPath ?? '').split(path.delimiter)) {
    if (dir && executable(path.join(dir, 'basis'))) {
      return { path: path.join(dir, 'basis') };
    }
  }
  return { problem: 'no `basis` binary is on PATH and the setting basis.path is empty' };
}

function updateStatus(): void {
  const c = config();
  status.backgroundColor = client ? undefined : new vscode.ThemeColor('statusBarItem.errorBackground');
  status.text = (client ? '' : '$(error) ') + logic.statusText(
    served.model ?? (c.get<string>('model') || undefined),
    served.version,
    c.get<boolean>('feedback.enabled', true),
    c.get<string>('feedback.level', 'full'),
  );
  const state = !client ? 'not running' : client.state === State.Running ? 'running' : 'starting';
  status.tooltip = new vscode.MarkdownString(
    `**Basis** language server: ${state}\n\nModel: ${served.model ?? 'default'} ${served.version ?? ''}\n\n` +
      `Feedback: ${c.get<boolean>('feedback.enabled', true) ? c.get<string>('feedback.level', 'full') : 'off'}\n\nClick to open the settings.`,
  );
  status.show();
}

async function start(context: vscode.ExtensionContext): Promise<void> {
  const found = findBasis(config().get<string>('path', ''), process.env.PATH);
  if (!found.path) {
    log.error(`cannot start: ${found.problem}`);
    updateStatus();
    void vscode.window
      .showErrorMessage(
        `Basis: cannot start the language server: ${found.problem}. Build it (cargo build --release in the Basis repository) and set "basis.path" to target/release/basis, or put basis on PATH.`,
        'Open Settings',
        'Retry',
      )
      .then((choice) => {
        if (choice === 'Open Settings') {
          void vscode.commands.executeCommand('workbench.action.openSettings', 'basis.path');
        } else if (choice === 'Retry') {
          void start(context);
        }
      });
    return;
  }
  const serverOptions: ServerOptions = { command: found.path, args: ['lsp'] };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file' }],
    initializationOptions: () => logic.initializationOptions((k) => config().get(k)),
    outputChannel: log,
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    middleware: {
      executeCommand: async (command, args, next) => {
        if (command === 'basis.edit' || command === 'basis.testgen') {
          // The code actions: ask what the edit is, then run it as the palette command does.
          const arg = { ...(args[0] ?? {}) };
          if (command === 'basis.edit' && !arg.instruction) {
            const instruction = await askInstruction();
            if (!instruction) {
              return undefined;
            }
            arg.instruction = instruction;
          }
          return runCommand(command, arg);
        }
        const t0 = Date.now();
        const result = await next(command, args);
        trace({ event: 'answer', command, ms: Date.now() - t0, args });
        return result;
      },
      handleDiagnostics: (uri, diagnostics, next) => {
        const ours = diagnostics.filter((d) => d.source === 'basis');
        for (const d of ours) {
          const id = (d as any).data?.suggestionId;
          if (typeof id === 'string') {
            shown(id, 'review comment', { uri: uri.toString() });
          }
        }
        trace({
          event: 'diagnostics',
          uri: uri.toString(),
          items: ours.map((d) => ({
            line: d.range.start.line,
            message: d.message,
            suggestionId: (d as any).data?.suggestionId,
            suggestion: (d as any).data?.suggestion,
          })),
        });
        next(uri, diagnostics);
      },
    },
  };
  const c = new LanguageClient('basis', 'Basis', serverOptions, clientOptions);
  // Registered before start, so that they replace the library's own handlers.
  c.onRequest(ApplyWorkspaceEditRequest.type, (params) => previews.applyEdit(params as any));
  c.onNotification(ShowMessageNotification.type, (m) => showServerMessage(m.type, m.message));
  c.onNotification('basis/partial', (p: { token: string; value?: { replacement?: unknown } }) =>
    previews.partial(p.token, p.value?.replacement),
  );
  c.onNotification('basis/modelChanged', (p: { model: string; version: string }) => {
    served.model = p.model;
    served.version = p.version;
    log.info(`now serving ${p.model} ${p.version}`);
    trace({ event: 'modelChanged', ...p });
    updateStatus();
  });
  client = c;
  updateStatus();
  try {
    await c.start();
    log.info(`started ${found.path} lsp`);
    trace({ event: 'started', server: found.path });
  } catch (e) {
    log.error(`the language server did not start: ${e}`);
    client = undefined;
    void vscode.window
      .showErrorMessage(`Basis: the language server (${found.path} lsp) did not start: ${e}`, 'Show Log', 'Open Settings')
      .then((choice) => {
        if (choice === 'Show Log') {
          log.show();
        } else if (choice === 'Open Settings') {
          void vscode.commands.executeCommand('workbench.action.openSettings', 'basis.path');
        }
      });
  }
  updateStatus();
}

function showServerMessage(type: MessageType, message: string): void {
  log.info(`server: ${message}`);
  trace({ event: 'message', type, message });
  const verdict = logic.reviewVerdict(message);
  if (verdict) {
    reviewStatus.text = `$(${verdict.verdict === 'YES' ? 'pass' : 'warning'}) Basis review: ${verdict.verdict} (${verdict.comments})`;
    reviewStatus.tooltip = message;
    reviewStatus.show();
  }
  if (/tests? (passed|failed)|timed out|could not run|test run failed|reproduce/i.test(message)) {
    tests.appendLine(`[${new Date().toLocaleTimeString()}] ${message}`);
  }
  if (type === MessageType.Error) {
    void vscode.window.showErrorMessage(message);
  } else if (type === MessageType.Warning) {
    void vscode.window.showWarningMessage(message);
  } else {
    void vscode.window.showInformationMessage(message);
  }
}

function running(): LanguageClient | undefined {
  if (client && client.state === State.Running) {
    return client;
  }
  void vscode.window
    .showErrorMessage('Basis: the language server is not running.', 'Show Log', 'Restart')
    .then((choice) => {
      if (choice === 'Show Log') {
        log.show();
      } else if (choice === 'Restart') {
        void vscode.commands.executeCommand('basis.restart');
      }
    });
  return undefined;
}

function askInstruction(): Thenable<string | undefined> {
  return vscode.window.showInputBox({
    title: 'Basis: edit',
    prompt: 'What should change in the selected code?',
    placeHolder: 'e.g. handle an empty list',
    ignoreFocusOut: true,
  });
}

/** Runs a server command with a progress in the status bar and reports its answer. */
async function runCommand(command: string, arg: Record<string, unknown>): Promise<any> {
  const c = running();
  if (!c) {
    return undefined;
  }
  const t0 = Date.now();
  if (LABELS[command]) {
    commandStarts.set(LABELS[command], t0);
  }
  trace({ event: 'command', command });
  // An edit of an open file: its diff opens now, and the answer fills it in.
  // The server streams the replacement into it as the model writes (`partialToken`).
  const slot =
    command === 'basis.edit' && typeof arg.uri === 'string'
      ? previews.prepare(LABELS[command], vscode.Uri.parse(arg.uri), c.protocol2CodeConverter.asRange(arg.range as any))
      : undefined;
  if (slot) {
    arg = { ...arg, partialToken: slot.token };
  }
  let answer: any;
  try {
    answer = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: `Basis: ${command.replace('basis.', '')}…` },
      () => c.sendRequest(ExecuteCommandRequest.type, { command, arguments: [arg] }),
    );
  } catch (e: any) {
    if (slot) {
      previews.release(slot);
    }
    const ms = Date.now() - t0;
    trace({ event: 'error', command, ms, message: e?.message ?? String(e) });
    if (e?.code === CONTENT_MODIFIED) {
      void vscode.window.showWarningMessage(`Basis: the file changed while ${command} ran; run it again on the new text.`);
    } else if (e?.code !== REQUEST_CANCELLED) {
      void vscode.window.showErrorMessage(`Basis: ${command} failed: ${e?.message ?? e}`);
    }
    return undefined;
  }
  const ms = Date.now() - t0;
  log.info(`${command} answered in ${ms} ms`);
  if (answer?.modelVersion) {
    served.version = answer.modelVersion;
    updateStatus();
  }
  const id: string | undefined = answer?.suggestionId;
  trace({
    event: 'answer',
    command,
    ms,
    suggestionId: id,
    testFile: answer?.testFile,
    reproduced: answer?.reproduced,
    verdict: answer?.verdict,
    comments: Array.isArray(answer?.comments) ? answer.comments.length : undefined,
    message: answer?.message,
  });
  if (command === 'basis.reproduce' && answer) {
    tests.appendLine(`[${new Date().toLocaleTimeString()}] Basis: ${answer.message}`);
    if (answer.output) {
      tests.appendLine(String(answer.output));
    }
  }
  if (command === 'basis.review' && answer) {
    if (answer.verdict) {
      reviewStatus.text = `$(${answer.verdict === 'YES' ? 'pass' : 'warning'}) Basis review: ${answer.verdict} (${answer.comments.length})`;
      reviewStatus.tooltip = answer.summary || answer.message;
    } else {
      reviewStatus.text = '$(pass) Basis review: nothing changed';
      reviewStatus.tooltip = answer.message;
      void vscode.window.showInformationMessage(`Basis review: ${answer.message}`);
    }
    reviewStatus.show();
    if (id) {
      shown(id, 'review', { verdict: answer.verdict });
      lastReview = answer.verdict ? id : undefined;
    }
  }
  if (id && (answer?.edit || answer?.testFile)) {
    void previews.answered(LABELS[command] ?? command, answer.edit, answer.testFile, id);
  }
  if (slot) {
    // Without an edit in the answer nothing will fill it (and an edit that
    // went elsewhere has opened its own diff by then).
    setTimeout(() => previews.release(slot), answer?.edit ? 30_000 : 0);
  }
  return answer;
}

async function localizeIssue(): Promise<void> {
  if (!running()) {
    return;
  }
  const query = await vscode.window.showInputBox({
    title: 'Basis: localize an issue',
    prompt: 'Describe the issue; Basis lists where in this workspace it would be fixed.',
    placeHolder: 'e.g. the bulk discount is not given for exactly 10 items',
    ignoreFocusOut: true,
  });
  const c = running();
  if (!query || !c) {
    return;
  }
  const t0 = Date.now();
  trace({ event: 'command', command: 'basis/localize' });
  let result: any;
  try {
    result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'Basis: localizing…', cancellable: true },
      async (_progress, token) => {
        const params = { query, limit: config().get<number>('localize.limit', 10) };
        try {
          return await c.sendRequest('basis/localize', params, token);
        } catch (e: any) {
          // ContentModified: a file changed while the server worked; the
          // answer would point into old text, so ask once more.
          if (e?.code !== CONTENT_MODIFIED || token.isCancellationRequested) {
            throw e;
          }
          trace({ event: 'retry', command: 'basis/localize', reason: e?.message });
          return await c.sendRequest('basis/localize', params, token);
        }
      },
    );
  } catch (e: any) {
    trace({ event: 'error', command: 'basis/localize', ms: Date.now() - t0, message: e?.message ?? String(e) });
    if (e?.code !== REQUEST_CANCELLED) {
      void vscode.window.showErrorMessage(`Basis: localization failed: ${e?.message ?? e}`);
    }
    return;
  }
  const ms = Date.now() - t0;
  log.info(`basis/localize answered in ${ms} ms (${result.ranking} ranking)`);
  trace({ event: 'answer', command: 'basis/localize', ms, suggestionId: result.suggestionId, ranking: result.ranking });
  if (result.modelVersion) {
    served.version = result.modelVersion;
    updateStatus();
  }
  const id: string = result.suggestionId;
  const root = vscode.workspace.workspaceFolders?.[0]?.uri;
  type Item = vscode.QuickPickItem & { uri: vscode.Uri; range: vscode.Range };
  const items: Item[] = (result.locations as any[]).map((l) => {
    const uri = c.protocol2CodeConverter.asUri(l.uri);
    const r = l.range;
    const range = new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character);
    const rel = root ? path.relative(root.fsPath, uri.fsPath) : uri.fsPath;
    return {
      label: `$(file-code) ${rel}:${range.start.line + 1}`,
      description: l.symbol ?? '',
      detail: `score ${Number(l.score).toFixed(2)}`,
      uri,
      range,
    };
  });
  const qp = vscode.window.createQuickPick<Item>();
  qp.title = `Basis: ${items.length} location(s) for “${query}” (${result.ranking})`;
  qp.placeholder = 'Enter opens the location; Escape dismisses the list';
  qp.items = items;
  qp.matchOnDescription = true;
  qp.ignoreFocusOut = true;
  let accepted = false;
  let hidden = false;
  qp.onDidChangeActive((active) => {
    const item = active[0];
    if (item) {
      void vscode.window.showTextDocument(item.uri, { preview: true, preserveFocus: true, selection: item.range });
    }
  });
  qp.onDidAccept(async () => {
    const item = qp.selectedItems[0] ?? qp.activeItems[0];
    if (!item) {
      return;
    }
    accepted = true;
    qp.hide();
    await vscode.window.showTextDocument(item.uri, { preview: false, selection: item.range });
    feedback({ suggestionId: id, kind: 'accepted', uri: c.code2ProtocolConverter.asUri(item.uri) });
    trace({ event: 'decided', what: 'localize', suggestionId: id, choice: 'accept', uri: item.uri.toString(), line: item.range.start.line });
  });
  qp.onDidHide(() => {
    if (hidden) {
      return;
    }
    hidden = true;
    if (!accepted) {
      feedback({ suggestionId: id, kind: 'rejected', reason: 'dismissed' });
      trace({ event: 'decided', what: 'localize', suggestionId: id, choice: 'reject' });
    }
    qp.dispose();
  });
  qp.show();
  shown(id, 'localize', { items: items.length, msSinceCommand: Date.now() - t0 });
}

async function editSelection(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  const c = running();
  if (!editor || !c) {
    return;
  }
  if (editor.selection.isEmpty) {
    void vscode.window.showInformationMessage('Basis: select the code to edit first.');
    return;
  }
  const instruction = await askInstruction();
  if (!instruction) {
    return;
  }
  await runCommand('basis.edit', {
    uri: c.code2ProtocolConverter.asUri(editor.document.uri),
    range: c.code2ProtocolConverter.asRange(editor.selection),
    instruction,
  });
}

async function generateTests(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  const c = running();
  if (!editor || !c) {
    return;
  }
  await runCommand('basis.testgen', {
    uri: c.code2ProtocolConverter.asUri(editor.document.uri),
    position: c.code2ProtocolConverter.asPosition(editor.selection.active),
  });
}

async function reproduceIssue(): Promise<void> {
  if (!running()) {
    return;
  }
  const issue = await vscode.window.showInputBox({
    title: 'Basis: reproduce an issue',
    prompt: 'Describe the issue; Basis writes a test that shows it and runs it in the sandbox.',
    ignoreFocusOut: true,
  });
  if (!issue) {
    return;
  }
  await runCommand('basis.reproduce', { issue });
}

/** Records whether the last review's verdict was right: accepted, or rejected
 * with the reason "disagreed with the verdict" (a review without comments has
 * only its verdict to judge). */
function judgeVerdict(agree: boolean): void {
  if (!lastReview) {
    void vscode.window.showInformationMessage('Basis: there is no review to judge yet.');
    return;
  }
  const id = lastReview;
  lastReview = undefined;
  feedback(agree ? { suggestionId: id, kind: 'accepted' } : { suggestionId: id, kind: 'rejected', reason: 'disagreed with the verdict' });
}

/** The review's status bar item: judge the verdict, or see the comments. */
async function reviewMenu(): Promise<void> {
  const items = [
    ...(lastReview ? [{ label: '$(thumbsup) The verdict is right', id: 'agree' }, { label: '$(thumbsdown) The verdict is wrong', id: 'disagree' }] : []),
    { label: '$(list-unordered) Show the comments (Problems)', id: 'problems' },
  ];
  const pick = await vscode.window.showQuickPick(items, { title: 'Basis review' });
  if (pick?.id === 'agree' || pick?.id === 'disagree') {
    judgeVerdict(pick.id === 'agree');
  } else if (pick?.id === 'problems') {
    await vscode.commands.executeCommand('workbench.actions.view.problems');
  }
}

async function reviewChanges(): Promise<void> {
  if (!running()) {
    return;
  }
  const intent = await vscode.window.showInputBox({
    title: 'Basis: review the uncommitted changes',
    prompt: 'What are the changes meant to do? (optional; Enter to skip)',
    ignoreFocusOut: true,
  });
  if (intent === undefined) {
    return;
  }
  await runCommand('basis.review', intent.trim() ? { intent } : {});
}

/** Waits until the server has written every feedback event sent before to disk. */
async function flushFeedback(): Promise<void> {
  const c = running();
  if (!c) {
    return;
  }
  try {
    await c.sendRequest('basis/feedbackFlush');
  } catch (e: any) {
    trace({ event: 'error', command: 'basis/feedbackFlush', message: e?.message ?? String(e) });
    void vscode.window.showErrorMessage(`Basis: writing the feedback failed: ${e?.message ?? e}`);
    return;
  }
  trace({ event: 'flushed' });
  void vscode.window.setStatusBarMessage('Basis: feedback written', 3000);
}

async function restart(context: vscode.ExtensionContext): Promise<void> {
  const old = client;
  client = undefined;
  if (old) {
    try {
      await old.stop();
    } catch (e) {
      log.warn(`stopping the language server: ${e}`);
    }
  }
  await start(context);
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  log = vscode.window.createOutputChannel('Basis', { log: true });
  tests = vscode.window.createOutputChannel('Basis Tests');
  status = vscode.window.createStatusBarItem('basis.status', vscode.StatusBarAlignment.Right, 100);
  status.name = 'Basis';
  status.command = 'basis.openSettings';
  reviewStatus = vscode.window.createStatusBarItem('basis.review', vscode.StatusBarAlignment.Right, 99);
  reviewStatus.name = 'Basis review';
  reviewStatus.command = 'basis.reviewMenu';
  previews = new Previews(() => client, {
    feedback,
    trace,
    startedAt: (label) => commandStarts.get(label),
  });
  context.subscriptions.push(log, tests, status, reviewStatus, previews);
  const register = (id: string, f: (...args: any[]) => unknown) =>
    context.subscriptions.push(vscode.commands.registerCommand(id, f));
  register('basis.localizeIssue', localizeIssue);
  register('basis.editSelection', editSelection);
  register('basis.generateTests', generateTests);
  register('basis.reproduceIssue', reproduceIssue);
  register('basis.reviewChanges', reviewChanges);
  register('basis.reviewMenu', reviewMenu);
  register('basis.agreeWithReview', () => judgeVerdict(true));
  register('basis.disagreeWithReview', () => judgeVerdict(false));
  register('basis.acceptProposal', () => previews.choose({ kind: 'accept' }));
  register('basis.rejectProposal', () => previews.choose({ kind: 'reject', reason: 'dismissed' }));
  register('basis.showOutput', () => log.show());
  register('basis.flushFeedback', flushFeedback);
  register('basis.openSettings', () => vscode.commands.executeCommand('workbench.action.openSettings', 'basis.'));
  register('basis.restart', () => restart(context));
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration('basis')) {
        return;
      }
      updateStatus();
      if (client && client.state === State.Running) {
        void client.sendNotification(DidChangeConfigurationNotification.type, {
          settings: logic.initializationOptions((k) => config().get(k)),
        });
      }
      if (e.affectsConfiguration('basis.path') || e.affectsConfiguration('basis.feedback.path')) {
        void vscode.window
          .showInformationMessage('Basis: restart the language server for this setting to take effect.', 'Restart')
          .then((choice) => choice === 'Restart' && vscode.commands.executeCommand('basis.restart'));
      }
    }),
  );
  updateStatus();
  await start(context);
}

export async function deactivate(): Promise<void> {
  if (client) {
    await client.stop();
  }
}
