//! `baton autoscale status SERVICE`: what the daemon's autoscaler saw and decided last for
//! one service of the project (replicas, ready, each metric against its target, the
//! recommendation and why it was or was not applied), asked over its socket.

use anyhow::{bail, Result};
use baton_daemon::autoscale::AutoscaleStatus;
use clap::{Args, Subcommand};

use crate::context::Context;

#[derive(Debug, Clone, Args)]
pub struct AutoscaleArgs {
    #[command(subcommand)]
    pub action: AutoscaleAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AutoscaleAction {
    /// The autoscaler's last look at a service: observation, decision, reasons
    Status { service: String },
}

pub async fn run(ctx: &Context, args: AutoscaleArgs) -> Result<u8> {
    let AutoscaleAction::Status { service } = args.action;
    let (_, project) = ctx.project_or_name()?;
    let Some(all) = baton_daemon::api::call(
        &ctx.state_dir(),
        baton_daemon::api::Method::GET,
        "/v1/autoscale",
    )
    .await
    else {
        eprintln!(
            "no daemon answers on {}: start `baton serve`",
            ctx.state_dir().join(baton_daemon::api::SOCKET).display()
        );
        return Ok(crate::exit::ERROR);
    };
    let all: Vec<AutoscaleStatus> = serde_json::from_value(all)?;
    let Some(s) = all
        .into_iter()
        .find(|s| s.project == project && s.service == service)
    else {
        bail!("{project}/{service} is not autoscaled (no x-baton.autoscale), or the daemon has not looked at it yet");
    };
    if ctx.global.json {
        crate::output::json(&s)?;
        return Ok(crate::exit::OK);
    }
    let o = &s.observation;
    println!(
        "{project}/{service}: {} replicas ({} ready), min {}, max {}{}",
        o.replicas,
        o.ready,
        s.min,
        s.max,
        if o.rollout_in_progress {
            ", rollout in progress"
        } else {
            ""
        }
    );
    let metrics = baton_daemon::autoscale::describe_metrics(&s.decision);
    if !metrics.is_empty() {
        println!("metrics: {metrics}");
    }
    match (s.decision.desired, s.decision.recommendation) {
        (Some(n), _) => println!("decision: scale to {n}"),
        (None, Some(r)) => println!("decision: hold (recommended {r})"),
        (None, None) => println!("decision: hold"),
    }
    for r in &s.decision.reasons {
        println!("  because {}", serde_json::to_string(r)?);
    }
    if let Some(e) = &s.error {
        println!("last scale failed: {e}");
    }
    Ok(crate::exit::OK)
}
