//! The map tells the truth: the invariants ARCHITECTURE.md lists under "Checked
//! invariants" are read from it and checked against the code, as rust-analyzer's tidy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn crates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    out.sort();
    out
}

fn name(dir: &Path) -> String {
    dir.file_name()
        .expect("crate folder")
        .to_string_lossy()
        .into_owned()
}

/// The names in a crate's `[dependencies]` table.
fn dependencies(dir: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    let manifest: toml::Table = text.parse().expect("a valid Cargo.toml");
    manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `- \`crate\` → a, b` lines of ARCHITECTURE.md: which baton crates each may use.
fn allowed_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = text
        .split("## Checked invariants")
        .nth(1)
        .expect("ARCHITECTURE.md has a 'Checked invariants' section");
    let mut out = BTreeMap::new();
    for line in section.lines() {
        let Some(rest) = line.strip_prefix("- `") else {
            continue;
        };
        let Some((krate, deps)) = rest.split_once("` → ") else {
            continue;
        };
        let deps: BTreeSet<String> = if deps.starts_with('(') {
            BTreeSet::new()
        } else {
            deps.split(", ").map(|d| d.trim().to_string()).collect()
        };
        out.insert(krate.to_string(), deps);
    }
    out
}

#[test]
fn each_crate_uses_exactly_the_baton_crates_the_map_says() {
    let allowed = allowed_dependencies();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for dir in crates() {
        let krate = name(&dir);
        seen.insert(krate.clone());
        let actual: BTreeSet<String> = dependencies(&dir)
            .into_iter()
            .filter(|d| d.starts_with("baton-"))
            .collect();
        match allowed.get(&krate) {
            None => problems.push(format!(
                "{krate} is not in ARCHITECTURE.md's dependency list"
            )),
            Some(expected) if *expected != actual => problems.push(format!(
                "{krate} uses {actual:?}, ARCHITECTURE.md says {expected:?}"
            )),
            Some(_) => {}
        }
    }
    for krate in allowed.keys() {
        if !seen.contains(krate) {
            problems.push(format!(
                "ARCHITECTURE.md lists {krate}, which does not exist"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_the_kube_backend_reaches_a_cluster() {
    let problems: Vec<String> = crates()
        .iter()
        .filter(|dir| name(dir) != "baton-kube")
        .flat_map(|dir| {
            let deps = dependencies(dir);
            ["kube", "k8s-openapi"]
                .into_iter()
                .filter(move |d| deps.contains(*d))
                .map(move |d| format!("{} depends on {d}", name(dir)))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_the_docker_backend_reaches_docker() {
    let mut problems = Vec::new();
    for dir in crates() {
        let krate = name(&dir);
        if krate != "baton-docker" && dependencies(&dir).contains("bollard") {
            problems.push(format!("{krate} depends on bollard"));
        }
        if krate == "baton-tests" {
            continue;
        }
        for f in rust_files(&dir.join("src")) {
            let text = std::fs::read_to_string(&f).expect("source");
            if text.contains("Command::new(\"docker\")") {
                problems.push(format!("{} starts a `docker` process", f.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The crates that may name a backend crate: the backends themselves and the seam that
/// chooses one per target (`baton-backend`'s `connect`).
const BACKEND_CRATES: &[&str] = &["baton-docker", "baton-backend"];

#[test]
fn outside_the_backend_crates_nothing_names_docker() {
    let mut problems = Vec::new();
    for dir in crates() {
        let krate = name(&dir);
        if BACKEND_CRATES.contains(&krate.as_str()) {
            continue;
        }
        if dependencies(&dir).contains("baton-docker") {
            problems.push(format!("{krate} depends on baton-docker"));
        }
        for f in rust_files(&dir) {
            if f.ends_with("tests/tidy.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).expect("source");
            if text.contains("baton_docker") {
                problems.push(format!(
                    "{} names baton_docker: go through baton_backend and the capability \
                     traits of baton_engine::runtime",
                    f.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_engine_stays_pure_and_the_spec_never_reads_the_environment() {
    let engine = root().join("crates/baton-engine");
    let deps = dependencies(&engine);
    for banned in [
        "hyper",
        "axum",
        "russh",
        "rusqlite",
        "bollard",
        "baton-http",
    ] {
        assert!(!deps.contains(banned), "baton-engine depends on {banned}");
    }
    for f in rust_files(&engine.join("src")) {
        let text = std::fs::read_to_string(&f).expect("source");
        assert!(
            !text.contains("process::Command"),
            "{} starts a process",
            f.display()
        );
    }
    for f in rust_files(&root().join("crates/baton-spec/src")) {
        let text = std::fs::read_to_string(&f).expect("source");
        for call in ["env::var(", "env::vars(", "env::var_os("] {
            assert!(
                !text.contains(call),
                "{} reads the process environment ({call})",
                f.display()
            );
        }
    }
}

#[test]
fn the_control_plane_knows_no_http_prints_nothing_and_reads_no_environment() {
    let control = root().join("crates/baton-control");
    let deps = dependencies(&control);
    for banned in ["axum", "hyper", "baton-http"] {
        assert!(!deps.contains(banned), "baton-control depends on {banned}");
    }
    for f in rust_files(&control.join("src")) {
        let text = std::fs::read_to_string(&f).expect("source");
        for call in [
            "println!",
            "eprintln!",
            "env::var(",
            "env::vars(",
            "env::var_os(",
        ] {
            assert!(!text.contains(call), "{} uses {call}", f.display());
        }
    }
}

#[test]
fn every_module_says_what_it_is_for() {
    let missing: Vec<String> = crates()
        .iter()
        .flat_map(|d| rust_files(d))
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(missing.is_empty(), "no //! header: {missing:#?}");
}

#[test]
fn the_minimum_rust_version_is_one_that_builds_it() {
    // `File::lock` (the project locks, baton-state) is stable since 1.89.
    let text = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let manifest: toml::Table = text.parse().expect("Cargo.toml");
    let version = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("rust-version");
    let minor: u32 = version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .expect("1.N");
    assert!(
        minor >= 89,
        "rust-version {version} is older than File::lock (1.89)"
    );
}

/// The `fn` names declared between `start` (a line that begins a trait or an impl) and
/// the first line that is a lone `}` after it.
fn fns_in_block(source: &str, start: &str) -> BTreeSet<String> {
    let mut inside = false;
    let mut names = BTreeSet::new();
    for line in source.lines() {
        if !inside {
            inside = line.starts_with(start);
            continue;
        }
        if line == "}" {
            break;
        }
        let t = line.trim_start();
        let t = t.strip_prefix("async ").unwrap_or(t);
        if let Some(rest) = t.strip_prefix("fn ") {
            if let Some(name) = rest.split(['(', '<']).next() {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn the_backend_enum_forwards_every_runtime_method() {
    // A method with a default body that AnyRuntime does not forward silently answers
    // the default for every backend (as `usage` once did: no container metrics).
    let read = |p: &str| std::fs::read_to_string(root().join(p)).expect(p);
    let declared = fns_in_block(
        &read("crates/baton-engine/src/runtime.rs"),
        "pub trait Runtime",
    );
    let forwarded = fns_in_block(
        &read("crates/baton-backend/src/lib.rs"),
        "impl Runtime for AnyRuntime",
    );
    assert!(declared.len() > 5, "the trait was found: {declared:?}");
    let missing: Vec<_> = declared.difference(&forwarded).collect();
    assert!(
        missing.is_empty(),
        "AnyRuntime does not forward {missing:?}"
    );
}
