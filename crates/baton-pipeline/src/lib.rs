//! baton's pipelines: the `pipelines:` section typed and validated (`spec`, `cond`), the
//! pure DAG planner (`plan`), the job executor (`run`), the content-addressed artifact
//! store (`artifacts`), jobs on fleet hosts over SSH (`remote`), reports (`report`) and
//! the daemon's triggers (`triggers`).
//!
//! Architecture invariant: `spec`, `cond`, `plan` and `report` do no I/O and start no
//! process; only `run`, `remote`, `artifacts` and `triggers` touch processes, files and sockets.

pub mod artifacts;
pub mod cond;
pub mod plan;
pub mod remote;
pub mod report;
pub mod run;
pub mod spec;
pub mod triggers;

pub use plan::{JobStatus, Plan, PlannedJob};
pub use run::{execute, Live, RunOutcome, RunRequest};
pub use spec::{pipeline, pipelines, Job, Pipeline, Trigger};

/// What can go wrong around a pipeline (job failures are outcomes, not errors).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Spec(#[from] baton_spec::SpecError),
    #[error(transparent)]
    State(#[from] baton_state::StateError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    /// A setting that cannot be served safely as it is (an empty webhook secret).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(String),
}

impl PipelineError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> PipelineError {
        PipelineError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
