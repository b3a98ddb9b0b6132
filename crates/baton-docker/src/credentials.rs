//! Registry credentials read as the docker CLI reads them: `config.json` in
//! `DOCKER_CONFIG` (else `~/.docker`), its `auths`, `credsStore` and `credHelpers`.
//!
//! Everything here is a function of a given config directory and a way to run credential
//! helpers (`CredentialHelpers`), so it is tested without the real home directory. No
//! secret is ever part of an error message or of `Debug` output.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;

/// The key Docker Hub's credentials are kept under in `config.json`.
pub const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// What a credential helper says when it has nothing for a server (docker-credential-helpers).
const NOT_FOUND: &str = "credentials not found";

/// Why credentials could not be read. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON (line {line}, column {column}): fix or move it")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error("{path}: the \"auth\" of {registry} is not base64 of user:password")]
    BadAuth { path: PathBuf, registry: String },
    #[error("cannot run {program} (named by credsStore or credHelpers in {path}): {source}")]
    HelperStart {
        program: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{program} get {server} failed: {message}")]
    HelperFailed {
        program: String,
        server: String,
        message: String,
    },
    #[error("{program} get {server} did not answer with {{ServerURL, Username, Secret}} JSON (line {line}, column {column})")]
    HelperReply {
        program: String,
        server: String,
        line: usize,
        column: usize,
    },
}

/// Credentials for one registry, as the engine takes them. `Debug` hides every secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The registry's `config.json` key (`https://index.docker.io/v1/`, `host:port`).
    pub server: String,
    pub username: String,
    pub password: String,
    /// An OAuth refresh token (a helper's answer with user `<token>`).
    pub identity_token: String,
    /// A bearer token sent as it is.
    pub registry_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("username", &hidden(&self.username))
            .field("password", &hidden(&self.password))
            .field("identity_token", &hidden(&self.identity_token))
            .field("registry_token", &hidden(&self.registry_token))
            .finish()
    }
}

impl Credentials {
    fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }

    pub(crate) fn to_bollard(&self) -> bollard::auth::DockerCredentials {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        bollard::auth::DockerCredentials {
            username: some(&self.username),
            password: some(&self.password),
            serveraddress: some(&self.server),
            identitytoken: some(&self.identity_token),
            registrytoken: some(&self.registry_token),
            ..Default::default()
        }
    }
}

/// Where the docker CLI keeps `config.json`: `DOCKER_CONFIG` when set and not empty,
/// else `<home>/.docker`; `None` without either.
pub fn config_dir(docker_config: Option<&OsStr>, home: Option<&Path>) -> Option<PathBuf> {
    match docker_config {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => home.map(|h| h.join(".docker")),
    }
}

/// The registry an image reference lives in, as people write it: `docker.io` for
/// Docker Hub (`busybox`, `library/x`, `index.docker.io/x`), else `host[:port]`.
pub fn registry_host(reference: &str) -> String {
    // Docker's rule: the first path component is a registry when it has a dot or a
    // colon, is `localhost`, or has upper-case letters; otherwise the image is on Hub.
    let host = match reference.split_once('/') {
        Some((first, _))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            first
        }
        _ => "docker.io",
    };
    match host {
        "index.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// The `config.json` key of an image reference's registry.
pub fn registry_key(reference: &str) -> String {
    normalize_key(&registry_host(reference))
}

/// A `config.json` key or server address in the form the lookup compares: scheme and
/// path dropped (`https://host:5000/v2/` is `host:5000`), Docker Hub's names as
/// `https://index.docker.io/v1/`.
pub fn normalize_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

/// How credential helpers run: `docker-credential-<name> get`, the server on stdin.
pub trait CredentialHelpers: Send + Sync {
    /// Runs `program` with `args` (no shell), writes `stdin`, returns what it printed.
    fn run(&self, program: &str, args: &[&str], stdin: &str) -> std::io::Result<HelperOutput>;
}

/// What a helper process printed and whether it exited 0.
#[derive(Clone, PartialEq, Eq)]
pub struct HelperOutput {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Helpers found on `PATH`, run as child processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemHelpers;

impl CredentialHelpers for SystemHelpers {
    fn run(&self, program: &str, args: &[&str], stdin: &str) -> std::io::Result<HelperOutput> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut input) = child.stdin.take() {
            // A helper that exits without reading is answered by its exit status.
            let _ = input.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output()?;
        Ok(HelperOutput {
            success: out.status.success(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

/// One `auths` entry of `config.json`, decoded.
#[derive(Clone, Default, PartialEq, Eq)]
struct AuthEntry {
    username: String,
    password: String,
    identity_token: String,
    registry_token: String,
}

/// The parts of `config.json` that say where credentials are.
#[derive(Clone, Default)]
pub struct DockerConfig {
    /// The file it was read from (for messages); may not exist.
    pub path: PathBuf,
    auths: BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    cred_helpers: BTreeMap<String, String>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field("auths", &self.auths.keys().collect::<Vec<_>>())
            .field("creds_store", &self.creds_store)
            .field("cred_helpers", &self.cred_helpers)
            .finish()
    }
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

impl DockerConfig {
    /// Reads `<dir>/config.json`; a missing file is an empty configuration (anonymous).
    pub fn load(dir: &Path) -> Result<DockerConfig, CredentialsError> {
        let path = dir.join("config.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => DockerConfig::parse(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig {
                path,
                ..Default::default()
            }),
            Err(source) => Err(CredentialsError::Read { path, source }),
        }
    }

    /// Parses the text of a `config.json` read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<DockerConfig, CredentialsError> {
        // serde's messages can quote the offending value (a password), so only the
        // position is kept.
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig {
                auths: BTreeMap::new(),
                creds_store: None,
                cred_helpers: BTreeMap::new(),
            }
        } else {
            serde_json::from_str(text).map_err(|e| CredentialsError::Parse {
                path: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
            })?
        };
        let mut auths = BTreeMap::new();
        for (registry, a) in raw.auths {
            let mut entry = AuthEntry {
                username: a.username.unwrap_or_default(),
                password: a.password.unwrap_or_default(),
                identity_token: a.identitytoken.unwrap_or_default(),
                registry_token: a.registrytoken.unwrap_or_default(),
            };
            if let Some(encoded) = a.auth.filter(|s| !s.is_empty()) {
                let (user, pass) =
                    decode_auth(&encoded).ok_or_else(|| CredentialsError::BadAuth {
                        path: path.to_path_buf(),
                        registry: registry.clone(),
                    })?;
                entry.username = user;
                entry.password = pass;
            }
            auths.insert(registry, entry);
        }
        Ok(DockerConfig {
            path: path.to_path_buf(),
            auths,
            creds_store: raw.creds_store.filter(|s| !s.is_empty()),
            cred_helpers: raw.cred_helpers,
        })
    }

    /// The helper (`docker-credential-<name>`) that keeps `key`'s credentials: its
    /// `credHelpers` entry, else `credsStore`; `None` when they are in the file.
    pub fn helper_for(&self, key: &str) -> Option<&str> {
        let wanted = normalize_key(key);
        self.cred_helpers
            .get(key)
            .or_else(|| {
                self.cred_helpers
                    .iter()
                    .find(|(k, _)| normalize_key(k) == wanted)
                    .map(|(_, v)| v)
            })
            .map(String::as_str)
            .filter(|h| !h.is_empty())
            .or(self.creds_store.as_deref())
    }

    /// The credentials for registry `key` (see `registry_key`), or `None` for anonymous
    /// access; helpers run through `helpers`.
    pub fn credentials(
        &self,
        key: &str,
        helpers: &dyn CredentialHelpers,
    ) -> Result<Option<Credentials>, CredentialsError> {
        let server = normalize_key(key);
        if let Some(helper) = self.helper_for(&server) {
            return self.ask_helper(helper, &server, helpers);
        }
        let entry = self.auths.get(&server).or_else(|| {
            self.auths
                .iter()
                .find(|(k, _)| normalize_key(k) == server)
                .map(|(_, v)| v)
        });
        let Some(entry) = entry else {
            return Ok(None);
        };
        let creds = Credentials {
            server,
            username: entry.username.clone(),
            password: entry.password.clone(),
            identity_token: entry.identity_token.clone(),
            registry_token: entry.registry_token.clone(),
        };
        Ok((!creds.is_empty()).then_some(creds))
    }

    fn ask_helper(
        &self,
        helper: &str,
        server: &str,
        helpers: &dyn CredentialHelpers,
    ) -> Result<Option<Credentials>, CredentialsError> {
        let program = format!("docker-credential-{helper}");
        let out = helpers.run(&program, &["get"], server).map_err(|source| {
            CredentialsError::HelperStart {
                program: program.clone(),
                path: self.path.clone(),
                source,
            }
        })?;
        if !out.success {
            let said = String::from_utf8_lossy(if out.stdout.iter().all(u8::is_ascii_whitespace) {
                &out.stderr
            } else {
                &out.stdout
            })
            .trim()
            .to_string();
            if said.contains(NOT_FOUND) {
                return Ok(None);
            }
            let message: String = said
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            return Err(CredentialsError::HelperFailed {
                program,
                server: server.to_string(),
                message: if message.is_empty() {
                    "it exited with an error and said nothing".into()
                } else {
                    message
                },
            });
        }
        let reply: HelperReply =
            serde_json::from_slice(&out.stdout).map_err(|e| CredentialsError::HelperReply {
                program: program.clone(),
                server: server.to_string(),
                line: e.line(),
                column: e.column(),
            })?;
        let mut creds = Credentials {
            server: server.to_string(),
            ..Default::default()
        };
        // docker-credential-helpers' convention for identity tokens.
        if reply.username == "<token>" {
            creds.identity_token = reply.secret;
        } else {
            creds.username = reply.username;
            creds.password = reply.secret;
        }
        Ok((!creds.is_empty()).then_some(creds))
    }
}

/// `base64(user:password)` decoded; `None` when it is not that.
fn decode_auth(encoded: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.trim_end_matches('\0').to_string()))
}

/// Where a `Docker` client finds credentials: a config directory (none: anonymous) and
/// the way helpers run. `config.json` is read at each use, so a `docker login` made
/// while `baton serve` runs counts at its next pull.
#[derive(Clone)]
pub struct CredentialSource {
    dir: Option<PathBuf>,
    helpers: Arc<dyn CredentialHelpers>,
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialSource")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CredentialSource {
    pub fn new(dir: Option<PathBuf>, helpers: Arc<dyn CredentialHelpers>) -> CredentialSource {
        CredentialSource { dir, helpers }
    }

    /// The docker CLI's: `DOCKER_CONFIG`, else `$HOME/.docker`; helpers from `PATH`.
    pub fn from_env() -> CredentialSource {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        CredentialSource::new(
            config_dir(
                std::env::var_os("DOCKER_CONFIG").as_deref(),
                home.as_deref(),
            ),
            Arc::new(SystemHelpers),
        )
    }

    /// No credentials at all.
    pub fn anonymous() -> CredentialSource {
        CredentialSource::new(None, Arc::new(SystemHelpers))
    }

    /// Credentials for each registry key that has some (keys without are left out),
    /// and where they were looked for.
    pub fn lookup(&self, keys: &[String]) -> Result<Lookup, CredentialsError> {
        let Some(dir) = &self.dir else {
            return Ok(Lookup {
                credentials: Vec::new(),
                looked_in: "no docker config directory (set DOCKER_CONFIG or HOME)".into(),
            });
        };
        let config = DockerConfig::load(dir)?;
        let mut credentials = Vec::new();
        for key in keys {
            if let Some(c) = config.credentials(key, self.helpers.as_ref())? {
                credentials.push(c);
            }
        }
        let helpers: BTreeSet<&str> = keys
            .iter()
            .filter_map(|k| config.helper_for(&normalize_key(k)))
            .collect();
        let looked_in = if helpers.is_empty() {
            config.path.display().to_string()
        } else {
            let programs: Vec<String> = helpers
                .iter()
                .map(|h| format!("docker-credential-{h}"))
                .collect();
            format!(
                "{} (named in {})",
                programs.join(", "),
                config.path.display()
            )
        };
        Ok(Lookup {
            credentials,
            looked_in,
        })
    }
}

/// What `CredentialSource::lookup` found.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub credentials: Vec<Credentials>,
    /// Where they were looked for, for messages: the `config.json` or the helpers.
    pub looked_in: String,
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers helper calls from a table and records them.
    #[derive(Default)]
    struct FakeHelpers {
        replies: BTreeMap<String, HelperOutput>,
        calls: Mutex<Vec<(String, Vec<String>, String)>>,
    }

    impl FakeHelpers {
        fn with(program: &str, success: bool, stdout: &str) -> FakeHelpers {
            let mut f = FakeHelpers::default();
            f.replies.insert(
                program.to_string(),
                HelperOutput {
                    success,
                    stdout: stdout.as_bytes().to_vec(),
                    stderr: Vec::new(),
                },
            );
            f
        }
    }

    impl CredentialHelpers for FakeHelpers {
        fn run(&self, program: &str, args: &[&str], stdin: &str) -> std::io::Result<HelperOutput> {
            self.calls.lock().unwrap().push((
                program.to_string(),
                args.iter().map(|a| a.to_string()).collect(),
                stdin.to_string(),
            ));
            self.replies
                .get(program)
                .cloned()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such program"))
        }
    }

    fn parse(text: &str) -> DockerConfig {
        DockerConfig::parse(Path::new("/cfg/config.json"), text).unwrap()
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn registry_of_references() {
        for (reference, host, key) in [
            ("busybox", "docker.io", DOCKER_HUB),
            ("library/busybox:1", "docker.io", DOCKER_HUB),
            ("baton-test/busybox:latest", "docker.io", DOCKER_HUB),
            ("docker.io/library/x", "docker.io", DOCKER_HUB),
            ("index.docker.io/x/y:2", "docker.io", DOCKER_HUB),
            ("127.0.0.1:5000/x:tag", "127.0.0.1:5000", "127.0.0.1:5000"),
            ("localhost/x", "localhost", "localhost"),
            (
                "localhost:5000/a/b@sha256:00",
                "localhost:5000",
                "localhost:5000",
            ),
            ("ghcr.io/o/r", "ghcr.io", "ghcr.io"),
            ("Registry/x", "Registry", "Registry"),
        ] {
            assert_eq!(registry_host(reference), host, "{reference}");
            assert_eq!(registry_key(reference), key, "{reference}");
        }
    }

    #[test]
    fn keys_are_normalised_as_docker_does() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), DOCKER_HUB);
        assert_eq!(normalize_key("index.docker.io"), DOCKER_HUB);
        assert_eq!(normalize_key("docker.io"), DOCKER_HUB);
        assert_eq!(normalize_key("https://ghcr.io"), "ghcr.io");
        assert_eq!(normalize_key("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(normalize_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn config_dir_follows_docker_config_then_home() {
        assert_eq!(
            config_dir(Some(OsStr::new("/d")), Some(Path::new("/h"))),
            Some(PathBuf::from("/d"))
        );
        assert_eq!(
            config_dir(Some(OsStr::new("")), Some(Path::new("/h"))),
            Some(PathBuf::from("/h/.docker"))
        );
        assert_eq!(
            config_dir(None, Some(Path::new("/h"))),
            Some(PathBuf::from("/h/.docker"))
        );
        assert_eq!(config_dir(None, None), None);
    }

    #[test]
    fn auths_in_every_form() {
        let text = format!(
            r#"{{
              "auths": {{
                "https://index.docker.io/v1/": {{"auth": "{hub}"}},
                "https://reg.example:5000": {{"auth": "{colon}"}},
                "plain.example": {{"username": "u2", "password": "p2"}},
                "token.example": {{"identitytoken": "tok"}},
                "empty.example": {{}}
              }},
              "psFormat": "table {{{{.ID}}}}",
              "HttpHeaders": {{"User-Agent": "x"}}
            }}"#,
            hub = b64("hubuser:hubpass"),
            colon = b64("u:pa:ss"),
        );
        let c = parse(&text);
        let none = FakeHelpers::default();
        let hub = c.credentials(DOCKER_HUB, &none).unwrap().unwrap();
        assert_eq!(
            (
                hub.username.as_str(),
                hub.password.as_str(),
                hub.server.as_str()
            ),
            ("hubuser", "hubpass", DOCKER_HUB)
        );
        // Written with a scheme, asked for by host:port; a colon in the password stays.
        let reg = c.credentials("reg.example:5000", &none).unwrap().unwrap();
        assert_eq!(
            (reg.username.as_str(), reg.password.as_str()),
            ("u", "pa:ss")
        );
        assert_eq!(reg.server, "reg.example:5000");
        let plain = c.credentials("plain.example", &none).unwrap().unwrap();
        assert_eq!(
            (plain.username.as_str(), plain.password.as_str()),
            ("u2", "p2")
        );
        let token = c.credentials("token.example", &none).unwrap().unwrap();
        assert_eq!(token.identity_token, "tok");
        assert_eq!(c.credentials("empty.example", &none).unwrap(), None);
        assert_eq!(c.credentials("other.example", &none).unwrap(), None);
        assert!(none.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn missing_empty_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let none = FakeHelpers::default();
        let c = DockerConfig::load(dir.path()).unwrap();
        assert_eq!(c.credentials("x.example", &none).unwrap(), None);
        std::fs::write(dir.path().join("config.json"), "").unwrap();
        assert!(DockerConfig::load(dir.path()).is_ok());
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths": {"x": {"auth": 5, "password": "hunter2"}}}"#,
        )
        .unwrap();
        let err = DockerConfig::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("config.json is not valid JSON (line 1"),
            "{err}"
        );
        let err = DockerConfig::parse(
            Path::new("/c.json"),
            r#"{"auths": {"x.example": {"auth": "bm8tY29sb24="}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "/c.json: the \"auth\" of x.example is not base64 of user:password"
        );
    }

    #[test]
    fn errors_never_quote_secrets() {
        // A password where a string was expected: serde would quote it.
        let err = DockerConfig::parse(Path::new("/c.json"), r#"{"auths": "hunter2"}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let helpers = FakeHelpers::with("docker-credential-x", true, r#""hunter2""#);
        let c = parse(r#"{"credsStore": "x"}"#);
        let err = c
            .credentials("r.example", &helpers)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            err.starts_with("docker-credential-x get r.example did not answer"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_is_redacted() {
        let creds = Credentials {
            server: "r.example".into(),
            username: "alice".into(),
            password: "hunter2".into(),
            ..Default::default()
        };
        let text = format!("{creds:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("alice"),
            "{text}"
        );
        assert!(
            text.contains("r.example") && text.contains("<redacted>"),
            "{text}"
        );
        let c = parse(&format!(
            r#"{{"auths": {{"r.example": {{"auth": "{}"}}}}}}"#,
            b64("alice:hunter2")
        ));
        let text = format!("{c:?}");
        assert!(
            !text.contains("hunter2") && text.contains("r.example"),
            "{text}"
        );
    }

    #[test]
    fn creds_store_and_cred_helpers() {
        let helpers = FakeHelpers::with(
            "docker-credential-pass",
            true,
            r#"{"ServerURL": "127.0.0.1:5000", "Username": "u", "Secret": "s"}"#,
        );
        // credHelpers wins over credsStore for its registry; the file entry is ignored
        // for a registry a helper keeps.
        let c = parse(
            r#"{"credsStore": "missing", "credHelpers": {"https://127.0.0.1:5000": "pass"},
                "auths": {"127.0.0.1:5000": {"username": "file", "password": "file"}}}"#,
        );
        let got = c.credentials("127.0.0.1:5000", &helpers).unwrap().unwrap();
        assert_eq!((got.username.as_str(), got.password.as_str()), ("u", "s"));
        assert_eq!(
            helpers.calls.lock().unwrap().as_slice(),
            &[(
                "docker-credential-pass".to_string(),
                vec!["get".to_string()],
                "127.0.0.1:5000".to_string()
            )]
        );
        // Other registries go to credsStore, which is not installed.
        let err = c.credentials(DOCKER_HUB, &helpers).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot run docker-credential-missing (named by credsStore or credHelpers in /cfg/config.json)"),
            "{err}"
        );
    }

    #[test]
    fn helper_answers() {
        let c = parse(r#"{"credsStore": "h"}"#);
        let not_found = FakeHelpers::with(
            "docker-credential-h",
            false,
            "credentials not found in native keychain\n",
        );
        assert_eq!(c.credentials(DOCKER_HUB, &not_found).unwrap(), None);
        assert_eq!(not_found.calls.lock().unwrap()[0].2, DOCKER_HUB);
        let token = FakeHelpers::with(
            "docker-credential-h",
            true,
            r#"{"ServerURL": "x", "Username": "<token>", "Secret": "refresh"}"#,
        );
        let got = c.credentials("x.example", &token).unwrap().unwrap();
        assert_eq!(got.identity_token, "refresh");
        assert!(got.username.is_empty() && got.password.is_empty());
        let broken = FakeHelpers::with("docker-credential-h", false, "keychain locked\nmore");
        let err = c.credentials("x.example", &broken).unwrap_err().to_string();
        assert_eq!(
            err,
            "docker-credential-h get x.example failed: keychain locked"
        );
    }

    #[test]
    fn source_without_a_directory_is_anonymous() {
        let s = CredentialSource::anonymous();
        assert!(s
            .lookup(&[DOCKER_HUB.to_string()])
            .unwrap()
            .credentials
            .is_empty());
    }

    #[test]
    fn lookup_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credHelpers": {"h.example": "fake"}, "auths": {"f.example": {"username": "u", "password": "p"}}}"#,
        )
        .unwrap();
        let helpers = FakeHelpers::with("docker-credential-fake", false, "credentials not found");
        let s = CredentialSource::new(Some(dir.path().to_path_buf()), Arc::new(helpers));
        let file = dir.path().join("config.json").display().to_string();
        let found = s.lookup(&["f.example".to_string()]).unwrap();
        assert_eq!(found.credentials.len(), 1);
        assert_eq!(found.looked_in, file);
        let found = s.lookup(&["h.example".to_string()]).unwrap();
        assert!(found.credentials.is_empty());
        assert_eq!(
            found.looked_in,
            format!("docker-credential-fake (named in {file})")
        );
    }

    #[test]
    fn bollard_credentials_carry_the_secret() {
        let c = Credentials {
            server: "r".into(),
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        let b = c.to_bollard();
        assert_eq!(b.username.as_deref(), Some("u"));
        assert_eq!(b.password.as_deref(), Some("p"));
        assert_eq!(b.serveraddress.as_deref(), Some("r"));
        assert_eq!(b.identitytoken, None);
    }
}
