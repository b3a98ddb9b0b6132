//! `baton down`: remove every container and network of the project (and with -v its
//! volumes), found by label, so it also cleans what a killed run left; stop its VMs
//! (with -v, remove them and the disks baton made).

use anyhow::{anyhow, bail, Result};
use baton_control::{Operation, Outcome};

use crate::cli::DownArgs;
use crate::context::Context;
use crate::door::Door;
use crate::progress::Progress;

pub async fn run(ctx: &Context, args: DownArgs) -> Result<u8> {
    let (_, name) = ctx.project_or_name()?;
    let progress = Progress::new(ctx.global.json);
    let op = Operation::Down {
        project: name.clone(),
        volumes: args.volumes,
    };
    let done = Door::open(ctx)?.execute(op, &progress).await;
    progress.finish();
    let Outcome::Down(down) = done? else {
        bail!("the server answered down with another kind of outcome");
    };
    let Some(plan) = down.plan else {
        eprintln!("project {name}: nothing to remove");
        return Ok(crate::exit::OK);
    };
    if !down.ok {
        return Err(anyhow!(down.error.unwrap_or(down.outcome)));
    }
    if ctx.global.json {
        crate::output::json(&plan)?;
    } else {
        eprint!("{}", down.vms);
        eprintln!("project {name}: removed, {}", down.outcome);
    }
    Ok(crate::exit::OK)
}
