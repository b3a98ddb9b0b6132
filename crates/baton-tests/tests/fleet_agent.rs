//! Fleets authenticating through a real `ssh-agent` against real sshd hosts on loopback:
//! hosts without `key:` use the identities the agent offers (in order, until one is
//! accepted); an agent holding only a wrong key fails every host naming it; no key and no
//! agent is a clear error before anything runs.

use std::process::{Command, Output};

use baton_tests::fleet::{new_key, sshd_available, TestAgent, TestHosts};
use baton_tests::{stderr, stdout, Scratch};
use serde_json::Value;

fn agent_available() -> bool {
    let ok = Command::new("ssh-agent").arg("-h").output().is_ok()
        && Command::new("ssh-add").arg("-h").output().is_ok();
    if !ok {
        assert!(
            std::env::var_os("BATON_REQUIRE_SSHD").is_none(),
            "BATON_REQUIRE_SSHD is set but ssh-agent is missing"
        );
        eprintln!("skipped: no ssh-agent (run scripts/ensure-fleet.sh)");
    }
    ok
}

fn ready() -> bool {
    sshd_available() && agent_available()
}

/// A project whose hosts have no `key:`; `extra(i)` adds lines to host `i`.
fn keyless_project(t: &TestHosts, tag: &str, extra: impl Fn(usize) -> String) -> Scratch {
    let s = Scratch::new(tag);
    s.write("baton.yaml", &t.hosts_yaml_with(false, extra));
    s
}

/// `baton --json fleet run all -- sh -c 'echo {{ host }} > {{ root }}/hit'` with
/// SSH_AUTH_SOCK set to `sock` (or unset) and HOME an empty directory, so that no
/// ~/.ssh/id_ed25519 of the machine can stand in.
fn run_hit(s: &Scratch, t: &TestHosts, sock: Option<&std::path::Path>) -> Output {
    let home = s.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir home");
    let mut c = s.cmd();
    c.args(["--json", "fleet", "run", "all", "--", "sh", "-c"])
        .arg("echo {{ host }} > {{ root }}/hit")
        .env("BATON_KNOWN_HOSTS", &t.known_hosts)
        .env("BATON_CONNECT_TIMEOUT", "60")
        .env("HOME", &home);
    match sock {
        Some(p) => c.env("SSH_AUTH_SOCK", p),
        None => c.env_remove("SSH_AUTH_SOCK"),
    };
    c.output().expect("run baton")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", stdout(out), stderr(out)))
}

#[test]
fn hosts_without_a_key_log_in_through_the_agent_trying_each_identity() {
    if !ready() {
        return;
    }
    let t = TestHosts::start(3);
    let agent = TestAgent::start();
    // A key no host trusts first, then the client key: the second must be tried.
    let wrong = agent.dir.path().join("wrong_key");
    let wrong_pub = new_key(&wrong);
    agent.add(&wrong);
    agent.add(&t.key);
    let listed = agent.listed();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0], wrong_pub, "the agent lists the wrong key first");
    // h03 insists on the agent; the others take it because SSH_AUTH_SOCK is set.
    let s = keyless_project(&t, "fagok", |i| {
        if i == 2 {
            "    agent: true\n".into()
        } else {
            String::new()
        }
    });
    let out = run_hit(&s, &t, Some(&agent.sock));
    let r = json(&out);
    assert_eq!(out.status.code(), Some(0), "{r}\n{}", stderr(&out));
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["summary"]["changed"], 3, "{r}");
    for h in &t.hosts {
        let hit = std::fs::read_to_string(h.root.join("hit")).unwrap_or_default();
        assert_eq!(hit.trim(), h.id, "{} did not run the command", h.id);
    }
    // No key material in what baton printed.
    let private = std::fs::read_to_string(&t.key).expect("read key");
    let body = private.lines().nth(1).expect("key body line").to_string();
    assert!(!stdout(&out).contains(&body) && !stderr(&out).contains(&body));
    // `fleet ping` goes the same way.
    let out = s
        .cmd()
        .args(["--json", "fleet", "ping", "all"])
        .env("BATON_KNOWN_HOSTS", &t.known_hosts)
        .env("BATON_CONNECT_TIMEOUT", "60")
        .env("HOME", s.path().join("home"))
        .env("SSH_AUTH_SOCK", &agent.sock)
        .output()
        .expect("run baton");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["summary"]["ok"], 3);
}

#[test]
fn an_agent_with_only_a_wrong_key_fails_every_host_naming_it() {
    if !ready() {
        return;
    }
    let t = TestHosts::start(3);
    let agent = TestAgent::start();
    let wrong = agent.dir.path().join("wrong_key");
    new_key(&wrong);
    agent.add(&wrong);
    let s = keyless_project(&t, "fagbad", |_| String::new());
    let out = run_hit(&s, &t, Some(&agent.sock));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = json(&out);
    let hosts = r["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 3, "{r}");
    for (h, th) in hosts.iter().zip(&t.hosts) {
        assert_eq!(h["status"], "unreachable", "{r}");
        let e = h["error"].as_str().unwrap_or("");
        assert_eq!(
            e,
            format!(
                "{}: authentication as `{}` failed via ssh-agent (1 identities tried)",
                th.id, t.user
            ),
            "{r}"
        );
        assert!(!th.root.join("hit").exists(), "{} ran the command", th.id);
    }
}

#[test]
fn no_key_and_no_agent_is_a_clear_error_and_nothing_runs() {
    if !sshd_available() {
        return;
    }
    let t = TestHosts::start(3);
    // h01 has its key; h02 and h03 have none; h03 insists on an agent.
    let s = Scratch::new("fagnone");
    let mut yaml = t.hosts_yaml_with(false, |i| match i {
        0 => format!("    key: {}\n", t.key.display()),
        2 => "    agent: true\n".into(),
        _ => String::new(),
    });
    yaml.push('\n');
    s.write("baton.yaml", &yaml);
    let out = run_hit(&s, &t, None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let e = stderr(&out);
    assert!(
        e.contains("h02: no key and no ssh-agent (SSH_AUTH_SOCK unset)"),
        "{e}"
    );
    assert!(
        e.contains("h03: `agent: true` but no ssh-agent (SSH_AUTH_SOCK unset)"),
        "{e}"
    );
    assert!(!e.contains("h01"), "{e}");
    assert!(e.contains("nothing was run"), "{e}");
    // Not even h01, which could have logged in, ran anything; no run was reported.
    for h in &t.hosts {
        assert!(!h.root.join("hit").exists(), "{} ran the command", h.id);
    }
    assert!(stdout(&out).trim().is_empty(), "{}", stdout(&out));
    // Selecting only the host with a key works.
    let out = s
        .cmd()
        .args(["--json", "fleet", "run", "h01", "--", "true"])
        .env("BATON_KNOWN_HOSTS", &t.known_hosts)
        .env("BATON_CONNECT_TIMEOUT", "60")
        .env("HOME", s.path().join("home"))
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run baton");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A bad `agent:` value is a located spec error.
    s.write("baton.yaml", "hosts:\n  a:\n    agent: maybe\n");
    let out = s.baton(&["fleet", "ping", "all"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("baton.yaml:3:") && e.contains("hosts.a.agent: must be true"),
        "{e}"
    );
}
