//! The HTTP API of `baton serve --listen` against the real engine: tokens of each role
//! made by `baton token create`, reads and changes, the CLI through `--server`, the
//! event stream within a second of a `docker kill`, a canary promoted over HTTP, the
//! audit log's actors, and bad input (malformed, unknown fields, too large, traversal, a
//! burst of wrong tokens) refused with nothing changed.

use std::process::Command;
use std::time::{Duration, Instant};

use baton_tests::api::{request, token, Answer, Sse};
use baton_tests::pipeline::Serve;
use baton_tests::{
    docker_available, free_port, stderr, stdout, wait_for, web_service, within, Scratch, IMAGE,
};
use serde_json::{json, Value};

/// `baton serve --listen 127.0.0.1:PORT`, once it answers.
fn serve(s: &Scratch, port: u16) -> Serve {
    let addr = format!("127.0.0.1:{port}");
    let serve = Serve::start(s, &["--listen", &addr], &[]);
    let up = within(Duration::from_secs(60), || {
        request(port, "GET", "/api/v1/openapi.json", None, None).status == 200
    });
    assert!(
        up.is_some(),
        "the API never answered:\n{}",
        std::fs::read_to_string(s.state.path().join("serve.log")).unwrap_or_default()
    );
    serve
}

fn services(port: u16, token: &str, project: &str) -> Value {
    let a = request(
        port,
        "GET",
        &format!("/api/v1/projects/{project}/services"),
        Some(token),
        None,
    );
    assert_eq!(a.status, 200, "{a:?}");
    a.body
}

fn running(view: &Value, service: &str) -> u64 {
    view["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == service)
        .map(|s| s["running"].as_u64().unwrap_or(0))
        .unwrap_or(0)
}

fn post(port: u16, path: &str, token: &str, body: Value) -> Answer {
    request(
        port,
        "POST",
        path,
        Some(token),
        Some(body.to_string().as_bytes()),
    )
}

fn audit(port: u16, token: &str) -> Vec<Value> {
    let a = request(port, "GET", "/api/v1/audit?limit=1000", Some(token), None);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn the_api_by_role_with_events_rollouts_and_audit() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("api");
    let web_port = free_port();
    let mut file = web_service(
        web_port,
        ("3s", 4),
        "      rollout:\n        strategy: canary\n        steps: [{weight: 34, pause: 10m}]\n        health_timeout: 20s",
    );
    file.push_str(&format!(
        "  worker:\n    image: {IMAGE}\n    init: true\n    stop_grace_period: 1s\n    restart: always\n    command: [sleep, '600']\n    deploy:\n      replicas: 2\n"
    ));
    file.push_str("x-baton:\n  pipelines:\n    ci:\n      jobs:\n        hello:\n          run: echo \"hi $$WHO\"\n        after:\n          needs: [hello]\n          run: \"true\"\n");
    s.write("compose.yaml", &file);
    let viewer = token(&s, "dash", "viewer");
    let operator = token(&s, "ci", "operator");
    let admin = token(&s, "root", "admin");
    let port = free_port();
    let _serve = serve(&s, port);
    let p = s.name.clone();
    let base = format!("/api/v1/projects/{p}");

    // The CLI brings it up on this machine (audited as cli:<user>).
    s.ok(&["up", "-d"]);
    assert!(wait_for(web_port, "v1", 60), "v1 serves");

    // No token, a wrong one: 401. A viewer reads.
    assert_eq!(
        request(port, "GET", &format!("{base}/services"), None, None).status,
        401
    );
    assert_eq!(
        request(
            port,
            "GET",
            &format!("{base}/services"),
            Some("baton_not-a-token-at-all-0123456789"),
            None
        )
        .status,
        401
    );
    let view = services(port, &viewer, &p);
    assert_eq!(running(&view, "web"), 3, "{view}");
    assert_eq!(running(&view, "worker"), 2, "{view}");
    let replica = &view["services"][1]["replicas"][0];
    assert_eq!(replica["state"], "running", "{view}");
    assert!(
        replica["status"].as_str().unwrap_or("").starts_with("Up"),
        "{replica}"
    );
    let projects = request(port, "GET", "/api/v1/projects", Some(&viewer), None);
    assert!(projects
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == p.as_str() && x["active"] == true));
    // ...and may change nothing.
    for path in ["scale", "stop", "down", "services/web/rollout/promote"] {
        let a = post(port, &format!("{base}/{path}"), &viewer, json!({}));
        assert_eq!(a.status, 403, "{path}: {a:?}");
    }
    assert_eq!(
        request(port, "GET", "/api/v1/audit", Some(&operator), None).status,
        403
    );

    // The OpenAPI document is served and lists every route.
    let doc = request(port, "GET", "/api/v1/openapi.json", None, None).body;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in [
        ("get", "/api/v1/status"),
        ("get", "/api/v1/projects/{project}/services"),
        ("get", "/api/v1/projects/{project}/rollouts"),
        ("get", "/api/v1/events"),
        ("get", "/api/v1/projects/{project}/services/{service}/logs"),
        ("post", "/api/v1/projects/{project}/up"),
        ("post", "/api/v1/projects/{project}/scale"),
        (
            "post",
            "/api/v1/projects/{project}/services/{service}/rollout/promote",
        ),
        ("get", "/api/v1/audit"),
        ("post", "/api/v1/tokens"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not documented"
        );
    }

    // The event stream: a killed replica shows within a second, and comes back.
    let events = Sse::open(port, &format!("/api/v1/events?project={p}"), &viewer, None);
    assert_eq!(events.status, 200);
    let victim = format!("{p}-worker-1");
    let killed = Instant::now();
    assert!(Command::new("docker")
        .args(["kill", &victim])
        .output()
        .unwrap()
        .status
        .success());
    let (at, first) = events
        .wait(Duration::from_secs(10), |e| e["subject"] == victim.as_str())
        .expect("an event about the killed replica");
    let took = at.duration_since(killed);
    eprintln!("first event {took:?} after docker kill: {first}");
    assert!(took < Duration::from_secs(1), "{took:?}: {first}");
    let back = events.wait(Duration::from_secs(20), |e| {
        e["subject"] == victim.as_str()
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("-> running") || m.contains("started"))
    });
    assert!(back.is_some(), "the supervisor brings it back, and says so");

    // An operator scales through the API; the daemon is woken and the answer is the
    // control plane's outcome.
    let scaled = post(
        port,
        &format!("{base}/scale"),
        &operator,
        json!({"replicas": {"worker": 3}}),
    );
    assert_eq!(scaled.status, 200, "{scaled:?}");
    assert_eq!(scaled.body["ok"], true, "{scaled:?}");
    assert!(
        within(Duration::from_secs(10), || running(
            &services(port, &viewer, &p),
            "worker"
        ) == 3)
        .is_some(),
        "three workers"
    );

    // The CLI through --server: same commands, the token's role decides.
    let remote = |token: &str, args: &[&str]| {
        s.cmd()
            .env("BATON_SERVER", format!("http://127.0.0.1:{port}"))
            .env("BATON_TOKEN", token)
            .args(args)
            .output()
            .unwrap()
    };
    let ps = remote(&viewer, &["--json", "ps", "worker"]);
    assert!(ps.status.success(), "{}", stderr(&ps));
    let rows: Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(3), "{rows}");
    let refused = remote(&viewer, &["restart", "worker"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("403") && stderr(&refused).contains("needs operator"),
        "{}",
        stderr(&refused)
    );
    let no_token = s
        .cmd()
        .env("BATON_SERVER", format!("http://127.0.0.1:{port}"))
        .env_remove("BATON_TOKEN")
        .args(["ps"])
        .output()
        .unwrap();
    assert_eq!(no_token.status.code(), Some(1));
    assert!(
        stderr(&no_token).contains("BATON_TOKEN"),
        "{}",
        stderr(&no_token)
    );
    let local_only = remote(&operator, &["logs", "worker"]);
    assert_eq!(local_only.status.code(), Some(1));
    assert!(
        stderr(&local_only).contains("this machine only"),
        "{}",
        stderr(&local_only)
    );
    // A silence made and ended through the API, as the token's holder.
    let silenced = remote(
        &operator,
        &[
            "--json",
            "alerts",
            "silence",
            "service=\"worker\"",
            "--comment",
            "remote",
        ],
    );
    assert!(silenced.status.success(), "{}", stderr(&silenced));
    let made: Value = serde_json::from_slice(&silenced.stdout).unwrap();
    let id = made["id"].as_str().unwrap_or("").to_string();
    assert_eq!(id.len(), 16, "{made}");
    let viewer_ends = remote(&viewer, &["alerts", "unsilence", &id]);
    assert!(
        stderr(&viewer_ends).contains("403"),
        "{}",
        stderr(&viewer_ends)
    );
    let ended = remote(&operator, &["alerts", "unsilence", &id]);
    assert!(ended.status.success(), "{}", stderr(&ended));
    assert!(stdout(&ended).contains(&format!("silence {id} ended")));
    let ls: Value = serde_json::from_str(&s.ok(&["--json", "alerts", "ls"])).unwrap();
    let mine = ls["silences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["id"] == id.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(mine["created_by"], "ci", "made as the token's holder: {ls}");
    let scale = remote(&operator, &["scale", "worker=2"]);
    assert!(scale.status.success(), "{}", stderr(&scale));
    assert_eq!(running(&services(port, &viewer, &p), "worker"), 2);

    // A canary rollout, promoted over HTTP.
    let up = s
        .cmd()
        .env("VERSION", "2")
        .args(["up", "-d", "--no-wait"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    let latest = || {
        let a = request(
            port,
            "GET",
            &format!("{base}/rollouts?service=web"),
            Some(&viewer),
            None,
        );
        a.body
            .as_array()
            .and_then(|r| r.last().cloned())
            .unwrap_or(Value::Null)
    };
    assert!(
        within(Duration::from_secs(90), || latest()["weight"] == 34).is_some(),
        "the canary reaches its step: {}",
        latest()
    );
    let r = latest();
    assert_eq!(
        (r["status"].as_str(), r["strategy"].as_str()),
        (Some("running"), Some("canary"))
    );
    assert!(
        r["history"].as_array().is_some_and(|h| !h.is_empty()),
        "{r}"
    );
    let step = events.wait(Duration::from_secs(5), |e| {
        e["kind"] == "rollout"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("weight 34% new"))
    });
    assert!(step.is_some(), "the weight is in the event stream");
    let promoted = post(
        port,
        &format!("{base}/services/web/rollout/promote"),
        &operator,
        json!({}),
    );
    assert_eq!(promoted.status, 200, "{promoted:?}");
    assert_eq!(promoted.body["was"], "running");
    assert!(
        within(Duration::from_secs(90), || latest()["status"]
            == "completed")
        .is_some(),
        "{}",
        latest()
    );
    assert!(wait_for(web_port, "v2", 20), "v2 serves after the promote");
    // Nothing left to promote: a clear 409.
    let again = post(
        port,
        &format!("{base}/services/web/rollout/promote"),
        &operator,
        json!({}),
    );
    assert_eq!(again.status, 409, "{again:?}");

    // The audit log: the CLI's and the API's changes, each with its actor.
    let log = audit(port, &admin);
    let has = |actor: &str, action: &str| {
        log.iter().any(|e| {
            e["actor"].as_str().is_some_and(|a| a.starts_with(actor)) && e["action"] == action
        })
    };
    assert!(has("cli:", "up"), "{log:#?}");
    assert!(has("cli:", "token.create"), "{log:#?}");
    assert!(has("ci", "scale"), "{log:#?}");
    assert!(has("ci", "rollout.promote"), "{log:#?}");
    let failed = log
        .iter()
        .find(|e| e["action"] == "rollout.promote" && e["outcome"] == "error")
        .expect("the refused promote is audited too");
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or("")
            .contains("not running"),
        "{failed}"
    );
    let cli_audit = s.ok(&["audit", "--limit", "100"]);
    assert!(
        cli_audit.contains("rollout.promote") && cli_audit.contains("ci"),
        "{cli_audit}"
    );
    // Audit entries are in the event stream too.
    let seen = events.wait(Duration::from_secs(5), |e| e["kind"] == "audit");
    assert!(seen.is_some(), "audit entries are events");

    // Bad input: each a clear 4xx, nothing changed, the daemon keeps serving.
    let before_audit = audit(port, &admin).len();
    let before_containers = s.containers();
    let raw = |path: &str, body: &[u8]| {
        request(
            port,
            "POST",
            &format!("{base}/{path}"),
            Some(&operator),
            Some(body),
        )
    };
    let a = raw("stop", b"{\"services\": [");
    assert_eq!(a.status, 400, "{a:?}");
    assert!(
        a.body["error"].as_str().unwrap().contains("malformed JSON"),
        "{a:?}"
    );
    let a = raw("stop", b"{\"services\": [\"web\"], \"now\": true}");
    assert_eq!(a.status, 422, "{a:?}");
    assert!(
        a.body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `now`"),
        "{a:?}"
    );
    let a = raw("up", b"{\"project\": {\"name\": \"someone-else\"}}");
    assert_eq!(a.status, 422, "{a:?}");
    let huge = format!("{{\"services\": [\"{}\"]}}", "x".repeat(9 << 20));
    let a = raw("stop", huge.as_bytes());
    assert_eq!(a.status, 413, "{:?}", a.status);
    for path in [
        format!("{base}/pipelines/runs/1/artifacts/..%2F..%2Fbaton.db"),
        format!("{base}/pipelines/runs/1/artifacts/%2Fetc%2Fpasswd"),
        "/api/v1/projects/..%2F..%2Fetc/services".to_string(),
    ] {
        let a = request(port, "GET", &path, Some(&viewer), None);
        assert_eq!(a.status, 400, "{path}: {a:?}");
    }
    // A burst of wrong tokens: all 401, then the right one still gets in.
    let started = Instant::now();
    let burst: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                request(
                    port,
                    "GET",
                    "/api/v1/projects",
                    Some(&format!("baton_guess{i:02}-0123456789abcdef0123456789")),
                    None,
                )
                .status
            })
        })
        .collect();
    let codes: Vec<u16> = burst.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(codes.iter().all(|c| *c == 401), "{codes:?}");
    let took = started.elapsed();
    eprintln!("20 wrong tokens answered in {took:?}");
    assert!(
        took >= Duration::from_secs(1),
        "guesses are slowed down: {took:?}"
    );
    assert_eq!(
        request(port, "GET", "/api/v1/projects", Some(&viewer), None).status,
        200
    );
    assert_eq!(audit(port, &admin).len(), before_audit, "nothing was done");
    assert_eq!(s.containers(), before_containers, "nothing changed");

    // A pipeline run started over HTTP: answered with its id, its jobs in the stream.
    let started = post(
        port,
        &format!("{base}/pipelines/ci/run"),
        &operator,
        json!({"vars": {"WHO": "api"}}),
    );
    assert_eq!(started.status, 200, "{started:?}");
    let run = started.body["run"].as_i64().expect("a run id");
    let done = events.wait(Duration::from_secs(60), |e| {
        e["kind"] == "pipeline" && e["message"] == format!("run {run}: success").as_str()
    });
    assert!(done.is_some(), "the run's end is an event");
    let detail = request(
        port,
        "GET",
        &format!("{base}/pipelines/runs/{run}"),
        Some(&viewer),
        None,
    )
    .body;
    assert_eq!(detail["run"]["status"], "success", "{detail}");
    assert_eq!(detail["run"]["vars"]["WHO"], "api", "{detail}");
    assert_eq!(detail["jobs"].as_array().map(Vec::len), Some(2), "{detail}");
    let cancel = post(
        port,
        &format!("{base}/pipelines/runs/{run}/cancel"),
        &operator,
        json!({}),
    );
    assert_eq!(
        cancel.status, 409,
        "a finished run is not cancelled: {cancel:?}"
    );
    assert!(audit(port, &admin)
        .iter()
        .any(|e| e["action"] == "pipeline.run" && e["actor"] == "ci"));

    // Logs of a service, read to the end.
    let logs = request(
        port,
        "GET",
        &format!("{base}/services/web/logs?tail=5"),
        Some(&viewer),
        None,
    );
    assert_eq!(logs.status, 200, "{logs:?}");

    // Down through the API; the project is no longer active.
    let down = post(port, &format!("{base}/down"), &operator, json!({}));
    assert_eq!(down.status, 200, "{down:?}");
    assert_eq!(down.body["ok"], true, "{down:?}");
    assert!(s.containers().is_empty(), "{:?}", s.containers());
}

#[test]
fn the_listener_refuses_to_start_without_a_token_or_tls_off_loopback() {
    let s = Scratch::new("apiguard");
    let port = free_port();
    let o = s.baton(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no API token exists"), "{}", stderr(&o));
    token(&s, "root", "admin");
    let o = s.baton(&["serve", "--listen", &format!("0.0.0.0:{port}")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a loopback address"),
        "{}",
        stderr(&o)
    );
    // A revoked token is gone from the list; the list never shows a token.
    let t = token(&s, "bot", "viewer");
    let listed = s.ok(&["token", "ls"]);
    assert!(
        listed.contains("bot") && listed.contains("viewer") && !listed.contains(&t),
        "{listed}"
    );
    s.ok(&["token", "revoke", "bot"]);
    assert!(!s.ok(&["token", "ls"]).contains("bot"));
    let again = s.baton(&["token", "revoke", "bot"]);
    assert_eq!(again.status.code(), Some(1));
    // The database holds the digest, not the token.
    let db = std::fs::read(s.state.path().join("baton.db")).unwrap();
    let wal = std::fs::read(s.state.path().join("baton.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&t),
            "the token is stored in clear"
        );
    }
}
