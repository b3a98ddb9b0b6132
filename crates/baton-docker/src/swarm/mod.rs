//! Docker Swarm: a Docker engine that is a swarm manager, driven through the Engine API
//! as services, tasks, overlay networks, secrets and configs (never the docker CLI).
//! `Swarm` is an `Orchestrator`: baton plans the project's objects (`spec.rs` builds
//! them, `baton_engine::orchestrate::plan_objects` compares them with what carries
//! baton's labels), puts and deletes them, and waits for the swarm's own rolling update
//! to converge or roll back. Published ports go through the routing mesh where it
//! works, else in host mode (this machine's kernel has no IPVS); `plan` says which.

mod raw;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use base64::Engine as _;
use baton_engine::apply::{Reporter, Step};
use baton_engine::hash::DigestKey;
use baton_engine::orchestrate::{
    ignored_settings, plan_objects, rollout_warnings, Desired, Existing, Front, Orchestrator,
    Planned, Removed, Task, UpdateStatus,
};
use baton_engine::plan::{Action, PlanOptions};
use baton_engine::rollout::StrategyKind;
use baton_engine::runtime::{
    BuildSpec, Capabilities, ContainerSpec, LogOptions, LogStream, NetworkSpec, Observed,
    ObservedContainer, ProgressFn, Runtime, RuntimeError, VolumeSpec,
};
use baton_spec::Project;
use bollard::models::{ServiceSpec, TaskState};
use bollard::query_parameters::{
    InspectServiceOptions, ListContainersOptions, ListNetworksOptions, ListNodesOptions,
    ListSecretsOptions, ListServicesOptions, ListTasksOptions, ListVolumesOptions,
    RemoveVolumeOptions, UpdateServiceOptions,
};
use futures_util::future::LocalBoxFuture;
use futures_util::{FutureExt, StreamExt};
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{detail, engine_error, Docker};
pub use spec::Publish;

/// How long `up` waits for a service to converge, and `down` for its tasks to go.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(500);
/// How often `up` looks at the services it waits for (two engine calls a look).
const CONVERGE_POLL: Duration = Duration::from_millis(100);

/// A swarm manager's engine.
#[derive(Debug, Clone)]
pub struct Swarm {
    docker: Docker,
    raw: raw::Raw,
    publish: Publish,
    /// `staging (swarm)`, for messages.
    target: String,
    /// Where `environment:` secrets and configs are read from.
    env: BTreeMap<String, String>,
    /// What the names of secrets and configs are digested with.
    key: DigestKey,
}

/// Whether this machine's kernel can carry swarm's routing mesh (IPVS).
fn local_ipvs() -> bool {
    if std::path::Path::new("/proc/net/ip_vs").exists() {
        return true;
    }
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let dir = std::path::Path::new("/lib/modules").join(release.trim());
    ["modules.dep", "modules.builtin"].iter().any(|f| {
        std::fs::read_to_string(dir.join(f))
            .map(|t| t.contains("/ip_vs.ko"))
            .unwrap_or(false)
    })
}

fn filters(pairs: &[(&str, String)]) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in pairs {
        m.entry(k.to_string()).or_default().push(v.clone());
    }
    m
}

fn project_label(project: &str) -> (&'static str, String) {
    ("label", format!("{}={project}", spec::PROJECT))
}

impl Swarm {
    /// Connects to `host` (`None`: `DOCKER_HOST`, else the local socket) and checks that
    /// it is a swarm manager. `publish` forces how ports are published; `None` probes:
    /// a local engine without IPVS publishes in host mode.
    pub async fn connect(
        host: Option<&str>,
        target: &str,
        publish: Option<Publish>,
        key: DigestKey,
    ) -> Result<Swarm, RuntimeError> {
        let docker = match host {
            Some(h) => Docker::connect_to(h).await,
            None => Docker::connect().await,
        }
        .map_err(|e| match e {
            RuntimeError::Unavailable(m) => {
                RuntimeError::Unavailable(format!("target {target}: {m}"))
            }
            other => other,
        })?;
        if let Err(e) = docker.api.inspect_swarm().await {
            return Err(RuntimeError::Unavailable(format!(
                "target {target}: the engine at {} is not a swarm manager ({}); run `docker \
                 swarm init` there, or point the target at a manager",
                docker.host(),
                detail(&e)
            )));
        }
        let local = docker.host().starts_with("unix://") || docker.host().starts_with('/');
        let publish = publish.unwrap_or(if local && !local_ipvs() {
            Publish::Host
        } else {
            Publish::Ingress
        });
        let raw = raw::Raw::new(&docker.endpoint(), &docker.api_version());
        Ok(Swarm {
            docker,
            raw,
            publish,
            target: target.to_string(),
            env: std::env::vars().collect(),
            key,
        })
    }

    /// How ports are published on this swarm.
    pub fn publish(&self) -> Publish {
        self.publish
    }

    fn err(&self, op: &str) -> impl Fn(bollard::errors::Error) -> RuntimeError + '_ {
        let op = op.to_string();
        move |e| engine_error(e, &op, &self.target)
    }

    async fn inspect(&self, name: &str) -> Result<bollard::models::Service, RuntimeError> {
        self.docker
            .api
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
            .map_err(self.err(&format!("inspect service {name}")))
    }

    /// Replaces the spec of the service as `current` saw it (the engine refuses an
    /// update made against an older version); `rollback` asks for its previous spec.
    async fn update(
        &self,
        op: &str,
        current: &bollard::models::Service,
        spec: ServiceSpec,
        rollback: bool,
    ) -> Result<(), RuntimeError> {
        let name = spec.name.clone().unwrap_or_default();
        let version = current.version.as_ref().and_then(|v| v.index).unwrap_or(0);
        self.docker
            .api
            .update_service(
                &name,
                spec,
                UpdateServiceOptions {
                    version: i32::try_from(version).unwrap_or(i32::MAX),
                    rollback: rollback.then(|| "previous".to_string()),
                    ..Default::default()
                },
                None,
            )
            .await
            .map_err(self.err(&format!("{op} service {name}")))?;
        Ok(())
    }

    async fn existing(&self, project: &str) -> Result<Vec<Existing>, RuntimeError> {
        let api = &self.docker.api;
        let f = filters(&[project_label(project)]);
        let mut out = Vec::new();
        let label = |l: Option<&HashMap<String, String>>, k: &str| {
            l.and_then(|l| l.get(k)).cloned().unwrap_or_default()
        };
        for s in api
            .list_services(Some(ListServicesOptions {
                filters: Some(f.clone()),
                ..Default::default()
            }))
            .await
            .map_err(self.err("list services"))?
        {
            let spec = s.spec.unwrap_or_default();
            let l = spec.labels.as_ref();
            out.push(Existing {
                kind: "service".into(),
                name: spec.name.clone().unwrap_or_default(),
                service: Some(label(l, spec::SERVICE)).filter(|s| !s.is_empty()),
                hash: label(l, spec::HASH),
            });
        }
        for n in api
            .list_networks(Some(ListNetworksOptions {
                filters: Some(f.clone()),
            }))
            .await
            .map_err(self.err("list networks"))?
        {
            out.push(Existing {
                kind: "network".into(),
                name: n.name.clone().unwrap_or_default(),
                service: None,
                hash: label(n.labels.as_ref(), spec::HASH),
            });
        }
        for s in api
            .list_secrets(Some(ListSecretsOptions {
                filters: Some(f.clone()),
            }))
            .await
            .map_err(self.err("list secrets"))?
        {
            let spec = s.spec.unwrap_or_default();
            out.push(Existing {
                kind: "secret".into(),
                name: spec.name.clone().unwrap_or_default(),
                service: None,
                hash: label(spec.labels.as_ref(), spec::HASH),
            });
        }
        let configs = self
            .raw
            .call(
                "list configs",
                Method::GET,
                &format!(
                    "/configs?filters={}",
                    urlencode(
                        &json!({"label": [format!("{}={project}", spec::PROJECT)]}).to_string()
                    )
                ),
                None,
            )
            .await?;
        for c in configs.as_array().into_iter().flatten() {
            out.push(Existing {
                kind: "config".into(),
                name: c["Spec"]["Name"].as_str().unwrap_or_default().to_string(),
                service: None,
                hash: c["Spec"]["Labels"][spec::HASH]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        Ok(out)
    }

    /// Names of secrets (or configs) to their ids.
    async fn ids(&self, kind: &str) -> Result<BTreeMap<String, String>, RuntimeError> {
        let mut out = BTreeMap::new();
        if kind == "secret" {
            for s in self
                .docker
                .api
                .list_secrets(None::<ListSecretsOptions>)
                .await
                .map_err(self.err("list secrets"))?
            {
                if let (Some(id), Some(name)) = (s.id, s.spec.and_then(|s| s.name)) {
                    out.insert(name, id);
                }
            }
        } else {
            let all = self
                .raw
                .call("list configs", Method::GET, "/configs", None)
                .await?;
            for c in all.as_array().into_iter().flatten() {
                if let (Some(id), Some(name)) = (c["ID"].as_str(), c["Spec"]["Name"].as_str()) {
                    out.insert(name.to_string(), id.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Puts one object.
    async fn put(&self, project: &Project, d: &Desired, create: bool) -> Result<(), RuntimeError> {
        let hash = d.hash();
        let mut config = d.config.clone();
        config["Labels"][spec::HASH] = json!(hash);
        let api = &self.docker.api;
        match d.kind.as_str() {
            "network" if create => {
                let req: bollard::models::NetworkCreateRequest =
                    serde_json::from_value(config).map_err(|e| bad(&d.name, e))?;
                api.create_network(req)
                    .await
                    .map_err(self.err(&format!("create network {}", d.name)))?;
            }
            "network" => {
                return Err(RuntimeError::Failed {
                    op: format!("update network {}", d.name),
                    detail: "a swarm network cannot be changed in place; `baton down` the \
                             project (or rename the network) to recreate it"
                        .into(),
                })
            }
            "secret" | "config" => {
                let key = config["Labels"][spec::KEY]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let objects = if d.kind == "secret" {
                    &project.secrets
                } else {
                    &project.configs
                };
                let o = objects.get(&key).ok_or_else(|| RuntimeError::NotFound {
                    what: format!("{} {key}", d.kind),
                })?;
                let data = spec::content(
                    &d.kind,
                    &key,
                    o,
                    &spec::Sources {
                        env: &self.env,
                        key: &self.key,
                    },
                )
                .map_err(|detail| RuntimeError::Failed {
                    op: format!("create {} {key}", d.kind),
                    detail,
                })?;
                config["Data"] = json!(base64::engine::general_purpose::STANDARD.encode(data));
                if d.kind == "secret" {
                    let req: bollard::models::SecretSpec =
                        serde_json::from_value(config).map_err(|e| bad(&d.name, e))?;
                    match api.create_secret(req).await {
                        Ok(_) => {}
                        // Same name, same content: it is there already.
                        Err(e) if crate::client::status(&e) == Some(409) => {}
                        Err(e) => return Err(self.err(&format!("create secret {key}"))(e)),
                    }
                } else {
                    match self
                        .raw
                        .call(
                            &format!("create config {key}"),
                            Method::POST,
                            "/configs/create",
                            Some(config),
                        )
                        .await
                    {
                        Ok(_) | Err(RuntimeError::Conflict { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            "service" => {
                self.fill_file_ids(&mut config).await?;
                let spec: ServiceSpec =
                    serde_json::from_value(config).map_err(|e| bad(&d.name, e))?;
                if create {
                    api.create_service(spec, None)
                        .await
                        .map_err(self.err(&format!("create service {}", d.name)))?;
                } else {
                    let current = self.inspect(&d.name).await?;
                    self.update("update", &current, spec, false).await?;
                }
            }
            other => {
                return Err(RuntimeError::Unsupported(format!(
                    "a swarm keeps no {other} objects"
                )))
            }
        }
        Ok(())
    }

    /// Secret and config references name what they want; the engine wants ids too.
    async fn fill_file_ids(&self, config: &mut Value) -> Result<(), RuntimeError> {
        for (field, kind, name_key, id_key) in [
            ("Secrets", "secret", "SecretName", "SecretID"),
            ("Configs", "config", "ConfigName", "ConfigID"),
        ] {
            let Some(list) = config["TaskTemplate"]["ContainerSpec"][field].as_array_mut() else {
                continue;
            };
            let ids = self.ids(kind).await?;
            for r in list {
                let name = r[name_key].as_str().unwrap_or_default().to_string();
                let id = ids.get(&name).ok_or_else(|| RuntimeError::NotFound {
                    what: format!("{kind} {name} on the swarm"),
                })?;
                r[id_key] = json!(id);
            }
        }
        Ok(())
    }

    async fn delete(&self, kind: &str, name: &str) -> Result<(), RuntimeError> {
        let api = &self.docker.api;
        let op = format!("delete {kind} {name}");
        let gone = |r: Result<(), bollard::errors::Error>| match r {
            Ok(()) => Ok(()),
            Err(e) if crate::client::status(&e) == Some(404) => Ok(()),
            Err(e) => Err(e),
        };
        match kind {
            "service" => gone(api.delete_service(name).await).map_err(self.err(&op)),
            "secret" => gone(api.delete_secret(name).await).map_err(self.err(&op)),
            "config" => match self
                .raw
                .call(&op, Method::DELETE, &format!("/configs/{name}"), None)
                .await
            {
                Ok(_) | Err(RuntimeError::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            },
            "network" => {
                // Tasks leave a network a moment after their service is gone.
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    match gone(api.remove_network(name).await) {
                        Ok(()) => return Ok(()),
                        Err(e)
                            if Instant::now() < deadline
                                && matches!(crate::client::status(&e), Some(403 | 409 | 500)) =>
                        {
                            tokio::time::sleep(POLL).await;
                        }
                        Err(e) => return Err(self.err(&op)(e)),
                    }
                }
            }
            "volume" => gone(api.remove_volume(name, None::<RemoveVolumeOptions>).await)
                .map_err(self.err(&op)),
            other => Err(RuntimeError::Unsupported(format!(
                "a swarm keeps no {other} objects"
            ))),
        }
    }

    /// Each node's id to its hostname and address.
    async fn nodes(&self) -> Result<BTreeMap<String, (String, String)>, RuntimeError> {
        Ok(self
            .docker
            .api
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(self.err("list nodes"))?
            .into_iter()
            .filter_map(|n| {
                let host = n.description.and_then(|d| d.hostname).unwrap_or_default();
                let addr = n.status.and_then(|s| s.addr).unwrap_or_default();
                n.id.map(|id| (id, (host, addr)))
            })
            .collect())
    }

    async fn services_of(
        &self,
        project: &str,
    ) -> Result<Vec<bollard::models::Service>, RuntimeError> {
        self.docker
            .api
            .list_services(Some(ListServicesOptions {
                filters: Some(filters(&[project_label(project)])),
                ..Default::default()
            }))
            .await
            .map_err(self.err("list services"))
    }

    /// The swarm service that is the file's `key` now: `<project>_<key>`, or for a
    /// service switched by revision (blue-green, canary) its newest revision.
    async fn resolve(&self, project: &str, key: &str) -> Result<String, RuntimeError> {
        let mut found: Vec<(String, String)> = self
            .services_of(project)
            .await?
            .into_iter()
            .filter_map(|s| {
                let spec = s.spec?;
                let labels = spec.labels?;
                (labels.get(spec::SERVICE).map(String::as_str) == Some(key))
                    .then(|| Some((s.created_at.unwrap_or_default(), spec.name?)))?
            })
            .collect();
        found.sort();
        found
            .pop()
            .map(|(_, n)| n)
            .ok_or_else(|| RuntimeError::NotFound {
                what: format!("service {key} of project {project} on the swarm"),
            })
    }

    /// Sets a revision service's share of the front's traffic (a label: its tasks
    /// are not touched).
    async fn set_weight(&self, name: &str, weight: u32) -> Result<(), RuntimeError> {
        let current = self.inspect(name).await?;
        let mut spec = current.spec.clone().unwrap_or_default();
        spec.labels
            .get_or_insert_with(Default::default)
            .insert(spec::WEIGHT.into(), weight.to_string());
        self.update("weigh", &current, spec, false).await
    }

    /// Blue-green or canary: the new revision `new` runs beside `old` with no traffic
    /// until it converged (healthy); then the front's weights move to it — at once
    /// (blue-green) or step by step with pauses (canary) — and `old` is left with none
    /// (the plan's `Delete` removes it next). A new revision that does not converge is
    /// removed and `old` keeps all the traffic.
    async fn switch_over(
        &self,
        project: &Project,
        d: &Desired,
        old: &str,
        reporter: &dyn Reporter,
    ) -> Result<(), RuntimeError> {
        self.set_weight(old, 100).await?;
        let mut new = d.clone();
        new.config["Labels"][spec::WEIGHT] = json!("0");
        self.put(project, &new, true).await?;
        self.shift(project, d, old, reporter).await
    }

    /// The second half of a switch: waits for the new revision `d` (already on the
    /// swarm, with no traffic) to converge, then moves the traffic from `old` to it.
    /// Also what finishes a switch a killed `up` left half-done.
    async fn shift(
        &self,
        project: &Project,
        d: &Desired,
        old: &str,
        reporter: &dyn Reporter,
    ) -> Result<(), RuntimeError> {
        // The front sees a weight at its next tick; give it two of the default.
        const SEEN: Duration = Duration::from_secs(2);
        let key = d.service.clone().unwrap_or_default();
        let since = Since::default();
        if let Err(e) = self
            .wait_converged(&[(d.name.clone(), since)], reporter)
            .await
        {
            let _ = self.delete("service", &d.name).await;
            return Err(RuntimeError::Failed {
                op: format!("service {key}"),
                detail: format!(
                    "its new version did not become healthy and was removed; the old one \
                     keeps all the traffic: {e}"
                ),
            });
        }
        let steps: Vec<(u32, u64)> = match project
            .services
            .get(&key)
            .and_then(|s| baton_engine::rollout::rollout_spec(s).ok())
            .map(|r| r.strategy)
        {
            Some(baton_engine::rollout::Strategy::Canary(c)) => {
                c.steps.iter().map(|s| (s.weight, s.pause_ms)).collect()
            }
            Some(baton_engine::rollout::Strategy::BlueGreen(b)) => vec![(100, b.keep_old_ms)],
            _ => Vec::new(),
        };
        for (weight, pause_ms) in steps.iter().filter(|(w, _)| *w < 100) {
            self.set_weight(&d.name, *weight).await?;
            self.set_weight(old, 100 - weight).await?;
            let line = format!("{weight}% of the traffic on the new version");
            reporter.report(Step::Waiting {
                target: &d.name,
                on: &line,
            });
            tokio::time::sleep(SEEN + Duration::from_millis(*pause_ms)).await;
        }
        self.set_weight(&d.name, 100).await?;
        self.set_weight(old, 0).await?;
        reporter.report(Step::Done {
            target: &d.name,
            what: "all the traffic on the new version",
        });
        let keep = steps
            .iter()
            .find(|(w, _)| *w == 100)
            .map_or(0, |(_, pause)| *pause);
        tokio::time::sleep(SEEN + Duration::from_millis(keep)).await;
        Ok(())
    }

    async fn tasks_of(&self, service: &str) -> Result<Vec<bollard::models::Task>, RuntimeError> {
        self.docker
            .api
            .list_tasks(Some(ListTasksOptions {
                filters: Some(filters(&[("service", service.to_string())])),
            }))
            .await
            .map_err(self.err("list tasks"))
    }

    /// Where a service stands: `Ok(Some(line))` while it converges, `Ok(None)` once it
    /// has (every wanted task running its current spec), an error when the swarm
    /// gave up or rolled the update back.
    fn convergence(
        name: &str,
        s: &bollard::models::Service,
        tasks: &[bollard::models::Task],
        since: &Since,
    ) -> Result<Option<String>, RuntimeError> {
        let failed = |detail: String| RuntimeError::Failed {
            op: format!("service {name}"),
            detail,
        };
        let mut updating = false;
        let spec = s.spec.clone().unwrap_or_default();
        // The newest task error: why an update failed or a task cannot start.
        let mut errors: Vec<(String, String)> = tasks
            .iter()
            .filter_map(|t| {
                let st = t.status.as_ref()?;
                let bad = matches!(st.state, Some(TaskState::REJECTED | TaskState::FAILED));
                let err = st.err.clone().unwrap_or_default();
                (bad && !err.is_empty()).then(|| (st.timestamp.clone().unwrap_or_default(), err))
            })
            .collect();
        errors.sort();
        let newest_error = errors
            .last()
            .map(|(_, e)| format!(" (a task said: {e})"))
            .unwrap_or_default();
        // An update status from before this change says nothing about it (a change of
        // the replica count alone starts no update).
        let fresh = s
            .update_status
            .as_ref()
            .filter(|u| u.started_at != since.started_at);
        if let Some(u) = fresh {
            let state = u.state.map(|s| s.to_string()).unwrap_or_default();
            let message = u.message.clone().unwrap_or_default();
            match state.as_str() {
                "rollback_completed" if since.rollback => {}
                "rollback_completed" => {
                    return Err(failed(format!(
                        "the update failed and the swarm rolled it back: {message}{newest_error}"
                    )))
                }
                "paused" | "rollback_paused" => {
                    return Err(failed(format!(
                        "the update is {state}: {message}{newest_error}"
                    )))
                }
                "updating" | "rollback_started" => updating = true,
                _ => {}
            }
        }
        let current: Vec<&bollard::models::Task> = tasks.iter().filter(|t| should_run(t)).collect();
        let running = current.iter().filter(|t| runs(t)).count();
        let wanted = match spec.mode.as_ref().and_then(|m| m.replicated.as_ref()) {
            Some(r) => usize::try_from(r.replicas.unwrap_or(1)).unwrap_or(0),
            None => current.len().max(1),
        };
        let job = spec
            .task_template
            .as_ref()
            .and_then(|t| t.restart_policy.as_ref())
            .and_then(|r| r.condition)
            .map(|c| c.to_string())
            .as_deref()
            == Some("none");
        if job && !updating {
            // Run to its end, not restarted: done once every slot completed.
            let complete = tasks
                .iter()
                .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::COMPLETE))
                .count();
            if complete >= wanted {
                return Ok(None);
            }
            if !errors.is_empty() {
                return Err(failed(format!("it ran and failed{newest_error}")));
            }
            return Ok(Some(format!("{complete}/{wanted} task(s) completed")));
        }
        if !updating && running >= wanted && current.len() == running {
            return Ok(None);
        }
        // A task that cannot even start (no such image, no node that fits) keeps
        // failing; say why rather than wait out the timeout.
        // A service that should keep running whose tasks end (fail, or exit, even with
        // 0, as one stopped for failing its health check may) again and again.
        let ended: Vec<(String, String)> = tasks
            .iter()
            .filter_map(|t| {
                let st = t.status.as_ref()?;
                if !matches!(
                    st.state,
                    Some(TaskState::REJECTED | TaskState::FAILED | TaskState::COMPLETE)
                ) {
                    return None;
                }
                let code = st.container_status.as_ref().and_then(|c| c.exit_code);
                let why = match (st.err.as_deref().filter(|e| !e.is_empty()), code) {
                    (Some(e), _) => e.to_string(),
                    (None, Some(c)) => format!("its container exited with {c}"),
                    (None, None) => st.message.clone().unwrap_or_default(),
                };
                Some((st.timestamp.clone().unwrap_or_default(), why))
            })
            .collect();
        if !updating && running == 0 && ended.len() >= 3 {
            let last = ended.iter().max().map(|(_, w)| w.as_str()).unwrap_or("");
            return Err(failed(format!("its tasks keep ending (the last: {last})")));
        }
        let pending = current
            .iter()
            .filter_map(|t| t.status.as_ref()?.err.clone())
            .find(|e| !e.is_empty());
        Ok(Some(match (updating, pending) {
            (true, _) => format!("updating, {running}/{wanted} task(s) running"),
            (false, Some(e)) => format!("{running}/{wanted} task(s) running ({e})"),
            (false, None) => format!("{running}/{wanted} task(s) running"),
        }))
    }

    /// Where a service's update status stood before baton changed it.
    async fn since(&self, name: &str, rollback: bool) -> Result<Since, RuntimeError> {
        let s = self.inspect(name).await?;
        Ok(Since {
            started_at: s.update_status.and_then(|u| u.started_at),
            rollback,
            update: true,
        })
    }

    async fn wait_converged(
        &self,
        names: &[(String, Since)],
        reporter: &dyn Reporter,
    ) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        let mut left: BTreeMap<String, &Since> =
            names.iter().map(|(n, s)| (n.clone(), s)).collect();
        let mut said: BTreeMap<String, String> = BTreeMap::new();
        // Swarm takes a moment to start an update; do not read the tasks it has not
        // replaced yet as the new version's. New services have no old tasks.
        if names.iter().any(|(_, s)| s.update) {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        while !left.is_empty() {
            // One look at every service and task per round, however many wait.
            let services: BTreeMap<String, bollard::models::Service> = self
                .docker
                .api
                .list_services(Some(ListServicesOptions {
                    filters: Some(filters(
                        &left.keys().map(|n| ("name", n.clone())).collect::<Vec<_>>(),
                    )),
                    ..Default::default()
                }))
                .await
                .map_err(self.err("list services"))?
                .into_iter()
                .filter_map(|s| Some((s.spec.as_ref()?.name.clone()?, s)))
                .collect();
            let tasks = self
                .docker
                .api
                .list_tasks(Some(ListTasksOptions {
                    filters: Some(filters(
                        &left
                            .keys()
                            .map(|n| ("service", n.clone()))
                            .collect::<Vec<_>>(),
                    )),
                }))
                .await
                .map_err(self.err("list tasks"))?;
            let ids: BTreeMap<String, String> = services
                .iter()
                .filter_map(|(n, s)| Some((s.id.clone()?, n.clone())))
                .collect();
            let mut by_service: BTreeMap<&str, Vec<bollard::models::Task>> = BTreeMap::new();
            for t in tasks {
                if let Some(name) = t.service_id.as_ref().and_then(|id| ids.get(id)) {
                    by_service.entry(name.as_str()).or_default().push(t);
                }
            }
            for (name, since) in left.clone() {
                let Some(service) = services.get(&name) else {
                    return Err(RuntimeError::NotFound {
                        what: format!("service {name} on the swarm"),
                    });
                };
                let none = Vec::new();
                let tasks = by_service.get(name.as_str()).unwrap_or(&none);
                match Self::convergence(&name, service, tasks, since) {
                    Ok(None) => {
                        reporter.report(Step::Done {
                            target: &name,
                            what: "converged",
                        });
                        left.remove(&name);
                    }
                    Ok(Some(line)) => {
                        if said.get(&name) != Some(&line) {
                            reporter.report(Step::Waiting {
                                target: &name,
                                on: &line,
                            });
                            said.insert(name.clone(), line);
                        }
                    }
                    Err(e) => {
                        reporter.report(Step::Failed {
                            target: &name,
                            error: &e.to_string(),
                        });
                        return Err(e);
                    }
                }
            }
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::Failed {
                    op: format!("target {}", self.target),
                    detail: format!(
                        "{} did not converge within {}s: {}",
                        left.keys().cloned().collect::<Vec<_>>().join(", "),
                        CONVERGE_TIMEOUT.as_secs(),
                        said.values().cloned().collect::<Vec<_>>().join("; ")
                    ),
                });
            }
            tokio::time::sleep(CONVERGE_POLL).await;
        }
        Ok(())
    }

    /// Waits until no container of these services is left on this engine's node.
    async fn wait_containers_gone(&self, services: &[String]) -> Result<(), RuntimeError> {
        if services.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut f = HashMap::new();
            f.insert(
                "label".to_string(),
                vec!["io.baton.swarm.service".to_string()],
            );
            let left: Vec<_> = self
                .docker
                .api
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    filters: Some(f),
                    ..Default::default()
                }))
                .await
                .map_err(self.err("list containers"))?
                .into_iter()
                .filter(|c| {
                    c.labels
                        .as_ref()
                        .and_then(|l| l.get("io.baton.swarm.service"))
                        .is_some_and(|s| services.contains(s))
                })
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::Failed {
                    op: "down".into(),
                    detail: format!(
                        "{} task container(s) are still there after 120s",
                        left.len()
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A service's update status before baton changed it, and whether the change was a
/// rollback (`rollout undo`), whose end is `rollback_completed`.
#[derive(Debug, Clone, Default)]
struct Since {
    started_at: Option<String>,
    rollback: bool,
    /// An existing service changed (not a new one).
    update: bool,
}

/// Whether the swarm wants the task running (not one it is stopping or that ended).
fn should_run(t: &bollard::models::Task) -> bool {
    t.desired_state == Some(TaskState::RUNNING)
}

/// Whether the task runs (and, with a health check, is healthy).
fn runs(t: &bollard::models::Task) -> bool {
    t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
}

fn bad(name: &str, e: serde_json::Error) -> RuntimeError {
    RuntimeError::Failed {
        op: format!("put {name}"),
        detail: format!("baton made a spec the engine's types refuse: {e}"),
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn millis(t: Option<&String>) -> i64 {
    t.and_then(|t| crate::observe::parse_rfc3339(t))
        .map_or(0, |s| s.saturating_mul(1000))
}

impl Orchestrator for Swarm {
    fn kind(&self) -> &'static str {
        "swarm"
    }

    fn plan<'a>(
        &'a self,
        project: &'a Project,
        options: &'a PlanOptions,
        previous: &'a dyn Fn(&str) -> Option<Value>,
    ) -> LocalBoxFuture<'a, Result<Planned, RuntimeError>> {
        async move {
            let mut project = project.clone();
            for (name, n) in &options.scale {
                if let Some(s) = project.services.get_mut(name) {
                    s.deploy.get_or_insert_with(Default::default).replicas = Some(*n);
                }
            }
            let desired = spec::desired(&project, self.publish, &spec::Sources { env: &self.env, key: &self.key })
                .map_err(|detail| RuntimeError::Failed {
                    op: format!("plan for target {}", self.target),
                    detail,
                })?;
            for (key, n) in &project.networks {
                if n.external {
                    let found = self
                        .docker
                        .api
                        .inspect_network(&n.name, None::<bollard::query_parameters::InspectNetworkOptions>)
                        .await;
                    if found.is_err() {
                        return Err(RuntimeError::NotFound {
                            what: format!("network {key}: external network {:?} on the swarm", n.name),
                        });
                    }
                }
            }
            for (kind, objects) in [("secret", &project.secrets), ("config", &project.configs)] {
                let ids = if objects.values().any(|o| o.external) {
                    self.ids(kind).await?
                } else {
                    BTreeMap::new()
                };
                for (key, o) in objects.iter().filter(|(_, o)| o.external) {
                    let name = o.name.clone().unwrap_or_else(|| key.clone());
                    if !ids.contains_key(&name) {
                        return Err(RuntimeError::NotFound {
                            what: format!(
                                "{kind} {key}: external {kind} {name:?} on the swarm (create it with `docker {kind} create`)"
                            ),
                        });
                    }
                }
            }
            let existing = self.existing(&project.name).await?;
            let only: BTreeSet<String> = options.services.iter().cloned().collect();
            let mut plan = plan_objects(&project.name, &desired, &existing, previous, &only);
            plan.warnings
                .extend(ignored_settings(&project, &self.target, spec::SUPPORTED));
            // Every strategy is carried out; a canary's analysis is not judged.
            plan.warnings.extend(rollout_warnings(
                &project,
                &self.target,
                &[StrategyKind::Rolling, StrategyKind::BlueGreen, StrategyKind::Canary],
                "",
            ));
            plan.warnings.extend(spec::publish_notes(&project, self.publish));
            Ok(Planned { plan, desired })
        }
        .boxed_local()
    }

    fn apply<'a>(
        &'a self,
        project: &'a Project,
        planned: &'a Planned,
        reporter: &'a dyn Reporter,
    ) -> LocalBoxFuture<'a, Result<(), RuntimeError>> {
        async move {
            let mut changed: Vec<(String, Since)> = Vec::new();
            let mut deleted_services = Vec::new();
            let mut converged: BTreeSet<String> = BTreeSet::new();
            // New revisions this apply switched to.
            let mut switched_now: BTreeSet<String> = BTreeSet::new();
            let order = baton_engine::graph::start_order(
                project,
                &project.services.keys().cloned().collect(),
            );
            let rank = |a: &Action| match a {
                Action::Put {
                    kind,
                    service: Some(s),
                    ..
                } if kind == "service" => order.iter().position(|o| o == s).unwrap_or(0),
                _ => 0,
            };
            let mut actions: Vec<&Action> = planned.plan.actions.iter().collect();
            // Stable: only service puts move, into dependency order.
            actions.sort_by_key(|a| (group(a), rank(a)));
            for a in actions {
                // Swarm starts services in no order; baton waits for what a service
                // depends on (healthy, or completed) before putting it.
                if let Action::Put {
                    service: Some(key), ..
                } = a
                {
                    let deps: Vec<String> = project
                        .services
                        .get(key)
                        .map(|s| s.depends_on.keys().cloned().collect())
                        .unwrap_or_default();
                    let names: BTreeSet<String> = deps
                        .iter()
                        .map(|d| spec::service_name(&project.name, d))
                        .collect();
                    let waiting: Vec<(String, Since)> = changed
                        .iter()
                        .filter(|(n, _)| names.contains(n) && !converged.contains(n))
                        .cloned()
                        .collect();
                    if !waiting.is_empty() {
                        self.wait_converged(&waiting, reporter).await?;
                        converged.extend(waiting.into_iter().map(|(n, _)| n));
                    }
                }
                let what = format!("{} {}", a.kind(), kind_of(a));
                reporter.report(Step::Started {
                    target: a.target(),
                    what: &what,
                });
                let result = match a {
                    Action::Put {
                        kind, name, create, ..
                    } => {
                        let d = planned
                            .desired
                            .iter()
                            .find(|d| &d.kind == kind && &d.name == name)
                            .ok_or_else(|| RuntimeError::NotFound {
                                what: format!("{kind} {name} in the plan"),
                            })?;
                        // A new revision of a service switched by baton replaces the
                        // one the plan deletes: the front moves the traffic over.
                        let replaced = planned.plan.actions.iter().find_map(|o| match o {
                            Action::Delete {
                                kind: k,
                                name: n,
                                service: Some(sv),
                                ..
                            } if k == "service"
                                && d.service.as_ref() == Some(sv)
                                && d.config["Labels"].get(spec::STRATEGY).is_some() =>
                            {
                                Some(n.clone())
                            }
                            _ => None,
                        });
                        if let (Some(old), true) = (replaced, *create) {
                            let r = self.switch_over(project, d, &old, reporter).await;
                            converged.insert(name.clone());
                            switched_now.insert(name.clone());
                            r
                        } else {
                            let since = if kind == "service" && !*create {
                                self.since(name, false).await?
                            } else {
                                Since::default()
                            };
                            let r = self.put(project, d, *create).await;
                            if kind == "service" {
                                changed.push((name.clone(), since));
                            }
                            r
                        }
                    }
                    Action::Delete {
                        kind,
                        name,
                        service,
                        ..
                    } => {
                        if kind == "network" {
                            self.wait_containers_gone(&deleted_services).await?;
                        }
                        // An old revision whose new one a killed `up` left in place
                        // (up to date, so not put again): finish the switch first, so
                        // a new one that never became healthy is not what is left.
                        let newer = planned.desired.iter().find(|d| {
                            d.kind == "service"
                                && &d.service == service
                                && service.is_some()
                                && d.config["Labels"].get(spec::STRATEGY).is_some()
                                && !switched_now.contains(&d.name)
                        });
                        if let (true, Some(d)) = (kind == "service", newer) {
                            self.shift(project, d, name, reporter).await?;
                        }
                        let r = self.delete(kind, name).await;
                        if kind == "service" {
                            deleted_services.push(name.clone());
                        }
                        r
                    }
                    other => Err(RuntimeError::Unsupported(format!(
                        "a swarm cannot {}",
                        other.kind()
                    ))),
                };
                match &result {
                    Ok(()) => reporter.report(Step::Done {
                        target: a.target(),
                        what: &what,
                    }),
                    Err(e) => reporter.report(Step::Failed {
                        target: a.target(),
                        error: &e.to_string(),
                    }),
                }
                result?;
            }
            let left: Vec<(String, Since)> = changed
                .into_iter()
                .filter(|(n, _)| !converged.contains(n))
                .collect();
            self.wait_converged(&left, reporter).await
        }
        .boxed_local()
    }

    fn tasks<'a>(
        &'a self,
        project: &'a str,
    ) -> LocalBoxFuture<'a, Result<Vec<Task>, RuntimeError>> {
        async move {
            let nodes = self.nodes().await?;
            let mut out = Vec::new();
            for s in self.services_of(project).await? {
                let spec = s.spec.unwrap_or_default();
                let name = spec.name.unwrap_or_default();
                let service = spec
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(spec::SERVICE))
                    .cloned()
                    .unwrap_or_else(|| name.clone());
                for t in self.tasks_of(&name).await? {
                    let status = t.status.clone().unwrap_or_default();
                    let node_id = t.node_id.clone().unwrap_or_default();
                    let node = match nodes.get(&node_id) {
                        // Two machines of one name: say which by its id.
                        Some((host, _)) if nodes.values().filter(|n| &n.0 == host).count() > 1 => {
                            format!("{host} ({})", &node_id[..node_id.len().min(12)])
                        }
                        Some((host, _)) => host.clone(),
                        None => String::new(),
                    };
                    let task_name = match t.slot {
                        Some(slot) => format!("{service}.{slot}"),
                        None => format!("{service}.{node}"),
                    };
                    let ports = status
                        .port_status
                        .as_ref()
                        .and_then(|p| p.ports.clone())
                        .unwrap_or_default()
                        .iter()
                        .map(|p| {
                            format!(
                                "{}->{}/{}",
                                p.published_port.unwrap_or(0),
                                p.target_port.unwrap_or(0),
                                p.protocol
                                    .map(|p| p.to_string())
                                    .unwrap_or_else(|| "tcp".into())
                            )
                        })
                        .collect::<BTreeSet<String>>()
                        .into_iter()
                        .collect();
                    out.push(Task {
                        service: service.clone(),
                        name: task_name,
                        id: t.id.clone().unwrap_or_default(),
                        node,
                        state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                        desired: t.desired_state.map(|s| s.to_string()).unwrap_or_default(),
                        message: status
                            .err
                            .clone()
                            .filter(|e| !e.is_empty())
                            .or(status.message.clone())
                            .unwrap_or_default(),
                        image: t
                            .spec
                            .as_ref()
                            .and_then(|s| s.container_spec.as_ref())
                            .and_then(|c| c.image.clone())
                            .map(|i| i.split('@').next().unwrap_or_default().to_string())
                            .unwrap_or_default(),
                        ports,
                        since: millis(status.timestamp.as_ref()),
                    });
                }
            }
            out.sort_by(|a, b| (&a.service, &a.name, b.since).cmp(&(&b.service, &b.name, a.since)));
            Ok(out)
        }
        .boxed_local()
    }

    fn scale<'a>(
        &'a self,
        project: &'a str,
        service: &'a str,
        replicas: u32,
    ) -> LocalBoxFuture<'a, Result<(), RuntimeError>> {
        async move {
            let name = self.resolve(project, service).await?;
            let current = self.inspect(&name).await?;
            let mut spec = current.spec.clone().unwrap_or_default();
            match spec.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
                Some(r) => r.replicas = Some(i64::from(replicas)),
                None => {
                    return Err(RuntimeError::Unsupported(format!(
                        "service {service} is global: one task per node, it cannot be scaled"
                    )))
                }
            }
            self.update("scale", &current, spec, false).await?;
            Ok(())
        }
        .boxed_local()
    }

    fn update_status<'a>(
        &'a self,
        project: &'a str,
        service: &'a str,
    ) -> LocalBoxFuture<'a, Result<UpdateStatus, RuntimeError>> {
        async move {
            let name = self.resolve(project, service).await?;
            let s = self.inspect(&name).await?;
            let (state, message) = match &s.update_status {
                Some(u) => (
                    u.state.map(|s| s.to_string()).unwrap_or_default(),
                    u.message.clone().unwrap_or_default(),
                ),
                None => ("none".to_string(), String::new()),
            };
            let desired = s
                .spec
                .as_ref()
                .and_then(|s| s.mode.as_ref())
                .and_then(|m| m.replicated.as_ref())
                .and_then(|r| r.replicas);
            let tasks = self.tasks_of(&name).await?;
            let current: Vec<_> = tasks.iter().filter(|t| should_run(t)).collect();
            let running = current.iter().filter(|t| runs(t)).count();
            Ok(UpdateStatus {
                service: service.to_string(),
                state,
                message,
                running: u32::try_from(running).unwrap_or(u32::MAX),
                desired: desired
                    .and_then(|d| u32::try_from(d).ok())
                    .unwrap_or(u32::try_from(current.len()).unwrap_or(0)),
            })
        }
        .boxed_local()
    }

    fn undo<'a>(
        &'a self,
        project: &'a str,
        service: &'a str,
    ) -> LocalBoxFuture<'a, Result<(), RuntimeError>> {
        async move {
            let name = self.resolve(project, service).await?;
            let current = self.inspect(&name).await?;
            let since = Since {
                started_at: current
                    .update_status
                    .as_ref()
                    .and_then(|u| u.started_at.clone()),
                rollback: true,
                update: true,
            };
            let spec = current.spec.clone().unwrap_or_default();
            self.update("roll back", &current, spec, true).await?;
            self.wait_converged(&[(name, since)], &baton_engine::apply::Silent)
                .await
        }
        .boxed_local()
    }

    fn logs(&self, project: &str, service: &str, options: &LogOptions) -> LogStream {
        let me = self.clone();
        let (project, service) = (project.to_string(), service.to_string());
        let options = options.clone();
        futures_util::stream::once(async move {
            let name = me.resolve(&project, &service).await?;
            me.raw
                .service_logs(&name, options.follow, options.tail, options.timestamps)
                .await
        })
        .flat_map(|r| match r {
            Ok(s) => s.boxed(),
            Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
    }

    fn fronts<'a>(
        &'a self,
        project: &'a str,
    ) -> LocalBoxFuture<'a, Result<Vec<Front>, RuntimeError>> {
        async move {
            struct Fronted {
                name: String,
                key: String,
                revision: String,
                weight: Option<u32>,
                ports: Vec<(u16, i64, String)>,
            }
            let fronted: Vec<Fronted> = self
                .services_of(project)
                .await?
                .iter()
                .filter_map(|s| {
                    let spec = s.spec.as_ref()?;
                    let labels = spec.labels.as_ref()?;
                    let ports: Vec<(u16, i64, String)> = labels
                        .iter()
                        .filter_map(|(k, v)| {
                            let port = k.strip_prefix(spec::FRONT)?.strip_prefix('.')?;
                            let mut parts = v.split('/');
                            let target = parts.next()?.parse().ok()?;
                            let app = parts.nth(1).unwrap_or("tcp").to_string();
                            Some((port.parse().ok()?, target, app))
                        })
                        .collect();
                    let name = spec.name.clone()?;
                    Some(Fronted {
                        key: labels.get(spec::SERVICE)?.clone(),
                        revision: labels
                            .get(spec::REVISION)
                            .cloned()
                            .unwrap_or_else(|| name.clone()),
                        weight: labels.get(spec::WEIGHT).and_then(|w| w.parse().ok()),
                        name,
                        ports,
                    })
                    .filter(|f| !f.ports.is_empty())
                })
                .collect();
            if fronted.is_empty() {
                return Ok(Vec::new());
            }
            let nodes = self.nodes().await?;
            // One front per (service, port), over every revision of the service.
            let mut out: BTreeMap<(String, u16), Front> = BTreeMap::new();
            for f in &fronted {
                let tasks = self.tasks_of(&f.name).await?;
                for (port, target, app) in &f.ports {
                    let front = out.entry((f.key.clone(), *port)).or_insert_with(|| Front {
                        service: f.key.clone(),
                        port: *port,
                        protocol: app.clone(),
                        backends: Vec::new(),
                        split: None,
                    });
                    if let Some(w) = f.weight {
                        front
                            .split
                            .get_or_insert_with(Vec::new)
                            .push((f.revision.clone(), w));
                    }
                    for t in &tasks {
                        // Only tasks that run and should: one that is being stopped
                        // leaves the proxy before its container goes.
                        let status = t.status.as_ref();
                        if !(should_run(t) && runs(t)) {
                            continue;
                        }
                        let Some(addr) = t
                            .node_id
                            .as_ref()
                            .and_then(|n| nodes.get(n))
                            .and_then(|n| n.1.parse::<std::net::IpAddr>().ok())
                        else {
                            continue;
                        };
                        let published = status
                            .and_then(|s| s.port_status.as_ref())
                            .and_then(|p| p.ports.as_ref())
                            .into_iter()
                            .flatten()
                            .find(|p| p.target_port == Some(*target))
                            .and_then(|p| p.published_port)
                            .and_then(|p| u16::try_from(p).ok());
                        if let Some(published) = published {
                            front.backends.push((
                                t.id.clone().unwrap_or_default(),
                                std::net::SocketAddr::new(addr, published),
                                f.revision.clone(),
                            ));
                        }
                    }
                }
            }
            Ok(out.into_values().collect())
        }
        .boxed_local()
    }

    fn down<'a>(
        &'a self,
        project: &'a str,
        volumes: bool,
        reporter: &'a dyn Reporter,
    ) -> LocalBoxFuture<'a, Result<Removed, RuntimeError>> {
        async move {
            let mut removed = Removed::default();
            let existing = self.existing(project).await?;
            let mut services = Vec::new();
            let order = ["service", "secret", "config", "network"];
            for kind in order {
                if kind == "secret" {
                    self.wait_containers_gone(&services).await?;
                }
                for e in existing.iter().filter(|e| e.kind == kind) {
                    let what = format!("delete {kind}");
                    reporter.report(Step::Started {
                        target: &e.name,
                        what: &what,
                    });
                    if let Err(err) = self.delete(kind, &e.name).await {
                        reporter.report(Step::Failed {
                            target: &e.name,
                            error: &err.to_string(),
                        });
                        return Err(err);
                    }
                    reporter.report(Step::Done {
                        target: &e.name,
                        what: &what,
                    });
                    if kind == "service" {
                        services.push(e.name.clone());
                    }
                    removed.objects.push(format!("{kind} {}", e.name));
                }
            }
            if volumes {
                let list = self
                    .docker
                    .api
                    .list_volumes(Some(ListVolumesOptions {
                        filters: Some(filters(&[project_label(project)])),
                    }))
                    .await
                    .map_err(self.err("list volumes"))?;
                for v in list.volumes.unwrap_or_default() {
                    self.delete("volume", &v.name).await?;
                    removed.objects.push(format!("volume {}", v.name));
                }
            }
            Ok(removed)
        }
        .boxed_local()
    }
}

/// The plan's own groups (what services use, services, removals), kept in order.
fn group(a: &Action) -> u8 {
    match a {
        Action::Put { kind, .. } if kind != "service" => 0,
        Action::Put { .. } => 1,
        Action::Delete { kind, .. } if kind == "service" => 2,
        _ => 3,
    }
}

fn kind_of(a: &Action) -> &str {
    match a {
        Action::Put { kind, .. } | Action::Delete { kind, .. } => kind,
        _ => "",
    }
}

fn unsupported(what: &str) -> RuntimeError {
    RuntimeError::Unsupported(format!(
        "a swarm target keeps services, not containers: cannot {what} (use `baton up`, `ps`, \
         `scale`, `logs`, `rollout` and `down`)"
    ))
}

impl Runtime for Swarm {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            build: false,
            healthchecks: true,
            networks: true,
            volumes: true,
            external_files: true,
            placement: true,
            global_mode: true,
            endpoint_mode: true,
        }
    }

    fn orchestrator(&self) -> Option<&dyn Orchestrator> {
        Some(self)
    }

    async fn observe(&self, _project: &str) -> Result<Observed, RuntimeError> {
        // Tasks, not containers: nothing here is a container baton keeps.
        Ok(Observed::default())
    }
    async fn image_exists(&self, _reference: &str) -> Result<bool, RuntimeError> {
        Ok(true)
    }
    async fn pull_image(&self, _r: &str, _p: ProgressFn<'_>) -> Result<(), RuntimeError> {
        Err(unsupported(
            "pull images (each node pulls what its tasks run)",
        ))
    }
    async fn build_image(&self, _s: &BuildSpec, _p: ProgressFn<'_>) -> Result<(), RuntimeError> {
        Err(unsupported(
            "build images (build and push them, then deploy)",
        ))
    }
    async fn network_exists(&self, name: &str) -> Result<bool, RuntimeError> {
        Ok(self
            .docker
            .api
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .is_ok())
    }
    async fn create_network(&self, _s: &NetworkSpec) -> Result<String, RuntimeError> {
        Err(unsupported("create a network by itself"))
    }
    async fn remove_network(&self, _n: &str) -> Result<(), RuntimeError> {
        Err(unsupported("remove a network by itself"))
    }
    async fn volume_exists(&self, _n: &str) -> Result<bool, RuntimeError> {
        Ok(true)
    }
    async fn create_volume(&self, _s: &VolumeSpec) -> Result<(), RuntimeError> {
        Err(unsupported("create a volume by itself"))
    }
    async fn remove_volume(&self, _n: &str) -> Result<(), RuntimeError> {
        Err(unsupported("remove a volume by itself"))
    }
    async fn create_container(&self, _s: &ContainerSpec) -> Result<String, RuntimeError> {
        Err(unsupported("create a container"))
    }
    async fn start_container(&self, _id: &str) -> Result<(), RuntimeError> {
        Err(unsupported("start a container"))
    }
    async fn stop_container(
        &self,
        _id: &str,
        _g: Duration,
        _s: Option<&str>,
    ) -> Result<(), RuntimeError> {
        Err(unsupported("stop a container"))
    }
    async fn kill_container(&self, _id: &str, _s: Option<&str>) -> Result<(), RuntimeError> {
        Err(unsupported("kill a container"))
    }
    async fn remove_container(&self, _id: &str) -> Result<(), RuntimeError> {
        Err(unsupported("remove a container"))
    }
    async fn inspect_container(&self, _id: &str) -> Result<ObservedContainer, RuntimeError> {
        Err(unsupported("inspect a container"))
    }
}
