//! `baton events`: the actions and events the store recorded for the project.

use anyhow::Result;

use crate::cli::EventsArgs;
use crate::context::Context;

pub fn run(ctx: &Context, args: EventsArgs) -> Result<u8> {
    let (_, name) = ctx.project_or_name()?;
    let store = ctx.store()?;
    let actions = store.actions(&name, args.limit)?;
    let events = store.events(&name, args.limit)?;
    if ctx.global.json {
        crate::output::json(&serde_json::json!({ "actions": actions, "events": events }))?;
        return Ok(crate::exit::OK);
    }
    let rows: Vec<Vec<String>> = actions
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                format!("{:?}", a.status).to_lowercase(),
                a.kind.clone(),
                a.target.clone(),
                a.error.clone().unwrap_or_else(|| a.reason.clone()),
            ]
        })
        .collect();
    crate::output::table(
        &["ID", "STATUS", "ACTION", "TARGET", "REASON / ERROR"],
        &rows,
    );
    for e in events {
        println!(
            "{} {} {}: {}",
            crate::output::time(e.at),
            e.kind,
            e.subject,
            e.message
        );
    }
    Ok(crate::exit::OK)
}
