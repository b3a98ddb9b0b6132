//! `baton start`, `stop` and `restart`: flags into the control plane's lifecycle
//! operations, one line per container acted on.

use anyhow::{bail, Result};
use baton_control::{ContainerResult, Operation, Outcome};
use baton_engine::apply::Silent;

use crate::cli::{ServicesArgs, StopArgs};
use crate::context::Context;
use crate::door::Door;

pub async fn start(ctx: &Context, args: ServicesArgs) -> Result<u8> {
    let (_, name) = ctx.project_or_name_with(&args.services)?;
    let op = Operation::Start {
        project: name,
        services: args.services,
    };
    report(Door::open(ctx)?.execute(op, &Silent).await?, "started")
}

pub async fn stop(ctx: &Context, args: StopArgs) -> Result<u8> {
    let (_, name) = ctx.project_or_name_with(&args.services)?;
    let op = Operation::Stop {
        project: name,
        services: args.services,
        timeout_secs: args.timeout,
    };
    report(Door::open(ctx)?.execute(op, &Silent).await?, "stopped")
}

pub async fn restart(ctx: &Context, args: StopArgs) -> Result<u8> {
    let (_, name) = ctx.project_or_name_with(&args.services)?;
    let op = Operation::Restart {
        project: name,
        services: args.services,
        timeout_secs: args.timeout,
    };
    report(Door::open(ctx)?.execute(op, &Silent).await?, "restarted")
}

fn report(done: Outcome, verb: &str) -> Result<u8> {
    let Outcome::Containers(done) = done else {
        bail!("the server answered with another kind of outcome");
    };
    let mut failed = 0;
    for ContainerResult { container, error } in &done {
        match error {
            None => eprintln!("{container}: {verb}"),
            Some(e) => {
                failed += 1;
                eprintln!("{container}: failed: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        crate::exit::OK
    } else {
        crate::exit::ERROR
    })
}
