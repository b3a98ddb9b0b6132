//! The end-to-end harness: runs the real `baton` binary in a scratch project directory
//! against the real Docker engine, and inspects the engine with the `docker` CLI.
//! Tests live in `tests/`; heavy ones need `BATON_REQUIRE_DOCKER=1` to fail, not skip.

pub mod api;
pub mod edge;
pub mod fleet;
pub mod kube_fake;
pub mod netns;
pub mod pipeline;
pub mod registry;
pub mod swarm;
pub mod vm;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The `baton` binary built with the tests (`BATON_BIN` overrides).
pub fn baton_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BATON_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-exe> -> target/<profile>/baton
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = dir.join("baton");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// True when a Docker engine answers. Without one, tests skip, unless
/// `BATON_REQUIRE_DOCKER` is set (CI sets it), where a missing engine is a failure.
pub fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("BATON_REQUIRE_DOCKER").is_none(),
            "BATON_REQUIRE_DOCKER is set but no Docker engine answers"
        );
        eprintln!("skipped: no Docker engine (set BATON_REQUIRE_DOCKER=1 to make this a failure)");
    }
    ok
}

/// The local image every test uses; built by scripts/make-test-image.sh.
pub const IMAGE: &str = "baton-test/busybox:latest";

/// Asserts that `baton args` (which gave `out`) succeeded, showing its output if not;
/// returns its stdout.
pub fn succeeded(args: &[&str], out: &Output) -> String {
    assert!(
        out.status.success(),
        "baton {args:?} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics unless nothing under `dir` (itself included) can be read, written or entered
/// by group or others: the state directory holds resolved secrets and logs. Pipeline
/// job workspaces (`ws/`) hold what the jobs made, with their own modes, inside a
/// private run directory: they are not looked into.
pub fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut todo = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).expect("stat");
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", p.display());
        seen += 1;
        if meta.is_dir() && !p.ends_with("ws") {
            todo.extend(
                std::fs::read_dir(&p)
                    .expect("readdir")
                    .map(|e| e.expect("entry").path()),
            );
        }
    }
    assert!(seen > 1, "nothing under {} was checked", dir.display());
}

/// A scratch project: its own directory, state directory and unique project name.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Scratch {
    /// A new project named `bt<pid><n><tag>`.
    pub fn new(tag: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
            state: tempfile::tempdir().expect("tempdir"),
            name: format!("bt{}{n}{tag}", std::process::id()),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file into the project directory.
    pub fn write(&self, name: &str, content: &str) {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, content).expect("write");
    }

    /// A `baton` command run in the project directory with this project's name and state.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(baton_bin());
        c.current_dir(self.dir.path())
            .env("BATON_STATE_DIR", self.state.path())
            .env("COMPOSE_PROJECT_NAME", &self.name)
            .env_remove("DOCKER_HOST");
        c
    }

    pub fn baton(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run baton")
    }

    /// Runs baton and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.baton(args))
    }

    /// Names of this project's containers (all states), sorted.
    pub fn containers(&self) -> Vec<String> {
        docker_lines(&[
            "ps",
            "-a",
            "--filter",
            &self.label(),
            "--format",
            "{{.Names}}",
        ])
    }

    /// Names of this project's running containers, sorted.
    pub fn running(&self) -> Vec<String> {
        docker_lines(&["ps", "--filter", &self.label(), "--format", "{{.Names}}"])
    }

    pub fn networks(&self) -> Vec<String> {
        docker_lines(&[
            "network",
            "ls",
            "--filter",
            &self.label(),
            "--format",
            "{{.Name}}",
        ])
    }

    pub fn volumes(&self) -> Vec<String> {
        docker_lines(&[
            "volume",
            "ls",
            "--filter",
            &self.label(),
            "--format",
            "{{.Name}}",
        ])
    }

    fn label(&self) -> String {
        format!("label=io.baton.project={}", self.name)
    }
}

impl Drop for Scratch {
    /// Leaves nothing behind, even when a test failed half-way.
    fn drop(&mut self) {
        let ids = docker_lines(&["ps", "-aq", "--filter", &self.label()]);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            let _ = Command::new("docker").args(&args).output();
        }
        for n in self.networks() {
            let _ = Command::new("docker").args(["network", "rm", &n]).output();
        }
        for v in self.volumes() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", &v])
                .output();
        }
    }
}

/// A `baton serve` of a scratch project, killed when dropped.
pub struct Daemon(pub std::process::Child);

impl Daemon {
    /// Starts `baton serve --tick-ms 200` for the project's state directory and waits
    /// until its local API answers.
    pub fn start(s: &Scratch) -> Daemon {
        let mut child = s
            .cmd()
            .args(["serve", "--tick-ms", "200"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("baton serve");
        let socket = s.state.path().join("baton.sock");
        for _ in 0..200 {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("baton serve exited: {status}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Daemon(child)
    }

    /// Kills it with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the docker CLI and returns its non-empty output lines, sorted.
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).output().expect("docker");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// A TCP port free on loopback right now.
///
/// Never the same port twice in one test process: tests run in parallel threads, and a
/// port released here is bound by its user (an sshd, a daemon) only a moment later, so
/// the kernel could hand it to a second caller meanwhile, and one test would talk to
/// another's server.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}

/// GETs `/` on a loopback port, retrying for up to `secs` seconds; the body on success.
pub fn http_get(port: u16, secs: u64) -> Option<String> {
    http_answer(port, secs).map(|(_, body)| body)
}

/// As [`http_get`], with the answer's status code.
pub fn http_answer(port: u16, secs: u64) -> Option<(u16, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Ok(answer) = http_once(port) {
            return Some(answer);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// One `GET /` on 127.0.0.1:`port`: the status and body, or why there was none (no
/// connection, a broken or cut-short answer: a body shorter than its Content-Length).
pub fn http_once(port: u16) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .map_err(|e| format!("read after {} bytes: {e}", buf.len()))?;
    if !buf.starts_with("HTTP/1") {
        return Err(format!(
            "not HTTP: {:?}",
            buf.chars().take(80).collect::<String>()
        ));
    }
    let (head, body) = buf
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("headers cut short: {buf:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    if let Some(n) = length {
        if body.len() < n {
            return Err(format!(
                "{status} with {} of {n} body bytes: {body:?}",
                body.len()
            ));
        }
    }
    Ok((status, body.to_string()))
}

/// Stdout of a command as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr of a command as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The repository root (for examples/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Requests in a loop on one port until stopped; counts answers by body and failures.
/// A failure is no answer, a cut-short one, or an answer other than 2xx (a proxy's 502/503); the
/// first few are kept with the time they happened and printed by `finish`.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Seen {
    bodies: Vec<String>,
    failures: u32,
    first: Vec<String>,
}

impl Load {
    pub fn start(port: u16) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
        let (s, v) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            // Bounded: at most 10 minutes, whatever happens.
            let deadline = start + std::time::Duration::from_secs(600);
            while !s.load(std::sync::atomic::Ordering::SeqCst)
                && std::time::Instant::now() < deadline
            {
                let answer = http_once(port);
                let mut g = v.lock().unwrap();
                let failed = match answer {
                    Ok((200..=299, body)) => {
                        g.bodies.push(body.trim().to_string());
                        continue;
                    }
                    Ok((status, body)) => format!("{status} {:?}", body.trim()),
                    Err(why) => why,
                };
                g.failures += 1;
                if g.first.len() < 10 {
                    let at = start.elapsed().as_secs_f64();
                    g.first.push(format!("at {at:.2} s: {failed}"));
                }
            }
        });
        Load {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// (answers by body, failures)
    pub fn finish(mut self) -> (Vec<String>, u32) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let g = self.seen.lock().unwrap();
        for f in &g.first {
            eprintln!("load: failed {f}");
        }
        (g.bodies.clone(), g.failures)
    }
}

/// The distinct bodies among `bodies`, with how often each came: for messages.
pub fn tally(bodies: &[String]) -> std::collections::BTreeMap<&str, usize> {
    let mut out = std::collections::BTreeMap::new();
    for b in bodies {
        *out.entry(b.as_str()).or_insert(0) += 1;
    }
    out
}

/// Polls until the port answers `want` (replicas become healthy, then routed).
pub fn wait_for(port: u16, want: &str, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if http_get(port, 1).as_deref().map(str::trim) == Some(want) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// Polls `cond` every 50 ms for at most `limit`; how long it took, or `None`.
pub fn within(
    limit: std::time::Duration,
    mut cond: impl FnMut() -> bool,
) -> Option<std::time::Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// A 3-replica HTTP service that changes by rollout: it answers `v$VERSION` on a
/// published loopback port (nothing when `VERSION=bad`, so its healthcheck fails).
/// `health` is the healthcheck's (timeout, retries): ("1s", 2) notices a broken version
/// fast; a longer one keeps a loaded machine from failing a good one. `x_baton` is the
/// body of the service's `x-baton:` block, indented by six spaces.
pub fn web_service(port: u16, health: (&str, u32), x_baton: &str) -> String {
    let (timeout, retries) = health;
    format!(
        r#"services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    restart: always
    command: [sh, -c, 'mkdir -p /www && if [ "$$VERSION" != bad ]; then echo "v$$VERSION" > /www/index.html; fi; exec httpd -f -p 80 -h /www']
    environment:
      VERSION: ${{VERSION:-1}}
    ports: ["127.0.0.1:{port}:80"]
    healthcheck:
      test: [CMD, wget, -q, -O, /dev/null, http://127.0.0.1/]
      interval: 1s
      timeout: {timeout}
      retries: {retries}
    deploy:
      replicas: 3
      update_config:
        monitor: 1s
        failure_action: rollback
    x-baton:
{x_baton}
"#
    )
}
