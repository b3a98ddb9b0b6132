//! Managed files (the top-level `files:` section): kind file, env or systemd unit, on
//! hosts or the local machine. Content is validated by format before anything is
//! touched, every applied version is kept in the store (exact bytes and mode), applies
//! keep a backup, and rollback and drift compare against those versions.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use baton_spec::{ErrorKind, Project, SpecError};
use baton_state::{FileApplied, Store};
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::inventory::{Host, Inventory};
use crate::remote::{self, RemoteError};
use crate::runbook::parse_mode;
use crate::select::select;
use crate::ssh::{Jumps, Session, SshOptions};
use crate::template::{host_context, render};
use crate::transport::Conn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Env,
    Systemd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Yaml,
    Toml,
    Sh,
    Nginx,
    Env,
    Systemd,
    Text,
}

/// One managed file as the spec declares it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManagedFile {
    pub name: String,
    pub kind: Kind,
    pub format: Format,
    /// The destination; a template (host vars), so loopback hosts can differ.
    pub path: String,
    /// Exact bytes (not templated: a version is the same bytes everywhere).
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: Option<String>,
    /// A selector, or `None` for the local machine.
    pub hosts: Option<String>,
    /// Kind systemd: restart the unit after a change (systemd is always told to reload
    /// its units after one).
    pub restart: bool,
}

impl ManagedFile {
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(&self.content))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    kind: Option<Kind>,
    format: Option<Format>,
    path: String,
    content: Option<String>,
    source: Option<String>,
    /// For kind env: variables written as `KEY=value` lines.
    env: Option<BTreeMap<String, Value>>,
    mode: Option<Value>,
    owner: Option<String>,
    hosts: Option<String>,
    /// Kind systemd: restart the unit when the file changed.
    #[serde(default)]
    restart: bool,
}

fn format_for(kind: Kind, path: &str) -> Format {
    match kind {
        Kind::Env => return Format::Env,
        Kind::Systemd => return Format::Systemd,
        Kind::File => {}
    }
    let ext = path.rsplit('.').next().unwrap_or("");
    match ext {
        "json" => Format::Json,
        "yaml" | "yml" => Format::Yaml,
        "toml" => Format::Toml,
        "sh" => Format::Sh,
        "env" => Format::Env,
        "service" | "socket" | "timer" => Format::Systemd,
        _ if path.contains("nginx") && ext == "conf" => Format::Nginx,
        _ => Format::Text,
    }
}

/// Types the `files:` section; `source:` paths are read relative to the project dir.
pub fn from_project(project: &Project) -> Result<BTreeMap<String, ManagedFile>, SpecError> {
    let mut out = BTreeMap::new();
    let Some(section) = project.baton.get("files") else {
        return Ok(out);
    };
    let err = |path: &str, msg: String| project.error_at(ErrorKind::Invalid, path, msg);
    let Value::Object(files) = section else {
        return Err(err(
            "files",
            "must be a mapping of file name to managed file".into(),
        ));
    };
    for (name, v) in files {
        let p = format!("files.{name}");
        let raw: Raw = serde_json::from_value(v.clone()).map_err(|e| err(&p, e.to_string()))?;
        let kind = raw.kind.unwrap_or(Kind::File);
        let content = match (raw.content, raw.source, raw.env) {
            (Some(c), None, None) => c.into_bytes(),
            (None, Some(s), None) => {
                let f = project.working_dir.join(&s);
                std::fs::read(&f).map_err(|e| {
                    err(
                        &format!("{p}.source"),
                        format!("cannot read {}: {e}", f.display()),
                    )
                })?
            }
            (None, None, Some(vars)) if kind == Kind::Env => {
                let mut s = String::new();
                for (k, v) in vars {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    s.push_str(&format!("{k}={v}\n"));
                }
                s.into_bytes()
            }
            _ => {
                return Err(err(
                    &p,
                    "give exactly one of `content`, `source` (or `env` for kind env)".into(),
                ))
            }
        };
        let mode = match &raw.mode {
            None => 0o644,
            Some(m) => parse_mode(m).ok_or_else(|| {
                err(
                    &format!("{p}.mode"),
                    format!("{m} is not an octal mode like \"0644\""),
                )
            })?,
        };
        if raw.path.is_empty() {
            return Err(err(&format!("{p}.path"), "must not be empty".into()));
        }
        let hosts = raw.hosts.filter(|h| h != "local");
        if raw.restart && kind != Kind::Systemd {
            return Err(err(
                &format!("{p}.restart"),
                "only a file of kind systemd has a unit to restart".into(),
            ));
        }
        out.insert(
            name.clone(),
            ManagedFile {
                name: name.clone(),
                kind,
                format: raw.format.unwrap_or_else(|| format_for(kind, &raw.path)),
                path: raw.path,
                content,
                mode,
                owner: raw.owner,
                hosts,
                restart: raw.restart,
            },
        );
    }
    Ok(out)
}

fn valid_env_name(k: &str) -> bool {
    let mut c = k.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn run_checker(program: &str, args: &[&str], stdin: &[u8]) -> Option<Result<(), String>> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin);
    }
    let out = child.wait_with_output().ok()?;
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    })
}

/// Validates content by format, locally, before any host is touched. `sh -n` and
/// `nginx -t` run only when those programs are present.
pub fn validate(format: Format, content: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(content);
    let text = || text.map_err(|_| "not valid UTF-8".to_string());
    match format {
        Format::Json => serde_json::from_str::<Value>(text()?)
            .map(drop)
            .map_err(|e| format!("invalid JSON: {e}")),
        Format::Yaml => serde_yaml::from_str::<serde_yaml::Value>(text()?)
            .map(drop)
            .map_err(|e| format!("invalid YAML: {e}")),
        Format::Toml => text()?
            .parse::<toml::Table>()
            .map(drop)
            .map_err(|e| format!("invalid TOML: {}", e.to_string().trim())),
        Format::Sh => run_checker("sh", &["-n"], content)
            .unwrap_or(Ok(()))
            .map_err(|e| format!("invalid shell script: {e}")),
        Format::Env => {
            for (i, line) in text()?.lines().enumerate() {
                let l = line.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                let l = l.strip_prefix("export ").unwrap_or(l);
                match l.split_once('=') {
                    Some((k, _)) if valid_env_name(k) => {}
                    Some((k, _)) => {
                        return Err(format!(
                            "line {}: `{k}` is not a valid environment variable name",
                            i + 1
                        ))
                    }
                    None => return Err(format!("line {}: expected NAME=value", i + 1)),
                }
            }
            Ok(())
        }
        Format::Systemd => {
            let mut section = false;
            for (i, line) in text()?.lines().enumerate() {
                let l = line.trim();
                if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                    continue;
                }
                if l.starts_with('[') && l.ends_with(']') {
                    section = true;
                } else if !section {
                    return Err(format!(
                        "line {}: a unit file starts with a [Section]",
                        i + 1
                    ));
                } else if !l.contains('=') {
                    return Err(format!("line {}: expected Key=value", i + 1));
                }
            }
            if !section {
                return Err("a unit file needs at least one [Section]".into());
            }
            Ok(())
        }
        Format::Nginx => {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let f = dir.path().join("nginx.conf");
            std::fs::write(&f, content).map_err(|e| e.to_string())?;
            let prefix = format!("{}/", dir.path().display());
            let conf = f.display().to_string();
            run_checker("nginx", &["-t", "-q", "-p", &prefix, "-c", &conf], b"")
                .unwrap_or(Ok(()))
                .map_err(|e| format!("nginx -t: {e}"))
        }
        Format::Text => Ok(()),
    }
}

/// How one host's copy of a file stands after an operation.
#[derive(Debug, Clone, Serialize)]
pub struct HostFile {
    pub host: String,
    pub path: String,
    /// apply/rollback: ok, changed, failed, unreachable. drift: in-sync, drifted,
    /// missing, unreachable, never-applied.
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub name: String,
    pub operation: String,
    pub version: Option<i64>,
    pub new_version: bool,
    pub check: bool,
    pub hosts: Vec<HostFile>,
}

impl FileReport {
    pub fn success(&self) -> bool {
        self.hosts
            .iter()
            .all(|h| matches!(h.status.as_str(), "ok" | "changed" | "in-sync"))
    }
}

/// What a managed-file operation needs from the outside.
pub struct Env<'a> {
    pub project: &'a str,
    pub inventory: &'a Inventory,
    pub ssh: &'a SshOptions,
    pub store: &'a Store,
    pub forks: usize,
    pub timeout: Option<Duration>,
    pub now: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("file `{name}`: {message}; nothing was changed")]
    Invalid { name: String, message: String },
    #[error(transparent)]
    Select(#[from] crate::select::SelectError),
    #[error(transparent)]
    State(#[from] baton_state::StateError),
    #[error(transparent)]
    Auth(#[from] crate::ssh::NoAuth),
    #[error("file `{name}` has no version {version} (see `baton files versions {name}`)")]
    NoVersion { name: String, version: i64 },
}

/// The hosts a file goes to: selected ones (each with a way to authenticate), or the
/// local machine.
fn targets(f: &ManagedFile, env: &Env<'_>) -> Result<Vec<Option<Host>>, FileError> {
    let inv = env.inventory;
    let hosts: Vec<Option<Host>> = match &f.hosts {
        None => vec![None],
        Some(sel) => select(inv, sel)?
            .into_iter()
            .map(|id| inv.hosts.get(&id).cloned())
            .filter(Option::is_some)
            .collect(),
    };
    crate::ssh::check_auth(inv, hosts.iter().flatten(), env.ssh)?;
    Ok(hosts)
}

async fn connect(
    inv: &Inventory,
    h: &Option<Host>,
    ssh: &SshOptions,
    jumps: &Jumps,
) -> Result<Conn, String> {
    match h {
        None => Ok(Conn::Local),
        Some(h) => Session::connect_in(inv, h, ssh, jumps)
            .await
            .map(Conn::Ssh)
            .map_err(|e| e.to_string()),
    }
}

fn dest(f: &ManagedFile, h: &Option<Host>) -> Result<String, String> {
    match h {
        None => render(&f.path, &Value::Object(Default::default())),
        Some(h) => render(&f.path, &host_context(h)),
    }
}

fn host_name(h: &Option<Host>) -> String {
    h.as_ref()
        .map(|h| h.id.clone())
        .unwrap_or_else(|| "local".into())
}

/// After a unit file changed: `systemctl daemon-reload` so systemd reads it, then
/// `systemctl restart UNIT` when the file asks for it (the unit is the file's name).
async fn reload_unit(
    conn: &Conn,
    f: &ManagedFile,
    path: &str,
    timeout: Option<Duration>,
) -> Result<(), String> {
    let mut commands = vec![vec!["systemctl", "daemon-reload"]];
    let unit = path.rsplit('/').next().unwrap_or(path);
    if f.restart {
        commands.push(vec!["systemctl", "restart", "--", unit]);
    }
    for argv in commands {
        let out = conn
            .exec(&crate::transport::quote_args(&argv), None, timeout)
            .await
            .map_err(|e| format!("{}: {e}", argv.join(" ")))?;
        if out.status != 0 {
            return Err(format!(
                "{} exited with {}: {}",
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// Puts `content`/`mode` on every target (compare first, backup, atomic write) and
/// records which version each host now has.
async fn put_all(
    f: &ManagedFile,
    content: &[u8],
    mode: u32,
    version: i64,
    check: bool,
    env: &Env<'_>,
) -> Result<Vec<HostFile>, FileError> {
    let hosts = targets(f, env)?;
    let jumps = &Jumps::default();
    let results: Vec<HostFile> = stream::iter(hosts.iter().map(|h| async move {
        let mut r = HostFile {
            host: host_name(h),
            path: String::new(),
            status: "failed".into(),
            diff: String::new(),
            error: None,
        };
        match dest(f, h) {
            Ok(p) => r.path = p,
            Err(e) => {
                r.error = Some(e);
                return r;
            }
        }
        let conn = match connect(env.inventory, h, env.ssh, jumps).await {
            Ok(c) => c,
            Err(e) => {
                r.status = "unreachable".into();
                r.error = Some(e);
                return r;
            }
        };
        match remote::put(
            &conn,
            &r.path,
            content,
            Some(mode),
            f.owner.as_deref(),
            true,
            check,
            env.timeout,
        )
        .await
        {
            Ok(p) => {
                r.status = if p.changed { "changed" } else { "ok" }.into();
                r.diff = p.diff;
                if p.changed && !check && f.kind == Kind::Systemd {
                    if let Err(e) = reload_unit(&conn, f, &r.path, env.timeout).await {
                        r.status = "failed".into();
                        r.error = Some(e);
                    }
                }
            }
            Err(RemoteError::Transport(e)) => {
                r.status = if e.unreachable() {
                    "unreachable"
                } else {
                    "failed"
                }
                .into();
                r.error = Some(e.to_string());
            }
            Err(RemoteError::Failed(e)) => r.error = Some(e),
        }
        conn.close().await;
        r
    }))
    .buffer_unordered(env.forks.max(1))
    .collect()
    .await;
    jumps.close().await;
    let mut results = results;
    results.sort_by(|a, b| a.host.cmp(&b.host));
    if !check {
        for r in &results {
            if matches!(r.status.as_str(), "ok" | "changed") {
                env.store.record_file_applied(
                    env.project,
                    &FileApplied {
                        name: f.name.clone(),
                        host: r.host.clone(),
                        path: r.path.clone(),
                        version,
                        applied_at: env.now,
                    },
                )?;
            }
        }
    }
    Ok(results)
}

/// Validates, records a version (when the bytes or mode are new) and applies it.
pub async fn apply(f: &ManagedFile, check: bool, env: &Env<'_>) -> Result<FileReport, FileError> {
    validate(f.format, &f.content).map_err(|message| FileError::Invalid {
        name: f.name.clone(),
        message,
    })?;
    targets(f, env)?;
    let (version, new_version) = if check {
        let last = env.store.file_versions(env.project, &f.name)?.pop();
        match last {
            Some(v) if v.hash == f.hash() && v.mode == f.mode => (Some(v.version), false),
            _ => (None, true),
        }
    } else {
        let (v, new) = env.store.record_file_version(
            env.project,
            &f.name,
            &f.hash(),
            &f.content,
            f.mode,
            env.now,
        )?;
        (Some(v), new)
    };
    let hosts = put_all(f, &f.content, f.mode, version.unwrap_or(0), check, env).await?;
    Ok(FileReport {
        name: f.name.clone(),
        operation: "apply".into(),
        version,
        new_version,
        check,
        hosts,
    })
}

/// Puts an earlier version back: its exact bytes and mode.
pub async fn rollback(
    f: &ManagedFile,
    to: i64,
    check: bool,
    env: &Env<'_>,
) -> Result<FileReport, FileError> {
    let v = env
        .store
        .file_version(env.project, &f.name, to)?
        .ok_or(FileError::NoVersion {
            name: f.name.clone(),
            version: to,
        })?;
    let hosts = put_all(f, &v.content, v.mode, to, check, env).await?;
    Ok(FileReport {
        name: f.name.clone(),
        operation: "rollback".into(),
        version: Some(to),
        new_version: false,
        check,
        hosts,
    })
}

/// Compares each host's file with the version it last received.
pub async fn drift(f: &ManagedFile, env: &Env<'_>) -> Result<FileReport, FileError> {
    let applied: BTreeMap<String, FileApplied> = env
        .store
        .files_applied(env.project, &f.name)?
        .into_iter()
        .map(|a| (a.host.clone(), a))
        .collect();
    let versions: BTreeMap<i64, baton_state::FileVersion> = env
        .store
        .file_versions(env.project, &f.name)?
        .into_iter()
        .map(|v| (v.version, v))
        .collect();
    let hosts = targets(f, env)?;
    let jumps = &Jumps::default();
    let mut results: Vec<HostFile> = stream::iter(hosts.iter().map(|h| {
        let applied = &applied;
        let versions = &versions;
        async move {
            let name = host_name(h);
            let mut r = HostFile {
                host: name.clone(),
                path: String::new(),
                status: "never-applied".into(),
                diff: String::new(),
                error: None,
            };
            let Some(a) = applied.get(&name) else {
                return r;
            };
            let Some(v) = versions.get(&a.version) else {
                return r;
            };
            r.path = a.path.clone();
            let conn = match connect(env.inventory, h, env.ssh, jumps).await {
                Ok(c) => c,
                Err(e) => {
                    r.status = "unreachable".into();
                    r.error = Some(e);
                    return r;
                }
            };
            match remote::read(&conn, &a.path, env.timeout).await {
                Ok(None) => r.status = "missing".into(),
                Ok(Some(found)) => {
                    let mut notes = Vec::new();
                    if found.content != v.content {
                        r.diff = remote::diff(&a.path, Some(&v.content), &found.content);
                        notes.push("content");
                    }
                    if found.mode != v.mode {
                        notes.push("mode");
                        r.error = Some(format!("mode {:o}, expected {:o}", found.mode, v.mode));
                    }
                    r.status = if notes.is_empty() {
                        "in-sync".into()
                    } else {
                        "drifted".into()
                    };
                }
                Err(e) => {
                    r.status = "unreachable".into();
                    r.error = Some(e.to_string());
                }
            }
            conn.close().await;
            r
        }
    }))
    .buffer_unordered(env.forks.max(1))
    .collect()
    .await;
    jumps.close().await;
    results.sort_by(|a, b| a.host.cmp(&b.host));
    let version = applied.values().map(|a| a.version).max();
    Ok(FileReport {
        name: f.name.clone(),
        operation: "drift".into(),
        version,
        new_version: false,
        check: false,
        hosts: results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_validated() {
        assert!(validate(Format::Json, br#"{"a": 1}"#).is_ok());
        assert!(validate(Format::Json, b"{a: 1")
            .unwrap_err()
            .contains("invalid JSON"));
        assert!(validate(Format::Yaml, b"a: [1").is_err());
        assert!(validate(Format::Toml, b"a = ").is_err());
        assert!(validate(Format::Toml, b"a = 1").is_ok());
        assert!(validate(Format::Env, b"A_1=x\n# c\nexport B=2\n").is_ok());
        assert!(validate(Format::Env, b"1A=x\n")
            .unwrap_err()
            .contains("not a valid"));
        assert!(validate(Format::Systemd, b"[Unit]\nDescription=x\n").is_ok());
        assert!(validate(Format::Systemd, b"Description=x\n").is_err());
        assert!(validate(Format::Sh, b"if then fi (").is_err());
        assert!(validate(Format::Sh, b"echo ok\n").is_ok());
    }

    #[test]
    fn formats_follow_kind_and_extension() {
        assert_eq!(format_for(Kind::File, "/a/b.json"), Format::Json);
        assert_eq!(format_for(Kind::Env, "/a/b"), Format::Env);
        assert_eq!(
            format_for(Kind::File, "/etc/nginx/site.conf"),
            Format::Nginx
        );
        assert_eq!(format_for(Kind::File, "/a/b"), Format::Text);
    }
}
