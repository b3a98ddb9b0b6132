//! Alerting, pure: the `alerts:` section typed, the alert state machine of Prometheus, and
//! the notification grouping, deduplication and silences of Alertmanager. No I/O, no clock.
//!
//! The daemon owns the loops; everything here is (state, input, `now_ms`) → (state, output),
//! the state plain data it stores between calls:
//! 1. `spec::alerts_spec` reads `project.baton["alerts"]` (top-level `alerts:` or
//!    `x-baton.alerts`) into an `AlertsSpec`: receivers, the route, rules, built-in rules
//!    switched off. A rule's `expr` stays a string: the query language belongs to the
//!    metrics crate, whose parser the caller hands to `spec::check_exprs`.
//! 2. Every evaluation interval the daemon evaluates each rule's `expr` (a comparison: its
//!    output vector is the set of series for which the condition is true) and passes the
//!    output to `rules::evaluate` with the `AlertsState`; it gets the state back and the
//!    `Transition`s (inactive → pending → firing → resolved → forgotten), to record as events.
//! 3. Then `notify::notify` with the `NotifyState`, the alerts and the active silences
//!    returns the `Notification`s to send now (firing and resolved alerts, grouped by the
//!    route's `group_by`, paced by `group_wait`, `group_interval` and `repeat_interval`);
//!    after each one is delivered, `notify::delivered` records it (an undelivered one is
//!    tried again at the group's next flush).
//!
//! Annotations and rule labels are templates in Prometheus's subset (`template.rs`:
//! `{{ $value | humanizePercentage }}`, `{{ $labels.service }}`), checked when the file is
//! read and expanded at every evaluation.

pub mod notify;
pub mod payload;
pub mod rules;
pub mod silence;
pub mod spec;
pub mod template;

use std::collections::BTreeMap;

pub use notify::{
    delivered, labels_text, notify, AlertView, Group, Notification, NotifyState, Sent, Status,
};
pub use rules::{
    drop_rules, evaluate, Alert, AlertsState, EvalError, Phase, Sample, Transition,
    RESOLVED_RETENTION_MS,
};
pub use silence::{silenced_by, MatchOp, Matcher, Silence, SilenceError};
pub use spec::{
    alerts_spec, check_exprs, AlertRule, AlertsSpec, BuiltinRule, GroupBy, Receiver, ReceiverKind,
    Route, DEFAULT_GROUP_INTERVAL_MS, DEFAULT_GROUP_WAIT_MS, DEFAULT_REPEAT_INTERVAL_MS,
};
pub use template::{
    humanize, humanize_1024, humanize_duration, humanize_percentage, Template, TemplateError,
};

/// A set of labels, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// The label every alert carries: its rule's name.
pub const ALERTNAME: &str = "alertname";

/// An alert's identity: 16 hex digits of FNV-1a over the sorted labels, each name and value
/// followed by a 0xff byte, exactly as Prometheus and Alertmanager fingerprint a label set
/// (so the ids match what their tools show for the same labels).
pub fn fingerprint(labels: &Labels) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    format!("{hash:016x}")
}

/// Whether `name` is a label name a file may set: `[a-zA-Z_][a-zA-Z0-9_]*`, and not one
/// of Prometheus's reserved `__…` names.
pub fn valid_label_name(name: &str) -> bool {
    label_name_syntax(name) && !name.starts_with("__")
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: what a matcher may name (reserved names included).
pub fn label_name_syntax(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_prometheus_label_set_fingerprints() {
        // An empty set is FNV-1a's offset basis, as in Prometheus's model.
        assert_eq!(fingerprint(&Labels::new()), "cbf29ce484222325");
        let a: Labels = [("alertname", "Down"), ("service", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let b: Labels = [("service", "web"), ("alertname", "Down")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
        let mut c = a.clone();
        c.insert("service".into(), "api".into());
        assert_ne!(fingerprint(&a), fingerprint(&c));
        // The separator keeps {a="bc"} and {ab="c"} apart.
        let x: Labels = [("a".to_string(), "bc".to_string())].into();
        let y: Labels = [("ab".to_string(), "c".to_string())].into();
        assert_ne!(fingerprint(&x), fingerprint(&y));
    }

    #[test]
    fn label_names() {
        assert!(valid_label_name("service"));
        assert!(valid_label_name("_x9"));
        assert!(!valid_label_name("9x"));
        assert!(!valid_label_name("a-b"));
        assert!(!valid_label_name("__name__"));
        assert!(!valid_label_name(""));
    }
}
