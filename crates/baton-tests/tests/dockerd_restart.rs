//! dockerd restarted under a running `baton serve`: the daemon notices the engine is
//! gone (and says so over its socket), keeps its proxy listening, reconnects when the
//! engine is back, and converges: every replica runs again and the published port
//! answers through the proxy, re-routed to the replicas' new addresses.
//!
//! It restarts the machine's dockerd, so it runs only when asked to
//! (`BATON_REQUIRE_DOCKER=1`, as `scripts/test.sh` and CI set it, or
//! `BATON_TEST_RESTART_DOCKERD=1`). It is the only test in this binary, and cargo runs
//! test binaries one after another, so no other test sees the engine go away.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use baton_tests::{docker_available, free_port, wait_for, within, Daemon, Scratch, IMAGE};

fn engine_up() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn systemd_docker() -> bool {
    Command::new("systemctl")
        .args(["is-active", "--quiet", "docker"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops dockerd (its containers stop with it: no live-restore here).
fn stop_dockerd(systemd: bool) {
    if systemd {
        let _ = Command::new("systemctl").args(["stop", "docker"]).status();
    } else {
        let _ = Command::new("pkill")
            .args(["-TERM", "-x", "dockerd"])
            .status();
    }
    let stopped = within(Duration::from_secs(60), || {
        !Command::new("pgrep")
            .args(["-x", "dockerd"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(stopped.is_some(), "dockerd did not stop");
}

/// Starts dockerd again, as scripts/ensure-docker.sh does. dockerd must outlive the
/// test, so it is not waited for.
#[allow(clippy::zombie_processes)]
fn start_dockerd(systemd: bool) {
    if systemd {
        let _ = Command::new("systemctl").args(["start", "docker"]).status();
    } else {
        use std::os::unix::process::CommandExt as _;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open("/tmp/baton-dockerd.log")
            .expect("dockerd log");
        Command::new("dockerd")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start dockerd");
    }
    assert!(
        within(Duration::from_secs(60), engine_up).is_some(),
        "dockerd did not come back"
    );
}

/// Brings dockerd back even when the test fails half-way.
struct Restore(bool);

impl Drop for Restore {
    fn drop(&mut self) {
        if !engine_up() {
            start_dockerd(self.0);
        }
    }
}

fn status(s: &Scratch) -> serde_json::Value {
    let out = s.baton(&["--json", "serve", "--status"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[test]
fn the_daemon_reconnects_and_converges_after_a_dockerd_restart() {
    let asked = std::env::var_os("BATON_REQUIRE_DOCKER").is_some()
        || std::env::var_os("BATON_TEST_RESTART_DOCKERD").is_some();
    if !asked || !docker_available() {
        eprintln!("skipped: restarts dockerd; set BATON_TEST_RESTART_DOCKERD=1 to run it");
        return;
    }
    let s = Scratch::new("dockerd");
    let port = free_port();
    s.write(
        "compose.yaml",
        &format!(
            r#"services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    restart: always
    command: [sh, -c, 'mkdir -p /www && echo up > /www/index.html && exec httpd -f -p 80 -h /www']
    ports: ["127.0.0.1:{port}:80"]
    deploy: {{replicas: 2}}
    x-baton:
      rollout: {{strategy: rolling}}
  worker:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    restart: always
    command: [sleep, '600']
"#
        ),
    );
    let _daemon = Daemon::start(&s);
    s.ok(&["up", "-d"]);
    assert!(wait_for(port, "up", 60), "the port answers before");
    assert_eq!(s.running().len(), 3);

    let systemd = systemd_docker();
    let _restore = Restore(systemd);
    stop_dockerd(systemd);
    let noticed = within(Duration::from_secs(20), || {
        status(&s)["engine_reachable"] == false
    });
    eprintln!("engine loss noticed after {noticed:?}");
    assert!(
        noticed.is_some(),
        "the daemon says the engine is unreachable"
    );

    let restarted = Instant::now();
    start_dockerd(systemd);
    let converged = within(Duration::from_secs(90), || {
        status(&s)["engine_reachable"] == true
            && s.running().len() == 3
            && baton_tests::http_get(port, 0).as_deref().map(str::trim) == Some("up")
    });
    eprintln!(
        "converged {:?} after dockerd was back (started {:?} ago)",
        converged,
        restarted.elapsed()
    );
    assert!(
        converged.is_some(),
        "after the restart: {:?} running, status {}",
        s.running(),
        status(&s)
    );
    // Still one container per replica: nothing duplicated by the reconnect.
    assert_eq!(s.containers().len(), 3, "{:?}", s.containers());
    s.ok(&["down"]);
}
