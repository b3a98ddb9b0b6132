//! The route table: every route with its method, path, role, parameters and answer —
//! the one list that builds the router and the OpenAPI document — and the handlers,
//! each a translation from HTTP into a read or a `baton_control::Operation` and back.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Extension, Json, Router};
use baton_control::{Actor, Operation, Outcome, RolloutView, ServicesView, UpOutcome};
use baton_state::{Event, Store};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;

use crate::input::{name, Body, Page, PageQuery, DEFAULT_LIMIT, MAX_LIMIT};
use crate::logs::LogsQuery;
use crate::tokens::{self, CreatedToken, Principal, Role, TokenView};
use crate::views::*;
use crate::{ApiError, ApiState, PREFIX};

type St = State<Arc<ApiState>>;

/// A schema for the document, made when the document is.
pub(crate) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

fn inline<T: JsonSchema>(_: &mut SchemaGenerator) -> Schema {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>()
}

/// What a route answers with.
#[derive(Clone, Copy)]
pub(crate) enum Answer {
    Json(SchemaFn),
    /// `text/event-stream`.
    EventStream,
    /// The bytes of a file.
    Bytes,
    /// 204, nothing.
    Empty,
}

/// One route.
pub(crate) struct Route {
    pub method: &'static str,
    /// Below [`PREFIX`], in axum's syntax (`{project}`, `{*path}`).
    pub path: &'static str,
    /// `None`: served without a token (the OpenAPI document).
    pub role: Option<Role>,
    pub summary: &'static str,
    pub query: Option<SchemaFn>,
    pub body: Option<SchemaFn>,
    pub answer: Answer,
    pub handler: MethodRouter<Arc<ApiState>>,
}

fn route(
    method: &'static str,
    path: &'static str,
    role: Option<Role>,
    summary: &'static str,
    handler: MethodRouter<Arc<ApiState>>,
) -> Route {
    Route {
        method,
        path,
        role,
        summary,
        query: None,
        body: None,
        answer: Answer::Empty,
        handler,
    }
}

impl Route {
    fn query<Q: JsonSchema>(mut self) -> Route {
        self.query = Some(inline::<Q>);
        self
    }
    fn body<B: JsonSchema>(mut self) -> Route {
        self.body = Some(schema::<B>);
        self
    }
    fn json<R: JsonSchema>(mut self) -> Route {
        self.answer = Answer::Json(schema::<R>);
        self
    }
    fn stream(mut self) -> Route {
        self.answer = Answer::EventStream;
        self
    }
    fn bytes(mut self) -> Route {
        self.answer = Answer::Bytes;
        self
    }
}

const V: Option<Role> = Some(Role::Viewer);
const O: Option<Role> = Some(Role::Operator);
const A: Option<Role> = Some(Role::Admin);

/// Every route of the API.
pub(crate) fn table() -> Vec<Route> {
    vec![
        route("GET", "/openapi.json", None, "this document", get(openapi))
            .json::<serde_json::Value>(),
        route(
            "GET",
            "/status",
            V,
            "the daemon: pid, version, uptime, ticks, projects, proxies",
            get(status),
        )
        .json::<baton_daemon::api::Status>(),
        route(
            "GET",
            "/edge",
            V,
            "the edge: its listeners, every host and path route with its target, the certificates and their expiry, refused projects (null while no project has routes)",
            get(edge),
        )
        .json::<Option<baton_daemon::edge::EdgeStatus>>(),
        route(
            "GET",
            "/projects",
            V,
            "the projects the daemon's store knows",
            get(projects),
        )
        .json::<Vec<ProjectView>>(),
        route(
            "GET",
            "/projects/{project}/services",
            V,
            "services with their replicas (state, health, restarts, uptime, ports)",
            get(services),
        )
        .json::<ServicesView>(),
        route(
            "GET",
            "/projects/{project}/rollouts",
            V,
            "rollouts (strategy, phase, step, weight, history), oldest first",
            get(rollouts),
        )
        .query::<RolloutsQuery>()
        .json::<Vec<RolloutView>>(),
        route(
            "GET",
            "/projects/{project}/traffic",
            V,
            "the proxies of the project's services with live per-revision metrics",
            get(traffic),
        )
        .json::<Vec<baton_daemon::api::ProxyStatus>>(),
        route(
            "GET",
            "/projects/{project}/revisions",
            V,
            "the project's spec revisions",
            get(revisions),
        )
        .json::<Vec<baton_state::Revision>>(),
        route(
            "GET",
            "/projects/{project}/events",
            V,
            "the project's events, newest first, paged",
            get(project_events),
        )
        .query::<PageQuery>()
        .json::<Page<Event>>(),
        route(
            "GET",
            "/projects/{project}/actions",
            V,
            "the newest engine actions (intent and outcome) of the project",
            get(actions),
        )
        .query::<LimitQuery>()
        .json::<Vec<baton_state::ActionRecord>>(),
        route(
            "GET",
            "/projects/{project}/services/{service}/logs",
            V,
            "the output of the service's replicas, one event per line (follow=1 to keep streaming)",
            get(logs),
        )
        .query::<LogsQuery>()
        .stream(),
        route(
            "GET",
            "/projects/{project}/services/{service}/update",
            V,
            "on a target that keeps services itself (swarm, kubernetes): where its last update of the service stands; null elsewhere (the rollouts say it)",
            get(update_status),
        )
        .json::<Option<baton_engine::orchestrate::UpdateStatus>>(),
        route(
            "GET",
            "/events",
            V,
            "every event as it happens (Server-Sent Events; Last-Event-ID resumes)",
            get(event_stream),
        )
        .query::<StreamQuery>()
        .stream(),
        route(
            "GET",
            "/projects/{project}/pipelines/runs",
            V,
            "pipeline runs, newest first",
            get(pipeline_runs),
        )
        .query::<RunsQuery>()
        .json::<Vec<PipelineRunView>>(),
        route(
            "GET",
            "/projects/{project}/pipelines/runs/{run}",
            V,
            "a run with its jobs and artifacts",
            get(pipeline_run),
        )
        .json::<RunDetail>(),
        route(
            "GET",
            "/projects/{project}/pipelines/runs/{run}/artifacts/{*path}",
            V,
            "an artifact's bytes",
            get(artifact),
        )
        .bytes(),
        route(
            "GET",
            "/vms",
            V,
            "the virtual machines of this host",
            get(vms),
        )
        .json::<Vec<VmView>>(),
        route(
            "GET",
            "/vms/{vm}/snapshots",
            V,
            "a VM's snapshots",
            get(snapshots),
        )
        .json::<Vec<SnapshotView>>(),
        route(
            "GET",
            "/projects/{project}/fleet/runs",
            V,
            "recorded fleet runs with per-host results, newest first",
            get(fleet_runs),
        )
        .query::<LimitQuery>()
        .json::<Vec<FleetRunView>>(),
        route(
            "GET",
            "/projects/{project}/fleet/hosts",
            V,
            "hosts as the newest run that reached each saw them",
            get(fleet_hosts),
        )
        .json::<Vec<FleetHostView>>(),
        route(
            "GET",
            "/projects/{project}/files",
            V,
            "managed files with their versions and where each host stands",
            get(files),
        )
        .json::<Vec<ManagedFileView>>(),
        route(
            "POST",
            "/projects/{project}/up",
            O,
            "converge to the project sent (as `baton up -d`)",
            post(up),
        )
        .body::<UpBody>()
        .json::<UpOutcome>(),
        route(
            "POST",
            "/projects/{project}/down",
            O,
            "remove the project's containers and networks",
            post(down),
        )
        .body::<DownBody>()
        .json::<baton_control::DownOutcome>(),
        route(
            "POST",
            "/projects/{project}/scale",
            O,
            "set replica counts",
            post(scale),
        )
        .body::<ScaleBody>()
        .json::<UpOutcome>(),
        route(
            "POST",
            "/projects/{project}/start",
            O,
            "start the services' stopped containers",
            post(start),
        )
        .body::<ServicesBody>()
        .json::<Vec<baton_control::ContainerResult>>(),
        route(
            "POST",
            "/projects/{project}/stop",
            O,
            "stop the services' containers (the daemon leaves them stopped)",
            post(stop),
        )
        .body::<StopBody>()
        .json::<Vec<baton_control::ContainerResult>>(),
        route(
            "POST",
            "/projects/{project}/restart",
            O,
            "stop and start the services' containers",
            post(restart),
        )
        .body::<StopBody>()
        .json::<Vec<baton_control::ContainerResult>>(),
        route(
            "POST",
            "/projects/{project}/services/{service}/rollout/promote",
            O,
            "skip the remaining pauses and steps of the running rollout",
            post(promote),
        )
        .body::<EmptyBody>()
        .json::<baton_control::RequestOutcome>(),
        route(
            "POST",
            "/projects/{project}/services/{service}/rollout/abort",
            O,
            "roll back the running or paused rollout",
            post(abort),
        )
        .body::<EmptyBody>()
        .json::<baton_control::RequestOutcome>(),
        route(
            "POST",
            "/projects/{project}/services/{service}/rollout/resume",
            O,
            "go on with a paused rollout",
            post(resume),
        )
        .body::<EmptyBody>()
        .json::<baton_control::RequestOutcome>(),
        route(
            "POST",
            "/projects/{project}/services/{service}/rollout/undo",
            O,
            "roll the service back to an earlier revision's configuration",
            post(undo),
        )
        .body::<UndoBody>()
        .json::<baton_control::Undone>(),
        route("POST", "/projects/{project}/pipelines/{pipeline}/run", O, "start a run of a pipeline (answered with its id; the run goes on, its jobs are events)", post(pipeline_run_start))
            .body::<PipelineRunBody>()
            .json::<RunRef>(),
        route("POST", "/projects/{project}/pipelines/runs/{run}/rerun", O, "run again what did not pass in a run", post(pipeline_rerun))
            .body::<RerunBody>()
            .json::<RunRef>(),
        route("POST", "/projects/{project}/pipelines/runs/{run}/cancel", O, "cancel a running run (its jobs are killed, rollbacks run)", post(pipeline_cancel))
            .body::<EmptyBody>()
            .json::<RunRef>(),
        route("POST", "/vms/{vm}/start", O, "start a VM this host knows", post(vm_start))
            .body::<EmptyBody>()
            .json::<Vec<baton_control::VmStarted>>(),
        route("POST", "/vms/{vm}/stop", O, "ACPI power-down, forced after the timeout", post(vm_stop))
            .body::<VmStopBody>()
            .json::<Vec<baton_control::VmStopped>>(),
        route("POST", "/vms/{vm}/restart", O, "stop, then start again", post(vm_restart))
            .body::<VmStopBody>()
            .json::<Vec<baton_control::VmStarted>>(),
        route("POST", "/vms/{vm}/snapshots", O, "take a live snapshot, then apply the VM's snapshot policy", post(vm_snapshot))
            .body::<SnapshotBody>()
            .json::<baton_control::SnapshotTaken>(),
        route("POST", "/vms/{vm}/snapshots/{snapshot}/restore", O, "bring the VM back to a snapshot (memory and disks)", post(vm_restore))
            .body::<EmptyBody>()
            .json::<Restored>(),
        route(
            "GET",
            "/projects/{project}/alerts",
            V,
            "the project's alerts as the daemon last evaluated them, and its silences",
            get(crate::metrics::alerts),
        )
        .json::<crate::metrics::AlertsAnswer>(),
        route(
            "GET",
            "/projects/{project}/alerts/history",
            V,
            "alert transitions and notification deliveries, newest first",
            get(crate::metrics::alert_history),
        )
        .query::<LimitQuery>()
        .json::<crate::metrics::AlertHistoryAnswer>(),
        route("POST", "/projects/{project}/silences", O, "silence the project's alerts that match every matcher, for a while, saying why", post(silence))
            .body::<SilenceBody>()
            .json::<baton_control::Silenced>(),
        route("DELETE", "/projects/{project}/silences/{id}", O, "end a silence now (it stays listed, expired)", delete(unsilence))
            .json::<Unsilenced>(),
        route(
            "GET",
            "/series",
            V,
            "a range query of baton's PromQL subset over the daemon's metrics history",
            get(crate::metrics::series),
        )
        .query::<crate::metrics::SeriesQuery>()
        .json::<crate::metrics::SeriesAnswer>(),
        route(
            "GET",
            "/audit",
            A,
            "every change, who made it and how it went, newest first, paged",
            get(audit),
        )
        .query::<PageQuery>()
        .json::<Page<AuditView>>(),
        route(
            "GET",
            "/tokens",
            A,
            "the API tokens (never their secrets)",
            get(token_list),
        )
        .json::<Vec<TokenView>>(),
        route(
            "POST",
            "/tokens",
            A,
            "make a token; its secret is in the answer only",
            post(token_create),
        )
        .body::<TokenBody>()
        .json::<CreatedToken>(),
        route(
            "DELETE",
            "/tokens/{name}",
            A,
            "revoke a token",
            delete(token_revoke),
        ),
    ]
}

/// A route as the outside sees it (for tests and docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: &'static str,
    /// The full path in OpenAPI's syntax (`/api/v1/projects/{project}`).
    pub path: String,
    /// `None`: no token needed.
    pub role: Option<Role>,
}

/// Every route: method, full path, role.
pub fn route_table() -> Vec<RouteInfo> {
    table()
        .into_iter()
        .map(|r| RouteInfo {
            method: r.method,
            path: openapi_path(r.path),
            role: r.role,
        })
        .collect()
}

/// `/projects/{*path}` → `/api/v1/projects/{path}`.
pub(crate) fn openapi_path(path: &str) -> String {
    format!("{PREFIX}{}", path.replace("{*", "{"))
}

/// The router of the routes without a token and the one of the routes with one (its
/// fallback too, so unknown paths say nothing to strangers).
pub(crate) fn routers(state: &Arc<ApiState>) -> (Router, Router) {
    let mut open = Router::new();
    let mut closed = Router::new();
    for r in table() {
        let path = format!("{PREFIX}{}", r.path);
        match r.role {
            None => open = open.route(&path, r.handler),
            Some(role) => {
                let guarded = r.handler.route_layer(axum::middleware::from_fn(
                    move |req: axum::extract::Request, next: axum::middleware::Next| {
                        crate::check_role(role, req, next)
                    },
                ));
                closed = closed.route(&path, guarded);
            }
        }
    }
    // The Prometheus exposition, outside the prefix where scrapers look for it.
    closed = closed.route(
        "/metrics",
        get(crate::metrics::exposition).route_layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| {
                crate::check_role(Role::Viewer, req, next)
            },
        )),
    );
    // The body cap is the API's own, on the socket too (axum's default is 2 MB).
    let limit = axum::extract::DefaultBodyLimit::max(crate::BODY_LIMIT);
    (
        open.with_state(state.clone()),
        closed
            .fallback(no_route)
            .layer(limit)
            .with_state(state.clone()),
    )
}

async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such route: {}", uri.path()))
}

/// Runs a store read off the async threads.
pub(crate) async fn read<T, F>(s: &ApiState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
{
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::internal(format!("a store read failed: {e}")))?
}

/// Carries out a change for the principal, then wakes the daemon so it acts at once.
async fn act(s: &ApiState, p: &Principal, op: Operation) -> Result<Response, ApiError> {
    let project = op.project().to_string();
    let outcome = s.control.execute(Actor(p.name.clone()), op).await;
    // What the project looks like is news after a change, even a failed one.
    s.services.forget(&project);
    let outcome = outcome?;
    s.daemon.wake.notify_one();
    Ok(match outcome {
        Outcome::Up(u) => Json(u).into_response(),
        Outcome::Down(d) => Json(d).into_response(),
        Outcome::Containers(c) => Json(c).into_response(),
        Outcome::Rollout(r) => Json(r).into_response(),
        Outcome::Undo(u) => Json(u).into_response(),
        Outcome::PipelineStarted { run } | Outcome::PipelineCancelRequested { run } => {
            Json(RunRef { run }).into_response()
        }
        Outcome::VmStarted(v) => Json(v).into_response(),
        Outcome::VmStopped(v) => Json(v).into_response(),
        Outcome::Snapshot(t) => Json(t).into_response(),
        Outcome::Restored { vm, snapshot } => Json(Restored { vm, snapshot }).into_response(),
        Outcome::Silenced(made) => (StatusCode::CREATED, Json(made)).into_response(),
        Outcome::Unsilenced { id } => Json(Unsilenced { id }).into_response(),
    })
}

fn path_error(e: axum::extract::rejection::PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path: {e}"))
}

fn query_error(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(format!("bad query: {}", e.body_text()))
}

pub(crate) type P1 = Result<Path<String>, axum::extract::rejection::PathRejection>;
type P2 = Result<Path<(String, String)>, axum::extract::rejection::PathRejection>;
pub(crate) type Q<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

pub(crate) fn project_of(p: P1) -> Result<String, ApiError> {
    let Path(p) = p.map_err(path_error)?;
    name("project", &p)
}

fn service_of(p: P2) -> Result<(String, String), ApiError> {
    let Path((p, s)) = p.map_err(path_error)?;
    Ok((name("project", &p)?, name("service", &s)?))
}

pub(crate) fn query_of<T>(q: Q<T>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(query_error)
}

// ---- reads ----

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

async fn status(State(s): St) -> Json<baton_daemon::api::Status> {
    Json(s.daemon.status())
}

async fn edge(State(s): St) -> Json<Option<baton_daemon::edge::EdgeStatus>> {
    Json(s.daemon.status().edge)
}

async fn projects(State(s): St) -> Result<Json<Vec<ProjectView>>, ApiError> {
    read(&s, |store| {
        let mut out = Vec::new();
        for p in store.projects()? {
            let desired = store.desired(&p.name)?;
            let revision = store.latest_revision(&p.name)?.map(|r| r.number);
            out.push(ProjectView {
                active: desired.active,
                stopped_services: desired.stopped_services,
                revision,
                name: p.name,
                working_dir: p.working_dir,
                updated_at: p.updated_at,
            });
        }
        Ok(out)
    })
    .await
    .map(Json)
}

async fn services(State(s): St, p: P1) -> Result<Response, ApiError> {
    let project = project_of(p)?;
    let body = s.services.get(&s.control, &project).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `?service=web`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutsQuery {
    /// Only this service's rollouts.
    pub service: Option<String>,
}

async fn rollouts(
    State(s): St,
    p: P1,
    q: Q<RolloutsQuery>,
) -> Result<Json<Vec<RolloutView>>, ApiError> {
    let project = project_of(p)?;
    let q = query_of(q)?;
    read(&s, move |store| {
        Ok(store
            .rollouts(&project, q.service.as_deref())?
            .iter()
            .map(RolloutView::from_record)
            .collect())
    })
    .await
    .map(Json)
}

async fn traffic(
    State(s): St,
    p: P1,
) -> Result<Json<Vec<baton_daemon::api::ProxyStatus>>, ApiError> {
    let project = project_of(p)?;
    Ok(Json(
        s.daemon
            .status()
            .proxies
            .into_iter()
            .filter(|x| x.project == project)
            .collect(),
    ))
}

async fn revisions(State(s): St, p: P1) -> Result<Json<Vec<baton_state::Revision>>, ApiError> {
    let project = project_of(p)?;
    read(&s, move |store| Ok(store.revisions(&project)?))
        .await
        .map(Json)
}

async fn project_events(
    State(s): St,
    p: P1,
    q: Q<PageQuery>,
) -> Result<Json<Page<Event>>, ApiError> {
    let project = project_of(p)?;
    let q = query_of(q)?;
    let limit = q.limit();
    read(&s, move |store| {
        let rows = store.events_page(Some(&project), q.before, limit + 1)?;
        Ok(Page::from_rows(rows, limit, |e| e.id))
    })
    .await
    .map(Json)
}

/// `?limit=N`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LimitQuery {
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

impl LimitQuery {
    fn limit(&self) -> i64 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }
}

async fn actions(
    State(s): St,
    p: P1,
    q: Q<LimitQuery>,
) -> Result<Json<Vec<baton_state::ActionRecord>>, ApiError> {
    let project = project_of(p)?;
    let limit = query_of(q)?.limit();
    read(&s, move |store| Ok(store.actions(&project, limit)?))
        .await
        .map(Json)
}

async fn update_status(
    State(s): St,
    p: P2,
) -> Result<Json<Option<baton_engine::orchestrate::UpdateStatus>>, ApiError> {
    let (project, service) = service_of(p)?;
    Ok(Json(s.control.update_status(project, service).await?))
}

async fn logs(State(s): St, p: P2, q: Q<LogsQuery>) -> Result<Response, ApiError> {
    let (project, service) = service_of(p)?;
    crate::logs::stream(&s, project, service, query_of(q)?).await
}

/// `?project=shop&since=ID`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StreamQuery {
    /// Only this project's events.
    pub project: Option<String>,
    /// Start after this event id (as the `Last-Event-ID` header does); from now on
    /// when neither is given.
    pub since: Option<i64>,
}

async fn event_stream(
    State(s): St,
    headers: HeaderMap,
    q: Q<StreamQuery>,
) -> Result<Response, ApiError> {
    let q = query_of(q)?;
    let project = q.project.map(|p| name("project", &p)).transpose()?;
    let last = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an event id"))?,
        ),
        None => None,
    };
    Ok(crate::events::sse(&s.events, project, last.or(q.since)).into_response())
}

/// `?pipeline=ci&limit=N`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RunsQuery {
    /// Only this pipeline's runs.
    pub pipeline: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

async fn pipeline_runs(
    State(s): St,
    p: P1,
    q: Q<RunsQuery>,
) -> Result<Json<Vec<PipelineRunView>>, ApiError> {
    let project = project_of(p)?;
    let q = query_of(q)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    read(&s, move |store| {
        Ok(store
            .pipeline_runs(&project, q.pipeline.as_deref(), limit)?
            .into_iter()
            .map(PipelineRunView::from)
            .collect())
    })
    .await
    .map(Json)
}

fn run_id(s: &str) -> Result<i64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("run {s:?} is not a run id")))
}

async fn pipeline_run(State(s): St, p: P2) -> Result<Json<RunDetail>, ApiError> {
    let Path((project, run)) = p.map_err(path_error)?;
    let project = name("project", &project)?;
    let run = run_id(&run)?;
    read(&s, move |store| {
        let r = store
            .pipeline_run(run)?
            .filter(|r| r.project == project)
            .ok_or_else(|| ApiError::not_found(format!("project {project} has no run {run}")))?;
        Ok(RunDetail {
            run: r.into(),
            jobs: store
                .pipeline_jobs(run)?
                .into_iter()
                .map(PipelineJobView::from)
                .collect(),
            artifacts: store
                .artifacts(&project, Some(run))?
                .into_iter()
                .map(|a| ArtifactView {
                    job: a.job,
                    path: a.path,
                    sha256: a.sha256,
                    size: a.size,
                    created_at: a.created_at,
                    expires_at: a.expires_at,
                })
                .collect(),
        })
    })
    .await
    .map(Json)
}

/// An artifact path from a URL: relative, without `..`, `.`, empty or NUL parts.
pub(crate) fn artifact_path(path: &str) -> Result<String, ApiError> {
    let refused = || {
        ApiError::bad_request(format!(
            "artifact path {path:?}: give the path relative to the job's workspace, without '..'"
        ))
    };
    if path.is_empty() || path.starts_with('/') || path.contains(['\\', '\0']) {
        return Err(refused());
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(refused());
    }
    Ok(path.to_string())
}

async fn artifact(
    State(s): St,
    p: Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path((project, run, path)) = p.map_err(path_error)?;
    let project = name("project", &project)?;
    let run = run_id(&run)?;
    let path = artifact_path(&path)?;
    let state_dir = s.state_dir.clone();
    let bytes = read(&s, move |store| {
        read_artifact(store, &state_dir, &project, run, &path)
    })
    .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response())
}

/// The bytes of the artifact `path` of `run` (a path already checked by
/// [`artifact_path`]), read from baton's own content store.
pub(crate) fn read_artifact(
    store: &Store,
    state_dir: &std::path::Path,
    project: &str,
    run: i64,
    path: &str,
) -> Result<Vec<u8>, ApiError> {
    let a = store
        .artifacts(project, Some(run))?
        .into_iter()
        .find(|a| a.path == path)
        .ok_or_else(|| {
            ApiError::not_found(format!("run {run} of {project} has no artifact {path}"))
        })?;
    if a.sha256.len() != 64 || !a.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::internal("the artifact's digest is not a SHA-256"));
    }
    let blob = baton_pipeline::artifacts::blob_path(state_dir, &a.sha256);
    // The blob is baton's own file; a symlink there is not followed.
    let meta = std::fs::symlink_metadata(&blob)
        .map_err(|_| ApiError::not_found(format!("artifact {path} was pruned")))?;
    if !meta.is_file() {
        return Err(ApiError::not_found(format!(
            "artifact {path} is not a regular file"
        )));
    }
    std::fs::read(&blob)
        .map_err(|e| ApiError::internal(format!("cannot read artifact {path}: {e}")))
}

async fn vms(State(s): St) -> Result<Json<Vec<VmView>>, ApiError> {
    read(&s, |store| {
        let snaps = store.vm_snapshots(None)?;
        Ok(store
            .vms()?
            .into_iter()
            .map(|v| {
                let n = snaps.iter().filter(|x| x.vm == v.name).count();
                VmView::new(v, n)
            })
            .collect())
    })
    .await
    .map(Json)
}

async fn snapshots(State(s): St, p: P1) -> Result<Json<Vec<SnapshotView>>, ApiError> {
    let Path(vm) = p.map_err(path_error)?;
    let vm = name("vm", &vm)?;
    read(&s, move |store| {
        if store.vm(&vm)?.is_none() {
            return Err(ApiError::not_found(format!("no VM named {vm}")));
        }
        Ok(store
            .vm_snapshots(Some(&vm))?
            .into_iter()
            .map(SnapshotView::from)
            .collect())
    })
    .await
    .map(Json)
}

async fn fleet_runs(
    State(s): St,
    p: P1,
    q: Q<LimitQuery>,
) -> Result<Json<Vec<FleetRunView>>, ApiError> {
    let project = project_of(p)?;
    let limit = query_of(q)?.limit();
    read(&s, move |store| {
        Ok(store
            .fleet_runs(&project, limit)?
            .into_iter()
            .map(FleetRunView::from)
            .collect())
    })
    .await
    .map(Json)
}

async fn fleet_hosts(State(s): St, p: P1) -> Result<Json<Vec<FleetHostView>>, ApiError> {
    let project = project_of(p)?;
    read(&s, move |store| fleet_hosts_of(store, &project))
        .await
        .map(Json)
}

/// Hosts as the newest recorded run that reached each saw them.
pub(crate) fn fleet_hosts_of(store: &Store, project: &str) -> Result<Vec<FleetHostView>, ApiError> {
    Ok(store
        .fleet_hosts(Some(project))?
        .into_iter()
        .map(|h| FleetHostView {
            reachable: h.reachable(),
            host: h.host,
            address: h.address,
            status: h.status,
            run: h.run,
            seen_at: h.seen_at,
        })
        .collect())
}

async fn files(State(s): St, p: P1) -> Result<Json<Vec<ManagedFileView>>, ApiError> {
    let project = project_of(p)?;
    read(&s, move |store| files_of(store, &project))
        .await
        .map(Json)
}

/// Managed files with their versions and where each host stands.
pub(crate) fn files_of(store: &Store, project: &str) -> Result<Vec<ManagedFileView>, ApiError> {
    let mut out = Vec::new();
    for file in store.managed_files(project)? {
        out.push(ManagedFileView {
            versions: store
                .file_versions(project, &file)?
                .into_iter()
                .map(|v| FileVersionView {
                    version: v.version,
                    hash: v.hash,
                    size: v.size,
                    mode: v.mode,
                    created_at: v.created_at,
                })
                .collect(),
            applied: store
                .files_applied(project, &file)?
                .into_iter()
                .map(|a| FileAppliedView {
                    host: a.host,
                    path: a.path,
                    version: a.version,
                    applied_at: a.applied_at,
                })
                .collect(),
            name: file,
        });
    }
    Ok(out)
}

// ---- changes ----

async fn up(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P1,
    Body(body): Body<UpBody>,
) -> Result<Response, ApiError> {
    let name = project_of(p)?;
    let Some(project) = body.project else {
        return Err(ApiError::unprocessable(
            "request body: `project` is required: the resolved project (`baton config --json`)",
        ));
    };
    if project.name != name {
        return Err(ApiError::unprocessable(format!(
            "the project sent is named {:?}, the path says {name:?}",
            project.name
        )));
    }
    // Held to the file's rules, as if read from a file here.
    baton_engine::check::project(&project)
        .map_err(|e| ApiError::unprocessable(format!("project {name}: {e}")))?;
    act(
        &s,
        &who,
        Operation::Up {
            project: Box::new(project),
            options: body.options,
        },
    )
    .await
}

async fn down(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P1,
    Body(body): Body<DownBody>,
) -> Result<Response, ApiError> {
    let project = project_of(p)?;
    act(
        &s,
        &who,
        Operation::Down {
            project,
            volumes: body.volumes,
        },
    )
    .await
}

async fn scale(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P1,
    Body(body): Body<ScaleBody>,
) -> Result<Response, ApiError> {
    let project = project_of(p)?;
    if body.replicas.is_empty() {
        return Err(ApiError::unprocessable(
            "request body: `replicas` names no service (e.g. {\"replicas\": {\"web\": 3}})",
        ));
    }
    let spec = match body.project {
        Some(spec) if spec.name != project => {
            return Err(ApiError::unprocessable(format!(
                "the project sent is named {:?}, the path says {project:?}",
                spec.name
            )))
        }
        Some(spec) => {
            baton_engine::check::project(&spec)
                .map_err(|e| ApiError::unprocessable(format!("project {project}: {e}")))?;
            Some(Box::new(spec))
        }
        None => None,
    };
    act(
        &s,
        &who,
        Operation::Scale {
            project,
            replicas: body.replicas,
            no_deps: body.no_deps,
            spec,
        },
    )
    .await
}

async fn start(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P1,
    Body(body): Body<ServicesBody>,
) -> Result<Response, ApiError> {
    let project = project_of(p)?;
    act(
        &s,
        &who,
        Operation::Start {
            project,
            services: body.services,
        },
    )
    .await
}

async fn stop(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P1,
    Body(body): Body<StopBody>,
) -> Result<Response, ApiError> {
    let project = project_of(p)?;
    act(
        &s,
        &who,
        Operation::Stop {
            project,
            services: body.services,
            timeout_secs: body.timeout_secs,
        },
    )
    .await
}

async fn restart(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P1,
    Body(body): Body<StopBody>,
) -> Result<Response, ApiError> {
    let project = project_of(p)?;
    act(
        &s,
        &who,
        Operation::Restart {
            project,
            services: body.services,
            timeout_secs: body.timeout_secs,
        },
    )
    .await
}

async fn rollout_request(
    s: &ApiState,
    who: &Principal,
    p: P2,
    request: baton_state::RolloutRequest,
) -> Result<Response, ApiError> {
    let (project, service) = service_of(p)?;
    act(
        s,
        who,
        Operation::Rollout {
            project,
            service,
            request,
        },
    )
    .await
}

async fn promote(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P2,
    Body(EmptyBody {}): Body<EmptyBody>,
) -> Result<Response, ApiError> {
    rollout_request(&s, &who, p, baton_state::RolloutRequest::Promote).await
}

async fn abort(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P2,
    Body(EmptyBody {}): Body<EmptyBody>,
) -> Result<Response, ApiError> {
    rollout_request(&s, &who, p, baton_state::RolloutRequest::Abort).await
}

async fn resume(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P2,
    Body(EmptyBody {}): Body<EmptyBody>,
) -> Result<Response, ApiError> {
    rollout_request(&s, &who, p, baton_state::RolloutRequest::Resume).await
}

async fn undo(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P2,
    Body(body): Body<UndoBody>,
) -> Result<Response, ApiError> {
    let (project, service) = service_of(p)?;
    act(
        &s,
        &who,
        Operation::Undo {
            project,
            service,
            to_revision: body.to_revision,
        },
    )
    .await
}

async fn pipeline_run_start(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P2,
    Body(body): Body<PipelineRunBody>,
) -> Result<Response, ApiError> {
    let Path((project, pipeline)) = p.map_err(path_error)?;
    let (project, pipeline) = (name("project", &project)?, name("pipeline", &pipeline)?);
    let spec = checked_spec(&project, body.project)?;
    act(
        &s,
        &who,
        Operation::PipelineRun {
            project,
            pipeline,
            vars: body.vars,
            rerun_of: None,
            spec,
        },
    )
    .await
}

/// A project sent with a request: the one in the path, held to the file's rules.
fn checked_spec(
    project: &str,
    spec: Option<baton_spec::Project>,
) -> Result<Option<Box<baton_spec::Project>>, ApiError> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    if spec.name != project {
        return Err(ApiError::unprocessable(format!(
            "the project sent is named {:?}, the path says {project:?}",
            spec.name
        )));
    }
    baton_engine::check::project(&spec)
        .map_err(|e| ApiError::unprocessable(format!("project {project}: {e}")))?;
    Ok(Some(Box::new(spec)))
}

async fn pipeline_rerun(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P2,
    Body(body): Body<RerunBody>,
) -> Result<Response, ApiError> {
    let Path((project, run)) = p.map_err(path_error)?;
    let project = name("project", &project)?;
    let run = run_id(&run)?;
    let spec = checked_spec(&project, body.project)?;
    let of = project.clone();
    let earlier = read(&s, move |store| {
        store
            .pipeline_run(run)?
            .filter(|r| r.project == of)
            .ok_or_else(|| ApiError::not_found(format!("project {of} has no run {run}")))
    })
    .await?;
    act(
        &s,
        &who,
        Operation::PipelineRun {
            project,
            pipeline: earlier.pipeline,
            vars: earlier.vars,
            rerun_of: Some(run),
            spec,
        },
    )
    .await
}

async fn pipeline_cancel(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P2,
    Body(EmptyBody {}): Body<EmptyBody>,
) -> Result<Response, ApiError> {
    let Path((project, run)) = p.map_err(path_error)?;
    let project = name("project", &project)?;
    let run = run_id(&run)?;
    act(&s, &who, Operation::PipelineCancel { project, run }).await
}

async fn vm_act(
    s: &ApiState,
    who: &Principal,
    vm: P1,
    action: baton_control::VmAction,
) -> Result<Response, ApiError> {
    let Path(vm) = vm.map_err(path_error)?;
    let vm = name("vm", &vm)?;
    act(s, who, Operation::Vm { vm, action }).await
}

async fn vm_start(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P1,
    Body(EmptyBody {}): Body<EmptyBody>,
) -> Result<Response, ApiError> {
    vm_act(&s, &who, p, baton_control::VmAction::Start).await
}

async fn vm_stop(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P1,
    Body(body): Body<VmStopBody>,
) -> Result<Response, ApiError> {
    let action = baton_control::VmAction::Stop {
        timeout_secs: body.timeout_secs,
    };
    vm_act(&s, &who, p, action).await
}

async fn vm_restart(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P1,
    Body(body): Body<VmStopBody>,
) -> Result<Response, ApiError> {
    let action = baton_control::VmAction::Restart {
        timeout_secs: body.timeout_secs,
    };
    vm_act(&s, &who, p, action).await
}

async fn vm_snapshot(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P1,
    Body(body): Body<SnapshotBody>,
) -> Result<Response, ApiError> {
    if let Some(n) = &body.name {
        name("snapshot", n)?;
    }
    let action = baton_control::VmAction::Snapshot {
        name: body.name,
        note: body.note,
    };
    vm_act(&s, &who, p, action).await
}

async fn vm_restore(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P2,
    Body(EmptyBody {}): Body<EmptyBody>,
) -> Result<Response, ApiError> {
    let Path((vm, snapshot)) = p.map_err(path_error)?;
    let vm = name("vm", &vm)?;
    let snapshot = name("snapshot", &snapshot)?;
    act(
        &s,
        &who,
        Operation::Vm {
            vm,
            action: baton_control::VmAction::Restore { snapshot },
        },
    )
    .await
}

async fn silence(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P1,
    Body(body): Body<SilenceBody>,
) -> Result<Response, ApiError> {
    let project = project_of(p)?;
    let duration_secs = crate::input::silence_secs(&body.duration)?;
    act(
        &s,
        &who,
        Operation::Silence {
            project,
            matchers: body.matchers,
            duration_secs,
            comment: body.comment,
        },
    )
    .await
}

async fn unsilence(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P2,
) -> Result<Response, ApiError> {
    let Path((project, id)) = p.map_err(path_error)?;
    let project = name("project", &project)?;
    act(&s, &who, Operation::Unsilence { project, id }).await
}

// ---- admin ----

async fn audit(State(s): St, q: Q<PageQuery>) -> Result<Json<Page<AuditView>>, ApiError> {
    let q = query_of(q)?;
    let limit = q.limit();
    let project = q.project.map(|p| name("project", &p)).transpose()?;
    read(&s, move |store| {
        let rows = store.audit_page(project.as_deref(), q.before, limit + 1)?;
        let page = Page::from_rows(rows, limit, |e| e.id);
        Ok(Page {
            items: page.items.into_iter().map(AuditView::from).collect(),
            next: page.next,
        })
    })
    .await
    .map(Json)
}

async fn token_list(State(s): St) -> Result<Json<Vec<TokenView>>, ApiError> {
    read(&s, tokens::list).await.map(Json)
}

async fn token_create(
    State(s): St,
    Extension(who): Extension<Principal>,
    Body(body): Body<TokenBody>,
) -> Result<Response, ApiError> {
    let now = (s.clock)();
    let made = read(&s, move |store| {
        tokens::create(store, &who.name, &body.name, body.role, now)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(made)).into_response())
}

async fn token_revoke(
    State(s): St,
    Extension(who): Extension<Principal>,
    p: P1,
) -> Result<StatusCode, ApiError> {
    let Path(n) = p.map_err(path_error)?;
    let n = name("token", &n)?;
    let now = (s.clock)();
    read(&s, move |store| tokens::revoke(store, &who.name, &n, now)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_paths_stay_inside_the_workspace() {
        assert_eq!(artifact_path("out/report.txt").unwrap(), "out/report.txt");
        for bad in [
            "",
            "/etc/passwd",
            "../secret",
            "out/../../x",
            "out/./x",
            "out//x",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(artifact_path(bad).is_err(), "{bad:?}");
        }
    }
}
