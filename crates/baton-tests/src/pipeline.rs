//! Helpers for the pipeline tests: a `baton serve` with extra flags, a raw HTTP POST,
//! run history as JSON, GitHub-style signatures and a look at the process table.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::Scratch;

/// A `baton serve` with extra arguments, killed (and waited for) when dropped.
pub struct Serve(pub Child);

impl Serve {
    /// Starts it with extra arguments and environment variables.
    pub fn start(s: &Scratch, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let log = std::fs::File::create(s.state.path().join("serve.log")).expect("serve log");
        let err = log.try_clone().expect("serve log");
        Serve(
            s.cmd()
                .args(["serve", "--tick-ms", "200"])
                .args(extra)
                .envs(env.iter().copied())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(err))
                .spawn()
                .expect("baton serve"),
        )
    }

    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

pub use crate::within;

/// `baton --json pipeline history`: the project's runs, newest first.
pub fn runs(s: &Scratch) -> Vec<Value> {
    let out = s.baton(&["--json", "pipeline", "history", "--limit", "100"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// `baton --json pipeline show RUN`: `{run, jobs}`.
pub fn show(s: &Scratch, run: i64) -> Value {
    let out = s.baton(&["--json", "pipeline", "show", &run.to_string()]);
    serde_json::from_slice(&out.stdout).expect("show --json")
}

/// POSTs `body` to a loopback port; returns the status code (0 when nothing answers).
pub fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            );
            for (k, v) in headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            if s.write_all(req.as_bytes()).is_ok() && s.write_all(body).is_ok() {
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if let Some(code) = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()) {
                    return code;
                }
            }
        }
        if Instant::now() > deadline {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `sha256=<hex>`: GitHub's `X-Hub-Signature-256` of `body` with `secret`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Processes whose command line contains `marker`, as (pid, command line).
pub fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        // A zombie has an empty command line; it is gone once reaped.
        if cmd.contains(marker) && pid != std::process::id() {
            out.push((pid, cmd.trim().to_string()));
        }
    }
    out
}

/// Kills leftover processes carrying `marker` when dropped (a failed test leaves none).
pub struct Reaper(pub String);

impl Drop for Reaper {
    fn drop(&mut self) {
        for (pid, _) in processes_with(&self.0) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
        }
    }
}

/// Runs git with arguments in `dir`, asserting success; returns stdout.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
