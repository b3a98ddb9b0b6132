//! `baton plan`: what `up` would do and why; exit 0 = nothing to do, 2 = changes pending.

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
    let plan = ctx.control().await?.plan(&project, &opts).await?.plan;
    if ctx.global.json {
        crate::output::json(&serde_json::json!({
            "project": plan.project,
            "changes": !plan.is_empty(),
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
        }))?;
    } else {
        print!("{plan}");
    }
    Ok(if plan.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::CHANGES
    })
}
