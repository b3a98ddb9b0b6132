//! Pipelines as the front doors start and stop them: a run (or a rerun of what did not
//! pass in an earlier run) through `baton_pipeline::execute`, and a cancel request that
//! reaches the run in whichever process carries it out.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_pipeline::run::{Containers, RunOutcome};
use baton_pipeline::{Live, RunRequest};
use baton_spec::Project;
use tokio::sync::{oneshot, watch};

use crate::converge::refused;
use crate::{Control, Result};

/// How to run a pipeline.
#[derive(Debug, Clone, Default)]
pub struct PipelineRunOptions {
    /// Variables for the run, exported to every job and seen by `if:`.
    pub vars: BTreeMap<String, String>,
    /// Jobs in flight at once (default: the number of CPUs).
    pub jobs: Option<usize>,
    /// Reuse the jobs that passed in this run; run the others again.
    pub rerun_of: Option<i64>,
}

/// Pipelines need no container backend unless a job has `image:` (`containers` is
/// where those run): they work on a `Control<()>` too.
impl<R> Control<R> {
    /// Runs `name` of the project to its end (or until `cancel`, or a cancel request
    /// in the store); `started` is told the run id as soon as there is one, `live` every
    /// line of output.
    #[allow(clippy::too_many_arguments)]
    pub async fn pipeline_run(
        &self,
        project: &Project,
        name: &str,
        opts: PipelineRunOptions,
        containers: Option<Containers>,
        live: Live,
        cancel: watch::Receiver<bool>,
        started: Option<oneshot::Sender<i64>>,
    ) -> Result<RunOutcome> {
        let pipeline = baton_pipeline::pipeline(project, name)?;
        if let Some(prev) = opts.rerun_of {
            let p = self
                .store
                .pipeline_run(prev)?
                .ok_or_else(|| refused(format!("no pipeline run {prev}")))?;
            if p.pipeline != name {
                return Err(refused(format!(
                    "run {prev} is of pipeline {}, not {name}",
                    p.pipeline
                )));
            }
        }
        let jobs = opts.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
        let req = RunRequest {
            project: project.name.clone(),
            project_dir: project.working_dir.clone(),
            state_dir: self.state_dir.clone(),
            trigger: if opts.rerun_of.is_some() {
                "rerun"
            } else {
                "manual"
            }
            .into(),
            vars: opts.vars,
            jobs,
            rerun_of: opts.rerun_of,
            env: self.env.clone(),
            grace: Duration::from_secs(3),
            ssh: baton_pipeline::remote::ssh_options(&self.env),
            containers,
        };
        Ok(
            baton_pipeline::execute(self.store.clone(), &pipeline, req, live, cancel, started)
                .await?,
        )
    }

    /// The pipeline and variables of an earlier run, for a rerun of what did not pass.
    pub fn pipeline_rerun_of(&self, run: i64) -> Result<(String, BTreeMap<String, String>)> {
        let prev = self
            .store
            .pipeline_run(run)?
            .ok_or_else(|| refused(format!("no pipeline run {run}")))?;
        Ok((prev.pipeline, prev.vars))
    }

    /// Asks whichever process runs `run` to cancel it (its jobs' process groups and
    /// containers are killed, rollbacks run); refused when it is not running.
    pub fn pipeline_cancel(&self, run: i64) -> Result<()> {
        if self.store.request_pipeline_cancel(run, (self.clock)())? {
            Ok(())
        } else {
            Err(refused(format!("pipeline run {run} is not running")))
        }
    }
}
