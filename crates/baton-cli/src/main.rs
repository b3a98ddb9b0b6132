//! The `baton` command: parses the command line and hands each subcommand to its own
//! module, a thin shell over the spec reader, the engine and the backend.

mod cli;
mod commands;
mod context;
mod door;
mod logging;
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

/// A mistake on the command line found after parsing (an unknown `--target`): exit 64.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Ends quietly when stdout is a pipe that was closed (`baton … | head`), as a program
/// killed by SIGPIPE would: Rust ignores SIGPIPE, so `println!` panics instead.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        // `println!` says "failed printing to stdout: Broken pipe"; writers that
        // `expect` their writes (clap_complete's) show the error's Debug form.
        if message.contains("Broken pipe") || message.contains("BrokenPipe") {
            std::process::exit(128 + 13);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
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
    let serving = matches!(&args.command, cli::Command::Serve(s) if !s.status);
    // Servers say what they do (info); commands only what goes wrong (warn).
    let agent = matches!(&args.command, cli::Command::Vm(v) if matches!(v.action, commands::vm::VmAction::Agent(_)));
    logging::init(args.global.log_format, serving || agent);
    // The daemon answers API clients on worker threads while its loops run on this
    // one; a command has one thing to do.
    let runtime = if serving {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
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
            if e.downcast_ref::<UsageError>().is_some() {
                return ExitCode::from(exit::USAGE);
            }
            ExitCode::from(exit::ERROR)
        }
    }
}
