//! The `pipelines:` section read from real files: what each key becomes, and the located
//! error each mistake gives. No process is started.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_pipeline::spec::{Provider, Retention, SecretSource, When};
use baton_pipeline::{pipelines, Pipeline, Trigger};
use baton_spec::{load, LoadOptions};

fn read(yaml: &str) -> Result<BTreeMap<String, Pipeline>, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("baton.yaml"), yaml).unwrap();
    let project = load(&LoadOptions {
        files: vec![],
        working_dir: dir.path().to_path_buf(),
        project_name: Some("t".into()),
        profiles: vec![],
        env_files: vec![],
        environment: BTreeMap::new(),
        enable_services: vec![],
    })
    .map_err(|e| e.to_string())?;
    pipelines(&project).map_err(|e| e.to_string())
}

#[test]
fn every_key_is_typed() {
    let all = read(
        r#"
x-baton:
  pipelines:
    ci:
      concurrency: 2
      triggers:
        - manual
        - schedule: "*/5 * * * * *"
        - webhook: {provider: gitlab, secret_file: hook.txt}
        - git: {repo: ., branch: dev, interval: 2s}
      jobs:
        build:
          run: [make, make install]
          env: {A: 1}
          secrets: {TOKEN: {env: CI_TOKEN}}
          timeout: 1m30s
          retry: {max: 2, backoff: 500ms, on_exit_codes: [75, 3]}
          artifacts: {paths: [dist], expire_in: 2h}
          cache: {key: deps, paths: [vendor]}
          matrix: {os: [linux, mac]}
          allow_failure: true
          rollback: ./undo
        deploy:
          needs: build
          run: ./deploy
          when: always
          if: $$BATON_BRANCH == main
          image: busybox
          retry: 1
          artifacts: {paths: [a], keep_last: 3}
"#,
    )
    .unwrap();
    let p = &all["ci"];
    assert_eq!(p.concurrency, Some(2));
    assert_eq!(p.triggers.len(), 4);
    assert_eq!(p.triggers[1], Trigger::Schedule("*/5 * * * * *".into()));
    let Trigger::Webhook(w) = &p.triggers[2] else {
        panic!("webhook")
    };
    assert_eq!(w.provider, Provider::Gitlab);
    assert_eq!(w.secret, SecretSource::File("hook.txt".into()));
    let Trigger::Git(g) = &p.triggers[3] else {
        panic!("git")
    };
    assert_eq!(
        (g.branch.as_str(), g.interval),
        ("dev", Duration::from_secs(2))
    );
    let b = &p.jobs[0];
    assert_eq!(b.run, "make\nmake install");
    assert_eq!(b.env["A"], "1");
    assert_eq!(b.secrets[0].source, SecretSource::Env("CI_TOKEN".into()));
    assert_eq!(b.timeout, Some(Duration::from_secs(90)));
    assert_eq!(b.retry.max, 2);
    assert_eq!(b.retry.backoff, Duration::from_millis(500));
    assert_eq!(b.retry.on_exit_codes, [75, 3]);
    assert_eq!(
        b.artifacts.as_ref().unwrap().retention,
        Retention::ExpireIn(Duration::from_secs(7200))
    );
    assert_eq!(b.cache.as_ref().unwrap().key, "deps");
    assert_eq!(b.matrix["os"], ["linux", "mac"]);
    assert!(b.allow_failure);
    assert_eq!(b.rollback.as_deref(), Some("./undo"));
    let d = &p.jobs[1];
    assert_eq!(d.needs, ["build"]);
    assert_eq!(d.when, When::Always);
    assert_eq!(
        d.condition.as_ref().unwrap().source(),
        "$BATON_BRANCH == main"
    );
    assert_eq!(d.image.as_deref(), Some("busybox"));
    assert_eq!(d.retry.max, 1);
    assert_eq!(
        d.artifacts.as_ref().unwrap().retention,
        Retention::KeepLast(3)
    );
}

#[test]
fn mistakes_are_located_and_explained() {
    let cases = [
        (
            "pipelines:\n  ci:\n    jobs:\n      a:\n        run: x\n        neds: [b]\n",
            "baton.yaml:6:9: pipelines.ci.jobs.a.neds: unknown key \"neds\" (did you mean \"needs\"?)",
        ),
        (
            "pipelines:\n  ci:\n    jobs:\n      a:\n        run: x\n        when: on_sucess\n",
            "baton.yaml:6:9: pipelines.ci.jobs.a.when: \"on_sucess\" is not one of on_success, on_failure, always (did you mean \"on_success\"?)",
        ),
        (
            "pipelines:\n  ci:\n    jobs:\n      a:\n        run: x\n        if: $$A ==\n",
            "baton.yaml:6:9: pipelines.ci.jobs.a.if: bad condition: the condition ends too early",
        ),
        (
            "pipelines:\n  ci:\n    jobs:\n      a:\n        needs: [a]\n        run: x\n",
            "baton.yaml:5:17: pipelines.ci.jobs.a.needs[0]: job \"a\" needs itself",
        ),
        (
            "pipelines:\n  ci:\n    triggers:\n      - webhook: {provider: github}\n    jobs:\n      a:\n        run: x\n",
            "baton.yaml:4:9: pipelines.ci.triggers[0].webhook: a webhook needs `secret_env: VAR` or `secret_file: PATH`",
        ),
        (
            "pipelines:\n  ci:\n    jobs:\n      a:\n        run: x\n        image: i\n        host: h\n",
            "baton.yaml:7:9: pipelines.ci.jobs.a.host: a job runs in an `image:` or on a `host:`, not both",
        ),
        (
            "pipelines:\n  ci:\n    jobs:\n      a:\n        run: x\n        artifacts: {paths: [../etc]}\n",
            "pipelines.ci.jobs.a.artifacts.paths[0]: \"../etc\" must be a path inside the job's workspace",
        ),
        (
            "pipelines:\n  ci:\n    jobs:\n      a:\n        run: x\n        retry: {max: 2, backoff: forever}\n",
            "pipelines.ci.jobs.a.retry.backoff: expected a duration like \"30s\", \"1m30s\" or \"500ms\", found \"forever\"",
        ),
        (
            "pipelines:\n  ci:\n    jobs:\n      a:\n        timeout: 1s\n",
            "baton.yaml:4:7: pipelines.ci.jobs.a: a job needs `run:`",
        ),
    ];
    for (yaml, want) in cases {
        let err = read(yaml).unwrap_err();
        assert!(err.contains(want), "expected {want:?}\n     got {err:?}");
    }
}

#[test]
fn a_file_with_only_pipelines_loads() {
    let all = read("pipelines:\n  ci:\n    jobs:\n      a:\n        run: 'true'\n").unwrap();
    assert_eq!(all["ci"].triggers, [Trigger::Manual]);
}

const HOSTS: &str = "hosts:\n  w1: {address: 10.0.0.1, role: web, groups: [eu]}\n  w2: {address: 10.0.0.2, role: web}\n  d1: {address: 10.0.0.3, role: db, groups: [eu]}\n";

#[test]
fn host_selectors_are_resolved_with_the_fleet_inventory() {
    let all = read(&format!(
        "{HOSTS}pipelines:\n  ci:\n    jobs:\n      a:\n        host: role:web\n        parallel: 1\n        run: x\n      b:\n        host: eu:!d1,d1\n        run: x\n      c:\n        run: x\n"
    ))
    .unwrap();
    let ci = &all["ci"];
    assert_eq!(ci.jobs[0].hosts, ["w1", "w2"]);
    assert_eq!(ci.jobs[0].parallel, Some(1));
    assert_eq!(ci.jobs[1].hosts, ["d1", "w1"]);
    assert!(ci.jobs[2].hosts.is_empty());
    assert_eq!(ci.inventory.hosts.len(), 3);

    let cases = [
        (
            "      a:\n        host: role:wbe\n        run: x\n",
            "baton.yaml:9:9: pipelines.ci.jobs.a.host: selector `role:wbe`: no host, group, role or tag is called `role:wbe` (did you mean `role:web`?)",
        ),
        (
            "      a:\n        host: eu:&role:web:&w2\n        run: x\n",
            "baton.yaml:9:9: pipelines.ci.jobs.a.host: selector `eu:&role:web:&w2` matches no host",
        ),
        (
            "      a:\n        host: w1\n        artifacts: {paths: [x]}\n        run: x\n",
            "baton.yaml:10:9: pipelines.ci.jobs.a.artifacts: a `host:` job runs on remote hosts: it has no local workspace for `artifacts:`",
        ),
        (
            "      a:\n        parallel: 2\n        run: x\n",
            "baton.yaml:9:9: pipelines.ci.jobs.a.parallel: `parallel:` bounds the hosts of a `host:` job; this job has no `host:`",
        ),
    ];
    for (job, want) in cases {
        let err = read(&format!("{HOSTS}pipelines:\n  ci:\n    jobs:\n{job}")).unwrap_err();
        assert!(err.contains(want), "expected {want:?}\n     got {err:?}");
    }
    // Without a `hosts:` section there is nothing to select from.
    let err = read("pipelines:\n  ci:\n    jobs:\n      a:\n        host: w1\n        run: x\n")
        .unwrap_err();
    assert!(
        err.contains(
            "baton.yaml:5:9: pipelines.ci.jobs.a.host: selector `w1`: there is no `hosts:` section"
        ),
        "{err}"
    );
}
