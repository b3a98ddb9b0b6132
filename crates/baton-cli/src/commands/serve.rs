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
    super::pipeline::spawn_triggers(ctx, args.hooks_listen);
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
    let pid_file = ctx.state_dir().join(PID_FILE);
    std::fs::write(&pid_file, std::process::id().to_string())?;
    supervisor.run(shutdown).await;
    let _ = std::fs::remove_file(&pid_file);
    Ok(crate::exit::OK)
}

/// Where a running daemon writes its process id.
pub const PID_FILE: &str = "serve.pid";

/// Whether a `baton serve` runs for this state directory.
pub fn daemon_running(ctx: &Context) -> bool {
    let Ok(pid) = std::fs::read_to_string(ctx.state_dir().join(PID_FILE)) else {
        return false;
    };
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.iter().any(|a| a.ends_with(b"baton")) && args.contains(&&b"serve"[..])
}
