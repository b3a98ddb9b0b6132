//! Keep-alive HTTP/1.1 connections to one backend, driven by the task that uses them.
//! A connection is polled by the client request it serves, so no task or channel hop per request.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::http::SlotBody;
use crate::workers;

/// Idle connections are closed after this; kept below common backend keep-alive timeouts
/// (Node's is 5 s) so the proxy rarely sends on a connection the backend is closing.
pub(crate) const POOL_IDLE: Duration = Duration::from_secs(4);

/// Idle connections kept per backend; more are closed when they come back.
const MAX_IDLE: usize = 1024;

/// One HTTP/1.1 connection to a backend: the handle to send on and the state machine that
/// reads and writes the socket. Whoever holds it must poll `drive` while waiting on it.
pub(crate) struct Conn {
    sender: SendRequest<SlotBody>,
    driver: Connection<TokioIo<TcpStream>, SlotBody>,
    /// Set once the driver has completed (closed or failed); it must not be polled again.
    ended: bool,
    idle_since: Instant,
    /// The worker (see `workers::slot`) whose runtime the socket is registered with.
    slot: usize,
}

impl Conn {
    /// Connects with `TCP_NODELAY`, bounded by `timeout`.
    pub async fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Box<Conn>> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(result) => result?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        };
        stream.set_nodelay(true)?;
        let (sender, driver) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        // Boxed: it is large and moves between the pool, the request and the response body.
        Ok(Box::new(Conn {
            sender,
            driver,
            ended: false,
            idle_since: Instant::now(),
            slot: workers::slot(),
        }))
    }

    pub fn sender(&mut self) -> &mut SendRequest<SlotBody> {
        &mut self.sender
    }

    /// Lets the connection read and write; `true` once it has ended for good.
    pub fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.ended {
            if let Poll::Ready(result) = Pin::new(&mut self.driver).poll(cx) {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "backend connection ended with an error");
                }
                self.ended = true;
            }
        }
        self.ended
    }

    /// Whether a new request can be sent now (drives the connection first, so a close by the
    /// backend while idle is noticed here).
    pub fn ready(&mut self, cx: &mut Context<'_>) -> bool {
        !self.drive(cx) && matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

/// The idle connections to one backend, kept per worker thread: a connection is reused
/// only by the thread whose runtime drives its socket.
// Boxes on purpose: a connection moves out of the pool into a request and back.
#[allow(clippy::vec_box)]
pub(crate) struct Pool {
    idle: Box<[Mutex<Vec<Box<Conn>>>]>,
    /// Set when the backend is removed: connections coming back are closed, not kept.
    retired: AtomicBool,
}

impl Pool {
    pub fn new() -> Pool {
        Pool {
            idle: (0..workers::slots()).map(|_| Mutex::default()).collect(),
            retired: AtomicBool::new(false),
        }
    }

    #[allow(clippy::vec_box)]
    fn list(&self, slot: usize) -> std::sync::MutexGuard<'_, Vec<Box<Conn>>> {
        self.idle[slot.min(self.idle.len() - 1)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The calling thread's most recently used idle connection that is still fresh.
    pub fn take(&self) -> Option<Box<Conn>> {
        let mut idle = self.list(workers::slot());
        while let Some(conn) = idle.pop() {
            if conn.idle_since.elapsed() < POOL_IDLE {
                return Some(conn);
            }
            // The rest are older still.
            idle.clear();
        }
        None
    }

    /// Keeps `conn` for the next request, unless the backend is retired or it cannot be
    /// reused (the exchange left it mid-message, or the backend asked to close).
    pub fn put(&self, mut conn: Box<Conn>, cx: Option<&mut Context<'_>>) {
        if self.retired.load(Ordering::Relaxed) || conn.ended {
            return;
        }
        if let Some(cx) = cx {
            if conn.drive(cx) {
                return;
            }
        }
        conn.idle_since = Instant::now();
        let mut idle = self.list(conn.slot);
        if idle.len() < MAX_IDLE && !self.retired.load(Ordering::Relaxed) {
            idle.push(conn);
        }
    }

    /// Closes idle connections and stops keeping new ones (the backend was removed).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        for slot in 0..self.idle.len() {
            let closing = std::mem::take(&mut *self.list(slot));
            drop(closing);
        }
    }

    /// Closes connections idle longer than `POOL_IDLE`.
    pub fn sweep(&self) {
        for slot in 0..self.idle.len() {
            self.list(slot)
                .retain(|c| c.idle_since.elapsed() < POOL_IDLE);
        }
    }
}
