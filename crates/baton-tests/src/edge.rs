//! What the edge tests use: a real ACME server (Debian's pebble, answering DNS through
//! pebble-challtestsrv so every name is 127.0.0.1) on free loopback ports, HTTPS requests
//! through curl with `--resolve`, and wrk for load, with its error counts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// True when pebble, pebble-challtestsrv, wrk, curl and openssl are installed
/// (scripts/ensure-edge.sh); without them tests skip unless `BATON_REQUIRE_EDGE` is set.
pub fn edge_tools_available() -> bool {
    let has = |program: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let missing: Vec<&str> = ["pebble", "pebble-challtestsrv", "wrk", "curl", "openssl"]
        .into_iter()
        .filter(|p| !has(p))
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("BATON_REQUIRE_EDGE").is_none(),
            "BATON_REQUIRE_EDGE is set but {missing:?} are missing"
        );
        eprintln!("skipped: {missing:?} missing (run scripts/ensure-edge.sh)");
    }
    missing.is_empty()
}

/// A self-signed leaf certificate made by openssl for `names` (the first is the subject),
/// valid two days: (certificate file, key file) in `dir`, named `stem.pem` / `stem.key`.
pub fn self_signed(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    let san: Vec<String> = names
        .iter()
        .map(|n| {
            if n.parse::<std::net::IpAddr>().is_ok() {
                format!("IP:{n}")
            } else {
                format!("DNS:{n}")
            }
        })
        .collect();
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={}", names[0]),
            "-addext",
            &format!("subjectAltName={}", san.join(",")),
            // A leaf, not a CA: rustls refuses a CA certificate as a server's own.
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Pebble and its DNS, killed when dropped.
pub struct Pebble {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub management: u16,
    /// Pebble's own listener certificate (what `x-baton.edge.acme.ca` trusts).
    pub listener_cert: PathBuf,
    children: Vec<Child>,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of
    /// 127.0.0.1 (every name resolves there), and waits until its directory answers.
    pub fn start(http_port: u16, tls_port: u16) -> Pebble {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed(dir.path(), "listener", &["localhost", "127.0.0.1"]);
        let (port, management, dns) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("pebble config");
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log file");
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .stdout(log("dns.log"))
            .stderr(log("dns.err"))
            .spawn()
            .expect("pebble-challtestsrv");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No random sleeps before validating.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble");
        let p = Pebble {
            dir,
            port,
            management,
            listener_cert: cert,
            children: vec![challtestsrv, pebble],
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if p.get(&p.directory()).is_some() {
                return p;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("pebble did not answer: {}", p.logs());
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The root that signs what pebble issues (from its management API), PEM.
    pub fn root(&self) -> String {
        self.get(&format!("https://127.0.0.1:{}/roots/0", self.management))
            .expect("pebble's root")
    }

    fn get(&self, url: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "5", "--cacert"])
            .arg(&self.listener_cert)
            .arg(url)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn logs(&self) -> String {
        ["pebble.log", "pebble.err", "dns.err"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A GET through curl to `https://HOST:PORT/PATH` resolved to 127.0.0.1, trusting `ca`;
/// (status, body), status 0 when no answer came.
pub fn https_get(host: &str, port: u16, ca: &Path, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1"), "--cacert"])
        .arg(ca)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// `n` GETs of `/` over one keep-alive HTTPS connection; the bodies, trimmed.
pub fn https_bodies(host: &str, port: u16, ca: &Path, n: usize) -> Vec<String> {
    let url = format!("https://{host}:{port}/");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1"), "--cacert"])
        .arg(ca)
        .args(std::iter::repeat_n(url.as_str(), n))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// What a wrk run counted.
#[derive(Debug, Default)]
pub struct WrkReport {
    pub requests: u64,
    /// Answers with a status of 400 or more.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
    pub text: String,
}

/// wrk running until `stop`.
pub struct Wrk(Option<Child>);

impl Wrk {
    /// `wrk -t1 -c{connections} -d{max}s URL` (stopped earlier by `stop`).
    pub fn start(url: &str, connections: u32, max: Duration) -> Wrk {
        let child = Command::new("wrk")
            .args([
                "-t1",
                &format!("-c{connections}"),
                &format!("-d{}s", max.as_secs().max(1)),
                "--timeout",
                "10s",
                url,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wrk");
        Wrk(Some(child))
    }

    /// Stops it (SIGINT: wrk then prints what it counted) and reads its report.
    pub fn stop(mut self) -> WrkReport {
        let Some(child) = self.0.take() else {
            return WrkReport::default();
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().expect("wrk");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        parse_wrk(&text)
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads wrk's summary.
pub fn parse_wrk(text: &str) -> WrkReport {
    let mut r = WrkReport {
        text: text.to_string(),
        ..WrkReport::default()
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(n) = line
            .split(" requests in ")
            .next()
            .filter(|_| line.contains(" requests in "))
        {
            r.requests = n.trim().parse().unwrap_or(0);
        }
        if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = n.trim().parse().unwrap_or(0);
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            r.socket_errors = rest
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_are_read() {
        let text = "Running 2s test @ https://localhost:1/\n  1 threads and 4 connections\n  1234 requests in 2.00s, 100.00KB read\n  Socket errors: connect 1, read 2, write 0, timeout 3\n  Non-2xx or 3xx responses: 7\nRequests/sec:    617.00\n";
        let r = parse_wrk(text);
        assert_eq!((r.requests, r.socket_errors, r.non_2xx), (1234, 6, 7));
        let clean = parse_wrk("  10 requests in 1.00s, 1KB read\n");
        assert_eq!(
            (clean.requests, clean.socket_errors, clean.non_2xx),
            (10, 0, 0)
        );
    }
}
