//! The edge in `baton serve`: one HTTP and one HTTPS listener for every active project,
//! routing hosts and paths to the services' pools (`traffic.rs`), with their certificates.
//!
//! Each tick reads every active project's routes, asks `baton_engine::edge::table` for
//! the host-wide table (a project that claims what another serves is refused, named in an
//! event with the other, and keeps its old routes), brings the listeners up or down, keeps
//! certificates (`certs.rs`) and client CAs current, and swaps the table in only when it
//! changed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use baton_engine::edge::{project_edge, table, Accepted, Listen, RouteTo, TableRoute, TableTls};
use baton_proxy::edge::{ClientCa, Edge as Listener, EdgeConfig, Route, Target};
use baton_proxy::BackendPool;
use baton_spec::Project;
use baton_state::Store;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::certs::{CertStatus, Certs, Wanted};
use crate::traffic::Traffic;

/// What `baton routes` shows: where the edge listens, each route and its certificate,
/// and the projects whose routes were refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct EdgeStatus {
    /// `None` while no route asks for the edge (or its ports cannot be bound).
    pub http: Option<String>,
    pub https: Option<String>,
    pub routes: Vec<RouteStatus>,
    pub certificates: Vec<CertStatus>,
    pub refused: Vec<String>,
    /// Why the listeners are down, when they should be up.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RouteStatus {
    pub project: String,
    pub service: String,
    pub host: String,
    pub path: String,
    /// `web:8080`, or `redirect https://…`.
    pub target: String,
    /// `acme`, `files` or `none`.
    pub tls: String,
    pub hsts_max_age: Option<u64>,
    pub client_ca: Option<String>,
    /// Whether the edge routes it now (a route whose service has no pool yet waits).
    pub serving: bool,
}

/// One route as `baton routes` and the dashboard show it, with its host's certificate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteRow {
    pub host: String,
    pub path: String,
    pub project: String,
    pub service: String,
    pub target: String,
    pub tls: String,
    pub client_ca: bool,
    pub hsts_max_age: Option<u64>,
    pub serving: bool,
    /// The certificate's state (`valid`, `renewal due`, `expired`, `pending`, `failed`),
    /// `None` for a route without TLS.
    pub cert_state: Option<String>,
    pub cert_source: Option<String>,
    pub cert_issuer: Option<String>,
    pub not_after_ms: Option<u64>,
    /// `in 89 d`, `in 5 h`, `2 d ago`.
    pub expires: Option<String>,
    pub cert_error: Option<String>,
}

/// How far `at` is from `now`, both Unix ms: `in 89 d`, `in 3 h`, `in 12 min`, `5 d ago`.
pub fn distance(at: i64, now: i64) -> String {
    let secs = (at - now).abs() / 1000;
    let amount = match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    };
    if at >= now {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

impl EdgeStatus {
    /// The routes in the order `baton routes` lists them (host, then path), each with
    /// the certificate of its host; `now` in Unix ms says when each expires.
    pub fn rows(&self, now: i64) -> Vec<RouteRow> {
        let edge = self;
        let mut out: Vec<RouteRow> = edge
            .routes
            .iter()
            .map(|r| {
                let cert = edge.certificates.iter().find(|c| c.host == r.host);
                RouteRow {
                    host: r.host.clone(),
                    path: r.path.clone(),
                    project: r.project.clone(),
                    service: r.service.clone(),
                    target: r.target.clone(),
                    tls: r.tls.clone(),
                    client_ca: r.client_ca.is_some(),
                    hsts_max_age: r.hsts_max_age,
                    serving: r.serving,
                    cert_state: cert.map(|c| c.state.clone()),
                    cert_source: cert.map(|c| c.source.clone()),
                    cert_issuer: cert.and_then(|c| c.issuer.clone()),
                    not_after_ms: cert.and_then(|c| c.not_after_ms),
                    expires: cert
                        .and_then(|c| c.not_after_ms)
                        .map(|t| distance(i64::try_from(t).unwrap_or(i64::MAX), now)),
                    cert_error: cert.and_then(|c| c.error.clone()),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.host, &a.path).cmp(&(&b.host, &b.path)));
        out
    }
}

/// A client CA file as last read.
struct CaFile {
    stamp: Option<(std::time::SystemTime, u64)>,
    ca: Option<ClientCa>,
    error: Option<String>,
}

/// The daemon's edge.
pub struct Edge {
    listener: Option<(Listen, Listener)>,
    accepted: Accepted,
    certs: Certs,
    cas: BTreeMap<PathBuf, CaFile>,
    /// The route table and certificates last given to the listener.
    served_routes: Vec<(String, Option<BackendPool>)>,
    served_certs: Vec<(String, Vec<u8>)>,
    /// Refusals already recorded as events (again once they were fixed and recur).
    reported: BTreeSet<String>,
    bind_error: Option<String>,
    status: EdgeStatus,
}

fn log(line: &str) {
    tracing::info!("{line}");
}

impl Edge {
    /// `dir` is `<state dir>/edge`, where ACME accounts and certificates are kept.
    pub fn new(dir: PathBuf) -> Edge {
        Edge {
            listener: None,
            accepted: Accepted::default(),
            certs: Certs::new(dir),
            cas: BTreeMap::new(),
            served_routes: Vec::new(),
            served_certs: Vec::new(),
            reported: BTreeSet::new(),
            bind_error: None,
            status: EdgeStatus::default(),
        }
    }

    /// What the local API shows; `None` when no project has routes.
    pub fn status(&self) -> Option<EdgeStatus> {
        if self.accepted.routes.is_empty() && self.listener.is_none() {
            return None;
        }
        Some(self.status.clone())
    }

    /// One look: the table of every active project's routes, the listeners, the
    /// certificates, then the routes swapped in if they changed.
    pub async fn tick(&mut self, store: &Store, projects: &[Project], traffic: &Traffic, now: u64) {
        let mut edges = Vec::new();
        let mut refused = Vec::new();
        for p in projects {
            match project_edge(p) {
                Ok(Some(e)) => edges.push(e),
                Ok(None) => {}
                Err(e) => refused.push((
                    p.name.clone(),
                    format!(
                        "project {}: {}: {}; its edge settings are ignored",
                        p.name, e.path, e.message
                    ),
                )),
            }
        }
        let t = table(&edges, &self.accepted);
        refused.extend(t.refused.into_iter().map(|r| (r.project, r.message)));
        let messages: BTreeSet<String> = refused.iter().map(|(_, m)| m.clone()).collect();
        for (project, message) in &refused {
            if !self.reported.contains(message) {
                log(&format!("edge: {message}"));
                let _ = store.event(project, "edge", "routes", message, now as i64);
            }
        }
        self.reported = messages;
        self.accepted = t.accepted;

        self.ensure_listener(store, projects, now).await;
        let listener = self.listener.as_ref().map(|(_, l)| l.clone());

        // Certificates: one per host that asks for TLS.
        let mut wanted: Vec<Wanted> = Vec::new();
        for r in self.accepted.all() {
            if let Some(source) = &r.tls {
                if !wanted.iter().any(|w| w.host == r.route.host) {
                    wanted.push(Wanted {
                        host: r.route.host.clone(),
                        project: r.project.clone(),
                        setting: format!("services.{}.x-baton.tls", r.service),
                        source: source.clone(),
                    });
                }
            }
        }
        let served = self.certs.tick(&wanted, listener.as_ref(), store, now);
        let with_cert: BTreeSet<String> = served.iter().map(|(h, _)| h.clone()).collect();
        let cert_key: Vec<(String, Vec<u8>)> = served
            .iter()
            .map(|(h, c)| (h.clone(), c.end_entity().to_vec()))
            .collect();
        if let Some(l) = &listener {
            if cert_key != self.served_certs {
                l.set_certificates(served.clone());
                self.served_certs = cert_key;
            }
        }

        // Routes, and the client CAs they name.
        let mut routes = Vec::new();
        let mut keys = Vec::new();
        let mut statuses = Vec::new();
        let all: Vec<TableRoute> = self.accepted.all().cloned().collect();
        for r in &all {
            let (target, pool, target_text) = match &r.route.to {
                RouteTo::Port(port) => {
                    let pool = traffic.pool(&r.project, &r.service, *port);
                    (
                        pool.clone().map(Target::Pool),
                        pool,
                        format!("{}:{port}", r.service),
                    )
                }
                RouteTo::Redirect(to) => (
                    Some(Target::Redirect(to.clone())),
                    None,
                    format!("redirect {to}"),
                ),
            };
            let client_ca = match &r.client_ca {
                Some(path) => match self.client_ca(path, store, &r.project, &r.setting(), now) {
                    Some(ca) => Some(ca),
                    // A route that asks for client certificates is never served without.
                    None => {
                        statuses.push(route_status(r, target_text, false));
                        continue;
                    }
                },
                None => None,
            };
            let Some(target) = target else {
                statuses.push(route_status(r, target_text, false));
                continue;
            };
            let tls = r.tls.is_some() && with_cert.contains(&r.route.host);
            keys.push((
                format!(
                    "{} {} {target_text} {tls} {} {:?} {:?}",
                    r.route.host,
                    r.route.path,
                    r.route.https_redirect,
                    r.route.hsts_max_age,
                    r.client_ca
                        .as_ref()
                        .and_then(|p| self.cas.get(p))
                        .and_then(|c| c.stamp)
                ),
                pool,
            ));
            routes.push(Route {
                host: r.route.host.clone(),
                path: r.route.path.clone(),
                target,
                tls,
                https_redirect: r.route.https_redirect,
                hsts_max_age: r.route.hsts_max_age,
                client_ca,
            });
            statuses.push(route_status(r, target_text, true));
        }
        let changed = keys.len() != self.served_routes.len()
            || keys.iter().zip(&self.served_routes).any(|(a, b)| {
                a.0 != b.0
                    || match (&a.1, &b.1) {
                        (Some(x), Some(y)) => !x.same(y),
                        (None, None) => false,
                        _ => true,
                    }
            });
        if let Some(l) = &listener {
            if changed {
                match l.set_routes(routes) {
                    Ok(()) => {
                        log(&format!("edge: {} route(s)", keys.len()));
                        self.served_routes = keys;
                    }
                    Err(e) => log(&format!("edge: routes refused: {e}")),
                }
            }
        }
        self.status = EdgeStatus {
            http: listener
                .as_ref()
                .and_then(|l| l.http_addr())
                .map(|a| a.to_string()),
            https: listener
                .as_ref()
                .and_then(|l| l.https_addr())
                .map(|a| a.to_string()),
            routes: statuses,
            certificates: self.certs.status(),
            refused: refused.into_iter().map(|(_, m)| m).collect(),
            error: self.bind_error.clone(),
        };
    }

    /// Binds the listeners the table asks for (again when the ports changed), or closes
    /// them when no route is left.
    async fn ensure_listener(&mut self, store: &Store, projects: &[Project], now: u64) {
        let wanted = (!self.accepted.routes.is_empty()).then(|| self.accepted.listen.clone());
        if self.listener.as_ref().map(|(l, _)| l) == wanted.as_ref() {
            return;
        }
        if let Some((listen, old)) = self.listener.take() {
            log(&format!(
                "edge: closing {}:{}/{}",
                listen.address, listen.http, listen.https
            ));
            old.shutdown().await;
            self.served_routes.clear();
            self.served_certs.clear();
        }
        let Some(listen) = wanted else {
            self.bind_error = None;
            return;
        };
        let ip: IpAddr = listen
            .address
            .parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let config = EdgeConfig::new(
            SocketAddr::new(ip, listen.http),
            SocketAddr::new(ip, listen.https),
        );
        match Listener::bind(config).await {
            Ok(l) => {
                log(&format!(
                    "edge: listening on {ip}:{} (http) and {ip}:{} (https)",
                    listen.http, listen.https
                ));
                self.bind_error = None;
                self.listener = Some((listen, l));
            }
            Err(e) => {
                let message = format!("the edge cannot listen: {e}");
                if self.bind_error.as_deref() != Some(message.as_str()) {
                    log(&format!("edge: {message}"));
                    for p in projects
                        .iter()
                        .filter(|p| self.accepted.routes.contains_key(&p.name))
                    {
                        let _ = store.event(&p.name, "edge", "listen", &message, now as i64);
                    }
                }
                self.bind_error = Some(message);
            }
        }
    }

    /// The client CA at `path`, read again when it changed; the last good one when it
    /// no longer reads (the event says why), `None` when it never did.
    fn client_ca(
        &mut self,
        path: &Path,
        store: &Store,
        project: &str,
        setting: &str,
        now: u64,
    ) -> Option<ClientCa> {
        let stamp = std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        let entry = self.cas.entry(path.to_path_buf()).or_insert(CaFile {
            stamp: None,
            ca: None,
            error: None,
        });
        if entry.stamp != stamp || (entry.ca.is_none() && entry.error.is_none()) {
            entry.stamp = stamp;
            let read = std::fs::read(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|pem| {
                    ClientCa::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
                });
            match read {
                Ok(ca) => {
                    entry.ca = Some(ca);
                    entry.error = None;
                }
                Err(e) => {
                    let message = format!(
                        "{setting}.client_ca: {e}; {}",
                        if entry.ca.is_some() {
                            "the previous CA stays in use"
                        } else {
                            "the route is not served until it reads"
                        }
                    );
                    if entry.error.as_deref() != Some(message.as_str()) {
                        log(&format!("edge: {project}: {message}"));
                        let _ = store.event(project, "edge", "client_ca", &message, now as i64);
                    }
                    entry.error = Some(message);
                }
            }
        }
        entry.ca.clone()
    }

    /// Closes the listeners (the pools are the traffic's).
    pub async fn shutdown(mut self) {
        if let Some((_, l)) = self.listener.take() {
            l.shutdown().await;
        }
    }
}

fn route_status(r: &TableRoute, target: String, serving: bool) -> RouteStatus {
    RouteStatus {
        project: r.project.clone(),
        service: r.service.clone(),
        host: r.route.host.clone(),
        path: r.route.path.clone(),
        target,
        tls: match &r.tls {
            None => "none".into(),
            Some(TableTls::Acme(_)) => "acme".into(),
            Some(TableTls::Files { .. }) => "files".into(),
        },
        hsts_max_age: r.route.hsts_max_age,
        client_ca: r.client_ca.as_ref().map(|p| p.display().to_string()),
        serving,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    }

    fn project(name: &str, dir: &Path, listen: (u16, u16), web: serde_json::Value) -> Project {
        serde_json::from_value(json!({
            "name": name,
            "working_dir": dir,
            "services": {"web": {"image": "x", "expose": ["80"], "baton": web}},
            "baton": {"edge": {"listen": {"http": listen.0, "https": listen.1, "address": "127.0.0.1"}}},
        }))
        .unwrap()
    }

    fn events(store: &Store, project: &str) -> Vec<String> {
        store
            .events(project, 100)
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}: {}", e.kind, e.subject, e.message))
            .collect()
    }

    fn self_signed(dir: &Path, name: &str, host: &str) {
        let c = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), c.cert.pem()).unwrap();
        std::fs::write(
            dir.join(format!("{name}.key")),
            c.signing_key.serialize_pem(),
        )
        .unwrap();
    }

    #[tokio::test]
    async fn a_host_claimed_twice_is_refused_naming_both_and_the_edge_keeps_serving() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("state")).unwrap();
        let listen = (free_port(), free_port());
        let traffic = Traffic::default();
        let mut edge = Edge::new(tmp.path().join("state/edge"));
        let a = project(
            "a",
            tmp.path(),
            listen,
            json!({"routes": [{"host": "shop.test"}]}),
        );
        edge.tick(&store, std::slice::from_ref(&a), &traffic, 1)
            .await;
        let status = edge.status().unwrap();
        assert_eq!(status.http, Some(format!("127.0.0.1:{}", listen.0)));
        assert_eq!(status.routes.len(), 1);
        // b claims what a serves: refused, with both names; a's route stays.
        let b = project(
            "b",
            tmp.path(),
            listen,
            json!({"routes": [{"host": "blog.test"}, {"host": "shop.test"}]}),
        );
        edge.tick(&store, &[a.clone(), b.clone()], &traffic, 2)
            .await;
        let status = edge.status().unwrap();
        let hosts: Vec<String> = status
            .routes
            .iter()
            .map(|r| format!("{} {}", r.project, r.host))
            .collect();
        assert_eq!(hosts, ["a shop.test"]);
        let refusal = "edge routes: project b: services.web.x-baton.routes[1].host: shop.test/ is already routed by project a (services.web.x-baton.routes[0]); project b cannot claim it too; the edge keeps serving what it served for b before";
        assert_eq!(events(&store, "b"), [refusal]);
        // Said once, not every tick.
        edge.tick(&store, &[a.clone(), b], &traffic, 3).await;
        assert_eq!(events(&store, "b").len(), 1);
        // Fixed: b's other host is taken in.
        let b = project(
            "b",
            tmp.path(),
            listen,
            json!({"routes": [{"host": "blog.test"}]}),
        );
        edge.tick(&store, &[a, b], &traffic, 4).await;
        assert_eq!(edge.status().unwrap().routes.len(), 2);
        assert!(edge.status().unwrap().refused.is_empty());
        edge.shutdown().await;
    }

    #[tokio::test]
    async fn certificate_files_reload_and_a_bad_pair_leaves_the_previous_one_serving() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("state")).unwrap();
        let traffic = Traffic::default();
        let mut edge = Edge::new(tmp.path().join("state/edge"));
        let dir = tmp.path();
        self_signed(dir, "one", "shop.test");
        self_signed(dir, "two", "shop.test");
        let a = project(
            "a",
            dir,
            (free_port(), free_port()),
            json!({"routes": [{"host": "shop.test"}], "tls": {"cert": "cert.pem", "key": "cert.key"}}),
        );
        // The key is not there yet: nothing served, and said.
        std::fs::copy(dir.join("one.pem"), dir.join("cert.pem")).unwrap();
        let old = 10_000_000;
        edge.tick(&store, std::slice::from_ref(&a), &traffic, old)
            .await;
        let served = |edge: &Edge| {
            edge.listener
                .as_ref()
                .and_then(|(_, l)| l.certificate("shop.test"))
                .map(|c| c.end_entity().to_vec())
        };
        assert_eq!(served(&edge), None);
        let e = events(&store, "a");
        assert!(
            e[0].starts_with("certificate shop.test: services.web.x-baton.tls.key: cannot read ")
                && e[0].ends_with("cert.key: No such file or directory (os error 2); no certificate is served for it"),
            "{e:?}"
        );
        std::fs::copy(dir.join("one.key"), dir.join("cert.key")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        edge.tick(&store, std::slice::from_ref(&a), &traffic, now)
            .await;
        let first = served(&edge).expect("served");
        // A key that does not match: the first pair keeps serving, once the rotation
        // had time to settle.
        std::fs::copy(dir.join("two.key"), dir.join("cert.key")).unwrap();
        edge.tick(&store, std::slice::from_ref(&a), &traffic, now + 10_000)
            .await;
        assert_eq!(served(&edge), Some(first.clone()));
        let e = events(&store, "a");
        assert!(
            e.last().unwrap().contains("services.web.x-baton.tls.key: ")
                && e.last()
                    .unwrap()
                    .contains("the private key does not match the certificate in ")
                && e.last()
                    .unwrap()
                    .ends_with("; the previous certificate keeps serving"),
            "{e:?}"
        );
        // The matching pair: reloaded.
        std::fs::copy(dir.join("two.pem"), dir.join("cert.pem")).unwrap();
        edge.tick(&store, std::slice::from_ref(&a), &traffic, now + 20_000)
            .await;
        assert_ne!(served(&edge), Some(first));
        assert!(events(&store, "a")
            .last()
            .unwrap()
            .contains(": reloaded from "));
        let status = edge.status().unwrap();
        assert_eq!(status.certificates[0].state, "valid");
        assert_eq!(status.certificates[0].error, None);
        edge.shutdown().await;
    }
}
