//! `baton serve` against the real engine: killed and removed replicas come back, a
//! crash loop shows in `ps` and the events, hand-stopped services stay stopped, and the
//! daemon killed with -9 and restarted restarts no healthy container.

use std::process::Command;
use std::time::{Duration, Instant};

use baton_tests::{docker_available, docker_lines, Daemon, Scratch, IMAGE};

fn inspect(name: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", format, name])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls until `cond` holds, at most `limit`; returns how long it took.
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn the_daemon_keeps_services_up() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("serve");
    s.write(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    init: true\n    stop_grace_period: 1s\n    restart: always\n    command: [sleep, '600']\n    deploy:\n      replicas: 2\n  crash:\n    image: {IMAGE}\n    restart: always\n    command: [sh, -c, 'exit 3']\n"
        ),
    );
    s.ok(&["up", "-d"]);
    let mut daemon = Daemon::start(&s);
    let web1 = format!("{}-web-1", s.name);
    let web2 = format!("{}-web-2", s.name);

    // docker kill: dockerd itself does not restart it (a kill counts as stopped by hand).
    assert!(Command::new("docker")
        .args(["kill", &web1])
        .output()
        .unwrap()
        .status
        .success());
    let back = within(Duration::from_secs(20), || {
        inspect(&web1, "{{.State.Running}}") == "true"
    });
    eprintln!("killed replica running again after {back:?}");
    assert!(back.is_some(), "a killed replica comes back");

    // docker rm -f: the replica is recreated.
    assert!(Command::new("docker")
        .args(["rm", "-f", &web2])
        .output()
        .unwrap()
        .status
        .success());
    let back = within(Duration::from_secs(20), || {
        inspect(&web2, "{{.State.Running}}") == "true"
    });
    eprintln!("removed replica back after {back:?}");
    assert!(back.is_some(), "a removed replica is recreated");

    // The crash loop shows in ps and in the events.
    let looping = within(Duration::from_secs(90), || {
        let ps: serde_json::Value =
            serde_json::from_str(&s.ok(&["--json", "ps"])).unwrap_or_default();
        ps.as_array()
            .into_iter()
            .flatten()
            .any(|c| c["service"] == "crash" && c["supervision"]["status"] == "crash-looping")
    });
    assert!(
        looping.is_some(),
        "the crashing service is shown as crash-looping"
    );
    let events = s.ok(&["events"]);
    assert!(events.contains("restarted by the engine"), "{events}");

    // kill -9 of the daemon, then a new one: no healthy container restarts.
    let started = |n: &str| inspect(n, "{{.State.StartedAt}}");
    let before = (started(&web1), started(&web2));
    daemon.kill();
    let daemon = Daemon::start(&s);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        (started(&web1), started(&web2)),
        before,
        "healthy replicas untouched"
    );

    // A service stopped by hand stays stopped; down is not undone.
    s.ok(&["stop", "web"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        inspect(&web1, "{{.State.Running}}"),
        "false",
        "stop is respected"
    );
    s.ok(&["down"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        s.containers().is_empty(),
        "down is respected: {:?}",
        s.containers()
    );
    drop(daemon);
    let label = format!("label=io.baton.project={}", s.name);
    assert!(docker_lines(&["ps", "-aq", "--filter", &label]).is_empty());
}
