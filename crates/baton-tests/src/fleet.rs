//! Real SSH test hosts: N `sshd` processes on loopback ports, each with its own config,
//! host key and pid file in a temp dir, all trusting one test client key; plus a
//! known_hosts file for them. Everything is killed on drop, session children included.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

pub const SSHD: &str = "/usr/sbin/sshd";

/// True when sshd and ssh-keygen are installed (scripts/ensure-fleet.sh installs them);
/// without them tests skip unless `BATON_REQUIRE_SSHD` is set.
pub fn sshd_available() -> bool {
    let ok = Path::new(SSHD).exists()
        && Command::new("ssh-keygen")
            .arg("-?")
            .stderr(Stdio::null())
            .status()
            .is_ok();
    if !ok {
        assert!(
            std::env::var_os("BATON_REQUIRE_SSHD").is_none(),
            "BATON_REQUIRE_SSHD is set but sshd is missing"
        );
        eprintln!("skipped: no sshd (run scripts/ensure-fleet.sh)");
    }
    ok
}

pub struct TestHost {
    pub id: String,
    pub port: u16,
    /// A directory of its own, given to the host as the var `root` (all loopback hosts
    /// share one filesystem).
    pub root: PathBuf,
    /// The `ssh-ed25519 AAAA…` public host key.
    pub host_key: String,
    child: Option<Child>,
}

pub struct TestHosts {
    pub dir: tempfile::TempDir,
    pub hosts: Vec<TestHost>,
    /// The client's private key, trusted by every host.
    pub key: PathBuf,
    /// A known_hosts file listing every host's key.
    pub known_hosts: PathBuf,
    pub user: String,
}

fn keygen(path: &Path) -> String {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "baton-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("read public key");
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl TestHosts {
    /// Starts `n` hosts `h01`..`hNN` and waits until each answers with an SSH banner.
    pub fn start(n: usize) -> TestHosts {
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("client_key");
        let client_pub = keygen(&key);
        std::fs::write(
            dir.path().join("authorized_keys"),
            format!("{client_pub}\n"),
        )
        .expect("authorized_keys");
        let user = whoami();
        let mut hosts = Vec::new();
        let mut known = String::new();
        for i in 1..=n {
            let id = format!("h{i:02}");
            let hdir = dir.path().join(&id);
            std::fs::create_dir_all(hdir.join("root")).expect("mkdir");
            let host_key = keygen(&hdir.join("host_key"));
            let port = free_port();
            let cfg = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nLogLevel ERROR\nMaxSessions 200\nMaxStartups 200\nAcceptEnv none\n",
                hk = hdir.join("host_key").display(),
                pid = hdir.join("sshd.pid").display(),
                ak = dir.path().join("authorized_keys").display(),
            );
            std::fs::write(hdir.join("sshd_config"), cfg).expect("sshd_config");
            let log = std::fs::File::create(hdir.join("sshd.log")).expect("log");
            let child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(hdir.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start sshd");
            known.push_str(&format!("[127.0.0.1]:{port} {host_key}\n"));
            hosts.push(TestHost {
                id,
                port,
                root: hdir.join("root"),
                host_key,
                child: Some(child),
            });
        }
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, known).expect("known_hosts");
        let t = TestHosts {
            dir,
            hosts,
            key,
            known_hosts,
            user,
        };
        for h in &t.hosts {
            t.wait_banner(h);
        }
        t
    }

    fn wait_banner(&self, h: &TestHost) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", h.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                    let _ = s.write_all(b"SSH-2.0-probe\r\n");
                    return;
                }
            }
            let log = std::fs::read_to_string(self.dir.path().join(&h.id).join("sshd.log"))
                .unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "sshd of {} on port {} did not start:\n{log}",
                h.id,
                h.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A `hosts:` section for these hosts; `extra(i)` adds YAML lines (indented 4) to
    /// host `i` (0-based), e.g. `role: web`.
    pub fn hosts_yaml(&self, extra: impl Fn(usize) -> String) -> String {
        self.hosts_yaml_with(true, extra)
    }

    /// Like `hosts_yaml`, without `key:` when `with_key` is false (the ssh-agent or
    /// `--identity` must then provide one).
    pub fn hosts_yaml_with(&self, with_key: bool, extra: impl Fn(usize) -> String) -> String {
        let mut y = String::from("hosts:\n");
        for (i, h) in self.hosts.iter().enumerate() {
            let key = if with_key {
                format!("    key: {}\n", self.key.display())
            } else {
                String::new()
            };
            y.push_str(&format!(
                "  {}:\n    address: 127.0.0.1\n    port: {}\n    user: {}\n{key}    vars:\n      root: {}\n{}",
                h.id,
                h.port,
                self.user,
                h.root.display(),
                extra(i)
            ));
        }
        y
    }

    /// Cuts a host off: kills its sshd and every session process under it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.hosts[i].child.take() {
            kill_tree(c.id());
            let _ = c.wait();
        }
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.kill(i);
        }
    }
}

/// A real `ssh-agent -D` on a socket in a temp dir, killed on drop.
pub struct TestAgent {
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    child: Option<Child>,
}

impl TestAgent {
    /// Starts the agent and waits for its socket.
    pub fn start() -> TestAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let agent = TestAgent {
            dir,
            sock,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&agent.sock).is_err() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    /// `ssh-add KEY` into this agent.
    pub fn add(&self, key: &Path) {
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh-add");
        assert!(
            out.status.success(),
            "ssh-add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The public keys the agent holds (`ssh-add -L`), in its order.
    pub fn listed(&self) -> Vec<String> {
        let out = Command::new("ssh-add")
            .arg("-L")
            .env("SSH_AUTH_SOCK", &self.sock)
            .output()
            .expect("run ssh-add -L");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .filter(|l| l.starts_with("ssh-"))
            .collect()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A fresh ed25519 key pair at `path` (and `path.pub`); returns the public key.
pub fn new_key(path: &Path) -> String {
    keygen(path)
}

/// Kills `pid` and all its descendants (found through /proc).
pub fn kill_tree(pid: u32) {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) && !all.contains(&child) {
                all.push(child);
            }
        }
        i += 1;
    }
    // Freeze them all first, so no process reports another's death (an exit status
    // from a session whose command was killed): the connection simply drops.
    let pids: Vec<String> = all.iter().map(|p| p.to_string()).collect();
    let _ = Command::new("kill")
        .arg("-STOP")
        .args(&pids)
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(&pids)
        .stderr(Stdio::null())
        .status();
}
