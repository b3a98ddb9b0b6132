//! HTTP mode: serve HTTP/1.1 and h2c from clients, forward each request over a keep-alive
//! connection to a chosen backend, retrying requests that never reached one; bodies stream
//! both ways. The backend connection is driven by the client request's own task (see
//! `upstream`), so a request costs no task switch or channel hop inside the proxy.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::backends::{BackendSet, BackendState, InFlight};
use crate::h1::{Framing, ResponseHead};
use crate::lifecycle::Lifecycle;
use crate::upstream::{Conn, Outgoing, SendError};
use crate::workers;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Attempts after the first for a request that never reached a backend.
const MAX_RETRIES: usize = 2;

/// Accepts clients until `stop`, then lets open connections finish up to the drain timeout.
pub(crate) async fn serve(listener: TcpListener, set: Arc<BackendSet>, stop: CancellationToken) {
    let builder = builder();
    let life = Arc::new(Lifecycle::default());
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
        let client = Client {
            id: life.open(),
            set: set.clone(),
            remote,
            builder: builder.clone(),
            life: life.clone(),
        };
        // The connection moves to a worker thread (its socket registered there), where it
        // stays with the backend connections it uses.
        match workers::next() {
            Some(worker) => match stream.into_std() {
                Ok(stream) => {
                    worker.spawn(async move {
                        match TcpStream::from_std(stream) {
                            Ok(stream) => client.serve(stream).await,
                            Err(e) => client.drop_with(&e),
                        }
                    });
                }
                Err(e) => client.drop_with(&e),
            },
            None => {
                tokio::spawn(client.serve(stream));
            }
        }
    }
    drop(listener);
    life.stop();
    if tokio::time::timeout(set.drain_timeout, life.closed())
        .await
        .is_err()
    {
        life.force();
    }
}

/// How client connections are served: HTTP/1.1 with keep-alive, or h2 (prior knowledge,
/// or chosen by TLS's ALPN at the edge), with upgrades.
pub(crate) fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// One accepted client connection and what serving it needs.
struct Client {
    id: u64,
    set: Arc<BackendSet>,
    remote: SocketAddr,
    builder: auto::Builder<TokioExecutor>,
    life: Arc<Lifecycle>,
}

impl Client {
    async fn serve(self, stream: TcpStream) {
        let Client {
            id,
            set,
            remote,
            builder,
            life,
        } = self;
        // Formatted once per connection, not per request.
        let client_ip = HeaderValue::try_from(remote.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let svc = service_fn(move |req| handle(set.clone(), client_ip.clone(), req));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
        life.serve(id, conn, |c| c.graceful_shutdown()).await;
    }

    fn drop_with(self, e: &std::io::Error) {
        tracing::debug!(remote = %self.remote, error = %e, "cannot hand a client connection to a worker");
        self.life.forget(self.id);
    }
}

/// Forwards one client request; never fails (problems become 502/503 answers).
pub(crate) async fn handle(
    set: Arc<BackendSet>,
    client_ip: HeaderValue,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = req.into_parts();
    // An HTTP/1.1 protocol upgrade (WebSocket) keeps its two hop-by-hop headers.
    let upgrade = upgrade_request(&parts);
    strip_hop_by_hop(&mut parts.headers);
    let on_upgrade = match upgrade {
        Some(protocol) => {
            parts.headers.insert(header::UPGRADE, protocol);
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.extensions.remove::<OnUpgrade>()
        }
        None => None,
    };
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
    forwarded_for(&mut parts.headers, client_ip);
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    let mut req = Outgoing {
        method: parts.method,
        // Origin-form: the connection already goes to the backend.
        target: parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        headers: parts.headers,
        body: SlotBody::new(body),
    };
    let mut ticket = None;
    let mut tried: Vec<Arc<BackendState>> = Vec::new();
    loop {
        let chosen = if tried.len() <= MAX_RETRIES {
            set.choose(&mut ticket, &tried)
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
        if !req.headers.contains_key(header::HOST) {
            if let Ok(host) = HeaderValue::from_str(state.authority.as_str()) {
                req.headers.insert(header::HOST, host);
            }
        }
        // A pooled connection the backend closed while idle fails without sending anything;
        // such a request goes again on a fresh connection to the same backend, like a connect.
        let mut fresh = false;
        // Latency to response headers, connecting included.
        let started = Instant::now();
        let outcome = loop {
            let conn = if fresh { None } else { checkout(&state).await };
            let mut conn = match conn {
                Some(conn) => conn,
                // Boxed: a cold path that would otherwise enlarge every request's future.
                None => match Box::pin(Conn::open(state.backend.addr, set.connect_timeout)).await {
                    Ok(conn) => conn,
                    Err(e) => break Outcome::ConnectFailed(e),
                },
            };
            let result = {
                let exchange = conn.send(&mut req);
                // On the stack, and registered only if the answer is not there at once.
                let timeout = tokio::time::sleep(set.response_timeout);
                tokio::pin!(exchange, timeout);
                tokio::select! {
                    biased;
                    () = state.closed.cancelled() => None,
                    result = &mut exchange => Some(result),
                    () = &mut timeout => break Outcome::TimedOut,
                }
            };
            match result {
                Some(Ok(head)) => break Outcome::Response(head, conn),
                Some(Err(SendError::Unsent(e))) if !fresh => {
                    tracing::debug!(backend = %state.backend.id, error = %e, "pooled connection was closed, reconnecting");
                    fresh = true;
                }
                Some(Err(SendError::Unsent(e))) => break Outcome::Failed(false, e),
                Some(Err(SendError::Sent(e))) => break Outcome::Failed(true, e),
                None => break Outcome::Cut,
            }
        };
        match outcome {
            Outcome::Response(head, conn) => {
                state.metrics.request();
                state
                    .metrics
                    .response(head.status.as_u16(), started.elapsed());
                if head.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Ok(switch(head, conn, guard, on_upgrade));
                }
                let mut headers = head.headers;
                strip_hop_by_hop(&mut headers);
                let mut response =
                    Response::new(ProxyBody::Upstream(Upstream::new(conn, head.body, guard)));
                *response.status_mut() = head.status;
                *response.headers_mut() = headers;
                return Ok(response);
            }
            Outcome::ConnectFailed(e) => {
                set.mark_down(&state);
                tracing::debug!(backend = %state.backend.id, error = %e, "connect failed, retrying on another backend");
                tried.push(state);
            }
            Outcome::Failed(sent, e) => {
                // Nothing written: safe to send again whatever the method. Written but
                // unanswered: again only if idempotent and no body was read.
                if req.body.untouched() && (!sent || idempotent) {
                    tracing::debug!(backend = %state.backend.id, error = %e, "retrying on another backend");
                    tried.push(state);
                } else {
                    tracing::debug!(backend = %state.backend.id, error = %e, "backend exchange failed");
                    state.metrics.request();
                    state.metrics.failure();
                    return Ok(local(StatusCode::BAD_GATEWAY, "backend failed\n"));
                }
            }
            Outcome::TimedOut => {
                // Not sent again: a replica this slow is likely overloaded, and the
                // request may still be running there.
                tracing::debug!(backend = %state.backend.id, "no response head in time");
                state.metrics.request();
                state.metrics.failure();
                return Ok(local(
                    StatusCode::GATEWAY_TIMEOUT,
                    "backend did not answer in time\n",
                ));
            }
            Outcome::Cut => {
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

/// The protocol an HTTP/1.1 request asks to switch to (`Connection: upgrade` with an
/// `Upgrade` header), if any.
fn upgrade_request(parts: &hyper::http::request::Parts) -> Option<HeaderValue> {
    if parts.version != Version::HTTP_11 {
        return None;
    }
    let asks = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// A backend switched protocols: the 101 goes to the client and, once hyper hands over
/// the client's connection, bytes flow both ways between it and the backend's until
/// either side closes or the backend's drain times out. The tunnel counts as in flight.
fn switch(
    head: ResponseHead,
    conn: Box<Conn>,
    guard: InFlight,
    on_upgrade: Option<OnUpgrade>,
) -> Response<ProxyBody> {
    let Some(on_upgrade) = on_upgrade else {
        tracing::debug!(backend = %guard.state.backend.id, "backend switched protocols unasked");
        guard.state.metrics.failure();
        return local(
            StatusCode::BAD_GATEWAY,
            "backend switched protocols unasked\n",
        );
    };
    tokio::spawn(async move {
        let mut client = match on_upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => {
                tracing::debug!(error = %e, "client connection was not handed over");
                return;
            }
        };
        let (mut backend, early) = conn.into_parts();
        let state = guard.state.clone();
        let tunnel = async {
            // What the backend sent right after its 101 came in with the head.
            if !early.is_empty() {
                client.write_all(&early).await?;
            }
            tokio::io::copy_bidirectional(&mut client, &mut backend).await
        };
        tokio::select! {
            result = tunnel => {
                if let Err(e) = result {
                    tracing::debug!(backend = %state.backend.id, error = %e, "tunnel ended");
                }
            }
            () = state.closed.cancelled() => {}
        }
        drop(guard);
    });
    let mut response = Response::new(ProxyBody::Local(Full::new(Bytes::new())));
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

/// How one attempt on a chosen backend ended.
enum Outcome {
    Response(ResponseHead, Box<Conn>),
    /// No connection could be opened.
    ConnectFailed(std::io::Error),
    /// The exchange failed; `true` when the request (or part of it) was written.
    Failed(bool, std::io::Error),
    /// No response head within the response timeout.
    TimedOut,
    /// The backend's drain timed out.
    Cut,
}

/// An idle connection to `state` ready for a request, if the pool has one.
async fn checkout(state: &BackendState) -> Option<Box<Conn>> {
    while let Some(mut conn) = state.pool.take() {
        if poll_fn(|cx| Poll::Ready(conn.ready(cx))).await {
            return Some(conn);
        }
    }
    None
}

pub(crate) fn local(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
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
    // Most messages carry none of them: one pass over the names instead of seven lookups.
    let hop = |n: &HeaderName| {
        n == header::CONNECTION
            || n == header::TE
            || n == header::TRAILER
            || n == header::TRANSFER_ENCODING
            || n == header::UPGRADE
            || n.as_str() == "keep-alive"
            || n.as_str() == "proxy-connection"
    };
    if !headers.keys().any(hop) {
        return;
    }
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

fn forwarded_for(headers: &mut HeaderMap, client_ip: HeaderValue) {
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&XFF).and_then(|v| v.to_str().ok()) {
        Some(previous) => {
            let ip = client_ip.to_str().unwrap_or("unknown");
            match HeaderValue::try_from(format!("{previous}, {ip}")) {
                Ok(value) => value,
                Err(_) => return,
            }
        }
        None => client_ip,
    };
    headers.insert(XFF, value);
}

/// The client's request body; remembers whether an attempt started reading it (after
/// that, the request cannot be sent to another backend).
pub(crate) struct SlotBody {
    inner: Incoming,
    touched: bool,
}

impl SlotBody {
    fn new(inner: Incoming) -> SlotBody {
        SlotBody {
            inner,
            touched: false,
        }
    }

    /// True while no attempt has started reading the body.
    fn untouched(&self) -> bool {
        !self.touched
    }
}

impl Body for SlotBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        this.touched = true;
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the proxy answers with: a backend's streamed body, or a short local message.
pub(crate) enum ProxyBody {
    Local(Full<Bytes>),
    Upstream(Upstream),
}

/// A backend's response body, read from its connection by the client's task; keeps the
/// request in flight on its backend until it ends, then hands the connection back to the
/// pool, and is cut when that backend's drain times out.
pub(crate) struct Upstream {
    conn: Option<Box<Conn>>,
    body: Framing,
    guard: Option<InFlight>,
    /// Created only when the body has to wait, so quick responses allocate nothing.
    cut: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
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
            ProxyBody::Upstream(up) => up.guard.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local(full) => full.size_hint(),
            ProxyBody::Upstream(up) if up.guard.is_none() => SizeHint::with_exact(0),
            ProxyBody::Upstream(up) => match up.body {
                Framing::Empty => SizeHint::with_exact(0),
                Framing::Length(n) => SizeHint::with_exact(n),
                Framing::Chunked(_) | Framing::UntilClose => SizeHint::default(),
            },
        }
    }
}

impl Upstream {
    fn new(conn: Box<Conn>, body: Framing, guard: InFlight) -> Upstream {
        let mut up = Upstream {
            conn: Some(conn),
            body,
            guard: Some(guard),
            cut: None,
        };
        if up.body == Framing::Empty {
            up.finish();
        }
        up
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (Some(guard), Some(conn)) = (&self.guard, &mut self.conn) else {
            return Poll::Ready(None);
        };
        if guard.state.closed.is_cancelled() {
            return self.cut();
        }
        match conn.poll_body(cx, &mut self.body) {
            Poll::Ready(Ok(Some(data))) => {
                if self.body == Framing::Empty {
                    self.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Ok(None)) => {
                self.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(backend = %guard.state.backend.id, error = %e, "backend response body failed");
                self.conn = None;
                self.guard = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => {
                let state = guard.state.clone();
                let cut = self
                    .cut
                    .get_or_insert_with(|| Box::pin(async move { state.closed.cancelled().await }));
                if cut.as_mut().poll(cx).is_ready() {
                    return self.cut();
                }
                Poll::Pending
            }
        }
    }

    /// The body has been read to its end: the connection goes back to the pool and the
    /// request stops counting as in flight now, not when hyper drops the body.
    fn finish(&mut self) {
        if let (Some(conn), Some(guard)) = (self.conn.take(), self.guard.take()) {
            guard.state.pool.put(conn);
        }
    }

    fn cut(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.guard = None;
        Poll::Ready(Some(Err("backend drain timed out".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_stripped_and_others_kept() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-secret, close"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        let mut names: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["host", "x-kept"]);
        let mut plain = HeaderMap::new();
        plain.insert(header::HOST, HeaderValue::from_static("example"));
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.len(), 1);
    }

    #[test]
    fn forwarded_for_appends_to_a_previous_chain() {
        let mut h = HeaderMap::new();
        forwarded_for(&mut h, HeaderValue::from_static("10.0.0.1"));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        forwarded_for(&mut h, HeaderValue::from_static("10.0.0.2"));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2");
    }
}
