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

type Shared = Arc<Host>;
type Reply = Result<Json<Value>, (StatusCode, Json<Value>)>;

fn fail(e: VmError) -> (StatusCode, Json<Value>) {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"error": e.to_string()})),
    )
}

/// The agent's routes over one host.
pub fn router(host: Arc<Host>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/vms", get(list))
        .route("/v1/report", get(report))
        .route("/v1/incoming", post(incoming))
        .with_state(host)
}

/// Serves the agent on `addr` until the process ends, after re-attaching to VMs an
/// earlier agent left running.
pub async fn serve(host: Host, addr: SocketAddr) -> Result<(), VmError> {
    host.recover(now_ms()).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| VmError::Io(addr.to_string(), e))?;
    eprintln!("baton vm agent listening on {}", addr);
    axum::serve(listener, router(Arc::new(host)))
        .await
        .map_err(|e| VmError::Io(addr.to_string(), e))
}

async fn health(State(h): State<Shared>) -> Json<Value> {
    Json(json!({"ok": true, "host": h.label}))
}

async fn list(State(h): State<Shared>) -> Reply {
    let now = now_ms();
    let mut out = Vec::new();
    for r in h.store.vms().map_err(|e| fail(e.into()))? {
        out.push(h.status(&r.name, now).await.map_err(fail)?);
    }
    Ok(Json(json!(out)))
}

async fn report(State(h): State<Shared>) -> Reply {
    h.report(now_ms()).await.map(Json).map_err(fail)
}

async fn incoming(State(h): State<Shared>, Json(m): Json<Machine>) -> Reply {
    let uri = h.accept_incoming(&m, now_ms()).await.map_err(fail)?;
    Ok(Json(json!({"uri": uri})))
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

    pub async fn get(addr: &str, path: &str) -> Result<Value, VmError> {
        call(addr, "GET", path, None).await
    }
}
