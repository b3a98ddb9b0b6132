//! Pipelines end to end through the real binary: a 12-job DAG (diamond, flaky job,
//! timeout, artifact handoff, rollbacks, matrix) recorded exactly, dry runs and bad specs
//! that run nothing, webhooks, schedules, git polling, and SIGTERM leaving no process.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use baton_tests::pipeline::{
    git, github_signature, post, processes_with, runs, show, within, Reaper, Serve,
};
use baton_tests::{assert_private, docker_available, free_port, stderr, stdout, Scratch};
use serde_json::Value;

/// Twelve jobs once the matrix is expanded. `$$` is a literal `$` (the file is
/// interpolated like a Compose file).
const TWELVE: &str = r#"
pipelines:
  ci:
    jobs:
      checkout:
        run: |
          echo checkout >> "$$OUT"
          echo src > src.txt
        artifacts: {paths: [src.txt], keep_last: 2}
      lint:
        needs: [checkout]
        run: echo lint >> "$$OUT"; test -f src.txt
      build:
        needs: [checkout]
        run: |
          echo build >> "$$OUT"
          mkdir -p dist && cat src.txt > dist/app.bin && echo built-by-build >> dist/app.bin
        artifacts: {paths: [dist], expire_in: 1h}
      test:
        needs: [build]
        matrix: {shard: [a, b, c]}
        run: echo "test-$$shard" >> "$$OUT"
      flaky:
        needs: [build]
        retry: {max: 3, backoff: 20ms}
        run: |
          n=$$(cat "$$OUT.flaky" 2>/dev/null || echo 0); n=$$((n+1)); echo $$n > "$$OUT.flaky"
          echo "flaky attempt $$n"
          [ "$$n" -ge 3 ]
      slow:
        needs: [checkout]
        timeout: 1s
        allow_failure: true
        run: echo slow >> "$$OUT"; sleep 30
      package:
        needs: [lint, build, test]
        run: |
          echo package >> "$$OUT"
          grep built-by-build dist/app.bin
        rollback: echo rollback-package >> "$$OUT"
      deploy:
        needs: [package, flaky]
        secrets: [DEPLOY_TOKEN]
        run: |
          echo "deploying with $$DEPLOY_TOKEN"
          echo deploy >> "$$OUT"
        rollback: echo rollback-deploy >> "$$OUT"
      smoke:
        needs: [deploy]
        run: echo smoke >> "$$OUT"; exit 3
      notify:
        when: on_failure
        run: echo notify >> "$$OUT"
"#;

const SECRET: &str = "tok-5up3r-s3cr3t";

fn statuses(report: &Value) -> Vec<(String, String, u64)> {
    report["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| {
            (
                j["name"].as_str().unwrap_or("").to_string(),
                j["status"].as_str().unwrap_or("").to_string(),
                j["attempts"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn a_twelve_job_pipeline_runs_in_order_with_retries_timeouts_artifacts_rollbacks() {
    let s = Scratch::new("pipe12");
    s.write("baton.yaml", TWELVE);
    let out_file = s.path().join("out");
    let run = |jobs: &str| {
        let _ = std::fs::remove_file(&out_file);
        let _ = std::fs::remove_file(s.path().join("out.flaky"));
        let started = Instant::now();
        let o = s
            .cmd()
            .args(["pipeline", "run", "ci", "--jobs", jobs])
            .env("OUT", &out_file)
            .env("DEPLOY_TOKEN", SECRET)
            .output()
            .expect("baton");
        eprintln!("run with --jobs {jobs}: {:?}", started.elapsed());
        o
    };

    // One job at a time: the order is the plan's, exactly.
    let o = run("1");
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let live = stdout(&o);
    assert!(live.contains("deploy | deploying with ***"), "{live}");
    assert!(
        !live.contains(SECRET),
        "the secret leaked into the live log"
    );
    let written = std::fs::read_to_string(&out_file).expect("out");
    assert_eq!(
        written.lines().collect::<Vec<_>>(),
        [
            "checkout",
            "lint",
            "build",
            "test-a",
            "test-b",
            "test-c",
            "slow",
            "package",
            "deploy",
            "smoke",
            "notify",
            "rollback-deploy",
            "rollback-package"
        ]
    );
    let history = runs(&s);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["status"], "failed");
    let id = history[0]["id"].as_i64().expect("run id");
    let report = show(&s, id);
    let expected: Vec<(String, String, u64)> = [
        ("checkout", "success", 1),
        ("lint", "success", 1),
        ("build", "success", 1),
        ("test[shard=a]", "success", 1),
        ("test[shard=b]", "success", 1),
        ("test[shard=c]", "success", 1),
        ("flaky", "success", 3),
        ("slow", "allowed_failure", 1),
        ("package", "success", 1),
        ("deploy", "success", 1),
        ("smoke", "failed", 1),
        ("notify", "success", 1),
        ("rollback:deploy", "success", 1),
        ("rollback:package", "success", 1),
    ]
    .iter()
    .map(|(n, st, a)| (n.to_string(), st.to_string(), *a))
    .collect();
    assert_eq!(statuses(&report), expected);
    let jobs = report["jobs"].as_array().expect("jobs");
    let slow = jobs.iter().find(|j| j["name"] == "slow").expect("slow");
    assert_eq!(slow["reason"], "timed out after 1s");
    let smoke = jobs.iter().find(|j| j["name"] == "smoke").expect("smoke");
    assert_eq!(smoke["exit_code"], 3);

    // The artifact of build reached package (it grepped it) and is in the store.
    let arts = s.ok(&["--json", "artifacts", "ls", "--run", &id.to_string()]);
    let arts: Value = serde_json::from_str(&arts).expect("artifacts json");
    let paths: Vec<(String, String)> = arts
        .as_array()
        .expect("list")
        .iter()
        .map(|a| {
            (
                a["job"].as_str().unwrap().into(),
                a["path"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        paths,
        [
            ("build".into(), "dist/app.bin".into()),
            ("checkout".into(), "src.txt".into())
        ]
    );
    let dest = tempfile::tempdir().expect("tmp");
    s.ok(&[
        "artifacts",
        "get",
        &id.to_string(),
        "build",
        "-o",
        dest.path().to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(dest.path().join("dist/app.bin")).unwrap(),
        "src\nbuilt-by-build\n"
    );

    // Logs are kept per job, with timestamps, secrets masked.
    let logs = s.ok(&["pipeline", "logs", &id.to_string(), "flaky"]);
    for n in 1..=3 {
        assert!(
            logs.contains(&format!("flaky | flaky attempt {n}")),
            "{logs}"
        );
    }
    let deploy_log = s.ok(&["pipeline", "logs", &id.to_string(), "deploy"]);
    assert!(deploy_log.contains("deploying with ***") && !deploy_log.contains(SECRET));
    let junit = s.ok(&["pipeline", "show", &id.to_string(), "--format", "junit"]);
    assert!(
        junit.contains("<testcase classname=\"ci\" name=\"test[shard=a]\""),
        "{junit}"
    );
    assert!(junit.contains("failures=\"1\""), "{junit}");
    let md = s.ok(&["pipeline", "show", &id.to_string(), "--format", "markdown"]);
    assert!(
        md.contains("| 7 | `flaky` | success after 3 attempts | 3 |"),
        "{md}"
    );

    // In parallel: same outcomes, and no job started before what it needs had finished.
    let o = run("4");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let id2 = runs(&s)[0]["id"].as_i64().unwrap();
    let report = show(&s, id2);
    let mut got = statuses(&report);
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want);
    let jobs = report["jobs"].as_array().unwrap();
    let at = |name: &str, key: &str| {
        jobs.iter()
            .find(|j| j["name"] == name)
            .and_then(|j| j[key].as_i64())
            .unwrap()
    };
    for (job, needs) in [
        ("lint", vec!["checkout"]),
        ("build", vec!["checkout"]),
        ("test[shard=b]", vec!["build"]),
        (
            "package",
            vec!["lint", "build", "test[shard=a]", "test[shard=c]"],
        ),
        ("deploy", vec!["package", "flaky"]),
        ("smoke", vec!["deploy"]),
        ("notify", vec!["smoke", "slow"]),
        ("rollback:deploy", vec!["notify", "smoke"]),
        ("rollback:package", vec!["rollback:deploy"]),
    ] {
        for n in needs {
            assert!(
                at(job, "started_at") >= at(n, "finished_at"),
                "{job} started before {n} ended"
            );
        }
    }

    // Rerun: what passed is reused, the rest runs again.
    let _ = std::fs::remove_file(&out_file);
    let o = s
        .cmd()
        .args(["pipeline", "rerun", &id.to_string(), "--jobs", "1"])
        .env("OUT", &out_file)
        .env("DEPLOY_TOKEN", SECRET)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let id3 = runs(&s)[0]["id"].as_i64().unwrap();
    let rerun = statuses(&show(&s, id3));
    let find = |n: &str| {
        rerun
            .iter()
            .find(|j| j.0 == n)
            .map(|j| j.1.clone())
            .unwrap()
    };
    assert_eq!(find("build"), "reused");
    assert_eq!(find("deploy"), "reused");
    assert_eq!(find("smoke"), "failed");
    assert_eq!(
        std::fs::read_to_string(&out_file)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        ["slow", "smoke"]
    );
    // The database, the job logs and the artifacts are the owner's alone.
    assert_private(s.state.path());
}

#[test]
fn a_dry_run_prints_the_order_and_runs_nothing() {
    let s = Scratch::new("pipedry");
    s.write(
        "baton.yaml",
        "pipelines:\n  ci:\n    jobs:\n      b:\n        needs: [a]\n        run: touch \"$$MARK\"\n      a:\n        run: touch \"$$MARK\"\n        matrix: {os: [x, y]}\n",
    );
    let mark = s.path().join("marker");
    let o = s
        .cmd()
        .args(["pipeline", "run", "ci", "--dry-run"])
        .env("MARK", &mark)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let order: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            l.trim()
                .split_once(". ")
                .map(|(_, r)| r.split("  ").next().unwrap_or(""))
        })
        .collect();
    assert_eq!(order, ["a[os=x]", "a[os=y]", "b"], "{text}");
    assert!(text.contains("$ touch \"$MARK\""), "{text}");
    assert!(!mark.exists(), "a dry run ran a job");
    assert!(runs(&s).is_empty(), "a dry run recorded a run");
    let json = s.ok(&["--json", "pipeline", "run", "ci", "--dry-run"]);
    let plan: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        plan["jobs"][2]["needs"],
        serde_json::json!(["a[os=x]", "a[os=y]"])
    );
    assert!(!mark.exists());
}

#[test]
fn bad_pipelines_are_refused_with_their_location_and_run_nothing() {
    let cases = [
        (
            "cycle",
            "pipelines:\n  ci:\n    jobs:\n      a:\n        needs: [c]\n        run: touch marker\n      b:\n        needs: [a]\n        run: touch marker\n      c:\n        needs: [b]\n        run: touch marker\n",
            "baton.yaml:5:17: pipelines.ci.jobs.a.needs[0]: dependency cycle: a -> c -> b -> a",
        ),
        (
            "unknown needs",
            "pipelines:\n  ci:\n    jobs:\n      build:\n        run: touch marker\n      test:\n        needs: [biuld]\n        run: touch marker\n",
            "baton.yaml:7:17: pipelines.ci.jobs.test.needs[0]: job \"test\" needs \"biuld\", which is not a job of this pipeline (did you mean \"build\"?)",
        ),
        (
            "bad cron",
            "pipelines:\n  ci:\n    triggers:\n      - schedule: \"61 * * * *\"\n    jobs:\n      a:\n        run: touch marker\n",
            "baton.yaml:4:9: pipelines.ci.triggers[0].schedule: \"61 * * * *\" is not a cron expression",
        ),
        (
            "bad duration",
            "pipelines:\n  ci:\n    jobs:\n      a:\n        run: touch marker\n        timeout: soon\n",
            "baton.yaml:6:9: pipelines.ci.jobs.a.timeout: expected a duration like \"30s\", \"1m30s\" or \"500ms\", found \"soon\"",
        ),
    ];
    for (what, yaml, want) in cases {
        let s = Scratch::new("pipebad");
        s.write("baton.yaml", yaml);
        for args in [
            vec!["pipeline", "run", "ci"],
            vec!["pipeline", "run", "ci", "--dry-run"],
        ] {
            let o = s.baton(&args);
            assert_eq!(o.status.code(), Some(1), "{what}: {}", stdout(&o));
            let err = stderr(&o);
            assert!(err.contains(want), "{what}: expected {want:?} in:\n{err}");
            assert!(!s.path().join("marker").exists(), "{what}: a job ran");
        }
        assert!(runs(&s).is_empty(), "{what}: a run was recorded");
    }
    // An unknown key gets a suggestion.
    let s = Scratch::new("pipebad");
    s.write(
        "baton.yaml",
        "pipelines:\n  ci:\n    jobs:\n      a:\n        run: 'true'\n        timout: 1s\n",
    );
    let err = stderr(&s.baton(&["pipeline", "run", "ci"]));
    assert!(
        err.contains("baton.yaml:6:9: pipelines.ci.jobs.a.timout: unknown key \"timout\" (did you mean \"timeout\"?)"),
        "{err}"
    );
}

#[test]
fn sigterm_during_a_run_kills_every_job_and_leaves_no_process() {
    // GNU sleep sums its arguments: a tiny unique number marks our processes.
    let marker = format!("0.000{}917", std::process::id());
    let _reaper = Reaper(marker.clone());
    let s = Scratch::new("pipeterm");
    s.write(
        "baton.yaml",
        "pipelines:\n  ci:\n    jobs:\n      one:\n        run: sleep 300 $$MARK\n      two:\n        run: |\n          bash -c 'sleep 301 \"$$1\"' _ $$MARK &\n          sleep 302 $$MARK\n      three:\n        run: sleep 303 $$MARK\n      after:\n        needs: [one]\n        run: touch never\n",
    );
    let mut child = s
        .cmd()
        .args(["pipeline", "run", "ci", "--jobs", "3"])
        .env("MARK", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = within(Duration::from_secs(30), || {
        processes_with(&marker).len() >= 4
    });
    assert!(
        up.is_some(),
        "the jobs never started: {:?}",
        processes_with(&marker)
    );
    let before = processes_with(&marker);
    eprintln!("running before SIGTERM: {before:?}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("baton did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("baton exited {:?} after {:?}", code, started.elapsed());
    assert_eq!(code, Some(130));
    let left = within(Duration::from_secs(10), || {
        processes_with(&marker).is_empty()
    });
    assert!(
        left.is_some(),
        "stray processes: {:?}",
        processes_with(&marker)
    );
    let history = runs(&s);
    assert_eq!(history[0]["status"], "cancelled");
    let report = show(&s, history[0]["id"].as_i64().unwrap());
    for (name, status, _) in statuses(&report) {
        assert_eq!(status, "cancelled", "{name}");
    }
    assert!(!s.path().join("never").exists());
}

#[test]
fn a_cancel_from_another_process_stops_the_run_and_its_jobs() {
    let marker = format!("0.000{}927", std::process::id());
    let _reaper = Reaper(marker.clone());
    let s = Scratch::new("pipecancel");
    s.write(
        "baton.yaml",
        "pipelines:\n  ci:\n    jobs:\n      one:\n        run: sleep 300 $$MARK\n        rollback: touch rolled\n      two:\n        needs: [one]\n        run: touch never\n",
    );
    let mut child = s
        .cmd()
        .args(["pipeline", "run", "ci"])
        .env("MARK", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = within(Duration::from_secs(30), || {
        !processes_with(&marker).is_empty()
    });
    assert!(up.is_some(), "the job never started");
    let id = runs(&s)[0]["id"].as_i64().unwrap().to_string();
    // Not running: refused.
    let o = s.baton(&["pipeline", "cancel", "999"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let started = Instant::now();
    s.ok(&["pipeline", "cancel", &id]);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the run did not stop within 30 s of the cancel");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "cancelled run ended {:?} after {:?}",
        code,
        started.elapsed()
    );
    assert_eq!(code, Some(130));
    assert!(
        within(Duration::from_secs(10), || processes_with(&marker)
            .is_empty())
        .is_some(),
        "stray processes: {:?}",
        processes_with(&marker)
    );
    assert_eq!(runs(&s)[0]["status"], "cancelled");
    assert!(!s.path().join("never").exists());
    // A second cancel of a finished run is refused.
    assert_eq!(s.baton(&["pipeline", "cancel", &id]).status.code(), Some(1));
}

#[test]
fn a_webhook_with_a_bad_signature_is_refused_and_a_signed_one_runs() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("pipehook");
    s.write(
        "baton.yaml",
        "pipelines:\n  deploy:\n    triggers:\n      - webhook: {provider: github, secret_env: HOOK_SECRET}\n    jobs:\n      record:\n        run: echo \"$$BATON_HOOK_REF $$BATON_BRANCH $$BATON_HOOK_REPOSITORY_NAME\" > \"$$MARK\"\n  lab:\n    triggers:\n      - webhook: {provider: gitlab, secret_file: token.txt}\n    jobs:\n      record:\n        run: echo \"$$BATON_HOOK_OBJECT_KIND\" > \"$$MARK.lab\"\n",
    );
    s.write("token.txt", "gl-token\n");
    let mark = s.path().join("hooked");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mark_s = mark.to_string_lossy().into_owned();
    // The daemon's environment carries the secret and where jobs write.
    let _serve = Serve::start(
        &s,
        &["--hooks-listen", &addr],
        &[("HOOK_SECRET", "gh-s3cret"), ("MARK", &mark_s)],
    );
    let listening = within(Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        listening.is_some(),
        "the webhook listener never came up:\n{}",
        std::fs::read_to_string(s.state.path().join("serve.log")).unwrap_or_default()
    );
    eprintln!("webhook listener up after {listening:?}");
    let body = br#"{"ref":"refs/heads/main","repository":{"name":"shop"}}"#;
    let bad = github_signature("wrong", body);
    assert_eq!(
        post(
            port,
            "/hooks/deploy",
            &[("X-Hub-Signature-256", &bad)],
            body
        ),
        401
    );
    assert_eq!(post(port, "/hooks/deploy", &[], body), 401);
    assert_eq!(
        post(
            port,
            "/hooks/lab",
            &[("X-Gitlab-Token", "nope")],
            br#"{"object_kind":"push"}"#
        ),
        401
    );
    assert_eq!(post(port, "/hooks/nothing", &[], body), 404);
    // A client that trickles its request is cut off instead of holding a connection.
    {
        use std::io::{Read, Write};
        let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        slow.write_all(b"POST /hooks/deploy HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let _ = slow.read_to_end(&mut buf);
        let held = started.elapsed();
        eprintln!("a trickled request was cut after {held:?}");
        assert!(held < Duration::from_secs(20), "held {held:?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(runs(&s).is_empty(), "a refused webhook started a run");
    assert!(!mark.exists());

    let good = github_signature("gh-s3cret", body);
    assert_eq!(
        post(
            port,
            "/hooks/deploy",
            &[("X-Hub-Signature-256", &good), ("X-GitHub-Delivery", "d-1")],
            body
        ),
        202
    );
    let took = within(Duration::from_secs(30), || {
        runs(&s).first().is_some_and(|r| r["status"] == "success")
    });
    assert!(
        took.is_some(),
        "the signed webhook's run never passed: {:?}\n{}",
        runs(&s),
        std::fs::read_to_string(s.state.path().join("serve.log")).unwrap_or_default()
    );
    eprintln!("signed webhook to finished run: {took:?}");
    assert_eq!(
        std::fs::read_to_string(&mark).unwrap().trim(),
        "refs/heads/main main shop"
    );
    let r = &runs(&s)[0];
    assert_eq!(r["trigger"], "webhook");
    assert_eq!(r["vars"]["BATON_HOOK_REF"], "refs/heads/main");

    // A replayed delivery is answered without running: the same one, or the same signed
    // body under a new delivery id (GitHub signs the body only).
    for id in ["d-1", "d-2"] {
        assert_eq!(
            post(
                port,
                "/hooks/deploy",
                &[("X-Hub-Signature-256", &good), ("X-GitHub-Delivery", id)],
                body
            ),
            200,
            "replay {id}"
        );
    }
    // A new delivery runs.
    let body2 = br#"{"ref":"refs/heads/next","repository":{"name":"shop"}}"#;
    let good2 = github_signature("gh-s3cret", body2);
    assert_eq!(
        post(
            port,
            "/hooks/deploy",
            &[
                ("X-Hub-Signature-256", &good2),
                ("X-GitHub-Delivery", "d-3")
            ],
            body2
        ),
        202
    );
    assert!(
        within(Duration::from_secs(30), || runs(&s).len() == 2
            && runs(&s).iter().all(|r| r["status"] == "success"))
        .is_some(),
        "{:?}",
        runs(&s)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(runs(&s).len(), 2, "a replay ran: {:?}", runs(&s));

    assert_eq!(
        post(
            port,
            "/hooks/lab",
            &[("X-Gitlab-Token", "gl-token")],
            br#"{"object_kind":"push"}"#
        ),
        202
    );
    let lab = s.path().join("hooked.lab");
    assert!(within(Duration::from_secs(30), || lab.exists()).is_some());
    assert!(within(Duration::from_secs(5), || {
        std::fs::read_to_string(&lab).unwrap_or_default().trim() == "push"
    })
    .is_some());
    let log = std::fs::read_to_string(s.state.path().join("serve.log")).unwrap_or_default();
    assert!(
        !log.contains("gh-s3cret") && !log.contains("gl-token"),
        "{log}"
    );
}

#[test]
fn a_webhook_with_an_empty_secret_is_not_served() {
    let s = Scratch::new("pipeempty");
    s.write(
        "baton.yaml",
        "pipelines:\n  deploy:\n    triggers:\n      - webhook: {provider: github, secret_env: HOOK_SECRET}\n    jobs:\n      record:\n        run: touch \"$$MARK\"\n",
    );
    let mark = s.path().join("hooked");
    let mark_s = mark.to_string_lossy().into_owned();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _serve = Serve::start(
        &s,
        &["--hooks-listen", &addr],
        &[("HOOK_SECRET", ""), ("MARK", &mark_s)],
    );
    let log = s.state.path().join("serve.log");
    let refused = within(Duration::from_secs(60), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("secret (environment variable HOOK_SECRET) is empty")
    });
    assert!(
        refused.is_some(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Nothing listens, so nobody can sign with the empty key.
    let body = br#"{"ref":"refs/heads/main"}"#;
    let signed = github_signature("", body);
    assert_eq!(
        post(
            port,
            "/hooks/deploy",
            &[("X-Hub-Signature-256", &signed)],
            body
        ),
        0,
        "something answered on the webhook port"
    );
    assert!(runs(&s).is_empty());
    assert!(!mark.exists());
}

#[test]
fn a_seconds_level_schedule_fires() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("pipecron");
    s.write(
        "baton.yaml",
        "pipelines:\n  tick:\n    triggers:\n      - schedule: \"*/2 * * * * *\"\n    jobs:\n      t:\n        run: echo tick\n",
    );
    let _serve = Serve::start(&s, &[], &[]);
    let fired = within(Duration::from_secs(30), || {
        runs(&s).iter().any(|r| r["status"] == "success")
    });
    assert!(fired.is_some(), "the schedule never fired: {:?}", runs(&s));
    let r = runs(&s)
        .into_iter()
        .find(|r| r["status"] == "success")
        .unwrap();
    assert_eq!(r["trigger"], "schedule");
    let due: i64 = r["vars"]["BATON_SCHEDULED_AT"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let started = r["started_at"].as_i64().unwrap();
    assert_eq!(due % 2000, 0, "fired at a time the schedule does not name");
    eprintln!(
        "schedule fired {} ms after its due time (first after {fired:?})",
        started - due
    );
    assert!(started >= due, "fired before it was due");
}

#[test]
fn a_new_commit_triggers_its_pipeline_exactly_once() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("pipegit");
    let repo = s.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("f"), "1").unwrap();
    git(&repo, &["add", "f"]);
    git(&repo, &["commit", "-qm", "one"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    s.write(
        "baton.yaml",
        "pipelines:\n  ci:\n    triggers:\n      - git: {repo: repo, branch: main, interval: 200ms}\n    jobs:\n      build:\n        run: echo \"$$BATON_BRANCH $$BATON_COMMIT\"\n",
    );
    let commits = |s: &Scratch| -> Vec<String> {
        let mut v: Vec<String> = runs(s)
            .iter()
            .map(|r| r["vars"]["BATON_COMMIT"].as_str().unwrap_or("").to_string())
            .collect();
        v.reverse();
        v
    };
    let mut serve = Serve::start(&s, &[], &[]);
    assert!(within(Duration::from_secs(30), || commits(&s).len() == 1).is_some());
    std::fs::write(repo.join("f"), "2").unwrap();
    git(&repo, &["commit", "-qam", "two"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    let took = within(Duration::from_secs(30), || commits(&s).len() >= 2);
    assert!(took.is_some(), "the new commit did not trigger a run");
    eprintln!("new commit to run: {took:?}");
    // Several more polls: still once per commit.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(commits(&s), [first.clone(), second.clone()]);
    assert!(within(Duration::from_secs(30), || runs(&s)
        .iter()
        .all(|r| r["status"] == "success"))
    .is_some());
    assert_eq!(runs(&s)[0]["vars"]["BATON_BRANCH"], "main");
    // A restarted daemon remembers the last commit it saw.
    serve.stop();
    let _serve = Serve::start(&s, &[], &[]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(commits(&s), [first, second]);
}

#[test]
fn an_image_job_runs_in_a_container_with_the_workspace_mounted() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("pipeimg");
    s.write(
        "baton.yaml",
        &format!(
            "pipelines:\n  ci:\n    jobs:\n      make:\n        image: {}\n        env: {{GREETING: hello}}\n        run: |\n          test -f /.dockerenv\n          echo \"$$GREETING from $$(uname -s) in $$(pwd) as $$BATON_JOB\" > made.txt\n        artifacts: {{paths: [made.txt]}}\n      use:\n        needs: [make]\n        run: cp made.txt \"$$OUT\"\n",
            baton_tests::IMAGE
        ),
    );
    let out = s.path().join("copied");
    let o = s
        .cmd()
        .args(["pipeline", "run", "ci"])
        .env("OUT", &out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        "hello from Linux in /workspace as make"
    );
    // It ran through the engine (no docker CLI), its output reached the live log, and
    // a job that times out has its container removed.
    s.write(
        "baton.yaml",
        &format!(
            "pipelines:\n  slow:\n    jobs:\n      wait:\n        image: {}\n        timeout: 2s\n        run: echo waiting; sleep 60\n",
            baton_tests::IMAGE
        ),
    );
    let started = std::time::Instant::now();
    let o = s.cmd().args(["pipeline", "run", "slow"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "the timeout did not stop it"
    );
    let live = stdout(&o);
    assert!(live.contains("wait | waiting"), "{live}");
    assert!(live.contains("timed out: killed its container"), "{live}");
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=io.baton.pipeline-job=wait"])
        .output()
        .unwrap();
    assert!(
        stdout(&left).trim().is_empty(),
        "left behind: {}",
        stdout(&left)
    );
}

#[test]
fn concurrency_one_keeps_two_runs_of_a_pipeline_apart() {
    let s = Scratch::new("pipeconc");
    s.write(
        "baton.yaml",
        "pipelines:\n  deploy:\n    concurrency: 1\n    jobs:\n      hold:\n        run: sleep 1\n",
    );
    let spawn = || {
        s.cmd()
            .args(["pipeline", "run", "deploy"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let history = runs(&s);
    assert_eq!(history.len(), 2);
    let (newer, older) = (&history[0], &history[1]);
    assert!(
        newer["started_at"].as_i64().unwrap() >= older["finished_at"].as_i64().unwrap(),
        "the runs overlapped: {history:?}"
    );
}

/// A pipeline project over real sshd hosts: their `hosts:` section plus `pipelines`.
fn host_project(
    t: &baton_tests::fleet::TestHosts,
    tag: &str,
    extra: impl Fn(usize) -> String,
    pipelines: &str,
) -> Scratch {
    let s = Scratch::new(tag);
    s.write("baton.yaml", &format!("{}{pipelines}", t.hosts_yaml(extra)));
    s
}

/// `baton pipeline run` against test hosts (their known_hosts, a patient connect).
fn run_on_hosts(
    s: &Scratch,
    t: &baton_tests::fleet::TestHosts,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    s.cmd()
        .args(["pipeline", "run"])
        .args(args)
        .env("BATON_KNOWN_HOSTS", &t.known_hosts)
        .env("BATON_CONNECT_TIMEOUT", "60")
        .envs(env.iter().copied())
        .output()
        .expect("baton")
}

#[test]
fn a_host_job_runs_its_script_on_each_selected_host_after_a_local_job() {
    use baton_tests::fleet::{sshd_available, TestHosts};
    if !sshd_available() {
        return;
    }
    // Three web hosts and one db host the selector must leave alone.
    let t = TestHosts::start(4);
    let marker = format!("0.000{}613", std::process::id());
    let _reaper = Reaper(marker.clone());
    let s = host_project(
        &t,
        "pipehost",
        |i| format!("    role: {}\n", if i < 3 { "web" } else { "db" }),
        r#"
pipelines:
  deploy:
    jobs:
      build:
        run: echo build >> "$$OUT"
      push:
        needs: [build]
        host: role:web
        run: |
          echo "$$BATON_HOST" > "$$root/deployed"
          echo "pushed $$BATON_JOB to $$BATON_HOST"
          echo "to stderr on $$BATON_HOST" >&2
      after:
        needs: [push]
        run: echo after >> "$$OUT"
  slow:
    jobs:
      hang:
        host: h01,h02
        timeout: 4s
        run: sleep 300 $$MARK
"#,
    );
    let out_file = s.path().join("out");
    let clock = Instant::now();
    let o = run_on_hosts(
        &s,
        &t,
        &["deploy", "--jobs", "1"],
        &[("OUT", out_file.to_str().unwrap())],
    );
    eprintln!("local + 3-host pipeline: {:?}", clock.elapsed());
    let live = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{live}\n{}", stderr(&o));
    for (i, h) in t.hosts.iter().enumerate() {
        let f = h.root.join("deployed");
        if i < 3 {
            assert_eq!(
                std::fs::read_to_string(&f).expect("deployed file").trim(),
                h.id
            );
            assert!(
                live.contains(&format!("push | {} | pushed push to {}", h.id, h.id)),
                "{live}"
            );
            assert!(
                live.contains(&format!("push | {} | to stderr on {}", h.id, h.id)),
                "{live}"
            );
        } else {
            assert!(!f.exists(), "the db host was not selected");
        }
    }
    assert_eq!(
        std::fs::read_to_string(&out_file)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        ["build", "after"]
    );
    let history = runs(&s);
    let id = history[0]["id"].as_i64().unwrap();
    let report = show(&s, id);
    assert_eq!(
        statuses(&report),
        [
            ("build".to_string(), "success".to_string(), 1),
            ("push".to_string(), "success".to_string(), 1),
            ("after".to_string(), "success".to_string(), 1),
        ]
    );
    // The job log keeps each host's lines, prefixed by its id.
    let logs = s.ok(&["pipeline", "logs", &id.to_string(), "push"]);
    for h in &t.hosts[..3] {
        assert!(
            logs.contains(&format!("| {} | pushed push to {}", h.id, h.id)),
            "{logs}"
        );
    }
    // A host whose key is not in known_hosts is refused: the job fails, saying why.
    let empty = s.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let o = s
        .cmd()
        .args(["pipeline", "run", "deploy"])
        .env("BATON_KNOWN_HOSTS", &empty)
        .env("OUT", &out_file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("h01: unknown host key"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("after | == upstream_failed"),
        "{}",
        stdout(&o)
    );

    // The dry run names the hosts the selector picked.
    let dry = s.ok(&["pipeline", "run", "deploy", "--dry-run"]);
    assert!(dry.contains("[host role:web: h01, h02, h03]"), "{dry}");

    // A timeout kills the script's process group on each host and fails the job. The
    // marker reaches the hosts as a run variable (`-v`): a host job does not inherit
    // the caller's environment.
    let var = format!("MARK={marker}");
    let log = s.path().join("slow.log");
    let spawn_slow = || {
        Reaped(
            s.cmd()
                .args(["pipeline", "run", "slow", "-v", &var])
                .env("BATON_KNOWN_HOSTS", &t.known_hosts)
                .env("BATON_CONNECT_TIMEOUT", "60")
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let clock = Instant::now();
    let mut child = spawn_slow();
    let up = within(Duration::from_secs(30), || {
        processes_with(&marker).len() >= 2
    });
    assert!(up.is_some(), "the remote scripts never started");
    let code = child.0.wait().unwrap().code();
    eprintln!(
        "4 s timeout on 2 hosts: stopped after {:?}",
        clock.elapsed()
    );
    let live = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(1), "{live}");
    assert!(live.contains("h01 | -- timed out"), "{live}");
    assert!(
        live.contains("hang | == failed (timed out after 4s)"),
        "{live}"
    );
    let gone = within(Duration::from_secs(15), || {
        processes_with(&marker).is_empty()
    });
    assert!(
        gone.is_some(),
        "remote processes outlived the timeout: {:?}",
        processes_with(&marker)
    );

    // SIGTERM to baton cancels the host job: the remote groups are killed too.
    let mut child = spawn_slow();
    let up = within(Duration::from_secs(30), || {
        processes_with(&marker).len() >= 2
    });
    assert!(up.is_some(), "the remote scripts never started");
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let code = child.0.wait().unwrap().code();
    assert_eq!(code, Some(130));
    let gone = within(Duration::from_secs(15), || {
        processes_with(&marker).is_empty()
    });
    assert!(
        gone.is_some(),
        "remote processes outlived the cancellation: {:?}",
        processes_with(&marker)
    );
    assert_eq!(runs(&s)[0]["status"], "cancelled");
}

/// A child process killed (and waited for) when dropped, even if a test fails.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_host_job_failing_on_one_host_fails_and_a_secret_reaches_hosts_unseen() {
    use baton_tests::fleet::{sshd_available, TestHosts};
    use sha2::Digest;
    if !sshd_available() {
        return;
    }
    let t = TestHosts::start(3);
    let secret = format!("hosts-s3cr3t-{}", std::process::id());
    let s = host_project(
        &t,
        "pipehostfail",
        |_| "    groups: [app]\n".to_string(),
        r#"
pipelines:
  ship:
    jobs:
      secretive:
        host: app
        secrets: {TOKEN: {env: SHIP_TOKEN}}
        run: |
          printf %s "$$TOKEN" | sha256sum | cut -d' ' -f1 > "$$root/token.sha"
          echo "token is $$TOKEN"
        rollback: echo "rolled back $$BATON_HOST" > "$$root/rolled"
      check:
        needs: [secretive]
        host: app
        run: |
          echo "checking $$BATON_HOST"
          [ "$$BATON_HOST" != h02 ]
      after:
        needs: [check]
        run: touch never
  flaky:
    jobs:
      settle:
        host: app
        retry: {max: 2, backoff: 10ms}
        run: |
          n=$$(cat "$$root/tries" 2>/dev/null || echo 0); n=$$((n+1)); echo $$n > "$$root/tries"
          [ "$$BATON_HOST" != h02 ] || [ "$$n" -ge 2 ]
"#,
    );
    let o = run_on_hosts(
        &s,
        &t,
        &["ship", "--format", "json"],
        &[("SHIP_TOKEN", &secret)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let live = stderr(&o);
    assert!(live.contains("secretive | h01 | token is ***"), "{live}");
    let report: Value = serde_json::from_slice(&o.stdout).expect("json report");
    assert_eq!(
        statuses(&report),
        [
            ("secretive".to_string(), "success".to_string(), 1),
            ("check".to_string(), "failed".to_string(), 1),
            ("after".to_string(), "upstream_failed".to_string(), 0),
            ("rollback:secretive".to_string(), "success".to_string(), 1),
        ]
    );
    let reason = report["jobs"][1]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("failed on 1 of 3 hosts: h02"), "{reason}");
    assert!(!s.path().join("never").exists());
    // The secret reached every host's command...
    let want = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    for h in &t.hosts {
        assert_eq!(
            std::fs::read_to_string(h.root.join("token.sha"))
                .unwrap()
                .trim(),
            want,
            "{}",
            h.id
        );
    }
    // ...and appears in no output, log, report or store file.
    assert!(!stdout(&o).contains(&secret) && !live.contains(&secret));
    let id = report["run"]["id"]
        .as_i64()
        .or_else(|| runs(&s)[0]["id"].as_i64())
        .unwrap();
    let logs = s.ok(&["pipeline", "logs", &id.to_string()]);
    assert!(logs.contains("token is ***"), "{logs}");
    assert!(!logs.contains(&secret));
    let shown = s.ok(&["--json", "pipeline", "show", &id.to_string()]);
    assert!(!shown.contains(&secret));
    let mut files = vec![s.state.path().to_path_buf()];
    let mut seen = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&p) {
            seen += 1;
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the secret is in {}",
                p.display()
            );
        }
    }
    assert!(seen >= 2, "no store or log files were checked");
    // A retry runs again only on the host that failed.
    let o = run_on_hosts(&s, &t, &["flaky", "--format", "json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).expect("json report");
    assert_eq!(
        statuses(&report),
        [("settle".to_string(), "success".to_string(), 2)]
    );
    let tries: Vec<String> = t
        .hosts
        .iter()
        .map(|h| {
            std::fs::read_to_string(h.root.join("tries"))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(tries, ["1", "2", "1"]);

    // The run failed: the rollback of the host job that passed ran on each of its hosts.
    for h in &t.hosts {
        assert_eq!(
            std::fs::read_to_string(h.root.join("rolled"))
                .unwrap()
                .trim(),
            format!("rolled back {}", h.id)
        );
    }
}

#[test]
fn a_bad_host_selector_is_refused_with_its_location_and_runs_nothing() {
    let hosts = "hosts:\n  web1:\n    address: 127.0.0.1\n    role: web\n  db1:\n    address: 127.0.0.1\n    role: db\n";
    let cases = [
        (
            "unknown word",
            "      b:\n        needs: [a]\n        host: wbe1\n        run: 'true'\n",
            "baton.yaml:15:9: pipelines.ci.jobs.b.host: selector `wbe1`: no host, group, role or tag is called `wbe1` (did you mean `web1`?)",
        ),
        (
            "matches nobody",
            "      b:\n        needs: [a]\n        host: role:web:&role:db\n        run: 'true'\n",
            "baton.yaml:15:9: pipelines.ci.jobs.b.host: selector `role:web:&role:db` matches no host",
        ),
    ];
    for (what, job, want) in cases {
        let s = Scratch::new("pipehostbad");
        s.write(
            "baton.yaml",
            &format!(
                "{hosts}pipelines:\n  ci:\n    jobs:\n      a:\n        run: touch marker\n{job}"
            ),
        );
        let o = s.baton(&["pipeline", "run", "ci"]);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains(want), "{what}: expected {want:?} in:\n{err}");
        assert!(!s.path().join("marker").exists(), "{what}: a job ran");
        assert!(runs(&s).is_empty(), "{what}: a run was recorded");
    }
}

#[test]
fn a_run_whose_baton_was_sigkilled_is_marked_interrupted() {
    let marker = format!("0.000{}451", std::process::id());
    let _reaper = Reaper(marker.clone());
    let s = Scratch::new("pipekill");
    s.write(
        "baton.yaml",
        "pipelines:\n  long:\n    jobs:\n      hang:\n        run: sleep 300 $$MARK\n  quick:\n    jobs:\n      a:\n        run: 'true'\n",
    );
    let mut child = s
        .cmd()
        .args(["pipeline", "run", "long"])
        .env("MARK", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let up = within(Duration::from_secs(30), || {
        !processes_with(&marker).is_empty()
    });
    assert!(up.is_some(), "the job never started");
    assert_eq!(runs(&s)[0]["status"], "running");
    let id = runs(&s)[0]["id"].as_i64().unwrap();
    // The store shows the job running while it runs.
    let seen = within(Duration::from_secs(10), || {
        statuses(&show(&s, id)) == [("hang".to_string(), "running".to_string(), 0)]
    });
    assert!(seen.is_some(), "{}", show(&s, id));
    // SIGKILL: baton gets no chance to record anything. Its group, and the job's own
    // process group (jobs run in groups of their own), go too: no sleep is left.
    let pgid = child.id().to_string();
    let job_groups: Vec<String> = processes_with(&marker)
        .iter()
        .map(|(pid, _)| pid.to_string())
        .collect();
    Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    for g in &job_groups {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{g}")])
            .status();
    }
    let _ = child.wait();
    assert!(
        within(Duration::from_secs(10), || processes_with(&marker)
            .is_empty())
        .is_some(),
        "left: {:?}",
        processes_with(&marker)
    );
    // `pipeline list` notices it first (nothing else ran since the kill).
    let listed: Value = serde_json::from_str(&s.ok(&["--json", "pipeline", "list"])).unwrap();
    assert_eq!(
        listed["long"]["last_run"]["status"], "interrupted",
        "{listed}"
    );
    assert!(listed["quick"]["last_run"].is_null(), "{listed}");
    let history = runs(&s);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["status"], "interrupted", "{history:?}");
    assert!(history[0]["finished_at"].is_null(), "its end is unknown");
    let report = show(&s, id);
    assert_eq!(
        statuses(&report),
        [("hang".to_string(), "interrupted".to_string(), 0)]
    );
    // A new run starts normally beside it.
    let o = s.baton(&["pipeline", "run", "quick"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let history = runs(&s);
    assert_eq!(
        history
            .iter()
            .map(|r| r["status"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["success", "interrupted"]
    );
}
