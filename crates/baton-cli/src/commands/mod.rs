//! One module per subcommand, each a thin call into the spec reader, the engine and the
//! backend; this module dispatches and holds what several commands share.

pub(crate) mod alerts;
pub(crate) mod autoscale;
mod config;
mod down;
mod events;
mod exec;
pub(crate) mod fleet;
mod images;
pub(crate) mod k8s;
mod lifecycle;
mod logs;
mod orchestrated;
pub(crate) mod pipeline;
mod plan;
mod ps;
mod rollout;
mod routes;
mod run;
mod serve;
mod stats;
mod token;
mod up;
pub(crate) mod vm;

use std::collections::BTreeSet;

use anyhow::{anyhow, Result};
use baton_engine::runtime::Observed;
use baton_spec::Project;
use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::context::Context;

pub async fn run(cli: Cli) -> Result<u8> {
    let ctx = Context::new(cli.global)?;
    let remote = ctx.global.server.is_some();
    if remote && !works_remotely(&cli.command) {
        return Err(anyhow!(
            "this command works on this machine only, not with --server (BATON_SERVER); the remote ones are ps, up -d, down, scale, start, stop, restart, rollout, routes, events, audit, token and alerts silence|unsilence"
        ));
    }
    // Commands that change what should run wake a running daemon when done, so it
    // converges at once instead of at its next tick (a remote one wakes itself).
    let changes = !remote
        && matches!(
            cli.command,
            Command::Up(_)
                | Command::Down(_)
                | Command::Start(_)
                | Command::Stop(_)
                | Command::Restart(_)
                | Command::Scale(_)
        );
    let code = dispatch(&ctx, cli.command).await;
    if changes {
        serve::wake(&ctx).await;
    }
    code
}

/// The commands that can go through a remote daemon's API (`--server`).
fn works_remotely(command: &Command) -> bool {
    matches!(
        command,
        Command::Ps(_)
            | Command::Up(_)
            | Command::Down(_)
            | Command::Scale(_)
            | Command::Start(_)
            | Command::Stop(_)
            | Command::Restart(_)
            | Command::Rollout(_)
            | Command::Routes
            | Command::Events(_)
            | Command::Audit(_)
            | Command::Token(_)
            | Command::Alerts(alerts::AlertsArgs {
                action: alerts::AlertsAction::Silence { .. }
                    | alerts::AlertsAction::Unsilence { .. },
            })
            | Command::Config(crate::cli::ConfigArgs { action: None, .. })
            | Command::Completions { .. }
    )
}

async fn dispatch(ctx: &Context, command: Command) -> Result<u8> {
    match command {
        Command::Up(a) => up::run(ctx, a).await,
        Command::Down(a) => down::run(ctx, a).await,
        Command::Plan(a) => plan::run(ctx, a).await,
        Command::Config(a) => match a.action {
            Some(crate::cli::ConfigAction::Drift(d)) => fleet::config_drift(ctx, d).await,
            None => config::run(ctx, a),
        },
        Command::Fleet(a) => fleet::run(ctx, a).await,
        Command::Files(a) => fleet::files(ctx, a).await,
        Command::Ps(a) => ps::run(ctx, a).await,
        Command::Start(a) => lifecycle::start(ctx, a).await,
        Command::Stop(a) => lifecycle::stop(ctx, a).await,
        Command::Restart(a) => lifecycle::restart(ctx, a).await,
        Command::Scale(a) => up::scale(ctx, a).await,
        Command::Events(a) => events::run(ctx, a).await,
        Command::Audit(a) => events::audit(ctx, a).await,
        Command::Token(a) => token::run(ctx, a).await,
        Command::Serve(a) => serve::run(ctx, a).await,
        Command::Rollout(a) => rollout::run(ctx, a).await,
        Command::Routes => routes::run(ctx).await,
        Command::Vm(a) => vm::run(ctx, a).await,
        Command::K8s(a) => k8s::run(ctx, a),
        Command::Pipeline(a) => pipeline::run(ctx, a).await,
        Command::Alerts(a) => alerts::run(ctx, a).await,
        Command::Autoscale(a) => autoscale::run(ctx, a).await,
        Command::Artifacts(a) => pipeline::artifacts(ctx, a).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "baton", &mut std::io::stdout());
            Ok(crate::exit::OK)
        }
        Command::Logs(a) => logs::run(ctx, a).await,
        Command::Exec(a) => exec::run(ctx, a).await,
        Command::Run(a) => run::run(ctx, a).await,
        Command::Build(a) => images::build(ctx, a).await,
        Command::Pull(a) => images::pull(ctx, a).await,
        Command::Push(a) => images::push(ctx, a).await,
        Command::Images(a) => images::images(ctx, a).await,
        Command::Stats(a) => stats::run(ctx, a).await,
    }
}

/// Refuses names of services the project does not have (those of the file when there is
/// one, else those with containers): `no such service: X (did you mean "Y"?)`.
pub fn known_services(
    project: Option<&Project>,
    observed: Option<&Observed>,
    named: &[String],
) -> Result<()> {
    let known: BTreeSet<&str> = match (project, observed) {
        (Some(p), _) => p.services.keys().map(String::as_str).collect(),
        (None, Some(o)) => o.containers.iter().map(|c| c.service.as_str()).collect(),
        (None, None) => return Ok(()),
    };
    known_names(&known.into_iter().collect::<Vec<_>>(), named)
}

/// `no such service: X (did you mean "Y"?)` for the first of `named` not in `known`.
pub fn known_names(known: &[&str], named: &[String]) -> Result<()> {
    for name in named {
        if !known.contains(&name.as_str()) {
            return Err(match baton_spec::suggest(name, known.iter().copied()) {
                Some(hint) => anyhow!("no such service: {name} ({hint})"),
                None => anyhow!("no such service: {name}"),
            });
        }
    }
    Ok(())
}

pub use baton_control::containers_of;
pub use serve::daemon_running;

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
