//! The everyday commands against the real engine: logs, exec, run, ps, config, scale,
//! stop/start, and a service built from a Dockerfile with a .dockerignore.

use baton_tests::{docker_available, stderr, stdout, Scratch, IMAGE};

#[test]
fn logs_exec_run_ps_config_scale_stop_start() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("cmds");
    s.write(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    init: true\n    stop_grace_period: 1s\n    command: [sh, -c, 'echo hello-from-web; exec sleep 600']\n    environment:\n      COLOR: blue\n"
        ),
    );
    s.ok(&["up", "-d"]);

    // logs: the line the service printed, prefixed when several containers are shown.
    let mut logs = String::new();
    for _ in 0..50 {
        logs = s.ok(&["logs"]);
        if logs.contains("hello-from-web") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(logs.contains("hello-from-web"), "{logs}");
    let json_line = s.ok(&["--json", "logs"]);
    let first: serde_json::Value =
        serde_json::from_str(json_line.lines().next().unwrap_or("")).expect("logs --json");
    assert_eq!(first["service"], "web");
    assert_eq!(first["stream"], "stdout");
    assert_eq!(first["text"], "hello-from-web");

    // exec: output and exit code are the command's.
    let out = s.baton(&["exec", "-T", "web", "sh", "-c", "echo $COLOR; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "blue");

    // run: a one-off with another command, removed with --rm.
    let out = s.baton(&[
        "run",
        "--rm",
        "-e",
        "X=1",
        "web",
        "sh",
        "-c",
        "echo one-off $X $COLOR",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "one-off 1 blue");
    assert_eq!(
        s.containers(),
        vec![format!("{}-web-1", s.name)],
        "no one-off left"
    );

    // ps --json and config --json are machine-readable.
    let ps: serde_json::Value = serde_json::from_str(&s.ok(&["--json", "ps"])).unwrap();
    assert_eq!(ps.as_array().map(Vec::len), Some(1));
    assert_eq!(ps[0]["service"], "web");
    assert_eq!(ps[0]["state"], "running");
    let config: serde_json::Value = serde_json::from_str(&s.ok(&["--json", "config"])).unwrap();
    assert_eq!(config["services"]["web"]["environment"]["COLOR"], "blue");
    assert_eq!(config["name"], s.name.as_str());

    // scale, stop, start.
    s.ok(&["scale", "web=3"]);
    assert_eq!(s.running().len(), 3);
    s.ok(&["stop"]);
    assert!(s.running().is_empty());
    assert_eq!(s.containers().len(), 3, "stop keeps the containers");
    s.ok(&["start"]);
    assert_eq!(s.running().len(), 3);
    // The file says one replica: up converges back to it.
    s.ok(&["up", "-d"]);
    assert_eq!(s.running(), vec![format!("{}-web-1", s.name)]);

    let events = s.ok(&["--json", "events"]);
    let v: serde_json::Value = serde_json::from_str(&events).unwrap();
    let kinds: Vec<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"create") && kinds.contains(&"remove:stop"),
        "{kinds:?}"
    );
    s.ok(&["down"]);
    assert!(s.containers().is_empty());
}

#[test]
fn built_services_honour_dockerignore_and_build_args() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("build");
    s.write(
        "app/Dockerfile",
        &format!("FROM {IMAGE}\nARG FLAVOUR=plain\nCOPY . /app/\nRUN echo $FLAVOUR > /app/flavour\nCMD [\"sleep\", \"600\"]\n"),
    );
    s.write("app/.dockerignore", "secret.txt\n");
    s.write("app/secret.txt", "do not ship\n");
    s.write("app/kept.txt", "shipped\n");
    s.write(
        "compose.yaml",
        "services:\n  app:\n    build:\n      context: ./app\n      args:\n        FLAVOUR: spicy\n    init: true\n    stop_grace_period: 1s\n",
    );
    let up = s.baton(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    let out = s.baton(&[
        "exec",
        "-T",
        "app",
        "sh",
        "-c",
        "cat /app/flavour /app/kept.txt; ls /app",
    ]);
    let text = stdout(&out);
    assert!(text.contains("spicy") && text.contains("shipped"), "{text}");
    assert!(
        !text.contains("secret.txt"),
        ".dockerignore honoured: {text}"
    );
    let images = s.ok(&["images"]);
    assert!(images.contains(&format!("{}-app", s.name)), "{images}");
    // Unchanged: no rebuild, nothing to do.
    let plan = s.baton(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    s.ok(&["down"]);
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &format!("{}-app", s.name)])
        .output();
}

#[test]
fn up_without_detach_follows_logs_and_ctrl_c_stops_the_services() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    if !docker_available() {
        return;
    }
    let s = Scratch::new("attach");
    s.write(
        "compose.yaml",
        &format!(
            "services:\n  hi:\n    image: {IMAGE}\n    init: true\n    stop_grace_period: 1s\n    command: [sh, -c, 'echo attached-line; exec sleep 600']\n"
        ),
    );
    let mut child = s
        .cmd()
        .arg("up")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn baton up");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains("attached-line"), "{first:?}");
    assert_eq!(s.running().len(), 1);
    let pid = child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(s.running().is_empty(), "Ctrl-C stopped the services");
    assert_eq!(s.containers().len(), 1, "and kept them, as Compose does");
}

/// Named targets: a docker target whose host is the local engine's socket, given
/// explicitly, is used whatever DOCKER_HOST says; an unreachable one, an unknown name
/// (exit 64, with a did-you-mean and the known names), the kinds whose backend is not
/// built yet and a cluster without a kubeconfig are refused clearly; a misspelt setting
/// is located in the file.
#[test]
fn targets_pick_the_engine() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("targets");
    let absent = s.path().join("absent.sock");
    s.write(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    init: true\n    stop_grace_period: 1s\n    command: [sleep, '600']\n\
             targets:\n  here: {{docker: {{host: unix:///var/run/docker.sock}}}}\n  nowhere: {{docker: {{host: 'unix://{}'}}}}\n  staging: {{swarm: {{host: 'ssh://ops@127.0.0.1:1'}}}}\n  prod: {{kubernetes: {{context: prod, namespace: shop}}}}\n",
            absent.display()
        ),
    );
    let run = |args: &[&str], target: Option<&str>| {
        let mut c = s.cmd();
        // DOCKER_HOST points nowhere: only the target's own host can work.
        c.env("DOCKER_HOST", format!("unix://{}", absent.display()));
        match target {
            Some(t) => c.env("BATON_TARGET", t),
            None => c.env_remove("BATON_TARGET"),
        };
        c.args(args).output().expect("run baton")
    };

    let out = run(&["--target", "here", "up", "-d"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.running(), vec![format!("{}-web-1", s.name)]);
    let out = run(&["--json", "ps"], Some("here"));
    assert!(out.status.success(), "{}", stderr(&out));
    let ps: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("ps --json");
    assert_eq!(ps.as_array().map(Vec::len), Some(1), "{ps}");
    let out = run(&["--target", "here", "plan"], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "nothing to do: {}",
        stderr(&out)
    );
    // The target keeps its own state, apart from the default target's.
    assert!(s.state.path().join("targets/here/baton.db").is_file());
    assert!(!s.state.path().join("baton.db").exists());

    // The default target is DOCKER_HOST's, which answers nothing here.
    let out = run(&["ps"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("absent.sock"), "{}", stderr(&out));
    let out = run(&["ps"], Some("nowhere"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("absent.sock"), "{}", stderr(&out));

    let out = run(&["--target", "stagign", "plan"], None);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("unknown target \"stagign\""), "{err}");
    assert!(err.contains("did you mean \"staging\"?"), "{err}");
    assert!(
        err.contains("known targets: local, here, nowhere, prod, staging"),
        "{err}"
    );
    assert!(!s.state.path().join("targets/stagign").exists());
    // A daemon acts on its own target: both together are refused, not half-ignored.
    let out = run(
        &["--target", "here", "--server", "http://127.0.0.1:9", "ps"],
        None,
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--target here and --server"),
        "{}",
        stderr(&out)
    );

    // A kubernetes target without a kubeconfig says which target and what is missing.
    let out = s
        .cmd()
        .env("KUBECONFIG", &absent)
        .args(["--target", "prod", "up", "-d"])
        .output()
        .expect("run baton");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("target prod (kubernetes)"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("kubeconfig"), "{}", stderr(&out));
    let out = run(&["--target", "staging", "plan"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // An ssh:// engine address nobody answers at: ssh's own words, naming the target.
    assert!(
        stderr(&out).contains("target staging (swarm): ssh to ssh://ops@127.0.0.1:1 ended"),
        "{}",
        stderr(&out)
    );

    let out = run(&["--target", "here", "down"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(s.containers().is_empty());

    // A misspelt setting is refused where it is written, with a did-you-mean.
    s.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: {IMAGE}\nx-baton:\n  targets:\n    lab: {{dokcer: {{}}}}\n"),
    );
    let out = run(&["config"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("compose.yaml:6:"), "{err}");
    assert!(err.contains("did you mean \"docker\"?"), "{err}");
}
