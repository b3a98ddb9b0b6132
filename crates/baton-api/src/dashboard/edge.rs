//! The routes page (`/ui/routes`): what `baton routes` shows, from the daemon's live
//! edge status — where the edge listens, each host and path with its project, target and
//! TLS, each host's certificate with its state and expiry, and the projects refused.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use baton_daemon::edge::EdgeStatus;
use minijinja::context;
use serde::Serialize;

use super::pages::{respond, view, Q};
use super::{base, Session, D};
use crate::dashboard::pages::Result;

/// One route as the page shows it, with its host's certificate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct RouteRow {
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
fn distance(at: i64, now: i64) -> String {
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

/// The routes in the order `baton routes` lists them (host, then path), each with the
/// certificate of its host.
pub(crate) fn rows(edge: &EdgeStatus, now: i64) -> Vec<RouteRow> {
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

pub(crate) async fn routes(
    State(d): D,
    Extension(s): Extension<Session>,
    q: Q,
) -> Result<Response> {
    let q = view(q)?;
    let now = (d.api.clock)();
    let edge = d.api.daemon.status().edge;
    let rows = edge.as_ref().map(|e| rows(e, now)).unwrap_or_default();
    let ctx = context! {
        edge => edge,
        rows => rows,
        ..base(&s, now, "routes", "Routes", "/ui/live")
    };
    respond("routes.html", &["live"], q.fragment.as_deref(), &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_daemon::certs::CertStatus;
    use baton_daemon::edge::RouteStatus;

    const DAY: u64 = 86_400_000;

    fn route(host: &str, path: &str, project: &str, tls: &str) -> RouteStatus {
        RouteStatus {
            project: project.into(),
            service: "web".into(),
            host: host.into(),
            path: path.into(),
            target: "web:8080".into(),
            tls: tls.into(),
            hsts_max_age: None,
            client_ca: None,
            serving: true,
        }
    }

    fn edge(now: u64) -> EdgeStatus {
        EdgeStatus {
            http: Some("0.0.0.0:80".into()),
            https: Some("0.0.0.0:443".into()),
            routes: vec![
                route("shop.test", "/api", "shop", "acme"),
                route("blog.test", "/", "blog", "none"),
                route("shop.test", "/", "shop", "acme"),
            ],
            certificates: vec![CertStatus {
                host: "shop.test".into(),
                source: "acme https://pebble:14000/dir".into(),
                state: "renewal due".into(),
                not_before_ms: Some(now - 60 * DAY),
                not_after_ms: Some(now + 29 * DAY + 3_600_000),
                issuer: Some("CN=Pebble Intermediate".into()),
                error: Some("renewal failed: connection refused".into()),
            }],
            refused: vec!["other: claims shop.test/ which shop serves".into()],
            error: None,
        }
    }

    #[test]
    fn each_route_carries_its_hosts_certificate_and_when_it_expires() {
        let now = 1_800_000_000_000u64;
        let rows = rows(&edge(now), now as i64);
        let order: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.host.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("blog.test", "/"),
                ("shop.test", "/"),
                ("shop.test", "/api")
            ]
        );
        assert_eq!(rows[0].cert_state, None, "a plain route has no certificate");
        for r in &rows[1..] {
            assert_eq!(r.cert_state.as_deref(), Some("renewal due"));
            assert_eq!(r.expires.as_deref(), Some("in 29 d"));
            assert!(r.cert_error.as_deref().unwrap().contains("renewal failed"));
        }
        assert_eq!(distance(0, 5 * 86_400_000 + 10), "5 d ago");
        assert_eq!(distance(7_200_000, 0), "in 2 h");
    }

    #[test]
    fn the_page_shows_listeners_routes_certificates_and_refusals() {
        let now = 1_800_000_000_000u64;
        let e = edge(now);
        let ctx = context! {
            edge => Some(&e),
            rows => rows(&e, now as i64),
            me => context! { name => "viewer", role => "viewer", admin => false, can_act => false },
            csrf => "x",
            v => "1",
            now => now,
            nav => "routes",
            title => "Routes",
            live => "/ui/live",
        };
        let html = crate::dashboard::render::render("routes.html", None, &ctx).unwrap();
        for want in [
            "0.0.0.0:443",
            "shop.test",
            // minijinja's HTML escaping writes `/` as `&#x2f;`.
            "&#x2f;api",
            "web:8080",
            "renewal due",
            "in 29 d",
            "CN=Pebble Intermediate",
            "renewal failed: connection refused",
            "other: claims shop.test&#x2f; which shop serves",
        ] {
            assert!(
                html.contains(want),
                "{want:?} missing from the page:\n{html}"
            );
        }
        let empty = context! {
            edge => None::<EdgeStatus>,
            rows => Vec::<RouteRow>::new(),
            me => context! { name => "viewer", role => "viewer", admin => false, can_act => false },
            csrf => "x",
            v => "1",
            now => now,
            nav => "routes",
            title => "Routes",
            live => "/ui/live",
        };
        let html = crate::dashboard::render::render("routes.html", None, &empty).unwrap();
        assert!(html.contains("No project has routes"), "{html}");
    }
}
