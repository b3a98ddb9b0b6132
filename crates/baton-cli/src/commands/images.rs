//! `baton build`, `pull`, `push` and `images`: the images behind the project's services
//! (registry credentials are the engine client's, read by the backend).

use anyhow::{anyhow, Result};
use baton_engine::plan::select_services;
use baton_engine::resolve::{build_spec, image_ref};
use baton_engine::runtime::{ImageFilter, Runtime};
use baton_spec::Project;
use serde_json::json;

use crate::cli::{PushArgs, ServicesArgs};
use crate::context::Context;

fn selected<'a>(
    project: &'a Project,
    services: &[String],
) -> Vec<(&'a String, &'a baton_spec::Service)> {
    project
        .services
        .iter()
        .filter(|(n, _)| services.is_empty() || services.contains(n))
        .collect()
}

pub async fn build(ctx: &Context, args: ServicesArgs) -> Result<u8> {
    let project = ctx.project(&args.services)?;
    let docker = ctx.backend().await?;
    let quiet = ctx.global.json;
    let mut built = Vec::new();
    for (name, svc) in selected(&project, &args.services) {
        let Some(spec) = build_spec(&project.name, name, svc) else {
            continue;
        };
        eprintln!("building {name} ({})", spec.tags.join(", "));
        let print = |line: &str| {
            if !quiet {
                eprintln!("  {name} | {}", line.trim_end());
            }
        };
        docker
            .build_image(&spec, &print)
            .await
            .map_err(|e| anyhow::anyhow!("service {name}: {e}"))?;
        built.push(spec.tags[0].clone());
    }
    if ctx.global.json {
        crate::output::json(&built)?;
    } else if built.is_empty() {
        eprintln!("no service has a build section");
    }
    Ok(crate::exit::OK)
}

pub async fn pull(ctx: &Context, args: ServicesArgs) -> Result<u8> {
    let project = ctx.project(&args.services)?;
    let docker = ctx.backend().await?;
    let mut failed = 0;
    for (name, svc) in selected(&project, &args.services) {
        let Some(image) = &svc.image else { continue };
        if svc.build.is_some() && svc.pull_policy.as_deref() == Some("build") {
            continue;
        }
        eprintln!("pulling {name} ({image})");
        if let Err(e) = docker.pull_image(image, &|_| {}).await {
            failed += 1;
            eprintln!("service {name}: {e}");
        }
    }
    Ok(if failed == 0 {
        crate::exit::OK
    } else {
        crate::exit::ERROR
    })
}

/// As `docker compose push`: every tag of each selected service that has both `build:`
/// and `image:` (others are skipped with a note), one after the other; the first
/// failure stops it unless `--ignore-push-failures`.
pub async fn push(ctx: &Context, args: PushArgs) -> Result<u8> {
    let project = ctx.project(&args.services)?;
    let names = if args.include_deps {
        select_services(&project, &args.services, false)?
    } else {
        selected(&project, &args.services)
            .into_iter()
            .map(|(n, _)| n.clone())
            .collect()
    };
    let docker = ctx.backend().await?;
    let quiet = args.quiet || ctx.global.json;
    let mut report = Vec::new();
    let mut failure = None;
    'services: for (name, svc) in project.services.iter().filter(|(n, _)| names.contains(*n)) {
        let spec = build_spec(&project.name, name, svc);
        let (Some(_), Some(spec)) = (&svc.image, spec) else {
            let reason = if svc.image.is_none() {
                "no image: name to push to"
            } else {
                "no build: section (its image is pulled, not pushed)"
            };
            if !args.quiet {
                eprintln!("skipped {name}: {reason}");
            }
            report.push(json!({"service": name, "status": "skipped", "reason": reason}));
            continue;
        };
        for tag in &spec.tags {
            if !args.quiet {
                eprintln!("pushing {name} ({tag})");
            }
            let print = |line: &str| {
                if !quiet {
                    eprintln!("  {name} | {}", line.trim_end());
                }
            };
            match docker.need_images()?.image_push(tag, &print).await {
                Ok(()) => report.push(json!({"service": name, "image": tag, "status": "pushed"})),
                Err(e) => {
                    report.push(json!({
                        "service": name, "image": tag, "status": "failed", "error": e.to_string()
                    }));
                    if args.ignore_push_failures {
                        eprintln!("warning: service {name}: {e}");
                    } else {
                        failure = Some(anyhow!("service {name}: {e}"));
                        break 'services;
                    }
                }
            }
        }
    }
    if ctx.global.json {
        crate::output::json(&report)?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(crate::exit::OK),
    }
}

pub async fn images(ctx: &Context, args: ServicesArgs) -> Result<u8> {
    let project = ctx.project(&args.services)?;
    let docker = ctx.backend().await?;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for (name, svc) in selected(&project, &args.services) {
        let reference = image_ref(&project.name, name, svc);
        let found = docker
            .need_images()?
            .images_list(&ImageFilter {
                reference: Some(reference.clone()),
                labels: vec![],
            })
            .await?;
        let (id, size) = found
            .first()
            .map(|i| (short_id(&i.id), i.size))
            .unwrap_or_else(|| ("(missing)".into(), 0));
        rows.push(vec![
            name.clone(),
            reference.clone(),
            id.clone(),
            human_bytes(size as u64),
        ]);
        json.push(serde_json::json!({"service": name, "image": reference, "id": id, "size": size}));
    }
    if ctx.global.json {
        crate::output::json(&json)?;
    } else {
        crate::output::table(&["SERVICE", "IMAGE", "ID", "SIZE"], &rows);
    }
    Ok(crate::exit::OK)
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}
