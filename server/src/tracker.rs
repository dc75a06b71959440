//! What the server sees of an accepted suggestion afterwards: whether its text was
//! undone within the undo window (a `rejected` event, reason `undone`), and how
//! much of it is still there after N minutes (a `retained` event).
//!
//! Presence is measured by lines: the share of the accepted text's non-blank lines
//! (trimmed) that still occur in the document. Edits that reformat a line count it
//! as gone; that under-counts retention a little, never over-counts it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use basis_feedback::EventKind;

struct Tracked {
    suggestion_id: String,
    uri: String,
    lines: Vec<String>,
    accepted_at: Instant,
}

/// Accepted suggestions being watched.
#[derive(Default)]
pub struct Tracker {
    items: Vec<Tracked>,
}

/// The share of `lines` present (as trimmed lines) in `text`, counting repeats.
pub fn retained_fraction(lines: &[String], text: &str) -> f64 {
    if lines.is_empty() {
        return 1.0;
    }
    let mut present: HashMap<&str, usize> = HashMap::new();
    for l in text.lines() {
        *present.entry(l.trim()).or_default() += 1;
    }
    let mut kept = 0usize;
    for l in lines {
        if let Some(n) = present.get_mut(l.as_str()) {
            if *n > 0 {
                *n -= 1;
                kept += 1;
            }
        }
    }
    kept as f64 / lines.len() as f64
}

impl Tracker {
    /// Starts watching `text`, accepted into the document `uri`.
    pub fn track(&mut self, suggestion_id: &str, uri: &str, text: &str, now: Instant) {
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            return;
        }
        self.items.push(Tracked {
            suggestion_id: suggestion_id.into(),
            uri: uri.into(),
            lines,
            accepted_at: now,
        });
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Returns the events that are due and stops watching their suggestions.
    /// `text_of` gives a document's current text (`None`: unknown now, try later).
    pub fn check(
        &mut self,
        now: Instant,
        undo_window: Duration,
        retained_after: Duration,
        text_of: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<(String, EventKind)> {
        let mut events = Vec::new();
        self.items.retain(|t| {
            let Some(text) = text_of(&t.uri) else {
                return true;
            };
            let age = now.saturating_duration_since(t.accepted_at);
            let fraction = retained_fraction(&t.lines, &text);
            if age <= undo_window && fraction == 0.0 {
                events.push((
                    t.suggestion_id.clone(),
                    EventKind::Rejected {
                        reason: "undone".into(),
                    },
                ));
                return false;
            }
            if age >= retained_after {
                events.push((
                    t.suggestion_id.clone(),
                    EventKind::Retained {
                        fraction,
                        after_minutes: (retained_after.as_secs_f64() / 60.0).round() as u32,
                    },
                ));
                return false;
            }
            true
        });
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_counts_lines_once() {
        let lines: Vec<String> = ["a = 1", "a = 1", "b = 2"].map(String::from).to_vec();
        assert_eq!(retained_fraction(&lines, "  a = 1\nb = 2\n"), 2.0 / 3.0);
        assert_eq!(retained_fraction(&lines, ""), 0.0);
    }

    #[test]
    fn undone_within_the_window_and_retained_after() {
        let t0 = Instant::now();
        let (window, after) = (Duration::from_secs(30), Duration::from_secs(600));
        let mut tr = Tracker::default();
        tr.track("s1", "u1", "x = 1\ny = 2\n", t0);
        tr.track("s2", "u2", "z = 3\n", t0);
        let texts = |u: &str| match u {
            "u1" => Some("nothing here".to_string()),
            "u2" => Some("z = 3".to_string()),
            _ => None,
        };
        let ev = tr.check(t0 + Duration::from_secs(5), window, after, &texts);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].0, "s1");
        assert!(matches!(&ev[0].1, EventKind::Rejected { reason } if reason == "undone"));
        assert_eq!(tr.len(), 1);
        let ev = tr.check(t0 + Duration::from_secs(601), window, after, &texts);
        assert!(
            matches!(ev[0].1, EventKind::Retained { fraction, after_minutes: 10 } if fraction == 1.0)
        );
        assert!(tr.is_empty());
    }
}
