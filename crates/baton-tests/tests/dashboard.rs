//! The dashboard in a real browser: `baton serve --listen` with tokens from `baton token
//! create`, the example project and a canary service brought up, then Debian's chromium
//! driven by Playwright (`tests/browser/dashboard.mjs`): login, services, a killed
//! replica down and back without a reload, a canary promoted from its button, a
//! pipeline's DAG turning green job by job, a viewer without buttons whose changes get
//! 403, the first load's size, and a screenshot of each page under
//! `target/dashboard-screenshots/`. Needs Docker, chromium and `npm ci` in
//! tests/browser (scripts/ensure-browser.sh); `BATON_REQUIRE_BROWSER=1` makes their
//! absence a failure instead of a skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_tests::{
    baton_bin, docker_available, free_port, repo_root, stderr, wait_for, web_service, Scratch,
};

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
    let Some(browser_dir) = browser() else {
        return;
    };
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
            .args(["serve", "--tick-ms", "200", "--listen"])
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
