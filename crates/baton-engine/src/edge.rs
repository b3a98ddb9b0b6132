//! The edge, as the engine sees it: the settings (`x-baton.edge`, each service's
//! `x-baton.routes` and `x-baton.tls`) typed and checked, the host-wide table all projects
//! make together, and when a certificate is due for renewal. Pure: no I/O, no clock.
//!
//! ```yaml
//! x-baton:
//!   edge:
//!     listen: {http: 80, https: 443, address: 0.0.0.0}   # the defaults
//!     acme: {directory: https://acme.example/dir, email: ops@example.com,
//!            ca: ./acme-ca.pem, challenge: http-01}      # for this project's `tls: acme`
//! services:
//!   web:
//!     expose: ["8080"]
//!     x-baton:
//!       routes:
//!         - {host: shop.example.com, path: /, port: 8080, hsts: true}
//!         - {host: shop.example.com, path: /admin, client_ca: ./admins.pem}
//!         - {host: www.shop.example.com, redirect: https://shop.example.com}
//!       tls: acme            # or {cert: ./tls/shop.pem, key: ./tls/shop.key}
//! ```
//!
//! `spec` reads and checks one file's settings (located by `check`), `table` puts every
//! active project's routes into one table (a host and path two projects claim is a refusal
//! naming both, and the refused project keeps what it had), `renew` says when a
//! certificate is renewed (at two thirds of its lifetime) and how failures back off.

pub mod renew;
pub mod spec;
pub mod table;

pub use renew::{renewal, retry_delay_ms, Renewal};
pub use spec::{
    edge_settings, service_routes, AcmeChallenge, AcmeSettings, EdgeSettings, EdgeSpecError,
    Listen, Route, RouteTo, ServiceRoutes, Tls, DEFAULT_HSTS_MAX_AGE,
};
pub use table::{project_edge, table, Accepted, ProjectEdge, Refusal, Table, TableRoute, TableTls};
