//! Helpers for reading what a model says: it may wrap its answer in code fences,
//! add chatter before and after, number or bullet its lines, or stop mid-line.
//! Every function here takes any string and never panics.

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
}
