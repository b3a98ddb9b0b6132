//! Graceful stop for client connections without a per-poll cost: connections check two
//! flags when polled and leave their waker once; `stop` and `force` wake them all.
//!
//! (hyper-util's `GracefulShutdown` and a `CancellationToken` in a `select!` did the same
//! but took a lock shared by every connection on every poll, which the workers contended.)

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Poll, Waker};

use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct Lifecycle {
    stopping: AtomicBool,
    forced: AtomicBool,
    next_id: AtomicU64,
    /// Open connections and the waker of the task serving each.
    open: Mutex<HashMap<u64, Option<Waker>>>,
    all_closed: Notify,
}

impl Lifecycle {
    /// Counts a connection as open from the moment it is accepted; pass the id to `serve`.
    pub fn open(&self) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, None);
        id
    }

    /// Serves connection `id` until it ends, shutting it down gracefully on `stop` (via
    /// `graceful`) and dropping it on `force`.
    pub async fn serve<C: Future>(&self, id: u64, conn: C, graceful: impl Fn(Pin<&mut C>)) {
        let mut conn = pin!(conn);
        let mut waker: Option<Waker> = None;
        let mut shutting = false;
        poll_fn(|cx| {
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                waker = Some(cx.waker().clone());
                if let Some(slot) = self.lock().get_mut(&id) {
                    *slot = waker.clone();
                }
            }
            if self.forced.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            if !shutting && self.stopping.load(Ordering::SeqCst) {
                shutting = true;
                graceful(conn.as_mut());
            }
            conn.as_mut().poll(cx).map(drop)
        })
        .await;
        self.forget(id);
    }

    /// Counts connection `id` as closed.
    pub fn forget(&self, id: u64) {
        let mut open = self.lock();
        open.remove(&id);
        if open.is_empty() {
            self.all_closed.notify_waiters();
        }
    }

    /// Asks every connection to finish its requests and close.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// Drops every connection still open.
    pub fn force(&self) {
        self.forced.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// Resolves when no connection is open.
    pub async fn closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().is_empty() {
                return;
            }
            notified.await;
        }
    }

    fn wake_all(&self) {
        let wakers: Vec<Waker> = self.lock().values().flatten().cloned().collect();
        for w in wakers {
            w.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Option<Waker>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
