//! `baton up` and `baton scale`: flags into an `up` or `scale` operation, then the plan,
//! the outcome and the rollouts handed to the daemon, followed to their end.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use baton_control::{Operation, Outcome, UpOptions, UpOutcome, Watch};
use baton_engine::apply::{Reporter, Step};
use baton_engine::plan::Plan;
use baton_vm::vm_plan::VmPlan;

use crate::cli::{ScaleArgs, UpArgs};
use crate::context::Context;
use crate::door::Door;
use crate::progress::Progress;

pub async fn run(ctx: &Context, args: UpArgs) -> Result<u8> {
    let project = ctx.project(&args.services)?;
    let door = Door::open(ctx)?;
    if door.is_remote() && !args.detach && !ctx.global.json {
        bail!(
            "with --server, use `up -d`: attaching to the logs works on the daemon's machine only"
        );
    }
    let options = UpOptions {
        services: args.services.clone(),
        no_deps: args.no_deps,
        force_recreate: args.force_recreate,
        no_recreate: args.no_recreate,
        remove_orphans: args.remove_orphans,
        build: args.build,
        scale: args.scale.iter().cloned().collect(),
        wait_timeout_secs: args.wait_timeout,
    };
    let name = project.name.clone();
    let op = Operation::Up {
        project: Box::new(project),
        options,
    };
    let rollouts = converge(ctx, &door, op).await?;
    if !rollouts.is_empty() {
        if args.no_wait {
            for (service, id) in &rollouts {
                eprintln!("{service}: rollout {id} handed to baton serve; `baton rollout status {service}` follows it");
            }
        } else {
            let code = follow_rollouts(ctx, &door, &name, &rollouts, BTreeMap::new()).await?;
            if code != crate::exit::OK {
                return Ok(code);
            }
        }
    }
    if args.detach || ctx.global.json {
        return Ok(crate::exit::OK);
    }
    if super::orchestrated::backend(ctx).await?.is_some() {
        // As `docker stack deploy`: the orchestrator keeps the services; nothing to
        // attach to and stop on Ctrl-C.
        eprintln!("the target keeps the services running; `baton logs -f` follows them");
        return Ok(crate::exit::OK);
    }
    // Attached, as in Compose: follow the output; Ctrl-C stops the containers.
    eprintln!("attaching to the logs; Ctrl-C stops the services (`up -d` returns at once)");
    let follow = baton_engine::runtime::LogOptions {
        follow: true,
        tail: None,
        timestamps: false,
    };
    let backend = ctx.backend().await?;
    let interrupted =
        super::logs::print_logs(&backend, &name, &args.services, &follow, false).await?;
    if interrupted {
        eprintln!("stopping…");
        let stop = crate::cli::StopArgs {
            timeout: None,
            services: args.services,
        };
        return super::lifecycle::stop(ctx, stop).await;
    }
    Ok(crate::exit::OK)
}

pub async fn scale(ctx: &Context, args: ScaleArgs) -> Result<u8> {
    let replicas: BTreeMap<String, u32> = args.scales.into_iter().collect();
    let services: Vec<String> = replicas.keys().cloned().collect();
    let project = ctx.project(&services)?;
    let name = project.name.clone();
    let door = Door::open(ctx)?;
    let op = Operation::Scale {
        project: name.clone(),
        replicas,
        no_deps: args.no_deps,
        spec: Some(Box::new(project)),
    };
    let rollouts = converge(ctx, &door, op).await?;
    if !rollouts.is_empty() {
        return follow_rollouts(ctx, &door, &name, &rollouts, BTreeMap::new()).await;
    }
    Ok(crate::exit::OK)
}

/// Follows rollouts the daemon carries out until each has finished, printing what
/// happens (leaving out the first `seen[id]` history lines of each: already shown).
/// Exit 0 when all completed, 1 otherwise.
pub async fn follow_rollouts(
    ctx: &Context,
    door: &Door<'_>,
    project: &str,
    rollouts: &[(String, i64)],
    mut seen: BTreeMap<i64, usize>,
) -> Result<u8> {
    // The daemon starts on them at once rather than at its next tick.
    if !door.is_remote() {
        super::serve::wake(ctx).await;
    }
    let mut reported = BTreeSet::new();
    loop {
        let views = door.rollouts(project, None).await?;
        let p = baton_control::views::progress(&views, rollouts, &mut seen, &mut reported);
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
                let followed: Vec<_> = views
                    .into_iter()
                    .filter(|r| rollouts.iter().any(|(_, id)| *id == r.id))
                    .collect();
                crate::output::json(&followed)?;
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

/// Shows the plan before anything is done (locally; a remote daemon's comes with its
/// outcome), and the engine's steps as they go.
struct Shown {
    progress: Progress,
    json: bool,
    shown: Cell<bool>,
}

impl Shown {
    fn show(&self, plan: &Plan, vms: &VmPlan, interrupted: usize) {
        self.shown.set(true);
        if interrupted > 0 {
            eprintln!(
                "note: an earlier run stopped during {interrupted} action(s); converging from what is there"
            );
        }
        if !self.json {
            eprint!("{plan}{vms}");
        }
    }
}

impl Reporter for Shown {
    fn report(&self, step: Step<'_>) {
        self.progress.report(step)
    }
}

impl Watch for Shown {
    fn planned(&self, plan: &Plan, vms: &VmPlan, interrupted: usize) {
        self.show(plan, vms, interrupted);
    }
}

/// Carries out an `up` or `scale` through the door, printing the plan, notes, progress
/// and outcome; shared by `up`, `scale` and `run` (for dependencies). Returns the
/// rollouts handed to the daemon: (service, id).
pub async fn converge(ctx: &Context, door: &Door<'_>, op: Operation) -> Result<Vec<(String, i64)>> {
    let shown = Shown {
        progress: Progress::new(ctx.global.json),
        json: ctx.global.json,
        shown: Cell::new(false),
    };
    let done = door.execute(op, &shown).await;
    shown.progress.finish();
    let Outcome::Up(up) = done? else {
        bail!("the server answered with another kind of outcome");
    };
    let UpOutcome {
        project,
        interrupted,
        plan,
        ok,
        error,
        outcome,
        rollouts,
        warnings,
        vms,
        vm_errors,
        ..
    } = up;
    if !shown.shown.get() {
        shown.show(&plan, &vms, interrupted);
    }
    if plan.is_empty() && vms.is_empty() {
        if ctx.global.json {
            crate::output::json(&plan)?;
        }
        return Ok(Vec::new());
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if ctx.global.json {
        crate::output::json(&serde_json::json!({
            "plan": plan,
            "vms": vms,
            "ok": ok,
            "error": error,
            "vm_errors": vm_errors,
        }))?;
    }
    if !ok {
        return Err(anyhow!(error.unwrap_or(outcome)));
    }
    if !ctx.global.json {
        eprintln!("project {project}: {outcome}");
    }
    Ok(rollouts
        .into_iter()
        .map(|r| (r.service, r.rollout))
        .collect())
}
