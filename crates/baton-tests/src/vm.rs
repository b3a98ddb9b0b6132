//! Fixtures for the VM tests: the tiny guest built by scripts/make-guest.sh, scratch
//! hosts (state directories) whose QEMU processes are killed on drop, VM agents with
//! their token, a raw HTTP client for the agent API, and readers of the guest's serial
//! log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::baton_bin;

/// The token every test agent requires and every test command presents.
pub const AGENT_TOKEN: &str = "e2e-agent-token-0123456789abcdef";

/// Where the test guest is (`BATON_GUEST_DIR`, default `<repo>/.guest`, a path with
/// `..` in it: the CLI resolves such paths before a host checks them).
pub fn guest_dir() -> PathBuf {
    std::env::var_os("BATON_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join(".guest"))
}

/// The guest's kernel and initramfs, or `None` (skip) when QEMU or the guest is
/// missing; with `BATON_REQUIRE_VM` set that is a failure instead.
pub fn guest() -> Option<(PathBuf, PathBuf)> {
    let dir = guest_dir();
    let k = dir.join("vmlinuz");
    let i = dir.join("initramfs.gz");
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let img = Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if qemu && img && k.exists() && i.exists() {
        return Some((k, i));
    }
    assert!(
        std::env::var_os("BATON_REQUIRE_VM").is_none(),
        "BATON_REQUIRE_VM is set but QEMU or the guest is missing: run scripts/ensure-vm.sh"
    );
    eprintln!("skipped: QEMU or the test guest is missing (scripts/ensure-vm.sh)");
    None
}

/// A VM name unique to this test process.
pub fn vm_name(tag: &str) -> String {
    format!("t{}{tag}", std::process::id())
}

/// The pids of live QEMU processes of VM `name` (found by the `-name` baton gives).
pub fn vm_processes(name: &str) -> Vec<u32> {
    let needle = format!("guest={name},process=baton-vm-{name}");
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if !zombie && cmd.split(|b| *b == 0).any(|a| a == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Kills every QEMU process of the named VMs (SIGKILL).
pub fn kill_vms(names: &[String]) {
    for n in names {
        for pid in vm_processes(n) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
        }
    }
}

/// One scratch host: a project directory and a state directory. Every VM registered
/// with [`VmHost::vm`] is killed when dropped, even when the test failed.
pub struct VmHost {
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub names: std::cell::RefCell<Vec<String>>,
}

impl Default for VmHost {
    fn default() -> Self {
        Self::new()
    }
}

impl VmHost {
    pub fn new() -> VmHost {
        VmHost {
            dir: tempfile::tempdir().expect("tempdir"),
            state: tempfile::tempdir().expect("tempdir"),
            names: Default::default(),
        }
    }

    /// Registers a VM name for cleanup and returns it.
    pub fn vm(&self, tag: &str) -> String {
        let n = vm_name(tag);
        self.names.borrow_mut().push(n.clone());
        n
    }

    pub fn write(&self, name: &str, content: &str) {
        std::fs::write(self.dir.path().join(name), content).expect("write");
    }

    /// A baton command in the project directory, presenting the agents' token.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(baton_bin());
        c.current_dir(self.dir.path())
            .env("BATON_STATE_DIR", self.state.path())
            .env("BATON_AGENT_TOKEN", AGENT_TOKEN)
            .env_remove("BATON_AGENT_CA")
            .env_remove("COMPOSE_PROJECT_NAME");
        c
    }

    pub fn baton(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run baton")
    }

    /// Runs baton and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        crate::succeeded(args, &self.baton(args))
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).expect("json output")
    }

    /// `<state>/vms/<name>`.
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.state.path().join("vms").join(name)
    }

    /// Sends a line to the guest's shell through `baton vm console`.
    pub fn guest_run(&self, name: &str, line: &str) {
        use std::io::Write;
        let mut child = self
            .cmd()
            .args(["vm", "console", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("baton vm console");
        if let Some(mut i) = child.stdin.take() {
            let _ = writeln!(i, "{line}");
        }
        let _ = child.wait();
    }
}

impl Drop for VmHost {
    fn drop(&mut self) {
        kill_vms(&self.names.borrow());
    }
}

/// A `baton vm agent` on its own state directory, killed (SIGKILL) when dropped. It
/// requires [`AGENT_TOKEN`] (from a token file) and allows the guest's directory (its
/// kernel) besides the directories it is given.
pub struct Agent {
    pub child: Child,
    pub addr: String,
    /// Holds the state directory (`dir`, made by the agent) and the token file.
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Agent {
    pub fn start(shared: Option<&Path>, lease_ms: u64, disk_dirs: &[&Path]) -> Agent {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("host");
        let addr = format!("127.0.0.1:{}", crate::free_port());
        let token = tmp.path().join("token");
        std::fs::write(&token, format!("{AGENT_TOKEN}\n")).expect("token file");
        let mut c = Command::new(baton_bin());
        c.env("BATON_STATE_DIR", &dir)
            .env_remove("BATON_AGENT_TOKEN")
            .env_remove("BATON_AGENT_CA")
            .args(["vm", "agent", "--listen", &addr, "--lease-ms"])
            .arg(lease_ms.to_string())
            .arg("--token-file")
            .arg(&token)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if guest_dir().is_dir() {
            c.arg("--disk-dir").arg(guest_dir());
        }
        for d in disk_dirs {
            c.arg("--disk-dir").arg(d);
        }
        if let Some(s) = shared {
            c.arg("--shared").arg(s);
        }
        let child = c.spawn().expect("baton vm agent");
        let mut a = Agent {
            child,
            addr,
            tmp,
            dir,
        };
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(&a.addr).is_ok()
        });
        if up.is_none() {
            a.kill();
            panic!("agent on {} did not listen", a.addr);
        }
        a
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A baton command on this agent's state directory (its store), with its token.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(baton_bin());
        c.env("BATON_STATE_DIR", &self.dir)
            .env("BATON_AGENT_TOKEN", AGENT_TOKEN)
            .env_remove("BATON_AGENT_CA");
        c
    }

    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.dir.join("vms").join(name)
    }

    /// One plain-HTTP request to the agent; see [`http_request`].
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        http_request(&self.addr, method, path, token, body)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 request (`Connection: close`) with an optional bearer token and JSON
/// body; the status and the JSON answer (`null` when it is not JSON).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the agent");
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send the request");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// A CA and a server certificate it signed for 127.0.0.1 and localhost, made with the
/// openssl command line in `dir`. Returns (CA, certificate, key).
pub fn tls_files(dir: &Path, tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    tls_files_for(dir, tag, &["IP:127.0.0.1", "DNS:localhost"])
}

/// As [`tls_files`], for the subjectAltNames given (`IP:10.0.0.2`, `DNS:name`).
pub fn tls_files_for(dir: &Path, tag: &str, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(format!("{tag}-{n}"));
    let (ca, ca_key, key, csr, cert, ext) = (
        p("ca.pem"),
        p("ca.key"),
        p("server.key"),
        p("server.csr"),
        p("server.pem"),
        p("ext.cnf"),
    );
    std::fs::write(
        &ext,
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={}\n",
            names.join(",")
        ),
    )
    .expect("write ext.cnf");
    let [ca_s, ca_key_s, key_s, csr_s, cert_s, ext_s] =
        [&ca, &ca_key, &key, &csr, &cert, &ext].map(|p| p.display().to_string());
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    let runs: [Vec<&str>; 3] = [
        ["req", "-x509", "-days", "2", "-subj", "/CN=baton e2e CA"]
            .into_iter()
            .chain(ec.split(' '))
            .chain(["-keyout", &ca_key_s, "-out", &ca_s])
            .collect(),
        ["req", "-subj", "/CN=localhost"]
            .into_iter()
            .chain(ec.split(' '))
            .chain(["-keyout", &key_s, "-out", &csr_s])
            .collect(),
        vec![
            "x509",
            "-req",
            "-days",
            "2",
            "-CAcreateserial",
            "-in",
            &csr_s,
            "-CA",
            &ca_s,
            "-CAkey",
            &ca_key_s,
            "-extfile",
            &ext_s,
            "-out",
            &cert_s,
        ],
    ];
    for args in runs {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .expect("the openssl command line");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (ca, cert, key)
}

pub use crate::within as wait_until;

/// What the agents of a [`crate::netns::HostNet`] share: a CA, a certificate for every
/// host's address signed by it, and the token.
pub struct GroupTls {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub token: PathBuf,
}

impl GroupTls {
    pub fn new(net: &crate::netns::HostNet) -> GroupTls {
        let dir = tempfile::tempdir().expect("tempdir");
        let names: Vec<String> = net.hosts.iter().map(|h| format!("IP:{}", h.ip)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (ca, cert, key) = tls_files_for(dir.path(), "group", &names);
        let token = dir.path().join("token");
        std::fs::write(&token, format!("{AGENT_TOKEN}\n")).expect("token file");
        GroupTls {
            dir,
            ca,
            cert,
            key,
            token,
        }
    }
}

/// A `baton vm agent` inside host `i` of a [`crate::netns::HostNet`], serving
/// `https://IP:7420` with the group's certificate and token (and trusting its CA to
/// reach peers), on a state directory of its own; SIGKILLed when dropped.
pub struct NetAgent {
    pub child: Child,
    pub addr: String,
    pub dir: PathBuf,
    pub ca: PathBuf,
    _tmp: tempfile::TempDir,
}

impl NetAgent {
    /// Starts it with `args` besides the listener, TLS, token and the guest's
    /// directory; waits until it listens.
    pub fn start(
        net: &crate::netns::HostNet,
        i: usize,
        tls: &GroupTls,
        args: &[String],
    ) -> NetAgent {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("host");
        let ip = net.hosts[i].ip.clone();
        let mut c = net.command(i, &baton_bin());
        c.env("BATON_STATE_DIR", &dir)
            .env_remove("BATON_AGENT_TOKEN")
            .env_remove("BATON_AGENT_CA")
            .args(["vm", "agent", "--listen", &format!("{ip}:7420")])
            .arg("--token-file")
            .arg(&tls.token)
            .arg("--tls-cert")
            .arg(&tls.cert)
            .arg("--tls-key")
            .arg(&tls.key)
            .arg("--tls-ca")
            .arg(&tls.ca)
            .arg("--disk-dir")
            .arg(guest_dir())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = c.spawn().expect("baton vm agent in a namespace");
        let mut a = NetAgent {
            child,
            addr: format!("https://{ip}:7420"),
            dir,
            ca: tls.ca.clone(),
            _tmp: tmp,
        };
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect((ip.as_str(), 7420)).is_ok()
        });
        if up.is_none() {
            a.kill();
            panic!("agent on {} did not listen", a.addr);
        }
        a
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A baton command on this agent's state directory, with the token and the CA.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(baton_bin());
        c.env("BATON_STATE_DIR", &self.dir)
            .env("BATON_AGENT_TOKEN", AGENT_TOKEN)
            .env("BATON_AGENT_CA", &self.ca);
        c
    }

    /// `baton --json ARGS` on this agent's state directory.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self
            .cmd()
            .arg("--json")
            .args(args)
            .output()
            .expect("run baton");
        assert!(
            out.status.success(),
            "baton {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json output")
    }

    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.dir.join("vms").join(name)
    }
}

impl Drop for NetAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// When each host's copy of a guest printed ticks, as seen from here: the logs are
/// read every 20 ms on a thread of its own until `stop`.
pub struct TickWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Span>>>,
}

/// A span of ticks: host index, first seen, last seen, ticks counted.
pub type Span = (usize, std::time::Instant, std::time::Instant, usize);

impl TickWatch {
    /// Watches the serial logs in `dirs` (one VM directory per host).
    pub fn start(dirs: Vec<PathBuf>) -> TickWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // Ticks already in the logs when watching began are not timed: only what
            // is counted from now on.
            let mut seen: Vec<usize> = dirs.iter().map(|d| ticks(&console_log(d)).len()).collect();
            // (host, first new tick seen, last new tick seen, ticks)
            let mut spans: Vec<Option<(std::time::Instant, std::time::Instant)>> =
                vec![None; dirs.len()];
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                for (i, d) in dirs.iter().enumerate() {
                    let n = ticks(&console_log(d)).len();
                    if n < seen[i] {
                        // A new QEMU started the log afresh.
                        seen[i] = 0;
                    }
                    if n > seen[i] {
                        let now = std::time::Instant::now();
                        let first = spans[i].map_or(now, |s| s.0);
                        spans[i] = Some((first, now));
                        seen[i] = n;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            spans
                .into_iter()
                .enumerate()
                .filter_map(|(i, s)| s.map(|(a, b)| (i, a, b, seen[i])))
                .collect()
        });
        TickWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops watching: (host index, first tick seen, last tick seen, ticks in its log)
    /// for each host whose log grew.
    pub fn finish(mut self) -> Vec<(usize, std::time::Instant, std::time::Instant, usize)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

/// The serial log of a VM directory.
pub fn console_log(vm_dir: &Path) -> String {
    std::fs::read_to_string(vm_dir.join("console.log")).unwrap_or_default()
}

/// The `baton-guest: tick N mark=M` lines of a serial log, in order.
pub fn ticks(log: &str) -> Vec<(u64, String)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("baton-guest: tick ")?;
            let (n, m) = rest.split_once(" mark=")?;
            Some((n.parse().ok()?, m.trim().to_string()))
        })
        .collect()
}

/// A `vms:` entry for the test guest.
pub fn guest_vm(name: &str, kernel: &Path, initrd: &Path, extra: &str) -> String {
    format!(
        "  {name}:\n    memory: 128M\n    accel: auto\n    boot:\n      kernel: {}\n      initrd: {}\n      cmdline: console=ttyS0 quiet panic=-1\n{extra}",
        kernel.display(),
        initrd.display()
    )
}
