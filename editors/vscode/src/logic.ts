// The extension's pure logic, with no VS Code import, so that it can be tested
// with node:test alone: the settings sent to the server, the text a proposed
// edit gives, the share of a proposal the user kept, and what to answer to a
// previewed `workspace/applyEdit`.

/** A reader of settings under `basis.` (VS Code's WorkspaceConfiguration.get). */
export type SettingsReader = (key: string) => unknown;

/**
 * The server's settings (`initializationOptions` and
 * `workspace/didChangeConfiguration`) from the `basis.*` settings. Empty
 * strings (the defaults of `basis.model` and `basis.feedback.path`) are left out,
 * so the server uses its own defaults; `basis.path` and `basis.localize.limit`
 * are the client's alone.
 */
export function initializationOptions(get: SettingsReader): Record<string, unknown> {
  const num = (key: string): number | undefined => {
    const v = get(key);
    return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
  };
  const str = (key: string): string | undefined => {
    const v = get(key);
    return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
  };
  const bool = (key: string): boolean | undefined => {
    const v = get(key);
    return typeof v === 'boolean' ? v : undefined;
  };
  const strings = (key: string): string[] | undefined => {
    const v = get(key);
    return Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : undefined;
  };
  const options: Record<string, unknown> = {
    sampling: compact({
      temperature: num('sampling.temperature'),
      maxTokens: num('sampling.maxTokens'),
      seed: num('sampling.seed'),
    }),
    localize: compact({
      candidates: num('localize.candidates'),
      useModel: str('localize.useModel'),
    }),
    review: compact({ onSave: bool('review.onSave') }),
    prefixCache: compact({ maxMegabytes: num('prefixCache.maxMegabytes') }),
    feedback: compact({
      enabled: bool('feedback.enabled'),
      level: str('feedback.level'),
      excludeGlobs: strings('feedback.excludeGlobs'),
      path: str('feedback.path'),
      undoWindowSeconds: num('feedback.undoWindowSeconds'),
      retainedAfterMinutes: num('feedback.retainedAfterMinutes'),
    }),
  };
  const model = str('model');
  if (model !== undefined) {
    options.model = model;
  }
  return options;
}

function compact(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v !== undefined) {
      out[k] = v;
    }
  }
  return out;
}

/** The text of the status bar item: the model served and the feedback setting. */
export function statusText(
  model: string | undefined,
  version: string | undefined,
  feedbackEnabled: boolean,
  feedbackLevel: string,
): string {
  const served = `${model || 'default model'}${version ? ` ${version}` : ''}`;
  const feedback = feedbackEnabled ? `feedback ${feedbackLevel}` : 'feedback off';
  return `$(sparkle) Basis: ${served} · ${feedback}`;
}

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface TextEdit {
  range: Range;
  newText: string;
}

/** The offset of an LSP position (UTF-16, as JavaScript strings count) in `text`. */
export function offsetAt(text: string, p: Position): number {
  let offset = 0;
  for (let line = 0; line < p.line; line++) {
    const nl = text.indexOf('\n', offset);
    if (nl < 0) {
      return text.length;
    }
    offset = nl + 1;
  }
  let end = text.indexOf('\n', offset);
  if (end < 0) {
    end = text.length;
  }
  if (end > offset && text[end - 1] === '\r') {
    end -= 1;
  }
  return Math.min(offset + p.character, end);
}

/** `text` with `edits` applied (LSP semantics: all ranges refer to the original). */
export function applyTextEdits(text: string, edits: TextEdit[]): string {
  const located = edits
    .map((e, i) => ({ i, start: offsetAt(text, e.range.start), end: offsetAt(text, e.range.end), text: e.newText }))
    .sort((a, b) => a.start - b.start || a.end - b.end || a.i - b.i);
  let out = '';
  let at = 0;
  for (const e of located) {
    if (e.start < at) {
      throw new Error('overlapping edits');
    }
    out += text.slice(at, e.start) + e.text;
    at = Math.max(e.end, e.start);
  }
  return out + text.slice(at);
}

/** One file's change in a `WorkspaceEdit`: its text edits and whether it is created. */
export interface FileChange {
  uri: string;
  create: boolean;
  edits: TextEdit[];
}

/**
 * The per-file changes of an LSP `WorkspaceEdit`, or undefined when it holds
 * anything this preview does not show (renames, deletes), for VS Code's own
 * refactor preview to handle.
 */
export function fileChanges(edit: any): FileChange[] | undefined {
  const byUri = new Map<string, FileChange>();
  const get = (uri: string) => {
    let c = byUri.get(uri);
    if (!c) {
      c = { uri, create: false, edits: [] };
      byUri.set(uri, c);
    }
    return c;
  };
  if (Array.isArray(edit?.documentChanges)) {
    for (const ch of edit.documentChanges) {
      if (ch && ch.kind === 'create' && typeof ch.uri === 'string') {
        get(ch.uri).create = true;
      } else if (ch && ch.kind !== undefined) {
        return undefined;
      } else if (ch && ch.textDocument && Array.isArray(ch.edits)) {
        for (const e of ch.edits) {
          if (!e || !e.range || typeof e.newText !== 'string') {
            return undefined;
          }
          get(ch.textDocument.uri).edits.push({ range: e.range, newText: e.newText });
        }
      } else {
        return undefined;
      }
    }
  } else if (edit?.changes && typeof edit.changes === 'object') {
    for (const [uri, edits] of Object.entries(edit.changes)) {
      if (!Array.isArray(edits)) {
        return undefined;
      }
      for (const e of edits as any[]) {
        get(uri).edits.push({ range: e.range, newText: e.newText });
      }
    }
  } else {
    return undefined;
  }
  return [...byUri.values()];
}

function lines(text: string): string[] {
  if (text === '') {
    return [];
  }
  const ls = text.split('\n');
  if (ls[ls.length - 1] === '') {
    ls.pop();
  }
  return ls.map((l) => l.replace(/\r$/, ''));
}

/** How many lines a text has (a final line without a newline counts). */
export function lineCount(text: string): number {
  return lines(text).length;
}

/** The first line of `b` that is not in place in `a`, trimmed; undefined when `b` only removes lines. */
export function firstChangedLine(a: string, b: string): string | undefined {
  const x = lines(a);
  const y = lines(b);
  let i = 0;
  while (i < x.length && i < y.length && x[i] === y[i]) {
    i++;
  }
  return i < y.length ? y[i].trim() : undefined;
}

/** The lines `b` adds to `a` and the lines it removes, by a longest common subsequence. */
export function lineDiff(a: string, b: string): { added: string[]; removed: string[] } {
  const x = lines(a);
  const y = lines(b);
  // Strip the common head and tail, then an LCS table on what is left.
  let head = 0;
  while (head < x.length && head < y.length && x[head] === y[head]) {
    head++;
  }
  let tail = 0;
  while (tail < x.length - head && tail < y.length - head && x[x.length - 1 - tail] === y[y.length - 1 - tail]) {
    tail++;
  }
  const xs = x.slice(head, x.length - tail);
  const ys = y.slice(head, y.length - tail);
  if (xs.length * ys.length > 4_000_000) {
    // Too large for the table: compare as multisets.
    return multisetDiff(xs, ys);
  }
  const n = xs.length;
  const m = ys.length;
  const t: Uint32Array[] = [];
  for (let i = 0; i <= n; i++) {
    t.push(new Uint32Array(m + 1));
  }
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      t[i][j] = xs[i] === ys[j] ? t[i + 1][j + 1] + 1 : Math.max(t[i + 1][j], t[i][j + 1]);
    }
  }
  const added: string[] = [];
  const removed: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (xs[i] === ys[j]) {
      i++;
      j++;
    } else if (t[i + 1][j] >= t[i][j + 1]) {
      removed.push(xs[i++]);
    } else {
      added.push(ys[j++]);
    }
  }
  removed.push(...xs.slice(i));
  added.push(...ys.slice(j));
  return { added, removed };
}

function multisetDiff(xs: string[], ys: string[]): { added: string[]; removed: string[] } {
  const count = new Map<string, number>();
  for (const l of xs) {
    count.set(l, (count.get(l) ?? 0) + 1);
  }
  const added: string[] = [];
  for (const l of ys) {
    const c = count.get(l) ?? 0;
    if (c > 0) {
      count.set(l, c - 1);
    } else {
      added.push(l);
    }
  }
  const removed: string[] = [];
  for (const [l, c] of count) {
    for (let k = 0; k < c; k++) {
      removed.push(l);
    }
  }
  return { added, removed };
}

function overlap(a: string[], b: string[]): number {
  const count = new Map<string, number>();
  for (const l of a) {
    count.set(l, (count.get(l) ?? 0) + 1);
  }
  let n = 0;
  for (const l of b) {
    const c = count.get(l) ?? 0;
    if (c > 0) {
      count.set(l, c - 1);
      n++;
    }
  }
  return n;
}

/**
 * The share of the proposed change (from `original` to `proposal`) that the
 * user's final text keeps: of the lines the proposal adds and removes, how many
 * the final text adds and removes too. 1 when the proposal changes nothing.
 */
export function keptFraction(original: string, proposal: string, final: string): number {
  const proposed = lineDiff(original, proposal);
  const total = proposed.added.length + proposed.removed.length;
  if (total === 0) {
    return 1;
  }
  const done = lineDiff(original, final);
  const kept = overlap(proposed.added, done.added) + overlap(proposed.removed, done.removed);
  return Math.round((kept / total) * 1000) / 1000;
}

/** What the user did with a previewed proposal. */
export type Choice = { kind: 'accept' } | { kind: 'reject'; reason?: string };

/** What the extension does with the user's choice on a preview. */
export interface Decision {
  /** The answer to the server's `workspace/applyEdit`. */
  answer: { applied: boolean; failureReason?: string };
  /** `proposal`: apply the server's edit as it is; `final`: write the user's version; none. */
  write: 'proposal' | 'final' | 'nothing';
  /** A `partially_accepted` event to send, with the share kept. */
  partial?: number;
}

/**
 * Decides a preview: a rejection answers `applied: false` with the reason
 * (`dismissed` unless given); an acceptance of the proposal as it is applies it;
 * an acceptance of a version the user edited writes that version and reports
 * the share of the proposal kept, unless nothing of it is left or the edited
 * version changes nothing (then it counts as rejected). An original that changed
 * under the preview is not overwritten.
 */
export function decide(
  choice: Choice,
  texts: { original: string; current: string; proposal: string; final: string },
): Decision {
  if (choice.kind === 'reject') {
    return {
      answer: { applied: false, failureReason: choice.reason?.trim() || 'dismissed' },
      write: 'nothing',
    };
  }
  if (texts.current !== texts.original) {
    return {
      answer: { applied: false, failureReason: 'the file changed during the preview' },
      write: 'nothing',
    };
  }
  if (texts.final === texts.proposal) {
    return { answer: { applied: true }, write: 'proposal' };
  }
  const fraction = keptFraction(texts.original, texts.proposal, texts.final);
  if (texts.final === texts.original || fraction === 0) {
    return { answer: { applied: false, failureReason: 'edited away before accepting' }, write: 'nothing' };
  }
  return { answer: { applied: true }, write: 'final', partial: fraction };
}

/** A canonical JSON text (sorted keys), to match an `applyEdit` with a command's answer. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) {
    return `[${v.map(canonical).join(',')}]`;
  }
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** The median of some numbers (undefined for none). */
export function median(xs: number[]): number | undefined {
  if (xs.length === 0) {
    return undefined;
  }
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** The verdict in a server message "Basis review: YES, 2 comment(s)". */
export function reviewVerdict(message: string): { verdict: string; comments: number } | undefined {
  const m = /^Basis review: (YES|NO)\b.*?(\d+) comment/.exec(message);
  return m ? { verdict: m[1], comments: Number(m[2]) } : undefined;
}
