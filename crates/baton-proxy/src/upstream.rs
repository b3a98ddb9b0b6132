//! Keep-alive HTTP/1.1 connections to one backend, used by the task of the request they
//! serve: the request head is written and the response read straight from the socket (wire
//! format in `h1`), so a request costs no task switch, channel or second header copy.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::header::{self, HeaderMap};
use hyper::http::uri::PathAndQuery;
use hyper::Method;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

use crate::h1::{self, BodyLength, Decoded, Framing, ResponseHead};
use crate::http::SlotBody;
use crate::workers;

/// Idle connections are closed after this; kept below common backend keep-alive timeouts
/// (Node's is 5 s) so the proxy rarely sends on a connection the backend is closing.
pub(crate) const POOL_IDLE: Duration = Duration::from_secs(4);

/// Idle connections kept per backend; more are closed when they come back.
const MAX_IDLE: usize = 1024;

/// Read buffer growth: a typical response arrives in one read.
const READ_SIZE: usize = 16 * 1024;

/// A request on its way to a backend. It stays with the caller, so a request that failed
/// can be sent again (head and, while untouched, body).
pub(crate) struct Outgoing {
    pub method: Method,
    pub target: PathAndQuery,
    pub headers: HeaderMap,
    pub body: SlotBody,
}

/// Why an exchange failed, and whether the backend may have seen the request.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Not a byte of the request reached the backend.
    Unsent(io::Error),
    /// The request was written (maybe partly); no complete response head came back.
    Sent(io::Error),
}

/// One HTTP/1.1 connection to a backend.
pub(crate) struct Conn {
    io: TcpStream,
    /// Bytes read from the backend and not consumed yet.
    buf: BytesMut,
    /// Scratch space for request heads and chunk-size lines.
    scratch: Vec<u8>,
    /// The last response allows another request on this connection.
    keep_alive: bool,
    idle_since: Instant,
    /// The worker (see `workers::slot`) whose runtime the socket is registered with.
    slot: usize,
}

impl Conn {
    /// Connects with `TCP_NODELAY`, bounded by `timeout`.
    pub async fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Box<Conn>> {
        let io = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(result) => result?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        };
        io.set_nodelay(true)?;
        // Boxed: it moves between the pool, the request and the response body.
        Ok(Box::new(Conn {
            io,
            buf: BytesMut::new(),
            scratch: Vec::with_capacity(512),
            keep_alive: true,
            idle_since: Instant::now(),
            slot: workers::slot(),
        }))
    }

    /// Whether an idle connection can take a request: the backend has not closed it or sent
    /// anything unasked. Costs a syscall only when the socket has become readable.
    pub fn ready(&mut self, cx: &mut Context<'_>) -> bool {
        match self.io.poll_read_ready(cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                matches!(self.io.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Sends `req` and reads the response head; the body is left for `poll_body`.
    pub async fn send(&mut self, req: &mut Outgoing) -> Result<ResponseHead, SendError> {
        let body = &req.body;
        let length = h1::request_length(
            &req.method,
            req.headers.contains_key(header::CONTENT_LENGTH),
            body.is_end_stream(),
            body.size_hint().exact(),
        );
        h1::encode_request(
            &mut self.scratch,
            &req.method,
            req.target.as_str(),
            &req.headers,
            length,
        );
        self.keep_alive = true;
        // The first write tells whether anything reached the backend.
        let written = match self.io.write(&self.scratch).await {
            Ok(0) => return Err(SendError::Unsent(io::ErrorKind::WriteZero.into())),
            Ok(n) => n,
            Err(e) => return Err(SendError::Unsent(e)),
        };
        let rest = &self.scratch[written..];
        if !rest.is_empty() {
            self.io.write_all(rest).await.map_err(SendError::Sent)?;
        }
        if self.scratch.capacity() > h1::MAX_HEAD {
            // A huge head once should not stay allocated on an idle pooled connection.
            self.scratch = Vec::with_capacity(512);
        }
        let head = if matches!(length, BodyLength::None | BodyLength::Exact(0)) {
            read_head(&mut self.io, &mut self.buf, &req.method).await
        } else {
            self.send_with_body(req, length).await?
        };
        match head {
            Ok(head) => {
                self.keep_alive &= head.keep_alive;
                Ok(head)
            }
            Err(e) => Err(SendError::Sent(e)),
        }
    }

    /// Sends the body while already reading: a backend may answer before it has read the
    /// whole body (413, 401, a redirect) and stop reading, and that answer is what the
    /// client should get. Once it has come, the rest of the body is not sent and the
    /// connection is not reused.
    async fn send_with_body(
        &mut self,
        req: &mut Outgoing,
        length: BodyLength,
    ) -> Result<io::Result<ResponseHead>, SendError> {
        let (mut rd, mut wr) = self.io.split();
        let sending = send_body(&mut wr, &mut self.scratch, &mut req.body, length);
        let reading = read_head(&mut rd, &mut self.buf, &req.method);
        tokio::pin!(sending, reading);
        let sent = tokio::select! {
            biased;
            head = &mut reading => {
                self.keep_alive = false;
                return Ok(head);
            }
            sent = &mut sending => sent,
        };
        match sent {
            Ok(()) => Ok(reading.await),
            // The client stopped sending: nothing useful can come back to it.
            Err(BodyError::Client(e)) => Err(SendError::Sent(e)),
            // The backend stopped reading, maybe because it has answered.
            Err(BodyError::Backend(e)) => {
                self.keep_alive = false;
                match reading.await {
                    Ok(head) => Ok(Ok(head)),
                    Err(_) => Err(SendError::Sent(e)),
                }
            }
        }
    }

    /// The next piece of the response body framed by `body`; `None` at its end.
    pub fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut Framing,
    ) -> Poll<io::Result<Option<Bytes>>> {
        loop {
            match body {
                Framing::Empty => return Poll::Ready(Ok(None)),
                Framing::Length(left) => {
                    if !self.buf.is_empty() {
                        let take = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(self.buf.len());
                        let data = self.buf.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            *body = Framing::Empty;
                        }
                        return Poll::Ready(Ok(Some(data)));
                    }
                }
                Framing::Chunked(decoder) => match decoder.decode(&mut self.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Ok(Some(data))),
                    Ok(Decoded::Done) => {
                        *body = Framing::Empty;
                        return Poll::Ready(Ok(None));
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => {
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)))
                    }
                },
                Framing::UntilClose => {
                    if !self.buf.is_empty() {
                        return Poll::Ready(Ok(Some(self.buf.split().freeze())));
                    }
                }
            }
            if ready!(poll_fill(Pin::new(&mut self.io), cx, &mut self.buf))? == 0 {
                if *body == Framing::UntilClose {
                    *body = Framing::Empty;
                    self.keep_alive = false;
                    return Poll::Ready(Ok(None));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "backend closed the connection in the middle of a response body",
                )));
            }
        }
    }

    /// The socket and the bytes already read from it, for a connection that switched
    /// protocols.
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.io, self.buf)
    }

    /// Whether another request may follow on this connection (its last response has been
    /// read to the end and nothing else arrived).
    fn reusable(&self) -> bool {
        self.keep_alive && self.buf.is_empty()
    }
}

/// Why sending a request body stopped.
enum BodyError {
    /// Reading the client's body failed.
    Client(io::Error),
    /// Writing to the backend failed, or the body did not match its length.
    Backend(io::Error),
}

/// Streams the request body to `wr`, checking it holds the bytes its length announced.
async fn send_body(
    wr: &mut (impl AsyncWrite + Unpin),
    scratch: &mut Vec<u8>,
    body: &mut SlotBody,
    length: BodyLength,
) -> Result<(), BodyError> {
    let mut sent: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Client(io::Error::other(e)))?;
        // Trailers are not forwarded.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        let written = if length == BodyLength::Chunked {
            h1::chunk_size_line(data.len(), scratch);
            async {
                wr.write_all(scratch).await?;
                wr.write_all(&data).await?;
                wr.write_all(b"\r\n").await
            }
            .await
        } else {
            wr.write_all(&data).await
        };
        written.map_err(BodyError::Backend)?;
    }
    match length {
        BodyLength::Chunked => wr.write_all(b"0\r\n\r\n").await.map_err(BodyError::Backend),
        BodyLength::Exact(n) if n != sent => Err(BodyError::Client(io::Error::new(
            io::ErrorKind::InvalidData,
            "request body length differs from its content-length",
        ))),
        _ => Ok(()),
    }
}

/// Reads until a complete response head is in `buf`, and parses it.
async fn read_head(
    rd: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    method: &Method,
) -> io::Result<ResponseHead> {
    loop {
        match h1::parse_response(buf, method) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        if std::future::poll_fn(|cx| poll_fill(Pin::new(rd), cx, buf)).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "backend closed the connection before answering",
            ));
        }
    }
}

/// Reads what is available into `buf`, growing it by `READ_SIZE` when little room is left.
fn poll_fill(
    rd: Pin<&mut (impl AsyncRead + ?Sized)>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_SIZE / 4 {
        buf.reserve(READ_SIZE);
    }
    poll_read_buf(rd, cx, buf)
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
    /// reused (the body was not read to its end, or the backend asked to close).
    pub fn put(&self, mut conn: Box<Conn>) {
        if self.retired.load(Ordering::Relaxed) || !conn.reusable() {
            return;
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
