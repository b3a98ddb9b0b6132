//! `baton rollout status|promote|abort|history SERVICE`: look at and steer the rollouts
//! that `baton serve` carries out; the daemon picks requests up on its next tick.

use anyhow::{bail, Result};
use baton_engine::rollout::RolloutState;
use baton_state::RolloutRecord;

use crate::cli::{RolloutAction, RolloutArgs};
use crate::context::Context;

pub async fn run(ctx: &Context, args: RolloutArgs) -> Result<u8> {
    let (_, name) = ctx.project_or_name()?;
    let store = ctx.store()?;
    match args.action {
        RolloutAction::Status { service } => {
            let Some(r) = store.rollouts(&name, Some(&service))?.pop() else {
                bail!("service {service}: no rollout yet");
            };
            report(ctx, &r)
        }
        RolloutAction::Promote { service } => {
            request(ctx, &store, &name, &service, "promote").await
        }
        RolloutAction::Abort { service } => request(ctx, &store, &name, &service, "abort").await,
        RolloutAction::History { service } => {
            let all = store.rollouts(&name, Some(&service))?;
            if ctx.global.json {
                crate::output::json(&all)?;
                return Ok(crate::exit::OK);
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.revision.to_string(),
                        r.strategy.clone(),
                        format!("{} -> {}", short(&r.from_hash), short(&r.to_hash)),
                        crate::output::time(r.started_at),
                        r.outcome.clone().unwrap_or_else(|| r.status.clone()),
                    ]
                })
                .collect();
            crate::output::table(
                &["ID", "REVISION", "STRATEGY", "CONFIG", "STARTED", "OUTCOME"],
                &rows,
            );
            Ok(crate::exit::OK)
        }
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(8)]
}

async fn request(
    ctx: &Context,
    store: &baton_state::Store,
    project: &str,
    service: &str,
    action: &str,
) -> Result<u8> {
    if !store.request_rollout(project, service, action)? {
        bail!("service {service}: no rollout is running");
    }
    if !super::serve::daemon_running(ctx) {
        eprintln!("warning: `baton serve` is not running; the request waits for it");
    }
    eprintln!("{service}: {action} requested");
    let id = store
        .rollouts(project, Some(service))?
        .pop()
        .map(|r| r.id)
        .unwrap_or(0);
    super::up::wait_rollouts(ctx, project, &[(service.to_string(), id)]).await
}

/// The deployment report of one rollout, as text or JSON.
fn report(ctx: &Context, r: &RolloutRecord) -> Result<u8> {
    let state: Option<RolloutState> = serde_json::from_str(&r.state_json).ok();
    if ctx.global.json {
        crate::output::json(&serde_json::json!({
            "rollout": r,
            "state": state,
        }))?;
        return Ok(crate::exit::OK);
    }
    println!(
        "rollout {} of {} ({}), revision {}",
        r.id, r.service, r.strategy, r.revision
    );
    println!(
        "  configuration  {} -> {}",
        short(&r.from_hash),
        short(&r.to_hash)
    );
    println!(
        "  status         {}",
        r.outcome.as_deref().unwrap_or(&r.status)
    );
    println!("  started        {}", crate::output::time(r.started_at));
    if let Some(f) = r.finished_at {
        println!(
            "  finished       {} ({:.1} s)",
            crate::output::time(f),
            (f - r.started_at) as f64 / 1000.0
        );
    }
    if let Some(s) = state {
        println!(
            "  traffic        {}% new, {}% old",
            s.weight,
            100 - s.weight.min(100)
        );
        println!(
            "  new replicas   routed {:?}, failed {:?}",
            s.new_routed, s.new_failed
        );
        println!(
            "  old replicas   serving {:?}, stopped {:?}",
            s.old_running, s.old_stopped
        );
        println!("  history");
        for e in s.history {
            println!(
                "    {:>8.1} s  {}",
                e.at_ms.saturating_sub(s.started_ms) as f64 / 1000.0,
                e.message
            );
        }
    }
    Ok(crate::exit::OK)
}
