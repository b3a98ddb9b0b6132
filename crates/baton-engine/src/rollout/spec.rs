//! A service's rollout settings read from `x-baton.rollout` and `deploy.update_config` /
//! `deploy.rollback_config` into a `RolloutSpec`: the strategy and the shared timeouts.

use baton_spec::{Service, UpdateConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How long new replicas may take to become healthy when `health_timeout` is not set.
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 60_000;
/// How long a replica is drained from the proxy before it is stopped, by default.
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 10_000;
/// How long blue-green keeps the old set for an instant rollback, by default.
pub const DEFAULT_KEEP_OLD_MS: u64 = 300_000;
/// The fewest requests a canary window needs before its error rate and p95 are judged.
pub const DEFAULT_MIN_REQUESTS: u64 = 20;

/// Everything the deciders need to know about how one service is rolled out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutSpec {
    pub strategy: Strategy,
    pub health_timeout_ms: u64,
    pub drain_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Rolling(Rolling),
    BlueGreen(BlueGreen),
    Canary(Canary),
}

impl Strategy {
    pub fn kind(&self) -> StrategyKind {
        match self {
            Strategy::Rolling(_) => StrategyKind::Rolling,
            Strategy::BlueGreen(_) => StrategyKind::BlueGreen,
            Strategy::Canary(_) => StrategyKind::Canary,
        }
    }
}

/// The strategy's name alone, kept in the rollout state to notice a spec that changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    Rolling,
    BlueGreen,
    Canary,
}

impl std::fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StrategyKind::Rolling => "rolling",
            StrategyKind::BlueGreen => "blue-green",
            StrategyKind::Canary => "canary",
        })
    }
}

/// Swarm-style batches, from `deploy.update_config`; a rollback goes in batches too, as
/// `deploy.rollback_config` says (without one: `UpdateSettings::one_batch_rollback`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rolling {
    pub update: UpdateSettings,
    pub rollback: UpdateSettings,
}

/// `update_config` with Swarm's defaults filled in. `parallelism` 0 means all at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateSettings {
    pub parallelism: u32,
    pub delay_ms: u64,
    pub failure_action: FailureAction,
    pub monitor_ms: u64,
    pub max_failure_ratio: f64,
    pub order: Order,
}

impl UpdateSettings {
    /// The rollback of a service without `rollback_config`: every old replica stopped
    /// is started again in one start-first batch, routed once healthy, then the new ones
    /// go; no monitor, no delay; a restored replica that fails pauses. The new revision
    /// just failed, so getting off it fast matters more than pacing (Swarm's default
    /// would be one replica at a time); write `rollback_config` to pace it.
    pub fn one_batch_rollback() -> UpdateSettings {
        UpdateSettings {
            parallelism: 0,
            delay_ms: 0,
            failure_action: FailureAction::Pause,
            monitor_ms: 0,
            max_failure_ratio: 0.0,
            order: Order::StartFirst,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    Continue,
    Rollback,
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    StopFirst,
    StartFirst,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlueGreen {
    pub keep_old_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// At least one; weights strictly increase within 1..=100. 100% follows the last.
    pub steps: Vec<CanaryStep>,
    pub analysis: Analysis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryStep {
    /// Percent of the traffic sent to the new revision during this step.
    pub weight: u32,
    pub pause_ms: u64,
}

/// Thresholds judged on the new revision's metrics once a window has `min_requests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// A fraction: `0.01` is 1%.
    pub max_error_rate: Option<f64>,
    pub max_p95_latency_ms: Option<u64>,
    pub min_requests: u64,
}

/// Where in the service's settings a value is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RolloutSpecError {
    pub path: String,
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> RolloutSpecError {
    RolloutSpecError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Reads a service's rollout settings. The default order is start-first when the service
/// publishes ports (`ports:` is not empty) or the edge routes to it (zero downtime
/// through the proxy), else stop-first as in Swarm; an explicit `order` always wins.
pub fn rollout_spec(service: &Service) -> Result<RolloutSpec, RolloutSpecError> {
    let publishes_ports = !service.ports.is_empty() || crate::resolve::traffic_managed(service);
    let deploy = service.deploy.as_ref();
    let update = update_settings(
        "deploy.update_config",
        deploy.and_then(|d| d.update_config.as_ref()),
        publishes_ports,
    )?;
    let rollback = match deploy.and_then(|d| d.rollback_config.as_ref()) {
        None => UpdateSettings::one_batch_rollback(),
        Some(c) => update_settings("deploy.rollback_config", Some(c), publishes_ports)?,
    };

    let empty = Map::new();
    let rollout = match &service.baton {
        None => &empty,
        Some(Value::Object(b)) => match b.get("rollout") {
            None => &empty,
            Some(Value::Object(r)) => r,
            Some(other) => {
                return Err(err(
                    "x-baton.rollout",
                    format!("expected a mapping, found {}", found(other)),
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
    check_keys(
        "x-baton.rollout",
        rollout,
        &[
            "strategy",
            "steps",
            "analysis",
            "keep_old",
            "health_timeout",
            "drain_timeout",
        ],
    )?;

    let kind = match rollout.get("strategy") {
        None => StrategyKind::Rolling,
        Some(Value::String(s)) => match s.as_str() {
            "rolling" => StrategyKind::Rolling,
            "blue-green" => StrategyKind::BlueGreen,
            "canary" => StrategyKind::Canary,
            other => {
                let hint = did_you_mean(other, &["rolling", "blue-green", "canary"]);
                return Err(err(
                    "x-baton.rollout.strategy",
                    format!("unknown strategy \"{other}\"{hint}"),
                ));
            }
        },
        Some(other) => {
            return Err(err(
                "x-baton.rollout.strategy",
                format!(
                    "expected \"rolling\", \"blue-green\" or \"canary\", found {}",
                    found(other)
                ),
            ))
        }
    };
    // Settings of another strategy are checked all the same (so that switching
    // `strategy` alone, say from an environment variable, keeps the file valid) and
    // left unused: `unused_settings` says so.
    let keep_old_ms = duration_or(
        rollout,
        "keep_old",
        "x-baton.rollout.keep_old",
        DEFAULT_KEEP_OLD_MS,
    )?;
    let canary_steps = if kind == StrategyKind::Canary || rollout.contains_key("steps") {
        steps(rollout.get("steps"))?
    } else {
        Vec::new()
    };
    let canary_analysis = analysis(rollout.get("analysis"))?;
    let health_timeout_ms = duration_or(
        rollout,
        "health_timeout",
        "x-baton.rollout.health_timeout",
        DEFAULT_HEALTH_TIMEOUT_MS,
    )?;
    let drain_timeout_ms = duration_or(
        rollout,
        "drain_timeout",
        "x-baton.rollout.drain_timeout",
        DEFAULT_DRAIN_TIMEOUT_MS,
    )?;
    let strategy = match kind {
        StrategyKind::Rolling => Strategy::Rolling(Rolling { update, rollback }),
        StrategyKind::BlueGreen => Strategy::BlueGreen(BlueGreen { keep_old_ms }),
        StrategyKind::Canary => Strategy::Canary(Canary {
            steps: canary_steps,
            analysis: canary_analysis,
        }),
    };
    Ok(RolloutSpec {
        strategy,
        health_timeout_ms,
        drain_timeout_ms,
    })
}

/// The rollout settings the service's strategy does not use (`steps` with `strategy:
/// rolling`, …), each as (path, why), for a warning: they are valid, and used once the
/// strategy changes.
pub fn unused_settings(service: &Service) -> Vec<(String, String)> {
    let Some(Value::Object(rollout)) = service.baton.as_ref().and_then(|b| b.get("rollout")) else {
        return Vec::new();
    };
    let kind = match rollout.get("strategy").and_then(Value::as_str) {
        None | Some("rolling") => StrategyKind::Rolling,
        Some("blue-green") => StrategyKind::BlueGreen,
        Some("canary") => StrategyKind::Canary,
        Some(_) => return Vec::new(),
    };
    [
        ("steps", StrategyKind::Canary),
        ("analysis", StrategyKind::Canary),
        ("keep_old", StrategyKind::BlueGreen),
    ]
    .into_iter()
    .filter(|(key, owner)| rollout.contains_key(*key) && kind != *owner)
    .map(|(key, owner)| {
        (
            format!("x-baton.rollout.{key}"),
            format!("only used by strategy {owner}, not {kind}: ignored"),
        )
    })
    .collect()
}

fn update_settings(
    path: &str,
    config: Option<&UpdateConfig>,
    publishes_ports: bool,
) -> Result<UpdateSettings, RolloutSpecError> {
    let default = UpdateConfig::default();
    let c = config.unwrap_or(&default);
    // A rollback that fails cannot roll back: Swarm allows pause | continue there.
    let rollback = path.ends_with("rollback_config");
    let failure_action = match c.failure_action.as_deref() {
        None => FailureAction::Pause,
        Some("continue") => FailureAction::Continue,
        Some("rollback") if !rollback => FailureAction::Rollback,
        Some("pause") => FailureAction::Pause,
        Some(other) => {
            let expected = if rollback {
                "\"continue\" or \"pause\""
            } else {
                "\"continue\", \"rollback\" or \"pause\""
            };
            return Err(err(
                &format!("{path}.failure_action"),
                format!("expected {expected}, found \"{other}\""),
            ));
        }
    };
    let order = match c.order.as_deref() {
        None if publishes_ports => Order::StartFirst,
        None => Order::StopFirst,
        Some("stop-first") => Order::StopFirst,
        Some("start-first") => Order::StartFirst,
        Some(other) => {
            return Err(err(
                &format!("{path}.order"),
                format!("expected \"stop-first\" or \"start-first\", found \"{other}\""),
            ))
        }
    };
    let max_failure_ratio = c.max_failure_ratio.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&max_failure_ratio) {
        return Err(err(
            &format!("{path}.max_failure_ratio"),
            format!("expected a number between 0 and 1, found {max_failure_ratio}"),
        ));
    }
    Ok(UpdateSettings {
        parallelism: c.parallelism.unwrap_or(1),
        delay_ms: c.delay.map(|d| d.0).unwrap_or(0),
        failure_action,
        monitor_ms: c.monitor.map(|d| d.0).unwrap_or(5_000),
        max_failure_ratio,
        order,
    })
}

fn steps(value: Option<&Value>) -> Result<Vec<CanaryStep>, RolloutSpecError> {
    let path = "x-baton.rollout.steps";
    let list = match value {
        None => return Err(err(path, "strategy canary needs at least one step")),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(err(
                path,
                format!("expected a list of steps, found {}", found(other)),
            ))
        }
    };
    if list.is_empty() {
        return Err(err(path, "strategy canary needs at least one step"));
    }
    let mut out: Vec<CanaryStep> = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let Value::Object(map) = item else {
            return Err(err(
                &here,
                format!(
                    "expected a mapping like {{weight: 10, pause: 1m}}, found {}",
                    found(item)
                ),
            ));
        };
        check_keys(&here, map, &["weight", "pause"])?;
        let weight_path = format!("{here}.weight");
        let weight = match map.get("weight") {
            None => return Err(err(&weight_path, "missing; expected a percentage like 10")),
            Some(v) => weight(&weight_path, v)?,
        };
        if let Some(prev) = out.last() {
            if weight <= prev.weight {
                return Err(err(
                    &weight_path,
                    format!("weights must increase, {weight} follows {}", prev.weight),
                ));
            }
        }
        let pause_ms = duration_or(map, "pause", &format!("{here}.pause"), 0)?;
        out.push(CanaryStep { weight, pause_ms });
    }
    Ok(out)
}

fn weight(path: &str, v: &Value) -> Result<u32, RolloutSpecError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s
            .trim()
            .strip_suffix('%')
            .and_then(|p| p.trim().parse().ok()),
        _ => None,
    };
    match n {
        Some(n @ 1..=100) => Ok(n as u32),
        _ => Err(err(
            path,
            format!(
                "expected a whole percentage from 1 to 100, found {}",
                found(v)
            ),
        )),
    }
}

fn analysis(value: Option<&Value>) -> Result<Analysis, RolloutSpecError> {
    let path = "x-baton.rollout.analysis";
    let empty = Map::new();
    let map = match value {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(err(
                path,
                format!("expected a mapping, found {}", found(other)),
            ))
        }
    };
    check_keys(
        path,
        map,
        &["max_error_rate", "max_p95_latency", "min_requests"],
    )?;
    let max_error_rate = map
        .get("max_error_rate")
        .map(|v| rate(&format!("{path}.max_error_rate"), v))
        .transpose()?;
    let max_p95_latency_ms = map
        .get("max_p95_latency")
        .map(|v| duration(&format!("{path}.max_p95_latency"), v))
        .transpose()?;
    let min_requests = match map.get("min_requests") {
        None => DEFAULT_MIN_REQUESTS,
        Some(v) => v.as_u64().ok_or_else(|| {
            err(
                &format!("{path}.min_requests"),
                format!("expected a whole number, found {}", found(v)),
            )
        })?,
    };
    Ok(Analysis {
        max_error_rate,
        max_p95_latency_ms,
        min_requests,
    })
}

/// `"1%"`, `"0.5 %"`, `0.01` or `"0.01"` into a fraction between 0 and 1.
fn rate(path: &str, v: &Value) -> Result<f64, RolloutSpecError> {
    let r = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.trim().strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().ok().map(|p| p / 100.0),
            None => s.trim().parse::<f64>().ok(),
        },
        _ => None,
    };
    match r {
        Some(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(err(
            path,
            format!(
                "expected a percentage like \"1%\" or a number between 0 and 1, found {}",
                found(v)
            ),
        )),
    }
}

fn duration_or(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    default: u64,
) -> Result<u64, RolloutSpecError> {
    map.get(key).map_or(Ok(default), |v| duration(path, v))
}

/// Durations are strings with a unit: a bare number would be ambiguous (500 what?).
pub(crate) fn duration_ms(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) if s.trim().parse::<f64>().is_err() => {
            baton_spec::parse_duration(s).ok().map(|d| d.0)
        }
        _ => None,
    }
}

fn duration(path: &str, v: &Value) -> Result<u64, RolloutSpecError> {
    duration_ms(v).ok_or_else(|| {
        err(
            path,
            format!(
                "expected a duration like \"30s\", \"1m30s\" or \"500ms\", found {}",
                found(v)
            ),
        )
    })
}

fn check_keys(
    path: &str,
    map: &Map<String, Value>,
    known: &[&str],
) -> Result<(), RolloutSpecError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(err(
            path,
            format!("unknown key \"{k}\"{}", did_you_mean(k, known)),
        )),
    }
}

pub(crate) fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    baton_spec::suggest(word, candidates.iter().copied())
        .map(|h| format!(" ({h})"))
        .unwrap_or_default()
}

/// A value as the file wrote it: strings quoted, the rest as JSON.
pub(crate) fn found(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "a value".into())
}
