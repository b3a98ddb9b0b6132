//! `baton serve` against the real engine: killed and removed replicas come back, a
//! crash loop shows in `ps` and the events, hand-stopped services stay stopped, and the
//! daemon killed with -9 and restarted restarts no healthy container.

use std::process::Command;
use std::time::Duration;

use baton_tests::{docker_available, docker_lines, within, Daemon, Scratch, IMAGE};

fn inspect(name: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", format, name])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
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

fn container_id(name: &str) -> String {
    inspect(name, "{{.Id}}")
}

fn ps_health(s: &Scratch, container: &str) -> String {
    let ps: serde_json::Value = serde_json::from_str(&s.ok(&["--json", "ps"])).unwrap_or_default();
    ps.as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == container)
        .map(|c| c["health"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// `x-baton.healthcheck`: HTTP and TCP checks the daemon runs itself. A replica that
/// stops answering is replaced; one that never answers shows as unhealthy; a healthy
/// one is left alone.
#[test]
fn baton_health_checks_replace_replicas_that_stop_answering() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("probe");
    s.write(
        "compose.yaml",
        &format!(
            "services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    restart: always
    command: [sh, -c, 'mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www']
    x-baton:
      healthcheck: {{http: {{path: /healthz, port: 8080}}, interval: 300ms, timeout: 500ms, retries: 2}}
  deaf:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    restart: always
    command: [sleep, '600']
    x-baton:
      healthcheck: {{tcp: 9999, interval: 300ms, timeout: 300ms, retries: 2}}
"
        ),
    );
    // A bad check is refused before anything starts.
    let bad = s.baton(&["-f", "compose.yaml", "-f", "bad.yaml", "up", "-d"]);
    assert!(!bad.status.success());
    s.write(
        "bad.yaml",
        "services:\n  web:\n    x-baton:\n      healthcheck: {http: /x, tcp: 1}\n",
    );
    let bad = s.baton(&["-f", "compose.yaml", "-f", "bad.yaml", "up", "-d"]);
    assert!(!bad.status.success());
    let err = baton_tests::stderr(&bad);
    assert!(
        err.contains("bad.yaml:4:7: services.web.x-baton.healthcheck") && err.contains("not both"),
        "{err}"
    );
    assert!(s.containers().is_empty(), "nothing was created");

    s.ok(&["up", "-d"]);
    let _daemon = Daemon::start(&s);
    let web = format!("{}-web-1", s.name);
    let healthy = within(Duration::from_secs(30), || ps_health(&s, &web) == "healthy");
    eprintln!("web healthy by baton's HTTP check after {healthy:?}");
    assert!(
        healthy.is_some(),
        "ps shows baton's verdict: {}",
        s.ok(&["ps"])
    );
    let id = container_id(&web);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(container_id(&web), id, "a healthy replica is left alone");

    // The health endpoint goes away: 2 failed probes, then a new replica.
    let rm = Command::new("docker")
        .args(["exec", &web, "rm", "/www/healthz"])
        .output()
        .unwrap();
    assert!(rm.status.success());
    let replaced = within(Duration::from_secs(30), || {
        let now = container_id(&web);
        !now.is_empty() && now != id
    });
    eprintln!("unhealthy replica replaced after {replaced:?}");
    assert!(replaced.is_some(), "the unhealthy replica is replaced");
    assert!(
        within(Duration::from_secs(30), || ps_health(&s, &web) == "healthy").is_some(),
        "the new replica passes"
    );
    let events = s.ok(&["events"]);
    assert!(
        events.contains("GET /healthz on port 8080: status 404"),
        "{events}"
    );

    // Nothing listens on the TCP port: unhealthy, in ps and in the events.
    let deaf = format!("{}-deaf-1", s.name);
    let flagged = within(Duration::from_secs(30), || {
        let events = s.ok(&["events"]);
        events.contains(&deaf) && events.contains("tcp 9999")
    });
    assert!(flagged.is_some(), "{}", s.ok(&["events"]));
    s.ok(&["down"]);
}

/// The local API: `serve --status` answers over the socket, a second daemon on the same
/// state directory is refused, and without a daemon the CLI says so and works alone.
#[test]
fn the_cli_talks_to_the_daemon_over_its_socket() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("sock");
    let alone = s.baton(&["--json", "serve", "--status"]);
    assert_eq!(alone.status.code(), Some(1));
    assert!(baton_tests::stdout(&alone).contains("\"running\": false"));
    s.write(
        "compose.yaml",
        &format!("services:\n  app:\n    image: {IMAGE}\n    init: true\n    stop_grace_period: 1s\n    command: [sleep, '600']\n"),
    );
    let mut daemon = Daemon::start(&s);
    let second = s.baton(&["serve"]);
    assert!(!second.status.success());
    assert!(
        baton_tests::stderr(&second).contains("another `baton serve` answers"),
        "{}",
        baton_tests::stderr(&second)
    );
    s.ok(&["up", "-d"]);
    let status: serde_json::Value =
        serde_json::from_str(&s.ok(&["--json", "serve", "--status"])).unwrap();
    assert_eq!(status["engine_reachable"], true, "{status}");
    assert!(status["ticks"].as_u64().unwrap() >= 1, "{status}");
    let text = s.ok(&["serve", "--status"]);
    assert!(
        text.contains("baton serve") && text.contains(&s.name),
        "{text}"
    );
    // Woken by `up`, the daemon lists the project without waiting for a tick.
    let listed = within(Duration::from_secs(5), || {
        let v: serde_json::Value =
            serde_json::from_str(&s.ok(&["--json", "serve", "--status"])).unwrap_or_default();
        v["projects"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == s.name.as_str()))
    });
    assert!(listed.is_some());
    // Killed with -9, the daemon leaves its socket behind; a new one takes it over.
    daemon.kill();
    assert!(s.state.path().join("baton.sock").exists());
    assert_eq!(s.baton(&["serve", "--status"]).status.code(), Some(1));
    let _daemon = Daemon::start(&s);
    s.ok(&["serve", "--status"]);
    s.ok(&["down"]);
}
