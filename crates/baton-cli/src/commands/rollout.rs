//! `baton rollout status|promote|abort|resume|history|undo SERVICE`: look at and steer
//! the rollouts that `baton serve` carries out; a request wakes the daemon through its
//! socket. `abort` and `resume` also reach a paused rollout, which then runs again.

use anyhow::{bail, Result};
use baton_control::{Operation, Outcome, RolloutView, Undone};
use baton_engine::apply::Silent;
use baton_state::{RolloutRequest, RolloutStatus};

use crate::cli::{RolloutAction, RolloutArgs};
use crate::context::Context;
use crate::door::Door;

pub async fn run(ctx: &Context, args: RolloutArgs) -> Result<u8> {
    let (_, name) = ctx.project_or_name()?;
    let door = Door::open(ctx)?;
    match args.action {
        RolloutAction::Status { service } => {
            if let Some(s) = door.update_status(&name, &service).await? {
                return super::orchestrated::rollout_status(ctx, &service, &s);
            }
            let Some(r) = door.rollouts(&name, Some(&service)).await?.pop() else {
                bail!("service {service}: no rollout yet");
            };
            // Live per-revision counters, from the daemon's proxy when one answers.
            let live: Vec<serde_json::Value> = door
                .traffic(&name)
                .await
                .into_iter()
                .filter(|p| p["service"] == service.as_str())
                .collect();
            report(ctx, &r, &live)
        }
        RolloutAction::Promote { service } => {
            request(ctx, &door, &name, &service, RolloutRequest::Promote).await
        }
        RolloutAction::Abort { service } => {
            request(ctx, &door, &name, &service, RolloutRequest::Abort).await
        }
        RolloutAction::Resume { service } => {
            request(ctx, &door, &name, &service, RolloutRequest::Resume).await
        }
        RolloutAction::Undo {
            service,
            to_revision,
        } => undo(ctx, &door, &name, &service, to_revision).await,
        RolloutAction::History { service } => {
            let all = door.rollouts(&name, Some(&service)).await?;
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
                        r.outcome.clone().unwrap_or_else(|| r.status.to_string()),
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

/// Rolls the service back to an earlier revision's configuration and follows it.
async fn undo(
    ctx: &Context,
    door: &Door<'_>,
    project: &str,
    service: &str,
    to_revision: Option<i64>,
) -> Result<u8> {
    let op = Operation::Undo {
        project: project.to_string(),
        service: service.to_string(),
        to_revision,
    };
    let Outcome::Undo(undone) = door.execute(op, &Silent).await? else {
        bail!("the server answered undo with another kind of outcome");
    };
    match undone {
        Undone::Orchestrator { service, state } => {
            eprintln!("{service}: back to its previous version ({state}); the file still says otherwise, so the next `up` rolls forward again");
            Ok(crate::exit::OK)
        }
        Undone::AlreadyThere { revision } => {
            eprintln!("{service}: already runs the configuration of revision {revision}");
            Ok(crate::exit::OK)
        }
        Undone::Rolling {
            revision,
            new_revision,
            rollout,
        } => {
            eprintln!("{service}: rolling back to the configuration of revision {revision} (new revision {new_revision}); the file still says otherwise, so the next `up` rolls forward again");
            super::up::follow_rollouts(
                ctx,
                door,
                project,
                &[(service.to_string(), rollout)],
                Default::default(),
            )
            .await
        }
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(8)]
}

/// Puts the request on the newest rollout of the service (a paused one runs again) and
/// follows the rollout to its end.
async fn request(
    ctx: &Context,
    door: &Door<'_>,
    project: &str,
    service: &str,
    request: RolloutRequest,
) -> Result<u8> {
    let op = Operation::Rollout {
        project: project.to_string(),
        service: service.to_string(),
        request,
    };
    let Outcome::Rollout(taken) = door.execute(op, &Silent).await? else {
        bail!("the server answered {request} with another kind of outcome");
    };
    let id = taken.rollout;
    if !door.is_remote() && !super::serve::daemon_running(ctx) {
        eprintln!("warning: `baton serve` is not running; the request waits for it");
    }
    if taken.was == RolloutStatus::Running {
        // The rollout's own history says "abort requested" / "resume requested".
        if request == RolloutRequest::Promote {
            eprintln!("{service}: {request} requested");
        }
    } else {
        eprintln!(
            "{service}: rollout {id} was {}: {request} requested",
            taken.was
        );
    }
    // Only what happens from now on: `rollout status` shows the whole history.
    let code = super::up::follow_rollouts(
        ctx,
        door,
        project,
        &[(service.to_string(), id)],
        [(id, taken.history_seen)].into(),
    )
    .await?;
    // An abort (or a resumed rollback) that ended in a rollback did what was asked.
    let rolled_back = door
        .rollouts(project, Some(service))
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .is_some_and(|r| r.status == RolloutStatus::RolledBack);
    Ok(if taken.wants_rollback && rolled_back {
        crate::exit::OK
    } else {
        code
    })
}

/// The deployment report of one rollout, as text or JSON.
fn report(ctx: &Context, r: &RolloutView, live: &[serde_json::Value]) -> Result<u8> {
    let state = r.state.clone();
    if ctx.global.json {
        crate::output::json(&serde_json::json!({
            "rollout": r,
            "state": state,
            "traffic": live,
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
        r.outcome.clone().unwrap_or_else(|| r.status.to_string())
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
        if !s.rollback_batches.is_empty() {
            println!("  rollback       {} batch(es)", s.rollback_batches.len());
        }
        for (i, b) in s.rollback_batches.iter().enumerate() {
            let at = |ms: u64| ms.saturating_sub(s.started_ms) as f64 / 1000.0;
            let routed = match b.routed_ms {
                Some(ms) => format!("routed {:?} at {:.1} s", b.routed, at(ms)),
                None => "not routed yet".to_string(),
            };
            let failed = if b.failures > 0 {
                format!(", {} failed {:?}", b.failures, b.failed)
            } else {
                String::new()
            };
            println!(
                "    batch {} at {:>6.1} s: {} old started, {routed}, new stopped {:?}{failed}",
                i + 1,
                at(b.started_ms),
                b.old,
                b.stopped_new
            );
        }
        for p in live {
            let revisions = p["metrics"]["revisions"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (rev, m) in revisions {
                let which = if rev == r.to_hash {
                    "new"
                } else if rev == r.from_hash {
                    "old"
                } else {
                    "other"
                };
                println!(
                    "  live {} {which} {}: {} requests, {} 5xx, p95 {} ms",
                    p["listen"].as_str().unwrap_or(""),
                    short(&rev),
                    m["requests"],
                    m["responses_5xx"],
                    m["latency"]["p95_ms"]
                );
            }
        }
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
