//! `baton plan`: what `up` would do to containers and VMs, and why; exit 0 = nothing to
//! do, 2 = changes pending.

use anyhow::Result;
use baton_engine::plan::PlanOptions;

use crate::cli::PlanArgs;
use crate::context::Context;

pub async fn run(ctx: &Context, args: PlanArgs) -> Result<u8> {
    let project = ctx.project(&args.services)?;
    let opts = PlanOptions {
        services: args.services,
        remove_orphans: args.remove_orphans,
        force_recreate: args.force_recreate,
        ..Default::default()
    };
    let prepared = ctx.control().await?.plan(&project, &opts).await?;
    let changes = !prepared.is_empty();
    let (plan, vms) = (prepared.plan, prepared.vms);
    if ctx.global.json {
        crate::output::json(&serde_json::json!({
            "project": plan.project,
            "changes": changes,
            "changed_services": plan.changed_services(),
            "actions": plan.actions.iter().map(|a| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("reason_text".into(), a.reason().into());
                }
                v
            }).collect::<Vec<_>>(),
            "up_to_date": plan.up_to_date,
            "warnings": plan.warnings,
            "vms": vms,
        }))?;
    } else {
        print!("{plan}{vms}");
    }
    Ok(if changes {
        crate::exit::CHANGES
    } else {
        crate::exit::OK
    })
}
