//! End-to-end reader tests on small projects written to a temporary directory: merging,
//! profiles, names, environment and the exact text of located errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use baton_spec::{load, render, Condition, ErrorKind, LoadOptions, Project, SpecError};

fn write(dir: &tempfile::TempDir, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, text).unwrap();
    }
}

fn opts(dir: &tempfile::TempDir) -> LoadOptions {
    LoadOptions {
        working_dir: dir.path().to_path_buf(),
        ..Default::default()
    }
}

fn load_one(text: &str) -> Result<Project, SpecError> {
    let dir = tempfile::tempdir().unwrap();
    write(&dir, &[("compose.yaml", text)]);
    let mut o = opts(&dir);
    o.project_name = Some("t".into());
    load(&o)
}

fn err(text: &str) -> String {
    load_one(text).unwrap_err().to_string()
}

#[test]
fn unknown_key_has_position_and_hint() {
    let e = load_one("services:\n  web:\n    image: x\n    enviroment: {A: 1}\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownKey);
    assert_eq!(
        e.to_string(),
        "compose.yaml:4:5: services.web.enviroment: unknown key \"enviroment\" (did you mean \"environment\"?)"
    );
}

#[test]
fn type_errors_are_located() {
    assert_eq!(
        err("services:\n  web:\n    image: x\n    deploy:\n      replicas: two\n"),
        "compose.yaml:5:17: services.web.deploy.replicas: expected an integer, found \"two\""
    );
    assert_eq!(
        err("services:\n  web:\n    image: x\n    ports:\n      - \"80\"\n      - \"80:abc\"\n"),
        "compose.yaml:6:9: services.web.ports[1]: invalid port \"80:abc\": the container port must be a number or a range"
    );
}

#[test]
fn undefined_references() {
    assert_eq!(
        err("services:\n  web:\n    image: x\n    networks: [front]\n"),
        "compose.yaml:4:16: services.web.networks: service \"web\" refers to undefined network \"front\" (declare it under the top-level \"networks:\" key)"
    );
    assert_eq!(
        err("services:\n  web:\n    image: x\n    volumes: [\"data:/data\"]\n"),
        "compose.yaml:4:15: services.web.volumes: service \"web\" refers to undefined volume \"data\" (declare it under the top-level \"volumes:\" key)"
    );
    assert_eq!(
        err("services:\n  web:\n    image: x\n    depends_on: [db]\n  dbb:\n    image: y\n"),
        "compose.yaml:4:18: services.web.depends_on.db: service \"web\" depends on undefined service \"db\" (did you mean \"dbb\"?)"
    );
    assert_eq!(
        err("services:\n  web:\n    image: x\n    secrets: [s]\n"),
        "compose.yaml:4:15: services.web.secrets: service \"web\" refers to undefined secret \"s\" (declare it under the top-level \"secrets:\" key)"
    );
}

#[test]
fn cycles_and_missing_image() {
    assert_eq!(
        err("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n"),
        "compose.yaml:2:30: services.a.depends_on: dependency cycle: a -> b -> a"
    );
    assert_eq!(
        err("services:\n  a:\n    restart: always\n"),
        "compose.yaml:3:5: services.a: service has neither an image nor a build context (add \"image:\" or \"build:\")"
    );
}

#[test]
fn interpolation_errors_and_values() {
    let e = load_one("services:\n  web:\n    image: \"${TAG:?set TAG}\"\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Interpolation);
    assert_eq!(
        e.to_string(),
        "compose.yaml:3:12: services.web.image: required variable TAG is missing a value: set TAG"
    );
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir,
        &[
            ("compose.yaml", "services:\n  web:\n    image: \"app:${TAG:-latest}\"\n    environment:\n      - A=$FROM_ENV\n      - B=${FROM_FILE}\n      - C\n      - D=$$x\n"),
            (".env", "FROM_FILE=file\nFROM_ENV=loses\nC=c\n"),
        ],
    );
    let mut o = opts(&dir);
    o.environment = BTreeMap::from([("FROM_ENV".to_string(), "env".to_string())]);
    let p = load(&o).unwrap();
    let s = &p.services["web"];
    assert_eq!(s.image.as_deref(), Some("app:latest"));
    let env: BTreeMap<&str, Option<&str>> = s
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("A", Some("env")),
            ("B", Some("file")),
            ("C", Some("c")),
            ("D", Some("$x"))
        ])
    );
}

#[test]
fn override_files_merge() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir,
        &[
            ("compose.yaml", "services:\n  web:\n    image: a\n    command: run a\n    ports: [\"80:80\"]\n    environment: {A: \"1\"}\n    volumes: [\"./src:/src\"]\n"),
            ("compose.override.yaml", "services:\n  web:\n    command: [run, b]\n    ports: [\"443:443\"]\n    environment: [B=2]\n    volumes: [\"./other:/src:ro\"]\n"),
        ],
    );
    let p = load(&opts(&dir)).unwrap();
    let s = &p.services["web"];
    assert_eq!(s.command, Some(vec!["run".to_string(), "b".to_string()]));
    assert_eq!(
        s.ports.iter().map(|p| p.target).collect::<Vec<_>>(),
        [80, 443]
    );
    assert_eq!(s.environment.len(), 2);
    assert_eq!(s.volumes.len(), 1);
    assert!(s.volumes[0].read_only);
    let src = PathBuf::from(s.volumes[0].source.clone().unwrap());
    assert_eq!(src, dir.path().join("other"));
    assert_eq!(p.files.len(), 2);
}

#[test]
fn profiles_select_services() {
    let text = "services:\n  web: {image: x}\n  debug: {image: y, profiles: [dbg], depends_on: [tool]}\n  tool: {image: z, profiles: [tools]}\n";
    let p = load_one(text).unwrap();
    assert_eq!(p.services.keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!(p.disabled_services.len(), 2);

    let dir = tempfile::tempdir().unwrap();
    write(&dir, &[("compose.yaml", text)]);
    let mut o = opts(&dir);
    o.enable_services = vec!["debug".into()];
    let p = load(&o).unwrap();
    assert_eq!(
        p.services.keys().collect::<Vec<_>>(),
        ["debug", "tool", "web"]
    );

    o.enable_services.clear();
    o.profiles = vec!["dbg".into()];
    let e = load(&o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "compose.yaml:3:51: services.debug.depends_on.tool: service \"debug\" depends on service \"tool\", which is not enabled by the selected profiles (enable one of its profiles (tools) or mark the dependency required: false)"
    );
    o.profiles.clear();
    o.environment
        .insert("COMPOSE_PROFILES".into(), "dbg,tools".into());
    assert_eq!(load(&o).unwrap().services.len(), 3);
}

#[test]
fn names_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir, &[("My Proj/compose.yaml", "name: FromFile\nservices:\n  web:\n    image: x\n    scale: 3\n    depends_on: [db]\n    healthcheck: {test: curl -f localhost, interval: 1m30s}\n    stop_grace_period: 500ms\n    deploy: {resources: {limits: {memory: 512m}}}\n    secrets: [s]\n    x-baton: {strategy: canary}\n    x-other: 1\n  db: {build: ./db}\nvolumes:\n  data:\n  ext: {external: true}\nsecrets:\n  s: {file: ./s.txt}\nvms: {a: 1}\nx-baton: {hosts: {h: 2}}\n")]);
    let mut o = opts(&dir);
    o.working_dir = dir.path().join("My Proj");
    let p = load(&o).unwrap();
    assert_eq!(p.name, "fromfile");
    o.environment
        .insert("COMPOSE_PROJECT_NAME".into(), "Env".into());
    assert_eq!(load(&o).unwrap().name, "env");
    o.project_name = Some("Cli".into());
    let p = load(&o).unwrap();
    assert_eq!(p.name, "cli");
    assert_eq!(p.volumes["data"].name, "cli_data");
    assert_eq!(p.volumes["ext"].name, "ext");
    let web = &p.services["web"];
    assert_eq!(web.replicas(), 3);
    assert_eq!(web.depends_on["db"].condition, Condition::ServiceStarted);
    let hc = web.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD-SHELL", "curl -f localhost"]);
    assert_eq!(hc.interval.map(|d| d.0), Some(90_000));
    assert_eq!(web.stop_grace_period.map(|d| d.0), Some(500));
    let mem = web
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.memory);
    assert_eq!(mem, Some(512 << 20));
    assert_eq!(web.secrets[0].target, "/run/secrets/s");
    assert_eq!(web.baton, Some(serde_json::json!({"strategy": "canary"})));
    assert_eq!(web.extensions["x-other"], serde_json::json!(1));
    assert!(web.networks.contains_key("default"));
    assert_eq!(p.networks["default"].name, "cli_default");
    assert_eq!(
        p.services["db"].build.as_ref().unwrap().context,
        dir.path().join("My Proj/db").display().to_string()
    );
    assert_eq!(p.baton["vms"], serde_json::json!({"a": 1}));
    assert_eq!(p.baton["hosts"], serde_json::json!({"h": 2}));
}

#[test]
fn empty_project_name_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir, &[("compose.yaml", "name: \"!!!\"\nservices: {}\n")]);
    assert_eq!(
        load(&opts(&dir)).unwrap_err().to_string(),
        "compose.yaml:1:7: name: project name \"!!!\" has no usable characters (use lowercase letters, digits, \"_\" and \"-\", or pass -p)"
    );
}

#[test]
fn include_conflicts_and_extends() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir,
        &[
            ("compose.yaml", "include: [sub/other.yaml]\nservices:\n  web:\n    extends: {file: sub/base.yaml, service: base}\n    environment: [B=2]\n  db: {image: mine}\n"),
            ("sub/base.yaml", "services:\n  base:\n    image: b\n    build: ./ctx\n    environment: [A=1]\n"),
            ("sub/other.yaml", "services:\n  db: {image: theirs}\n"),
        ],
    );
    let e = load(&opts(&dir)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(
        e.to_string(),
        "compose.yaml:6:3: services.db: service \"db\" is also defined by an included file (sub/other.yaml:2) (rename one of them or remove the include[0] entry)"
    );
    write(
        &dir,
        &[("sub/other.yaml", "services:\n  cache: {image: theirs}\n")],
    );
    let p = load(&opts(&dir)).unwrap();
    let web = &p.services["web"];
    assert_eq!(web.environment.len(), 2);
    assert_eq!(
        web.build.as_ref().unwrap().context,
        dir.path().join("sub/ctx").display().to_string()
    );
    assert!(p.services.contains_key("cache"));
}

#[test]
fn no_files_and_bad_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let e = load(&LoadOptions {
        working_dir: dir.path().join("nope"),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    let e = load_one("services:\n  web: [1, 2\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Syntax);
    let e = load_one("services:\n  web: {image: a}\n  web: {image: b}\n").unwrap_err();
    assert_eq!(e.to_string(), "compose.yaml:3:3: duplicate key \"web\"");
    assert_eq!(load_one("- 1\n").unwrap_err().kind(), ErrorKind::Type);
}

#[test]
fn baton_sections_keep_where_each_node_was_written() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir,
        &[(
            "baton.yaml",
            "services: {}\npipelines:\n  ci:\n    jobs:\n      build:\n        timeout: soon\nx-baton:\n  vms:\n    web:\n      disks:\n        - size: 1G\n",
        )],
    );
    let p = load(&opts(&dir)).unwrap();
    let at = |path: &str| {
        let l = p.locate(path).unwrap();
        (l.file.display().to_string(), l.line, l.column)
    };
    assert_eq!(
        at("pipelines.ci.jobs.build.timeout"),
        ("baton.yaml".into(), 6, 9)
    );
    assert_eq!(at("vms.web.disks[0]"), ("baton.yaml".into(), 11, 11));
    // A path filled in later falls back to its nearest written ancestor.
    assert_eq!(
        at("pipelines.ci.jobs.build.retry.max"),
        ("baton.yaml".into(), 5, 7)
    );
    let e = p.error_at(
        baton_spec::ErrorKind::Invalid,
        "pipelines.ci.jobs.build.timeout",
        "\"soon\" is not a duration",
    );
    assert_eq!(
        e.to_string(),
        "baton.yaml:6:9: pipelines.ci.jobs.build.timeout: \"soon\" is not a duration"
    );
}

/// `baton config`'s output ([`render::yaml`], [`render::json`]) loads to the same project
/// for a file that uses every part of the model; only the files read, their directory
/// and the positions of baton's sections differ.
#[test]
fn config_output_of_every_field_loads_to_the_same_project() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir,
        &[
            ("app/Dockerfile", "FROM scratch\n"),
            ("app/web.env", "FROM_FILE=1\nCOST=5$$\n"),
            ("s.txt", "secret\n"),
            (
                "compose.yaml",
                r#"name: Round-Trip
services:
  web:
    build:
      context: ./app
      args: [A=1, B]
      cache_from: [x]
      target: t
      labels: {l: v}
      tags: [t1]
    command: sh -c 'echo "$$HOME" ${A}'
    entrypoint: [/init, "--"]
    env_file: app/web.env
    environment:
      PRICE: "$$5"
      UNSET_HERE:
      NUMBER: 1
    ports: ["127.0.0.1:8000-8001:80-81/udp", {target: 443, published: "8443", mode: host, name: https, app_protocol: h2}]
    expose: ["9000"]
    volumes:
      - ./data:/data:ro,z
      - named:/named:nocopy
      - {type: tmpfs, target: /tmp, tmpfs: {size: 64m, mode: 1777}}
      - {type: volume, source: named, target: /sub, volume: {subpath: a}}
    tmpfs: /run
    networks:
      front: {aliases: [w], ipv4_address: 10.1.0.5, priority: 10, x-net: 1}
      back:
    depends_on:
      db: {condition: service_healthy, required: false, restart: true}
      cache: {condition: service_completed_successfully}
    healthcheck: {test: curl -f localhost, interval: 1m30s, timeout: 1500ms, retries: 3, start_period: 2h, start_interval: 0s}
    restart: on-failure:3
    deploy:
      mode: replicated
      replicas: 2
      labels: [a=b]
      resources:
        limits: {cpus: "0.5", memory: 512m, pids: 100, devices: [{capabilities: [gpu]}]}
        reservations: {memory: "1000"}
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}
      update_config: {parallelism: 1, delay: 10s, failure_action: rollback, monitor: 1m, max_failure_ratio: 0.25, order: start-first}
      rollback_config: {parallelism: 2}
      placement: {constraints: [node.role==manager]}
    labels: {com.example: "yes"}
    container_name: web
    working_dir: /srv
    user: "1000"
    hostname: web
    domainname: example.com
    stop_grace_period: 1s
    stop_signal: SIGINT
    init: false
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 65535}
    extra_hosts: {somehost: ["1.2.3.4", "::1"]}
    logging: {driver: json-file, options: {max-size: 10m}}
    configs: [cfg, {source: cfg2, target: /etc/c, uid: "0", gid: "0", mode: 0440}]
    secrets: [s]
    privileged: true
    read_only: true
    tty: true
    stdin_open: true
    pull_policy: always
    dns: 8.8.8.8
    dns_search: [example.com]
    sysctls: [net.core.somaxconn=1024]
    platform: linux/amd64
    shm_size: 64m
    mem_limit: 1g
    x-baton: {rollout: {strategy: canary, steps: [10, 50]}, note: "$$x"}
    x-team: web
  db:
    image: postgres:${TAG:-16}
    network_mode: host
    scale: 1
  cache:
    image: redis
    profiles: [extra]
  debug:
    image: busybox
    profiles: [dbg]
networks:
  front:
    driver: bridge
    driver_opts: {com.docker.network.bridge.name: br0}
    internal: true
    attachable: true
    enable_ipv6: true
    enable_ipv4: true
    ipam: {driver: default, config: [{subnet: 10.1.0.0/16, ip_range: 10.1.0.0/24, gateway: 10.1.0.1, aux_addresses: {a: 10.1.0.2}}], options: {o: v}}
    labels: [n=1]
    x-extra: true
  back:
  outside: {external: {name: shared-net}}
volumes:
  named: {driver: local, driver_opts: {type: none}, labels: {v: "1"}, x-v: [1]}
  ext: {external: true}
configs:
  cfg: {content: "a $$b ${A:-c}"}
  cfg2: {environment: CFG}
  empty:
secrets:
  s: {file: ./s.txt, labels: {k: v}, template_driver: golang}
models:
  m: {model: ai/llm, context_size: 4096}
pipelines:
  ci: {jobs: {test: {run: "echo $$HOME", timeout: 10m}}}
vms:
  v: {memory: 1G}
x-baton:
  hosts: {h1: {address: 10.0.0.1}}
  runbooks: {r: {steps: [{run: uptime}]}}
x-top: {anything: [1, 2.5, true, null, "0.5"]}
"#,
            ),
        ],
    );
    let opts = LoadOptions {
        working_dir: dir.path().to_path_buf(),
        profiles: vec!["extra".into()],
        environment: BTreeMap::from([("A".to_string(), "from-env".to_string())]),
        ..Default::default()
    };
    let project = load(&opts).unwrap();
    assert_eq!(
        project.disabled_services.len(),
        1,
        "debug stays behind its profile"
    );
    let comparable = |mut p: Project| {
        p.files.clear();
        p.working_dir = PathBuf::new();
        p.baton_marks.clear();
        p
    };
    let want = comparable(project.clone());
    for text in [render::yaml(&project), render::json(&project)] {
        let again = tempfile::tempdir().unwrap();
        write(&again, &[("baton.yaml", &text)]);
        let mut o = opts.clone();
        o.working_dir = again.path().to_path_buf();
        let got = comparable(load(&o).unwrap_or_else(|e| panic!("{e}\n{text}")));
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            serde_json::to_value(&want).unwrap(),
            "{text}"
        );
        assert_eq!(got, want, "{text}");
    }
    let text = render::yaml(&project);
    for line in [
        "      interval: 1m30s",
        "      timeout: 1s500ms",
        "    stop_grace_period: 1s",
        "          memory: 512m",
        "      PRICE: $$5",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
    }
}

#[test]
fn an_unset_variable_in_a_pipeline_script_says_how_to_leave_it_to_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir,
        &[(
            "baton.yaml",
            "services:\n  web:\n    image: \"x${TAG}\"\npipelines:\n  ci:\n    jobs:\n      count:\n        run: n=1; echo $n $TAG\n        if: $BRANCH == \"main\"\n",
        )],
    );
    let (_, warnings) = baton_spec::load_with_warnings(&opts(&dir)).unwrap();
    assert_eq!(
        warnings,
        [
            "the \"TAG\" variable is not set, defaulting to a blank string",
            "the \"n\" variable is not set, defaulting to a blank string in pipelines.ci.jobs.count.run: if the script sets it itself, write $$n to leave it to the shell",
            "the \"TAG\" variable is not set, defaulting to a blank string in pipelines.ci.jobs.count.run: if the script sets it itself, write $$TAG to leave it to the shell",
            "the \"BRANCH\" variable is not set, defaulting to a blank string in pipelines.ci.jobs.count.if: if the script sets it itself, write $$BRANCH to leave it to the shell",
        ]
    );
}

#[test]
fn a_service_may_depend_on_a_vm_of_the_file() {
    let p = load_one(
        "services:\n  web:\n    image: x\n    profiles: [p]\n  api:\n    image: x\n    depends_on: {db: {condition: service_healthy}}\nvms:\n  db: {boot: {disk: true}}\n",
    )
    .unwrap();
    assert_eq!(
        p.services["api"].depends_on["db"].condition,
        Condition::ServiceHealthy
    );
    // A list of VMs names them with `name:`.
    assert!(load_one(
        "services:\n  api:\n    image: x\n    depends_on: [db]\nvms:\n  - {name: db, boot: {disk: true}}\n"
    )
    .is_ok());
    // An unknown name is still refused, with the VMs among the suggestions.
    assert_eq!(
        err("services:\n  api:\n    image: x\n    depends_on: [dbx]\nvms:\n  db1: {boot: {disk: true}}\n"),
        "compose.yaml:4:18: services.api.depends_on.dbx: service \"api\" depends on undefined service \"dbx\" (did you mean \"db1\"?)"
    );
}
