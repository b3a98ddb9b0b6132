//! Backends that keep services themselves (Docker Swarm, Kubernetes): baton hands them
//! whole services and the orchestrator keeps the replicas, restarts and rolling updates.
//! The `Orchestrator` capability is how callers reach one (`Runtime::orchestrator`);
//! the plan is still baton's, made here as plain data: each backend turns the project
//! into the objects it keeps (`Desired`), reads back what carries baton's labels
//! (`Existing`), and [`plan_objects`] says what to put and delete, with the fields
//! that changed. [`ignored_settings`] lists, one line per key, what a backend does not
//! honour, so nothing is ignored silently.

use std::collections::{BTreeMap, BTreeSet};

use baton_spec::Project;
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::apply::Reporter;
use crate::hash::{changed_paths, hash_value};
use crate::plan::{Action, Plan, PlanOptions};
use crate::runtime::{LogOptions, LogStream, RuntimeError};

/// One object an orchestrator keeps, as baton wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// `service`, `secret`, `config`, `network`, `volume` (Swarm); `Deployment`,
    /// `Service`, … (Kubernetes).
    pub kind: String,
    /// The object's name on the target.
    pub name: String,
    /// The file's service it belongs to, if any.
    pub service: Option<String>,
    /// What shapes it, compared field by field with what was applied before.
    pub config: Value,
}

impl Desired {
    /// The hash written on the object (a label) when it is put.
    pub fn hash(&self) -> String {
        hash_value(&self.config)
    }
}

/// One object found on the target with baton's labels for the project.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Existing {
    pub kind: String,
    pub name: String,
    pub service: Option<String>,
    /// The hash label it carries (empty when it has none).
    pub hash: String,
}

/// Puts what is missing or changed and deletes what left the file. `previous` returns
/// the configuration behind an earlier hash (the store keeps them), so a change can
/// name its fields; `only` narrows to some services (empty: all) and then deletes
/// nothing. Objects whose kind is in `immutable` (Swarm's secrets and configs) are never
/// changed in place: their names carry their content's hash, so a change is a new
/// object and the old one is deleted once nothing uses it.
pub fn plan_objects(
    project: &str,
    desired: &[Desired],
    existing: &[Existing],
    previous: &dyn Fn(&str) -> Option<Value>,
    only: &BTreeSet<String>,
) -> Plan {
    let mut actions = Vec::new();
    let mut up_to_date = Vec::new();
    let wanted = |service: &Option<String>| match service {
        Some(s) => only.is_empty() || only.contains(s),
        None => true,
    };
    let found: BTreeMap<(&str, &str), &Existing> = existing
        .iter()
        .map(|e| ((e.kind.as_str(), e.name.as_str()), e))
        .collect();
    for d in desired.iter().filter(|d| wanted(&d.service)) {
        let hash = d.hash();
        match found.get(&(d.kind.as_str(), d.name.as_str())) {
            None => actions.push(Action::Put {
                kind: d.kind.clone(),
                name: d.name.clone(),
                service: d.service.clone(),
                create: true,
                changes: Vec::new(),
            }),
            Some(e) if e.hash == hash => {
                if d.kind == "service" {
                    up_to_date.push(d.name.clone());
                }
            }
            Some(e) => {
                let changes = match previous(&e.hash) {
                    Some(old) => changed_paths(&old, &d.config),
                    None => {
                        vec!["configuration (changed outside baton or before it kept it)".into()]
                    }
                };
                actions.push(Action::Put {
                    kind: d.kind.clone(),
                    name: d.name.clone(),
                    service: d.service.clone(),
                    create: false,
                    changes,
                });
            }
        }
    }
    if only.is_empty() {
        let keep: BTreeSet<(&str, &str)> = desired
            .iter()
            .map(|d| (d.kind.as_str(), d.name.as_str()))
            .collect();
        for e in existing {
            if !keep.contains(&(e.kind.as_str(), e.name.as_str())) {
                let reason = match &e.service {
                    Some(s) if desired.iter().any(|d| d.service.as_ref() == Some(s)) => {
                        "replaced by a newer version".to_string()
                    }
                    Some(_) => "its service left the file".to_string(),
                    None => "no longer in the file".to_string(),
                };
                actions.push(Action::Delete {
                    kind: e.kind.clone(),
                    name: e.name.clone(),
                    service: e.service.clone(),
                    reason,
                });
            }
        }
    }
    // Dependencies first: networks, volumes, secrets and configs before the services
    // that use them; services are deleted before what they used.
    actions.sort_by_key(|a| match a {
        Action::Put { kind, .. } if is_support(kind) => 0,
        Action::Put { .. } => 1,
        Action::Delete { kind, .. } if !is_support(kind) => 2,
        _ => 3,
    });
    up_to_date.sort();
    Plan {
        project: project.to_string(),
        actions,
        up_to_date,
        warnings: Vec::new(),
    }
}

fn is_support(kind: &str) -> bool {
    matches!(
        kind,
        "network" | "volume" | "secret" | "config" | "Namespace" | "ConfigMap" | "Secret"
    ) || kind == "PersistentVolumeClaim"
}

/// One line per setting of the file that `supported` does not cover: a service's
/// top-level keys (`cap_add`, and those the model carries as written, `platform`),
/// `deploy`'s (`deploy.endpoint_mode`) and baton's own (`x-baton.autoscale`). `supported`
/// holds paths relative to a service (`build`, `deploy.placement`; `deploy` or `x-baton`
/// cover all of theirs). The user's `x-` keys are never listed.
pub fn ignored_settings(project: &Project, target: &str, supported: &[&str]) -> Vec<String> {
    let ok = |k: &str| supported.contains(&k);
    let mut out = Vec::new();
    for (name, service) in &project.services {
        let Ok(Value::Object(map)) = serde_json::to_value(service) else {
            continue;
        };
        for (key, value) in &map {
            if key == "deploy" {
                // `deploy.other` holds the keys the model carries as written
                // (`placement`, `endpoint_mode`): each is judged by its own name.
                let Value::Object(d) = value else { continue };
                let inner = d.iter().flat_map(|(k, v)| match (k.as_str(), v) {
                    ("other", Value::Object(o)) => o.keys().cloned().collect::<Vec<_>>(),
                    _ => vec![k.clone()],
                });
                for k in inner {
                    let path = format!("deploy.{k}");
                    if !ok(&path) && !ok("deploy") {
                        out.push(format!(
                            "services.{name}.{path}: ignored by target {target}"
                        ));
                    }
                }
            } else if key == "baton" {
                // baton's own settings (`x-baton:`), each by name: `x-baton.rollout`…
                let Value::Object(b) = value else { continue };
                for k in b.keys() {
                    let path = format!("x-baton.{k}");
                    if !ok(&path) && !ok("x-baton") {
                        out.push(format!(
                            "services.{name}.{path}: ignored by target {target}"
                        ));
                    }
                }
            } else if key == "other" {
                // Keys the model carries as written (`platform`, `dns`…), each by name.
                let Value::Object(o) = value else { continue };
                for k in o.keys().filter(|k| !ok(k)) {
                    out.push(format!("services.{name}.{k}: ignored by target {target}"));
                }
            } else if key == "extensions" || key.starts_with("x-") {
                // The user's own `x-` keys: Compose ignores them by definition.
            } else if !ok(key) {
                out.push(format!("services.{name}.{key}: ignored by target {target}"));
            }
        }
    }
    out.sort();
    out
}

/// One line per rollout setting (`x-baton.rollout`) a target does not carry out: a
/// strategy not in `supports` (what happens instead is `instead`), and a canary's
/// `analysis` thresholds, which need the per-revision metrics only baton's own proxy
/// measures. A setting that does not read is `up`'s error, not a warning.
pub fn rollout_warnings(
    project: &Project,
    target: &str,
    supports: &[crate::rollout::StrategyKind],
    instead: &str,
) -> Vec<String> {
    use crate::rollout::{rollout_spec, Strategy};
    let mut out = Vec::new();
    for (name, service) in &project.services {
        if service
            .baton
            .as_ref()
            .and_then(|b| b.get("rollout"))
            .is_none()
        {
            continue;
        }
        let Ok(spec) = rollout_spec(service) else {
            continue;
        };
        let kind = spec.strategy.kind();
        if !supports.contains(&kind) {
            out.push(format!(
                "services.{name}.x-baton.rollout.strategy: {kind} is not carried out by target {target}: {instead}"
            ));
        }
        if let Strategy::Canary(c) = &spec.strategy {
            if c.analysis.max_error_rate.is_some() || c.analysis.max_p95_latency_ms.is_some() {
                out.push(format!(
                    "services.{name}.x-baton.rollout.analysis: not judged by target {target} (baton's proxy does not carry its traffic there): each step waits for the new version to be ready, then for its pause"
                ));
            }
        }
    }
    out
}

/// One task (Swarm) or pod (Kubernetes) of a service, as `ps` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Task {
    pub service: String,
    /// `web.2` (a replica's slot), or the node's name for a global service's.
    pub name: String,
    pub id: String,
    /// The machine it runs on (empty while unscheduled).
    pub node: String,
    /// What the orchestrator says it is (`running`, `pending`, `failed`, …).
    pub state: String,
    /// What it should be (`running`, `shutdown`).
    pub desired: String,
    /// The orchestrator's message or error, if any.
    pub message: String,
    pub image: String,
    /// Published ports as `addr:port->port/proto`.
    pub ports: Vec<String>,
    /// Unix milliseconds of its last state change.
    pub since: i64,
}

/// A service's update, as its orchestrator reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UpdateStatus {
    pub service: String,
    /// `updating`, `completed`, `paused`, `rollback_started`, `rollback_completed`,
    /// `rollback_paused`, or `none` when the service was never updated.
    pub state: String,
    pub message: String,
    /// Tasks running the current spec, and how many are wanted.
    pub running: u32,
    pub desired: u32,
}

/// What `down` did on the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Removed {
    /// `kind name`, in the order they went.
    pub objects: Vec<String>,
}

/// A port the orchestrator cannot publish itself (a swarm whose routing mesh accepts
/// nothing) that `baton serve` answers on, forwarding to the tasks that serve it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Front {
    pub service: String,
    /// The port the file publishes, on this machine.
    pub port: u16,
    /// `tcp` or `http` (the port's `app_protocol`).
    pub protocol: String,
    /// Each running task: (task id, address and port it answers on, its revision).
    pub backends: Vec<(String, std::net::SocketAddr, String)>,
    /// Shares of the traffic by revision while two run (blue-green, canary); `None`:
    /// every task alike.
    pub split: Option<Vec<(String, u32)>>,
}

/// A backend that keeps services itself. Every future is the whole operation: `apply`
/// returns once the orchestrator converged or failed (a rollout it rolled back is a
/// failure that names the rollback).
pub trait Orchestrator {
    /// `swarm`, `kubernetes`.
    fn kind(&self) -> &'static str;

    /// What `up` would do: the plan (with `warnings` for each ignored setting and for how
    /// ports are published) and the configurations it was made from, keyed by hash,
    /// for the store.
    fn plan<'a>(
        &'a self,
        project: &'a Project,
        options: &'a PlanOptions,
        previous: &'a dyn Fn(&str) -> Option<Value>,
    ) -> LocalBoxFuture<'a, Result<Planned, RuntimeError>>;

    /// Carries out a plan made by `plan` for the same project, each step through the
    /// reporter, and waits for the services it changed to converge.
    fn apply<'a>(
        &'a self,
        project: &'a Project,
        planned: &'a Planned,
        reporter: &'a dyn Reporter,
    ) -> LocalBoxFuture<'a, Result<(), RuntimeError>>;

    /// The project's tasks (or pods), every service, sorted by service and name.
    fn tasks<'a>(&'a self, project: &'a str)
        -> LocalBoxFuture<'a, Result<Vec<Task>, RuntimeError>>;

    /// Sets a replicated service's replica count.
    fn scale<'a>(
        &'a self,
        project: &'a str,
        service: &'a str,
        replicas: u32,
    ) -> LocalBoxFuture<'a, Result<(), RuntimeError>>;

    fn update_status<'a>(
        &'a self,
        project: &'a str,
        service: &'a str,
    ) -> LocalBoxFuture<'a, Result<UpdateStatus, RuntimeError>>;

    /// Goes back to the service's previous spec (the orchestrator's own rollback).
    fn undo<'a>(
        &'a self,
        project: &'a str,
        service: &'a str,
    ) -> LocalBoxFuture<'a, Result<(), RuntimeError>>;

    /// Every task's output of one service, merged (`follow` keeps it open).
    fn logs(&self, project: &str, service: &str, options: &LogOptions) -> LogStream;

    /// The ports `baton serve` must front for the project, with their tasks now. Most
    /// orchestrators publish their ports themselves: none.
    fn fronts<'a>(
        &'a self,
        _project: &'a str,
    ) -> LocalBoxFuture<'a, Result<Vec<Front>, RuntimeError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Removes everything of the project (volumes only with `volumes`), each step
    /// through the reporter, and waits until its tasks are gone.
    fn down<'a>(
        &'a self,
        project: &'a str,
        volumes: bool,
        reporter: &'a dyn Reporter,
    ) -> LocalBoxFuture<'a, Result<Removed, RuntimeError>>;
}

/// A plan for an orchestrator and what it was made from.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan: Plan,
    /// Every desired object (the backend's own representation, in `config`).
    pub desired: Vec<Desired>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired(kind: &str, name: &str, service: Option<&str>, config: Value) -> Desired {
        Desired {
            kind: kind.into(),
            name: name.into(),
            service: service.map(String::from),
            config,
        }
    }

    fn existing(d: &Desired) -> Existing {
        Existing {
            kind: d.kind.clone(),
            name: d.name.clone(),
            service: d.service.clone(),
            hash: d.hash(),
        }
    }

    #[test]
    fn what_is_missing_is_put_what_changed_names_its_fields_what_left_is_deleted() {
        let old_web = desired(
            "service",
            "p_web",
            Some("web"),
            json!({"image": "a:1", "replicas": 3}),
        );
        let new_web = desired(
            "service",
            "p_web",
            Some("web"),
            json!({"image": "a:2", "replicas": 3}),
        );
        let db = desired("service", "p_db", Some("db"), json!({"image": "pg"}));
        let net = desired("network", "p_default", None, json!({"driver": "overlay"}));
        let gone = Existing {
            kind: "service".into(),
            name: "p_old".into(),
            service: Some("old".into()),
            hash: "x".into(),
        };
        let old_hash = old_web.hash();
        let old_config = old_web.config.clone();
        let previous = move |h: &str| (h == old_hash).then(|| old_config.clone());
        let plan = plan_objects(
            "p",
            &[net.clone(), new_web, db.clone()],
            &[existing(&old_web), existing(&db), gone],
            &previous,
            &BTreeSet::new(),
        );
        assert_eq!(plan.up_to_date, vec!["p_db".to_string()]);
        let lines: Vec<String> = plan
            .actions
            .iter()
            .map(|a| match a {
                Action::Put {
                    kind,
                    name,
                    create,
                    changes,
                    ..
                } => {
                    format!("put {kind} {name} {create} {changes:?}")
                }
                Action::Delete {
                    kind, name, reason, ..
                } => format!("delete {kind} {name} {reason}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                "put network p_default true []",
                "put service p_web false [\"image\"]",
                "delete service p_old its service left the file",
            ]
        );
    }

    #[test]
    fn narrowed_to_some_services_nothing_else_is_touched_or_deleted() {
        let web = desired("service", "p_web", Some("web"), json!({"image": "a"}));
        let db = desired("service", "p_db", Some("db"), json!({"image": "b"}));
        let stray = Existing {
            kind: "service".into(),
            name: "p_old".into(),
            service: Some("old".into()),
            hash: "x".into(),
        };
        let only: BTreeSet<String> = ["web".to_string()].into();
        let plan = plan_objects("p", &[web, db], &[stray], &|_| None, &only);
        assert_eq!(plan.actions.len(), 1);
        assert!(matches!(&plan.actions[0], Action::Put { name, .. } if name == "p_web"));
    }

    #[test]
    fn an_unchanged_project_plans_nothing() {
        let all = [
            desired("network", "p_default", None, json!({})),
            desired("service", "p_web", Some("web"), json!({"image": "a"})),
        ];
        let found: Vec<Existing> = all.iter().map(existing).collect();
        let plan = plan_objects("p", &all, &found, &|_| None, &BTreeSet::new());
        assert!(plan.is_empty(), "{:?}", plan.actions);
    }
}
