//! A tiny keep-alive HTTP backend for benchmarks: answers every request with a short body.
//! Usage: `cargo run --release --example backend -- PORT [ADDRESS]` (default 127.0.0.1;
//! `bench/proxy-with-dashboards.sh` builds it static and runs it in the replicas on
//! 0.0.0.0).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port = args.next().and_then(|p| p.parse::<u16>().ok());
    let ip = match args.next() {
        None => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Some(a) => a.parse::<IpAddr>().ok(),
    };
    let (Some(port), Some(ip)) = (port, ip) else {
        eprintln!("usage: backend PORT [ADDRESS]");
        std::process::exit(64);
    };
    let addr = SocketAddr::new(ip, port);
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("backend: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let body = Bytes::from(format!("hello from backend {port}\n"));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
            let body = body.clone();
            async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
        });
        tokio::spawn(async move {
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
