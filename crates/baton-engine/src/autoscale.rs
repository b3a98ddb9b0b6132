//! The autoscale decider: a pure function from (spec, state, observation) to (state,
//! decision) with the Kubernetes HPA v2's semantics. No I/O and no clock: time comes in `now_ms`.
//!
//! The daemon owns the loop: every sync period (HPA's is 15 s) it observes the service
//! (`Observation`: replicas, readiness, each replica's CPU and memory, the proxy's
//! request rate, p95 and requests in flight), calls `decide` with the `AutoscaleState` it
//! stored last time, stores the state it gets back, and scales the service to
//! `Decision::desired` when there is one. The state is plain data (serde), kept per service
//! across calls and restarts: past recommendations (the stabilization windows) and past
//! scale events (the rate limits), both pruned to the longest window or period, and the
//! count autoscaling last set. The returned state assumes the decision is carried out: when
//! the daemon could not scale, it keeps the state it had. The `Decision` is plain data too,
//! with its reasons as numbers, for the daemon to record as an event.
//!
//! The algorithm, as the HPA's controller does it:
//! 1. A count outside [min, max] is moved to the nearest bound first, without metrics; a
//!    service at 0 replicas while `min` is above 0 was stopped on purpose and is left alone.
//! 2. Per metric, a recommendation: `ceil(current × value / target)`, or `current` when
//!    |value / target − 1| ≤ 0.1 (the tolerance).
//!    - `cpu`, `memory` (HPA `Resource` metrics): the average over the *ready* replicas that
//!      reported, × the number of those replicas. A `cpu`/`memory` percentage is of each
//!      replica's limit (`Target::Utilization`): Docker enforces limits, not reservations,
//!      so the limit is what a replica can use; a CPU percentage without a CPU limit is of
//!      one CPU, as `docker stats` shows it. Replicas with no sample ("missing") and
//!      replicas not ready are set aside, then brought back conservatively: on a scale-up
//!      missing and not-ready replicas count as using 0, on a scale-down missing ones count
//!      as exactly at the target (not-ready ones stay out); if that flips the direction or
//!      lands within the tolerance, the metric recommends no change.
//!    - `rps`, `in_flight` (HPA `External` metrics with an `AverageValue` target): the
//!      service's total through the proxy divided by the target per replica,
//!      `ceil(total / target)`; the tolerance compares the total with `target × current`.
//!    - `p95` (HPA `Object`/`External` with a `Value` target): one value for the service,
//!      `ceil(ready × p95 / target)` (the HPA multiplies by the ready replicas).
//! 3. The highest recommendation wins. A metric without a value makes no recommendation;
//!    when no metric has one, or the others would scale down, nothing changes (the HPA
//!    never scales down on partial information, but still scales up).
//! 4. Stabilization: every recommendation is recorded; the count used is the current one
//!    moved no further than the lowest recommendation of the scale-up window (upwards) and
//!    the highest of the scale-down window (downwards). With an empty history (first
//!    call, or after a hold longer than the windows) the current count is recorded as a
//!    recommendation first, so a scale-down waits one full window.
//! 5. Rate limits: a scale-up may reach, per `max_step`, the count at the start of the
//!    last `period` (the current count less the additions within it, plus the removals)
//!    plus N replicas or plus P percent (rounded up), the most permissive wins; a
//!    scale-down likewise to that count less N or less P percent (rounded down). Then
//!    [min, max].
//!
//! Simplifications, compared with the HPA: one rate-limit `period` per direction (not one
//! per policy); `select_policy` is always the most permissive; not-ready replicas are set
//! aside for memory as for CPU (the HPA does it for CPU within an initialization period,
//! and for pods not yet running); a p95 while no replica is ready counts as missing
//! (`ready × p95 / target` would say 0 replicas); recommendations are kept one per call
//! within the longest window instead of one slot replaced in place.
//!
//! Rollouts and autoscaling do not fight:
//! - while a rollout of the service is in progress (`Observation::rollout_in_progress`)
//!   the decider holds: no decision, nothing recorded, reason `RolloutInProgress`; the
//!   rollout works with a fixed count, and the metrics of a half-replaced service (new
//!   replicas starting, old ones draining) would mislead a recommendation;
//! - a rollout starts from the count autoscaling last set, not from `deploy.replicas`:
//!   `rollout_replicas` says which count (within [min, max]); `deploy.replicas` is only
//!   where an autoscaled service starts;
//! - after a rollout longer than the scale-down window the history has been pruned, so
//!   the first decision records the current count again: no scale-down for one window.

mod spec;

use serde::{Deserialize, Serialize};

pub use spec::{
    autoscale_spec, autoscale_warnings, cpu_limit, memory_limit, AutoscaleSpec, AutoscaleSpecError,
    Behavior, Metric, MetricTarget, Step, Target, DEFAULT_CPU_PERCENT, DEFAULT_MIN,
    DEFAULT_PERIOD_MS, DEFAULT_SCALE_DOWN_STABILIZATION_MS, MAX_PERIOD_MS, MAX_STABILIZATION_MS,
};

/// |value / target − 1| at or below this is close enough: no change (HPA's default).
pub const TOLERANCE: f64 = 0.1;

/// The service as the daemon sees it at `now_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub now_ms: u64,
    /// Replicas the service has now, running or starting.
    pub replicas: u32,
    /// Of those, the ones that are ready (healthy, and routed when behind the proxy).
    pub ready: u32,
    /// Whether a rollout of the service is in progress: autoscaling then holds.
    pub rollout_in_progress: bool,
    /// One entry per replica, with what `docker stats` sampled; a replica left out counts
    /// as missing its samples.
    pub usage: Vec<ReplicaUsage>,
    /// Requests (TCP: connections) per second through the proxy, all replicas together,
    /// over the last sync period.
    pub rps: Option<f64>,
    /// The service's p95 response time through the proxy over the last sync period, in
    /// milliseconds; `Some(0.0)` for a period without requests (none means no data).
    pub p95_ms: Option<f64>,
    /// Requests (TCP: connections) in flight through the proxy now, all replicas together.
    pub in_flight: Option<f64>,
}

/// One replica's resource use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaUsage {
    pub replica: String,
    pub ready: bool,
    /// CPUs in use: `docker stats`' CPU % / 100.
    pub cpus: Option<f64>,
    /// Bytes in use, page cache excluded.
    pub memory_bytes: Option<u64>,
}

/// What the decider remembers between calls. Plain data: store it, load it, pass it back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleState {
    /// Recommendations (before stabilization) within the longest stabilization window.
    pub recommendations: Vec<Recommendation>,
    /// Changes of the replica count within the longest rate-limit period.
    pub scale_events: Vec<ScaleEvent>,
    /// The count autoscaling last set; a rollout starts from it (`rollout_replicas`).
    pub desired: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    pub at_ms: u64,
    pub replicas: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleEvent {
    pub at_ms: u64,
    pub from: u32,
    pub to: u32,
}

/// One call's outcome, with every number that led to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub at_ms: u64,
    /// The replicas the service had.
    pub current: u32,
    /// The count to scale to; `None`: leave the service as it is.
    pub desired: Option<u32>,
    /// Per metric, in the spec's order (empty when the decider held before looking).
    pub metrics: Vec<MetricReason>,
    /// The highest of the metrics' recommendations, before stabilization and limits.
    pub recommendation: Option<u32>,
    /// Why the result differs from the recommendation, or why nothing was looked at.
    pub reasons: Vec<Reason>,
}

/// One metric's numbers. Values are in the unit the file wrote: percent for a
/// utilization, bytes, requests per second or in flight per replica, milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricReason {
    pub metric: Metric,
    pub target: f64,
    /// The measured value (averaged per replica where the target is); `None`: missing.
    pub current: Option<f64>,
    /// How many replicas this metric asks for; `None` when it had no value.
    pub recommendation: Option<u32>,
    /// |current / target − 1| ≤ `TOLERANCE`: the metric asks for no change.
    pub within_tolerance: bool,
    /// `cpu`/`memory`: ready replicas without a sample, assumed at 0 (scale-up) or at the
    /// target (scale-down).
    pub missing_replicas: u32,
    /// `cpu`/`memory`: replicas not ready, set aside (counted at 0 on a scale-up).
    pub not_ready_replicas: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Min,
    Max,
}

/// Why the count is what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Reason {
    /// A rollout of the service is in progress: autoscaling holds until it ends.
    RolloutInProgress,
    /// The service runs 0 replicas while `min` is above 0: someone stopped it.
    ScaledToZero,
    /// These metrics had no value, and no other asked for more replicas.
    MetricsMissing { metrics: Vec<Metric> },
    /// The count was outside [min, max]: moved to the nearest bound.
    OutsideBounds { min: u32, max: u32 },
    /// The recommendation is the current count because a metric is within the tolerance.
    WithinTolerance { tolerance: f64 },
    /// The stabilization window moved the recommendation `from` to `to`.
    Stabilized {
        direction: Direction,
        window_ms: u64,
        from: u32,
        to: u32,
    },
    /// `max_step` allowed only `to` instead of `from`: `changed_in_period` replicas were
    /// already added (or removed) within the last `period_ms`.
    RateLimited {
        direction: Direction,
        period_ms: u64,
        changed_in_period: u32,
        from: u32,
        to: u32,
    },
    /// `min` or `max` moved `from` to `to`.
    Clamped { bound: Bound, from: u32, to: u32 },
}

impl AutoscaleState {
    /// The state before the first decision.
    pub fn new() -> AutoscaleState {
        AutoscaleState::default()
    }
}

/// The replica count a rollout of the service works with: for an autoscaled service the
/// count autoscaling last set (none yet: `deploy.replicas`), kept within [min, max];
/// otherwise `deploy.replicas` as written.
pub fn rollout_replicas(
    spec: Option<&AutoscaleSpec>,
    state: Option<&AutoscaleState>,
    file_replicas: u32,
) -> u32 {
    match spec {
        None => file_replicas,
        Some(spec) => state
            .and_then(|s| s.desired)
            .unwrap_or(file_replicas)
            .clamp(spec.min, spec.max),
    }
}

/// One autoscaling decision for `obs`. Returns the state to store and the decision.
pub fn decide(
    spec: &AutoscaleSpec,
    state: &AutoscaleState,
    obs: &Observation,
) -> (AutoscaleState, Decision) {
    let now = obs.now_ms;
    let current = obs.replicas;
    let mut s = state.clone();
    prune(spec, &mut s, now);
    let mut d = Decision {
        at_ms: now,
        current,
        desired: None,
        metrics: Vec::new(),
        recommendation: None,
        reasons: Vec::new(),
    };

    if obs.rollout_in_progress {
        d.reasons.push(Reason::RolloutInProgress);
        return (s, d);
    }
    if current == 0 && spec.min > 0 {
        d.reasons.push(Reason::ScaledToZero);
        return (s, d);
    }
    if current < spec.min || current > spec.max {
        let to = current.clamp(spec.min, spec.max);
        d.reasons.push(Reason::OutsideBounds {
            min: spec.min,
            max: spec.max,
        });
        scale(&mut s, &mut d, to);
        return (s, d);
    }

    d.metrics = spec.metrics.iter().map(|t| metric_reason(t, obs)).collect();
    let missing: Vec<Metric> = d
        .metrics
        .iter()
        .filter(|m| m.recommendation.is_none())
        .map(|m| m.metric)
        .collect();
    let Some(recommended) = d.metrics.iter().filter_map(|m| m.recommendation).max() else {
        d.reasons.push(Reason::MetricsMissing { metrics: missing });
        return (s, d);
    };
    d.recommendation = Some(recommended);
    if !missing.is_empty() && recommended < current {
        d.reasons.push(Reason::MetricsMissing { metrics: missing });
        return (s, d);
    }
    if recommended == current
        && d.metrics
            .iter()
            .any(|m| m.within_tolerance && m.recommendation == Some(current))
    {
        d.reasons.push(Reason::WithinTolerance {
            tolerance: TOLERANCE,
        });
    }

    let stabilized = stabilize(spec, &mut s, &mut d, recommended, now);
    let to = limit(spec, &s, &mut d, stabilized, now);
    if to != current {
        scale(&mut s, &mut d, to);
    }
    (s, d)
}

/// Drops recommendations and scale events no window or period looks at any more.
fn prune(spec: &AutoscaleSpec, s: &mut AutoscaleState, now: u64) {
    let window = spec
        .scale_up
        .stabilization_ms
        .max(spec.scale_down.stabilization_ms);
    let period = spec.scale_up.period_ms.max(spec.scale_down.period_ms);
    s.recommendations
        .retain(|r| within(r.at_ms, window, now) && r.at_ms <= now);
    s.scale_events
        .retain(|e| within(e.at_ms, period, now) && e.at_ms <= now);
}

/// Whether something at `at_ms` is within the last `window_ms` before `now` (HPA's
/// "after now − window": a window of 0 holds nothing).
fn within(at_ms: u64, window_ms: u64, now: u64) -> bool {
    at_ms.saturating_add(window_ms) > now
}

fn scale(s: &mut AutoscaleState, d: &mut Decision, to: u32) {
    s.scale_events.push(ScaleEvent {
        at_ms: d.at_ms,
        from: d.current,
        to,
    });
    s.desired = Some(to);
    d.desired = Some(to);
}

/// Step 4 of the module doc: records `recommended` and returns the stabilized count.
fn stabilize(
    spec: &AutoscaleSpec,
    s: &mut AutoscaleState,
    d: &mut Decision,
    recommended: u32,
    now: u64,
) -> u32 {
    let current = d.current;
    if s.recommendations.is_empty() {
        s.recommendations.push(Recommendation {
            at_ms: now,
            replicas: current,
        });
    }
    let (mut up, mut down) = (recommended, recommended);
    for r in &s.recommendations {
        if within(r.at_ms, spec.scale_up.stabilization_ms, now) {
            up = up.min(r.replicas);
        }
        if within(r.at_ms, spec.scale_down.stabilization_ms, now) {
            down = down.max(r.replicas);
        }
    }
    s.recommendations.push(Recommendation {
        at_ms: now,
        replicas: recommended,
    });
    let stabilized = current.max(up).min(down);
    if stabilized != recommended {
        let (direction, window_ms) = if recommended > stabilized {
            (Direction::Up, spec.scale_up.stabilization_ms)
        } else {
            (Direction::Down, spec.scale_down.stabilization_ms)
        };
        d.reasons.push(Reason::Stabilized {
            direction,
            window_ms,
            from: recommended,
            to: stabilized,
        });
    }
    stabilized
}

/// Step 5 of the module doc: the rate limits, then [min, max].
fn limit(spec: &AutoscaleSpec, s: &AutoscaleState, d: &mut Decision, wanted: u32, now: u64) -> u32 {
    let current = d.current;
    let changed = |period_ms: u64, up: bool| -> u64 {
        s.scale_events
            .iter()
            .filter(|e| within(e.at_ms, period_ms, now) && (e.to > e.from) == up)
            .map(|e| u64::from(e.to.abs_diff(e.from)))
            .sum()
    };
    if wanted > current {
        let b = &spec.scale_up;
        let (added, removed) = (changed(b.period_ms, true), changed(b.period_ms, false));
        let start = (u64::from(current) + removed).saturating_sub(added);
        let by_rate = b
            .max_step
            .iter()
            .map(|step| match *step {
                Step::Replicas(n) => start + u64::from(n),
                Step::Percent(p) => (start * (100 + u64::from(p))).div_ceil(100),
            })
            .max()
            .unwrap_or(u64::from(current))
            .max(u64::from(current));
        let by_rate = u32::try_from(by_rate).unwrap_or(u32::MAX);
        let mut to = wanted;
        if to > by_rate && by_rate < spec.max {
            d.reasons.push(Reason::RateLimited {
                direction: Direction::Up,
                period_ms: b.period_ms,
                changed_in_period: u32::try_from(added).unwrap_or(u32::MAX),
                from: to,
                to: by_rate,
            });
            to = by_rate;
        }
        if to > spec.max {
            d.reasons.push(Reason::Clamped {
                bound: Bound::Max,
                from: to,
                to: spec.max,
            });
            to = spec.max;
        }
        to
    } else if wanted < current {
        let b = &spec.scale_down;
        let (added, removed) = (changed(b.period_ms, true), changed(b.period_ms, false));
        let start = (u64::from(current) + removed).saturating_sub(added);
        let by_rate = b
            .max_step
            .iter()
            .map(|step| match *step {
                Step::Replicas(n) => start.saturating_sub(u64::from(n)),
                Step::Percent(p) => start * (100 - u64::from(p.min(100))) / 100,
            })
            .min()
            .unwrap_or(u64::from(current))
            .min(u64::from(current));
        let by_rate = u32::try_from(by_rate).unwrap_or(u32::MAX);
        let mut to = wanted;
        if to < by_rate && by_rate > spec.min {
            d.reasons.push(Reason::RateLimited {
                direction: Direction::Down,
                period_ms: b.period_ms,
                changed_in_period: u32::try_from(removed).unwrap_or(u32::MAX),
                from: to,
                to: by_rate,
            });
            to = by_rate;
        }
        if to < spec.min {
            d.reasons.push(Reason::Clamped {
                bound: Bound::Min,
                from: to,
                to: spec.min,
            });
            to = spec.min;
        }
        to
    } else {
        current
    }
}

/// A value from the outside world: negative, NaN or infinite counts as missing.
fn sane(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x >= 0.0)
}

/// `ceil(x)` as a replica count. A hair below the next integer is that integer: 1.2 × 5
/// is 6.000000000000001 in floating point, which must not ask for 7.
fn ceil_replicas(x: f64) -> u32 {
    let c = (x - 1e-9).ceil().max(0.0);
    if c >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        c as u32
    }
}

fn metric_reason(t: &MetricTarget, obs: &Observation) -> MetricReason {
    let mut m = MetricReason {
        metric: t.metric,
        target: t.target.shown(),
        current: None,
        recommendation: None,
        within_tolerance: false,
        missing_replicas: 0,
        not_ready_replicas: 0,
    };
    match t.metric {
        Metric::Cpu | Metric::Memory => per_replica(&mut m, t, obs),
        Metric::Rps | Metric::InFlight => {
            let total = if t.metric == Metric::Rps {
                obs.rps
            } else {
                obs.in_flight
            };
            let Some(total) = sane(total) else {
                return m;
            };
            let target = t.target.shown();
            let current = obs.replicas;
            m.current = Some(if current == 0 {
                total
            } else {
                total / f64::from(current)
            });
            let ratio = total / (target * f64::from(current.max(1)));
            if current > 0 && (ratio - 1.0).abs() <= TOLERANCE {
                m.within_tolerance = true;
                m.recommendation = Some(current);
            } else {
                m.recommendation = Some(ceil_replicas(total / target));
            }
        }
        Metric::P95 => {
            let Some(p95) = sane(obs.p95_ms) else {
                return m;
            };
            m.current = Some(p95);
            if obs.ready == 0 {
                return m;
            }
            let ratio = p95 / t.target.shown();
            if (ratio - 1.0).abs() <= TOLERANCE {
                m.within_tolerance = true;
                m.recommendation = Some(obs.replicas);
            } else {
                m.recommendation = Some(ceil_replicas(ratio * f64::from(obs.ready)));
            }
        }
    }
    m
}

/// `cpu` and `memory`: HPA's resource-metric calculation with missing and not-ready
/// replicas (step 2 of the module doc).
fn per_replica(m: &mut MetricReason, t: &MetricTarget, obs: &Observation) {
    let current = obs.replicas;
    let sample = |u: &ReplicaUsage| -> Option<f64> {
        match t.metric {
            Metric::Cpu => sane(u.cpus),
            _ => sane(u.memory_bytes.map(|b| b as f64)),
        }
    };
    // In the target's unit: percent of the limit, or the raw value.
    let (target, scale) = match t.target {
        Target::Utilization { percent, limit } => (percent, 100.0 / limit),
        Target::AverageValue { value } | Target::Value { value } => (value, 1.0),
    };
    let mut ready: Vec<f64> = Vec::new();
    let mut not_ready = 0u32;
    let mut missing = 0u32;
    for u in obs.usage.iter().take(current as usize) {
        match (u.ready, sample(u)) {
            (false, _) => not_ready += 1,
            (true, None) => missing += 1,
            (true, Some(v)) => ready.push(v * scale),
        }
    }
    let listed = obs.usage.len().min(current as usize) as u32;
    missing += current - listed;
    m.missing_replicas = missing;
    m.not_ready_replicas = not_ready;
    if ready.is_empty() {
        return;
    }
    let average = ready.iter().sum::<f64>() / ready.len() as f64;
    m.current = Some(average);
    let ratio = average / target;
    let up_with_not_ready = not_ready > 0 && ratio > 1.0;
    if !up_with_not_ready && missing == 0 {
        if (ratio - 1.0).abs() <= TOLERANCE {
            m.within_tolerance = true;
            m.recommendation = Some(current);
        } else {
            m.recommendation = Some(ceil_replicas(ratio * ready.len() as f64));
        }
        return;
    }
    // Bring the set-aside replicas back conservatively.
    let mut sum = ready.iter().sum::<f64>();
    let mut count = ready.len() as f64;
    if missing > 0 && ratio < 1.0 {
        sum += target * f64::from(missing);
        count += f64::from(missing);
    } else if missing > 0 && ratio > 1.0 {
        count += f64::from(missing);
    }
    if up_with_not_ready {
        count += f64::from(not_ready);
    }
    let new_ratio = sum / count / target;
    let flipped = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if (new_ratio - 1.0).abs() <= TOLERANCE || flipped {
        m.within_tolerance = (new_ratio - 1.0).abs() <= TOLERANCE;
        m.recommendation = Some(current);
        return;
    }
    let proposed = ceil_replicas(new_ratio * count);
    m.recommendation =
        if (new_ratio < 1.0 && proposed > current) || (new_ratio > 1.0 && proposed < current) {
            Some(current)
        } else {
            Some(proposed)
        };
}

impl std::fmt::Display for Decision {
    /// One line for an event: `3 → 6: cpu 140 of 70 → 6; rate limit 4 per 15s (6 → 7)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::rollout::{fmt_ms, fmt_num};
        match self.desired {
            Some(to) => write!(f, "{} → {to}", self.current)?,
            None => write!(f, "stay at {}", self.current)?,
        }
        let metrics: Vec<String> = self
            .metrics
            .iter()
            .map(|m| {
                let current = m.current.map_or("missing".to_string(), fmt_num);
                let rec = m
                    .recommendation
                    .map_or(String::new(), |r| format!(" → {r}"));
                format!("{} {current} of {}{rec}", m.metric, fmt_num(m.target))
            })
            .collect();
        if !metrics.is_empty() {
            write!(f, ": {}", metrics.join(", "))?;
        }
        for r in &self.reasons {
            let text = match r {
                Reason::RolloutInProgress => "rollout in progress".to_string(),
                Reason::ScaledToZero => "scaled to 0 by hand".to_string(),
                Reason::MetricsMissing { metrics } => format!(
                    "missing {}",
                    metrics
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Reason::OutsideBounds { min, max } => format!("outside [{min}, {max}]"),
                Reason::WithinTolerance { tolerance } => {
                    format!("within tolerance {}", fmt_num(*tolerance))
                }
                Reason::Stabilized {
                    direction,
                    window_ms,
                    from,
                    to,
                } => format!(
                    "{} stabilization {} ({from} → {to})",
                    direction_name(*direction),
                    fmt_ms(*window_ms)
                ),
                Reason::RateLimited {
                    direction,
                    period_ms,
                    changed_in_period,
                    from,
                    to,
                } => format!(
                    "{} rate limit per {}, {changed_in_period} changed in it ({from} → {to})",
                    direction_name(*direction),
                    fmt_ms(*period_ms)
                ),
                Reason::Clamped { bound, from, to } => format!(
                    "{} ({from} → {to})",
                    match bound {
                        Bound::Min => "min",
                        Bound::Max => "max",
                    }
                ),
            };
            write!(f, "; {text}")?;
        }
        Ok(())
    }
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Up => "scale-up",
        Direction::Down => "scale-down",
    }
}
