//! The alerts page (`/ui/alerts`): each project's alerts as the daemon last evaluated
//! them, its silences with a button to end one, a form to make one, and the latest
//! transitions. Making and ending a silence is the same `Operation` the API and
//! `baton alerts silence|unsilence` send.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use baton_control::Operation;
use minijinja::context;
use serde::Serialize;

use super::actions::answer;
use super::pages::{respond, view, PageError, Q};
use super::{base, form_field, Session, D};
use crate::dashboard::pages::Result;
use crate::input::name;
use crate::metrics::{alerts_of, AlertView, SilenceView};
use crate::routes::read;
use crate::ApiError;

/// How many transitions a project shows.
const HISTORY: i64 = 15;

/// The durations the form offers, as the API takes them.
const DURATIONS: [&str; 6] = ["30m", "1h", "2h", "4h", "1d", "1w"];

/// A transition as the page shows it.
#[derive(Debug, Serialize)]
struct TransitionRow {
    at: i64,
    alertname: String,
    labels: String,
    from: String,
    to: String,
    value: Option<f64>,
}

/// One project's section.
#[derive(Debug, Serialize)]
struct Section {
    project: String,
    /// Firing first, then pending, then resolved.
    alerts: Vec<AlertView>,
    silences: Vec<SilenceView>,
    history: Vec<TransitionRow>,
    firing: usize,
}

/// `a="x", b="y"` without the alertname and project (the page shows those).
fn label_line(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname" && k.as_str() != "project")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn order(state: &str) -> u8 {
    match state {
        "firing" => 0,
        "pending" => 1,
        _ => 2,
    }
}

pub(crate) async fn page(State(d): D, Extension(s): Extension<Session>, q: Q) -> Result<Response> {
    let q = view(q)?;
    let now = (d.api.clock)();
    let sections = read(&d.api, move |store| {
        let mut out = Vec::new();
        for p in store.projects()? {
            let answer = alerts_of(store, &p.name, now)?;
            let mut alerts = answer.alerts;
            alerts.sort_by(|a, b| {
                (order(&a.state), std::cmp::Reverse(a.active_since_ms))
                    .cmp(&(order(&b.state), std::cmp::Reverse(b.active_since_ms)))
            });
            let history = store
                .alert_history(&p.name, HISTORY)?
                .into_iter()
                .map(|t| {
                    let labels: std::collections::BTreeMap<String, String> =
                        serde_json::from_str(&t.labels_json).unwrap_or_default();
                    TransitionRow {
                        at: t.at,
                        alertname: labels.get("alertname").cloned().unwrap_or(t.rule),
                        labels: label_line(&labels),
                        from: t.from_phase,
                        to: t.to_phase,
                        value: t.value.filter(|v| v.is_finite()),
                    }
                })
                .collect();
            out.push(Section {
                firing: alerts.iter().filter(|a| a.state == "firing").count(),
                project: p.name,
                alerts,
                silences: answer.silences,
                history,
            });
        }
        Ok(out)
    })
    .await?;
    let ctx = context! {
        sections => sections,
        durations => DURATIONS,
        ..base(&s, now, "alerts", "Alerts", "/ui/live")
    };
    respond("alerts.html", &["live"], q.fragment.as_deref(), &ctx)
}

/// Matchers as one line of text: `service="web" severity=~"page|critical"`, separated
/// by spaces or commas outside double quotes.
pub(crate) fn split_matchers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        if quoted {
            cur.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                cur.push(c);
            }
            ',' | ' ' | '\t' | '\n' | '\r' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

type P1 = std::result::Result<Path<String>, axum::extract::rejection::PathRejection>;
type P2 = std::result::Result<Path<(String, String)>, axum::extract::rejection::PathRejection>;

/// `POST /ui/projects/{project}/silences` with `matchers`, `duration` and `comment`.
pub(crate) async fn silence(
    State(d): D,
    Extension(s): Extension<Session>,
    p: P1,
    body: Bytes,
) -> std::result::Result<Response, PageError> {
    let Path(project) = p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    let project = name("project", &project)?;
    let matchers = split_matchers(&form_field(&body, "matchers").unwrap_or_default());
    let duration = form_field(&body, "duration").unwrap_or_else(|| "2h".into());
    let duration_secs = crate::input::silence_secs(&duration)?;
    let comment = form_field(&body, "comment").unwrap_or_default();
    if comment.len() > 1000 {
        return Err(PageError(ApiError::unprocessable(
            "a silence's comment is at most 1000 bytes",
        )));
    }
    let op = Operation::Silence {
        project: project.clone(),
        matchers,
        duration_secs,
        comment,
    };
    answer(&d, &s, op, &format!("silence in {project}")).await
}

/// `POST /ui/projects/{project}/silences/{id}/end`.
pub(crate) async fn unsilence(
    State(d): D,
    Extension(s): Extension<Session>,
    p: P2,
) -> std::result::Result<Response, PageError> {
    let Path((project, id)) = p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    let project = name("project", &project)?;
    let op = Operation::Unsilence {
        project,
        id: id.clone(),
    };
    answer(&d, &s, op, &format!("end of silence {id}")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_split_outside_quotes() {
        assert_eq!(
            split_matchers(r#"service="web app", severity=~"page|crit"  x!="a,b\"c""#),
            vec![
                r#"service="web app""#.to_string(),
                r#"severity=~"page|crit""#.to_string(),
                r#"x!="a,b\"c""#.to_string(),
            ]
        );
        assert!(split_matchers("  , ").is_empty());
    }
}
