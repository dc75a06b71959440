//! Code review: an intent + a patch → comments on the changed lines and a
//! verdict, YES (the patch does what is asked, correctly) or NO.
//!
//! The model sees the diff with the new version's line numbers, so that its
//! comments (`path:line: message`) can point at lines; a fenced block right after
//! a comment is a proposed replacement for that line. Comments are anchored to the
//! changed hunks: one on an unchanged line moves to the nearest hunk of its file.
//! The reward: the verdict equals the task's label. Graded, the same per
//! answer, but a batch of reviews weighs its YES and NO tasks so that each
//! class carries half ([`class_weights`]): a verdict given whatever the patch
//! then earns nothing, however the batch is mixed.

use basis_model::{LanguageModel, Message};
use serde::{Deserialize, Serialize};
use similar::{ChangeTag, TextDiff};

use crate::diff::{hunks, FileChange, Hunk};
use crate::generate::{text_prompt, Generated, Options, Prompt};
use crate::parse::code_blocks;
use crate::SkillError;

/// The task input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    /// What the change is meant to do.
    pub intent: String,
    pub changes: Vec<FileChange>,
}

/// The intent used when none is known: a plain correctness review.
pub const NO_INTENT: &str =
    "No intent was given: judge whether the change is correct and complete.";

/// The reference: whether the patch is right.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Reference {
    pub verdict: bool,
}

/// Lines of one file's diff shown to the model at most.
const MAX_DIFF_LINES: usize = 300;

/// One file's diff with the new version's line numbers (1-based): `+ 12 | code`,
/// `  13 | code`, `-    | code`.
pub fn numbered_diff(change: &FileChange) -> String {
    let diff = TextDiff::from_lines(&change.old, &change.new);
    let mut out = format!("File: {}\n", change.path);
    let mut shown = 0;
    for (i, group) in diff.grouped_ops(2).iter().enumerate() {
        if i > 0 {
            out.push_str("   ...\n");
        }
        for op in group {
            for c in diff.iter_changes(op) {
                if shown == MAX_DIFF_LINES {
                    out.push_str("   ... (diff cut)\n");
                    return out;
                }
                shown += 1;
                let text = c.value().trim_end_matches(['\n', '\r']);
                match (c.tag(), c.new_index()) {
                    (ChangeTag::Delete, _) => out.push_str(&format!("-      | {text}\n")),
                    (ChangeTag::Insert, Some(n)) => {
                        out.push_str(&format!("+{:>5} | {text}\n", n + 1))
                    }
                    (_, Some(n)) => out.push_str(&format!(" {:>5} | {text}\n", n + 1)),
                    (_, None) => {}
                }
            }
        }
    }
    out
}

const SYSTEM: &str = "You are a careful code reviewer. Given what a change is meant to do and \
its diff (lines marked + are new, - removed, with line numbers of the new file), decide whether \
the change does what is asked, correctly. Answer with a first line `VERDICT: YES` or \
`VERDICT: NO`, then one line per problem as `path:line: comment`; after a comment you may give \
the corrected line in a fenced code block. For example:\n\
VERDICT: NO\n\
app/util.py:12: the loop stops one item early\n\
```python\n\
    for i in range(len(items)):\n\
```";

/// What the prompt already writes of the answer: the verdict comes first, so that
/// even a short or rambling answer has one.
pub const ANSWER_START: &str = "VERDICT:";

/// The chat with the diffs of the first `k` changed files.
pub fn render(input: &Input, k: usize) -> Vec<Message> {
    let mut user = format!("Intent:\n{}\n\nDiff:\n", input.intent.trim());
    for c in input.changes.iter().take(k) {
        user.push_str(&numbered_diff(c));
        user.push('\n');
    }
    if k < input.changes.len() {
        user.push_str(&format!(
            "({} more changed files not shown)\n",
            input.changes.len() - k
        ));
    }
    user.push_str("\nReview:");
    vec![Message::system(SYSTEM), Message::user(user)]
}

/// A review comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    pub path: String,
    /// 0-based line in the new version, inside a changed hunk.
    pub line: usize,
    pub message: String,
    /// A replacement the model proposed for the line, if any.
    pub suggestion: Option<String>,
}

/// What a review says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub comments: Vec<Comment>,
    /// What the model said outside comments and the verdict (its general remarks).
    pub summary: String,
    /// `None` when the model gave no verdict.
    pub verdict: Option<bool>,
}

fn verdict_word(s: &str) -> Option<bool> {
    let word: String = s
        .trim_start_matches(|c: char| !c.is_ascii_alphabetic())
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    match word.as_str() {
        "YES" | "APPROVE" | "APPROVED" | "LGTM" => Some(true),
        "NO" | "REJECT" | "REJECTED" => Some(false),
        _ => None,
    }
}

/// `path:line: message` (with optional list markers, backticks and `line`).
fn comment_line<'a>(line: &'a str, input: &Input) -> Option<(String, usize, &'a str)> {
    let l = line
        .trim()
        .trim_start_matches(['-', '*', '•', ' '])
        .trim_start();
    let colon = l.find(':')?;
    let path = l[..colon].trim().trim_matches(['`', '*', '"']);
    let rest = &l[colon + 1..];
    let rest = rest
        .trim_start()
        .strip_prefix("line")
        .unwrap_or(rest)
        .trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || digits.len() > 7 {
        return None;
    }
    let number: usize = digits.parse().ok()?;
    let message = rest[digits.len()..]
        .trim_start_matches(['`', '*'])
        .trim_start_matches([':', '-', ' ', ')'])
        .trim();
    let path = input
        .changes
        .iter()
        .map(|c| c.path.as_str())
        .find(|p| *p == path)
        .or_else(|| {
            let mut m = input
                .changes
                .iter()
                .filter(|c| !path.is_empty() && c.path.ends_with(&format!("/{path}")));
            match (m.next(), m.next()) {
                (Some(c), None) => Some(c.path.as_str()),
                _ => None,
            }
        })?;
    Some((path.to_string(), number.saturating_sub(1), message))
}

/// The line of `hunks` nearest to `line` (itself when inside one).
pub fn anchor(line: usize, hunks: &[Hunk]) -> Option<usize> {
    hunks
        .iter()
        .map(|h| {
            if h.contains(line) {
                (0, line)
            } else {
                let dist = if line < h.start {
                    h.start - line
                } else {
                    line - h.end.max(h.start + 1) + 1
                };
                (dist, h.start)
            }
        })
        .min()
        .map(|(_, l)| l)
}

/// General remarks kept at most (a rambling answer is cut).
const MAX_SUMMARY_BYTES: usize = 600;

/// Reads a model's review (`Generated::answer`; it never panics). Comments on files that did not
/// change are dropped; comments are anchored to changed hunks.
pub fn parse(completion: &str, input: &Input) -> Review {
    let mut comments: Vec<Comment> = Vec::new();
    let mut verdict = None;
    let mut summary = String::new();
    let blocks = code_blocks(completion);
    let mut block_iter = blocks.iter().peekable();
    let mut in_fence = false;
    let mut last_was_comment = false;
    for line in completion.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            if !in_fence {
                // The block opening here: a suggestion for the comment just before.
                let block = block_iter.next();
                if let (true, Some(b), Some(c)) = (last_was_comment, block, comments.last_mut()) {
                    if c.suggestion.is_none() && !b.code.trim().is_empty() {
                        c.suggestion = Some(b.code.clone());
                    }
                }
            }
            in_fence = !in_fence;
            last_was_comment = false;
            continue;
        }
        if in_fence || t.is_empty() {
            continue;
        }
        let lower = t.to_ascii_lowercase();
        if let Some(i) = lower.find("verdict") {
            let after = &t[i + "verdict".len()..];
            if let Some(v) = verdict_word(after) {
                if verdict.is_none() {
                    verdict = Some(v);
                }
                // Text after the verdict word on its line is a remark.
                let rest = after
                    .trim_start_matches(|c: char| !c.is_ascii_alphabetic())
                    .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                    .trim_start_matches(['.', '*', ',', ':', ' ']);
                if !rest.is_empty() && summary.len() < MAX_SUMMARY_BYTES {
                    summary.push_str(rest);
                }
                last_was_comment = false;
                continue;
            }
        }
        if let Some((path, line, message)) = comment_line(t, input) {
            if !message.is_empty() {
                let change = input
                    .changes
                    .iter()
                    .find(|c| c.path == path)
                    .expect("the path is a changed file");
                if let Some(line) = anchor(line, &hunks(&change.old, &change.new)) {
                    comments.push(Comment {
                        path,
                        line,
                        message: message.to_string(),
                        suggestion: None,
                    });
                    last_was_comment = true;
                    continue;
                }
            }
        }
        if matches!(lower.as_str(), "yes" | "no" | "yes." | "no.") && verdict.is_none() {
            verdict = verdict_word(t);
        } else if summary.len() < MAX_SUMMARY_BYTES && !summary.contains(t) {
            if !summary.is_empty() {
                summary.push(' ');
            }
            summary.push_str(t);
        }
        last_was_comment = false;
    }
    Review {
        comments,
        summary,
        verdict,
    }
}

crate::skill!(ReviewSkill, crate::SkillId::Review, "reviewing", partial);

/// The default budget and sampling of this skill.
pub fn default_options() -> Options {
    Options::greedy(1792, 256)
}

/// What a review produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub review: Review,
    pub generated: Generated,
}

/// The prompt of a review: the intent and the numbered diffs, the answer
/// started with its verdict line.
pub fn prompt(lm: &LanguageModel, input: &Input, opts: &Options) -> Result<Prompt, SkillError> {
    if input.changes.is_empty() {
        return Err(SkillError::Input("there are no changes to review".into()));
    }
    let budget = opts.budget.within_context(lm.model.config().context_length);
    text_prompt(
        lm,
        input.changes.len(),
        budget,
        &|k| render(input, k),
        ANSWER_START,
        &opts.sampling,
    )
}

/// Reads the verdict and the comments out of a completion.
/// The comments an unfinished review holds so far, as a JSON array of
/// [`Comment`]s (`None` while there are none), for a client that shows them as
/// they come.
pub fn partial(input: &Input, answer: &str) -> Option<String> {
    let comments = parse(answer, input).comments;
    if comments.is_empty() {
        return None;
    }
    serde_json::to_string(&comments).ok()
}

pub fn finish(input: &Input, _prompt: &Prompt, generated: Generated) -> Outcome {
    Outcome {
        review: parse(&generated.answer(), input),
        generated,
    }
}

/// The reward: 1 when the verdict equals the label (no verdict scores 0).
/// It is also each answer's graded reward; what grading adds is batch-level
/// ([`class_weights`]).
pub fn verify(review: &Review, reference: &Reference) -> f64 {
    if review.verdict == Some(reference.verdict) {
        1.0
    } else {
        0.0
    }
}

/// The weight of each review task of a batch, given its right verdicts: the
/// YES tasks and the NO tasks carry half the batch's weight each (the weights
/// still add up to the number of tasks). Three YES and one NO: 2/3 each YES,
/// 2 the NO. A policy that says YES as often whatever the patch is pushed
/// toward YES on the YES tasks and away from it on the NO tasks by the same
/// amount per task; weighted so, the two cancel and a constant answer gains
/// nothing. With one class only there is nothing to balance: weight 1 each.
pub fn class_weights(verdicts: &[bool]) -> Vec<f64> {
    let yes = verdicts.iter().filter(|&&v| v).count();
    let no = verdicts.len() - yes;
    if yes == 0 || no == 0 {
        return vec![1.0; verdicts.len()];
    }
    let half = verdicts.len() as f64 / 2.0;
    verdicts
        .iter()
        .map(|&v| half / if v { yes } else { no } as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Input {
        Input {
            intent: "Apply the discount as a percentage".into(),
            changes: vec![FileChange {
                path: "shop/pricing.py".into(),
                old: "def apply(p, d):\n    return p\n\n\ndef other():\n    pass\n".into(),
                new: "def apply(p, d):\n    return p - d\n\n\ndef other():\n    pass\n".into(),
            }],
        }
    }

    #[test]
    fn the_diff_carries_new_line_numbers() {
        let d = numbered_diff(&input().changes[0]);
        assert!(d.contains("-      |     return p\n"), "{d}");
        assert!(d.contains("+    2 |     return p - d\n"), "{d}");
        assert!(d.contains("     1 | def apply(p, d):\n"), "{d}");
    }

    #[test]
    fn each_verdict_class_carries_half_the_batch() {
        let w = class_weights(&[true, true, true, false]);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // 4 tasks, 2 for each class: 2/3 for each of three YES, 2 for the NO.
        assert!(
            w[..3].iter().all(|&x| close(x, 2.0 / 3.0)) && close(w[3], 2.0),
            "{w:?}"
        );
        assert!(close(w.iter().sum(), 4.0));
        // Balanced already, or one class only: nothing changes.
        assert_eq!(class_weights(&[true, false]), [1.0, 1.0]);
        assert_eq!(class_weights(&[true, true]), [1.0, 1.0]);
        assert!(class_weights(&[]).is_empty());
    }

    #[test]
    fn a_partial_review_holds_the_comments_written_so_far() {
        let i = input();
        assert_eq!(partial(&i, "Sure, here is my review.\n"), None);
        let one = partial(&i, "shop/pricing.py:2: subtracts the amount\n").unwrap();
        let comments: Vec<Comment> = serde_json::from_str(&one).unwrap();
        assert_eq!(comments.len(), 1);
        assert_eq!(comments[0].message, "subtracts the amount");
        let two = partial(
            &i,
            "shop/pricing.py:2: subtracts the amount\nshop/pricing.py:5: unrelated\n",
        )
        .unwrap();
        assert_eq!(serde_json::from_str::<Vec<Comment>>(&two).unwrap().len(), 2);
    }

    #[test]
    fn comments_verdicts_and_suggestions_are_read() {
        let i = input();
        let answer = "Sure, here is my review.\n\n- `shop/pricing.py:2`: subtracts the amount instead of a percentage\n```python\n    return p * (1 - d / 100)\n```\npricing.py:5: unrelated line\nnope.py:1: not changed\n\nVERDICT: NO";
        let r = parse(answer, &i);
        assert_eq!(r.verdict, Some(false));
        assert_eq!(r.comments.len(), 2, "{r:?}");
        assert_eq!(r.comments[0].path, "shop/pricing.py");
        assert_eq!(r.comments[0].line, 1);
        assert_eq!(
            r.comments[0].message,
            "subtracts the amount instead of a percentage"
        );
        assert_eq!(
            r.comments[0].suggestion.as_deref(),
            Some("    return p * (1 - d / 100)\n")
        );
        // Line 5 is unchanged: the comment moves to the hunk.
        assert_eq!(r.comments[1].line, 1);
        assert_eq!(r.comments[1].suggestion, None);
        assert_eq!(
            parse("Looks right.\nVerdict: **YES**", &i).verdict,
            Some(true)
        );
        assert_eq!(parse("yes", &i).verdict, Some(true));
        assert_eq!(parse("The change looks fine", &i).verdict, None);
        // The first verdict counts; remarks are kept as the summary.
        let r = parse("VERDICT: NO. The total is wrong.\nVERDICT: YES", &i);
        assert_eq!(r.verdict, Some(false));
        assert_eq!(r.summary, "The total is wrong.");
        assert!(r.comments.is_empty());
        // A model that repeats itself is summarised once.
        let r = parse("VERDICT: YES\nIt adds one.\nIt adds one.\nIt adds one.", &i);
        assert_eq!(r.summary, "It adds one.");
        assert_eq!(
            verify(&parse("VERDICT: YES", &i), &Reference { verdict: true }),
            1.0
        );
        assert_eq!(
            verify(&parse("VERDICT: YES", &i), &Reference { verdict: false }),
            0.0
        );
        assert_eq!(verify(&parse("", &i), &Reference { verdict: false }), 0.0);
    }

    #[test]
    fn parse_never_panics_on_prefixes() {
        let i = input();
        let answer = "shop/pricing.py:2: é bug\n```py\nx = 1\n```\nshop/pricing.py:99999999999: far\n:3: x\nVERDICT";
        for (k, _) in answer.char_indices() {
            let _ = parse(&answer[..k], &i);
        }
        let _ = parse(
            "```\n```\n```",
            &Input {
                intent: String::new(),
                changes: vec![],
            },
        );
    }

    #[test]
    fn anchors_go_to_the_nearest_hunk() {
        let h = [Hunk { start: 3, end: 5 }, Hunk { start: 20, end: 20 }];
        assert_eq!(anchor(4, &h), Some(4));
        assert_eq!(anchor(0, &h), Some(3));
        assert_eq!(anchor(18, &h), Some(20));
        assert_eq!(anchor(20, &h), Some(20));
        assert_eq!(anchor(1, &[]), None);
    }
}
