//! The workspace index: every file the repository does not ignore, its symbols,
//! and three BM25 corpora over them for retrieval: file texts, file paths, and
//! symbols.
//!
//! A file's text document holds the identifiers, comments and docstrings of its
//! text; its path document the words of its path. A symbol document's terms are
//! its name (three times), its container, its doc and the identifiers of its
//! body. [`WorkspaceIndex::search`] fuses the three ([`Fusion`]): a file's text
//! score, plus its path's, plus its best symbol's, so that a file whose name or
//! one function matches the issue ranks high even when the rest of its text is
//! about other things; test files and files in no language we parse (docs,
//! changelogs, data) are discounted, since a fix changes code, and the tests
//! that name the code compete with it for every term. The weights were tuned on
//! the train split of localization tasks mined from real repositories
//! (BENCHMARKS.md, "Localization: retrieval against the model").
//!
//! Updating a file replaces its documents in place: term frequencies live with the
//! documents, and the corpus statistics (document frequencies, length sums) are
//! adjusted, so nothing is rebuilt. Postings of removed documents are left behind
//! as dead entries and compacted when they outnumber the live ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::confine::Workspace;
use crate::lang::Language;
use crate::parse::{looks_binary, Limits, ParsedFile, Span};
use crate::symbols::{Symbol, SymbolKind};
use crate::terms::{for_each_term, terms};

/// FNV-1a: term strings are short, and SipHash showed up as a tenth of the build.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf29ce484222325
        } else {
            self.0
        };
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        self.0 = h;
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// A document's term counts before interning.
#[derive(Default)]
struct Counts(FastMap<String, u32>);

impl Counts {
    fn add_text(&mut self, text: &str, times: u32) {
        for_each_term(text, &mut |t| match self.0.get_mut(t) {
            Some(n) => *n += times,
            None => {
                self.0.insert(t.to_string(), times);
            }
        });
    }
}
use crate::CodeError;

/// One indexed file.
#[derive(Debug, Clone)]
pub struct IndexedFile {
    /// Relative to the root, `/`-separated.
    pub path: String,
    pub language: Option<Language>,
    pub symbols: Vec<Symbol>,
    pub bytes: u64,
    /// Why the file's contents were not indexed (too large, binary, unreadable).
    pub skipped: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub current: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileHit {
    pub path: String,
    pub score: f32,
    /// The file's best-matching symbols (up to 3), best first.
    pub symbols: Vec<SymbolHit>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SymbolHit {
    pub path: String,
    pub name: String,
    pub kind: SymbolKind,
    pub container: Option<String>,
    pub span: Span,
    pub score: f32,
}

const K1: f32 = 1.2;
const B: f32 = 0.75;

/// How [`WorkspaceIndex::search`] weighs its evidence into one score per file:
/// `(text·T + path·P + symbol·S) × test × other`, where T, P and S are the
/// file's BM25 scores in the text, path and symbol corpora (S: its best
/// symbol's), `test` applies to test files ([`crate::is_test_path`]) and `other`
/// to files in no language we parse.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fusion {
    pub text: f32,
    pub path: f32,
    pub symbol: f32,
    pub test: f32,
    pub other: f32,
}

impl Default for Fusion {
    /// The weights tuned on mined tasks' train split (see the module docs).
    fn default() -> Self {
        Fusion {
            text: 1.0,
            path: 2.0,
            symbol: 1.0,
            test: 0.02,
            other: 0.02,
        }
    }
}

impl Fusion {
    /// One file's fused score (see [`Fusion`]).
    pub fn score(&self, e: &Evidence) -> f32 {
        let sum = self.text * e.text + self.path * e.in_path + self.symbol * e.symbol;
        sum * if e.test { self.test } else { 1.0 } * if e.code { 1.0 } else { self.other }
    }
}

/// What the index knows about one file's match with a query: the parts
/// [`Fusion`] weighs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub path: String,
    /// BM25 of the file's text.
    pub text: f32,
    /// BM25 of the query's terms in the file's path.
    pub in_path: f32,
    /// BM25 of the file's best-matching symbol.
    pub symbol: f32,
    /// A test file ([`crate::is_test_path`]).
    pub test: bool,
    /// In a language we parse.
    pub code: bool,
}

/// Term ids for strings.
#[derive(Default)]
struct Terms {
    ids: FastMap<String, u32>,
}

impl Terms {
    fn id(&mut self, t: &str) -> u32 {
        if let Some(&id) = self.ids.get(t) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(t.to_string(), id);
        id
    }

    fn get(&self, t: &str) -> Option<u32> {
        self.ids.get(t).copied()
    }
}

struct Doc {
    /// (term, count), sorted by term.
    tf: Vec<(u32, u32)>,
    len: u32,
    /// The file's path, and for symbol documents the symbol's index in the file's
    /// flattened symbol list.
    path: String,
    symbol: Option<usize>,
    alive: bool,
}

/// One BM25 corpus.
#[derive(Default)]
struct Corpus {
    docs: Vec<Doc>,
    postings: FastMap<u32, Vec<u32>>,
    df: FastMap<u32, u32>,
    total_len: u64,
    live: u32,
    dead: u32,
}

impl Corpus {
    fn add(&mut self, counts: Vec<(u32, u32)>, path: &str, symbol: Option<usize>) -> u32 {
        let id = self.docs.len() as u32;
        let mut tf = counts;
        tf.sort_unstable();
        let len: u32 = tf.iter().map(|(_, c)| c).sum();
        for (t, _) in &tf {
            self.postings.entry(*t).or_default().push(id);
            *self.df.entry(*t).or_default() += 1;
        }
        self.total_len += len as u64;
        self.live += 1;
        self.docs.push(Doc {
            tf,
            len,
            path: path.to_string(),
            symbol,
            alive: true,
        });
        id
    }

    fn remove(&mut self, id: u32) {
        let doc = &mut self.docs[id as usize];
        if !doc.alive {
            return;
        }
        doc.alive = false;
        for (t, _) in &doc.tf {
            if let Some(n) = self.df.get_mut(t) {
                *n -= 1;
            }
        }
        self.total_len -= doc.len as u64;
        doc.tf = Vec::new();
        self.live -= 1;
        self.dead += 1;
        if self.dead > 1024 && self.dead > self.live {
            let docs = &self.docs;
            for list in self.postings.values_mut() {
                list.retain(|d| docs[*d as usize].alive);
            }
            self.postings.retain(|_, l| !l.is_empty());
            self.dead = 0;
        }
    }

    /// BM25 scores of the live documents matching any of `query` (term ids).
    fn score(&self, query: &[u32]) -> FastMap<u32, f32> {
        let mut scores: FastMap<u32, f32> = FastMap::default();
        if self.live == 0 {
            return scores;
        }
        let n = self.live as f32;
        let avg = (self.total_len as f32 / n).max(1.0);
        for t in query {
            let df = *self.df.get(t).unwrap_or(&0) as f32;
            if df == 0.0 {
                continue;
            }
            let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
            for &d in self.postings.get(t).map(Vec::as_slice).unwrap_or(&[]) {
                let doc = &self.docs[d as usize];
                if !doc.alive {
                    continue;
                }
                let Ok(i) = doc.tf.binary_search_by_key(t, |(term, _)| *term) else {
                    continue;
                };
                let f = doc.tf[i].1 as f32;
                let s = idf * f * (K1 + 1.0) / (f + K1 * (1.0 - B + B * doc.len as f32 / avg));
                *scores.entry(d).or_default() += s;
            }
        }
        scores
    }
}

/// A file's entry: what was indexed and its documents.
struct Entry {
    file: IndexedFile,
    flat: Vec<Symbol>,
    file_doc: u32,
    path_doc: u32,
    symbol_docs: Vec<u32>,
}

/// See the module docs.
pub struct WorkspaceIndex {
    workspace: Workspace,
    limits: Limits,
    terms: Terms,
    files: HashMap<String, Entry>,
    file_corpus: Corpus,
    path_corpus: Corpus,
    symbol_corpus: Corpus,
}

/// What reading and parsing one file produced (computed in parallel).
struct Analyzed {
    file: IndexedFile,
    flat: Vec<Symbol>,
    file_terms: Counts,
    path_terms: Counts,
    symbol_terms: Vec<Counts>,
}

/// Bytes of a file's text that go into its document.
const MAX_TEXT_TERMS_BYTES: usize = 256 << 10;
/// Bytes of a symbol's body that go into its document.
const MAX_SYMBOL_BODY_BYTES: usize = 16 << 10;

/// Symbols depth first, without their children, each with whether it had any.
fn flatten(symbols: &[Symbol], out: &mut Vec<(Symbol, bool)>) {
    for s in symbols {
        let copy = Symbol {
            children: Vec::new(),
            ..s.clone()
        };
        out.push((copy, !s.children.is_empty()));
        flatten(&s.children, out);
    }
}

fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn analyze(
    rel: &str,
    text: Option<&str>,
    bytes: u64,
    skipped: Option<String>,
    limits: &Limits,
) -> Analyzed {
    let language = Language::from_path(Path::new(rel));
    let mut file_terms = Counts::default();
    let mut path_terms = Counts::default();
    path_terms.add_text(rel, 1);
    let (mut symbols, mut flat, mut symbol_terms) = (Vec::new(), Vec::new(), Vec::new());
    let mut skipped = skipped;
    if let Some(text) = text {
        if let Some(lang) = language {
            let parsed = ParsedFile::parse(lang, text, limits);
            if let Some(reason) = parsed.skipped() {
                skipped = Some(format!("not parsed: {reason}"));
            }
            symbols = parsed.symbols(text);
            flatten(&symbols, &mut flat);
        }
        for (s, has_children) in &flat {
            let mut t = Counts::default();
            t.add_text(&s.name, 3);
            if let Some(c) = &s.container {
                t.add_text(c, 1);
            }
            if let Some(d) = &s.doc {
                t.add_text(d, 1);
            }
            // A class's or module's members are documents of their own; its body
            // would count their text twice.
            if !has_children {
                let body = text.get(s.span.start_byte..s.span.end_byte).unwrap_or("");
                t.add_text(prefix(body, MAX_SYMBOL_BODY_BYTES), 1);
            }
            symbol_terms.push(t);
        }
        file_terms.add_text(prefix(text, MAX_TEXT_TERMS_BYTES), 1);
    }
    let flat: Vec<Symbol> = flat.into_iter().map(|(s, _)| s).collect();
    Analyzed {
        file: IndexedFile {
            path: rel.to_string(),
            language,
            symbols,
            bytes,
            skipped,
        },
        flat,
        file_terms,
        path_terms,
        symbol_terms,
    }
}

fn read_and_analyze(root: &Path, rel: &str, limits: &Limits) -> Analyzed {
    let path = root.join(rel);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if bytes > limits.max_index_bytes {
        let reason = format!(
            "{bytes} bytes, over the index limit of {}",
            limits.max_index_bytes
        );
        return analyze(rel, None, bytes, Some(reason), limits);
    }
    match std::fs::read(&path) {
        Ok(data) if looks_binary(&data) => analyze(rel, None, bytes, Some("binary".into()), limits),
        Ok(data) => {
            let text = String::from_utf8(data).expect("looks_binary checked UTF-8");
            analyze(rel, Some(&text), bytes, None, limits)
        }
        Err(e) => analyze(rel, None, bytes, Some(format!("unreadable: {e}")), limits),
    }
}

fn walker(root: &Path) -> ignore::WalkBuilder {
    let mut b = ignore::WalkBuilder::new(root);
    b.hidden(true)
        .git_ignore(true)
        .git_exclude(true)
        .ignore(true)
        .require_git(false)
        .filter_entry(|e| e.file_name() != ".git");
    b
}

impl WorkspaceIndex {
    /// An empty index of the workspace at `root` (see [`Workspace::new`]).
    pub fn new(root: PathBuf, limits: Limits) -> Self {
        Self {
            workspace: Workspace::new(&root),
            limits,
            terms: Terms::default(),
            files: HashMap::new(),
            file_corpus: Corpus::default(),
            path_corpus: Corpus::default(),
            symbol_corpus: Corpus::default(),
        }
    }

    /// Lists and indexes the files under `root` (see the module docs), reporting
    /// progress at most every 50 ms; stops with `Cancelled` when `cancel` is set.
    pub fn build(
        root: PathBuf,
        limits: Limits,
        progress: &mut dyn FnMut(&Progress),
        cancel: &AtomicBool,
    ) -> Result<WorkspaceIndex, CodeError> {
        let meta = std::fs::metadata(&root).map_err(|source| CodeError::Io {
            path: root.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(CodeError::Io {
                path: root.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let mut index = WorkspaceIndex::new(root, limits);
        let workspace = index.workspace.clone();
        let mut paths: Vec<String> = Vec::new();
        // The walk does not follow links, so what it lists is inside by
        // construction; a link to a file inside is indexed as its target.
        for entry in walker(workspace.root()).build() {
            if cancel.load(Ordering::Relaxed) {
                return Err(CodeError::Cancelled);
            }
            let Ok(entry) = entry else { continue };
            if entry.file_type().is_some_and(|t| t.is_file()) {
                if let Some(rel) = workspace.lexical(entry.path()).filter(|r| !r.is_empty()) {
                    paths.push(rel);
                }
            }
        }
        paths.sort();
        let total = paths.len();
        progress(&Progress {
            done: 0,
            total,
            current: None,
        });
        let mut last = Instant::now();
        for chunk in paths.chunks(64) {
            if cancel.load(Ordering::Relaxed) {
                return Err(CodeError::Cancelled);
            }
            let analyzed: Vec<Analyzed> = chunk
                .par_iter()
                .map(|rel| read_and_analyze(workspace.root(), rel, &index.limits))
                .collect();
            for a in analyzed {
                index.insert(a);
            }
            if last.elapsed() >= Duration::from_millis(50) {
                last = Instant::now();
                progress(&Progress {
                    done: index.files.len(),
                    total,
                    current: chunk.last().cloned(),
                });
            }
        }
        progress(&Progress {
            done: total,
            total,
            current: None,
        });
        Ok(index)
    }

    fn insert(&mut self, a: Analyzed) {
        let path = a.file.path.clone();
        self.remove(&path);
        let terms = &mut self.terms;
        let mut intern = |c: Counts| -> Vec<(u32, u32)> {
            c.0.into_iter().map(|(t, n)| (terms.id(&t), n)).collect()
        };
        let file_counts = intern(a.file_terms);
        let path_counts = intern(a.path_terms);
        let symbol_counts: Vec<Vec<(u32, u32)>> =
            a.symbol_terms.into_iter().map(&mut intern).collect();
        let file_doc = self.file_corpus.add(file_counts, &path, None);
        let path_doc = self.path_corpus.add(path_counts, &path, None);
        let symbol_docs = symbol_counts
            .into_iter()
            .enumerate()
            .map(|(i, c)| self.symbol_corpus.add(c, &path, Some(i)))
            .collect();
        self.files.insert(
            path,
            Entry {
                file: a.file,
                flat: a.flat,
                file_doc,
                path_doc,
                symbol_docs,
            },
        );
    }

    /// (Re)indexes a file from text the caller holds (an open editor buffer).
    pub fn update_text(&mut self, rel_path: &str, text: &str) {
        let a = analyze(rel_path, Some(text), text.len() as u64, None, &self.limits);
        self.insert(a);
    }

    /// Re-reads a file from disk after a save or a change on disk: re-indexes it,
    /// or drops it when it is gone or now ignored. A path that resolves outside
    /// the workspace (a link pointing out, `..`) is never read; if the index held
    /// a file by that name (since replaced by such a link), it is dropped. A link
    /// to a file inside refreshes that file, under its own path.
    pub fn refresh_path(&mut self, abs_path: &Path) {
        let inside = match self.workspace.locate(abs_path) {
            Ok(inside) if !inside.rel.is_empty() => inside,
            Ok(_) => return,
            Err(_) => {
                if let Some(rel) = self.workspace.lexical(abs_path) {
                    self.remove(&rel);
                }
                return;
            }
        };
        if !inside.path.is_file() || self.is_ignored(&inside.path) {
            self.remove(&inside.rel);
            return;
        }
        let a = read_and_analyze(self.workspace.root(), &inside.rel, &self.limits);
        self.insert(a);
    }

    /// Whether the walk would skip `path` (ignore files, hidden components, .git).
    fn is_ignored(&self, path: &Path) -> bool {
        let Some(parent) = path.parent() else {
            return true;
        };
        // Walk only the file's directory, one level, with the same rules.
        let mut b = walker(parent);
        b.max_depth(Some(1));
        let listed = b.build().filter_map(Result::ok).any(|e| e.path() == path);
        if !listed {
            return true;
        }
        // The directories above must not be ignored either.
        let Some(rel) = self.workspace.lexical(path) else {
            return true;
        };
        let rel = Path::new(&rel);
        let mut dir = self.workspace.root().to_path_buf();
        for comp in rel.parent().into_iter().flat_map(|p| p.components()) {
            let name = comp.as_os_str().to_string_lossy();
            if name.starts_with('.') {
                return true;
            }
            let mut b = walker(&dir);
            b.max_depth(Some(1));
            let next = dir.join(comp);
            if !b.build().filter_map(Result::ok).any(|e| e.path() == next) {
                return true;
            }
            dir = next;
        }
        false
    }

    pub fn remove(&mut self, rel_path: &str) {
        if let Some(e) = self.files.remove(rel_path) {
            self.file_corpus.remove(e.file_doc);
            self.path_corpus.remove(e.path_doc);
            for d in e.symbol_docs {
                self.symbol_corpus.remove(d);
            }
        }
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        self.workspace.root()
    }

    /// The workspace boundary of this index.
    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    pub fn symbol_count(&self) -> usize {
        self.files.values().map(|e| e.flat.len()).sum()
    }

    pub fn files(&self) -> impl Iterator<Item = &IndexedFile> {
        self.files.values().map(|e| &e.file)
    }

    pub fn file(&self, rel_path: &str) -> Option<&IndexedFile> {
        self.files.get(rel_path).map(|e| &e.file)
    }

    /// Files whose contents were not indexed, with the reason, sorted by path.
    pub fn skipped_files(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .files
            .values()
            .filter_map(|e| Some((e.file.path.as_str(), e.file.skipped.as_deref()?)))
            .collect();
        v.sort();
        v
    }

    fn symbol_hit(&self, path: &str, i: usize, score: f32) -> Option<SymbolHit> {
        let s = self.files.get(path)?.flat.get(i)?;
        Some(SymbolHit {
            path: path.to_string(),
            name: s.name.clone(),
            kind: s.kind,
            container: s.container.clone(),
            span: s.span,
            score,
        })
    }

    /// Symbols whose name, container, doc or body holds the identifier `name`
    /// (the index's whole-identifier term, case-insensitive), as (path, symbol),
    /// sorted by path and position. [`crate::related`] narrows them down to
    /// definitions and callers.
    pub fn symbols_with_identifier(&self, name: &str) -> Vec<(&str, &Symbol)> {
        let whole = name.to_lowercase();
        let Some(t) = terms(name)
            .into_iter()
            .find(|t| *t == whole)
            .and_then(|t| self.terms.get(&t))
        else {
            return Vec::new();
        };
        let mut out: Vec<(&str, usize, &Symbol)> = self
            .symbol_corpus
            .postings
            .get(&t)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|d| &self.symbol_corpus.docs[*d as usize])
            .filter(|doc| doc.alive)
            .filter_map(|doc| {
                let i = doc.symbol?;
                let s = self.files.get(&doc.path)?.flat.get(i)?;
                Some((doc.path.as_str(), i, s))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0).then(a.1.cmp(&b.1)));
        out.into_iter().map(|(p, _, s)| (p, s)).collect()
    }

    /// Files for a query, best first, each with its best symbols, by the
    /// default [`Fusion`] (module docs).
    pub fn search(&self, query: &str, limit: usize) -> Vec<FileHit> {
        self.search_with(query, limit, &Fusion::default())
    }

    /// [`Self::search`] with other weights.
    pub fn search_with(&self, query: &str, limit: usize, fusion: &Fusion) -> Vec<FileHit> {
        let mut hits: Vec<FileHit> = self
            .matches(query)
            .into_iter()
            .map(|(evidence, symbols)| FileHit {
                score: fusion.score(&evidence),
                path: evidence.path,
                symbols,
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.path.cmp(&b.path))
        });
        hits.truncate(limit);
        hits
    }

    /// Every file that matches any term of `query`, with the evidence
    /// [`Fusion`] weighs, sorted by path: what tuning the weights needs.
    pub fn evidence(&self, query: &str) -> Vec<Evidence> {
        self.matches(query).into_iter().map(|(e, _)| e).collect()
    }

    /// The files matching `query`, sorted by path, each with its evidence and
    /// its best symbols (up to 3, best first).
    fn matches(&self, query: &str) -> Vec<(Evidence, Vec<SymbolHit>)> {
        let mut q: Vec<u32> = terms(query)
            .iter()
            .filter_map(|t| self.terms.get(t))
            .collect();
        q.sort_unstable();
        q.dedup();
        fn by_path<'a>(corpus: &'a Corpus, q: &[u32]) -> HashMap<&'a str, f32> {
            corpus
                .score(q)
                .into_iter()
                .map(|(d, s)| (corpus.docs[d as usize].path.as_str(), s))
                .collect()
        }
        let text = by_path(&self.file_corpus, &q);
        let in_path = by_path(&self.path_corpus, &q);
        let mut by_file: HashMap<&str, Vec<(usize, f32)>> = HashMap::new();
        for (d, s) in self.symbol_corpus.score(&q) {
            let doc = &self.symbol_corpus.docs[d as usize];
            by_file
                .entry(doc.path.as_str())
                .or_default()
                .push((doc.symbol.unwrap_or(0), s));
        }
        let mut paths: Vec<&str> = text.keys().chain(in_path.keys()).copied().collect();
        paths.extend(by_file.keys().copied());
        paths.sort_unstable();
        paths.dedup();
        paths
            .into_iter()
            .map(|path| {
                let mut syms = by_file.remove(path).unwrap_or_default();
                syms.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let file = self.files.get(path);
                let evidence = Evidence {
                    path: path.to_string(),
                    text: text.get(path).copied().unwrap_or(0.0),
                    in_path: in_path.get(path).copied().unwrap_or(0.0),
                    symbol: syms.first().map(|s| s.1).unwrap_or(0.0),
                    test: crate::is_test_path(path),
                    code: file.is_some_and(|e| e.file.language.is_some()),
                };
                let symbols = syms
                    .iter()
                    .take(3)
                    .filter_map(|(i, s)| self.symbol_hit(path, *i, *s))
                    .collect();
                (evidence, symbols)
            })
            .collect()
    }

    /// Symbols whose names match `query`: exact, then prefix, then substring, then
    /// subsequence matches (case-insensitive), shorter names first within each.
    pub fn workspace_symbols(&self, query: &str, limit: usize) -> Vec<SymbolHit> {
        let q = query.to_lowercase();
        let rank = |name: &str| -> Option<u8> {
            if q.is_empty() {
                return Some(0);
            }
            let n = name.to_lowercase();
            if n == q {
                Some(0)
            } else if n.starts_with(&q) {
                Some(1)
            } else if n.contains(&q) {
                Some(2)
            } else {
                let mut it = n.chars();
                q.chars().all(|c| it.any(|x| x == c)).then_some(3)
            }
        };
        let mut found: Vec<(u8, usize, &str, usize)> = Vec::new();
        let mut paths: Vec<&String> = self.files.keys().collect();
        paths.sort();
        for path in paths {
            for (i, s) in self.files[path].flat.iter().enumerate() {
                if let Some(r) = rank(&s.name) {
                    found.push((r, s.name.len(), path.as_str(), i));
                }
            }
        }
        found.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.cmp(b.2))
                .then(a.3.cmp(&b.3))
        });
        found
            .into_iter()
            .take(limit)
            .filter_map(|(r, _, path, i)| self.symbol_hit(path, i, 1.0 / (1.0 + r as f32)))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "http/parser.py", "def parse_header(line):\n    \"\"\"Parse one HTTP request header line.\"\"\"\n    name, value = line.split(':', 1)\n    return name.strip(), value.strip()\n");
        write(
            r,
            "http/client.py",
            "class Client:\n    def get(self, url):\n        return self.send('GET', url)\n",
        );
        write(
            r,
            "db/models.py",
            "class User:\n    def save(self):\n        pass\n",
        );
        write(r, "README.md", "A small web framework.\n");
        write(r, ".gitignore", "build/\n*.log\n");
        write(r, "build/generated.py", "def parse_header():\n    pass\n");
        write(r, "debug.log", "parse header request");
        write(r, ".hidden/secret.py", "def parse_header(): pass\n");
        dir
    }

    fn build(root: &Path) -> WorkspaceIndex {
        let never = AtomicBool::new(false);
        WorkspaceIndex::build(root.to_path_buf(), Limits::default(), &mut |_| {}, &never).unwrap()
    }

    #[test]
    fn the_index_honours_ignore_files_and_hidden_paths() {
        let dir = fixture();
        let idx = build(dir.path());
        let mut paths: Vec<&str> = idx.files().map(|f| f.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "README.md",
                "db/models.py",
                "http/client.py",
                "http/parser.py"
            ]
        );
        assert_eq!(idx.symbol_count(), 5);
    }

    #[test]
    fn search_ranks_the_right_file_first() {
        let dir = fixture();
        let idx = build(dir.path());
        let hits = idx.search("parse the http request header", 10);
        assert_eq!(hits[0].path, "http/parser.py");
        assert_eq!(hits[0].symbols[0].name, "parse_header");
        assert_eq!(hits[0].symbols[0].span.start.row, 0);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        let hits = idx.search("saving a user", 1);
        assert_eq!(hits[0].path, "db/models.py");
        assert!(idx.search("zebra quantum", 5).is_empty());
    }

    /// The files of a workspace made of `files`, ranked for `query` by `fusion`.
    fn ranked(files: &[(&str, &str)], query: &str, fusion: &Fusion) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            write(dir.path(), path, text);
        }
        let idx = build(dir.path());
        idx.search_with(query, 10, fusion)
            .into_iter()
            .map(|h| h.path)
            .collect()
    }

    #[test]
    fn the_path_decides_between_files_of_the_same_text() {
        let body = "def total(items):\n    return sum(items)\n";
        let files = [("alpha/other.py", body), ("zeta/invoice.py", body)];
        let query = "the invoice total is wrong";
        assert_eq!(
            ranked(&files, query, &Fusion::default())[0],
            "zeta/invoice.py"
        );
        // Without the path's evidence the two tie, and the tie goes by path.
        let no_path = Fusion {
            path: 0.0,
            ..Fusion::default()
        };
        assert_eq!(ranked(&files, query, &no_path)[0], "alpha/other.py");
    }

    #[test]
    fn the_best_symbol_decides_against_a_short_file_that_mentions_the_terms() {
        // The refund function is one of many in a long module; the note is short,
        // so its text scores higher on its own.
        let mut long = String::from("def refund_order(order):\n    return order.refund()\n");
        for i in 0..30 {
            long.push_str(&format!("def helper_{i}(x):\n    return x + {i}\n"));
        }
        let files = [
            ("shop/orders.py", long.as_str()),
            ("shop/note.py", "# refund order\nVALUE = 1\n"),
        ];
        let query = "the refund of an order fails";
        let text_only = Fusion {
            path: 0.0,
            symbol: 0.0,
            ..Fusion::default()
        };
        assert_eq!(ranked(&files, query, &text_only)[0], "shop/note.py");
        assert_eq!(
            ranked(&files, query, &Fusion::default())[0],
            "shop/orders.py"
        );
    }

    #[test]
    fn tests_and_files_in_no_language_are_discounted() {
        let files = [
            (
                "tests/test_pricing.py",
                "def test_discount():\n    assert discount(5) == discount(5)\n    discount(200)\n",
            ),
            ("CHANGES.rst", "Fixed the discount of prices, the discount discount.\n"),
            (
                "shop/pricing.py",
                "def price(p, d):\n    return p - discount(d)\n\n\ndef other(a, b, c, e, f):\n    return a + b + c + e + f\n",
            ),
        ];
        // The test names `discount` most often, and only the changelog says
        // `prices`: each would come first if it were not discounted.
        let query = "the discount of prices is wrong";
        assert_eq!(
            ranked(&files, query, &Fusion::default())[0],
            "shop/pricing.py"
        );
        let tests_counted = Fusion {
            test: 1.0,
            ..Fusion::default()
        };
        assert_eq!(
            ranked(&files, query, &tests_counted)[0],
            "tests/test_pricing.py"
        );
        let others_counted = Fusion {
            other: 1.0,
            ..Fusion::default()
        };
        assert_eq!(ranked(&files, query, &others_counted)[0], "CHANGES.rst");
    }

    #[test]
    fn updates_refreshes_and_removals_follow_the_files() {
        let dir = fixture();
        let mut idx = build(dir.path());
        idx.update_text("db/models.py", "def compute_invoice_total(): pass\n");
        assert_eq!(idx.search("invoice total", 1)[0].path, "db/models.py");
        assert!(idx.workspace_symbols("save", 10).is_empty());
        write(
            dir.path(),
            "billing/tax.py",
            "def vat_rate(country): pass\n",
        );
        idx.refresh_path(&dir.path().join("billing/tax.py"));
        assert_eq!(
            idx.search("vat rate for a country", 1)[0].path,
            "billing/tax.py"
        );
        std::fs::remove_file(dir.path().join("billing/tax.py")).unwrap();
        idx.refresh_path(&dir.path().join("billing/tax.py"));
        assert!(idx.file("billing/tax.py").is_none());
        write(dir.path(), "build/new.py", "def ignored(): pass\n");
        idx.refresh_path(&dir.path().join("build/new.py"));
        assert!(idx.file("build/new.py").is_none());
        idx.refresh_path(Path::new("/elsewhere/x.py"));
        // Many updates: statistics stay consistent and dead postings are compacted.
        for i in 0..3000 {
            idx.update_text("churn.py", &format!("def churn_{i}(): pass\n"));
        }
        assert_eq!(idx.workspace_symbols("churn_2999", 5)[0].name, "churn_2999");
        assert_eq!(idx.search("churn_2999", 1)[0].path, "churn.py");
        assert!(idx
            .search("churn_17", 3)
            .iter()
            .all(|h| h.path != "churn.py" || h.symbols.iter().all(|s| s.name == "churn_2999")));
    }

    #[test]
    fn workspace_symbols_rank_exact_then_prefix_then_fuzzy() {
        let dir = fixture();
        let idx = build(dir.path());
        let names = |q: &str| {
            idx.workspace_symbols(q, 10)
                .into_iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("get"), ["get"]);
        assert_eq!(names("pars"), ["parse_header"]);
        assert_eq!(names("phdr"), ["parse_header"]);
        assert_eq!(names("").len(), 5);
    }

    #[test]
    fn large_binary_files_are_skipped_and_progress_is_reported() {
        let dir = fixture();
        write(dir.path(), "big.py", &"x = 1\n".repeat(600_000));
        std::fs::write(dir.path().join("blob.rs"), [0u8, 1, 2, 3]).unwrap();
        let never = AtomicBool::new(false);
        let mut last = None;
        let idx = WorkspaceIndex::build(
            dir.path().to_path_buf(),
            Limits::default(),
            &mut |p| last = Some(p.clone()),
            &never,
        )
        .unwrap();
        let last = last.unwrap();
        assert_eq!((last.done, last.total), (6, 6));
        let skipped = idx.skipped_files();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].0 == "big.py" && skipped[0].1.contains("over the index limit"));
        assert_eq!(skipped[1], ("blob.rs", "binary"));
        let cancelled = AtomicBool::new(true);
        assert!(matches!(
            WorkspaceIndex::build(
                dir.path().to_path_buf(),
                Limits::default(),
                &mut |_| {},
                &cancelled
            ),
            Err(CodeError::Cancelled)
        ));
    }
}
