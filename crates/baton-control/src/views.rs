//! What the front doors show, as typed read models: a project's services with their
//! replicas (the engine's observation joined with the daemon's supervision and probe
//! verdicts) and rollouts with their decider state; both doors print the same views.

use std::collections::{BTreeMap, BTreeSet};

use baton_engine::orchestrate::{Task, UpdateStatus};
use baton_engine::rollout::RolloutState;
use baton_engine::runtime::{ContainerState, Health, Observed, Runtime};
use baton_spec::Project;
use baton_state::{RolloutRecord, RolloutRequest, RolloutStatus, Store, Supervision};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Control, Result};

/// Supervision verdicts older than this are not shown (the daemon refreshes them).
const SUPERVISION_FRESH_MS: i64 = 120_000;

/// What the daemon last concluded about a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SupervisionView {
    /// `restarted`, `backing off`, `crash-looping`, `failing`, `restarting`.
    pub status: String,
    pub restarts_per_minute: u32,
}

/// One container of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicaView {
    pub name: String,
    pub service: String,
    pub replica: u32,
    pub id: String,
    /// `created`, `running`, `paused`, `restarting`, `exited`, `dead`, …
    #[schemars(with = "String")]
    pub state: ContainerState,
    /// `none`, `starting`, `healthy`, `unhealthy`: the engine's healthcheck and
    /// baton's own probe combined.
    #[schemars(with = "String")]
    pub health: Health,
    /// The engine's words, with the uptime (`Up 3 minutes (healthy)`).
    pub status: String,
    /// Unix seconds.
    pub created: i64,
    /// `host_ip:published->target/proto`.
    pub ports: Vec<String>,
    pub image: String,
    pub config_hash: String,
    /// A one-off container of `baton run`, not a replica.
    pub oneoff: bool,
    pub supervision: Option<SupervisionView>,
}

/// One service: what the file declares and what runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceView {
    pub name: String,
    /// Replicas the last applied file declares (`deploy.replicas`; `None` when the
    /// service is only known by its containers).
    pub declared_replicas: Option<u32>,
    pub running: u32,
    pub healthy: u32,
    /// Stopped with `stop`: the daemon leaves it so.
    pub stopped: bool,
    pub replicas: Vec<ReplicaView>,
}

/// A project's services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServicesView {
    pub project: String,
    /// The last applied revision.
    pub revision: Option<i64>,
    /// Whether the daemon keeps it running.
    pub active: bool,
    /// On a target that keeps services itself (a swarm, a Kubernetes cluster): the
    /// services' counts come from its tasks or pods, listed here (those that should
    /// run and those that ended), and `replicas` are empty. Absent elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<Task>>,
    pub services: Vec<ServiceView>,
}

/// One line of a rollout's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RolloutLine {
    /// Unix milliseconds.
    pub at: i64,
    pub message: String,
}

/// A rollout: its record, where its decider stands, and its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RolloutView {
    pub id: i64,
    pub service: String,
    pub revision: i64,
    pub from_hash: String,
    pub to_hash: String,
    /// `rolling`, `blue-green` or `canary`.
    pub strategy: String,
    pub status: RolloutStatus,
    /// A request waiting for the daemon.
    pub requested: Option<RolloutRequest>,
    pub outcome: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The decider's phase (`starting`, `analysing`, `monitoring`, `finished`, …).
    pub phase: Option<String>,
    /// Rolling: batches begun; canary: the current step.
    pub step: Option<u32>,
    /// Percent of the traffic on the new revision.
    pub weight: Option<u32>,
    pub history: Vec<RolloutLine>,
    /// The decider's whole state (replicas routed, stopped, failed, rollback batches).
    #[schemars(with = "Option<serde_json::Value>")]
    pub state: Option<RolloutState>,
}

impl RolloutView {
    pub fn from_record(r: &RolloutRecord) -> RolloutView {
        let state: Option<RolloutState> = serde_json::from_str(&r.state_json).ok();
        let phase = state.as_ref().and_then(|s| {
            serde_json::to_value(&s.phase)
                .ok()
                .and_then(|v| v.get("phase").and_then(|p| p.as_str()).map(str::to_string))
        });
        RolloutView {
            id: r.id,
            service: r.service.clone(),
            revision: r.revision,
            from_hash: r.from_hash.clone(),
            to_hash: r.to_hash.clone(),
            strategy: r.strategy.clone(),
            status: r.status,
            requested: r.requested,
            outcome: r.outcome.clone(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            phase,
            step: state.as_ref().map(|s| s.step_index),
            weight: state.as_ref().map(|s| s.weight),
            history: state
                .as_ref()
                .map(|s| {
                    s.history
                        .iter()
                        .map(|e| RolloutLine {
                            at: i64::try_from(e.at_ms).unwrap_or(i64::MAX),
                            message: e.message.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            state,
        }
    }
}

/// What changed in a set of rollouts since the last look.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct RolloutProgress {
    /// New history lines: (service, line).
    pub lines: Vec<(String, String)>,
    /// Rollouts that ended since the last look: (service, id, status, outcome).
    pub ended: Vec<(String, i64, RolloutStatus, String)>,
    /// Every rollout followed has ended.
    pub done: bool,
    /// One of them ended otherwise than completed.
    pub failed: bool,
}

/// One look at the rollouts being followed (`(service, id)`), given their views: the
/// history lines not seen yet (`seen` counts them per rollout and is updated) and the
/// ones that ended (`reported` remembers them).
pub fn progress(
    views: &[RolloutView],
    followed: &[(String, i64)],
    seen: &mut BTreeMap<i64, usize>,
    reported: &mut BTreeSet<i64>,
) -> RolloutProgress {
    let mut p = RolloutProgress {
        done: true,
        ..Default::default()
    };
    for (service, id) in followed {
        let Some(r) = views.iter().find(|r| r.id == *id) else {
            continue;
        };
        if r.state.is_some() {
            let shown = seen.entry(r.id).or_default();
            p.lines.extend(
                r.history
                    .iter()
                    .skip(*shown)
                    .map(|e| (service.clone(), e.message.clone())),
            );
            *shown = r.history.len();
        }
        match r.status {
            RolloutStatus::Running => p.done = false,
            RolloutStatus::Completed => {}
            _ => p.failed = true,
        }
        if r.status != RolloutStatus::Running && reported.insert(r.id) {
            p.ended.push((
                service.clone(),
                r.id,
                r.status,
                r.outcome.clone().unwrap_or_else(|| r.status.to_string()),
            ));
        }
    }
    p
}

/// The services of `project` from an observation, the store's supervision and probe
/// verdicts, and the last applied file (`spec`). Pure: `now` is the caller's.
pub fn services_view(
    name: &str,
    spec: Option<&Project>,
    revision: Option<i64>,
    observed: &Observed,
    store: &Store,
    now: i64,
) -> Result<ServicesView> {
    let desired = store.desired(name)?;
    let supervision: BTreeMap<String, Supervision> = store
        .supervision(name)?
        .into_iter()
        .filter(|s| now - s.updated_at < SUPERVISION_FRESH_MS)
        .map(|s| (s.container.clone(), s))
        .collect();
    let probed = store.probe_health(name)?;
    Ok(assemble(
        name,
        spec,
        revision,
        observed,
        &supervision,
        &probed,
        &desired,
    ))
}

fn assemble(
    name: &str,
    spec: Option<&Project>,
    revision: Option<i64>,
    observed: &Observed,
    supervision: &BTreeMap<String, Supervision>,
    probed: &BTreeMap<String, (String, String, i64)>,
    desired: &baton_state::Desired,
) -> ServicesView {
    let mut services: BTreeMap<String, ServiceView> = BTreeMap::new();
    if let Some(p) = spec {
        for (s, svc) in &p.services {
            services.insert(s.clone(), empty_service(s, Some(svc.replicas()), desired));
        }
    }
    let mut containers: Vec<_> = observed.containers.iter().collect();
    containers
        .sort_by(|a, b| (&a.service, a.oneoff, a.replica).cmp(&(&b.service, b.oneoff, b.replica)));
    for c in containers {
        let mut health = c.health;
        if let Some((verdict, _, _)) = probed.get(&c.id) {
            let v = if verdict == "healthy" {
                Health::Healthy
            } else {
                Health::Unhealthy
            };
            health = baton_engine::health::combine(health, v);
        }
        let view = ReplicaView {
            name: c.name.clone(),
            service: c.service.clone(),
            replica: c.replica,
            id: c.id.clone(),
            state: c.state,
            health,
            status: c.status.clone(),
            created: c.created,
            ports: c.ports.clone(),
            image: c.image.clone(),
            config_hash: c.config_hash.clone(),
            oneoff: c.oneoff,
            supervision: supervision.get(&c.name).map(|s| SupervisionView {
                status: s.status.clone(),
                restarts_per_minute: s.restarts,
            }),
        };
        let service = services
            .entry(c.service.clone())
            .or_insert_with(|| empty_service(&c.service, None, desired));
        if !c.oneoff && c.state == ContainerState::Running {
            service.running += 1;
            if matches!(health, Health::Healthy | Health::None) {
                service.healthy += 1;
            }
        }
        service.replicas.push(view);
    }
    ServicesView {
        project: name.to_string(),
        revision,
        active: desired.active,
        tasks: None,
        services: services.into_values().collect(),
    }
}

/// An orchestrator's tasks into the view: each service's count of tasks that should
/// run and run (an orchestrator replaces a task whose healthcheck fails, so a running
/// one counts as healthy too); a service only the tasks name is added.
fn count_tasks(view: &mut ServicesView, tasks: Vec<Task>) {
    for t in tasks.iter().filter(|t| t.desired == "running") {
        let i = match view.services.iter().position(|s| s.name == t.service) {
            Some(i) => i,
            None => {
                view.services.push(ServiceView {
                    name: t.service.clone(),
                    declared_replicas: None,
                    running: 0,
                    healthy: 0,
                    stopped: false,
                    replicas: Vec::new(),
                });
                view.services.len() - 1
            }
        };
        if t.state == "running" {
            view.services[i].running += 1;
            view.services[i].healthy += 1;
        }
    }
    view.services.sort_by(|a, b| a.name.cmp(&b.name));
    view.tasks = Some(tasks);
}

fn empty_service(name: &str, declared: Option<u32>, desired: &baton_state::Desired) -> ServiceView {
    ServiceView {
        name: name.to_string(),
        declared_replicas: declared,
        running: 0,
        healthy: 0,
        stopped: desired.stopped_services.iter().any(|s| s == name),
        replicas: Vec::new(),
    }
}

impl<R: Runtime> Control<R> {
    /// The project's services with their replicas, as the engine shows them now; on a
    /// target that keeps services itself, with its tasks or pods.
    pub async fn services(&self, project: &str) -> Result<ServicesView> {
        let revision = self.store.latest_revision(project)?.map(|r| r.number);
        let spec = self.last_applied(project).ok().flatten();
        if let Some(o) = self.runtime.orchestrator() {
            let tasks = o.tasks(project).await?;
            let mut view = services_view(
                project,
                spec.as_ref(),
                revision,
                &Observed::default(),
                &self.store,
                (self.clock)(),
            )?;
            count_tasks(&mut view, tasks);
            return Ok(view);
        }
        let observed = self.runtime.observe(project).await?;
        services_view(
            project,
            spec.as_ref(),
            revision,
            &observed,
            &self.store,
            (self.clock)(),
        )
    }

    /// Where the orchestrator's last update of `service` stands; `None` on a target
    /// that does not keep services itself (there, the daemon's rollouts say it).
    pub async fn update_status(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Option<UpdateStatus>> {
        match self.runtime.orchestrator() {
            Some(o) => Ok(Some(o.update_status(project, service).await?)),
            None => Ok(None),
        }
    }

    /// The rollouts of a project (of one service when given), oldest first.
    pub fn rollouts(&self, project: &str, service: Option<&str>) -> Result<Vec<RolloutView>> {
        Ok(self
            .store
            .rollouts(project, service)?
            .iter()
            .map(RolloutView::from_record)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_engine::runtime::ObservedContainer;

    fn container(
        service: &str,
        replica: u32,
        state: ContainerState,
        health: Health,
    ) -> ObservedContainer {
        ObservedContainer {
            id: format!("id-{service}-{replica}"),
            name: format!("p-{service}-{replica}"),
            service: service.into(),
            replica,
            config_hash: "h".into(),
            oneoff: false,
            image: "img".into(),
            state,
            health,
            exit_code: None,
            status: "Up 3 minutes".into(),
            ports: vec![],
            labels: Default::default(),
            created: 1,
            restart_count: 0,
            addresses: Default::default(),
        }
    }

    #[test]
    fn replicas_join_supervision_and_probe_verdicts() {
        let observed = Observed {
            containers: vec![
                container("web", 2, ContainerState::Running, Health::None),
                container("web", 1, ContainerState::Running, Health::Healthy),
                container("db", 1, ContainerState::Exited, Health::None),
            ],
            ..Default::default()
        };
        let supervision: BTreeMap<String, Supervision> = [(
            "p-db-1".to_string(),
            Supervision {
                container: "p-db-1".into(),
                status: "crash-looping".into(),
                restarts: 7,
                updated_at: 0,
            },
        )]
        .into();
        let probed = [(
            "id-web-2".to_string(),
            ("unhealthy".to_string(), "timeout".to_string(), 0),
        )]
        .into();
        let desired = baton_state::Desired {
            project: "p".into(),
            active: true,
            stopped_services: vec!["db".into()],
        };
        let v = assemble(
            "p",
            None,
            Some(3),
            &observed,
            &supervision,
            &probed,
            &desired,
        );
        assert_eq!(v.services.len(), 2);
        let db = &v.services[0];
        assert_eq!((db.name.as_str(), db.running, db.stopped), ("db", 0, true));
        assert_eq!(
            db.replicas[0]
                .supervision
                .as_ref()
                .unwrap()
                .restarts_per_minute,
            7
        );
        let web = &v.services[1];
        assert_eq!(
            web.replicas.iter().map(|r| r.replica).collect::<Vec<_>>(),
            [1, 2],
            "sorted by replica"
        );
        assert_eq!((web.running, web.healthy), (2, 1));
        assert_eq!(web.replicas[1].health, Health::Unhealthy);
    }

    fn view(id: i64, status: RolloutStatus, lines: &[&str]) -> RolloutView {
        RolloutView {
            id,
            service: "web".into(),
            revision: 1,
            from_hash: "a".into(),
            to_hash: "b".into(),
            strategy: "rolling".into(),
            status,
            requested: None,
            outcome: None,
            started_at: 0,
            finished_at: None,
            phase: None,
            step: None,
            weight: None,
            history: lines
                .iter()
                .map(|m| RolloutLine {
                    at: 0,
                    message: m.to_string(),
                })
                .collect(),
            state: None,
        }
    }

    #[test]
    fn progress_reports_each_end_once() {
        let followed = [("web".to_string(), 1)];
        let (mut seen, mut reported) = (BTreeMap::new(), BTreeSet::new());
        let p = progress(
            &[view(1, RolloutStatus::Running, &["a"])],
            &followed,
            &mut seen,
            &mut reported,
        );
        assert!(!p.done && p.ended.is_empty());
        let done = [view(1, RolloutStatus::RolledBack, &["a", "b"])];
        let p = progress(&done, &followed, &mut seen, &mut reported);
        assert!(p.done && p.failed);
        assert_eq!(p.ended.len(), 1);
        let again = progress(&done, &followed, &mut seen, &mut reported);
        assert!(again.ended.is_empty());
    }
}
