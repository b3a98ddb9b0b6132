//! A real image registry for the tests: Debian's `docker-registry` on a free loopback
//! port, with a temporary root directory and an htpasswd user, killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::free_port;

/// True when `docker-registry` and `htpasswd` are installed (scripts/ensure-registry.sh
/// installs them); without them tests skip unless `BATON_REQUIRE_REGISTRY` is set.
pub fn registry_available() -> bool {
    // Whether it can be started at all (htpasswd without arguments exits 1).
    let has = |program: &str| {
        Command::new(program)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    let ok = has("docker-registry") && has("htpasswd");
    if !ok {
        assert!(
            std::env::var_os("BATON_REQUIRE_REGISTRY").is_none(),
            "BATON_REQUIRE_REGISTRY is set but docker-registry or htpasswd is missing"
        );
        eprintln!("skipped: no docker-registry/htpasswd (run scripts/ensure-registry.sh)");
    }
    ok
}

/// A running registry that wants `user`/`password` (basic auth over plain HTTP, which
/// dockerd allows for loopback registries).
pub struct Registry {
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    /// Starts one and waits until it answers; `None` (skipped) when the programs are
    /// missing.
    pub fn start(user: &str, password: &str) -> Option<Registry> {
        if !registry_available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("htpasswd");
        assert!(htpasswd.status.success(), "htpasswd failed");
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).expect("write htpasswd");
        let port = free_port();
        let root = dir.path().join("data");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: baton-test\n    path: {}\n",
            root.display(),
            dir.path().join("htpasswd").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry {
            port,
            user: user.to_string(),
            password: password.to_string(),
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while registry.get("/v2/", false).is_none() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", registry.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on port {port}: {}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(registry)
    }

    /// `127.0.0.1:PORT`, as image references name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Writes `<dir>/config.json` with this registry's credentials under `key` (the
    /// docker CLI's file format, `auth` = base64 of user:password).
    pub fn write_docker_config(&self, dir: &Path, key: &str) {
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        let config = serde_json::json!({ "auths": { key: { "auth": auth } } });
        std::fs::write(dir.join("config.json"), config.to_string()).expect("config.json");
    }

    /// The tags the registry has for `repository` (asked with the credentials), empty
    /// when it has none.
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let Some((status, body)) = self.get(&format!("/v2/{repository}/tags/list"), true) else {
            panic!("the registry did not answer");
        };
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "tags/list: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("tags/list JSON");
        v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// GETs a path; (status, body), or `None` when nothing answers.
    fn get(&self, path: &str, auth: bool) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n", self.host());
        if auth {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", self.user, self.password));
            request.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        request.push_str("\r\n");
        s.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        let status = answer.split_whitespace().nth(1)?.parse().ok()?;
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Some((status, body.to_string()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
