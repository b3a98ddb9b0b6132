//! `baton ps`: the project's containers as the engine reports them, then its VMs on this
//! host (state from their process, health from one check).

use anyhow::Result;
use baton_control::views::ReplicaView;
use baton_engine::runtime::Health;

use crate::cli::PsArgs;
use crate::context::Context;
use crate::door::Door;

pub async fn run(ctx: &Context, args: PsArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name_with(&args.services)?;
    let door = Door::open(ctx)?;
    let mut view = door.services(&name).await?;
    let known: Vec<&str> = match &project {
        Some(p) => p.services.keys().map(String::as_str).collect(),
        None => view.services.iter().map(|s| s.name.as_str()).collect(),
    };
    super::known_names(&known, &args.services)?;
    // A target that keeps services itself: its tasks or pods.
    if let Some(tasks) = view.tasks.take() {
        return super::orchestrated::ps(ctx, tasks, &args.services, args.all);
    }
    let replicas: Vec<ReplicaView> = view
        .services
        .into_iter()
        .flat_map(|s| s.replicas)
        .filter(|r| {
            (args.all || !r.oneoff)
                && (args.services.is_empty() || args.services.contains(&r.service))
        })
        .collect();
    // VMs when no service is named (a name filters containers only); they are this
    // host's, so a remote door shows containers only.
    let vms = if args.services.is_empty() && !door.is_remote() {
        ctx.control_of_store()?
            .vm_ps(project.as_ref(), &name)
            .await?
    } else {
        Vec::new()
    };
    if ctx.global.json {
        let mut rows: Vec<serde_json::Value> = replicas
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect();
        rows.extend(
            vms.iter()
                .map(|v| serde_json::to_value(v).unwrap_or_default()),
        );
        crate::output::json(&rows)?;
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
