//! The VM half of `up`, `plan` and `down`: the VM plan made beside the containers',
//! carried out beside them, each side waiting for what it depends on in the other
//! (a service for a VM to answer its health check, a VM for a service).

use std::collections::BTreeMap;
use std::time::Duration;

use baton_engine::apply::{External, Reporter, Step};
use baton_engine::runtime::{ContainerState, Health, Runtime};
use baton_spec::{Condition, Project};
use baton_vm::vm_plan::{self, VmAction, VmPlan};
use baton_vm::{Host, VmSection};
use futures_util::future::{join_all, LocalBoxFuture};
use futures_util::FutureExt;
use tokio::sync::watch;

use crate::{Control, Result};

/// How long a VM is given to power off by itself before it is forced, when `up`
/// restarts it or `down` stops it.
pub const VM_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of a VM action that could not be done.
pub type VmErrors = Vec<String>;

/// A VM's readiness as the other side waits for it: `None` until its action is done,
/// then whether it runs.
type Ready = Option<std::result::Result<(), String>>;

/// The VMs services may wait for during one `up`.
pub(crate) struct VmGates {
    ready: BTreeMap<String, (watch::Sender<Ready>, watch::Receiver<Ready>)>,
    specs: BTreeMap<String, baton_vm::VmSpec>,
    /// Each VM's directory on this host (its guest agent's channel is there).
    dirs: BTreeMap<String, std::path::PathBuf>,
}

impl VmGates {
    /// Every VM of the file: those with an action in `plan` are published when it is
    /// done; the others now (running, or not started by this `up`).
    pub(crate) fn new(
        section: &VmSection,
        plan: &VmPlan,
        running: &[String],
        host: Option<&Host>,
    ) -> VmGates {
        let mut ready = BTreeMap::new();
        for vm in &section.vms {
            let (tx, rx) = watch::channel(None);
            let acted = plan.actions.iter().any(|a| a.vm() == vm.name);
            if !acted {
                tx.send_replace(Some(if vm.ha {
                    Err("is ha: it runs on agents, not here".to_string())
                } else if running.contains(&vm.name) {
                    Ok(())
                } else {
                    Err("is not running and this up does not start it".to_string())
                }));
            }
            ready.insert(vm.name.clone(), (tx, rx));
        }
        VmGates {
            ready,
            dirs: section
                .vms
                .iter()
                .filter_map(|v| Some((v.name.clone(), host?.vm_dir(&v.name).ok()?)))
                .collect(),
            specs: section
                .vms
                .iter()
                .map(|v| (v.name.clone(), v.clone()))
                .collect(),
        }
    }

    fn publish(&self, vm: &str, r: std::result::Result<(), String>) {
        if let Some((tx, _)) = self.ready.get(vm) {
            tx.send_replace(Some(r));
        }
    }

    /// Waits until the VM's action is done, then for `condition`: started, or healthy
    /// (its check passes; a VM without one cannot be).
    async fn until(&self, vm: &str, condition: Condition) -> std::result::Result<(), String> {
        let Some((_, rx)) = self.ready.get(vm) else {
            return Err(format!("no VM named {vm:?}"));
        };
        let mut rx = rx.clone();
        let started = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Ok(())),
            Err(_) => Err("was never started".into()),
        };
        started?;
        match condition {
            Condition::ServiceStarted => Ok(()),
            Condition::ServiceCompletedSuccessfully => {
                Err("is a VM: it does not complete (use service_started or service_healthy)".into())
            }
            Condition::ServiceHealthy => {
                let Some(spec) = self.specs.get(vm) else {
                    return Err(format!("no VM named {vm:?}"));
                };
                let Some(check) = &spec.healthcheck else {
                    return Err("has no healthcheck".into());
                };
                loop {
                    let Some(dir) = self.dirs.get(vm) else {
                        return Err("is not a VM of this host".into());
                    };
                    if baton_vm::health::probe(spec, dir).await.is_ok() {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(check.interval_ms)).await;
                }
            }
        }
    }
}

impl External for VmGates {
    fn wait<'a>(
        &'a self,
        name: &'a str,
        condition: Condition,
    ) -> Option<LocalBoxFuture<'a, std::result::Result<(), String>>> {
        if !self.ready.contains_key(name) {
            return None;
        }
        Some(self.until(name, condition).boxed_local())
    }
}

/// What the VM actions of one `up` or `down` work with.
pub(crate) struct VmRun<'a> {
    pub host: &'a Host,
    pub project: &'a Project,
    pub section: &'a VmSection,
    pub gates: &'a VmGates,
    pub reporter: &'a dyn Reporter,
    /// How long a VM waits for each of its dependencies.
    pub wait_timeout: Duration,
}

/// The names of this host's running VMs among `host`'s records.
pub(crate) fn running(host: &[vm_plan::HostVm]) -> Vec<String> {
    host.iter()
        .filter(|h| h.running)
        .map(|h| h.spec.name.clone())
        .collect()
}

impl<R: Runtime> Control<R> {
    /// Whether this project has anything to do with VMs on this host: VMs in its file,
    /// or VMs its earlier `up` left (found without opening the host).
    pub(crate) fn has_vms(&self, project: &str, section: &VmSection) -> Result<bool> {
        if !section.vms.is_empty() {
            return Ok(true);
        }
        Ok(self.store.vms()?.iter().any(|r| {
            serde_json::from_str::<baton_vm::Machine>(&r.spec_json)
                .is_ok_and(|m| m.project.as_deref() == Some(project))
        }))
    }

    /// Carries out the VM actions of `plan` (each after its own `depends_on`), publishing
    /// each VM to `gates` as it comes up. Returns the errors, one line per VM.
    pub(crate) async fn apply_vms(&self, run: &VmRun<'_>, plan: &VmPlan) -> VmErrors {
        let (gates, reporter) = (run.gates, run.reporter);
        let futs = plan.actions.iter().map(|a| async move {
            let vm = a.vm();
            let r = self.apply_vm(run, a).await;
            let r = r.map_err(|e| format!("VM {vm}: {e}"));
            match &r {
                Ok(()) => reporter.report(Step::Done {
                    target: vm,
                    what: a.kind(),
                }),
                Err(e) => reporter.report(Step::Failed {
                    target: vm,
                    error: e,
                }),
            }
            gates.publish(vm, r.clone());
            r
        });
        join_all(futs)
            .await
            .into_iter()
            .filter_map(|r| r.err())
            .collect()
    }

    async fn apply_vm(
        &self,
        run: &VmRun<'_>,
        action: &VmAction,
    ) -> std::result::Result<(), String> {
        let VmRun {
            host,
            project,
            section,
            gates,
            reporter,
            wait_timeout,
        } = *run;
        let name = action.vm();
        let spec = section.vm(name);
        if let (
            Some(spec),
            VmAction::Create { .. } | VmAction::Start { .. } | VmAction::Restart { .. },
        ) = (spec, action)
        {
            for (dep, d) in &spec.depends_on {
                reporter.report(Step::Waiting {
                    target: name,
                    on: dep,
                });
                let waited = if section.vm(dep).is_some() {
                    tokio::time::timeout(wait_timeout, gates.until(dep, d.condition)).await
                } else {
                    tokio::time::timeout(
                        wait_timeout,
                        self.service_ready(project, dep, d.condition),
                    )
                    .await
                };
                let outcome = waited
                    .unwrap_or_else(|_| Err(format!("did not become ready in {wait_timeout:?}")));
                if let (Err(problem), true) = (outcome, d.required) {
                    return Err(format!("dependency {dep} {problem}"));
                }
            }
        }
        reporter.report(Step::Started {
            target: name,
            what: action.kind(),
        });
        let now = self.clock;
        let record = |spec: &baton_vm::VmSpec| -> std::result::Result<(), String> {
            host.set_policy(&spec.name, &section.policy(spec.environment), now())
                .and_then(|()| host.set_project(&spec.name, Some(&project.name), now()))
                .map_err(|e| e.to_string())
        };
        let need = |s: Option<&baton_vm::VmSpec>| {
            s.cloned()
                .ok_or_else(|| format!("{name} is not in the file's vms: section"))
        };
        match action {
            VmAction::Create { .. } | VmAction::Start { .. } => {
                let spec = need(spec)?;
                host.create(&spec, now()).await.map_err(|e| e.to_string())?;
                record(&spec)?;
                host.start(name, now()).await.map_err(|e| e.to_string())?;
            }
            VmAction::Restart { .. } => {
                let spec = need(spec)?;
                host.stop(name, VM_STOP_TIMEOUT, now())
                    .await
                    .map_err(|e| e.to_string())?;
                host.create(&spec, now()).await.map_err(|e| e.to_string())?;
                record(&spec)?;
                host.start(name, now()).await.map_err(|e| e.to_string())?;
            }
            VmAction::Update { .. } => {
                let spec = need(spec)?;
                host.create(&spec, now()).await.map_err(|e| e.to_string())?;
                record(&spec)?;
            }
            VmAction::Stop { .. } => {
                host.stop(name, VM_STOP_TIMEOUT, now())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            VmAction::Remove { disks, .. } => {
                for kept in host
                    .remove(name, *disks, now())
                    .await
                    .map_err(|e| e.to_string())?
                {
                    if *disks {
                        host.event(name, &format!("kept {kept}"), now());
                    }
                }
            }
        }
        host.event(
            name,
            &format!("{}: {}", action.kind(), action.reason()),
            now(),
        );
        Ok(())
    }

    /// The VM half of `down`: the project's VMs on this host (its file's, and those its
    /// `up` created), to stop or, with `volumes`, remove with their disks. Nothing is
    /// opened when the project has no VMs.
    pub(crate) fn vm_down_plan(
        &self,
        project: Option<&Project>,
        name: &str,
        volumes: bool,
    ) -> Result<(VmPlan, Option<Host>, VmSection)> {
        // A file whose vms: no longer reads still has VMs to take down: they are found
        // by their project.
        let section = crate::vm::vm_section(project).unwrap_or_default();
        if !self.has_vms(name, &section)? {
            let empty = VmPlan {
                project: name.to_string(),
                ..VmPlan::default()
            };
            return Ok((empty, None, section));
        }
        let host = self.vm_host(project, Vec::new())?;
        let plan = vm_plan::plan_down(name, &section, &host.planned_view()?, volumes);
        Ok((plan, Some(host), section))
    }

    /// Carries out the VM half of `down`; the errors, one line per VM.
    pub(crate) async fn vm_down(
        &self,
        host: Option<&Host>,
        project: Option<&Project>,
        name: &str,
        section: &VmSection,
        plan: &VmPlan,
        reporter: &dyn Reporter,
    ) -> VmErrors {
        let Some(host) = host else {
            return Vec::new();
        };
        let fallback = Project {
            name: name.to_string(),
            ..Project::default()
        };
        let project = project.unwrap_or(&fallback);
        let gates = VmGates::new(section, plan, &[], Some(host));
        let run = VmRun {
            host,
            project,
            section,
            gates: &gates,
            reporter,
            wait_timeout: VM_STOP_TIMEOUT,
        };
        self.apply_vms(&run, plan).await
    }

    /// Polls the container engine until the service meets `condition` (for a VM that
    /// depends on it).
    async fn service_ready(
        &self,
        project: &Project,
        service: &str,
        condition: Condition,
    ) -> std::result::Result<(), String> {
        loop {
            let observed = self
                .runtime
                .observe(&project.name)
                .await
                .map_err(|e| e.to_string())?;
            let mine: Vec<_> = observed
                .containers
                .iter()
                .filter(|c| c.service == service && !c.oneoff)
                .collect();
            let done = !mine.is_empty()
                && match condition {
                    Condition::ServiceStarted => {
                        mine.iter().any(|c| c.state == ContainerState::Running)
                    }
                    Condition::ServiceHealthy => {
                        if let Some(c) = mine.iter().find(|c| {
                            c.state == ContainerState::Running && c.health == Health::None
                        }) {
                            return Err(format!("has no healthcheck ({})", c.name));
                        }
                        mine.iter().all(|c| {
                            c.state == ContainerState::Running && c.health == Health::Healthy
                        })
                    }
                    Condition::ServiceCompletedSuccessfully => {
                        if let Some(c) = mine
                            .iter()
                            .find(|c| c.state == ContainerState::Exited && c.exit_code != Some(0))
                        {
                            return Err(format!(
                                "exited with code {} ({})",
                                c.exit_code.unwrap_or(-1),
                                c.name
                            ));
                        }
                        mine.iter()
                            .all(|c| c.state == ContainerState::Exited && c.exit_code == Some(0))
                    }
                };
            if done {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
