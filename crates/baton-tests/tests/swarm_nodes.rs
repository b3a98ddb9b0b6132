//! A swarm of two nodes, each its own dockerd in a network namespace (issue 14, "a
//! second node"): through the real `baton --target`, a placement constraint puts a task
//! on the worker, an overlay network carries a request from a task on the manager to one
//! on the worker, `baton serve`'s proxy answers from tasks on both nodes, stopping the
//! worker's dockerd moves its tasks to the manager, and `down` leaves nothing there.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use baton_tests::swarm::{http_get_at, Cluster};
use baton_tests::{free_port, http_get, stderr, stdout, within, Daemon, Scratch, IMAGE};

/// `srv` writes the page of a secret (`page.txt`) and serves it on the worker (zone b),
/// also on a port published in host mode there (as written); `cli` on the manager
/// (zone a) fetches it through the overlay network by the service's name; `web`'s two
/// tasks, spread over the zones, each answer their slot on a port that `baton serve`'s
/// proxy publishes (the way baton publishes where the routing mesh accepts nothing).
/// `srv` is found by DNS round robin, which baton chooses where the kernel has no IPVS:
/// a service's virtual IP would answer nothing ("no route to host"), for the same reason
/// the routing mesh does not; `plan` says so.
fn project(manager: &str, front: u16) -> String {
    format!(
        r#"services:
  srv:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    command: [sh, -c, 'mkdir -p /www && cp /run/secrets/page /www/index.html && exec httpd -f -p 8080 -h /www']
    secrets: [page]
    networks: [mesh]
    ports: [{{target: 8080, published: 18080, mode: host}}]
    deploy:
      placement:
        constraints: [node.labels.zone==b]
  cli:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    command: [sh, -c, 'while true; do timeout 3 wget -q -O- http://srv:8080/; sleep 1; done']
    networks: [mesh]
    deploy:
      placement:
        constraints: [node.labels.zone==a]
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    command: [sh, -c, 'mkdir -p /www && echo "web $$SLOT" > /www/index.html && exec httpd -f -p 8080 -h /www']
    environment:
      SLOT: "{{{{.Task.Slot}}}}"
    ports: ["{front}:8080"]
    deploy:
      replicas: 2
      placement:
        preferences: [{{spread: node.labels.zone}}]
networks:
  mesh: {{}}
secrets:
  page: {{file: ./page.txt}}
targets:
  two: {{swarm: {{host: "{manager}"}}}}
"#
    )
}

/// How many of `service`'s tasks run, in the output of `baton ps --json`.
fn running(ps: &str, service: &str) -> usize {
    let tasks: serde_json::Value = serde_json::from_str(ps).expect("ps --json");
    tasks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["service"] == service && t["state"] == "running")
        .count()
}

/// The answers `baton serve`'s proxy on `port` gives within `limit`, until both of `web`'s
/// slots answered.
fn answers(port: u16, limit: Duration) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    within(limit, || {
        if let Some(body) = http_get(port, 1) {
            seen.insert(body.trim().to_string());
        }
        seen.contains("web 1") && seen.contains("web 2")
    });
    seen
}

#[test]
fn two_nodes_placement_overlay_proxy_failover_and_down() {
    let started = Instant::now();
    let Some(mut cluster) = Cluster::start(2, IMAGE) else {
        return;
    };
    eprintln!("two engines in one swarm after {:?}", started.elapsed());
    let s = Scratch::new("swarm2");
    let p = s.name.clone();
    let page = format!("page of {p} from zone b");
    let front = free_port();
    s.write("page.txt", &format!("{page}\n"));
    s.write("compose.yaml", &project(&cluster.manager().host, front));
    let services = [format!("{p}_srv"), format!("{p}_cli"), format!("{p}_web")];
    let names: Vec<&str> = services.iter().map(String::as_str).collect();
    let [srv, cli, web] = [&services[0], &services[1], &services[2]];
    let serve_log = s.path().join("serve.log");
    let log = std::fs::File::create(&serve_log).expect("serve log");
    let _serve = Daemon(
        s.cmd()
            .args(["--target", "two", "serve", "--tick-ms", "200"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("baton serve"),
    );

    let plan = s.baton(&["--target", "two", "plan"]);
    assert!(
        stdout(&plan).contains("are found by DNS round robin"),
        "plan says how services find each other here:\n{}",
        stdout(&plan)
    );
    let up = s.baton(&["--target", "two", "up", "-d"]);
    assert!(
        up.status.success(),
        "up failed:\n{}\n{}\n{}",
        stdout(&up),
        stderr(&up),
        cluster.diagnostics(&names)
    );
    eprintln!("up converged after {:?}", started.elapsed());
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);

    // Placement: the constraints put srv on b and cli on a; the preference spreads web.
    for (service, want) in [(srv, (0, 1)), (cli, (1, 0)), (web, (1, 1))] {
        assert_eq!(
            (a.running(service).len(), b.running(service).len()),
            want,
            "{service}'s running containers on (a, b):\n{}",
            cluster.diagnostics(&names)
        );
    }
    let ps = s.ok(&["--target", "two", "ps", "--json"]);
    assert_eq!(
        (
            running(&ps, "srv"),
            running(&ps, "cli"),
            running(&ps, "web")
        ),
        (1, 1, 2),
        "baton ps: {ps}"
    );

    // The port srv publishes in host mode answers on b's own address.
    let mut body = None;
    within(Duration::from_secs(30), || {
        body = http_get_at(&b.ip, 18080);
        body.is_some()
    });
    assert_eq!(
        body.as_deref().map(str::trim),
        Some(page.as_str()),
        "GET http://{}:18080/ on node b:\n{}",
        b.ip,
        cluster.diagnostics(&names)
    );

    // baton serve's proxy answers from web's task on a and its task on b.
    let seen = answers(front, Duration::from_secs(30));
    assert!(
        seen.contains("web 1") && seen.contains("web 2"),
        "the proxy on port {front} answered {seen:?}, not both slots:\n{}\n--- baton serve\n{}",
        cluster.diagnostics(&names),
        std::fs::read_to_string(&serve_log).unwrap_or_default()
    );

    // The overlay network: cli, on a, reads srv's page from b; its output comes back
    // through the swarm's service logs.
    let mut logs = String::new();
    let crossed = within(Duration::from_secs(60), || {
        let out = s.baton(&["--target", "two", "logs", "cli"]);
        logs = format!("{}{}", stdout(&out), stderr(&out));
        out.status.success() && logs.contains(&page)
    });
    assert!(
        crossed.is_some(),
        "cli on node a never printed srv's page from node b; baton logs cli:\n{logs}\n{}",
        cluster.diagnostics(&names)
    );
    eprintln!("the page crossed the overlay after {:?}", started.elapsed());

    // Stopping b's dockerd: once the manager marks b down (after some 15 s of missed
    // heartbeats), both of web's tasks run on a.
    cluster.stop(1);
    let stopped = Instant::now();
    let a = &cluster.nodes[0];
    let moved = within(Duration::from_secs(90), || a.running(web).len() == 2);
    assert!(
        moved.is_some(),
        "web's tasks did not all move to node a within 90 s of b stopping (b is {}):\n{}",
        cluster.node_state(1),
        cluster.diagnostics(&names)
    );
    eprintln!(
        "web's tasks ran on a {:?} after b stopped",
        stopped.elapsed()
    );
    assert_eq!(cluster.node_state(1), "down");
    // baton sees the same once the manager has heard from a's agent that the new task
    // runs (a moment after its container started): two running tasks of web, and
    // srv's with nowhere to go.
    let mut ps = String::new();
    within(Duration::from_secs(30), || {
        ps = s.ok(&["--target", "two", "ps", "--json"]);
        running(&ps, "web") == 2
    });
    assert_eq!(running(&ps, "web"), 2, "baton ps: {ps}");
    assert_eq!(
        running(&ps, "srv"),
        0,
        "srv may only run on b, which is down; baton ps: {ps}"
    );
    // The proxy follows: both slots answer again, now both from a.
    let seen = answers(front, Duration::from_secs(30));
    assert!(
        seen.contains("web 1") && seen.contains("web 2"),
        "after b stopped the proxy answered {seen:?}, not both slots:\n{}\n--- baton serve\n{}",
        cluster.diagnostics(&names),
        std::fs::read_to_string(&serve_log).unwrap_or_default()
    );

    // down: nothing of the project is left on the manager.
    let down = s.baton(&["--target", "two", "down"]);
    assert!(
        down.status.success(),
        "down failed:\n{}\n{}\n{}",
        stdout(&down),
        stderr(&down),
        cluster.diagnostics(&names)
    );
    let label = format!("label=io.baton.swarm.project={p}");
    assert_eq!(a.lines(&["service", "ls", "-q"]), Vec::<String>::new());
    assert_eq!(
        a.lines(&["network", "ls", "--filter", &label, "--format", "{{.Name}}"]),
        Vec::<String>::new()
    );
    assert_eq!(
        a.lines(&["secret", "ls", "--format", "{{.Name}}"]),
        Vec::<String>::new()
    );
    assert_eq!(
        a.lines(&["config", "ls", "--format", "{{.Name}}"]),
        Vec::<String>::new()
    );
    assert_eq!(
        a.lines(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]),
        Vec::<String>::new(),
        "no container is left on node a:\n{}",
        cluster.diagnostics(&names)
    );
    eprintln!("done after {:?}", started.elapsed());
}
