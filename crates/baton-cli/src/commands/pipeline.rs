//! `baton pipeline run|list|history|show|logs|rerun` and `baton artifacts ls|get`: a thin
//! shell over `baton-pipeline`; also starts the daemon's pipeline triggers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use baton_pipeline::plan;
use baton_pipeline::report::{render, Format};
use baton_pipeline::run::run_dir;
use clap::{Args, Subcommand};

use crate::context::Context;
use crate::output;

#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    #[command(subcommand)]
    pub action: PipelineAction,
}

#[derive(Debug, Clone, Args)]
pub struct RunOpts {
    /// Jobs in flight at once (default: the number of CPUs)
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Report printed at the end: text, json, junit, markdown (`--json` = json)
    #[arg(long, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PipelineAction {
    /// Run a pipeline: as parallel as its DAG allows, live logs prefixed by job
    /// (exit 1 when the run failed, 130 when interrupted)
    Run {
        name: String,
        /// A variable for the run, exported to every job and seen by `if:` (repeatable)
        #[arg(short = 'v', long = "var", value_name = "KEY=VAL")]
        vars: Vec<String>,
        /// Print the execution order and what each job would run; run nothing
        #[arg(long)]
        dry_run: bool,
        /// Run again the jobs that did not pass in this run, reusing the others
        #[arg(long, value_name = "RUN")]
        rerun_failed: Option<i64>,
        #[command(flatten)]
        opts: RunOpts,
    },
    /// The pipelines of the file, with their jobs and triggers
    List,
    /// Past runs, newest first
    History {
        name: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One run: its jobs in order, with status, attempts and times
    Show {
        run: i64,
        /// text, json, junit, markdown
        #[arg(long, default_value = "text")]
        format: Format,
    },
    /// The logs of a run's jobs (of one job when named)
    Logs { run: i64, job: Option<String> },
    /// Run again the jobs of RUN that did not pass, reusing the others and their artifacts
    Rerun {
        run: i64,
        #[command(flatten)]
        opts: RunOpts,
    },
    /// Cancel a running run, wherever it runs (this machine's CLI or `baton serve`): its
    /// jobs are killed and rollbacks run
    Cancel { run: i64 },
}

#[derive(Debug, Clone, Args)]
pub struct ArtifactsArgs {
    #[command(subcommand)]
    pub action: ArtifactsAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ArtifactsAction {
    /// Artifacts kept in the store, newest run first
    Ls {
        /// Only this run's
        #[arg(long)]
        run: Option<i64>,
    },
    /// Copy a run's artifacts (of one job when named) into a directory
    Get {
        run: i64,
        job: Option<String>,
        /// Where to put them (default: the current directory)
        #[arg(short, long, value_name = "DIR")]
        output: Option<PathBuf>,
    },
}

pub async fn run(ctx: &Context, args: PipelineArgs) -> Result<u8> {
    match args.action {
        PipelineAction::Run {
            name,
            vars,
            dry_run,
            rerun_failed,
            opts,
        } => {
            let vars = parse_vars(&vars)?;
            start(ctx, &name, vars, dry_run, rerun_failed, &opts).await
        }
        PipelineAction::List => list(ctx),
        PipelineAction::History { name, limit } => history(ctx, name.as_deref(), limit),
        PipelineAction::Show { run, format } => show(ctx, run, format),
        PipelineAction::Logs { run, job } => logs(ctx, run, job.as_deref()),
        PipelineAction::Rerun { run, opts } => {
            let (name, vars) = ctx.control_of_store()?.pipeline_rerun_of(run)?;
            start(ctx, &name, vars, false, Some(run), &opts).await
        }
        PipelineAction::Cancel { run } => {
            let control = ctx.control_of_store()?;
            let project = control
                .store
                .pipeline_run(run)?
                .map(|r| r.project)
                .unwrap_or_default();
            let op = baton_control::Operation::PipelineCancel { project, run };
            crate::door::audited(&control, &op, control.pipeline_cancel(run), |_| {
                format!("cancel of run {run} requested")
            })?;
            eprintln!("run {run}: cancel requested");
            Ok(crate::exit::OK)
        }
    }
}

fn parse_vars(items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("expected KEY=VAL, got {kv:?}"))?;
            let valid = k
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                bail!("{k:?} is not a valid variable name");
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

async fn start(
    ctx: &Context,
    name: &str,
    vars: BTreeMap<String, String>,
    dry_run: bool,
    rerun_of: Option<i64>,
    opts: &RunOpts,
) -> Result<u8> {
    let project = ctx.project(&[])?;
    let pipeline = baton_pipeline::pipeline(&project, name).map_err(|e| anyhow!("{e}"))?;
    let json = ctx.global.json || opts.format == Format::Json;
    if dry_run {
        let mut scope = vars.clone();
        scope.insert("BATON_TRIGGER".into(), "manual".into());
        scope.insert("BATON_PIPELINE".into(), name.to_string());
        let plan = plan::plan(&pipeline, &scope);
        if json {
            output::json(&plan)?;
        } else {
            // The file is interpolated like Compose: a secret may sit in a script.
            let env: BTreeMap<String, String> = std::env::vars().collect();
            let secrets = baton_pipeline::run::secret_values(&pipeline, &env, &project.working_dir);
            let text = plan::describe(&pipeline, &plan);
            print!("{}", baton_pipeline::run::mask(&text, &secrets));
        }
        return Ok(crate::exit::OK);
    }
    let control = ctx.control_of_store()?;
    let containers = if pipeline.jobs.iter().any(|j| j.image.is_some()) {
        containers(ctx).await
    } else {
        None
    };
    // Live logs go to stdout, unless stdout carries a report for a program.
    let live: baton_pipeline::Live = if json || opts.format != Format::Text {
        Arc::new(|l: &str| eprintln!("{l}"))
    } else {
        Arc::new(|l: &str| println!("{l}"))
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        super::interrupted().await;
        let _ = tx.send(true);
        // Keep the sender (and the signal handlers) alive until the run ends.
        std::future::pending::<()>().await;
    });
    let op = baton_control::Operation::PipelineRun {
        project: project.name.clone(),
        pipeline: name.to_string(),
        vars: vars.clone(),
        rerun_of,
        spec: None,
    };
    let opts_run = baton_control::PipelineRunOptions {
        vars,
        jobs: opts.jobs,
        rerun_of,
    };
    let outcome = control
        .pipeline_run(&project, name, opts_run, containers, live, rx, None)
        .await;
    signals.abort();
    let outcome = crate::door::audited(&control, &op, outcome, |o| {
        format!("run {}: {}", o.run_id, o.status)
    })?;
    let store = &control.store;
    let run = store
        .pipeline_run(outcome.run_id)?
        .ok_or_else(|| anyhow!("run {} vanished from the store", outcome.run_id))?;
    let jobs = store.pipeline_jobs(outcome.run_id)?;
    let format = if ctx.global.json {
        Format::Json
    } else {
        opts.format
    };
    if format == Format::Text {
        println!();
    }
    print!("{}", render(&run, &jobs, format));
    Ok(match outcome.status.as_str() {
        "success" => crate::exit::OK,
        "cancelled" => crate::exit::INTERRUPTED,
        _ => crate::exit::ERROR,
    })
}

fn list(ctx: &Context) -> Result<u8> {
    let project = ctx.project(&[])?;
    let all = baton_pipeline::pipelines(&project).map_err(|e| anyhow!("{e}"))?;
    // Each pipeline's newest run (a run whose baton vanished shows as interrupted).
    let store = ctx.store()?;
    baton_pipeline::run::mark_abandoned_runs(&store)?;
    let mut last = BTreeMap::new();
    for name in all.keys() {
        if let Some(r) = store.pipeline_runs(&project.name, Some(name), 1)?.pop() {
            last.insert(name.clone(), r);
        }
    }
    if ctx.global.json {
        let mut v = serde_json::to_value(&all)?;
        if let Some(m) = v.as_object_mut() {
            for (name, p) in m.iter_mut() {
                if let Some(p) = p.as_object_mut() {
                    p.insert("last_run".into(), serde_json::to_value(last.get(name))?);
                }
            }
        }
        output::json(&v)?;
        return Ok(crate::exit::OK);
    }
    let rows: Vec<Vec<String>> = all
        .values()
        .map(|p| {
            let triggers: Vec<String> = p
                .triggers
                .iter()
                .map(|t| match t {
                    baton_pipeline::Trigger::Manual => "manual".to_string(),
                    baton_pipeline::Trigger::Schedule(s) => format!("schedule {s}"),
                    baton_pipeline::Trigger::Webhook(_) => "webhook".to_string(),
                    baton_pipeline::Trigger::Git(g) => format!("git {}#{}", g.repo, g.branch),
                })
                .collect();
            vec![
                p.name.clone(),
                p.jobs.len().to_string(),
                triggers.join(", "),
                last.get(&p.name)
                    .map(|r| format!("{} {}", r.id, r.status))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    output::table(&["PIPELINE", "JOBS", "TRIGGERS", "LAST RUN"], &rows);
    Ok(crate::exit::OK)
}

fn history(ctx: &Context, name: Option<&str>, limit: i64) -> Result<u8> {
    let (_, project) = ctx.project_or_name()?;
    let store = ctx.store()?;
    baton_pipeline::run::mark_abandoned_runs(&store)?;
    let runs = store.pipeline_runs(&project, name, limit)?;
    if ctx.global.json {
        output::json(&runs)?;
        return Ok(crate::exit::OK);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let took = r
                .finished_at
                .map(|f| format!("{:.1}s", (f - r.started_at) as f64 / 1000.0))
                .unwrap_or_else(|| "-".into());
            vec![
                r.id.to_string(),
                r.pipeline.clone(),
                r.status.clone(),
                r.trigger.clone(),
                output::time(r.started_at),
                took,
            ]
        })
        .collect();
    output::table(
        &["RUN", "PIPELINE", "STATUS", "TRIGGER", "STARTED", "TOOK"],
        &rows,
    );
    Ok(crate::exit::OK)
}

fn show(ctx: &Context, run: i64, format: Format) -> Result<u8> {
    let store = ctx.store()?;
    baton_pipeline::run::mark_abandoned_runs(&store)?;
    let r = store
        .pipeline_run(run)?
        .ok_or_else(|| anyhow!("no pipeline run {run}"))?;
    let jobs = store.pipeline_jobs(run)?;
    let format = if ctx.global.json {
        Format::Json
    } else {
        format
    };
    print!("{}", render(&r, &jobs, format));
    Ok(crate::exit::OK)
}

fn logs(ctx: &Context, run: i64, job: Option<&str>) -> Result<u8> {
    let store = ctx.store()?;
    store
        .pipeline_run(run)?
        .ok_or_else(|| anyhow!("no pipeline run {run}"))?;
    let jobs = store.pipeline_jobs(run)?;
    let selected: Vec<_> = jobs
        .iter()
        .filter(|j| job.is_none_or(|n| j.name == n || j.name.starts_with(&format!("{n}["))))
        .collect();
    if let Some(n) = job {
        if selected.is_empty() {
            let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
            bail!("run {run} has no job {n} (jobs: {})", names.join(", "));
        }
    }
    let dir = run_dir(&ctx.state_dir(), run).join("logs");
    let mut out = Vec::new();
    for j in &selected {
        let text = std::fs::read_to_string(dir.join(&j.log_file)).unwrap_or_default();
        for line in text.lines() {
            let (at, msg) = line.split_once(' ').unwrap_or(("", line));
            out.push((j.name.clone(), at.to_string(), msg.to_string()));
        }
    }
    if ctx.global.json {
        let v: Vec<_> = out
            .iter()
            .map(|(job, at, text)| serde_json::json!({"job": job, "at": at, "text": text}))
            .collect();
        output::json(&v)?;
        return Ok(crate::exit::OK);
    }
    let width = selected.iter().map(|j| j.name.len()).max().unwrap_or(0);
    for (job, at, text) in out {
        println!("{at} {job:<width$} | {text}");
    }
    Ok(crate::exit::OK)
}

pub async fn artifacts(ctx: &Context, args: ArtifactsArgs) -> Result<u8> {
    let (_, project) = ctx.project_or_name()?;
    let store = ctx.store()?;
    match args.action {
        ArtifactsAction::Ls { run } => {
            let items = store.artifacts(&project, run)?;
            if ctx.global.json {
                output::json(&items)?;
                return Ok(crate::exit::OK);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|a| {
                    vec![
                        a.run_id.to_string(),
                        a.job.clone(),
                        a.path.clone(),
                        a.size.to_string(),
                        a.sha256.get(..12).unwrap_or("").to_string(),
                        a.expires_at.map(output::time).unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            output::table(&["RUN", "JOB", "PATH", "SIZE", "SHA256", "EXPIRES"], &rows);
        }
        ArtifactsAction::Get { run, job, output } => {
            let items: Vec<_> = store
                .artifacts(&project, Some(run))?
                .into_iter()
                .filter(|a| job.as_deref().is_none_or(|j| a.job == j))
                .collect();
            if items.is_empty() {
                bail!(
                    "run {run} kept no artifacts{}",
                    job.map(|j| format!(" for job {j}")).unwrap_or_default()
                );
            }
            let dest = output.unwrap_or_else(|| ctx.cwd.clone());
            let state = ctx.state_dir();
            for a in &items {
                baton_pipeline::artifacts::materialize(&state, &a.sha256, &dest, &a.path)
                    .with_context(|| format!("cannot write {}", dest.join(&a.path).display()))?;
                if !ctx.global.json {
                    println!("{}", dest.join(&a.path).display());
                }
            }
            if ctx.global.json {
                output::json(&items)?;
            }
        }
    }
    Ok(crate::exit::OK)
}

/// The container engine `image:` jobs run on, when one answers.
async fn containers(ctx: &Context) -> Option<baton_pipeline::run::Containers> {
    let backend = ctx.backend().await.ok()?;
    Some(baton_pipeline::run::Containers(backend.shared_one_shot()?))
}

/// Starts the project's pipeline triggers (cron, git polling, and webhooks when
/// `hooks_listen` is set) in the background of `baton serve`.
pub async fn spawn_triggers(ctx: &Context, hooks_listen: Option<SocketAddr>) {
    let project = match ctx.project(&[]) {
        Ok(p) => p,
        Err(_) if hooks_listen.is_none() => return,
        Err(e) => {
            tracing::error!("pipelines: cannot read the project for webhooks: {e:#}");
            return;
        }
    };
    if !project.baton.contains_key("pipelines") {
        return;
    }
    let cfg = baton_pipeline::triggers::TriggerConfig {
        project,
        state_dir: ctx.state_dir(),
        hooks_listen,
        env: std::env::vars().collect(),
        jobs: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        containers: containers(ctx).await,
    };
    tokio::spawn(async move {
        if let Err(e) = baton_pipeline::triggers::serve(cfg).await {
            tracing::error!("pipelines: {e}");
        }
    });
}
