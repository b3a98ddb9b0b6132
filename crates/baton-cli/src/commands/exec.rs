//! `baton exec`: a command in a running replica; the exit code is the command's.

use std::io::IsTerminal;

use anyhow::{anyhow, Result};
use baton_engine::runtime::{ContainerState, ExecOptions, Runtime};

use crate::cli::ExecArgs;
use crate::context::Context;

pub async fn run(ctx: &Context, args: ExecArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name_with(std::slice::from_ref(&args.service))?;
    let backend = ctx.backend().await?;
    let exec = backend.need_exec()?;
    let observed = backend.observe(&name).await?;
    super::known_services(
        project.as_ref(),
        Some(&observed),
        std::slice::from_ref(&args.service),
    )?;
    let c = observed
        .containers
        .iter()
        .find(|c| !c.oneoff && c.service == args.service && c.replica == args.index)
        .ok_or_else(|| {
            anyhow!(
                "service {}: no replica {} (see `baton ps`)",
                args.service,
                args.index
            )
        })?;
    if c.state != ContainerState::Running {
        return Err(anyhow!(
            "service {}: {} is not running",
            args.service,
            c.name
        ));
    }
    let tty = !args.no_tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let code = exec
        .exec(
            &c.id,
            &ExecOptions {
                cmd: args.command,
                tty,
                env: args.env,
                user: args.user,
                workdir: args.workdir,
                interactive: true,
            },
        )
        .await?;
    Ok(code.clamp(0, 255) as u8)
}
