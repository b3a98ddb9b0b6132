//! Runs baton's edge from the command line, for benchmarks and manual trials: one host
//! routed over HTTPS (and plain HTTP) to a round-robin pool of backends.
//! Usage: `cargo run --release --example edge -- HTTP HTTPS HOST CERT KEY BACKEND...`

use std::net::SocketAddr;

use baton_proxy::edge::{Certificate, Edge, EdgeConfig, Route, Target};
use baton_proxy::{Backend, BackendPool, PoolConfig};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        eprintln!("usage: edge HTTP HTTPS HOST CERT KEY BACKEND...   (addresses as ip:port)");
        std::process::exit(64);
    }
    let addr = |s: &str| -> SocketAddr {
        s.parse().unwrap_or_else(|_| {
            eprintln!("edge: {s:?} is not an ip:port");
            std::process::exit(64)
        })
    };
    let (http, https, host) = (addr(&args[0]), addr(&args[1]), args[2].clone());
    let read = |p: &str| {
        std::fs::read(p).unwrap_or_else(|e| {
            eprintln!("edge: cannot read {p}: {e}");
            std::process::exit(1)
        })
    };
    let cert = match Certificate::from_pem(&read(&args[3]), &read(&args[4])) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edge: {}: {e}", args[3]);
            std::process::exit(1)
        }
    };
    let edge = match Edge::bind(EdgeConfig::new(http, https)).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("edge: {e}");
            std::process::exit(1)
        }
    };
    let pool = BackendPool::new(&PoolConfig::http());
    pool.set_backends(
        args[5..]
            .iter()
            .enumerate()
            .map(|(i, a)| Backend::new(format!("b{i}"), addr(a), "v1"))
            .collect(),
    );
    edge.set_certificates(vec![(host.clone(), cert)]);
    let routed = edge.set_routes(vec![Route {
        host: host.clone(),
        path: "/".into(),
        target: Target::Pool(pool.clone()),
        tls: true,
        // Plain HTTP is served too (the benchmark compares both listeners).
        https_redirect: false,
        hsts_max_age: None,
        client_ca: None,
    }]);
    if let Err(e) = routed {
        eprintln!("edge: {e}");
        std::process::exit(1);
    }
    eprintln!("edge: {host} on http {http} and https {https}");
    stopped().await;
    let metrics = pool.metrics();
    edge.shutdown().await;
    match serde_json::to_string_pretty(&metrics) {
        Ok(json) => eprintln!("{json}"),
        Err(e) => eprintln!("edge: cannot print metrics: {e}"),
    }
}

/// Ctrl-C or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
