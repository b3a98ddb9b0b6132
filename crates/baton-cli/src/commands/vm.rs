//! `baton vm …`: virtual machines on QEMU: lifecycle, console, snapshots with
//! retention, live and storage migration, the VM agent and the host report. A thin
//! shell over `baton_vm::Host`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use baton_http::{ClientTls, ServerTls, Token};
use baton_spec::Project;
use baton_vm::host::MigrateOptions;
use baton_vm::{Host, HostOptions, VmSection};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::context::{now_ms, Context};
use crate::door::audited;

#[derive(Debug, Clone, Args)]
pub struct VmArgs {
    /// Another directory VM disks and backing images may be in, besides <state dir>/vms
    /// and the file's directory (an agent: also kernels, initrds and ISOs; repeatable)
    #[arg(long = "disk-dir", value_name = "DIR", global = true)]
    pub disk_dirs: Vec<PathBuf>,
    /// File holding the VM agents' bearer token (default: $BATON_AGENT_TOKEN)
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the agents' certificates; HOST:PORT addresses
    /// then use TLS
    #[arg(long, value_name = "FILE", global = true, env = "BATON_AGENT_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This side's certificate (PEM), presented to agents that ask for one
    /// (`--tls-client-ca`); with --tls-ca and --client-key
    #[arg(
        long,
        value_name = "FILE",
        global = true,
        env = "BATON_AGENT_CLIENT_CERT"
    )]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert
    #[arg(
        long,
        value_name = "FILE",
        global = true,
        env = "BATON_AGENT_CLIENT_KEY"
    )]
    pub client_key: Option<PathBuf>,
    #[command(subcommand)]
    pub action: VmAction,
}

impl VmArgs {
    /// How this command reaches agents: the token, the CA and its own certificate.
    fn agents(&self) -> Result<baton_vm::agent::Client> {
        let tls = agent_tls(
            self.tls_ca.as_deref(),
            self.client_cert.as_deref(),
            self.client_key.as_deref(),
        )?;
        Ok(baton_vm::agent::Client::new(token(&self.token_file)?, tls))
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum VmAction {
    /// Record VMs of the file and make their disks (all when none are named)
    Create { names: Vec<String> },
    /// Start VMs (created from the file first when needed; all autostart VMs when none)
    Start {
        /// Start them on the agent at HOST:PORT or https://HOST:PORT instead of here
        /// (ha VMs: an agent with --shared)
        #[arg(long, value_name = "ADDR")]
        on: Option<String>,
        names: Vec<String>,
    },
    /// ACPI power-down; after --timeout seconds, force
    Stop {
        #[arg(short, long, default_value_t = 30)]
        timeout: u64,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop (ACPI, then force) and start again
    Restart {
        #[arg(short, long, default_value_t = 30)]
        timeout: u64,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Freeze the guest's CPUs
    Pause { name: String },
    /// Let a paused guest run again
    Resume { name: String },
    /// Remove VMs: end the process, forget it; --disks also deletes the images baton made
    /// (inside the allowed directories)
    Rm {
        #[arg(long)]
        disks: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Attach stdin/stdout to the guest's second serial port (a shell on the test guest);
    /// --log prints the first serial port's log instead
    Console {
        #[arg(long)]
        log: bool,
        name: String,
    },
    /// VMs of this host: state, uptime, CPU and memory of the real process
    Ls,
    /// One VM in full
    Inspect { name: String },
    /// Live internal snapshots and their retention
    Snapshot(SnapshotArgs),
    /// Live-migrate a running VM to the agent at --to (disks on shared storage, or
    /// copied there with --storage); --from ADDR migrates a VM of another agent
    Migrate {
        name: String,
        /// The destination agent, HOST:PORT or https://HOST:PORT
        #[arg(long)]
        to: String,
        /// The agent the VM runs on (default: this host)
        #[arg(long, value_name = "ADDR")]
        from: Option<String>,
        /// Copy the disks to the destination while the guest runs (no shared storage);
        /// the source's images baton made are deleted once it runs there
        #[arg(long)]
        storage: bool,
        /// Bandwidth limit, bytes per second (suffixes K, M, G)
        #[arg(long)]
        bandwidth: Option<String>,
        /// Largest pause allowed at switch-over, milliseconds
        #[arg(long)]
        downtime: Option<u64>,
    },
    /// Move a running VM's disk to a new file (mirror, then switch); the guest keeps running
    MoveStorage {
        name: String,
        path: PathBuf,
        /// Which disk (default: the first)
        #[arg(long)]
        disk: Option<String>,
    },
    /// Migration jobs and their statistics
    Migrations {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Serve this host's VM API (another host for migrations); its own --state-dir.
    /// Needs a token (--token-file or BATON_AGENT_TOKEN), and TLS off loopback.
    /// With --shared, also fail over ha VMs with the peers sharing that directory
    Agent(AgentArgs),
    /// The host: capabilities, VMs, snapshots, migrations, recent operations
    Report,
    /// Kill the ha VM in DIR when its lease deadline passes (started by agents)
    #[command(hide = true)]
    Guard { dir: PathBuf },
}

#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    #[arg(long, default_value = "127.0.0.1:7420")]
    pub listen: SocketAddr,
    /// Directory shared with peer agents, where ha VMs' disks are (an allowed disk
    /// directory); failover runs with it
    #[arg(long, value_name = "DIR")]
    pub shared: Option<PathBuf>,
    /// Another agent of the failover group, as it is reached (repeatable): every agent
    /// votes on ha VMs' leases, and a takeover needs a majority
    #[arg(long = "peer", value_name = "ADDR")]
    pub peers: Vec<String>,
    /// Lease lifetime in milliseconds: an owner that cannot renew its votes kills its
    /// guest before this runs out, and a majority's votes are free after it
    #[arg(long, default_value_t = 3000)]
    pub lease_ms: i64,
    /// Serve HTTPS with this certificate chain (PEM); needed off loopback
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: every caller (commands, peers, daemons) must also present a
    /// certificate signed by this CA (PEM); peers are then reached with --client-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub action: SnapshotAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotAction {
    /// Take a live snapshot, then apply the VM environment's policy
    Create {
        vm: String,
        /// manual, automated or pre-deploy
        #[arg(long = "type", default_value = "manual")]
        kind: String,
        #[arg(long, default_value = "")]
        note: String,
        /// Name (default: the policy's naming template)
        #[arg(long)]
        name: Option<String>,
    },
    /// Snapshots of a VM (all VMs when none)
    Ls { vm: Option<String> },
    /// Bring the VM back to a snapshot (memory and disks)
    Restore { vm: String, name: String },
    /// Delete a snapshot
    Rm { vm: String, name: String },
    /// Apply the policies now (an agent also does every minute)
    Prune { vm: Option<String> },
    /// Totals, per VM, oldest and newest
    Stats,
}

pub async fn run(ctx: &Context, args: VmArgs) -> Result<u8> {
    if let VmAction::Agent(a) = &args.action {
        return agent(ctx, &args, a).await;
    }
    if let VmAction::Guard { dir } = &args.action {
        baton_vm::ha::guard(dir).await?;
        return Ok(crate::exit::OK);
    }
    // Read once: the file's directory is an allowed disk directory of a local host.
    let project = ctx.project(&[]);
    let control = ctx.control_of_store()?;
    let host = control.vm_host(project.as_ref().ok(), args.disk_dirs.clone())?;
    let json = ctx.global.json;
    match args.action.clone() {
        VmAction::Agent(_) | VmAction::Guard { .. } => unreachable!("served above"),
        VmAction::Create { names } => {
            let section = section(&project, true)?;
            let created = control.vm_create(&host, &section, &names).await?;
            for n in &created {
                say(json, &format!("created {n}"));
            }
            done(json, json!({"created": created}))
        }
        VmAction::Start {
            on: Some(addr),
            names,
        } => {
            let section = section(&project, true)?;
            let agents = args.agents()?;
            let mut started = Vec::new();
            for s in baton_control::pick(&section, &names, names.is_empty())? {
                let pid = agents.start(&addr, s).await?;
                say(json, &format!("started {} on {addr} (pid {pid})", s.name));
                started.push(json!({"name": s.name, "pid": pid, "host": addr}));
            }
            done(json, json!({"started": started}))
        }
        VmAction::Start { on: None, names } => {
            let section = section(&project, false)?;
            let op = vm_op(&names, baton_control::VmAction::Start);
            let started = audited(
                &control,
                &op,
                control.vm_start(&host, &section, &names).await,
                |v| format!("{} VM(s) started", v.len()),
            )?;
            for s in &started {
                say(json, &format!("started {} (pid {})", s.name, s.pid));
            }
            done(json, json!({"started": started}))
        }
        VmAction::Stop { timeout, names } => {
            let op = vm_op(
                &names,
                baton_control::VmAction::Stop {
                    timeout_secs: Some(timeout),
                },
            );
            let out = audited(
                &control,
                &op,
                control
                    .vm_stop(&host, &names, Duration::from_secs(timeout))
                    .await,
                |v| format!("{} VM(s) stopped", v.len()),
            )?;
            for s in &out {
                let how = if s.graceful {
                    "powered off"
                } else {
                    "forced after timeout"
                };
                say(json, &format!("stopped {}: {how}", s.name));
            }
            done(json, json!({"stopped": out}))
        }
        VmAction::Restart { timeout, names } => {
            let op = vm_op(
                &names,
                baton_control::VmAction::Restart {
                    timeout_secs: Some(timeout),
                },
            );
            let restarted = audited(
                &control,
                &op,
                control
                    .vm_restart(&host, &names, Duration::from_secs(timeout))
                    .await,
                |v| format!("{} VM(s) restarted", v.len()),
            )?;
            for s in restarted {
                say(json, &format!("restarted {} (pid {})", s.name, s.pid));
            }
            done(json, json!({"restarted": names}))
        }
        VmAction::Pause { name } => {
            host.pause(&name, now_ms()).await?;
            say(json, &format!("paused {name}"));
            done(json, json!({"paused": name}))
        }
        VmAction::Resume { name } => {
            host.resume(&name, now_ms()).await?;
            say(json, &format!("resumed {name}"));
            done(json, json!({"resumed": name}))
        }
        VmAction::Rm { disks, names } => {
            let mut kept = Vec::new();
            for n in &names {
                for k in host.remove(n, disks, now_ms()).await? {
                    eprintln!("kept {k}");
                    kept.push(k);
                }
                say(json, &format!("removed {n}"));
            }
            done(json, json!({"removed": names, "kept": kept}))
        }
        VmAction::Console { log, name } => console(&host, &name, log).await,
        VmAction::Ls => {
            host.recover(now_ms()).await?;
            let mut all = Vec::new();
            for r in host.store.vms()? {
                all.push(host.status(&r.name, now_ms()).await?);
            }
            if json {
                crate::output::json(&all)?;
            } else {
                let rows = all
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            s.state.clone(),
                            s.pid.map(|p| p.to_string()).unwrap_or_default(),
                            s.uptime_s.map(|u| format!("{u:.0}s")).unwrap_or_default(),
                            s.cpu_percent
                                .map(|c| format!("{c:.1}%"))
                                .unwrap_or_default(),
                            s.rss_mib.map(|m| format!("{m:.0} MiB")).unwrap_or_default(),
                            format!("{} × {} MiB", s.cpus, s.memory_mib),
                            s.environment.clone(),
                            s.accel.clone().unwrap_or_default(),
                        ]
                    })
                    .collect::<Vec<_>>();
                crate::output::table(
                    &[
                        "NAME", "STATE", "PID", "UPTIME", "CPU", "RSS", "SIZE", "ENV", "ACCEL",
                    ],
                    &rows,
                );
            }
            Ok(crate::exit::OK)
        }
        VmAction::Inspect { name } => {
            let st = host.status(&name, now_ms()).await?;
            let m = host.machine(&name)?;
            let snaps = host.store.vm_snapshots(Some(&name))?;
            crate::output::json(&json!({"status": st, "spec": m.spec, "snapshots": snaps}))?;
            Ok(crate::exit::OK)
        }
        VmAction::Snapshot(a) => snapshot(ctx, &control, &project, &host, a.action).await,
        VmAction::Migrate {
            name,
            to,
            from,
            storage,
            bandwidth,
            downtime,
        } => {
            let max_bandwidth = match bandwidth {
                Some(b) => Some(baton_vm::spec::parse_size(&b, false).ok_or_else(|| {
                    anyhow!("--bandwidth {b:?}: expected bytes per second such as 100M")
                })?),
                None => None,
            };
            let opts = MigrateOptions {
                max_bandwidth,
                downtime_limit_ms: downtime,
                storage,
            };
            let agents = args.agents()?;
            let job = match &from {
                Some(source) => agents.migrate(source, &name, &to, &opts).await?,
                None => {
                    host.migrate(
                        &name,
                        &to,
                        &agents,
                        &opts,
                        |st| {
                            if !json && st["jobs"].is_array() {
                                let (done, len) = st["jobs"].as_array().into_iter().flatten().fold(
                                    (0, 0),
                                    |(d, l), j| {
                                        (
                                            d + j["offset"].as_u64().unwrap_or(0),
                                            l + j["len"].as_u64().unwrap_or(0),
                                        )
                                    },
                                );
                                eprintln!("copying disks: {} / {} MiB", done >> 20, len >> 20);
                            } else if !json {
                                let t = st["ram"]["transferred"].as_u64().unwrap_or(0);
                                let total = st["ram"]["total"].as_u64().unwrap_or(0);
                                eprintln!(
                                    "{}: {} / {} MiB",
                                    st["status"].as_str().unwrap_or("?"),
                                    t >> 20,
                                    total >> 20
                                );
                            }
                        },
                        now_ms,
                    )
                    .await?
                }
            };
            if json {
                crate::output::json(&job)?;
            } else {
                println!(
                    "migrated {name} to {to}: {} MiB sent, downtime {} ms, {} ms in all",
                    job.bytes.unwrap_or(0) >> 20,
                    job.downtime_ms.unwrap_or(0),
                    job.finished_at.unwrap_or(job.started_at) - job.started_at
                );
            }
            Ok(crate::exit::OK)
        }
        VmAction::MoveStorage { name, path, disk } => {
            let target = if path.is_absolute() {
                path
            } else {
                ctx.cwd.join(path)
            };
            let job = host
                .move_storage(&name, disk.as_deref(), &target, now_ms)
                .await?;
            if json {
                crate::output::json(&job)?;
            } else {
                println!(
                    "moved {name}'s disk {} → {} ({} MiB) in {} ms",
                    job.source,
                    job.destination,
                    job.bytes.unwrap_or(0) >> 20,
                    job.finished_at.unwrap_or(job.started_at) - job.started_at
                );
            }
            Ok(crate::exit::OK)
        }
        VmAction::Migrations { limit } => {
            let jobs = host.store.vm_migrations(limit)?;
            let stats = baton_vm::host::migration_stats(&jobs);
            if json {
                crate::output::json(&json!({"migrations": jobs, "stats": stats}))?;
            } else {
                let rows = jobs
                    .iter()
                    .map(|j| {
                        vec![
                            j.id.to_string(),
                            j.vm.clone(),
                            j.kind.clone(),
                            j.status.clone(),
                            format!("{} → {}", j.source, j.destination),
                            j.bytes
                                .map(|b| format!("{} MiB", b >> 20))
                                .unwrap_or_default(),
                            j.downtime_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
                            crate::output::time(j.started_at),
                        ]
                    })
                    .collect::<Vec<_>>();
                crate::output::table(
                    &[
                        "ID",
                        "VM",
                        "KIND",
                        "STATUS",
                        "FROM → TO",
                        "BYTES",
                        "DOWNTIME",
                        "STARTED",
                    ],
                    &rows,
                );
                println!("{}", serde_json::to_string_pretty(&stats)?);
            }
            Ok(crate::exit::OK)
        }
        VmAction::Report => {
            host.recover(now_ms()).await?;
            let r = host.report(now_ms()).await?;
            if json {
                crate::output::json(&r)?;
            } else {
                print_report(&r);
            }
            Ok(crate::exit::OK)
        }
    }
}

/// `baton vm agent`: refuses to start without a token, or off loopback without TLS.
async fn agent(ctx: &Context, args: &VmArgs, a: &AgentArgs) -> Result<u8> {
    let token = token(&args.token_file)?.ok_or_else(|| {
        anyhow!(
            "baton vm agent needs a token: --token-file FILE or BATON_AGENT_TOKEN \
             (make one with `openssl rand -hex 32`)"
        )
    })?;
    let tls = match (&a.tls_cert, &a.tls_key, &a.tls_client_ca) {
        (Some(cert), Some(key), None) => Some(ServerTls::from_pem_files(cert, key)?),
        (Some(cert), Some(key), Some(ca)) => Some(ServerTls::requiring_clients(cert, key, ca)?),
        _ => None,
    };
    baton_vm::agent::check_listen(a.listen, tls.is_some())?;
    let label = match tls {
        Some(_) => format!("https://{}", a.listen),
        None => a.listen.to_string(),
    };
    let mut disk_dirs = args.disk_dirs.clone();
    disk_dirs.extend(a.shared.iter().cloned());
    let host = Host::open(
        &ctx.state_dir(),
        HostOptions {
            label: label.clone(),
            disk_dirs,
            confine_boot_files: true,
            // Migrations come in where peers reach this agent.
            address: Some(a.listen.ip()),
        },
    )?;
    // Peers are asked with the same token: agents that fail over together share it.
    let peers = args.agents()?;
    if a.tls_client_ca.is_some() && !a.peers.is_empty() && args.client_cert.is_none() {
        return Err(anyhow!(
            "--tls-client-ca with --peer: peers ask for this agent's certificate too; \
             give --client-cert and --client-key (or BATON_AGENT_CLIENT_CERT and _KEY)"
        ));
    }
    let cfg = baton_vm::agent::AgentConfig {
        listen: a.listen,
        token: token.clone(),
        tls,
        limits: baton_http::Limits::default(),
        shared: a.shared.clone(),
        ha: baton_vm::ha::HaConfig {
            me: label,
            peers: a.peers.clone(),
            timing: baton_vm::ha::Timing {
                ttl_ms: a.lease_ms.max(500),
                tick: Duration::from_millis((a.lease_ms.max(500) / 6) as u64),
            },
            guard_program: std::env::current_exe()
                .context("cannot find the baton executable (it runs the lease guards)")?,
        },
        peers,
    };
    baton_vm::agent::serve(host, cfg).await?;
    Ok(crate::exit::OK)
}

/// The agents' token: from `--token-file`, else `BATON_AGENT_TOKEN`, else none.
pub(crate) fn token(file: &Option<PathBuf>) -> Result<Option<Token>> {
    if let Some(f) = file {
        return Ok(Some(Token::from_file(f)?));
    }
    match std::env::var("BATON_AGENT_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(Some(
            Token::new(&t).map_err(|e| anyhow!("BATON_AGENT_TOKEN: {e}"))?,
        )),
        _ => Ok(None),
    }
}

/// TLS towards agents: the CA that signed their certificates, and this side's own
/// certificate and key for agents that ask for one (mutual TLS).
pub(crate) fn agent_tls(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<ClientTls>> {
    Ok(match (ca, cert, key) {
        (None, None, None) => None,
        (None, _, _) => {
            return Err(anyhow!(
                "a client certificate for agents needs the CA that signed the agents' \
                 certificates too (--tls-ca or BATON_AGENT_CA)"
            ))
        }
        (Some(ca), None, None) => Some(ClientTls::from_ca_file(ca)?),
        (Some(ca), Some(cert), Some(key)) => Some(ClientTls::with_identity(ca, cert, key)?),
        (Some(_), Some(_), None) | (Some(_), None, Some(_)) => {
            return Err(anyhow!(
                "a client certificate for agents needs both its certificate and its key \
                 (--client-cert and --client-key, or BATON_AGENT_CLIENT_CERT and _KEY)"
            ))
        }
    })
}

fn say(json: bool, msg: &str) {
    if !json {
        println!("{msg}");
    }
}

fn done(json: bool, v: serde_json::Value) -> Result<u8> {
    if json {
        crate::output::json(&v)?;
    }
    Ok(crate::exit::OK)
}

/// The file's `vms:` and `snapshot_policies:`, validated against this host. With
/// `required` false a missing file gives an empty section.
fn section(project: &Result<Project>, required: bool) -> Result<VmSection> {
    match project {
        Ok(p) => Ok(baton_control::vm_section(Some(p))?),
        Err(e) if !required && e.to_string().contains("no configuration file provided") => {
            Ok(VmSection::default())
        }
        Err(e) => Err(anyhow!("{e:#}")),
    }
}

/// The audit log's name for an operation on the named VMs (`*`: the file's autostart
/// ones).
fn vm_op(names: &[String], action: baton_control::VmAction) -> baton_control::Operation {
    let vm = if names.is_empty() {
        "*".to_string()
    } else {
        names.join(",")
    };
    baton_control::Operation::Vm { vm, action }
}

async fn snapshot(
    ctx: &Context,
    control: &baton_control::Control<()>,
    project: &Result<Project>,
    host: &Host,
    action: SnapshotAction,
) -> Result<u8> {
    let json = ctx.global.json;
    match action {
        SnapshotAction::Create {
            vm,
            kind,
            note,
            name,
        } => {
            let section = section(project, false)?;
            let op = baton_control::Operation::Vm {
                vm: vm.clone(),
                action: baton_control::VmAction::Snapshot {
                    name: name.clone(),
                    note: Some(note.clone()),
                },
            };
            let taken = audited(
                control,
                &op,
                control
                    .vm_snapshot(host, &section, &vm, &kind, &note, name.as_deref())
                    .await,
                |t| format!("snapshot {}", t.snapshot),
            )?;
            say(json, &format!("snapshot {} of {vm}", taken.snapshot));
            for p in &taken.pruned {
                say(json, &format!("pruned {p} (policy)"));
            }
            done(
                json,
                json!({"snapshot": taken.snapshot, "pruned": taken.pruned}),
            )
        }
        SnapshotAction::Ls { vm } => {
            let snaps = host.store.vm_snapshots(vm.as_deref())?;
            if json {
                crate::output::json(&snaps)?;
            } else {
                let rows = snaps
                    .iter()
                    .map(|s| {
                        vec![
                            s.vm.clone(),
                            s.name.clone(),
                            s.kind.clone(),
                            crate::output::time(s.created_at),
                            s.note.clone(),
                        ]
                    })
                    .collect::<Vec<_>>();
                crate::output::table(&["VM", "NAME", "TYPE", "CREATED", "NOTE"], &rows);
            }
            Ok(crate::exit::OK)
        }
        SnapshotAction::Restore { vm, name } => {
            let op = baton_control::Operation::Vm {
                vm: vm.clone(),
                action: baton_control::VmAction::Restore {
                    snapshot: name.clone(),
                },
            };
            audited(
                control,
                &op,
                control.vm_restore(host, &vm, &name).await,
                |_| format!("back at {name}"),
            )?;
            say(json, &format!("restored {vm} to {name}"));
            done(json, json!({"restored": name}))
        }
        SnapshotAction::Rm { vm, name } => {
            host.delete_snapshot(&vm, &name, now_ms()).await?;
            say(json, &format!("deleted snapshot {name} of {vm}"));
            done(json, json!({"deleted": name}))
        }
        SnapshotAction::Prune { vm } => {
            let section = section(project, false)?;
            let vms: Vec<String> = match vm {
                Some(v) => vec![v],
                None => host.store.vms()?.into_iter().map(|r| r.name).collect(),
            };
            let mut all = Vec::new();
            for v in vms {
                let policy = baton_control::policy_for(host, &section, &v)?;
                for p in host.prune(&v, &policy, now_ms()).await? {
                    say(json, &format!("pruned {p} of {v}"));
                    all.push(json!({"vm": v, "snapshot": p}));
                }
            }
            done(json, json!({"pruned": all}))
        }
        SnapshotAction::Stats => {
            let stats = baton_vm::host::snapshot_stats(&host.store.vm_snapshots(None)?);
            crate::output::json(&stats)?;
            Ok(crate::exit::OK)
        }
    }
}

async fn console(host: &Host, name: &str, log: bool) -> Result<u8> {
    host.machine(name)?;
    let paths = baton_vm::qemu::Paths::new(&host.vm_dir(name)?);
    if log {
        let text = std::fs::read_to_string(&paths.console_log)
            .with_context(|| format!("no console log for {name} yet"))?;
        print!("{text}");
        return Ok(crate::exit::OK);
    }
    if host.pid(name).is_none() {
        bail!("VM {name:?} is not running: start it first");
    }
    let sock = tokio::net::UnixStream::connect(&paths.console_sock)
        .await
        .with_context(|| format!("cannot reach the console of {name}"))?;
    let (mut r, mut w) = sock.into_split();
    let to_guest = async {
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut w).await;
        // Stdin ended: leave the guest a moment to answer the last line.
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let from_guest = async {
        let _ = tokio::io::copy(&mut r, &mut tokio::io::stdout()).await;
    };
    tokio::select! {
        _ = to_guest => {}
        _ = from_guest => {}
    }
    Ok(crate::exit::OK)
}

fn print_report(r: &serde_json::Value) {
    let c = &r["capabilities"];
    println!("host {}", r["host"].as_str().unwrap_or(""));
    println!(
        "  {} CPUs, {} MiB memory ({} available), storage {} MiB free of {} at {}",
        c["cpus"],
        c["memory_mib"],
        c["memory_available_mib"],
        c["storage_free_mib"],
        c["storage_total_mib"],
        c["storage_path"].as_str().unwrap_or("")
    );
    println!(
        "  {} (/dev/kvm {})",
        c["qemu"].as_str().unwrap_or("qemu not found"),
        if c["kvm_device"] == json!(true) {
            "present"
        } else {
            "absent"
        }
    );
    println!("VMs");
    for v in r["vms"].as_array().into_iter().flatten() {
        println!(
            "  {:<16} {:<10} {} CPU × {} MiB  env {}  ha {}",
            v["name"].as_str().unwrap_or(""),
            v["state"].as_str().unwrap_or(""),
            v["cpus"],
            v["memory_mib"],
            v["environment"].as_str().unwrap_or(""),
            v["ha"]
        );
    }
    let s = &r["snapshots"];
    println!("snapshots: {} in all, per VM {}", s["total"], s["per_vm"]);
    if let Some(o) = s["oldest"].as_object() {
        println!(
            "  oldest {} of {}",
            o["name"].as_str().unwrap_or(""),
            o["vm"].as_str().unwrap_or("")
        );
    }
    if let Some(n) = s["newest"].as_object() {
        println!(
            "  newest {} of {}",
            n["name"].as_str().unwrap_or(""),
            n["vm"].as_str().unwrap_or("")
        );
    }
    println!("migrations: {}", r["migrations"]);
    println!("recent operations");
    for o in r["recent_operations"].as_array().into_iter().flatten() {
        println!(
            "  {} {} {} {} {}",
            crate::output::time(o["at"].as_i64().unwrap_or(0)),
            o["vm"].as_str().unwrap_or(""),
            o["op"].as_str().unwrap_or(""),
            o["outcome"].as_str().unwrap_or(""),
            o["message"].as_str().unwrap_or("")
        );
    }
}
