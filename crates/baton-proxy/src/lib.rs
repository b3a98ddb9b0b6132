//! baton's traffic proxy: owns a service's published port and forwards to healthy replicas.
//! Updates stay zero-downtime: swap backends, drain the removed ones, split between revisions.
//!
//! *Architecture invariant:* knows nothing of Docker, the spec or the CLI; a daemon feeds it
//! `Backend`s and reads `Metrics`. Per-request problems never surface as errors: they become
//! 502/503 answers and counters.

mod backends;
mod balance;
mod config;
pub mod edge;
mod error;
pub mod external;
mod h1;
mod http;
mod lifecycle;
mod metrics;
mod server_logs;
mod tcp;
mod upstream;
mod workers;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backends::BackendSet;
pub use crate::config::{
    Backend, Balance, PoolConfig, Protocol, ProxyConfig, DEFAULT_RESPONSE_TIMEOUT,
};
pub use crate::error::ProxyError;
pub use crate::metrics::{LatencyStats, Metrics, RevisionStats, Totals, CLASSES, TOTAL_BUCKETS};

/// A running proxy. Cheap to clone; every clone controls the same listener.
///
/// Dropping the handles does not stop serving: call `shutdown`.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    local_addr: SocketAddr,
    set: Arc<BackendSet>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// Closes idle backend connections past their idle timeout, until the proxy stops.
async fn sweep(set: std::sync::Weak<BackendSet>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(upstream::POOL_IDLE / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        match set.upgrade() {
            Some(set) => set.sweep(),
            None => return,
        }
    }
}

impl Proxy {
    /// Binds `config.listen` and starts serving on a tokio task, with no backends yet
    /// (requests get 503 until `set_backends`). In HTTP mode the accept loop runs on the
    /// caller's runtime and each client connection is served on one of the process-wide
    /// proxy worker threads (`baton-proxy-N`, one single-threaded runtime per CPU, started
    /// on first use); TCP mode serves on the caller's runtime.
    pub async fn bind(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ProxyError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(ProxyError::LocalAddr)?;
        let set = Arc::new(BackendSet::new(
            &PoolConfig::from(&config),
            tokio::runtime::Handle::current(),
        ));
        let stop = CancellationToken::new();
        let task = match config.protocol {
            Protocol::Http => {
                tokio::spawn(sweep(Arc::downgrade(&set), stop.clone()));
                tokio::spawn(http::serve(listener, set.clone(), stop.clone()))
            }
            Protocol::Tcp => tokio::spawn(tcp::serve(listener, set.clone(), stop.clone())),
        };
        let inner = Inner {
            local_addr,
            set,
            stop,
            task: Mutex::new(Some(task)),
        };
        Ok(Proxy {
            inner: Arc::new(inner),
        })
    }

    /// The bound address (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Replaces the backend set. Backends no longer listed stop getting new requests and
    /// connections at once and are drained: in-flight requests and open connections finish,
    /// up to `drain_timeout`, then are closed. A backend listed again unchanged (same id,
    /// address and revision) keeps its keep-alive pool and counters.
    pub fn set_backends(&self, backends: Vec<Backend>) {
        self.inner.set.set(backends);
    }

    /// Weighted split between revisions, e.g. `[("v2", 10), ("v1", 90)]`; revisions not
    /// listed get nothing while a split is set, unless no listed revision has a usable
    /// backend (then all backends share, rather than answering 503). `None` = all equal.
    pub fn set_split(&self, split: Option<Vec<(String, u32)>>) {
        self.inner.set.set_split(split);
    }

    /// Resolves when the named backends have no in-flight requests or connections, or after
    /// `drain_timeout`.
    pub async fn drained(&self, ids: &[String]) {
        self.inner.set.drained(ids).await;
    }

    /// Counters per revision since start or the last `reset_metrics`.
    pub fn metrics(&self) -> Metrics {
        self.inner.set.registry.snapshot()
    }

    /// Zeroes the counters (the `active` gauges stay).
    pub fn reset_metrics(&self) {
        self.inner.set.registry.reset();
    }

    /// Stops accepting, lets open connections finish up to `drain_timeout`, then closes
    /// everything. Other clones of the handle become inert.
    pub async fn shutdown(self) {
        self.inner.stop.cancel();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "proxy task ended abnormally");
            }
        }
        self.inner.set.close_all();
    }
}

/// A backend set without a listener of its own: what the edge routes a host and path to
/// (`edge::Target::Pool`). The same balancing, weighted split, draining, retries and
/// per-revision metrics as a [`Proxy`]'s. Cheap to clone; every clone is the same pool.
#[derive(Clone)]
pub struct BackendPool {
    pub(crate) set: Arc<BackendSet>,
}

impl BackendPool {
    /// An empty pool (requests routed to it get 503 until `set_backends`). Must be called
    /// within a tokio runtime: drains and the idle-connection sweep run on it, the sweep
    /// until the last clone is dropped.
    pub fn new(config: &PoolConfig) -> BackendPool {
        let set = Arc::new(BackendSet::new(config, tokio::runtime::Handle::current()));
        tokio::spawn(sweep(Arc::downgrade(&set), CancellationToken::new()));
        BackendPool { set }
    }

    /// As [`Proxy::set_backends`].
    pub fn set_backends(&self, backends: Vec<Backend>) {
        self.set.set(backends);
    }

    /// As [`Proxy::set_split`].
    pub fn set_split(&self, split: Option<Vec<(String, u32)>>) {
        self.set.set_split(split);
    }

    /// As [`Proxy::drained`].
    pub async fn drained(&self, ids: &[String]) {
        self.set.drained(ids).await;
    }

    /// As [`Proxy::metrics`].
    pub fn metrics(&self) -> Metrics {
        self.set.registry.snapshot()
    }

    /// As [`Proxy::reset_metrics`].
    pub fn reset_metrics(&self) {
        self.set.registry.reset();
    }

    /// Stops routing to every backend; in-flight requests finish up to the drain timeout.
    pub fn close(&self) {
        self.set.set(Vec::new());
    }

    /// Whether two handles are the same pool.
    pub fn same(&self, other: &BackendPool) -> bool {
        Arc::ptr_eq(&self.set, &other.set)
    }
}
