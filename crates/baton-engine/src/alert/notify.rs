//! Notification grouping as Alertmanager does it: alerts grouped by the route's `group_by`,
//! each group flushed after `group_wait`, then every `group_interval`, and a notification sent
//! only when the group changed since the last one delivered, or `repeat_interval` has passed.
//!
//! At a group's flush, silenced alerts are left out (a group whose alerts are all silenced
//! sends nothing), and Alertmanager's deduplication decides (`needs_update`):
//! - nothing delivered yet: notify when something fires;
//! - a firing alert not in the last notification: notify;
//! - nothing firing any more while the last notification had firing alerts: notify (the
//!   "all resolved" message);
//! - with `send_resolved`, a resolved alert not in the last notification: notify;
//! - else only once `repeat_interval` has passed since the last notification.
//!
//! A new group waits `group_wait`, unless one of its alerts has been firing for longer than
//! that (after a restart, say): then it flushes at once. Pending alerts are never notified;
//! resolved ones are, for as long as the alert state keeps them (15 minutes). A group with
//! no alert left is dropped with its memory. Inhibition and nested routes are not modelled.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::rules::{float, Alert, AlertsState, Phase};
use super::silence::Silence;
use super::spec::{AlertsSpec, GroupBy, Route};
use super::Labels;

/// The groups as they are between calls. Plain data: store it, load it, pass it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyState {
    pub groups: BTreeMap<String, Group>,
}

/// One aggregation group of one receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// `receiver:{label="value", …}`.
    pub key: String,
    pub receiver: String,
    /// The values of the route's `group_by` labels the group's alerts share.
    pub labels: Labels,
    pub next_flush_ms: u64,
    /// The last notification delivered, for deduplication.
    pub last: Option<Sent>,
}

/// What the last delivered notification of a group held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub at_ms: u64,
    pub firing: BTreeSet<String>,
    pub resolved: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Firing,
    Resolved,
}

/// One alert as a notification shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub fingerprint: String,
    pub status: Status,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    /// When it fired.
    pub starts_at_ms: u64,
    /// When it was resolved.
    pub ends_at_ms: Option<u64>,
    #[serde(with = "float")]
    pub value: f64,
}

/// A message for one receiver about one group, to deliver now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub at_ms: u64,
    pub receiver: String,
    pub group_key: String,
    pub group_labels: Labels,
    /// `Firing` while any of its alerts fires.
    pub status: Status,
    /// The labels every alert of the notification has, with the same value.
    pub common_labels: Labels,
    /// Sorted by labels.
    pub firing: Vec<AlertView>,
    /// Sorted by labels; empty when the receiver does not want resolved alerts.
    pub resolved: Vec<AlertView>,
}

/// The notifications to deliver at `now_ms` for `alerts` (the rules' state), leaving out
/// what `silences` mute. Returns the state to store and the notifications; call
/// `delivered` for each one delivered.
pub fn notify(
    spec: &AlertsSpec,
    state: &NotifyState,
    alerts: &AlertsState,
    silences: &[Silence],
    now_ms: u64,
) -> (NotifyState, Vec<Notification>) {
    let Some(route) = &spec.route else {
        return (NotifyState::default(), Vec::new());
    };
    let send_resolved = spec
        .receivers
        .get(&route.receiver)
        .is_none_or(|r| r.send_resolved);

    let mut grouped: BTreeMap<String, (Labels, Vec<&Alert>)> = BTreeMap::new();
    for a in alerts.alerts.values() {
        if !matches!(a.phase, Phase::Firing | Phase::Resolved) {
            continue;
        }
        let labels = group_labels(route, &a.labels);
        let key = format!("{}:{}", route.receiver, labels_text(&labels));
        grouped
            .entry(key)
            .or_insert_with(|| (labels, Vec::new()))
            .1
            .push(a);
    }

    let mut s = NotifyState::default();
    let mut out = Vec::new();
    for (key, (labels, mut members)) in grouped {
        members.sort_by(|a, b| a.labels.cmp(&b.labels));
        let mut g = match state.groups.get(&key) {
            Some(g) => g.clone(),
            None => {
                let long_firing = members.iter().any(|a| {
                    a.phase == Phase::Firing
                        && a.fired_at_ms
                            .is_some_and(|t| t.saturating_add(route.group_wait_ms) < now_ms)
                });
                Group {
                    key: key.clone(),
                    receiver: route.receiver.clone(),
                    labels: labels.clone(),
                    next_flush_ms: if long_firing {
                        now_ms
                    } else {
                        now_ms.saturating_add(route.group_wait_ms)
                    },
                    last: None,
                }
            }
        };
        if now_ms >= g.next_flush_ms {
            g.next_flush_ms = now_ms.saturating_add(route.group_interval_ms);
            let unmuted: Vec<&Alert> = members
                .iter()
                .copied()
                .filter(|a| !silences.iter().any(|s| s.mutes(&a.labels, now_ms)))
                .collect();
            let firing: Vec<&Alert> = unmuted
                .iter()
                .copied()
                .filter(|a| a.phase == Phase::Firing)
                .collect();
            let resolved: Vec<&Alert> = unmuted
                .iter()
                .copied()
                .filter(|a| a.phase == Phase::Resolved)
                .collect();
            let fps = |list: &[&Alert]| -> BTreeSet<String> {
                list.iter().map(|a| a.fingerprint.clone()).collect()
            };
            let (firing_fps, resolved_fps) = (fps(&firing), fps(&resolved));
            if !unmuted.is_empty()
                && needs_update(
                    g.last.as_ref(),
                    &firing_fps,
                    &resolved_fps,
                    send_resolved,
                    route.repeat_interval_ms,
                    now_ms,
                )
            {
                let shown_resolved: Vec<&Alert> = if send_resolved { resolved } else { Vec::new() };
                if firing.is_empty() && shown_resolved.is_empty() {
                    // All resolved, and the receiver does not want to hear it: nothing to
                    // deliver, but the group's memory moves on as if it had been.
                    g.last = Some(Sent {
                        at_ms: now_ms,
                        firing: BTreeSet::new(),
                        resolved: resolved_fps,
                    });
                } else {
                    let shown: Vec<&Alert> =
                        firing.iter().chain(&shown_resolved).copied().collect();
                    out.push(Notification {
                        at_ms: now_ms,
                        receiver: route.receiver.clone(),
                        group_key: key.clone(),
                        group_labels: labels.clone(),
                        status: if firing.is_empty() {
                            Status::Resolved
                        } else {
                            Status::Firing
                        },
                        common_labels: common_labels(&shown),
                        firing: firing.iter().map(|a| view(a)).collect(),
                        resolved: shown_resolved.iter().map(|a| view(a)).collect(),
                    });
                }
            }
        }
        s.groups.insert(key, g);
    }
    (s, out)
}

/// Records that `n` was delivered: the group's deduplication compares with it from now on.
pub fn delivered(state: &NotifyState, n: &Notification) -> NotifyState {
    let mut s = state.clone();
    if let Some(g) = s.groups.get_mut(&n.group_key) {
        g.last = Some(Sent {
            at_ms: n.at_ms,
            firing: n.firing.iter().map(|a| a.fingerprint.clone()).collect(),
            resolved: n.resolved.iter().map(|a| a.fingerprint.clone()).collect(),
        });
    }
    s
}

/// Alertmanager's `DedupStage.needsUpdate`.
fn needs_update(
    last: Option<&Sent>,
    firing: &BTreeSet<String>,
    resolved: &BTreeSet<String>,
    send_resolved: bool,
    repeat_ms: u64,
    now_ms: u64,
) -> bool {
    let Some(last) = last else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&last.firing) {
        return true;
    }
    if firing.is_empty() {
        return !last.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&last.resolved) {
        return true;
    }
    last.at_ms.saturating_add(repeat_ms) < now_ms
}

fn group_labels(route: &Route, labels: &Labels) -> Labels {
    match &route.group_by {
        GroupBy::All => labels.clone(),
        GroupBy::Labels(names) => names
            .iter()
            .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
            .collect(),
    }
}

/// `{alertname="Down", service="web"}`.
pub fn labels_text(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn common_labels(alerts: &[&Alert]) -> Labels {
    let Some((first, rest)) = alerts.split_first() else {
        return Labels::new();
    };
    first
        .labels
        .iter()
        .filter(|(k, v)| rest.iter().all(|a| a.labels.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn view(a: &Alert) -> AlertView {
    AlertView {
        fingerprint: a.fingerprint.clone(),
        status: if a.phase == Phase::Firing {
            Status::Firing
        } else {
            Status::Resolved
        },
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        starts_at_ms: a.fired_at_ms.unwrap_or(a.active_since_ms),
        ends_at_ms: a.resolved_at_ms.filter(|_| a.phase == Phase::Resolved),
        value: a.value,
    }
}
