//! The supervision loop: each tick, for every active project, observe, ask the pure
//! decider what to do, do it, and record events and per-container status. The
//! project's VMs are kept by `crate::vms`, run beside it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use baton_engine::hash::service_hash;
use baton_engine::resolve::{container_spec, file_sources};
use baton_engine::restart::RestartHistory;
use baton_engine::runtime::{ContainerState, Health, Observed, Runtime, RuntimeError};
use baton_engine::supervise::{note_restart, supervise, Decision};
use baton_spec::Project;
use baton_state::{Store, Supervision};

#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Time between two looks at the world.
    pub tick: Duration,
    /// Where `up` wrote configs and secrets (`<state dir>/files`).
    pub files_dir: PathBuf,
    /// Where the edge keeps ACME accounts and certificates (`<state dir>/edge`).
    pub edge_dir: PathBuf,
}

/// The supervisor's memory between ticks: restart histories per project and replica.
/// Kept in memory only: after a daemon restart, backoff starts over, which is safe
/// because healthy replicas are never touched.
pub struct Supervisor<'a, R> {
    rt: &'a R,
    store: &'a Store,
    config: SupervisorConfig,
    histories: BTreeMap<String, BTreeMap<(String, u32), RestartHistory>>,
    /// Restarts the engine made itself (its restart policy), per container id: the last
    /// count seen and when it grew.
    engine_restarts: BTreeMap<String, (u32, RestartHistory)>,
    engine_down: bool,
    /// What each project's containers looked like at the last tick, for change events.
    seen: BTreeMap<String, Seen>,
    traffic: crate::traffic::Traffic,
    /// Proxies in front of an orchestrator's tasks (a swarm without a routing mesh).
    fronts: crate::fronts::Fronts,
    edge: crate::edge::Edge,
    prober: crate::probe::Prober,
    shared: std::sync::Arc<crate::api::Shared>,
    /// When pipeline and VM metrics are next read from the store.
    store_metrics_at: u64,
    /// When each project's containers' resource use is next read from the engine.
    usage_at: BTreeMap<String, u64>,
}

/// How often containers' resource use is read from the engine.
const USAGE_EVERY_MS: u64 = 5_000;

/// How often pipeline and VM metrics are read from the store.
const STORE_METRICS_EVERY_MS: u64 = 5_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The wall clock in Unix milliseconds, as the store is stamped.
fn clock_ms() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

pub(crate) fn log(line: &str) {
    tracing::info!("{line}");
}

impl<'a, R: Runtime> Supervisor<'a, R> {
    /// `shared` is what the local API sees: the supervisor publishes its status there
    /// after every tick and ticks at once when woken through it.
    pub fn new(
        rt: &'a R,
        store: &'a Store,
        config: SupervisorConfig,
        shared: std::sync::Arc<crate::api::Shared>,
    ) -> Self {
        Supervisor {
            rt,
            store,
            edge: crate::edge::Edge::new(config.edge_dir.clone()),
            config,
            histories: BTreeMap::new(),
            engine_restarts: BTreeMap::new(),
            engine_down: false,
            seen: BTreeMap::new(),
            traffic: crate::traffic::Traffic::default(),
            fronts: crate::fronts::Fronts::default(),
            prober: crate::probe::Prober::default(),
            shared,
            store_metrics_at: 0,
            usage_at: BTreeMap::new(),
        }
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(&mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        tracing::info!("supervising active projects");
        let started = now_ms();
        self.shared.update(|s| {
            s.pid = std::process::id();
            s.version = env!("CARGO_PKG_VERSION").to_string();
            s.started_at_ms = started;
        });
        // The VMs of active projects are kept by their own loop, beside this one.
        let (stop_vms, vms_stopped) = tokio::sync::watch::channel(false);
        let metrics = self.shared.telemetry.metrics.clone();
        let vms = self.store.path().parent().map(|state_dir| {
            crate::vms::VmKeeper::new(state_dir, clock_ms)
                .with_metrics(metrics)
                .run(
                    self.config.tick.max(Duration::from_millis(500)),
                    vms_stopped,
                )
        });
        let containers = async {
            loop {
                self.tick().await;
                let shared = self.shared.clone();
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(self.config.tick) => {}
                    _ = shared.wake.notified() => {}
                }
            }
            let _ = stop_vms.send(true);
        };
        match vms {
            Some(vms) => {
                tokio::join!(containers, vms);
            }
            None => containers.await,
        }
        tracing::info!("stopping; containers and VMs keep running");
    }

    /// One look at every active project.
    pub async fn tick(&mut self) {
        let projects = match self.store.active_projects() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot read the store: {e}");
                return;
            }
        };
        self.converge(&projects).await;
        if let Some(o) = self.rt.orchestrator() {
            self.fronts.tick(o, self.store).await;
        }
        let telemetry = self.shared.telemetry.clone();
        telemetry.keep_projects(&projects);
        let now = now_ms();
        if now >= self.store_metrics_at {
            telemetry.record_store(self.store);
            self.store_metrics_at = now + STORE_METRICS_EVERY_MS;
        }
        // What the local API shows until the next tick.
        let proxies = self.traffic.status();
        let edge = self.edge.status();
        telemetry.record_edge(edge.as_ref());
        let engine_reachable = !self.engine_down;
        self.shared.update(|s| {
            s.edge = edge;
            s.ticks += 1;
            s.last_tick_ms = now_ms();
            s.engine_reachable = engine_reachable;
            s.projects = projects;
            s.proxies = proxies;
        });
    }

    /// Converges each of the active `projects`.
    async fn converge(&mut self, projects: &[String]) {
        // Proxies of projects taken down (or services no longer managed) free their ports.
        let mut managed = std::collections::BTreeSet::new();
        let mut loaded = Vec::new();
        for name in projects {
            if let Some(p) = self.project(name) {
                for (service, svc) in &p.services {
                    if baton_engine::resolve::traffic_managed(svc) {
                        managed.insert((name.clone(), service.clone()));
                    }
                }
                loaded.push(p);
            }
        }
        self.traffic.release_except(&managed).await;

        for name in projects {
            if let Err(e) = self.tick_project(name).await {
                match e {
                    RuntimeError::Unavailable(_) => {
                        if !self.engine_down {
                            tracing::warn!("{e}; retrying every tick");
                            self.engine_down = true;
                        }
                        break;
                    }
                    other => tracing::warn!("project {name}: {other}"),
                }
            }
        }
        // The edge after the projects' ticks: their pools exist by then.
        loaded.retain(|p| self.store.desired(&p.name).is_ok_and(|d| d.active));
        self.edge
            .tick(self.store, &loaded, &self.traffic, now_ms())
            .await;
    }

    async fn tick_project(&mut self, name: &str) -> Result<(), RuntimeError> {
        // A CLI command is changing this project (up, down, stop…): its containers are
        // in flux, so look again next tick.
        let Ok(Some(_lock)) = self.store.try_lock_project(name) else {
            return Ok(());
        };
        let Some(project) = self.project(name) else {
            return Ok(());
        };
        let desired = self.store.desired(name).unwrap_or_default();
        if !desired.active {
            return Ok(());
        }
        let mut observed = self.rt.observe(name).await?;
        if self.engine_down {
            tracing::info!("container engine reachable again; converging");
            self.engine_down = false;
        }
        let now = now_ms();
        // baton's own health checks decide health where the service has them.
        let health_events = self.prober.observe(&project, &mut observed, now).await;
        if !health_events.is_empty() {
            let live: Vec<&str> = observed.containers.iter().map(|c| c.id.as_str()).collect();
            for e in health_events {
                tracing::info!("{}: {}", e.container, e.message);
                let _ = self
                    .store
                    .event(name, "health", &e.container, &e.message, now as i64);
                let health = if e.healthy { "healthy" } else { "unhealthy" };
                let _ = self.store.set_probe_health(
                    name,
                    &e.container_id,
                    health,
                    &e.message,
                    &live,
                    now as i64,
                );
            }
        }
        let (changes, seen) = container_changes(self.seen.get(name), &observed);
        self.seen.insert(name.to_string(), seen);
        for (container, message) in changes {
            tracing::info!("{container}: {message}");
            let _ = self
                .store
                .event(name, "container", &container, &message, now as i64);
        }
        self.watch_engine_restarts(name, &observed, now).await;
        let files = file_sources(&project, &self.config.files_dir);
        self.traffic
            .tick(self.rt, self.store, &project, &observed, &files, now)
            .await?;
        self.shared.telemetry.record_project(
            &project,
            &observed,
            &self.traffic.status(),
            &self.traffic.weights(name),
            self.store,
        );
        if now >= self.usage_at.get(name).copied().unwrap_or(0) {
            self.usage_at.insert(name.to_string(), now + USAGE_EVERY_MS);
            let rt = self.rt;
            let reads = observed
                .containers
                .iter()
                .filter(|c| c.state == ContainerState::Running && !c.oneoff)
                .map(|c| async move {
                    let u = rt.usage(&c.id).await.ok().flatten();
                    u.map(|u| (c.service.clone(), c.replica, u))
                });
            let usage: Vec<_> = futures_util::future::join_all(reads)
                .await
                .into_iter()
                .flatten()
                .collect();
            self.shared.telemetry.record_usage(name, &usage);
        }
        // Services in a rollout are the rollout's to change, not the supervisor's.
        let mut hands_off = desired.stopped_services.clone();
        hands_off.extend(crate::traffic::Traffic::rolling_services(
            self.store, name, &observed,
        ));
        let histories = self.histories.entry(name.to_string()).or_default();
        let decisions = supervise(&project, &observed, &hands_off, histories, now);
        for d in decisions {
            let (service, replica) = d.key();
            let container = baton_engine::resolve::container_name(
                &project.name,
                &service,
                &project.services[&service],
                replica,
            );
            let history = histories.entry((service.clone(), replica)).or_default();
            let (status, message) = match &d {
                Decision::Wait { reason, at_ms, .. } => {
                    let status = if history.crash_looping(now) {
                        "crash-looping"
                    } else {
                        "backing off"
                    };
                    (
                        status.to_string(),
                        format!("{reason} (next try in {} ms)", at_ms.saturating_sub(now)),
                    )
                }
                other => {
                    let svc = &project.services[&service];
                    let result = act(self.rt, &project, other, svc, &files).await;
                    note_restart(history, svc, 1, now);
                    self.shared
                        .telemetry
                        .restarted(&project.name, &service, replica, 1);
                    let what = match other {
                        Decision::Create { reason, .. } => format!("{reason}: created"),
                        Decision::Start { reason, .. } => format!("{reason}: started"),
                        Decision::Replace { reason, .. } => format!("{reason}: replaced"),
                        Decision::Wait { .. } | Decision::GiveUp { .. } => String::new(),
                    };
                    match result {
                        Ok(()) => ("restarted".to_string(), what),
                        Err(e) => ("failing".to_string(), format!("{what} failed: {e}")),
                    }
                }
            };
            let restarts = history.within(now, 60_000) as u32;
            tracing::info!("{container}: {message}");
            let _ = self
                .store
                .event(name, "supervise", &container, &message, now as i64);
            let _ = self.store.set_supervision(
                name,
                &Supervision {
                    container: container.clone(),
                    status,
                    restarts,
                    updated_at: now as i64,
                },
            );
        }
        Ok(())
    }

    /// Crash loops the engine handles itself (a restart policy on a crashing container)
    /// are not ours to fix, but they must show: record each restart the engine made and
    /// flag the container as crash-looping when they come fast.
    async fn watch_engine_restarts(
        &mut self,
        project: &str,
        observed: &baton_engine::runtime::Observed,
        now: u64,
    ) {
        let watched: Vec<_> = observed
            .containers
            .iter()
            .filter(|c| {
                matches!(c.state, ContainerState::Restarting)
                    || self.engine_restarts.contains_key(&c.id)
            })
            .collect();
        for c in watched {
            let Ok(inspected) = self.rt.inspect_container(&c.id).await else {
                continue;
            };
            let entry = self
                .engine_restarts
                .entry(c.id.clone())
                .or_insert((inspected.restart_count, RestartHistory::default()));
            if inspected.restart_count <= entry.0 && !matches!(c.state, ContainerState::Restarting)
            {
                continue;
            }
            let grew = inspected.restart_count.saturating_sub(entry.0);
            entry.0 = inspected.restart_count;
            for _ in 0..grew {
                entry.1.restarts_ms.push(now);
            }
            if grew == 0 {
                continue;
            }
            self.shared
                .telemetry
                .restarted(project, &c.service, c.replica, grew);
            let per_minute = entry.1.within(now, 60_000) as u32;
            let status = if entry.1.crash_looping(now) {
                "crash-looping"
            } else {
                "restarting"
            };
            let exit = inspected
                .exit_code
                .map(|c| format!(", exit code {c}"))
                .unwrap_or_default();
            let message = format!(
                "restarted by the engine (restart #{}{exit}); {per_minute} restarts in the last minute",
                inspected.restart_count
            );
            tracing::info!("{}: {message}", c.name);
            let _ = self
                .store
                .event(project, "supervise", &c.name, &message, now as i64);
            let _ = self.store.set_supervision(
                project,
                &Supervision {
                    container: c.name.clone(),
                    status: status.to_string(),
                    restarts: per_minute,
                    updated_at: now as i64,
                },
            );
        }
        let live: std::collections::BTreeSet<&str> =
            observed.containers.iter().map(|c| c.id.as_str()).collect();
        self.engine_restarts
            .retain(|id, _| live.contains(id.as_str()));
    }

    /// The project as last applied.
    fn project(&self, name: &str) -> Option<Project> {
        let rev = self.store.latest_revision(name).ok()??;
        let json = self.store.revision_spec(name, rev.number).ok()??;
        serde_json::from_str(&json).ok()
    }
}

/// Each container's state and health at a look, by name.
pub type Seen = BTreeMap<String, (ContainerState, Health)>;

fn word<T: std::fmt::Debug>(t: T) -> String {
    format!("{t:?}").to_lowercase()
}

/// What changed in a project's containers since the last look (`None`: the first
/// look, which reports nothing): appeared, state changes (with the exit code), health
/// changes, removed. Returns the events (container, message) and what was seen now.
pub fn container_changes(
    before: Option<&Seen>,
    observed: &Observed,
) -> (Vec<(String, String)>, Seen) {
    let now: Seen = observed
        .containers
        .iter()
        .filter(|c| !c.oneoff)
        .map(|c| (c.name.clone(), (c.state, c.health)))
        .collect();
    let Some(before) = before else {
        return (Vec::new(), now);
    };
    let mut events = Vec::new();
    for c in observed.containers.iter().filter(|c| !c.oneoff) {
        let exit = match (c.state, c.exit_code) {
            (ContainerState::Exited | ContainerState::Dead, Some(code)) => {
                format!(" (exit code {code})")
            }
            _ => String::new(),
        };
        match before.get(&c.name) {
            None => events.push((c.name.clone(), format!("appeared: {}{exit}", word(c.state)))),
            Some((state, health)) => {
                if *state != c.state {
                    events.push((
                        c.name.clone(),
                        format!("{} -> {}{exit}", word(state), word(c.state)),
                    ));
                }
                if *health != c.health && c.state == ContainerState::Running {
                    events.push((
                        c.name.clone(),
                        format!("health: {} -> {}", word(health), word(c.health)),
                    ));
                }
            }
        }
    }
    for name in before.keys().filter(|n| !now.contains_key(*n)) {
        events.push((name.clone(), "removed".to_string()));
    }
    (events, now)
}

async fn act<R: Runtime>(
    rt: &R,
    project: &Project,
    d: &Decision,
    svc: &baton_spec::Service,
    files: &baton_engine::resolve::FileSources,
) -> Result<(), RuntimeError> {
    let hash = service_hash(svc);
    match d {
        Decision::Create {
            service, replica, ..
        } => {
            let spec = container_spec(project, service, svc, *replica, &hash, files);
            let id = rt.create_container(&spec).await?;
            rt.start_container(&id).await
        }
        Decision::Start { id, .. } => rt.start_container(id).await,
        Decision::Replace {
            service,
            replica,
            id,
            ..
        } => {
            let grace = svc
                .stop_grace_period
                .map_or(Duration::from_secs(10), |d| d.as_std());
            rt.stop_container(id, grace, svc.stop_signal.as_deref())
                .await?;
            match rt.remove_container(id).await {
                Ok(()) | Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            let spec = container_spec(project, service, svc, *replica, &hash, files);
            let id = rt.create_container(&spec).await?;
            rt.start_container(&id).await
        }
        Decision::Wait { .. } | Decision::GiveUp { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_engine::runtime::ObservedContainer;

    fn c(
        name: &str,
        state: ContainerState,
        health: Health,
        exit: Option<i64>,
    ) -> ObservedContainer {
        ObservedContainer {
            id: name.into(),
            name: name.into(),
            service: "web".into(),
            replica: 1,
            config_hash: String::new(),
            oneoff: false,
            image: String::new(),
            state,
            health,
            exit_code: exit,
            status: String::new(),
            ports: vec![],
            labels: Default::default(),
            created: 0,
            restart_count: 0,
            addresses: Default::default(),
        }
    }

    fn look(cs: Vec<ObservedContainer>) -> Observed {
        Observed {
            containers: cs,
            ..Default::default()
        }
    }

    #[test]
    fn container_changes_become_events_after_the_first_look() {
        let first = look(vec![
            c("p-web-1", ContainerState::Running, Health::Starting, None),
            c("p-web-2", ContainerState::Running, Health::Healthy, None),
        ]);
        let (events, seen) = container_changes(None, &first);
        assert!(events.is_empty(), "the first look tells nothing");
        let second = look(vec![
            c("p-web-1", ContainerState::Running, Health::Healthy, None),
            c("p-web-3", ContainerState::Created, Health::None, None),
            c(
                "p-web-2",
                ContainerState::Exited,
                Health::Healthy,
                Some(137),
            ),
        ]);
        let (events, seen) = container_changes(Some(&seen), &second);
        assert_eq!(
            events,
            [
                (
                    "p-web-1".to_string(),
                    "health: starting -> healthy".to_string()
                ),
                ("p-web-3".to_string(), "appeared: created".to_string()),
                (
                    "p-web-2".to_string(),
                    "running -> exited (exit code 137)".to_string()
                ),
            ]
        );
        let (events, _) = container_changes(Some(&seen), &look(vec![]));
        assert_eq!(events.len(), 3);
        assert!(events.iter().all(|(_, m)| m == "removed"));
    }
}
