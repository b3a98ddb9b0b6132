//! The demo stack end to end: up, the port answers, plan is empty, one changed service is
//! the only one planned and recreated, -f overrides, down -v leaves nothing.

use std::process::Command;

use baton_tests::{docker_available, free_port, http_get, repo_root, stderr, stdout, Scratch};

fn container_id(name: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", "{{.Id}}", name])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn demo_stack_up_plan_change_down() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("demo");
    let compose = std::fs::read_to_string(repo_root().join("examples/demo/compose.yaml"))
        .expect("examples/demo/compose.yaml");
    s.write("compose.yaml", &compose);
    let port = free_port().to_string();

    let up = s
        .cmd()
        .env("FRONT_PORT", &port)
        .args(["up", "-d"])
        .output()
        .unwrap();
    assert!(up.status.success(), "up failed: {}", stderr(&up));

    let n = &s.name;
    let mut expected = vec![
        format!("{n}-app-1"),
        format!("{n}-app-2"),
        format!("{n}-db-1"),
        format!("{n}-front-1"),
    ];
    expected.sort();
    assert_eq!(
        s.running(),
        expected,
        "the profile-gated toolbox must not run"
    );
    let mut all = expected.clone();
    all.push(format!("{n}-migrate-1"));
    all.sort();
    assert_eq!(
        s.containers(),
        all,
        "migrate ran to completion and stays exited"
    );
    let body = http_get(port.parse().unwrap(), 20).expect("the published port answers");
    assert_eq!(
        body, "hello from baton\n",
        "interpolation default reached the service"
    );
    assert_eq!(s.networks().len(), 2);
    assert_eq!(s.volumes(), vec![format!("{n}_site")]);

    // Nothing changed: plan says so and exits 0.
    let plan = s
        .cmd()
        .env("FRONT_PORT", &port)
        .arg("plan")
        .output()
        .unwrap();
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}{}",
        stdout(&plan),
        stderr(&plan)
    );
    assert!(stdout(&plan).contains("nothing to do"), "{}", stdout(&plan));

    // A changed variable reaches one service: plan names it and why, exit 2.
    let before: Vec<String> = expected.iter().map(|c| container_id(c)).collect();
    let plan = s
        .cmd()
        .env("FRONT_PORT", &port)
        .env("GREETING", "changed")
        .args(["--json", "plan"])
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan --json");
    assert_eq!(v["changed_services"], serde_json::json!(["db"]));
    assert_eq!(v["actions"][0]["action"], "recreate_container");
    assert_eq!(
        v["actions"][0]["changes"],
        serde_json::json!(["environment.GREETING"])
    );

    let up = s
        .cmd()
        .env("FRONT_PORT", &port)
        .env("GREETING", "changed")
        .args(["up", "-d"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    let after: Vec<String> = expected.iter().map(|c| container_id(c)).collect();
    for (i, name) in expected.iter().enumerate() {
        if name.ends_with("-db-1") {
            assert_ne!(before[i], after[i], "db was recreated");
        } else {
            assert_eq!(before[i], after[i], "{name} was left alone");
        }
    }
    assert_eq!(
        http_get(port.parse().unwrap(), 20).as_deref(),
        Some("changed\n")
    );

    let down = s.baton(&["down", "-v"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(s.containers().is_empty(), "{:?}", s.containers());
    assert!(s.networks().is_empty(), "{:?}", s.networks());
    assert!(s.volumes().is_empty(), "{:?}", s.volumes());
}

#[test]
fn override_files_merge_and_only_the_changed_service_moves() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("ovr");
    s.write(
        "base.yaml",
        &format!(
            "services:\n  a:\n    image: {img}\n    init: true\n    command: [sleep, '600']\n    environment: [MODE=base]\n  b:\n    image: {img}\n    init: true\n    command: [sleep, '600']\n",
            img = baton_tests::IMAGE
        ),
    );
    s.write(
        "override.yaml",
        "services:\n  a:\n    environment:\n      MODE: override\n      EXTRA: '1'\n",
    );
    s.ok(&["-f", "base.yaml", "up", "-d"]);
    let b_id = container_id(&format!("{}-b-1", s.name));

    let plan = s.baton(&["-f", "base.yaml", "-f", "override.yaml", "plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    let text = stdout(&plan);
    assert!(text.contains(&format!("{}-a-1", s.name)), "{text}");
    assert!(
        text.contains("environment.EXTRA, environment.MODE changed"),
        "{text}"
    );
    assert!(!text.contains(&format!("{}-b-1", s.name)), "{text}");

    s.ok(&["-f", "base.yaml", "-f", "override.yaml", "up", "-d"]);
    assert_eq!(
        container_id(&format!("{}-b-1", s.name)),
        b_id,
        "b untouched"
    );
    let env = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{json .Config.Env}}",
            &format!("{}-a-1", s.name),
        ])
        .output()
        .unwrap();
    let env = String::from_utf8_lossy(&env.stdout);
    assert!(
        env.contains("MODE=override") && env.contains("EXTRA=1"),
        "{env}"
    );
    let plan = s.baton(&["-f", "base.yaml", "-f", "override.yaml", "plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    s.ok(&["-f", "base.yaml", "down"]);
    assert!(s.containers().is_empty());
}
