//! `baton up` and `baton scale`: plan, then apply, then record what runs.

use std::time::Duration;

use anyhow::{bail, Result};
use baton_engine::apply::{apply_up, ApplyOptions};
use baton_engine::plan::PlanOptions;
use baton_engine::runtime::Runtime;
use baton_spec::Project;
use baton_state::Resource;

use super::{parse_scales, prepare, Prepared};
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
        scale: parse_scales(&args.scale)?,
    };
    let code = converge(ctx, &project, &opts, Duration::from_secs(args.wait_timeout)).await?;
    if code != crate::exit::OK || args.detach || ctx.global.json {
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
    let scale = parse_scales(&args.scales)?;
    let services: Vec<String> = scale.keys().cloned().collect();
    let project = ctx.project(&services)?;
    let opts = PlanOptions {
        services,
        no_deps: args.no_deps,
        scale,
        ..Default::default()
    };
    converge(ctx, &project, &opts, Duration::from_secs(300)).await
}

/// Plans and applies; shared by `up`, `scale` and `start`-like commands.
pub async fn converge(
    ctx: &Context,
    project: &Project,
    opts: &PlanOptions,
    wait_timeout: Duration,
) -> Result<u8> {
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
        return Ok(crate::exit::OK);
    }
    preflight(&docker, project).await?;
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
    Ok(crate::exit::OK)
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
