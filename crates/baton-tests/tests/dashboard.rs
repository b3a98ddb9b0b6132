//! The dashboard in a real browser: `baton serve --listen` with tokens from `baton token
//! create`, the example project and a canary service brought up, then Debian's chromium
//! driven by Playwright (`tests/browser/dashboard.mjs`): login, services, a killed
//! replica down and back without a reload, a canary promoted from its button, a
//! pipeline's DAG turning green job by job, a viewer without buttons whose changes get
//! 403, the first load's size, the history graphs (`/ui/series` behind the session,
//! charts drawn and re-read for another range), and a screenshot of each page under
//! `target/dashboard-screenshots/`. Needs Docker, chromium and `npm ci` in
//! tests/browser (scripts/ensure-browser.sh); `BATON_REQUIRE_BROWSER=1` makes their
//! absence a failure instead of a skip.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_tests::api::request;
use baton_tests::{
    baton_bin, docker_available, free_port, repo_root, stderr, wait_for, web_service, Scratch,
};
use serde_json::Value;

/// What the browser test needs beside Docker; `None` (and a note) when something lacks.
fn browser() -> Option<PathBuf> {
    let dir = repo_root().join("tests/browser");
    let missing: Vec<&str> = [
        ("/usr/bin/chromium", Path::new("/usr/bin/chromium").exists()),
        (
            "tests/browser/node_modules (npm ci)",
            dir.join("node_modules/playwright-core/package.json")
                .exists(),
        ),
        (
            "node",
            Command::new("node")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
        ),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(what, _)| what)
    .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("BATON_REQUIRE_BROWSER").is_none(),
        "BATON_REQUIRE_BROWSER is set but {} missing: run scripts/ensure-browser.sh",
        missing.join(", ")
    );
    eprintln!(
        "skipped: {} missing (scripts/ensure-browser.sh installs them; BATON_REQUIRE_BROWSER=1 makes this a failure)",
        missing.join(", ")
    );
    None
}

/// A `baton serve --listen`, killed when dropped; its output goes to a file.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `baton` for project `project` in `dir`, with the daemon's state directory.
fn baton(state: &Path, dir: &Path, project: &str) -> Command {
    let mut c = Command::new(baton_bin());
    c.current_dir(dir)
        .env("BATON_STATE_DIR", state)
        .env("COMPOSE_PROJECT_NAME", project)
        .env_remove("DOCKER_HOST")
        .env_remove("BATON_SERVER")
        .env_remove("BATON_TOKEN");
    c
}

fn token(s: &Scratch, name: &str, role: &str) -> String {
    let out = s.baton(&["token", "create", name, "--role", role]);
    assert!(out.status.success(), "token create: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

fn until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// One HTTP/1.1 exchange with the daemon: the status, the head and the body.
fn exchange(port: u16, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head, raw[split + 4..].to_vec())
}

/// `POST /ui/login` with the token, as the login form sends it: the session cookie.
fn dashboard_session(port: u16, token: &str) -> String {
    let form = format!("token={token}&next=%2Fui%2F");
    let head = format!(
        "POST /ui/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        form.len()
    );
    let (status, head, _) = exchange(port, &head, form.as_bytes());
    assert_eq!(status, 303, "login: {head}");
    head.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie: "))
        .find_map(|l| l.get("set-cookie: ".len()..))
        .and_then(|c| c.split(';').next())
        .filter(|c| c.starts_with("baton_session="))
        .unwrap_or_else(|| panic!("a session cookie: {head}"))
        .to_string()
}

/// `GET path` on the dashboard with the cookie (if any) and extra headers: status, head
/// and the body as JSON (`Null` when it is not).
fn ui_get(port: u16, path: &str, cookie: Option<&str>, extra: &str) -> (u16, String, Value) {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{cookie}{extra}Connection: close\r\n\r\n"
    );
    let (status, head, body) = exchange(port, &head, b"");
    // Header names in lower case, values as sent.
    let head = head
        .lines()
        .map(|l| match l.split_once(':') {
            Some((k, v)) => format!("{}:{v}", k.to_ascii_lowercase()),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let json = if head.contains("transfer-encoding: chunked") {
        // axum's JSON answers carry a length; a chunked one is not JSON here.
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    (status, head, json)
}

fn query_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The history behind the dashboard session: refused without one, the same answer as
/// `/api/v1/series` with one (the canary's replicas, sampled every second), and a bad
/// query or step is the client's error.
fn series_behind_the_session(port: u16, admin: &str, project: &str) {
    let q = query_encode(&format!(
        "baton_service_replicas{{project=\"{project}\",service=\"web\"}}"
    ));
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let path = |to: u64| format!("/ui/series?query={q}&from={}&to={to}&step=1", to - 120);

    // No session: a page would send the browser to log in; a script gets 401.
    let (status, head, body) = ui_get(port, &path(now()), None, "");
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("location: /ui/login?next="), "{head}");
    assert!(body.get("series").is_none(), "{body}");
    let (status, _, body) = ui_get(port, &path(now()), None, "HX-Request: true\r\n");
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = ui_get(
        port,
        &path(now()),
        Some("baton_session=not-a-session"),
        "HX-Request: true\r\n",
    );
    assert_eq!(status, 401, "a made-up session");

    // With a session: the replicas desired, running and healthy, once sampled.
    let cookie = dashboard_session(port, admin);
    let mut answer = Value::Null;
    let sampled = until(60, || {
        let (status, head, body) = ui_get(port, &path(now()), Some(&cookie), "");
        assert_eq!(status, 200, "{head} {body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        answer = body;
        let states: Vec<&str> = answer["series"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| s["points"].as_array().is_some_and(|p| !p.is_empty()))
                    .filter_map(|s| s["labels"]["state"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        ["desired", "healthy", "running"]
            .iter()
            .all(|st| states.contains(st))
    });
    assert!(sampled, "the replicas' series: {answer}");
    let desired = answer["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["labels"]["state"] == "desired")
        .unwrap();
    assert_eq!(desired["labels"]["project"], project, "{desired}");
    let last = desired["points"].as_array().unwrap().last().unwrap();
    assert_eq!(last[1], 3.0, "the canary's file asks for 3: {desired}");
    assert_eq!(answer["step"], 1.0, "{answer}");

    // The same JSON as the API's for the same range (one that is already sampled).
    let to = now() - 3;
    let (status, _, dash) = ui_get(port, &path(to), Some(&cookie), "");
    assert_eq!(status, 200);
    let api = request(
        port,
        "GET",
        &format!("/api/v1{}", &path(to)[3..]),
        Some(admin),
        None,
    );
    assert_eq!(api.status, 200, "{}", api.body);
    assert_eq!(dash, api.body, "the dashboard answers as the API does");

    // A query that does not parse, a step that is not one: 4xx with the reason.
    for (bad, want) in [
        (
            format!(
                "/ui/series?query={}",
                query_encode("sum(baton_service_replicas")
            ),
            422,
        ),
        (format!("/ui/series?query={q}&step=soon"), 400),
        (format!("/ui/series?query={q}&from=-5"), 400),
        ("/ui/series".to_string(), 400),
    ] {
        let (status, _, body) = ui_get(port, &bad, Some(&cookie), "");
        assert_eq!(status, want, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}: {body}"
        );
    }
}

/// The canary project: a 3-replica web service whose canary waits 10 minutes at 34 %
/// (only a promote ends it), a small pipeline whose DAG has two levels in between, and
/// one that waits until it is cancelled.
fn canary_file(port: u16) -> String {
    let mut f = web_service(
        port,
        ("3s", 4),
        "      rollout:\n        strategy: canary\n        steps: [{weight: 34, pause: 10m}]\n        analysis: {max_error_rate: 5%, max_p95_latency: 2s, min_requests: 5}\n        health_timeout: 30s",
    );
    f.push_str(
        r#"
pipelines:
  ci:
    jobs:
      build:
        run: "sleep 1.5; mkdir -p dist; echo built > dist/app.txt; echo build done"
        artifacts: {paths: [dist]}
      lint:
        needs: [build]
        run: "sleep 1.5; echo lint ok"
      test:
        needs: [build]
        run: "sleep 2.5; echo tests ok"
      deploy:
        needs: [lint, test]
        run: "sleep 1.5; echo deployed"
  slow:
    jobs:
      wait:
        run: "sleep 120"
"#,
    );
    f
}

#[test]
fn dashboard_in_a_real_browser() {
    if !docker_available() {
        return;
    }
    // Without a browser the test still checks what needs none (`/ui/series`).
    let browser_dir = browser();
    let demo = Scratch::new("dashdemo");
    let canary = Scratch::new("dashcanary");
    let state = demo.state.path().to_path_buf();
    let shots = repo_root().join("target/dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).expect("screenshot directory");

    let admin = token(&demo, "dash-admin", "admin");
    let operator = token(&demo, "dash-operator", "operator");
    let viewer = token(&demo, "dash-viewer", "viewer");
    assert!(admin.starts_with("baton_"), "a token: {admin:?}");

    let port = free_port();
    let log = std::fs::File::create(state.join("serve.log")).expect("serve log");
    let err = log.try_clone().expect("serve log");
    let _serve = Serve(
        demo.cmd()
            .args([
                "serve",
                "--tick-ms",
                "200",
                "--sample-interval",
                "1s",
                "--listen",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("baton serve"),
    );
    assert!(
        until(30, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()),
        "baton serve listens on {port}: {}",
        std::fs::read_to_string(state.join("serve.log")).unwrap_or_default()
    );

    // The example project, as a user would bring it up.
    let compose = std::fs::read_to_string(repo_root().join("examples/demo/compose.yaml"))
        .expect("examples/demo/compose.yaml");
    demo.write("compose.yaml", &compose);
    // The example's replicas are not restarted (`restart` unset, as in Compose); here
    // `app` says `always`, so the daemon brings a killed replica back.
    demo.write(
        "compose.override.yaml",
        "services:\n  app:\n    restart: always\n",
    );
    let front = free_port();
    let up = demo
        .cmd()
        .env("FRONT_PORT", front.to_string())
        .args(["up", "-d"])
        .output()
        .expect("up");
    assert!(up.status.success(), "up demo: {}", stderr(&up));

    // The canary project: v1, then v2 held at its first canary step.
    let web = free_port();
    canary.write("compose.yaml", &canary_file(web));
    let up = baton(&state, canary.path(), &canary.name)
        .args(["up", "-d"])
        .output()
        .expect("up");
    assert!(up.status.success(), "up canary v1: {}", stderr(&up));
    assert!(wait_for(web, "v1", 60), "v1 serves");
    let up = baton(&state, canary.path(), &canary.name)
        .env("VERSION", "2")
        .args(["up", "-d", "--no-wait"])
        .output()
        .expect("up");
    assert!(up.status.success(), "up canary v2: {}", stderr(&up));
    let at_step = || {
        let out = baton(&state, canary.path(), &canary.name)
            .args(["--json", "rollout", "status", "web"])
            .output()
            .expect("rollout status");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["state"]["weight"] == 34 && v["rollout"]["status"] == "running"
    };
    assert!(until(90, at_step), "the canary waits at 34 %");

    series_behind_the_session(port, &admin, &canary.name);
    let Some(browser_dir) = browser_dir else {
        let _ = baton(&state, canary.path(), &canary.name)
            .args(["down"])
            .output();
        let _ = demo.baton(&["down", "-v"]);
        return;
    };

    let out = Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .current_dir(&browser_dir)
        .env("BATON_URL", format!("http://127.0.0.1:{port}"))
        .env("BATON_ADMIN_TOKEN", &admin)
        .env("BATON_OPERATOR_TOKEN", &operator)
        .env("BATON_VIEWER_TOKEN", &viewer)
        .env("BATON_DEMO", &demo.name)
        .env("BATON_CANARY", &canary.name)
        .env("BATON_CANARY_PORT", web.to_string())
        .env("BATON_BIN", baton_bin())
        .env("BATON_STATE_DIR", &state)
        .env("BATON_CANARY_DIR", canary.path())
        .env("SCREENSHOTS", &shots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("node tests/browser/dashboard.mjs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    eprintln!("{text}");
    eprintln!("screenshots: {}", shots.display());
    assert!(
        out.status.success(),
        "the browser test failed ({:?}); daemon log:\n{}",
        out.status.code(),
        std::fs::read_to_string(state.join("serve.log"))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(text.contains("ALL PASSED"), "{text}");
    let pngs = std::fs::read_dir(&shots)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
                .count()
        })
        .unwrap_or(0);
    assert!(
        pngs >= 10,
        "a screenshot of each page ({pngs} in {})",
        shots.display()
    );

    let _ = baton(&state, canary.path(), &canary.name)
        .args(["down"])
        .output();
    let _ = demo.baton(&["down", "-v"]);
}
