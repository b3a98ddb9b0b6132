//! Autoscaling by a real daemon: a service behind baton's proxy with `rps` as its metric
//! scales up while a load runs and back to `min` after the scale-down window once it
//! stops, through the same path as `baton scale`, each decision an event; `baton
//! autoscale status` says why; no request fails meanwhile.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton_tests::pipeline::Serve;
use baton_tests::{docker_available, free_port, http_get, wait_for, within, Scratch, IMAGE};
use serde_json::Value;

fn file(port: u16) -> String {
    file_with(port, "{strategy: rolling}")
}

/// The service with `rollout` as its `x-baton.rollout`; its page says `v$VERSION`.
fn file_with(port: u16, rollout: &str) -> String {
    format!(
        r#"services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    restart: always
    command: [sh, -c, 'mkdir -p /www && echo "v$$VERSION" > /www/index.html; exec httpd -f -p 80 -h /www']
    environment:
      VERSION: ${{VERSION:-1}}
    ports: ["127.0.0.1:{port}:80"]
    healthcheck:
      test: [CMD, wget, -q, -O, /dev/null, http://127.0.0.1/]
      interval: 1s
      timeout: 3s
      retries: 4
    deploy:
      replicas: 1
    x-baton:
      rollout: {rollout}
      autoscale:
        min: 1
        max: 3
        metrics: [{{rps: 5}}]
        behavior:
          scale_up: {{stabilization: 0s, max_step: 4, period: 1s}}
          scale_down: {{stabilization: 5s, max_step: 100%, period: 1s}}
"#
    )
}

fn status(s: &Scratch) -> Value {
    let out = s.baton(&["--json", "autoscale", "status", "web"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn replicas(s: &Scratch) -> u64 {
    status(s)["observation"]["replicas"].as_u64().unwrap_or(0)
}

#[test]
fn a_load_scales_a_service_up_and_its_end_back_to_min() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("autoscale");
    let web = free_port();
    s.write("compose.yaml", &file(web));
    let _serve = Serve::start(&s, &[], &[]);
    let log = || std::fs::read_to_string(s.state.path().join("serve.log")).unwrap_or_default();
    s.ok(&["up", "-d"]);
    assert!(wait_for(web, "v1", 90), "v1 serves:\n{}", log());
    assert!(
        within(Duration::from_secs(30), || replicas(&s) == 1).is_some(),
        "{}\n{}",
        status(&s),
        log()
    );

    // A load of some 20 requests a second against a target of 5 per replica.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU32::new(0));
    let sent = Arc::new(AtomicU32::new(0));
    let load = {
        let (stop, failed, sent) = (stop.clone(), failed.clone(), sent.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                if http_get(web, 10).is_none_or(|b| !b.contains("v1")) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    assert!(
        within(Duration::from_secs(60), || replicas(&s) == 3).is_some(),
        "never scaled up: {}\n{}",
        status(&s),
        log()
    );
    let text = s.ok(&["autoscale", "status", "web"]);
    assert!(text.contains("rps:"), "{text}");
    // Held at max while the load goes on.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(replicas(&s), 3, "{}", status(&s));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

    // The load stops: back to min, once the 5 s window has passed.
    assert!(
        within(Duration::from_secs(60), || replicas(&s) == 1).is_some(),
        "never scaled down: {}\n{}",
        status(&s),
        log()
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "of {} requests",
        sent.load(Ordering::Relaxed)
    );
    // Each change is an event with its numbers.
    let events = s.baton(&["--json", "events", "--limit", "500"]);
    let events: Value = serde_json::from_slice(&events.stdout).unwrap_or(Value::Null);
    let messages: Vec<String> = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "autoscale")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("scaling from 1 to ") && m.contains("rps:")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("to 1 replicas")),
        "{messages:#?}"
    );
    // An audit entry per scale, by the autoscaler.
    let audit = s.baton(&["--json", "audit", "--limit", "100"]);
    assert!(
        String::from_utf8_lossy(&audit.stdout).contains("daemon:autoscale"),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
}

/// Requests on a thread until `stop`; how many failed (an answer without `want`).
fn load(port: u16, want: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut failed = 0;
        while !stop.load(Ordering::Relaxed) {
            if http_get(port, 10).is_none_or(|b| !b.contains(want)) {
                failed += 1;
            }
            std::thread::sleep(Duration::from_millis(40));
        }
        failed
    })
}

#[test]
fn autoscaling_holds_while_a_rollout_runs_and_resumes_after_it() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("autoscale-rollout");
    let web = free_port();
    s.write(
        "compose.yaml",
        &file_with(
            web,
            "{strategy: canary, steps: [{weight: 50, pause: 10m}], health_timeout: 30s}",
        ),
    );
    let _serve = Serve::start(&s, &[], &[]);
    let log = || std::fs::read_to_string(s.state.path().join("serve.log")).unwrap_or_default();
    s.ok(&["up", "-d"]);
    assert!(wait_for(web, "v1", 90), "v1 serves:\n{}", log());
    // A canary of v2, paused at its step for 10 minutes.
    let up = s
        .cmd()
        .env("VERSION", "2")
        .args(["up", "-d", "--no-wait"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", baton_tests::stderr(&up));
    let at_step = || {
        let v: Value =
            serde_json::from_slice(&s.baton(&["--json", "rollout", "status", "web"]).stdout)
                .unwrap_or_default();
        v.to_string().contains("\"weight\":50")
    };
    assert!(
        within(Duration::from_secs(90), at_step).is_some(),
        "the canary reaches its step:\n{}",
        log()
    );
    // Under load during the rollout: the autoscaler holds, and says why.
    let stop = Arc::new(AtomicBool::new(false));
    let during = load(web, "v", stop.clone());
    let held = within(Duration::from_secs(20), || {
        status(&s)["decision"]["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["reason"] == "rollout_in_progress"))
    });
    assert!(held.is_some(), "{}", status(&s));
    std::thread::sleep(Duration::from_secs(4));
    let st = status(&s);
    assert!(st["decision"]["desired"].is_null(), "{st}");
    assert!(
        st["observation"]["rps"].is_null() || st["observation"]["rollout_in_progress"] == true,
        "{st}"
    );
    let scaled = |s: &Scratch| {
        let events = s.baton(&["--json", "events", "--limit", "500"]);
        let events: Value = serde_json::from_slice(&events.stdout).unwrap_or(Value::Null);
        events["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == "autoscale")
            .filter(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("scaling"))
            })
            .count()
    };
    assert_eq!(scaled(&s), 0, "no scale during the rollout");
    // Promoted: the rollout ends, and autoscaling resumes under the same load.
    s.ok(&["rollout", "promote", "web"]);
    assert!(
        within(Duration::from_secs(90), || replicas(&s) == 3).is_some(),
        "never scaled after the rollout: {}\n{}",
        status(&s),
        log()
    );
    assert!(scaled(&s) >= 1);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(during.join().unwrap(), 0, "every request answered");
}
