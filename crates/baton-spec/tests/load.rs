//! End-to-end reader tests on small projects written to a temporary directory: merging,
//! profiles, names, environment and the exact text of located errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use baton_spec::{load, Condition, ErrorKind, LoadOptions, Project, SpecError};

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
