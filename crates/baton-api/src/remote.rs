//! The other side of the API, for `baton --server URL`: the same operations and reads
//! the command makes locally, sent as requests to a remote daemon, its answers read
//! back into the same types.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use baton_control::{Operation, Outcome, RolloutView, ServicesView, VmAction};
use baton_http::{Client, ClientTls, Endpoint, HttpError, Token};
use baton_state::{ActionRecord, Event};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::input::Page;
use crate::{AuditView, PREFIX};

/// Why a remote call did not give an answer to use.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// No HTTP answer (connect, TLS, timeout).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server refused: its status and message.
    #[error("{server}: {status}: {message}")]
    Refused {
        server: String,
        status: StatusCode,
        message: String,
    },
    /// An answer that is not what this baton expects (another version?).
    #[error("{server}: unexpected answer to {path}: {message}")]
    Decode {
        server: String,
        path: String,
        message: String,
    },
}

/// A remote daemon's API.
#[derive(Debug, Clone)]
pub struct Remote {
    endpoint: Endpoint,
    client: Client,
}

/// How long a change may take (an `up` that pulls images).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(3600);

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request that carries out `op`: method, path and JSON body.
pub fn request_of(op: &Operation) -> (Method, String, serde_json::Value) {
    let p = |project: &str, rest: &str| format!("{PREFIX}/projects/{}/{rest}", seg(project));
    match op {
        Operation::Up { project, options } => (
            Method::POST,
            p(&project.name, "up"),
            json!({ "project": project, "options": options }),
        ),
        Operation::Down { project, volumes } => (
            Method::POST,
            p(project, "down"),
            json!({ "volumes": volumes }),
        ),
        Operation::Scale {
            project,
            replicas,
            no_deps,
            spec,
        } => (
            Method::POST,
            p(project, "scale"),
            json!({ "replicas": replicas, "no_deps": no_deps, "project": spec }),
        ),
        Operation::Start { project, services } => (
            Method::POST,
            p(project, "start"),
            json!({ "services": services }),
        ),
        Operation::Stop {
            project,
            services,
            timeout_secs,
        } => (
            Method::POST,
            p(project, "stop"),
            json!({ "services": services, "timeout_secs": timeout_secs }),
        ),
        Operation::Restart {
            project,
            services,
            timeout_secs,
        } => (
            Method::POST,
            p(project, "restart"),
            json!({ "services": services, "timeout_secs": timeout_secs }),
        ),
        Operation::Rollout {
            project,
            service,
            request,
        } => (
            Method::POST,
            p(
                project,
                &format!("services/{}/rollout/{request}", seg(service)),
            ),
            json!({}),
        ),
        Operation::Undo {
            project,
            service,
            to_revision,
        } => (
            Method::POST,
            p(project, &format!("services/{}/rollout/undo", seg(service))),
            json!({ "to_revision": to_revision }),
        ),
        Operation::PipelineRun {
            project,
            pipeline,
            vars,
            rerun_of: Some(run),
            spec,
        } => {
            let _ = (pipeline, vars);
            (
                Method::POST,
                p(project, &format!("pipelines/runs/{run}/rerun")),
                json!({ "project": spec }),
            )
        }
        Operation::PipelineRun {
            project,
            pipeline,
            vars,
            rerun_of: None,
            spec,
        } => (
            Method::POST,
            p(project, &format!("pipelines/{}/run", seg(pipeline))),
            json!({ "vars": vars, "project": spec }),
        ),
        Operation::PipelineCancel { project, run } => (
            Method::POST,
            p(project, &format!("pipelines/runs/{run}/cancel")),
            json!({}),
        ),
        // Not offered through the API (`Remote::execute` refuses them).
        Operation::FleetRun { project, .. } | Operation::Files { project, .. } => {
            (Method::POST, p(project, "fleet"), json!({}))
        }
        Operation::Silence {
            project,
            matchers,
            duration_secs,
            comment,
        } => (
            Method::POST,
            p(project, "silences"),
            json!({ "matchers": matchers, "duration": format!("{duration_secs}s"), "comment": comment }),
        ),
        Operation::Unsilence { project, id } => (
            Method::DELETE,
            p(project, &format!("silences/{}", seg(id))),
            json!({}),
        ),
        Operation::Vm { vm, action } => {
            let v = |rest: &str| format!("{PREFIX}/vms/{}/{rest}", seg(vm));
            match action {
                VmAction::Start => (Method::POST, v("start"), json!({})),
                VmAction::Stop { timeout_secs } => (
                    Method::POST,
                    v("stop"),
                    json!({ "timeout_secs": timeout_secs }),
                ),
                VmAction::Restart { timeout_secs } => (
                    Method::POST,
                    v("restart"),
                    json!({ "timeout_secs": timeout_secs }),
                ),
                VmAction::Snapshot { name, note } => (
                    Method::POST,
                    v("snapshots"),
                    json!({ "name": name, "note": note }),
                ),
                VmAction::Restore { snapshot } => (
                    Method::POST,
                    v(&format!("snapshots/{}/restore", seg(snapshot))),
                    json!({}),
                ),
            }
        }
    }
}

impl Remote {
    /// `url` is `http://HOST:PORT` or `https://HOST:PORT` (then `ca` must trust its
    /// certificate); `token` is sent with every request.
    pub fn new(
        url: &str,
        token: Option<Token>,
        ca: Option<ClientTls>,
    ) -> Result<Remote, RemoteError> {
        Ok(Remote {
            endpoint: Endpoint::parse(url)?,
            client: Client {
                token,
                tls: ca,
                timeout: Duration::from_secs(60),
            },
        })
    }

    pub fn server(&self) -> String {
        self.endpoint.to_string()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<T, RemoteError> {
        let client = Client {
            timeout,
            ..self.client.clone()
        };
        let body = body.map(|b| b.to_string().into_bytes());
        let answer = client.send(&self.endpoint, method, path, body).await?;
        if !answer.status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).trim().to_string());
            return Err(RemoteError::Refused {
                server: self.server(),
                status: answer.status,
                message,
            });
        }
        let body: &[u8] = if answer.body.is_empty() {
            b"null"
        } else {
            &answer.body
        };
        serde_json::from_slice(body).map_err(|e| RemoteError::Decode {
            server: self.server(),
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, RemoteError> {
        self.call(Method::GET, path, None, self.client.timeout)
            .await
    }

    /// Carries out `op` on the remote daemon (audited there under the token's name).
    pub async fn execute(&self, op: &Operation) -> Result<Outcome, RemoteError> {
        let (method, path, body) = request_of(op);
        let t = CHANGE_TIMEOUT;
        Ok(match op {
            Operation::Up { .. } | Operation::Scale { .. } => {
                Outcome::Up(self.call(method, &path, Some(body), t).await?)
            }
            Operation::Down { .. } => Outcome::Down(self.call(method, &path, Some(body), t).await?),
            Operation::Start { .. } | Operation::Stop { .. } | Operation::Restart { .. } => {
                Outcome::Containers(self.call(method, &path, Some(body), t).await?)
            }
            Operation::Rollout { .. } => {
                Outcome::Rollout(self.call(method, &path, Some(body), t).await?)
            }
            Operation::Undo { .. } => Outcome::Undo(self.call(method, &path, Some(body), t).await?),
            Operation::PipelineRun { .. } => {
                let r: crate::RunRef = self.call(method, &path, Some(body), t).await?;
                Outcome::PipelineStarted { run: r.run }
            }
            Operation::PipelineCancel { .. } => {
                let r: crate::RunRef = self.call(method, &path, Some(body), t).await?;
                Outcome::PipelineCancelRequested { run: r.run }
            }
            Operation::FleetRun { .. } | Operation::Files { .. } => {
                let _ = (method, body);
                return Err(RemoteError::Refused {
                    server: self.server(),
                    status: StatusCode::NOT_FOUND,
                    message: format!(
                        "{path}: fleet runs and managed files are not offered through the API"
                    ),
                });
            }
            Operation::Vm { action, .. } => match action {
                VmAction::Start | VmAction::Restart { .. } => {
                    Outcome::VmStarted(self.call(method, &path, Some(body), t).await?)
                }
                VmAction::Stop { .. } => {
                    Outcome::VmStopped(self.call(method, &path, Some(body), t).await?)
                }
                VmAction::Snapshot { .. } => {
                    Outcome::Snapshot(self.call(method, &path, Some(body), t).await?)
                }
                VmAction::Restore { .. } => {
                    let r: crate::Restored = self.call(method, &path, Some(body), t).await?;
                    Outcome::Restored {
                        vm: r.vm,
                        snapshot: r.snapshot,
                    }
                }
            },
            Operation::Silence { .. } => {
                Outcome::Silenced(self.call(method, &path, Some(body), t).await?)
            }
            Operation::Unsilence { .. } => {
                let _ = body;
                let u: crate::Unsilenced = self.call(method, &path, None, t).await?;
                Outcome::Unsilenced { id: u.id }
            }
        })
    }

    pub async fn status(&self) -> Result<serde_json::Value, RemoteError> {
        self.get(&format!("{PREFIX}/status")).await
    }

    pub async fn services(&self, project: &str) -> Result<ServicesView, RemoteError> {
        self.get(&format!("{PREFIX}/projects/{}/services", seg(project)))
            .await
    }

    pub async fn rollouts(
        &self,
        project: &str,
        service: Option<&str>,
    ) -> Result<Vec<RolloutView>, RemoteError> {
        let q = service
            .map(|s| format!("?service={}", seg(s)))
            .unwrap_or_default();
        self.get(&format!("{PREFIX}/projects/{}/rollouts{q}", seg(project)))
            .await
    }

    /// Where the daemon's orchestrator last updated a service; `None` when its target
    /// keeps no services itself.
    pub async fn update_status(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Option<baton_engine::orchestrate::UpdateStatus>, RemoteError> {
        self.get(&format!(
            "{PREFIX}/projects/{}/services/{}/update",
            seg(project),
            seg(service)
        ))
        .await
    }

    /// The edge's listeners, routes and certificates, as JSON (null without routes).
    pub async fn edge(&self) -> Result<serde_json::Value, RemoteError> {
        self.get(&format!("{PREFIX}/edge")).await
    }

    /// The project's proxies with their live metrics, as JSON.
    pub async fn traffic(&self, project: &str) -> Result<Vec<serde_json::Value>, RemoteError> {
        self.get(&format!("{PREFIX}/projects/{}/traffic", seg(project)))
            .await
    }

    /// The newest `limit` events of the project, oldest first.
    pub async fn events(&self, project: &str, limit: i64) -> Result<Vec<Event>, RemoteError> {
        let page: Page<Event> = self
            .get(&format!(
                "{PREFIX}/projects/{}/events?limit={limit}",
                seg(project)
            ))
            .await?;
        let mut items = page.items;
        items.reverse();
        Ok(items)
    }

    pub async fn actions(
        &self,
        project: &str,
        limit: i64,
    ) -> Result<Vec<ActionRecord>, RemoteError> {
        self.get(&format!(
            "{PREFIX}/projects/{}/actions?limit={limit}",
            seg(project)
        ))
        .await
    }

    /// A page of the audit log, newest first.
    pub async fn audit(
        &self,
        project: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Page<AuditView>, RemoteError> {
        let mut q = format!("?limit={limit}");
        if let Some(b) = before {
            q.push_str(&format!("&before={b}"));
        }
        if let Some(p) = project {
            q.push_str(&format!("&project={}", seg(p)));
        }
        self.get(&format!("{PREFIX}/audit{q}")).await
    }
}

impl Remote {
    pub async fn tokens(&self) -> Result<Vec<crate::tokens::TokenView>, RemoteError> {
        self.get(&format!("{PREFIX}/tokens")).await
    }

    pub async fn create_token(
        &self,
        name: &str,
        role: crate::Role,
    ) -> Result<crate::tokens::CreatedToken, RemoteError> {
        let body = json!({ "name": name, "role": role });
        self.call(
            Method::POST,
            &format!("{PREFIX}/tokens"),
            Some(body),
            self.client.timeout,
        )
        .await
    }

    pub async fn revoke_token(&self, name: &str) -> Result<(), RemoteError> {
        let path = format!("{PREFIX}/tokens/{}", seg(name));
        self.call::<serde_json::Value>(Method::DELETE, &path, None, self.client.timeout)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_state::RolloutRequest;

    #[test]
    fn each_operation_is_one_request() {
        let (m, path, body) = request_of(&Operation::Rollout {
            project: "shop".into(),
            service: "web".into(),
            request: RolloutRequest::Promote,
        });
        assert_eq!(
            (m, path.as_str(), body),
            (
                Method::POST,
                "/api/v1/projects/shop/services/web/rollout/promote",
                json!({})
            )
        );
        let (_, path, body) = request_of(&Operation::Stop {
            project: "a b".into(),
            services: vec!["web".into()],
            timeout_secs: Some(3),
        });
        assert_eq!(path, "/api/v1/projects/a%20b/stop");
        assert_eq!(body, json!({"services": ["web"], "timeout_secs": 3}));
        // Every request goes to a route of the table.
        let table = crate::route_table();
        for op in [
            Operation::Down {
                project: "p".into(),
                volumes: true,
            },
            Operation::Undo {
                project: "p".into(),
                service: "s".into(),
                to_revision: None,
            },
        ] {
            let (m, path, _) = request_of(&op);
            assert!(
                table
                    .iter()
                    .any(|r| r.method == m.as_str() && matches(&r.path, &path)),
                "{path}"
            );
        }
    }

    /// Whether a concrete path fits a templated one.
    fn matches(template: &str, path: &str) -> bool {
        let t: Vec<&str> = template.split('/').collect();
        let p: Vec<&str> = path.split('/').collect();
        t.len() == p.len() && t.iter().zip(&p).all(|(a, b)| a.starts_with('{') || a == b)
    }
}
