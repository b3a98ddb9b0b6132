//! baton's control plane: every operation the CLI and the HTTP API offer — converge
//! (`up`), `down`, `scale`, start/stop/restart, rollout requests and undo, pipeline
//! runs, reruns and cancels, VM lifecycle and snapshots, fleet runs and managed files — as
//! library calls over a store, a container backend and a clock, each change audited.
//!
//! Architecture invariant: the two front doors (the `baton` command and the HTTP API)
//! only turn their input into these calls and show the results; the decisions live here
//! or, when pure, in `baton-engine`. Nothing here prints: results, notes and warnings
//! are returned, progress goes through the engine's `Reporter`. It knows no HTTP and no
//! command line, and names no container engine (it is generic over `Runtime`).

mod alerts;
mod converge;
mod edge;
mod files;
mod fleet;
mod journal;
mod lifecycle;
mod operation;
mod pipeline;
mod rollout;
pub mod views;
mod vm;
mod vm_up;
pub mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use baton_state::Store;

pub use alerts::{Silenced, MAX_SILENCE_SECS};
pub use converge::{ApplySettings, Converged, Converging, Prepared};
pub use files::materialize;
pub use fleet::{FilesTarget, FleetOverrides, DEFAULT_FORKS};
pub use journal::StoreJournal;
pub use lifecycle::{containers_of, ContainerResult, Down};
pub use operation::{
    Actor, DownOutcome, ExecSettings, Operation, Outcome, RolloutRef, UpOptions, UpOutcome,
    VmAction, Watch,
};
pub use pipeline::PipelineRunOptions;
pub use rollout::{RequestOutcome, Undone};
pub use views::{RolloutProgress, RolloutView, ServiceView, ServicesView};
pub use vm::{pick, policy_for, vm_section, SnapshotTaken, VmRow, VmStarted, VmStopped};
pub use vm_up::VM_STOP_TIMEOUT;
pub use worker::ControlHandle;

/// What the operations work on: the state store, the container backend, where state
/// lives, the environment secrets are read from, and the clock every record is stamped
/// with (Unix milliseconds; tests pass their own).
pub struct Control<R> {
    pub store: Arc<Store>,
    pub runtime: R,
    pub state_dir: PathBuf,
    /// Where `environment:` sources of configs and secrets are looked up.
    pub env: BTreeMap<String, String>,
    pub clock: fn() -> i64,
}

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Spec(#[from] baton_spec::SpecError),
    #[error(transparent)]
    State(#[from] baton_state::StateError),
    #[error(transparent)]
    Runtime(#[from] baton_engine::runtime::RuntimeError),
    #[error(transparent)]
    Plan(#[from] baton_engine::plan::PlanError),
    #[error(transparent)]
    Apply(#[from] baton_engine::apply::ApplyError),
    #[error(transparent)]
    Pipeline(#[from] baton_pipeline::PipelineError),
    #[error(transparent)]
    Vm(#[from] baton_vm::VmError),
    /// What was asked cannot be done as things are (no rollout to promote, a daemon
    /// that is needed and not running, an external network that does not exist…).
    #[error("{0}")]
    Refused(String),
    /// What was asked is not well-formed (a silence's matcher, its duration).
    #[error("{0}")]
    Invalid(String),
    /// What was named does not exist (a service, a project never applied).
    #[error("{0}")]
    NotFound(String),
    /// The control plane cannot take the call now (stopped, or too many waiting).
    #[error("{0}")]
    Unavailable(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, ControlError>;

impl<R> Control<R> {
    /// Takes the project's lock, waiting without blocking the thread: the daemon and
    /// the HTTP API run other work (and other calls) beside the one that waits.
    pub async fn lock(&self, project: &str) -> Result<baton_state::ProjectLock> {
        loop {
            if let Some(lock) = self.store.try_lock_project(project)? {
                return Ok(lock);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Unix milliseconds now: the clock the front doors hand to [`Control`].
pub fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
