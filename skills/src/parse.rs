//! Helpers for reading what a model says: it may wrap its answer in code fences,
//! add chatter before and after, number or bullet its lines, or stop mid-line.
//! Every function here takes any string and never panics.

use basis_code::Language;

/// The lines of an answer with list markers, numbering, quotes and backticks
/// stripped; blank lines dropped.
pub fn answer_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(strip_list_marker)
        .map(|l| l.trim_matches(|c: char| c == '`' || c == '"' || c == '\'' || c == '*'))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("```"))
        .collect()
}

/// Removes a leading `-`, `*`, `•`, `1.`, `1)`, `[1]` or `#1` marker.
fn strip_list_marker(line: &str) -> &str {
    let l = line.trim();
    for bullet in ["- ", "* ", "• ", "+ "] {
        if let Some(rest) = l.strip_prefix(bullet) {
            return rest.trim();
        }
    }
    let digits_end = l
        .trim_start_matches(['[', '#', '('])
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| i + (l.len() - l.trim_start_matches(['[', '#', '(']).len()));
    if let Some(end) = digits_end {
        let prefix_len = l.len() - l.trim_start_matches(['[', '#', '(']).len();
        if end > prefix_len {
            let rest = &l[end..];
            for sep in ["]", ".", ")", ":"] {
                if let Some(r) = rest.strip_prefix(sep) {
                    return r.trim();
                }
            }
        }
    }
    l
}

/// The leading number of a line such as `2`, `[2]`, `#2`, `2.` or `2) foo.py`.
pub fn leading_number(line: &str) -> Option<usize> {
    let l = line
        .trim()
        .trim_start_matches(['[', '#', '(', '-', '*', ' ']);
    let digits: String = l.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || digits.len() > 6 {
        return None;
    }
    digits.parse().ok()
}

/// Things in `text` that look like file paths (contain a `/` or a `.` followed by
/// letters), with trailing `:line` suffixes and punctuation removed.
pub fn path_like_tokens(text: &str) -> Vec<&str> {
    text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                ',' | ';' | '(' | ')' | '`' | '"' | '\'' | '<' | '>' | '[' | ']'
            )
    })
    .map(|t| t.trim_end_matches(['.', ':', ',']))
    .map(|t| match t.find(':') {
        Some(i) if t[i + 1..].chars().all(|c| c.is_ascii_digit() || c == '-') => &t[..i],
        _ => t,
    })
    .filter(|t| {
        !t.is_empty()
            && t.len() < 512
            && (t.contains('/')
                || t.rsplit_once('.').is_some_and(|(stem, ext)| {
                    !stem.is_empty()
                        && !ext.is_empty()
                        && ext.len() <= 5
                        && ext.chars().all(|c| c.is_ascii_alphanumeric())
                }))
    })
    .collect()
}

/// The names a fenced block may carry for `language`.
pub fn fence_names(language: Option<Language>) -> &'static [&'static str] {
    match language {
        Some(Language::Rust) => &["rust", "rs"],
        Some(Language::Python) => &["python", "py", "python3"],
        Some(Language::TypeScript) | Some(Language::Tsx) => &["typescript", "ts", "tsx"],
        Some(Language::JavaScript) => &["javascript", "js", "jsx"],
        Some(Language::Go) => &["go", "golang"],
        None => &[],
    }
}

pub fn fence_name(language: Option<Language>) -> &'static str {
    fence_names(language).first().copied().unwrap_or("")
}

/// A fenced code block of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeBlock {
    /// The info string after the opening fence (`python`, `rust`, ...), if any.
    pub lang: Option<String>,
    pub code: String,
    /// False when the answer stopped before the closing fence (a truncated answer).
    pub closed: bool,
}

/// The fenced code blocks of an answer, in order. An opening fence without a
/// closing one (the answer was cut off) yields its text to the end.
pub fn code_blocks(text: &str) -> Vec<CodeBlock> {
    let mut blocks = Vec::new();
    let mut current: Option<(Option<String>, Vec<&str>)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match current.take() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let lang = info.trim().trim_matches('`').split_whitespace().next();
                    current = Some((lang.map(str::to_lowercase), Vec::new()));
                }
            }
            Some((lang, lines)) => {
                if trimmed.starts_with("```") && trimmed.trim_end().trim_matches('`').is_empty() {
                    blocks.push(CodeBlock {
                        lang,
                        code: join_lines(&lines),
                        closed: true,
                    });
                } else {
                    let mut lines = lines;
                    lines.push(line);
                    current = Some((lang, lines));
                }
            }
        }
    }
    if let Some((lang, lines)) = current {
        blocks.push(CodeBlock {
            lang,
            code: join_lines(&lines),
            closed: false,
        });
    }
    blocks
}

fn join_lines(lines: &[&str]) -> String {
    let mut s = lines.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

/// Whether a line reads as prose rather than code: it starts with a word such as
/// "Here", "Sure" or "This", or it is a sentence ending in `:` or `.` with no
/// code punctuation.
fn is_chatter(line: &str) -> bool {
    let l = line.trim();
    if l.is_empty() {
        return false;
    }
    const OPENERS: [&str; 14] = [
        "here",
        "sure",
        "this ",
        "the ",
        "i ",
        "i'",
        "note",
        "certainly",
        "below",
        "explanation",
        "in this",
        "you can",
        "okay",
        "let me",
    ];
    let lower = l.to_lowercase();
    let code_marks = l.contains(['(', ')', '{', '}', '=', ';', '[', ']']);
    if OPENERS.iter().any(|o| lower.starts_with(o)) && !code_marks {
        return true;
    }
    let words = l.split_whitespace().count();
    const KEYWORDS: [&str; 16] = [
        "def ", "class ", "for ", "while ", "if ", "elif ", "else", "try", "except", "with ",
        "finally", "async ", "match ", "case ", "#", "//",
    ];
    if code_marks || KEYWORDS.iter().any(|k| lower.starts_with(k)) {
        return false;
    }
    (matches!(l.chars().last(), Some('.' | '!' | '?')) && words >= 2)
        || (l.ends_with(':') && words >= 3)
}

/// The code of an answer: the longest fenced block whose language is one of
/// `langs` (or untagged), else the longest block; without fences, the answer with
/// leading and trailing prose lines removed. Empty when nothing code-like is left.
pub fn extract_code(text: &str, langs: &[&str]) -> String {
    let text = text.replace("\r\n", "\n");
    let blocks = code_blocks(&text);
    let wanted = |b: &&CodeBlock| match &b.lang {
        None => true,
        Some(l) => langs.iter().any(|w| w.eq_ignore_ascii_case(l)),
    };
    let best = blocks
        .iter()
        .filter(wanted)
        .max_by_key(|b| b.code.trim().len())
        .or_else(|| blocks.iter().max_by_key(|b| b.code.trim().len()));
    if let Some(b) = best {
        if !b.code.trim().is_empty() {
            return b.code.clone();
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| !l.trim().is_empty() && !is_chatter(l))
        .unwrap_or(lines.len());
    let end = lines
        .iter()
        .rposition(|l| !l.trim().is_empty() && !is_chatter(l))
        .map(|i| i + 1)
        .unwrap_or(start)
        .max(start);
    join_lines(&lines[start..end])
}

/// The smallest indentation (in bytes of leading whitespace) of the non-blank lines.
pub fn common_indent(code: &str) -> usize {
    code.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0)
}

/// `code` re-indented so that its least indented lines sit at `indent` (a prefix
/// such as four spaces), keeping its relative indentation.
pub fn reindent(code: &str, indent: &str) -> String {
    let strip = common_indent(code);
    let mut out = String::with_capacity(code.len());
    for line in code.lines() {
        if line.trim().is_empty() {
            out.push('\n');
            continue;
        }
        let cut = line
            .char_indices()
            .nth(strip)
            .map(|(i, _)| i)
            .unwrap_or(line.len());
        let cut = if line[..cut].trim().is_empty() {
            cut
        } else {
            0
        };
        out.push_str(indent);
        out.push_str(&line[cut..]);
        out.push('\n');
    }
    out
}

/// The leading whitespace of the first non-blank line.
pub fn first_indent(code: &str) -> &str {
    code.lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| &l[..l.len() - l.trim_start().len()])
        .unwrap_or("")
}

/// Code compared for equality regardless of layout: runs of whitespace made
/// one space, blank lines dropped.
pub fn normalized_code(code: &str) -> String {
    code.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_markers_are_stripped() {
        let text = "Here you go:\n```\n1. src/a.py\n- `b/c.rs`\n[3] d.go\n  * \"e.ts\"\n```\nHope it helps!";
        assert_eq!(
            answer_lines(text),
            vec![
                "Here you go:",
                "src/a.py",
                "b/c.rs",
                "d.go",
                "e.ts",
                "Hope it helps!"
            ]
        );
    }

    #[test]
    fn numbers_and_paths_are_found() {
        assert_eq!(leading_number("[2] foo"), Some(2));
        assert_eq!(leading_number("#12"), Some(12));
        assert_eq!(leading_number("foo 2"), None);
        assert_eq!(
            path_like_tokens("see `src/http/parser.py:12`, and utils.rs. Also the end."),
            vec!["src/http/parser.py", "utils.rs"]
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        let samples = [
            "",
            "\u{0}",
            "[",
            "1.",
            "#",
            "((((",
            "`````",
            "é.ü",
            "a:b:c:",
            ":",
            "./",
            "\u{2028}x.py",
            "9999999999999999999999 file.py",
            "[]]]]",
            "𝓍.𝓎",
        ];
        for s in samples {
            let _ = answer_lines(s);
            let _ = leading_number(s);
            let _ = path_like_tokens(s);
        }
        // Every prefix of a realistic answer, as a truncated generation would be.
        let answer = "1. `src/パス/ファイル.py:10` — the parser\n2. [x] 🚀.rs";
        for (i, _) in answer.char_indices() {
            let _ = answer_lines(&answer[..i]);
            let _ = path_like_tokens(&answer[..i]);
        }
    }

    #[test]
    fn code_is_found_in_fenced_unfenced_and_truncated_answers() {
        let fenced = "Sure! Here is the updated function:\n```python\ndef f(x):\n    return x + 1\n```\nThis adds one.";
        assert_eq!(
            extract_code(fenced, &["python", "py"]),
            "def f(x):\n    return x + 1\n"
        );
        let truncated = "```rust\nfn f() -> u32 {\n    1";
        let blocks = code_blocks(truncated);
        assert_eq!(blocks.len(), 1);
        assert!(!blocks[0].closed);
        assert_eq!(
            extract_code(truncated, &["rust"]),
            "fn f() -> u32 {\n    1\n"
        );
        let unfenced =
            "Here is the code:\n\ndef f(x):\n    return x * 2\n\nThis doubles the input value.";
        assert_eq!(
            extract_code(unfenced, &["python"]),
            "def f(x):\n    return x * 2\n"
        );
        // The block in the wanted language wins over a longer one in another.
        let two = "```text\nsome very long explanation text that is long\n```\n```py\nx = 1\n```";
        assert_eq!(extract_code(two, &["python", "py"]), "x = 1\n");
        assert_eq!(extract_code("I cannot help with that.", &["python"]), "");
        assert_eq!(extract_code("", &[]), "");
    }

    #[test]
    fn reindent_keeps_relative_indentation() {
        let code = "if x:\n    y()\n\nz()\n";
        assert_eq!(
            reindent(code, "    "),
            "    if x:\n        y()\n\n    z()\n"
        );
        assert_eq!(reindent("        a\n          b\n", ""), "a\n  b\n");
        assert_eq!(first_indent("\n  \t x"), "  \t ");
        assert_eq!(normalized_code("  a  \n\n b\n"), "a\nb");
    }

    #[test]
    fn code_extraction_never_panics_on_prefixes() {
        let answer = "Voilà — le code :\n```python\ndef é(x):\n    return x  # ü\n```\nFin.";
        for (i, _) in answer.char_indices() {
            let _ = extract_code(&answer[..i], &["python"]);
            let _ = reindent(&answer[..i], "  ");
        }
        for s in [
            "```",
            "``````",
            "```\n```\n```",
            "\u{0}```py\n\u{2028}",
            "\t\t\n",
        ] {
            let _ = extract_code(s, &[]);
            let _ = reindent(s, "\t");
        }
    }
}
