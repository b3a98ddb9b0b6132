//! A swarm target, for real: this machine's engine as a one-node swarm manager on
//! loopback (scripts/ensure-swarm.sh), driven through `baton --target NAME`. The demo
//! stack comes up and goes down leaving nothing; a 3-replica HTTP service behind baton's
//! front (this kernel has no IPVS, so the routing mesh answers nothing) rolls out under
//! load without a failed request and rolls back a version whose healthcheck fails;
//! `plan` lists what the swarm ignores; scale, logs, rollout status and undo. The
//! multi-node tests are in `swarm_nodes.rs`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use baton_tests::{docker_available, docker_lines, free_port, stderr, stdout, within, Scratch};

/// True when this engine is a swarm manager (scripts/ensure-swarm.sh makes it one);
/// without it the tests skip, unless BATON_REQUIRE_DOCKER is set.
fn swarm_available() -> bool {
    if !docker_available() {
        return false;
    }
    let ok = docker_lines(&["info", "--format", "{{.Swarm.ControlAvailable}}"])
        == vec!["true".to_string()];
    if !ok {
        assert!(
            std::env::var_os("BATON_REQUIRE_DOCKER").is_none(),
            "BATON_REQUIRE_DOCKER is set but this engine is no swarm manager: run scripts/ensure-swarm.sh"
        );
        eprintln!("skipped: the engine is no swarm manager (scripts/ensure-swarm.sh)");
    }
    ok
}

const TARGETS: &str = "targets:\n  swarm: {swarm: {}}\n";

/// `baton --target swarm ARGS` in the scratch project.
fn on_swarm(s: &Scratch, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--target", "swarm"];
    all.extend_from_slice(args);
    s.baton(&all)
}

fn ok(s: &Scratch, args: &[&str]) -> String {
    let out = on_swarm(s, args);
    assert!(
        out.status.success(),
        "baton --target swarm {args:?} failed ({:?}):\n{}\n{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    stdout(&out) + &stderr(&out)
}

/// What the swarm holds of a project: services, networks, secrets, configs and task
/// containers with baton's labels.
fn leftovers(project: &str) -> Vec<String> {
    let label = format!("label=io.baton.swarm.project={project}");
    let mut out = Vec::new();
    for kind in ["service", "network", "secret", "config", "volume"] {
        for l in docker_lines(&[kind, "ls", "-q", "--filter", &label]) {
            out.push(format!("{kind} {l}"));
        }
    }
    for c in docker_lines(&[
        "ps",
        "-a",
        "--filter",
        "label=io.baton.swarm.service",
        "--format",
        "{{.Label \"io.baton.swarm.service\"}}",
    ]) {
        if c.starts_with(&format!("{project}_")) {
            out.push(format!("container of {c}"));
        }
    }
    out
}

/// Removes what a failed test left on the swarm.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let label = format!("label=io.baton.swarm.project={}", self.0);
        for kind in ["service", "secret", "config"] {
            for id in docker_lines(&[kind, "ls", "-q", "--filter", &label]) {
                let _ = Command::new("docker").args([kind, "rm", &id]).output();
            }
        }
        let _ = within(Duration::from_secs(30), || {
            docker_lines(&["network", "ls", "-q", "--filter", &label])
                .iter()
                .all(|id| {
                    Command::new("docker")
                        .args(["network", "rm", id])
                        .output()
                        .is_ok_and(|o| o.status.success())
                })
        });
        for id in docker_lines(&["volume", "ls", "-q", "--filter", &label]) {
            let _ = Command::new("docker").args(["volume", "rm", &id]).output();
        }
    }
}

/// `baton --target swarm serve` for the project (its front proxies), killed on drop.
struct Serve(Child);

impl Serve {
    /// `files`: the `-f` options the project's other commands use (the target is
    /// declared in them); `extra`: more options of `serve`.
    fn start(s: &Scratch, files: &[&str], extra: &[&str]) -> Serve {
        let child = s
            .cmd()
            .args(files)
            .args(["--target", "swarm", "serve", "--tick-ms", "200"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(s.state.path().join("serve.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("baton serve");
        Serve(child)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tasks(s: &Scratch) -> Vec<serde_json::Value> {
    let out = on_swarm(s, &["--json", "ps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("ps --json: {e}: {}", stdout(&out)))
}

#[test]
fn the_demo_stack_comes_up_on_a_swarm_and_down_leaving_nothing() {
    if !swarm_available() {
        return;
    }
    let s = Scratch::new("swdemo");
    let _cleanup = Cleanup(s.name.clone());
    let demo = std::fs::read_to_string(baton_tests::repo_root().join("examples/demo/compose.yaml"))
        .expect("the demo's file");
    s.write("compose.yaml", &demo);
    s.write("targets.yaml", TARGETS);
    let port = free_port();
    let port_s = port.to_string();
    let files = ["-f", "compose.yaml", "-f", "targets.yaml"];
    let with = |args: &[&str]| -> Vec<String> {
        files.iter().chain(args).map(|a| a.to_string()).collect()
    };
    let run = |args: &[&str]| {
        let a = with(args);
        let mut c = s.cmd();
        c.env("FRONT_PORT", &port_s)
            .args(["--target", "swarm"])
            .args(&a);
        c.output().expect("baton")
    };
    let plan = run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    let text = stdout(&plan);
    for want in [
        format!("create network  {}_backend", s.name),
        format!("create service  {}_front", s.name),
        format!("create service  {}_migrate", s.name),
    ] {
        assert!(text.contains(&want), "plan lacks {want:?}:\n{text}");
    }
    assert!(
        text.contains(&format!(
            "services.front.ports: {port} is answered by baton's proxy"
        )),
        "plan says how the port is published:\n{text}"
    );
    // The daemon also serves the API, for `--server` below: a token in the target's
    // own state directory.
    let made = run(&["token", "create", "dash", "--role", "viewer"]);
    assert!(made.status.success(), "{}", stderr(&made));
    let viewer = stdout(&made).trim().to_string();
    let api_port = free_port();
    let listen = format!("127.0.0.1:{api_port}");
    let _serve = Serve::start(&s, &files, &["--listen", &listen]);
    let up = run(&["up", "-d"]);
    assert!(up.status.success(), "{}\n{}", stdout(&up), stderr(&up));
    // migrate ran once, to its end, before app started (depends_on is kept).
    let all: Vec<serde_json::Value> = {
        let out = run(&["--json", "ps", "--all"]);
        serde_json::from_str(stdout(&out).trim()).expect("ps --json --all")
    };
    let state_of = |svc: &str| -> Vec<String> {
        all.iter()
            .filter(|t| t["service"] == svc)
            .map(|t| t["state"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(state_of("migrate"), vec!["complete"], "{all:#?}");
    assert_eq!(state_of("app"), vec!["running", "running"], "{all:#?}");
    let body = baton_tests::http_get(port, 30);
    assert_eq!(
        body.as_deref().map(str::trim),
        Some("hello from baton"),
        "the front answers; baton serve said:\n{}",
        std::fs::read_to_string(s.state.path().join("serve.log")).unwrap_or_default()
    );
    // Through the daemon's API (`--server`, a viewer's token, no --target: the daemon
    // acts on its own): the same tasks, and the swarm's update status.
    let remote = |args: &[&str]| {
        s.cmd()
            .env("BATON_SERVER", format!("http://{listen}"))
            .env("BATON_TOKEN", &viewer)
            .env("FRONT_PORT", &port_s)
            .args(files)
            .args(args)
            .output()
            .expect("baton")
    };
    let served = within(Duration::from_secs(30), || {
        remote(&["--json", "ps", "--all"]).status.success()
    });
    assert!(served.is_some(), "the API never answered ps");
    let far: Vec<serde_json::Value> =
        serde_json::from_str(stdout(&remote(&["--json", "ps", "--all"])).trim())
            .expect("ps --json through --server");
    let ids = |tasks: &[serde_json::Value]| -> Vec<String> {
        let mut v: Vec<String> = tasks.iter().map(|t| t["id"].to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&far), ids(&all), "--server lists the same tasks");
    let status = remote(&["rollout", "status", "app"]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(
        stdout(&status).contains("2/2 task(s) running"),
        "{}",
        stdout(&status)
    );
    // Unchanged: nothing to do, quickly (the figure is in docs/benchmarks.md).
    let again = run(&["up", "-d"]);
    assert!(
        stderr(&again).contains("nothing to do"),
        "{}",
        stderr(&again)
    );
    let down = run(&["down", "-v"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(
        within(Duration::from_secs(60), || leftovers(&s.name).is_empty()).is_some(),
        "down left {:?}",
        leftovers(&s.name)
    );
}

fn web(port: u16, version: &str, health_path: &str) -> String {
    format!(
        r#"services:
  web:
    image: baton-test/busybox:latest
    # httpd runs in the background; on SIGTERM the task keeps serving for 2 s (its
    # grace period), as a service behind any load balancer should.
    command: ["sh", "-c", "mkdir -p /www && echo {version} > /www/index.html; httpd -p 8080 -h /www; trap 'sleep 2; exit 0' TERM; while :; do sleep 1; done"]
    ports: ["{port}:8080"]
    stop_grace_period: 5s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080{health_path}"]
      interval: 1s
      retries: 2
    deploy:
      replicas: 3
      update_config: {{parallelism: 1, order: start-first, monitor: 3s}}
  worker:
    image: baton-test/busybox:latest
    command: ["sh", "-c", "i=0; while :; do i=$$((i+1)); echo tick $$i; sleep 1; done"]
    privileged: true
    cap_add: [NET_ADMIN]
{TARGETS}"#
    )
}

#[test]
fn three_replicas_roll_out_under_load_without_a_failed_request_and_a_broken_version_rolls_back() {
    if !swarm_available() {
        return;
    }
    let s = Scratch::new("swroll");
    let _cleanup = Cleanup(s.name.clone());
    let port = free_port();
    s.write("compose.yaml", &web(port, "v1", "/"));
    // What the swarm does not honour is listed, one line per setting.
    let plan = on_swarm(&s, &["plan"]);
    let text = stdout(&plan);
    assert!(
        text.contains("warning: services.worker.privileged: ignored by target swarm (swarm)"),
        "{text}"
    );
    assert!(
        !text.contains("cap_add: ignored"),
        "cap_add is honoured: {text}"
    );
    let _serve = Serve::start(&s, &[], &[]);
    ok(&s, &["up", "-d"]);
    assert!(baton_tests::wait_for(port, "v1", 30), "v1 answers");
    let running = tasks(&s)
        .iter()
        .filter(|t| t["service"] == "web" && t["state"] == "running")
        .count();
    assert_eq!(running, 3);

    // A new version under load: the swarm replaces one task at a time (start-first),
    // baton's front routes to the tasks that run, none fails.
    let load = baton_tests::Load::start(port);
    std::thread::sleep(Duration::from_millis(500));
    s.write("compose.yaml", &web(port, "v2", "/"));
    let up = ok(&s, &["up", "-d"]);
    assert!(up.contains("update service"), "{up}");
    std::thread::sleep(Duration::from_millis(500));
    let (answers, failures) = load.finish();
    assert_eq!(failures, 0, "failed requests during the update");
    assert!(
        answers.len() > 50,
        "the load ran: {} answers",
        answers.len()
    );
    assert!(answers.iter().any(|a| a == "v1") && answers.iter().any(|a| a == "v2"));
    assert_eq!(answers.last().map(String::as_str), Some("v2"));
    let status = on_swarm(&s, &["rollout", "status", "web"]);
    assert!(
        stdout(&status).contains("update completed, 3/3"),
        "{}",
        stdout(&status)
    );

    // A version whose healthcheck fails: the swarm rolls it back, `up` says so and
    // fails, v2 keeps answering.
    s.write("compose.yaml", &web(port, "v3", "/missing"));
    let load = baton_tests::Load::start(port);
    let broken = on_swarm(&s, &["up", "-d"]);
    let (answers, failures) = load.finish();
    assert!(!broken.status.success());
    let err = stderr(&broken);
    assert!(err.contains("rolled it back"), "{err}");
    assert!(
        err.contains(&format!("{}_web", s.name)),
        "names the service: {err}"
    );
    assert_eq!(
        failures, 0,
        "failed requests while the broken version was tried"
    );
    assert!(!answers.iter().any(|a| a == "v3"), "v3 never served");
    assert!(baton_tests::wait_for(port, "v2", 10));
    let status = on_swarm(&s, &["rollout", "status", "web"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(
        stdout(&status).contains("rollback_completed"),
        "{}",
        stdout(&status)
    );

    // scale, logs, undo.
    s.write("compose.yaml", &web(port, "v2", "/"));
    ok(&s, &["scale", "web=2"]);
    let running = |n: usize| {
        tasks(&s)
            .iter()
            .filter(|t| t["service"] == "web" && t["state"] == "running")
            .count()
            == n
    };
    assert!(within(Duration::from_secs(30), || running(2)).is_some());
    let logs = ok(&s, &["logs", "--tail", "3", "worker"]);
    assert!(logs.contains("tick "), "{logs}");
    ok(&s, &["up", "-d"]);
    assert!(running(3), "up brings the file's count back");
    let undo = ok(&s, &["rollout", "undo", "web"]);
    assert!(undo.contains("back to its previous version"), "{undo}");
    assert!(
        within(Duration::from_secs(30), || running(2)).is_some(),
        "undo went back to 2 replicas"
    );

    ok(&s, &["down"]);
    assert!(
        within(Duration::from_secs(60), || leftovers(&s.name).is_empty()).is_some(),
        "down left {:?}",
        leftovers(&s.name)
    );
}

/// The names of the project's secrets on the swarm.
fn secret_names(project: &str) -> Vec<String> {
    docker_lines(&[
        "secret",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        &format!("label=io.baton.swarm.project={project}"),
    ])
}

#[test]
fn secrets_and_configs_are_named_by_content_and_a_change_rolls_the_service() {
    if !swarm_available() {
        return;
    }
    let s = Scratch::new("swsec");
    let _cleanup = Cleanup(s.name.clone());
    let file = |token: &str| {
        format!(
            r#"services:
  app:
    image: baton-test/busybox:latest
    command: ["sh", "-c", "cat /run/secrets/token; echo; cat /etc/app.conf; echo; sleep 3600"]
    secrets: [token]
    configs: [{{source: conf, target: /etc/app.conf}}]
secrets:
  token: {{environment: APP_TOKEN}}
configs:
  conf: {{content: "setting={token}-conf"}}
{TARGETS}"#
        )
    };
    s.write("compose.yaml", &file("one"));
    let up = s
        .cmd()
        .env("APP_TOKEN", "first-secret")
        .args(["--target", "swarm", "up", "-d"])
        .output()
        .expect("baton");
    assert!(up.status.success(), "{}", stderr(&up));
    let all = stdout(&up) + &stderr(&up);
    assert!(
        !all.contains("first-secret"),
        "a secret's value is never shown: {all}"
    );
    let secrets = secret_names(&s.name);
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    assert!(secrets[0].starts_with(&format!("{}_token_", s.name)));
    let logs_show = |want: &str| {
        within(Duration::from_secs(30), || {
            stdout(&on_swarm(&s, &["logs", "app"])).contains(want)
        })
        .is_some()
    };
    assert!(logs_show("first-secret"), "the task reads its secret");
    assert!(logs_show("setting=one-conf"), "and its config");
    // A new value is a new secret; the service moves to it and the old one goes.
    let up = s
        .cmd()
        .env("APP_TOKEN", "second-secret")
        .args(["--target", "swarm", "up", "-d"])
        .output()
        .expect("baton");
    assert!(up.status.success(), "{}", stderr(&up));
    let text = stdout(&up) + &stderr(&up);
    assert!(text.contains("create secret"), "{text}");
    assert!(text.contains("delete secret"), "{text}");
    assert!(logs_show("second-secret"));
    let after = secret_names(&s.name);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, secrets);
    // Without the variable, nothing changes and the error names the secret.
    let bad = on_swarm(&s, &["up", "-d"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("secret token: environment variable APP_TOKEN is not set"));
    ok(&s, &["down"]);
    assert!(
        within(Duration::from_secs(60), || leftovers(&s.name).is_empty()).is_some(),
        "down left {:?}",
        leftovers(&s.name)
    );
}

fn switched(port: u16, version: &str, health_path: &str, rollout: &str) -> String {
    format!(
        r#"services:
  web:
    image: baton-test/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo {version} > /www/index.html; httpd -p 8080 -h /www; trap 'sleep 2; exit 0' TERM; while :; do sleep 1; done"]
    ports: ["{port}:8080"]
    stop_grace_period: 5s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080{health_path}"]
      interval: 1s
      retries: 2
    deploy: {{replicas: 2}}
    x-baton:
      rollout: {rollout}
{TARGETS}"#
    )
}

/// The swarm services of the project's `web`, by name.
fn web_services(project: &str) -> Vec<String> {
    docker_lines(&[
        "service",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        &format!("label=io.baton.swarm.project={project}"),
    ])
    .into_iter()
    .filter(|n| n.starts_with(&format!("{project}_web")))
    .collect()
}

#[test]
fn canary_and_blue_green_switch_versions_in_the_front_and_a_broken_one_never_serves() {
    if !swarm_available() {
        return;
    }
    let s = Scratch::new("swcan");
    let _cleanup = Cleanup(s.name.clone());
    let port = free_port();
    let canary = "{strategy: canary, steps: [{weight: 50, pause: 4s}]}";
    s.write("compose.yaml", &switched(port, "v1", "/", canary));
    let _serve = Serve::start(&s, &[], &[]);
    ok(&s, &["up", "-d"]);
    assert!(baton_tests::wait_for(port, "v1", 30), "v1 answers");
    let first = web_services(&s.name);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].starts_with(&format!("{}_web-", s.name)),
        "one service per version: {first:?}"
    );

    // Canary: the new version runs beside the old, takes half the traffic for the
    // step's pause, then all of it; the old one goes. No request fails.
    let load = baton_tests::Load::start(port);
    s.write("compose.yaml", &switched(port, "v2", "/", canary));
    let up = ok(&s, &["up", "-d"]);
    let (answers, failures) = load.finish();
    assert!(
        up.contains("create service") && up.contains("delete service"),
        "{up}"
    );
    assert_eq!(failures, 0, "failed requests during the canary");
    // While both ran, both answered; at the end only v2.
    let mixed = answers
        .windows(20)
        .any(|w| w.iter().any(|a| a == "v1") && w.iter().any(|a| a == "v2"));
    assert!(mixed, "v1 and v2 shared the traffic during the step");
    assert!(baton_tests::wait_for(port, "v2", 5));
    let second = web_services(&s.name);
    assert_eq!(second.len(), 1, "the old version is gone: {second:?}");
    assert_ne!(second, first);

    // Blue-green with a version whose health check fails: it never gets traffic, is
    // removed, and `up` says so; v2 keeps answering.
    let bg = "{strategy: blue-green}";
    s.write("compose.yaml", &switched(port, "v2", "/", bg));
    ok(&s, &["up", "-d"]);
    let load = baton_tests::Load::start(port);
    s.write("compose.yaml", &switched(port, "v3", "/missing", bg));
    let broken = on_swarm(&s, &["up", "-d"]);
    let (answers, failures) = load.finish();
    assert!(!broken.status.success());
    assert!(
        stderr(&broken).contains("did not become healthy and was removed"),
        "{}",
        stderr(&broken)
    );
    assert_eq!(failures, 0);
    assert!(!answers.iter().any(|a| a == "v3"), "v3 never served");
    assert!(baton_tests::wait_for(port, "v2", 5));
    assert_eq!(
        web_services(&s.name).len(),
        1,
        "{:?}",
        web_services(&s.name)
    );

    ok(&s, &["down"]);
    assert!(
        within(Duration::from_secs(60), || leftovers(&s.name).is_empty()).is_some(),
        "down left {:?}",
        leftovers(&s.name)
    );
}

/// `host: ssh://USER@HOST:PORT` for a Docker and a swarm target, against a real sshd on
/// loopback whose user reaches this machine's engine: the user's ssh (here with this
/// test's config: key and known hosts, through `BATON_SSH`) forwards the engine's
/// socket; `up`, `ps` and `down` go through it, a swarm target plans through it, and no
/// ssh is left behind. A host ssh does not know is an error naming the target.
#[test]
fn engines_over_ssh_are_reached_through_the_user_s_ssh() {
    if !swarm_available() || !baton_tests::fleet::sshd_available() {
        return;
    }
    let hosts = baton_tests::fleet::TestHosts::start(1);
    let h = &hosts.hosts[0];
    let s = Scratch::new("swssh");
    let _cleanup = Cleanup(s.name.clone());
    let config = s.path().join("ssh_config");
    s.write(
        "ssh_config",
        &format!(
            "Host 127.0.0.1\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
            hosts.key.display(),
            hosts.known_hosts.display()
        ),
    );
    s.write(
        "ssh",
        &format!("#!/bin/sh\nexec ssh -F '{}' \"$@\"\n", config.display()),
    );
    let wrapper = s.path().join("ssh");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let port = free_port();
    let address = format!("ssh://{}@127.0.0.1:{}", hosts.user, h.port);
    s.write(
        "compose.yaml",
        &format!(
            r#"services:
  web:
    image: baton-test/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo over ssh > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: ["127.0.0.1:{port}:8080"]
targets:
  remote: {{docker: {{host: "{address}"}}}}
  rswarm: {{swarm: {{host: "{address}"}}}}
  stranger: {{docker: {{host: "ssh://{user}@localhost:{hport}"}}}}
"#,
            user = hosts.user,
            hport = h.port
        ),
    );
    let run = |args: &[&str]| {
        s.cmd()
            .env("BATON_SSH", &wrapper)
            .args(args)
            .output()
            .expect("baton")
    };
    let up = run(&["--target", "remote", "up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(
        baton_tests::http_get(port, 30).as_deref().map(str::trim),
        Some("over ssh")
    );
    let ps = run(&["--target", "remote", "ps"]);
    assert!(ps.status.success(), "{}", stderr(&ps));
    assert!(
        stdout(&ps).contains(&format!("{}-web-1", s.name)),
        "{}",
        stdout(&ps)
    );
    // A swarm manager over ssh: planned through the tunnel (not applied).
    let plan = run(&["--target", "rswarm", "plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    assert!(
        stdout(&plan).contains(&format!("create service  {}_web", s.name)),
        "{}",
        stdout(&plan)
    );
    // localhost is not in the known hosts: ssh refuses in batch mode, baton says so.
    let refused = run(&["--target", "stranger", "ps"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let said = stderr(&refused);
    assert!(
        said.contains("target stranger (docker)") && said.contains("Host key verification failed"),
        "{said}"
    );
    let down = run(&["--target", "remote", "down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(
        docker_lines(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.baton.project={}", s.name)
        ])
        .is_empty(),
        "down removed the container"
    );
    // Every tunnel ended with its command.
    let left = Command::new("pgrep")
        .args(["-f", &config.display().to_string()])
        .output()
        .expect("pgrep");
    assert!(
        stdout(&left).trim().is_empty(),
        "ssh left running: {}",
        stdout(&left)
    );
}
