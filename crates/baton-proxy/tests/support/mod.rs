//! In-process HTTP and TCP backends and a keep-alive client for the proxy tests.
//! Backends answer with their id; paths `/hold`, `/echo` and `/headers` add behaviour.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton_proxy::{Backend, Balance, Protocol, Proxy, ProxyConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

/// Fails the test instead of hanging when `fut` takes unreasonably long.
pub async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test exceeded its time bound")
}

/// Polls `cond` until it holds (bounded by the caller's `bounded`).
pub async fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[derive(Clone, Copy)]
pub enum Behaviour {
    Ok,
    /// Every answer is a 500.
    Fail,
    /// Sleeps before answering.
    Sleep(Duration),
}

pub struct TestBackend {
    pub id: String,
    pub addr: SocketAddr,
    /// Requests received.
    pub hits: Arc<AtomicU64>,
    /// `/hold` requests waiting for `release`.
    pub held: Arc<AtomicU64>,
    /// Client connections open now.
    pub open: Arc<AtomicU64>,
    gate: Arc<Semaphore>,
    task: JoinHandle<()>,
}

impl TestBackend {
    pub async fn start(id: &str, behaviour: Behaviour) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let hits = Arc::new(AtomicU64::new(0));
        let held = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let open = Arc::new(AtomicU64::new(0));
        let counter = open.clone();
        let ctx = Arc::new(Ctx {
            id: id.to_owned(),
            behaviour,
            hits: hits.clone(),
            held: held.clone(),
            gate: gate.clone(),
        });
        let task = tokio::spawn(async move {
            // Owned here so aborting this task kills every open connection too.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let ctx = ctx.clone();
                let svc = service_fn(move |req| answer(ctx.clone(), req));
                let counter = counter.clone();
                counter.fetch_add(1, Ordering::SeqCst);
                conns.spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    counter.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        TestBackend {
            id: id.to_owned(),
            addr,
            hits,
            held,
            open,
            gate,
            task,
        }
    }

    pub fn backend(&self, revision: &str) -> Backend {
        Backend::new(&self.id, self.addr, revision)
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }

    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets `n` held requests answer.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Kills the listener and every open connection, like a crashed container.
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Ctx {
    id: String,
    behaviour: Behaviour,
    hits: Arc<AtomicU64>,
    held: Arc<AtomicU64>,
    gate: Arc<Semaphore>,
}

async fn answer(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    ctx.hits.fetch_add(1, Ordering::SeqCst);
    let body = match req.uri().path() {
        "/hold" => {
            ctx.held.fetch_add(1, Ordering::SeqCst);
            if let Ok(permit) = ctx.gate.acquire().await {
                permit.forget();
            }
            Bytes::from(ctx.id.clone())
        }
        "/echo" => req.into_body().collect().await?.to_bytes(),
        "/headers" => {
            let h = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            Bytes::from(format!(
                "{} {} xff={} x-test={} host={}",
                req.method(),
                req.uri(),
                h("x-forwarded-for"),
                h("x-test"),
                h("host")
            ))
        }
        _ => Bytes::from(ctx.id.clone()),
    };
    let mut response = Response::new(Full::new(body));
    match ctx.behaviour {
        Behaviour::Ok => {}
        Behaviour::Fail => *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
        Behaviour::Sleep(d) => tokio::time::sleep(d).await,
    }
    Ok(response)
}

/// A TCP echo server; returns its address and the task (abort to kill).
pub async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            conns.spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

pub fn config(protocol: Protocol, balance: Balance, drain_timeout: Duration) -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        protocol,
        balance,
        drain_timeout,
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(60),
    }
}

pub async fn http_proxy(balance: Balance) -> Proxy {
    Proxy::bind(config(Protocol::Http, balance, Duration::from_secs(30)))
        .await
        .expect("bind proxy")
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

/// HTTP/1.1 keep-alive client.
pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// HTTP/2 prior-knowledge client.
pub fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends a request and returns status and body; transport errors become status 0.
pub async fn send(
    client: &TestClient,
    proxy: SocketAddr,
    method: &str,
    path: &str,
    body: Bytes,
) -> (u16, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{proxy}{path}"))
        .header("x-test", "kept")
        .body(Full::new(body))
        .expect("request");
    match client.request(req).await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.into_body().collect().await {
                Ok(body) => (status, body.to_bytes()),
                Err(_) => (0, Bytes::new()),
            }
        }
        Err(_) => (0, Bytes::new()),
    }
}

pub async fn get(client: &TestClient, proxy: SocketAddr, path: &str) -> (u16, String) {
    let (status, body) = send(client, proxy, "GET", path, Bytes::new()).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}
