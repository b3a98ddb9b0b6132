//! baton's Kubernetes backend: a project rendered as manifests that follow kompose's
//! conventions, with every setting that has no equivalent reported, never dropped.
//!
//! Architecture invariant: rendering is pure (a `Project` in, manifests as JSON values
//! out; reading a config's or secret's `file:` is the one read); nothing here talks to a
//! cluster yet.

pub mod render;

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
