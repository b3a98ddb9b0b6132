//! The dashboard's buttons: each is the `baton_control::Operation` the API would send,
//! carried out for the session's principal (operators and admins only, audited by the
//! control plane), answered with a short message for the page's status line.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use baton_control::{Actor, Operation};
use baton_state::RolloutRequest;
use minijinja::context;

use super::pages::PageError;
use super::{form_field, render, Dash, Session};
use crate::input::name;
use crate::{require, ApiError, Role};

type D = State<Arc<Dash>>;

/// The status line after an action: what was asked and how it went.
fn flash(ok: bool, message: &str) -> Result<Response, PageError> {
    let body = render::render(
        "flash.html",
        None,
        &context! { ok => ok, message => message },
    )?;
    Ok(render::html(StatusCode::OK, body))
}

/// Carries out `op` for the session's principal; wakes the daemon so it acts at once.
async fn act(d: &Dash, s: &Session, op: Operation) -> Result<(bool, String), PageError> {
    require(Some(&s.principal), Role::Operator)?;
    let outcome = d
        .api
        .control
        .execute(Actor(s.principal.name.clone()), op)
        .await?;
    d.api.daemon.wake.notify_one();
    Ok(outcome.summary())
}

/// `POST …/services/{service}/rollout/{promote|abort|resume|undo}` (undo takes an
/// optional `to_revision` field).
pub(crate) async fn rollout(
    State(d): D,
    Extension(s): Extension<Session>,
    p: Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>,
    body: Bytes,
) -> Result<Response, PageError> {
    let Path((project, service, action)) =
        p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    let project = name("project", &project)?;
    let service = name("service", &service)?;
    let request = match action.as_str() {
        "promote" => Some(RolloutRequest::Promote),
        "abort" => Some(RolloutRequest::Abort),
        "resume" => Some(RolloutRequest::Resume),
        "undo" => None,
        other => {
            return Err(PageError(ApiError::not_found(format!(
                "no rollout action {other:?}: promote, abort, resume or undo"
            ))))
        }
    };
    let op = match request {
        Some(request) => Operation::Rollout {
            project,
            service: service.clone(),
            request,
        },
        None => {
            let to_revision = match form_field(&body, "to_revision").as_deref() {
                None | Some("") => None,
                Some(n) => Some(n.parse::<i64>().map_err(|_| {
                    ApiError::unprocessable(format!("to_revision {n:?} is not a revision number"))
                })?),
            };
            Operation::Undo {
                project,
                service: service.clone(),
                to_revision,
            }
        }
    };
    match act(&d, &s, op).await {
        Ok((ok, line)) => flash(ok, &format!("{action} of {service}: {line}")),
        Err(PageError(e)) => {
            let status = e.status;
            let mut r = flash(
                false,
                &format!("{action} of {service} refused: {}", e.message),
            )?;
            *r.status_mut() = status;
            Ok(r)
        }
    }
}
