//! Pull, build and push against a real registry with htpasswd authentication: with the
//! credentials in a temporary DOCKER_CONFIG (a file entry or a credential helper on PATH)
//! they work, without them they fail with an error naming the image and registry.

use std::path::Path;
use std::process::{Command, Output};

use baton_tests::registry::Registry;
use baton_tests::{docker_available, docker_lines, stderr, stdout, Scratch, IMAGE};

/// A password whose credential header has `+` or `/` in standard base64 wherever it
/// lands (three troublesome characters in a row): dockerd ignores such a header unless
/// it is re-encoded URL-safe, so this guards that re-encoding.
const PASSWORD: &str = "s3cr?>~?>~t";
const USER: &str = "baton";

/// Removes the named local images when dropped, even after a failed assertion.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

fn image_present(image: &str) -> bool {
    !docker_lines(&["image", "ls", "-q", image]).is_empty()
}

fn remove_image(image: &str) {
    let out = Command::new("docker")
        .args(["rmi", "-f", image])
        .output()
        .expect("docker rmi");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!image_present(image));
}

/// `baton args` with DOCKER_CONFIG pointing at `config` (and extra environment).
fn baton(s: &Scratch, config: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut c = s.cmd();
    c.env("DOCKER_CONFIG", config).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run baton")
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

fn assert_no_secret(out: &Output) {
    for text in [stdout(out), stderr(out)] {
        assert!(!text.contains(PASSWORD), "the password was printed: {text}");
    }
}

#[test]
fn push_pull_and_build_with_and_without_credentials() {
    if !docker_available() {
        return;
    }
    let Some(registry) = Registry::start(USER, PASSWORD) else {
        return;
    };
    let s = Scratch::new("reg");
    let host = registry.host();
    let image = format!("{host}/{}:v1", s.name);
    let derived = format!("{}-derived", s.name);
    let _cleanup = Images(vec![image.clone(), derived.clone()]);
    let with = tempfile::tempdir().expect("tempdir");
    // Written with a scheme, as `docker login` of old did; found by host:port.
    registry.write_docker_config(with.path(), &format!("https://{host}"));
    let without = tempfile::tempdir().expect("tempdir");

    s.write(
        "app/Dockerfile",
        &format!("FROM {IMAGE}\nRUN echo from-the-registry > /marker\n"),
    );
    s.write(
        "derived/Dockerfile",
        &format!("FROM {image}\nRUN cat /marker\n"),
    );
    s.write(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    build: ./app\n    image: {image}\n  derived:\n    build: ./derived\n  plain:\n    image: {IMAGE}\n"
        ),
    );
    let build = baton(&s, without.path(), &[], &["build", "app"]);
    assert_ok(&build, "build app");

    // Unknown services are named, with a suggestion.
    let out = baton(&s, with.path(), &[], &["push", "apq"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no such service: \"apq\" (did you mean \"app\"?)"),
        "{}",
        stderr(&out)
    );

    // Without credentials: refused, exit 1, the image and registry named.
    let out = baton(&s, without.path(), &[], &["push"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("push {image} to registry {host} failed"))
            && err.contains(&format!("registry {host} wants credentials")),
        "{err}"
    );
    assert!(registry.tags(&s.name).is_empty());

    // With them: pushed, the others skipped with a reason.
    let out = baton(&s, with.path(), &[], &["--json", "push"]);
    assert_ok(&out, "push");
    assert_no_secret(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("push --json");
    let by_service = |name: &str| {
        report
            .as_array()
            .and_then(|a| a.iter().find(|r| r["service"] == name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(by_service("app")["status"], "pushed", "{report}");
    assert_eq!(by_service("app")["image"], image.as_str());
    assert_eq!(by_service("derived")["status"], "skipped", "{report}");
    assert_eq!(by_service("plain")["status"], "skipped", "{report}");
    assert_eq!(registry.tags(&s.name), vec!["v1".to_string()]);

    // Pull of the removed image: refused without credentials, works with them.
    remove_image(&image);
    let out = baton(&s, without.path(), &[], &["pull", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("pull {image} from registry {host} failed")),
        "{}",
        stderr(&out)
    );
    assert!(!image_present(&image));
    let out = baton(&s, with.path(), &[], &["pull", "app"]);
    assert_ok(&out, "pull app");
    assert_no_secret(&out);
    assert!(image_present(&image));

    // A build whose FROM is in the registry pulls it with the credentials.
    remove_image(&image);
    let out = baton(&s, without.path(), &[], &["build", "derived"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("the base images come from {host}")),
        "{}",
        stderr(&out)
    );
    let out = baton(&s, with.path(), &[], &["build", "derived"]);
    assert_ok(&out, "build derived");
    assert_no_secret(&out);
    assert!(
        stderr(&out).contains("from-the-registry"),
        "{}",
        stderr(&out)
    );
    assert!(image_present(&derived));
}

#[test]
fn a_credential_helper_on_path_answers_for_the_registry() {
    if !docker_available() {
        return;
    }
    let Some(registry) = Registry::start(USER, PASSWORD) else {
        return;
    };
    let s = Scratch::new("helper");
    let host = registry.host();
    let image = format!("{host}/{}:v2", s.name);
    let _cleanup = Images(vec![image.clone()]);

    // The helper: `get`, the server on stdin, JSON out; it logs what it was asked.
    let bin = tempfile::tempdir().expect("tempdir");
    let calls = bin.path().join("calls");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\necho \"get $server\" >> '{calls}'\nif [ \"$server\" = '{host}' ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\nelse\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n",
        calls = calls.display()
    );
    let helper = bin.path().join("docker-credential-batontest");
    std::fs::write(&helper, script).expect("write helper");
    let chmod = Command::new("chmod")
        .arg("755")
        .arg(&helper)
        .status()
        .expect("chmod");
    assert!(chmod.success());
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [("PATH", path)];

    let per_registry = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        per_registry.path().join("config.json"),
        serde_json::json!({ "credHelpers": { host.as_str(): "batontest" } }).to_string(),
    )
    .expect("config.json");
    let store = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        store.path().join("config.json"),
        serde_json::json!({ "credsStore": "batontest" }).to_string(),
    )
    .expect("config.json");

    s.write(
        "app/Dockerfile",
        &format!("FROM {IMAGE}\nRUN echo helped > /marker\n"),
    );
    s.write(
        "compose.yaml",
        &format!("services:\n  app:\n    build: ./app\n    image: {image}\n"),
    );
    assert_ok(&baton(&s, per_registry.path(), &env, &["build"]), "build");
    let out = baton(&s, per_registry.path(), &env, &["push"]);
    assert_ok(&out, "push through credHelpers");
    assert_no_secret(&out);
    assert_eq!(registry.tags(&s.name), vec!["v2".to_string()]);
    let asked = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(asked.contains(&format!("get {host}")), "{asked}");

    // credsStore: the same helper for every registry; a pull goes through it too.
    remove_image(&image);
    let out = baton(&s, store.path(), &env, &["pull"]);
    assert_ok(&out, "pull through credsStore");
    assert!(image_present(&image));

    // A helper that is not on PATH is a clear error, not an anonymous pull.
    remove_image(&image);
    let out = baton(&s, store.path(), &[], &["pull"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot run docker-credential-batontest"),
        "{}",
        stderr(&out)
    );
}
