//! `baton start`, `stop` and `restart`: act on existing containers without planning;
//! stop honours each service's grace period and signal, in parallel.

use std::time::Duration;

use anyhow::Result;
use baton_engine::runtime::{ContainerState, Runtime};
use baton_spec::Project;
use futures_util::future::join_all;

use super::containers_of;
use crate::cli::{ServicesArgs, StopArgs};
use crate::context::Context;

fn grace(
    project: Option<&Project>,
    service: &str,
    timeout: Option<u64>,
) -> (Duration, Option<String>) {
    let svc = project.and_then(|p| p.services.get(service));
    let grace = timeout.map(Duration::from_secs).unwrap_or_else(|| {
        svc.and_then(|s| s.stop_grace_period)
            .map(|d| d.as_std())
            .unwrap_or(Duration::from_secs(10))
    });
    (grace, svc.and_then(|s| s.stop_signal.clone()))
}

/// The named services, or every service the project has (file or engine).
fn named_or_all(
    project: Option<&Project>,
    observed: &baton_engine::runtime::Observed,
    named: &[String],
) -> Vec<String> {
    if !named.is_empty() {
        return named.to_vec();
    }
    let mut all: Vec<String> = match project {
        Some(p) => p.services.keys().cloned().collect(),
        None => observed
            .containers
            .iter()
            .map(|c| c.service.clone())
            .collect(),
    };
    all.sort();
    all.dedup();
    all
}

pub async fn start(ctx: &Context, args: ServicesArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name_with(&args.services)?;
    let docker = ctx.docker().await?;
    let store = ctx.store()?;
    let _lock = store.lock_project(&name)?;
    let observed = docker.observe(&name).await?;
    super::known_services(project.as_ref(), Some(&observed), &args.services)?;
    let active = store.desired(&name)?.active;
    let services = named_or_all(project.as_ref(), &observed, &args.services);
    super::set_desired(&store, &name, active, &[], &services, &[])?;
    let targets: Vec<_> = containers_of(&observed, &args.services)
        .into_iter()
        .filter(|c| c.state != ContainerState::Running)
        .collect();
    let results = join_all(targets.iter().map(|c| docker.start_container(&c.id))).await;
    report(
        targets.iter().map(|c| c.name.as_str()).zip(results),
        "started",
    )
}

pub async fn stop(ctx: &Context, args: StopArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name_with(&args.services)?;
    let docker = ctx.docker().await?;
    let store = ctx.store()?;
    let _lock = store.lock_project(&name)?;
    let observed = docker.observe(&name).await?;
    super::known_services(project.as_ref(), Some(&observed), &args.services)?;
    // Declared first, so a running daemon does not start them again.
    let active = store.desired(&name)?.active;
    let services = named_or_all(project.as_ref(), &observed, &args.services);
    super::set_desired(&store, &name, active, &services, &[], &[])?;
    let targets: Vec<_> = containers_of(&observed, &args.services)
        .into_iter()
        .filter(|c| c.state == ContainerState::Running)
        .collect();
    let results = join_all(
        targets
            .iter()
            .map(|c| stop_one(&docker, project.as_ref(), c, args.timeout)),
    )
    .await;
    report(
        targets.iter().map(|c| c.name.as_str()).zip(results),
        "stopped",
    )
}

pub async fn restart(ctx: &Context, args: StopArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name_with(&args.services)?;
    let docker = ctx.docker().await?;
    let _lock = ctx.store()?.lock_project(&name)?;
    let observed = docker.observe(&name).await?;
    super::known_services(project.as_ref(), Some(&observed), &args.services)?;
    let targets = containers_of(&observed, &args.services);
    let results = join_all(targets.iter().map(|c| {
        let docker = &docker;
        let project = project.as_ref();
        async move {
            stop_one(docker, project, c, args.timeout).await?;
            docker.start_container(&c.id).await
        }
    }))
    .await;
    report(
        targets.iter().map(|c| c.name.as_str()).zip(results),
        "restarted",
    )
}

/// Stops one container with its service's grace period and signal (or `timeout`).
async fn stop_one(
    docker: &baton_docker::Docker,
    project: Option<&Project>,
    c: &baton_engine::runtime::ObservedContainer,
    timeout: Option<u64>,
) -> Result<(), baton_engine::runtime::RuntimeError> {
    let (g, sig) = grace(project, &c.service, timeout);
    docker.stop_container(&c.id, g, sig.as_deref()).await
}

fn report<'a, E: std::fmt::Display>(
    results: impl Iterator<Item = (&'a str, Result<(), E>)>,
    verb: &str,
) -> Result<u8> {
    let mut failed = 0;
    for (name, r) in results {
        match r {
            Ok(()) => eprintln!("{name}: {verb}"),
            Err(e) => {
                failed += 1;
                eprintln!("{name}: failed: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        crate::exit::OK
    } else {
        crate::exit::ERROR
    })
}
