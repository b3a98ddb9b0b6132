//! baton's HTTP API: JSON under `/api/v1` — every read and every change the `baton`
//! command offers — behind tokens with roles, a Server-Sent Events stream of everything
//! that happens, live logs, and an OpenAPI 3.1 document generated from the same table
//! that builds the router.
//!
//! Architecture invariant: the only crate that knows HTTP routes, tokens and sessions.
//! A handler turns its request into a `baton_control::Operation` (or a read) and turns
//! the answer into JSON; it decides nothing. Changes go through the control plane's
//! worker (`ControlHandle`), which audits them; reads use the API's own store connection
//! off the async threads. API boundary: [`Api::router`] is a plain axum `Router` that
//! `baton serve` mounts on a TCP listener through `baton-http` (limits, TLS, the
//! principal check) and on its Unix socket (owner only, no token); other routes
//! (`/metrics`, a dashboard) mount beside it, or inside its auth with [`Api::protect`].
//!
//! Why a route table with schemars rather than utoipa's annotations: one list
//! (`routes.rs`) builds both the router and the document, so a route cannot be served
//! undocumented, and the schemas come from the serde types the handlers really return
//! (JSON Schema 2020-12, which OpenAPI 3.1 uses as is) without a macro per handler
//! repeating each path.

mod cache;
pub mod dashboard;
mod error;
pub mod events;
pub mod input;
mod logs;
pub mod metrics;
mod openapi;
pub mod remote;
mod routes;
pub mod tokens;
mod views;

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use baton_control::ControlHandle;
use baton_daemon::api::Shared;
use baton_engine::runtime::Logs;
use baton_http::{Throttle, ThrottleConfig};
use baton_state::Store;

pub use error::ApiError;
pub use events::EventHub;
pub use routes::{route_table, RouteInfo};
pub use tokens::{Principal, Role};
pub use views::*;

/// The prefix of every route.
pub const PREFIX: &str = "/api/v1";

/// The largest request body the API reads (a whole project travels in `up`); the TCP
/// listener's `baton-http` limit should say the same.
pub const BODY_LIMIT: usize = 8 << 20;

/// What the handlers share.
pub struct ApiState {
    /// The API's own connection to the state store, for reads.
    pub store: Arc<Store>,
    pub control: ControlHandle,
    /// Reads container output; `None` when the backend cannot.
    pub logs: Option<Arc<dyn Logs>>,
    /// What the daemon says of itself; woken after each change.
    pub daemon: Arc<Shared>,
    pub events: EventHub,
    pub tokens: tokens::Tokens,
    /// The state directory (pipeline artifacts and logs live under it).
    pub state_dir: std::path::PathBuf,
    pub clock: fn() -> i64,
    /// The services answers, shared by every reader.
    pub services: Arc<cache::ServicesCache>,
}

/// How old a services answer may be: served as is below the first, served while it is
/// refreshed below the second.
pub const SERVICES_FRESH: std::time::Duration = std::time::Duration::from_millis(250);
pub const SERVICES_STALE: std::time::Duration = std::time::Duration::from_secs(5);

/// A new services cache with the API's ages.
pub fn services_cache() -> Arc<cache::ServicesCache> {
    Arc::new(cache::ServicesCache::new(SERVICES_FRESH, SERVICES_STALE))
}

/// The API, ready to be served.
#[derive(Clone)]
pub struct Api {
    state: Arc<ApiState>,
    throttle: Arc<Throttle>,
}

impl Api {
    pub fn new(state: ApiState) -> Api {
        Api {
            state: Arc::new(state),
            throttle: Arc::new(Throttle::new(ThrottleConfig::default())),
        }
    }

    pub fn state(&self) -> &Arc<ApiState> {
        &self.state
    }

    /// Every route, behind bearer tokens (the OpenAPI document excepted), for TCP.
    pub fn router(&self) -> Router {
        let (open, closed) = routes::routers(&self.state);
        open.merge(self.protect(closed))
    }

    /// Every route, every request acting as `principal`: for the Unix socket, which
    /// only its owner can reach.
    pub fn router_as(&self, principal: Principal) -> Router {
        let (open, closed) = routes::routers(&self.state);
        open.merge(closed.layer(axum::middleware::from_fn(
            move |mut req: Request, next: Next| {
                let p = principal.clone();
                async move {
                    req.extensions_mut().insert(p);
                    next.run(req).await
                }
            },
        )))
    }

    /// `extra` behind the same tokens and slowdown as the API's routes, for routes
    /// other crates add (metrics series, a dashboard's pages). Each handler reads the
    /// [`Principal`] from the request's extensions; [`require`] checks a role.
    pub fn protect(&self, extra: Router) -> Router {
        baton_http::require_principal(extra, self.state.tokens.clone(), self.throttle.clone())
    }
}

/// 403 unless the request's principal has at least `role`.
pub fn require(principal: Option<&Principal>, role: Role) -> Result<(), ApiError> {
    match principal {
        Some(p) if p.role >= role => Ok(()),
        Some(p) => Err(ApiError::forbidden(format!(
            "token {} has the role {}; this needs {role}",
            p.name, p.role
        ))),
        None => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "missing bearer token: send Authorization: Bearer <token>",
        )),
    }
}

/// The route-level check, as a middleware: the principal the auth layer found must
/// have `role`.
pub(crate) async fn check_role(role: Role, req: Request, next: Next) -> Response {
    match require(req.extensions().get::<Principal>(), role) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}
