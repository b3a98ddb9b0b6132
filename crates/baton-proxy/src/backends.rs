//! The live backend set: selection under a lock, in-flight tracking, passive health, draining.
//! `set` swaps the table; removed backends finish in-flight work, then are closed at the timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hyper::http::uri::Authority;
use tokio::sync::Notify;

use crate::balance::{self, Candidate};
use crate::config::{Backend, Balance, PoolConfig};
use crate::metrics::{Registry, RevisionMetrics};
use crate::upstream::Pool;
use crate::workers;

/// How long a backend that refused or timed out a connect is skipped (passive health).
pub(crate) const DOWN_FOR: Duration = Duration::from_secs(2);

/// One backend and everything the proxy keeps about it while it is listed or draining.
pub(crate) struct BackendState {
    pub backend: Backend,
    pub metrics: Arc<RevisionMetrics>,
    /// `ip:port` as a URI authority, computed once.
    pub authority: Authority,
    /// Idle keep-alive connections to this backend (HTTP only); closed when it is removed.
    pub pool: Pool,
    /// Set when draining times out: in-flight exchanges are cut.
    pub closed: Cut,
    active: AtomicU64,
    idle: Notify,
    /// Milliseconds since the set's epoch until which selection skips this backend.
    down_until_ms: AtomicU64,
}

impl BackendState {
    /// Resolves once nothing is in flight on this backend.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A one-way "cut now" signal, cheaper than a `CancellationToken` on the per-request path:
/// checking it is one atomic load, waiting on it one registration with the calling worker's
/// own `Notify` (so the worker threads never contend for one lock).
pub(crate) struct Cut {
    flag: AtomicBool,
    notify: Box<[Notify]>,
}

impl Cut {
    pub fn new() -> Cut {
        Cut {
            flag: AtomicBool::new(false),
            notify: (0..workers::slots()).map(|_| Notify::new()).collect(),
        }
    }

    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        for n in self.notify.iter() {
            n.notify_waiters();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves once `cancel` has been called.
    pub async fn cancelled(&self) {
        loop {
            let notify = &self.notify[workers::slot().min(self.notify.len() - 1)];
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Counts one request or connection as in flight on a backend until dropped.
pub(crate) struct InFlight {
    pub state: Arc<BackendState>,
}

impl InFlight {
    fn new(state: Arc<BackendState>) -> InFlight {
        state.active.fetch_add(1, Ordering::SeqCst);
        state.metrics.enter();
        InFlight { state }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.metrics.leave();
        if self.state.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.state.idle.notify_waiters();
        }
    }
}

/// What selection reads, swapped whole by `set` and `set_split`.
#[derive(Default)]
struct Table {
    backends: Vec<Arc<BackendState>>,
    split: Option<Vec<(String, u32)>>,
    /// The round-robin counter of each backend's revision (shared by the revision's
    /// backends), by index into `backends`.
    rr_of: Vec<Arc<AtomicU64>>,
}

pub(crate) struct BackendSet {
    balance: Balance,
    pub drain_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub registry: Registry,
    table: RwLock<Arc<Table>>,
    draining: Arc<Mutex<Vec<Arc<BackendState>>>>,
    ticket: AtomicU64,
    epoch: Instant,
    runtime: tokio::runtime::Handle,
}

impl BackendSet {
    pub fn new(config: &PoolConfig, runtime: tokio::runtime::Handle) -> BackendSet {
        BackendSet {
            balance: config.balance,
            drain_timeout: config.drain_timeout,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            registry: Registry::default(),
            table: RwLock::default(),
            draining: Arc::default(),
            ticket: AtomicU64::new(0),
            epoch: Instant::now(),
            runtime,
        }
    }

    /// A fresh number per request; drives the weighted split. Drawn on the first `choose`
    /// that needs one (only with a split), kept for the request's retries.
    fn ticket(&self, ticket: &mut Option<u64>) -> u64 {
        *ticket.get_or_insert_with(|| self.ticket.fetch_add(1, Ordering::Relaxed))
    }

    /// Picks a backend not in `tried` and marks it in flight, or `None` when none is left.
    ///
    /// The guard is taken under the table's read lock, so once `set` has returned no
    /// removed backend can be handed out, and `drained` sees every request chosen before.
    pub fn choose(
        &self,
        ticket: &mut Option<u64>,
        tried: &[Arc<BackendState>],
    ) -> Option<InFlight> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let now = self.now_ms();
        let healthy = |b: &BackendState| b.down_until_ms.load(Ordering::Relaxed) <= now;
        // The common case, without building candidate lists: no split, a first attempt,
        // every backend healthy. Then the pool is every backend, in order.
        if table.split.is_none() && tried.is_empty() && table.backends.iter().all(|b| healthy(b)) {
            let rr = table.rr_of.first()?.fetch_add(1, Ordering::Relaxed);
            let i = balance::pick_all(&table.backends, self.balance, rr, |b| {
                b.active.load(Ordering::Relaxed)
            })?;
            return Some(InFlight::new(table.backends[i].clone()));
        }
        let cands: Vec<Candidate<'_>> = table
            .backends
            .iter()
            .map(|b| Candidate {
                revision: &b.backend.revision,
                active: b.active.load(Ordering::Relaxed),
                healthy: healthy(b),
                excluded: tried.iter().any(|t| Arc::ptr_eq(t, b)),
            })
            .collect();
        let ticket = match table.split {
            Some(_) => self.ticket(ticket),
            None => 0,
        };
        let pool = balance::pool(&cands, table.split.as_deref(), ticket);
        let rr = table.rr_of[*pool.first()?].fetch_add(1, Ordering::Relaxed);
        let i = balance::pick(&cands, &pool, self.balance, rr)?;
        Some(InFlight::new(table.backends[i].clone()))
    }

    /// Passive health: skip `state` for a while after a failed connect.
    pub fn mark_down(&self, state: &BackendState) {
        let until = self.now_ms().saturating_add(DOWN_FOR.as_millis() as u64);
        state.down_until_ms.store(until, Ordering::Relaxed);
    }

    /// Replaces the backend set; see `Proxy::set_backends`.
    pub fn set(&self, backends: Vec<Backend>) {
        let mut removed = Vec::new();
        {
            let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
            let mut old: Vec<Arc<BackendState>> = table.backends.clone();
            let mut next = Vec::with_capacity(backends.len());
            for backend in backends {
                // An unchanged backend keeps its state: in-flight count, health and pool.
                match old.iter().position(|s| s.backend == backend) {
                    Some(i) => next.push(old.swap_remove(i)),
                    None => next.push(Arc::new(self.new_state(backend))),
                }
            }
            // A revision keeps its round-robin counter (the one in the old table, or the
            // one given to its first backend here); a new revision starts one.
            let mut rr_of: Vec<Arc<AtomicU64>> = Vec::with_capacity(next.len());
            for (i, s) in next.iter().enumerate() {
                let revision = &s.backend.revision;
                let known = table
                    .backends
                    .iter()
                    .zip(&table.rr_of)
                    .chain(next[..i].iter().zip(&rr_of))
                    .find(|(b, _)| b.backend.revision == *revision)
                    .map(|(_, c)| c.clone());
                rr_of.push(known.unwrap_or_default());
            }
            *table = Arc::new(Table {
                backends: next,
                split: table.split.clone(),
                rr_of,
            });
            removed.extend(old);
        }
        for state in removed {
            self.drain(state);
        }
    }

    pub fn set_split(&self, split: Option<Vec<(String, u32)>>) {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        *table = Arc::new(Table {
            backends: table.backends.clone(),
            split,
            rr_of: table.rr_of.clone(),
        });
    }

    /// Resolves when every listed or draining backend named in `ids` is idle, or at the
    /// drain timeout.
    pub async fn drained(&self, ids: &[String]) {
        let mut states: Vec<Arc<BackendState>> = {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            table
                .backends
                .iter()
                .filter(|s| ids.contains(&s.backend.id))
                .cloned()
                .collect()
        };
        {
            let draining = self.draining.lock().unwrap_or_else(PoisonError::into_inner);
            states.extend(
                draining
                    .iter()
                    .filter(|s| ids.contains(&s.backend.id))
                    .cloned(),
            );
        }
        let all = async {
            for s in &states {
                s.idle().await;
            }
        };
        let _ = tokio::time::timeout(self.drain_timeout, all).await;
    }

    /// Cuts everything still running on any backend (end of shutdown).
    pub fn close_all(&self) {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        for s in &table.backends {
            s.closed.cancel();
        }
        let draining = self.draining.lock().unwrap_or_else(PoisonError::into_inner);
        for s in draining.iter() {
            s.closed.cancel();
        }
    }

    fn new_state(&self, backend: Backend) -> BackendState {
        let authority = Authority::try_from(backend.addr.to_string().as_str())
            .unwrap_or_else(|_| Authority::from_static("127.0.0.1"));
        BackendState {
            metrics: self.registry.revision(&backend.revision),
            backend,
            authority,
            pool: Pool::new(),
            closed: Cut::new(),
            active: AtomicU64::new(0),
            idle: Notify::new(),
            down_until_ms: AtomicU64::new(0),
        }
    }

    /// Closes idle backend connections older than the pool's idle timeout.
    pub fn sweep(&self) {
        let table = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for s in &table.backends {
            s.pool.sweep();
        }
    }

    /// Keeps a removed backend until it is idle or the drain timeout cuts it. Its idle
    /// connections close now; busy ones close as their requests end.
    fn drain(&self, state: Arc<BackendState>) {
        state.pool.retire();
        self.draining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(state.clone());
        let draining = self.draining.clone();
        let timeout = self.drain_timeout;
        self.runtime.spawn(async move {
            if tokio::time::timeout(timeout, state.idle()).await.is_err() {
                tracing::debug!(backend = %state.backend.id, "drain timed out, closing");
                state.closed.cancel();
            }
            let mut list = draining.lock().unwrap_or_else(PoisonError::into_inner);
            list.retain(|s| !Arc::ptr_eq(s, &state));
        });
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}
