//! A service's autoscaling settings read from `x-baton.autoscale` into an `AutoscaleSpec`:
//! bounds, metric targets and the scale-up / scale-down behaviour, with HPA v2's defaults.
//!
//! ```yaml
//! x-baton:
//!   autoscale:
//!     min: 1                      # default 1
//!     max: 8                      # required
//!     metrics: [{cpu: 70%}, {memory: 512m}, {rps: 200}, {p95: 150ms}, {in_flight: 10}]
//!     behavior:
//!       scale_up: {stabilization: 0s, max_step: [4, 100%], period: 15s}
//!       scale_down: {stabilization: 300s, max_step: 100%, period: 15s}
//! ```
//!
//! Which metric a service can have: `cpu` and `memory` always (the daemon samples every
//! replica); `rps`, `p95` and `in_flight` are counted by the proxy in front of the service,
//! so they need a traffic-managed service (`resolve::traffic_managed`: a published port
//! and `x-baton.rollout`). Over `x-baton.proxy.protocol: tcp`, `rps` counts connections
//! and there is no `p95` (the proxy only times the connect); with an nginx or HAProxy
//! provider there is no `in_flight` (their log lines arrive when a request has ended).

use baton_spec::Service;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::resolve::{proxy_settings, traffic_managed};
use crate::rollout::spec::{did_you_mean, duration_ms, found};

/// `min` when not written (HPA's default).
pub const DEFAULT_MIN: u32 = 1;
/// The target when `metrics` is not written: 80 % CPU, HPA's default.
pub const DEFAULT_CPU_PERCENT: f64 = 80.0;
/// How long a scale-down waits for the highest recommendation to come down, by default.
pub const DEFAULT_SCALE_DOWN_STABILIZATION_MS: u64 = 300_000;
/// The period the default rate limits count replica changes over.
pub const DEFAULT_PERIOD_MS: u64 = 15_000;
/// The longest stabilization window (HPA's bound: one hour).
pub const MAX_STABILIZATION_MS: u64 = 3_600_000;
/// The longest rate-limit period (HPA's bound: 30 minutes).
pub const MAX_PERIOD_MS: u64 = 1_800_000;

/// How one service is autoscaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleSpec {
    /// At least 0; 0 lets the service scale to zero on service-wide metrics.
    pub min: u32,
    /// At least 1 and at least `min`.
    pub max: u32,
    /// At least one; in the order written (reasons keep it).
    pub metrics: Vec<MetricTarget>,
    pub scale_up: Behavior,
    pub scale_down: Behavior,
}

/// What autoscaling can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// CPU used by each replica (from `docker stats`), averaged over the replicas.
    Cpu,
    /// Memory used by each replica (page cache excluded), averaged over the replicas.
    Memory,
    /// Requests (TCP: connections) per second through the proxy, per replica.
    Rps,
    /// The service's 95th percentile response time through the proxy.
    P95,
    /// Requests (TCP: connections) open through the proxy, per replica.
    InFlight,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Cpu,
        Metric::Memory,
        Metric::Rps,
        Metric::P95,
        Metric::InFlight,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::Rps => "rps",
            Metric::P95 => "p95",
            Metric::InFlight => "in_flight",
        }
    }

    /// Measured by the proxy in front of the service, not on each replica.
    pub fn from_proxy(self) -> bool {
        matches!(self, Metric::Rps | Metric::P95 | Metric::InFlight)
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One metric and the value autoscaling steers it to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricTarget {
    pub metric: Metric,
    pub target: Target,
}

/// A target in the metric's own unit, and how the metric is averaged (HPA's target types).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Target {
    /// `cpu: 70%`, `memory: 80%`: percent of each replica's limit, averaged over the
    /// replicas that reported. `limit` is what 100 % stands for: CPUs for `cpu` (the
    /// service's CPU limit, else one CPU, as `docker stats` counts), bytes for `memory`
    /// (the service's memory limit; a percentage needs one).
    Utilization { percent: f64, limit: f64 },
    /// `memory: 512m` (bytes), `rps: 200`, `in_flight: 10`: an average per replica.
    AverageValue { value: f64 },
    /// `p95: 150ms`: one value for the whole service (milliseconds).
    Value { value: f64 },
}

impl Target {
    /// The number the reasons show, in the unit the file wrote (percent, bytes, rps, ms).
    pub fn shown(&self) -> f64 {
        match *self {
            Target::Utilization { percent, .. } => percent,
            Target::AverageValue { value } | Target::Value { value } => value,
        }
    }
}

/// How fast one direction may move: HPA's `behavior.scaleUp` / `behavior.scaleDown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Behavior {
    /// Scale-down: the highest recommendation of this window is used; scale-up: the lowest.
    pub stabilization_ms: u64,
    /// The most replicas one direction may change within `period_ms` (counting the
    /// changes already made in it); when several, the one allowing the larger change
    /// wins. Empty: this direction is off (`max_step: 0`).
    pub max_step: Vec<Step>,
    pub period_ms: u64,
}

/// One rate limit: a number of replicas, or a percentage of the replicas at the start of
/// the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Replicas(u32),
    Percent(u32),
}

impl Behavior {
    /// HPA v2's scale-up: no stabilization, 4 replicas or 100 % per 15 s, the larger.
    pub fn default_scale_up() -> Behavior {
        Behavior {
            stabilization_ms: 0,
            max_step: vec![Step::Replicas(4), Step::Percent(100)],
            period_ms: DEFAULT_PERIOD_MS,
        }
    }

    /// HPA v2's scale-down: a 300 s window, then down to the recommendation at once
    /// (100 % per 15 s).
    pub fn default_scale_down() -> Behavior {
        Behavior {
            stabilization_ms: DEFAULT_SCALE_DOWN_STABILIZATION_MS,
            max_step: vec![Step::Percent(100)],
            period_ms: DEFAULT_PERIOD_MS,
        }
    }
}

/// Where in the service's settings a value is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct AutoscaleSpecError {
    pub path: String,
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> AutoscaleSpecError {
    AutoscaleSpecError {
        path: path.to_string(),
        message: message.into(),
    }
}

const KEYS: &[&str] = &["min", "max", "metrics", "behavior"];
const METRIC_KEYS: &[&str] = &["cpu", "memory", "rps", "p95", "in_flight"];
const BEHAVIOR_KEYS: &[&str] = &["scale_up", "scale_down"];
const DIRECTION_KEYS: &[&str] = &["stabilization", "max_step", "period"];

/// Reads a service's `x-baton.autoscale`; `None` when the service has none.
pub fn autoscale_spec(service: &Service) -> Result<Option<AutoscaleSpec>, AutoscaleSpecError> {
    let section = match &service.baton {
        None => return Ok(None),
        Some(Value::Object(b)) => match b.get("autoscale") {
            None => return Ok(None),
            Some(Value::Object(a)) => a,
            Some(other) => {
                return Err(err(
                    "x-baton.autoscale",
                    format!(
                        "expected a mapping like {{min: 1, max: 8}}, found {}",
                        found(other)
                    ),
                ))
            }
        },
        Some(other) => {
            return Err(err(
                "x-baton",
                format!("expected a mapping, found {}", found(other)),
            ))
        }
    };
    let path = "x-baton.autoscale";
    check_keys(path, section, KEYS)?;
    if service
        .deploy
        .as_ref()
        .and_then(|d| d.mode.as_deref())
        .is_some_and(|m| m == "global")
    {
        return Err(err(
            path,
            "a service with deploy.mode global runs one replica per node: autoscaling needs mode replicated",
        ));
    }
    let min = match section.get("min") {
        None => DEFAULT_MIN,
        Some(v) => replicas(&format!("{path}.min"), v)?,
    };
    let max = match section.get("max") {
        None => {
            return Err(err(
                path,
                "max is missing: the most replicas autoscaling may run, e.g. max: 8",
            ))
        }
        Some(v) => replicas(&format!("{path}.max"), v)?,
    };
    if max == 0 {
        return Err(err(&format!("{path}.max"), "must be at least 1"));
    }
    if min > max {
        return Err(err(
            &format!("{path}.min"),
            format!("min {min} is above max {max}"),
        ));
    }
    let metrics = match section.get("metrics") {
        None => vec![MetricTarget {
            metric: Metric::Cpu,
            target: Target::Utilization {
                percent: DEFAULT_CPU_PERCENT,
                limit: cpu_limit(service),
            },
        }],
        Some(v) => metrics(service, &format!("{path}.metrics"), v)?,
    };
    let (scale_up, scale_down) = match section.get("behavior") {
        None => (Behavior::default_scale_up(), Behavior::default_scale_down()),
        Some(Value::Object(b)) => {
            let bpath = format!("{path}.behavior");
            check_keys(&bpath, b, BEHAVIOR_KEYS)?;
            (
                behavior(
                    &format!("{bpath}.scale_up"),
                    b.get("scale_up"),
                    Behavior::default_scale_up(),
                    false,
                )?,
                behavior(
                    &format!("{bpath}.scale_down"),
                    b.get("scale_down"),
                    Behavior::default_scale_down(),
                    true,
                )?,
            )
        }
        Some(other) => {
            return Err(err(
                &format!("{path}.behavior"),
                format!(
                    "expected a mapping with scale_up and scale_down, found {}",
                    found(other)
                ),
            ))
        }
    };
    Ok(Some(AutoscaleSpec {
        min,
        max,
        metrics,
        scale_up,
        scale_down,
    }))
}

/// Settings that are valid but worth a word, each as (path, why): `deploy.replicas`
/// outside [min, max] is only where the service starts (autoscaling moves it into range
/// at its first decision).
pub fn autoscale_warnings(service: &Service) -> Vec<(String, String)> {
    let Ok(Some(spec)) = autoscale_spec(service) else {
        return Vec::new();
    };
    match service.deploy.as_ref().and_then(|d| d.replicas) {
        Some(n) if n < spec.min || n > spec.max => vec![(
            "deploy.replicas".to_string(),
            format!(
                "{n} is outside x-baton.autoscale's [{}, {}]: autoscaling moves the service to {} at its first decision",
                spec.min,
                spec.max,
                n.clamp(spec.min, spec.max)
            ),
        )],
        _ => Vec::new(),
    }
}

/// The CPUs 100 % of `cpu:` stands for: the service's CPU limit (`cpus`, else
/// `deploy.resources.limits.cpus`: Docker applies `cpus` last), else one CPU.
pub fn cpu_limit(service: &Service) -> f64 {
    let other = service.other.get("cpus").and_then(|v| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    });
    let deploy = service
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.cpus);
    other
        .or(deploy)
        .filter(|c| c.is_finite() && *c > 0.0)
        .unwrap_or(1.0)
}

/// The bytes 100 % of `memory:` stands for: `mem_limit`, else
/// `deploy.resources.limits.memory`; none without a limit.
pub fn memory_limit(service: &Service) -> Option<u64> {
    let other = service.other.get("mem_limit").and_then(|v| match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => baton_spec::parse_bytes(s).ok(),
        _ => None,
    });
    let deploy = service
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.memory);
    other.or(deploy).filter(|m| *m > 0)
}

fn replicas(path: &str, v: &Value) -> Result<u32, AutoscaleSpecError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
        err(
            path,
            format!(
                "expected a whole number of replicas, 0 or more, found {}",
                found(v)
            ),
        )
    })
}

fn metrics(
    service: &Service,
    path: &str,
    v: &Value,
) -> Result<Vec<MetricTarget>, AutoscaleSpecError> {
    let Value::Array(items) = v else {
        return Err(err(
            path,
            format!(
                "expected a list like [{{cpu: 70%}}, {{rps: 200}}], found {}",
                found(v)
            ),
        ));
    };
    if items.is_empty() {
        return Err(err(
            path,
            "expected at least one metric (leave metrics out for cpu 80%)",
        ));
    }
    let mut out: Vec<MetricTarget> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let map = match item {
            Value::Object(m) if m.len() == 1 => m,
            _ => {
                return Err(err(
                    &here,
                    format!(
                        "expected one metric and its target, like {{cpu: 70%}}, found {}",
                        found(item)
                    ),
                ))
            }
        };
        let Some((key, value)) = map.iter().next() else {
            continue;
        };
        let at = format!("{here}.{key}");
        let metric = Metric::ALL
            .into_iter()
            .find(|m| m.name() == key)
            .ok_or_else(|| {
                err(
                    &at,
                    format!(
                        "unknown metric \"{key}\"{} (known: {})",
                        did_you_mean(key, METRIC_KEYS),
                        METRIC_KEYS.join(", ")
                    ),
                )
            })?;
        if out.iter().any(|t| t.metric == metric) {
            return Err(err(&at, format!("{metric} has a target already")));
        }
        proxy_metric_allowed(service, metric, &at)?;
        let target = target(service, metric, &at, value)?;
        out.push(MetricTarget { metric, target });
    }
    Ok(out)
}

/// Whether the proxy can measure `metric` for this service (see the module doc).
fn proxy_metric_allowed(
    service: &Service,
    metric: Metric,
    path: &str,
) -> Result<(), AutoscaleSpecError> {
    if !metric.from_proxy() {
        return Ok(());
    }
    if !traffic_managed(service) {
        return Err(err(
            path,
            format!(
                "{metric} is measured by baton's proxy, which only runs in front of a service with a published port and x-baton.rollout"
            ),
        ));
    }
    // A broken x-baton.proxy is reported by its own check.
    let proxy = proxy_settings(service).unwrap_or_default();
    if metric == Metric::P95 && proxy.tcp {
        return Err(err(
            path,
            "p95 needs x-baton.proxy.protocol http: over tcp the proxy only times the connect",
        ));
    }
    if metric == Metric::InFlight && proxy.external.is_some() {
        return Err(err(
            path,
            "in_flight needs baton's own proxy: nginx and HAProxy report a request only once it has ended",
        ));
    }
    Ok(())
}

fn target(
    service: &Service,
    metric: Metric,
    path: &str,
    v: &Value,
) -> Result<Target, AutoscaleSpecError> {
    match metric {
        Metric::Cpu => {
            let limit = cpu_limit(service);
            let has_limit = cpu_limit_written(service);
            let percent = percent(path, v, "70%")?;
            if has_limit && percent > 100.0 {
                return Err(err(
                    path,
                    format!(
                        "{} is more than the CPU limit ({limit} CPUs) allows: at most 100%",
                        found(v)
                    ),
                ));
            }
            Ok(Target::Utilization { percent, limit })
        }
        Metric::Memory => match v {
            Value::String(s) if s.trim().ends_with('%') => {
                let percent = percent(path, v, "80%")?;
                if percent > 100.0 {
                    return Err(err(
                        path,
                        format!("expected at most 100%, found {}", found(v)),
                    ));
                }
                let limit = memory_limit(service).ok_or_else(|| {
                    err(
                        path,
                        "a percentage is of the memory limit, and the service has none: set deploy.resources.limits.memory, or write bytes like 512m",
                    )
                })?;
                Ok(Target::Utilization {
                    percent,
                    limit: limit as f64,
                })
            }
            _ => {
                let bytes = match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => baton_spec::parse_bytes(s).ok(),
                    _ => None,
                };
                match bytes {
                    Some(b) if b > 0 => Ok(Target::AverageValue { value: b as f64 }),
                    _ => Err(err(
                        path,
                        format!(
                            "expected a size per replica like 512m or a percentage of the limit like 80%, found {}",
                            found(v)
                        ),
                    )),
                }
            }
        },
        Metric::Rps | Metric::InFlight => {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if n.is_finite() && n > 0.0 => Ok(Target::AverageValue { value: n }),
                _ => Err(err(
                    path,
                    format!(
                        "expected a number per replica above 0, like {}, found {}",
                        if metric == Metric::Rps { "200" } else { "10" },
                        found(v)
                    ),
                )),
            }
        }
        Metric::P95 => match duration_ms(v) {
            Some(ms) if ms > 0 => Ok(Target::Value { value: ms as f64 }),
            _ => Err(err(
                path,
                format!(
                    "expected a duration above 0 like \"150ms\", found {}",
                    found(v)
                ),
            )),
        },
    }
}

fn cpu_limit_written(service: &Service) -> bool {
    service.other.contains_key("cpus")
        || service
            .deploy
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
            .is_some_and(|l| l.cpus.is_some())
}

/// `"70%"` into 70.0: above 0, finite.
fn percent(path: &str, v: &Value, example: &str) -> Result<f64, AutoscaleSpecError> {
    let p = match v {
        Value::String(s) => s
            .trim()
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<f64>().ok()),
        _ => None,
    };
    match p {
        Some(p) if p.is_finite() && p > 0.0 => Ok(p),
        _ => Err(err(
            path,
            format!(
                "expected a percentage above 0 like \"{example}\", found {}",
                found(v)
            ),
        )),
    }
}

fn behavior(
    path: &str,
    v: Option<&Value>,
    default: Behavior,
    down: bool,
) -> Result<Behavior, AutoscaleSpecError> {
    let map = match v {
        None => return Ok(default),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(err(
                path,
                format!(
                    "expected a mapping like {{stabilization: 300s, max_step: 100%, period: 15s}}, found {}",
                    found(other)
                ),
            ))
        }
    };
    check_keys(path, map, DIRECTION_KEYS)?;
    let stabilization_ms = match map.get("stabilization") {
        None => default.stabilization_ms,
        Some(v) => {
            let at = format!("{path}.stabilization");
            let ms = duration(&at, v)?;
            if ms > MAX_STABILIZATION_MS {
                return Err(err(&at, format!("at most 1h, found {}", found(v))));
            }
            ms
        }
    };
    let period_ms = match map.get("period") {
        None => default.period_ms,
        Some(v) => {
            let at = format!("{path}.period");
            let ms = duration(&at, v)?;
            if ms == 0 || ms > MAX_PERIOD_MS {
                return Err(err(
                    &at,
                    format!("expected a period from 1s to 30m, found {}", found(v)),
                ));
            }
            ms
        }
    };
    let max_step = match map.get("max_step") {
        None => default.max_step,
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match step(&format!("{path}.max_step[{i}]"), item, down)? {
                    Some(s) => out.push(s),
                    None => {
                        return Err(err(
                            &format!("{path}.max_step[{i}]"),
                            "0 turns the direction off, which only max_step: 0 can say",
                        ))
                    }
                }
            }
            out
        }
        Some(v) => step(&format!("{path}.max_step"), v, down)?
            .into_iter()
            .collect(),
    };
    Ok(Behavior {
        stabilization_ms,
        max_step,
        period_ms,
    })
}

/// `4` (replicas), `100%` (of the replicas at the period's start), `0` (off: `None`).
fn step(path: &str, v: &Value, down: bool) -> Result<Option<Step>, AutoscaleSpecError> {
    let bad = || {
        err(
            path,
            format!(
                "expected a number of replicas like 4, a percentage like \"100%\", or a list of them, found {}",
                found(v)
            ),
        )
    };
    let step = match v {
        Value::Number(n) => Step::Replicas(
            n.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(bad)?,
        ),
        Value::String(s) => match s.trim().strip_suffix('%') {
            Some(p) => Step::Percent(p.trim().parse::<u32>().map_err(|_| bad())?),
            None => Step::Replicas(s.trim().parse::<u32>().map_err(|_| bad())?),
        },
        _ => return Err(bad()),
    };
    match step {
        Step::Replicas(0) => Ok(None),
        Step::Percent(0) => Err(err(
            path,
            "0% allows no change: write max_step: 0 to turn the direction off",
        )),
        Step::Percent(p) if down && p > 100 => Err(err(
            path,
            format!("a scale-down removes at most 100% of the replicas, found {p}%"),
        )),
        s => Ok(Some(s)),
    }
}

fn duration(path: &str, v: &Value) -> Result<u64, AutoscaleSpecError> {
    duration_ms(v).ok_or_else(|| {
        err(
            path,
            format!(
                "expected a duration like \"15s\", \"5m\" or \"0s\", found {}",
                found(v)
            ),
        )
    })
}

fn check_keys(
    path: &str,
    map: &Map<String, Value>,
    known: &[&str],
) -> Result<(), AutoscaleSpecError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(err(
            &format!("{path}.{k}"),
            format!("unknown key \"{k}\"{}", did_you_mean(k, known)),
        )),
    }
}
