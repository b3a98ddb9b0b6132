//! `baton down`: remove every container and network of the project (and with -v its
//! volumes), found by label, so it also cleans what a killed run left; stop its VMs
//! (with -v, remove them and the disks baton made).

use anyhow::{anyhow, Result};

use crate::cli::DownArgs;
use crate::context::Context;
use crate::progress::Progress;

pub async fn run(ctx: &Context, args: DownArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name()?;
    let control = ctx.control().await?;
    let progress = Progress::new(ctx.global.json);
    let down = control
        .down(
            project.as_ref(),
            &name,
            args.volumes,
            ctx.global.parallel,
            &progress,
        )
        .await;
    progress.finish();
    let Some(down) = down? else {
        eprintln!("project {name}: nothing to remove");
        return Ok(crate::exit::OK);
    };
    down.applied.map_err(|e| anyhow!(e))?;
    if !down.vm_errors.is_empty() {
        return Err(anyhow!("{}", down.vm_errors.join("\n")));
    }
    if ctx.global.json {
        crate::output::json(&down.plan)?;
    } else {
        eprint!("{}", down.vms);
        eprintln!("project {name}: removed, {}", down.outcome);
    }
    Ok(crate::exit::OK)
}
