//! The API's own request bodies and answers (those the control plane does not already
//! type): small serde structs, each a view of store rows rather than the rows.

use std::collections::BTreeMap;

use baton_control::UpOptions;
use baton_spec::Project;
use baton_state::{AuditRecord, FleetRun, PipelineJob, PipelineRun, VmRecord, VmSnapshot};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::tokens::Role;

/// `POST /projects/{project}/up`: the project as the caller's `baton` resolved it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpBody {
    /// The resolved project (`baton config --json` prints one); its `name` must be the
    /// project in the path.
    #[schemars(with = "serde_json::Value")]
    pub project: Option<Project>,
    #[serde(default)]
    pub options: UpOptions,
}

/// `POST /projects/{project}/down`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DownBody {
    /// Also remove the project's named volumes.
    pub volumes: bool,
}

/// `POST /projects/{project}/scale`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleBody {
    /// Replicas by service.
    pub replicas: BTreeMap<String, u32>,
    /// Don't bring up the services' dependencies.
    pub no_deps: bool,
    /// The project to converge (as `up`'s); the last applied one when absent.
    #[schemars(with = "Option<serde_json::Value>")]
    pub project: Option<Project>,
}

/// `POST /projects/{project}/start`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServicesBody {
    /// The services (all when empty).
    pub services: Vec<String>,
}

/// `POST /projects/{project}/stop` and `/restart`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StopBody {
    /// The services (all when empty).
    pub services: Vec<String>,
    /// Seconds to wait before killing (default: each service's stop_grace_period).
    pub timeout_secs: Option<u64>,
}

/// A body with nothing in it (`{}` or none).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

/// `POST /projects/{project}/services/{service}/rollout/undo`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UndoBody {
    /// The revision whose configuration to roll back to (default: the last one that
    /// differs from what runs).
    pub to_revision: Option<i64>,
}

/// `POST /tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub name: String,
    pub role: Role,
}

impl Default for TokenBody {
    fn default() -> Self {
        TokenBody {
            name: String::new(),
            role: Role::Viewer,
        }
    }
}

/// A project the daemon's store knows.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProjectView {
    pub name: String,
    pub working_dir: String,
    /// Whether the daemon keeps it running.
    pub active: bool,
    /// The last applied revision.
    pub revision: Option<i64>,
    /// Services stopped by hand.
    pub stopped_services: Vec<String>,
    pub updated_at: i64,
}

/// One audit entry.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditView {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// A token's name, `cli:<user>` or `local:<user>`.
    pub actor: String,
    pub action: String,
    pub project: String,
    pub target: String,
    /// What was asked.
    pub request: serde_json::Value,
    /// `ok` or `error`.
    pub outcome: String,
    pub message: String,
}

impl From<AuditRecord> for AuditView {
    fn from(a: AuditRecord) -> AuditView {
        AuditView {
            id: a.id,
            at: a.at,
            request: serde_json::from_str(&a.request_json).unwrap_or(serde_json::Value::Null),
            actor: a.actor,
            action: a.action,
            project: a.project,
            target: a.target,
            outcome: a.outcome,
            message: a.message,
        }
    }
}

/// One pipeline run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PipelineRunView {
    pub id: i64,
    pub pipeline: String,
    /// `running`, `success`, `failed`, `cancelled`, `interrupted`.
    pub status: String,
    /// `manual`, `schedule`, `webhook`, `git`, `rerun`.
    pub trigger: String,
    pub vars: BTreeMap<String, String>,
    pub rerun_of: Option<i64>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

impl From<PipelineRun> for PipelineRunView {
    fn from(r: PipelineRun) -> Self {
        PipelineRunView {
            id: r.id,
            pipeline: r.pipeline,
            status: r.status,
            trigger: r.trigger,
            vars: r.vars,
            rerun_of: r.rerun_of,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

/// One job of a run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PipelineJobView {
    pub name: String,
    /// `job` or `rollback`.
    pub kind: String,
    pub seq: i64,
    pub status: String,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl From<PipelineJob> for PipelineJobView {
    fn from(j: PipelineJob) -> Self {
        PipelineJobView {
            name: j.name,
            kind: j.kind,
            seq: j.seq,
            status: j.status,
            attempts: j.attempts,
            exit_code: j.exit_code,
            reason: j.reason,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

/// An artifact a job left.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactView {
    pub job: String,
    /// Relative to the job's workspace; the download path.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// A run with its jobs and artifacts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunDetail {
    pub run: PipelineRunView,
    pub jobs: Vec<PipelineJobView>,
    pub artifacts: Vec<ArtifactView>,
}

/// A virtual machine of this host.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VmView {
    pub name: String,
    /// Whether a QEMU process was recorded for it (`pid`).
    pub running: bool,
    pub pid: Option<i64>,
    /// `kvm` or `tcg` while it runs.
    pub accel: Option<String>,
    pub started_at: Option<i64>,
    /// Memory and CPUs as its spec says.
    pub memory: Option<serde_json::Value>,
    pub cpus: Option<serde_json::Value>,
    pub snapshots: usize,
    pub updated_at: i64,
}

impl VmView {
    pub fn new(v: VmRecord, snapshots: usize) -> VmView {
        let spec: serde_json::Value = serde_json::from_str(&v.spec_json).unwrap_or_default();
        VmView {
            running: v.pid.is_some(),
            memory: spec.get("memory").cloned(),
            cpus: spec.get("cpus").cloned(),
            name: v.name,
            pid: v.pid,
            accel: v.accel,
            started_at: v.started_at,
            snapshots,
            updated_at: v.updated_at,
        }
    }
}

/// A VM snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotView {
    pub vm: String,
    pub name: String,
    /// `manual`, `automated` or `pre-deploy`.
    pub kind: String,
    pub note: String,
    pub created_at: i64,
}

impl From<VmSnapshot> for SnapshotView {
    fn from(s: VmSnapshot) -> Self {
        SnapshotView {
            vm: s.vm,
            name: s.name,
            kind: s.kind,
            note: s.note,
            created_at: s.created_at,
        }
    }
}

/// One host's part in a fleet run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct FleetHostResult {
    pub host: String,
    pub address: String,
    pub wave: usize,
    /// `ok`, `changed`, `failed`, `unreachable`, `skipped`.
    pub status: String,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// How many hosts ended how.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct FleetSummary {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub unreachable: usize,
    pub skipped: usize,
}

/// A recorded fleet run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FleetRunView {
    pub id: i64,
    /// `adhoc`, `runbook`, `ping`, `facts`, `files`.
    pub kind: String,
    pub task: String,
    pub target: String,
    pub strategy: String,
    pub outcome: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub summary: FleetSummary,
    pub hosts: Vec<FleetHostResult>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Report {
    summary: FleetSummary,
    hosts: Vec<FleetHostResult>,
}

impl From<FleetRun> for FleetRunView {
    fn from(r: FleetRun) -> Self {
        let report: Report = serde_json::from_str(&r.report_json).unwrap_or_default();
        FleetRunView {
            id: r.id,
            kind: r.kind,
            task: r.task,
            target: r.target,
            strategy: r.strategy,
            outcome: r.outcome,
            started_at: r.started_at,
            finished_at: r.finished_at,
            summary: report.summary,
            hosts: report.hosts,
        }
    }
}

/// A host as the newest recorded run that reached it saw it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FleetHostView {
    pub host: String,
    pub address: String,
    /// False when the newest run that tried could not connect.
    pub reachable: bool,
    /// The status it had in that run.
    pub status: String,
    /// The run.
    pub run: i64,
    pub seen_at: i64,
}

/// One version of a managed file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FileVersionView {
    pub version: i64,
    pub hash: String,
    pub size: usize,
    pub mode: u32,
    pub created_at: i64,
}

/// Which version a host last received.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FileAppliedView {
    pub host: String,
    pub path: String,
    pub version: i64,
    pub applied_at: i64,
}

/// A managed file (`files:`): its versions and where each host stands.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ManagedFileView {
    pub name: String,
    pub versions: Vec<FileVersionView>,
    pub applied: Vec<FileAppliedView>,
}

/// One line of a container's output, as the log stream sends it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogLineView {
    pub container: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub line: String,
}

/// `POST /projects/{project}/pipelines/{pipeline}/run`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineRunBody {
    /// Variables for the run (`-v NAME=VALUE`).
    pub vars: BTreeMap<String, String>,
    /// The project whose `pipelines:` to run; the last applied one when absent.
    #[schemars(with = "Option<serde_json::Value>")]
    pub project: Option<Project>,
}

/// `POST /projects/{project}/pipelines/runs/{run}/rerun`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RerunBody {
    /// The project whose `pipelines:` to run; the last applied one when absent.
    #[schemars(with = "Option<serde_json::Value>")]
    pub project: Option<Project>,
}

/// A pipeline run started, or asked to stop.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunRef {
    pub run: i64,
}

/// `POST /vms/{vm}/stop` and `/restart`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct VmStopBody {
    /// Seconds of ACPI power-down before the VM is forced off (default 60).
    pub timeout_secs: Option<u64>,
}

/// `POST /vms/{vm}/snapshots`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotBody {
    /// The snapshot's name (default: from the policy's template).
    pub name: Option<String>,
    pub note: Option<String>,
}

/// A VM brought back to a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Restored {
    pub vm: String,
    pub snapshot: String,
}

/// `POST /projects/{project}/silences`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SilenceBody {
    /// Every one must match an alert's labels: `service="web"`, `severity=~"page|critical"`.
    pub matchers: Vec<String>,
    /// How long it lasts: `2h`, `30m`, `1d` (default 2h; at most 366 days).
    pub duration: String,
    /// Why (required).
    pub comment: String,
}

impl Default for SilenceBody {
    fn default() -> Self {
        SilenceBody {
            matchers: Vec::new(),
            duration: "2h".into(),
            comment: String::new(),
        }
    }
}

/// A silence ended.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Unsilenced {
    pub id: String,
}
