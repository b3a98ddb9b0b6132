//! The autoscaling loop: every second, for each service of an active project with
//! `x-baton.autoscale`, an observation from what the daemon already measures (its
//! replicas running and healthy from the registry, the proxy's requests per second, p95
//! and in-flight from the proxies' never-reset totals over the last second; no CPU or
//! memory yet: those metrics count as missing) goes to `baton_engine::autoscale::decide`
//! with the state it returned last time. A decision to change the count is carried out
//! by the caller's `scale` (the control plane's `Operation::Scale`, as `baton scale`
//! does), and recorded as an event of kind `autoscale` with its numbers; so is every
//! change of the reasons the decider gives for holding.
//!
//! A rollout in progress (running or paused in the store) makes the decider hold: the
//! rollout works with a fixed count, and autoscaling resumes when it ends.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use baton_engine::autoscale::{self, AutoscaleSpec, AutoscaleState, Decision, Observation};
use baton_metrics::{ReplicaLabels, ReplicaState};
use baton_spec::Project;
use baton_state::{RolloutStatus, Store};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How often the autoscaler looks (the "1-second metrics").
pub const SYNC: Duration = Duration::from_secs(1);

/// A replica whose CPU total has not moved for this long uses none (the daemon reads
/// it every 5 s).
pub const CPU_IDLE_MS: i64 = 12_000;

/// What `baton autoscale status` shows of one service.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AutoscaleStatus {
    pub project: String,
    pub service: String,
    pub min: u32,
    pub max: u32,
    /// The last observation and decision.
    #[schemars(with = "serde_json::Value")]
    pub observation: Observation,
    #[schemars(with = "serde_json::Value")]
    pub decision: Decision,
    /// The last scale that failed, if the last decision's could not be carried out.
    pub error: Option<String>,
}

/// The proxy's totals of a service at one moment.
#[derive(Debug, Clone, Default)]
struct Totals {
    at_ms: i64,
    requests: u64,
    buckets: Vec<u64>,
}

/// One replica's CPU time as the registry has it (read from the engine every few
/// seconds): the last distinct total, when it was first seen, and the rate it gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuReadings {
    last: Option<(i64, f64)>,
    rate: Option<f64>,
}

impl CpuReadings {
    /// CPUs in use (CPU seconds per second) from a total read at `t`; `None` until two
    /// distinct totals were seen. A total unchanged for `idle_ms` means 0.
    pub fn observe(&mut self, t: i64, total: f64, idle_ms: i64) -> Option<f64> {
        match self.last {
            None => self.last = Some((t, total)),
            Some((t0, v0)) if total != v0 => {
                self.rate =
                    (t > t0 && total >= v0).then(|| (total - v0) / ((t - t0) as f64 / 1000.0));
                self.last = Some((t, total));
            }
            Some((t0, _)) if t - t0 > idle_ms => self.rate = Some(0.0),
            Some(_) => {}
        }
        self.rate
    }
}

#[derive(Default)]
struct ServiceMemory {
    state: AutoscaleState,
    last: Option<Totals>,
    cpu: BTreeMap<String, CpuReadings>,
    /// The reasons of the last decision, as recorded (an event only when they change).
    reasons: String,
}

/// The loop's memory, and what it shows.
pub struct Autoscaler {
    store: Store,
    shared: Arc<crate::api::Shared>,
    services: BTreeMap<(String, String), ServiceMemory>,
}

/// A scale to make: project, service, count, the event's text, the state to go back to
/// when it cannot be made.
type Todo = (String, String, u32, String, AutoscaleState);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The `q` quantile in milliseconds of per-bucket counts over `baton_proxy::TOTAL_BUCKETS`
/// (the bucket's upper bound; the last finite bound for `+Inf`); `None` without counts.
pub fn quantile_ms(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let bounds = baton_proxy::TOTAL_BUCKETS;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            let b = bounds.get(i).copied().unwrap_or(bounds[bounds.len() - 1]);
            return Some(b * 1000.0);
        }
    }
    Some(bounds[bounds.len() - 1] * 1000.0)
}

impl Autoscaler {
    pub fn new(store: Store, shared: Arc<crate::api::Shared>) -> Autoscaler {
        Autoscaler {
            store,
            shared,
            services: BTreeMap::new(),
        }
    }

    /// Looks every `SYNC` until `stop`; `scale(project, service, replicas)` changes a
    /// count as `baton scale` does.
    pub async fn run<F, Fut>(mut self, scale: F, mut stop: tokio::sync::watch::Receiver<bool>)
    where
        F: Fn(String, String, u32) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let mut tick = tokio::time::interval(SYNC);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while crate::unless_stopped(tick.tick(), &mut stop)
            .await
            .is_some()
        {
            let todo = tokio::task::block_in_place(|| self.decide_all(now_ms()));
            for (project, service, n, message, before) in todo {
                let result = scale(project.clone(), service.clone(), n).await;
                let text = match &result {
                    Ok(()) => message,
                    Err(e) => format!("{message}; scaling failed: {e}"),
                };
                tracing::info!("{project}/{service}: {text}");
                let _ = self
                    .store
                    .event(&project, "autoscale", &service, &text, now_ms());
                if let Err(e) = result {
                    // Not carried out: the decider's state stays as it was before.
                    if let Some(m) = self.services.get_mut(&(project.clone(), service.clone())) {
                        m.state = before;
                    }
                    let mut status = self
                        .shared
                        .autoscale
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if let Some(s) = status.get_mut(&format!("{project}/{service}")) {
                        s.error = Some(e);
                    }
                }
            }
        }
    }

    fn project(&self, name: &str) -> Option<Project> {
        let rev = self.store.latest_revision(name).ok()??;
        let json = self.store.revision_spec(name, rev.number).ok()??;
        serde_json::from_str(&json).ok()
    }

    /// Decides for every autoscaled service; the scales to make (project, service, count,
    /// the event's text).
    fn decide_all(&mut self, now: i64) -> Vec<Todo> {
        let mut todo = Vec::new();
        let active = self.store.active_projects().unwrap_or_default();
        let proxies = self.shared.status().proxies;
        let metrics = self.shared.telemetry.metrics.clone();
        let mut live = BTreeSet::new();
        let mut shown = BTreeMap::new();
        for name in &active {
            let Some(project) = self.project(name) else {
                continue;
            };
            let desired = self.store.desired(name).unwrap_or_default();
            for (service, svc) in &project.services {
                let Ok(Some(spec)) = autoscale::autoscale_spec(svc) else {
                    continue;
                };
                if desired.stopped_services.contains(service) {
                    continue;
                }
                let key = (name.clone(), service.clone());
                live.insert(key.clone());
                let gauge = |state| {
                    metrics
                        .services
                        .replicas
                        .get(&ReplicaLabels::new(name.as_str(), service.as_str(), state))
                        .get() as u32
                };
                let (running, healthy) =
                    (gauge(ReplicaState::Running), gauge(ReplicaState::Healthy));
                // The proxy's totals of the service now.
                let mut totals = Totals {
                    at_ms: now,
                    ..Totals::default()
                };
                let mut in_flight = 0u64;
                let mut proxied = false;
                for p in proxies
                    .iter()
                    .filter(|p| &p.project == name && &p.service == service)
                {
                    let Some(m) = &p.metrics else { continue };
                    proxied = true;
                    for r in m.revisions.values() {
                        totals.requests += r.totals.by_class.iter().sum::<u64>();
                        if totals.buckets.len() < r.totals.buckets.len() {
                            totals.buckets.resize(r.totals.buckets.len(), 0);
                        }
                        for (a, b) in totals.buckets.iter_mut().zip(&r.totals.buckets) {
                            *a += b;
                        }
                        in_flight += r.active;
                    }
                }
                let rollout_in_progress = self
                    .store
                    .rollouts(name, Some(service))
                    .unwrap_or_default()
                    .iter()
                    .any(|r| matches!(r.status, RolloutStatus::Running | RolloutStatus::Paused));
                let memory = self.services.entry(key.clone()).or_default();
                let (rps, p95_ms) = match (&memory.last, proxied) {
                    (Some(last), true) if now > last.at_ms && totals.requests >= last.requests => {
                        let secs = (now - last.at_ms) as f64 / 1000.0;
                        let delta: Vec<u64> = totals
                            .buckets
                            .iter()
                            .enumerate()
                            .map(|(i, c)| {
                                c.saturating_sub(last.buckets.get(i).copied().unwrap_or(0))
                            })
                            .collect();
                        (
                            Some((totals.requests - last.requests) as f64 / secs),
                            Some(quantile_ms(&delta, 0.95).unwrap_or(0.0)),
                        )
                    }
                    _ => (None, None),
                };
                if proxied {
                    memory.last = Some(totals);
                }
                // CPU and memory per replica, as the registry has them from the engine.
                let replicas = metrics
                    .containers
                    .memory_bytes
                    .labels(|l| &l.project == name && &l.service == service);
                let mut usage = Vec::new();
                for l in &replicas {
                    let total = metrics.containers.cpu_seconds.get(l).get();
                    let cpus = memory.cpu.entry(l.replica.clone()).or_default().observe(
                        now,
                        total,
                        CPU_IDLE_MS,
                    );
                    usage.push(autoscale::ReplicaUsage {
                        replica: l.replica.clone(),
                        ready: true,
                        cpus,
                        memory_bytes: Some(metrics.containers.memory_bytes.get(l).get() as u64),
                    });
                }
                memory
                    .cpu
                    .retain(|r, _| replicas.iter().any(|l| &l.replica == r));
                let obs = Observation {
                    now_ms: u64::try_from(now).unwrap_or(0),
                    replicas: running,
                    ready: healthy,
                    rollout_in_progress,
                    usage,
                    rps,
                    p95_ms,
                    in_flight: proxied.then_some(in_flight as f64),
                };
                let (state, decision) = autoscale::decide(&spec, &memory.state, &obs);
                let before = std::mem::replace(&mut memory.state, state);
                let reasons = serde_json::to_string(&decision.reasons).unwrap_or_default();
                let text = describe(&spec, &decision);
                match decision.desired {
                    Some(n) if n != running => {
                        todo.push((name.clone(), service.clone(), n, text, before));
                    }
                    _ if reasons != memory.reasons => {
                        let _ = self.store.event(name, "autoscale", service, &text, now);
                    }
                    _ => {}
                }
                memory.reasons = reasons;
                shown.insert(
                    format!("{name}/{service}"),
                    AutoscaleStatus {
                        project: name.clone(),
                        service: service.clone(),
                        min: spec.min,
                        max: spec.max,
                        observation: obs,
                        decision,
                        error: None,
                    },
                );
            }
        }
        self.services.retain(|k, _| live.contains(k));
        *self
            .shared
            .autoscale
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = shown;
        todo
    }
}

/// Each metric of a decision: `rps: 12.00 (target 5) -> 3`.
pub fn describe_metrics(d: &Decision) -> String {
    let metrics: Vec<String> = d
        .metrics
        .iter()
        .map(|m| {
            format!(
                "{}: {} (target {}) -> {}",
                serde_json::to_value(m.metric)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                m.current
                    .map_or("missing".to_string(), |v| format!("{v:.2}")),
                m.target,
                m.recommendation.map_or("-".to_string(), |r| r.to_string())
            )
        })
        .collect();
    metrics.join(", ")
}

/// A decision in words, with its numbers.
pub fn describe(spec: &AutoscaleSpec, d: &Decision) -> String {
    let reasons = serde_json::to_string(&d.reasons).unwrap_or_default();
    let head = match d.desired {
        Some(n) => format!(
            "scaling from {} to {n} replicas (min {}, max {})",
            d.current, spec.min, spec.max
        ),
        None => format!("holding at {} replicas", d.current),
    };
    format!("{head}; {}; reasons {reasons}", describe_metrics(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rates_come_from_distinct_totals() {
        let mut r = CpuReadings::default();
        assert_eq!(r.observe(0, 10.0, 12_000), None, "one reading says nothing");
        assert_eq!(r.observe(1_000, 10.0, 12_000), None);
        // 2.5 CPU seconds more, first seen 5 s later: half a CPU.
        assert_eq!(r.observe(5_000, 12.5, 12_000), Some(0.5));
        assert_eq!(
            r.observe(6_000, 12.5, 12_000),
            Some(0.5),
            "kept between reads"
        );
        assert_eq!(r.observe(18_000, 12.5, 12_000), Some(0.0), "idle");
        // A restarted container starts its total again: no rate from that pair.
        assert_eq!(r.observe(19_000, 1.0, 12_000), None);
        assert_eq!(r.observe(21_000, 3.0, 12_000), Some(1.0));
    }

    #[test]
    fn quantiles_come_from_the_totals_buckets() {
        assert_eq!(quantile_ms(&[], 0.95), None);
        assert_eq!(quantile_ms(&[0, 0, 0], 0.95), None);
        // 95 requests under 5 ms, 5 under 100 ms: p95 is 5 ms, p99 100 ms.
        let mut c = vec![0u64; baton_proxy::TOTAL_BUCKETS.len() + 1];
        c[0] = 95;
        c[4] = 5;
        assert_eq!(quantile_ms(&c, 0.95), Some(5.0));
        assert_eq!(quantile_ms(&c, 0.99), Some(100.0));
        c[baton_proxy::TOTAL_BUCKETS.len()] = 100;
        assert_eq!(quantile_ms(&c, 0.99), Some(10_000.0));
    }
}
