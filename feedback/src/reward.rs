//! The reward of a suggestion, from its events. The rules, applied in this order:
//!
//! 1. No decisive event (only `shown`, or nothing): no reward (`None`).
//! 2. The base value is the strongest acceptance seen: `accepted` gives
//!    `accept_value` (1.0); `partially_accepted` gives its fraction × `accept_value`.
//! 3. `rejected` (any reason: dismissed, replaced, undone) after the last
//!    acceptance sets the value to `reject_value` (0.0).
//! 4. The latest `retained` event scales an accepted value by its fraction (an edit
//!    accepted and then mostly rewritten earns less).
//! 5. An `executed` event that failed caps the value at `exec_fail_value` (0.0); one
//!    that passed, with nothing else decisive, gives `exec_pass_value` (1.0).
//!
//! The KTO label is `reward >= label_threshold` (0.5).

use serde::{Deserialize, Serialize};

use crate::{Event, EventKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardConfig {
    pub accept_value: f64,
    pub reject_value: f64,
    pub exec_fail_value: f64,
    pub exec_pass_value: f64,
    pub label_threshold: f64,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            accept_value: 1.0,
            reject_value: 0.0,
            exec_fail_value: 0.0,
            exec_pass_value: 1.0,
            label_threshold: 0.5,
        }
    }
}

/// The reward of a suggestion's events (sorted by time); see the module docs.
pub fn reward(events: &[Event], cfg: &RewardConfig) -> Option<f64> {
    let mut value: Option<f64> = None;
    let mut retained: Option<f64> = None;
    let mut exec: Option<bool> = None;
    for e in events {
        match &e.kind {
            EventKind::Shown => {}
            EventKind::Accepted => value = Some(cfg.accept_value),
            EventKind::PartiallyAccepted { fraction } => {
                let v = fraction.clamp(0.0, 1.0) * cfg.accept_value;
                value = Some(value.map_or(v, |old| old.max(v)));
            }
            EventKind::Rejected { .. } => value = Some(cfg.reject_value),
            EventKind::Retained { fraction, .. } => retained = Some(fraction.clamp(0.0, 1.0)),
            EventKind::Executed { passed, .. } => {
                exec = Some(exec.unwrap_or(true) && *passed);
            }
        }
    }
    let mut value = match (value, exec) {
        (None, Some(true)) => Some(cfg.exec_pass_value),
        (v, _) => v,
    };
    if let (Some(v), Some(r)) = (value, retained) {
        if v > cfg.reject_value {
            value = Some(v * r);
        }
    }
    if exec == Some(false) {
        value = Some(value.map_or(cfg.exec_fail_value, |v| v.min(cfg.exec_fail_value)));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind) -> Event {
        Event {
            suggestion_id: "s".into(),
            time_ms: 0,
            kind,
        }
    }

    #[test]
    fn rules_in_order() {
        let cfg = RewardConfig::default();
        let r =
            |kinds: Vec<EventKind>| reward(&kinds.into_iter().map(ev).collect::<Vec<_>>(), &cfg);
        assert_eq!(r(vec![]), None);
        assert_eq!(r(vec![EventKind::Shown]), None);
        assert_eq!(r(vec![EventKind::Shown, EventKind::Accepted]), Some(1.0));
        assert_eq!(
            r(vec![EventKind::PartiallyAccepted { fraction: 0.4 }]),
            Some(0.4)
        );
        assert_eq!(
            r(vec![
                EventKind::Accepted,
                EventKind::Rejected {
                    reason: "undone".into()
                }
            ]),
            Some(0.0)
        );
        assert_eq!(
            r(vec![
                EventKind::Accepted,
                EventKind::Retained {
                    fraction: 0.5,
                    after_minutes: 10
                }
            ]),
            Some(0.5)
        );
        assert_eq!(
            r(vec![
                EventKind::Accepted,
                EventKind::Executed {
                    passed: false,
                    summary: String::new()
                }
            ]),
            Some(0.0)
        );
        assert_eq!(
            r(vec![EventKind::Executed {
                passed: true,
                summary: String::new()
            }]),
            Some(1.0)
        );
    }
}
