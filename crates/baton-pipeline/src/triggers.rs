//! Triggers the daemon runs: cron schedules (croner), webhooks (`POST /hooks/NAME` with
//! GitHub's HMAC-SHA256 signature or GitLab's token, both checked in constant time, never
//! with an empty secret; a replayed delivery is answered without running) and git
//! pollers (`git ls-remote`, one run per new commit, the last one kept in the store).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use baton_spec::Project;
use baton_state::Store;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::run::{execute, now_ms, read_secret, Live, RunRequest};
use crate::spec::{GitPoll, Pipeline, Provider, Trigger, Webhook};
use crate::PipelineError;

/// Parses a cron expression: 5 fields, or 6 with seconds first.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    croner::Cron::new(expr)
        .with_seconds_optional()
        .parse()
        .map_err(|e| e.to_string())
}

/// How long a webhook delivery is remembered: GitHub lets a delivery be sent again for
/// three days, so a replay within that window is answered without running.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);

/// Largest webhook body accepted (413 beyond).
pub const WEBHOOK_BODY_LIMIT: usize = 8 << 20;

/// What the daemon hands over to run a project's pipeline triggers.
pub struct TriggerConfig {
    pub project: Project,
    pub state_dir: PathBuf,
    /// Where `POST /hooks/NAME` is served; no webhooks without it.
    pub hooks_listen: Option<SocketAddr>,
    /// The daemon's environment, where trigger and job secrets are looked up.
    pub env: BTreeMap<String, String>,
    pub jobs: usize,
    /// Where `image:` jobs run (see [`RunRequest::containers`]).
    pub containers: Option<crate::run::Containers>,
}

struct Launcher {
    store: Arc<Store>,
    pipelines: BTreeMap<String, Pipeline>,
    cfg: TriggerConfig,
    /// Never fires: daemon runs end with the daemon.
    cancel: watch::Receiver<bool>,
    _cancel_tx: watch::Sender<bool>,
}

impl Launcher {
    fn launch(self: &Arc<Self>, name: &str, trigger: &str, vars: BTreeMap<String, String>) {
        let Some(p) = self.pipelines.get(name).cloned() else {
            return;
        };
        let me = self.clone();
        let req = RunRequest {
            project: self.cfg.project.name.clone(),
            project_dir: self.cfg.project.working_dir.clone(),
            state_dir: self.cfg.state_dir.clone(),
            trigger: trigger.to_string(),
            vars,
            jobs: self.cfg.jobs,
            rerun_of: None,
            env: self.cfg.env.clone(),
            grace: Duration::from_secs(5),
            ssh: crate::remote::ssh_options(&self.cfg.env),
            containers: self.cfg.containers.clone(),
        };
        let prefix = format!("pipeline {name}: ");
        let live: Live = Arc::new(move |line: &str| tracing::info!("{prefix}{line}"));
        tokio::spawn(async move {
            if let Err(e) = execute(me.store.clone(), &p, req, live, me.cancel.clone(), None).await
            {
                tracing::warn!("pipeline {}: {e}", p.name);
            }
        });
    }
}

/// Runs every trigger of the project's pipelines until the future is dropped.
pub async fn serve(cfg: TriggerConfig) -> Result<(), PipelineError> {
    let pipelines = crate::spec::pipelines(&cfg.project)?;
    check_webhook_secrets(&pipelines, &cfg)?;
    let store = Arc::new(Store::open(&cfg.state_dir)?);
    let (tx, rx) = watch::channel(false);
    let hooks_listen = cfg.hooks_listen;
    let launcher = Arc::new(Launcher {
        store,
        pipelines,
        cfg,
        cancel: rx,
        _cancel_tx: tx,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (name, p) in &launcher.pipelines {
        for t in &p.triggers {
            match t {
                Trigger::Schedule(expr) => {
                    tasks.spawn(schedule(launcher.clone(), name.clone(), expr.clone()));
                }
                Trigger::Git(g) => {
                    tasks.spawn(poll_git(launcher.clone(), name.clone(), g.clone()));
                }
                Trigger::Manual | Trigger::Webhook(_) => {}
            }
        }
    }
    if let Some(addr) = hooks_listen {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            PipelineError::Internal(format!("cannot listen on {addr} for webhooks: {e}"))
        })?;
        let app = axum::Router::new()
            .route("/hooks/{name}", axum::routing::post(hook))
            .with_state(launcher.clone());
        // baton's one serving stack: header and body deadlines, a connection cap, and a
        // body cap sized for push payloads (GitHub's can reach megabytes).
        let options = baton_http::ServeOptions {
            limits: baton_http::Limits {
                max_body_bytes: WEBHOOK_BODY_LIMIT,
                ..Default::default()
            },
            tls: None,
        };
        tasks.spawn(async move {
            if let Err(e) = baton_http::serve(listener, app, options).await {
                tracing::warn!("webhooks: {e}");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Refuses to serve a webhook whose secret is empty: anyone could sign with an empty
/// key (or send an empty GitLab token). An unreadable secret is told at delivery time.
fn check_webhook_secrets(
    pipelines: &BTreeMap<String, Pipeline>,
    cfg: &TriggerConfig,
) -> Result<(), PipelineError> {
    for (name, p) in pipelines {
        for t in &p.triggers {
            let Trigger::Webhook(w) = t else { continue };
            if let Ok(secret) = read_secret(&w.secret, &cfg.env, &cfg.project.working_dir) {
                if secret.is_empty() {
                    return Err(PipelineError::Invalid(format!(
                        "pipeline {name}: the webhook's secret ({}) is empty: refusing to serve a webhook anyone could sign",
                        match &w.secret {
                            crate::spec::SecretSource::Env(var) => format!("environment variable {var}"),
                            crate::spec::SecretSource::File(f) => format!("file {}", f.display()),
                        }
                    )));
                }
            }
        }
    }
    Ok(())
}

async fn schedule(l: Arc<Launcher>, name: String, expr: String) {
    let Ok(cron) = parse_cron(&expr) else { return };
    loop {
        let now = chrono::Utc::now();
        let Ok(next) = cron.find_next_occurrence(&now, false) else {
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let vars = BTreeMap::from([
            ("BATON_SCHEDULE".to_string(), expr.clone()),
            (
                "BATON_SCHEDULED_AT".to_string(),
                next.timestamp_millis().to_string(),
            ),
        ]);
        l.launch(&name, "schedule", vars);
    }
}

async fn poll_git(l: Arc<Launcher>, name: String, g: GitPoll) {
    let repo = resolve_repo(&l.cfg.project.working_dir, &g.repo);
    let key = format!("git:{}#{}", g.repo, g.branch);
    loop {
        match ls_remote(&repo, &g.branch).await {
            Ok(Some(commit)) => {
                let seen = l
                    .store
                    .trigger_state(&l.cfg.project.name, &name, &key)
                    .ok()
                    .flatten();
                if seen.as_deref() != Some(commit.as_str()) {
                    // Remember it before running, so a restart never runs it twice.
                    if l.store
                        .set_trigger_state(&l.cfg.project.name, &name, &key, &commit, now_ms())
                        .is_ok()
                    {
                        let vars = BTreeMap::from([
                            ("BATON_COMMIT".to_string(), commit),
                            ("BATON_BRANCH".to_string(), g.branch.clone()),
                        ]);
                        l.launch(&name, "git", vars);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("pipeline {name}: git poll of {}: {e}", g.repo),
        }
        tokio::time::sleep(g.interval).await;
    }
}

/// A path relative to the project directory, or a URL as written.
fn resolve_repo(project_dir: &std::path::Path, repo: &str) -> String {
    if repo.contains("://") || repo.contains('@') {
        repo.to_string()
    } else {
        project_dir.join(repo).to_string_lossy().into_owned()
    }
}

/// The commit at the head of `branch` in `repo`, if the branch exists.
pub async fn ls_remote(repo: &str, branch: &str) -> Result<Option<String>, String> {
    let out = tokio::process::Command::new("git")
        .args(["ls-remote", "--heads", "--"])
        .arg(repo)
        .arg(format!("refs/heads/{branch}"))
        .stdin(std::process::Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.split_whitespace().next().map(str::to_string)))
}

/// Whether a request carries a valid signature (GitHub) or token (GitLab) for `secret`.
pub fn verify(provider: Provider, secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    if secret.is_empty() {
        return false;
    }
    match provider {
        Provider::Github => {
            let Some(sig) = headers
                .get("x-hub-signature-256")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("sha256="))
                .and_then(|hexsig| hex::decode(hexsig.trim()).ok())
            else {
                return false;
            };
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                return false;
            };
            mac.update(body);
            mac.verify_slice(&sig).is_ok()
        }
        Provider::Gitlab => headers
            .get("x-gitlab-token")
            .map(|v| bool::from(v.as_bytes().ct_eq(secret)))
            .unwrap_or(false),
    }
}

/// Payload fields as `BATON_HOOK_*` variables: nested keys joined by `_`, uppercased,
/// other characters as `_` (`repository.full_name` → `BATON_HOOK_REPOSITORY_FULL_NAME`);
/// scalars only, four levels deep, at most 200. `ref: refs/heads/X` also gives
/// `BATON_BRANCH=X`.
pub fn hook_vars(payload: &Value) -> BTreeMap<String, String> {
    fn walk(v: &Value, prefix: &str, depth: usize, out: &mut BTreeMap<String, String>) {
        if out.len() >= 200 {
            return;
        }
        match v {
            Value::Object(m) if depth < 4 => {
                for (k, v) in m {
                    let key: String = k
                        .chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() {
                                c.to_ascii_uppercase()
                            } else {
                                '_'
                            }
                        })
                        .collect();
                    walk(v, &format!("{prefix}_{key}"), depth + 1, out);
                }
            }
            Value::Array(items) if depth < 4 => {
                for (i, v) in items.iter().enumerate().take(20) {
                    walk(v, &format!("{prefix}_{i}"), depth + 1, out);
                }
            }
            Value::String(s) => {
                out.insert(prefix.to_string(), s.chars().take(1024).collect());
            }
            Value::Number(n) => {
                out.insert(prefix.to_string(), n.to_string());
            }
            Value::Bool(b) => {
                out.insert(prefix.to_string(), b.to_string());
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk(payload, "BATON_HOOK", 0, &mut out);
    if let Some(b) = payload
        .get("ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("refs/heads/"))
    {
        out.insert("BATON_BRANCH".into(), b.to_string());
    }
    if let Some(c) = payload
        .get("after")
        .or_else(|| payload.get("checkout_sha"))
        .and_then(Value::as_str)
    {
        out.insert("BATON_COMMIT".into(), c.to_string());
    }
    out
}

async fn hook(
    State(l): State<Arc<Launcher>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let hooks: Vec<&Webhook> = l
        .pipelines
        .get(&name)
        .map(|p| {
            p.triggers
                .iter()
                .filter_map(|t| match t {
                    Trigger::Webhook(w) => Some(w),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if hooks.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no pipeline {name} with a webhook trigger")})),
        );
    }
    let mut configured = false;
    let mut ok = false;
    for w in hooks {
        let Ok(secret) = read_secret(&w.secret, &l.cfg.env, &l.cfg.project.working_dir) else {
            continue;
        };
        configured = true;
        if verify(w.provider, secret.as_bytes(), &headers, &body) {
            ok = true;
            break;
        }
    }
    if !configured {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "the webhook's secret is not available to the daemon"})),
        );
    }
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad or missing signature"})),
        );
    }
    // A delivery is known by its id and by its signed body: GitHub's signature covers
    // the body only, so a replay with a new id header is still the same body.
    let mut keys = vec![format!("sha256:{}", hex::encode(Sha256::digest(&body)))];
    for h in ["x-github-delivery", "x-gitlab-event-uuid"] {
        if let Some(id) = headers.get(h).and_then(|v| v.to_str().ok()) {
            keys.push(format!("{h}:{}", id.chars().take(200).collect::<String>()));
        }
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let window = i64::try_from(REPLAY_WINDOW.as_millis()).unwrap_or(i64::MAX);
    match l
        .store
        .first_delivery(&l.cfg.project.name, &name, &keys, window, now_ms())
    {
        Ok(true) => {}
        Ok(false) => {
            return (
                StatusCode::OK,
                Json(json!({"pipeline": name, "accepted": false, "replay": true})),
            )
        }
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": format!("cannot record the delivery: {e}")})),
            )
        }
    }
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);

    let mut vars = hook_vars(&payload);
    for h in ["x-github-event", "x-gitlab-event"] {
        if let Some(e) = headers.get(h).and_then(|v| v.to_str().ok()) {
            vars.insert("BATON_HOOK_EVENT".into(), e.to_string());
        }
    }
    l.launch(&name, "webhook", vars);
    (
        StatusCode::ACCEPTED,
        Json(json!({"pipeline": name, "accepted": true})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_signatures_and_gitlab_tokens_are_checked() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", good.parse().unwrap());
        assert!(verify(Provider::Github, b"s3cret", &h, body));
        assert!(!verify(Provider::Github, b"other", &h, body));
        assert!(!verify(Provider::Github, b"s3cret", &h, b"{}"));
        assert!(!verify(
            Provider::Github,
            b"s3cret",
            &HeaderMap::new(),
            body
        ));
        let mut g = HeaderMap::new();
        g.insert("x-gitlab-token", "s3cret".parse().unwrap());
        assert!(verify(Provider::Gitlab, b"s3cret", &g, body));
        assert!(!verify(Provider::Gitlab, b"s3cre", &g, body));
    }

    #[test]
    fn an_empty_secret_verifies_nothing() {
        let body = b"{}";
        let mac = Hmac::<Sha256>::new_from_slice(b"").unwrap();
        let signed = format!(
            "sha256={}",
            hex::encode(mac.chain_update(body).finalize().into_bytes())
        );
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", signed.parse().unwrap());
        assert!(!verify(Provider::Github, b"", &h, body));
        let mut g = HeaderMap::new();
        g.insert("x-gitlab-token", "".parse().unwrap());
        assert!(!verify(Provider::Gitlab, b"", &g, body));
    }

    #[test]
    fn payloads_flatten_into_variables() {
        let v = hook_vars(&json!({
            "ref": "refs/heads/main",
            "after": "abc",
            "repository": {"full_name": "o/r", "private": false},
            "commits": [{"id": "x"}],
        }));
        assert_eq!(v["BATON_HOOK_REF"], "refs/heads/main");
        assert_eq!(v["BATON_BRANCH"], "main");
        assert_eq!(v["BATON_COMMIT"], "abc");
        assert_eq!(v["BATON_HOOK_REPOSITORY_FULL_NAME"], "o/r");
        assert_eq!(v["BATON_HOOK_REPOSITORY_PRIVATE"], "false");
        assert_eq!(v["BATON_HOOK_COMMITS_0_ID"], "x");
    }

    #[test]
    fn cron_accepts_seconds_and_refuses_nonsense() {
        assert!(parse_cron("0 3 * * *").is_ok());
        assert!(parse_cron("*/2 * * * * *").is_ok());
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every day").is_err());
    }
}
