//! Runs a baton proxy from the command line, for benchmarks and manual trials.
//! Usage: `cargo run --release --example proxy -- LISTEN BACKEND... [--tcp] [--least-conn]`

use std::net::SocketAddr;
use std::time::Duration;

use baton_proxy::{Backend, Balance, Protocol, Proxy, ProxyConfig};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = |f: &str| args.iter().any(|a| a == f);
    let addrs: Vec<SocketAddr> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .filter_map(|a| a.parse().ok())
        .collect();
    if addrs.len() < 2 || addrs.len() != args.iter().filter(|a| !a.starts_with("--")).count() {
        eprintln!("usage: proxy LISTEN BACKEND... [--tcp] [--least-conn]   (addresses as ip:port)");
        std::process::exit(64);
    }
    let config = ProxyConfig {
        listen: addrs[0],
        protocol: if flags("--tcp") {
            Protocol::Tcp
        } else {
            Protocol::Http
        },
        balance: if flags("--least-conn") {
            Balance::LeastConnections
        } else {
            Balance::RoundRobin
        },
        drain_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(60),
    };
    let proxy = match Proxy::bind(config).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("proxy: {e}");
            std::process::exit(1);
        }
    };
    let backends = addrs[1..]
        .iter()
        .enumerate()
        .map(|(i, a)| Backend::new(format!("b{i}"), *a, "v1"))
        .collect();
    proxy.set_backends(backends);
    eprintln!("proxy: listening on {}", proxy.local_addr());
    stopped().await;
    let metrics = proxy.metrics();
    proxy.shutdown().await;
    match serde_json::to_string_pretty(&metrics) {
        Ok(json) => eprintln!("{json}"),
        Err(e) => eprintln!("proxy: cannot print metrics: {e}"),
    }
}

/// Ctrl-C or SIGTERM.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
