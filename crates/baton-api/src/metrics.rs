//! The daemon's metrics over HTTP: `/metrics` (Prometheus text 0.0.4, or OpenMetrics
//! when the scraper asks for it) behind a token of any role, and `GET
//! /api/v1/series?query=…&from=…&to=…&step=…`, the PromQL subset evaluated over the
//! history the daemon samples. Handlers only translate: the registry and the history
//! are the daemon's (`baton_daemon::telemetry`), the language is `baton_metrics::query`.
//! Also the project's alerts as the daemon last evaluated them, with its silences, and
//! their history (reads of the store).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use baton_metrics::query::{self, QueryOptions};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ApiError, ApiState};

/// At most this many points per series when the step is left to the API.
pub const DEFAULT_POINTS: i64 = 240;

/// `/metrics`: the registry as Prometheus text, or OpenMetrics when `Accept` names it.
pub(crate) async fn exposition(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let metrics = s.daemon.telemetry.metrics.clone();
    let open = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let (body, kind) = if open {
        (
            metrics.render_openmetrics(),
            baton_metrics::OPENMETRICS_CONTENT_TYPE,
        )
    } else {
        (metrics.render(), baton_metrics::CONTENT_TYPE)
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// The parameters of `GET /series`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    /// An expression of baton's PromQL subset (docs/metrics.md).
    pub query: String,
    /// The range's start, Unix seconds (fractions allowed); default: an hour before `to`.
    pub from: Option<f64>,
    /// The range's end, Unix seconds; default: now.
    pub to: Option<f64>,
    /// Between two points: a duration (`15s`, `5m`) or seconds; default: the range
    /// over 240, at least a second.
    pub step: Option<String>,
}

/// One series of the answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SeriesView {
    /// Its labels (`__name__` included while the expression keeps it).
    pub labels: BTreeMap<String, String>,
    /// `[Unix seconds, value]`, the value `null` where it is not a finite number.
    pub points: Vec<(f64, Option<f64>)>,
}

/// The answer of `GET /series`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SeriesAnswer {
    pub query: String,
    /// Unix seconds.
    pub from: f64,
    pub to: f64,
    /// Seconds.
    pub step: f64,
    pub series: Vec<SeriesView>,
}

fn ms(seconds: f64, what: &str) -> Result<i64, ApiError> {
    if !(0.0..=1e11).contains(&seconds) {
        return Err(ApiError::bad_request(format!(
            "{what}: a Unix time in seconds, not {seconds}"
        )));
    }
    Ok((seconds * 1000.0).round() as i64)
}

fn step_ms(step: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "step: a duration such as 15s or 5m, or seconds; not {step:?}"
        ))
    };
    let ms = match step.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => (secs * 1000.0).round() as i64,
        Ok(_) => return Err(bad()),
        Err(_) => query::parse_duration(step).ok_or_else(bad)?,
    };
    if ms <= 0 {
        return Err(bad());
    }
    Ok(ms)
}

pub(crate) async fn series(
    State(s): State<Arc<ApiState>>,
    q: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SeriesAnswer>, ApiError> {
    answer(&s, q).await.map(Json)
}

/// The answer of `GET /series`, for the API's handler and the dashboard's (`/ui/series`,
/// the same JSON behind a dashboard session): the parameters checked, the expression
/// evaluated over the daemon's history off the async threads.
pub(crate) async fn answer(
    s: &ApiState,
    q: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<SeriesAnswer, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let expr =
        query::parse(&q.query).map_err(|e| ApiError::unprocessable(format!("query: {e}")))?;
    let to = match q.to {
        Some(t) => ms(t, "to")?,
        None => (s.clock)(),
    };
    let from = match q.from {
        Some(f) => ms(f, "from")?,
        None => to - 3_600_000,
    };
    if from > to {
        return Err(ApiError::bad_request("from: after to"));
    }
    let step = match &q.step {
        Some(step) => step_ms(step)?,
        None => ((to - from) / DEFAULT_POINTS).max(1000),
    };
    let Some(history) = s.daemon.telemetry.history().cloned() else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "this daemon keeps no metrics history",
        ));
    };
    let result = tokio::task::spawn_blocking(move || {
        query::range(&*history, &expr, from, to, step, &QueryOptions::default())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| match e {
        baton_metrics::QueryError::Store(e) => ApiError::internal(e.to_string()),
        other => ApiError::unprocessable(format!("query: {other}")),
    })?;
    let finite = |v: f64| v.is_finite().then_some(v);
    Ok(SeriesAnswer {
        query: q.query,
        from: from as f64 / 1000.0,
        to: to as f64 / 1000.0,
        step: step as f64 / 1000.0,
        series: result
            .into_iter()
            .map(|r| SeriesView {
                labels: r
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                points: r
                    .points
                    .into_iter()
                    .map(|(t, v)| (t as f64 / 1000.0, finite(v)))
                    .collect(),
            })
            .collect(),
    })
}

/// One alert as the daemon last evaluated it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AlertView {
    pub rule: String,
    pub fingerprint: String,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The expression's value at the last evaluation that saw it (`null`: not finite).
    pub value: Option<f64>,
    /// Unix milliseconds.
    pub active_since_ms: u64,
    pub fired_at_ms: Option<u64>,
    pub resolved_at_ms: Option<u64>,
}

/// A silence of the project.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SilenceView {
    pub id: String,
    /// `name="value"`, `name=~"regex"`…
    pub matchers: Vec<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub active: bool,
    pub comment: String,
    pub created_by: String,
}

/// `GET /projects/{project}/alerts`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AlertsAnswer {
    pub alerts: Vec<AlertView>,
    pub silences: Vec<SilenceView>,
}

/// `GET /projects/{project}/alerts/history`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AlertHistoryAnswer {
    /// Newest first.
    pub transitions: Vec<baton_state::AlertTransition>,
    /// Newest first: each notification's delivery.
    pub notifications: Vec<baton_state::NotificationRecord>,
}

pub(crate) async fn alerts(
    State(s): State<Arc<ApiState>>,
    p: crate::routes::P1,
) -> Result<Json<AlertsAnswer>, ApiError> {
    let project = crate::routes::project_of(p)?;
    let now = (s.clock)();
    crate::routes::read(&s, move |store| alerts_of(store, &project, now))
        .await
        .map(Json)
}

/// The project's alerts as the daemon last evaluated them, and its silences (active at
/// `now` or not), from the store.
pub(crate) fn alerts_of(
    store: &baton_state::Store,
    project: &str,
    now: i64,
) -> Result<AlertsAnswer, ApiError> {
    let state: baton_engine::alert::AlertsState = match store.alert_state(project)? {
        Some((rules, _)) => serde_json::from_str(&rules).unwrap_or_default(),
        None => Default::default(),
    };
    let word = |p: baton_engine::alert::Phase| {
        serde_json::to_value(p)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    Ok(AlertsAnswer {
        alerts: state
            .alerts
            .into_values()
            .map(|a| AlertView {
                state: word(a.phase),
                rule: a.rule,
                fingerprint: a.fingerprint,
                labels: a.labels,
                annotations: a.annotations,
                value: a.value.is_finite().then_some(a.value),
                active_since_ms: a.active_since_ms,
                fired_at_ms: a.fired_at_ms,
                resolved_at_ms: a.resolved_at_ms,
            })
            .collect(),
        silences: store
            .silences(project)?
            .into_iter()
            .map(|r| {
                let matchers: Vec<baton_engine::alert::Matcher> =
                    serde_json::from_str(&r.matchers_json).unwrap_or_default();
                SilenceView {
                    matchers: matchers.iter().map(ToString::to_string).collect(),
                    active: r.starts_at <= now && now < r.ends_at,
                    id: r.id,
                    starts_at: r.starts_at,
                    ends_at: r.ends_at,
                    comment: r.comment,
                    created_by: r.created_by,
                }
            })
            .collect(),
    })
}

pub(crate) async fn alert_history(
    State(s): State<Arc<ApiState>>,
    p: crate::routes::P1,
    q: crate::routes::Q<crate::routes::LimitQuery>,
) -> Result<Json<AlertHistoryAnswer>, ApiError> {
    let project = crate::routes::project_of(p)?;
    let q = crate::routes::query_of(q)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    crate::routes::read(&s, move |store| {
        Ok(AlertHistoryAnswer {
            transitions: store.alert_history(&project, limit)?,
            notifications: store.notifications(&project, limit)?,
        })
    })
    .await
    .map(Json)
}
