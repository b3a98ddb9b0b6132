//! The VM agent: one host's HTTP API (axum) that the CLI and other agents talk to, for
//! incoming live migrations and reports. `client` is the other side.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::host::{Host, Machine};
use crate::VmError;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How an agent runs: where it listens and, for failover, the directory it shares with
/// its peers.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    pub shared: Option<std::path::PathBuf>,
    pub timing: crate::ha::Timing,
}

#[derive(Clone)]
struct Agent {
    host: Arc<Host>,
    shared: Option<std::path::PathBuf>,
    timing: crate::ha::Timing,
}

type Shared = Agent;
type Reply = Result<Json<Value>, (StatusCode, Json<Value>)>;

fn fail(e: VmError) -> (StatusCode, Json<Value>) {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"error": e.to_string()})),
    )
}

/// The agent's routes over one host.
fn router(agent: Agent) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/vms", get(list))
        .route("/v1/report", get(report))
        .route("/v1/incoming", post(incoming))
        .route("/v1/start", post(start))
        .with_state(agent)
}

/// Serves the agent on `addr` until the process ends, after re-attaching to VMs an
/// earlier agent left running.
/// With a shared directory, the agent also renews its HA leases and takes over the
/// VMs of peers that stopped answering (`crate::ha`).
pub async fn serve(host: Host, cfg: AgentConfig) -> Result<(), VmError> {
    let addr = cfg.listen;
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
        tokio::spawn(async move {
            loop {
                for vm in crate::ha::tick(&host, &shared, timing, &now_ms).await {
                    eprintln!("failover: took over {vm}");
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
                        eprintln!("policy: pruned snapshot {snap} of {vm}");
                    }
                }
            }
        });
    }
    eprintln!("baton vm agent listening on {addr}");
    axum::serve(listener, router(agent))
        .await
        .map_err(|e| VmError::Io(addr.to_string(), e))
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

/// Talking to an agent over HTTP/1.1.
pub mod client {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use serde_json::Value;

    use crate::host::Machine;
    use crate::VmError;

    async fn call(
        addr: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, VmError> {
        let err = |message: String| VmError::Agent {
            addr: addr.to_string(),
            message,
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let bytes = match &body {
            Some(b) => serde_json::to_vec(b).map_err(|e| err(e.to_string()))?,
            None => Vec::new(),
        };
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| err(e.to_string()))?;
        let resp = tokio::time::timeout(std::time::Duration::from_secs(60), client.request(req))
            .await
            .map_err(|_| err("no answer within 60 s".into()))?
            .map_err(|e| err(format!("cannot reach it: {e}")))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| err(e.to_string()))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(err(v["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}"))));
        }
        Ok(v)
    }

    /// Asks the agent to take in `m`; returns the URI to migrate to.
    pub async fn incoming(addr: &str, m: &Machine) -> Result<String, VmError> {
        let body = serde_json::to_value(m).map_err(|e| VmError::Invalid(e.to_string()))?;
        let v = call(addr, "POST", "/v1/incoming", Some(body)).await?;
        v["uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| VmError::Agent {
                addr: addr.to_string(),
                message: "answer without a migration URI".into(),
            })
    }

    /// Starts a VM on the agent; returns its pid there.
    pub async fn start(addr: &str, spec: &crate::VmSpec) -> Result<i64, VmError> {
        let body = serde_json::to_value(spec).map_err(|e| VmError::Invalid(e.to_string()))?;
        let v = call(addr, "POST", "/v1/start", Some(body)).await?;
        Ok(v["pid"].as_i64().unwrap_or(0))
    }

    /// True when the agent answers its health check within a second.
    pub async fn health(addr: &str) -> bool {
        tokio::time::timeout(std::time::Duration::from_secs(1), get(addr, "/v1/health"))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub async fn get(addr: &str, path: &str) -> Result<Value, VmError> {
        call(addr, "GET", path, None).await
    }
}
