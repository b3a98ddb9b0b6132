//! The server: accepts TCP connections up to a cap, completes the TLS handshake when
//! asked, and serves each connection with hyper's HTTP/1.1 under the request limits.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::{Json, Router};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::tls::ServerTls;
use crate::HttpError;

/// The limits every listener runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a client has to send a request's head; also bounds the TLS handshake and
    /// how long an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Time a client has to send a request's whole body, counted from its head.
    pub body_timeout: Duration,
    /// Largest request body; a larger one gets 413.
    pub max_body_bytes: usize,
    /// Connections served at once. Beyond it the server stops accepting: the next
    /// clients wait in the listen backlog until a connection ends.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_body_bytes: 1 << 20,
            max_connections: 256,
        }
    }
}

/// The address a request came from, in its extensions (for per-client limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// How one listener serves: its limits, and TLS when given.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub limits: Limits,
    pub tls: Option<ServerTls>,
}

/// Serves `app` on `listener` until the task is dropped. Each connection is served on
/// its own task; errors of one connection (a client gone, a timeout) end only it.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
) -> Result<(), HttpError> {
    let ServeOptions { limits, tls } = options;
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // Take a slot before accepting: at the cap, clients wait in the backlog.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors or a connection reset before accept: do not
                // spin, and do not give up on the listener.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => connection(stream, app, limits, peer).await,
                Some(tls) => {
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, tls.acceptor.accept(stream));
                    if let Ok(Ok(stream)) = handshake.await {
                        connection(stream, app, limits, peer).await;
                    }
                }
            }
        });
    }
}

async fn connection<S>(stream: S, app: Router, limits: Limits, peer: std::net::SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ClientAddr(peer));
        handle(app.clone(), limits, req)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let _ = http.serve_connection(TokioIo::new(stream), service).await;
}

/// What went wrong while reading a body, seen by the request's handler as a body
/// error and turned into the response here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Breach {
    None = 0,
    TooLarge = 1,
    TooSlow = 2,
}

async fn handle(
    app: Router,
    limits: Limits,
    req: Request<Incoming>,
) -> Result<Response<axum::body::Body>, Infallible> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Ok(too_large(&limits));
    }
    let breach = Arc::new(AtomicU8::new(Breach::None as u8));
    let (parts, body) = req.into_parts();
    let body = Guarded {
        inner: body,
        left: limits.max_body_bytes,
        deadline: Box::pin(tokio::time::sleep(limits.body_timeout)),
        breach: breach.clone(),
    };
    let req = Request::from_parts(parts, axum::body::Body::new(body));
    let resp = app.oneshot(req).await?;
    Ok(match breach.load(Ordering::SeqCst) {
        x if x == Breach::TooLarge as u8 => too_large(&limits),
        x if x == Breach::TooSlow as u8 => closing(refuse(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "request body not received within {} ms",
                limits.body_timeout.as_millis()
            ),
        )),
        _ => resp,
    })
}

fn too_large(limits: &Limits) -> Response<axum::body::Body> {
    closing(refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "request body over the limit of {} bytes",
            limits.max_body_bytes
        ),
    ))
}

/// The connection ends after this response: the rest of the body is not read.
fn closing(mut r: Response<axum::body::Body>) -> Response<axum::body::Body> {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// `status` with `{"error": message}`: how every listener refuses a request.
pub(crate) fn refuse(status: StatusCode, message: &str) -> Response<axum::body::Body> {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// A request body under the size limit and the body deadline.
struct Guarded {
    inner: Incoming,
    left: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
    breach: Arc<AtomicU8>,
}

#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("request body over the size limit")]
    TooLarge,
    #[error("request body not received in time")]
    TooSlow,
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

impl Guarded {
    fn breached(&self, b: Breach) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.breach.store(b as u8, Ordering::SeqCst);
        Poll::Ready(Some(Err(match b {
            Breach::TooLarge => BodyError::TooLarge,
            _ => BodyError::TooSlow,
        })))
    }
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            return this.breached(Breach::TooSlow);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, Bytes::len);
                if n > this.left {
                    return this.breached(Breach::TooLarge);
                }
                this.left -= n;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
