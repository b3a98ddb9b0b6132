//! Worker threads for HTTP client connections: one single-threaded tokio runtime per CPU
//! (or `BATON_PROXY_WORKERS`, like nginx's `worker_processes`), started on first use and
//! shared by every proxy in the process (like nginx's workers).
//!
//! A client connection lives on one worker with the backend connections it uses, so a
//! request is served by one thread from start to end: no work stealing, no cross-thread
//! wake-ups. On a loaded machine that is what keeps the proxy's latency and CPU per
//! request low; see docs/benchmarks.md.

use std::cell::Cell;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle};

static WORKERS: OnceLock<Vec<Handle>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's worker index, `None` outside the workers.
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

fn workers() -> &'static [Handle] {
    WORKERS.get_or_init(start)
}

/// The next worker in turn, or `None` when no worker could be started (then the caller
/// serves on its own runtime, as before).
pub(crate) fn next() -> Option<&'static Handle> {
    let workers = workers();
    if workers.is_empty() {
        return None;
    }
    Some(&workers[NEXT.fetch_add(1, Ordering::Relaxed) % workers.len()])
}

/// How many per-thread slots a per-backend structure needs: one per worker, plus one
/// shared by every other thread.
pub(crate) fn slots() -> usize {
    workers().len() + 1
}

/// The slot of the calling thread (see `slots`).
pub(crate) fn slot() -> usize {
    INDEX.with(Cell::get).unwrap_or_else(|| workers().len())
}

fn start() -> Vec<Handle> {
    let n = std::env::var("BATON_PROXY_WORKERS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let runtime = match Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a proxy worker runtime");
                break;
            }
        };
        let handle = runtime.handle().clone();
        let index = handles.len();
        let spawned = std::thread::Builder::new()
            .name(format!("baton-proxy-{i}"))
            .spawn(move || {
                INDEX.with(|c| c.set(Some(index)));
                // Drives the runtime (its tasks and I/O) for the life of the process.
                runtime.block_on(std::future::pending::<()>());
            });
        match spawned {
            Ok(_) => handles.push(handle),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a proxy worker thread");
                break;
            }
        }
    }
    handles
}
