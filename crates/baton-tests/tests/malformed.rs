//! Malformed files: each gets a located, named error, a non-zero exit, and nothing is
//! created in the engine.

use baton_tests::{docker_available, stderr, Scratch, IMAGE};

fn check(tag: &str, file: &str, expect: &[&str]) {
    let s = Scratch::new(tag);
    s.write("compose.yaml", file);
    let out = s.baton(&["up", "-d"]);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{tag}: must fail");
    for e in expect {
        assert!(err.contains(e), "{tag}: expected {e:?} in:\n{err}");
    }
    assert!(s.containers().is_empty(), "{tag}: containers created");
    assert!(s.networks().is_empty(), "{tag}: networks created");
    assert!(s.volumes().is_empty(), "{tag}: volumes created");
}

#[test]
fn malformed_files_are_refused_with_located_errors_and_create_nothing() {
    if !docker_available() {
        return;
    }
    check(
        "syntax",
        "services:\n  web:\n    image: [unclosed\n",
        &["compose.yaml:"],
    );
    check(
        "type",
        &format!("services:\n  web:\n    image: {IMAGE}\n    deploy:\n      replicas: two\n"),
        &["compose.yaml:5:17", "services.web.deploy.replicas"],
    );
    check(
        "unknown",
        &format!("services:\n  web:\n    image: {IMAGE}\n    enviroment:\n      A: b\n"),
        &[
            "compose.yaml:4:5",
            "enviroment",
            "did you mean \"environment\"",
        ],
    );
    check(
        "cycle",
        &format!("services:\n  a:\n    image: {IMAGE}\n    depends_on: [b]\n  b:\n    image: {IMAGE}\n    depends_on: [a]\n"),
        &["cycle", "a", "b"],
    );
    check(
        "undefnet",
        &format!("services:\n  web:\n    image: {IMAGE}\n    networks: [backend]\n"),
        &["compose.yaml:4:", "backend"],
    );
    check(
        "noimage",
        &format!("services:\n  ok:\n    image: {IMAGE}\n  web:\n    image: baton-test/does-not-exist:nope\nvolumes:\n  data: {{}}\n"),
        &["web", "baton-test/does-not-exist:nope"],
    );
}

#[test]
fn an_unknown_service_on_the_command_line_is_named() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("unksvc");
    s.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: {IMAGE}\n"),
    );
    let out = s.baton(&["up", "-d", "wbe"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("wbe"), "{}", stderr(&out));
    assert!(s.containers().is_empty());
}
