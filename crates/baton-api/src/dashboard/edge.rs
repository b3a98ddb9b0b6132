//! The routes page (`/ui/routes`): what `baton routes` shows, from the daemon's live
//! edge status — where the edge listens, each host and path with its project, target and
//! TLS, each host's certificate with its state and expiry, and the projects refused.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use minijinja::context;

use super::pages::{respond, view, Q};
use super::{base, Session, D};
use crate::dashboard::pages::Result;

pub(crate) async fn routes(
    State(d): D,
    Extension(s): Extension<Session>,
    q: Q,
) -> Result<Response> {
    let q = view(q)?;
    let now = (d.api.clock)();
    let edge = d.api.daemon.status().edge;
    let rows = edge.as_ref().map(|e| e.rows(now)).unwrap_or_default();
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
    use baton_daemon::edge::{distance, EdgeStatus, RouteRow, RouteStatus};

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
        let rows = edge(now).rows(now as i64);
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
            rows => e.rows(now as i64),
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
