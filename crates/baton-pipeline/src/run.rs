//! The executor: carries a plan out with tokio, as parallel as the DAG and `--jobs`
//! allow. Each job gets its own workspace and process group (`bash -eo pipefail -c`),
//! timeouts and cancellation kill the whole group, failures retry with backoff, and
//! rollbacks run in reverse order when the run fails. Records go to the store in batches.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_engine::runtime::{OneShot, OneShotSpec};
use baton_state::{ArtifactRecord, PipelineJob, PipelineRun, RunOwner, Store};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::artifacts;
use crate::plan::{decide, plan, Decision, JobStatus, Plan};
use crate::remote::{AttemptSpec, HostJob, HostOutcome};
use crate::spec::{Job, Pipeline, Retention, SecretSource};
use crate::PipelineError;

/// Where live output goes: each call is one finished line (`HH:MM:SS.mmm job | text`).
pub type Live = Arc<dyn Fn(&str) + Send + Sync>;

/// Everything a run needs besides the pipeline.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub project: String,
    pub project_dir: PathBuf,
    pub state_dir: PathBuf,
    /// `manual`, `schedule`, `webhook`, `git`.
    pub trigger: String,
    /// `-v KEY=VAL` and trigger variables; exported to every job, used by `if:`.
    pub vars: BTreeMap<String, String>,
    /// Jobs in flight at once.
    pub jobs: usize,
    /// Reuse the passed jobs of this run; run the others again.
    pub rerun_of: Option<i64>,
    /// The caller's environment, where `secrets` are looked up (jobs inherit the
    /// process environment as it is).
    pub env: BTreeMap<String, String>,
    /// How long a killed job's group gets between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// How `host:` jobs reach their hosts ([`crate::remote::ssh_options`]).
    pub ssh: baton_fleet::ssh::SshOptions,
    /// Where `image:` jobs run; `None` when no container engine answers (such jobs
    /// then fail with that reason, the others run).
    pub containers: Option<Containers>,
}

/// The container backend `image:` jobs run on, as its one-shot capability.
#[derive(Clone)]
pub struct Containers(pub Arc<dyn OneShot>);

impl std::fmt::Debug for Containers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Containers")
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub run_id: i64,
    /// `success`, `failed` or `cancelled`.
    pub status: String,
}

/// The directory of one run (logs, workspaces).
pub fn run_dir(state_dir: &Path, run_id: i64) -> PathBuf {
    state_dir
        .join("pipelines")
        .join("runs")
        .join(run_id.to_string())
}

/// How often a run looks for a cancel request in the store (`baton pipeline cancel`,
/// the API), from whichever process asked.
const CANCEL_POLL: Duration = Duration::from_millis(300);

/// Runs `pipeline` to the end (or until `cancel` turns true, or a cancel request for the
/// run reaches the store) and records it. `on_start` is told the run's id as soon as it
/// has one.
pub async fn execute(
    store: Arc<Store>,
    pipeline: &Pipeline,
    req: RunRequest,
    live: Live,
    cancel: watch::Receiver<bool>,
    on_start: Option<tokio::sync::oneshot::Sender<i64>>,
) -> Result<RunOutcome, PipelineError> {
    mark_abandoned_runs(&store)?;
    let _slot = concurrency_slot(&store, pipeline, &req, &live, &cancel).await?;
    let mut vars = req.vars.clone();
    vars.insert("BATON_TRIGGER".into(), req.trigger.clone());
    vars.insert("BATON_PIPELINE".into(), pipeline.name.clone());
    let plan = plan(pipeline, &vars);
    let started = now_ms();
    let run_id = store.start_pipeline_run(&PipelineRun {
        id: 0,
        project: req.project.clone(),
        pipeline: pipeline.name.clone(),
        status: "running".into(),
        trigger: req.trigger.clone(),
        vars: req.vars.clone(),
        rerun_of: req.rerun_of,
        started_at: started,
        finished_at: None,
    })?;
    // The event stream shows runs and their jobs as they go (the dashboard's DAG).
    let _ = store.event(
        &req.project,
        "pipeline",
        &pipeline.name,
        &format!("run {run_id} started ({})", req.trigger),
        started,
    );
    if let Some(start) = process_start(std::process::id()) {
        let owner = RunOwner {
            pid: std::process::id(),
            start_ticks: start,
        };
        store.set_pipeline_run_owner(run_id, owner)?;
    }
    if let Some(tx) = on_start {
        let _ = tx.send(run_id);
    }
    // One cancel for the run: the caller's, or a request found in the store.
    let (stop_tx, stop) = watch::channel(*cancel.borrow());
    let _watcher = Watcher(tokio::spawn({
        let store = store.clone();
        let mut outer = cancel.clone();
        async move {
            loop {
                tokio::select! {
                    _ = wait_cancel(&mut outer) => break,
                    _ = tokio::time::sleep(CANCEL_POLL) => {
                        if store.pipeline_cancel_requested(run_id).unwrap_or(false) {
                            break;
                        }
                    }
                }
            }
            let _ = stop_tx.send(true);
        }
    }));
    let cancel = stop;
    vars.insert("BATON_RUN".into(), run_id.to_string());
    let dir = run_dir(&req.state_dir, run_id);
    let logs = dir.join("logs");
    baton_state::private::create_dir(&logs).map_err(|e| PipelineError::io(&logs, e))?;
    write_plan(&dir, &plan)?;
    live(&format!(
        "run {run_id} of pipeline {} ({} jobs)",
        pipeline.name,
        plan.jobs.len()
    ));

    let secrets = resolve_secrets(pipeline, &req.env, &req.project_dir);
    let masks = Arc::new(masks_of(&secrets));

    let mut ex = Executor {
        store: &store,
        pipeline,
        plan: &plan,
        req: &req,
        run_id,
        vars,
        masks,
        inventory: Arc::new(pipeline.inventory.clone()),
        secrets,
        live,
        cancel: cancel.clone(),
        dir,
        records: Vec::new(),
        status: vec![None; plan.jobs.len()],
        produced: BTreeMap::new(),
        dirty: BTreeSet::new(),
        evented: BTreeMap::new(),
        last_flush: Instant::now(),
        seq: 0,
        finished_order: Vec::new(),
    };
    ex.records = plan
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| PipelineJob {
            run_id,
            name: j.id.clone(),
            kind: "job".into(),
            seq: 0,
            status: "pending".into(),
            attempts: 0,
            exit_code: None,
            reason: None,
            log_file: format!("{i:04}-{}.log", file_safe(&j.id)),
            started_at: None,
            finished_at: None,
        })
        .collect();
    ex.reuse_previous()?;
    let cancelled = ex.run_dag().await?;
    let mut status = if cancelled {
        "cancelled"
    } else if ex.status.iter().flatten().any(|s| s.fails_run()) {
        "failed"
    } else {
        "success"
    };
    if status == "failed" {
        ex.rollback().await?;
        if *ex.cancel.borrow() {
            status = "cancelled";
        }
    }
    ex.flush(true)?;
    ex.prune();
    let finished = now_ms();
    store.finish_pipeline_run(run_id, status, finished)?;
    let _ = store.event(
        &req.project,
        "pipeline",
        &pipeline.name,
        &format!("run {run_id}: {status}"),
        finished,
    );
    (ex.live)(&format!("run {run_id}: {status}"));
    Ok(RunOutcome {
        run_id,
        status: status.to_string(),
    })
}

type SecretValues = Result<Vec<(String, String)>, String>;

struct Executor<'a> {
    store: &'a Store,
    pipeline: &'a Pipeline,
    plan: &'a Plan,
    req: &'a RunRequest,
    run_id: i64,
    vars: BTreeMap<String, String>,
    masks: Arc<Vec<String>>,
    /// The fleet's hosts, shared by the `host:` jobs (jump hosts are looked up in it).
    inventory: Arc<baton_fleet::Inventory>,
    /// Per job as written: its secrets' values, or why one could not be read.
    secrets: BTreeMap<String, SecretValues>,
    live: Live,
    cancel: watch::Receiver<bool>,
    dir: PathBuf,
    /// One per planned job, then one per rollback.
    records: Vec<PipelineJob>,
    status: Vec<Option<JobStatus>>,
    /// Artifacts each planned job left: (relative path, sha256).
    produced: BTreeMap<usize, Vec<(String, String)>>,
    dirty: BTreeSet<usize>,
    /// Each job's status as last told to the event stream.
    evented: BTreeMap<usize, String>,
    last_flush: Instant,
    seq: i64,
    /// Planned jobs that passed, in the order they finished.
    finished_order: Vec<usize>,
}

/// The plan's file in a run's directory: the DAG (jobs and what each needs) for those
/// who show the run later, such as the dashboard.
pub const PLAN_FILE: &str = "plan.json";

fn write_plan(dir: &Path, plan: &Plan) -> Result<(), PipelineError> {
    let path = dir.join(PLAN_FILE);
    let json = serde_json::to_vec(plan)
        .map_err(|e| PipelineError::Internal(format!("cannot write the plan: {e}")))?;
    let mut f = baton_state::private::create(&path).map_err(|e| PipelineError::io(&path, e))?;
    f.write_all(&json).map_err(|e| PipelineError::io(&path, e))
}

/// What a job task hands back.
struct JobResult {
    index: usize,
    status: JobStatus,
    attempts: u32,
    exit_code: Option<i32>,
    reason: Option<String>,
    started_at: i64,
    finished_at: i64,
    artifacts: Vec<(String, String, u64)>,
}

impl Executor<'_> {
    fn next_seq(&mut self) -> i64 {
        self.seq += 1;
        self.seq
    }

    /// Marks the jobs that passed in the run being rerun as reused, with their artifacts.
    fn reuse_previous(&mut self) -> Result<(), PipelineError> {
        let Some(prev) = self.req.rerun_of else {
            return Ok(());
        };
        let passed: BTreeSet<String> = self
            .store
            .pipeline_jobs(prev)?
            .into_iter()
            .filter(|j| j.kind == "job" && (j.status == "success" || j.status == "reused"))
            .map(|j| j.name)
            .collect();
        let arts = self.store.artifacts(&self.req.project, Some(prev))?;
        let mut copied = Vec::new();
        for i in 0..self.plan.jobs.len() {
            let id = self.plan.jobs[i].id.clone();
            if !passed.contains(&id) {
                continue;
            }
            let mine: Vec<&ArtifactRecord> = arts.iter().filter(|a| a.job == id).collect();
            self.produced.insert(
                i,
                mine.iter()
                    .map(|a| (a.path.clone(), a.sha256.clone()))
                    .collect(),
            );
            copied.extend(mine.into_iter().map(|a| ArtifactRecord {
                run_id: self.run_id,
                ..a.clone()
            }));
            self.finish(
                i,
                JobStatus::Reused,
                Some(format!("passed in run {prev}")),
                None,
                None,
            );
        }
        self.store.add_artifacts(&copied)?;
        Ok(())
    }

    fn finish(
        &mut self,
        i: usize,
        status: JobStatus,
        reason: Option<String>,
        started: Option<i64>,
        finished: Option<i64>,
    ) {
        self.status[i] = Some(status);
        let seq = if self.records[i].seq == 0 {
            self.next_seq()
        } else {
            self.records[i].seq
        };
        let r = &mut self.records[i];
        r.seq = seq;
        r.status = status.as_str().into();
        r.reason = reason.map(|s| mask(&s, &self.masks));
        if started.is_some() {
            r.started_at = started;
        }
        r.finished_at = finished;
        self.dirty.insert(i);
        if !matches!(status, JobStatus::Reused) {
            let what = match &r.reason {
                Some(why) => format!("{} ({why})", status.as_str()),
                None => status.as_str().to_string(),
            };
            let id = r.name.clone();
            self.say(&id, &format!("== {what}"));
        }
    }

    fn say(&self, job: &str, text: &str) {
        let t = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        (self.live)(&format!("{} {job} | {text}", t.get(11..23).unwrap_or(&t)));
    }

    fn flush(&mut self, force: bool) -> Result<(), PipelineError> {
        if self.dirty.is_empty()
            || (!force && self.last_flush.elapsed() < Duration::from_millis(250))
        {
            return Ok(());
        }
        let batch: Vec<PipelineJob> = self
            .dirty
            .iter()
            .map(|&i| self.records[i].clone())
            .collect();
        self.store.save_pipeline_jobs(&batch)?;
        let now = now_ms();
        for &i in &self.dirty {
            let r = &self.records[i];
            if self.evented.get(&i) != Some(&r.status) {
                self.evented.insert(i, r.status.clone());
                let _ = self.store.event(
                    &self.req.project,
                    "pipeline",
                    &self.pipeline.name,
                    &format!("run {} {} {}: {}", self.run_id, r.kind, r.name, r.status),
                    now,
                );
            }
        }
        self.dirty.clear();
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Runs the DAG; returns whether it was cancelled.
    async fn run_dag(&mut self) -> Result<bool, PipelineError> {
        let n = self.plan.jobs.len();
        let limit = self.req.jobs.max(1);
        let mut running: JoinSet<JobResult> = JoinSet::new();
        let mut in_flight = 0usize;
        let mut cancelled = *self.cancel.borrow();
        let mut cancel = self.cancel.clone();
        loop {
            if !cancelled {
                // Decide every job whose needs are all done, lowest plan index first.
                let mut progress = true;
                while progress {
                    progress = false;
                    for i in 0..n {
                        if self.status[i].is_some() || self.records[i].status == "running" {
                            continue;
                        }
                        let job = &self.plan.jobs[i];
                        let upstream: Option<Vec<JobStatus>> =
                            job.needs.iter().map(|&k| self.status[k]).collect();
                        let Some(upstream) = upstream else { continue };
                        match decide(job, &upstream) {
                            Decision::Skip { status, reason } => {
                                self.finish(i, status, Some(reason), None, None);
                                progress = true;
                            }
                            Decision::Run if in_flight < limit => {
                                self.start(i, &mut running);
                                in_flight += 1;
                            }
                            Decision::Run => {}
                        }
                    }
                }
            }
            self.flush(false)?;
            if running.is_empty() {
                break;
            }
            tokio::select! {
                done = running.join_next() => {
                    let Some(done) = done else { break };
                    in_flight -= 1;
                    match done {
                        Ok(r) => self.record_result(r)?,
                        Err(e) => return Err(PipelineError::Internal(format!("a job task failed: {e}"))),
                    }
                }
                // Records of jobs just started reach the store while they run.
                _ = tokio::time::sleep(Duration::from_millis(300)), if !self.dirty.is_empty() => {}
                changed = cancel.changed(), if !cancelled => {
                    if changed.is_ok() && *cancel.borrow() {
                        cancelled = true;
                        (self.live)("cancelling: stopping every job's process group");
                    } else if changed.is_err() {
                        // The sender is gone: nobody can cancel any more.
                        cancelled = false;
                        cancel = watch::channel(false).1;
                    }
                }
            }
        }
        if cancelled || *self.cancel.borrow() {
            for i in 0..n {
                if self.status[i].is_none() {
                    self.finish(
                        i,
                        JobStatus::Cancelled,
                        Some("the run was cancelled".into()),
                        None,
                        None,
                    );
                }
            }
            return Ok(true);
        }
        Ok(false)
    }

    fn record_result(&mut self, r: JobResult) -> Result<(), PipelineError> {
        let i = r.index;
        self.records[i].attempts = r.attempts;
        self.records[i].exit_code = r.exit_code;
        if !r.artifacts.is_empty() {
            let job = &self.pipeline.jobs[self.plan.jobs[i].spec];
            let expires_at = match job.artifacts.as_ref().map(|a| &a.retention) {
                Some(Retention::ExpireIn(d)) => Some(r.finished_at + d.as_millis() as i64),
                _ => None,
            };
            let recs: Vec<ArtifactRecord> = r
                .artifacts
                .iter()
                .map(|(path, sha, size)| ArtifactRecord {
                    id: 0,
                    project: self.req.project.clone(),
                    pipeline: self.pipeline.name.clone(),
                    run_id: self.run_id,
                    job: self.plan.jobs[i].id.clone(),
                    path: path.clone(),
                    sha256: sha.clone(),
                    size: *size,
                    created_at: r.finished_at,
                    expires_at,
                })
                .collect();
            self.store.add_artifacts(&recs)?;
            self.produced
                .insert(i, r.artifacts.into_iter().map(|(p, s, _)| (p, s)).collect());
        }
        if r.status == JobStatus::Success {
            self.finished_order.push(i);
        }
        self.finish(
            i,
            r.status,
            r.reason,
            Some(r.started_at),
            Some(r.finished_at),
        );
        Ok(())
    }

    fn env_for(
        &self,
        i: usize,
        job: &Job,
        workspace: &Path,
    ) -> Result<Vec<(String, String)>, String> {
        let pj = &self.plan.jobs[i];
        let mut env: BTreeMap<String, String> = self.vars.clone();
        env.insert("BATON_JOB".into(), pj.id.clone());
        env.insert(
            "BATON_WORKSPACE".into(),
            workspace.to_string_lossy().into_owned(),
        );
        env.insert(
            "BATON_PROJECT_DIR".into(),
            self.req.project_dir.to_string_lossy().into_owned(),
        );
        env.extend(job.env.clone());
        env.extend(pj.matrix.clone());
        match self.secrets.get(&job.name) {
            Some(Ok(values)) => env.extend(values.iter().cloned()),
            Some(Err(e)) => return Err(e.clone()),
            None => {}
        }
        Ok(env.into_iter().collect())
    }

    fn start(&mut self, i: usize, running: &mut JoinSet<JobResult>) {
        let pj = &self.plan.jobs[i];
        let job = &self.pipeline.jobs[pj.spec];
        let seq = self.next_seq();
        let now = now_ms();
        let r = &mut self.records[i];
        r.seq = seq;
        r.status = "running".into();
        r.started_at = Some(now);
        self.dirty.insert(i);
        let workspace = self
            .dir
            .join("ws")
            .join(format!("{i:04}-{}", file_safe(&pj.id)));
        // Artifacts of the jobs it needs, copied into its workspace.
        let inputs: Vec<(String, String)> = pj
            .needs
            .iter()
            .filter(|k| self.pipeline.jobs[self.plan.jobs[**k].spec].name != job.name)
            .flat_map(|k| self.produced.get(k).cloned().unwrap_or_default())
            .collect();
        let env = self.env_for(i, job, &workspace);
        let cache_dir = job.cache.as_ref().map(|c| {
            self.req
                .state_dir
                .join("pipelines")
                .join("cache")
                .join(&self.req.project)
                .join(&self.pipeline.name)
                .join(&c.key)
        });
        let task = JobTask {
            index: i,
            id: pj.id.clone(),
            script: job.run.clone(),
            image: job.image.clone(),
            containers: self.req.containers.clone(),
            container: format!("baton-pipeline-{}-{}-{i}", self.req.project, self.run_id),
            env,
            workspace,
            log: self.dir.join("logs").join(&self.records[i].log_file),
            timeout: job.timeout,
            retry: job.retry.clone(),
            artifacts: job
                .artifacts
                .as_ref()
                .map(|a| a.paths.clone())
                .unwrap_or_default(),
            inputs,
            cache: cache_dir.zip(job.cache.as_ref().map(|c| c.paths.clone())),
            allow_failure: job.allow_failure,
            state_dir: self.req.state_dir.clone(),
            masks: self.masks.clone(),
            live: self.live.clone(),
            cancel: self.cancel.clone(),
            grace: self.req.grace,
            remote: self.host_job(job),
        };
        self.say(&pj.id, "== started");
        running.spawn(task.run());
    }

    /// The hosts of a `host:` job (a fresh set of connections per job or rollback).
    fn host_job(&self, job: &Job) -> Option<HostJob> {
        if job.hosts.is_empty() {
            return None;
        }
        let hosts = job
            .hosts
            .iter()
            .filter_map(|id| self.pipeline.inventory.hosts.get(id).cloned())
            .collect();
        Some(HostJob::new(
            hosts,
            self.inventory.clone(),
            self.req.ssh.clone(),
            job.parallel.map(|n| n as usize).unwrap_or(self.req.jobs),
        ))
    }

    /// Runs the rollbacks of the jobs that passed, newest first, one at a time.
    async fn rollback(&mut self) -> Result<(), PipelineError> {
        let order: Vec<usize> = self.finished_order.iter().rev().copied().collect();
        for i in order {
            if *self.cancel.borrow() {
                break;
            }
            let pj = &self.plan.jobs[i];
            let job = &self.pipeline.jobs[pj.spec];
            let Some(script) = job.rollback.clone() else {
                continue;
            };
            let name = format!("rollback:{}", pj.id);
            let k = self.records.len();
            let seq = self.next_seq();
            let workspace = self
                .dir
                .join("ws")
                .join(format!("{i:04}-{}", file_safe(&pj.id)));
            self.records.push(PipelineJob {
                run_id: self.run_id,
                name: name.clone(),
                kind: "rollback".into(),
                seq,
                status: "running".into(),
                attempts: 0,
                exit_code: None,
                reason: None,
                log_file: format!("rollback-{i:04}-{}.log", file_safe(&pj.id)),
                started_at: Some(now_ms()),
                finished_at: None,
            });
            self.dirty.insert(k);
            self.say(&name, "== started");
            let task = JobTask {
                index: k,
                id: name.clone(),
                script,
                image: job.image.clone(),
                containers: self.req.containers.clone(),
                container: format!("baton-pipeline-{}-{}-rb{i}", self.req.project, self.run_id),
                env: self.env_for(i, job, &workspace),
                workspace,
                log: self.dir.join("logs").join(&self.records[k].log_file),
                timeout: job.timeout,
                retry: Default::default(),
                artifacts: Vec::new(),
                inputs: Vec::new(),
                cache: None,
                allow_failure: false,
                state_dir: self.req.state_dir.clone(),
                masks: self.masks.clone(),
                live: self.live.clone(),
                cancel: self.cancel.clone(),
                grace: self.req.grace,
                remote: self.host_job(job),
            };
            let r = task.run().await;
            let rec = &mut self.records[k];
            rec.attempts = r.attempts;
            rec.exit_code = r.exit_code;
            rec.status = r.status.as_str().into();
            rec.reason = r.reason.clone();
            rec.started_at = Some(r.started_at);
            rec.finished_at = Some(r.finished_at);
            self.dirty.insert(k);
            let what = r.status.as_str().to_string();
            self.say(&name, &format!("== {what}"));
            self.flush(false)?;
        }
        Ok(())
    }

    /// Applies artifact retention and drops blobs nothing refers to.
    fn prune(&self) {
        let mut any = false;
        for j in &self.pipeline.jobs {
            let Some(a) = &j.artifacts else { continue };
            any = true;
            let keep = match a.retention {
                Retention::KeepLast(n) => Some(n),
                Retention::ExpireIn(_) => None,
            };
            for pj in self.plan.jobs.iter().filter(|p| p.job == j.name) {
                let _ = self.store.prune_artifacts(
                    &self.req.project,
                    &self.pipeline.name,
                    &pj.id,
                    keep,
                    now_ms(),
                );
            }
        }
        if any {
            if let Ok(referenced) = self.store.artifact_hashes() {
                artifacts::collect_garbage(&self.req.state_dir, &referenced);
            }
        }
    }
}

/// One job (or rollback) as a self-contained task.
struct JobTask {
    index: usize,
    id: String,
    script: String,
    image: Option<String>,
    containers: Option<Containers>,
    /// The name of the `image:` job's container.
    container: String,
    env: Result<Vec<(String, String)>, String>,
    workspace: PathBuf,
    log: PathBuf,
    timeout: Option<Duration>,
    retry: crate::spec::Retry,
    artifacts: Vec<String>,
    inputs: Vec<(String, String)>,
    cache: Option<(PathBuf, Vec<String>)>,
    allow_failure: bool,
    state_dir: PathBuf,
    masks: Arc<Vec<String>>,
    live: Live,
    cancel: watch::Receiver<bool>,
    grace: Duration,
    /// Set for `host:` jobs: the script runs there, not here.
    remote: Option<HostJob>,
}

enum Attempt {
    Exited(i32),
    /// A host job that failed on these hosts (the first one's exit code).
    HostsFailed(i32, Vec<String>),
    /// Hosts that could not be reached (or the connection dropped): retried like a
    /// timeout, on a new connection.
    Unreachable(String),
    TimedOut,
    Cancelled,
    Error(String),
}

impl JobTask {
    async fn run(mut self) -> JobResult {
        let started_at = now_ms();
        // Created with the first line: a quiet job costs no file (inodes are not free).
        let mut log = None;
        let result = |status, attempts, exit_code, reason: Option<String>, artifacts| JobResult {
            index: self.index,
            status,
            attempts,
            exit_code,
            reason,
            started_at,
            finished_at: now_ms(),
            artifacts,
        };
        let failed = if self.allow_failure {
            JobStatus::AllowedFailure
        } else {
            JobStatus::Failed
        };
        let env = match std::mem::replace(&mut self.env, Ok(Vec::new())) {
            Ok(e) => e,
            Err(why) => {
                self.emit(&mut log, &format!("cannot start: {why}"));
                return result(failed, 0, None, Some(why), Vec::new());
            }
        };
        if let Err(e) = self.prepare() {
            let why = format!("cannot prepare the workspace: {e}");
            self.emit(&mut log, &why);
            return result(failed, 0, None, Some(why), Vec::new());
        }
        let attempts_allowed = self.retry.max + 1;
        let mut attempt = 0;
        let last = loop {
            attempt += 1;
            if attempt > 1 {
                self.emit(
                    &mut log,
                    &format!("-- attempt {attempt} of {attempts_allowed}"),
                );
            }
            let a = self.attempt(&env, &mut log).await;
            let retryable = match &a {
                Attempt::Exited(0) | Attempt::Cancelled | Attempt::Error(_) => false,
                Attempt::Exited(code) | Attempt::HostsFailed(code, _) => {
                    self.retry.on_exit_codes.is_empty() || self.retry.on_exit_codes.contains(code)
                }
                Attempt::TimedOut | Attempt::Unreachable(_) => self.retry.on_exit_codes.is_empty(),
            };
            if !retryable || attempt >= attempts_allowed {
                break a;
            }
            let base = self.retry.backoff.as_millis() as f64 * 2f64.powi(attempt as i32 - 1);
            let delay =
                Duration::from_millis((base.min(300_000.0) * (0.5 + fastrand::f64() * 0.5)) as u64);
            self.emit(
                &mut log,
                &format!(
                    "-- retrying in {}",
                    humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
                ),
            );
            let mut cancel = self.cancel.clone();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wait_cancel(&mut cancel) => break Attempt::Cancelled,
            }
        };
        let (status, exit_code, reason) = match last {
            Attempt::Exited(0) => (JobStatus::Success, Some(0), None),
            Attempt::Exited(c) => (failed, Some(c), Some(format!("exit code {c}"))),
            Attempt::HostsFailed(c, hosts) => (
                failed,
                Some(c),
                Some(format!(
                    "failed on {} of {} hosts: {} (exit code {c})",
                    hosts.len(),
                    self.remote.as_ref().map_or(0, |r| r.hosts.len()),
                    hosts.join(", ")
                )),
            ),
            Attempt::TimedOut => (
                failed,
                None,
                Some(format!(
                    "timed out after {}",
                    humantime::format_duration(self.timeout.unwrap_or_default())
                )),
            ),
            Attempt::Cancelled => (JobStatus::Cancelled, None, Some("cancelled".into())),
            Attempt::Error(e) | Attempt::Unreachable(e) => (failed, None, Some(e)),
        };
        let mut produced = Vec::new();
        let mut status = status;
        let mut reason = reason;
        if status == JobStatus::Success {
            match self.keep_outputs() {
                Ok(p) => produced = p,
                Err(e) => {
                    status = failed;
                    reason = Some(format!("cannot keep its artifacts: {e}"));
                }
            }
        }
        if let Some(r) = &self.remote {
            r.close().await;
        }
        if let Some(w) = log.as_mut() {
            let _ = w.flush();
        }
        result(status, attempt, exit_code, reason, produced)
    }

    fn prepare(&self) -> std::io::Result<()> {
        baton_state::private::create_dir(&self.workspace)?;
        for (rel, sha) in &self.inputs {
            artifacts::materialize(&self.state_dir, sha, &self.workspace, rel)?;
        }
        if let Some((dir, _)) = &self.cache {
            if dir.exists() {
                artifacts::copy_tree(dir, &self.workspace)?;
            }
        }
        Ok(())
    }

    fn keep_outputs(&self) -> std::io::Result<Vec<(String, String, u64)>> {
        let mut out = Vec::new();
        for rel in artifacts::collect(&self.workspace, &self.artifacts)? {
            let (sha, size) = artifacts::store_file(&self.state_dir, &self.workspace.join(&rel))?;
            out.push((rel, sha, size));
        }
        if let Some((dir, paths)) = &self.cache {
            let files = artifacts::collect(&self.workspace, paths)?;
            let _ = std::fs::remove_dir_all(dir);
            for rel in files {
                let dest = dir.join(&rel);
                if let Some(p) = dest.parent() {
                    baton_state::private::create_dir(p)?;
                }
                std::fs::copy(self.workspace.join(&rel), dest)?;
            }
        }
        Ok(out)
    }

    fn emit(&self, log: &mut Option<std::io::BufWriter<std::fs::File>>, text: &str) {
        let text = mask(text, &self.masks);
        let t = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        if log.is_none() {
            *log = baton_state::private::create(&self.log)
                .ok()
                .map(std::io::BufWriter::new);
        }
        if let Some(w) = log.as_mut() {
            let _ = writeln!(w, "{t} {text}");
        }
        (self.live)(&format!(
            "{} {} | {text}",
            t.get(11..23).unwrap_or(&t),
            self.id
        ));
    }

    /// The job's script as a local process: the program itself when the script is one
    /// plain command line (see `simple_command`), else bash.
    fn command(&self, env: &[(String, String)]) -> tokio::process::Command {
        let mut c = match simple_command(&self.script, env) {
            Some((program, args)) => {
                let mut c = tokio::process::Command::new(program);
                c.args(args);
                c
            }
            None => {
                let mut c = tokio::process::Command::new("bash");
                c.arg("-eo").arg("pipefail").arg("-c").arg(&self.script);
                c
            }
        };
        c.current_dir(&self.workspace);
        c.envs(env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// One attempt of an `image:` job: the script by `sh -e -c` in a one-shot container
    /// with the workspace at /workspace and only the job's variables; a timeout or a
    /// cancel removes the container.
    async fn attempt_in_container(
        &self,
        image: &str,
        env: &[(String, String)],
        log: &mut Option<std::io::BufWriter<std::fs::File>>,
    ) -> Attempt {
        let Some(Containers(engine)) = &self.containers else {
            return Attempt::Error(
                "an image: job runs in a container, and no container engine answers".into(),
            );
        };
        let spec = OneShotSpec {
            name: self.container.clone(),
            image: image.to_string(),
            command: ["sh", "-e", "-c", &self.script]
                .map(str::to_string)
                .to_vec(),
            workdir: (self.workspace.clone(), "/workspace".into()),
            env: env.to_vec(),
            labels: BTreeMap::from([("io.baton.pipeline-job".to_string(), self.id.clone())]),
        };
        // Lines go through a channel so that the log is written by this task; the
        // channel holds at most what one read of the container's output brings.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let mut send = move |line: &str| {
            let _ = tx.send(line.to_string());
        };
        let mut cancel = self.cancel.clone();
        let timeout = self.timeout;
        let outcome = {
            let run = engine.run_to_end(&spec, &mut send);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    Some(line) = rx.recv() => self.emit(log, &line),
                    r = &mut run => break match r {
                        Ok(code) => Attempt::Exited(i32::try_from(code).unwrap_or(i32::MAX)),
                        Err(e) => Attempt::Error(e.to_string()),
                    },
                    _ = async { match timeout { Some(t) => tokio::time::sleep(t).await, None => std::future::pending().await } } => break Attempt::TimedOut,
                    _ = wait_cancel(&mut cancel) => break Attempt::Cancelled,
                }
            }
        };
        while let Ok(line) = rx.try_recv() {
            self.emit(log, &line);
        }
        if matches!(outcome, Attempt::TimedOut | Attempt::Cancelled) {
            if let Err(e) = engine.remove(&self.container).await {
                self.emit(log, &format!("-- cannot remove its container: {e}"));
            }
        }
        self.report_end(&outcome, log, "its container");
        outcome
    }

    /// The last line of an attempt's log: how it ended.
    fn report_end(
        &self,
        outcome: &Attempt,
        log: &mut Option<std::io::BufWriter<std::fs::File>>,
        what: &str,
    ) {
        match outcome {
            Attempt::Exited(c) if *c != 0 => self.emit(log, &format!("-- exit code {c}")),
            Attempt::TimedOut => self.emit(log, &format!("-- timed out: killed {what}")),
            Attempt::Cancelled => self.emit(log, &format!("-- cancelled: killed {what}")),
            Attempt::Error(e) => self.emit(log, &format!("-- {e}")),
            _ => {}
        }
    }

    /// One attempt of a `host:` job: the script on each host it has not passed on yet.
    async fn attempt_on_hosts(
        &self,
        remote: &HostJob,
        env: &[(String, String)],
        log: &mut Option<std::io::BufWriter<std::fs::File>>,
    ) -> Attempt {
        let spec = AttemptSpec {
            script: &self.script,
            env,
            timeout: self.timeout,
            grace: self.grace,
            cancel: self.cancel.clone(),
        };
        let results = remote
            .attempt(spec, &mut |line: &str| self.emit(log, line))
            .await;
        let any = |f: &dyn Fn(&HostOutcome) -> bool| results.iter().any(|(_, o)| f(o));
        if any(&|o| *o == HostOutcome::Cancelled) {
            return Attempt::Cancelled;
        }
        if any(&|o| *o == HostOutcome::TimedOut) {
            return Attempt::TimedOut;
        }
        let errors: Vec<String> = results
            .iter()
            .filter_map(|(_, o)| match o {
                HostOutcome::Error(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        if !errors.is_empty() {
            return Attempt::Unreachable(errors.join("; "));
        }
        let failed: Vec<(String, i32)> = results
            .iter()
            .filter_map(|(h, o)| match o {
                HostOutcome::Exited(c) if *c != 0 => Some((h.clone(), *c)),
                _ => None,
            })
            .collect();
        match failed.first() {
            None => Attempt::Exited(0),
            Some((_, code)) => {
                Attempt::HostsFailed(*code, failed.iter().map(|(h, _)| h.clone()).collect())
            }
        }
    }

    async fn attempt(
        &self,
        env: &[(String, String)],
        log: &mut Option<std::io::BufWriter<std::fs::File>>,
    ) -> Attempt {
        if let Some(remote) = &self.remote {
            return self.attempt_on_hosts(remote, env, log).await;
        }
        if let Some(image) = &self.image {
            return self.attempt_in_container(image, env, log).await;
        }
        let (reader, writer) = match std::io::pipe() {
            Ok(p) => p,
            Err(e) => return Attempt::Error(format!("cannot make a pipe: {e}")),
        };
        let mut cmd = self.command(env);
        let writer2 = match writer.try_clone() {
            Ok(w) => w,
            Err(e) => return Attempt::Error(format!("cannot make a pipe: {e}")),
        };
        cmd.stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(writer2)
            .process_group(0)
            .kill_on_drop(true);
        let spawned = cmd.spawn();
        // The command keeps the pipe's write ends: drop it so the reader sees the end.
        drop(cmd);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return Attempt::Error(format!("cannot start the job: {e}")),
        };
        let pgid = child.id().map(|p| Pid::from_raw(p as i32));
        // If this task is dropped (the daemon exits mid-run), the group goes with it.
        let _group = GroupGuard(pgid);
        let rx = match tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader)) {
            Ok(r) => r,
            Err(e) => return Attempt::Error(format!("cannot read the job's output: {e}")),
        };
        let mut lines = tokio::io::BufReader::new(rx);
        let mut buf = Vec::new();
        let mut reader_done = false;
        let mut outcome: Option<Attempt> = None;
        let mut cancel = self.cancel.clone();
        let timeout = self.timeout;
        let wait = async {
            let stop = tokio::select! {
                s = child.wait() => match s {
                    Ok(st) => {
                        use std::os::unix::process::ExitStatusExt;
                        Attempt::Exited(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))
                    }
                    Err(e) => Attempt::Error(format!("cannot wait for the job: {e}")),
                },
                _ = async { match timeout { Some(t) => tokio::time::sleep(t).await, None => std::future::pending().await } } => Attempt::TimedOut,
                _ = wait_cancel(&mut cancel) => Attempt::Cancelled,
            };
            if matches!(stop, Attempt::TimedOut | Attempt::Cancelled) {
                if let Some(g) = pgid {
                    let _ = killpg(g, Signal::SIGTERM);
                }
                if tokio::time::timeout(self.grace, child.wait())
                    .await
                    .is_err()
                {
                    if let Some(g) = pgid {
                        let _ = killpg(g, Signal::SIGKILL);
                    }
                    let _ = child.wait().await;
                }
            }
            // Whatever the script left behind in its group goes with it.
            if let Some(g) = pgid {
                let _ = killpg(g, Signal::SIGKILL);
            }
            stop
        };
        tokio::pin!(wait);
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                n = lines.read_until(b'\n', &mut buf), if !reader_done => {
                    match n {
                        Ok(0) | Err(_) => reader_done = true,
                        Ok(_) => {
                            let text = String::from_utf8_lossy(&buf);
                            let text = text.trim_end_matches(['\n', '\r']);
                            self.emit(log, text);
                            buf.clear();
                        }
                    }
                }
                o = &mut wait, if outcome.is_none() => {
                    outcome = Some(o);
                    drain_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                }
                _ = async { match drain_deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    reader_done = true;
                }
            }
            if reader_done && outcome.is_some() {
                break;
            }
            if reader_done && outcome.is_none() {
                // Output closed; the process is still to be waited for.
                let o = (&mut wait).await;
                outcome = Some(o);
                break;
            }
        }
        if !buf.is_empty() {
            let text = String::from_utf8_lossy(&buf).into_owned();
            self.emit(log, &text);
        }
        let outcome = outcome.unwrap_or(Attempt::Error("lost the job".into()));
        self.report_end(&outcome, log, "its process group");
        outcome
    }
}

/// Words a shell would treat specially, or that a binary of the same name would not
/// do the same as (`cd`, `exit`, …): scripts starting with them always go to bash.
const SHELL_WORDS: &[&str] = &[
    "alias", "bg", "break", "builtin", "case", "cd", "command", "continue", "coproc", "declare",
    "disown", "do", "done", "elif", "else", "esac", "eval", "exec", "exit", "export", "fg", "fi",
    "for", "function", "getopts", "hash", "if", "jobs", "let", "local", "read", "readonly",
    "return", "select", "set", "shift", "source", "then", "time", "times", "trap", "type",
    "typeset", "ulimit", "umask", "unalias", "unset", "until", "wait", "while",
];

/// Like make: a one-line script of plain words (no quotes, variables, globs, redirections
/// or operators) naming a program on PATH runs that program directly, without a shell;
/// the result is the same and a job costs one exec instead of a bash start-up.
pub fn simple_command(script: &str, env: &[(String, String)]) -> Option<(PathBuf, Vec<String>)> {
    let line = script.trim();
    if line.is_empty()
        || !line.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    ' ' | '\t' | '_' | '.' | '/' | ',' | '+' | '-' | '@' | '%'
                )
        })
    {
        return None;
    }
    let mut words = line.split_whitespace().map(str::to_string);
    let program = words.next()?;
    if SHELL_WORDS.contains(&program.as_str()) {
        return None;
    }
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let path = if program.contains('/') {
        let p = PathBuf::from(&program);
        executable(&p).then_some(p)?
    } else {
        let search = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("PATH").ok())?;
        search
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(&program))
            .find(|p| executable(p))?
    };
    Some((path, words.collect()))
}

/// Stops the cancel watcher of a run when the run is over.
struct Watcher(tokio::task::JoinHandle<()>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Kills a job's whole process group when dropped.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            let _ = killpg(g, Signal::SIGKILL);
        }
    }
}

pub(crate) async fn wait_cancel(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Replaces every secret value in `text` with `***`.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// Every secret value the pipeline's jobs can see, longest first, for [`mask`].
pub fn secret_values(p: &Pipeline, env: &BTreeMap<String, String>, base: &Path) -> Vec<String> {
    masks_of(&resolve_secrets(p, env, base))
}

fn masks_of(secrets: &BTreeMap<String, SecretValues>) -> Vec<String> {
    let mut m: Vec<String> = secrets
        .values()
        .flat_map(|r| r.iter().flatten().map(|(_, v)| v.clone()))
        .filter(|v| !v.is_empty())
        .collect();
    m.sort_by_key(|v| std::cmp::Reverse(v.len()));
    m.dedup();
    m
}

fn resolve_secrets(
    p: &Pipeline,
    env: &BTreeMap<String, String>,
    base: &Path,
) -> BTreeMap<String, SecretValues> {
    let mut out = BTreeMap::new();
    for j in &p.jobs {
        if j.secrets.is_empty() {
            continue;
        }
        let values: SecretValues = j
            .secrets
            .iter()
            .map(|s| {
                read_secret(&s.source, env, base)
                    .map(|v| (s.name.clone(), v))
                    .map_err(|e| format!("secret {}: {e}", s.name))
            })
            .collect();
        out.insert(j.name.clone(), values);
    }
    out
}

/// Reads a secret from the environment given or from a file (relative to `base`).
pub fn read_secret(
    source: &SecretSource,
    env: &BTreeMap<String, String>,
    base: &Path,
) -> Result<String, String> {
    match source {
        SecretSource::Env(var) => env
            .get(var)
            .cloned()
            .ok_or_else(|| format!("environment variable {var} is not set")),
        SecretSource::File(f) => std::fs::read_to_string(base.join(f))
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("cannot read {}: {e}", f.display())),
    }
}

/// Holds one of the pipeline's `concurrency` slots (a lock file) for the run's life.
async fn concurrency_slot(
    store: &Store,
    p: &Pipeline,
    req: &RunRequest,
    live: &Live,
    cancel: &watch::Receiver<bool>,
) -> Result<Option<std::fs::File>, PipelineError> {
    let Some(n) = p.concurrency else {
        return Ok(None);
    };
    let dir = store.path().with_file_name("locks");
    baton_state::private::create_dir(&dir).map_err(|e| PipelineError::io(&dir, e))?;
    let mut told = false;
    loop {
        for slot in 0..n {
            let path = dir.join(format!("pipeline-{}-{}-{slot}.lock", req.project, p.name));
            let f = baton_state::private::open_or_create(&path)
                .map_err(|e| PipelineError::io(&path, e))?;
            if f.try_lock().is_ok() {
                return Ok(Some(f));
            }
        }
        if *cancel.borrow() {
            return Err(PipelineError::Internal(
                "cancelled while waiting for a concurrency slot".into(),
            ));
        }
        if !told {
            live(&format!(
                "waiting: {n} run(s) of {} already in flight (concurrency)",
                p.name
            ));
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// When process `pid` started: field 22 of `/proc/PID/stat` (clock ticks since boot);
/// `None` when there is no such process.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so count the
    // fields after the last ')': state is field 3, starttime field 22.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Marks as `interrupted` every `running` run whose owning process is gone (killed
/// with SIGKILL, the machine rebooted): its pid is dead, or now belongs to a process
/// that started at another time. Runs recorded without an owner are left alone.
/// Returns the ids it marked.
pub fn mark_abandoned_runs(store: &Store) -> Result<Vec<i64>, PipelineError> {
    let mut marked = Vec::new();
    for (id, owner) in store.running_pipeline_runs()? {
        let Some(o) = owner else { continue };
        if process_start(o.pid) != Some(o.start_ticks) && store.interrupt_pipeline_run(id)? {
            marked.push(id);
        }
    }
    Ok(marked)
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_one_line_scripts_run_without_a_shell() {
        let env = vec![("PATH".to_string(), "/usr/bin:/bin".to_string())];
        let (p, args) = simple_command("  true  ", &env).unwrap();
        assert!(p.ends_with("true") && args.is_empty());
        let (_, args) = simple_command("sleep 1 0.5", &env).unwrap();
        assert_eq!(args, ["1", "0.5"]);
        for shell in [
            "exit 3",
            "cd /tmp",
            "echo $HOME",
            "true && false",
            "echo 'a b'",
            "ls *.rs",
            "echo a > f",
            "A=1 env",
            "true\nfalse",
            "no-such-program-here",
            "# comment",
        ] {
            assert!(
                simple_command(shell, &env).is_none(),
                "{shell:?} would skip the shell"
            );
        }
    }

    #[test]
    fn a_process_start_time_is_read_from_proc() {
        let me = process_start(std::process::id()).expect("our own start time");
        assert_eq!(process_start(std::process::id()), Some(me));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let theirs = process_start(child.id()).expect("the child's start time");
        assert!(theirs >= me);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(process_start(child.id()), None);
    }

    #[test]
    fn secrets_are_masked_longest_first() {
        let s = vec!["hunter22".to_string(), "hunter2".to_string()];
        assert_eq!(mask("pw=hunter22 and hunter2!", &s), "pw=*** and ***!");
    }
}
