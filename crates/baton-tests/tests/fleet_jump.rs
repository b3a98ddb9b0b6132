//! A jump host that really tunnels: the targets' sshds listen on the loopback of a
//! network namespace that this one cannot reach; only the jump sshd, inside it, listens
//! on a veth address reachable from here. Without `jump:` the targets are unreachable;
//! with it, commands run on them (proven by an environment value only their sshd sets),
//! both targets share one jump-host login, and errors name the target and the jump host.

use std::process::Output;

use baton_tests::fleet::{sshd_available, JumpNet};
use baton_tests::{stderr, stdout, Scratch};
use serde_json::Value;

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", stdout(out), stderr(out)))
}

fn run(s: &Scratch, net: &JumpNet, known_hosts: &std::path::Path, target: &str) -> Output {
    s.cmd()
        .args(["--json", "fleet", "run", target, "--forks", "4", "--"])
        .args([
            "sh",
            "-c",
            "echo \"$BATON_WHERE\" > {{ root }}/where; echo on:$BATON_WHERE",
        ])
        .env("BATON_KNOWN_HOSTS", known_hosts)
        .env("BATON_CONNECT_TIMEOUT", "20")
        .env_remove("SSH_AUTH_SOCK")
        .env("HOME", net.dir.path())
        .output()
        .expect("run baton")
}

fn host<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["hosts"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["host"] == id))
        .unwrap_or_else(|| panic!("no host {id} in {r}"))
}

#[test]
fn targets_reachable_only_through_the_jump_host_are_run_through_it() {
    if !sshd_available() {
        return;
    }
    let Some(mut net) = JumpNet::start(2) else {
        return;
    };
    let s = Scratch::new("fjumpns");
    let kh = net.known_hosts.clone();
    let t1 = format!("127.0.0.1:{}", net.targets[0].port);

    // No jump: the target's loopback address is not this namespace's.
    s.write("baton.yaml", &net.hosts_yaml(false));
    let out = run(&s, &net, &kh, "t01");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let r = json(&out);
    assert_eq!(host(&r, "t01")["status"], "unreachable", "{r}");
    let err = host(&r, "t01")["error"].as_str().unwrap_or("");
    assert!(
        err.starts_with(&format!("t01: cannot connect to {t1}")),
        "{err}"
    );
    assert!(!net.targets[0].root.join("where").exists());

    // Through the jump host: both targets run the command, each in its own sshd.
    s.write("baton.yaml", &net.hosts_yaml(true));
    let out = run(&s, &net, &kh, "t01,t02");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let r = json(&out);
    for (i, t) in net.targets.iter().enumerate() {
        let want = format!("netns-t{:02}", i + 1);
        assert_eq!(
            std::fs::read_to_string(t.root.join("where"))
                .unwrap_or_default()
                .trim(),
            want
        );
        let tail = host(&r, &t.id)["output_tail"].as_str().unwrap_or("");
        assert!(tail.contains(&format!("on:{want}")), "{r}");
    }
    // One jump-host login carried both targets' connections.
    assert_eq!(JumpNet::logins(net.jump()), 1, "jump host logins");
    for t in &net.targets {
        assert_eq!(JumpNet::logins(t), 1, "{} logins", t.id);
    }

    // The target's host key is checked under its own address, tunnel or not.
    let jump_only = s.path().join("known_hosts_jump_only");
    let first_line = std::fs::read_to_string(&kh)
        .expect("known_hosts")
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    std::fs::write(&jump_only, format!("{first_line}\n")).expect("write known_hosts");
    let out = run(&s, &net, &jump_only, "t01");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = host(&json(&out), "t01")["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        err.starts_with("t01: unknown host key") && err.contains(&format!("for {t1}")),
        "{err}"
    );

    // A target the jump host cannot reach: the error names both hosts.
    net.kill_target(0);
    let out = run(&s, &net, &kh, "t01");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let r = json(&out);
    assert_eq!(host(&r, "t01")["status"], "unreachable", "{r}");
    let err = host(&r, "t01")["error"].as_str().unwrap_or("");
    assert!(
        err.starts_with(&format!(
            "t01: cannot reach {t1} through jump host bastion: "
        )),
        "{err}"
    );
    println!("through a dead target: {err}");
}
