//! Per-revision metrics for the nginx and HAProxy providers: the routing file makes the
//! server send one syslog line per request (or TCP connection) to a Unix datagram socket
//! baton listens on; each line names the replica(s) tried, their status and time, which
//! count against the replica's revision exactly like the builtin proxy's own counters.
//! Lines count only when the kernel says they come from the server (`SO_PASSCRED`): the
//! socket must be writable by the server's workers, so anyone may send to it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::Backend;
use crate::metrics::{Metrics, Registry, RevisionMetrics};

/// Marks baton's lines: nginx reports times in seconds, HAProxy in milliseconds.
pub(crate) const NGINX_MARK: &str = "@bn ";
pub(crate) const HAPROXY_MARK: &str = "@bh ";

/// Longest socket path a server can be told (`sun_path` holds 108 bytes with its NUL).
const MAX_PATH: usize = 100;

/// One attempt on a replica, read from a server's log line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attempt {
    pub addr: SocketAddr,
    /// `None` when the server got no status (connection failed, TCP mode).
    pub status: Option<u16>,
    pub latency: Option<Duration>,
}

/// The attempts in one datagram (`<PRI>… @bn ADDRS|STATUSES|TIMES`); empty when it is not
/// one of baton's lines. nginx lists every upstream tried, `, `-separated (` : ` between
/// internal redirects); HAProxy names the last server.
pub(crate) fn parse_line(line: &str) -> Vec<Attempt> {
    let (rest, seconds) = if let Some(i) = line.find(NGINX_MARK) {
        (&line[i + NGINX_MARK.len()..], true)
    } else if let Some(i) = line.find(HAPROXY_MARK) {
        (&line[i + HAPROXY_MARK.len()..], false)
    } else {
        return Vec::new();
    };
    let mut fields = rest.trim_end().splitn(3, '|');
    let (Some(addrs), Some(statuses), Some(times)) = (fields.next(), fields.next(), fields.next())
    else {
        return Vec::new();
    };
    // Internal redirects (` : `) are just more attempts here.
    let list = |text: &str| -> Vec<String> {
        text.replace(" : ", ", ")
            .split(',')
            .map(|p| p.trim().to_owned())
            .collect()
    };
    let addrs = list(addrs);
    let statuses = list(statuses);
    let times = list(times);
    addrs
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let addr: SocketAddr = a.parse().ok()?;
            let status = statuses
                .get(i)
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|s| (100..600).contains(s));
            let latency = times.get(i).and_then(|t| {
                if seconds {
                    t.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .map(Duration::from_secs_f64)
                } else {
                    t.parse::<u64>().ok().map(Duration::from_millis)
                }
            });
            Some(Attempt {
                addr,
                status,
                latency,
            })
        })
        .collect()
}

/// Whether `path` can be written into a server's configuration as a socket address
/// (absolute, short enough, no character the config syntax would read specially).
pub(crate) fn usable_path(path: &Path) -> bool {
    let Some(text) = path.to_str() else {
        return false;
    };
    path.is_absolute()
        && text.len() <= MAX_PATH
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
}

/// The socket a server logs to and the counters it feeds; closed on drop.
pub(crate) struct LogSink {
    path: PathBuf,
    registry: Registry,
    /// Replica address → its revision's counters. Removed replicas stay a while, so the
    /// lines of their last requests still count.
    routes: Arc<Mutex<HashMap<SocketAddr, Arc<RevisionMetrics>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LogSink {
    /// Binds `path` (replacing a stale socket) and starts reading it; needs a tokio
    /// runtime. A path a server's configuration cannot carry is refused.
    pub fn bind(path: &Path) -> std::io::Result<LogSink> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        if !usable_path(path) {
            return Err(std::io::Error::other(
                "not a plain absolute path under 100 bytes",
            ));
        }
        // Outside a runtime the socket could not be polled (tokio would panic).
        tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(path)?;
        }
        let socket = tokio::net::UnixDatagram::bind(path)?;
        // The kernel then tells who sent each datagram.
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::PassCred, &true)
            .map_err(std::io::Error::from)?;
        // The server's workers often run as another user (nginx's www-data): they must be
        // able to send, and `Senders` decides whose lines count.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        let routes: Arc<Mutex<HashMap<SocketAddr, Arc<RevisionMetrics>>>> = Arc::default();
        let task = tokio::spawn({
            let routes = routes.clone();
            async move {
                let mut buf = vec![0u8; 8192];
                let mut senders = Senders::new(nix::unistd::geteuid().as_raw());
                loop {
                    let Ok((n, sender)) = receive(&socket, &mut buf).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    if !sender.is_some_and(|(pid, uid)| senders.trusted(pid, uid)) {
                        continue;
                    }
                    let line = String::from_utf8_lossy(&buf[..n]);
                    let routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
                    for attempt in parse_line(&line) {
                        if let Some(m) = routes.get(&attempt.addr) {
                            count(m, &attempt);
                        }
                    }
                }
            }
        });
        Ok(LogSink {
            path: path.to_owned(),
            registry: Registry::default(),
            routes,
            task,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Routes lines about `backends` to their revisions.
    pub fn set_backends(&self, backends: &[Backend]) {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        if routes.len() > 64 + 4 * backends.len() {
            routes.retain(|addr, _| backends.iter().any(|b| b.addr == *addr));
        }
        for b in backends {
            routes.insert(b.addr, self.registry.revision(&b.revision));
        }
    }

    pub fn metrics(&self) -> Metrics {
        self.registry.snapshot()
    }

    pub fn reset(&self) {
        self.registry.reset();
    }
}

/// One datagram into `buf`: its length and the sender's (pid, uid) as the kernel saw them.
async fn receive(
    socket: &tokio::net::UnixDatagram,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<(i32, u32)>)> {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixCredentials};
    loop {
        socket.readable().await?;
        let got = socket.try_io(tokio::io::Interest::READABLE, || {
            let mut iov = [std::io::IoSliceMut::new(&mut *buf)];
            let mut space = nix::cmsg_space!(UnixCredentials);
            let msg = recvmsg::<()>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(std::io::Error::from)?;
            let sender = msg.cmsgs().ok().and_then(|mut c| {
                c.find_map(|c| match c {
                    ControlMessageOwned::ScmCredentials(u) => Some((u.pid(), u.uid())),
                    _ => None,
                })
            });
            Ok((msg.bytes, sender))
        });
        match got {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// What `/proc` says of a process: its user, parent and executable.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Proc {
    pub uid: u32,
    pub ppid: i32,
    pub exe: Option<PathBuf>,
}

impl Proc {
    fn read(pid: i32) -> Option<Proc> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<i64>().ok())
        };
        Some(Proc {
            uid: u32::try_from(field("Uid:")?).ok()?,
            ppid: i32::try_from(field("PPid:")?).ok()?,
            exe: std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
        })
    }
}

/// Whether a sender may feed the metrics: a process of baton's own user (or root), or a
/// worker that such a process forked from its own executable before dropping privileges
/// (nginx's and HAProxy's workers). Any other local user is ignored: a forged line could
/// promote a bad canary or force a rollback.
pub(crate) fn trusted(
    own_uid: u32,
    sender_uid: u32,
    sender: Option<&Proc>,
    parent: Option<&Proc>,
) -> bool {
    let privileged = |uid: u32| uid == own_uid || uid == 0;
    if privileged(sender_uid) {
        return true;
    }
    match (sender, parent) {
        (Some(s), Some(p)) => {
            s.uid == sender_uid && privileged(p.uid) && s.exe.is_some() && s.exe == p.exe
        }
        _ => false,
    }
}

/// The verdicts on senders seen lately, so a busy worker costs `/proc` reads once.
struct Senders {
    own_uid: u32,
    seen: HashMap<(i32, u32), bool>,
}

impl Senders {
    fn new(own_uid: u32) -> Senders {
        Senders {
            own_uid,
            seen: HashMap::new(),
        }
    }

    fn trusted(&mut self, pid: i32, uid: u32) -> bool {
        if trusted(self.own_uid, uid, None, None) {
            return true;
        }
        if let Some(v) = self.seen.get(&(pid, uid)) {
            return *v;
        }
        let sender = Proc::read(pid);
        let parent = sender.as_ref().and_then(|s| Proc::read(s.ppid));
        let verdict = trusted(self.own_uid, uid, sender.as_ref(), parent.as_ref());
        if !verdict {
            // Once per sender: the verdict is kept.
            tracing::warn!(
                pid,
                uid,
                "ignoring log lines from a process that is not the server"
            );
        }
        if self.seen.len() >= 256 {
            self.seen.clear();
        }
        self.seen.insert((pid, uid), verdict);
        verdict
    }
}

fn count(m: &RevisionMetrics, attempt: &Attempt) {
    m.request();
    match (attempt.status, attempt.latency) {
        (Some(status), latency) => m.response(status, latency.unwrap_or_default()),
        // TCP: the connection was made (a time to connect is known).
        (None, Some(latency)) => m.observe(latency),
        (None, None) => m.failure(),
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(addr: &str, status: Option<u16>, ms: Option<u64>) -> Attempt {
        Attempt {
            addr: addr.parse().unwrap(),
            status,
            latency: ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn nginx_lines_list_every_attempt() {
        let line = "<190>Nov 24 06:00:00 nginx: @bn 10.0.0.1:80, 10.0.0.2:80 : 10.0.0.3:80|502, 200 : 404|0.001, 0.250 : 0.003";
        assert_eq!(
            parse_line(line),
            [
                a("10.0.0.1:80", Some(502), Some(1)),
                a("10.0.0.2:80", Some(200), Some(250)),
                a("10.0.0.3:80", Some(404), Some(3)),
            ]
        );
        // No upstream reached: nginx logs the group's name, and "-" for status and time.
        assert!(parse_line("<190>nginx: @bn baton_x|-|-").is_empty());
        assert_eq!(
            parse_line("nginx: @bn 10.0.0.1:80|-|-\n"),
            [a("10.0.0.1:80", None, None)]
        );
    }

    #[test]
    fn haproxy_lines_name_the_server_in_milliseconds() {
        let line = "<134>Nov 24 06:00:00 haproxy[12]: @bh 10.0.0.4:80|503|12";
        assert_eq!(parse_line(line), [a("10.0.0.4:80", Some(503), Some(12))]);
        assert_eq!(
            parse_line("haproxy[1]: @bh 10.0.0.4:80|-1|-1"),
            [a("10.0.0.4:80", None, None)]
        );
        assert!(parse_line("haproxy[1]: @bh -:-|503|-1").is_empty());
    }

    #[test]
    fn other_lines_are_ignored() {
        for line in [
            "",
            "hello",
            "@bn",
            "@bn 1.2.3.4:5",
            "@bh a|b",
            "<1> @bx 1.2.3.4:5|200|1",
        ] {
            assert!(parse_line(line).is_empty(), "{line}");
        }
    }

    #[test]
    fn only_plain_absolute_short_paths_go_into_a_config() {
        assert!(usable_path(Path::new(
            "/etc/nginx/conf.d/.baton-web_8080.sock"
        )));
        assert!(!usable_path(Path::new("relative.sock")));
        assert!(!usable_path(Path::new("/tmp/a b.sock")));
        assert!(!usable_path(Path::new("/tmp/a;b.sock")));
        assert!(!usable_path(&PathBuf::from(format!(
            "/{}",
            "a".repeat(MAX_PATH)
        ))));
    }

    #[test]
    fn only_the_servers_own_processes_are_trusted() {
        let nginx = |uid, ppid| Proc {
            uid,
            ppid,
            exe: Some("/usr/sbin/nginx".into()),
        };
        let master = nginx(0, 1);
        // baton's own user, and root, are always trusted.
        assert!(trusted(1000, 1000, None, None));
        assert!(trusted(1000, 0, None, None));
        // A worker that root's nginx forked, running as nobody.
        assert!(trusted(0, 65534, Some(&nginx(65534, 10)), Some(&master)));
        // Another user's process, even running nginx itself.
        assert!(!trusted(
            0,
            1001,
            Some(&nginx(1001, 20)),
            Some(&nginx(1001, 1))
        ));
        // Another user's process whose parent is root but runs something else.
        let shell = Proc {
            uid: 0,
            ppid: 1,
            exe: Some("/usr/bin/bash".into()),
        };
        assert!(!trusted(0, 1001, Some(&nginx(1001, 30)), Some(&shell)));
        // Unknown processes (gone, or /proc unreadable) are not trusted.
        assert!(!trusted(0, 1001, None, None));
        let no_exe = Proc {
            exe: None,
            ..nginx(1001, 10)
        };
        assert!(!trusted(
            0,
            1001,
            Some(&no_exe),
            Some(&Proc {
                exe: None,
                ..master.clone()
            })
        ));
        // The uid /proc shows must be the one the kernel gave with the datagram.
        assert!(!trusted(0, 65534, Some(&nginx(1001, 10)), Some(&master)));
    }

    /// Sends `line` to `path` from a python process running as `uid`; true if sent.
    fn send_as(uid: u32, path: &Path, line: &str) -> bool {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("python3")
            .args([
                "-c",
                "import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(sys.argv[2].encode(), sys.argv[1])",
            ])
            .arg(path)
            .arg(line)
            .uid(uid)
            .status()
            .is_ok_and(|s| s.success())
    }

    #[tokio::test]
    async fn lines_from_another_user_do_not_count() {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test sends as another user: run it as root (as CI does)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("s.sock");
        let sink = LogSink::bind(&path).unwrap();
        sink.set_backends(&[Backend::new("a", "127.0.0.1:81".parse().unwrap(), "v1")]);
        // nobody can reach the socket (the send succeeds) but its line is not counted.
        let forged = "<1>x: @bn 127.0.0.1:81|500|0.002";
        assert!(send_as(65534, &path, forged), "nobody could not send");
        // A line from baton's own user after it: once that one counts, the forged one
        // (sent first, on the same socket) has been read and ignored.
        assert!(send_as(0, &path, "<1>x: @bn 127.0.0.1:81|200|0.002"));
        let mut m = sink.metrics();
        for _ in 0..300 {
            m = sink.metrics();
            if m.revisions.get("v1").is_some_and(|r| r.requests > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(m.revisions["v1"].requests, 1, "{m:?}");
        assert_eq!(m.revisions["v1"].responses_5xx, 0, "the forged 500 counted");
    }

    #[tokio::test]
    async fn lines_sent_to_the_socket_count_per_revision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let sink = LogSink::bind(&path).unwrap();
        sink.set_backends(&[
            Backend::new("a", "127.0.0.1:81".parse().unwrap(), "v1"),
            Backend::new("b", "127.0.0.1:82".parse().unwrap(), "v2"),
        ]);
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        for line in [
            "<1>x: @bn 127.0.0.1:81|200|0.002",
            "<1>x: @bn 127.0.0.1:82, 127.0.0.1:81|502, 200|0.001, 0.004",
            "<1>x: @bh 127.0.0.1:82|500|3",
            "<1>x: @bh 127.0.0.1:99|200|3",
        ] {
            client.send_to(line.as_bytes(), &path).unwrap();
        }
        let mut m = sink.metrics();
        for _ in 0..200 {
            m = sink.metrics();
            if m.revisions.get("v2").map_or(0, |r| r.requests) == 2
                && m.revisions.get("v1").map_or(0, |r| r.requests) == 2
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(m.revisions["v1"].requests, 2, "{m:?}");
        assert_eq!(m.revisions["v1"].responses_5xx, 0);
        assert_eq!(m.revisions["v2"].requests, 2, "{m:?}");
        assert_eq!(m.revisions["v2"].responses_5xx, 2);
        assert_eq!(m.revisions["v2"].latency.count, 2);
        drop(sink);
        assert!(!path.exists(), "the socket goes with the sink");
    }
}
