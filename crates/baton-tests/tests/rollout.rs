//! Zero-downtime updates through `baton serve`: for each strategy, an update under
//! continuous load fails no request, and a version whose health check fails is rolled
//! back (rolling), never switched to (blue-green) or reverted (canary), serving nothing.

use std::time::Duration;

use baton_tests::{
    docker_available, docker_lines, free_port, http_get, http_once, stderr, tally, wait_for,
    web_service, Daemon, Load, Scratch, IMAGE,
};

fn file(port: u16, rollout: &str) -> String {
    web_service(port, ("1s", 2), &format!("      rollout:\n{rollout}"))
}

fn scenario(tag: &str, rollout: &str, undo: bool) {
    if !docker_available() {
        return;
    }
    let s = Scratch::new(tag);
    let port = free_port();
    s.write("compose.yaml", &file(port, rollout));
    let _daemon = Daemon::start(&s);
    std::thread::sleep(Duration::from_millis(500));
    s.ok(&["up", "-d"]);
    assert!(wait_for(port, "v1", 60), "{tag}: v1 serves");

    // A good update under load: no failed request, and v2 serves at the end.
    let load = Load::start(port);
    let up = s
        .cmd()
        .env("VERSION", "2")
        .args(["up", "-d"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{tag}: update failed: {}", stderr(&up));
    std::thread::sleep(Duration::from_millis(500));
    let (bodies, failures) = load.finish();
    eprintln!(
        "{tag}: good update: {} answers, {failures} failed",
        bodies.len()
    );
    assert_eq!(failures, 0, "{tag}: no failed request during the update");
    assert!(bodies.len() > 50, "{tag}: the load ran ({})", bodies.len());
    // The report carries the daemon's live per-revision counters, over its socket.
    let status: serde_json::Value =
        serde_json::from_str(&s.ok(&["--json", "rollout", "status", "web"])).unwrap();
    let counted: u64 = status["traffic"][0]["metrics"]["revisions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, m)| m["requests"].as_u64().unwrap_or(0))
        .sum();
    assert!(counted > 0, "{tag}: live metrics in the report: {status}");
    assert!(
        bodies.iter().all(|b| b == "v1" || b == "v2"),
        "{tag}: only v1/v2 answered: {:?}",
        tally(&bodies)
    );
    assert_eq!(
        http_get(port, 10).as_deref().map(str::trim),
        Some("v2"),
        "{tag}: v2 serves"
    );

    // A broken update: its health check fails. It must not take over, and serve nothing.
    let load = Load::start(port);
    let up = s
        .cmd()
        .env("VERSION", "bad")
        .args(["up", "-d"])
        .output()
        .unwrap();
    assert!(!up.status.success(), "{tag}: a failed rollout is an error");
    let text = stderr(&up);
    assert!(
        text.contains("rolled back"),
        "{tag}: says it rolled back: {text}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (bodies, failures) = load.finish();
    eprintln!(
        "{tag}: broken update: {} answers, {failures} failed",
        bodies.len()
    );
    assert_eq!(
        failures, 0,
        "{tag}: no failed request during the broken update"
    );
    assert!(
        bodies.iter().all(|b| b == "v2"),
        "{tag}: the broken version served nothing"
    );
    assert_eq!(http_get(port, 10).as_deref().map(str::trim), Some("v2"));
    let history = s.ok(&["rollout", "history", "web"]);
    assert!(
        history.contains("completed") && history.contains("rolled back"),
        "{history}"
    );

    if undo {
        // Back to the first revision's configuration, through a rollout like any other.
        let out = s.baton(&["rollout", "undo", "web", "--to-revision", "1"]);
        assert!(out.status.success(), "{tag}: undo: {}", stderr(&out));
        assert!(
            wait_for(port, "v1", 30),
            "{tag}: v1 serves again after undo"
        );
        let status = s.ok(&["--json", "rollout", "status", "web"]);
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(v["rollout"]["status"], "completed", "{status}");
    }

    s.ok(&["down"]);
    assert!(s.containers().is_empty());
    // The daemon closes the project's proxy: the port is free again.
    let freed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
    });
    assert!(freed, "{tag}: port {port} freed after down");
}

#[test]
fn rolling_updates_without_failed_requests_and_rolls_back_a_broken_version() {
    scenario(
        "roll",
        "        strategy: rolling\n        health_timeout: 20s",
        true,
    );
}

#[test]
fn blue_green_switches_at_once_and_never_switches_to_a_broken_version() {
    scenario(
        "bg",
        "        strategy: blue-green\n        keep_old: 1s\n        health_timeout: 20s",
        false,
    );
}

#[test]
fn canary_steps_through_and_reverts_a_broken_version() {
    scenario(
        "can",
        "        strategy: canary\n        steps: [{weight: 34, pause: 2s}, {weight: 67, pause: 2s}]\n        analysis: {max_error_rate: 1%, max_p95_latency: 500ms}\n        health_timeout: 20s",
        false,
    );
}

/// The status of the newest rollout of `web`, and its outcome text.
fn latest(s: &Scratch) -> (String, String) {
    let v: serde_json::Value =
        serde_json::from_str(&s.ok(&["--json", "rollout", "status", "web"])).unwrap_or_default();
    (
        v["rollout"]["status"].as_str().unwrap_or("").to_string(),
        v["rollout"]["outcome"].as_str().unwrap_or("").to_string(),
    )
}

/// Waits until v1 answers on `port` and `replicas` replicas run.
fn serving_v1(s: &Scratch, port: u16, replicas: usize) {
    assert!(wait_for(port, "v1", 60), "v1 serves");
    assert!(
        until(60, || s.running().len() == replicas),
        "{replicas} replicas: {:?}",
        s.running()
    );
}

fn until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// By hand, under load: a canary paused on a long step is promoted; the next one is
/// aborted (and reverted); a third is superseded by a newer `up`, which then completes.
/// No request fails throughout.
#[test]
fn canary_promote_abort_and_supersede_by_hand() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("hand");
    let port = free_port();
    s.write(
        "compose.yaml",
        // Every version here is good: a healthcheck that a loaded machine won't fail.
        &web_service(
            port,
            ("3s", 4),
            "      rollout:\n        strategy: canary\n        steps: [{weight: 34, pause: 10m}]\n        health_timeout: 20s",
        ),
    );
    let _daemon = Daemon::start(&s);
    s.ok(&["up", "-d"]);
    assert!(wait_for(port, "v1", 60), "v1 serves");
    let load = Load::start(port);
    let up = |version: &str| {
        let out = s
            .cmd()
            .env("VERSION", version)
            .args(["up", "-d", "--no-wait"])
            .output()
            .unwrap();
        assert!(out.status.success(), "up v{version}: {}", stderr(&out));
    };
    // The canary step is 10 minutes: only a promote ends it now.
    let at_step = |s: &Scratch| {
        let v: serde_json::Value =
            serde_json::from_str(&s.ok(&["--json", "rollout", "status", "web"]))
                .unwrap_or_default();
        v["state"]["weight"] == 34
    };
    up("2");
    assert!(until(60, || at_step(&s)), "canary at 34%: {:?}", latest(&s));
    s.ok(&["rollout", "promote", "web"]);
    assert!(
        until(60, || latest(&s).0 == "completed"),
        "{:?}",
        latest(&s)
    );
    assert!(wait_for(port, "v2", 10), "v2 serves after promote");

    up("3");
    assert!(until(60, || at_step(&s)), "canary at 34%: {:?}", latest(&s));
    s.ok(&["rollout", "abort", "web"]);
    assert!(
        until(60, || latest(&s).0 == "rolled-back"),
        "{:?}",
        latest(&s)
    );
    assert!(latest(&s).1.contains("abort"), "{:?}", latest(&s));
    assert!(wait_for(port, "v2", 10), "v2 serves after abort");

    up("4");
    assert!(until(60, || at_step(&s)), "canary at 34%: {:?}", latest(&s));
    up("5");
    assert!(
        until(60, || at_step(&s) && latest(&s).0 == "running"),
        "the newer rollout runs: {:?}",
        latest(&s)
    );
    let history: serde_json::Value =
        serde_json::from_str(&s.ok(&["--json", "rollout", "history", "web"])).unwrap();
    let statuses: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        statuses,
        ["completed", "rolled-back", "superseded", "running"],
        "{history}"
    );
    s.ok(&["rollout", "promote", "web"]);
    assert!(
        until(60, || latest(&s).0 == "completed"),
        "{:?}",
        latest(&s)
    );
    assert!(wait_for(port, "v5", 10), "v5 serves");
    std::thread::sleep(Duration::from_millis(500));
    let (bodies, failures) = load.finish();
    eprintln!("by hand: {} answers, {failures} failed", bodies.len());
    assert_eq!(failures, 0, "no failed request");
    assert!(
        bodies
            .iter()
            .all(|b| ["v1", "v2", "v3", "v4", "v5"].contains(&b.as_str())),
        "only the versions deployed answered: {:?}",
        tally(&bodies)
    );
    // Only the 3 replicas of v5 are left.
    assert_eq!(s.running().len(), 3, "{:?}", s.running());
    s.ok(&["down"]);
}

/// 4 replicas of an HTTP service whose `bad` version answers like the others but fails
/// its healthcheck 10 s after it starts (the check tests a file the version removes):
/// it gets routed, then fails within the update's monitor window, with every old
/// replica already replaced. `rollback_config` paces the rollback.
fn four_with_rollback_config(port: u16) -> String {
    format!(
        r#"services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    restart: always
    command: [sh, -c, 'mkdir -p /www && echo "v$$VERSION" > /www/index.html && touch /tmp/ok && if [ "$$VERSION" = bad ]; then (sleep 10; rm -f /tmp/ok) & fi; exec httpd -f -p 80 -h /www']
    environment:
      VERSION: ${{VERSION:-1}}
    ports: ["127.0.0.1:{port}:80"]
    healthcheck:
      test: [CMD, test, -f, /tmp/ok]
      interval: 1s
      timeout: 3s
      retries: 2
    deploy:
      replicas: 4
      update_config:
        parallelism: 0
        monitor: 40s
        failure_action: rollback
      rollback_config:
        parallelism: 1
        delay: 1s
        order: start-first
    x-baton:
      rollout:
        strategy: rolling
        health_timeout: 30s
"#
    )
}

/// A broken version replaces all 4 replicas, fails its healthcheck within the monitor
/// window, and is rolled back as `rollback_config` says: one old replica per batch,
/// started and routed before one new replica goes, 1 s apart; under load, no request
/// fails; 4 healthy replicas of the old version are left.
#[test]
fn rolling_rollback_follows_rollback_config_one_replica_at_a_time() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("rbcfg");
    let port = free_port();
    s.write("compose.yaml", &four_with_rollback_config(port));
    let _daemon = Daemon::start(&s);
    s.ok(&["up", "-d"]);
    serving_v1(&s, port, 4);

    let load = Load::start(port);
    let started = std::time::Instant::now();
    let up = s
        .cmd()
        .env("VERSION", "bad")
        .args(["up", "-d"])
        .output()
        .unwrap();
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (bodies, failures) = load.finish();
    eprintln!(
        "rollback_config: update + rollback took {:.1} s; {} answers, {failures} failed",
        took.as_secs_f64(),
        bodies.len()
    );
    let text = stderr(&up);
    assert!(!up.status.success(), "a rolled-back rollout is an error");
    assert!(text.contains("rolled back"), "says it rolled back: {text}");
    assert!(
        text.contains("rollback batch 4: 1 replica(s)"),
        "up shows the batches: {text}"
    );
    assert_eq!(failures, 0, "no failed request during update and rollback");
    assert!(bodies.len() > 50, "the load ran ({})", bodies.len());
    assert!(
        bodies.iter().all(|b| b == "v1" || b == "vbad"),
        "only v1 and vbad answered: {:?}",
        tally(&bodies)
    );
    assert!(
        bodies.iter().any(|b| b == "vbad"),
        "the broken version was routed before it failed"
    );

    // The deployment report: 4 batches of one, in order, each restored replica routed
    // before its new one was stopped, at least `delay` apart.
    let status: serde_json::Value =
        serde_json::from_str(&s.ok(&["--json", "rollout", "status", "web"])).unwrap();
    assert_eq!(status["rollout"]["status"], "rolled-back", "{status}");
    let batches = status["state"]["rollback_batches"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sizes: Vec<u64> = batches
        .iter()
        .map(|b| b["old"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(sizes, [1, 1, 1, 1], "{status}");
    for b in &batches {
        assert_eq!(b["routed"].as_array().map(Vec::len), Some(1), "{b}");
        assert_eq!(b["stopped_new"].as_array().map(Vec::len), Some(1), "{b}");
        assert_eq!(b["failures"], 0, "{b}");
    }
    let at = |b: &serde_json::Value, k: &str| b[k].as_u64().unwrap_or(0);
    for pair in batches.windows(2) {
        assert!(
            at(&pair[1], "started_ms") >= at(&pair[0], "routed_ms") + 1_000,
            "each batch begins after the previous one was routed, plus the delay: {pair:?}"
        );
    }
    // The timed history, in order: per batch, start one old, route it, then stop a new.
    let history: Vec<String> = status["state"]["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect();
    let pos = |line: &str, from: usize| {
        history[from..]
            .iter()
            .position(|h| h.starts_with(line))
            .map(|p| p + from)
            .unwrap_or_else(|| panic!("{line:?} after line {from} in {history:#?}"))
    };
    let mut i = pos("rolling back: ", 0);
    for n in 1..=4 {
        i = pos(&format!("rollback batch {n}: 1 replica(s)"), i);
        i = pos("start 1 old", i);
        i = pos("route old ", i);
        i = pos("stop new ", i);
    }
    let report = s.ok(&["rollout", "status", "web"]);
    eprintln!("{report}");
    assert!(report.contains("rollback       4 batch(es)"), "{report}");
    assert!(report.contains("    batch 4 at"), "{report}");

    // The store's events say it too.
    let events: serde_json::Value =
        serde_json::from_str(&s.ok(&["--json", "events", "--limit", "200"])).unwrap();
    let begun: Vec<String> = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("rollback batch") && m.ends_with("replica(s)"))
        .map(|m| m.split(": ").nth(1).unwrap_or("").to_string())
        .collect();
    assert_eq!(
        begun,
        [
            "rollback batch 1",
            "rollback batch 2",
            "rollback batch 3",
            "rollback batch 4"
        ],
        "{events}"
    );
    let history = s.ok(&["rollout", "history", "web"]);
    assert!(history.contains("rolled back"), "{history}");

    // Exactly 4 replicas left, all of the old version and healthy.
    let running = s.running();
    assert_eq!(running.len(), 4, "{running:?}");
    let to = status["rollout"]["to_hash"].as_str().unwrap_or("-");
    assert!(
        running.iter().all(|n| !n.ends_with(&to[..to.len().min(8)])),
        "no replica of the broken version: {running:?}"
    );
    let healthy = || {
        s.running()
            .iter()
            .all(|n| docker_lines(&["inspect", "-f", "{{.State.Health.Status}}", n]) == ["healthy"])
    };
    assert!(until(30, healthy), "all 4 healthy");
    for _ in 0..8 {
        assert_eq!(http_get(port, 10).as_deref().map(str::trim), Some("v1"));
    }
    s.ok(&["down"]);
    assert!(s.containers().is_empty());
}

/// 3 replicas, one per batch, `failure_action: pause`. Version `bad` answers like the
/// others but fails its healthcheck 8 s after it starts (routed by then, within the
/// monitor window); version 2 is healthy only once `flag/ok` exists in the project
/// directory (bind-mounted), so the test can fix it. `MONITOR` sets the monitor window.
fn three_pausing(port: u16) -> String {
    format!(
        r#"services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    restart: always
    command: [sh, -c, 'mkdir -p /www && echo "v$$VERSION" > /www/index.html && touch /tmp/ok && if [ "$$VERSION" = bad ]; then (sleep 8; rm -f /tmp/ok) & fi; exec httpd -f -p 80 -h /www']
    environment:
      VERSION: ${{VERSION:-1}}
    volumes: ["./flag:/flag"]
    ports: ["127.0.0.1:{port}:80"]
    healthcheck:
      test: [CMD-SHELL, 'test -f /tmp/ok && {{ test "$$VERSION" != 2 || test -f /flag/ok; }}']
      interval: 1s
      timeout: 3s
      retries: 2
    deploy:
      replicas: 3
      update_config:
        parallelism: 1
        monitor: ${{MONITOR:-1s}}
        failure_action: pause
    x-baton:
      rollout:
        strategy: rolling
        health_timeout: 30s
"#
    )
}

/// Under continuous load: a broken version pauses the update after its first batch was
/// routed; `rollout abort` brings the old version back (3 healthy replicas, the one the
/// update stopped started again). Then version 2 pauses at its first batch because of
/// a missing file; with `baton serve` stopped, the file is put there and `rollout
/// resume` is asked for: it waits, and a new `baton serve` finishes the update. No
/// request fails while a daemon runs; promote on a paused rollout and resume on a
/// completed one are refused, naming the status.
#[test]
fn paused_rolling_update_is_aborted_or_resumed_from_the_cli() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("pause");
    let port = free_port();
    s.write("compose.yaml", &three_pausing(port));
    std::fs::create_dir_all(s.path().join("flag")).unwrap();
    let mut daemon = Daemon::start(&s);
    let t0 = std::time::Instant::now();
    s.ok(&["up", "-d"]);
    serving_v1(&s, port, 3);
    let v1: Vec<String> = s.running();
    let load = Load::start(port);
    let up = |version: &str, monitor: &str| {
        s.cmd()
            .env("VERSION", version)
            .env("MONITOR", monitor)
            .args(["up", "-d"])
            .output()
            .unwrap()
    };

    // The broken version: routed, then unhealthy within the monitor window: paused.
    let out = up("bad", "20s");
    let text = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a paused rollout is an error: {text}"
    );
    assert!(text.contains("paused: "), "says it paused: {text}");
    let (status, outcome) = latest(&s);
    assert_eq!(status, "paused", "{outcome}");
    let paused: serde_json::Value =
        serde_json::from_str(&s.ok(&["--json", "rollout", "status", "web"])).unwrap();
    assert_eq!(
        paused["state"]["old_stopped"].as_array().map(Vec::len),
        Some(1),
        "batch 1 replaced one old replica before it failed: {paused}"
    );
    // promote only reaches a running rollout
    let out = s.baton(&["rollout", "promote", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("service web: rollout") && stderr(&out).contains("is paused"),
        "{}",
        stderr(&out)
    );
    assert_eq!(latest(&s).0, "paused", "a refused promote changes nothing");

    // abort: the old replica the update stopped comes back, the new ones go.
    let started = std::time::Instant::now();
    let out = s.baton(&["rollout", "abort", "web"]);
    let text = stderr(&out);
    eprintln!(
        "abort took {:.1} s:\n{text}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "abort of a paused update: {text}"
    );
    assert!(text.contains("was paused: abort requested"), "{text}");
    assert!(text.contains("rolled back: aborted"), "{text}");
    assert_eq!(latest(&s).0, "rolled-back");
    let to = paused["rollout"]["to_hash"]
        .as_str()
        .unwrap_or("-")
        .to_string();
    let running = s.running();
    assert_eq!(running.len(), 3, "{running:?}");
    assert!(
        running.iter().all(|n| !n.ends_with(&to[..to.len().min(8)])),
        "no replica of the broken version: {running:?}"
    );
    let healthy = || {
        s.running()
            .iter()
            .all(|n| docker_lines(&["inspect", "-f", "{{.State.Health.Status}}", n]) == ["healthy"])
    };
    assert!(until(30, healthy), "all 3 healthy: {:?}", s.running());
    for _ in 0..6 {
        assert_eq!(http_get(port, 10).as_deref().map(str::trim), Some("v1"));
    }
    assert_ne!(s.running(), v1, "one old replica was started again");
    std::thread::sleep(Duration::from_millis(500));
    let (bodies, failures) = load.finish();
    eprintln!(
        "pause and abort: {} answers, {failures} failed",
        bodies.len()
    );
    assert_eq!(failures, 0, "no failed request through pause and abort");
    assert!(bodies.len() > 50, "the load ran ({})", bodies.len());
    assert!(
        bodies.iter().all(|b| b == "v1" || b == "vbad"),
        "only v1 and vbad answered: {:?}",
        tally(&bodies)
    );

    // Version 2 cannot get healthy without flag/ok: paused at its first batch.
    let out = up("2", "1s");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(latest(&s).0, "paused", "{:?}", latest(&s));
    std::fs::write(s.path().join("flag/ok"), "").unwrap();
    // Without a daemon: the request is recorded and waits for the next `baton serve`.
    daemon.kill();
    let mut resume = Child(
        s.cmd()
            .args(["rollout", "resume", "web"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        resume.0.try_wait().unwrap().is_none(),
        "resume waits for a daemon"
    );
    assert_eq!(latest(&s).0, "running", "the paused rollout runs again");
    let started = std::time::Instant::now();
    let _daemon = Daemon::start(&s);
    // Served, not just listening: 200 from a replica.
    assert!(
        until(20, || matches!(http_once(port), Ok((200, _)))),
        "the new daemon's proxy serves"
    );
    let load = Load::start(port);
    let code = until(90, || resume.0.try_wait().unwrap().is_some())
        .then(|| resume.0.wait().unwrap().code())
        .flatten();
    let mut text = String::new();
    use std::io::Read as _;
    if let Some(mut err) = resume.0.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    eprintln!(
        "resume took {:.1} s after the daemon came back:\n{text}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, Some(0), "resume: {text}");
    assert!(text.contains("`baton serve` is not running"), "{text}");
    assert!(text.contains("was paused: resume requested"), "{text}");
    assert!(text.contains("resumed: 1 failed new replica(s)"), "{text}");
    assert!(text.contains("completed"), "{text}");
    assert!(wait_for(port, "v2", 10), "v2 serves");
    let done: serde_json::Value =
        serde_json::from_str(&s.ok(&["--json", "rollout", "status", "web"])).unwrap();
    assert_eq!(done["rollout"]["status"], "completed", "{done}");
    let to = done["rollout"]["to_hash"]
        .as_str()
        .unwrap_or("-")
        .to_string();
    let running = s.running();
    assert_eq!(running.len(), 3, "{running:?}");
    assert!(
        running.iter().all(|n| n.ends_with(&to[..to.len().min(8)])),
        "only replicas of version 2: {running:?}"
    );

    // resume on a rollout that is not paused: refused, nothing changed.
    let out = s.baton(&["rollout", "resume", "web"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains("service web: rollout") && text.contains("is completed, not paused"),
        "{text}"
    );
    assert_eq!(latest(&s).0, "completed");

    std::thread::sleep(Duration::from_millis(500));
    let (bodies, failures) = load.finish();
    eprintln!(
        "resume: {:.1} s in all; {} answers, {failures} failed",
        t0.elapsed().as_secs_f64(),
        bodies.len()
    );
    assert_eq!(failures, 0, "no failed request");
    assert!(bodies.len() > 10, "the load ran ({})", bodies.len());
    assert!(
        bodies.iter().all(|b| b == "v1" || b == "v2"),
        "only v1 and v2 answered: {:?}",
        tally(&bodies)
    );
    s.ok(&["down"]);
    assert!(s.containers().is_empty());
}

/// 2 replicas updated at once with a long monitor window; version 1 is healthy only while
/// `flag/v1ok` exists in the project directory, and a rollback restores one replica per
/// batch, pausing on a failure.
fn two_with_pausing_rollback(port: u16) -> String {
    format!(
        r#"services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    restart: always
    command: [sh, -c, 'mkdir -p /www && echo "v$$VERSION" > /www/index.html && exec httpd -f -p 80 -h /www']
    environment:
      VERSION: ${{VERSION:-1}}
    volumes: ["./flag:/flag"]
    ports: ["127.0.0.1:{port}:80"]
    healthcheck:
      test: [CMD-SHELL, 'test "$$VERSION" != 1 || test -f /flag/v1ok']
      interval: 1s
      timeout: 3s
      retries: 2
    deploy:
      replicas: 2
      update_config:
        parallelism: 0
        monitor: 10m
        failure_action: rollback
      rollback_config:
        parallelism: 1
        monitor: 1s
        failure_action: pause
    x-baton:
      rollout:
        strategy: rolling
        health_timeout: 30s
"#
    )
}

/// The known-issue case: a rollback paused by `rollback_config.failure_action: pause`
/// (the restored old replica fails its healthcheck) is finished from the CLI once the
/// cause is fixed: `rollout resume` removes the failed restored replica and rolls back
/// the rest; 2 healthy replicas of version 1 are left and no request fails.
#[test]
fn paused_rollback_is_resumed_from_the_cli() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("rbpause");
    let port = free_port();
    s.write("compose.yaml", &two_with_pausing_rollback(port));
    s.write("flag/v1ok", "");
    let _daemon = Daemon::start(&s);
    s.ok(&["up", "-d"]);
    serving_v1(&s, port, 2);
    let load = Load::start(port);
    let out = s
        .cmd()
        .env("VERSION", "2")
        .args(["up", "-d", "--no-wait"])
        .output()
        .unwrap();
    assert!(out.status.success(), "up v2: {}", stderr(&out));
    let state = || -> serde_json::Value {
        serde_json::from_str(&s.ok(&["--json", "rollout", "status", "web"])).unwrap_or_default()
    };
    let replaced = || {
        let v = state();
        v["state"]["new_routed"].as_array().map(Vec::len) == Some(2)
            && v["state"]["old_stopped"].as_array().map(Vec::len) == Some(2)
    };
    assert!(until(60, replaced), "v2 replaced both: {}", state());

    // Version 1 can no longer get healthy: the rollback abort asks for pauses.
    std::fs::remove_file(s.path().join("flag/v1ok")).unwrap();
    let out = s.baton(&["rollout", "abort", "web"]);
    let text = stderr(&out);
    eprintln!("abort:\n{text}");
    assert_eq!(out.status.code(), Some(1), "a paused rollback: {text}");
    assert!(text.contains("paused: rollback paused: "), "{text}");
    assert_eq!(latest(&s).0, "paused");
    assert_eq!(http_get(port, 10).as_deref().map(str::trim), Some("v2"));

    // Fixed: resume goes on rolling back.
    std::fs::write(s.path().join("flag/v1ok"), "").unwrap();
    let started = std::time::Instant::now();
    let out = s.baton(&["rollout", "resume", "web"]);
    let text = stderr(&out);
    eprintln!(
        "resume took {:.1} s:\n{text}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "resume of a paused rollback: {text}"
    );
    assert!(text.contains("resumed: rolling back"), "{text}");
    assert!(
        text.contains("stop old "),
        "the failed restored replica goes: {text}"
    );
    assert!(text.contains("rolled back: aborted"), "{text}");
    let done = state();
    assert_eq!(done["rollout"]["status"], "rolled-back", "{done}");
    let from = done["rollout"]["from_hash"]
        .as_str()
        .unwrap_or("-")
        .to_string();
    let running = s.running();
    assert_eq!(running.len(), 2, "{running:?}");
    assert!(
        running
            .iter()
            .all(|n| n.ends_with(&from[..from.len().min(8)])),
        "only restored replicas of version 1: {running:?}"
    );
    let healthy = || {
        s.running()
            .iter()
            .all(|n| docker_lines(&["inspect", "-f", "{{.State.Health.Status}}", n]) == ["healthy"])
    };
    assert!(until(30, healthy), "both healthy: {:?}", s.running());
    assert!(wait_for(port, "v1", 10), "v1 serves");
    std::thread::sleep(Duration::from_millis(500));
    let (bodies, failures) = load.finish();
    eprintln!(
        "paused rollback resumed: {} answers, {failures} failed",
        bodies.len()
    );
    assert_eq!(failures, 0, "no failed request");
    assert!(bodies.len() > 50, "the load ran ({})", bodies.len());
    assert!(
        bodies.iter().all(|b| b == "v1" || b == "v2"),
        "only v1 and v2 answered: {:?}",
        tally(&bodies)
    );
    s.ok(&["down"]);
    assert!(s.containers().is_empty());
}

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
