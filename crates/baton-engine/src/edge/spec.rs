//! `x-baton.edge`, `x-baton.routes` and `x-baton.tls` read into types, with errors that
//! name the setting at fault (`x-baton.routes[1].port: …`) for `check` to locate.
//!
//! What one file can get wrong is caught here: an unknown key, a host that is no DNS
//! name, a path without `/`, a port the service does not expose, a host and path routed
//! twice, ACME for a wildcard or without `x-baton.edge.acme`. What only the daemon can see
//! (another project's routes, the certificate files) is checked where it is known.

use std::collections::BTreeSet;

use baton_spec::{Project, Service};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::rollout::spec::{did_you_mean, duration_ms, found};

/// `hsts: true`: one year, as browsers' preload lists ask.
pub const DEFAULT_HSTS_MAX_AGE: u64 = 31_536_000;

/// The host-wide listeners (`x-baton.edge.listen`); every project that names them must
/// agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listen {
    pub http: u16,
    pub https: u16,
    /// The address both listen on (`0.0.0.0` by default).
    pub address: String,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            http: 80,
            https: 443,
            address: "0.0.0.0".into(),
        }
    }
}

/// A project's `x-baton.edge`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeSettings {
    /// `None`: whatever the edge listens on (another project's, or the defaults).
    pub listen: Option<Listen>,
    /// Where this project's `tls: acme` certificates come from.
    pub acme: Option<AcmeSettings>,
}

/// An ACME (RFC 8555) certificate authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeSettings {
    /// The directory URL (`https://acme-v02.api.letsencrypt.org/directory`).
    pub directory: String,
    pub email: Option<String>,
    /// A PEM file of the CA certificate(s) the directory's own HTTPS is trusted by,
    /// instead of the system's roots (a private or test CA such as Pebble); relative to
    /// the project directory.
    pub ca: Option<String>,
    pub challenge: AcmeChallenge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcmeChallenge {
    /// On the edge's HTTP port (`/.well-known/acme-challenge/`).
    Http01,
    /// On the edge's HTTPS port (ALPN `acme-tls/1`).
    TlsAlpn01,
}

/// One of a service's `x-baton.routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Lower case, no trailing dot; a DNS name or `*.` and one.
    pub host: String,
    /// A prefix starting with `/` (`/` by default).
    pub path: String,
    pub to: RouteTo,
    /// Plain-HTTP requests for a TLS host are redirected to HTTPS (default `true`).
    pub https_redirect: bool,
    /// `hsts: true | DURATION`: the `max-age` of `Strict-Transport-Security`, in seconds.
    pub hsts_max_age: Option<u64>,
    /// A PEM file of CA certificates; requests then need a client certificate it signed.
    pub client_ca: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteTo {
    /// The container port requests go to.
    Port(u16),
    /// A 308 to this URL, the request's path and query appended.
    Redirect(String),
}

/// A service's `x-baton.tls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tls {
    /// Issued and renewed through the project's `x-baton.edge.acme`.
    Acme,
    /// PEM files, relative to the project directory; reloaded when they change.
    Files { cert: String, key: String },
}

/// A service's routes and TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRoutes {
    pub routes: Vec<Route>,
    pub tls: Option<Tls>,
}

/// A setting that is wrong: `path` names it from the file's root for project settings
/// (`edge.listen.http`) and from the service for service settings (`x-baton.routes[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSpecError {
    pub path: String,
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> EdgeSpecError {
    EdgeSpecError {
        path: path.to_string(),
        message: message.into(),
    }
}

fn map<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, EdgeSpecError> {
    v.as_object()
        .ok_or_else(|| err(path, format!("expected a mapping, found {}", found(v))))
}

fn known_keys(m: &Map<String, Value>, path: &str, known: &[&str]) -> Result<(), EdgeSpecError> {
    for key in m.keys() {
        if !known.contains(&key.as_str()) {
            return Err(err(
                &format!("{path}.{key}"),
                format!(
                    "unknown setting{} (known: {})",
                    did_you_mean(key, known),
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn string(v: &Value, path: &str) -> Result<String, EdgeSpecError> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(err(path, format!("expected a string, found {}", found(v)))),
    }
}

fn port(v: &Value, path: &str) -> Result<u16, EdgeSpecError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(err(
            path,
            format!("expected a port from 1 to 65535, found {}", found(v)),
        )),
    }
}

fn boolean(v: &Value, path: &str) -> Result<bool, EdgeSpecError> {
    v.as_bool()
        .ok_or_else(|| err(path, format!("expected true or false, found {}", found(v))))
}

/// Reads the project's `x-baton.edge`; `None` when it has none.
pub fn edge_settings(project: &Project) -> Result<Option<EdgeSettings>, EdgeSpecError> {
    let Some(v) = project.baton.get("edge") else {
        return Ok(None);
    };
    let m = map(v, "edge")?;
    known_keys(m, "edge", &["listen", "acme"])?;
    let mut out = EdgeSettings::default();
    if let Some(l) = m.get("listen") {
        let lm = map(l, "edge.listen")?;
        known_keys(lm, "edge.listen", &["http", "https", "address"])?;
        let mut listen = Listen::default();
        if let Some(v) = lm.get("http") {
            listen.http = port(v, "edge.listen.http")?;
        }
        if let Some(v) = lm.get("https") {
            listen.https = port(v, "edge.listen.https")?;
        }
        if let Some(v) = lm.get("address") {
            let a = string(v, "edge.listen.address")?;
            if a.parse::<std::net::IpAddr>().is_err() {
                return Err(err(
                    "edge.listen.address",
                    format!("expected an IP address such as 0.0.0.0 or ::, found {a:?}"),
                ));
            }
            listen.address = a;
        }
        if listen.http == listen.https {
            return Err(err(
                "edge.listen.https",
                format!(
                    "the HTTP and HTTPS listeners cannot share port {}",
                    listen.http
                ),
            ));
        }
        out.listen = Some(listen);
    }
    if let Some(a) = m.get("acme") {
        let am = map(a, "edge.acme")?;
        known_keys(am, "edge.acme", &["directory", "email", "ca", "challenge"])?;
        let directory = match am.get("directory") {
            Some(v) => string(v, "edge.acme.directory")?,
            None => {
                return Err(err(
                    "edge.acme.directory",
                    "required: the ACME directory URL (https://acme-v02.api.letsencrypt.org/directory for Let's Encrypt)",
                ))
            }
        };
        if !directory.starts_with("https://") {
            return Err(err(
                "edge.acme.directory",
                format!("expected an https:// URL, found {directory:?}"),
            ));
        }
        let email = am
            .get("email")
            .map(|v| string(v, "edge.acme.email"))
            .transpose()?;
        if let Some(e) = &email {
            if !e.contains('@') || e.contains(char::is_whitespace) {
                return Err(err(
                    "edge.acme.email",
                    format!("expected an email address, found {e:?}"),
                ));
            }
        }
        let ca = am
            .get("ca")
            .map(|v| string(v, "edge.acme.ca"))
            .transpose()?;
        let challenge = match am.get("challenge") {
            None => AcmeChallenge::Http01,
            Some(v) => match v.as_str() {
                Some("http-01") => AcmeChallenge::Http01,
                Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
                _ => {
                    return Err(err(
                        "edge.acme.challenge",
                        format!("expected http-01 or tls-alpn-01, found {}", found(v)),
                    ))
                }
            },
        };
        out.acme = Some(AcmeSettings {
            directory,
            email,
            ca,
            challenge,
        });
    }
    Ok(Some(out))
}

/// Reads a service's `x-baton.routes` and `x-baton.tls`; `None` when it has neither.
/// Checks each route against the service (its port is one the service exposes) and the
/// routes against each other (no host and path twice).
pub fn service_routes(service: &Service) -> Result<Option<ServiceRoutes>, EdgeSpecError> {
    let Some(Value::Object(b)) = &service.baton else {
        return Ok(None);
    };
    let (routes_v, tls_v) = (b.get("routes"), b.get("tls"));
    if routes_v.is_none() && tls_v.is_none() {
        return Ok(None);
    }
    let ports = exposed(service);
    let mut routes = Vec::new();
    if let Some(v) = routes_v {
        let Some(items) = v.as_array() else {
            return Err(err(
                "x-baton.routes",
                format!("expected a list of routes, found {}", found(v)),
            ));
        };
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("x-baton.routes[{i}]");
            let r = route(item, &path, &ports)?;
            if !seen.insert((r.host.clone(), r.path.clone())) {
                return Err(err(
                    &format!("{path}.host"),
                    format!("{}{} is routed twice in this service", r.host, r.path),
                ));
            }
            routes.push(r);
        }
    }
    let tls = match tls_v {
        None => None,
        Some(Value::String(s)) if s == "acme" => Some(Tls::Acme),
        Some(Value::Object(m)) => {
            known_keys(m, "x-baton.tls", &["cert", "key"])?;
            let file = |k: &str| match m.get(k) {
                Some(v) => string(v, &format!("x-baton.tls.{k}")),
                None => Err(err(
                    &format!("x-baton.tls.{k}"),
                    format!("required: the PEM file of the {k} (or `tls: acme`)"),
                )),
            };
            Some(Tls::Files {
                cert: file("cert")?,
                key: file("key")?,
            })
        }
        Some(other) => {
            return Err(err(
                "x-baton.tls",
                format!(
                    "expected acme or {{cert: FILE, key: FILE}}, found {}",
                    found(other)
                ),
            ))
        }
    };
    if tls == Some(Tls::Acme) {
        if let Some((i, r)) = routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.host.starts_with("*."))
        {
            return Err(err(
                &format!("x-baton.routes[{i}].host"),
                format!("ACME certificates for a wildcard ({}) need the DNS-01 challenge, which baton does not answer: give `tls: {{cert, key}}` for it", r.host),
            ));
        }
    }
    for (i, r) in routes.iter().enumerate() {
        if r.client_ca.is_some() && tls.is_none() {
            return Err(err(
                &format!("x-baton.routes[{i}].client_ca"),
                "client certificates need TLS: add `x-baton.tls`",
            ));
        }
    }
    Ok(Some(ServiceRoutes { routes, tls }))
}

/// The TCP ports a service's containers listen on, as the file says: `ports` targets and
/// `expose` entries (ranges expanded, up to a bound).
fn exposed(service: &Service) -> Vec<u16> {
    let mut out: Vec<u16> = service
        .ports
        .iter()
        .filter(|p| p.protocol == "tcp")
        .map(|p| p.target)
        .collect();
    for e in &service.expose {
        let (spec, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
        if proto != "tcp" {
            continue;
        }
        let (lo, hi) = spec.split_once('-').unwrap_or((spec, spec));
        if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
            out.extend((lo..=hi.min(lo.saturating_add(1024))).take(1025));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn route(v: &Value, path: &str, ports: &[u16]) -> Result<Route, EdgeSpecError> {
    let m = map(v, path)?;
    known_keys(
        m,
        path,
        &[
            "host",
            "path",
            "port",
            "redirect",
            "hsts",
            "https_redirect",
            "client_ca",
        ],
    )?;
    let host =
        match m.get("host") {
            Some(v) => string(v, &format!("{path}.host"))?,
            None => return Err(err(
                &format!("{path}.host"),
                "required: the host name this route answers (shop.example.com or *.example.com)",
            )),
        };
    let host = host.strip_suffix('.').unwrap_or(&host).to_ascii_lowercase();
    check_host(&host).map_err(|why| err(&format!("{path}.host"), format!("{host:?}: {why}")))?;
    let prefix = match m.get("path") {
        None => "/".to_string(),
        Some(v) => string(v, &format!("{path}.path"))?,
    };
    if !prefix.starts_with('/') || prefix.contains(['?', '#', ' ']) {
        return Err(err(
            &format!("{path}.path"),
            format!("expected a path prefix such as / or /api, found {prefix:?}"),
        ));
    }
    let to = match (m.get("port"), m.get("redirect")) {
        (Some(_), Some(_)) => {
            return Err(err(
                &format!("{path}.redirect"),
                "a route either goes to a port or redirects, not both",
            ))
        }
        (None, Some(v)) => {
            let to = string(v, &format!("{path}.redirect"))?;
            if !(to.starts_with("https://") || to.starts_with("http://")) || to.len() < 9 {
                return Err(err(
                    &format!("{path}.redirect"),
                    format!("expected an http:// or https:// URL, found {to:?}"),
                ));
            }
            RouteTo::Redirect(to)
        }
        (Some(v), None) => {
            let p = port(v, &format!("{path}.port"))?;
            if !ports.contains(&p) {
                return Err(err(
                    &format!("{path}.port"),
                    format!(
                        "{p} is not a port the service exposes ({}); a route goes to a container port listed in `ports` or `expose`",
                        list(ports)
                    ),
                ));
            }
            RouteTo::Port(p)
        }
        (None, None) => match ports {
            [only] => RouteTo::Port(*only),
            [] => return Err(err(
                &format!("{path}.port"),
                "required: the service exposes no port (add `expose: [\"8080\"]` or a `port` here)",
            )),
            many => {
                return Err(err(
                    &format!("{path}.port"),
                    format!("required: the service exposes {}", list(many)),
                ))
            }
        },
    };
    let https_redirect = m
        .get("https_redirect")
        .map(|v| boolean(v, &format!("{path}.https_redirect")))
        .transpose()?
        .unwrap_or(true);
    let hsts_max_age = match m.get("hsts") {
        None | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(DEFAULT_HSTS_MAX_AGE),
        Some(v) => match duration_ms(v) {
            Some(ms) if ms >= 1000 => Some(ms / 1000),
            _ => {
                return Err(err(
                    &format!("{path}.hsts"),
                    format!(
                        "expected true, false or a max-age such as 365d, found {}",
                        found(v)
                    ),
                ))
            }
        },
    };
    let client_ca = m
        .get("client_ca")
        .map(|v| string(v, &format!("{path}.client_ca")))
        .transpose()?;
    Ok(Route {
        host,
        path: prefix,
        to,
        https_redirect,
        hsts_max_age,
        client_ca,
    })
}

fn list(ports: &[u16]) -> String {
    match ports {
        [] => "it exposes none".into(),
        _ => {
            let all: Vec<String> = ports.iter().take(8).map(u16::to_string).collect();
            let more = if ports.len() > 8 { ", …" } else { "" };
            format!("{}{more}", all.join(", "))
        }
    }
}

/// Whether a lower-case host is a DNS name, or `*.` and one.
fn check_host(host: &str) -> Result<(), &'static str> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return Err("expected a host name such as shop.example.com");
    }
    if name.contains('*') {
        return Err("a wildcard is only allowed as the whole first label (*.example.com)");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("routes are by host name, not IP address");
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(
                "a host name has dot-separated labels of letters, digits and inner hyphens",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc(v: Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn routes(v: Value) -> Result<Option<ServiceRoutes>, String> {
        service_routes(&svc(v)).map_err(|e| format!("{}: {}", e.path, e.message))
    }

    #[test]
    fn routes_are_read_with_their_defaults() {
        let r = routes(json!({"expose": ["8080"], "baton": {
            "routes": [
                {"host": "Shop.Test.", "hsts": true},
                {"host": "shop.test", "path": "/admin", "port": 8080, "hsts": "30d", "https_redirect": false, "client_ca": "ca.pem"},
                {"host": "www.shop.test", "redirect": "https://shop.test"}
            ],
            "tls": {"cert": "a.pem", "key": "a.key"}
        }}))
        .unwrap()
        .unwrap();
        assert_eq!(
            r.routes[0],
            Route {
                host: "shop.test".into(),
                path: "/".into(),
                to: RouteTo::Port(8080),
                https_redirect: true,
                hsts_max_age: Some(DEFAULT_HSTS_MAX_AGE),
                client_ca: None,
            }
        );
        assert_eq!(r.routes[1].hsts_max_age, Some(30 * 86_400));
        assert!(!r.routes[1].https_redirect);
        assert_eq!(
            r.routes[2].to,
            RouteTo::Redirect("https://shop.test".into())
        );
        assert_eq!(
            r.tls,
            Some(Tls::Files {
                cert: "a.pem".into(),
                key: "a.key".into()
            })
        );
        assert_eq!(routes(json!({"image": "x"})).unwrap(), None);
    }

    #[test]
    fn bad_routes_name_the_setting() {
        let cases = [
            (
                json!({"expose": ["80"], "baton": {"routes": [{"host": "a.test", "port": 8081}]}}),
                "x-baton.routes[0].port: 8081 is not a port the service exposes (80); a route goes to a container port listed in `ports` or `expose`",
            ),
            (
                json!({"expose": ["80", "443"], "baton": {"routes": [{"host": "a.test"}]}}),
                "x-baton.routes[0].port: required: the service exposes 80, 443",
            ),
            (
                json!({"baton": {"routes": [{"host": "a.test"}]}}),
                "x-baton.routes[0].port: required: the service exposes no port (add `expose: [\"8080\"]` or a `port` here)",
            ),
            (
                json!({"expose": ["80"], "baton": {"routes": [{"host": "a.test"}, {"host": "A.test", "path": "/"}]}}),
                "x-baton.routes[1].host: a.test/ is routed twice in this service",
            ),
            (
                json!({"expose": ["80"], "baton": {"routes": [{"hots": "a.test"}]}}),
                "x-baton.routes[0].hots: unknown setting (did you mean \"host\"?) (known: host, path, port, redirect, hsts, https_redirect, client_ca)",
            ),
            (
                json!({"expose": ["80"], "baton": {"routes": [{"host": "a.*.test"}]}}),
                "x-baton.routes[0].host: \"a.*.test\": a wildcard is only allowed as the whole first label (*.example.com)",
            ),
            (
                json!({"expose": ["80"], "baton": {"routes": [{"host": "a.test", "path": "api"}]}}),
                "x-baton.routes[0].path: expected a path prefix such as / or /api, found \"api\"",
            ),
            (
                json!({"expose": ["80"], "baton": {"routes": [{"host": "*.a.test"}], "tls": "acme"}}),
                "x-baton.routes[0].host: ACME certificates for a wildcard (*.a.test) need the DNS-01 challenge, which baton does not answer: give `tls: {cert, key}` for it",
            ),
            (
                json!({"expose": ["80"], "baton": {"routes": [{"host": "a.test"}], "tls": {"cert": "a.pem"}}}),
                "x-baton.tls.key: required: the PEM file of the key (or `tls: acme`)",
            ),
            (
                json!({"expose": ["80"], "baton": {"routes": [{"host": "a.test", "client_ca": "ca.pem"}]}}),
                "x-baton.routes[0].client_ca: client certificates need TLS: add `x-baton.tls`",
            ),
            (
                json!({"expose": ["80"], "baton": {"routes": [{"host": "a.test", "redirect": "shop.test"}]}}),
                "x-baton.routes[0].redirect: expected an http:// or https:// URL, found \"shop.test\"",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(routes(input.clone()).unwrap_err(), want, "{input}");
        }
    }

    #[test]
    fn edge_settings_are_read_and_checked() {
        let project = |v: Value| Project {
            baton: [("edge".to_string(), v)].into_iter().collect(),
            ..Project::default()
        };
        let e = edge_settings(&project(json!({
            "listen": {"http": 8080, "https": "8443", "address": "127.0.0.1"},
            "acme": {"directory": "https://127.0.0.1:14000/dir", "email": "ops@shop.test", "ca": "pebble.pem"}
        })))
        .unwrap()
        .unwrap();
        assert_eq!(
            e.listen,
            Some(Listen {
                http: 8080,
                https: 8443,
                address: "127.0.0.1".into()
            })
        );
        let acme = e.acme.unwrap();
        assert_eq!(acme.challenge, AcmeChallenge::Http01);
        assert_eq!(acme.ca.as_deref(), Some("pebble.pem"));
        assert_eq!(edge_settings(&Project::default()).unwrap(), None);
        let bad = |v: Value| {
            let e = edge_settings(&project(v)).unwrap_err();
            format!("{}: {}", e.path, e.message)
        };
        assert_eq!(
            bad(json!({"listen": {"http": 0}})),
            "edge.listen.http: expected a port from 1 to 65535, found 0"
        );
        assert_eq!(
            bad(json!({"listen": {"http": 80, "https": 80}})),
            "edge.listen.https: the HTTP and HTTPS listeners cannot share port 80"
        );
        assert_eq!(
            bad(json!({"acme": {"directory": "http://x/dir"}})),
            "edge.acme.directory: expected an https:// URL, found \"http://x/dir\""
        );
        assert_eq!(
            bad(json!({"acme": {"directory": "https://x/dir", "challenge": "dns-01"}})),
            "edge.acme.challenge: expected http-01 or tls-alpn-01, found \"dns-01\""
        );
        assert_eq!(
            bad(json!({"lisen": {}})),
            "edge.lisen: unknown setting (did you mean \"listen\"?) (known: listen, acme)"
        );
    }
}
