//! `baton routes`: what the daemon's edge serves, asked over its socket (or the API of
//! the daemon `--server` names): hosts and paths, where they go, their certificates and
//! when those expire, and refused projects.

use anyhow::Result;
use serde_json::Value;

use crate::context::Context;
use crate::door::Door;

pub async fn run(ctx: &Context) -> Result<u8> {
    let Some(edge) = Door::open(ctx)?.edge().await? else {
        eprintln!(
            "no daemon answers on {}: start `baton serve`",
            ctx.state_dir().join(baton_daemon::api::SOCKET).display()
        );
        return Ok(crate::exit::ERROR);
    };
    if ctx.global.json {
        crate::output::json(&edge)?;
        return Ok(crate::exit::OK);
    }
    if edge.is_null() {
        println!("no routes: no active project has x-baton.routes");
        return Ok(crate::exit::OK);
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    println!(
        "edge: http {}, https {}",
        text(&edge["http"]),
        text(&edge["https"])
    );
    if let Some(e) = edge["error"].as_str() {
        println!("error: {e}");
    }
    let certs: Vec<&Value> = edge["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let cert_of = |host: &str| certs.iter().find(|c| c["host"] == host);
    let rows: Vec<Vec<String>> = edge["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let host = r["host"].as_str().unwrap_or("");
            let (state, expires) = match cert_of(host) {
                Some(c) => (
                    text(&c["state"]),
                    c["not_after_ms"]
                        .as_i64()
                        .map_or("-".to_string(), crate::output::time),
                ),
                None => ("-".to_string(), "-".to_string()),
            };
            let mut tls = text(&r["tls"]);
            if r["client_ca"].is_string() {
                tls.push_str(" +client cert");
            }
            vec![
                host.to_string(),
                text(&r["path"]),
                format!("{}/{}", text(&r["project"]), text(&r["target"])),
                tls,
                state,
                expires,
                if r["serving"] == true {
                    "yes"
                } else {
                    "waiting"
                }
                .to_string(),
            ]
        })
        .collect();
    crate::output::table(
        &[
            "HOST",
            "PATH",
            "TARGET",
            "TLS",
            "CERTIFICATE",
            "EXPIRES",
            "SERVING",
        ],
        &rows,
    );
    for c in &certs {
        if let Some(e) = c["error"].as_str() {
            println!("{}: {e}", text(&c["host"]));
        }
    }
    for r in edge["refused"].as_array().into_iter().flatten() {
        println!("refused: {}", text(r));
    }
    Ok(crate::exit::OK)
}
