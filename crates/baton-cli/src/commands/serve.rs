//! `baton serve`: runs the daemon in the foreground until SIGINT or SIGTERM: the
//! supervisor, the local socket (its API and `/api/v1` for its owner), and with
//! `--listen` the HTTP API on TCP behind tokens.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use baton_api::{Api, ApiState, EventHub, Principal, Role};
use baton_backend::Backend;
use baton_control::{Control, ExecSettings};
use baton_daemon::{api, Supervisor, SupervisorConfig};
use baton_state::Store;

use crate::cli::ServeArgs;
use crate::context::Context;

/// How often the event stream reads new events from the store.
const EVENT_POLL: Duration = Duration::from_millis(100);

/// How often each followed VM agent is asked for its new events.
const AGENT_POLL: Duration = Duration::from_secs(1);

/// The agents `--agent` names, checked before anything starts, and how to reach them:
/// a token is required (every agent route needs one).
fn followers(args: &ServeArgs) -> Result<Option<(Vec<String>, baton_vm::agent::Client)>> {
    if args.agents.is_empty() {
        return Ok(None);
    }
    for a in &args.agents {
        baton_http::Endpoint::parse(a).map_err(|e| anyhow!("--agent {a}: {e}"))?;
    }
    let tls = super::vm::agent_tls(
        args.agent_ca.as_deref(),
        args.agent_client_cert.as_deref(),
        args.agent_client_key.as_deref(),
    )?;
    let token = super::vm::token(&args.agent_token_file)?.ok_or_else(|| {
        anyhow!("--agent needs the agents' token: --agent-token-file FILE or BATON_AGENT_TOKEN")
    })?;
    let client = baton_vm::agent::Client::new(Some(token), tls);
    Ok(Some((args.agents.clone(), client)))
}

/// The HTTP API's limits: bodies carry whole projects; many dashboards stream events.
fn api_limits() -> baton_http::Limits {
    baton_http::Limits {
        max_body_bytes: baton_api::BODY_LIMIT,
        max_connections: 1024,
        ..Default::default()
    }
}

/// The TCP listener of the API, checked before anything starts: a token must exist,
/// and off loopback TLS is required (as for `baton vm agent`).
async fn api_listener(
    ctx: &Context,
    addr: SocketAddr,
    args: &ServeArgs,
) -> Result<(tokio::net::TcpListener, Option<baton_http::ServerTls>)> {
    let tokens = ctx.store()?.tokens()?;
    if tokens.is_empty() {
        return Err(anyhow!(
            "--listen {addr}: no API token exists, so nobody could use it; make one first: `baton token create NAME --role admin`"
        ));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(baton_http::ServerTls::from_pem_files(cert, key)?),
        _ => None,
    };
    if tls.is_none() && !addr.ip().is_loopback() {
        return Err(anyhow!(
            "--listen {addr} is not a loopback address: tokens would cross the network in clear; give --tls-cert and --tls-key (or listen on 127.0.0.1 behind your TLS terminator)"
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the API"))?;
    Ok((listener, tls))
}

/// The API over this state directory: its own store connection, the control plane on
/// its own thread, one event poller.
fn api(ctx: &Context, shared: Arc<api::Shared>, backend: &Backend) -> Result<Api> {
    let state_dir = ctx.state_dir();
    let store = Arc::new(Store::open(&state_dir)?);
    let settings = ExecSettings {
        parallelism: ctx.global.parallel,
        daemon_running: true,
        // Pipelines started through the API run their `image:` jobs on this engine.
        containers: backend
            .shared_one_shot()
            .map(baton_pipeline::run::Containers),
    };
    let dir = state_dir.clone();
    let target = backend.target.clone();
    let key = ctx.digest_key()?;
    let control = baton_control::worker::spawn(settings, move || async move {
        Ok(Control {
            store: Arc::new(Store::open(&dir).map_err(|e| e.to_string())?),
            runtime: baton_backend::connect(&target, &key)
                .await
                .map_err(|e| e.to_string())?
                .runtime,
            state_dir: dir,
            env: std::env::vars().collect(),
            clock: crate::context::now_ms,
        })
    })
    .context("cannot start the control plane's thread")?;
    Ok(Api::new(ApiState {
        events: EventHub::start(store.clone(), EVENT_POLL),
        tokens: baton_api::tokens::Tokens::new(store.clone(), crate::context::now_ms),
        store,
        control,
        logs: backend.shared_logs(),
        daemon: shared,
        state_dir,
        clock: crate::context::now_ms,
        services: baton_api::services_cache(),
    }))
}

pub async fn run(ctx: &Context, args: ServeArgs) -> Result<u8> {
    if args.status {
        return status(ctx).await;
    }
    let listen = match args.listen {
        Some(addr) => Some((addr, api_listener(ctx, addr, &args).await?)),
        None => None,
    };
    let followers = followers(&args)?;
    let store = ctx.store()?;
    let docker = ctx.backend().await?;
    let config = SupervisorConfig {
        tick: Duration::from_millis(args.tick_ms.max(50)),
        files_dir: ctx.state_dir().join("files"),
        edge_dir: ctx.state_dir().join("edge"),
    };
    // The local API: one daemon per state directory, refused if another answers.
    let (listener, socket) = api::bind(&ctx.state_dir()).await?;
    let shared = Arc::new(api::Shared::default());
    let http = api(ctx, shared.clone(), &docker)?;
    // The socket's owner is trusted as an admin (the socket is 0600 in a 0700 dir).
    let owner = Principal {
        name: format!(
            "local:{}",
            crate::door::actor().0.trim_start_matches("cli:")
        ),
        role: Role::Admin,
    };
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(
        listener,
        shared.clone(),
        http.router_as(owner),
        async {
            let _ = api_stopped.await;
        },
    ));
    tracing::info!("local API on {}", socket.display());
    if let Some((addr, (tcp, tls))) = listen {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let options = baton_http::ServeOptions {
            limits: api_limits(),
            tls,
        };
        // The dashboard beside the API: its own login, sessions and pages (`/ui/`).
        let dashboard = baton_api::dashboard::DashboardConfig {
            secure_cookies: options.tls.is_some(),
            ..Default::default()
        };
        let router = http.router().merge(http.dashboard(dashboard));
        tokio::spawn(async move {
            if let Err(e) = baton_http::serve(tcp, router, options).await {
                tracing::error!("the API on {addr} stopped: {e}");
            }
        });
        tracing::info!("API on {scheme}://{addr}/api/v1, dashboard on {scheme}://{addr}/ui/");
    }
    // The metrics history: sampled every interval, kept for the retention.
    let (stop_sampler, sampler_stopped) = tokio::sync::watch::channel(false);
    let telemetry = shared.telemetry.clone();
    let history_dir = ctx.state_dir().join("metrics");
    let history = telemetry
        .open_history(&history_dir, args.retention)
        .with_context(|| {
            format!(
                "cannot open the metrics history in {}",
                history_dir.display()
            )
        })?;
    // Alert rules, evaluated after each sample; notifications delivered on their own tasks.
    let alerter = baton_daemon::alerts::Alerter::new(
        Store::open(&ctx.state_dir())?,
        telemetry.metrics.clone(),
        std::env::vars().collect(),
    );
    let alerts = tokio::spawn(alerter.run(history, telemetry.sampled(), sampler_stopped.clone()));
    let sampler = tokio::spawn(telemetry.sample_loop(
        args.sample_interval,
        crate::context::now_ms,
        sampler_stopped.clone(),
    ));
    // Autoscaling: the daemon decides, the control plane scales (as `baton scale`).
    let control = http.state().control.clone();
    let autoscaler =
        baton_daemon::autoscale::Autoscaler::new(Store::open(&ctx.state_dir())?, shared.clone());
    let autoscaling = tokio::spawn(autoscaler.run(
        move |project: String, service: String, n: u32| {
            let control = control.clone();
            async move {
                let op = baton_control::Operation::Scale {
                    project,
                    replicas: [(service, n)].into(),
                    no_deps: true,
                    spec: None,
                };
                let actor = baton_control::Actor("daemon:autoscale".into());
                match control.execute(actor, op).await {
                    Ok(baton_control::Outcome::Up(up)) if !up.ok => {
                        Err(up.error.unwrap_or_else(|| "the scale failed".into()))
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
        },
        sampler_stopped.clone(),
    ));
    // The VM agents followed: their events join this store's stream.
    let following = followers.map(|(agents, client)| {
        let f = baton_daemon::agents::Followers::new(
            agents,
            client,
            Store::open(&ctx.state_dir())?,
            crate::context::now_ms,
            shared.clone(),
        );
        anyhow::Ok(tokio::spawn(f.run(AGENT_POLL, sampler_stopped.clone())))
    });
    let following = following.transpose()?;
    super::pipeline::spawn_triggers(ctx, args.hooks_listen).await;
    let mut supervisor = Supervisor::new(&docker.runtime, &store, config, shared);
    let shutdown = super::interrupted();
    let pid_file = ctx.state_dir().join(PID_FILE);
    std::fs::write(&pid_file, std::process::id().to_string())?;
    supervisor.run(shutdown).await;
    let _ = stop_sampler.send(true);
    let _ = sampler.await;
    let _ = alerts.await;
    let _ = autoscaling.await;
    if let Some(f) = following {
        let _ = f.await;
    }
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
    for a in s["agents"].as_array().into_iter().flatten() {
        let name = a["agent"].as_str().unwrap_or("?");
        match a["error"].as_str() {
            Some(e) => println!("agent {name}: unreachable: {e}"),
            None => println!(
                "agent {name}: followed, events copied up to its id {}",
                a["cursor"]
            ),
        }
    }
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
