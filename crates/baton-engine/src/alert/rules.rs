//! The alert state machine of Prometheus's alerting rules: from one rule's evaluation (the
//! series for which its condition is true) to each alert's phase and the transitions.
//!
//! An alert is a rule and a label set (the series' labels less `__name__`, the rule's
//! labels, `alertname`), identified by `fingerprint`. As in Prometheus's `AlertingRule.Eval`:
//! - a series that appears makes a *pending* alert (a resolved one with the same labels
//!   starts again as a new pending alert);
//! - pending for `for` (at an evaluation at least `for` after it became active) it *fires*;
//!   with `for: 0` that is the same evaluation;
//! - a pending alert whose series is gone is dropped (back to *inactive*);
//! - a firing alert whose series is gone keeps firing until `keep_firing_for` has passed
//!   since the first evaluation without it, then is *resolved*; back within that time, it
//!   simply goes on firing;
//! - a resolved alert is kept `RESOLVED_RETENTION_MS` (15 minutes) so its resolution can be
//!   notified, then forgotten (*inactive*).
//!
//! Annotations are expanded at every evaluation with the series' labels and value.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::spec::{alert_labels, AlertRule};
use super::{fingerprint, Labels};

/// How long a resolved alert is kept (Prometheus's `resolvedRetention`).
pub const RESOLVED_RETENTION_MS: u64 = 15 * 60_000;

/// Where an alert is. `Inactive` is never stored: it is the phase before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

/// One element of a rule's output vector: a series whose condition is true now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub labels: Labels,
    #[serde(with = "float")]
    pub value: f64,
}

/// One alert instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub rule: String,
    pub fingerprint: String,
    /// With `alertname`.
    pub labels: Labels,
    /// Expanded at the last evaluation that saw the series.
    pub annotations: BTreeMap<String, String>,
    pub phase: Phase,
    /// The series' value at the last evaluation that saw it.
    #[serde(with = "float")]
    pub value: f64,
    /// When it became pending.
    pub active_since_ms: u64,
    pub fired_at_ms: Option<u64>,
    pub resolved_at_ms: Option<u64>,
    /// The first evaluation without the series while firing (`keep_firing_for` counts
    /// from here); cleared when the series is back.
    pub keep_firing_since_ms: Option<u64>,
}

/// Every alert the rules have now (pending, firing, resolved and not yet forgotten), by
/// fingerprint. Plain data: store it, load it, pass it back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertsState {
    pub alerts: BTreeMap<String, Alert>,
}

/// A change of one alert's phase, for the event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at_ms: u64,
    pub rule: String,
    pub fingerprint: String,
    pub labels: Labels,
    pub from: Phase,
    pub to: Phase,
    #[serde(with = "float")]
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// Two series of the output have the same labels once the rule's labels are added:
    /// Prometheus refuses the evaluation (the state stays as it was).
    #[error("rule {rule}: two series have the labels {labels:?} once the rule's labels are added")]
    DuplicateLabels { rule: String, labels: Labels },
}

impl AlertsState {
    /// Alerts of `phase`, in fingerprint order.
    pub fn in_phase(&self, phase: Phase) -> impl Iterator<Item = &Alert> {
        self.alerts.values().filter(move |a| a.phase == phase)
    }
}

/// One evaluation of `rule` at `now_ms`: `samples` is its expression's output. Returns the
/// state to store and the transitions in the order they happened.
pub fn evaluate(
    state: &AlertsState,
    rule: &AlertRule,
    samples: &[Sample],
    now_ms: u64,
) -> Result<(AlertsState, Vec<Transition>), EvalError> {
    let mut seen: BTreeMap<String, (Labels, f64, BTreeMap<String, String>)> = BTreeMap::new();
    for sample in samples {
        let labels = alert_labels(rule, &sample.labels, sample.value);
        let fp = fingerprint(&labels);
        if seen.contains_key(&fp) {
            return Err(EvalError::DuplicateLabels {
                rule: rule.name.clone(),
                labels,
            });
        }
        let annotations = rule
            .annotations
            .iter()
            .map(|(k, t)| (k.clone(), t.render_or_error(&sample.labels, sample.value)))
            .collect();
        seen.insert(fp, (labels, sample.value, annotations));
    }

    let mut s = state.clone();
    let mut out = Vec::new();
    let mut change = |a: &Alert, from: Phase, to: Phase| {
        out.push(Transition {
            at_ms: now_ms,
            rule: a.rule.clone(),
            fingerprint: a.fingerprint.clone(),
            labels: a.labels.clone(),
            from,
            to,
            value: a.value,
        });
    };

    for (fp, (labels, value, annotations)) in &seen {
        match s.alerts.get_mut(fp) {
            Some(a) if matches!(a.phase, Phase::Pending | Phase::Firing) => {
                a.value = *value;
                a.annotations = annotations.clone();
                a.keep_firing_since_ms = None;
            }
            previous => {
                let from = previous.map_or(Phase::Inactive, |a| a.phase);
                let a = Alert {
                    rule: rule.name.clone(),
                    fingerprint: fp.clone(),
                    labels: labels.clone(),
                    annotations: annotations.clone(),
                    phase: Phase::Pending,
                    value: *value,
                    active_since_ms: now_ms,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    keep_firing_since_ms: None,
                };
                change(&a, from, Phase::Pending);
                s.alerts.insert(fp.clone(), a);
            }
        }
    }

    let mine: Vec<String> = s
        .alerts
        .iter()
        .filter(|(_, a)| a.rule == rule.name)
        .map(|(fp, _)| fp.clone())
        .collect();
    for fp in mine {
        let Some(a) = s.alerts.get_mut(&fp) else {
            continue;
        };
        if seen.contains_key(&fp) {
            if a.phase == Phase::Pending && now_ms.saturating_sub(a.active_since_ms) >= rule.for_ms
            {
                a.phase = Phase::Firing;
                a.fired_at_ms = Some(now_ms);
                change(a, Phase::Pending, Phase::Firing);
            }
            continue;
        }
        match a.phase {
            Phase::Pending => {
                change(a, Phase::Pending, Phase::Inactive);
                s.alerts.remove(&fp);
            }
            Phase::Firing => {
                let since = *a.keep_firing_since_ms.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) >= rule.keep_firing_for_ms {
                    a.phase = Phase::Resolved;
                    a.resolved_at_ms = Some(now_ms);
                    a.keep_firing_since_ms = None;
                    change(a, Phase::Firing, Phase::Resolved);
                }
            }
            Phase::Resolved | Phase::Inactive => {
                let resolved = a.resolved_at_ms.unwrap_or(now_ms);
                if now_ms.saturating_sub(resolved) > RESOLVED_RETENTION_MS {
                    change(a, a.phase, Phase::Inactive);
                    s.alerts.remove(&fp);
                }
            }
        }
    }
    Ok((s, out))
}

/// Settles the alerts of rules that are no longer defined (the file changed, a built-in
/// rule was switched off): pending ones are dropped, firing ones resolved now, resolved
/// ones forgotten after the retention, as if their series had gone. Call it at every
/// evaluation with the names of the rules in force.
pub fn drop_rules(
    state: &AlertsState,
    defined: &BTreeSet<String>,
    now_ms: u64,
) -> (AlertsState, Vec<Transition>) {
    let mut s = state.clone();
    let mut out = Vec::new();
    let orphans: Vec<String> = s
        .alerts
        .iter()
        .filter(|(_, a)| !defined.contains(&a.rule))
        .map(|(fp, _)| fp.clone())
        .collect();
    for fp in orphans {
        let Some(a) = s.alerts.get_mut(&fp) else {
            continue;
        };
        let from = a.phase;
        let to = match a.phase {
            Phase::Pending => Phase::Inactive,
            Phase::Firing => {
                a.phase = Phase::Resolved;
                a.resolved_at_ms = Some(now_ms);
                Phase::Resolved
            }
            Phase::Resolved | Phase::Inactive => {
                let resolved = a.resolved_at_ms.unwrap_or(now_ms);
                if now_ms.saturating_sub(resolved) > RESOLVED_RETENTION_MS {
                    Phase::Inactive
                } else {
                    continue;
                }
            }
        };
        out.push(Transition {
            at_ms: now_ms,
            rule: a.rule.clone(),
            fingerprint: fp.clone(),
            labels: a.labels.clone(),
            from,
            to,
            value: a.value,
        });
        if to == Phase::Inactive {
            s.alerts.remove(&fp);
        }
    }
    (s, out)
}

/// A sample value in JSON: a number, or `"NaN"`, `"+Inf"`, `"-Inf"` (JSON has none of
/// those, and a rule's value can be any of them).
pub(crate) mod float {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if *v > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            s.serialize_f64(*v)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Float {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Float::deserialize(d)? {
            Float::Number(n) => Ok(n),
            Float::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "+Inf" | "Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                other => other.parse().map_err(serde::de::Error::custom),
            },
        }
    }
}
