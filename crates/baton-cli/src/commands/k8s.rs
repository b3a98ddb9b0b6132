//! `baton k8s render [--out DIR] [--namespace NS]`: the project as Kubernetes manifests
//! (one YAML stream on stdout, or one file per object in DIR); what has no equivalent
//! is said on stderr, one line each.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

use crate::context::Context;

#[derive(Debug, Clone, Args)]
pub struct K8sArgs {
    #[command(subcommand)]
    pub action: K8sAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum K8sAction {
    /// Write the manifests: Deployments (DaemonSets for global services), Services,
    /// PersistentVolumeClaims, ConfigMaps, Secrets, Ingresses, HPAs, PDBs
    Render {
        /// One file per object in this directory instead of one stream on stdout
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Put every object in this namespace
        #[arg(short, long, value_name = "NS")]
        namespace: Option<String>,
    },
}

pub fn run(ctx: &Context, args: K8sArgs) -> Result<u8> {
    let K8sAction::Render { out, namespace } = args.action;
    let project = ctx.project(&[])?;
    let rendered = baton_kube::render(&project, &baton_kube::RenderOptions { namespace });
    for u in &rendered.unsupported {
        eprintln!("warning: {u}");
    }
    match out {
        None if ctx.global.json => crate::output::json(&rendered.objects)?,
        None => print!("{}", baton_kube::to_yaml(&rendered)?),
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (i, o) in rendered.objects.iter().enumerate() {
                let kind = o["kind"].as_str().unwrap_or("object").to_ascii_lowercase();
                let name = o["metadata"]["name"].as_str().unwrap_or("x");
                let file = dir.join(format!("{i:02}-{kind}-{name}.yaml"));
                std::fs::write(&file, serde_yaml::to_string(o)?)
                    .with_context(|| format!("cannot write {}", file.display()))?;
            }
            eprintln!(
                "{} object(s) written to {}",
                rendered.objects.len(),
                dir.display()
            );
        }
    }
    Ok(crate::exit::OK)
}
