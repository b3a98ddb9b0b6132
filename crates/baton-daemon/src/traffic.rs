//! Traffic for services whose traffic baton carries: one proxy per published port and one
//! backend pool per container port the edge routes to (`x-baton.routes`), routed to
//! healthy replicas, and the rollouts that replace those replicas without a failed
//! request, carried out as the pure deciders of `baton_engine::rollout` say.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use baton_engine::resolve::{container_name, container_spec, traffic_managed, FileSources};
use baton_engine::rollout::{
    self, rollout_spec, Decision, Health as RHealth, Observation, Outcome, Replica,
    RevisionMetrics, RolloutState,
};
use baton_engine::runtime::{
    ContainerState, Health, Observed, ObservedContainer, Runtime, RuntimeError,
};
use baton_proxy::external::{External, ExternalConfig, Provider};
use baton_proxy::{Backend, BackendPool, PoolConfig, Proxy, ProxyConfig};
use baton_spec::{Project, Service};
use baton_state::{RolloutRecord, RolloutRequest, RolloutStatus, Store};
use futures_util::future::join_all;

/// What carries one port's traffic: baton's own proxy or a server the user runs that
/// baton writes a routing file for (`x-baton.proxy.provider: nginx | haproxy`), on a
/// published port; or a pool the edge routes hosts and paths to.
enum Frontend {
    Builtin(Proxy),
    External(Box<External>),
    Pool(BackendPool),
}

impl Frontend {
    /// Where it listens: an address, or `edge` for a pool.
    fn listen(&self) -> String {
        match self {
            Frontend::Builtin(p) => p.local_addr().to_string(),
            Frontend::External(e) => e.listen().to_string(),
            Frontend::Pool(_) => "edge".into(),
        }
    }

    fn report(&self, result: Result<(), String>) {
        if let (Frontend::External(e), Err(err)) = (self, result) {
            tracing::warn!("{}: {err}", e.config().config_path.display());
        }
    }

    fn set_backends(&self, backends: Vec<Backend>) {
        match self {
            Frontend::Builtin(p) => p.set_backends(backends),
            Frontend::External(e) => self.report(e.set_backends(backends)),
            Frontend::Pool(p) => p.set_backends(backends),
        }
    }

    fn set_split(&self, split: Option<Vec<(String, u32)>>) {
        match self {
            Frontend::Builtin(p) => p.set_split(split),
            Frontend::External(e) => self.report(e.set_split(split)),
            Frontend::Pool(p) => p.set_split(split),
        }
    }

    /// Waits for the named backends (at `addrs`) to finish what they serve.
    async fn drained(&self, ids: &[String], addrs: &[SocketAddr]) {
        match self {
            Frontend::Builtin(p) => p.drained(ids).await,
            Frontend::External(e) => e.drained_addrs(addrs).await,
            Frontend::Pool(p) => p.drained(ids).await,
        }
    }

    /// Per-revision metrics; an external server's come from its log lines (none when
    /// its log socket could not be set up).
    fn metrics(&self) -> Option<baton_proxy::Metrics> {
        match self {
            Frontend::Builtin(p) => Some(p.metrics()),
            Frontend::External(e) => e.metrics(),
            Frontend::Pool(p) => Some(p.metrics()),
        }
    }

    fn reset_metrics(&self) {
        match self {
            Frontend::Builtin(p) => p.reset_metrics(),
            Frontend::External(e) => e.reset_metrics(),
            Frontend::Pool(p) => p.reset_metrics(),
        }
    }

    async fn shutdown(self) {
        match self {
            Frontend::Builtin(p) => p.shutdown().await,
            Frontend::External(e) => {
                if let Err(err) = e.shutdown() {
                    tracing::warn!("{}: {err}", e.config().config_path.display());
                }
            }
            Frontend::Pool(p) => p.close(),
        }
    }
}

/// The daemon's traffic state, per (project, service).
#[derive(Default)]
pub struct Traffic {
    /// Per service: each frontend and the container port it forwards to.
    proxies: BTreeMap<(String, String), Vec<(u16, Frontend)>>,
    /// During a rollout: the container names that take traffic.
    routed: BTreeMap<(String, String), BTreeSet<String>>,
    /// The container names each service's proxies last routed to.
    backends: BTreeMap<(String, String), BTreeSet<String>>,
    /// Whether a split is set on the service's proxies (so it is cleared once).
    split: BTreeSet<(String, String)>,
    /// The split set last, per service: (configuration hash, weight).
    weights: BTreeMap<(String, String), Vec<(String, u32)>>,
}

/// What one rollout step works on: the engine, the store, the service of the project,
/// the rollout record and what this tick observed.
struct Scope<'a, R> {
    rt: &'a R,
    store: &'a Store,
    project: &'a Project,
    name: &'a str,
    svc: &'a Service,
    record: &'a RolloutRecord,
    observed: &'a Observed,
    files: &'a FileSources,
}

fn takes_traffic(c: &ObservedContainer) -> bool {
    c.state == ContainerState::Running && matches!(c.health, Health::Healthy | Health::None)
}

fn replica_health(c: &ObservedContainer) -> RHealth {
    match (c.state, c.health) {
        (ContainerState::Running, Health::Healthy | Health::None) => RHealth::Healthy,
        (ContainerState::Running, Health::Unhealthy) => RHealth::Unhealthy,
        (ContainerState::Running | ContainerState::Created | ContainerState::Restarting, _) => {
            RHealth::Starting
        }
        _ => RHealth::Gone,
    }
}

/// The container ports the edge routes the service's hosts to: one pool each.
fn routed_targets(svc: &Service) -> BTreeSet<u16> {
    baton_engine::edge::service_routes(svc)
        .ok()
        .flatten()
        .into_iter()
        .flat_map(|r| r.routes)
        .filter_map(|r| match r.to {
            baton_engine::edge::RouteTo::Port(p) => Some(p),
            baton_engine::edge::RouteTo::Redirect(_) => None,
        })
        .collect()
}

/// How a service's pools balance and time out: as its proxies do.
fn pool_config(svc: &Service) -> PoolConfig {
    let settings = baton_engine::resolve::proxy_settings(svc).unwrap_or_default();
    let mut config = PoolConfig::http();
    config.drain_timeout =
        Duration::from_millis(rollout_spec(svc).map_or(10_000, |s| s.drain_timeout_ms));
    config.response_timeout = settings
        .response_timeout_ms
        .map_or(baton_proxy::DEFAULT_RESPONSE_TIMEOUT, Duration::from_millis);
    if settings.least_connections {
        config.balance = baton_proxy::Balance::LeastConnections;
    }
    config
}

/// The host-reachable address of a container for a target port.
fn backend_addr(c: &ObservedContainer, target: u16) -> Option<SocketAddr> {
    let ip: IpAddr = c.addresses.values().find_map(|a| a.parse().ok())?;
    Some(SocketAddr::new(ip, target))
}

impl Traffic {
    /// The services whose rollout the daemon is carrying out, or whose newest rollout
    /// is paused (left as it is for a person, until `rollout abort|resume` or a new
    /// `up`) and still holds replicas it started: the supervisor leaves them alone.
    /// (After a `down` and an `up` of the same file, `up`'s own replicas are the
    /// supervisor's again.)
    pub fn rolling_services(store: &Store, project: &str, observed: &Observed) -> Vec<String> {
        let all = store.rollouts(project, None).unwrap_or_default();
        let holds = |r: &RolloutRecord| {
            let suffix = rollout_suffix(&r.to_hash);
            observed
                .containers
                .iter()
                .any(|c| c.service == r.service && !c.oneoff && c.name.ends_with(&suffix))
        };
        // Newest last: the last record seen per service is its newest.
        let newest: BTreeMap<&str, &RolloutRecord> =
            all.iter().map(|r| (r.service.as_str(), r)).collect();
        let mut out: Vec<String> = all
            .iter()
            .filter(|r| r.status == RolloutStatus::Running)
            .map(|r| r.service.clone())
            .collect();
        out.extend(
            newest
                .values()
                .filter(|r| r.status == RolloutStatus::Paused && holds(r))
                .map(|r| r.service.clone()),
        );
        out.sort();
        out.dedup();
        out
    }

    /// Closes the proxies of services that should no longer have one: their project was
    /// taken down, or they are no longer traffic-managed. `keep` lists (project, service)
    /// pairs that are.
    pub async fn release_except(&mut self, keep: &BTreeSet<(String, String)>) {
        let gone: Vec<(String, String)> = self
            .proxies
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            for (target, proxy) in self.proxies.remove(&key).unwrap_or_default() {
                let addr = proxy.listen();
                proxy.shutdown().await;
                tracing::info!("{}/{}: proxy on {addr} -> :{target} closed", key.0, key.1);
            }
            self.routed.remove(&key);
            self.split.remove(&key);
            self.weights.remove(&key);
            self.backends.remove(&key);
        }
    }

    /// The traffic split set on each of `project`'s services (during a rollout), by
    /// service: (configuration hash, weight).
    pub fn weights(&self, project: &str) -> BTreeMap<String, Vec<(String, u32)>> {
        self.weights
            .iter()
            .filter(|((p, _), _)| p == project)
            .map(|((_, s), w)| (s.clone(), w.clone()))
            .collect()
    }

    /// One look at every traffic-managed service of the project.
    pub async fn tick<R: Runtime>(
        &mut self,
        rt: &R,
        store: &Store,
        project: &Project,
        observed: &Observed,
        files: &FileSources,
        now: u64,
    ) -> Result<(), RuntimeError> {
        for (name, svc) in &project.services {
            if !traffic_managed(svc) {
                continue;
            }
            let key = (project.name.clone(), name.clone());
            self.ensure_proxies(&key, svc, &project.working_dir).await;
            if self.ensure_pools(&key, svc) {
                // A new pool starts with what the service's other frontends route to.
                let names = self
                    .routed
                    .get(&key)
                    .or_else(|| self.backends.get(&key))
                    .cloned()
                    .unwrap_or_default();
                self.route(&key, observed, &names);
            }
            let running: Vec<RolloutRecord> = store
                .rollouts(&project.name, Some(name))
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.status == RolloutStatus::Running)
                .collect();
            // A newer `up` supersedes a rollout in flight: undo the older ones' partial work.
            if let Some((newest, older)) = running.split_last() {
                let scope = |record| Scope {
                    rt,
                    store,
                    project,
                    name,
                    svc,
                    record,
                    observed,
                    files,
                };
                for r in older {
                    self.supersede(&scope(r), now).await;
                }
                // What this tick observed predates the undo: step the newer rollout
                // on the next look.
                if older.is_empty() {
                    self.step_rollout(&scope(newest), now).await?;
                }
            } else {
                self.routed.remove(&key);
                self.weights.remove(&key);
                if self.split.remove(&key) {
                    for (_, p) in self.proxies.get(&key).into_iter().flatten() {
                        p.set_split(None);
                    }
                }
                let all: BTreeSet<String> = observed
                    .containers
                    .iter()
                    .filter(|c| c.service == *name && !c.oneoff && takes_traffic(c))
                    .map(|c| c.name.clone())
                    .collect();
                self.route(&key, observed, &all);
            }
        }
        Ok(())
    }

    async fn ensure_proxies(
        &mut self,
        key: &(String, String),
        svc: &Service,
        working_dir: &std::path::Path,
    ) {
        if self.proxies.contains_key(key) {
            return;
        }
        let drain = rollout_spec(svc).map_or(10_000, |s| s.drain_timeout_ms);
        let settings = baton_engine::resolve::proxy_settings(svc).unwrap_or_default();
        let response_timeout = settings
            .response_timeout_ms
            .map_or(baton_proxy::DEFAULT_RESPONSE_TIMEOUT, Duration::from_millis);
        let published: Vec<_> = svc.ports.iter().filter(|p| p.published.is_some()).collect();
        let mut proxies = Vec::new();
        for p in &published {
            let ip = p
                .host_ip
                .as_deref()
                .and_then(|h| h.trim_matches(['[', ']']).parse().ok())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let listen = SocketAddr::new(ip, p.published.unwrap_or(0));
            if let Some(ext) = &settings.external {
                let mut path = working_dir.join(&ext.config);
                if published.len() > 1 {
                    // One file per port: web.conf → web-8080.conf.
                    let stem = path
                        .file_stem()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    let name = match path.extension() {
                        Some(e) => format!("{stem}-{}.{}", listen.port(), e.to_string_lossy()),
                        None => format!("{stem}-{}", listen.port()),
                    };
                    path.set_file_name(name);
                }
                let name: String = format!("baton_{}_{}_{}", key.0, key.1, listen.port())
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                // Beside the routing file: the server can reach that directory.
                let socket = path.with_file_name(format!(".baton-{name}.sock"));
                let config = ExternalConfig {
                    provider: match ext.provider {
                        baton_engine::resolve::ProviderKind::Nginx => Provider::Nginx,
                        baton_engine::resolve::ProviderKind::Haproxy => Provider::Haproxy,
                    },
                    name,
                    listen,
                    protocol: if settings.tcp {
                        baton_proxy::Protocol::Tcp
                    } else {
                        baton_proxy::Protocol::Http
                    },
                    balance: if settings.least_connections {
                        baton_proxy::Balance::LeastConnections
                    } else {
                        baton_proxy::Balance::RoundRobin
                    },
                    config_path: path.clone(),
                    check: ext.check.clone(),
                    reload: ext.reload.clone(),
                    drain_timeout: Duration::from_millis(drain),
                    response_timeout,
                    log_socket: Some(socket),
                };
                tracing::info!(
                    "{}/{}: routing written to {} for {listen} -> :{}",
                    key.0,
                    key.1,
                    path.display(),
                    p.target
                );
                proxies.push((
                    p.target,
                    Frontend::External(Box::new(External::new(config))),
                ));
                continue;
            }
            let mut config = ProxyConfig::http(listen);
            config.drain_timeout = Duration::from_millis(drain);
            config.response_timeout = response_timeout;
            if settings.tcp {
                config.protocol = baton_proxy::Protocol::Tcp;
            }
            if settings.least_connections {
                config.balance = baton_proxy::Balance::LeastConnections;
            }
            match Proxy::bind(config).await {
                Ok(proxy) => {
                    tracing::info!(
                        "{}/{}: proxy listening on {listen} -> :{}",
                        key.0,
                        key.1,
                        p.target
                    );
                    proxies.push((p.target, Frontend::Builtin(proxy)));
                }
                Err(e) => tracing::warn!("{}/{}: cannot listen on {listen}: {e}", key.0, key.1),
            }
        }
        self.proxies.insert(key.clone(), proxies);
    }

    /// Adds a pool for each container port the service's routes go to, and closes the
    /// pools of ports no longer routed. True when a pool was added.
    fn ensure_pools(&mut self, key: &(String, String), svc: &Service) -> bool {
        let wanted = routed_targets(svc);
        let frontends = self.proxies.entry(key.clone()).or_default();
        let mut added = false;
        frontends.retain(|(target, f)| match f {
            Frontend::Pool(pool) if !wanted.contains(target) => {
                pool.close();
                tracing::info!("{}/{}: edge pool -> :{target} closed", key.0, key.1);
                false
            }
            _ => true,
        });
        for target in wanted {
            let have = frontends
                .iter()
                .any(|(t, f)| *t == target && matches!(f, Frontend::Pool(_)));
            if !have {
                frontends.push((target, Frontend::Pool(BackendPool::new(&pool_config(svc)))));
                tracing::info!("{}/{}: edge pool -> :{target}", key.0, key.1);
                added = true;
            }
        }
        added
    }

    /// The pool the edge routes `project`/`service`'s hosts on container port `port` to.
    pub fn pool(&self, project: &str, service: &str, port: u16) -> Option<BackendPool> {
        self.proxies
            .get(&(project.to_string(), service.to_string()))?
            .iter()
            .find_map(|(t, f)| match f {
                Frontend::Pool(p) if *t == port => Some(p.clone()),
                _ => None,
            })
    }

    /// What serves each published port and routed container port, for the daemon's API.
    pub fn status(&self) -> Vec<crate::api::ProxyStatus> {
        let mut out = Vec::new();
        for ((project, service), frontends) in &self.proxies {
            for (target, f) in frontends {
                out.push(crate::api::ProxyStatus {
                    project: project.clone(),
                    service: service.clone(),
                    listen: match f {
                        Frontend::Pool(_) => format!("edge -> :{target}"),
                        _ => f.listen(),
                    },
                    provider: match f {
                        Frontend::Builtin(_) => "builtin".into(),
                        Frontend::External(e) => match e.config().provider {
                            Provider::Nginx => "nginx".into(),
                            Provider::Haproxy => "haproxy".into(),
                        },
                        Frontend::Pool(_) => "edge".into(),
                    },
                    backends: self
                        .backends
                        .get(&(project.clone(), service.clone()))
                        .map(|b| b.iter().cloned().collect())
                        .unwrap_or_default(),
                    metrics: f.metrics(),
                });
            }
        }
        out
    }

    /// Points the service's proxies and pools at the named containers.
    fn route(&mut self, key: &(String, String), observed: &Observed, names: &BTreeSet<String>) {
        let live: Vec<&ObservedContainer> = observed
            .containers
            .iter()
            .filter(|c| names.contains(&c.name) && c.state == ContainerState::Running)
            .collect();
        for (target, proxy) in self.proxies.get(key).into_iter().flatten() {
            let target = *target;
            let backends = live
                .iter()
                .filter_map(|c| {
                    backend_addr(c, target)
                        .map(|a| Backend::new(c.name.clone(), a, c.config_hash.clone()))
                })
                .collect();
            proxy.set_backends(backends);
        }
        let live = live.iter().map(|c| c.name.clone()).collect();
        self.backends.insert(key.clone(), live);
    }

    fn metrics(&self, key: &(String, String), revision: &str) -> Option<RevisionMetrics> {
        let proxies = self.proxies.get(key)?;
        let mut m = RevisionMetrics {
            requests: 0,
            errors_5xx: 0,
            p95_ms: None,
        };
        for (_, p) in proxies {
            let metrics = p.metrics()?;
            if let Some(r) = metrics.revisions.get(revision) {
                m.requests += r.requests;
                m.errors_5xx += r.responses_5xx + r.failures;
                if r.latency.count > 0 {
                    m.p95_ms = Some(m.p95_ms.unwrap_or(0.0).max(r.latency.p95_ms));
                }
            }
        }
        Some(m)
    }

    async fn step_rollout<R: Runtime>(
        &mut self,
        s: &Scope<'_, R>,
        now: u64,
    ) -> Result<(), RuntimeError> {
        let &Scope {
            store,
            project,
            name,
            svc,
            record,
            observed,
            ..
        } = s;
        let key = (project.name.clone(), name.to_string());
        let Ok(spec) = rollout_spec(svc) else {
            return Ok(());
        };
        let Ok(mut state) = serde_json::from_str::<RolloutState>(&record.state_json) else {
            let _ = store.update_rollout(
                record.id,
                RolloutStatus::Paused,
                &record.state_json,
                Some("unreadable rollout state"),
                Some(now as i64),
            );
            return Ok(());
        };
        match store.take_rollout_request(record.id).ok().flatten() {
            Some(RolloutRequest::Promote) => state = rollout::promote(&state, now),
            Some(RolloutRequest::Abort) => state = rollout::abort(&state, now),
            // `abort` and `resume` also come for a paused rollout, which the request
            // set running again.
            Some(RolloutRequest::Resume) => state = rollout::resume(&state, now),
            None => {}
        }
        let mine = || {
            observed
                .containers
                .iter()
                .filter(|c| c.service == name && !c.oneoff)
        };
        // The old set: the old configuration, plus any replica the rollout took over as
        // old (a superseded rolling update's routed ones).
        let old: Vec<&ObservedContainer> = mine()
            .filter(|c| c.config_hash != record.to_hash)
            .filter(|c| c.config_hash == record.from_hash || state.old_running.contains(&c.name))
            .collect();
        let new: Vec<&ObservedContainer> =
            mine().filter(|c| c.config_hash == record.to_hash).collect();
        // First look at this rollout since the daemon started: route what serves now,
        // at once (a proxy this daemon just bound has no backends yet and would answer
        // 503 until the rollout's next route or stop).
        if !self.routed.contains_key(&key) {
            let names: BTreeSet<String> = old
                .iter()
                .filter(|c| takes_traffic(c))
                .map(|c| c.name.clone())
                .chain(state.new_routed.iter().cloned())
                .collect();
            self.routed.insert(key.clone(), names.clone());
            self.route(&key, observed, &names);
        }
        let replicas = |set: &[&ObservedContainer]| -> Vec<Replica> {
            set.iter()
                .map(|c| Replica {
                    id: c.name.clone(),
                    health: replica_health(c),
                })
                .collect()
        };
        let obs = Observation {
            now_ms: now,
            old: replicas(&old),
            new: replicas(&new),
            old_metrics: self.metrics(&key, &record.from_hash),
            new_metrics: self.metrics(&key, &record.to_hash),
        };
        let (next, decisions, outcome) = rollout::step(&spec, &state, &obs);
        for d in &decisions {
            tracing::info!("{}/{name}: rollout {}: {d:?}", project.name, record.id);
            // The event stream shows each step as it is taken (weights included).
            if let Some(step) = step_text(d) {
                let _ = store.event(
                    &project.name,
                    "rollout",
                    name,
                    &format!("rollout {}: {step}", record.id),
                    now as i64,
                );
            }
            self.carry_out(s, d).await;
        }
        rollback_events(store, &project.name, name, record.id, &state, &next);
        let json = serde_json::to_string(&next).unwrap_or_default();
        let (status, text) = match &outcome {
            None => (RolloutStatus::Running, None),
            Some(Outcome::Completed) => (RolloutStatus::Completed, Some("completed".to_string())),
            Some(Outcome::RolledBack { reason }) => (
                RolloutStatus::RolledBack,
                Some(format!("rolled back: {reason}")),
            ),
            Some(Outcome::Paused { reason }) => {
                (RolloutStatus::Paused, Some(format!("paused: {reason}")))
            }
        };
        let finished = outcome.as_ref().map(|_| now as i64);
        let _ = store.update_rollout(record.id, status, &json, text.as_deref(), finished);
        if let Some(text) = text {
            tracing::info!("{}/{name}: rollout {} {text}", project.name, record.id);
            let _ = store.event(&project.name, "rollout", name, &text, now as i64);
            if !matches!(outcome, Some(Outcome::Paused { .. })) {
                self.routed.remove(&key);
            }
        }
        Ok(())
    }

    async fn carry_out<R: Runtime>(&mut self, s: &Scope<'_, R>, d: &Decision) {
        let &Scope {
            rt,
            store,
            project,
            name,
            svc,
            record,
            observed,
            files,
        } = s;
        let key = (project.name.clone(), name.to_string());
        match d {
            Decision::StartNew { count } => {
                start_replicas(
                    rt,
                    project,
                    name,
                    svc,
                    &record.to_hash,
                    observed,
                    *count,
                    files,
                )
                .await;
            }
            Decision::StartOld { count } => {
                // The old configuration, as the store kept it behind its hash.
                let old: Option<Service> = store
                    .service_config(&record.from_hash)
                    .ok()
                    .flatten()
                    .and_then(|j| serde_json::from_str(&j).ok());
                match old {
                    Some(mut old) => {
                        // The stored configuration is the effective one, without
                        // `x-baton`: the service's own says the proxy owns its ports, so
                        // the restored replicas publish none (as the new ones).
                        old.baton = svc.baton.clone();
                        start_replicas(
                            rt,
                            project,
                            name,
                            &old,
                            &record.from_hash,
                            observed,
                            *count,
                            files,
                        )
                        .await
                    }
                    None => tracing::warn!(
                        "{}/{name}: the old configuration is unknown; cannot restore",
                        project.name
                    ),
                }
            }
            Decision::RouteNew { ids } | Decision::RouteOld { ids } => {
                let routed = self.routed.entry(key.clone()).or_default();
                routed.extend(ids.iter().cloned());
                let names = routed.clone();
                self.route(&key, observed, &names);
            }
            Decision::StopOld { ids } | Decision::StopNew { ids } => {
                let routed = self.routed.entry(key.clone()).or_default();
                for id in ids {
                    routed.remove(id);
                }
                let names = routed.clone();
                self.route(&key, observed, &names);
                let frontends = self
                    .proxies
                    .get(&key)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let addrs: Vec<SocketAddr> = ids
                    .iter()
                    .filter_map(|id| observed.containers.iter().find(|c| &c.name == id))
                    .flat_map(|c| {
                        frontends
                            .iter()
                            .filter_map(|(target, _)| backend_addr(c, *target))
                    })
                    .collect();
                for (_, p) in frontends {
                    p.drained(ids, &addrs).await;
                }
                let grace = svc
                    .stop_grace_period
                    .map_or(Duration::from_secs(10), |d| d.as_std());
                let stops = ids
                    .iter()
                    .filter_map(|id| observed.containers.iter().find(|c| &c.name == id))
                    .map(|c| async move {
                        let _ = rt
                            .stop_container(&c.id, grace, svc.stop_signal.as_deref())
                            .await;
                        let _ = rt.remove_container(&c.id).await;
                    });
                join_all(stops).await;
            }
            Decision::SetWeight { new_percent } => {
                let p = (*new_percent).min(100);
                self.split.insert(key.clone());
                let split = vec![
                    (record.to_hash.clone(), p),
                    (record.from_hash.clone(), 100 - p),
                ];
                for (_, proxy) in self.proxies.get(&key).into_iter().flatten() {
                    proxy.set_split(Some(split.clone()));
                }
                self.weights.insert(key.clone(), split);
            }
            Decision::ResetMetrics => {
                for (_, proxy) in self.proxies.get(&key).into_iter().flatten() {
                    proxy.reset_metrics();
                }
            }
        }
    }

    async fn supersede<R: Runtime>(&mut self, s: &Scope<'_, R>, now: u64) {
        let &Scope {
            store,
            project,
            name,
            record,
            ..
        } = s;
        let Ok(mut state) = serde_json::from_str::<RolloutState>(&record.state_json) else {
            let _ = store.update_rollout(
                record.id,
                RolloutStatus::Superseded,
                &record.state_json,
                Some("superseded"),
                Some(now as i64),
            );
            return;
        };
        // Replicas it started that no observation recorded yet are its too.
        for c in s
            .observed
            .containers
            .iter()
            .filter(|c| c.service == name && !c.oneoff && c.config_hash == record.to_hash)
        {
            if !state.new_seen.contains(&c.name) {
                state.new_seen.push(c.name.clone());
            }
        }
        for d in rollout::superseded(&state) {
            self.carry_out(s, &d).await;
        }
        let _ = store.update_rollout(
            record.id,
            RolloutStatus::Superseded,
            &record.state_json,
            Some("superseded by a newer up"),
            Some(now as i64),
        );
        let _ = store.event(
            &project.name,
            "rollout",
            name,
            "superseded by a newer up",
            now as i64,
        );
    }
}

/// A rolling rollback's batches as events (`baton events`): each one begun, and each one
/// whose restored replicas were routed, since the previous step.
fn rollback_events(
    store: &Store,
    project: &str,
    name: &str,
    id: i64,
    before: &RolloutState,
    after: &RolloutState,
) {
    for (i, b) in after.rollback_batches.iter().enumerate() {
        let was = before.rollback_batches.get(i);
        let n = i + 1;
        if was.is_none() {
            let text = format!("rollout {id}: rollback batch {n}: {} replica(s)", b.old);
            let _ = store.event(project, "rollout", name, &text, b.started_ms as i64);
        }
        if let (Some(at), None) = (b.routed_ms, was.and_then(|w| w.routed_ms)) {
            let text = format!(
                "rollout {id}: rollback batch {n}: routed old {}, stopped new {}",
                b.routed.join(", "),
                b.stopped_new.join(", ")
            );
            let _ = store.event(project, "rollout", name, &text, at as i64);
        }
    }
}

/// Creates and starts `count` replicas of a service configuration, numbered with the
/// lowest replica numbers that configuration does not use yet, and named with a short
/// hash suffix so they live beside the replicas they replace.
#[allow(clippy::too_many_arguments)]
async fn start_replicas<R: Runtime>(
    rt: &R,
    project: &Project,
    name: &str,
    svc: &Service,
    hash: &str,
    observed: &Observed,
    count: u32,
    files: &FileSources,
) {
    let used: BTreeSet<u32> = observed
        .containers
        .iter()
        .filter(|c| c.service == name && c.config_hash == hash)
        .map(|c| c.replica)
        .collect();
    let numbers: Vec<u32> = (1..)
        .filter(|n| !used.contains(n))
        .take(count as usize)
        .collect();
    let starts = numbers.into_iter().map(|replica| async move {
        let mut spec = container_spec(project, name, svc, replica, hash, files);
        spec.name = container_name(&project.name, name, svc, replica) + &rollout_suffix(hash);
        match rt.create_container(&spec).await {
            Ok(id) => {
                if let Err(e) = rt.start_container(&id).await {
                    tracing::warn!("{}: start failed: {e}", spec.name);
                }
            }
            Err(e) => tracing::warn!("{}: create failed: {e}", spec.name),
        }
    });
    join_all(starts).await;
}

/// What names a replica a rollout started: `-` and its configuration's short hash, after
/// the usual container name.
fn rollout_suffix(hash: &str) -> String {
    format!("-{}", &hash[..hash.len().min(8)])
}

/// A rollout decision in words, for the event stream (`None`: nothing worth an event).
fn step_text(d: &Decision) -> Option<String> {
    Some(match d {
        Decision::StartNew { count } => format!("starting {count} new replica(s)"),
        Decision::StartOld { count } => format!("starting {count} old replica(s) again"),
        Decision::RouteNew { ids } => format!("routing {} new replica(s)", ids.len()),
        Decision::RouteOld { ids } => format!("routing {} old replica(s) again", ids.len()),
        Decision::StopOld { ids } => format!("stopping {} old replica(s)", ids.len()),
        Decision::StopNew { ids } => format!("stopping {} new replica(s)", ids.len()),
        Decision::SetWeight { new_percent } => format!(
            "weight {new_percent}% new, {}% old",
            100 - (*new_percent).min(100)
        ),
        Decision::ResetMetrics => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(service: &str, name: &str) -> ObservedContainer {
        ObservedContainer {
            id: name.into(),
            name: name.into(),
            service: service.into(),
            replica: 1,
            config_hash: String::new(),
            oneoff: false,
            image: String::new(),
            state: ContainerState::Running,
            health: Health::Unhealthy,
            exit_code: None,
            status: String::new(),
            ports: Vec::new(),
            labels: BTreeMap::new(),
            created: 0,
            restart_count: 0,
            addresses: BTreeMap::new(),
        }
    }

    #[test]
    fn the_supervisor_leaves_running_and_newest_paused_rollouts_alone() {
        let dir = std::env::temp_dir().join(format!("baton-traffic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir).unwrap();
        let record = |service: &str| RolloutRecord {
            id: 0,
            project: "p".into(),
            service: service.into(),
            revision: 1,
            from_hash: "a".into(),
            to_hash: "bbbbbbbbcc".into(),
            strategy: "rolling".into(),
            status: RolloutStatus::Running,
            state_json: "{}".into(),
            requested: None,
            outcome: None,
            started_at: 1,
            finished_at: None,
        };
        let finish = |id, status: RolloutStatus| {
            store
                .update_rollout(id, status, "{}", Some(status.as_str()), Some(2))
                .unwrap()
        };
        // web: running; api and queue: paused; db: paused, then a newer one completed;
        // cache: done
        store.start_rollout(&record("web")).unwrap();
        let api = store.start_rollout(&record("api")).unwrap();
        finish(api, RolloutStatus::Paused);
        let queue = store.start_rollout(&record("queue")).unwrap();
        finish(queue, RolloutStatus::Paused);
        let db = store.start_rollout(&record("db")).unwrap();
        finish(db, RolloutStatus::Paused);
        let db2 = store.start_rollout(&record("db")).unwrap();
        finish(db2, RolloutStatus::Completed);
        let cache = store.start_rollout(&record("cache")).unwrap();
        finish(cache, RolloutStatus::RolledBack);
        let observed = Observed {
            // api still has a replica the paused rollout started; queue only has plain
            // replicas again (taken down and brought up since)
            containers: vec![
                container("api", "p-api-1"),
                container("api", "p-api-1-bbbbbbbb"),
                container("queue", "p-queue-1"),
                container("db", "p-db-1-bbbbbbbb"),
            ],
            ..Observed::default()
        };
        assert_eq!(
            Traffic::rolling_services(&store, "p", &observed),
            ["api", "web"]
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
