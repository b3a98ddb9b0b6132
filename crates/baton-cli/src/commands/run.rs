//! `baton run`: a one-off container of a service with another command; its output is
//! shown and its exit code returned. Dependencies are brought up first unless --no-deps.

use anyhow::{anyhow, Result};
use baton_engine::hash::service_hash;
use baton_engine::resolve::container_spec;
use baton_engine::runtime::OutputStream;
use baton_engine::runtime::{labels, Runtime};
use futures_util::StreamExt;

use crate::cli::RunArgs;
use crate::context::Context;

pub async fn run(ctx: &Context, args: RunArgs) -> Result<u8> {
    let project = ctx.project(std::slice::from_ref(&args.service))?;
    let svc = project
        .services
        .get(&args.service)
        .ok_or_else(|| anyhow!("no such service: {}", args.service))?
        .clone();
    if !args.no_deps && !svc.depends_on.is_empty() {
        let deps: Vec<String> = svc
            .depends_on
            .keys()
            .filter(|d| project.services.contains_key(*d))
            .cloned()
            .collect();
        let op = baton_control::Operation::Up {
            project: Box::new(project.clone()),
            options: baton_control::UpOptions {
                services: deps,
                ..Default::default()
            },
        };
        super::up::converge(ctx, &crate::door::Door::Local(ctx), op).await?;
    }
    let docker = ctx.backend().await?;
    let attach = docker.need_attach()?;
    for w in baton_engine::plan::unsupported(
        &project,
        std::slice::from_ref(&args.service),
        &docker.capabilities(),
    )? {
        eprintln!("warning: {w}");
    }
    let mut one = svc.clone();
    if !args.command.is_empty() {
        one.command = Some(args.command.clone());
    }
    if let Some(e) = &args.entrypoint {
        one.entrypoint = Some(shell_words::split(e).map_err(|e| anyhow!("--entrypoint: {e}"))?);
    }
    if let Some(u) = &args.user {
        one.user = Some(u.clone());
    }
    if let Some(w) = &args.workdir {
        one.working_dir = Some(w.clone());
    }
    for kv in &args.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        one.environment.insert(k.to_string(), Some(v.to_string()));
    }
    // One-offs publish no ports (they would clash with the service's) and never restart.
    one.ports.clear();
    one.restart = None;
    one.container_name = None;
    one.tty = false;
    one.stdin_open = false;
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let files = baton_control::materialize(&project, &ctx.state_dir(), &env)?;
    let mut spec = container_spec(
        &project,
        &args.service,
        &one,
        0,
        &service_hash(&svc),
        &files,
    );
    let suffix = format!("{:x}", crate::context::now_ms() & 0xffffff);
    spec.name = format!("{}-{}-run-{suffix}", project.name, args.service);
    spec.labels.insert(labels::ONEOFF.into(), "true".into());
    let id = docker.create_container(&spec).await?;
    let mut output = attach.attach_output(&id).await?;
    docker.start_container(&id).await?;
    let printer = async {
        while let Some(line) = output.next().await {
            match line {
                Ok(l) if l.stream == OutputStream::Stderr => eprintln!("{}", l.text),
                Ok(l) => println!("{}", l.text),
                Err(e) => eprintln!("warning: {e}"),
            }
        }
    };
    let (_, code) = tokio::join!(printer, attach.wait_container(&id));
    if args.rm {
        docker.remove_container(&id).await?;
    }
    Ok(code?.clamp(0, 255) as u8)
}
