//! What the cluster's objects say, read without I/O: a Deployment's rollout as
//! `kubectl rollout status` reads it, its update status, a pod as a `ps` row, the
//! revision `rollout undo` goes back to, and the merge patch that puts a template back.

use baton_engine::orchestrate::{Task, UpdateStatus};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Map, Value};

/// The annotation a Deployment and its ReplicaSets carry their revision in.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// Where a Deployment's rollout is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Still going: what it waits for.
    Waiting(String),
    Done,
    /// It will not get there by itself (its progress deadline passed).
    Failed(String),
}

/// `kubectl rollout status` for one Deployment: the controller saw the latest spec
/// (observedGeneration ≥ generation), every replica is updated, no old one is left and
/// every updated one is available; `Progressing` false with `ProgressDeadlineExceeded`
/// is a failure.
pub fn rollout_progress(d: &Deployment) -> Progress {
    let name = d.metadata.name.as_deref().unwrap_or("");
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(status) = &d.status else {
        return Progress::Waiting(format!(
            "deployment {name}: waiting for the controller to see it"
        ));
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Waiting(format!(
            "deployment {name}: waiting for the new spec to be observed"
        ));
    }
    let progressing = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing");
    if let Some(c) = progressing {
        if c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            let message = c.message.as_deref().unwrap_or("");
            return Progress::Failed(format!(
                "deployment {name} exceeded its progress deadline{}{message}",
                if message.is_empty() { "" } else { ": " }
            ));
        }
    }
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < wanted {
        Progress::Waiting(format!(
            "deployment {name}: {updated} of {wanted} new replicas updated"
        ))
    } else if replicas > updated {
        Progress::Waiting(format!(
            "deployment {name}: {} old replicas pending termination",
            replicas - updated
        ))
    } else if available < updated {
        Progress::Waiting(format!(
            "deployment {name}: {available} of {updated} updated replicas available"
        ))
    } else {
        Progress::Done
    }
}

/// `kubectl rollout status` for one DaemonSet: the controller saw the latest spec,
/// every node that should run a pod runs an updated one, and each is available.
pub fn daemon_progress(d: &DaemonSet) -> Progress {
    let name = d.metadata.name.as_deref().unwrap_or("");
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(status) = &d.status else {
        return Progress::Waiting(format!(
            "daemon set {name}: waiting for the controller to see it"
        ));
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Waiting(format!(
            "daemon set {name}: waiting for the new spec to be observed"
        ));
    }
    let wanted = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    if updated < wanted {
        Progress::Waiting(format!(
            "daemon set {name}: {updated} of {wanted} new pods updated"
        ))
    } else if available < wanted {
        Progress::Waiting(format!(
            "daemon set {name}: {available} of {wanted} updated pods available"
        ))
    } else {
        Progress::Done
    }
}

/// A Deployment's update as `rollout status` shows it.
pub fn update_status(service: &str, d: &Deployment) -> UpdateStatus {
    let status = d.status.clone().unwrap_or_default();
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let running = status
        .updated_replicas
        .unwrap_or(0)
        .min(status.available_replicas.unwrap_or(0));
    let (state, message) = match rollout_progress(d) {
        Progress::Done => ("completed", "successfully rolled out".to_string()),
        Progress::Waiting(m) => ("updating", m),
        Progress::Failed(m) => ("paused", m),
    };
    UpdateStatus {
        service: service.to_string(),
        state: state.into(),
        message,
        running: u32::try_from(running).unwrap_or(0),
        desired: u32::try_from(desired).unwrap_or(0),
    }
}

/// A DaemonSet's update as `rollout status` shows it: one pod per node.
pub fn daemon_update_status(service: &str, d: &DaemonSet) -> UpdateStatus {
    let status = d.status.clone().unwrap_or_default();
    let (state, message) = match daemon_progress(d) {
        Progress::Done => ("completed", "successfully rolled out".to_string()),
        Progress::Waiting(m) => ("updating", m),
        Progress::Failed(m) => ("paused", m),
    };
    let running = status
        .updated_number_scheduled
        .unwrap_or(0)
        .min(status.number_available.unwrap_or(0));
    UpdateStatus {
        service: service.to_string(),
        state: state.into(),
        message,
        running: u32::try_from(running).unwrap_or(0),
        desired: u32::try_from(status.desired_number_scheduled).unwrap_or(0),
    }
}

/// One pod as a `ps` row: its phase, or why its container waits or ended.
pub fn pod_task(pod: &Pod) -> Task {
    let meta = &pod.metadata;
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let spec = pod.spec.as_ref();
    let status = pod.status.clone().unwrap_or_default();
    let mut state = status
        .phase
        .as_deref()
        .unwrap_or("Pending")
        .to_ascii_lowercase();
    let mut message = status.message.clone().unwrap_or_default();
    for c in status.container_statuses.iter().flatten() {
        let Some(s) = &c.state else { continue };
        if let Some(w) = &s.waiting {
            state = "waiting".into();
            message = join(w.reason.as_deref(), w.message.as_deref());
        } else if let Some(t) = &s.terminated {
            state = "terminated".into();
            message = join(t.reason.as_deref(), t.message.as_deref());
        } else if s.running.is_some() && !c.ready && state == "running" {
            state = "starting".into();
        }
    }
    if meta.deletion_timestamp.is_some() {
        state = "terminating".into();
    }
    let image = spec
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let ports = spec
        .and_then(|s| s.containers.first())
        .and_then(|c| c.ports.as_ref())
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    format!(
                        "{}/{}",
                        p.container_port,
                        p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let since = status
        .start_time
        .as_ref()
        .or(meta.creation_timestamp.as_ref())
        .map(|t| t.0.as_millisecond())
        .unwrap_or(0);
    Task {
        service: label(crate::render::SERVICE_LABEL).unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        id: meta.uid.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        state,
        desired: if meta.deletion_timestamp.is_some() {
            "shutdown".into()
        } else {
            "running".into()
        },
        message,
        image,
        ports,
        since,
    }
}

fn join(reason: Option<&str>, message: Option<&str>) -> String {
    match (reason, message) {
        (Some(r), Some(m)) if !m.is_empty() => format!("{r}: {m}"),
        (Some(r), _) => r.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => String::new(),
    }
}

fn revision_of(annotations: Option<&std::collections::BTreeMap<String, String>>) -> Option<u64> {
    annotations?.get(REVISION)?.parse().ok()
}

/// The ReplicaSet `kubectl rollout undo` goes back to: the one with the highest
/// revision below the Deployment's own.
pub fn previous_revision<'a>(d: &Deployment, sets: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    let current = revision_of(d.metadata.annotations.as_ref())?;
    let uid = d.metadata.uid.as_deref();
    sets.iter()
        .filter(|rs| {
            // Only the Deployment's own sets (when the cluster names owners).
            match (&rs.metadata.owner_references, uid) {
                (Some(owners), Some(uid)) if !owners.is_empty() => {
                    owners.iter().any(|o| o.uid == uid)
                }
                _ => true,
            }
        })
        .filter_map(|rs| Some((revision_of(rs.metadata.annotations.as_ref())?, rs)))
        .filter(|(r, _)| *r < current)
        .max_by_key(|(r, _)| *r)
        .map(|(_, rs)| rs)
}

/// The ReplicaSet's pod template as the Deployment had it: without the
/// `pod-template-hash` label the controller adds.
pub fn template_of(rs: &ReplicaSet) -> Option<Value> {
    let template = rs.spec.as_ref()?.template.as_ref()?;
    let mut v = serde_json::to_value(template).ok()?;
    if let Some(labels) = v
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
    }
    Some(v)
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`: keys that went are
/// set to null, objects are compared key by key, anything else is replaced.
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = Map::new();
            for k in o.keys() {
                if !n.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) if ov == nv => {}
                    Some(ov @ Value::Object(_)) if nv.is_object() => {
                        out.insert(k.clone(), merge_diff(ov, nv));
                    }
                    _ => {
                        out.insert(k.clone(), nv.clone());
                    }
                }
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(v: Value) -> Deployment {
        serde_json::from_value(v).expect("a deployment")
    }

    #[test]
    fn a_rollout_is_done_only_when_observed_updated_and_available() {
        let base = json!({
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
        });
        let with = |status: Value| {
            let mut v = base.clone();
            v["status"] = status;
            rollout_progress(&deployment(v))
        };
        assert!(
            matches!(with(json!({"observedGeneration": 1})), Progress::Waiting(m) if m.contains("observed"))
        );
        assert!(matches!(
            with(json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1})),
            Progress::Waiting(m) if m.contains("1 of 2 new replicas")
        ));
        assert!(matches!(
            with(json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2})),
            Progress::Waiting(m) if m.contains("1 old replicas")
        ));
        assert!(matches!(
            with(json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1})),
            Progress::Waiting(m) if m.contains("1 of 2 updated replicas available")
        ));
        assert_eq!(
            with(
                json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2})
            ),
            Progress::Done
        );
        let failed = with(json!({
            "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 0,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                            "message": "ReplicaSet \"web-1\" has timed out progressing."}]
        }));
        assert!(
            matches!(failed, Progress::Failed(m) if m.starts_with("deployment web exceeded its progress deadline: ReplicaSet"))
        );
    }

    #[test]
    fn a_daemon_set_is_done_when_every_node_runs_an_available_updated_pod() {
        let with = |status: Value| {
            let d: DaemonSet = serde_json::from_value(json!({
                "metadata": {"name": "agent", "generation": 3},
                "spec": {"selector": {}, "template": {}},
                "status": status
            }))
            .expect("a daemon set");
            daemon_progress(&d)
        };
        let counts = |observed: i64, updated: i32, available: i32| {
            json!({"observedGeneration": observed, "desiredNumberScheduled": 2,
                   "currentNumberScheduled": 2, "numberMisscheduled": 0, "numberReady": available,
                   "updatedNumberScheduled": updated, "numberAvailable": available})
        };
        assert!(matches!(with(counts(2, 2, 2)), Progress::Waiting(m) if m.contains("observed")));
        assert!(
            matches!(with(counts(3, 1, 2)), Progress::Waiting(m) if m.contains("1 of 2 new pods"))
        );
        assert!(
            matches!(with(counts(3, 2, 1)), Progress::Waiting(m) if m.contains("1 of 2 updated pods available"))
        );
        assert_eq!(with(counts(3, 2, 2)), Progress::Done);
    }

    #[test]
    fn undo_goes_to_the_highest_revision_below_the_current_one() {
        let d = deployment(json!({
            "metadata": {"name": "web", "uid": "u1", "annotations": {REVISION: "3"}},
            "spec": {"selector": {}, "template": {}}
        }));
        let rs = |name: &str, rev: &str, owner: &str| -> ReplicaSet {
            serde_json::from_value(json!({
                "metadata": {"name": name, "annotations": {REVISION: rev},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner}]},
                "spec": {"selector": {}, "template": {"metadata": {"labels": {"a": "b", "pod-template-hash": "h"}}}}
            }))
            .expect("a replica set")
        };
        let sets = [
            rs("web-a", "1", "u1"),
            rs("web-b", "2", "u1"),
            rs("web-c", "3", "u1"),
            rs("other", "2", "u2"),
        ];
        let prev = previous_revision(&d, &sets).expect("a previous revision");
        assert_eq!(prev.metadata.name.as_deref(), Some("web-b"));
        assert_eq!(
            template_of(prev),
            Some(json!({"metadata": {"labels": {"a": "b"}}}))
        );
        assert!(previous_revision(&d, &sets[2..3]).is_none());
    }

    #[test]
    fn a_merge_diff_nulls_what_went_and_replaces_what_changed() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "f": "same"});
        let new = json!({"b": {"c": 2, "d": 4}, "e": [1], "f": "same", "g": true});
        assert_eq!(
            merge_diff(&old, &new),
            json!({"a": null, "b": {"d": 4}, "e": [1], "g": true})
        );
    }

    #[test]
    fn a_waiting_container_says_why() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "uid": "u", "labels": {"io.baton.service": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "nginx:broken", "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "web", "image": "nginx:broken", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "back-off pulling"}}}]}
        }))
        .expect("a pod");
        let t = pod_task(&pod);
        assert_eq!(
            (
                t.service.as_str(),
                t.node.as_str(),
                t.state.as_str(),
                t.message.as_str(),
                t.image.as_str()
            ),
            (
                "web",
                "n1",
                "waiting",
                "ImagePullBackOff: back-off pulling",
                "nginx:broken"
            )
        );
        assert_eq!(t.ports, vec!["80/tcp".to_string()]);
    }
}
