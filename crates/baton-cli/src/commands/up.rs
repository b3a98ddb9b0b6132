//! `baton up` and `baton scale`: plan, then apply, then record what runs.

use std::time::Duration;

use anyhow::{bail, Result};
use baton_engine::apply::{apply_up, ApplyOptions};
use baton_engine::plan::{Action, PlanOptions};
use baton_engine::runtime::Runtime;
use baton_spec::Project;
use baton_state::Resource;

use super::{prepare, Prepared};
use crate::cli::{ScaleArgs, UpArgs};
use crate::context::{now_ms, Context};
use crate::journal::StoreJournal;
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
    let (code, rollouts) =
        converge(ctx, &project, &opts, Duration::from_secs(args.wait_timeout)).await?;
    if code != crate::exit::OK {
        return Ok(code);
    }
    if !rollouts.is_empty() {
        if args.no_wait {
            for (service, id) in &rollouts {
                eprintln!("{service}: rollout {id} handed to baton serve; `baton rollout status {service}` follows it");
            }
        } else {
            let code = wait_rollouts(ctx, &project.name, &rollouts).await?;
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
    let docker = ctx.docker().await?;
    let follow = baton_docker::LogOptions {
        follow: true,
        tail: None,
        timestamps: false,
    };
    let interrupted =
        super::logs::print_logs(&docker, &project.name, &args.services, &follow, false).await?;
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
    let (code, rollouts) = converge(ctx, &project, &opts, Duration::from_secs(300)).await?;
    if code == crate::exit::OK && !rollouts.is_empty() {
        return wait_rollouts(ctx, &project.name, &rollouts).await;
    }
    Ok(code)
}

/// Follows rollouts the daemon carries out until each has finished; prints what
/// happens and how each ended. Exit 0 when all completed, 1 otherwise.
pub async fn wait_rollouts(ctx: &Context, project: &str, rollouts: &[(String, i64)]) -> Result<u8> {
    follow_rollouts(ctx, project, rollouts, Default::default()).await
}

/// `wait_rollouts`, leaving out the first `printed[id]` history lines of each rollout
/// (already there before this command asked for something).
pub async fn follow_rollouts(
    ctx: &Context,
    project: &str,
    rollouts: &[(String, i64)],
    mut printed: std::collections::BTreeMap<i64, usize>,
) -> Result<u8> {
    let store = ctx.store()?;
    // The daemon starts on them at once rather than at its next tick.
    super::serve::wake(ctx).await;
    // History lines already shown, per rollout; rollouts whose outcome was shown.
    let mut reported: std::collections::BTreeSet<i64> = Default::default();
    loop {
        let mut all_done = true;
        let mut failed = false;
        for (service, id) in rollouts {
            let Some(r) = store
                .rollouts(project, Some(service))?
                .into_iter()
                .find(|r| r.id == *id)
            else {
                continue;
            };
            if let Ok(state) =
                serde_json::from_str::<baton_engine::rollout::RolloutState>(&r.state_json)
            {
                let seen = printed.entry(r.id).or_default();
                for e in state.history.iter().skip(*seen) {
                    if !ctx.global.json {
                        eprintln!("{service}: {}", e.message);
                    }
                }
                *seen = state.history.len();
            }
            match r.status.as_str() {
                "running" => all_done = false,
                "completed" => {}
                _ => failed = true,
            }
            if r.status != "running" && !ctx.global.json && reported.insert(r.id) {
                eprintln!(
                    "{service}: rollout {}: {}",
                    r.id,
                    r.outcome.as_deref().unwrap_or(&r.status)
                );
            }
        }
        if all_done {
            if ctx.global.json {
                let records: Vec<_> = store
                    .rollouts(project, None)?
                    .into_iter()
                    .filter(|r| rollouts.iter().any(|(_, id)| *id == r.id))
                    .collect();
                crate::output::json(&records)?;
            }
            return Ok(if failed {
                crate::exit::ERROR
            } else {
                crate::exit::OK
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Plans and applies; shared by `up`, `scale` and `start`-like commands.
pub async fn converge(
    ctx: &Context,
    project: &Project,
    opts: &PlanOptions,
    wait_timeout: Duration,
) -> Result<(u8, Vec<(String, i64)>)> {
    // Held until the end: `baton serve` leaves the project alone while `up` changes it,
    // and the observation the plan is made from stays true.
    let _lock = ctx.store()?.lock_project(&project.name)?;
    let Prepared {
        store,
        docker,
        observed,
        plan,
        revision,
    } = prepare(ctx, project, opts).await?;
    // `up` declares that the project should run: the daemon keeps it so from now on.
    let started: Vec<String> = if opts.services.is_empty() {
        project.services.keys().cloned().collect()
    } else {
        opts.services.clone()
    };
    super::set_desired(&store, &project.name, true, &[], &started, &[])?;
    let interrupted = store.mark_interrupted(&project.name, now_ms())?;
    if !interrupted.is_empty() {
        eprintln!(
            "note: an earlier run stopped during {} action(s); converging from what is there",
            interrupted.len()
        );
    }
    if plan.is_empty() {
        if ctx.global.json {
            crate::output::json(&plan)?;
        } else {
            eprint!("{plan}");
        }
        return Ok((crate::exit::OK, Vec::new()));
    }
    preflight(&docker, project).await?;
    check_traffic(ctx, project, &plan.actions)?;
    if !ctx.global.json {
        eprint!("{plan}");
    }
    let files = crate::files::materialize(project, &ctx.state_dir())?;
    let journal = StoreJournal {
        store: &store,
        project: &project.name,
        revision: Some(revision),
    };
    let progress = Progress::new(ctx.global.json);
    let apply_opts = ApplyOptions {
        parallelism: ctx.global.parallel,
        wait_timeout,
        files,
    };
    let started = std::time::Instant::now();
    let result = apply_up(
        &docker,
        project,
        &observed,
        &plan.actions,
        &journal,
        &progress,
        &apply_opts,
    )
    .await;
    progress.finish();
    record(&store, &docker, &project.name).await;
    let outcome = match &result {
        Ok(r) => format!("{} step(s) done in {:.1?}", r.done, started.elapsed()),
        Err(e) => format!("failed: {e}"),
    };
    let _ = store.event(&project.name, "up", &project.name, &outcome, now_ms());
    if ctx.global.json {
        crate::output::json(&serde_json::json!({
            "plan": plan,
            "ok": result.is_ok(),
            "error": result.as_ref().err().map(|e| e.to_string()),
        }))?;
    }
    result?;
    if !ctx.global.json {
        eprintln!("project {}: {outcome}", project.name);
    }
    let rollouts = hand_over_rollouts(&store, project, &observed, &plan.actions, revision)?;
    Ok((crate::exit::OK, rollouts))
}

/// Services whose traffic baton manages need the daemon: it owns their ports and
/// carries out their rollouts. Checked before anything changes.
fn check_traffic(ctx: &Context, project: &Project, actions: &[Action]) -> Result<()> {
    let managed: Vec<&String> = project
        .services
        .iter()
        .filter(|(_, s)| baton_engine::resolve::traffic_managed(s))
        .map(|(n, _)| n)
        .collect();
    // The settings themselves were checked when the file was read (`Context::project`).
    for a in actions {
        if let Action::Rollout { service, .. } = a {
            if !super::serve::daemon_running(ctx) {
                bail!("service {service}: its published ports belong to baton's traffic proxy (x-baton.rollout), so it changes by rollout, which `baton serve` carries out; start `baton serve` first");
            }
        }
    }
    if !managed.is_empty() && !super::serve::daemon_running(ctx) {
        eprintln!("warning: the published ports of {managed:?} are served by `baton serve` (x-baton.rollout), which is not running");
    }
    Ok(())
}

/// Records a rollout for each service the plan hands over (reusing one already running
/// to the same configuration). Returns (service, rollout id).
fn hand_over_rollouts(
    store: &baton_state::Store,
    project: &Project,
    observed: &baton_engine::runtime::Observed,
    actions: &[Action],
    revision: i64,
) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for a in actions {
        let Action::Rollout {
            service,
            from_hash,
            to_hash,
            ..
        } = a
        else {
            continue;
        };
        let running = store
            .rollouts(&project.name, Some(service))?
            .into_iter()
            .rfind(|r| r.status == "running" && &r.to_hash == to_hash);
        if let Some(r) = running {
            out.push((service.clone(), r.id));
            continue;
        }
        let svc = &project.services[service];
        let spec = baton_engine::rollout::rollout_spec(svc)
            .map_err(|e| anyhow::anyhow!("service {service}: x-baton.rollout: {e}"))?;
        let superseded = store
            .rollouts(&project.name, Some(service))?
            .into_iter()
            .rfind(|r| r.status == "running");
        let (from_hash, old) = stable_set(observed, service, from_hash, superseded.as_ref());
        let id = record_rollout(
            store,
            &project.name,
            service,
            revision,
            (&from_hash, to_hash),
            &spec,
            svc.replicas(),
            &old,
        )?;
        out.push((service.clone(), id));
    }
    Ok(out)
}

/// What a new rollout replaces: the configuration and the replicas that serve once a
/// rollout still running (`superseded`) has been undone — its old set for a canary or a
/// blue-green that has not switched, its new set for a blue-green that has, and for a
/// rolling update the old set plus the new replicas it already routed. Without one, the
/// planner's `from_hash` and its replicas.
fn stable_set(
    observed: &baton_engine::runtime::Observed,
    service: &str,
    from_hash: &str,
    superseded: Option<&baton_state::RolloutRecord>,
) -> (String, Vec<String>) {
    use baton_engine::rollout::{Phase, RolloutState, StrategyKind};
    let of = |hash: &str| -> Vec<String> {
        observed
            .containers
            .iter()
            .filter(|c| c.service == service && !c.oneoff && c.config_hash == hash)
            .map(|c| c.name.clone())
            .collect()
    };
    let Some(r) = superseded else {
        return (from_hash.to_string(), of(from_hash));
    };
    let Ok(state) = serde_json::from_str::<RolloutState>(&r.state_json) else {
        return (from_hash.to_string(), of(from_hash));
    };
    match state.strategy {
        StrategyKind::BlueGreen if matches!(state.phase, Phase::KeepingOld { .. }) => {
            (r.to_hash.clone(), of(&r.to_hash))
        }
        StrategyKind::BlueGreen | StrategyKind::Canary => (r.from_hash.clone(), of(&r.from_hash)),
        StrategyKind::Rolling => {
            let mut old = of(&r.from_hash);
            old.extend(
                of(&r.to_hash)
                    .into_iter()
                    .filter(|n| state.new_routed.contains(n)),
            );
            (r.from_hash.clone(), old)
        }
    }
}

/// Checks what must exist beforehand (external networks and volumes), so a bad file
/// creates nothing.
async fn preflight(docker: &baton_docker::Docker, project: &Project) -> Result<()> {
    let used_nets: std::collections::BTreeSet<&String> = project
        .services
        .values()
        .flat_map(|s| s.networks.keys())
        .collect();
    for key in used_nets {
        if let Some(n) = project.networks.get(key) {
            if n.external && !docker.network_exists(&n.name).await? {
                bail!("network {key}: external network {:?} does not exist; create it with `docker network create {}`", n.name, n.name);
            }
        }
    }
    for (key, v) in &project.volumes {
        if v.external && !docker.volume_exists(&v.name).await? {
            bail!("volume {key}: external volume {:?} does not exist; create it with `docker volume create {}`", v.name, v.name);
        }
    }
    Ok(())
}

/// Stores what runs now, so `baton ps` history and later sessions can see it.
pub async fn record(store: &baton_state::Store, docker: &baton_docker::Docker, project: &str) {
    let Ok(observed) = docker.observe(project).await else {
        return;
    };
    let mut resources: Vec<Resource> = observed
        .containers
        .iter()
        .map(|c| Resource {
            kind: "container".into(),
            name: c.name.clone(),
            id: c.id.clone(),
            service: Some(c.service.clone()),
            replica: Some(c.replica),
            config_hash: Some(c.config_hash.clone()),
            state: format!("{:?}", c.state).to_lowercase(),
        })
        .collect();
    resources.extend(observed.networks.iter().map(|n| Resource {
        kind: "network".into(),
        name: n.name.clone(),
        id: n.id.clone(),
        service: None,
        replica: None,
        config_hash: None,
        state: "present".into(),
    }));
    resources.extend(observed.volumes.iter().map(|v| Resource {
        kind: "volume".into(),
        name: v.name.clone(),
        id: v.name.clone(),
        service: None,
        replica: None,
        config_hash: None,
        state: "present".into(),
    }));
    let _ = store.replace_resources(project, &resources, now_ms());
}

/// Stores a new running rollout of `service` from one configuration hash to another,
/// replacing the replicas named in `old`; the daemon picks it up on its next tick.
#[allow(clippy::too_many_arguments)]
pub fn record_rollout(
    store: &baton_state::Store,
    project: &str,
    service: &str,
    revision: i64,
    (from_hash, to_hash): (&str, &str),
    spec: &baton_engine::rollout::RolloutSpec,
    replicas: u32,
    old: &[String],
) -> Result<i64> {
    let now = now_ms();
    let state = baton_engine::rollout::start(spec, replicas, old, now as u64);
    let id = store.start_rollout(&baton_state::RolloutRecord {
        id: 0,
        project: project.to_string(),
        service: service.to_string(),
        revision,
        from_hash: from_hash.to_string(),
        to_hash: to_hash.to_string(),
        strategy: state.strategy.to_string(),
        status: "running".into(),
        state_json: serde_json::to_string(&state)?,
        requested: None,
        outcome: None,
        started_at: now,
        finished_at: None,
    })?;
    let _ = store.event(
        project,
        "rollout",
        service,
        &format!("rollout {id} requested ({})", state.strategy),
        now,
    );
    Ok(id)
}
