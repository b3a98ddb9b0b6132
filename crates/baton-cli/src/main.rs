//! The `baton` command: parses the command line and hands each subcommand to its own
//! module, a thin shell over the spec reader, the engine and the backend.

mod cli;
mod commands;
mod context;
mod files;
mod journal;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes, documented in `docs/cli.md`.
pub mod exit {
    /// Success; for `plan`, nothing to do.
    pub const OK: u8 = 0;
    /// Any failure: invalid file, unreachable engine, failed action.
    pub const ERROR: u8 = 1;
    /// `plan`: changes are pending.
    pub const CHANGES: u8 = 2;
    /// The command line itself is wrong.
    pub const USAGE: u8 = 64;
    /// Interrupted by Ctrl-C / SIGTERM.
    pub const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => exit::OK,
                _ => exit::USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(commands::run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}
