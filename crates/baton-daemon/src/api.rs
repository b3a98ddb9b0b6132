//! The daemon's local API: HTTP/1.1 on a Unix socket in the state directory
//! (`<state dir>/baton.sock`, mode 0600: only the owner may talk to it). The CLI uses it
//! to wake the daemon at once after changing the store (instead of waiting for the next
//! tick) and to read what only the daemon knows: its proxies, their backends and live
//! per-revision metrics. Without a daemon, every command still works on its own.
//!
//! - `GET  /v1/status` — pid, version, uptime, ticks, engine reachable, projects,
//!   proxies.
//! - `POST /v1/wake` — look at the world now.
//! - `GET  /v1/projects/{project}/traffic` — the project's proxies with metrics.
//! - `GET  /v1/edge` — the edge: listeners, routes, certificates, refused projects.
//! - `GET  /v1/autoscale` — each autoscaled service's last observation and decision.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use hyper::Method;

/// The socket's file name in the state directory.
pub const SOCKET: &str = "baton.sock";

/// What the supervisor and the API share.
#[derive(Default)]
pub struct Shared {
    /// Notified by `POST /v1/wake`: the supervisor ticks at once.
    pub wake: Notify,
    status: Mutex<Status>,
    /// The metrics registry and history (`/metrics`, `/api/v1/series`).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// The autoscaler's last look at each autoscaled service, by `project/service`.
    pub autoscale: Mutex<std::collections::BTreeMap<String, crate::autoscale::AutoscaleStatus>>,
}

impl Shared {
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// The daemon as it describes itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    pub pid: u32,
    pub version: String,
    pub started_at_ms: u64,
    pub ticks: u64,
    pub last_tick_ms: u64,
    pub engine_reachable: bool,
    /// Projects the daemon keeps running.
    pub projects: Vec<String>,
    pub proxies: Vec<ProxyStatus>,
    /// The edge, when some project has routes.
    pub edge: Option<crate::edge::EdgeStatus>,
    /// The VM agents whose events this daemon follows (`--agent`).
    #[serde(default)]
    pub agents: Vec<crate::agents::AgentStatus>,
}

/// One published port and what serves it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProxyStatus {
    pub project: String,
    pub service: String,
    pub listen: String,
    /// `builtin`, `nginx` or `haproxy`.
    pub provider: String,
    /// Container names that take traffic.
    pub backends: Vec<String>,
    /// Per-revision counters (builtin proxy only).
    #[serde(skip_deserializing)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub metrics: Option<baton_proxy::Metrics>,
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<Status> {
    Json(shared.status())
}

async fn wake_handler(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.wake.notify_one();
    StatusCode::ACCEPTED
}

async fn traffic(
    State(shared): State<Arc<Shared>>,
    UrlPath(project): UrlPath<String>,
) -> Json<Vec<ProxyStatus>> {
    let status = shared.status();
    Json(
        status
            .proxies
            .into_iter()
            .filter(|p| p.project == project)
            .collect(),
    )
}

async fn autoscale(
    State(shared): State<Arc<Shared>>,
) -> Json<Vec<crate::autoscale::AutoscaleStatus>> {
    let map = shared
        .autoscale
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Json(map.values().cloned().collect())
}

async fn edge(State(shared): State<Arc<Shared>>) -> Json<Option<crate::edge::EdgeStatus>> {
    Json(shared.status().edge)
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/edge", get(edge))
        .route("/v1/autoscale", get(autoscale))
        .route("/v1/wake", post(wake_handler))
        .route("/v1/projects/{project}/traffic", get(traffic))
        .with_state(shared)
}

/// Binds the socket in `state_dir`. A socket file nobody answers on (a daemon that
/// died) is replaced; one that answers means another daemon runs: refused.
pub async fn bind(state_dir: &Path) -> std::io::Result<(tokio::net::UnixListener, PathBuf)> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = state_dir.join(SOCKET);
    if path.exists() {
        if tokio::net::UnixStream::connect(&path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "another `baton serve` answers on {}; one daemon per state directory",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok((listener, path))
}

/// Serves the API, and `extra` routes beside it (the HTTP API's `/api/v1`, for the
/// socket's owner), until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::UnixListener,
    shared: Arc<Shared>,
    extra: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared).merge(extra))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The client side, for the CLI: one request to the daemon of `state_dir`. `None` when
/// no daemon answers (no socket, or a stale one): the caller works on its own.
pub async fn call(
    state_dir: &Path,
    method: hyper::Method,
    path: &str,
) -> Option<serde_json::Value> {
    use http_body_util::{BodyExt as _, Empty};
    use hyper_util::rt::TokioIo;
    let work = async {
        let stream = tokio::net::UnixStream::connect(state_dir.join(SOCKET))
            .await
            .ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        let conn = tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "baton")
            .body(Empty::<hyper::body::Bytes>::new())
            .ok()?;
        let res = sender.send_request(req).await.ok()?;
        let ok = res.status().is_success();
        let body = res.into_body().collect().await.ok()?.to_bytes();
        conn.abort();
        if !ok {
            return None;
        }
        Some(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    };
    // A daemon that does not answer within a few seconds is as good as none.
    tokio::time::timeout(std::time::Duration::from_secs(5), work)
        .await
        .ok()
        .flatten()
}

/// Wakes the daemon, if one runs, so it acts on what the caller just recorded.
pub async fn wake(state_dir: &Path) -> bool {
    call(state_dir, hyper::Method::POST, "/v1/wake")
        .await
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn status_wake_and_traffic_over_the_socket() {
        let dir = std::env::temp_dir().join(format!("baton-api-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(call(&dir, hyper::Method::GET, "/v1/status").await, None);
        let shared = Arc::new(Shared::default());
        shared.update(|s| {
            s.pid = 42;
            s.projects = vec!["shop".into()];
            s.proxies = vec![ProxyStatus {
                project: "shop".into(),
                service: "web".into(),
                listen: "0.0.0.0:8080".into(),
                provider: "builtin".into(),
                backends: vec!["shop-web-1".into()],
                metrics: None,
            }];
        });
        let (listener, path) = bind(&dir).await.unwrap();
        // A second daemon on the same state directory is refused.
        let second = bind(&dir).await.unwrap_err();
        assert_eq!(second.kind(), std::io::ErrorKind::AddrInUse);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, shared.clone(), Router::new(), async {
            let _ = stopped.await;
        }));
        let status = call(&dir, hyper::Method::GET, "/v1/status").await.unwrap();
        assert_eq!(status["pid"], 42);
        assert_eq!(status["projects"][0], "shop");
        let traffic = call(&dir, hyper::Method::GET, "/v1/projects/shop/traffic")
            .await
            .unwrap();
        assert_eq!(traffic[0]["backends"][0], "shop-web-1");
        let other = call(&dir, hyper::Method::GET, "/v1/projects/none/traffic")
            .await
            .unwrap();
        assert_eq!(other, serde_json::json!([]));
        let woken = shared.wake.notified();
        assert!(wake(&dir).await);
        tokio::time::timeout(std::time::Duration::from_secs(2), woken)
            .await
            .expect("the wake reaches the supervisor");
        let mode = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        // The socket left behind by a dead daemon is replaced.
        let (_again, _) = bind(&dir).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
