//! `baton up` and `baton scale`: flags into a converge of the control plane, then the
//! plan, the outcome and the rollouts it handed to the daemon, followed to their end.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, Result};
use baton_control::Control;
use baton_docker::Docker;
use baton_engine::plan::PlanOptions;
use baton_spec::Project;

use crate::cli::{ScaleArgs, UpArgs};
use crate::context::Context;
use crate::progress::Progress;

pub async fn run(ctx: &Context, args: UpArgs) -> Result<u8> {
    let project = ctx.project(&args.services)?;
    let opts = PlanOptions {
        services: args.services.clone(),
        no_deps: args.no_deps,
        force_recreate: args.force_recreate,
        no_recreate: args.no_recreate,
        remove_orphans: args.remove_orphans,
        build: args.build,
        scale: args.scale.iter().cloned().collect(),
    };
    let control = ctx.control().await?;
    let (code, rollouts) = converge(
        ctx,
        &control,
        &project,
        &opts,
        Duration::from_secs(args.wait_timeout),
    )
    .await?;
    if code != crate::exit::OK {
        return Ok(code);
    }
    if !rollouts.is_empty() {
        if args.no_wait {
            for (service, id) in &rollouts {
                eprintln!("{service}: rollout {id} handed to baton serve; `baton rollout status {service}` follows it");
            }
        } else {
            let code =
                follow_rollouts(ctx, &control, &project.name, &rollouts, BTreeMap::new()).await?;
            if code != crate::exit::OK {
                return Ok(code);
            }
        }
    }
    if args.detach || ctx.global.json {
        return Ok(code);
    }
    // Attached, as in Compose: follow the output; Ctrl-C stops the containers.
    eprintln!("attaching to the logs; Ctrl-C stops the services (`up -d` returns at once)");
    let follow = baton_docker::LogOptions {
        follow: true,
        tail: None,
        timestamps: false,
    };
    let interrupted = super::logs::print_logs(
        &control.runtime,
        &project.name,
        &args.services,
        &follow,
        false,
    )
    .await?;
    if interrupted {
        eprintln!("stopping…");
        let stop = crate::cli::StopArgs {
            timeout: None,
            services: args.services,
        };
        return super::lifecycle::stop(ctx, stop).await;
    }
    Ok(code)
}

pub async fn scale(ctx: &Context, args: ScaleArgs) -> Result<u8> {
    let scale: std::collections::BTreeMap<String, u32> = args.scales.into_iter().collect();
    let services: Vec<String> = scale.keys().cloned().collect();
    let project = ctx.project(&services)?;
    super::known_services(Some(&project), None, &services)?;
    let opts = PlanOptions {
        services,
        no_deps: args.no_deps,
        scale,
        ..Default::default()
    };
    let control = ctx.control().await?;
    let (code, rollouts) =
        converge(ctx, &control, &project, &opts, Duration::from_secs(300)).await?;
    if code == crate::exit::OK && !rollouts.is_empty() {
        return follow_rollouts(ctx, &control, &project.name, &rollouts, BTreeMap::new()).await;
    }
    Ok(code)
}

/// Follows rollouts the daemon carries out until each has finished, printing what
/// happens (leaving out the first `seen[id]` history lines of each: already shown).
/// Exit 0 when all completed, 1 otherwise.
pub async fn follow_rollouts(
    ctx: &Context,
    control: &Control<Docker>,
    project: &str,
    rollouts: &[(String, i64)],
    mut seen: BTreeMap<i64, usize>,
) -> Result<u8> {
    // The daemon starts on them at once rather than at its next tick.
    super::serve::wake(ctx).await;
    let mut reported = BTreeSet::new();
    loop {
        let p = control.rollout_progress(project, rollouts, &mut seen, &mut reported)?;
        if !ctx.global.json {
            for (service, line) in &p.lines {
                eprintln!("{service}: {line}");
            }
            for (service, id, _, outcome) in &p.ended {
                eprintln!("{service}: rollout {id}: {outcome}");
            }
        }
        if p.done {
            if ctx.global.json {
                let records: Vec<_> = control
                    .store
                    .rollouts(project, None)?
                    .into_iter()
                    .filter(|r| rollouts.iter().any(|(_, id)| *id == r.id))
                    .collect();
                crate::output::json(&records)?;
            }
            return Ok(if p.failed {
                crate::exit::ERROR
            } else {
                crate::exit::OK
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Plans and applies through the control plane, printing the plan, notes, progress and
/// outcome; shared by `up`, `scale` and `run` (for dependencies).
pub async fn converge(
    ctx: &Context,
    control: &Control<Docker>,
    project: &Project,
    opts: &PlanOptions,
    wait_timeout: Duration,
) -> Result<(u8, Vec<(String, i64)>)> {
    let up = control.begin_up(project, opts).await?;
    if up.interrupted > 0 {
        eprintln!(
            "note: an earlier run stopped during {} action(s); converging from what is there",
            up.interrupted
        );
    }
    let (plan, vms) = (&up.prepared.plan, &up.prepared.vms);
    if up.prepared.is_empty() {
        if ctx.global.json {
            crate::output::json(plan)?;
        } else {
            eprint!("{plan}{vms}");
        }
        return Ok((crate::exit::OK, Vec::new()));
    }
    if !ctx.global.json {
        eprint!("{plan}{vms}");
    }
    let progress = Progress::new(ctx.global.json);
    let done = control
        .finish_up(project, up, &ctx.apply_settings(wait_timeout), &progress)
        .await;
    progress.finish();
    let done = done?;
    for w in &done.warnings {
        eprintln!("warning: {w}");
    }
    if ctx.global.json {
        crate::output::json(&serde_json::json!({
            "plan": done.plan,
            "vms": done.vms,
            "ok": done.applied.is_ok() && done.vm_errors.is_empty(),
            "error": done.applied.as_ref().err().map(|e| e.to_string()),
            "vm_errors": done.vm_errors,
        }))?;
    }
    done.applied.map_err(|e| anyhow!(e))?;
    if !done.vm_errors.is_empty() {
        return Err(anyhow!("{}", done.vm_errors.join("\n")));
    }
    if !ctx.global.json {
        eprintln!("project {}: {}", project.name, done.outcome);
    }
    Ok((crate::exit::OK, done.rollouts))
}
