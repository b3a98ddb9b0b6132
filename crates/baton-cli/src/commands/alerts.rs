//! `baton alerts`: the project's alerts as the daemon last evaluated them (`ls`), their
//! transitions and deliveries (`history`), silences (`silence`, `unsilence`), and a test
//! notification to one receiver (`test RECEIVER`). Reads and writes the store the daemon
//! uses; a silence applies from the daemon's next evaluation.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use baton_control::{Operation, Outcome};
use baton_engine::alert::{self, AlertsState, Matcher, Notification, Status};
use baton_engine::apply::Silent;
use clap::{Args, Subcommand};

use crate::context::{now_ms, Context};
use crate::door::Door;

#[derive(Debug, Clone, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub action: AlertsAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AlertsAction {
    /// Alerts pending, firing and lately resolved, and the silences
    Ls,
    /// Alert transitions and notification deliveries, newest first
    History {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Silence the alerts whose labels match every MATCHER (`service="web"`,
    /// `severity=~"page|critical"`); prints the silence's id
    Silence {
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// How long it lasts
        #[arg(long, default_value = "2h")]
        duration: humantime::Duration,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// End a silence now
    Unsilence { id: String },
    /// Send a test notification to a receiver of the file's `alerts:` now
    Test { receiver: String },
}

pub async fn run(ctx: &Context, args: AlertsArgs) -> Result<u8> {
    match args.action {
        AlertsAction::Ls => ls(ctx),
        AlertsAction::History { limit } => history(ctx, limit),
        AlertsAction::Silence {
            matchers,
            duration,
            comment,
        } => {
            let duration: std::time::Duration = duration.into();
            let (_, project) = ctx.project_or_name()?;
            let op = Operation::Silence {
                project,
                matchers,
                duration_secs: duration.as_secs(),
                comment,
            };
            match Door::open(ctx)?.execute(op, &Silent).await? {
                Outcome::Silenced(s) if ctx.global.json => crate::output::json(&s)?,
                Outcome::Silenced(s) => println!("{}", s.id),
                other => bail!("unexpected answer: {other:?}"),
            }
            Ok(crate::exit::OK)
        }
        AlertsAction::Unsilence { id } => {
            let (_, project) = ctx.project_or_name()?;
            let op = Operation::Unsilence { project, id };
            if let Outcome::Unsilenced { id } = Door::open(ctx)?.execute(op, &Silent).await? {
                println!("silence {id} ended");
            }
            Ok(crate::exit::OK)
        }
        AlertsAction::Test { receiver } => test(ctx, &receiver).await,
    }
}

fn ls(ctx: &Context) -> Result<u8> {
    let (_, name) = ctx.project_or_name()?;
    let store = ctx.store()?;
    let state: AlertsState = match store.alert_state(&name)? {
        Some((rules, _)) => serde_json::from_str(&rules)?,
        None => AlertsState::default(),
    };
    let silences = store.silences(&name)?;
    if ctx.global.json {
        crate::output::json(&serde_json::json!({
            "alerts": state.alerts.values().collect::<Vec<_>>(),
            "silences": silences,
        }))?;
        return Ok(crate::exit::OK);
    }
    let rows: Vec<Vec<String>> = state
        .alerts
        .values()
        .map(|a| {
            vec![
                a.rule.clone(),
                serde_json::to_value(a.phase)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                alert::labels_text(&a.labels),
                a.value.to_string(),
                crate::output::time(a.fired_at_ms.unwrap_or(a.active_since_ms) as i64),
            ]
        })
        .collect();
    crate::output::table(&["RULE", "STATE", "LABELS", "VALUE", "SINCE"], &rows);
    let now = now_ms();
    let rows: Vec<Vec<String>> = silences
        .iter()
        .map(|s| {
            let matchers: Vec<Matcher> = serde_json::from_str(&s.matchers_json).unwrap_or_default();
            vec![
                s.id.clone(),
                matchers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                if s.ends_at <= now {
                    "expired".into()
                } else {
                    format!("until {}", crate::output::time(s.ends_at))
                },
                s.comment.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        println!();
        crate::output::table(&["SILENCE", "MATCHERS", "STATE", "COMMENT"], &rows);
    }
    Ok(crate::exit::OK)
}

fn history(ctx: &Context, limit: i64) -> Result<u8> {
    let (_, name) = ctx.project_or_name()?;
    let store = ctx.store()?;
    let transitions = store.alert_history(&name, limit)?;
    let deliveries = store.notifications(&name, limit)?;
    if ctx.global.json {
        crate::output::json(&serde_json::json!({
            "transitions": transitions,
            "notifications": deliveries,
        }))?;
        return Ok(crate::exit::OK);
    }
    for t in &transitions {
        let labels: alert::Labels = serde_json::from_str(&t.labels_json).unwrap_or_default();
        println!(
            "{} {} {}: {} -> {}{}",
            crate::output::time(t.at),
            t.rule,
            alert::labels_text(&labels),
            t.from_phase,
            t.to_phase,
            t.value.map(|v| format!(" ({v})")).unwrap_or_default()
        );
    }
    for n in &deliveries {
        println!(
            "{} notification to {} ({}, {} alert(s), {} attempt(s)): {}",
            crate::output::time(n.at),
            n.receiver,
            n.status,
            n.alerts,
            n.attempts,
            n.outcome
        );
    }
    Ok(crate::exit::OK)
}

async fn test(ctx: &Context, receiver: &str) -> Result<u8> {
    let project = ctx.project(&[])?;
    let spec = alert::alerts_spec(&project).map_err(|e| anyhow!("{e}"))?;
    let Some(r) = spec.receivers.get(receiver) else {
        let known: Vec<&str> = spec.receivers.keys().map(String::as_str).collect();
        bail!(
            "no receiver {receiver:?} in alerts.receivers (there are: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let now = now_ms() as u64;
    let labels: alert::Labels = [
        ("alertname".to_string(), "BatonTest".to_string()),
        ("project".to_string(), project.name.clone()),
    ]
    .into();
    let view = alert::AlertView {
        fingerprint: alert::fingerprint(&labels),
        status: Status::Firing,
        labels: labels.clone(),
        annotations: [(
            "summary".to_string(),
            format!("a test notification from baton to {receiver}"),
        )]
        .into(),
        starts_at_ms: now,
        ends_at_ms: None,
        value: 1.0,
    };
    let n = Notification {
        at_ms: now,
        receiver: receiver.to_string(),
        group_key: format!("{receiver}:test"),
        group_labels: BTreeMap::new(),
        status: Status::Firing,
        common_labels: labels,
        firing: vec![view],
        resolved: Vec::new(),
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    match baton_daemon::alerts::deliver(r, &n, &env).await {
        Ok(()) => {
            println!("delivered a test notification to {receiver}");
            Ok(crate::exit::OK)
        }
        Err(e) => bail!("{receiver}: {e}"),
    }
}
