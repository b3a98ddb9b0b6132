//! What hostile input and careless use found, through the real binary: settings checked
//! when the file is read, unknown services named, settings one engine ignores warned
//! about, external secrets refused, systemd told about changed units, a private state
//! directory, and no panic when stdout closes early.

use std::os::unix::fs::PermissionsExt;

use baton_tests::{assert_private, docker_available, stderr, stdout, Scratch, IMAGE};

#[test]
fn rollout_settings_are_checked_when_read_and_a_strategy_switch_keeps_the_file_valid() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("hstrat");
    let file = |weight: u32| {
        format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: [sleep, '600']\n    x-baton:\n      rollout:\n        strategy: ${{STRATEGY:-rolling}}\n        steps: [{{weight: 10}}, {{weight: {weight}}}]\n"
        )
    };
    // A malformed setting is refused by config, plan and up alike, located, before
    // anything exists, whichever strategy is chosen.
    s.write("compose.yaml", &file(200));
    for args in [&["config", "-q"][..], &["plan"], &["up", "-d"]] {
        for strategy in ["rolling", "canary"] {
            let o = s
                .cmd()
                .args(args)
                .env("STRATEGY", strategy)
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(1), "{args:?} {strategy}");
            assert!(
                stderr(&o)
                    .contains("compose.yaml:8:32: services.web.x-baton.rollout.steps[1].weight"),
                "{args:?} {strategy}: {}",
                stderr(&o)
            );
        }
    }
    assert!(s.containers().is_empty());
    // A valid one: up with one strategy, then the same file with the other from the
    // environment; canary steps under rolling are a warning, never an error.
    s.write("compose.yaml", &file(50));
    let o = s
        .cmd()
        .args(["up", "-d"])
        .env("STRATEGY", "rolling")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: compose.yaml:8:9: services.web.x-baton.rollout.steps: only used by strategy canary, not rolling"),
        "{}",
        stderr(&o)
    );
    for strategy in ["canary", "rolling"] {
        let o = s
            .cmd()
            .args(["plan"])
            .env("STRATEGY", strategy)
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(1), "{strategy}: {}", stderr(&o));
        let o = s
            .cmd()
            .args(["config", "-q"])
            .env("STRATEGY", strategy)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{strategy}: {}", stderr(&o));
    }
    s.ok(&["down"]);
}

#[test]
fn unknown_services_are_named_and_bad_scales_are_usage_errors() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("hsvc");
    s.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: {IMAGE}\n    command: [sleep, '600']\n"),
    );
    s.ok(&["up", "-d"]);
    for args in [
        &["logs", "wbe"][..],
        &["ps", "wbe"],
        &["stop", "wbe"],
        &["start", "wbe"],
        &["restart", "wbe"],
        &["stats", "wbe"],
        &["exec", "wbe", "true"],
        &["scale", "wbe=2"],
    ] {
        let o = s.baton(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("no such service") && err.contains("wbe") && err.contains("did you mean"),
            "{args:?}: {err}"
        );
    }
    // Without a file, the services with containers are the ones known.
    let empty = tempfile::tempdir().unwrap();
    let o = s
        .cmd()
        .current_dir(empty.path())
        .args(["-p", &s.name, "logs", "nope"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no such service: nope"),
        "{}",
        stderr(&o)
    );
    for bad in ["web=abc", "web", "=2"] {
        let o = s.baton(&["scale", bad]);
        assert_eq!(o.status.code(), Some(64), "{bad}: {}", stderr(&o));
    }
    assert_eq!(
        s.baton(&["up", "-d", "--scale", "web=x"]).status.code(),
        Some(64)
    );
    assert_eq!(s.containers().len(), 1, "nothing changed");
    s.ok(&["down"]);
}

#[test]
fn an_external_secret_is_refused_and_ignored_deploy_settings_are_warned_about() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("hext");
    s.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: {IMAGE}\n    command: [sleep, '600']\n    secrets: [db_pass]\nsecrets:\n  db_pass:\n    external: true\n"),
    );
    for args in [
        &["plan"][..],
        &["up", "-d"],
        &["run", "--rm", "web", "true"],
    ] {
        let o = s.baton(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("service web: secret \"db_pass\" is external"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert!(s.containers().is_empty(), "it started without its secret");

    s.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: {IMAGE}\n    command: [sleep, '600']\n    deploy:\n      mode: global\n      endpoint_mode: dnsrr\n      placement:\n        constraints: [node.role == worker]\n"),
    );
    let lines = [
        "warning: service web: deploy.mode: global is ignored",
        "warning: service web: deploy.placement is ignored",
        "warning: service web: deploy.endpoint_mode is ignored",
    ];
    let o = s.baton(&["plan"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let plan = format!("{}{}", stdout(&o), stderr(&o));
    for l in lines {
        assert_eq!(plan.matches(l).count(), 1, "{l} in:\n{plan}");
    }
    let o = s.baton(&["up", "-d"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for l in lines {
        assert!(stderr(&o).contains(l), "{l} in:\n{}", stderr(&o));
    }
    // Nothing to do: still said.
    let o = s.baton(&["up", "-d"]);
    assert!(stderr(&o).contains(lines[1]), "{}", stderr(&o));
    s.ok(&["down"]);
}

#[test]
fn a_changed_systemd_unit_is_reloaded_and_restarted_when_asked() {
    // systemd cannot run here: a fake `systemctl` first on PATH records what baton asks.
    let s = Scratch::new("hunit");
    let bin = s.path().join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = s.path().join("systemctl.calls");
    let fake = bin.join("systemctl");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let unit = s.path().join("units/app.service");
    let spec = |desc: &str| {
        format!(
            "files:\n  app:\n    kind: systemd\n    restart: true\n    path: {}\n    content: |\n      [Unit]\n      Description={desc}\n      [Service]\n      ExecStart=/bin/true\n",
            unit.display()
        )
    };
    std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
    s.write("baton.yaml", &spec("one"));
    let apply = || {
        let o = s
            .cmd()
            .args(["files", "apply"])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    };
    apply();
    let read = || std::fs::read_to_string(&calls).unwrap_or_default();
    assert_eq!(read(), "daemon-reload\nrestart -- app.service\n");
    // Unchanged: systemd is left alone.
    apply();
    assert_eq!(read().lines().count(), 2, "{}", read());
    s.write("baton.yaml", &spec("two"));
    apply();
    assert_eq!(read().lines().count(), 4, "{}", read());
    // restart on a plain file is refused where it is written.
    s.write(
        "baton.yaml",
        &format!(
            "files:\n  app:\n    restart: true\n    path: {}/x.txt\n    content: x\n",
            s.path().display()
        ),
    );
    let o = s
        .cmd()
        .args(["files", "apply"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("files.app.restart"), "{}", stderr(&o));
}

#[test]
fn a_new_state_directory_is_private_and_a_closed_stdout_is_not_a_panic() {
    let s = Scratch::new("hpriv");
    s.write(
        "baton.yaml",
        "pipelines:\n  ci:\n    jobs:\n      hi:\n        run: echo hi\n",
    );
    let state = s.state.path().join("nested/state");
    let o = s
        .cmd()
        .env("BATON_STATE_DIR", &state)
        .args(["pipeline", "run", "ci"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_private(&state);
    // `baton … | head -c 1`: the reader goes away while baton still writes (more than a
    // pipe holds); baton ends as SIGPIPE would end it, without a panic.
    for args in ["completions bash", "--json pipeline history --limit 100"] {
        let o = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "for i in 1 2 3 4 5 6 7 8; do \"$0\" {args}; done | head -c 1 >/dev/null; echo \"${{PIPESTATUS[0]}}\""
            ))
            .arg(baton_tests::baton_bin())
            .current_dir(s.path())
            .env("BATON_STATE_DIR", &state)
            .env("COMPOSE_PROJECT_NAME", &s.name)
            .output()
            .unwrap();
        assert!(!stderr(&o).contains("panicked"), "{args}: {}", stderr(&o));
        assert_eq!(stdout(&o).trim(), "141", "{args}: {}", stderr(&o));
    }
}
