//! The edge: one HTTP and one HTTPS listener shared by every project on the host, routing
//! by host name and path prefix to backend pools or redirects; TLS by SNI, ACME challenges
//! (HTTP-01 and TLS-ALPN-01), HTTP→HTTPS redirects, HSTS and client certificates per route.
//!
//! *Invariant:* like the rest of the crate it knows nothing of containers or specs: it is
//! told routes, pools and certificates. Once a route is chosen, a request is forwarded by
//! the plain proxy's own code (`http::handle`) to a [`BackendPool`], whose weights,
//! draining and metrics a rollout drives exactly as it drives a [`crate::Proxy`]'s.

pub mod routes;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::sync::CancellationToken;

use crate::error::ProxyError;
use crate::http::{self, ProxyBody};
use crate::lifecycle::Lifecycle;
use crate::workers;
use crate::BackendPool;

pub use routes::{RouteError, RouteTable};
pub use tls::{Certificate, ClientCa, TlsError, ACME_TLS_ALPN};

/// Where the edge listens and how long it waits.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Plain HTTP (ACME's HTTP-01 answers, redirects to HTTPS, plain routes); `None`: off.
    pub http: Option<SocketAddr>,
    /// HTTPS; `None`: off.
    pub https: Option<SocketAddr>,
    /// Bound on a TLS handshake (a client that says nothing is dropped).
    pub handshake_timeout: Duration,
    /// How long open connections may finish their requests at shutdown.
    pub drain_timeout: Duration,
}

impl EdgeConfig {
    /// Both listeners, a 10 s handshake bound and a 10 s drain.
    pub fn new(http: SocketAddr, https: SocketAddr) -> EdgeConfig {
        EdgeConfig {
            http: Some(http),
            https: Some(https),
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// One host and path prefix and what answers it.
#[derive(Debug, Clone)]
pub struct Route {
    /// A DNS name or `*.` wildcard (see [`routes`]).
    pub host: String,
    /// A path prefix starting with `/`; the longest matching one wins.
    pub path: String,
    pub target: Target,
    /// Whether the host is served over HTTPS (a certificate is, or will be, set for it).
    pub tls: bool,
    /// With `tls`: plain-HTTP requests get a 308 to the same URL over HTTPS.
    pub https_redirect: bool,
    /// With `tls`: `Strict-Transport-Security: max-age=N` on every HTTPS answer.
    pub hsts_max_age: Option<u64>,
    /// With `tls`: requests need a client certificate signed by this CA (403 without).
    /// The host's handshakes then ask for one; the first route of a host with a CA names it.
    pub client_ca: Option<ClientCa>,
}

/// What a route sends a request to.
#[derive(Clone)]
pub enum Target {
    Pool(BackendPool),
    /// A 308 to this URL with the request's path and query appended.
    Redirect(String),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Pool(_) => f.write_str("Pool"),
            Target::Redirect(to) => f.debug_tuple("Redirect").field(to).finish(),
        }
    }
}

/// A running edge. Cheap to clone; every clone controls the same listeners.
#[derive(Clone)]
pub struct Edge {
    shared: Arc<Shared>,
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    stop: CancellationToken,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// A route as the request path reads it.
struct Compiled {
    target: Target,
    https_redirect: bool,
    hsts: Option<HeaderValue>,
    client_auth: bool,
}

/// What every connection of the edge reads.
struct Shared {
    routes: RwLock<Arc<RouteTable<Compiled>>>,
    /// Bumped after every swap of `routes`: a connection reads the table again only when
    /// this moved, so requests share no lock or reference count on the table.
    generation: AtomicU64,
    tls: tls::TlsState,
    /// HTTP-01: token → key authorization.
    challenges: RwLock<HashMap<String, String>>,
    /// The HTTPS port redirects point at (`None`: no HTTPS listener, no redirects).
    https_port: Option<u16>,
}

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const ACME_CHALLENGE: &str = "/.well-known/acme-challenge/";

impl Edge {
    /// Binds the configured listeners and serves them on tokio tasks, with no routes yet
    /// (every request gets 404 until `set_routes`). Connections are served on the proxy's
    /// worker threads, TLS handshakes included.
    pub async fn bind(config: EdgeConfig) -> Result<Edge, ProxyError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind { addr, source })
        };
        let http_listener = match config.http {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let https_listener = match config.https {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let addr = |l: &Option<TcpListener>| -> Result<Option<SocketAddr>, ProxyError> {
            l.as_ref()
                .map(|l| l.local_addr().map_err(ProxyError::LocalAddr))
                .transpose()
        };
        let http_addr = addr(&http_listener)?;
        let https_addr = addr(&https_listener)?;
        let shared = Arc::new(Shared {
            routes: RwLock::new(Arc::new(RouteTable::default())),
            generation: AtomicU64::new(0),
            tls: tls::TlsState::new()?,
            challenges: RwLock::default(),
            https_port: https_addr.map(|a| a.port()),
        });
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for (listener, secure) in [(http_listener, false), (https_listener, true)] {
            if let Some(listener) = listener {
                tasks.push(tokio::spawn(accept(
                    listener,
                    shared.clone(),
                    secure,
                    config.clone(),
                    stop.clone(),
                )));
            }
        }
        Ok(Edge {
            shared,
            http_addr,
            https_addr,
            stop,
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }

    /// The bound HTTP address, if any (the real port when the config asked for 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The bound HTTPS address, if any.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Replaces the routing table at once. Requests already forwarded finish where they
    /// are; a refused table (a bad host or path, a host and path twice, a client CA
    /// rustls refuses) changes nothing.
    pub fn set_routes(&self, routes: Vec<Route>) -> Result<(), ProxyError> {
        let mut client_cas: Vec<(String, ClientCa)> = Vec::new();
        let mut compiled = Vec::with_capacity(routes.len());
        for r in routes {
            if let Some(ca) = &r.client_ca {
                let host = routes::normalize_host(&r.host);
                if !client_cas.iter().any(|(h, _)| *h == host) {
                    client_cas.push((host, ca.clone()));
                }
            }
            let hsts = r
                .hsts_max_age
                .and_then(|n| HeaderValue::try_from(format!("max-age={n}")).ok());
            compiled.push((
                r.host,
                r.path,
                Compiled {
                    target: r.target,
                    https_redirect: r.tls && r.https_redirect,
                    hsts: if r.tls { hsts } else { None },
                    client_auth: r.tls && r.client_ca.is_some(),
                },
            ));
        }
        let table = RouteTable::new(compiled)?;
        self.shared.tls.set_client_auth(client_cas)?;
        *self
            .shared
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
        self.shared.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Replaces every served certificate at once, by host name or `*.` wildcard: new
    /// handshakes see the new ones, open connections are not touched.
    pub fn set_certificates(&self, certs: Vec<(String, Certificate)>) {
        self.shared.tls.set_certificates(certs);
    }

    /// The certificate a handshake for `name` gets now.
    pub fn certificate(&self, name: &str) -> Option<Certificate> {
        self.shared.tls.certificate(name)
    }

    /// HTTP-01: answers `/.well-known/acme-challenge/TOKEN` on the HTTP listener with the
    /// key authorization, for any host; `None` stops.
    pub fn set_http_challenge(&self, token: &str, key_authorization: Option<String>) {
        let mut map = self
            .shared
            .challenges
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match key_authorization {
            Some(k) => map.insert(token.to_string(), k),
            None => map.remove(token),
        };
    }

    /// TLS-ALPN-01: answers handshakes for `domain` that offer only `acme-tls/1` with the
    /// challenge's certificate; `None` stops.
    pub fn set_alpn_challenge(
        &self,
        domain: &str,
        cert: Option<Certificate>,
    ) -> Result<(), ProxyError> {
        Ok(self.shared.tls.set_alpn_challenge(domain, cert)?)
    }

    /// Stops accepting, lets open connections finish up to the drain timeout, then
    /// closes them. The pools are the caller's to close.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for t in tasks {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "edge listener ended abnormally");
            }
        }
    }
}

/// Accepts on one listener until `stop`, then lets connections finish up to the drain
/// timeout.
async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    secure: bool,
    config: EdgeConfig,
    stop: CancellationToken,
) {
    let builder = http::builder();
    let life = Arc::new(Lifecycle::default());
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "edge accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            id: life.open(),
            shared: shared.clone(),
            remote,
            secure,
            handshake_timeout: config.handshake_timeout,
            builder: builder.clone(),
            life: life.clone(),
        };
        match workers::next() {
            Some(worker) => match stream.into_std() {
                Ok(stream) => {
                    worker.spawn(async move {
                        match TcpStream::from_std(stream) {
                            Ok(stream) => conn.serve(stream).await,
                            Err(e) => conn.drop_with(&e),
                        }
                    });
                }
                Err(e) => conn.drop_with(&e),
            },
            None => {
                tokio::spawn(conn.serve(stream));
            }
        }
    }
    drop(listener);
    life.stop();
    if tokio::time::timeout(config.drain_timeout, life.closed())
        .await
        .is_err()
    {
        life.force();
    }
}

/// One accepted connection.
struct Conn {
    id: u64,
    shared: Arc<Shared>,
    remote: SocketAddr,
    secure: bool,
    handshake_timeout: Duration,
    builder: auto::Builder<TokioExecutor>,
    life: Arc<Lifecycle>,
}

/// What a request needs to know of its connection.
struct Peer {
    shared: Arc<Shared>,
    client_ip: HeaderValue,
    secure: bool,
    /// A client certificate was given and verified in the handshake.
    client_cert: bool,
    /// The table this connection routed with last, and its generation.
    table: Mutex<(u64, Arc<RouteTable<Compiled>>)>,
}

impl Peer {
    fn new(shared: Arc<Shared>, client_ip: HeaderValue, secure: bool, client_cert: bool) -> Peer {
        let table = Mutex::new((u64::MAX, Arc::new(RouteTable::default())));
        Peer {
            shared,
            client_ip,
            secure,
            client_cert,
            table,
        }
    }
}

impl Conn {
    async fn serve(self, stream: TcpStream) {
        let client_ip = HeaderValue::try_from(self.remote.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        if !self.secure {
            let peer = Peer::new(self.shared.clone(), client_ip, false, false);
            return self.run(TokioIo::new(stream), peer).await;
        }
        let shared = self.shared.clone();
        let handshake = async move {
            let start =
                LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
            let config = shared.tls.config_for(&start.client_hello());
            start.into_stream(config).await
        };
        let stream = match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return self.drop_with(&e),
            Err(_) => {
                return self.drop_with(&std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ))
            }
        };
        let session = stream.get_ref().1;
        if session.alpn_protocol() == Some(ACME_TLS_ALPN) {
            // The handshake itself was the TLS-ALPN-01 answer.
            self.life.forget(self.id);
            return;
        }
        let client_cert = session.peer_certificates().is_some_and(|c| !c.is_empty());
        let peer = Peer::new(self.shared.clone(), client_ip, true, client_cert);
        self.run(TokioIo::new(stream), peer).await;
    }

    async fn run<I>(self, io: TokioIo<I>, peer: Peer)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            id, builder, life, ..
        } = self;
        let peer = Arc::new(peer);
        let svc = service_fn(move |req| dispatch(peer.clone(), req));
        let conn = builder.serve_connection_with_upgrades(io, svc);
        life.serve(id, conn, |c| c.graceful_shutdown()).await;
    }

    fn drop_with(self, e: &std::io::Error) {
        tracing::debug!(remote = %self.remote, error = %e, "edge connection dropped");
        self.life.forget(self.id);
    }
}

/// What the table says of a request: an answer the edge gives itself, or the pool to
/// forward it to.
enum Decision {
    Answer(Response<ProxyBody>),
    Forward {
        set: Arc<crate::backends::BackendSet>,
        hsts: Option<HeaderValue>,
    },
}

/// Routes one request; never fails (no route is a 404).
async fn dispatch(
    peer: Arc<Peer>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    match decide(&peer, &req) {
        Decision::Answer(response) => Ok(response),
        Decision::Forward { set, hsts } => {
            let proto = if peer.secure { "https" } else { "http" };
            req.headers_mut()
                .insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
            let mut response = match http::handle(set, peer.client_ip.clone(), req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if let Some(hsts) = hsts {
                response
                    .headers_mut()
                    .insert(header::STRICT_TRANSPORT_SECURITY, hsts);
            }
            Ok(response)
        }
    }
}

/// The route of a request, looked up in the connection's copy of the table.
fn decide(peer: &Peer, req: &Request<Incoming>) -> Decision {
    let shared = &peer.shared;
    if !peer.secure {
        if let Some(token) = req.uri().path().strip_prefix(ACME_CHALLENGE) {
            let answer = shared
                .challenges
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(token)
                .cloned();
            if let Some(key_authorization) = answer {
                return Decision::Answer(text(StatusCode::OK, key_authorization));
            }
        }
    }
    let mut cached = peer.table.lock().unwrap_or_else(PoisonError::into_inner);
    let generation = shared.generation.load(Ordering::Acquire);
    if cached.0 != generation {
        let table = shared
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        *cached = (generation, table);
    }
    let host = request_host(req).unwrap_or_default();
    let Some(route) = cached.1.lookup(host, req.uri().path()) else {
        return Decision::Answer(http::local(
            StatusCode::NOT_FOUND,
            "no route for this host and path\n",
        ));
    };
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if !peer.secure && route.https_redirect {
        if let Some(port) = shared.https_port {
            return Decision::Answer(redirect(&https_url(host, port, path_and_query)));
        }
    }
    let hsts = if peer.secure {
        route.hsts.clone()
    } else {
        None
    };
    let mut answer = if peer.secure && route.client_auth && !peer.client_cert {
        http::local(
            StatusCode::FORBIDDEN,
            "this route needs a client certificate\n",
        )
    } else {
        match &route.target {
            Target::Redirect(base) => redirect(&join_url(base, path_and_query)),
            Target::Pool(pool) => {
                return Decision::Forward {
                    set: pool.set.clone(),
                    hsts,
                }
            }
        }
    };
    if let Some(hsts) = hsts {
        answer
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, hsts);
    }
    Decision::Answer(answer)
}

/// The host a request is for: its `Host` header, or the URI's authority (HTTP/2).
fn request_host(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// `https://HOST[:PORT]PATH` for a request that came to `host` (its port dropped).
fn https_url(host: &str, https_port: u16, path_and_query: &str) -> String {
    let name = routes::strip_port(host);
    if https_port == 443 {
        format!("https://{name}{path_and_query}")
    } else {
        format!("https://{name}:{https_port}{path_and_query}")
    }
}

/// `base` with the request's path and query appended (`https://a.test` + `/x?y`).
fn join_url(base: &str, path_and_query: &str) -> String {
    let base = base.strip_suffix('/').unwrap_or(base);
    format!("{base}{path_and_query}")
}

fn redirect(location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::Local(Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(value) = HeaderValue::try_from(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::Local(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_urls_keep_the_path_and_query_and_name_a_non_default_port() {
        assert_eq!(
            https_url("shop.test", 443, "/a?b=1"),
            "https://shop.test/a?b=1"
        );
        assert_eq!(
            https_url("shop.test:8080", 8443, "/"),
            "https://shop.test:8443/"
        );
        assert_eq!(https_url("[::1]:80", 443, "/"), "https://[::1]/");
        assert_eq!(
            join_url("https://shop.test", "/cart?x"),
            "https://shop.test/cart?x"
        );
        assert_eq!(join_url("https://shop.test/", "/"), "https://shop.test/");
    }
}
