//! `baton fleet` (run, runbook, ping, facts, inventory, runs), `baton files` (apply,
//! versions, diff, rollback, drift) and `baton config drift`: thin shells over
//! `baton_fleet`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use baton_fleet::files::FileReport;
use baton_fleet::inventory::{self, Inventory};
use baton_fleet::report::{HostStatus, RunReport};
use baton_fleet::ssh::SshOptions;
use baton_fleet::{run, runbook, select, Batch, OnFailure, RunOptions, Strategy, Task};
use baton_spec::Project;
use clap::{Args, Subcommand};

use crate::context::Context;

#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub action: FleetAction,
}

#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Read hosts from an Ansible inventory (INI or YAML) instead of the file's `hosts:`
    #[arg(short = 'i', long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// known_hosts file host keys are checked against
    #[arg(long, env = "BATON_KNOWN_HOSTS", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Trust and record host keys not yet in known_hosts (changed keys are always refused)
    #[arg(long)]
    pub accept_new: bool,
    /// Private key for hosts without their own `key` (else the ssh-agent of SSH_AUTH_SOCK,
    /// else ~/.ssh/id_ed25519)
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Seconds to connect, check the host key and authenticate
    #[arg(
        long,
        env = "BATON_CONNECT_TIMEOUT",
        default_value_t = 10,
        value_name = "SECS"
    )]
    pub connect_timeout: u64,
    /// Hosts worked on at once
    #[arg(long, value_name = "N")]
    pub forks: Option<usize>,
}

#[derive(Debug, Clone, Args)]
pub struct SchedArgs {
    /// parallel (bounded by --forks), sequential, or rolling (in --batch waves)
    #[arg(long, value_name = "STRATEGY")]
    pub strategy: Option<Strategy>,
    /// Rolling batch: a count (5) or a share of the hosts (25%)
    #[arg(long, value_name = "N|N%")]
    pub batch: Option<Batch>,
    /// Pause between rolling waves (2s, 1m)
    #[arg(long, value_name = "DURATION")]
    pub pause: Option<String>,
    /// stop: start nothing new once a host fails; continue: the others go on; ignore:
    /// failed steps are recorded and hosts go on
    #[arg(long, value_name = "POLICY")]
    pub on_failure: Option<OnFailure>,
    /// Abort when more than this share of a wave's hosts failed
    #[arg(long, value_name = "P")]
    pub max_fail_percentage: Option<u8>,
    /// Dry run: show what would change (with diffs), change nothing
    #[arg(long)]
    pub check: bool,
    /// Seconds any one command may take
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum FleetAction {
    /// Run an ad-hoc command on hosts: baton fleet run TARGET -- CMD ARGS...
    Run {
        /// all, a host id, a group, role:R, tag:T; `a,b` union, `a:&b` intersection, `a:!b` exclusion
        target: String,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        sched: SchedArgs,
        /// The command and its arguments (each argument is quoted for the remote shell)
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Run a runbook from `x-baton.runbooks`
    Runbook {
        name: String,
        /// Narrow the runbook's own hosts to those this selector also picks (Ansible's
        /// `--limit`; `--target` names a deploy target)
        #[arg(long = "limit", value_name = "SELECTOR")]
        target: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        sched: SchedArgs,
    },
    /// Check that hosts can be reached and logged into
    Ping {
        target: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// CPU, memory, disk and load of hosts, read from /proc and df
    Facts {
        target: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List hosts (and the groups, roles and tags selectors can use)
    Inventory {
        #[arg(default_value = "all")]
        target: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Recorded runs, newest first; with an id, that run's full report
    Runs {
        id: Option<i64>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Debug, Clone, Args)]
pub struct FilesArgs {
    #[command(subcommand)]
    pub action: FilesAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum FilesAction {
    /// Validate, version and write managed files (all, or the ones named)
    Apply {
        names: Vec<String>,
        /// Show diffs; change nothing, record no version
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Every stored version of a file
    Versions { name: String },
    /// Unified diff between two versions (default: the last two)
    Diff {
        name: String,
        from: Option<i64>,
        to: Option<i64>,
    },
    /// Put version N back on the file's hosts: its exact bytes and mode
    Rollback {
        name: String,
        #[arg(long, value_name = "N")]
        to: i64,
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Compare hosts' files with the version they last received
    Drift(DriftArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DriftArgs {
    pub names: Vec<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

use baton_control::DEFAULT_FORKS;

fn ssh_options(conn: &ConnArgs) -> SshOptions {
    let known_hosts = conn.known_hosts.clone().unwrap_or_else(|| {
        dirs::home_dir()
            .unwrap_or_else(|| PathBuf::from("/root"))
            .join(".ssh/known_hosts")
    });
    SshOptions {
        known_hosts,
        accept_new: conn.accept_new,
        identity: conn.identity.clone(),
        agent_sock: SshOptions::agent_sock_from_env(),
        default_identity: SshOptions::default_identity_from_home(),
        connect_timeout: Duration::from_secs(conn.connect_timeout.max(1)),
    }
}

/// The project when a file is there (needed for runbooks and managed files; optional
/// with --inventory), and the name runs are recorded under.
fn project(ctx: &Context, required: bool) -> Result<(Option<Project>, String)> {
    match ctx.project(&[]) {
        Ok(p) => {
            let n = p.name.clone();
            Ok((Some(p), n))
        }
        Err(e) if required => Err(e),
        Err(_) => Ok((
            None,
            ctx.global
                .project_name
                .clone()
                .unwrap_or_else(|| "fleet".into()),
        )),
    }
}

fn load_inventory(conn: &ConnArgs, project: Option<&Project>) -> Result<Inventory> {
    match (&conn.inventory, project) {
        (Some(f), _) => Ok(inventory::from_file(f)?),
        (None, Some(p)) => Ok(inventory::from_project(p)?),
        (None, None) => {
            bail!("no hosts: write a `hosts:` section in baton.yaml or pass --inventory FILE")
        }
    }
}

fn options(
    ctx: &Context,
    conn: &ConnArgs,
    sched: &SchedArgs,
    rb: Option<&runbook::Runbook>,
) -> Result<RunOptions> {
    let overrides = baton_control::FleetOverrides {
        strategy: sched.strategy,
        batch: sched.batch,
        pause: sched.pause.clone(),
        on_failure: sched.on_failure,
        max_fail_percentage: sched.max_fail_percentage,
        forks: conn.forks,
        check: sched.check,
        command_timeout: sched.timeout.map(Duration::from_secs),
    };
    Ok(ctx
        .control_of_store()?
        .fleet_options(&overrides, rb, ssh_options(conn), ctx.cwd.clone())?)
}

/// Records the run and prints its report.
fn finish(ctx: &Context, name: &str, report: RunReport) -> Result<u8> {
    let control = ctx.control_of_store()?;
    let op = baton_control::Operation::FleetRun {
        project: name.to_string(),
        kind: report.kind.clone(),
        task: report.task.clone(),
        target: report.target.clone(),
    };
    let report =
        crate::door::audited(&control, &op, control.record_fleet_run(name, report), |r| {
            format!("{}: {} host(s)", r.outcome, r.hosts.len())
        })?;
    if ctx.global.json {
        crate::output::json(&report)?;
    } else {
        print!("{}", report.render());
    }
    Ok(if report.success() {
        crate::exit::OK
    } else {
        crate::exit::ERROR
    })
}

pub async fn run(ctx: &Context, args: FleetArgs) -> Result<u8> {
    match args.action {
        FleetAction::Run {
            target,
            conn,
            sched,
            command,
        } => {
            let (p, name) = project(ctx, conn.inventory.is_none())?;
            let inv = load_inventory(&conn, p.as_ref())?;
            let opts = options(ctx, &conn, &sched, None)?;
            let report = run::run(&inv, &target, &Task::Adhoc(command), &opts).await?;
            finish(ctx, &name, report)
        }
        FleetAction::Runbook {
            name: book,
            target,
            conn,
            sched,
        } => {
            let (p, name) = project(ctx, true)?;
            let p = p.ok_or_else(|| anyhow!("runbooks live in the spec file"))?;
            let inv = load_inventory(&conn, Some(&p))?;
            let control = ctx.control_of_store()?;
            let (rb, target) = control.runbook(&p, &book, target.as_deref())?;
            let opts = options(ctx, &conn, &sched, Some(&rb))?;
            let report = run::run(&inv, &target, &Task::Runbook(rb), &opts).await?;
            finish(ctx, &name, report)
        }
        FleetAction::Ping { target, conn } => {
            let (p, name) = project(ctx, conn.inventory.is_none())?;
            let inv = load_inventory(&conn, p.as_ref())?;
            let sched = SchedArgs {
                strategy: None,
                batch: None,
                pause: None,
                on_failure: Some(OnFailure::Continue),
                max_fail_percentage: None,
                check: false,
                timeout: Some(30),
            };
            let opts = options(ctx, &conn, &sched, None)?;
            let mut report =
                run::run(&inv, &target, &Task::Adhoc(vec!["true".into()]), &opts).await?;
            report.kind = "ping".into();
            for h in &mut report.hosts {
                if h.status == HostStatus::Changed {
                    h.status = HostStatus::Ok;
                    h.output_tail = "pong".into();
                }
            }
            report.summarise();
            finish(ctx, &name, report)
        }
        FleetAction::Facts { target, conn } => {
            let (p, name) = project(ctx, conn.inventory.is_none())?;
            let inv = load_inventory(&conn, p.as_ref())?;
            let ids = select::select(&inv, &target)?;
            let ssh = ssh_options(&conn);
            baton_fleet::ssh::check_auth(&inv, ids.iter().filter_map(|i| inv.hosts.get(i)), &ssh)?;
            let facts =
                baton_fleet::facts::gather(&inv, &ids, &ssh, conn.forks.unwrap_or(DEFAULT_FORKS))
                    .await;
            // Kept for the daemon's host series and alerts; a store that cannot take
            // them does not hide what was gathered.
            if let Err(e) = ctx
                .control_of_store()
                .and_then(|c| Ok(c.record_facts(&name, &facts)?))
            {
                tracing::warn!("cannot record the hosts' facts: {e}");
            }
            let ok = facts.iter().all(|f| f.error.is_none());
            if ctx.global.json {
                crate::output::json(&facts)?;
            } else {
                let rows: Vec<Vec<String>> = facts
                    .iter()
                    .map(|h| match (&h.facts, &h.error) {
                        (Some(f), _) => vec![
                            h.host.clone(),
                            f.hostname.clone(),
                            f.cpus.to_string(),
                            format!("{:.1}%", f.cpu_percent),
                            format!("{:.2} {:.2} {:.2}", f.load[0], f.load[1], f.load[2]),
                            format!(
                                "{}/{} MiB",
                                (f.mem_total_kb - f.mem_available_kb.min(f.mem_total_kb)) / 1024,
                                f.mem_total_kb / 1024
                            ),
                            format!(
                                "{}/{} GiB",
                                f.disk_used_kb / 1048576,
                                f.disk_total_kb / 1048576
                            ),
                        ],
                        (None, e) => vec![
                            h.host.clone(),
                            format!("unreachable: {}", e.clone().unwrap_or_default()),
                        ],
                    })
                    .collect();
                crate::output::table(
                    &[
                        "HOST",
                        "HOSTNAME",
                        "CPUS",
                        "CPU",
                        "LOAD",
                        "MEMORY USED",
                        "DISK USED /",
                    ],
                    &rows,
                );
            }
            Ok(if ok {
                crate::exit::OK
            } else {
                crate::exit::ERROR
            })
        }
        FleetAction::Inventory { target, conn } => {
            let (p, _) = project(ctx, conn.inventory.is_none())?;
            let inv = load_inventory(&conn, p.as_ref())?;
            let ids = select::select(&inv, &target)?;
            let hosts: Vec<&baton_fleet::Host> =
                ids.iter().filter_map(|i| inv.hosts.get(i)).collect();
            if ctx.global.json {
                crate::output::json(&serde_json::json!({"hosts": hosts, "groups": inv.groups()}))?;
            } else {
                let rows: Vec<Vec<String>> = hosts
                    .iter()
                    .map(|h| {
                        vec![
                            h.id.clone(),
                            format!("{}@{}:{}", h.user, h.address, h.port),
                            h.role.clone().unwrap_or_default(),
                            h.groups.iter().cloned().collect::<Vec<_>>().join(","),
                            h.tags.iter().cloned().collect::<Vec<_>>().join(","),
                        ]
                    })
                    .collect();
                crate::output::table(&["HOST", "ADDRESS", "ROLE", "GROUPS", "TAGS"], &rows);
            }
            Ok(crate::exit::OK)
        }
        FleetAction::Runs { id, limit } => {
            let (_, name) = project(ctx, false)?;
            let store = ctx.store()?;
            let runs = store.fleet_runs(&name, if id.is_some() { i64::MAX } else { limit })?;
            if let Some(id) = id {
                let r = runs
                    .into_iter()
                    .find(|r| r.id == id)
                    .ok_or_else(|| anyhow!("no run {id} in project {name}"))?;
                let mut report: RunReport = serde_json::from_str(&r.report_json)?;
                report.id = Some(r.id);
                if ctx.global.json {
                    crate::output::json(&report)?;
                } else {
                    print!("{}", report.render());
                }
                return Ok(crate::exit::OK);
            }
            if ctx.global.json {
                let v: Vec<serde_json::Value> = runs
                    .iter()
                    .map(|r| {
                        serde_json::from_str::<serde_json::Value>(&r.report_json)
                            .unwrap_or_default()
                    })
                    .collect();
                crate::output::json(&v)?;
            } else {
                let rows: Vec<Vec<String>> = runs
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            crate::output::time(r.started_at),
                            r.kind.clone(),
                            r.task.clone(),
                            r.target.clone(),
                            r.strategy.clone(),
                            format!("{:.2}s", (r.finished_at - r.started_at) as f64 / 1000.0),
                            r.outcome.clone(),
                        ]
                    })
                    .collect();
                crate::output::table(
                    &[
                        "ID", "STARTED", "KIND", "TASK", "TARGET", "STRATEGY", "DURATION",
                        "OUTCOME",
                    ],
                    &rows,
                );
            }
            Ok(crate::exit::OK)
        }
    }
}

fn print_file_reports(ctx: &Context, reports: &[FileReport]) -> Result<u8> {
    if ctx.global.json {
        crate::output::json(&reports)?;
    } else {
        for r in reports {
            println!(
                "{} {}{}{}",
                r.operation,
                r.name,
                r.version
                    .map(|v| format!(" version {v}{}", if r.new_version { " (new)" } else { "" }))
                    .unwrap_or_default(),
                if r.check { " [check mode]" } else { "" }
            );
            let rows: Vec<Vec<String>> = r
                .hosts
                .iter()
                .map(|h| {
                    vec![
                        h.host.clone(),
                        h.status.clone(),
                        h.path.clone(),
                        h.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            crate::output::table(&["HOST", "STATUS", "PATH", "NOTE"], &rows);
            for h in &r.hosts {
                if !h.diff.is_empty() {
                    println!("--- {} ---", h.host);
                    print!("{}", h.diff);
                }
            }
        }
    }
    Ok(if reports.iter().all(FileReport::success) {
        crate::exit::OK
    } else {
        crate::exit::ERROR
    })
}

fn files_target<'a>(
    inv: &'a Inventory,
    ssh: &'a SshOptions,
    conn: &ConnArgs,
) -> baton_control::FilesTarget<'a> {
    baton_control::FilesTarget {
        inventory: inv,
        ssh,
        forks: conn.forks.unwrap_or(DEFAULT_FORKS),
    }
}

pub async fn files(ctx: &Context, args: FilesArgs) -> Result<u8> {
    let p = ctx.project(&[])?;
    let store = ctx.store()?;
    match args.action {
        FilesAction::Apply { names, check, conn } => {
            let control = ctx.control_of_store()?;
            // Validated before any host is touched (the inventory too).
            control.managed_files(&p, &names)?;
            let inv = load_inventory(&conn, Some(&p))?;
            let ssh = ssh_options(&conn);
            let target = files_target(&inv, &ssh, &conn);
            let op = baton_control::Operation::Files {
                project: p.name.clone(),
                action: "apply".into(),
                files: names.clone(),
                check,
            };
            let reports = crate::door::audited(
                &control,
                &op,
                control.files_apply(&p, &names, check, &target).await,
                |r| format!("{} file(s)", r.len()),
            )?;
            print_file_reports(ctx, &reports)
        }
        FilesAction::Rollback {
            name,
            to,
            check,
            conn,
        } => {
            let control = ctx.control_of_store()?;
            control.managed_files(&p, std::slice::from_ref(&name))?;
            let inv = load_inventory(&conn, Some(&p))?;
            let ssh = ssh_options(&conn);
            let target = files_target(&inv, &ssh, &conn);
            let op = baton_control::Operation::Files {
                project: p.name.clone(),
                action: "rollback".into(),
                files: vec![name.clone()],
                check,
            };
            let r = crate::door::audited(
                &control,
                &op,
                control.files_rollback(&p, &name, to, check, &target).await,
                |_| format!("{name} rolled back"),
            )?;
            print_file_reports(ctx, &[r])
        }
        FilesAction::Drift(a) => drift(ctx, &p, a).await,
        FilesAction::Versions { name } => {
            let versions = store.file_versions(&p.name, &name)?;
            if versions.is_empty() {
                bail!("file `{name}` has no stored version yet (baton files apply {name})");
            }
            let applied = store.files_applied(&p.name, &name)?;
            if ctx.global.json {
                crate::output::json(
                    &serde_json::json!({"versions": versions, "applied": applied}),
                )?;
            } else {
                let rows: Vec<Vec<String>> = versions
                    .iter()
                    .map(|v| {
                        let on: Vec<String> = applied
                            .iter()
                            .filter(|a| a.version == v.version)
                            .map(|a| a.host.clone())
                            .collect();
                        vec![
                            v.version.to_string(),
                            crate::output::time(v.created_at),
                            v.hash[..12.min(v.hash.len())].to_string(),
                            v.size.to_string(),
                            format!("{:04o}", v.mode),
                            on.join(","),
                        ]
                    })
                    .collect();
                crate::output::table(
                    &["VERSION", "CREATED", "SHA256", "BYTES", "MODE", "ON HOSTS"],
                    &rows,
                );
            }
            Ok(crate::exit::OK)
        }
        FilesAction::Diff { name, from, to } => {
            let versions = store.file_versions(&p.name, &name)?;
            let last = versions
                .last()
                .map(|v| v.version)
                .ok_or_else(|| anyhow!("file `{name}` has no stored version"))?;
            let to = to.unwrap_or(last);
            let from = from.unwrap_or(to - 1);
            let get = |n: i64| {
                versions
                    .iter()
                    .find(|v| v.version == n)
                    .ok_or_else(|| anyhow!("file `{name}` has no version {n}"))
            };
            let (a, b) = (get(from)?, get(to)?);
            let mut d = similar::TextDiff::from_lines(
                &*String::from_utf8_lossy(&a.content),
                &*String::from_utf8_lossy(&b.content),
            )
            .unified_diff()
            .header(&format!("{name} v{from}"), &format!("{name} v{to}"))
            .to_string();
            if a.mode != b.mode {
                d.push_str(&format!("mode {:04o} -> {:04o}\n", a.mode, b.mode));
            }
            if ctx.global.json {
                crate::output::json(
                    &serde_json::json!({"name": name, "from": from, "to": to, "diff": d}),
                )?;
            } else {
                print!("{d}");
            }
            Ok(crate::exit::OK)
        }
    }
}

/// `baton files drift` and `baton config drift`.
pub async fn drift(ctx: &Context, p: &Project, a: DriftArgs) -> Result<u8> {
    let control = ctx.control_of_store()?;
    control.managed_files(p, &a.names)?;
    let inv = load_inventory(&a.conn, Some(p))?;
    let ssh = ssh_options(&a.conn);
    let target = files_target(&inv, &ssh, &a.conn);
    let reports = control.files_drift(p, &a.names, &target).await?;
    print_file_reports(ctx, &reports)
}

pub async fn config_drift(ctx: &Context, a: DriftArgs) -> Result<u8> {
    let p = ctx.project(&[])?;
    drift(ctx, &p, a).await
}
