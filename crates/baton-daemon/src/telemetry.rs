//! The daemon's metrics: one `baton_metrics::Metrics` registry filled from what the
//! daemon already knows (each tick: replicas from the engine's observation, the proxies'
//! never-reset per-revision totals, rollouts from the store; every few seconds: pipeline
//! runs and VMs from the store), and the sampler that writes it into the history every
//! interval. `/metrics` renders the registry; `/api/v1/series` queries the history.
//!
//! Nothing here decides anything: it copies numbers. A failing store read leaves the
//! last values; a failing history write is logged and the next sample tried.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use baton_engine::runtime::{ContainerState, Health, Observed};
use baton_metrics::{
    CertLabels, CodeClass, ContainerLabels, History, HistoryConfig, HostLabels, Metrics,
    MetricsConfig, PipelineLabels, ReplicaLabels, ReplicaState, RequestLabels, RevisionLabels,
    RolloutPhase, RunLabels, RunStatus, ServiceLabels, VmLabels, VmPhase,
};
use baton_spec::Project;
use baton_state::{RolloutStatus, Store};

/// How many characters of a configuration hash name a revision in labels.
pub const REVISION_CHARS: usize = 12;

/// A revision label from a configuration hash.
pub fn revision_label(hash: &str) -> String {
    hash.chars().take(REVISION_CHARS).collect()
}

/// What the host series read of a host's recorded facts (`baton_fleet::facts::Facts`
/// as JSON).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct HostFacts {
    load: [f64; 3],
    mem_total_kb: u64,
    mem_available_kb: u64,
    disk_total_kb: u64,
    disk_available_kb: u64,
}

/// The registry and, once `baton serve` opened it, the history.
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    history: OnceLock<Arc<History>>,
    /// Series this daemon set last tick, per project, so those of services, revisions
    /// and replicas that are gone are forgotten.
    seen: Mutex<BTreeMap<String, Seen>>,
    /// The time of the last sample stored (alert rules are evaluated after each).
    sampled: tokio::sync::watch::Sender<i64>,
}

#[derive(Default)]
struct Seen {
    services: BTreeSet<String>,
    revisions: BTreeSet<(String, String)>,
    replicas: BTreeSet<(String, String)>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            metrics: Arc::new(Metrics::new(MetricsConfig::default())),
            history: OnceLock::new(),
            seen: Mutex::new(BTreeMap::new()),
            sampled: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Telemetry {
    /// Says the time of each sample once it is stored.
    pub fn sampled(&self) -> tokio::sync::watch::Receiver<i64> {
        self.sampled.subscribe()
    }

    /// The history, when the daemon keeps one.
    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.get()
    }

    /// Opens the history under `dir` (0700, files 0600) and keeps it; once.
    pub fn open_history(
        &self,
        dir: &Path,
        retention: Duration,
    ) -> Result<Arc<History>, baton_metrics::StoreError> {
        let history = Arc::new(History::open(
            dir,
            HistoryConfig {
                retention,
                ..HistoryConfig::default()
            },
        )?);
        let recovery = history.recovery();
        if recovery.dropped_bytes > 0 || !recovery.corrupt_blocks.is_empty() {
            tracing::warn!(
                "metrics history: dropped {} torn bytes of its log, {} corrupt block(s) set aside",
                recovery.dropped_bytes,
                recovery.corrupt_blocks.len()
            );
        }
        let _ = self.history.set(history.clone());
        Ok(self.history.get().cloned().unwrap_or(history))
    }

    /// Forgets every series of projects no longer active.
    pub fn keep_projects(&self, active: &[String]) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<String> = seen
            .keys()
            .filter(|p| !active.contains(p))
            .cloned()
            .collect();
        for p in gone {
            self.metrics.forget_project(&p);
            seen.remove(&p);
        }
    }

    /// One project's services, replicas, proxies and rollouts as this tick saw them.
    pub fn record_project(
        &self,
        project: &Project,
        observed: &Observed,
        proxies: &[crate::api::ProxyStatus],
        weights: &BTreeMap<String, Vec<(String, u32)>>,
        store: &Store,
    ) {
        let m = &self.metrics;
        let p = project.name.as_str();
        let mut now = Seen::default();
        for (name, svc) in &project.services {
            now.services.insert(name.clone());
            let mine = observed
                .containers
                .iter()
                .filter(|c| &c.service == name && !c.oneoff);
            let (mut running, mut healthy) = (0u32, 0u32);
            for c in mine {
                if c.state == ContainerState::Running {
                    running += 1;
                    if matches!(c.health, Health::Healthy | Health::None) {
                        healthy += 1;
                    }
                }
            }
            for (state, v) in [
                (ReplicaState::Desired, svc.replicas()),
                (ReplicaState::Running, running),
                (ReplicaState::Healthy, healthy),
            ] {
                m.services
                    .replicas
                    .get(&ReplicaLabels::new(p, name.as_str(), state))
                    .set(f64::from(v));
            }
        }
        for c in observed.containers.iter().filter(|c| !c.oneoff) {
            now.replicas
                .insert((c.service.clone(), c.replica.to_string()));
        }
        // The proxies' totals, summed over a service's frontends (ports, pools).
        let mut totals: BTreeMap<(String, String), baton_proxy::Totals> = BTreeMap::new();
        let mut in_flight: BTreeMap<(String, String), u64> = BTreeMap::new();
        for status in proxies.iter().filter(|s| s.project == p) {
            let Some(metrics) = &status.metrics else {
                continue;
            };
            for (hash, r) in &metrics.revisions {
                let key = (status.service.clone(), revision_label(hash));
                let t = totals.entry(key.clone()).or_default();
                for (a, b) in t.by_class.iter_mut().zip(r.totals.by_class) {
                    *a += b;
                }
                if t.buckets.len() < r.totals.buckets.len() {
                    t.buckets.resize(r.totals.buckets.len(), 0);
                }
                for (a, b) in t.buckets.iter_mut().zip(&r.totals.buckets) {
                    *a += b;
                }
                t.sum_seconds += r.totals.sum_seconds;
                *in_flight.entry(key).or_default() += r.active;
            }
        }
        for ((service, revision), t) in &totals {
            now.revisions.insert((service.clone(), revision.clone()));
            for (i, n) in t.by_class.iter().enumerate() {
                if *n == 0 {
                    continue;
                }
                let code = match i {
                    0 => CodeClass::Informational,
                    1 => CodeClass::Success,
                    2 => CodeClass::Redirect,
                    3 => CodeClass::ClientError,
                    4 => CodeClass::ServerError,
                    _ => CodeClass::Other,
                };
                m.proxy
                    .requests
                    .get(&RequestLabels::new(
                        p,
                        service.as_str(),
                        revision.as_str(),
                        code,
                    ))
                    .set_total(*n as f64);
            }
            let labels = RevisionLabels::new(p, service.as_str(), revision.as_str());
            m.proxy
                .request_duration
                .get(&labels)
                .set_counts(&t.buckets, t.sum_seconds);
            m.proxy.in_flight.get(&labels).set(
                in_flight
                    .get(&(service.clone(), revision.clone()))
                    .copied()
                    .unwrap_or(0) as f64,
            );
        }
        // Rollouts: the newest of each service, and the split while one is set.
        if let Ok(rollouts) = store.rollouts(p, None) {
            let mut newest: BTreeMap<&str, &baton_state::RolloutRecord> = BTreeMap::new();
            for r in &rollouts {
                let e = newest.entry(r.service.as_str()).or_insert(r);
                if r.id > e.id {
                    *e = r;
                }
            }
            for (service, r) in newest {
                let phase = match r.status {
                    RolloutStatus::Running => {
                        let state: Option<baton_engine::rollout::RolloutState> =
                            serde_json::from_str(&r.state_json).ok();
                        if state.is_some_and(|s| s.phase.rolling_back()) {
                            RolloutPhase::RollingBack
                        } else {
                            RolloutPhase::Progressing
                        }
                    }
                    RolloutStatus::Paused => RolloutPhase::Paused,
                    RolloutStatus::RolledBack => RolloutPhase::Failed,
                    RolloutStatus::Completed | RolloutStatus::Superseded => RolloutPhase::Idle,
                };
                m.services
                    .rollout_status
                    .get(&ServiceLabels::new(p, service))
                    .set(phase.value());
            }
        }
        m.services
            .rollout_weight
            .retain(|l| l.project != p || weights.contains_key(&l.service));
        for (service, split) in weights {
            let total: u32 = split.iter().map(|(_, w)| w).sum();
            for (hash, w) in split {
                let share = if total == 0 {
                    0.0
                } else {
                    f64::from(*w) / f64::from(total)
                };
                m.services
                    .rollout_weight
                    .get(&RevisionLabels::new(
                        p,
                        service.as_str(),
                        revision_label(hash),
                    ))
                    .set(share);
            }
        }
        // What was here last tick and is gone now.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(before) = seen.get(p) {
            for s in before.services.difference(&now.services) {
                m.forget_service(p, s);
            }
            for (s, r) in before.revisions.difference(&now.revisions) {
                // A revision no proxy counts any more (after its rollout ended).
                m.forget_revision(p, s, r);
            }
            for (s, r) in before.replicas.difference(&now.replicas) {
                m.forget_replica(p, s, r);
            }
        }
        seen.insert(p.to_string(), now);
    }

    /// Containers' resource use: (service, replica, usage).
    pub fn record_usage(
        &self,
        project: &str,
        usage: &[(String, u32, baton_engine::runtime::Usage)],
    ) {
        let c = &self.metrics.containers;
        for (service, replica, u) in usage {
            let l = ContainerLabels::new(project, service.as_str(), replica.to_string());
            c.cpu_seconds.get(&l).set_total(u.cpu_seconds);
            c.memory_bytes.get(&l).set(u.memory_bytes as f64);
            c.network_receive_bytes
                .get(&l)
                .set_total(u.network_receive_bytes as f64);
            c.network_transmit_bytes
                .get(&l)
                .set_total(u.network_transmit_bytes as f64);
        }
    }

    /// A restart the daemon made or saw the engine make.
    pub fn restarted(&self, project: &str, service: &str, replica: u32, count: u32) {
        self.metrics
            .containers
            .restarts
            .get(&ContainerLabels::new(project, service, replica.to_string()))
            .inc_by(f64::from(count));
    }

    /// The edge's certificates, per project routing their host: when each expires, and
    /// whether it fails (expired, or not issued or renewed: the built-in rule
    /// `certificate_failing` watches it). Hosts no longer served are forgotten.
    pub fn record_edge(&self, edge: Option<&crate::edge::EdgeStatus>) {
        let e = &self.metrics.edge;
        let mut now: BTreeSet<(String, String)> = BTreeSet::new();
        if let Some(status) = edge {
            for c in &status.certificates {
                let failing = c.failing();
                let projects: BTreeSet<&str> = status
                    .routes
                    .iter()
                    .filter(|r| r.host == c.host)
                    .map(|r| r.project.as_str())
                    .collect();
                for p in projects {
                    let l = CertLabels::new(p, c.host.as_str());
                    e.certificate_failing
                        .get(&l)
                        .set(if failing { 1.0 } else { 0.0 });
                    if let Some(t) = c.not_after_ms {
                        e.certificate_expiry.get(&l).set(t as f64 / 1000.0);
                    }
                    now.insert((p.to_string(), c.host.clone()));
                }
            }
        }
        let keep = |l: &CertLabels| now.contains(&(l.project.clone(), l.host.clone()));
        e.certificate_failing.retain(keep);
        e.certificate_expiry.retain(keep);
    }

    /// Pipeline runs and VMs, from the store.
    pub fn record_store(&self, store: &Store) {
        let m = &self.metrics;
        if let Ok(counts) = store.pipeline_run_counts() {
            let mut by: BTreeMap<(String, RunStatus), u64> = BTreeMap::new();
            for (pipeline, status, n) in counts {
                let status = match status.as_str() {
                    "success" => RunStatus::Succeeded,
                    "failed" | "interrupted" => RunStatus::Failed,
                    "cancelled" => RunStatus::Cancelled,
                    "timed_out" => RunStatus::TimedOut,
                    _ => continue,
                };
                *by.entry((pipeline, status)).or_default() += n;
            }
            for ((pipeline, status), n) in by {
                m.pipelines
                    .runs
                    .get(&RunLabels::new(pipeline, status))
                    .set_total(n as f64);
            }
        }
        if let Ok(last) = store.pipeline_last_results() {
            let mut now = BTreeSet::new();
            for (project, pipeline, status) in last {
                let failed = matches!(status.as_str(), "failed" | "timed_out" | "interrupted");
                let l = PipelineLabels::new(project, pipeline);
                m.pipelines
                    .last_run_failed
                    .get(&l)
                    .set(if failed { 1.0 } else { 0.0 });
                now.insert(l);
            }
            m.pipelines.last_run_failed.retain(|l| now.contains(l));
        }
        if let Ok(vms) = store.vms() {
            let names: BTreeSet<String> = vms.iter().map(|v| v.name.clone()).collect();
            m.vms.retain(|l| names.contains(&l.vm));
            for vm in vms {
                let l = VmLabels::new(vm.name);
                // The recorded process, if it is still the VM's (a recycled pid is not).
                let usage = vm
                    .pid
                    .filter(|pid| baton_vm::facts::is_live(*pid, &vm.dir))
                    .and_then(baton_vm::facts::process_use);
                let phase = if usage.is_some() {
                    VmPhase::Running
                } else {
                    VmPhase::Stopped
                };
                m.vms.state.get(&l).set(phase.value());
                match usage {
                    Some(u) => {
                        m.vms.cpu_seconds.get(&l).set_total(u.cpu_seconds);
                        m.vms.memory_bytes.get(&l).set(u.rss_mib * 1024.0 * 1024.0);
                    }
                    None => {
                        m.vms.cpu_seconds.remove(&l);
                        m.vms.memory_bytes.remove(&l);
                    }
                }
            }
        }
        self.record_hosts(store);
    }

    /// Fleet hosts per project: up as the newest of its facts and the runs that tried it
    /// saw it, load, memory and disk from its newest facts (`baton fleet facts`).
    fn record_hosts(&self, store: &Store) {
        let f = &self.metrics.fleet;
        // (project, host) -> (up, when seen)
        let (Ok(projects), Ok(hosts)) = (store.projects(), store.fleet_hosts(None)) else {
            return;
        };
        let known: BTreeSet<String> = projects.into_iter().map(|p| p.name).collect();
        let mut seen: BTreeMap<(String, String), (bool, i64)> = hosts
            .into_iter()
            .filter(|h| known.contains(&h.project))
            .map(|h| {
                let up = h.reachable();
                ((h.project, h.host), (up, h.seen_at))
            })
            .collect();
        let facts = store.host_facts().unwrap_or_default();
        for r in &facts {
            let key = (r.project.clone(), r.host.clone());
            let fresher = seen.get(&key).is_none_or(|(_, at)| r.at >= *at);
            if fresher {
                seen.insert(key, (r.error.is_none(), r.at));
            }
        }
        f.retain(|l| seen.contains_key(&(l.project.clone(), l.host.clone())));
        for ((project, host), (up, _)) in &seen {
            f.up.get(&HostLabels::new(project.as_str(), host.as_str()))
                .set(if *up { 1.0 } else { 0.0 });
        }
        for r in facts {
            let Some(facts) = r
                .facts_json
                .as_deref()
                .and_then(|j| serde_json::from_str::<HostFacts>(j).ok())
            else {
                continue;
            };
            let l = HostLabels::new(r.project, r.host);
            let kib = |v: u64| v as f64 * 1024.0;
            f.load1.get(&l).set(facts.load[0]);
            f.load5.get(&l).set(facts.load[1]);
            f.load15.get(&l).set(facts.load[2]);
            f.memory_total_bytes.get(&l).set(kib(facts.mem_total_kb));
            f.memory_available_bytes
                .get(&l)
                .set(kib(facts.mem_available_kb));
            f.disk_total_bytes.get(&l).set(kib(facts.disk_total_kb));
            f.disk_available_bytes
                .get(&l)
                .set(kib(facts.disk_available_kb));
        }
    }

    /// Samples the registry into the history every `interval`, at times on the
    /// interval's grid (each sample stamped with its scheduled time, so a steady series
    /// costs one bit a timestamp), until `stop` says so. `on_sample` runs after each
    /// sample is stored (alert rules are evaluated there).
    pub async fn sample_loop(
        self: Arc<Self>,
        interval: Duration,
        clock: fn() -> i64,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(history) = self.history().cloned() else {
            return;
        };
        let step = i64::try_from(interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut next = (clock() / step + 1) * step;
        loop {
            let wait = u64::try_from(next - clock()).unwrap_or(0);
            let pause = tokio::time::sleep(Duration::from_millis(wait));
            if crate::unless_stopped(pause, &mut stop).await.is_none() {
                break;
            }
            let t = next;
            let scrape = self.metrics.sample(t);
            let h = history.clone();
            match tokio::task::spawn_blocking(move || h.append(&scrape)).await {
                Ok(Ok(_)) => {
                    self.sampled.send_replace(t);
                }
                Ok(Err(e)) => tracing::warn!("metrics history: cannot store a sample: {e}"),
                Err(e) => tracing::warn!("metrics history: {e}"),
            }
            // Skip the ticks a slow write (or a suspended machine) missed.
            let now = clock();
            next = t + step;
            if next <= now {
                next = (now / step + 1) * step;
            }
        }
        let _ = tokio::task::spawn_blocking(move || history.sync()).await;
    }
}
