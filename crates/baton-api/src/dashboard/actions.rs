//! The dashboard's buttons: each is the `baton_control::Operation` the API would send,
//! carried out for the session's principal (operators and admins only, audited by the
//! control plane), answered with a short message for the page's status line.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use baton_control::{Actor, Operation, VmAction};
use baton_state::RolloutRequest;
use minijinja::context;

use super::pages::PageError;
use super::{form_field, render, Dash, Session};
use crate::input::name;
use crate::routes::read;
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
    answer(&d, &s, op, &format!("{action} of {service}")).await
}

/// Carries out `op` and answers with the status line: `what` and how it went, or why it
/// was refused (with the refusal's status: 403 for a viewer, 409 for a conflict…).
pub(crate) async fn answer(
    d: &Dash,
    s: &Session,
    op: Operation,
    what: &str,
) -> Result<Response, PageError> {
    let project = op.project().to_string();
    let done = act(d, s, op).await;
    // What the project looks like is news after a change, even a refused one.
    if !project.is_empty() {
        d.api.services.forget(&project);
        d.services.forget(&project);
    }
    match done {
        Ok((ok, line)) => flash(ok, &format!("{what}: {line}")),
        Err(PageError(e)) => {
            let status = e.status;
            let mut r = flash(false, &format!("{what} refused: {}", e.message))?;
            *r.status_mut() = status;
            Ok(r)
        }
    }
}

type P2 = Result<Path<(String, String)>, axum::extract::rejection::PathRejection>;
type P3 = Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>;

/// `POST …/pipelines/runs/{run}/{rerun|cancel}`: run again what did not pass, or ask
/// the run's process to stop.
pub(crate) async fn pipeline(
    State(d): D,
    Extension(s): Extension<Session>,
    p: P3,
) -> Result<Response, PageError> {
    let Path((project, run, action)) =
        p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    let project = name("project", &project)?;
    let run: i64 = run
        .parse()
        .map_err(|_| ApiError::bad_request(format!("run {run:?} is not a run id")))?;
    let op = match action.as_str() {
        "cancel" => Operation::PipelineCancel {
            project: project.clone(),
            run,
        },
        "rerun" => {
            let of = project.clone();
            let earlier = read(&d.api, move |store| {
                store
                    .pipeline_run(run)?
                    .filter(|r| r.project == of)
                    .ok_or_else(|| ApiError::not_found(format!("project {of} has no run {run}")))
            })
            .await?;
            Operation::PipelineRun {
                project: project.clone(),
                pipeline: earlier.pipeline,
                vars: earlier.vars,
                rerun_of: Some(run),
                spec: None,
            }
        }
        other => {
            return Err(PageError(ApiError::not_found(format!(
                "no pipeline action {other:?}: rerun or cancel"
            ))))
        }
    };
    answer(&d, &s, op, &format!("{action} of run {run}")).await
}

/// `POST /ui/vms/{vm}/{start|stop|restart|snapshot}` (a snapshot takes optional `name`
/// and `note` fields).
pub(crate) async fn vm(
    State(d): D,
    Extension(s): Extension<Session>,
    p: P2,
    body: Bytes,
) -> Result<Response, PageError> {
    let Path((vm, action)) = p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    let vm = name("vm", &vm)?;
    let field = |f: &str| form_field(&body, f).filter(|v| !v.trim().is_empty());
    let act = match action.as_str() {
        "start" => VmAction::Start,
        "stop" => VmAction::Stop { timeout_secs: None },
        "restart" => VmAction::Restart { timeout_secs: None },
        "snapshot" => {
            let snapshot = field("name")
                .map(|n| name("snapshot", n.trim()))
                .transpose()?;
            let note = field("note");
            if note.as_ref().is_some_and(|n| n.len() > 1000) {
                return Err(PageError(ApiError::unprocessable(
                    "a snapshot's note is at most 1000 bytes",
                )));
            }
            VmAction::Snapshot {
                name: snapshot,
                note,
            }
        }
        other => {
            return Err(PageError(ApiError::not_found(format!(
                "no VM action {other:?}: start, stop, restart or snapshot"
            ))))
        }
    };
    let op = Operation::Vm {
        vm: vm.clone(),
        action: act,
    };
    answer(&d, &s, op, &format!("{action} of {vm}")).await
}

/// `POST /ui/vms/{vm}/snapshots/{snapshot}/restore`.
pub(crate) async fn vm_restore(
    State(d): D,
    Extension(s): Extension<Session>,
    p: P2,
) -> Result<Response, PageError> {
    let Path((vm, snapshot)) = p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    let vm = name("vm", &vm)?;
    let snapshot = name("snapshot", &snapshot)?;
    let op = Operation::Vm {
        vm: vm.clone(),
        action: VmAction::Restore {
            snapshot: snapshot.clone(),
        },
    };
    answer(&d, &s, op, &format!("restore of {vm} to {snapshot}")).await
}
