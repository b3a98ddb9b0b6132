//! The command-line grammar: global options and one variant per subcommand, worded for
//! people who know `docker compose`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "baton",
    version,
    about = "Conduct containers from one declarative file (Compose files work as they are)",
    after_help = "Exit codes: 0 ok (plan: nothing to do), 1 error, 2 plan: changes pending, 64 bad command line, 130 interrupted."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Spec file(s), merged in order; default baton.yaml, then compose.yaml, docker-compose.yml
    /// (before the subcommand, as in Compose: `baton -f a.yaml -f b.yaml up`)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name (default: the file's `name:`, else its directory)
    #[arg(
        short = 'p',
        long = "project-name",
        global = true,
        env = "COMPOSE_PROJECT_NAME"
    )]
    pub project_name: Option<String>,
    /// Enable services of this profile (repeatable)
    #[arg(long = "profile", global = true, value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Read variables from this file instead of <project dir>/.env (repeatable)
    #[arg(long = "env-file", global = true, value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Where baton keeps its state database
    #[arg(long, global = true, env = "BATON_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print machine-readable JSON
    #[arg(long, global = true)]
    pub json: bool,
    /// Engine operations in flight at once
    #[arg(long, global = true, default_value_t = 32, value_name = "N")]
    pub parallel: usize,
    /// Use the daemon at URL (`http://HOST:PORT` or `https://HOST:PORT`, `baton serve
    /// --listen`) instead of this machine, with the token in BATON_TOKEN
    #[arg(long, global = true, env = "BATON_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The CA certificate (PEM) that signed an https server's certificate
    #[arg(long, global = true, env = "BATON_SERVER_CA", value_name = "FILE")]
    pub server_ca: Option<PathBuf>,
    /// Act on this target of the file's `targets:` (default `local`: DOCKER_HOST or the
    /// local Docker socket)
    // Its own id: a global's id is shared with every subcommand's arguments, and the
    // fleet commands' host selector is also called `target` (`fleet run all …` set the
    // deploy target to `all`, and with it the state directory).
    #[arg(
        long = "target",
        id = "deploy_target",
        global = true,
        env = "BATON_TARGET",
        value_name = "NAME"
    )]
    pub target: Option<String>,
    /// How log lines look on stderr (RUST_LOG picks which: default warn, info for serve)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start the services, converging to the file
    Up(UpArgs),
    /// Stop and remove the project's containers and networks
    Down(DownArgs),
    /// Show what `up` would do; exit 0 = nothing to do, 2 = changes pending, 1 = error
    Plan(PlanArgs),
    /// Print the resolved, normalised file (it loads back to the same project)
    Config(ConfigArgs),
    /// List the project's containers
    Ps(PsArgs),
    /// Show container output
    Logs(LogsArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Run a one-off command in a new container of a service
    Run(RunArgs),
    /// Start existing containers
    Start(ServicesArgs),
    /// Stop running containers without removing them
    Stop(StopArgs),
    /// Restart containers
    Restart(StopArgs),
    /// Set the number of replicas: SERVICE=N ...
    Scale(ScaleArgs),
    /// Build the images of services with `build:`
    Build(ServicesArgs),
    /// Pull the images of services
    Pull(ServicesArgs),
    /// Push the images of services that have both `build:` and `image:` (as Compose)
    Push(PushArgs),
    /// List the images the project's containers use
    Images(ServicesArgs),
    /// Show resource usage of the project's containers
    Stats(ServicesArgs),
    /// Recorded actions and events of the project
    Events(EventsArgs),
    /// Every change made through the CLI or the API: who, what, when, how it went
    Audit(AuditArgs),
    /// API tokens for `baton serve --listen`: create (printed once), ls, revoke
    Token(TokenArgs),
    /// Run the daemon: keep every project brought up with `up` running (replicas that
    /// are killed, removed or unhealthy come back, with backoff)
    Serve(ServeArgs),
    /// Rollouts of services whose traffic baton manages: status, promote, abort, resume,
    /// history, undo
    Rollout(RolloutArgs),
    /// What the daemon's edge serves: hosts, paths, targets, certificates and their expiry
    Routes,
    /// Alerts of the file's `alerts:` rules as the daemon evaluates them: ls, history,
    /// silence, unsilence, test RECEIVER
    Alerts(crate::commands::alerts::AlertsArgs),
    /// What the daemon's autoscaler decided for a service, and why
    Autoscale(crate::commands::autoscale::AutoscaleArgs),
    /// Pipelines: run a DAG of jobs, list, history, show, logs, rerun
    Pipeline(crate::commands::pipeline::PipelineArgs),
    /// Artifacts pipeline jobs kept: ls, get
    Artifacts(crate::commands::pipeline::ArtifactsArgs),
    /// SSH fleets: ad-hoc commands, runbooks, ping, facts, inventory, recorded runs
    Fleet(crate::commands::fleet::FleetArgs),
    /// Managed files (`files:`): apply, versions, diff, rollback, drift
    Files(crate::commands::fleet::FilesArgs),
    /// Virtual machines on QEMU: lifecycle, snapshots, migration, agent, report
    Vm(crate::commands::vm::VmArgs),
    /// Kubernetes: the project as manifests (render)
    K8s(crate::commands::k8s::K8sArgs),
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Detached: return once everything is started (no log attach)
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Build images before starting, even when present
    #[arg(long)]
    pub build: bool,
    /// Recreate containers even if their configuration is unchanged
    #[arg(long, conflicts_with = "no_recreate")]
    pub force_recreate: bool,
    /// Never recreate existing containers
    #[arg(long)]
    pub no_recreate: bool,
    /// Remove containers of services no longer in the file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Don't start the named services' dependencies
    #[arg(long)]
    pub no_deps: bool,
    /// SERVICE=N, overriding deploy.replicas
    #[arg(long, value_name = "SERVICE=N", value_parser = parse_scale)]
    pub scale: Vec<(String, u32)>,
    /// Seconds to wait for depends_on conditions
    #[arg(long, default_value_t = 300)]
    pub wait_timeout: u64,
    /// Return as soon as rollouts are handed to the daemon, without waiting for them
    #[arg(long)]
    pub no_wait: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    /// Also remove the project's named volumes
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Accepted for Compose compatibility: down always removes every container of the project
    #[arg(long)]
    pub remove_orphans: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[arg(long)]
    pub remove_orphans: bool,
    #[arg(long)]
    pub force_recreate: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Only print service names
    #[arg(long)]
    pub services: bool,
    /// Only validate; print nothing
    #[arg(short, long)]
    pub quiet: bool,
    #[command(subcommand)]
    pub action: Option<ConfigAction>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ConfigAction {
    /// Compare managed files (`files:`) on their hosts with the version they last received
    Drift(crate::commands::fleet::DriftArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PsArgs {
    /// Also one-off containers from `baton run`
    #[arg(short, long)]
    pub all: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    #[arg(short, long)]
    pub follow: bool,
    /// Lines from the end of each log
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    #[arg(short, long)]
    pub timestamps: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Don't allocate a TTY
    #[arg(short = 'T', long = "no-tty")]
    pub no_tty: bool,
    #[arg(short, long = "env", value_name = "KEY=VAL")]
    pub env: Vec<String>,
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Which replica
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    #[arg(short = 'T', long = "no-tty")]
    pub no_tty: bool,
    #[arg(short, long = "env", value_name = "KEY=VAL")]
    pub env: Vec<String>,
    #[arg(long)]
    pub entrypoint: Option<String>,
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Don't start dependencies
    #[arg(long)]
    pub no_deps: bool,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// Push what can be pushed: failures are reported and the exit code stays 0
    #[arg(long)]
    pub ignore_push_failures: bool,
    /// Also push the images of the services the named ones depend on
    #[arg(long)]
    pub include_deps: bool,
    /// Print no progress
    #[arg(short, long)]
    pub quiet: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServicesArgs {
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing (default: each service's stop_grace_period)
    #[arg(short, long)]
    pub timeout: Option<u64>,
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    #[arg(required = true, value_name = "SERVICE=N", value_parser = parse_scale)]
    pub scales: Vec<(String, u32)>,
    #[arg(long)]
    pub no_deps: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: RolloutAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RolloutAction {
    /// The running (or last) rollout of a service: phase, traffic split, replicas
    Status { service: String },
    /// Skip the remaining pauses and steps: go to 100% now
    Promote { service: String },
    /// Roll back the running or paused rollout
    ///
    /// A paused update rolls back to the previous configuration; a paused rollback goes
    /// on rolling back. Exits 0 once rolled back.
    Abort { service: String },
    /// Go on with a paused rollout from where it stopped
    ///
    /// A paused rolling update stops its failed new replicas, starts as many again and
    /// carries on with its remaining batches, with the same health gating; a second
    /// failure pauses it again (or follows failure_action). A paused rollback goes on
    /// rolling back. Refused (exit 1) when the service's newest rollout is not paused.
    Resume { service: String },
    /// Every rollout of a service
    History { service: String },
    /// Roll the service back to an earlier revision's configuration (default: the last
    /// one that differs from what runs now)
    Undo {
        service: String,
        #[arg(long, value_name = "N")]
        to_revision: Option<i64>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Milliseconds between two looks at the world
    #[arg(long, default_value_t = 500)]
    pub tick_ms: u64,
    /// Ask the running daemon (over its socket) what it serves, instead of starting one
    #[arg(long)]
    pub status: bool,
    /// Serve pipeline webhooks (`POST /hooks/NAME`) on this address, e.g. 127.0.0.1:9090
    #[arg(long, value_name = "ADDR")]
    pub hooks_listen: Option<std::net::SocketAddr>,
    /// Serve the HTTP API (/api/v1) on this address, e.g. 127.0.0.1:7430; needs a token
    /// (`baton token create`), and TLS off loopback
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// The API's TLS certificate chain (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_key", requires = "listen")]
    pub tls_cert: Option<PathBuf>,
    /// The API's TLS private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How often the metrics are sampled into the history (`<state dir>/metrics`)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
    pub sample_interval: std::time::Duration,
    /// How long the metrics history is kept
    #[arg(long, value_name = "DURATION", default_value = "14d", value_parser = parse_interval)]
    pub retention: std::time::Duration,
    /// Follow the VM agent at HOST:PORT or https://HOST:PORT (repeatable): its VMs'
    /// events (starts, migrations, failovers, snapshots) join this daemon's event stream
    #[arg(long = "agent", value_name = "ADDR")]
    pub agents: Vec<String>,
    /// File holding the agents' bearer token (default: $BATON_AGENT_TOKEN)
    #[arg(long, value_name = "FILE")]
    pub agent_token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the agents' certificates; HOST:PORT addresses
    /// then use TLS
    #[arg(long, value_name = "FILE", env = "BATON_AGENT_CA")]
    pub agent_ca: Option<PathBuf>,
    /// This daemon's certificate (PEM) for agents that ask for one (mutual TLS)
    #[arg(long, value_name = "FILE", env = "BATON_AGENT_CLIENT_CERT")]
    pub agent_client_cert: Option<PathBuf>,
    /// The private key (PEM) of --agent-client-cert
    #[arg(long, value_name = "FILE", env = "BATON_AGENT_CLIENT_KEY")]
    pub agent_client_key: Option<PathBuf>,
}

/// A duration such as `10s`, `500ms` or `14d`, at least a millisecond.
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_millis(1) {
        return Err("must be at least 1ms".into());
    }
    Ok(d)
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// How many of the newest entries
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// The project's audit entries (who changed what) instead
    #[arg(long)]
    pub audit: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// How many entries, newest first
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Only entries older than this id (the previous page's last)
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub action: TokenAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenAction {
    /// Make a token and print it (only now: only its digest is kept)
    Create {
        name: String,
        /// viewer (reads), operator (reads and changes), admin (and tokens, audit)
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
    },
    /// The tokens: name, role, when made and last used (never the token)
    Ls,
    /// Revoke a token: it stops working within a second
    Revoke { name: String },
}

/// `SERVICE=N`: a bad one is a command-line error (exit 64), as any other flag's.
fn parse_scale(s: &str) -> Result<(String, u32), String> {
    let (service, n) = s
        .split_once('=')
        .ok_or_else(|| format!("expected SERVICE=N, got {s:?}"))?;
    if service.is_empty() {
        return Err(format!("expected SERVICE=N, got {s:?}: no service"));
    }
    let n = n
        .parse()
        .map_err(|_| format!("expected SERVICE=N with N a number of replicas, got {s:?}"))?;
    Ok((service.to_string(), n))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_fleet_host_selector_is_not_the_deploy_target() {
        let cli = Cli::try_parse_from(["baton", "fleet", "run", "all", "--", "true"]).unwrap();
        assert_eq!(cli.global.target, None);
        let cli =
            Cli::try_parse_from(["baton", "--target", "lab", "fleet", "ping", "web"]).unwrap();
        assert_eq!(cli.global.target.as_deref(), Some("lab"));
        let cli = Cli::try_parse_from(["baton", "up", "--target", "lab"]).unwrap();
        assert_eq!(cli.global.target.as_deref(), Some("lab"));
    }

    #[test]
    fn compose_style_command_lines_parse() {
        let cli = Cli::try_parse_from([
            "baton", "-f", "a.yaml", "-f", "b.yaml", "-p", "x", "logs", "-f", "web",
        ])
        .unwrap();
        assert_eq!(cli.global.files.len(), 2);
        assert!(matches!(
            cli.command,
            Command::Logs(LogsArgs { follow: true, .. })
        ));
        let cli =
            Cli::try_parse_from(["baton", "exec", "-T", "web", "sh", "-c", "exit 3"]).unwrap();
        let Command::Exec(e) = cli.command else {
            panic!("exec")
        };
        assert_eq!(e.command, vec!["sh", "-c", "exit 3"]);
        assert!(Cli::try_parse_from(["baton", "up", "--force-recreate", "--no-recreate"]).is_err());
    }

    #[test]
    fn scales_are_checked_by_the_grammar() {
        let cli = Cli::try_parse_from(["baton", "scale", "web=3", "db=0"]).unwrap();
        let Command::Scale(s) = cli.command else {
            panic!("scale")
        };
        assert_eq!(s.scales, [("web".to_string(), 3), ("db".to_string(), 0)]);
        for bad in ["web=abc", "web", "=2", "web=-1"] {
            let e = Cli::try_parse_from(["baton", "scale", bad]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
        assert!(Cli::try_parse_from(["baton", "up", "--scale", "web=x"]).is_err());
    }
}
