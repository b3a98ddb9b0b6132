//! `baton serve`: runs the daemon in the foreground until SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::Result;
use baton_daemon::{Supervisor, SupervisorConfig};

use crate::cli::ServeArgs;
use crate::context::Context;

pub async fn run(ctx: &Context, args: ServeArgs) -> Result<u8> {
    let store = ctx.store()?;
    let docker = ctx.docker().await?;
    let config = SupervisorConfig {
        tick: Duration::from_millis(args.tick_ms.max(50)),
        files_dir: ctx.state_dir().join("files"),
    };
    let mut supervisor = Supervisor::new(&docker, &store, config);
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    };
    supervisor.run(shutdown).await;
    Ok(crate::exit::OK)
}
