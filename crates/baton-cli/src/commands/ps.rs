//! `baton ps`: the project's containers as the engine reports them, with what the
//! daemon concluded about each (crash loops) and baton's own health checks.

use anyhow::Result;
use baton_control::views::ReplicaView;
use baton_engine::runtime::Health;

use crate::cli::PsArgs;
use crate::context::Context;
use crate::door::Door;

pub async fn run(ctx: &Context, args: PsArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name_with(&args.services)?;
    let view = Door::open(ctx)?.services(&name).await?;
    let known: Vec<&str> = match &project {
        Some(p) => p.services.keys().map(String::as_str).collect(),
        None => view.services.iter().map(|s| s.name.as_str()).collect(),
    };
    super::known_names(&known, &args.services)?;
    let replicas: Vec<ReplicaView> = view
        .services
        .into_iter()
        .flat_map(|s| s.replicas)
        .filter(|r| {
            (args.all || !r.oneoff)
                && (args.services.is_empty() || args.services.contains(&r.service))
        })
        .collect();
    if ctx.global.json {
        crate::output::json(&replicas)?;
        return Ok(crate::exit::OK);
    }
    let rows: Vec<Vec<String>> = replicas
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
                match &c.supervision {
                    Some(s) if s.status == "crash-looping" => format!(
                        "{} - crash-looping ({} restarts/min)",
                        c.status, s.restarts_per_minute
                    ),
                    _ => c.status.clone(),
                },
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
