//! `start`, `stop`, `restart` and `down`: act on what exists without planning a
//! convergence; each first records what should run, so a running daemon agrees.

use std::time::{Duration, Instant};

use baton_engine::apply::{apply_down, ApplyOptions, ApplyReport, Reporter};
use baton_engine::plan::{plan_down, Action, Plan};
use baton_engine::runtime::{ContainerState, Observed, ObservedContainer, Runtime};
use baton_spec::Project;
use baton_state::Desired;
use futures_util::future::join_all;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Control, Result, StoreJournal};

/// One container acted on, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerResult {
    pub container: String,
    /// `None` when it went well, else why not.
    pub error: Option<String>,
}

/// What `down` did.
pub struct Down {
    pub plan: Plan,
    pub applied: std::result::Result<ApplyReport, baton_engine::apply::ApplyError>,
    pub outcome: String,
    /// The VM half (stop, or remove with `volumes`) and the VM actions that failed.
    pub vms: baton_vm::vm_plan::VmPlan,
    pub vm_errors: Vec<String>,
}

/// The named services, or every service the project has (file or engine).
fn named_or_all(project: Option<&Project>, observed: &Observed, named: &[String]) -> Vec<String> {
    if !named.is_empty() {
        return named.to_vec();
    }
    let mut all: Vec<String> = match project {
        Some(p) => p.services.keys().cloned().collect(),
        None => observed
            .containers
            .iter()
            .map(|c| c.service.clone())
            .collect(),
    };
    all.sort();
    all.dedup();
    all
}

/// The project's containers of the named services (all when none), one-offs excluded.
pub fn containers_of<'a>(
    observed: &'a Observed,
    services: &[String],
) -> Vec<&'a ObservedContainer> {
    observed
        .containers
        .iter()
        .filter(|c| !c.oneoff && (services.is_empty() || services.contains(&c.service)))
        .collect()
}

/// The grace period and stop signal of a container's service (`timeout` overrides).
fn grace(
    project: Option<&Project>,
    service: &str,
    timeout: Option<Duration>,
) -> (Duration, Option<String>) {
    let svc = project.and_then(|p| p.services.get(service));
    let grace = timeout.unwrap_or_else(|| {
        svc.and_then(|s| s.stop_grace_period)
            .map(|d| d.as_std())
            .unwrap_or(Duration::from_secs(10))
    });
    (grace, svc.and_then(|s| s.stop_signal.clone()))
}

fn results<E: std::fmt::Display>(
    targets: &[&ObservedContainer],
    outcomes: Vec<std::result::Result<(), E>>,
) -> Vec<ContainerResult> {
    targets
        .iter()
        .zip(outcomes)
        .map(|(c, r)| ContainerResult {
            container: c.name.clone(),
            error: r.err().map(|e| e.to_string()),
        })
        .collect()
}

impl<R: Runtime> Control<R> {
    /// Records whether the project should be running (for `baton serve`) and which of
    /// its services were stopped by hand (`stop` adds, `start` removes).
    pub fn set_desired(
        &self,
        project: &str,
        active: bool,
        stop: &[String],
        start: &[String],
        all_services: &[String],
    ) -> Result<()> {
        let mut d = self.store.desired(project)?;
        d.active = active;
        for s in stop {
            if !d.stopped_services.contains(s) {
                d.stopped_services.push(s.clone());
            }
        }
        d.stopped_services.retain(|s| {
            !start.contains(s) && (all_services.is_empty() || all_services.contains(s))
        });
        d.stopped_services.sort();
        self.store.set_desired(&d, (self.clock)())?;
        Ok(())
    }

    /// Starts the stopped containers of the named services (all when none).
    pub async fn start(
        &self,
        project: Option<&Project>,
        name: &str,
        services: &[String],
    ) -> Result<Vec<ContainerResult>> {
        let _lock = self.lock(name).await?;
        let observed = self.runtime.observe(name).await?;
        let active = self.store.desired(name)?.active;
        let named = named_or_all(project, &observed, services);
        self.set_desired(name, active, &[], &named, &[])?;
        let targets: Vec<_> = containers_of(&observed, services)
            .into_iter()
            .filter(|c| c.state != ContainerState::Running)
            .collect();
        let outcomes = join_all(targets.iter().map(|c| self.runtime.start_container(&c.id))).await;
        Ok(results(&targets, outcomes))
    }

    /// Stops the running containers of the named services (all when none), each with
    /// its service's grace period and signal; declared first, so that a running daemon
    /// does not start them again.
    pub async fn stop(
        &self,
        project: Option<&Project>,
        name: &str,
        services: &[String],
        timeout: Option<Duration>,
    ) -> Result<Vec<ContainerResult>> {
        let _lock = self.lock(name).await?;
        let observed = self.runtime.observe(name).await?;
        let active = self.store.desired(name)?.active;
        let named = named_or_all(project, &observed, services);
        self.set_desired(name, active, &named, &[], &[])?;
        let targets: Vec<_> = containers_of(&observed, services)
            .into_iter()
            .filter(|c| c.state == ContainerState::Running)
            .collect();
        let outcomes = join_all(targets.iter().map(|c| {
            let (g, sig) = grace(project, &c.service, timeout);
            async move { self.runtime.stop_container(&c.id, g, sig.as_deref()).await }
        }))
        .await;
        Ok(results(&targets, outcomes))
    }

    /// Stops and starts again the containers of the named services (all when none).
    pub async fn restart(
        &self,
        project: Option<&Project>,
        name: &str,
        services: &[String],
        timeout: Option<Duration>,
    ) -> Result<Vec<ContainerResult>> {
        let _lock = self.lock(name).await?;
        let observed = self.runtime.observe(name).await?;
        let targets = containers_of(&observed, services);
        let outcomes = join_all(targets.iter().map(|c| {
            let (g, sig) = grace(project, &c.service, timeout);
            async move {
                self.runtime
                    .stop_container(&c.id, g, sig.as_deref())
                    .await?;
                self.runtime.start_container(&c.id).await
            }
        }))
        .await;
        Ok(results(&targets, outcomes))
    }

    /// Removes every container and network of the project (with `volumes`, its
    /// volumes too), found by label, so it also cleans what a killed run left; the
    /// project is declared not running first, so a daemon stops restarting it.
    /// `None` when there was nothing to remove.
    pub async fn down(
        &self,
        project: Option<&Project>,
        name: &str,
        volumes: bool,
        parallelism: usize,
        reporter: &dyn Reporter,
    ) -> Result<Option<Down>> {
        let _lock = self.lock(name).await?;
        self.store.set_desired(
            &Desired {
                project: name.to_string(),
                active: false,
                stopped_services: vec![],
            },
            (self.clock)(),
        )?;
        if let Some(o) = self.runtime.orchestrator() {
            return self
                .down_orchestrated(o, project, name, volumes, reporter)
                .await;
        }
        let observed = self.runtime.observe(name).await?;
        let plan = plan_down(name, &observed, volumes);
        let (vms, host, section) = self.vm_down_plan(project, name, volumes)?;
        if plan.is_empty() && vms.is_empty() {
            return Ok(None);
        }
        let journal = StoreJournal {
            store: &self.store,
            project: name,
            revision: None,
            clock: self.clock,
        };
        let started = Instant::now();
        let options = ApplyOptions {
            parallelism,
            ..Default::default()
        };
        let containers = apply_down(
            &self.runtime,
            project,
            &plan.actions,
            &journal,
            reporter,
            &options,
        );
        let machines = self.vm_down(host.as_ref(), project, name, &section, &vms, reporter);
        let (applied, vm_errors) = futures_util::join!(containers, machines);
        self.record(name).await;
        let outcome = crate::converge::outcome(&applied, &vms, &vm_errors, started);
        let _ = self
            .store
            .event(name, "down", name, &outcome, (self.clock)());
        if applied.is_ok() {
            let _ = std::fs::remove_dir_all(self.state_dir.join("files").join(name));
        }
        Ok(Some(Down {
            plan,
            applied,
            outcome,
            vms,
            vm_errors,
        }))
    }

    /// `down` on a backend that keeps services itself: it removes the project's
    /// objects (and waits for their tasks to go); VMs on this host as usual.
    async fn down_orchestrated(
        &self,
        o: &dyn baton_engine::orchestrate::Orchestrator,
        project: Option<&Project>,
        name: &str,
        volumes: bool,
        reporter: &dyn Reporter,
    ) -> Result<Option<Down>> {
        let started = Instant::now();
        let (vms, host, section) = self.vm_down_plan(project, name, volumes)?;
        let machines = self.vm_down(host.as_ref(), project, name, &section, &vms, reporter);
        let (removed, vm_errors) = futures_util::join!(o.down(name, volumes, reporter), machines);
        let (actions, applied) = match removed {
            Ok(r) => {
                let actions: Vec<Action> = r
                    .objects
                    .iter()
                    .map(|o| {
                        let (kind, obj) = o.split_once(' ').unwrap_or(("object", o));
                        Action::Delete {
                            kind: kind.to_string(),
                            name: obj.to_string(),
                            service: None,
                            reason: "down".into(),
                        }
                    })
                    .collect();
                let done = actions.len();
                (actions, Ok(ApplyReport { done, failed: 0 }))
            }
            Err(error) => (
                Vec::new(),
                Err(baton_engine::apply::ApplyError::Runtime {
                    target: format!("project {name}"),
                    error,
                }),
            ),
        };
        if actions.is_empty() && applied.is_ok() && vms.is_empty() {
            return Ok(None);
        }
        let outcome = crate::converge::outcome(&applied, &vms, &vm_errors, started);
        let _ = self
            .store
            .event(name, "down", name, &outcome, (self.clock)());
        Ok(Some(Down {
            plan: Plan {
                project: name.to_string(),
                actions,
                up_to_date: Vec::new(),
                warnings: Vec::new(),
            },
            applied,
            outcome,
            vms,
            vm_errors,
        }))
    }
}
