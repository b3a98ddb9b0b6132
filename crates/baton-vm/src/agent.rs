//! The VM agent: one host's HTTP API (axum, served by `baton_http` behind a bearer
//! token) that the CLI and other agents talk to; [`Client`] is the other side.
//!
//! Every route, `/v1/health` included, needs the token; a listener that is not on
//! loopback needs TLS. What a request names (VMs, disks, kernels) is held to the
//! host's rules by `Host` itself (`spec::check`, `confine::DiskDirs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use baton_http::{ClientTls, Endpoint, Limits, ServeOptions, ServerTls, Token};
use serde_json::{json, Value};

use crate::host::{Host, Machine};
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
    pub shared: Option<PathBuf>,
    pub timing: crate::ha::Timing,
    /// How this agent asks peers whether they are alive (their token and CA).
    pub peers: Client,
}

#[derive(Clone)]
struct Agent {
    host: Arc<Host>,
    shared: Option<PathBuf>,
    timing: crate::ha::Timing,
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

/// The agent's routes over one host, every one behind the token.
fn router(agent: Agent, token: Token) -> Router {
    let routes = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/vms", get(list))
        .route("/v1/report", get(report))
        .route("/v1/incoming", post(incoming))
        .route("/v1/start", post(start))
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
/// an earlier agent left running.
/// With a shared directory, the agent also renews its HA leases and takes over the
/// VMs of peers that stopped answering (`crate::ha`).
pub async fn serve(host: Host, cfg: AgentConfig) -> Result<(), VmError> {
    let addr = cfg.listen;
    check_listen(addr, cfg.tls.is_some())?;
    host.recover(now_ms()).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| VmError::Io(addr.to_string(), e))?;
    let agent = Agent {
        host: Arc::new(host),
        shared: cfg.shared.clone(),
        timing: cfg.timing,
    };
    if let Some(shared) = cfg.shared.clone() {
        let host = agent.host.clone();
        let timing = cfg.timing;
        let peers = cfg.peers.clone();
        tokio::spawn(async move {
            loop {
                for vm in crate::ha::tick(&host, &shared, &peers, timing, &now_ms).await {
                    tracing::info!("failover: took over {vm}");
                }
                tokio::time::sleep(timing.tick).await;
            }
        });
    }
    {
        // Snapshot policies on a schedule, besides after every snapshot.
        let host = agent.host.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
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

async fn incoming(State(a): State<Shared>, Json(m): Json<Machine>) -> Reply {
    let uri = a.host.accept_incoming(&m, now_ms()).await.map_err(fail)?;
    Ok(Json(json!({"uri": uri})))
}

/// Creates (disks included) and starts a VM here; an `ha` one also gets its lease.
async fn start(State(a): State<Shared>, Json(spec): Json<crate::VmSpec>) -> Reply {
    if spec.ha && a.shared.is_none() {
        return Err(fail(VmError::Invalid(format!(
            "VM {:?} is ha: start it on an agent with --shared DIR",
            spec.name
        ))));
    }
    a.host.create(&spec, now_ms()).await.map_err(fail)?;
    let pid = a.host.start(&spec.name, now_ms()).await.map_err(fail)?;
    if let (true, Some(shared)) = (spec.ha, &a.shared) {
        crate::ha::acquire(&a.host, shared, &spec.name, a.timing, now_ms()).map_err(fail)?;
    }
    Ok(Json(
        json!({"name": spec.name, "pid": pid, "host": a.host.label}),
    ))
}

/// Talking to agents: `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`, with the
/// token and the CA to trust (a bare address uses TLS when a CA is given).
#[derive(Debug, Clone, Default)]
pub struct Client {
    http: baton_http::Client,
}

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
        let answer = self
            .http
            .send(&to, method, path, bytes)
            .await
            .map_err(|e| {
                err(match e {
                    baton_http::HttpError::Request { message, .. } => message,
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

    /// Asks the agent to take in `m`; returns the URI to migrate to.
    pub async fn incoming(&self, addr: &str, m: &Machine) -> Result<String, VmError> {
        let body = serde_json::to_value(m).map_err(|e| VmError::Invalid(e.to_string()))?;
        let v = self
            .call(addr, Method::POST, "/v1/incoming", Some(body))
            .await?;
        v["uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| VmError::Agent {
                addr: addr.to_string(),
                message: "answer without a migration URI".into(),
            })
    }

    /// Starts a VM on the agent; returns its pid there.
    pub async fn start(&self, addr: &str, spec: &crate::VmSpec) -> Result<i64, VmError> {
        let body = serde_json::to_value(spec).map_err(|e| VmError::Invalid(e.to_string()))?;
        let v = self
            .call(addr, Method::POST, "/v1/start", Some(body))
            .await?;
        Ok(v["pid"].as_i64().unwrap_or(0))
    }

    /// True when the agent gives any HTTP answer to its health check within a second.
    /// A refusal (401 for a token it does not share) still shows it alive: failover
    /// must not start a VM whose owner answers.
    pub async fn answers(&self, addr: &str) -> bool {
        let Ok(to) = Endpoint::parse(addr) else {
            return false;
        };
        let http = baton_http::Client {
            timeout: std::time::Duration::from_secs(1),
            ..self.http.clone()
        };
        http.send(&to, Method::GET, "/v1/health", None)
            .await
            .is_ok()
    }

    pub async fn get(&self, addr: &str, path: &str) -> Result<Value, VmError> {
        self.call(addr, Method::GET, path, None).await
    }
}
