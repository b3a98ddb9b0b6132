//! `baton stats`: one sample of CPU, memory, network and pids per running container.

use anyhow::Result;
use baton_engine::runtime::{ContainerState, Runtime};
use futures_util::future::join_all;

use super::containers_of;
use super::images::human_bytes;
use crate::cli::ServicesArgs;
use crate::context::Context;

pub async fn run(ctx: &Context, args: ServicesArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name_with(&args.services)?;
    let backend = ctx.backend().await?;
    let stats = backend.need_stats()?;
    let observed = backend.observe(&name).await?;
    super::known_services(project.as_ref(), Some(&observed), &args.services)?;
    let mut running: Vec<_> = containers_of(&observed, &args.services)
        .into_iter()
        .filter(|c| c.state == ContainerState::Running)
        .collect();
    running.sort_by(|a, b| a.name.cmp(&b.name));
    let samples = join_all(running.iter().map(|c| stats.stats_once(&c.id))).await;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for (c, s) in running.iter().zip(samples) {
        let s = s?;
        rows.push(vec![
            c.name.clone(),
            format!("{:.2}%", s.cpu_percent),
            format!(
                "{} / {}",
                human_bytes(s.mem_usage),
                human_bytes(s.mem_limit)
            ),
            format!("{} / {}", human_bytes(s.net_rx), human_bytes(s.net_tx)),
            s.pids.to_string(),
        ]);
        json.push(serde_json::json!({
            "name": c.name, "service": c.service, "cpu_percent": s.cpu_percent,
            "mem_usage": s.mem_usage, "mem_limit": s.mem_limit,
            "net_rx": s.net_rx, "net_tx": s.net_tx, "pids": s.pids,
        }));
    }
    if ctx.global.json {
        crate::output::json(&json)?;
    } else {
        crate::output::table(
            &["NAME", "CPU", "MEM USAGE / LIMIT", "NET RX / TX", "PIDS"],
            &rows,
        );
    }
    Ok(crate::exit::OK)
}
