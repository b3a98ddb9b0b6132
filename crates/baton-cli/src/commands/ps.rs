//! `baton ps`: the project's containers as the engine reports them.

use anyhow::Result;
use baton_engine::runtime::{Health, Runtime};

use crate::cli::PsArgs;
use crate::context::Context;

pub async fn run(ctx: &Context, args: PsArgs) -> Result<u8> {
    let (_, name) = ctx.project_or_name()?;
    let docker = ctx.docker().await?;
    let mut observed = docker.observe(&name).await?;
    observed.containers.retain(|c| {
        (args.all || !c.oneoff) && (args.services.is_empty() || args.services.contains(&c.service))
    });
    observed
        .containers
        .sort_by(|a, b| (&a.service, a.replica).cmp(&(&b.service, b.replica)));
    if ctx.global.json {
        crate::output::json(&observed.containers)?;
        return Ok(crate::exit::OK);
    }
    let rows: Vec<Vec<String>> = observed
        .containers
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.service.clone(),
                format!("{:?}", c.state).to_lowercase(),
                match c.health {
                    Health::None => "-".into(),
                    h => format!("{h:?}").to_lowercase(),
                },
                c.status.clone(),
                c.ports.join(", "),
            ]
        })
        .collect();
    crate::output::table(
        &["NAME", "SERVICE", "STATE", "HEALTH", "STATUS", "PORTS"],
        &rows,
    );
    Ok(crate::exit::OK)
}
