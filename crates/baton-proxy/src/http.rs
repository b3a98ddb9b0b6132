//! HTTP mode: serve HTTP/1.1 and h2c from clients, forward each request over a keep-alive
//! pool to a chosen backend, retrying requests that never reached one; bodies stream both ways.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{PathAndQuery, Scheme};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::backends::{BackendSet, BackendState, InFlight};

pub(crate) type HttpClient = Client<HttpConnector, SlotBody>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Attempts after the first for a request that never reached a backend.
const MAX_RETRIES: usize = 2;

/// Idle pooled connections are closed after this; kept below common backend keep-alive
/// timeouts (Node's is 5 s) so the proxy rarely sends on a connection the backend is closing.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// A keep-alive HTTP/1.1 client for one backend.
pub(crate) fn client(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(connector)
}

/// Accepts clients until `stop`, then lets open connections finish up to the drain timeout.
pub(crate) async fn serve(listener: TcpListener, set: Arc<BackendSet>, stop: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let force = CancellationToken::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let set = set.clone();
        let svc = service_fn(move |req| handle(set.clone(), remote, req));
        let conn = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned(),
        );
        let force = force.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(%remote, error = %e, "client connection ended with an error");
                },
                () = force.cancelled() => {}
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(set.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        force.cancel();
    }
}

/// Forwards one client request; never fails (problems become 502/503 answers).
async fn handle(
    set: Arc<BackendSet>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST) {
        // h2 carries the host in :authority; HTTP/1.1 backends need it as Host.
        if let Some(value) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, value);
        }
    }
    forwarded_for(&mut parts.headers, remote);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    let hint = body.size_hint();
    let end = body.is_end_stream();
    let slot = Arc::new(Mutex::new(Some(body)));
    let ticket = set.ticket();
    let mut tried: Vec<Arc<BackendState>> = Vec::new();
    loop {
        let chosen = if tried.len() <= MAX_RETRIES {
            set.choose(ticket, &tried)
        } else {
            None
        };
        let Some(guard) = chosen else {
            return Ok(match tried.last() {
                None => {
                    set.registry.no_backend();
                    local(StatusCode::SERVICE_UNAVAILABLE, "no backend available\n")
                }
                Some(last) => {
                    last.metrics.request();
                    last.metrics.failure();
                    local(StatusCode::BAD_GATEWAY, "no backend reachable\n")
                }
            });
        };
        let state = guard.state.clone();
        let (Some(client), Ok(uri)) = (
            state.client.as_ref(),
            Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(state.authority.clone())
                .path_and_query(path.clone())
                .build(),
        ) else {
            state.metrics.request();
            state.metrics.failure();
            return Ok(local(StatusCode::BAD_GATEWAY, "backend address unusable\n"));
        };
        let mut out = Request::new(SlotBody {
            slot: slot.clone(),
            inner: None,
            hint,
            end,
        });
        *out.method_mut() = parts.method.clone();
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = parts.headers.clone();
        let started = Instant::now();
        let result = tokio::select! {
            result = client.request(out) => Some(result),
            () = state.closed.cancelled() => None,
        };
        match result {
            Some(Ok(response)) => {
                state.metrics.request();
                state
                    .metrics
                    .response(response.status().as_u16(), started.elapsed());
                let (mut head, body) = response.into_parts();
                strip_hop_by_hop(&mut head.headers);
                let body = ProxyBody::Upstream(Upstream {
                    inner: body,
                    guard: Some(guard),
                    cut: None,
                });
                return Ok(Response::from_parts(head, body));
            }
            Some(Err(e)) => {
                let unsent = slot
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some();
                if e.is_connect() {
                    set.mark_down(&state);
                }
                if unsent && (e.is_connect() || idempotent) {
                    tracing::debug!(backend = %state.backend.id, error = %e, "retrying on another backend");
                    tried.push(state);
                    continue;
                }
                tracing::debug!(backend = %state.backend.id, error = %e, "backend exchange failed");
                state.metrics.request();
                state.metrics.failure();
                return Ok(local(StatusCode::BAD_GATEWAY, "backend failed\n"));
            }
            None => {
                state.metrics.request();
                state.metrics.failure();
                return Ok(local(
                    StatusCode::BAD_GATEWAY,
                    "backend closed while draining\n",
                ));
            }
        }
    }
}

fn local(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::Local(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// Removes headers that describe one connection, not the message (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(connection) = headers.remove(header::CONNECTION) {
        if let Ok(list) = connection.to_str() {
            for name in list
                .split(',')
                .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            {
                headers.remove(name);
            }
        }
    }
    for name in [
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn forwarded_for(headers: &mut HeaderMap, remote: SocketAddr) {
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    let ip = remote.ip().to_string();
    let value = match headers.get(&XFF).and_then(|v| v.to_str().ok()) {
        Some(previous) => format!("{previous}, {ip}"),
        None => ip,
    };
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(XFF, value);
    }
}

/// The client's request body, handed to the first attempt that actually reads it.
///
/// Until then it stays in the shared slot, so a request whose connect failed (or that was
/// never written) can be sent again to another backend with its body intact.
pub(crate) struct SlotBody {
    slot: Arc<Mutex<Option<Incoming>>>,
    inner: Option<Incoming>,
    hint: SizeHint,
    end: bool,
}

impl Body for SlotBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if this.inner.is_none() {
            this.inner = this
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
        match this.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().map_or(self.end, Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or(self.hint, Body::size_hint)
    }
}

/// What the proxy answers with: a backend's streamed body, or a short local message.
pub(crate) enum ProxyBody {
    Local(Full<Bytes>),
    Upstream(Upstream),
}

/// A backend's response body; keeps the request in flight on its backend until it ends,
/// and is cut when that backend's drain times out.
pub(crate) struct Upstream {
    inner: Incoming,
    guard: Option<InFlight>,
    /// Created only when the body has to wait, so quick responses allocate nothing.
    cut: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            ProxyBody::Upstream(up) => up.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local(full) => full.is_end_stream(),
            ProxyBody::Upstream(up) => up.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local(full) => full.size_hint(),
            ProxyBody::Upstream(up) => up.inner.size_hint(),
        }
    }
}

impl Upstream {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(guard) = &self.guard else {
            return Poll::Ready(None);
        };
        if guard.state.closed.is_cancelled() {
            self.guard = None;
            return Poll::Ready(Some(Err("backend drain timed out".into())));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                // Done: stop counting it in flight now, not when hyper drops the body.
                self.guard = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(BoxError::from))),
            Poll::Pending => {
                let closed = &guard.state.closed;
                let cut = self
                    .cut
                    .get_or_insert_with(|| Box::pin(closed.clone().cancelled_owned()));
                if cut.as_mut().poll(cx).is_ready() {
                    self.guard = None;
                    return Poll::Ready(Some(Err("backend drain timed out".into())));
                }
                Poll::Pending
            }
        }
    }
}
