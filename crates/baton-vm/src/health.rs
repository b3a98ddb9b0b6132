//! A VM's health as the host sees it: a TCP connect, or an HTTP GET answered with 2xx
//! or 3xx, on the host side of one of its forwarded ports, or the QEMU guest agent
//! answering on its channel (`healthcheck:` in the file). `Verdict` is the pure
//! bookkeeping of retries and the start period.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::spec::{HealthCheck, Probe, VmSpec};

/// One check of the VM whose directory is `dir`, bounded by the check's timeout. `Err`
/// says why it failed.
pub async fn probe(spec: &VmSpec, dir: &Path) -> Result<(), String> {
    let Some(check) = &spec.healthcheck else {
        return Err(format!("VM {} has no healthcheck", spec.name));
    };
    let timeout = Duration::from_millis(check.timeout_ms);
    if check.probe == Probe::Agent {
        let socket = crate::qemu::Paths::new(dir).qga;
        return match tokio::time::timeout(timeout, agent(&socket)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the guest agent did not answer within {timeout:?} (is qemu-ga running in the guest?)"
            )),
        };
    }
    let Some((ip, port)) = spec.health_target() else {
        return Err(format!("VM {} has no forward to check", spec.name));
    };
    match tokio::time::timeout(timeout, attempt(check, &ip, port)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer from {ip}:{port} within {timeout:?}")),
    }
}

/// The guest agent's protocol: `guest-sync` with a fresh id (answers still queued from
/// an earlier, abandoned exchange are skipped until that id comes back), then
/// `guest-ping`, which answers `{"return": {}}`.
async fn agent(socket: &Path) -> Result<(), String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("the guest agent's channel {}: {e}", socket.display()))?;
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read.take(1 << 20)).lines();
    let id = u64::from(std::process::id()) << 20
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64 & 0xfffff);
    let sync = format!("{{\"execute\":\"guest-sync\",\"arguments\":{{\"id\":{id}}}}}\n");
    write
        .write_all(sync.as_bytes())
        .await
        .map_err(|e| format!("the guest agent's channel: {e}"))?;
    loop {
        let line = lines
            .next_line()
            .await
            .map_err(|e| format!("the guest agent's channel: {e}"))?
            .ok_or("the guest agent's channel closed")?;
        let v: serde_json::Value = match serde_json::from_str(line.trim_start_matches('\u{ff}')) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if v["return"].as_u64() == Some(id) {
            break;
        }
    }
    write
        .write_all(b"{\"execute\":\"guest-ping\"}\n")
        .await
        .map_err(|e| format!("the guest agent's channel: {e}"))?;
    let line = lines
        .next_line()
        .await
        .map_err(|e| format!("the guest agent's channel: {e}"))?
        .ok_or("the guest agent's channel closed")?;
    let v: serde_json::Value = serde_json::from_str(&line)
        .map_err(|e| format!("the guest agent answered {line:?}: {e}"))?;
    match v.get("return") {
        Some(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(format!("the guest agent answered guest-ping with {line}")),
    }
}

async fn attempt(check: &HealthCheck, ip: &str, port: u16) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| format!("{ip}:{port}: {e}"))?;
    let Probe::Http { path, .. } = &check.probe else {
        return Ok(());
    };
    // QEMU's user network accepts the connection on the host side before the guest
    // does: only an HTTP answer shows that the guest serves.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("{ip}:{port}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("{ip}:{port}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status =
        status_code(&line).ok_or_else(|| format!("http://{ip}:{port}{path}: no HTTP answer"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("http://{ip}:{port}{path}: HTTP {status}"))
    }
}

/// The status of an HTTP status line (`HTTP/1.1 200 OK`).
fn status_code(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// What the checks of one VM add up to since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No check passed yet, and failures do not count yet or are fewer than `retries`.
    #[default]
    Starting,
    Healthy,
    Unhealthy,
}

/// The bookkeeping of a VM's checks: pure, fed with each result and its time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub health: Health,
    pub failures: u32,
    pub last_error: Option<String>,
}

impl Verdict {
    /// Takes one check's result at `now` for a VM started at `started_at` (ms); returns
    /// true when the health changed.
    pub fn record(
        &mut self,
        check: &HealthCheck,
        result: Result<(), String>,
        started_at: i64,
        now: i64,
    ) -> bool {
        let before = self.health;
        match result {
            Ok(()) => {
                self.failures = 0;
                self.last_error = None;
                self.health = Health::Healthy;
            }
            Err(e) => {
                self.last_error = Some(e);
                let grace = now - started_at < check.start_period_ms as i64;
                if !grace || self.health == Health::Healthy {
                    self.failures += 1;
                }
                if self.failures >= check.retries {
                    self.health = Health::Unhealthy;
                }
            }
        }
        before != self.health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port check (the VM's directory only matters to the agent's).
    async fn probe_port(s: &VmSpec) -> Result<(), String> {
        probe(s, Path::new("/nonexistent")).await
    }

    /// The agent's side of the protocol on a socket, as qemu-ga speaks it, with one
    /// stale answer queued first: the probe syncs past it.
    #[tokio::test]
    async fn the_agent_probe_syncs_then_pings() {
        let dir = tempfile::tempdir().unwrap();
        let socket = crate::qemu::Paths::new(dir.path()).qga;
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let agent = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            write.write_all(b"{\"return\": 7}\n").await.unwrap();
            while let Ok(Some(line)) = lines.next_line().await {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let answer = match v["execute"].as_str() {
                    Some("guest-sync") => format!("{{\"return\": {}}}\n", v["arguments"]["id"]),
                    Some("guest-ping") => "{\"return\": {}}\n".to_string(),
                    _ => "{\"error\": {\"class\": \"CommandNotFound\"}}\n".to_string(),
                };
                write.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let mut s: VmSpec = serde_json::from_value(serde_json::json!({
            "name": "a", "cpus": 1, "memory_mib": 128, "disks": [], "boot": {"kind": "disk"},
            "network": {"mode": "none", "forwards": []},
            "autostart": false, "accel": "tcg", "labels": {}, "environment": "dev", "ha": false,
            "healthcheck": {"probe": {"kind": "agent"}, "interval_ms": 100, "timeout_ms": 2000,
                            "retries": 1, "start_period_ms": 0}
        }))
        .unwrap();
        assert_eq!(probe(&s, dir.path()).await, Ok(()));
        agent.abort();
        // Nobody on the channel: an error that says where.
        let e = probe(&s, Path::new("/nonexistent")).await.unwrap_err();
        assert!(
            e.contains("guest agent's channel /nonexistent/qga.sock"),
            "{e}"
        );
        s.healthcheck = None;
        assert!(probe(&s, dir.path()).await.is_err());
    }

    fn check(retries: u32, start_period_ms: u64) -> HealthCheck {
        HealthCheck {
            probe: Probe::Tcp { guest_port: 80 },
            interval_ms: 1000,
            timeout_ms: 1000,
            retries,
            start_period_ms,
        }
    }

    #[test]
    fn retries_and_the_start_period() {
        let c = check(2, 5000);
        let mut v = Verdict::default();
        // Failures while starting do not count.
        assert!(!v.record(&c, Err("refused".into()), 0, 1000));
        assert!(!v.record(&c, Err("refused".into()), 0, 2000));
        assert_eq!((v.health, v.failures), (Health::Starting, 0));
        assert!(v.record(&c, Ok(()), 0, 3000));
        assert_eq!(v.health, Health::Healthy);
        // Once healthy, every failure counts, start period or not.
        assert!(!v.record(&c, Err("refused".into()), 0, 4000));
        assert!(v.record(&c, Err("timeout".into()), 0, 4500));
        assert_eq!(v.health, Health::Unhealthy);
        assert_eq!(v.last_error.as_deref(), Some("timeout"));
        let mut late = Verdict::default();
        late.record(&c, Err("x".into()), 0, 6000);
        assert!(late.record(&c, Err("x".into()), 0, 7000));
        assert_eq!(late.health, Health::Unhealthy);
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code("HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(status_code("HTTP/1.1 404 Not Found"), Some(404));
        assert_eq!(status_code("SSH-2.0-OpenSSH"), None);
        assert_eq!(status_code(""), None);
    }

    #[tokio::test]
    async fn tcp_and_http_checks_against_real_listeners() {
        let ok = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = ok.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = ok.accept().await {
                let mut b = [0u8; 512];
                let _ = s.read(&mut b).await;
                let answer: &[u8] = if b.starts_with(b"GET /health ") {
                    b"HTTP/1.0 200 OK\r\n\r\nok"
                } else {
                    b"HTTP/1.0 404 Not Found\r\n\r\n"
                };
                let _ = s.write_all(answer).await;
            }
        });
        let spec = |probe: serde_json::Value| -> VmSpec {
            serde_json::from_value(serde_json::json!({
                "name": "h", "cpus": 1, "memory_mib": 128, "disks": [], "boot": {"kind": "disk"},
                "network": {"mode": "user", "forwards": [{"protocol": "tcp", "host_ip": "127.0.0.1",
                            "host_port": port, "guest_port": 80}]},
                "autostart": false, "accel": "tcg", "labels": {}, "environment": "dev", "ha": false,
                "healthcheck": {"probe": probe, "interval_ms": 100, "timeout_ms": 2000,
                                "retries": 1, "start_period_ms": 0}
            }))
            .unwrap()
        };
        assert_eq!(
            probe_port(&spec(serde_json::json!({"kind": "tcp", "guest_port": 80}))).await,
            Ok(())
        );
        assert_eq!(
            probe_port(&spec(
                serde_json::json!({"kind": "http", "guest_port": 80, "path": "/health"})
            ))
            .await,
            Ok(())
        );
        let e = probe_port(&spec(
            serde_json::json!({"kind": "http", "guest_port": 80, "path": "/x"}),
        ))
        .await
        .unwrap_err();
        assert!(e.ends_with("/x: HTTP 404"), "{e}");
        let mut none = spec(serde_json::json!({"kind": "tcp", "guest_port": 80}));
        none.healthcheck = None;
        assert_eq!(
            probe_port(&none).await,
            Err("VM h has no healthcheck".into())
        );
    }
}
