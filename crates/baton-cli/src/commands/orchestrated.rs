//! `ps`, `logs` and `rollout status` on a target whose backend keeps services itself
//! (Swarm, Kubernetes): tasks or pods with their node, each service's output merged by
//! the orchestrator, and the orchestrator's own update status. The tasks and the status
//! come from the control plane through the door (this machine or `--server`); logs
//! are read here. The changes (`up`, `scale`, `down`, `rollout undo`) go through the
//! control plane like any other.

use anyhow::Result;
use baton_backend::Backend;
use baton_engine::orchestrate::{Orchestrator, Task, UpdateStatus};
use baton_engine::runtime::{LogOptions, Runtime};
use futures_util::stream::StreamExt;

use crate::context::Context;

/// The chosen target's orchestrator, when it has one and the door is this machine.
pub async fn backend(ctx: &Context) -> Result<Option<Backend>> {
    if ctx.global.server.is_some() {
        return Ok(None);
    }
    let target = ctx.target()?;
    if matches!(target.kind, baton_backend::TargetKind::Docker { .. }) {
        return Ok(None);
    }
    let backend = ctx.backend().await?;
    Ok(backend.orchestrator().is_some().then_some(backend))
}

fn orchestrator(b: &Backend) -> Result<&dyn Orchestrator> {
    b.orchestrator()
        .ok_or_else(|| anyhow::anyhow!("target {} keeps no services itself", b.target))
}

/// `baton ps` on such a target: the tasks that should run (with `--all`, their history
/// too), as the control plane listed them (here or through `--server`).
pub fn ps(ctx: &Context, tasks: Vec<Task>, services: &[String], all: bool) -> Result<u8> {
    let tasks: Vec<_> = tasks
        .into_iter()
        .filter(|t| all || t.desired == "running")
        .filter(|t| services.is_empty() || services.contains(&t.service))
        .collect();
    if ctx.global.json {
        crate::output::json(&tasks)?;
        return Ok(crate::exit::OK);
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.service.clone(),
                t.node.clone(),
                t.state.clone(),
                t.desired.clone(),
                t.image.clone(),
                t.ports.join(", "),
                t.message.clone(),
            ]
        })
        .collect();
    crate::output::table(
        &[
            "NAME", "SERVICE", "NODE", "STATE", "DESIRED", "IMAGE", "PORTS", "MESSAGE",
        ],
        &rows,
    );
    Ok(crate::exit::OK)
}

/// `baton logs`: each service's tasks merged by the orchestrator, services interleaved.
pub async fn logs(
    ctx: &Context,
    b: &Backend,
    project: &str,
    services: &[String],
    known: &[String],
    opts: &LogOptions,
) -> Result<u8> {
    let o = orchestrator(b)?;
    let names: Vec<String> = if services.is_empty() {
        known.to_vec()
    } else {
        services.to_vec()
    };
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let single = names.len() == 1;
    let streams = names.iter().map(|s| {
        let prefix = if single {
            String::new()
        } else {
            format!("{s:<width$} | ")
        };
        let who = serde_json::json!({"service": s});
        o.logs(project, s, opts)
            .map(move |l| (prefix.clone(), who.clone(), l))
            .boxed()
    });
    let interrupted = super::logs::print_merged(streams, ctx.global.json).await?;
    Ok(if interrupted {
        crate::exit::INTERRUPTED
    } else {
        crate::exit::OK
    })
}

/// `baton rollout status` on such a target: the orchestrator's update state and
/// running tasks.
pub fn rollout_status(ctx: &Context, service: &str, s: &UpdateStatus) -> Result<u8> {
    if ctx.global.json {
        crate::output::json(&s)?;
    } else {
        println!(
            "{service}: update {}, {}/{} task(s) running{}",
            s.state,
            s.running,
            s.desired,
            if s.message.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.message)
            }
        );
    }
    Ok(match s.state.as_str() {
        "paused" | "rollback_paused" | "rollback_completed" => crate::exit::ERROR,
        _ => crate::exit::OK,
    })
}
