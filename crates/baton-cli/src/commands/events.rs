//! `baton events`: the actions and events the store recorded for the project (with
//! `--audit`, who changed what); `baton audit`: every change, all projects.

use anyhow::Result;
use baton_api::AuditView;

use crate::cli::{AuditArgs, EventsArgs};
use crate::context::Context;
use crate::door::Door;

pub async fn run(ctx: &Context, args: EventsArgs) -> Result<u8> {
    let (_, name) = ctx.project_or_name()?;
    let door = Door::open(ctx)?;
    if args.audit {
        let (entries, _) = door.audit(Some(&name), None, args.limit).await?;
        return print_audit(ctx, entries, None);
    }
    let (actions, events) = door.events(&name, args.limit).await?;
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

pub async fn audit(ctx: &Context, args: AuditArgs) -> Result<u8> {
    let (entries, next) = Door::open(ctx)?
        .audit(None, args.before, args.limit)
        .await?;
    print_audit(ctx, entries, next)
}

fn print_audit(ctx: &Context, entries: Vec<AuditView>, next: Option<i64>) -> Result<u8> {
    if ctx.global.json {
        crate::output::json(&serde_json::json!({ "items": entries, "next": next }))?;
        return Ok(crate::exit::OK);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                crate::output::time(e.at),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                e.outcome.clone(),
                e.message.clone(),
            ]
        })
        .collect();
    crate::output::table(
        &[
            "ID", "WHEN", "WHO", "ACTION", "TARGET", "OUTCOME", "MESSAGE",
        ],
        &rows,
    );
    if let Some(n) = next {
        eprintln!("older entries: --before {n}");
    }
    Ok(crate::exit::OK)
}
