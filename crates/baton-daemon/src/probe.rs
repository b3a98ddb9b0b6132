//! baton's own health checks (`x-baton.healthcheck`): the daemon probes each running
//! replica from the host, keeps a `ProbeTracker` per container, and folds the verdict
//! into the observed health, so the supervisor replaces replicas that stay unhealthy
//! and the proxy and rollouts only route to replicas that pass.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use baton_engine::health::{combine, probe_spec, Probe, ProbeSpec, ProbeTracker, Transition};
use baton_engine::runtime::{ContainerState, Observed};
use baton_spec::Project;
use futures_util::future::join_all;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Probe trackers by container id.
#[derive(Default)]
pub struct Prober {
    trackers: BTreeMap<String, ProbeTracker>,
}

/// A health change worth an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub container_id: String,
    pub container: String,
    pub healthy: bool,
    pub message: String,
}

impl Prober {
    /// Probes the replicas that are due, then rewrites their health in `observed`.
    /// Returns the health changes seen this time.
    pub async fn observe(
        &mut self,
        project: &Project,
        observed: &mut Observed,
        now_ms: u64,
    ) -> Vec<HealthEvent> {
        let specs: BTreeMap<&str, ProbeSpec> = project
            .services
            .iter()
            .filter_map(|(n, s)| Some((n.as_str(), probe_spec(s).ok()??)))
            .collect();
        let mut due = Vec::new();
        for c in &observed.containers {
            let Some(spec) = specs.get(c.service.as_str()) else {
                continue;
            };
            if c.state != ContainerState::Running {
                // A stopped replica starts its history over when it runs again.
                self.trackers.remove(&c.id);
                continue;
            }
            let tracker = self
                .trackers
                .entry(c.id.clone())
                .or_insert_with(|| ProbeTracker::new(now_ms));
            if !tracker.due(spec, now_ms) {
                continue;
            }
            let ip: Option<IpAddr> = c.addresses.values().find_map(|a| a.parse().ok());
            due.push((c.id.clone(), c.name.clone(), spec.clone(), ip));
        }
        let results = join_all(due.iter().map(|(_, _, spec, ip)| async move {
            match ip {
                Some(ip) => probe(spec, *ip).await,
                None => Err("the container has no address to probe".to_string()),
            }
        }))
        .await;
        let mut events = Vec::new();
        for ((id, name, spec, _), result) in due.into_iter().zip(results) {
            let Some(tracker) = self.trackers.get_mut(&id) else {
                continue;
            };
            let (healthy, message) = match tracker.record(&spec, result, now_ms) {
                Transition::None => continue,
                Transition::BecameHealthy => (true, "health check passing: healthy".to_string()),
                Transition::BecameUnhealthy(e) => (
                    false,
                    format!(
                        "health check failed {} times in a row: unhealthy ({e})",
                        spec.retries
                    ),
                ),
            };
            events.push(HealthEvent {
                container_id: id,
                container: name,
                healthy,
                message,
            });
        }
        let live: BTreeSet<&str> = observed.containers.iter().map(|c| c.id.as_str()).collect();
        self.trackers.retain(|id, _| live.contains(id.as_str()));
        for c in &mut observed.containers {
            if let Some(t) = self.trackers.get(&c.id) {
                c.health = combine(c.health, t.health());
            }
        }
        events
    }
}

/// One probe of one replica.
pub async fn probe(spec: &ProbeSpec, ip: IpAddr) -> Result<(), String> {
    let timeout = Duration::from_millis(spec.timeout_ms);
    let work = async {
        match &spec.probe {
            Probe::Tcp { port } => TcpStream::connect(SocketAddr::new(ip, *port))
                .await
                .map(drop)
                .map_err(|e| format!("tcp {port}: {e}")),
            Probe::Http { path, port, status } => http_get(ip, *port, path, *status).await,
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", spec.timeout_ms)),
    }
}

async fn http_get(ip: IpAddr, port: u16, path: &str, ok: (u16, u16)) -> Result<(), String> {
    let what = format!("GET {path} on port {port}");
    let stream = TcpStream::connect(SocketAddr::new(ip, port))
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    let conn = tokio::spawn(conn);
    let host = SocketAddr::new(ip, port).to_string();
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "baton-healthcheck")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("{what}: {e}"))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("{what}: {e}"));
    conn.abort();
    let code = res?.status().as_u16();
    if (ok.0..=ok.1).contains(&code) {
        Ok(())
    } else {
        Err(format!("{what}: status {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn spec(probe: Probe) -> ProbeSpec {
        ProbeSpec {
            probe,
            interval_ms: 1000,
            timeout_ms: 1000,
            retries: 1,
            start_period_ms: 0,
        }
    }

    /// A one-shot HTTP server answering every request with `status`.
    async fn server(status: u16) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let body = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                let _ = s.write_all(body.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn http_status_decides_and_tcp_needs_a_listener() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let good = server(204).await;
        let bad = server(503).await;
        let http = |port| {
            spec(Probe::Http {
                path: "/healthz".into(),
                port,
                status: (200, 399),
            })
        };
        assert_eq!(probe(&http(good), ip).await, Ok(()));
        let e = probe(&http(bad), ip).await.unwrap_err();
        assert!(e.contains("status 503"), "{e}");
        assert_eq!(probe(&spec(Probe::Tcp { port: good }), ip).await, Ok(()));
        // A port nobody listens on.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(probe(&spec(Probe::Tcp { port: closed }), ip).await.is_err());
        assert!(probe(&http(closed), ip).await.is_err());
    }
}
