//! `baton logs`: the output of the project's containers, each line prefixed with its
//! container, interleaved as it arrives. `baton up` without -d follows it too.

use anyhow::Result;
use baton_backend::Backend;
use baton_engine::runtime::{LogOptions, OutputStream, Runtime};
use futures_util::stream::{select_all, StreamExt};

use super::containers_of;
use crate::cli::LogsArgs;
use crate::context::Context;

pub async fn run(ctx: &Context, args: LogsArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name_with(&args.services)?;
    let opts = LogOptions {
        follow: args.follow,
        tail: args.tail,
        timestamps: args.timestamps,
    };
    if let Some(b) = super::orchestrated::backend(ctx).await? {
        let Some(p) = &project else {
            anyhow::bail!("project {name}: run this where its file is, to know its services");
        };
        let known: Vec<String> = p.services.keys().cloned().collect();
        let names: Vec<&str> = known.iter().map(String::as_str).collect();
        super::known_names(&names, &args.services)?;
        return super::orchestrated::logs(ctx, &b, &name, &args.services, &known, &opts).await;
    }
    let docker = ctx.backend().await?;
    if !args.services.is_empty() {
        let observed = match project {
            Some(_) => None,
            None => Some(docker.observe(&name).await?),
        };
        super::known_services(project.as_ref(), observed.as_ref(), &args.services)?;
    }
    let interrupted = print_logs(&docker, &name, &args.services, &opts, ctx.global.json).await?;
    Ok(if interrupted {
        crate::exit::INTERRUPTED
    } else {
        crate::exit::OK
    })
}

/// Prints the logs of the named services (all when none) until they end, or until
/// Ctrl-C; returns whether it was interrupted. With `json`, one object per line:
/// `{"container", "service", "stream", "text"}`.
pub async fn print_logs(
    docker: &Backend,
    project: &str,
    services: &[String],
    opts: &LogOptions,
    json: bool,
) -> Result<bool> {
    let logs = docker.need_logs()?;
    let observed = docker.observe(project).await?;
    let mut containers = containers_of(&observed, services);
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let width = containers.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let single = containers.len() == 1;
    let streams = containers.iter().map(|c| {
        let prefix = if single {
            String::new()
        } else {
            format!("{:<width$} | ", c.name)
        };
        let who = serde_json::json!({"container": c.name, "service": c.service});
        logs.logs(&c.id, opts)
            .map(move |line| (prefix.clone(), who.clone(), line))
            .boxed()
    });
    print_merged(streams, json).await
}

/// One stream of output lines with what prints before each (`web-1 | `) and who it is
/// (the fields `--json` adds to each line).
pub type Labelled = futures_util::stream::BoxStream<
    'static,
    (
        String,
        serde_json::Value,
        Result<baton_engine::runtime::LogLine, baton_engine::runtime::RuntimeError>,
    ),
>;

/// Prints several streams interleaved as lines arrive, until all end or Ctrl-C;
/// returns whether it was interrupted. With `json`, one object per line: who it is,
/// `stream` and `text`.
pub async fn print_merged(streams: impl IntoIterator<Item = Labelled>, json: bool) -> Result<bool> {
    let mut all = select_all(streams);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let next = tokio::select! {
            n = all.next() => n,
            _ = &mut ctrl_c => return Ok(true),
        };
        let Some((prefix, who, line)) = next else {
            return Ok(false);
        };
        let line = line?;
        if json {
            let stream = match line.stream {
                OutputStream::Stdout => "stdout",
                OutputStream::Stderr => "stderr",
            };
            let mut o = who;
            o["stream"] = stream.into();
            o["text"] = line.text.into();
            println!("{o}");
            continue;
        }
        match line.stream {
            OutputStream::Stdout => println!("{prefix}{}", line.text),
            OutputStream::Stderr => eprintln!("{prefix}{}", line.text),
        }
    }
}
