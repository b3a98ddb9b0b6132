//! Fleets over real sshd hosts on loopback ports: parallel and rolling runs, a host cut
//! off mid-run under stop and continue, max_fail_percentage, managed files with versions,
//! rollback and drift, and host key checking.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use baton_tests::fleet::{sshd_available, TestHosts};
use baton_tests::{stderr, stdout, Scratch};
use serde_json::Value;

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", stdout(out), stderr(out)))
}

/// A scratch project whose baton.yaml holds the hosts plus `more`.
fn project(t: &TestHosts, tag: &str, extra: impl Fn(usize) -> String, more: &str) -> Scratch {
    let s = Scratch::new(tag);
    s.write("baton.yaml", &format!("{}{more}", t.hosts_yaml(extra)));
    s
}

fn fleet(s: &Scratch, t: &TestHosts, args: &[&str]) -> Output {
    s.cmd()
        .arg("--json")
        .args(args)
        .env("BATON_KNOWN_HOSTS", &t.known_hosts)
        // The machine may be busy with 100 sshd of parallel tests: be patient.
        .env("BATON_CONNECT_TIMEOUT", "60")
        .output()
        .expect("run baton")
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap_or("").to_string(),
                h["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn count(report: &Value, status: &str) -> usize {
    statuses(report).iter().filter(|(_, s)| s == status).count()
}

#[test]
fn twenty_hosts_a_parallel_run_reaches_all_and_facts_read_proc() {
    if !sshd_available() {
        return;
    }
    let t = TestHosts::start(20);
    let s = project(
        &t,
        "fpar",
        |i| format!("    role: {}\n", if i < 10 { "web" } else { "db" }),
        "",
    );
    let clock = Instant::now();
    let out = fleet(
        &s,
        &t,
        &[
            "fleet",
            "run",
            "all",
            "--forks",
            "20",
            "--",
            "sh",
            "-c",
            "echo {{ host }} > {{ root }}/hit; echo hello from {{ host }}",
        ],
    );
    println!("parallel ad-hoc run on 20 hosts: {:?}", clock.elapsed());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let r = json(&out);
    let first_run = r["id"].as_i64().expect("the run's id");
    assert_eq!(r["hosts"].as_array().unwrap().len(), 20);
    assert_eq!(count(&r, "changed"), 20, "{r}");
    assert_eq!(r["waves"].as_array().unwrap().len(), 1);
    for h in &t.hosts {
        assert_eq!(
            std::fs::read_to_string(h.root.join("hit")).unwrap().trim(),
            h.id
        );
    }
    let tail = r["hosts"][0]["output_tail"].as_str().unwrap();
    assert!(tail.contains("hello from h01"), "{tail}");

    // Arguments are quoted: a `;` in an argument is data, not a second command.
    let out = fleet(
        &s,
        &t,
        &[
            "fleet",
            "run",
            "h01",
            "--",
            "echo",
            "a; touch {{ root }}/injected",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!t.hosts[0].root.join("injected").exists());

    // Selectors: role, intersection, exclusion.
    let out = fleet(&s, &t, &["fleet", "ping", "role:web:&h01,h02,role:db:!h11"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = json(&out);
    let ping_run = r["id"].as_i64().expect("the ping's id");
    assert_eq!(r["hosts"].as_array().unwrap().len(), 11);
    assert_eq!(count(&r, "ok"), 11);

    let out = fleet(&s, &t, &["fleet", "facts", "all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let f = json(&out);
    assert_eq!(f.as_array().unwrap().len(), 20);
    for h in f.as_array().unwrap() {
        assert!(h["facts"]["cpus"].as_u64().unwrap() >= 1, "{h}");
        assert!(h["facts"]["mem_total_kb"].as_u64().unwrap() > 0, "{h}");
        assert!(h["facts"]["disk_total_kb"].as_u64().unwrap() > 0, "{h}");
    }

    // The facts are kept: the daemon's host series read them (what the built-in rules
    // host_unreachable and disk_space_low watch, and the dashboard's host graphs show).
    let viewer = baton_tests::api::token(&s, "scraper", "viewer");
    let port = baton_tests::free_port();
    let _serve =
        baton_tests::pipeline::Serve::start(&s, &["--listen", &format!("127.0.0.1:{port}")], &[]);
    let host_line = |text: &str, family: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(&format!("{family}{{")) && l.contains("host=\"h01\""))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let mut scraped = String::new();
    let seen = baton_tests::within(Duration::from_secs(30), || {
        let a = baton_tests::api::request(port, "GET", "/metrics", Some(&viewer), None);
        scraped = a.body.as_str().unwrap_or("").to_string();
        host_line(&scraped, "baton_fleet_host_disk_total_bytes").is_some()
    });
    assert!(seen.is_some(), "no host series: {scraped}");
    assert_eq!(
        host_line(&scraped, "baton_fleet_host_up"),
        Some(1.0),
        "{scraped}"
    );
    let total = host_line(&scraped, "baton_fleet_host_disk_total_bytes").unwrap_or(0.0);
    let free = host_line(&scraped, "baton_fleet_host_disk_available_bytes").unwrap_or(-1.0);
    assert!(
        total > 0.0 && (0.0..=total).contains(&free),
        "{total} {free}"
    );
    assert!(host_line(&scraped, "baton_fleet_host_memory_total_bytes").unwrap_or(0.0) > 0.0);

    // Each host as the newest run that reached it saw it: h01 was pinged last, h03
    // only ran the first command.
    let a = baton_tests::api::request(
        port,
        "GET",
        &format!("/api/v1/projects/{}/fleet/hosts", s.name),
        Some(&viewer),
        None,
    );
    assert_eq!(a.status, 200, "{:?}", a.body);
    let hosts = a.body.as_array().expect("a list of hosts");
    assert_eq!(hosts.len(), 20, "{hosts:?}");
    let host = |id: &str| {
        hosts
            .iter()
            .find(|h| h["host"] == id)
            .unwrap_or_else(|| panic!("no {id} in {hosts:?}"))
    };
    assert!(hosts.iter().all(|h| h["reachable"] == true), "{hosts:?}");
    assert_eq!(
        (host("h01")["status"].as_str(), host("h01")["run"].as_i64()),
        (Some("ok"), Some(ping_run))
    );
    assert_eq!(
        (host("h03")["status"].as_str(), host("h03")["run"].as_i64()),
        (Some("changed"), Some(first_run))
    );
    drop(_serve);

    // Runs are kept in the store.
    let out = fleet(&s, &t, &["fleet", "runs"]);
    let runs = json(&out);
    assert!(runs.as_array().unwrap().len() >= 3, "{runs}");

    // A typo in a selector is an error naming it, before anything runs.
    let out = fleet(&s, &t, &["fleet", "run", "role:wbe", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("role:wbe") && stderr(&out).contains("did you mean `role:web`"),
        "{}",
        stderr(&out)
    );
}

const TIMED: &str = "
x-baton:
  runbooks:
    timed:
      strategy: rolling
      batch: 5
      steps:
        - name: record start
          shell: date +%s%N > {{ root }}/start
        - name: work
          command: [sleep, '0.4']
        - name: record end
          shell: date +%s%N > {{ root }}/end
";

fn read_ns(p: std::path::PathBuf) -> u128 {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_rolling_run_with_batch_5_runs_in_4_waves() {
    if !sshd_available() {
        return;
    }
    let t = TestHosts::start(20);
    let s = project(&t, "froll", |_| String::new(), TIMED);
    let out = fleet(&s, &t, &["fleet", "runbook", "timed"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let r = json(&out);
    let waves = r["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 4, "{r}");
    for (i, w) in waves.iter().enumerate() {
        assert_eq!(w["number"], i + 1);
        assert_eq!(w["hosts"].as_array().unwrap().len(), 5);
    }
    // Proof from the hosts themselves: every host of wave k+1 started after every host
    // of wave k ended.
    for k in 0..3 {
        let ended = (k * 5..k * 5 + 5)
            .map(|i| read_ns(t.hosts[i].root.join("end")))
            .max()
            .unwrap();
        let next = (k * 5 + 5..k * 5 + 10)
            .map(|i| read_ns(t.hosts[i].root.join("start")))
            .min()
            .unwrap();
        assert!(
            next > ended,
            "wave {} started before wave {} ended",
            k + 2,
            k + 1
        );
        println!(
            "wave {} -> {}: gap {} ms",
            k + 1,
            k + 2,
            (next - ended) / 1_000_000
        );
    }
    for h in r["hosts"].as_array().unwrap() {
        let i: usize = h["host"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(h["wave"].as_u64().unwrap() as usize, (i - 1) / 5 + 1);
    }
    // Text report: one line per host.
    let text = s
        .cmd()
        .args(["fleet", "runs", r["id"].to_string().as_str()])
        .output()
        .unwrap();
    assert!(
        stdout(&text).contains("h20") && stdout(&text).contains("changed"),
        "{}",
        stdout(&text)
    );
}

const CUT: &str = "
x-baton:
  runbooks:
    cut:
      strategy: rolling
      batch: 5
      steps:
        - shell: touch {{ root }}/started
        - name: gate
          shell: i=0; while [ ! -e {{ root }}/go ] && [ $$i -lt 600 ]; do sleep 0.1; i=$$((i + 1)); done
        - shell: touch {{ root }}/done
";

/// Runs the `cut` runbook and cuts h03 off while wave 1 waits at the gate; returns the
/// report. The others pass the gate only once baton has had time to see h03 go (the
/// docs promise that hosts in flight finish their current step, so without the gate a
/// host ahead of h03 could finish its step before the cut was noticed).
fn run_and_cut(t: &mut TestHosts, s: &Scratch, on_failure: &str) -> (Value, Option<i32>) {
    let child = s
        .cmd()
        .args([
            "--json",
            "fleet",
            "runbook",
            "cut",
            "--on-failure",
            on_failure,
        ])
        .env("BATON_KNOWN_HOSTS", &t.known_hosts)
        .env("BATON_CONNECT_TIMEOUT", "60")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for h in &t.hosts[..5] {
        while !h.root.join("started").exists() {
            assert!(Instant::now() < deadline, "{} never started", h.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    t.kill(2);
    // Generous: the dropped connection is seen in milliseconds on an idle machine.
    std::thread::sleep(Duration::from_secs(2));
    for (i, h) in t.hosts.iter().enumerate() {
        if i != 2 {
            std::fs::write(h.root.join("go"), "").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (json(&out), out.status.code())
}

#[test]
fn a_host_cut_off_mid_run_halts_under_stop() {
    if !sshd_available() {
        return;
    }
    let mut t = TestHosts::start(20);
    let s = project(&t, "fstop", |_| String::new(), CUT);
    let (r, code) = run_and_cut(&mut t, &s, "stop");
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["outcome"], "halted", "{r}");
    let st = statuses(&r);
    assert_eq!(st[2], ("h03".into(), "unreachable".into()), "{r}");
    assert!(r["reason"].as_str().unwrap().contains("h03"), "{r}");
    // Waves 2 to 4 never started; wave 1's other hosts did not go past the halt.
    for h in &t.hosts[5..] {
        assert!(
            !h.root.join("started").exists(),
            "{} started after the halt",
            h.id
        );
    }
    assert_eq!(count(&r, "skipped"), 15, "{r}");
    for h in &t.hosts[..5] {
        assert!(
            !h.root.join("done").exists(),
            "{} went on after the halt",
            h.id
        );
    }
}

#[test]
fn a_host_cut_off_mid_run_under_continue_finishes_the_rest_and_reports_it() {
    if !sshd_available() {
        return;
    }
    let mut t = TestHosts::start(20);
    let s = project(&t, "fcont", |_| String::new(), CUT);
    let (r, code) = run_and_cut(&mut t, &s, "continue");
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["outcome"], "failed", "{r}");
    assert_eq!(statuses(&r)[2].1, "unreachable", "{r}");
    assert!(
        r["hosts"][2]["error"].as_str().unwrap().contains("h03"),
        "{r}"
    );
    assert_eq!(count(&r, "changed"), 19, "{r}");
    assert_eq!(r["summary"]["unreachable"], 1);
    for (i, h) in t.hosts.iter().enumerate() {
        assert_eq!(h.root.join("done").exists(), i != 2, "{}", h.id);
    }
}

const FLAKY: &str = "
x-baton:
  runbooks:
    flaky:
      strategy: rolling
      batch: 5
      on_failure: continue
      steps:
        - name: break
          target: tag:bad
          shell: exit 3
        - shell: touch {{ root }}/done
";

#[test]
fn max_fail_percentage_is_honoured() {
    if !sshd_available() {
        return;
    }
    let t = TestHosts::start(20);
    // h01 and h02 fail: 40% of wave 1.
    let s = project(
        &t,
        "fmax",
        |i| {
            if i < 2 {
                "    tags: [bad]\n".into()
            } else {
                String::new()
            }
        },
        FLAKY,
    );
    let out = fleet(
        &s,
        &t,
        &["fleet", "runbook", "flaky", "--max-fail-percentage", "30"],
    );
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    assert_eq!(r["outcome"], "aborted", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("max_fail_percentage 30%"),
        "{r}"
    );
    assert_eq!(count(&r, "failed"), 2);
    assert_eq!(count(&r, "skipped"), 15, "{r}");
    assert!(t.hosts[5..].iter().all(|h| !h.root.join("done").exists()));
    assert!(t.hosts[2..5].iter().all(|h| h.root.join("done").exists()));

    let out = fleet(
        &s,
        &t,
        &["fleet", "runbook", "flaky", "--max-fail-percentage", "50"],
    );
    let r = json(&out);
    assert_eq!(r["outcome"], "failed", "{r}");
    assert_eq!(count(&r, "failed"), 2);
    assert_eq!(count(&r, "changed"), 18);
    assert_eq!(r["waves"].as_array().unwrap().len(), 4);
    assert!(t.hosts[2..].iter().all(|h| h.root.join("done").exists()));

    // on_failure: ignore records the failed step and goes on: no host fails.
    let out = fleet(
        &s,
        &t,
        &["fleet", "runbook", "flaky", "--on-failure", "ignore"],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    let r = json(&out);
    assert_eq!(r["hosts"][0]["steps"][0]["status"], "ignored", "{r}");
}

fn files_spec(t: &TestHosts, content: &str, mode: &str) -> String {
    format!(
        "{}files:\n  app:\n    path: '{{{{ root }}}}/etc/app.json'\n    hosts: all\n    mode: '{mode}'\n    content: |\n      {content}\n",
        t.hosts_yaml(|_| String::new())
    )
}

fn mode_of(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn managed_file_versions_rollback_and_drift() {
    if !sshd_available() {
        return;
    }
    let t = TestHosts::start(3);
    let s = Scratch::new("ffiles");
    let v1 = r#"{"version": 1, "name": "app"}"#;
    s.write("baton.yaml", &files_spec(&t, v1, "0640"));
    let out = fleet(&s, &t, &["files", "apply"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let r = json(&out);
    assert_eq!(r[0]["version"], 1);
    let path = |i: usize| t.hosts[i].root.join("etc/app.json");
    let v1_bytes = std::fs::read(path(0)).unwrap();
    assert_eq!(v1_bytes, format!("{v1}\n").as_bytes());
    assert_eq!(mode_of(&path(0)), 0o640);

    // Applying the same again changes nothing.
    let r = json(&fleet(&s, &t, &["files", "apply"]));
    assert!(
        r[0]["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["status"] == "ok"),
        "{r}"
    );

    // v2 is invalid JSON: refused before any host is touched, no version recorded.
    s.write("baton.yaml", &files_spec(&t, r#"{"version": 2,"#, "0600"));
    let out = fleet(&s, &t, &["files", "apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid JSON") && stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
    for i in 0..3 {
        assert_eq!(std::fs::read(path(i)).unwrap(), v1_bytes);
        assert_eq!(mode_of(&path(i)), 0o640);
    }

    // v3: valid, new mode; check mode first shows the diff and changes nothing.
    let v3 = r#"{"version": 3, "name": "app", "workers": 4}"#;
    s.write("baton.yaml", &files_spec(&t, v3, "0600"));
    let out = s
        .cmd()
        .args(["files", "apply", "--check"])
        .env("BATON_KNOWN_HOSTS", &t.known_hosts)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("+{\"version\": 3"),
        "{}",
        stdout(&out)
    );
    assert_eq!(std::fs::read(path(0)).unwrap(), v1_bytes);
    let r = json(&fleet(&s, &t, &["files", "apply"]));
    assert_eq!(r[0]["version"], 2, "{r}");
    assert_eq!(std::fs::read_to_string(path(1)).unwrap(), format!("{v3}\n"));
    assert_eq!(mode_of(&path(1)), 0o600);
    // The previous content was backed up.
    assert_eq!(
        std::fs::read(t.hosts[1].root.join("etc/app.json.baton-bak")).unwrap(),
        v1_bytes
    );

    let versions = json(&fleet(&s, &t, &["files", "versions", "app"]));
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );
    let d = json(&fleet(&s, &t, &["files", "diff", "app", "1", "2"]));
    assert!(
        d["diff"].as_str().unwrap().contains("-{\"version\": 1"),
        "{d}"
    );

    // Rollback to v1: exact bytes and mode.
    let out = fleet(&s, &t, &["files", "rollback", "app", "--to", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..3 {
        assert_eq!(std::fs::read(path(i)).unwrap(), v1_bytes);
        assert_eq!(mode_of(&path(i)), 0o640);
    }
    let r = json(&fleet(&s, &t, &["config", "drift"]));
    assert!(
        r[0]["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["status"] == "in-sync"),
        "{r}"
    );

    // A manual edit (and a chmod) show as drift.
    std::fs::write(path(1), b"{\"edited\": true}\n").unwrap();
    std::fs::set_permissions(path(2), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = fleet(&s, &t, &["config", "drift"]);
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    let hosts = r[0]["hosts"].as_array().unwrap();
    assert_eq!(hosts[0]["status"], "in-sync");
    assert_eq!(hosts[1]["status"], "drifted");
    assert!(
        hosts[1]["diff"]
            .as_str()
            .unwrap()
            .contains("+{\"edited\": true}"),
        "{r}"
    );
    assert_eq!(hosts[2]["status"], "drifted");
    let out = fleet(&s, &t, &["files", "drift", "app"]);
    assert_eq!(out.status.code(), Some(1));
    // `baton config` itself still prints the resolved file.
    let out = s.cmd().args(["config", "--services"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn unknown_host_keys_are_refused_unless_accepted_and_changed_keys_always() {
    if !sshd_available() {
        return;
    }
    let t = TestHosts::start(2);
    let s = project(&t, "fkeys", |_| String::new(), "");
    let kh = t.dir.path().join("empty_known_hosts");
    let run = |extra: &[&str]| {
        s.cmd()
            .args(["--json", "fleet", "ping", "all", "--known-hosts"])
            .arg(&kh)
            .args(extra)
            .output()
            .unwrap()
    };
    std::fs::write(&kh, "").unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    assert_eq!(count(&r, "unreachable"), 2);
    let err = r["hosts"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("h01") && err.contains("unknown host key") && err.contains("--accept-new"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), "");

    let out = run(&["--accept-new"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        std::fs::read_to_string(&kh)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count(),
        2
    );
    let out = run(&[]);
    assert!(out.status.success(), "{}", stdout(&out));

    // h01's port listed with h02's key: a changed key, refused even with --accept-new.
    let wrong = format!("[127.0.0.1]:{} {}\n", t.hosts[0].port, t.hosts[1].host_key);
    std::fs::write(&kh, wrong).unwrap();
    let out = run(&["--accept-new"]);
    let r = json(&out);
    assert_eq!(statuses(&r)[0].1, "unreachable");
    assert!(
        r["hosts"][0]["error"].as_str().unwrap().contains("CHANGED"),
        "{r}"
    );
}

const DEPLOY: &str = "
x-baton:
  runbooks:
    deploy:
      steps:
        - name: config
          template:
            content: \"listen={{ port }} role={{ role }}\\n\"
            dest: '{{ root }}/app.conf'
            mode: '0600'
        - name: script
          script:
            content: \"#!/bin/sh\\necho \\\"$1\\\" > \\\"$2\\\"\\n\"
            args: ['{{ host }}', '{{ root }}/script.out']
          creates: '{{ root }}/script.out'
        - name: copy
          copy: {src: payload.txt, dest: '{{ root }}/payload.txt'}
        - name: wait
          wait_for: {port: {{ port }}, timeout: 5s}
";

#[test]
fn runbook_steps_report_changed_only_when_something_changed() {
    if !sshd_available() {
        return;
    }
    let t = TestHosts::start(2);
    let s = project(&t, "fsteps", |_| "    role: web\n".into(), "");
    // The wait_for port is each host's sshd port: templated per host in YAML is not
    // possible, so use h01's port for both (it is open).
    s.write(
        "baton.yaml",
        &format!(
            "{}{}",
            t.hosts_yaml(|_| "    role: web\n".into()),
            DEPLOY.replace(
                "{{ port }}, timeout",
                &format!("{}, timeout", t.hosts[0].port)
            )
        ),
    );
    s.write("payload.txt", "payload\n");
    let out = fleet(&s, &t, &["fleet", "runbook", "deploy", "--check"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let r = json(&out);
    assert!(
        r["hosts"][0]["steps"][0]["diff"]
            .as_str()
            .unwrap()
            .contains(&format!("+listen={} role=web", t.hosts[0].port)),
        "{r}"
    );
    assert!(
        !t.hosts[0].root.join("app.conf").exists(),
        "check mode wrote a file"
    );

    let r = json(&fleet(&s, &t, &["fleet", "runbook", "deploy"]));
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(count(&r, "changed"), 2);
    assert_eq!(
        std::fs::read_to_string(t.hosts[1].root.join("app.conf")).unwrap(),
        format!("listen={} role=web\n", t.hosts[1].port)
    );
    assert_eq!(mode_of(&t.hosts[1].root.join("app.conf")), 0o600);
    assert_eq!(
        std::fs::read_to_string(t.hosts[1].root.join("script.out"))
            .unwrap()
            .trim(),
        "h02"
    );
    assert_eq!(
        std::fs::read_to_string(t.hosts[0].root.join("payload.txt")).unwrap(),
        "payload\n"
    );

    // Second run: nothing to change, so every host is ok, not changed.
    let r = json(&fleet(&s, &t, &["fleet", "runbook", "deploy"]));
    assert_eq!(count(&r, "ok"), 2, "{r}");

    // Ansible INI inventories work too.
    let ini: String = t
        .hosts
        .iter()
        .map(|h| format!("{} ansible_host=127.0.0.1 ansible_port={} ansible_user={} ansible_ssh_private_key_file={}\n", h.id, h.port, t.user, t.key.display()))
        .collect();
    s.write("inventory.ini", &format!("[web]\n{ini}"));
    let out = fleet(&s, &t, &["fleet", "ping", "web", "-i", "inventory.ini"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(count(&json(&out), "ok"), 2);
}

#[test]
fn bad_fleet_specs_are_located_errors_and_nothing_runs() {
    let s = Scratch::new("fbad");
    s.write(
        "baton.yaml",
        "hosts:\n  a:\n    address: 127.0.0.1\n    prot: 22\n",
    );
    let out = s.baton(&["fleet", "ping", "all"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("baton.yaml:4:5") && e.contains("did you mean `port`"),
        "{e}"
    );
    s.write(
        "baton.yaml",
        "hosts:\n  a: {}\nx-baton:\n  runbooks:\n    r:\n      steps:\n        - comand: [x]\n",
    );
    let out = s.baton(&["fleet", "runbook", "r"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("runbooks.r.steps[0]"),
        "{}",
        stderr(&out)
    );
    let out = s.baton(&["fleet", "run", "all", "--batch", "0", "--", "true"]);
    assert_eq!(out.status.code(), Some(64));
    let _ = Command::new("true").status();
}

#[test]
fn a_host_behind_a_jump_host_is_reached_through_it() {
    if !sshd_available() {
        return;
    }
    let mut t = TestHosts::start(2);
    let s = project(
        &t,
        "fjump",
        |i| {
            if i == 1 {
                "    jump: h01\n".into()
            } else {
                String::new()
            }
        },
        "",
    );
    let out = fleet(
        &s,
        &t,
        &[
            "fleet",
            "run",
            "h02",
            "--",
            "sh",
            "-c",
            "echo via > {{ root }}/jumped",
        ],
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(t.hosts[1].root.join("jumped").exists());
    // With the jump host gone, h02 (whose own sshd still runs) cannot be reached: the
    // connection really goes through h01.
    t.kill(0);
    let out = fleet(&s, &t, &["fleet", "ping", "h02", "--connect-timeout", "5"]);
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    assert!(
        r["hosts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("through jump host"),
        "{r}"
    );
}

#[test]
fn managed_files_for_the_local_machine_validate_apply_and_drift() {
    let s = Scratch::new("flocal");
    let target = s.path().join("out/app.env");
    let spec = |vars: &str| {
        format!(
            "files:\n  env:\n    kind: env\n    path: {}\n    mode: '0600'\n    env: {{{vars}}}\n",
            target.display()
        )
    };
    s.write("baton.yaml", &spec("PORT: 8080, LOG_LEVEL: info"));
    let out = s.baton(&["files", "apply"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "LOG_LEVEL=info\nPORT=8080\n"
    );
    assert_eq!(mode_of(&target), 0o600);
    // An invalid variable name is refused; the file stays as it was.
    s.write("baton.yaml", &spec("'9LIVES': x"));
    let out = s.baton(&["files", "apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a valid environment variable name"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "LOG_LEVEL=info\nPORT=8080\n"
    );
    std::fs::write(&target, "PORT=1\n").unwrap();
    let out = s.baton(&["--json", "config", "drift"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)[0]["hosts"][0]["status"], "drifted");
}
