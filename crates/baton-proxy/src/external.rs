//! Providers for users who already run nginx or HAProxy: instead of serving the port
//! itself, baton writes the routing (listen address, replicas, weights) into a
//! configuration file the user's server includes, checks it with the server's own
//! checker, and asks the server to reload. The same calls as a [`crate::Proxy`]:
//! backends, split and drain; per-revision metrics come from the server's own log lines
//! (see `server_logs`).
//!
//! Rendering is pure ([`render`]); [`External`] does the writing, checking and reloading
//! with argument vectors, never a shell.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{Backend, Balance, Protocol};
use crate::metrics::Metrics;
use crate::server_logs::{self, LogSink};

/// Which server reads the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Nginx,
    Haproxy,
}

/// Where and how to publish a service through an external server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalConfig {
    pub provider: Provider,
    /// A name for the upstream / backend section (letters, digits, `_`).
    pub name: String,
    /// The address the server listens on for this service.
    pub listen: SocketAddr,
    pub protocol: Protocol,
    pub balance: Balance,
    /// The file baton owns and rewrites.
    pub config_path: PathBuf,
    /// Checks the configuration once written (e.g. `nginx -t`); a failure puts the
    /// previous file back and skips the reload.
    pub check: Option<Vec<String>>,
    /// Makes the server read the file again (e.g. `nginx -s reload`).
    pub reload: Vec<String>,
    /// How long `drained` waits at most for connections to a removed replica to end.
    pub drain_timeout: Duration,
    /// How long a replica may take to answer (nginx `proxy_read_timeout`, HAProxy
    /// `timeout server`).
    pub response_timeout: Duration,
    /// Where the server sends one log line per request, from which baton keeps
    /// per-revision metrics (a Unix datagram socket baton binds; `None`: no metrics).
    pub log_socket: Option<PathBuf>,
}

/// Per-backend weights for a split between revisions: revisions with a 0 share (or not
/// listed) get none, unless no listed revision has a backend, then all share equally.
/// Weights fit HAProxy's 1..=256.
pub fn weights(backends: &[Backend], split: Option<&[(String, u32)]>) -> Vec<(Backend, u32)> {
    let mut count: BTreeMap<&str, u32> = BTreeMap::new();
    for b in backends {
        *count.entry(b.revision.as_str()).or_default() += 1;
    }
    let share = |rev: &str| -> Option<u32> {
        let split = split?;
        let listed_with_backends = split
            .iter()
            .any(|(r, p)| *p > 0 && count.contains_key(r.as_str()));
        if !listed_with_backends {
            return None;
        }
        Some(split.iter().find(|(r, _)| r == rev).map_or(0, |(_, p)| *p))
    };
    backends
        .iter()
        .filter_map(|b| match share(&b.revision) {
            None => Some((b.clone(), 1)),
            Some(0) => None,
            Some(p) => {
                let n = count[b.revision.as_str()];
                let w = (f64::from(p) * 2.0 / f64::from(n)).round() as u32;
                Some((b.clone(), w.clamp(1, 256)))
            }
        })
        .collect()
}

/// The configuration text for `config` routing to `weighted` backends.
pub fn render(config: &ExternalConfig, weighted: &[(Backend, u32)]) -> Result<String, String> {
    let name = &config.name;
    let mut out =
        String::from("# Written by baton; it is rewritten on every change. Do not edit.\n");
    if config
        .log_socket
        .as_deref()
        .is_some_and(|p| !server_logs::usable_path(p))
    {
        return Err("the log socket path must be absolute, short and plain".into());
    }
    // The directive sending one line per request to baton's socket, if any.
    let mut log = String::new();
    match config.provider {
        Provider::Nginx => {
            if config.protocol == Protocol::Tcp {
                return Err("the nginx provider serves HTTP only (protocol: tcp needs the builtin proxy or haproxy)".into());
            }
            if let Some(sock) = &config.log_socket {
                out += &format!(
                    "log_format {name}_baton '{}$upstream_addr|$upstream_status|$upstream_response_time';\n",
                    server_logs::NGINX_MARK
                );
                log = format!(
                    "    access_log syslog:server=unix:{},nohostname {name}_baton;\n",
                    sock.display()
                );
            }
            // Keep-alive to the replicas, except for a protocol upgrade (WebSocket).
            out += &format!(
                "map $http_upgrade ${name}_connection {{\n    default upgrade;\n    '' '';\n}}\n"
            );
            out += &format!("upstream {name} {{\n");
            if config.balance == Balance::LeastConnections {
                out += "    least_conn;\n";
            }
            for (b, w) in weighted {
                out += &format!("    server {} weight={w} max_fails=0;\n", b.addr);
            }
            if weighted.is_empty() {
                // nginx wants at least one server: a marked-down one answers 502.
                out += "    server 127.0.0.1:9 down;\n";
            }
            out += "}\n";
            out += &format!(
                "server {{\n    listen {};\n{log}    location / {{\n        proxy_pass http://{name};\n        proxy_http_version 1.1;\n        proxy_set_header Upgrade $http_upgrade;\n        proxy_set_header Connection ${name}_connection;\n        proxy_set_header Host $host;\n        proxy_next_upstream error timeout http_502 http_503;\n        proxy_read_timeout {}ms;\n    }}\n}}\n",
                config.listen,
                config.response_timeout.as_millis().max(1)
            );
        }
        Provider::Haproxy => {
            let mode = match config.protocol {
                Protocol::Http => "http",
                Protocol::Tcp => "tcp",
            };
            let balance = match config.balance {
                Balance::RoundRobin => "roundrobin",
                Balance::LeastConnections => "leastconn",
            };
            if let Some(sock) = &config.log_socket {
                let fields = match config.protocol {
                    Protocol::Http => "%si:%sp|%ST|%Tr",
                    Protocol::Tcp => "%si:%sp|-|%Tc",
                };
                log = format!(
                    "    log {} local0 info\n    log-format \"{}{fields}\"\n",
                    sock.display(),
                    server_logs::HAPROXY_MARK
                );
            }
            out += &format!(
                "frontend {name}\n    bind {}\n    mode {mode}\n{log}    timeout client 60s\n    default_backend {name}\n\n",
                config.listen
            );
            out += &format!(
                "backend {name}\n    mode {mode}\n    balance {balance}\n    timeout connect 2s\n    timeout server {}ms\n    retries 3\n    option redispatch 1\n",
                config.response_timeout.as_millis().max(1)
            );
            for (b, w) in weighted {
                let id: String =
                    b.id.chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect();
                out += &format!("    server {id} {} weight {w}\n", b.addr);
            }
        }
    }
    Ok(out)
}

/// An external server publishing one port of a service.
pub struct External {
    config: ExternalConfig,
    state: Mutex<State>,
    logs: Option<LogSink>,
}

#[derive(Default)]
struct State {
    backends: Vec<Backend>,
    split: Option<Vec<(String, u32)>>,
    /// The text the server last accepted.
    written: Option<String>,
}

fn run(argv: &[String]) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(format!(
            "{} exited with {}: {last}",
            argv.join(" "),
            out.status
        ))
    }
}

impl External {
    /// Nothing is written until the first `set_backends`, so a restarted daemon does
    /// not blank a routing the server still serves.
    ///
    /// With `log_socket`, binds it on the current tokio runtime; if that fails the server
    /// is configured without it (no metrics) and the reason is logged.
    pub fn new(mut config: ExternalConfig) -> External {
        let logs = config
            .log_socket
            .as_deref()
            .and_then(|path| match LogSink::bind(path) {
                Ok(sink) => Some(sink),
                Err(e) => {
                    tracing::warn!(socket = %path.display(), error = %e, "no per-revision metrics from the server");
                    None
                }
            });
        config.log_socket = logs.as_ref().map(|l| l.path().to_owned());
        External {
            config,
            state: Mutex::new(State::default()),
            logs,
        }
    }

    /// Per-revision counters from the server's log lines; `None` without a log socket.
    pub fn metrics(&self) -> Option<Metrics> {
        self.logs.as_ref().map(LogSink::metrics)
    }

    /// Zeroes the counters.
    pub fn reset_metrics(&self) {
        if let Some(logs) = &self.logs {
            logs.reset();
        }
    }

    pub fn listen(&self) -> SocketAddr {
        self.config.listen
    }

    pub fn config(&self) -> &ExternalConfig {
        &self.config
    }

    pub fn set_backends(&self, backends: Vec<Backend>) -> Result<(), String> {
        if let Some(logs) = &self.logs {
            logs.set_backends(&backends);
        }
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .backends = backends;
        self.sync()
    }

    pub fn set_split(&self, split: Option<Vec<(String, u32)>>) -> Result<(), String> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .split = split;
        self.sync()
    }

    /// Writes, checks and reloads when the text changed. A check that fails puts the
    /// previous file back, so the server keeps its last good routing.
    fn sync(&self) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let weighted = weights(&state.backends, state.split.as_deref());
        let text = render(&self.config, &weighted)?;
        if state.written.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let path = &self.config.config_path;
        let previous = std::fs::read(path).ok();
        write_atomically(path, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        if let Some(check) = &self.config.check {
            if let Err(e) = run(check) {
                let _ = match &previous {
                    Some(bytes) => write_atomically(path, bytes),
                    None => std::fs::remove_file(path),
                };
                return Err(format!("configuration refused, previous one kept: {e}"));
            }
        }
        run(&self.config.reload)?;
        state.written = Some(text);
        Ok(())
    }

    /// Waits until no established TCP connection from this host to `addrs` (removed
    /// replicas) is open — the server's old workers finish in-flight requests after a
    /// reload — or the drain timeout.
    pub async fn drained_addrs(&self, addrs: &[SocketAddr]) {
        let deadline = Instant::now() + self.config.drain_timeout;
        // A reload takes a moment to reach the workers.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while Instant::now() < deadline && open_connections(addrs) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes the service off the server: removes the file and reloads.
    pub fn shutdown(&self) -> Result<(), String> {
        match std::fs::remove_file(&self.config.config_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", self.config.config_path.display())),
        }
        run(&self.config.reload)
    }
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    // A dot-name not ending in .conf/.cfg: a server including `*.conf` never reads a
    // half-written file.
    let mut tmp = tempfile::Builder::new()
        .prefix(".baton-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map(drop).map_err(|e| e.error)
}

/// Established TCP connections on this host whose remote end is one of `addrs`, read
/// from /proc/net/tcp and tcp6. 0 where /proc is not there.
pub fn open_connections(addrs: &[SocketAddr]) -> usize {
    if addrs.is_empty() {
        return 0;
    }
    let mut n = 0;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ...; 01 = ESTABLISHED
            if cols.len() > 3 && cols[3] == "01" {
                if let Some(remote) = parse_proc_addr(cols[2]) {
                    if addrs.contains(&remote) {
                        n += 1;
                    }
                }
            }
        }
    }
    n
}

/// `0100007F:1F90` → 127.0.0.1:8080 (IPv4 in host byte order as /proc prints it on
/// little-endian machines; IPv6 as four such words).
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip: std::net::IpAddr = match ip.len() {
        8 => {
            let v = u32::from_str_radix(ip, 16).ok()?;
            std::net::Ipv4Addr::from(v.swap_bytes()).into()
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (i, word) in (0..4).map(|i| &ip[i * 8..i * 8 + 8]).enumerate() {
                let v = u32::from_str_radix(word, 16).ok()?.swap_bytes();
                bytes[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
            }
            let v6 = std::net::Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map_or(v6.into(), Into::into)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: &str, addr: &str, rev: &str) -> Backend {
        Backend::new(id, addr.parse().unwrap(), rev)
    }

    fn config(provider: Provider) -> ExternalConfig {
        ExternalConfig {
            provider,
            name: "baton_demo_web".into(),
            listen: "127.0.0.1:8080".parse().unwrap(),
            protocol: Protocol::Http,
            balance: Balance::RoundRobin,
            config_path: "/nonexistent/baton.conf".into(),
            check: None,
            reload: vec![],
            drain_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(60),
            log_socket: None,
        }
    }

    #[test]
    fn weights_follow_the_split_per_revision() {
        let all = vec![
            b("a1", "10.0.0.1:80", "v1"),
            b("a2", "10.0.0.2:80", "v1"),
            b("a3", "10.0.0.3:80", "v1"),
            b("c1", "10.0.0.4:80", "v2"),
        ];
        let w = |split: Option<&[(String, u32)]>| -> Vec<(String, u32)> {
            weights(&all, split)
                .into_iter()
                .map(|(b, w)| (b.id, w))
                .collect()
        };
        assert_eq!(
            w(None).iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![1, 1, 1, 1]
        );
        let split = vec![("v2".to_string(), 10), ("v1".to_string(), 90)];
        assert_eq!(
            w(Some(&split)),
            vec![
                ("a1".into(), 60),
                ("a2".into(), 60),
                ("a3".into(), 60),
                ("c1".into(), 20)
            ]
        );
        // 0% takes a revision out entirely.
        let split = vec![("v2".to_string(), 100), ("v1".to_string(), 0)];
        assert_eq!(w(Some(&split)), vec![("c1".into(), 200)]);
        // A split naming no revision that has replicas: everyone shares.
        let split = vec![("v9".to_string(), 100)];
        assert_eq!(w(Some(&split)).len(), 4);
    }

    #[test]
    fn renders_nginx_and_haproxy() {
        let weighted = vec![(b("demo-web-1", "172.17.0.2:80", "v1"), 1)];
        let n = render(&config(Provider::Nginx), &weighted).unwrap();
        assert!(
            n.contains(
                "upstream baton_demo_web {\n    server 172.17.0.2:80 weight=1 max_fails=0;\n}"
            ),
            "{n}"
        );
        assert!(n.contains("listen 127.0.0.1:8080;"), "{n}");
        assert!(n.contains("proxy_read_timeout 60000ms;"), "{n}");
        assert!(n.contains("proxy_pass http://baton_demo_web;"), "{n}");
        assert!(
            n.contains("map $http_upgrade $baton_demo_web_connection {\n    default upgrade;\n    '' '';\n}")
                && n.contains("proxy_set_header Connection $baton_demo_web_connection;"),
            "keep-alive, or an upgrade passed on: {n}"
        );
        let empty = render(&config(Provider::Nginx), &[]).unwrap();
        assert!(empty.contains("server 127.0.0.1:9 down;"), "{empty}");
        let mut tcp = config(Provider::Nginx);
        tcp.protocol = Protocol::Tcp;
        assert!(render(&tcp, &weighted).unwrap_err().contains("HTTP only"));

        let mut h = config(Provider::Haproxy);
        h.balance = Balance::LeastConnections;
        let t = render(&h, &weighted).unwrap();
        assert!(
            t.contains("frontend baton_demo_web\n    bind 127.0.0.1:8080\n    mode http"),
            "{t}"
        );
        assert!(t.contains("balance leastconn"), "{t}");
        assert!(t.contains("timeout server 60000ms\n"), "{t}");
        assert!(
            t.contains("    server demo-web-1 172.17.0.2:80 weight 1\n"),
            "{t}"
        );
        assert!(
            !n.contains("access_log") && !t.contains("log "),
            "no socket, no log"
        );
    }

    #[test]
    fn with_a_log_socket_each_server_logs_every_request_to_it() {
        let weighted = vec![(b("demo-web-1", "172.17.0.2:80", "v1"), 1)];
        let mut n = config(Provider::Nginx);
        n.log_socket = Some("/run/baton/web.sock".into());
        let text = render(&n, &weighted).unwrap();
        assert!(text.contains("log_format baton_demo_web_baton '@bn $upstream_addr|$upstream_status|$upstream_response_time';\n"), "{text}");
        assert!(text.contains("    listen 127.0.0.1:8080;\n    access_log syslog:server=unix:/run/baton/web.sock,nohostname baton_demo_web_baton;\n"), "{text}");
        let mut h = config(Provider::Haproxy);
        h.log_socket = Some("/run/baton/web.sock".into());
        let text = render(&h, &weighted).unwrap();
        assert!(text.contains("    mode http\n    log /run/baton/web.sock local0 info\n    log-format \"@bh %si:%sp|%ST|%Tr\"\n"), "{text}");
        h.protocol = Protocol::Tcp;
        assert!(render(&h, &weighted)
            .unwrap()
            .contains("log-format \"@bh %si:%sp|-|%Tc\""));
        h.log_socket = Some("/run/a b;.sock".into());
        assert!(
            render(&h, &weighted).is_err(),
            "an unsafe path is never written"
        );
    }

    #[test]
    fn proc_net_addresses_parse() {
        assert_eq!(
            parse_proc_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("0000000000000000FFFF00000100007F:0050"),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(parse_proc_addr("zz"), None);
    }

    #[test]
    fn a_refused_configuration_puts_the_previous_one_back() {
        let dir = std::env::temp_dir().join(format!("baton-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("web.conf");
        let mut c = config(Provider::Haproxy);
        c.config_path = path.clone();
        c.reload = vec!["true".into()];
        let e = External::new(c.clone());
        e.set_backends(vec![b("w1", "10.0.0.1:80", "v1")]).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        assert!(good.contains("10.0.0.1:80"));
        let mut refusing = c;
        refusing.check = Some(vec!["false".into()]);
        let e2 = External::new(refusing);
        let err = e2
            .set_backends(vec![b("w2", "10.0.0.2:80", "v1")])
            .unwrap_err();
        assert!(err.contains("previous one kept"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), good);
        e.shutdown().unwrap();
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn drain_waits_for_open_connections_to_end() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_server, _) = l.accept().await.unwrap();
        assert!(open_connections(&[addr]) >= 1);
        let mut c = config(Provider::Haproxy);
        c.drain_timeout = Duration::from_secs(5);
        let e = External::new(c);
        let started = Instant::now();
        let closer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            drop(client);
        });
        e.drained_addrs(&[addr]).await;
        closer.await.unwrap();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
}
