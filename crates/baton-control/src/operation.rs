//! The closed set of changes both front doors make — [`Operation`] in, [`Outcome`] out —
//! and [`Control::execute`], the one place that carries them out and audits them.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_engine::apply::{Reporter, Silent};
use baton_engine::plan::{Plan, PlanOptions};
use baton_engine::runtime::Runtime;
use baton_spec::Project;
use baton_state::{AuditRecord, RolloutRequest};
use baton_vm::vm_plan::VmPlan;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::converge::refused;
use crate::lifecycle::ContainerResult;
use crate::rollout::{RequestOutcome, Undone};
use crate::{Control, ControlError, Result};

/// Who asks for a change: a token's name, `cli:<user>`, or `local:<user>` (the daemon's
/// socket). It is what the audit log says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Actor(pub String);

impl Actor {
    /// The `baton` command run by `user`.
    pub fn cli(user: &str) -> Actor {
        Actor(format!("cli:{user}"))
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How `up` plans and applies, as both doors send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UpOptions {
    /// Services to bring up (with their dependencies unless `no_deps`); empty = all.
    pub services: Vec<String>,
    pub no_deps: bool,
    pub force_recreate: bool,
    pub no_recreate: bool,
    pub remove_orphans: bool,
    /// Build images even when present.
    pub build: bool,
    /// Replica counts that override the file.
    pub scale: BTreeMap<String, u32>,
    /// Seconds a dependant waits for its `depends_on` conditions.
    pub wait_timeout_secs: u64,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            services: Vec::new(),
            no_deps: false,
            force_recreate: false,
            no_recreate: false,
            remove_orphans: false,
            build: false,
            scale: BTreeMap::new(),
            wait_timeout_secs: 300,
        }
    }
}

impl UpOptions {
    pub fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            services: self.services.clone(),
            no_deps: self.no_deps,
            force_recreate: self.force_recreate,
            no_recreate: self.no_recreate,
            remove_orphans: self.remove_orphans,
            build: self.build,
            scale: self.scale.clone(),
        }
    }
}

/// A change to the world, as either door asks for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Converge to `project` (the file as the caller resolved it).
    Up {
        project: Box<Project>,
        options: UpOptions,
    },
    /// Remove every container and network of the project (with `volumes`, its volumes).
    Down { project: String, volumes: bool },
    /// Set replica counts; `spec` is the project to converge (the last applied revision
    /// when `None`).
    Scale {
        project: String,
        replicas: BTreeMap<String, u32>,
        no_deps: bool,
        spec: Option<Box<Project>>,
    },
    Start {
        project: String,
        services: Vec<String>,
    },
    Stop {
        project: String,
        services: Vec<String>,
        /// Overrides each service's grace period.
        timeout_secs: Option<u64>,
    },
    Restart {
        project: String,
        services: Vec<String>,
        timeout_secs: Option<u64>,
    },
    /// Promote, abort or resume the service's newest rollout.
    Rollout {
        project: String,
        service: String,
        request: RolloutRequest,
    },
    /// Roll the service back to an earlier revision's configuration.
    Undo {
        project: String,
        service: String,
        to_revision: Option<i64>,
    },
    /// Start a run of a pipeline (of `spec`, else of the last applied file): answered
    /// with its id as soon as it has one, the run goes on (`Control::start_pipeline`).
    PipelineRun {
        project: String,
        pipeline: String,
        vars: BTreeMap<String, String>,
        /// Run again only what did not pass in this earlier run.
        rerun_of: Option<i64>,
        spec: Option<Box<Project>>,
    },
    /// Ask whichever process runs it to cancel a pipeline run.
    PipelineCancel { project: String, run: i64 },
    /// Act on a VM this host knows.
    Vm { vm: String, action: VmAction },
    /// A fleet run (ad-hoc command, runbook, ping, facts) over SSH. Carried out by the
    /// `baton fleet` door, which holds the caller's SSH keys; recorded here.
    FleetRun {
        project: String,
        kind: String,
        task: String,
        target: String,
    },
    /// Managed files applied or rolled back (`apply`, `rollback`) on hosts, by the
    /// `baton files` door; recorded here.
    Files {
        project: String,
        action: String,
        files: Vec<String>,
        check: bool,
    },
    /// Silence the project's alerts whose labels match every matcher (`service="web"`).
    Silence {
        project: String,
        matchers: Vec<String>,
        duration_secs: u64,
        /// Why (required).
        comment: String,
    },
    /// End one of the project's silences now.
    Unsilence { project: String, id: String },
}

/// What to do to a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VmAction {
    Start,
    /// ACPI power-down; forced after `timeout_secs` (default 60).
    Stop {
        timeout_secs: Option<u64>,
    },
    Restart {
        timeout_secs: Option<u64>,
    },
    /// A live snapshot (named from the policy's template unless `name`), then the
    /// policy of the VM's environment.
    Snapshot {
        name: Option<String>,
        note: Option<String>,
    },
    /// Back to a snapshot: memory and disks.
    Restore {
        snapshot: String,
    },
}

impl Operation {
    /// The audit log's name for it.
    pub fn action(&self) -> String {
        match self {
            Operation::Up { .. } => "up".into(),
            Operation::Down { .. } => "down".into(),
            Operation::Scale { .. } => "scale".into(),
            Operation::Start { .. } => "start".into(),
            Operation::Stop { .. } => "stop".into(),
            Operation::Restart { .. } => "restart".into(),
            Operation::Rollout { request, .. } => format!("rollout.{request}"),
            Operation::Undo { .. } => "rollout.undo".into(),
            Operation::PipelineRun { rerun_of, .. } => if rerun_of.is_some() {
                "pipeline.rerun"
            } else {
                "pipeline.run"
            }
            .into(),
            Operation::PipelineCancel { .. } => "pipeline.cancel".into(),
            Operation::FleetRun { kind, .. } => format!("fleet.{kind}"),
            Operation::Files { action, .. } => format!("files.{action}"),
            Operation::Silence { .. } => "alerts.silence".into(),
            Operation::Unsilence { .. } => "alerts.unsilence".into(),
            Operation::Vm { action, .. } => format!(
                "vm.{}",
                match action {
                    VmAction::Start => "start",
                    VmAction::Stop { .. } => "stop",
                    VmAction::Restart { .. } => "restart",
                    VmAction::Snapshot { .. } => "snapshot",
                    VmAction::Restore { .. } => "restore",
                }
            ),
        }
    }

    pub fn project(&self) -> &str {
        match self {
            Operation::Up { project, .. } => &project.name,
            Operation::Down { project, .. }
            | Operation::Scale { project, .. }
            | Operation::Start { project, .. }
            | Operation::Stop { project, .. }
            | Operation::Restart { project, .. }
            | Operation::Rollout { project, .. }
            | Operation::Undo { project, .. }
            | Operation::PipelineRun { project, .. }
            | Operation::PipelineCancel { project, .. }
            | Operation::FleetRun { project, .. }
            | Operation::Files { project, .. }
            | Operation::Silence { project, .. }
            | Operation::Unsilence { project, .. } => project,
            // A VM belongs to the host, not to a project.
            Operation::Vm { .. } => "",
        }
    }

    /// What it acts on: the project, or `project/service`.
    pub fn target(&self) -> String {
        match self {
            Operation::Rollout {
                project, service, ..
            }
            | Operation::Undo {
                project, service, ..
            } => format!("{project}/{service}"),
            Operation::PipelineRun {
                project, pipeline, ..
            } => format!("{project}/{pipeline}"),
            Operation::PipelineCancel { project, run } => format!("{project}/run {run}"),
            Operation::Vm { vm, .. } => format!("vm {vm}"),
            Operation::Unsilence { project, id } => format!("{project}/silence {id}"),
            Operation::FleetRun {
                project, target, ..
            } => format!("{project}/{target}"),
            other => other.project().to_string(),
        }
    }

    /// What was asked, for the audit log: every parameter, but a project file only by
    /// its services (the file itself is in the store as a revision).
    pub fn request_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Operation::Up { project, options } => json!({
                "services": project.services.keys().collect::<Vec<_>>(),
                "options": options,
            }),
            Operation::Down { volumes, .. } => json!({ "volumes": volumes }),
            Operation::Scale {
                replicas,
                no_deps,
                spec,
                ..
            } => json!({
                "replicas": replicas,
                "no_deps": no_deps,
                "spec": if spec.is_some() { "sent" } else { "last applied" },
            }),
            Operation::Start { services, .. } => json!({ "services": services }),
            Operation::Stop {
                services,
                timeout_secs,
                ..
            }
            | Operation::Restart {
                services,
                timeout_secs,
                ..
            } => json!({ "services": services, "timeout_secs": timeout_secs }),
            Operation::Rollout { request, .. } => json!({ "request": request }),
            Operation::Undo { to_revision, .. } => json!({ "to_revision": to_revision }),
            // Variables are a run's parameters, never secrets (secrets come from the
            // environment or files the spec names).
            Operation::PipelineRun {
                vars,
                rerun_of,
                spec,
                ..
            } => json!({
                "vars": vars,
                "rerun_of": rerun_of,
                "spec": if spec.is_some() { "sent" } else { "last applied" },
            }),
            Operation::PipelineCancel { run, .. } => json!({ "run": run }),
            Operation::Vm { action, .. } => json!(action),
            Operation::FleetRun { task, .. } => json!({ "task": task }),
            Operation::Files { files, check, .. } => json!({ "files": files, "check": check }),
            Operation::Silence {
                matchers,
                duration_secs,
                comment,
                ..
            } => {
                json!({ "matchers": matchers, "duration_secs": duration_secs, "comment": comment })
            }
            Operation::Unsilence { id, .. } => json!({ "id": id }),
        }
    }
}

/// A rollout handed to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RolloutRef {
    pub service: String,
    pub rollout: i64,
}

/// What `up` (or `scale`) did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UpOutcome {
    pub project: String,
    /// The spec revision recorded for it.
    pub revision: i64,
    /// Actions an earlier, killed run left half-done (now marked interrupted).
    pub interrupted: usize,
    #[schemars(with = "serde_json::Value")]
    pub plan: Plan,
    /// Whether every action went well.
    pub ok: bool,
    pub error: Option<String>,
    /// One line: `N step(s) done in T`, `nothing to do` or `failed: …`.
    pub outcome: String,
    /// Rollouts handed to the daemon.
    pub rollouts: Vec<RolloutRef>,
    pub warnings: Vec<String>,
    /// The VM half of the plan (this host's VMs of the file's `vms:`).
    #[serde(default)]
    #[schemars(with = "serde_json::Value")]
    pub vms: VmPlan,
    /// The VM actions that failed.
    #[serde(default)]
    pub vm_errors: Vec<String>,
}

/// What `down` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DownOutcome {
    pub project: String,
    /// `None` when there was nothing to remove.
    #[schemars(with = "Option<serde_json::Value>")]
    pub plan: Option<Plan>,
    pub ok: bool,
    pub error: Option<String>,
    pub outcome: String,
    /// The VM half: stopped, or removed with `volumes`.
    #[serde(default)]
    #[schemars(with = "serde_json::Value")]
    pub vms: VmPlan,
    /// The VM actions that failed.
    #[serde(default)]
    pub vm_errors: Vec<String>,
}

/// What an operation did; each [`Operation`] has one kind of outcome.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// `Up` and `Scale`.
    Up(UpOutcome),
    Down(DownOutcome),
    /// `Start`, `Stop` and `Restart`: one result per container acted on.
    Containers(Vec<ContainerResult>),
    Rollout(RequestOutcome),
    Undo(Undone),
    /// A pipeline run started (it goes on; its jobs are events).
    PipelineStarted {
        run: i64,
    },
    PipelineCancelRequested {
        run: i64,
    },
    VmStarted(Vec<crate::VmStarted>),
    VmStopped(Vec<crate::VmStopped>),
    Snapshot(crate::SnapshotTaken),
    Restored {
        vm: String,
        snapshot: String,
    },
    Silenced(crate::Silenced),
    Unsilenced {
        id: String,
    },
}

impl Outcome {
    /// For the audit log: whether it went well, and one line.
    pub fn summary(&self) -> (bool, String) {
        match self {
            Outcome::Up(u) => (u.ok, u.outcome.clone()),
            Outcome::Down(d) => (d.ok, d.outcome.clone()),
            Outcome::Containers(c) => {
                let failed: Vec<&ContainerResult> =
                    c.iter().filter(|r| r.error.is_some()).collect();
                match failed.first() {
                    None => (true, format!("{} container(s)", c.len())),
                    Some(f) => (
                        false,
                        format!(
                            "{} of {} failed: {}: {}",
                            failed.len(),
                            c.len(),
                            f.container,
                            f.error.as_deref().unwrap_or("")
                        ),
                    ),
                }
            }
            Outcome::Rollout(r) => (true, format!("rollout {} (was {})", r.rollout, r.was)),
            Outcome::Undo(Undone::Orchestrator { service, state }) => (
                true,
                format!("service {service} back to its previous version ({state})"),
            ),
            Outcome::Undo(Undone::AlreadyThere { revision }) => {
                (true, format!("already at revision {revision}"))
            }
            Outcome::Undo(Undone::Rolling {
                revision, rollout, ..
            }) => (
                true,
                format!("rolling back to revision {revision} (rollout {rollout})"),
            ),
            Outcome::PipelineStarted { run } => (true, format!("run {run} started")),
            Outcome::PipelineCancelRequested { run } => {
                (true, format!("cancel of run {run} requested"))
            }
            Outcome::VmStarted(v) => (
                true,
                v.iter()
                    .map(|s| format!("{} started (pid {})", s.name, s.pid))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Outcome::VmStopped(v) => (
                true,
                v.iter()
                    .map(|s| {
                        let how = if s.graceful {
                            "powered off"
                        } else {
                            "forced off"
                        };
                        format!("{} {how}", s.name)
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Outcome::Snapshot(t) => (true, format!("snapshot {} of {}", t.snapshot, t.vm)),
            Outcome::Restored { vm, snapshot } => (true, format!("{vm} back at {snapshot}")),
            Outcome::Silenced(s) => (true, format!("silence {}", s.id)),
            Outcome::Unsilenced { id } => (true, format!("silence {id} ended")),
        }
    }
}

/// How the door carrying out an operation runs.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// Engine operations in flight at once.
    pub parallelism: usize,
    /// Whether a `baton serve` runs (rollouts need it).
    pub daemon_running: bool,
    /// Where pipelines' `image:` jobs run (none: such jobs fail).
    pub containers: Option<baton_pipeline::run::Containers>,
}

/// Watches an operation as it goes: the engine's steps, and the plan before anything
/// is done (the `baton` command shows both; the HTTP API neither).
pub trait Watch: Reporter {
    fn planned(&self, _plan: &Plan, _vms: &VmPlan, _interrupted: usize) {}
}

impl Watch for Silent {}

impl<R> Control<R> {
    /// Records an audit entry (and its event); a store that cannot take it is logged,
    /// not fatal: the change has happened.
    pub fn audit(&self, entry: &AuditRecord) {
        if let Err(e) = self.store.record_audit(entry) {
            tracing::warn!(action = %entry.action, target = %entry.target, error = %e, "cannot record an audit entry");
        }
    }

    /// Records that `actor` asked for `op` and how it went: what `execute` does for the
    /// changes it carries out; a door that carries one out in its own steps (a pipeline
    /// run with live output, VMs on this host) calls it itself.
    pub fn audit_change(&self, actor: &Actor, op: &Operation, ok: bool, message: &str) {
        self.audit(&AuditRecord {
            id: 0,
            at: (self.clock)(),
            actor: actor.0.clone(),
            action: op.action(),
            project: op.project().to_string(),
            target: op.target(),
            request_json: op.request_json().to_string(),
            outcome: if ok { "ok" } else { "error" }.into(),
            message: message.to_string(),
        });
    }

    fn record_result(&self, actor: &Actor, op: &Operation, result: &Result<Outcome>) {
        let (ok, message) = match result {
            Ok(o) => o.summary(),
            Err(e) => (false, e.to_string()),
        };
        self.audit_change(actor, op, ok, &message);
    }
}

impl<R: Runtime> Control<R> {
    /// Carries out `op` for `actor` and records it in the audit log (which also puts
    /// it in the event stream), whether it went well or not.
    pub async fn execute(
        &self,
        actor: &Actor,
        op: &Operation,
        settings: &ExecSettings,
        watch: &dyn Watch,
    ) -> Result<Outcome> {
        let result = self.perform(actor, op, settings, watch).await;
        self.record_result(actor, op, &result);
        result
    }

    async fn perform(
        &self,
        actor: &Actor,
        op: &Operation,
        settings: &ExecSettings,
        watch: &dyn Watch,
    ) -> Result<Outcome> {
        match op {
            Operation::Up { project, options } => {
                self.known_services(project.as_ref(), &options.services)?;
                self.up(project, options, settings, watch)
                    .await
                    .map(Outcome::Up)
            }
            Operation::Scale {
                project,
                replicas,
                no_deps,
                spec,
            } => {
                let spec = match spec {
                    Some(p) => p.as_ref().clone(),
                    None => self.last_applied(project)?.ok_or_else(|| {
                        ControlError::NotFound(format!(
                            "project {project}: nothing was applied yet; run `baton up` first"
                        ))
                    })?,
                };
                let services: Vec<String> = replicas.keys().cloned().collect();
                self.known_services(&spec, &services)?;
                let options = UpOptions {
                    services,
                    no_deps: *no_deps,
                    scale: replicas.clone(),
                    ..Default::default()
                };
                self.up(&spec, &options, settings, watch)
                    .await
                    .map(Outcome::Up)
            }
            Operation::Down { project, volumes } => {
                let spec = self.last_applied(project)?;
                let down = self
                    .down(
                        spec.as_ref(),
                        project,
                        *volumes,
                        settings.parallelism,
                        watch,
                    )
                    .await?;
                Ok(Outcome::Down(match down {
                    None => DownOutcome {
                        project: project.clone(),
                        plan: None,
                        ok: true,
                        error: None,
                        outcome: "nothing to remove".into(),
                        vms: VmPlan::default(),
                        vm_errors: Vec::new(),
                    },
                    Some(d) => DownOutcome {
                        project: project.clone(),
                        ok: d.applied.is_ok() && d.vm_errors.is_empty(),
                        error: match d.applied {
                            Err(e) => Some(e.to_string()),
                            Ok(_) if !d.vm_errors.is_empty() => Some(d.vm_errors.join("\n")),
                            Ok(_) => None,
                        },
                        plan: Some(d.plan),
                        outcome: d.outcome,
                        vms: d.vms,
                        vm_errors: d.vm_errors,
                    },
                }))
            }
            Operation::Start { project, services } => {
                let spec = self.lifecycle_spec(project, services).await?;
                self.start(spec.as_ref(), project, services)
                    .await
                    .map(Outcome::Containers)
            }
            Operation::Stop {
                project,
                services,
                timeout_secs,
            } => {
                let spec = self.lifecycle_spec(project, services).await?;
                let timeout = timeout_secs.map(Duration::from_secs);
                self.stop(spec.as_ref(), project, services, timeout)
                    .await
                    .map(Outcome::Containers)
            }
            Operation::Restart {
                project,
                services,
                timeout_secs,
            } => {
                let spec = self.lifecycle_spec(project, services).await?;
                let timeout = timeout_secs.map(Duration::from_secs);
                self.restart(spec.as_ref(), project, services, timeout)
                    .await
                    .map(Outcome::Containers)
            }
            Operation::Rollout {
                project,
                service,
                request,
            } => self
                .request_rollout(project, service, *request)
                .map(Outcome::Rollout),
            Operation::Undo {
                project, service, ..
            } if self.runtime.orchestrator().is_some() => {
                let o = self.runtime.orchestrator().ok_or_else(|| refused("no orchestrator"))?;
                o.undo(project, service).await?;
                let status = o.update_status(project, service).await?;
                Ok(Outcome::Undo(crate::rollout::Undone::Orchestrator {
                    service: service.clone(),
                    state: status.state,
                }))
            }
            Operation::Undo {
                project,
                service,
                to_revision,
            } => self
                .undo_rollout(project, service, *to_revision, settings.daemon_running)
                .await
                .map(Outcome::Undo),
            Operation::PipelineRun { .. } => Err(refused(
                "a pipeline run is started with Control::start_pipeline (it outlives the call)",
            )),
            Operation::PipelineCancel { project, run } => {
                match self.store.pipeline_run(*run)? {
                    Some(r) if &r.project == project => {}
                    _ => {
                        return Err(ControlError::NotFound(format!(
                            "project {project} has no pipeline run {run}"
                        )))
                    }
                }
                self.pipeline_cancel(*run)?;
                Ok(Outcome::PipelineCancelRequested { run: *run })
            }
            Operation::Vm { vm, action } => self.vm_action(vm, action).await,
            Operation::FleetRun { .. } | Operation::Files { .. } => Err(refused(
                "fleet runs and managed files are carried out by `baton fleet` and `baton files`, with the caller's SSH keys",
            )),
            Operation::Silence {
                project,
                matchers,
                duration_secs,
                comment,
            } => self
                .silence(actor, project, matchers, *duration_secs, comment)
                .map(Outcome::Silenced),
            Operation::Unsilence { project, id } => {
                self.unsilence(project, id)?;
                Ok(Outcome::Unsilenced { id: id.clone() })
            }
        }
    }

    /// A VM operation on this host, for a door without the file: the VM as recorded,
    /// its files allowed where the projects this store knows live.
    async fn vm_action(&self, vm: &str, action: &VmAction) -> Result<Outcome> {
        let dirs: Vec<std::path::PathBuf> = self
            .store
            .projects()?
            .into_iter()
            .map(|p| std::path::PathBuf::from(p.working_dir))
            .collect();
        let host = self.vm_host(None, dirs)?;
        let names = [vm.to_string()];
        let none = baton_vm::VmSection::default();
        let timeout = |t: &Option<u64>| Duration::from_secs(t.unwrap_or(60));
        Ok(match action {
            VmAction::Start => Outcome::VmStarted(self.vm_start(&host, &none, &names).await?),
            VmAction::Stop { timeout_secs } => {
                Outcome::VmStopped(self.vm_stop(&host, &names, timeout(timeout_secs)).await?)
            }
            VmAction::Restart { timeout_secs } => Outcome::VmStarted(
                self.vm_restart(&host, &names, timeout(timeout_secs))
                    .await?,
            ),
            VmAction::Snapshot { name, note } => Outcome::Snapshot(
                self.vm_snapshot(
                    &host,
                    &none,
                    vm,
                    "manual",
                    note.as_deref().unwrap_or(""),
                    name.as_deref(),
                )
                .await?,
            ),
            VmAction::Restore { snapshot } => {
                self.vm_restore(&host, vm, snapshot).await?;
                Outcome::Restored {
                    vm: vm.to_string(),
                    snapshot: snapshot.clone(),
                }
            }
        })
    }

    /// Starts the pipeline run `op` asks for (an `Operation::PipelineRun`): `started`
    /// is answered (and the start audited) as soon as the run has an id, or with why
    /// it could not start; the future ends with the run.
    pub async fn start_pipeline(
        &self,
        actor: &Actor,
        op: &Operation,
        settings: &ExecSettings,
        started: tokio::sync::oneshot::Sender<Result<Outcome>>,
    ) {
        let Operation::PipelineRun {
            project,
            pipeline,
            vars,
            rerun_of,
            spec,
        } = op
        else {
            let _ = started.send(Err(refused("not a pipeline run")));
            return;
        };
        let audit = |result: &Result<Outcome>| self.record_result(actor, op, result);
        let spec = match spec {
            Some(p) => Ok(p.as_ref().clone()),
            None => self.last_applied(project).and_then(|p| {
                p.ok_or_else(|| {
                    ControlError::NotFound(format!(
                        "project {project}: nothing was applied yet; send the project with the request"
                    ))
                })
            }),
        };
        let spec = match spec {
            Ok(s) => s,
            Err(e) => {
                let r = Err(e);
                audit(&r);
                let _ = started.send(r);
                return;
            }
        };
        let (id_tx, id_rx) = tokio::sync::oneshot::channel();
        let (_never, cancel) = tokio::sync::watch::channel(false);
        let live_name = format!("pipeline {pipeline}: ");
        let live: baton_pipeline::Live =
            std::sync::Arc::new(move |line: &str| tracing::info!("{live_name}{line}"));
        let opts = crate::PipelineRunOptions {
            vars: vars.clone(),
            jobs: None,
            rerun_of: *rerun_of,
        };
        let run = self.pipeline_run(
            &spec,
            pipeline,
            opts,
            settings.containers.clone(),
            live,
            cancel,
            Some(id_tx),
        );
        tokio::pin!(run);
        tokio::select! {
            id = id_rx => {
                let r = id
                    .map(|run| Outcome::PipelineStarted { run })
                    .map_err(|_| refused("the run ended before it had an id"));
                audit(&r);
                let _ = started.send(r);
                if let Err(e) = run.await {
                    tracing::warn!("pipeline {pipeline}: {e}");
                }
            }
            done = &mut run => {
                let r = done.map(|o| Outcome::PipelineStarted { run: o.run_id });
                audit(&r);
                let _ = started.send(r);
            }
        }
    }

    /// `up` through [`Control::begin_up`] and [`Control::finish_up`].
    async fn up(
        &self,
        project: &Project,
        options: &UpOptions,
        settings: &ExecSettings,
        watch: &dyn Watch,
    ) -> Result<UpOutcome> {
        let up = self.begin_up(project, &options.plan_options()).await?;
        let interrupted = up.interrupted;
        let revision = up.prepared.revision;
        watch.planned(&up.prepared.plan, &up.prepared.vms, interrupted);
        let apply = crate::ApplySettings {
            parallelism: settings.parallelism,
            wait_timeout: Duration::from_secs(options.wait_timeout_secs),
            daemon_running: settings.daemon_running,
        };
        let done = self.finish_up(project, up, &apply, watch).await?;
        let ok = done.applied.is_ok() && done.vm_errors.is_empty();
        let error = match done.applied {
            Err(e) => Some(e.to_string()),
            Ok(_) if !done.vm_errors.is_empty() => Some(done.vm_errors.join("\n")),
            Ok(_) => None,
        };
        Ok(UpOutcome {
            project: project.name.clone(),
            revision,
            interrupted,
            ok,
            error,
            vms: done.vms,
            vm_errors: done.vm_errors,
            plan: done.plan,
            outcome: done.outcome,
            rollouts: done
                .rollouts
                .into_iter()
                .map(|(service, rollout)| RolloutRef { service, rollout })
                .collect(),
            warnings: done.warnings,
        })
    }

    /// The project as last applied (`None` before the first `up`).
    pub fn last_applied(&self, project: &str) -> Result<Option<Project>> {
        let Some(rev) = self.store.latest_revision(project)? else {
            return Ok(None);
        };
        let Some(json) = self.store.revision_spec(project, rev.number)? else {
            return Ok(None);
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| refused(format!("project {project}: revision {}: {e}", rev.number)))
    }

    /// The last applied project, once the named services are known to it or to the
    /// engine (a project never applied is known by its containers).
    async fn lifecycle_spec(&self, project: &str, services: &[String]) -> Result<Option<Project>> {
        let spec = self.last_applied(project)?;
        if let Some(p) = &spec {
            self.known_services(p, services)?;
        } else if !services.is_empty() {
            let observed = self.runtime.observe(project).await?;
            let known: Vec<&str> = observed
                .containers
                .iter()
                .map(|c| c.service.as_str())
                .collect();
            check_names(&known, services)?;
        }
        Ok(spec)
    }

    fn known_services(&self, project: &Project, services: &[String]) -> Result<()> {
        let known: Vec<&str> = project.services.keys().map(String::as_str).collect();
        check_names(&known, services)
    }
}

/// `no such service: X (did you mean "Y"?)` for the first name not in `known`.
fn check_names(known: &[&str], named: &[String]) -> Result<()> {
    for name in named {
        if !known.contains(&name.as_str()) {
            return Err(ControlError::NotFound(
                match baton_spec::suggest(name, known.iter().copied()) {
                    Some(hint) => format!("no such service: {name} ({hint})"),
                    None => format!("no such service: {name}"),
                },
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_services_are_named_with_a_suggestion() {
        let e = check_names(&["web", "db"], &["wbe".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no such service: wbe (did you mean \"web\"?)"
        );
        assert!(check_names(&["web"], &["web".into()]).is_ok());
        assert!(check_names(&[], &[]).is_ok());
    }

    #[test]
    fn operations_say_what_they_are_for_the_audit_log() {
        let op = Operation::Rollout {
            project: "shop".into(),
            service: "web".into(),
            request: RolloutRequest::Promote,
        };
        assert_eq!(
            (op.action(), op.project(), op.target()),
            (
                "rollout.promote".to_string(),
                "shop",
                "shop/web".to_string()
            )
        );
        assert_eq!(op.request_json(), serde_json::json!({"request": "promote"}));
        let scale = Operation::Scale {
            project: "shop".into(),
            replicas: [("web".to_string(), 3)].into(),
            no_deps: false,
            spec: None,
        };
        assert_eq!(
            scale.request_json(),
            serde_json::json!({"replicas": {"web": 3}, "no_deps": false, "spec": "last applied"})
        );
    }

    #[test]
    fn up_options_refuse_unknown_fields_and_default_the_rest() {
        let o: UpOptions = serde_json::from_str(r#"{"services": ["web"]}"#).unwrap();
        assert_eq!(o.wait_timeout_secs, 300);
        assert!(serde_json::from_str::<UpOptions>(r#"{"servicez": []}"#).is_err());
    }
}
