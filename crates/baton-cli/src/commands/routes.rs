//! `baton routes`: what the daemon's edge serves, asked over its socket (or the API of
//! the daemon `--server` names): hosts and paths, where they go, their certificates and
//! when those expire, and refused projects.

use anyhow::{anyhow, Result};
use baton_daemon::edge::EdgeStatus;

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
    let Some(edge): Option<EdgeStatus> = serde_json::from_value(edge)
        .map_err(|e| anyhow!("the daemon's edge status is not what this baton reads: {e}"))?
    else {
        println!("no routes: no active project has x-baton.routes");
        return Ok(crate::exit::OK);
    };
    let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    println!(
        "edge: http {}, https {}",
        dash(edge.http.as_deref()),
        dash(edge.https.as_deref())
    );
    if let Some(e) = &edge.error {
        println!("error: {e}");
    }
    let rows: Vec<Vec<String>> = edge
        .rows(crate::context::now_ms())
        .into_iter()
        .map(|r| {
            let tls = if r.client_ca {
                format!("{} +client cert", r.tls)
            } else {
                r.tls
            };
            vec![
                r.host,
                r.path,
                format!("{}/{}", r.project, r.target),
                tls,
                dash(r.cert_state.as_deref()),
                r.not_after_ms
                    .and_then(|t| i64::try_from(t).ok())
                    .map_or("-".to_string(), crate::output::time),
                if r.serving { "yes" } else { "waiting" }.to_string(),
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
    for c in &edge.certificates {
        if let Some(e) = &c.error {
            println!("{}: {e}", c.host);
        }
    }
    for r in &edge.refused {
        println!("refused: {r}");
    }
    Ok(crate::exit::OK)
}
