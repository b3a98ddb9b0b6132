//! The edge's checks that need more than the file, made before a revision is recorded so
//! that `plan` and `up` refuse with a located error: other projects' routes on this host
//! (from the store) and the certificate, key and CA files the routes name.

use std::path::Path;

use baton_engine::edge::{project_edge, table, Accepted, ProjectEdge, Tls};
use baton_proxy::edge::{Certificate, ClientCa};
use baton_spec::{ErrorKind, Project, SpecError};
use baton_state::Store;

/// Refuses what the edge would refuse: a host and path (or a host's certificate, a client
/// CA, the listeners) another active project has, or TLS files that do not load.
pub fn check(store: &Store, project: &Project) -> Result<(), SpecError> {
    let at = |path: &str, message: String| project.error_at(ErrorKind::Invalid, path, message);
    let Some(mine) = project_edge(project).map_err(|e| at(&e.path, e.message))? else {
        return Ok(());
    };
    check_files(&mine, &at)?;
    let others = others(store, &project.name);
    if others.is_empty() {
        return Ok(());
    }
    // What the edge serves without this project, then with it.
    let before = table(&others, &Accepted::default()).accepted;
    let mut all = others;
    all.push(mine);
    let after = table(&all, &before);
    match after.refused.iter().find(|r| r.project == project.name) {
        Some(r) => Err(at(&r.setting, r.why.clone())),
        None => Ok(()),
    }
}

/// The edge of every other active project, as last recorded.
fn others(store: &Store, name: &str) -> Vec<ProjectEdge> {
    let mut out = Vec::new();
    for other in store.active_projects().unwrap_or_default() {
        if other == name {
            continue;
        }
        let spec = store
            .latest_revision(&other)
            .ok()
            .flatten()
            .and_then(|rev| store.revision_spec(&other, rev.number).ok().flatten())
            .and_then(|json| serde_json::from_str::<Project>(&json).ok());
        if let Some(Ok(Some(edge))) = spec.as_ref().map(project_edge) {
            out.push(edge);
        }
    }
    out
}

/// Reads the files the project's TLS names: certificate and key (they must load and
/// match), client CAs, the ACME CA.
fn check_files(
    edge: &ProjectEdge,
    at: &dyn Fn(&str, String) -> SpecError,
) -> Result<(), SpecError> {
    let read = |setting: &str, file: &str| -> Result<Vec<u8>, SpecError> {
        let path = edge.dir.join(file);
        std::fs::read(&path)
            .map_err(|e| at(setting, format!("cannot read {}: {e}", path.display())))
    };
    for (name, s) in &edge.services {
        if let Some(Tls::Files { cert, key }) = &s.tls {
            let base = format!("services.{name}.x-baton.tls");
            let cert_pem = read(&format!("{base}.cert"), cert)?;
            let key_pem = read(&format!("{base}.key"), key)?;
            Certificate::from_pem(&cert_pem, &key_pem).map_err(|e| {
                use baton_proxy::edge::TlsError::*;
                let (setting, file) = match e {
                    NoCertificate | CertificatePem | Certificate(_) => ("cert", cert),
                    _ => ("key", key),
                };
                let also = match e {
                    Mismatch => format!(" in {}", display(&edge.dir, cert)),
                    _ => String::new(),
                };
                at(
                    &format!("{base}.{setting}"),
                    format!("{}: {e}{also}", display(&edge.dir, file)),
                )
            })?;
        }
        for (i, r) in s.routes.iter().enumerate() {
            if let Some(ca) = &r.client_ca {
                let setting = format!("services.{name}.x-baton.routes[{i}].client_ca");
                let pem = read(&setting, ca)?;
                ClientCa::from_pem(&pem)
                    .map_err(|e| at(&setting, format!("{}: {e}", display(&edge.dir, ca))))?;
            }
        }
    }
    if let Some(ca) = edge.settings.acme.as_ref().and_then(|a| a.ca.as_ref()) {
        let pem = read("edge.acme.ca", ca)?;
        ClientCa::from_pem(&pem).map_err(|e| {
            at(
                "edge.acme.ca",
                format!(
                    "{}: {}",
                    display(&edge.dir, ca),
                    e.to_string().replace("client CA: ", "")
                ),
            )
        })?;
    }
    Ok(())
}

fn display(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}
