//! Live logs: the output of a service's containers through the backend's `Logs`
//! capability, merged into one Server-Sent Events stream (one event per line).

use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use baton_engine::runtime::{LogOptions, OutputStream};
use futures_util::stream::{self, StreamExt};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{ApiError, ApiState, LogLineView};

/// `?follow=1&tail=100&timestamps=1`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogsQuery {
    /// Keep streaming new output until the containers stop.
    #[serde(deserialize_with = "crate::input::flag")]
    #[schemars(with = "Option<bool>")]
    pub follow: bool,
    /// Only the last N lines of each container (default 100).
    pub tail: Option<usize>,
    /// Prefix each line with the engine's RFC 3339 timestamp.
    #[serde(deserialize_with = "crate::input::flag")]
    #[schemars(with = "Option<bool>")]
    pub timestamps: bool,
}

/// The stream of the service's replicas (one-offs left out).
pub async fn stream(
    state: &Arc<ApiState>,
    project: String,
    service: String,
    q: LogsQuery,
) -> Result<Response, ApiError> {
    let Some(logs) = state.logs.clone() else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "this container backend cannot read logs",
        ));
    };
    let view = state.control.services(project.clone()).await?;
    let Some(svc) = view.services.into_iter().find(|s| s.name == service) else {
        return Err(ApiError::not_found(format!(
            "project {project} has no service {service}"
        )));
    };
    let options = LogOptions {
        follow: q.follow,
        tail: Some(q.tail.unwrap_or(100)),
        timestamps: q.timestamps,
    };
    let streams = svc.replicas.into_iter().filter(|r| !r.oneoff).map(|r| {
        let name = r.name.clone();
        logs.logs(&r.id, &options).map(move |line| {
            let event = match line {
                Ok(l) => LogLineView {
                    container: name.clone(),
                    stream: match l.stream {
                        OutputStream::Stdout => "stdout",
                        OutputStream::Stderr => "stderr",
                    }
                    .into(),
                    line: l.text,
                },
                Err(e) => LogLineView {
                    container: name.clone(),
                    stream: "error".into(),
                    line: e.to_string(),
                },
            };
            Ok::<_, std::convert::Infallible>(
                SseEvent::default().data(serde_json::to_string(&event).unwrap_or_default()),
            )
        })
    });
    let merged = stream::select_all(streams);
    Ok(Sse::new(merged)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
