//! `baton serve`: runs the daemon in the foreground until SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use baton_daemon::{api, Supervisor, SupervisorConfig};

use crate::cli::ServeArgs;
use crate::context::Context;

pub async fn run(ctx: &Context, args: ServeArgs) -> Result<u8> {
    if args.status {
        return status(ctx).await;
    }
    let store = ctx.store()?;
    let docker = ctx.docker().await?;
    let config = SupervisorConfig {
        tick: Duration::from_millis(args.tick_ms.max(50)),
        files_dir: ctx.state_dir().join("files"),
        edge_dir: ctx.state_dir().join("edge"),
    };
    // The local API: one daemon per state directory, refused if another answers.
    let (listener, socket) = api::bind(&ctx.state_dir()).await?;
    let shared = Arc::new(api::Shared::default());
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, shared.clone(), async {
        let _ = api_stopped.await;
    }));
    eprintln!("local API on {}", socket.display());
    super::pipeline::spawn_triggers(ctx, args.hooks_listen).await;
    let mut supervisor = Supervisor::new(&docker, &store, config, shared);
    let shutdown = super::interrupted();
    let pid_file = ctx.state_dir().join(PID_FILE);
    std::fs::write(&pid_file, std::process::id().to_string())?;
    supervisor.run(shutdown).await;
    let _ = stop_api.send(());
    let _ = server.await;
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&pid_file);
    Ok(crate::exit::OK)
}

/// `baton serve --status`: what the running daemon says of itself.
async fn status(ctx: &Context) -> Result<u8> {
    let Some(s) = api::call(&ctx.state_dir(), api::Method::GET, "/v1/status").await else {
        if ctx.global.json {
            crate::output::json(&serde_json::json!({"running": false}))?;
        } else {
            println!(
                "no daemon answers on {}",
                ctx.state_dir().join(api::SOCKET).display()
            );
        }
        return Ok(crate::exit::ERROR);
    };
    if ctx.global.json {
        crate::output::json(&s)?;
        return Ok(crate::exit::OK);
    }
    let now = crate::context::now_ms();
    let up = now.saturating_sub(s["started_at_ms"].as_i64().unwrap_or(now));
    println!(
        "baton serve {} (pid {}), up {}, {} ticks, engine {}",
        s["version"].as_str().unwrap_or("?"),
        s["pid"],
        humantime::format_duration(std::time::Duration::from_secs((up / 1000) as u64)),
        s["ticks"],
        if s["engine_reachable"] == true {
            "reachable"
        } else {
            "unreachable"
        }
    );
    let projects: Vec<&str> = s["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .collect();
    println!(
        "projects: {}",
        if projects.is_empty() {
            "-".to_string()
        } else {
            projects.join(", ")
        }
    );
    let rows: Vec<Vec<String>> = s["proxies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                format!(
                    "{}/{}",
                    p["project"].as_str().unwrap_or(""),
                    p["service"].as_str().unwrap_or("")
                ),
                p["listen"].as_str().unwrap_or("").to_string(),
                p["provider"].as_str().unwrap_or("").to_string(),
                p["backends"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    if !rows.is_empty() {
        crate::output::table(&["SERVICE", "LISTEN", "PROVIDER", "BACKENDS"], &rows);
    }
    Ok(crate::exit::OK)
}

/// Wakes a running daemon so it acts at once on what the caller just recorded in the
/// store; without a daemon this does nothing (its next start reads the store).
pub async fn wake(ctx: &Context) {
    api::wake(&ctx.state_dir()).await;
}

/// Where a running daemon writes its process id.
pub const PID_FILE: &str = "serve.pid";

/// Whether a `baton serve` answers on this state directory's socket.
pub fn daemon_running(ctx: &Context) -> bool {
    std::os::unix::net::UnixStream::connect(ctx.state_dir().join(api::SOCKET)).is_ok()
}
