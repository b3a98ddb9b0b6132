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

/// A temporary directory holding a new client key (`client_key`) and an
/// `authorized_keys` that accepts it.
fn client_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("client_key");
    let client_pub = keygen(&key);
    std::fs::write(
        dir.path().join("authorized_keys"),
        format!("{client_pub}\n"),
    )
    .expect("authorized_keys");
    (dir, key)
}

impl TestHosts {
    /// Starts `n` hosts `h01`..`hNN` and waits until each answers with an SSH banner.
    pub fn start(n: usize) -> TestHosts {
        let _ = std::fs::create_dir_all("/run/sshd");
        let (dir, key) = client_dir();
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
    let signal = |sig: &str, pids: &[u32]| {
        if pids.is_empty() {
            return;
        }
        let _ = Command::new("kill")
            .arg(sig)
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
    };
    signal("-STOP", &all);
    // sshd goes at once; the commands it ran get TERM, so their exit traps still run
    // (a login shell's rc file may hold a lock, e.g. `pyenv rehash`'s, which a KILL
    // would leave behind for every later login on this machine), then KILL if need be.
    let (sshd, commands): (Vec<u32>, Vec<u32>) = all.iter().partition(|p| {
        std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.starts_with("sshd"))
    });
    signal("-KILL", &sshd);
    signal("-TERM", &commands);
    signal("-CONT", &commands);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline
        && commands
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal("-KILL", &commands);
}

/// An sshd inside a `JumpNet` namespace.
pub struct NsHost {
    pub id: String,
    /// The address it listens on, as seen from inside the namespace.
    pub address: String,
    pub port: u16,
    /// A directory of its own, given to the host as the var `root` (the namespace has
    /// its own network, not its own filesystem).
    pub root: PathBuf,
    /// Its sshd's stderr (`LogLevel INFO`: one `Accepted publickey` line per login).
    pub log: PathBuf,
    child: Option<Child>,
}

/// A network namespace `bt-jump-<pid>-<n>` joined to this one by a veth pair
/// (10.231.A.B+1/30 here, 10.231.A.B+2/30 inside), holding a jump sshd that listens on
/// the namespace's veth address and target sshds that listen on the namespace's own
/// loopback: from here the targets can only be reached through the jump host. Each
/// target's sshd sets `BATON_WHERE=netns-<id>` in its sessions (`SetEnv`). The sshds,
/// the veth pair and the namespace are removed on drop.
pub struct JumpNet {
    pub dir: tempfile::TempDir,
    pub ns: String,
    veth: String,
    pub jump: Option<NsHost>,
    pub targets: Vec<NsHost>,
    /// The client's private key, trusted by every host.
    pub key: PathBuf,
    /// Lists the jump host under its veth address and each target under
    /// `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    pub user: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl JumpNet {
    /// Builds the namespace with a jump host `bastion` and `n` targets `t01`..; `None`
    /// (with the reason printed) when this machine refuses `ip netns add`, which is a
    /// failure under `BATON_REQUIRE_SSHD`.
    pub fn start(n: usize) -> Option<JumpNet> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let ns = format!("bt-jump-{pid}-{seq}");
        let veth = format!("bj{}x{seq}", pid % 1_000_000);
        let _ = ip(&["netns", "del", &ns]);
        if let Err(e) = ip(&["netns", "add", &ns]) {
            assert!(
                std::env::var_os("BATON_REQUIRE_SSHD").is_none(),
                "BATON_REQUIRE_SSHD is set but `ip netns add` is refused: {e}"
            );
            eprintln!(
                "skipped: cannot create a network namespace ({e}); run as root with iproute2"
            );
            return None;
        }
        let _ = std::fs::create_dir_all("/run/sshd");
        let (dir, key) = client_dir();
        let mut net = JumpNet {
            known_hosts: dir.path().join("known_hosts"),
            dir,
            ns,
            veth,
            jump: None,
            targets: Vec::new(),
            key,
            user: whoami(),
        };
        // A /30 of 10.231.0.0/16 per namespace: 16384 of them.
        let idx = (pid.wrapping_mul(4).wrapping_add(seq)) % 16384;
        let (a, b) = (idx / 64, (idx % 64) * 4);
        let here = format!("10.231.{a}.{}", b + 1);
        let there = format!("10.231.{a}.{}", b + 2);
        let (vr, vn) = (format!("{}r", net.veth), format!("{}n", net.veth));
        let ns = net.ns.clone();
        let inside = |args: &[&str]| {
            let mut v = vec!["netns", "exec", ns.as_str(), "ip"];
            v.extend_from_slice(args);
            ip(&v)
        };
        let setup = ip(&["link", "add", &vr, "type", "veth", "peer", "name", &vn])
            .and_then(|_| ip(&["link", "set", &vn, "netns", &ns]))
            .and_then(|_| ip(&["addr", "add", &format!("{here}/30"), "dev", &vr]))
            .and_then(|_| ip(&["link", "set", &vr, "up"]))
            .and_then(|_| inside(&["addr", "add", &format!("{there}/30"), "dev", &vn]))
            .and_then(|_| inside(&["link", "set", &vn, "up"]))
            .and_then(|_| inside(&["link", "set", "lo", "up"]));
        if let Err(e) = setup {
            panic!("cannot wire the namespace {ns}: {e}");
        }
        let mut known = String::new();
        let jump = net.sshd("bastion", &there, 2022, true);
        known.push_str(&format!("[{there}]:2022 {}\n", jump.1));
        net.jump = Some(jump.0);
        for i in 1..=n {
            // Any port free here: nothing in this namespace answers on it.
            let port = free_port();
            let (h, host_key) = net.sshd(&format!("t{i:02}"), "127.0.0.1", port, false);
            known.push_str(&format!("[127.0.0.1]:{port} {host_key}\n"));
            net.targets.push(h);
        }
        std::fs::write(&net.known_hosts, known).expect("known_hosts");
        let hosts: Vec<&NsHost> = net.jump.iter().chain(net.targets.iter()).collect();
        for h in hosts {
            wait_listening(h);
        }
        Some(net)
    }

    /// Starts one sshd inside the namespace; returns it and its public host key.
    fn sshd(&self, id: &str, address: &str, port: u16, jump: bool) -> (NsHost, String) {
        let hdir = self.dir.path().join(id);
        std::fs::create_dir_all(hdir.join("root")).expect("mkdir");
        let host_key = keygen(&hdir.join("host_key"));
        let role = if jump {
            "AllowTcpForwarding yes\n".to_string()
        } else {
            format!("AllowTcpForwarding no\nSetEnv BATON_WHERE=netns-{id}\n")
        };
        let cfg = format!(
            "Port {port}\nListenAddress {address}\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nLogLevel INFO\nMaxSessions 50\nMaxStartups 50\n{role}",
            hk = hdir.join("host_key").display(),
            pid = hdir.join("sshd.pid").display(),
            ak = self.dir.path().join("authorized_keys").display(),
        );
        std::fs::write(hdir.join("sshd_config"), cfg).expect("sshd_config");
        let log = hdir.join("sshd.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, SSHD, "-D", "-e", "-f"])
            .arg(hdir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start sshd in the namespace");
        (
            NsHost {
                id: id.into(),
                address: address.into(),
                port,
                root: hdir.join("root"),
                log,
                child: Some(child),
            },
            host_key,
        )
    }

    pub fn jump(&self) -> &NsHost {
        self.jump.as_ref().expect("jump host")
    }

    /// A `hosts:` section: `bastion` and the targets, each target with `jump: bastion`
    /// when `through` is true.
    pub fn hosts_yaml(&self, through: bool) -> String {
        let mut y = String::from("hosts:\n");
        for h in self.jump.iter().chain(self.targets.iter()) {
            let jump = if through && h.id != "bastion" {
                "    jump: bastion\n"
            } else {
                ""
            };
            y.push_str(&format!(
                "  {}:\n    address: {}\n    port: {}\n    user: {}\n    key: {}\n{jump}    vars:\n      root: {}\n",
                h.id,
                h.address,
                h.port,
                self.user,
                self.key.display(),
                h.root.display(),
            ));
        }
        y
    }

    /// Cuts target `i` off: kills its sshd and its sessions.
    pub fn kill_target(&mut self, i: usize) {
        if let Some(mut c) = self.targets[i].child.take() {
            kill_tree(c.id());
            let _ = c.wait();
        }
    }

    /// How many logins the host's sshd has accepted so far.
    pub fn logins(h: &NsHost) -> usize {
        std::fs::read_to_string(&h.log)
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }
}

/// Waits for sshd's `Server listening on` line (the targets cannot be probed from here).
fn wait_listening(h: &NsHost) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(&h.log).unwrap_or_default();
        if log.contains("Server listening on") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sshd of {} on {}:{} did not start in the namespace:\n{log}",
            h.id,
            h.address,
            h.port
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for JumpNet {
    fn drop(&mut self) {
        for h in self.jump.iter_mut().chain(self.targets.iter_mut()) {
            if let Some(mut c) = h.child.take() {
                kill_tree(c.id());
                let _ = c.wait();
            }
        }
        // Deleting one end of the pair deletes both; the namespace goes with its last
        // process, once unnamed.
        let _ = ip(&["link", "del", &format!("{}r", self.veth)]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}
