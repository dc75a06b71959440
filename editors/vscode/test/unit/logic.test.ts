// Unit tests of the extension's pure logic (node:test; no VS Code needed).
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import * as logic from '../../src/logic';

test('settings map to the server initializationOptions, leaving out empty strings', () => {
  const settings: Record<string, unknown> = {
    path: '/opt/basis',
    model: '',
    'sampling.temperature': 0,
    'sampling.maxTokens': 48,
    'sampling.seed': 7,
    'localize.candidates': 8,
    'localize.useModel': 'auto',
    'localize.limit': 10,
    'review.onSave': true,
    'prefixCache.maxMegabytes': 128,
    'feedback.enabled': true,
    'feedback.level': 'no_code',
    'feedback.excludeGlobs': ['secret/**', 3],
    'feedback.path': '  ',
    'feedback.undoWindowSeconds': 30,
    'feedback.retainedAfterMinutes': 10,
  };
  const options = logic.initializationOptions((k) => settings[k]);
  assert.deepEqual(options, {
    sampling: { temperature: 0, maxTokens: 48, seed: 7 },
    localize: { candidates: 8, useModel: 'auto' },
    review: { onSave: true },
    prefixCache: { maxMegabytes: 128 },
    feedback: {
      enabled: true,
      level: 'no_code',
      excludeGlobs: ['secret/**'],
      undoWindowSeconds: 30,
      retainedAfterMinutes: 10,
    },
  });
  settings.model = 'smollm2-135m-instruct';
  settings['feedback.path'] = '/tmp/fb.sqlite3';
  const again = logic.initializationOptions((k) => settings[k]);
  assert.equal(again.model, 'smollm2-135m-instruct');
  assert.equal((again.feedback as any).path, '/tmp/fb.sqlite3');
  // Nothing set: only empty sections, so the server keeps its defaults.
  assert.deepEqual(logic.initializationOptions(() => undefined), {
    sampling: {},
    localize: {},
    review: {},
    prefixCache: {},
    feedback: {},
  });
});

test('the status text names the model, its version and the feedback setting', () => {
  assert.equal(logic.statusText('smol', '3', true, 'full'), '$(sparkle) Basis: smol 3 · feedback full');
  assert.equal(logic.statusText(undefined, undefined, false, 'full'), '$(sparkle) Basis: default model · feedback off');
  assert.equal(logic.statusText(undefined, '2', true, 'no_code'), '$(sparkle) Basis: default model 2 · feedback no_code');
});

test('text edits apply with LSP positions (UTF-16, CRLF, past the end)', () => {
  const text = 'def f():\n    return 1\n';
  const e = (l1: number, c1: number, l2: number, c2: number, newText: string) => ({
    range: { start: { line: l1, character: c1 }, end: { line: l2, character: c2 } },
    newText,
  });
  assert.equal(logic.applyTextEdits(text, [e(1, 0, 2, 0, '    return 2\n')]), 'def f():\n    return 2\n');
  assert.equal(logic.applyTextEdits('', [e(0, 0, 0, 0, 'new\n')]), 'new\n');
  // Ranges refer to the original text, whatever their order.
  assert.equal(logic.applyTextEdits('abc', [e(0, 2, 0, 3, 'C'), e(0, 0, 0, 1, 'A')]), 'AbC');
  // A character past the line's end clamps to it (before a CR).
  assert.equal(logic.offsetAt('ab\r\ncd', { line: 0, character: 9 }), 2);
  assert.equal(logic.offsetAt('ab\ncd', { line: 5, character: 0 }), 5);
  // 😀 is two UTF-16 units.
  assert.equal(logic.applyTextEdits('😀x', [e(0, 2, 0, 3, 'y')]), '😀y');
  assert.throws(() => logic.applyTextEdits('abc', [e(0, 0, 0, 2, 'x'), e(0, 1, 0, 3, 'y')]));
});

test('workspace edits split into per-file changes; other operations are not previewed', () => {
  const range = { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } };
  assert.deepEqual(logic.fileChanges({ changes: { 'file:///a.py': [{ range, newText: 'x' }] } }), [
    { uri: 'file:///a.py', create: false, edits: [{ range, newText: 'x' }] },
  ]);
  const created = logic.fileChanges({
    documentChanges: [
      { kind: 'create', uri: 'file:///t.py', options: { ignoreIfExists: true } },
      { textDocument: { uri: 'file:///t.py', version: null }, edits: [{ range, newText: 'test' }] },
    ],
  });
  assert.deepEqual(created, [{ uri: 'file:///t.py', create: true, edits: [{ range, newText: 'test' }] }]);
  assert.equal(logic.fileChanges({ documentChanges: [{ kind: 'rename', oldUri: 'a', newUri: 'b' }] }), undefined);
  assert.equal(logic.fileChanges({}), undefined);
});

test('firstChangedLine names the first proposed line out of place', () => {
  assert.equal(logic.firstChangedLine('a\nb\nc\n', 'a\n  x = 1\nc\n'), 'x = 1');
  assert.equal(logic.firstChangedLine('a\nb\n', 'a\nb\nc\n'), 'c');
  assert.equal(logic.firstChangedLine('a\nb\n', 'a\n'), undefined);
  assert.equal(logic.lineCount('a\nb\n'), 2);
  assert.equal(logic.lineCount('a\nb'), 2);
});

test('the kept fraction counts the proposed lines the final text keeps', () => {
  const original = 'a\nb\nc\n';
  const proposal = 'a\nB\nc\nd\n'; // b → B, d added: 3 changed lines
  assert.equal(logic.keptFraction(original, proposal, proposal), 1);
  assert.equal(logic.keptFraction(original, proposal, original), 0);
  // Keeps B (and the removal of b) but not d.
  assert.equal(logic.keptFraction(original, proposal, 'a\nB\nc\n'), 0.667);
  // Keeps d only.
  assert.equal(logic.keptFraction(original, proposal, 'a\nb\nc\nd\n'), 0.333);
  // Lines the user wrote instead count for nothing.
  assert.equal(logic.keptFraction(original, proposal, 'a\nX\nc\n'), 0.333);
  // A proposal that changes nothing is kept whole.
  assert.equal(logic.keptFraction(original, original, 'z\n'), 1);
  // A new file: every line is added.
  assert.equal(logic.keptFraction('', 'x\ny\n', 'x\n'), 0.5);
  assert.deepEqual(logic.lineDiff('a\nb\n', 'a\nc\nb\n'), { added: ['c'], removed: [] });
});

test('the preview decision: reject, accept as is, accept edited, or refuse to clobber', () => {
  const texts = { original: 'a\nb\n', current: 'a\nb\n', proposal: 'a\nB\n', final: 'a\nB\n' };
  assert.deepEqual(logic.decide({ kind: 'reject' }, texts), {
    answer: { applied: false, failureReason: 'dismissed' },
    write: 'nothing',
  });
  assert.equal(logic.decide({ kind: 'reject', reason: 'closed' }, texts).answer.failureReason, 'closed');
  assert.deepEqual(logic.decide({ kind: 'accept' }, texts), { answer: { applied: true }, write: 'proposal' });
  const edited = logic.decide({ kind: 'accept' }, { ...texts, proposal: 'a\nB\nC\n', final: 'a\nB\n' });
  assert.deepEqual(edited, { answer: { applied: true }, write: 'final', partial: 0.667 });
  const away = logic.decide({ kind: 'accept' }, { ...texts, final: 'a\nb\n' });
  assert.equal(away.answer.applied, false);
  assert.equal(away.write, 'nothing');
  const moved = logic.decide({ kind: 'accept' }, { ...texts, current: 'a\nb\nzz\n' });
  assert.deepEqual(moved.answer, { applied: false, failureReason: 'the file changed during the preview' });
});

test('canonical JSON ignores key order; median; review verdict', () => {
  assert.equal(logic.canonical({ b: 1, a: [{ d: 2, c: null }] }), logic.canonical({ a: [{ c: null, d: 2 }], b: 1 }));
  assert.equal(logic.median([]), undefined);
  assert.equal(logic.median([3, 1, 2]), 2);
  assert.equal(logic.median([4, 1, 2, 3]), 2.5);
  assert.deepEqual(logic.reviewVerdict('Basis review: NO, 2 comment(s)'), { verdict: 'NO', comments: 2 });
  assert.deepEqual(logic.reviewVerdict('Basis review: YES (the model gave no verdict), 0 comment(s)'), {
    verdict: 'YES',
    comments: 0,
  });
  assert.equal(logic.reviewVerdict('Basis: 3 tests passed'), undefined);
});
