//! Where a command's request goes: the control plane on this machine, or a remote
//! daemon's API (`--server`). A command builds the same `Operation` or read either way
//! and prints the same answer.

use anyhow::{anyhow, Context as _, Result};
use baton_api::remote::Remote;
use baton_api::tokens::{CreatedToken, Role, TokenView};
use baton_api::AuditView;
use baton_control::{Actor, ExecSettings, Operation, Outcome, RolloutView, ServicesView, Watch};
use baton_engine::orchestrate::UpdateStatus;
use baton_state::{ActionRecord, Event};

use crate::context::Context;

pub enum Door<'a> {
    Local(&'a Context),
    Remote(Remote),
}

/// Who the `baton` command acts as: `cli:<user>`, the account's name (its uid when the
/// account has none).
pub fn actor() -> Actor {
    let uid = nix::unistd::getuid();
    let user = match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    };
    Actor::cli(&user)
}

/// Records in the audit log a change a command carried out in its own steps (a
/// pipeline run with live output, VMs on this host), as `cli:<user>`; returns `result`.
pub fn audited<R, T, E: std::fmt::Display>(
    control: &baton_control::Control<R>,
    op: &Operation,
    result: std::result::Result<T, E>,
    said: impl FnOnce(&T) -> String,
) -> std::result::Result<T, E> {
    match &result {
        Ok(t) => control.audit_change(&actor(), op, true, &said(t)),
        Err(e) => control.audit_change(&actor(), op, false, &e.to_string()),
    }
    result
}

impl<'a> Door<'a> {
    /// The door the global options choose: `--server` (with `BATON_TOKEN`), or local.
    pub fn open(ctx: &'a Context) -> Result<Door<'a>> {
        let Some(url) = &ctx.global.server else {
            return Ok(Door::Local(ctx));
        };
        if let Some(target) = ctx.global.target.as_deref().filter(|t| !t.is_empty()) {
            // A daemon acts on the target it was started with; never ignore one silently.
            return Err(anyhow::Error::new(crate::UsageError(format!(
                "--target {target} and --server {url}: the daemon acts on the target it was \
                 started with (`baton --target {target} serve`); give one of them"
            ))));
        }
        let token = match std::env::var("BATON_TOKEN") {
            Ok(t) if !t.trim().is_empty() => {
                Some(baton_http::Token::new(&t).map_err(|e| anyhow!("BATON_TOKEN: {e}"))?)
            }
            _ => None,
        };
        let ca = match &ctx.global.server_ca {
            Some(f) => Some(baton_http::ClientTls::from_ca_file(f)?),
            None => None,
        };
        if token.is_none() {
            return Err(anyhow!(
                "--server {url}: set BATON_TOKEN to a token the server knows (`baton token create NAME --role operator` on the server)"
            ));
        }
        Ok(Door::Remote(
            Remote::new(url, token, ca).with_context(|| format!("--server {url}"))?,
        ))
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Door::Remote(_))
    }

    /// Carries out a change (audited as `cli:<user>` here, as the token's name there).
    pub async fn execute(&self, op: Operation, watch: &dyn Watch) -> Result<Outcome> {
        match self {
            Door::Local(ctx) => {
                let control = ctx.control().await?;
                let settings = ExecSettings {
                    parallelism: ctx.global.parallel,
                    daemon_running: crate::commands::daemon_running(ctx),
                    containers: None,
                };
                Ok(control.execute(&actor(), &op, &settings, watch).await?)
            }
            Door::Remote(r) => Ok(r.execute(&op).await?),
        }
    }

    pub async fn services(&self, project: &str) -> Result<ServicesView> {
        match self {
            Door::Local(ctx) => Ok(ctx.control().await?.services(project).await?),
            Door::Remote(r) => Ok(r.services(project).await?),
        }
    }

    /// Where the target's orchestrator last updated a service; `None` on a target that
    /// keeps no services itself (the daemon's rollouts say it there).
    pub async fn update_status(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Option<UpdateStatus>> {
        match self {
            // A Docker engine has no orchestrator: no need to reach it.
            Door::Local(ctx)
                if matches!(ctx.target()?.kind, baton_backend::TargetKind::Docker { .. }) =>
            {
                Ok(None)
            }
            Door::Local(ctx) => Ok(ctx.control().await?.update_status(project, service).await?),
            Door::Remote(r) => Ok(r.update_status(project, service).await?),
        }
    }

    /// The project's rollouts (of one service when given), oldest first.
    pub async fn rollouts(&self, project: &str, service: Option<&str>) -> Result<Vec<RolloutView>> {
        match self {
            Door::Local(ctx) => Ok(ctx
                .store()?
                .rollouts(project, service)?
                .iter()
                .map(RolloutView::from_record)
                .collect()),
            Door::Remote(r) => Ok(r.rollouts(project, service).await?),
        }
    }

    /// The edge as the daemon reports it (`null` while no project has routes); `None`
    /// when no daemon answers on this machine's socket.
    pub async fn edge(&self) -> Result<Option<serde_json::Value>> {
        match self {
            Door::Local(ctx) => Ok(baton_daemon::api::call(
                &ctx.state_dir(),
                baton_daemon::api::Method::GET,
                "/v1/edge",
            )
            .await),
            Door::Remote(r) => Ok(Some(r.edge().await?)),
        }
    }

    /// The project's proxies with live metrics, from the daemon (nothing without one).
    pub async fn traffic(&self, project: &str) -> Vec<serde_json::Value> {
        match self {
            Door::Local(ctx) => baton_daemon::api::call(
                &ctx.state_dir(),
                baton_daemon::api::Method::GET,
                &format!("/v1/projects/{project}/traffic"),
            )
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default(),
            Door::Remote(r) => r.traffic(project).await.unwrap_or_default(),
        }
    }

    /// The newest `limit` actions and events of the project, oldest first.
    pub async fn events(
        &self,
        project: &str,
        limit: i64,
    ) -> Result<(Vec<ActionRecord>, Vec<Event>)> {
        match self {
            Door::Local(ctx) => {
                let store = ctx.store()?;
                Ok((
                    store.actions(project, limit)?,
                    store.events(project, limit)?,
                ))
            }
            Door::Remote(r) => Ok((
                r.actions(project, limit).await?,
                r.events(project, limit).await?,
            )),
        }
    }

    /// A page of the audit log (of one project when given), newest first.
    pub async fn audit(
        &self,
        project: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<AuditView>, Option<i64>)> {
        match self {
            Door::Local(ctx) => {
                let rows = ctx.store()?.audit_page(project, before, limit + 1)?;
                let page = baton_api::input::Page::from_rows(rows, limit, |e| e.id);
                Ok((
                    page.items.into_iter().map(AuditView::from).collect(),
                    page.next,
                ))
            }
            Door::Remote(r) => {
                let page = r.audit(project, before, limit).await?;
                Ok((page.items, page.next))
            }
        }
    }

    pub async fn create_token(&self, name: &str, role: Role) -> Result<CreatedToken> {
        match self {
            Door::Local(ctx) => Ok(baton_api::tokens::create(
                &ctx.store()?,
                &actor().0,
                name,
                role,
                crate::context::now_ms(),
            )?),
            Door::Remote(r) => Ok(r.create_token(name, role).await?),
        }
    }

    pub async fn tokens(&self) -> Result<Vec<TokenView>> {
        match self {
            Door::Local(ctx) => Ok(baton_api::tokens::list(&ctx.store()?)?),
            Door::Remote(r) => Ok(r.tokens().await?),
        }
    }

    pub async fn revoke_token(&self, name: &str) -> Result<()> {
        match self {
            Door::Local(ctx) => Ok(baton_api::tokens::revoke(
                &ctx.store()?,
                &actor().0,
                name,
                crate::context::now_ms(),
            )?),
            Door::Remote(r) => Ok(r.revoke_token(name).await?),
        }
    }
}
