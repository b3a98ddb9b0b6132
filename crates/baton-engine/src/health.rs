//! Health checks baton runs itself, from the host, beside (or instead of) the image's
//! Compose `healthcheck`: an HTTP GET or a TCP connect to each replica, read from
//! `x-baton.healthcheck`, and the pure bookkeeping that turns probe results into a
//! replica's health.
//!
//! ```yaml
//! x-baton:
//!   healthcheck:
//!     http: /healthz          # or {path: /healthz, port: 8080, status: 200-399}
//!     # tcp: 5432             # a TCP connect instead
//!     interval: 2s
//!     timeout: 1s
//!     retries: 3              # consecutive failures before unhealthy
//!     start_period: 10s       # failures before the first success don't count
//! ```
//!
//! Pure: the daemon probes and feeds results in with a clock.

use baton_spec::{parse_duration, Service};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::runtime::Health;

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// `GET path` on the replica's `port`; healthy when the status is in `status`.
    Http {
        path: String,
        port: u16,
        status: (u16, u16),
    },
    /// A TCP connection to the replica's `port` is accepted.
    Tcp { port: u16 },
}

/// A service's `x-baton.healthcheck`, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSpec {
    pub probe: Probe,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

const KEYS: &[&str] = &[
    "http",
    "tcp",
    "interval",
    "timeout",
    "retries",
    "start_period",
];

fn duration_ms(
    map: &serde_json::Map<String, Value>,
    key: &str,
    default: u64,
) -> Result<u64, String> {
    match map.get(key) {
        None => Ok(default),
        Some(Value::String(s)) => parse_duration(s)
            .map(|d| d.as_std().as_millis() as u64)
            .map_err(|e| format!("x-baton.healthcheck.{key}: {e}")),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|s| s * 1000)
            .ok_or_else(|| format!("x-baton.healthcheck.{key}: expected a duration")),
        Some(_) => Err(format!(
            "x-baton.healthcheck.{key}: expected a duration like 2s"
        )),
    }
}

/// The port a probe targets by default: the service's first container port.
/// The first port the service's containers listen on: of `ports`, else of `expose` (a
/// service only the edge routes to exposes its port).
fn default_port(service: &Service) -> Option<u16> {
    service.ports.first().map(|p| p.target).or_else(|| {
        let first = service.expose.first()?;
        let port = first.split(['/', '-']).next()?;
        port.trim().parse().ok()
    })
}

fn port_of(v: &Value, what: &str) -> Result<u16, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    n.and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("x-baton.healthcheck.{what}: expected a port number (1-65535)"))
}

fn status_range(v: &Value) -> Result<(u16, u16), String> {
    let bad = || {
        "x-baton.healthcheck.http.status: expected a status like 200 or a range like 200-399"
            .to_string()
    };
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(bad()),
    };
    let (lo, hi) = text.split_once('-').unwrap_or((&text, &text));
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if !(100..=599).contains(&lo) || !(lo..=599).contains(&hi) {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// Reads `x-baton.healthcheck`; `Ok(None)` when there is none.
pub fn probe_spec(service: &Service) -> Result<Option<ProbeSpec>, String> {
    let Some(v) = service.baton.as_ref().and_then(|b| b.get("healthcheck")) else {
        return Ok(None);
    };
    let Some(map) = v.as_object() else {
        return Err("x-baton.healthcheck: expected a mapping".into());
    };
    for key in map.keys() {
        if !KEYS.contains(&key.as_str()) {
            return Err(format!(
                "x-baton.healthcheck: unknown key {key:?} (expected one of {})",
                KEYS.join(", ")
            ));
        }
    }
    let no_port = |what: &str| {
        format!(
            "x-baton.healthcheck.{what}: no port given and the service has no ports or expose to default to"
        )
    };
    let probe = match (map.get("http"), map.get("tcp")) {
        (Some(_), Some(_)) => {
            return Err("x-baton.healthcheck: give either http or tcp, not both".into())
        }
        (None, None) => return Err("x-baton.healthcheck: give http or tcp".into()),
        (Some(Value::String(path)), None) => Probe::Http {
            path: path.clone(),
            port: default_port(service).ok_or_else(|| no_port("http"))?,
            status: (200, 399),
        },
        (Some(Value::Object(h)), None) => {
            for key in h.keys() {
                if !["path", "port", "status"].contains(&key.as_str()) {
                    return Err(format!(
                        "x-baton.healthcheck.http: unknown key {key:?} (expected path, port, status)"
                    ));
                }
            }
            Probe::Http {
                path: match h.get("path") {
                    None => "/".into(),
                    Some(Value::String(p)) => p.clone(),
                    Some(_) => {
                        return Err("x-baton.healthcheck.http.path: expected a string".into())
                    }
                },
                port: match h.get("port") {
                    None => default_port(service).ok_or_else(|| no_port("http"))?,
                    Some(p) => port_of(p, "http.port")?,
                },
                status: match h.get("status") {
                    None => (200, 399),
                    Some(s) => status_range(s)?,
                },
            }
        }
        (Some(_), None) => {
            return Err("x-baton.healthcheck.http: expected a path or a mapping".into())
        }
        (None, Some(p)) => Probe::Tcp {
            port: port_of(p, "tcp")?,
        },
    };
    if let Probe::Http { path, .. } = &probe {
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "x-baton.healthcheck.http.path: expected an absolute path like /healthz, found {path:?}"
            ));
        }
    }
    let retries = match map.get("retries") {
        None => 3,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or("x-baton.healthcheck.retries: expected a positive number")?,
    };
    let spec = ProbeSpec {
        probe,
        interval_ms: duration_ms(map, "interval", 2_000)?,
        timeout_ms: duration_ms(map, "timeout", 1_000)?,
        retries,
        start_period_ms: duration_ms(map, "start_period", 0)?,
    };
    if spec.interval_ms == 0 || spec.timeout_ms == 0 {
        return Err("x-baton.healthcheck: interval and timeout must be more than 0".into());
    }
    Ok(Some(spec))
}

/// One replica's probe history. Keyed by container id in the daemon, so a replaced
/// replica starts over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeTracker {
    /// When the tracker was made (≈ when the daemon first saw the container running).
    pub since_ms: u64,
    pub last_probe_ms: Option<u64>,
    pub failures: u32,
    pub ever_passed: bool,
    pub unhealthy: bool,
    /// The last failure, for events and `ps`.
    pub last_error: Option<String>,
}

/// What changed with one result, for events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    None,
    BecameHealthy,
    BecameUnhealthy(String),
}

impl ProbeTracker {
    pub fn new(now_ms: u64) -> Self {
        ProbeTracker {
            since_ms: now_ms,
            ..Default::default()
        }
    }

    /// Whether a probe is due.
    pub fn due(&self, spec: &ProbeSpec, now_ms: u64) -> bool {
        self.last_probe_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= spec.interval_ms)
    }

    /// Takes one probe result.
    pub fn record(
        &mut self,
        spec: &ProbeSpec,
        result: Result<(), String>,
        now_ms: u64,
    ) -> Transition {
        self.last_probe_ms = Some(now_ms);
        match result {
            Ok(()) => {
                let was = self.health();
                self.failures = 0;
                self.ever_passed = true;
                self.unhealthy = false;
                self.last_error = None;
                if was != Health::Healthy {
                    Transition::BecameHealthy
                } else {
                    Transition::None
                }
            }
            Err(e) => {
                // As in Docker: failures in the start period before a first success
                // don't count.
                let starting = !self.ever_passed
                    && now_ms.saturating_sub(self.since_ms) < spec.start_period_ms;
                self.last_error = Some(e.clone());
                if starting {
                    return Transition::None;
                }
                self.failures = self.failures.saturating_add(1);
                if self.failures >= spec.retries && !self.unhealthy {
                    self.unhealthy = true;
                    return Transition::BecameUnhealthy(e);
                }
                Transition::None
            }
        }
    }

    /// The replica's health by baton's own check.
    pub fn health(&self) -> Health {
        if self.unhealthy {
            Health::Unhealthy
        } else if self.ever_passed {
            Health::Healthy
        } else {
            Health::Starting
        }
    }
}

/// The health a replica shows when the engine's (Compose healthcheck) verdict and
/// baton's own probe are both known: unhealthy if either says so, healthy only when
/// both agree (or the engine has no check).
pub fn combine(engine: Health, probe: Health) -> Health {
    match (engine, probe) {
        (Health::Unhealthy, _) | (_, Health::Unhealthy) => Health::Unhealthy,
        (Health::Healthy | Health::None, Health::Healthy) => Health::Healthy,
        _ => Health::Starting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(x: Value, ports: &[u16]) -> Service {
        Service {
            baton: Some(json!({ "healthcheck": x })),
            ports: ports
                .iter()
                .map(|p| baton_spec::Port {
                    target: *p,
                    published: None,
                    host_ip: None,
                    protocol: "tcp".into(),
                    mode: None,
                    name: None,
                    app_protocol: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_http_and_tcp_with_defaults() {
        let s = probe_spec(&svc(json!({"http": "/healthz"}), &[8080]))
            .unwrap()
            .unwrap();
        assert_eq!(
            s,
            ProbeSpec {
                probe: Probe::Http {
                    path: "/healthz".into(),
                    port: 8080,
                    status: (200, 399)
                },
                interval_ms: 2000,
                timeout_ms: 1000,
                retries: 3,
                start_period_ms: 0
            }
        );
        let s = probe_spec(&svc(
            json!({"http": {"path": "/up", "port": 9000, "status": "200-204"}, "interval": "500ms", "retries": 2, "start_period": "5s"}),
            &[],
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            s.probe,
            Probe::Http {
                path: "/up".into(),
                port: 9000,
                status: (200, 204)
            }
        );
        assert_eq!(
            (s.interval_ms, s.retries, s.start_period_ms),
            (500, 2, 5000)
        );
        let s = probe_spec(&svc(json!({"tcp": 5432}), &[]))
            .unwrap()
            .unwrap();
        assert_eq!(s.probe, Probe::Tcp { port: 5432 });
        assert_eq!(probe_spec(&Service::default()), Ok(None));
    }

    #[test]
    fn refuses_what_cannot_be_probed() {
        let err = |x: Value, ports: &[u16]| probe_spec(&svc(x, ports)).unwrap_err();
        assert!(err(json!({"http": "/a", "tcp": 1}), &[80]).contains("not both"));
        assert!(err(json!({"interval": "1s"}), &[80]).contains("give http or tcp"));
        assert!(err(json!({"http": "/a"}), &[]).contains("no port given"));
        assert!(err(json!({"http": "a b"}), &[80]).contains("absolute path"));
        assert!(err(json!({"tcp": 70000}), &[]).contains("port number"));
        assert!(err(json!({"tcp": 1, "interval": "soon"}), &[]).contains("interval"));
        assert!(err(json!({"tcp": 1, "retries": 0}), &[]).contains("retries"));
        assert!(err(json!({"tcp": 1, "every": "1s"}), &[]).contains("unknown key \"every\""));
        assert!(err(json!({"http": {"path": "/", "status": "600"}}), &[80]).contains("status"));
        assert!(err(json!("yes"), &[80]).contains("mapping"));
    }

    #[test]
    fn retries_consecutive_failures_make_unhealthy_and_one_success_heals() {
        let spec = probe_spec(&svc(json!({"tcp": 1, "retries": 3, "interval": "1s"}), &[]))
            .unwrap()
            .unwrap();
        let mut t = ProbeTracker::new(0);
        assert!(t.due(&spec, 0));
        assert_eq!(t.health(), Health::Starting);
        assert_eq!(t.record(&spec, Ok(()), 0), Transition::BecameHealthy);
        assert!(!t.due(&spec, 999));
        assert!(t.due(&spec, 1000));
        assert_eq!(
            t.record(&spec, Err("refused".into()), 1000),
            Transition::None
        );
        assert_eq!(
            t.record(&spec, Err("refused".into()), 2000),
            Transition::None
        );
        assert_eq!(t.health(), Health::Healthy);
        assert_eq!(
            t.record(&spec, Err("refused".into()), 3000),
            Transition::BecameUnhealthy("refused".into())
        );
        assert_eq!(t.health(), Health::Unhealthy);
        assert_eq!(
            t.record(&spec, Err("refused".into()), 4000),
            Transition::None
        );
        assert_eq!(t.record(&spec, Ok(()), 5000), Transition::BecameHealthy);
        assert_eq!(t.health(), Health::Healthy);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let spec = probe_spec(&svc(
            json!({"tcp": 1, "retries": 1, "start_period": "10s"}),
            &[],
        ))
        .unwrap()
        .unwrap();
        let mut t = ProbeTracker::new(1000);
        assert_eq!(t.record(&spec, Err("x".into()), 5000), Transition::None);
        assert_eq!(t.health(), Health::Starting);
        assert_eq!(
            t.record(&spec, Err("x".into()), 11_000),
            Transition::BecameUnhealthy("x".into())
        );
    }

    #[test]
    fn combined_health_is_unhealthy_if_either_says_so() {
        use Health::*;
        assert_eq!(combine(None, Healthy), Healthy);
        assert_eq!(combine(Healthy, Healthy), Healthy);
        assert_eq!(combine(Starting, Healthy), Starting);
        assert_eq!(combine(Healthy, Starting), Starting);
        assert_eq!(combine(Unhealthy, Healthy), Unhealthy);
        assert_eq!(combine(Healthy, Unhealthy), Unhealthy);
    }
}
