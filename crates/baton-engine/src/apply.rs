//! The applier: carries out a plan through a `Runtime`, following the dependency graph
//! with bounded parallelism, journaling every action as intent before and outcome after.
//!
//! Order: images first (a missing image stops everything before anything is created),
//! then networks and volumes, then every service at once, each waiting only for its own
//! `depends_on` conditions, then removals of leftovers.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use baton_spec::{Condition, Project};
use futures_util::future::{join_all, LocalBoxFuture};
use futures_util::FutureExt;
use tokio::sync::{watch, Semaphore};

use crate::graph;
use crate::hash::service_hash;
use crate::plan::Action;
use crate::resolve::{build_spec, container_spec, network_spec, volume_spec, FileSources};
use crate::runtime::{ContainerState, Health, Observed, Runtime, RuntimeError};

/// Where actions are recorded (the state store, in the CLI).
pub trait Journal {
    /// Records one engine operation of an action (`step`: creating, starting, stopping,
    /// removing, pulling, building) before it runs; returns a token for its outcome.
    fn intent(&self, action: &Action, step: &str) -> Option<i64>;
    fn outcome(&self, token: Option<i64>, result: Result<(), &str>);
}

/// A journal that records nothing (tests, dry runs).
pub struct NoJournal;

impl Journal for NoJournal {
    fn intent(&self, _: &Action, _: &str) -> Option<i64> {
        None
    }
    fn outcome(&self, _: Option<i64>, _: Result<(), &str>) {}
}

/// Dependencies that are not services of the project (the file's VMs): the caller
/// knows when one is ready. The engine only waits for them; what they are is not its
/// business.
pub trait External {
    /// `None` when `name` is no external dependency; else a future that resolves once
    /// `condition` holds, or with why it cannot.
    fn wait<'a>(
        &'a self,
        name: &'a str,
        condition: Condition,
    ) -> Option<LocalBoxFuture<'a, Result<(), String>>>;
}

/// No external dependencies.
pub struct NoExternal;

impl External for NoExternal {
    fn wait<'a>(
        &'a self,
        _: &'a str,
        _: Condition,
    ) -> Option<LocalBoxFuture<'a, Result<(), String>>> {
        None
    }
}

/// What the user sees while a plan is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Started { target: &'a str, what: &'a str },
    Waiting { target: &'a str, on: &'a str },
    Done { target: &'a str, what: &'a str },
    Failed { target: &'a str, error: &'a str },
}

pub trait Reporter {
    fn report(&self, step: Step<'_>);
}

/// A reporter that shows nothing.
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _: Step<'_>) {}
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Engine operations in flight at once.
    pub parallelism: usize,
    /// How long a dependant waits for a `depends_on` condition.
    pub wait_timeout: Duration,
    /// Host files behind configs and secrets.
    pub files: FileSources,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 32,
            wait_timeout: Duration::from_secs(300),
            files: FileSources::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    // The runtime error is part of the message, not a chained source, so that it is
    // printed once.
    #[error("service {service}: {error}")]
    Image {
        service: String,
        error: RuntimeError,
    },
    #[error("{target}: {error}")]
    Runtime { target: String, error: RuntimeError },
    #[error("service {service}: dependency {dependency} {problem}")]
    Dependency {
        service: String,
        dependency: String,
        problem: String,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Several(Vec<ApplyError>),
}

impl ApplyError {
    fn from_many(mut errors: Vec<ApplyError>) -> Result<(), ApplyError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(ApplyError::Several(errors)),
        }
    }
}

/// What was done.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    pub done: usize,
    pub failed: usize,
}

type Published = Option<Result<Vec<String>, String>>;

struct Ctx<'a, R> {
    rt: &'a R,
    journal: &'a dyn Journal,
    reporter: &'a dyn Reporter,
    opts: &'a ApplyOptions,
    external: &'a dyn External,
    permits: Semaphore,
    report: RefCell<ApplyReport>,
}

impl<'a, R: Runtime> Ctx<'a, R> {
    fn new(
        rt: &'a R,
        journal: &'a dyn Journal,
        reporter: &'a dyn Reporter,
        opts: &'a ApplyOptions,
    ) -> Self {
        Ctx {
            rt,
            journal,
            reporter,
            opts,
            external: &NoExternal,
            permits: Semaphore::new(opts.parallelism.max(1)),
            report: RefCell::new(ApplyReport::default()),
        }
    }

    /// Runs one engine operation under a permit, journaled and reported.
    async fn step<T>(
        &self,
        action: &Action,
        what: &str,
        op: impl std::future::Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, ApplyError> {
        let _permit = self.permits.acquire().await;
        let target = action.target();
        let token = self.journal.intent(action, what);
        self.reporter.report(Step::Started { target, what });
        let result = op.await;
        match &result {
            Ok(_) => {
                self.journal.outcome(token, Ok(()));
                self.reporter.report(Step::Done { target, what });
                self.report.borrow_mut().done += 1;
            }
            Err(e) => {
                let msg = e.to_string();
                self.journal.outcome(token, Err(&msg));
                self.reporter.report(Step::Failed {
                    target,
                    error: &msg,
                });
                self.report.borrow_mut().failed += 1;
            }
        }
        result.map_err(|error| ApplyError::Runtime {
            target: target.to_string(),
            error,
        })
    }
}

/// Applies an `up` plan. `observed` is what the plan was made from. A service's
/// `depends_on` may also name what `external` waits for (the file's VMs).
#[allow(clippy::too_many_arguments)]
pub async fn apply_up<R: Runtime>(
    rt: &R,
    project: &Project,
    observed: &Observed,
    plan: &[Action],
    journal: &dyn Journal,
    reporter: &dyn Reporter,
    opts: &ApplyOptions,
    external: &dyn External,
) -> Result<ApplyReport, ApplyError> {
    let mut owned = Ctx::new(rt, journal, reporter, opts);
    owned.external = external;
    let ctx = &owned;

    // 1. Images: all of them before anything is created.
    let image_steps = plan.iter().filter_map(|a| match a {
        Action::PullImage { service, image, .. } => Some((
            a,
            service,
            async move { ctx.step(a, "pulling", rt.pull_image(image, &|_| {})).await }
                .boxed_local(),
        )),
        Action::BuildImage { service, .. } => {
            let spec = build_spec(&project.name, service, &project.services[service]);
            Some((
                a,
                service,
                async move {
                    match spec {
                        Some(spec) => {
                            ctx.step(a, "building", rt.build_image(&spec, &|_| {}))
                                .await
                        }
                        None => Ok(()),
                    }
                }
                .boxed_local(),
            ))
        }
        _ => None,
    });
    let (services, futs): (Vec<_>, Vec<_>) = image_steps.map(|(_, s, f)| (s, f)).unzip();
    let errors: Vec<ApplyError> = join_all(futs)
        .await
        .into_iter()
        .zip(services)
        .filter_map(|(r, service)| {
            r.err().map(|e| match e {
                ApplyError::Runtime { error, .. } => ApplyError::Image {
                    service: service.clone(),
                    error,
                },
                other => other,
            })
        })
        .collect();
    ApplyError::from_many(errors)?;

    // 2. Networks and volumes.
    let futs = plan.iter().filter_map(|a| match a {
        Action::CreateNetwork { key, .. } => {
            let spec = network_spec(project, key)?;
            Some(
                async move {
                    ctx.step(a, "creating", rt.create_network(&spec))
                        .await
                        .map(drop)
                }
                .boxed_local(),
            )
        }
        Action::CreateVolume { key, .. } => {
            let spec = volume_spec(project, key)?;
            Some(
                async move { ctx.step(a, "creating", rt.create_volume(&spec)).await }.boxed_local(),
            )
        }
        _ => None,
    });
    let errors: Vec<ApplyError> = join_all(futs)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    ApplyError::from_many(errors)?;

    // 3. Services, each as soon as its dependencies allow.
    let names: Vec<String> =
        graph::start_order(project, &project.services.keys().cloned().collect());
    let channels: BTreeMap<&str, (watch::Sender<Published>, watch::Receiver<Published>)> = names
        .iter()
        .map(|n| (n.as_str(), watch::channel(None)))
        .collect();
    let futs = names.iter().map(|name| {
        let channels = &channels;
        async move {
            let result = run_service(ctx, project, observed, plan, name, channels).await;
            let published = match &result {
                Ok(ids) => Ok(ids.clone()),
                Err(e) => Err(e.to_string()),
            };
            if let Some((tx, _)) = channels.get(name.as_str()) {
                tx.send_replace(Some(published));
            }
            result.map(drop)
        }
    });
    let mut errors: Vec<ApplyError> = join_all(futs)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();

    // 4. Leftovers: orphans, duplicates.
    let futs = plan.iter().filter_map(|a| match a {
        Action::RemoveContainer { service, .. } if !project.services.contains_key(service) => {
            Some(remove_container(ctx, a, project, service).boxed_local())
        }
        Action::RemoveNetwork { id, .. } => Some(
            async move {
                ctx.step(a, "removing", patiently(|| rt.remove_network(id)))
                    .await
            }
            .boxed_local(),
        ),
        _ => None,
    });
    errors.extend(join_all(futs).await.into_iter().filter_map(Result::err));
    ApplyError::from_many(errors)?;
    Ok(owned.report.into_inner())
}

/// One service: wait for its dependencies (only if it has work to do), then do its
/// container actions in parallel. Returns the ids of its containers.
async fn run_service<R: Runtime>(
    ctx: &Ctx<'_, R>,
    project: &Project,
    observed: &Observed,
    plan: &[Action],
    name: &str,
    channels: &BTreeMap<&str, (watch::Sender<Published>, watch::Receiver<Published>)>,
) -> Result<Vec<String>, ApplyError> {
    let svc = &project.services[name];
    let mine: Vec<&Action> = plan
        .iter()
        .filter(|a| a.service() == Some(name))
        .filter(|a| !matches!(a, Action::PullImage { .. } | Action::BuildImage { .. }))
        .collect();
    let mut ids: BTreeMap<u32, String> = observed
        .containers
        .iter()
        .filter(|c| c.service == name && !c.oneoff)
        .map(|c| (c.replica, c.id.clone()))
        .collect();
    if mine.is_empty() {
        return Ok(ids.into_values().collect());
    }

    for (dep, d) in &svc.depends_on {
        let outcome = if let Some((_, rx)) = channels.get(dep.as_str()) {
            let mut rx = rx.clone();
            ctx.reporter.report(Step::Waiting {
                target: name,
                on: dep,
            });
            let published =
                match tokio::time::timeout(ctx.opts.wait_timeout, rx.wait_for(Option::is_some))
                    .await
                {
                    Ok(Ok(v)) => v.clone().unwrap_or(Ok(Vec::new())),
                    _ => Err("did not start in time".into()),
                };
            match published {
                Err(e) => Err(format!("failed: {e}")),
                Ok(dep_ids) => wait_condition(ctx, &dep_ids, d.condition).await,
            }
        } else if let Some(wait) = ctx.external.wait(dep, d.condition) {
            ctx.reporter.report(Step::Waiting {
                target: name,
                on: dep,
            });
            tokio::time::timeout(ctx.opts.wait_timeout, wait)
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "did not become ready in {:?}",
                        ctx.opts.wait_timeout
                    ))
                })
        } else {
            continue;
        };
        if let Err(problem) = outcome {
            if d.required {
                return Err(ApplyError::Dependency {
                    service: name.into(),
                    dependency: dep.clone(),
                    problem,
                });
            }
        }
    }

    let hash = service_hash(svc);
    let futs = mine.into_iter().map(|a| {
        let hash = &hash;
        async move {
            match a {
                Action::CreateContainer { replica, .. } => {
                    let spec = container_spec(project, name, svc, *replica, hash, &ctx.opts.files);
                    let id = ctx
                        .step(a, "creating", ctx.rt.create_container(&spec))
                        .await?;
                    ctx.step(a, "starting", ctx.rt.start_container(&id)).await?;
                    Ok(Some((*replica, id)))
                }
                Action::StartContainer { replica, id, .. } => {
                    ctx.step(a, "starting", ctx.rt.start_container(id)).await?;
                    Ok(Some((*replica, id.clone())))
                }
                Action::RecreateContainer { replica, id, .. } => {
                    stop_and_remove(ctx, a, svc, id).await?;
                    let spec = container_spec(project, name, svc, *replica, hash, &ctx.opts.files);
                    let new_id = ctx
                        .step(a, "creating", ctx.rt.create_container(&spec))
                        .await?;
                    ctx.step(a, "starting", ctx.rt.start_container(&new_id))
                        .await?;
                    Ok(Some((*replica, new_id)))
                }
                Action::RemoveContainer { id, replica, .. } => {
                    stop_and_remove(ctx, a, svc, id).await?;
                    Ok(Some((*replica, String::new())))
                }
                _ => Ok(None),
            }
        }
    });
    let mut errors = Vec::new();
    for r in join_all(futs).await {
        match r {
            Ok(Some((replica, id))) if id.is_empty() => {
                ids.remove(&replica);
            }
            Ok(Some((replica, id))) => {
                ids.insert(replica, id);
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    ApplyError::from_many(errors)?;
    Ok(ids.into_values().collect())
}

/// Stops with the service's grace period and signal, then removes.
async fn stop_and_remove<R: Runtime>(
    ctx: &Ctx<'_, R>,
    a: &Action,
    svc: &baton_spec::Service,
    id: &str,
) -> Result<(), ApplyError> {
    let grace = svc
        .stop_grace_period
        .map(|d| d.as_std())
        .unwrap_or(Duration::from_secs(10));
    let signal = svc.stop_signal.as_deref();
    ctx.step(a, "stopping", ctx.rt.stop_container(id, grace, signal))
        .await?;
    match ctx.step(a, "removing", ctx.rt.remove_container(id)).await {
        Err(ApplyError::Runtime {
            error: RuntimeError::NotFound { .. },
            ..
        }) => Ok(()),
        other => other,
    }
}

async fn remove_container<R: Runtime>(
    ctx: &Ctx<'_, R>,
    a: &Action,
    project: &Project,
    service: &str,
) -> Result<(), ApplyError> {
    let Action::RemoveContainer { id, .. } = a else {
        return Ok(());
    };
    let svc = project
        .services
        .get(service)
        .or_else(|| project.disabled_services.get(service))
        .cloned()
        .unwrap_or_default();
    stop_and_remove(ctx, a, &svc, id).await
}

/// Polls the dependency's containers until the condition holds.
async fn wait_condition<R: Runtime>(
    ctx: &Ctx<'_, R>,
    ids: &[String],
    condition: Condition,
) -> Result<(), String> {
    if condition == Condition::ServiceStarted {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + ctx.opts.wait_timeout;
    for id in ids {
        loop {
            let c = ctx
                .rt
                .inspect_container(id)
                .await
                .map_err(|e| e.to_string())?;
            let done = match condition {
                Condition::ServiceHealthy => match c.health {
                    Health::Healthy => true,
                    Health::Unhealthy => return Err(format!("is unhealthy ({})", c.name)),
                    Health::None => return Err(format!("has no healthcheck ({})", c.name)),
                    Health::Starting => false,
                },
                Condition::ServiceCompletedSuccessfully => match (c.state, c.exit_code) {
                    (ContainerState::Exited | ContainerState::Dead, Some(0)) => true,
                    (ContainerState::Exited | ContainerState::Dead, code) => {
                        return Err(format!(
                            "exited with code {} ({})",
                            code.unwrap_or(-1),
                            c.name
                        ))
                    }
                    _ => false,
                },
                Condition::ServiceStarted => true,
            };
            if done {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "did not become ready in {:?}",
                    ctx.opts.wait_timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Applies a `down` plan: containers (dependants before dependencies, each level in
/// parallel), then networks, then volumes.
pub async fn apply_down<R: Runtime>(
    rt: &R,
    project: Option<&Project>,
    plan: &[Action],
    journal: &dyn Journal,
    reporter: &dyn Reporter,
    opts: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let owned = Ctx::new(rt, journal, reporter, opts);
    let ctx = &owned;
    let empty = Project::default();
    let project = project.unwrap_or(&empty);
    // Stop order: dependants before what they depend on; independent services (and
    // orphans) together in the first wave.
    let levels_of = graph::stop_levels(project);
    let mut levels: BTreeMap<usize, Vec<&Action>> = BTreeMap::new();
    for a in plan
        .iter()
        .filter(|a| matches!(a, Action::RemoveContainer { .. }))
    {
        let level = levels_of
            .get(a.service().unwrap_or(""))
            .copied()
            .unwrap_or(0);
        levels.entry(level).or_default().push(a);
    }
    let mut errors = Vec::new();
    for actions in levels.values() {
        let futs = actions
            .iter()
            .map(|a| remove_container(ctx, a, project, a.service().unwrap_or("")));
        errors.extend(join_all(futs).await.into_iter().filter_map(Result::err));
    }
    let futs = plan.iter().filter_map(|a| match a {
        Action::RemoveNetwork { id, .. } => {
            Some(ctx.step(a, "removing", rt.remove_network(id)).boxed_local())
        }
        _ => None,
    });
    errors.extend(join_all(futs).await.into_iter().filter_map(Result::err));
    let futs = plan.iter().filter_map(|a| match a {
        Action::RemoveVolume { name, .. } => Some(
            ctx.step(a, "removing", rt.remove_volume(name))
                .boxed_local(),
        ),
        _ => None,
    });
    errors.extend(join_all(futs).await.into_iter().filter_map(Result::err));
    ApplyError::from_many(errors)?;
    Ok(owned.report.into_inner())
}

/// Retries a removal while the engine says the thing is still in use: a network's
/// endpoints and a volume's mounts are released a moment after their containers go.
async fn patiently<F, Fut>(op: F) -> Result<(), RuntimeError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), RuntimeError>>,
{
    let mut delay = Duration::from_millis(50);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match op().await {
            Err(RuntimeError::InUse { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            other => return other,
        }
    }
}
