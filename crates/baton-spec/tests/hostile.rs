//! The hostile inputs of issue 16 (items 5 to 8): each is refused with a located error
//! (or, for a byte order mark, read as it should be) instead of exhausting the host.

use std::path::Path;

use baton_spec::limits::{MAX_DEPTH, MAX_EXTENDS_DEPTH, MAX_INTERPOLATION_DEPTH, MAX_SERVICES};
use baton_spec::{load, ErrorKind, LoadOptions, Project, SpecError};

fn load_files(files: &[(&str, &[u8])]) -> Result<Project, SpecError> {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let p = dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, bytes).unwrap();
    }
    load(&LoadOptions {
        working_dir: dir.path().to_path_buf(),
        project_name: Some("t".into()),
        ..Default::default()
    })
}

fn load_text(text: &str) -> Result<Project, SpecError> {
    load_files(&[("compose.yaml", text.as_bytes())])
}

fn error(text: &str) -> SpecError {
    match load_text(text) {
        Ok(p) => panic!("loaded, with {} services", p.services.len()),
        Err(e) => e,
    }
}

/// Item 5: 9 levels of 9 aliases, 387 420 489 copies of "lol" (3.7 GB before).
#[test]
fn billion_laughs_stops_at_the_alias_that_crosses_the_bound() {
    let mut text = String::from("x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (name, prev) in ('b'..='i').zip('a'..) {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        text.push_str(&format!("x-{name}: &{name} [{refs}]\n"));
    }
    text.push_str("services:\n  web:\n    image: x\n");
    assert!(text.len() < 500, "{}", text.len());
    let e = error(&text);
    assert_eq!(e.kind(), ErrorKind::Limit);
    // x-f's copy for its anchor (597 871 nodes) would cross the bound, so it is not
    // made; the first alias that needs it, on line 7, is the error.
    assert_eq!(
        e.to_string(),
        "compose.yaml:7:10: the project grows beyond 1000000 yaml nodes, counting the copies that aliases, merge keys, extends and port ranges make"
    );
}

/// Item 5: merge keys over aliases, each level ten times the last (aborted at 4 GiB).
#[test]
fn merge_key_bomb_is_bounded() {
    let keys = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let mut text = format!(
        "x-0: &l0 {{{}}}\n",
        keys.map(|k| format!("{k}: 1")).join(", ")
    );
    for level in 1..10 {
        let prev = level - 1;
        let fields = keys.map(|k| format!("{k}{level}: *l{prev}")).join(", ");
        text.push_str(&format!(
            "x-{level}: &l{level} {{<<: *l{prev}, {fields}}}\n"
        ));
    }
    text.push_str("services:\n  web:\n    image: x\n");
    assert!(text.len() < 1100, "{}", text.len());
    let e = error(&text);
    assert_eq!(e.kind(), ErrorKind::Limit);
    // x-5's first alias, the merged *l4.
    assert_eq!((e.line, e.column), (Some(6), Some(15)), "{e}");
    assert!(e.message.contains("beyond 1000000 yaml nodes"), "{e}");
}

/// Item 7: 10 000 nested `${A:-` (1.5 GB before).
#[test]
fn deeply_nested_interpolation_is_refused() {
    let n = 10_000;
    let value = format!("{}x{}", "${A:-".repeat(n), "}".repeat(n));
    let e = error(&format!("services:\n  web:\n    image: \"{value}\"\n"));
    assert_eq!(e.kind(), ErrorKind::Limit);
    let want = format!(
        "compose.yaml:3:12: services.web.image: invalid interpolation format in \"{}…\": \"${{\" nested deeper than {MAX_INTERPOLATION_DEPTH} levels",
        "${A:-".repeat(16)
    );
    assert_eq!(e.to_string(), want);
}

/// Item 7: an `extends` chain of 20 000 links (cubic time, then a stack overflow).
#[test]
fn a_long_extends_chain_is_refused_at_the_link_past_the_bound() {
    let mut text = String::from("services:\n  s0:\n    image: x\n");
    for i in 1..=20_000 {
        text.push_str(&format!("  s{i}:\n    extends: s{}\n", i - 1));
    }
    let e = error(&text);
    assert_eq!(e.kind(), ErrorKind::Limit);
    // s65 is the first whose chain is too long.
    assert_eq!(
        e.to_string(),
        format!(
            "compose.yaml:{}:14: services.s65.extends: extends chain longer than {MAX_EXTENDS_DEPTH} links",
            5 + 2 * 64
        )
    );
    // Written the other way round the chain is followed from its long end, and stops
    // as soon as it is too long.
    let mut text = String::from("services:\n");
    for i in (1..=20_000).rev() {
        text.push_str(&format!("  s{i}:\n    extends: s{}\n", i - 1));
    }
    text.push_str("  s0:\n    image: x\n");
    let e = error(&text);
    assert_eq!(e.kind(), ErrorKind::Limit);
    assert_eq!(e.path, "services.s19936.extends");
}

/// Item 7: `include: [/dev/zero]` read 2 GB before.
#[test]
fn only_regular_files_are_included() {
    let e = error("include: [/dev/zero]\nservices:\n  web:\n    image: x\n");
    assert_eq!(e.kind(), ErrorKind::Io);
    assert_eq!(
        e.to_string(),
        "/dev/zero: cannot read file: not a regular file (a character device)"
    );
    let e = error("services:\n  web:\n    image: x\n    env_file: /dev/zero\n");
    assert_eq!(
        e.to_string(),
        "/dev/zero: cannot read env file: not a regular file (a character device)"
    );
    let e = error("services:\n  web:\n    extends: {file: /dev/zero, service: a}\n");
    assert_eq!(
        e.to_string(),
        "/dev/zero: cannot read file: not a regular file (a character device)"
    );
}

/// Item 7: a file larger than the bound is refused by name, before it is parsed.
#[test]
fn a_huge_included_file_is_refused_by_name() {
    let big = vec![b'#'; (16 << 20) + 1];
    let e = load_files(&[
        (
            "compose.yaml",
            b"include: [big.yaml]\nservices: {web: {image: x}}\n",
        ),
        ("big.yaml", &big),
    ])
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Limit);
    assert_eq!(
        e.to_string(),
        "big.yaml: the file is larger than 16 MiB, the most baton reads"
    );
}

/// Item 7: YAML nesting, which yaml-rust2's own loader follows by recursion.
#[test]
fn deep_nesting_is_refused() {
    let text = format!(
        "services:\n  web:\n    image: x\n    x-deep:\n      {}\n",
        "- ".repeat(100_000)
    );
    let e = error(&text);
    assert_eq!(e.kind(), ErrorKind::Limit);
    assert_eq!(
        e.to_string(),
        // The root, services and web mappings are three levels.
        format!(
            "compose.yaml:5:{}: yaml nested deeper than {MAX_DEPTH} levels",
            7 + 2 * (MAX_DEPTH - 3)
        )
    );
}

/// Item 7: `.env` values that double at each line.
#[test]
fn doubling_env_file_values_are_bounded() {
    let mut env = String::from("A0=0123456789abcdef0123456789abcdef\n");
    for i in 1..64 {
        env.push_str(&format!("A{i}=${{A{p}}}${{A{p}}}\n", p = i - 1));
    }
    let e = load_files(&[
        ("compose.yaml", b"services: {web: {image: x}}\n"),
        (".env", env.as_bytes()),
    ])
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Limit);
    assert_eq!(e.file.as_deref(), Some(Path::new(".env")));
    assert_eq!(e.line, Some(22));
}

/// Item 7: a chain of dependencies as long as services may be is checked without
/// recursion; one more service is refused.
#[test]
fn a_long_dependency_chain_is_checked() {
    let chain = |n: usize| {
        let mut text = String::from("services:\n");
        for i in 0..n - 1 {
            text.push_str(&format!("  s{i}: {{image: x, depends_on: [s{}]}}\n", i + 1));
        }
        text.push_str(&format!("  s{}: {{image: x, depends_on: [s0]}}\n", n - 1));
        text
    };
    let e = error(&chain(MAX_SERVICES));
    assert_eq!(e.kind(), ErrorKind::Cycle);
    assert!(e.message.ends_with("s9998 -> s9999 -> s0"), "{e}");
    let e = error(&chain(MAX_SERVICES + 1));
    assert_eq!(
        e.to_string(),
        "compose.yaml:10002:3: services.s10000: more than 10000 services"
    );
}

/// Item 6: the second document was silently ignored.
#[test]
fn a_second_document_is_an_error() {
    let e = error("services:\n  web:\n    image: x\n---\nservices:\n  db:\n    image: y\n");
    assert_eq!(
        e.to_string(),
        "compose.yaml:4:1: a second yaml document starts here; a compose file holds one (remove the \"---\" line or split the file)"
    );
}

/// Item 6: yaml-rust2 reads `{name: app}` as the whole first document and stops at
/// `services:` ("did not find expected <document start>"); the old reader kept only the
/// first document, an empty project, and `plan --remove-orphans` proposed to remove
/// every running container.
#[test]
fn a_tab_before_name_is_an_error() {
    let e = error("\tname: app\nservices:\n  web:\n    image: x\n");
    assert_eq!(e.kind(), ErrorKind::Syntax);
    assert_eq!(
        e.to_string(),
        "compose.yaml:1:1: invalid yaml: a tab indents the first line (yaml indents with spaces only)"
    );
}

/// Item 6: a project with nothing in it is an error at the file; a file with only a baton
/// section or only `include:` is not.
#[test]
fn an_empty_project_is_an_error() {
    for text in [
        "",
        "# nothing\n",
        "name: app\n",
        "services: {}\n",
        "x-a: 1\n",
    ] {
        let e = error(text);
        assert_eq!(
            e.to_string(),
            "compose.yaml: the project defines nothing: no services and no baton section (define \"services:\" or one of \"vms:\", \"hosts:\", \"pipelines:\", \"files:\", \"snapshot_policies:\", \"alerts:\")",
            "{text:?}"
        );
    }
    for text in [
        "vms: {a: {}}\n",
        "hosts: {a: {}}\n",
        "pipelines: {p: {}}\n",
        "files: {f: {}}\n",
        "x-baton: {runbooks: {}}\n",
    ] {
        assert!(load_text(text).is_ok(), "{text:?}");
    }
    let p = load_files(&[
        ("compose.yaml", b"include: [sub/web.yaml]\n"),
        ("sub/web.yaml", b"services: {web: {image: x}}\n"),
    ])
    .unwrap();
    assert!(p.services.contains_key("web"));
    // Services all behind profiles are still services.
    assert!(load_text("services: {web: {image: x, profiles: [dbg]}}\n").is_ok());
}

/// Item 8: a byte order mark is skipped (it was read as part of the first key).
#[test]
fn a_byte_order_mark_is_skipped() {
    let p = load_files(&[
        (
            "compose.yaml",
            b"\xef\xbb\xbfservices:\n  web:\n    image: x\n    env_file: e.env\n",
        ),
        ("e.env", b"\xef\xbb\xbfA=1\n"),
    ])
    .unwrap();
    assert_eq!(p.services["web"].environment["A"].as_deref(), Some("1"));
}

/// Item 8: Latin-1 text names the file, line and column of the first invalid byte.
#[test]
fn invalid_utf8_is_located() {
    let e = load_files(&[(
        "compose.yaml",
        b"services:\n  web:\n    image: \"caf\xe9\"\n",
    )])
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "compose.yaml:3:16: the file is not valid utf-8 (byte 0xe9) (save it as utf-8)"
    );
    let e = load_files(&[
        ("compose.yaml", b"services: {web: {image: x}}\n"),
        (".env", b"A=1\nB=\xff\n"),
    ])
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        ".env:2:3: the env file is not valid utf-8 (byte 0xff) (save it as utf-8)"
    );
}

/// Port ranges expand to one port each, so they count against the node bound.
#[test]
fn expanded_port_ranges_are_bounded() {
    let ports = vec!["\"1-65535:1-65535\""; 40].join(", ");
    let e = error(&format!(
        "services:\n  web:\n    image: x\n    ports: [{ports}]\n"
    ));
    assert_eq!(e.kind(), ErrorKind::Limit);
    assert_eq!(e.path, "services.web.ports[15]");
}

/// A key longer than the bound would be copied into the path of every node below it.
/// (yaml-rust2 already stops implicit keys at 1024 characters; an explicit `?` key is
/// not stopped.)
#[test]
fn a_huge_key_is_refused() {
    let key = "k".repeat(2000);
    let e = error(&format!(
        "services:\n  web:\n    image: x\nx-a:\n  ? {key}\n  : 1\n"
    ));
    assert_eq!(
        e.to_string(),
        "compose.yaml:5:5: a key longer than 1024 bytes"
    );
}

/// Each include reads and parses its file again: 120 000 of one tiny file took 13 s.
#[test]
fn repeated_includes_are_bounded() {
    let items = vec!["a.yaml"; 120_000].join(", ");
    let main = format!("services: {{web: {{image: x}}}}\ninclude: [{items}]\n");
    let e = load_files(&[
        ("compose.yaml", main.as_bytes()),
        ("a.yaml", b"networks: {n: {}}\n"),
    ])
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Limit);
    assert_eq!(
        e.to_string(),
        "a.yaml: more than 1000 files read for one project (each include of a file counts)"
    );
}
