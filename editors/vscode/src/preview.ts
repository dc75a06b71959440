// The preview of the server's `workspace/applyEdit`: the proposed text opens in
// a diff editor against the file as it is now (unsaved changes included), where
// the user may edit it; nothing is written until Accept. The answer to the
// server says what the user chose, and an edited proposal is reported as
// `partially_accepted` with the share of it kept.
//
// Opening a diff editor costs VS Code 110-200 ms, so for an edit of an open file
// the diff opens when the command starts (the proposal side holding the file's
// text, titled "writing…") and the answer only fills it in: the proposal is on
// screen a few milliseconds after the server's answer, which carries the edit,
// and the `workspace/applyEdit` that follows finds it already shown.

import * as path from 'path';
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import * as logic from './logic';

export const SCHEME = 'basis-proposal';

/** An in-memory file system for the proposals, so that they can be edited without saving prompts. */
class ProposalFs implements vscode.FileSystemProvider {
  private files = new Map<string, { data: Uint8Array; mtime: number }>();
  private emitter = new vscode.EventEmitter<vscode.FileChangeEvent[]>();
  readonly onDidChangeFile = this.emitter.event;

  set(uri: vscode.Uri, text: string): void {
    this.files.set(uri.path, { data: Buffer.from(text, 'utf8'), mtime: Date.now() });
  }
  text(uri: vscode.Uri): string | undefined {
    const f = this.files.get(uri.path);
    return f ? Buffer.from(f.data).toString('utf8') : undefined;
  }
  delete(uri: vscode.Uri): void {
    this.files.delete(uri.path);
  }

  watch(): vscode.Disposable {
    return new vscode.Disposable(() => undefined);
  }
  stat(uri: vscode.Uri): vscode.FileStat {
    const f = this.files.get(uri.path);
    if (f) {
      return { type: vscode.FileType.File, ctime: f.mtime, mtime: f.mtime, size: f.data.length };
    }
    const dir = uri.path.endsWith('/') ? uri.path : `${uri.path}/`;
    if ([...this.files.keys()].some((k) => k.startsWith(dir))) {
      return { type: vscode.FileType.Directory, ctime: 0, mtime: 0, size: 0 };
    }
    throw vscode.FileSystemError.FileNotFound(uri);
  }
  readDirectory(): [string, vscode.FileType][] {
    return [];
  }
  createDirectory(): void {}
  readFile(uri: vscode.Uri): Uint8Array {
    const f = this.files.get(uri.path);
    if (!f) {
      throw vscode.FileSystemError.FileNotFound(uri);
    }
    return f.data;
  }
  writeFile(uri: vscode.Uri, content: Uint8Array): void {
    this.files.set(uri.path, { data: content, mtime: Date.now() });
    this.emitter.fire([{ type: vscode.FileChangeType.Changed, uri }]);
  }
  rename(): void {
    throw vscode.FileSystemError.NoPermissions('proposals cannot be renamed');
  }
}

interface Pending {
  n: number;
  label: string;
  edit: unknown;
  key: string;
  target: vscode.Uri;
  exists: boolean;
  original: string;
  proposal: string;
  proposalUri: vscode.Uri;
  leftUri: vscode.Uri;
  suggestionId?: string;
  idWaiters: ((id: string | undefined) => void)[];
  done: boolean;
  /** Answers the server's `workspace/applyEdit`; unset while a preview shown from the command's answer waits for it. */
  resolve?: (r: ApplyResult) => void;
  /** The user's choice, kept when it came before the `workspace/applyEdit`. */
  decided?: ApplyResult;
  shownAt: number;
  /** When the edit arrived (the server's `workspace/applyEdit`, or the command's answer). */
  received: number;
  /** `shown` was reported. */
  announced?: boolean;
}

type ApplyResult = { applied: boolean; failureReason?: string };

/** A diff editor opened when a command started, for the proposal to fill in. */
export interface Slot {
  label: string;
  target: vscode.Uri;
  n: number;
  proposalUri: vscode.Uri;
  /** Resolves once the diff editor is open. */
  opened: Promise<unknown>;
  /** A proposal took it over. */
  used: boolean;
  /** Its tab was closed (by the user) or it was released. */
  closed: boolean;
  /** Names it in the command's `partialToken`, for the server's `basis/partial`. */
  token: string;
  /** The file's text before and after the edited range, for the partial answers. */
  around?: { before: string; after: string };
  /** The newest partial text not drawn yet, and the drawing in progress. */
  latest?: string;
  drawing?: Promise<void>;
  /** When the command started, and whether a partial answer was drawn. */
  startedAt: number;
  partialShown: boolean;
}

/** A command's answer waiting for its preview. */
interface Answer {
  key?: string;
  target?: string;
  id: string;
}

function matches(a: Answer, p: { key: string; target: vscode.Uri }): boolean {
  return a.key !== undefined ? a.key === p.key : a.target === p.target.toString();
}

export interface PreviewHooks {
  /** Sends `basis/feedback`. */
  feedback(params: Record<string, unknown>): void;
  /** Writes a trace event (log and, for tests, the trace file). */
  trace(event: Record<string, unknown>): void;
  /** When the command that led to this edit started (for the time to the preview). */
  startedAt(label: string): number | undefined;
}

export class Previews implements vscode.Disposable {
  private fs = new ProposalFs();
  private pending: Pending[] = [];
  private slots: Slot[] = [];
  /** Command answers whose edit has not been previewed yet. */
  private answers: Answer[] = [];
  private counter = 0;
  private disposables: vscode.Disposable[] = [];
  private acceptButton = vscode.window.createStatusBarItem('basis.accept', vscode.StatusBarAlignment.Left, 1000);
  private rejectButton = vscode.window.createStatusBarItem('basis.reject', vscode.StatusBarAlignment.Left, 999);

  constructor(
    private readonly client: () => LanguageClient | undefined,
    private readonly hooks: PreviewHooks,
  ) {
    this.acceptButton.name = 'Basis: accept the proposal';
    this.acceptButton.command = 'basis.acceptProposal';
    this.acceptButton.tooltip = 'Write the proposed change (as you edited it) into the file';
    this.acceptButton.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
    this.rejectButton.name = 'Basis: reject the proposal';
    this.rejectButton.command = 'basis.rejectProposal';
    this.rejectButton.tooltip = 'Drop the proposed change; nothing is written';
    this.disposables.push(
      this.acceptButton,
      this.rejectButton,
      vscode.workspace.registerFileSystemProvider(SCHEME, this.fs, { isCaseSensitive: true }),
      vscode.window.tabGroups.onDidChangeTabs((e) => {
        for (const tab of e.closed) {
          const p = this.pendingOfTab(tab);
          if (p && !p.done) {
            void this.decide(p, { kind: 'reject', reason: 'dismissed' });
          }
          // A "writing…" diff closed by the user: the proposal, when it comes, opens anew.
          const slot = this.slotOfTab(tab);
          if (slot && !slot.used) {
            this.release(slot);
          }
        }
      }),
    );
  }

  dispose(): void {
    for (const p of this.pending) {
      if (!p.done) {
        p.done = true;
        p.resolve?.({ applied: false, failureReason: 'the editor closed' });
      }
    }
    this.disposables.forEach((d) => d.dispose());
  }

  private pendingOfTab(tab: vscode.Tab): Pending | undefined {
    const uri = proposalOfTab(tab);
    return uri === undefined ? undefined : this.pending.find((p) => p.proposalUri.toString() === uri);
  }

  private slotOfTab(tab: vscode.Tab): Slot | undefined {
    const uri = proposalOfTab(tab);
    return uri === undefined ? undefined : this.slots.find((s) => s.proposalUri.toString() === uri);
  }

  /**
   * A command that will propose an edit of `target` starts: when the file is
   * open, its diff editor opens now, so that the proposal only has to be
   * filled in when it comes. `release` it when the command ends without one.
   */
  prepare(label: string, target: vscode.Uri, range?: vscode.Range): Slot | undefined {
    const doc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === target.toString() && !d.isClosed);
    if (!doc) {
      return undefined;
    }
    const n = ++this.counter;
    const name = path.posix.basename(target.path);
    const proposalUri = vscode.Uri.from({ scheme: SCHEME, path: `/${n}/${name}` });
    const text = doc.getText();
    this.fs.set(proposalUri, text);
    const title = `${label}: ${name} ↔ proposal`;
    const slot: Slot = {
      label,
      target,
      n,
      proposalUri,
      opened: Promise.resolve(),
      used: false,
      closed: false,
      token: `basis-proposal-${n}`,
      around: range && {
        before: text.slice(0, doc.offsetAt(range.start)),
        after: text.slice(doc.offsetAt(range.end)),
      },
      startedAt: Date.now(),
      partialShown: false,
    };
    slot.opened = Promise.resolve(
      vscode.commands.executeCommand('vscode.diff', target, proposalUri, title, { preview: false }),
    ).catch(() => undefined);
    this.slots.push(slot);
    this.hooks.trace({ event: 'prepared', label, target: target.toString(), proposal: proposalUri.toString() });
    return slot;
  }

  /**
   * The server's `basis/partial` for a prepared diff: the replacement so far
   * goes into its proposal side (the newest one only, one edit at a time).
   */
  partial(token: string, replacement: unknown): void {
    const slot = this.slots.find((s) => s.token === token);
    if (!slot || slot.used || slot.closed || !slot.around || typeof replacement !== 'string') {
      return;
    }
    slot.latest = slot.around.before + replacement + slot.around.after;
    if (slot.drawing) {
      return;
    }
    slot.drawing = (async () => {
      await slot.opened;
      while (slot.latest !== undefined && !slot.used && !slot.closed) {
        const text = slot.latest;
        slot.latest = undefined;
        const uri = slot.proposalUri.toString();
        const editor = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === uri);
        if (!editor) {
          break;
        }
        const doc = editor.document;
        const all = new vscode.Range(new vscode.Position(0, 0), doc.positionAt(doc.getText().length));
        const ok = await editor.edit((b) => b.replace(all, text), { undoStopBefore: false, undoStopAfter: false });
        if (ok && !slot.partialShown) {
          slot.partialShown = true;
          this.hooks.trace({
            event: 'partial',
            label: slot.label,
            target: slot.target.toString(),
            msSinceCommand: Date.now() - slot.startedAt,
            lines: logic.lineCount(replacement),
          });
        }
      }
      slot.drawing = undefined;
    })();
  }

  /** Closes a prepared diff no proposal took over. */
  release(slot: Slot): void {
    this.slots = this.slots.filter((s) => s !== slot);
    if (slot.used || slot.closed) {
      return;
    }
    this.closeSlot(slot);
  }

  /** Closes a prepared diff's tab and forgets its placeholder text. */
  private closeSlot(slot: Slot): void {
    slot.closed = true;
    void slot.opened.then(async () => {
      const tabs = vscode.window.tabGroups.all
        .flatMap((g) => g.tabs)
        .filter((t) => proposalOfTab(t) === slot.proposalUri.toString());
      if (tabs.length > 0) {
        await vscode.window.tabGroups.close(tabs);
      }
      this.fs.delete(slot.proposalUri);
    });
  }

  /** The prepared, unused diff of `target` (and takes it). */
  private takeSlot(label: string, target: vscode.Uri): Slot | undefined {
    const slot = this.slots.find((s) => !s.used && !s.closed && s.label === label && s.target.toString() === target.toString());
    if (slot) {
      slot.used = true;
      this.slots = this.slots.filter((s) => s !== slot);
    }
    return slot;
  }

  /**
   * A command's answer named its suggestion id and its edit (edit, testgen) or
   * only the file it writes (reproduce): the preview of that edit gets the id,
   * whether it is open already or opens later.
   */
  async answered(label: string, edit: unknown, target: string | undefined, suggestionId: string): Promise<void> {
    const answer = {
      key: edit === undefined ? undefined : logic.canonical(edit),
      target: target === undefined ? undefined : vscode.Uri.parse(target).toString(),
      id: suggestionId,
    };
    const p = this.pending.find((q) => q.suggestionId === undefined && matches(answer, q));
    if (p) {
      this.setId(p, suggestionId);
      return;
    }
    // The answer carries the edit: a prepared diff shows it without waiting
    // for the `workspace/applyEdit`.
    const change = edit === undefined ? undefined : logic.fileChanges(edit);
    if (change?.length === 1 && this.slots.some((s) => s.label === label && s.target.toString() === vscode.Uri.parse(change[0].uri).toString())) {
      const q = await this.propose(label, edit, undefined);
      if (q && 'n' in q) {
        this.setId(q, suggestionId);
        return;
      }
    }
    // Answers whose edit never came (the server could not send it) are dropped in time.
    this.answers = [...this.answers.slice(-19), answer];
  }

  private setId(p: Pending, id: string): void {
    p.suggestionId = id;
    p.idWaiters.splice(0).forEach((w) => w(id));
    this.announce(p);
  }

  /** Reports the proposal `shown` once it is on screen and its id known. */
  private announce(p: Pending): void {
    const id = p.suggestionId;
    if (id === undefined || p.shownAt === 0 || p.announced) {
      return;
    }
    p.announced = true;
    this.hooks.feedback({ suggestionId: id, kind: 'shown' });
    const started = this.hooks.startedAt(p.label);
    this.hooks.trace({
      event: 'shown',
      what: 'preview',
      label: p.label,
      suggestionId: id,
      target: p.target.toString(),
      msSinceCommand: started === undefined ? undefined : p.shownAt - started,
    });
  }

  private waitForId(p: Pending, ms: number): Promise<string | undefined> {
    if (p.suggestionId !== undefined) {
      return Promise.resolve(p.suggestionId);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), ms);
      p.idWaiters.push((id) => {
        clearTimeout(timer);
        resolve(id);
      });
    });
  }

  /** The handler of `workspace/applyEdit`. */
  async applyEdit(params: { label?: string; edit: any }): Promise<ApplyResult> {
    const label = params.label ?? 'Basis';
    // Shown already from the command's answer: this request is what it answers.
    const key = logic.canonical(params.edit);
    const early = this.pending.find((p) => p.resolve === undefined && p.key === key);
    if (early) {
      if (early.decided) {
        this.pending = this.pending.filter((q) => q !== early);
        return early.decided;
      }
      return new Promise((resolve) => {
        early.resolve = resolve;
      });
    }
    const changes = logic.fileChanges(params.edit);
    if (!changes || changes.length !== 1) {
      return this.confirmWhole(label, params.edit);
    }
    let resolve: (r: ApplyResult) => void = () => undefined;
    const result = new Promise<ApplyResult>((r) => {
      resolve = r;
    });
    const p = await this.propose(label, params.edit, resolve);
    return 'n' in p ? result : p;
  }

  /**
   * Shows `edit` (of one file) as a proposal: in the diff prepared for it when
   * there is one, else in a new diff editor. `resolve` answers the server's
   * `workspace/applyEdit`; without it the preview waits for that request.
   */
  private async propose(label: string, edit: any, resolve: ((r: ApplyResult) => void) | undefined): Promise<Pending | ApplyResult> {
    const received = Date.now();
    const change = logic.fileChanges(edit)![0];
    const target = vscode.Uri.parse(change.uri);
    const refuse = (failureReason: string) => {
      this.hooks.trace({ event: 'previewFailed', label, target: target.toString(), reason: failureReason });
      return { applied: false, failureReason };
    };
    // The text the server edited: the open document's (unsaved changes
    // included, even when the file is gone from disk), else the file's.
    let original = '';
    let exists = false;
    const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === target.toString());
    if (open && !open.isClosed) {
      original = open.getText();
      exists = true;
    } else {
      try {
        await vscode.workspace.fs.stat(target);
        exists = true;
      } catch {
        exists = false;
      }
      if (exists) {
        original = (await vscode.workspace.openTextDocument(target)).getText();
      }
    }
    if (!exists && !change.create) {
      return refuse(`${target.fsPath} does not exist`);
    }
    let proposal: string;
    try {
      proposal = logic.applyTextEdits(original, change.edits);
    } catch (e) {
      return refuse(`the edit does not apply: ${e}`);
    }
    const slot = exists ? this.takeSlot(label, target) : undefined;
    const n = slot?.n ?? ++this.counter;
    const name = path.posix.basename(target.path);
    const proposalUri = slot?.proposalUri ?? vscode.Uri.from({ scheme: SCHEME, path: `/${n}/${name}` });
    if (!slot) {
      this.fs.set(proposalUri, proposal);
    }
    let leftUri = target;
    if (!exists) {
      leftUri = vscode.Uri.from({ scheme: SCHEME, path: `/${n}/new/${name}` });
      this.fs.set(leftUri, '');
    }
    const p: Pending = {
      n,
      label,
      edit,
      key: logic.canonical(edit),
      target,
      exists,
      original,
      proposal,
      proposalUri,
      leftUri,
      idWaiters: [],
      done: false,
      resolve,
      shownAt: 0,
      received,
    };
    this.pending.push(p);
    if (slot) {
      await this.fill(p, slot);
    } else {
      await this.show(p);
    }
    return p;
  }

  /** Puts the proposal into the diff prepared for it. */
  private async fill(p: Pending, slot: Slot): Promise<void> {
    await slot.opened;
    // A partial answer being drawn finishes first (its edit would make this one stale).
    await slot.drawing;
    const t0 = Date.now();
    // An edit of the shown model: the proposed text is drawn at once, and VS
    // Code colours the differences after its diff debounce (200 ms). (A new
    // input in the same tab would take 90-180 ms before any text shows.)
    const uri = p.proposalUri.toString();
    const editor = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === uri);
    const doc = editor?.document ?? (await vscode.workspace.openTextDocument(p.proposalUri));
    const all = new vscode.Range(new vscode.Position(0, 0), doc.positionAt(doc.getText().length));
    let filled: boolean;
    if (editor) {
      // The editor's own edit is the shortest way to its model.
      filled = await editor.edit((b) => b.replace(all, p.proposal));
    } else {
      const we = new vscode.WorkspaceEdit();
      we.replace(p.proposalUri, all, p.proposal);
      filled = await vscode.workspace.applyEdit(we);
    }
    if (!filled) {
      // Not editable after all: the usual diff, anew.
      this.closeSlot(slot);
      p.proposalUri = vscode.Uri.from({ scheme: SCHEME, path: `/${p.n}/proposal/${path.posix.basename(p.target.path)}` });
      this.fs.set(p.proposalUri, p.proposal);
      await this.show(p);
      return;
    }
    // Kept in memory, so that the tab shows no unsaved changes.
    void doc.save();
    this.shown(p, { prepared: true, inEditor: editor !== undefined, msFill: Date.now() - t0 });
  }

  private async show(p: Pending): Promise<void> {
    const name = path.posix.basename(p.target.path);
    const title = `${p.label}: ${name}${p.exists ? '' : ' (new file)'} ↔ proposal`;
    const t0 = Date.now();
    await vscode.commands.executeCommand('vscode.diff', p.leftUri, p.proposalUri, title, { preview: false });
    this.shown(p, { prepared: false, msDiff: Date.now() - t0 });
  }

  /** The proposal is on screen. */
  private shown(p: Pending, timing: Record<string, unknown>): void {
    void vscode.commands.executeCommand('setContext', 'basis.proposalPending', true);
    p.shownAt = Date.now();
    this.hooks.trace({
      event: 'preview',
      label: p.label,
      target: p.target.toString(),
      proposal: p.proposalUri.toString(),
      ...timing,
      msSinceEdit: p.shownAt - p.received,
      firstChange: logic.firstChangedLine(p.original, p.proposal),
    });
    const known = this.answers.findIndex((a) => matches(a, p));
    if (known >= 0) {
      const [a] = this.answers.splice(known, 1);
      this.setId(p, a.id);
    }
    this.announce(p);
    this.updateButtons();
  }

  /** The status bar's Accept and Reject, while a proposal waits. */
  private updateButtons(): void {
    const waiting = this.pending.filter((q) => !q.done).length;
    if (waiting === 0) {
      this.acceptButton.hide();
      this.rejectButton.hide();
      return;
    }
    const more = waiting > 1 ? ` (${waiting} waiting)` : '';
    this.acceptButton.text = `$(check) Accept Basis proposal${more}`;
    this.rejectButton.text = '$(close) Reject';
    this.acceptButton.show();
    this.rejectButton.show();
  }

  /** Edits the preview cannot show file by file: VS Code asks for the whole. */
  private async confirmWhole(label: string, edit: any): Promise<{ applied: boolean; failureReason?: string }> {
    const client = this.client();
    if (!client) {
      return { applied: false, failureReason: 'the client stopped' };
    }
    const converted = (await client.protocol2CodeConverter.asWorkspaceEdit(edit)) ?? new vscode.WorkspaceEdit();
    const choice = await vscode.window.showInformationMessage(
      `${label}: apply the proposed change to ${converted.size} file(s)?`,
      { modal: true },
      'Apply',
    );
    if (choice !== 'Apply') {
      return { applied: false, failureReason: 'dismissed' };
    }
    const ok = await vscode.workspace.applyEdit(converted, { isRefactoring: true });
    return ok ? { applied: true } : { applied: false, failureReason: 'VS Code could not apply the edit' };
  }

  /** The proposal the user means: the one in the active editor, else the newest. */
  current(): Pending | undefined {
    const tab = vscode.window.tabGroups.activeTabGroup.activeTab;
    const fromTab = tab && this.pendingOfTab(tab);
    if (fromTab && !fromTab.done) {
      return fromTab;
    }
    const active = vscode.window.activeTextEditor?.document.uri.toString();
    const fromEditor = this.pending.find((p) => !p.done && p.proposalUri.toString() === active);
    return fromEditor ?? [...this.pending].reverse().find((p) => !p.done);
  }

  async choose(choice: logic.Choice): Promise<void> {
    const p = this.current();
    if (!p) {
      void vscode.window.showInformationMessage('Basis: no proposed change is waiting.');
      return;
    }
    await this.decide(p, choice);
  }

  private async decide(p: Pending, choice: logic.Choice): Promise<void> {
    if (p.done) {
      return;
    }
    p.done = true;
    const proposalDoc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === p.proposalUri.toString());
    const final = proposalDoc?.getText() ?? this.fs.text(p.proposalUri) ?? p.proposal;
    // The file as it is now. A document is opened only for a file that
    // existed: an extension's reference keeps a document alive for minutes after
    // its editor closes, and the server would go on seeing a file deleted since.
    let targetDoc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === p.target.toString() && !d.isClosed);
    if (!targetDoc && p.exists) {
      targetDoc = await Promise.resolve(vscode.workspace.openTextDocument(p.target)).catch(() => undefined);
    }
    let current = '';
    if (targetDoc) {
      current = targetDoc.getText();
    } else {
      try {
        current = Buffer.from(await vscode.workspace.fs.readFile(p.target)).toString('utf8');
      } catch {
        current = '';
      }
    }
    const decision = logic.decide(choice, { original: p.original, current, proposal: p.proposal, final });
    let answer = decision.answer;
    if (decision.write !== 'nothing') {
      const ok = await this.write(p, decision.write, final, targetDoc);
      if (!ok) {
        answer = { applied: false, failureReason: 'VS Code could not apply the edit' };
      }
    }
    await this.close(p, proposalDoc);
    if (answer.applied) {
      await vscode.window.showTextDocument(p.target, { preview: false });
    }
    if (p.resolve) {
      p.resolve(answer);
    } else {
      p.decided = answer;
    }
    const id = await this.waitForId(p, 30_000);
    if (answer.applied && decision.partial !== undefined && id !== undefined) {
      this.hooks.feedback({ suggestionId: id, kind: 'partially_accepted', fraction: decision.partial });
    }
    this.hooks.trace({
      event: 'decided',
      label: p.label,
      suggestionId: id,
      choice: choice.kind,
      applied: answer.applied,
      failureReason: answer.failureReason,
      fraction: decision.partial,
      target: p.target.toString(),
    });
    // One decided before its `workspace/applyEdit` came stays until it does.
    this.pending = this.pending.filter((q) => q !== p || q.resolve === undefined);
    this.updateButtons();
    await vscode.commands.executeCommand('setContext', 'basis.proposalPending', this.pending.some((q) => !q.done));
  }

  private async write(
    p: Pending,
    what: 'proposal' | 'final',
    final: string,
    targetDoc: vscode.TextDocument | undefined,
  ): Promise<boolean> {
    if (!targetDoc || !p.exists) {
      // A new file is written with its text at once, so that it is on disk
      // (and the tests that run next see it) whatever VS Code does with the
      // buffer afterwards.
      const we = new vscode.WorkspaceEdit();
      we.createFile(p.target, { overwrite: true, contents: Buffer.from(final, 'utf8') });
      return vscode.workspace.applyEdit(we);
    }
    const client = this.client();
    if (what === 'proposal' && client) {
      const converted = await client.protocol2CodeConverter.asWorkspaceEdit(p.edit as any);
      return converted !== undefined && vscode.workspace.applyEdit(converted);
    }
    const we = new vscode.WorkspaceEdit();
    const end = targetDoc.positionAt(targetDoc.getText().length);
    we.replace(p.target, new vscode.Range(new vscode.Position(0, 0), end), final);
    return vscode.workspace.applyEdit(we);
  }

  private async close(p: Pending, proposalDoc: vscode.TextDocument | undefined): Promise<void> {
    if (proposalDoc?.isDirty) {
      // Saved into memory only, so closing asks nothing.
      await proposalDoc.save();
    }
    const tabs = vscode.window.tabGroups.all.flatMap((g) => g.tabs).filter((t) => this.pendingOfTab(t) === p);
    if (tabs.length > 0) {
      await vscode.window.tabGroups.close(tabs);
    }
    this.fs.delete(p.proposalUri);
    this.fs.delete(p.leftUri);
  }
}

/** The proposal's URI of a diff (or plain) tab, as a string. */
function proposalOfTab(tab: vscode.Tab): string | undefined {
  const input = tab.input;
  const uri =
    input instanceof vscode.TabInputTextDiff
      ? input.modified
      : input instanceof vscode.TabInputText
        ? input.uri
        : undefined;
  return uri?.toString();
}
