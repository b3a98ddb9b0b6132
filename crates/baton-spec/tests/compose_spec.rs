//! Checks against the shared Compose reference data: every fixture of compose-go's loader
//! and cli tests loads or fails as Compose would, and our key lists match the schema.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use baton_spec::{load, render, schema, ErrorKind, LoadOptions, Project};

fn shared() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compose-spec");
    assert!(
        dir.join("compose-spec.json").is_file(),
        "the shared Compose reference data is missing at {}; it is required, not optional",
        dir.display()
    );
    dir
}

/// `Ok` = loads; `Err(kind, text)` = rejected with that kind and a message containing text.
fn expectation(rel: &str) -> Option<Result<(), (ErrorKind, &'static str)>> {
    use ErrorKind::*;
    Some(match rel {
        // Empty files, there for compose-go's file lookup: a project with nothing in it
        // is refused, as `docker compose` refuses an empty compose file.
        "PATH/compose.yaml" => Err((Invalid, "the project defines nothing")),
        "cli/testdata/env-file/compose-with-env-file.yaml" => Ok(()),
        "cli/testdata/env-file/compose-with-env-files.yaml" => Ok(()),
        "cli/testdata/simple/compose-name.yaml" => Ok(()),
        "cli/testdata/simple/compose-with-overrides.yaml" => Ok(()),
        "cli/testdata/simple/compose-with-paths.yaml" => Ok(()),
        "cli/testdata/simple/compose-with-variables.yaml" => Ok(()),
        "cli/testdata/simple/compose.yaml" => Ok(()),
        "loader/testdata/combined/compose.yaml" => Ok(()),
        "loader/testdata/combined/dir/extended.yaml" => Ok(()),
        "loader/testdata/combined/dir/included.yaml" => Ok(()),
        "loader/testdata/compose-depends-on-cycle.yaml" => Err((
            Cycle,
            "dependency cycle: service1 -> service2 -> service3 -> service1",
        )),
        // Despite its name the file has no profiles: the same cycle as above.
        "loader/testdata/compose-depends-on-profile-no-cycle.yaml" => Err((
            Cycle,
            "dependency cycle: service1 -> service2 -> service3 -> service1",
        )),
        "loader/testdata/compose-depends-on-self.yaml" => {
            Err((Cycle, "service \"service1\" depends on itself"))
        }
        "loader/testdata/compose-include.yaml" => Ok(()),
        "loader/testdata/compose-include-cycle.yaml" => Err((
            Cycle,
            "include cycle: compose-include-cycle.yaml -> compose-include-cycle.yaml",
        )),
        "loader/testdata/compose-test-extends-with-context-url-imported.yaml" => Ok(()),
        "loader/testdata/compose-test-extends-with-context-url.yaml" => Ok(()),
        "loader/testdata/compose-test-extends.yaml" => Ok(()),
        "loader/testdata/compose-test-with-version.yaml" => Ok(()),
        "loader/testdata/empty.yaml" => Err((Invalid, "the project defines nothing")),
        // Only a base for extends: `with-port` has neither image nor build.
        "loader/testdata/extends/base.yaml" => {
            Err((Invalid, "service has neither an image nor a build context"))
        }
        "loader/testdata/extends/depends_on.yaml" => Ok(()),
        "loader/testdata/extends/interpolated.yaml" => Ok(()),
        "loader/testdata/extends/nested.yaml" => Ok(()),
        "loader/testdata/extends/ports.yaml" => Ok(()),
        "loader/testdata/extends/reset.yaml" => Ok(()),
        "loader/testdata/extends/sibling.yaml" => Ok(()),
        "loader/testdata/extends/withdir/compose.yaml" => Ok(()),
        "loader/testdata/extends/withdir/dir/base.yaml" => Ok(()),
        "loader/testdata/extends/withdir/dir/compose.yaml" => Ok(()),
        "loader/testdata/include/compose.yaml" => Ok(()),
        // Meant to be included with project_directory ../subdir; alone its env_file is missing.
        "loader/testdata/include/dir/compose.yaml" => Err((Io, "extra.env not found")),
        "loader/testdata/include/included.yaml" => Ok(()),
        "loader/testdata/include/project-directory.yaml" => Ok(()),
        "loader/testdata/subdir/compose-test-extends-imported.yaml" => Ok(()),
        _ => return None,
    })
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixture dir readable")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

#[test]
fn every_fixture_meets_its_expectation() {
    let root = shared().join("fixtures");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    assert!(
        files.len() > 30,
        "expected the compose-go fixtures, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let Some(want) = expectation(&rel) else {
            failures.push(format!("{rel}: no expectation listed; read it and add one"));
            continue;
        };
        let dir = file.parent().unwrap().to_path_buf();
        let opts = LoadOptions {
            files: vec![file.clone()],
            working_dir: dir,
            ..Default::default()
        };
        match (load(&opts), want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err((kind, text))) if e.kind() == kind && e.to_string().contains(text) => {}
            (got, want) => failures.push(format!(
                "{rel}: got {:?}, want {want:?}",
                got.map(|p| p.name)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What legitimately differs between a project and the same project read back from
/// `baton config`'s output: the files read, the directory they were in, and the
/// positions of baton's sections in them. Everything else must be equal.
fn comparable(mut p: Project) -> Project {
    p.files.clear();
    p.working_dir = PathBuf::new();
    p.baton_marks.clear();
    p
}

/// The first line where two projects' serialisations differ, for a readable failure.
fn first_difference(a: &Project, b: &Project) -> String {
    let a = serde_json::to_string_pretty(a).unwrap_or_default();
    let b = serde_json::to_string_pretty(b).unwrap_or_default();
    a.lines()
        .zip(b.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| format!("line {}: {x:?} became {y:?}", i + 1))
        .unwrap_or_else(|| "the serialisations agree; a field serde skips differs".into())
}

/// `baton config` prints [`render::yaml`] (`--json`: [`render::json`]). For every fixture
/// baton accepts, that output, written to another directory and loaded with the same
/// options, gives the same project (see [`comparable`]).
#[test]
fn config_output_loads_to_the_same_project() {
    let root = shared().join("fixtures");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    let mut accepted = 0;
    let mut failures = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        let Ok(project) = load(&LoadOptions {
            files: vec![file.clone()],
            working_dir: file.parent().unwrap().to_path_buf(),
            ..Default::default()
        }) else {
            continue;
        };
        accepted += 1;
        for (format, text) in [
            ("yaml", render::yaml(&project)),
            ("json", render::json(&project)),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("compose.yaml"), &text).unwrap();
            let again = load(&LoadOptions {
                working_dir: dir.path().to_path_buf(),
                ..Default::default()
            });
            let want = comparable(project.clone());
            match again.map(comparable) {
                Ok(got) if got == want => {}
                Ok(got) => failures.push(format!(
                    "{rel} ({format}): {}\n{text}",
                    first_difference(&want, &got)
                )),
                Err(e) => failures.push(format!("{rel} ({format}): {e}\n{text}")),
            }
        }
    }
    assert!(accepted > 25, "only {accepted} fixtures load");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn fixture_details() {
    let root = shared().join("fixtures/loader/testdata");
    let load_one = |rel: &str| {
        let file = root.join(rel);
        load(&LoadOptions {
            working_dir: file.parent().unwrap().to_path_buf(),
            files: vec![file],
            ..Default::default()
        })
        .unwrap()
    };
    // extends from another directory: env_file relative to the base file.
    let p = load_one("compose-test-extends.yaml");
    let s = &p.services["importer"];
    assert_eq!(s.image.as_deref(), Some("nginx"));
    assert_eq!(
        s.environment.get("SOURCE"),
        Some(&Some("extends".to_string()))
    );
    assert_eq!(s.container_name.as_deref(), Some("imported"));
    // include with project_directory: relative paths resolve against it.
    let p = load_one("include/project-directory.yaml");
    let s = &p.services["service"];
    let bind = s.volumes[0].source.as_deref().unwrap();
    assert!(
        bind.ends_with("subdir/compose-test-extends-imported.yaml"),
        "{bind}"
    );
    // !reset in extends.
    let p = load_one("extends/reset.yaml");
    assert_eq!(p.services["base"].command, None);
    assert_eq!(
        p.services["init"].command,
        Some(vec!["sleep".into(), "infinity".into()])
    );
    // name from the file; version ignored; default network implicit.
    let p = load_one("compose-test-with-version.yaml");
    assert_eq!(p.name, "compose-test-with-version");
    assert_eq!(
        p.networks["default"].name,
        "compose-test-with-version_default"
    );
    assert_eq!(p.networks["front"].name, "compose-test-with-version_front");
    assert_eq!(p.services["other"].volumes[0].kind, "volume");
    assert_eq!(p.services["other"].volumes[0].source, None);
}

fn schema_keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.get("properties")
        .and_then(|p| p.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn ours(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn key_lists_match_the_official_schema() {
    let text = std::fs::read_to_string(shared().join("compose-spec.json")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    let defs = s
        .get("$defs")
        .or_else(|| s.get("definitions"))
        .expect("schema definitions");
    assert_eq!(schema_keys(&s), ours(schema::TOP), "top level");
    assert_eq!(
        schema_keys(&defs["service"]),
        ours(schema::SERVICE),
        "service"
    );
    assert_eq!(
        schema_keys(&defs["network"]),
        ours(schema::NETWORK),
        "network"
    );
    assert_eq!(schema_keys(&defs["volume"]), ours(schema::VOLUME), "volume");
    assert_eq!(
        schema_keys(&defs["deployment"]),
        ours(schema::DEPLOY),
        "deploy"
    );
    assert_eq!(schema_keys(&defs["config"]), ours(schema::CONFIG), "config");
    assert_eq!(schema_keys(&defs["secret"]), ours(schema::SECRET), "secret");
    assert_eq!(
        schema_keys(&defs["healthcheck"]),
        ours(schema::HEALTHCHECK),
        "healthcheck"
    );
    let build = defs["service"]["properties"]["build"]["oneOf"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x.get("properties").is_some()))
        .expect("build object form");
    assert_eq!(schema_keys(build), ours(schema::BUILD), "build");
}
