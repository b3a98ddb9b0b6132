//! `baton start`, `stop` and `restart`: flags into the control plane's lifecycle
//! calls, one line per container acted on.

use std::time::Duration;

use anyhow::Result;
use baton_control::ContainerResult;
use baton_engine::runtime::Runtime;

use crate::cli::{ServicesArgs, StopArgs};
use crate::context::Context;

pub async fn start(ctx: &Context, args: ServicesArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name_with(&args.services)?;
    let control = ctx.control().await?;
    check(&control, project.as_ref(), &name, &args.services).await?;
    let done = control
        .start(project.as_ref(), &name, &args.services)
        .await?;
    report(&done, "started")
}

pub async fn stop(ctx: &Context, args: StopArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name_with(&args.services)?;
    let control = ctx.control().await?;
    check(&control, project.as_ref(), &name, &args.services).await?;
    let timeout = args.timeout.map(Duration::from_secs);
    let done = control
        .stop(project.as_ref(), &name, &args.services, timeout)
        .await?;
    report(&done, "stopped")
}

pub async fn restart(ctx: &Context, args: StopArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name_with(&args.services)?;
    let control = ctx.control().await?;
    check(&control, project.as_ref(), &name, &args.services).await?;
    let timeout = args.timeout.map(Duration::from_secs);
    let done = control
        .restart(project.as_ref(), &name, &args.services, timeout)
        .await?;
    report(&done, "restarted")
}

/// Unknown service names are refused before anything is done.
async fn check(
    control: &baton_control::Control<baton_docker::Docker>,
    project: Option<&baton_spec::Project>,
    name: &str,
    services: &[String],
) -> Result<()> {
    if services.is_empty() {
        return Ok(());
    }
    let observed = match project {
        Some(_) => None,
        None => Some(control.runtime.observe(name).await?),
    };
    super::known_services(project, observed.as_ref(), services)
}

fn report(done: &[ContainerResult], verb: &str) -> Result<u8> {
    let mut failed = 0;
    for r in done {
        match &r.error {
            None => eprintln!("{}: {verb}", r.container),
            Some(e) => {
                failed += 1;
                eprintln!("{}: failed: {e}", r.container);
            }
        }
    }
    Ok(if failed == 0 {
        crate::exit::OK
    } else {
        crate::exit::ERROR
    })
}
