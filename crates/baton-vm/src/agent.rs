//! The VM agent: one host's HTTP API (axum, served by `baton_http` behind a bearer
//! token) that the CLI and other agents talk to; [`Client`] is the other side.
//!
//! Every route, `/v1/health` included, needs the token; a listener that is not on
//! loopback needs TLS. What a request names (VMs, disks, kernels) is held to the
//! host's rules by `Host` itself (`spec::check`, `confine::DiskDirs`). Migrations come
//! in on the agent's own address, so peers on other hosts reach them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use baton_http::{ClientTls, Endpoint, Limits, ServeOptions, ServerTls, Token};
use baton_state::{Event, VmMigration};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ha::{Ha, HaConfig, LeaseRequest, Vote};
use crate::host::{Host, MigrateOptions};
use crate::migrate::{IncomingAnswer, IncomingRequest};
use crate::VmError;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How an agent runs: where it listens, the token every caller must present, TLS,
/// and, for failover, the directory it shares with its peers and how it reaches them.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    pub token: Token,
    /// Required unless `listen` is a loopback address.
    pub tls: Option<ServerTls>,
    pub limits: Limits,
    /// The directory shared with the peers: ha VMs' disks. Failover runs with it.
    pub shared: Option<PathBuf>,
    /// The lease group (this agent and its peers) and its timing.
    pub ha: HaConfig,
    /// How this agent talks to peers (their token and CA): leases, fences, migrations.
    pub peers: Client,
}

#[derive(Clone)]
struct Agent {
    host: Arc<Host>,
    ha: Option<Arc<Ha>>,
    peers: Client,
}

type Shared = Agent;
type Reply = Result<Json<Value>, (StatusCode, Json<Value>)>;

fn fail(e: VmError) -> (StatusCode, Json<Value>) {
    let status = match &e {
        VmError::Unknown(_) => StatusCode::NOT_FOUND,
        VmError::NotAllowed { .. } => StatusCode::FORBIDDEN,
        VmError::Running(_) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (status, Json(json!({"error": e.to_string()})))
}

fn to_json<T: Serialize>(v: &T) -> Reply {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| fail(VmError::Invalid(e.to_string())))
}

/// The agent's routes over one host, every one behind the token.
fn router(agent: Agent, token: Token) -> Router {
    let routes = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/vms", get(list))
        .route("/v1/report", get(report))
        .route("/v1/events", get(events))
        .route("/v1/incoming", post(incoming))
        .route("/v1/incoming/finish", post(incoming_finish))
        .route("/v1/incoming/abort", post(incoming_abort))
        .route("/v1/migrate", post(migrate))
        .route("/v1/start", post(start))
        .route("/v1/lease", post(lease))
        .route("/v1/lease/release", post(lease_release))
        .route("/v1/fence", post(fence))
        .with_state(agent);
    baton_http::require_bearer(routes, token)
}

/// Refuses a configuration that would expose the agent: plain HTTP on an address
/// other hosts can reach.
pub fn check_listen(listen: SocketAddr, tls: bool) -> Result<(), VmError> {
    if !listen.ip().is_loopback() && !tls {
        return Err(VmError::Invalid(format!(
            "{listen} is not a loopback address: the agent needs TLS there (--tls-cert and --tls-key)"
        )));
    }
    Ok(())
}

/// Serves the agent on `cfg.listen` until the process ends, after re-attaching to VMs
/// an earlier agent left running. With a shared directory, the agent also votes on,
/// renews and takes over ha VMs' leases (`crate::ha`).
pub async fn serve(host: Host, cfg: AgentConfig) -> Result<(), VmError> {
    let addr = cfg.listen;
    check_listen(addr, cfg.tls.is_some())?;
    host.recover(now_ms()).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| VmError::Io(addr.to_string(), e))?;
    let ha = cfg
        .shared
        .as_ref()
        .map(|_| Arc::new(Ha::new(cfg.ha.clone())));
    let agent = Agent {
        host: Arc::new(host),
        ha: ha.clone(),
        peers: cfg.peers.clone(),
    };
    if let Some(ha) = ha {
        // Renewals and takeovers run apart: a slow takeover never delays a renewal.
        let tick = cfg.ha.timing.tick;
        let (host, peers, renewing) = (agent.host.clone(), cfg.peers.clone(), ha.clone());
        tokio::spawn(async move {
            loop {
                renewing.renew_all(&host, &peers).await;
                tokio::time::sleep(tick).await;
            }
        });
        let (host, peers) = (agent.host.clone(), cfg.peers.clone());
        tokio::spawn(async move {
            loop {
                for vm in ha.watch(&host, &peers).await {
                    tracing::info!("failover: took over {vm}");
                }
                tokio::time::sleep(tick).await;
            }
        });
    }
    {
        // Snapshot policies on a schedule, besides after every snapshot.
        let host = agent.host.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                if let Ok(gone) = host.prune_all(now_ms()).await {
                    for (vm, snap) in gone {
                        tracing::info!("policy: pruned snapshot {snap} of {vm}");
                    }
                }
            }
        });
    }
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    tracing::info!("baton vm agent listening on {scheme}://{addr}");
    let options = ServeOptions {
        limits: cfg.limits,
        tls: cfg.tls,
    };
    Ok(baton_http::serve(listener, router(agent, cfg.token), options).await?)
}

async fn health(State(a): State<Shared>) -> Json<Value> {
    Json(json!({"ok": true, "host": a.host.label}))
}

async fn list(State(a): State<Shared>) -> Reply {
    let h = &a.host;
    let now = now_ms();
    let mut out = Vec::new();
    for r in h.store.vms().map_err(|e| fail(e.into()))? {
        out.push(h.status(&r.name, now).await.map_err(fail)?);
    }
    Ok(Json(json!(out)))
}

async fn report(State(a): State<Shared>) -> Reply {
    a.host.report(now_ms()).await.map(Json).map_err(fail)
}

/// Which events a follower asks for: those after `after`, at most `limit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    pub after: i64,
    #[serde(default = "default_page")]
    pub limit: i64,
}

fn default_page() -> i64 {
    EVENTS_PAGE
}

/// The most events one `GET /v1/events` answers.
pub const EVENTS_PAGE: i64 = 500;

/// A page of this host's event stream, and the id of its newest event: a follower
/// whose cursor is beyond it knows the host's store started over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsPage {
    pub events: Vec<Event>,
    pub last: i64,
}

/// This host's events (its VMs' starts, stops, migrations, failovers and snapshots)
/// for a daemon that follows the agent (`baton serve --agent`).
async fn events(State(a): State<Shared>, Query(q): Query<EventsQuery>) -> Reply {
    let store = &a.host.store;
    let last = store.last_event_id().map_err(|e| fail(e.into()))?;
    let events = store
        .events_after(q.after, None, q.limit.clamp(1, EVENTS_PAGE))
        .map_err(|e| fail(e.into()))?;
    to_json(&EventsPage { events, last })
}

async fn incoming(State(a): State<Shared>, Json(req): Json<IncomingRequest>) -> Reply {
    to_json(&a.host.accept_incoming(&req, now_ms()).await.map_err(fail)?)
}

/// A VM named in a request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmRef {
    pub vm: String,
}

/// The end of an incoming migration (`POST /v1/incoming/finish`): `resume` lets a
/// guest that came with its storage run; without it the arrival is only recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finish {
    pub vm: String,
    #[serde(default = "resume_by_default")]
    pub resume: bool,
}

fn resume_by_default() -> bool {
    true
}

async fn incoming_finish(State(a): State<Shared>, Json(r): Json<Finish>) -> Reply {
    a.host
        .finish_incoming(&r.vm, r.resume, now_ms())
        .await
        .map_err(fail)?;
    Ok(Json(json!({"vm": r.vm, "running": true})))
}

async fn incoming_abort(State(a): State<Shared>, Json(r): Json<VmRef>) -> Reply {
    a.host.abort_incoming(&r.vm, now_ms()).await.map_err(fail)?;
    Ok(Json(json!({"vm": r.vm, "aborted": true})))
}

/// A live migration this agent is asked to carry out (`POST /v1/migrate`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrateRequest {
    pub vm: String,
    /// The destination agent.
    pub to: String,
    #[serde(default)]
    pub options: MigrateOptions,
}

/// Migrates one of this host's VMs to another agent. The migration runs in its own
/// task: a caller that goes away does not cut it off half-way.
async fn migrate(State(a): State<Shared>, Json(r): Json<MigrateRequest>) -> Reply {
    let host = a.host.clone();
    let peers = a.peers.clone();
    let job = tokio::spawn(async move {
        host.migrate(&r.vm, &r.to, &peers, &r.options, |_| {}, now_ms)
            .await
    })
    .await
    .map_err(|e| fail(VmError::Invalid(format!("the migration task ended: {e}"))))?
    .map_err(fail)?;
    to_json(&job)
}

/// Creates (disks included) and starts a VM here; an `ha` one only with a majority
/// of the agents' votes, and with its guard.
async fn start(State(a): State<Shared>, Json(spec): Json<crate::VmSpec>) -> Reply {
    let ha = match (spec.ha, &a.ha) {
        (false, _) => None,
        (true, Some(ha)) => Some(ha.clone()),
        (true, None) => {
            return Err(fail(VmError::Invalid(format!(
                "VM {:?} is ha: start it on an agent with --shared DIR",
                spec.name
            ))))
        }
    };
    a.host.create(&spec, now_ms()).await.map_err(fail)?;
    let pid = match ha {
        Some(ha) => ha.start(&a.host, &spec.name, &a.peers, now_ms()).await,
        None => a.host.start(&spec.name, now_ms()).await,
    }
    .map_err(fail)?;
    Ok(Json(
        json!({"name": spec.name, "pid": pid, "host": a.host.label}),
    ))
}

fn ha_of(a: &Agent) -> Result<&Arc<Ha>, (StatusCode, Json<Value>)> {
    a.ha.as_ref().ok_or_else(|| {
        fail(VmError::Invalid(
            "this agent takes no part in failover (no --shared)".into(),
        ))
    })
}

/// A peer asks for this agent's vote on a VM's lease. The VM is held to the file's
/// rules: a peer's machine may be started here one day.
async fn lease(State(a): State<Shared>, Json(req): Json<LeaseRequest>) -> Reply {
    let ha = ha_of(&a)?;
    crate::spec::check(&req.machine.spec).map_err(|e| fail(VmError::Invalid(e)))?;
    if req.machine.spec.name != req.vm {
        return Err(fail(VmError::Invalid(format!(
            "lease of {:?} for a machine named {:?}",
            req.vm, req.machine.spec.name
        ))));
    }
    to_json(&ha.vote(&req))
}

/// A holder gives its lease back (`vm`, `holder`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release {
    pub vm: String,
    pub holder: String,
}

async fn lease_release(State(a): State<Shared>, Json(r): Json<Release>) -> Reply {
    ha_of(&a)?.release(&r.vm, &r.holder);
    Ok(Json(json!({"released": r.vm})))
}

/// A peer asks this agent to kill its copy of a VM and say whether it is gone.
async fn fence(State(a): State<Shared>, Json(r): Json<VmRef>) -> Reply {
    let confirmed = ha_of(&a)?
        .fence(&a.host, &r.vm, now_ms())
        .await
        .map_err(fail)?;
    Ok(Json(json!({"vm": r.vm, "confirmed": confirmed})))
}

/// Talking to agents: `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`, with the
/// token and the CA to trust (a bare address uses TLS when a CA is given).
#[derive(Debug, Clone, Default)]
pub struct Client {
    http: baton_http::Client,
}

/// How long a migration asked of an agent may take.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(3600);

impl Client {
    pub fn new(token: Option<Token>, ca: Option<ClientTls>) -> Client {
        Client {
            http: baton_http::Client {
                token,
                tls: ca,
                ..baton_http::Client::default()
            },
        }
    }

    async fn call(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, VmError> {
        let err = |message: String| VmError::Agent {
            addr: addr.to_string(),
            message,
        };
        let to = Endpoint::parse(addr).map_err(|e| err(e.to_string()))?;
        let bytes = match &body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| err(e.to_string()))?),
            None => None,
        };
        let mut http = self.http.clone();
        if let Some(t) = timeout {
            http.timeout = t;
        }
        let answer = http.send(&to, method, path, bytes).await.map_err(|e| {
            err(match e {
                baton_http::HttpError::Request { message, .. } => message,
                baton_http::HttpError::IdentityRefused { message, .. } => format!(
                    "{message} (the agent asks for a client certificate signed by its \
                     --tls-client-ca: give --client-cert and --client-key, or \
                     BATON_AGENT_CLIENT_CERT and _KEY)"
                ),
                other => other.to_string(),
            })
        })?;
        let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if !answer.status.is_success() {
            let mut message = v["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {}", answer.status));
            if answer.status == StatusCode::UNAUTHORIZED && self.http.token.is_none() {
                message.push_str(" (no token given: set BATON_AGENT_TOKEN or pass --token-file)");
            }
            return Err(err(message));
        }
        Ok(v)
    }

    async fn post<T: Serialize, R: for<'de> Deserialize<'de>>(
        &self,
        addr: &str,
        path: &str,
        body: &T,
        timeout: Option<Duration>,
    ) -> Result<R, VmError> {
        let body = serde_json::to_value(body).map_err(|e| VmError::Invalid(e.to_string()))?;
        let v = self
            .call(addr, Method::POST, path, Some(body), timeout)
            .await?;
        serde_json::from_value(v).map_err(|e| VmError::Agent {
            addr: addr.to_string(),
            message: format!("unexpected answer to {path}: {e}"),
        })
    }

    /// Asks the agent to take in a migration; returns where to send it. An agent
    /// listening on every address answers with the unspecified one: the address this
    /// client reached it at is used instead.
    pub async fn incoming(
        &self,
        addr: &str,
        req: &IncomingRequest,
    ) -> Result<IncomingAnswer, VmError> {
        let mut a: IncomingAnswer = self.post(addr, "/v1/incoming", req, None).await?;
        let host = Endpoint::parse(addr)
            .map(|e| e.host)
            .map_err(|e| VmError::Invalid(e.to_string()))?;
        let reachable = |h: &str| match h.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_unspecified() => host.clone(),
            _ => h.to_string(),
        };
        if let Some(rest) = a.uri.strip_prefix("tcp:") {
            if let Some((h, port)) = rest.rsplit_once(':') {
                let h = reachable(h);
                let h = if h.contains(':') && !h.starts_with('[') {
                    format!("[{h}]")
                } else {
                    h
                };
                a.uri = format!("tcp:{h}:{port}");
            }
        }
        if let Some(n) = a.nbd.as_mut() {
            n.host = reachable(&n.host);
        }
        Ok(a)
    }

    /// Ends a migration at `addr`: with `resume`, a guest that came with its storage
    /// runs there; without, the arrival is recorded and the guest left as it runs.
    pub async fn finish_incoming(&self, addr: &str, vm: &str, resume: bool) -> Result<(), VmError> {
        let r = Finish {
            vm: vm.to_string(),
            resume,
        };
        let _: Value = self.post(addr, "/v1/incoming/finish", &r, None).await?;
        Ok(())
    }

    pub async fn abort_incoming(&self, addr: &str, vm: &str) -> Result<(), VmError> {
        let r = VmRef { vm: vm.to_string() };
        let _: Value = self.post(addr, "/v1/incoming/abort", &r, None).await?;
        Ok(())
    }

    /// Asks the agent at `addr` to migrate one of its VMs to `to`; returns the job.
    pub async fn migrate(
        &self,
        addr: &str,
        vm: &str,
        to: &str,
        options: &MigrateOptions,
    ) -> Result<VmMigration, VmError> {
        let r = MigrateRequest {
            vm: vm.to_string(),
            to: to.to_string(),
            options: options.clone(),
        };
        self.post(addr, "/v1/migrate", &r, Some(MIGRATION_TIMEOUT))
            .await
    }

    /// Starts a VM on the agent; returns its pid there.
    pub async fn start(&self, addr: &str, spec: &crate::VmSpec) -> Result<i64, VmError> {
        let v: Value = self.post(addr, "/v1/start", spec, None).await?;
        Ok(v["pid"].as_i64().unwrap_or(0))
    }

    /// The peer's vote on a lease, within `timeout`.
    pub async fn lease(
        &self,
        addr: &str,
        req: &LeaseRequest,
        timeout: Duration,
    ) -> Result<Vote, VmError> {
        self.post(addr, "/v1/lease", req, Some(timeout)).await
    }

    pub async fn release(&self, addr: &str, vm: &str, holder: &str) -> Result<(), VmError> {
        let r = Release {
            vm: vm.to_string(),
            holder: holder.to_string(),
        };
        let _: Value = self
            .post(addr, "/v1/lease/release", &r, Some(Duration::from_secs(2)))
            .await?;
        Ok(())
    }

    /// Asks the agent to kill its copy of `vm`; `Ok(true)` when it confirms the guest
    /// is gone there.
    pub async fn fence(&self, addr: &str, vm: &str) -> Result<bool, VmError> {
        let r = VmRef { vm: vm.to_string() };
        let v: Value = self
            .post(addr, "/v1/fence", &r, Some(Duration::from_secs(2)))
            .await?;
        Ok(v["confirmed"] == json!(true))
    }

    /// Up to a page of the agent's events after id `after`.
    pub async fn events(&self, addr: &str, after: i64) -> Result<EventsPage, VmError> {
        let path = format!("/v1/events?after={after}&limit={EVENTS_PAGE}");
        let v = self
            .call(
                addr,
                Method::GET,
                &path,
                None,
                Some(Duration::from_secs(10)),
            )
            .await?;
        serde_json::from_value(v).map_err(|e| VmError::Agent {
            addr: addr.to_string(),
            message: format!("unexpected answer to /v1/events: {e}"),
        })
    }

    pub async fn get(&self, addr: &str, path: &str) -> Result<Value, VmError> {
        self.call(addr, Method::GET, path, None, None).await
    }
}
