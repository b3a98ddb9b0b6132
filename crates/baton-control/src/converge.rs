//! `up`, `plan` and `scale`: record the revision, observe, plan, then (for `up`) declare
//! that the project should run, apply the plan and hand rollouts over to the daemon.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use baton_engine::apply::{apply_up, ApplyError, ApplyOptions, ApplyReport, Reporter};
use baton_engine::hash::{effective_config, hash_value, service_hash};
use baton_engine::orchestrate::Planned;
use baton_engine::plan::{plan_up, Action, Plan, PlanInput, PlanOptions};
use baton_engine::resolve::image_ref;
use baton_engine::rollout::{handover, stable_set, Handover, ReplicaConfig};
use baton_engine::runtime::{Observed, Runtime};
use baton_spec::Project;
use baton_state::{ProjectLock, Resource};
use baton_vm::vm_plan::{self, VmPlan};
use baton_vm::VmSection;
use futures_util::future::join_all;

use crate::rollout::recorded;
use crate::vm_up::{VmGates, VmRun};
use crate::{Control, ControlError, Result, StoreJournal};

/// A plan and what it was made from.
pub struct Prepared {
    pub observed: Observed,
    pub plan: Plan,
    /// The spec revision recorded for it.
    pub revision: i64,
    /// The VM half: what `up` does to the file's VMs on this host.
    pub vms: VmPlan,
    /// The file's `vms:` section, as read against this host.
    pub vm_section: VmSection,
    /// This host's running VMs when the plan was made.
    pub vms_running: Vec<String>,
    /// For a backend that keeps services itself (Swarm, Kubernetes): the objects the
    /// plan puts, which its `apply` needs (`observed` is then empty).
    pub orchestrated: Option<Planned>,
}

impl Prepared {
    /// Whether `up` has nothing to do, for containers and VMs alike.
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty() && self.vms.is_empty()
    }
}

/// An `up` under way: the project's lock is held from planning to the end, so that
/// `baton serve` leaves the project alone and the observation stays true.
pub struct Converging {
    _lock: ProjectLock,
    pub prepared: Prepared,
    /// Actions an earlier, killed run left half-done (now marked interrupted).
    pub interrupted: usize,
}

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplySettings {
    /// Engine operations in flight at once.
    pub parallelism: usize,
    /// How long a dependant waits for its `depends_on` conditions.
    pub wait_timeout: Duration,
    /// Whether a `baton serve` runs: services whose traffic baton manages need it.
    pub daemon_running: bool,
}

/// What `up` did.
pub struct Converged {
    pub plan: Plan,
    /// The VM half of the plan, and the VM actions that failed (one line each).
    pub vms: VmPlan,
    pub vm_errors: Vec<String>,
    /// The engine's outcome; an error leaves what was done recorded.
    pub applied: std::result::Result<ApplyReport, ApplyError>,
    /// One line: `N step(s) done in T` or `failed: …`.
    pub outcome: String,
    /// Rollouts handed to the daemon: (service, rollout id).
    pub rollouts: Vec<(String, i64)>,
    /// Said once, not an error (services served by a daemon that does not run yet).
    pub warnings: Vec<String>,
}

impl<R: Runtime> Control<R> {
    /// Records the revision and each service's configuration, observes the project and
    /// plans `up`.
    pub async fn plan(&self, project: &Project, opts: &PlanOptions) -> Result<Prepared> {
        let now = (self.clock)();
        let store = &self.store;
        // What the edge would refuse is refused here, before anything is recorded.
        crate::edge::check(store, project)?;
        store.upsert_project(&project.name, &project.working_dir, now)?;
        let spec = serde_json::to_value(project).map_err(|e| refused(e.to_string()))?;
        let (revision, _) =
            store.record_revision(&project.name, &hash_value(&spec), &spec.to_string(), now)?;
        for (name, svc) in &project.services {
            store.save_service_config(
                &service_hash(svc),
                &project.name,
                name,
                &effective_config(svc).to_string(),
                now,
            )?;
        }
        let previous = |hash: &str| -> Option<serde_json::Value> {
            store
                .service_config(hash)
                .ok()
                .flatten()
                .and_then(|s| serde_json::from_str(&s).ok())
        };
        if let Some(o) = self.runtime.orchestrator() {
            let planned = o.plan(project, opts, &previous).await?;
            // What each object was made from, by hash, so a later change names its
            // fields (secrets carry their content's hash only, never the content).
            for d in &planned.desired {
                store.save_service_config(
                    &d.hash(),
                    &project.name,
                    &d.name,
                    &d.config.to_string(),
                    now,
                )?;
            }
            let (vms, vm_section, vms_running) = self.vm_half(project, opts)?;
            return Ok(Prepared {
                observed: Observed::default(),
                plan: planned.plan.clone(),
                revision: revision.number,
                vms,
                vm_section,
                vms_running,
                orchestrated: Some(planned),
            });
        }
        let observed = self.runtime.observe(&project.name).await?;
        let images: BTreeSet<String> = project
            .services
            .iter()
            .map(|(n, s)| image_ref(&project.name, n, s))
            .collect();
        let checks = join_all(images.iter().map(|i| self.runtime.image_exists(i))).await;
        let mut present = BTreeSet::new();
        for (image, found) in images.iter().zip(checks) {
            if found? {
                present.insert(image.clone());
            }
        }
        let plan = plan_up(&PlanInput {
            project,
            observed: &observed,
            images_present: &present,
            previous_config: &previous,
            options: opts,
            capabilities: &self.runtime.capabilities(),
        })?;
        let (vms, vm_section, vms_running) = self.vm_half(project, opts)?;
        Ok(Prepared {
            observed,
            plan,
            revision: revision.number,
            vms,
            vm_section,
            vms_running,
            orchestrated: None,
        })
    }

    /// The VM half of a plan: what `up` does to the file's VMs on this host.
    fn vm_half(
        &self,
        project: &Project,
        opts: &PlanOptions,
    ) -> Result<(VmPlan, VmSection, Vec<String>)> {
        let vm_section = crate::vm::vm_section(Some(project))?;
        let (vms, vms_running) = if self.has_vms(&project.name, &vm_section)? {
            let host = self.vm_host(Some(project), Vec::new())?;
            let seen = host.planned_view()?;
            let selected = vm_plan::selected(project, &vm_section, &opts.services, opts.no_deps);
            let vms = vm_plan::plan_up(
                &project.name,
                &vm_section,
                &selected,
                &seen,
                opts.remove_orphans,
            );
            (vms, crate::vm_up::running(&seen))
        } else {
            (
                VmPlan {
                    project: project.name.clone(),
                    ..VmPlan::default()
                },
                Vec::new(),
            )
        };
        Ok((vms, vm_section, vms_running))
    }

    /// The first half of `up`: takes the project's lock, plans, and declares that the
    /// project (the named services, or all) should run, so the daemon keeps it so.
    pub async fn begin_up(&self, project: &Project, opts: &PlanOptions) -> Result<Converging> {
        let lock = self.lock(&project.name).await?;
        let prepared = self.plan(project, opts).await?;
        let started: Vec<String> = if opts.services.is_empty() {
            project.services.keys().cloned().collect()
        } else {
            opts.services.clone()
        };
        // A backend that keeps services itself restarts them too: no daemon needed.
        if prepared.orchestrated.is_none() {
            self.set_desired(&project.name, true, &[], &started, &[])?;
        }
        let interrupted = self
            .store
            .mark_interrupted(&project.name, (self.clock)())?
            .len();
        Ok(Converging {
            _lock: lock,
            prepared,
            interrupted,
        })
    }

    /// The second half of `up`: checks what must exist beforehand, writes configs and
    /// secrets, applies the plan, records what runs and hands rollouts to the daemon.
    /// An error before anything changed is `Err`; the engine's own outcome is in
    /// [`Converged::applied`].
    pub async fn finish_up(
        &self,
        project: &Project,
        up: Converging,
        settings: &ApplySettings,
        reporter: &dyn Reporter,
    ) -> Result<Converged> {
        let Prepared {
            observed,
            plan,
            revision,
            vms,
            vm_section,
            vms_running,
            orchestrated,
        } = up.prepared;
        if plan.is_empty() && vms.is_empty() {
            return Ok(Converged {
                plan,
                vms,
                vm_errors: Vec::new(),
                applied: Ok(ApplyReport::default()),
                outcome: "nothing to do".into(),
                rollouts: Vec::new(),
                warnings: Vec::new(),
            });
        }
        let mut warnings = Vec::new();
        let mut files = Default::default();
        if !plan.is_empty() && orchestrated.is_none() {
            self.preflight(project).await?;
            warnings = check_traffic(project, &plan.actions, settings.daemon_running)?;
            files = crate::files::materialize(project, &self.state_dir, &self.env)?;
        }
        let host = if vm_section.vms.is_empty() && vms.is_empty() {
            None
        } else {
            Some(self.vm_host(Some(project), Vec::new())?)
        };
        let gates = VmGates::new(&vm_section, &vms, &vms_running, host.as_ref());
        let journal = StoreJournal {
            store: &self.store,
            project: &project.name,
            revision: Some(revision),
            clock: self.clock,
        };
        let started = Instant::now();
        let containers = async {
            if plan.is_empty() {
                return Ok(ApplyReport::default());
            }
            if let (Some(o), Some(planned)) = (self.runtime.orchestrator(), &orchestrated) {
                return match o.apply(project, planned, reporter).await {
                    Ok(()) => Ok(ApplyReport {
                        done: plan.actions.len(),
                        failed: 0,
                    }),
                    Err(error) => Err(ApplyError::Runtime {
                        target: format!("project {}", project.name),
                        error,
                    }),
                };
            }
            apply_up(
                &self.runtime,
                project,
                &observed,
                &plan.actions,
                &journal,
                reporter,
                &ApplyOptions {
                    parallelism: settings.parallelism,
                    wait_timeout: settings.wait_timeout,
                    files,
                },
                &gates,
            )
            .await
        };
        let machines = async {
            match &host {
                Some(host) => {
                    let run = VmRun {
                        host,
                        project,
                        section: &vm_section,
                        gates: &gates,
                        reporter,
                        wait_timeout: settings.wait_timeout,
                    };
                    self.apply_vms(&run, &vms).await
                }
                None => Vec::new(),
            }
        };
        let (applied, vm_errors) = tokio::join!(containers, machines);
        if !plan.is_empty() && orchestrated.is_none() {
            self.record(&project.name).await;
        }
        let outcome = outcome(&applied, &vms, &vm_errors, started);
        let _ = self
            .store
            .event(&project.name, "up", &project.name, &outcome, (self.clock)());
        let rollouts = if applied.is_ok() && orchestrated.is_none() {
            self.hand_over_rollouts(project, &observed, &plan.actions, revision)?
        } else {
            Vec::new()
        };
        Ok(Converged {
            plan,
            vms,
            vm_errors,
            applied,
            outcome,
            rollouts,
            warnings,
        })
    }

    /// Checks what must exist beforehand (external networks and volumes), so a bad file
    /// creates nothing.
    async fn preflight(&self, project: &Project) -> Result<()> {
        let used: BTreeSet<&String> = project
            .services
            .values()
            .flat_map(|s| s.networks.keys())
            .collect();
        for key in used {
            if let Some(n) = project.networks.get(key) {
                if n.external && !self.runtime.network_exists(&n.name).await? {
                    return Err(refused(format!("network {key}: external network {:?} does not exist; create it first (`docker network create {}`)", n.name, n.name)));
                }
            }
        }
        for (key, v) in &project.volumes {
            if v.external && !self.runtime.volume_exists(&v.name).await? {
                return Err(refused(format!("volume {key}: external volume {:?} does not exist; create it first (`docker volume create {}`)", v.name, v.name)));
            }
        }
        Ok(())
    }

    /// Stores what runs now, so later commands and sessions can see it.
    pub async fn record(&self, project: &str) {
        let Ok(observed) = self.runtime.observe(project).await else {
            return;
        };
        let mut resources: Vec<Resource> = observed
            .containers
            .iter()
            .map(|c| Resource {
                kind: "container".into(),
                name: c.name.clone(),
                id: c.id.clone(),
                service: Some(c.service.clone()),
                replica: Some(c.replica),
                config_hash: Some(c.config_hash.clone()),
                state: format!("{:?}", c.state).to_lowercase(),
            })
            .collect();
        resources.extend(observed.networks.iter().map(|n| Resource {
            kind: "network".into(),
            name: n.name.clone(),
            id: n.id.clone(),
            service: None,
            replica: None,
            config_hash: None,
            state: "present".into(),
        }));
        resources.extend(observed.volumes.iter().map(|v| Resource {
            kind: "volume".into(),
            name: v.name.clone(),
            id: v.name.clone(),
            service: None,
            replica: None,
            config_hash: None,
            state: "present".into(),
        }));
        let _ = self
            .store
            .replace_resources(project, &resources, (self.clock)());
    }

    /// Records a rollout for each service the plan hands over, reusing one already
    /// running to the same configuration (`baton_engine::rollout::handover`). Returns
    /// (service, rollout id).
    fn hand_over_rollouts(
        &self,
        project: &Project,
        observed: &Observed,
        actions: &[Action],
        revision: i64,
    ) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for a in actions {
            let Action::Rollout {
                service,
                from_hash,
                to_hash,
                ..
            } = a
            else {
                continue;
            };
            let records: Vec<_> = self
                .store
                .rollouts(&project.name, Some(service))?
                .iter()
                .map(recorded)
                .collect();
            let superseded = match handover(&records, to_hash) {
                Handover::Reuse(id) => {
                    out.push((service.clone(), id));
                    continue;
                }
                Handover::Start { superseded } => superseded,
            };
            let svc = &project.services[service];
            let spec = baton_engine::rollout::rollout_spec(svc)
                .map_err(|e| refused(format!("service {service}: x-baton.rollout: {e}")))?;
            let replicas: Vec<ReplicaConfig> = observed
                .containers
                .iter()
                .filter(|c| &c.service == service && !c.oneoff)
                .map(|c| ReplicaConfig {
                    name: &c.name,
                    config_hash: &c.config_hash,
                })
                .collect();
            let (from_hash, old) = stable_set(&replicas, from_hash, superseded);
            let id = self.record_rollout(
                &project.name,
                service,
                revision,
                (&from_hash, to_hash),
                &spec,
                svc.replicas(),
                &old,
            )?;
            out.push((service.clone(), id));
        }
        Ok(out)
    }
}

/// Services whose traffic baton manages need the daemon: it owns their ports and
/// carries out their rollouts. A rollout without it is refused before anything
/// changes; other managed services only get a warning.
fn check_traffic(
    project: &Project,
    actions: &[Action],
    daemon_running: bool,
) -> Result<Vec<String>> {
    if daemon_running {
        return Ok(Vec::new());
    }
    for a in actions {
        if let Action::Rollout { service, .. } = a {
            return Err(refused(format!("service {service}: its traffic goes through baton's proxy (published ports with x-baton.rollout, or x-baton.routes on the edge), so it changes by rollout, which `baton serve` carries out; start `baton serve` first")));
        }
    }
    let managed: Vec<&String> = project
        .services
        .iter()
        .filter(|(_, s)| baton_engine::resolve::traffic_managed(s))
        .map(|(n, _)| n)
        .collect();
    Ok(if managed.is_empty() {
        Vec::new()
    } else {
        vec![format!("the traffic of {managed:?} is served by `baton serve` (x-baton.rollout, x-baton.routes), which is not running")]
    })
}

/// One line for what `up` or `down` did: `N step(s) done in T` or `failed: …`.
pub(crate) fn outcome<E: std::fmt::Display>(
    applied: &std::result::Result<ApplyReport, E>,
    vms: &VmPlan,
    vm_errors: &[String],
    started: Instant,
) -> String {
    let vm_done = vms.actions.len().saturating_sub(vm_errors.len());
    match (applied, vm_errors.is_empty()) {
        (Ok(r), true) => format!(
            "{} step(s) done in {:.1?}",
            r.done + vm_done,
            started.elapsed()
        ),
        (Ok(_), false) => format!("failed: {}", vm_errors.join("; ")),
        (Err(e), true) => format!("failed: {e}"),
        (Err(e), false) => format!("failed: {e}; {}", vm_errors.join("; ")),
    }
}

pub(crate) fn refused(message: impl Into<String>) -> ControlError {
    ControlError::Refused(message.into())
}
