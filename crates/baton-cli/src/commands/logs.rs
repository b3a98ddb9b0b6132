//! `baton logs`: the output of the project's containers, each line prefixed with its
//! container, interleaved as it arrives.

use anyhow::Result;
use baton_docker::{LogOptions, OutputStream};
use baton_engine::runtime::Runtime;
use futures_util::stream::{select_all, StreamExt};

use super::containers_of;
use crate::cli::LogsArgs;
use crate::context::Context;

pub async fn run(ctx: &Context, args: LogsArgs) -> Result<u8> {
    let (_, name) = ctx.project_or_name()?;
    let docker = ctx.docker().await?;
    let observed = docker.observe(&name).await?;
    let mut containers = containers_of(&observed, &args.services);
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let width = containers.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let opts = LogOptions {
        follow: args.follow,
        tail: args.tail,
        timestamps: args.timestamps,
    };
    let streams = containers.iter().map(|c| {
        let prefix = format!("{:<width$} | ", c.name);
        docker
            .logs(&c.id, &opts)
            .map(move |line| (prefix.clone(), line))
            .boxed()
    });
    let mut all = select_all(streams);
    let single = containers.len() == 1 && !ctx.global.json;
    loop {
        let next = tokio::select! {
            n = all.next() => n,
            _ = tokio::signal::ctrl_c() => return Ok(crate::exit::INTERRUPTED),
        };
        let Some((prefix, line)) = next else { break };
        let line = line?;
        let prefix = if single { "" } else { prefix.as_str() };
        match line.stream {
            OutputStream::Stdout => println!("{prefix}{}", line.text),
            OutputStream::Stderr => eprintln!("{prefix}{}", line.text),
        }
    }
    Ok(crate::exit::OK)
}
