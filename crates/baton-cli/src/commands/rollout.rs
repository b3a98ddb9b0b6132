//! `baton rollout status|promote|abort|resume|history|undo SERVICE`: look at and steer
//! the rollouts that `baton serve` carries out; a request wakes the daemon through its
//! socket. `abort` and `resume` also reach a paused rollout, which then runs again.

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
            // Live per-revision counters, from the daemon's proxy when one answers.
            let live = baton_daemon::api::call(
                &ctx.state_dir(),
                baton_daemon::api::Method::GET,
                &format!("/v1/projects/{name}/traffic"),
            )
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["service"] == service.as_str())
            .collect::<Vec<_>>();
            report(ctx, &r, &live)
        }
        RolloutAction::Promote { service } => {
            request(ctx, &store, &name, &service, "promote", &["running"]).await
        }
        RolloutAction::Abort { service } => {
            request(
                ctx,
                &store,
                &name,
                &service,
                "abort",
                &["running", "paused"],
            )
            .await
        }
        RolloutAction::Resume { service } => {
            request(ctx, &store, &name, &service, "resume", &["paused"]).await
        }
        RolloutAction::Undo {
            service,
            to_revision,
        } => undo(ctx, &store, &name, &service, to_revision).await,
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

/// The service as revision `n` of the project had it.
fn service_at(
    store: &baton_state::Store,
    project: &str,
    n: i64,
    service: &str,
) -> Option<(baton_spec::Project, baton_spec::Service)> {
    let json = store.revision_spec(project, n).ok()??;
    let p: baton_spec::Project = serde_json::from_str(&json).ok()?;
    let s = p.services.get(service)?.clone();
    Some((p, s))
}

async fn undo(
    ctx: &Context,
    store: &baton_state::Store,
    project: &str,
    service: &str,
    to_revision: Option<i64>,
) -> Result<u8> {
    use baton_engine::hash::{effective_config, hash_value, service_hash};
    use baton_engine::runtime::Runtime;

    let docker = ctx.docker().await?;
    let lock = store.lock_project(project)?;
    let Some(latest) = store.latest_revision(project)? else {
        bail!("project {project}: nothing was applied yet");
    };
    let observed = docker.observe(project).await?;
    let running: Option<String> = observed
        .containers
        .iter()
        .filter(|c| c.service == service && !c.oneoff)
        .map(|c| c.config_hash.clone())
        .next();
    let Some(running) = running else {
        bail!("service {service}: no replica runs; nothing to undo");
    };
    // The target: the revision asked for, or the newest one before the revision that
    // introduced what runs now whose configuration of the service differs.
    let target = match to_revision {
        Some(n) => n,
        None => {
            let mut n = latest.number;
            while n > 0
                && service_at(store, project, n, service)
                    .map(|(_, s)| service_hash(&s))
                    .as_deref()
                    != Some(running.as_str())
            {
                n -= 1;
            }
            while n > 0
                && service_at(store, project, n, service)
                    .map(|(_, s)| service_hash(&s))
                    .as_deref()
                    == Some(running.as_str())
            {
                n -= 1;
            }
            n
        }
    };
    let Some((_, old)) = service_at(store, project, target, service) else {
        bail!("service {service}: revision {target} does not exist or has no such service (see `baton rollout history {service}`)");
    };
    let to_hash = service_hash(&old);
    if to_hash == running {
        eprintln!("{service}: already runs the configuration of revision {target}");
        return Ok(crate::exit::OK);
    }
    let spec = baton_engine::rollout::rollout_spec(&old).map_err(|e| {
        anyhow::anyhow!("service {service} at revision {target}: x-baton.rollout: {e}")
    })?;
    if !super::serve::daemon_running(ctx) {
        bail!("service {service}: rollouts are carried out by `baton serve`, which is not running");
    }
    // A new revision: the latest one with this service as revision `target` had it, so
    // the daemon rolls to it like to any other change.
    let json = store
        .revision_spec(project, latest.number)?
        .ok_or_else(|| anyhow::anyhow!("revision {} is missing", latest.number))?;
    let mut current: baton_spec::Project = serde_json::from_str(&json)?;
    current.services.insert(service.to_string(), old.clone());
    let now = crate::context::now_ms();
    let value = serde_json::to_value(&current)?;
    let (rev, _) = store.record_revision(project, &hash_value(&value), &value.to_string(), now)?;
    store.save_service_config(
        &to_hash,
        project,
        service,
        &effective_config(&old).to_string(),
        now,
    )?;
    let old_names: Vec<String> = observed
        .containers
        .iter()
        .filter(|c| c.service == service && !c.oneoff && c.config_hash == running)
        .map(|c| c.name.clone())
        .collect();
    let id = super::up::record_rollout(
        store,
        project,
        service,
        rev.number,
        (&running, &to_hash),
        &spec,
        old.replicas(),
        &old_names,
    )?;
    let _ = store.event(
        project,
        "rollout",
        service,
        &format!("undo to revision {target}"),
        now,
    );
    drop(lock);
    eprintln!("{service}: rolling back to the configuration of revision {target} (new revision {}); the file still says otherwise, so the next `up` rolls forward again", rev.number);
    super::up::wait_rollouts(ctx, project, &[(service.to_string(), id)]).await
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(8)]
}

/// Puts `action` on the newest rollout of the service when its status is one of `from`
/// (a paused one runs again) and follows the rollout to its end (`follow_rollouts`
/// wakes the daemon).
async fn request(
    ctx: &Context,
    store: &baton_state::Store,
    project: &str,
    service: &str,
    action: &str,
    from: &[&str],
) -> Result<u8> {
    let Some((record, taken)) = store.request_newest_rollout(project, service, action, from)?
    else {
        bail!("service {service}: no rollout yet; nothing to {action}");
    };
    let id = record.id;
    if !taken {
        bail!(
            "service {service}: rollout {id} is {}, not {}; nothing to {action}",
            record.status,
            from.join(" or ")
        );
    }
    if !super::serve::daemon_running(ctx) {
        eprintln!("warning: `baton serve` is not running; the request waits for it");
    }
    if record.status == "running" {
        // The rollout's own history says "abort requested" / "resume requested".
        if action == "promote" {
            eprintln!("{service}: {action} requested");
        }
    } else {
        eprintln!(
            "{service}: rollout {id} was {}: {action} requested",
            record.status
        );
    }
    let before = serde_json::from_str::<RolloutState>(&record.state_json).ok();
    // A paused rollback that resumes goes on rolling back.
    let was_rolling_back = before
        .as_ref()
        .is_some_and(|s| s.old_requested > 0 || !s.rollback_batches.is_empty());
    // Only what happens from now on: `rollout status` shows the whole history.
    let shown = before.map_or(0, |s| s.history.len());
    let code = super::up::follow_rollouts(
        ctx,
        project,
        &[(service.to_string(), id)],
        [(id, shown)].into(),
    )
    .await?;
    // An abort (or a resumed rollback) that ended in a rollback did what was asked.
    let rolled_back = store
        .rollouts(project, Some(service))?
        .into_iter()
        .find(|r| r.id == id)
        .is_some_and(|r| r.status == "rolled-back");
    let wanted_back = action == "abort" || (action == "resume" && was_rolling_back);
    Ok(if wanted_back && rolled_back {
        crate::exit::OK
    } else {
        code
    })
}

/// The deployment report of one rollout, as text or JSON.
fn report(ctx: &Context, r: &RolloutRecord, live: &[serde_json::Value]) -> Result<u8> {
    let state: Option<RolloutState> = serde_json::from_str(&r.state_json).ok();
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
