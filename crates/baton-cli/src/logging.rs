//! The binary's one `tracing` subscriber: log lines on stderr as text or JSON
//! (`--log-format`), which ones from `RUST_LOG` (default `warn`; `info` for the servers,
//! `serve` and `vm agent`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the subscriber; every crate's `tracing` events go through it.
pub fn init(format: LogFormat, serve: bool) {
    let default = if serve { "info" } else { "warn" };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            eprintln!("warning: RUST_LOG={v:?} is not a filter ({e}); using {default}");
            EnvFilter::new(default)
        }),
        _ => EnvFilter::new(default),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = installed {
        eprintln!("warning: cannot install the log subscriber: {e}");
    }
}
