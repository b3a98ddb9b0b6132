//! The dashboard's pages: each handler reads what its page shows, shapes it into small
//! view rows for the template, and renders the page, or one of its blocks when the page
//! asks for a live fragment (`?fragment=NAME`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use baton_control::views::{ReplicaView, RolloutLine};
use baton_control::{RolloutView, ServiceView, ServicesView};
use baton_engine::rollout::Strategy;
use baton_spec::Project;
use baton_state::{RolloutStatus, Store};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{base, render, Dash, Session};
use crate::input::name;
use crate::routes::{artifact_path, read};
use crate::{
    require, ApiError, ArtifactView, AuditView, FleetRunView, PipelineJobView, PipelineRunView,
    Role,
};

type D = State<Arc<Dash>>;

/// An error page (or, for a fragment, the error alone).
#[derive(Debug)]
pub(crate) struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError(e)
    }
}

impl From<baton_state::StateError> for PageError {
    fn from(e: baton_state::StateError) -> PageError {
        PageError(e.into())
    }
}

impl From<baton_control::ControlError> for PageError {
    fn from(e: baton_control::ControlError) -> PageError {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let ctx = context! {
            status => self.0.status.as_u16(),
            reason => self.0.status.canonical_reason().unwrap_or("error"),
            message => self.0.message,
            v => super::assets::version(),
        };
        match render::render("error.html", None, &ctx) {
            Ok(body) => render::html(self.0.status, body),
            Err(_) => (self.0.status, self.0.message).into_response(),
        }
    }
}

pub(super) type Result<T> = std::result::Result<T, PageError>;

/// What a page's query string may say.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct View {
    /// Only this block of the page (a live region's refresh).
    pub fragment: Option<String>,
    /// Older than this id (events, audit).
    pub before: Option<i64>,
    /// Only this project (events, audit).
    pub project: Option<String>,
    /// The job whose log a run page shows.
    pub job: Option<String>,
}

pub(super) type Q = std::result::Result<Query<View>, axum::extract::rejection::QueryRejection>;

pub(super) fn view(q: Q) -> Result<View> {
    q.map(|Query(v)| v).map_err(|e| {
        PageError(ApiError::bad_request(format!(
            "bad query: {}",
            e.body_text()
        )))
    })
}

/// The page, or the block `fragment` of it when it is one of `blocks`.
pub(super) fn respond(
    template: &str,
    blocks: &[&str],
    fragment: Option<&str>,
    ctx: &minijinja::Value,
) -> Result<Response> {
    let block = match fragment {
        None => None,
        Some(f) if blocks.contains(&f) => Some(f),
        Some(f) => {
            return Err(PageError(ApiError::bad_request(format!(
                "this page has no fragment {f:?}"
            ))))
        }
    };
    Ok(render::html(
        StatusCode::OK,
        render::render(template, block, ctx)?,
    ))
}

// ---- services, shaped for the pages ----

/// How a service is doing, worst first (the order pages list them in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Status {
    /// None of its replicas runs.
    Down,
    /// Fewer replicas run, or are healthy, than it should have.
    Degraded,
    Ok,
    /// One-shot: every replica ran and exited 0.
    Done,
    /// Stopped by hand (`baton stop`): the daemon leaves it so.
    Stopped,
}

/// Whether a replica ran to its end successfully (the engine's own words say so).
fn exited_ok(r: &ReplicaView) -> bool {
    r.state == baton_engine::runtime::ContainerState::Exited && r.status.starts_with("Exited (0)")
}

/// How the service is doing, from what the file wants and what runs.
pub(crate) fn service_status(s: &ServiceView) -> Status {
    if s.stopped {
        return Status::Stopped;
    }
    let replicas: Vec<&ReplicaView> = s.replicas.iter().filter(|r| !r.oneoff).collect();
    let desired = s.declared_replicas.unwrap_or(replicas.len() as u32);
    if desired > 0 && !replicas.is_empty() && replicas.iter().all(|r| exited_ok(r)) {
        return Status::Done;
    }
    if desired > 0 && s.running == 0 {
        return Status::Down;
    }
    if s.running < desired || s.healthy < s.running {
        return Status::Degraded;
    }
    Status::Ok
}

fn word<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A replica as a table row.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReplicaRow {
    pub name: String,
    pub replica: u32,
    pub state: String,
    pub health: String,
    /// The engine's words: `Up 3 minutes (healthy)`, `Exited (137) 2 seconds ago`.
    pub status: String,
    pub ports: Vec<String>,
    pub image: String,
    pub config_hash: String,
    pub oneoff: bool,
    /// Ran to its end and exited 0 (a one-shot service's replica).
    pub done: bool,
    /// What the daemon last did about it, and its restarts in the last minute.
    pub supervision: Option<String>,
    pub restarts: Option<u32>,
}

impl From<&ReplicaView> for ReplicaRow {
    fn from(r: &ReplicaView) -> ReplicaRow {
        ReplicaRow {
            name: r.name.clone(),
            replica: r.replica,
            state: word(&r.state),
            health: word(&r.health),
            status: r.status.clone(),
            ports: r.ports.clone(),
            image: r.image.clone(),
            config_hash: r.config_hash.clone(),
            oneoff: r.oneoff,
            done: exited_ok(r),
            supervision: r.supervision.as_ref().map(|s| s.status.clone()),
            restarts: r.supervision.as_ref().map(|s| s.restarts_per_minute),
        }
    }
}

/// A service as an overview row.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServiceRow {
    pub name: String,
    pub status: Status,
    pub desired: u32,
    pub running: u32,
    pub healthy: u32,
    /// The status of a rollout in progress (`running`, `paused`).
    pub rollout: Option<String>,
    pub replicas: Vec<ReplicaRow>,
}

fn service_row(s: &ServiceView, rollouts: &[RolloutView]) -> ServiceRow {
    ServiceRow {
        name: s.name.clone(),
        status: service_status(s),
        desired: s
            .declared_replicas
            .unwrap_or(s.replicas.iter().filter(|r| !r.oneoff).count() as u32),
        running: s.running,
        healthy: s.healthy,
        rollout: rollouts
            .iter()
            .rev()
            .find(|r| r.service == s.name && in_progress(r.status))
            .map(|r| r.status.to_string()),
        replicas: s
            .replicas
            .iter()
            .filter(|r| !r.oneoff)
            .map(ReplicaRow::from)
            .collect(),
    }
}

fn in_progress(s: RolloutStatus) -> bool {
    matches!(s, RolloutStatus::Running | RolloutStatus::Paused)
}

/// The services views of the last quarter second: fifty open dashboards refreshing on
/// the same event ask the engine once, not fifty times.
#[derive(Default)]
pub(crate) struct ServicesCache(Mutex<HashMap<String, (Instant, Arc<ServicesView>)>>);

const CACHE_FOR: Duration = Duration::from_millis(250);

impl ServicesCache {
    fn get(&self, project: &str) -> Option<Arc<ServicesView>> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(project)
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, v)| v.clone())
    }

    /// Forgets the project's view (after a change to it).
    pub(crate) fn forget(&self, project: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(project);
    }

    fn put(&self, project: &str, v: Arc<ServicesView>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, (at, _)| at.elapsed() < Duration::from_secs(10));
        map.insert(project.to_string(), (Instant::now(), v));
    }
}

async fn services_of(d: &Dash, project: &str) -> std::result::Result<Arc<ServicesView>, ApiError> {
    if let Some(v) = d.services.get(project) {
        return Ok(v);
    }
    let v = Arc::new(d.api.control.services(project.to_string()).await?);
    d.services.put(project, v.clone());
    Ok(v)
}

/// The last applied project (its file as `up` resolved it), if any.
fn last_applied(store: &Store, project: &str) -> std::result::Result<Option<Project>, ApiError> {
    let Some(rev) = store.latest_revision(project)? else {
        return Ok(None);
    };
    let Some(json) = store.revision_spec(project, rev.number)? else {
        return Ok(None);
    };
    Ok(serde_json::from_str(&json).ok())
}

// ---- overview ----

/// A project on the overview.
#[derive(Debug, Clone, Serialize)]
struct ProjectCard {
    name: String,
    active: bool,
    revision: Option<i64>,
    /// The worst of its services.
    status: Status,
    services: Vec<ServiceRow>,
    /// Why its services could not be read (the engine is down).
    error: Option<String>,
}

/// A rollout in progress, for the overview.
#[derive(Debug, Clone, Serialize)]
struct RolloutRow {
    project: String,
    service: String,
    strategy: String,
    status: String,
    phase: Option<String>,
    step: Option<u32>,
    weight: Option<u32>,
    started_at: i64,
}

pub(crate) async fn overview(
    State(d): D,
    Extension(s): Extension<Session>,
    q: Q,
) -> Result<Response> {
    let q = view(q)?;
    let now = (d.api.clock)();
    let (projects, rollouts, events) = read(&d.api, |store| {
        let mut projects = Vec::new();
        let mut rollouts = Vec::new();
        for p in store.projects()? {
            let desired = store.desired(&p.name)?;
            let revision = store.latest_revision(&p.name)?.map(|r| r.number);
            let views: Vec<RolloutView> = store
                .rollouts(&p.name, None)?
                .iter()
                .map(RolloutView::from_record)
                .collect();
            rollouts.push((p.name.clone(), views));
            projects.push((p.name, desired.active, revision));
        }
        Ok((projects, rollouts, store.events_page(None, None, 15)?))
    })
    .await?;
    let mut cards = Vec::new();
    let mut in_flight = Vec::new();
    for ((name, active, revision), (_, views)) in projects.into_iter().zip(&rollouts) {
        for r in views.iter().filter(|r| in_progress(r.status)) {
            in_flight.push(RolloutRow {
                project: name.clone(),
                service: r.service.clone(),
                strategy: r.strategy.clone(),
                status: r.status.to_string(),
                phase: r.phase.clone(),
                step: r.step,
                weight: r.weight,
                started_at: r.started_at,
            });
        }
        let (services, error) = if active {
            match services_of(&d, &name).await {
                Ok(v) => (
                    v.services.iter().map(|s| service_row(s, views)).collect(),
                    None,
                ),
                Err(e) => (Vec::new(), Some(e.message)),
            }
        } else {
            (Vec::new(), None)
        };
        let mut services: Vec<ServiceRow> = services;
        services.sort_by(|a, b| (a.status, &a.name).cmp(&(b.status, &b.name)));
        let status = match (&error, services.first()) {
            (Some(_), _) => Status::Down,
            (None, Some(first)) => first.status,
            (None, None) if active => Status::Ok,
            (None, None) => Status::Stopped,
        };
        cards.push(ProjectCard {
            name,
            active,
            revision,
            status,
            services,
            error,
        });
    }
    // Failing things first: projects by their worst service, then by name.
    cards.sort_by(|a, b| (a.status, &a.name).cmp(&(b.status, &b.name)));
    let attention: Vec<(String, String, Status)> = cards
        .iter()
        .flat_map(|c| {
            c.services
                .iter()
                .filter(|s| s.status <= Status::Degraded)
                .map(|s| (c.name.clone(), s.name.clone(), s.status))
        })
        .collect();
    let ctx = context! {
        projects => cards,
        rollouts => in_flight,
        attention => attention,
        events => events,
        ..base(&s, now, "overview", "Overview", "/ui/live")
    };
    respond("overview.html", &["live"], q.fragment.as_deref(), &ctx)
}

// ---- service ----

/// One number the canary analysis judges, beside its limit.
#[derive(Debug, Clone, Serialize)]
struct Check {
    what: &'static str,
    value: String,
    limit: String,
    /// `None` while there are too few requests to judge.
    ok: Option<bool>,
}

/// One step of a canary.
#[derive(Debug, Clone, Serialize)]
struct StepRow {
    weight: u32,
    pause_ms: u64,
    current: bool,
    done: bool,
}

/// The rollout view of a service.
#[derive(Debug, Clone, Serialize)]
struct RolloutPanel {
    id: i64,
    revision: i64,
    strategy: String,
    status: String,
    requested: Option<String>,
    outcome: Option<String>,
    phase: Option<String>,
    step: Option<u32>,
    steps: Vec<StepRow>,
    /// Percent of the traffic on the new (canary) and the stable revision.
    weight_new: u32,
    weight_stable: u32,
    from_hash: String,
    to_hash: String,
    started_at: i64,
    finished_at: Option<i64>,
    checks: Vec<Check>,
    /// The proxy's counters per revision: (which, requests, errors, p95 ms).
    traffic: Vec<(String, u64, u64, Option<f64>)>,
    history: Vec<RolloutLine>,
    can_promote: bool,
    can_abort: bool,
    can_resume: bool,
}

/// The builtin proxy's counters for one revision of the service, summed over its ports.
fn revision_counters(proxies: &[serde_json::Value], hash: &str) -> Option<(u64, u64, Option<f64>)> {
    let mut found = None;
    for p in proxies {
        let Some(r) = p["metrics"]["revisions"].get(hash) else {
            continue;
        };
        let (req, err, p95) = found.get_or_insert((0u64, 0u64, None::<f64>));
        *req += r["requests"].as_u64().unwrap_or(0);
        *err += r["responses_5xx"].as_u64().unwrap_or(0) + r["failures"].as_u64().unwrap_or(0);
        if r["latency"]["count"].as_u64().unwrap_or(0) > 0 {
            let v = r["latency"]["p95_ms"].as_f64().unwrap_or(0.0);
            *p95 = Some(p95.unwrap_or(0.0).max(v));
        }
    }
    found
}

fn rollout_panel(
    r: &RolloutView,
    strategy: Option<&Strategy>,
    proxies: &[serde_json::Value],
) -> RolloutPanel {
    let weight = r.weight.unwrap_or(0).min(100);
    let running = r.status == RolloutStatus::Running;
    let step = r.step.unwrap_or(0);
    let mut steps = Vec::new();
    let mut checks = Vec::new();
    let new = revision_counters(proxies, &r.to_hash);
    if let Some(Strategy::Canary(c)) = strategy {
        for (i, s) in c.steps.iter().enumerate() {
            steps.push(StepRow {
                weight: s.weight,
                pause_ms: s.pause_ms,
                current: in_progress(r.status) && i as u32 == step,
                done: (i as u32) < step || r.status == RolloutStatus::Completed,
            });
        }
        let a = &c.analysis;
        let (requests, errors, p95) = new.unwrap_or((0, 0, None));
        let enough = requests >= a.min_requests.max(1);
        checks.push(Check {
            what: "requests to the canary",
            value: requests.to_string(),
            limit: format!("at least {} to judge", a.min_requests),
            // Too few is not a failure: the analysis waits.
            ok: enough.then_some(true),
        });
        if let Some(max) = a.max_error_rate {
            let rate = if requests > 0 {
                errors as f64 / requests as f64
            } else {
                0.0
            };
            checks.push(Check {
                what: "error rate",
                value: format!("{:.2} % ({errors} of {requests})", rate * 100.0),
                limit: format!("at most {:.2} %", max * 100.0),
                ok: enough.then_some(rate <= max),
            });
        }
        if let Some(max) = a.max_p95_latency_ms {
            checks.push(Check {
                what: "p95 latency",
                value: p95.map_or("—".into(), |v| format!("{v:.1} ms")),
                limit: format!("at most {max} ms"),
                ok: match (enough, p95) {
                    (true, Some(v)) => Some(v <= max as f64),
                    _ => None,
                },
            });
        }
    }
    let mut traffic = Vec::new();
    for (which, hash) in [("stable", &r.from_hash), ("new", &r.to_hash)] {
        if let Some((req, err, p95)) = revision_counters(proxies, hash) {
            traffic.push((which.to_string(), req, err, p95));
        }
    }
    RolloutPanel {
        id: r.id,
        revision: r.revision,
        strategy: r.strategy.clone(),
        status: r.status.to_string(),
        requested: r.requested.map(|q| word(&q)),
        outcome: r.outcome.clone(),
        phase: r.phase.clone(),
        step: r.step,
        steps,
        weight_new: weight,
        weight_stable: 100 - weight,
        from_hash: r.from_hash.clone(),
        to_hash: r.to_hash.clone(),
        started_at: r.started_at,
        finished_at: r.finished_at,
        checks,
        traffic,
        history: r.history.clone(),
        can_promote: running,
        can_abort: in_progress(r.status),
        can_resume: r.status == RolloutStatus::Paused,
    }
}

/// A past rollout, for the revision history.
#[derive(Debug, Clone, Serialize)]
struct HistoryRow {
    id: i64,
    revision: i64,
    strategy: String,
    status: String,
    outcome: Option<String>,
    started_at: i64,
    finished_at: Option<i64>,
}

pub(crate) async fn service(
    State(d): D,
    Extension(s): Extension<Session>,
    p: std::result::Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    q: Q,
) -> Result<Response> {
    let q = view(q)?;
    let Path((project, service)) =
        p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    let project = name("project", &project)?;
    let service = name("service", &service)?;
    let now = (d.api.clock)();
    let views = services_of(&d, &project).await?;
    let Some(svc) = views.services.iter().find(|x| x.name == service) else {
        return Err(PageError(ApiError::not_found(format!(
            "project {project} has no service {service}"
        ))));
    };
    let containers: Vec<String> = svc.replicas.iter().map(|r| r.name.clone()).collect();
    let (p2, s2) = (project.clone(), service.clone());
    let (rollouts, spec, revisions, events) = read(&d.api, move |store| {
        let rollouts: Vec<RolloutView> = store
            .rollouts(&p2, Some(&s2))?
            .iter()
            .map(RolloutView::from_record)
            .collect();
        let spec = last_applied(store, &p2)?;
        let revisions = store.revisions(&p2)?;
        // The service's own events: its containers' and its rollouts'.
        let events: Vec<baton_state::Event> = store
            .events_page(Some(&p2), None, 400)?
            .into_iter()
            .filter(|e| e.subject == s2 || containers.contains(&e.subject))
            .take(20)
            .collect();
        Ok((rollouts, spec, revisions, events))
    })
    .await?;
    let strategy = spec
        .as_ref()
        .and_then(|p| p.services.get(&service))
        .and_then(|svc| baton_engine::rollout::rollout_spec(svc).ok())
        .map(|r| r.strategy);
    let proxies: Vec<serde_json::Value> = d
        .api
        .daemon
        .status()
        .proxies
        .into_iter()
        .filter(|x| x.project == project && x.service == service)
        .filter_map(|x| serde_json::to_value(x).ok())
        .collect();
    let panel = rollouts
        .last()
        .map(|r| rollout_panel(r, strategy.as_ref(), &proxies));
    let history: Vec<HistoryRow> = rollouts
        .iter()
        .rev()
        .map(|r| HistoryRow {
            id: r.id,
            revision: r.revision,
            strategy: r.strategy.clone(),
            status: r.status.to_string(),
            outcome: r.outcome.clone(),
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
        .collect();
    let row = service_row(svc, &rollouts);
    let live = format!("/ui/live?project={}", super::percent_encode(&project));
    let title = format!("{project} / {service}");
    let ctx = context! {
        project => project,
        service => row,
        listens => proxies.iter().map(|p| p["listen"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>(),
        rollout => panel,
        history => history,
        revisions => revisions.iter().rev().map(|r| r.number).collect::<Vec<_>>(),
        events => events,
        charts => super::charts::service(&project, &service),
        ..base(&s, now, "overview", &title, &live)
    };
    respond("service.html", &["live"], q.fragment.as_deref(), &ctx)
}

// ---- pipelines ----

pub(crate) async fn pipelines(
    State(d): D,
    Extension(s): Extension<Session>,
    q: Q,
) -> Result<Response> {
    let q = view(q)?;
    let now = (d.api.clock)();
    let projects = read(&d.api, |store| {
        let mut out = Vec::new();
        for p in store.projects()? {
            let runs: Vec<PipelineRunView> = store
                .pipeline_runs(&p.name, None, 30)?
                .into_iter()
                .map(PipelineRunView::from)
                .collect();
            if !runs.is_empty() {
                out.push((p.name, runs));
            }
        }
        Ok(out)
    })
    .await?;
    let ctx = context! {
        projects => projects,
        ..base(&s, now, "pipelines", "Pipelines", "/ui/live")
    };
    respond("pipelines.html", &["live"], q.fragment.as_deref(), &ctx)
}

/// A run's plan as `baton-pipeline` wrote it beside the run's logs.
#[derive(Debug, Default, Deserialize)]
struct PlanFile {
    #[serde(default)]
    jobs: Vec<PlanJob>,
}

#[derive(Debug, Default, Deserialize)]
struct PlanJob {
    id: String,
    #[serde(default)]
    needs: Vec<String>,
}

fn run_of(s: &str) -> std::result::Result<i64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("run {s:?} is not a run id")))
}

pub(crate) async fn run(
    State(d): D,
    Extension(s): Extension<Session>,
    p: std::result::Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    q: Q,
) -> Result<Response> {
    let q = view(q)?;
    let Path((project, run)) = p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    let project = name("project", &project)?;
    let run = run_of(&run)?;
    let now = (d.api.clock)();
    let state_dir = d.api.state_dir.clone();
    let p2 = project.clone();
    let (r, jobs, artifacts, plan) = read(&d.api, move |store| {
        let r = store
            .pipeline_run(run)?
            .filter(|r| r.project == p2)
            .ok_or_else(|| ApiError::not_found(format!("project {p2} has no run {run}")))?;
        let jobs: Vec<PipelineJobView> = store
            .pipeline_jobs(run)?
            .into_iter()
            .map(PipelineJobView::from)
            .collect();
        let artifacts: Vec<ArtifactView> = store
            .artifacts(&p2, Some(run))?
            .into_iter()
            .map(|a| ArtifactView {
                job: a.job,
                path: a.path,
                sha256: a.sha256,
                size: a.size,
                created_at: a.created_at,
                expires_at: a.expires_at,
            })
            .collect();
        let plan_path =
            baton_pipeline::run::run_dir(&state_dir, run).join(baton_pipeline::run::PLAN_FILE);
        let plan: PlanFile = std::fs::read(&plan_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok((PipelineRunView::from(r), jobs, artifacts, plan))
    })
    .await?;
    let status: BTreeMap<String, String> = jobs
        .iter()
        .map(|j| (j.name.clone(), j.status.clone()))
        .collect();
    // Without a plan file (a run from before there was one), the jobs in the order they
    // were decided, side by side.
    let plan_jobs: Vec<super::dag::Job> = if plan.jobs.is_empty() {
        jobs.iter()
            .filter(|j| j.kind == "job")
            .map(|j| super::dag::Job {
                id: j.name.clone(),
                needs: Vec::new(),
            })
            .collect()
    } else {
        plan.jobs
            .into_iter()
            .map(|j| super::dag::Job {
                id: j.id,
                needs: j.needs,
            })
            .collect()
    };
    let dag = super::dag::layout(&plan_jobs, &status);
    // Jobs the run has not recorded yet (it records a job once decided) are pending.
    let mut jobs = jobs;
    for j in &plan_jobs {
        if !status.contains_key(&j.id) {
            jobs.push(PipelineJobView {
                name: j.id.clone(),
                kind: "job".into(),
                seq: i64::MAX,
                status: "pending".into(),
                attempts: 0,
                exit_code: None,
                reason: None,
                started_at: None,
                finished_at: None,
            });
        }
    }
    // The log shown: the one asked for, else a running job's, else a failed one's.
    let shown = q
        .job
        .clone()
        .filter(|j| jobs.iter().any(|x| &x.name == j))
        .or_else(|| {
            jobs.iter()
                .find(|j| j.status == "running")
                .or_else(|| jobs.iter().find(|j| j.status == "failed"))
                .or_else(|| jobs.iter().rev().find(|j| j.started_at.is_some()))
                .map(|j| j.name.clone())
        });
    let live = format!("/ui/live?project={}", super::percent_encode(&project));
    let title = format!("{project} / {} #{}", r.pipeline, r.id);
    let ctx = context! {
        project => project,
        run => r,
        jobs => jobs,
        artifacts => artifacts,
        dag => dag,
        shown => shown,
        ..base(&s, now, "pipelines", &title, &live)
    };
    respond("run.html", &["live"], q.fragment.as_deref(), &ctx)
}

/// `GET …/runs/{run}/artifacts/{*path}`: the artifact as a download. The path is held
/// to the API's rule (relative, no `..`): a traversal is refused before any lookup.
pub(crate) async fn artifact(
    State(d): D,
    p: std::result::Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response> {
    let Path((project, run, path)) =
        p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    let project = name("project", &project)?;
    let run = run_of(&run)?;
    let path = artifact_path(&path)?;
    let state_dir = d.api.state_dir.clone();
    let p2 = path.clone();
    let bytes = read(&d.api, move |store| {
        crate::routes::read_artifact(store, &state_dir, &project, run, &p2)
    })
    .await?;
    let file: String = path
        .rsplit('/')
        .next()
        .unwrap_or("artifact")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut r = ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

// ---- fleet ----

/// A managed file on a host: the version it has, and whether a newer one exists.
#[derive(Debug, Clone, Serialize)]
struct FileOnHost {
    host: String,
    path: String,
    version: i64,
    applied_at: i64,
    behind: bool,
}

#[derive(Debug, Clone, Serialize)]
struct FileRow {
    name: String,
    latest: Option<i64>,
    versions: Vec<crate::FileVersionView>,
    hosts: Vec<FileOnHost>,
    behind: usize,
}

#[derive(Debug, Clone, Serialize)]
struct FleetSection {
    project: String,
    hosts: Vec<crate::FleetHostView>,
    runs: Vec<FleetRunView>,
    files: Vec<FileRow>,
}

pub(crate) async fn fleet(State(d): D, Extension(s): Extension<Session>, q: Q) -> Result<Response> {
    let q = view(q)?;
    let now = (d.api.clock)();
    let sections = read(&d.api, |store| {
        let mut out = Vec::new();
        for p in store.projects()? {
            let hosts = crate::routes::fleet_hosts_of(store, &p.name)?;
            let runs: Vec<FleetRunView> = store
                .fleet_runs(&p.name, 20)?
                .into_iter()
                .map(FleetRunView::from)
                .collect();
            let files: Vec<FileRow> = crate::routes::files_of(store, &p.name)?
                .into_iter()
                .map(|f| {
                    let latest = f.versions.iter().map(|v| v.version).max();
                    let hosts: Vec<FileOnHost> = f
                        .applied
                        .iter()
                        .map(|a| FileOnHost {
                            host: a.host.clone(),
                            path: a.path.clone(),
                            version: a.version,
                            applied_at: a.applied_at,
                            behind: latest.is_some_and(|l| a.version < l),
                        })
                        .collect();
                    FileRow {
                        behind: hosts.iter().filter(|h| h.behind).count(),
                        name: f.name,
                        latest,
                        versions: f.versions,
                        hosts,
                    }
                })
                .collect();
            if !hosts.is_empty() || !runs.is_empty() || !files.is_empty() {
                out.push(FleetSection {
                    project: p.name,
                    hosts,
                    runs,
                    files,
                });
            }
        }
        Ok(out)
    })
    .await?;
    let host_charts = super::charts::hosts(
        sections
            .iter()
            .flat_map(|s| s.hosts.iter().map(|h| h.host.clone())),
    );
    let ctx = context! {
        sections => sections,
        host_charts => host_charts,
        ..base(&s, now, "fleet", "Fleet", "/ui/live")
    };
    respond("fleet.html", &["live"], q.fragment.as_deref(), &ctx)
}

// ---- VMs ----

/// A VM as the pages show it, read from its stored record.
#[derive(Debug, Clone, Serialize)]
struct VmRow {
    name: String,
    /// `running`, `stopped`, or `gone` (a recorded process that no longer exists).
    state: &'static str,
    pid: Option<i64>,
    accel: Option<String>,
    cpus: Option<u64>,
    memory_mib: Option<u64>,
    environment: Option<String>,
    disks: Vec<(String, String)>,
    snapshots: usize,
    started_at: Option<i64>,
    updated_at: i64,
    /// The snapshot policy of its environment, as the file last gave it.
    policy: Option<PolicyRow>,
}

#[derive(Debug, Clone, Serialize)]
struct PolicyRow {
    max_snapshots: Option<u64>,
    retention_days: Option<u64>,
    naming: Option<String>,
}

fn vm_row(v: &baton_state::VmRecord, snapshots: usize) -> VmRow {
    // The record holds the host's `Machine` as JSON: `spec`, `disks`, `policy`.
    let m: serde_json::Value = serde_json::from_str(&v.spec_json).unwrap_or_default();
    let state = match v.pid {
        None => "stopped",
        Some(pid) if std::path::Path::new(&format!("/proc/{pid}")).exists() => "running",
        Some(_) => "gone",
    };
    VmRow {
        name: v.name.clone(),
        state,
        pid: v.pid,
        accel: v.accel.clone(),
        cpus: m["spec"]["cpus"].as_u64(),
        memory_mib: m["spec"]["memory_mib"].as_u64(),
        environment: m["spec"]["environment"].as_str().map(str::to_string),
        disks: m["disks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    d["name"].as_str().unwrap_or("").to_string(),
                    d["path"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
        snapshots,
        started_at: v.started_at,
        updated_at: v.updated_at,
        policy: m
            .get("policy")
            .filter(|p| p.is_object())
            .map(|p| PolicyRow {
                max_snapshots: p["max_snapshots"].as_u64(),
                retention_days: p["retention_days"].as_u64(),
                naming: p["naming"].as_str().map(str::to_string),
            }),
    }
}

pub(crate) async fn vms(State(d): D, Extension(s): Extension<Session>, q: Q) -> Result<Response> {
    let q = view(q)?;
    let now = (d.api.clock)();
    let rows = read(&d.api, |store| {
        let snaps = store.vm_snapshots(None)?;
        Ok(store
            .vms()?
            .iter()
            .map(|v| vm_row(v, snaps.iter().filter(|x| x.vm == v.name).count()))
            .collect::<Vec<_>>())
    })
    .await?;
    let ctx = context! {
        vms => rows,
        ..base(&s, now, "vms", "Virtual machines", "/ui/live")
    };
    respond("vms.html", &["live"], q.fragment.as_deref(), &ctx)
}

pub(crate) async fn vm(
    State(d): D,
    Extension(s): Extension<Session>,
    p: std::result::Result<Path<String>, axum::extract::rejection::PathRejection>,
    q: Q,
) -> Result<Response> {
    let q = view(q)?;
    let Path(vm) = p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    let vm = name("vm", &vm)?;
    let now = (d.api.clock)();
    let v2 = vm.clone();
    let (row, snapshots) = read(&d.api, move |store| {
        let rec = store
            .vm(&v2)?
            .ok_or_else(|| ApiError::not_found(format!("no VM named {v2}")))?;
        let snaps: Vec<crate::SnapshotView> = store
            .vm_snapshots(Some(&v2))?
            .into_iter()
            .map(crate::SnapshotView::from)
            .collect();
        Ok((vm_row(&rec, snaps.len()), snaps))
    })
    .await?;
    let title = format!("VM {vm}");
    let ctx = context! {
        vm => row,
        snapshots => snapshots,
        charts => super::charts::vm(&vm),
        ..base(&s, now, "vms", &title, "/ui/live")
    };
    respond("vm.html", &["live"], q.fragment.as_deref(), &ctx)
}

// ---- events and audit ----

const PAGE: i64 = 100;

pub(crate) async fn events(
    State(d): D,
    Extension(s): Extension<Session>,
    q: Q,
) -> Result<Response> {
    let q = view(q)?;
    let now = (d.api.clock)();
    let project = q
        .project
        .as_deref()
        .map(|p| name("project", p))
        .transpose()?;
    let (p2, before) = (project.clone(), q.before);
    let page = read(&d.api, move |store| {
        let rows = store.events_page(p2.as_deref(), before, PAGE + 1)?;
        Ok(crate::input::Page::from_rows(rows, PAGE, |e| e.id))
    })
    .await?;
    let live = match &project {
        Some(p) => format!("/ui/live?project={}", super::percent_encode(p)),
        None => "/ui/live".to_string(),
    };
    let ctx = context! {
        events => page.items,
        next => page.next,
        project => project,
        // Only the first page grows as events come.
        first => before.is_none(),
        ..base(&s, now, "events", "Events", &live)
    };
    respond("events.html", &[], None, &ctx)
}

pub(crate) async fn audit(State(d): D, Extension(s): Extension<Session>, q: Q) -> Result<Response> {
    require(Some(&s.principal), Role::Admin)?;
    let q = view(q)?;
    let now = (d.api.clock)();
    let project = q
        .project
        .as_deref()
        .map(|p| name("project", p))
        .transpose()?;
    let (p2, before) = (project.clone(), q.before);
    let page = read(&d.api, move |store| {
        let rows = store.audit_page(p2.as_deref(), before, PAGE + 1)?;
        let page = crate::input::Page::from_rows(rows, PAGE, |e| e.id);
        Ok(crate::input::Page {
            items: page
                .items
                .into_iter()
                .map(AuditView::from)
                .collect::<Vec<_>>(),
            next: page.next,
        })
    })
    .await?;
    let ctx = context! {
        entries => page.items,
        next => page.next,
        project => project,
        first => before.is_none(),
        ..base(&s, now, "audit", "Audit log", "/ui/live")
    };
    respond("audit.html", &["live"], q.fragment.as_deref(), &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_control::views::SupervisionView;
    use baton_engine::runtime::{ContainerState, Health};

    fn replica(n: u32, state: ContainerState, health: Health, status: &str) -> ReplicaView {
        ReplicaView {
            name: format!("p-web-{n}"),
            service: "web".into(),
            replica: n,
            id: format!("id{n}"),
            state,
            health,
            status: status.into(),
            created: 0,
            ports: vec![],
            image: "img".into(),
            config_hash: "h".into(),
            oneoff: false,
            supervision: None,
        }
    }

    fn service(
        declared: Option<u32>,
        running: u32,
        healthy: u32,
        replicas: Vec<ReplicaView>,
    ) -> ServiceView {
        ServiceView {
            name: "web".into(),
            declared_replicas: declared,
            running,
            healthy,
            stopped: false,
            replicas,
        }
    }

    #[test]
    fn services_are_judged_worst_first() {
        let up = |n| replica(n, ContainerState::Running, Health::Healthy, "Up 1 minute");
        let down = |n| {
            replica(
                n,
                ContainerState::Exited,
                Health::None,
                "Exited (137) 1 second ago",
            )
        };
        assert_eq!(
            service_status(&service(Some(2), 2, 2, vec![up(1), up(2)])),
            Status::Ok
        );
        assert_eq!(
            service_status(&service(Some(2), 1, 1, vec![up(1), down(2)])),
            Status::Degraded
        );
        assert_eq!(
            service_status(&service(Some(2), 2, 1, vec![up(1), up(2)])),
            Status::Degraded
        );
        assert_eq!(
            service_status(&service(Some(1), 0, 0, vec![down(1)])),
            Status::Down
        );
        assert_eq!(
            service_status(&service(Some(1), 0, 0, vec![])),
            Status::Down
        );
        let done = replica(
            1,
            ContainerState::Exited,
            Health::None,
            "Exited (0) 5 minutes ago",
        );
        assert_eq!(
            service_status(&service(Some(1), 0, 0, vec![done])),
            Status::Done
        );
        let mut stopped = service(Some(1), 0, 0, vec![down(1)]);
        stopped.stopped = true;
        assert_eq!(service_status(&stopped), Status::Stopped);
        assert!(Status::Down < Status::Degraded && Status::Degraded < Status::Ok);
        let mut r = up(1);
        r.supervision = Some(SupervisionView {
            status: "restarted".into(),
            restarts_per_minute: 2,
        });
        let row = ReplicaRow::from(&r);
        assert_eq!(
            (row.state.as_str(), row.health.as_str()),
            ("running", "healthy")
        );
        assert_eq!(row.restarts, Some(2));
    }

    #[test]
    fn canary_analysis_is_shown_against_its_limits() {
        let view = RolloutView {
            id: 7,
            service: "web".into(),
            revision: 3,
            from_hash: "old".into(),
            to_hash: "new".into(),
            strategy: "canary".into(),
            status: RolloutStatus::Running,
            requested: None,
            outcome: None,
            started_at: 0,
            finished_at: None,
            phase: Some("analysing".into()),
            step: Some(0),
            weight: Some(34),
            history: vec![],
            state: None,
        };
        let strategy = Strategy::Canary(baton_engine::rollout::Canary {
            steps: vec![
                baton_engine::rollout::CanaryStep {
                    weight: 34,
                    pause_ms: 600_000,
                },
                baton_engine::rollout::CanaryStep {
                    weight: 67,
                    pause_ms: 1000,
                },
            ],
            analysis: baton_engine::rollout::Analysis {
                max_error_rate: Some(0.01),
                max_p95_latency_ms: Some(500),
                min_requests: 20,
            },
        });
        let proxies = vec![serde_json::json!({
            "metrics": {"revisions": {
                "new": {"requests": 100, "responses_5xx": 2, "failures": 1, "latency": {"count": 100, "p95_ms": 12.5}},
                "old": {"requests": 300, "responses_5xx": 0, "failures": 0, "latency": {"count": 0, "p95_ms": 0.0}}
            }}
        })];
        let p = rollout_panel(&view, Some(&strategy), &proxies);
        assert_eq!((p.weight_new, p.weight_stable), (34, 66));
        assert!(p.steps[0].current && !p.steps[1].current);
        assert!(p.can_promote && p.can_abort && !p.can_resume);
        let checks: Vec<(&str, Option<bool>)> = p.checks.iter().map(|c| (c.what, c.ok)).collect();
        assert_eq!(
            checks,
            [
                ("requests to the canary", Some(true)),
                ("error rate", Some(false)),
                ("p95 latency", Some(true))
            ]
        );
        assert_eq!(p.checks[1].value, "3.00 % (3 of 100)");
        assert_eq!(p.traffic[0], ("stable".to_string(), 300, 0, None));
    }
}
