//! baton's Kubernetes backend: a project rendered as manifests that follow kompose's
//! conventions, with every setting that has no equivalent reported, never dropped, and
//! applied to a cluster (`Kube`, an `Orchestrator`).
//!
//! Architecture invariant: rendering and reading statuses are pure (`render.rs`,
//! `status.rs`: reading a config's or secret's `file:` is the one read); only
//! `cluster.rs` talks to a cluster, through kube-rs.

pub mod cluster;
pub mod render;
pub mod status;

pub use cluster::Kube;
pub use render::{k8s_name, render, RenderOptions, Rendered};

/// The manifests as one multi-document YAML stream, in the order rendered.
pub fn to_yaml(rendered: &Rendered) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for o in &rendered.objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(o)?);
    }
    Ok(out)
}
