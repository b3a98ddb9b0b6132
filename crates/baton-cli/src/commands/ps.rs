//! `baton ps`: the project's containers as the engine reports them, then its VMs on this
//! host (state from their process, health from one check).

use anyhow::Result;
use baton_engine::runtime::{Health, Runtime};

use crate::cli::PsArgs;
use crate::context::Context;

pub async fn run(ctx: &Context, args: PsArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name_with(&args.services)?;
    let docker = ctx.docker().await?;
    let mut observed = docker.observe(&name).await?;
    super::known_services(project.as_ref(), Some(&observed), &args.services)?;
    observed.containers.retain(|c| {
        (args.all || !c.oneoff) && (args.services.is_empty() || args.services.contains(&c.service))
    });
    observed
        .containers
        .sort_by(|a, b| (&a.service, a.replica).cmp(&(&b.service, b.replica)));
    // What the daemon concluded recently (crash-looping, backing off…).
    let now = crate::context::now_ms();
    let supervision: std::collections::BTreeMap<String, baton_state::Supervision> = ctx
        .store()
        .and_then(|s| Ok(s.supervision(&name)?))
        .unwrap_or_default()
        .into_iter()
        .filter(|s| now - s.updated_at < 120_000)
        .map(|s| (s.container.clone(), s))
        .collect();
    // baton's own health checks (x-baton.healthcheck), as the daemon last judged them.
    let probed = ctx
        .store()
        .and_then(|s| Ok(s.probe_health(&name)?))
        .unwrap_or_default();
    for c in &mut observed.containers {
        if let Some((health, _, _)) = probed.get(&c.id) {
            let verdict = if health == "healthy" {
                Health::Healthy
            } else {
                Health::Unhealthy
            };
            c.health = baton_engine::health::combine(c.health, verdict);
        }
    }
    // VMs when no service is named (a name filters containers only).
    let vms = if args.services.is_empty() {
        ctx.control_of_store()?
            .vm_ps(project.as_ref(), &name)
            .await?
    } else {
        Vec::new()
    };
    if ctx.global.json {
        let mut rows: Vec<serde_json::Value> = observed
            .containers
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c).unwrap_or_default();
                if let (Some(o), Some(s)) = (v.as_object_mut(), supervision.get(&c.name)) {
                    o.insert(
                        "supervision".into(),
                        serde_json::json!({"status": s.status, "restarts_per_minute": s.restarts}),
                    );
                }
                v
            })
            .collect();
        rows.extend(
            vms.iter()
                .map(|v| serde_json::to_value(v).unwrap_or_default()),
        );
        crate::output::json(&rows)?;
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
                match supervision.get(&c.name) {
                    Some(s) if s.status == "crash-looping" => {
                        format!("{} - crash-looping ({} restarts/min)", c.status, s.restarts)
                    }
                    _ => c.status.clone(),
                },
                c.ports.join(", "),
            ]
        })
        .collect();
    if !rows.is_empty() || vms.is_empty() {
        crate::output::table(
            &["NAME", "SERVICE", "STATE", "HEALTH", "STATUS", "PORTS"],
            &rows,
        );
    }
    if !vms.is_empty() {
        let rows: Vec<Vec<String>> = vms
            .iter()
            .map(|v| {
                vec![
                    v.name.clone(),
                    v.state.clone(),
                    v.health.clone().unwrap_or_else(|| "-".into()),
                    v.pid.map(|p| p.to_string()).unwrap_or_default(),
                    v.uptime_s.map(|u| format!("{u:.0}s")).unwrap_or_default(),
                    v.ports.join(", "),
                ]
            })
            .collect();
        crate::output::table(&["VM", "STATE", "HEALTH", "PID", "UPTIME", "PORTS"], &rows);
    }
    Ok(crate::exit::OK)
}
