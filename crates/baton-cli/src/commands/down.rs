//! `baton down`: remove every container and network of the project (and with -v its
//! volumes), found by label, so it also cleans what a killed run left.

use anyhow::Result;
use baton_engine::apply::{apply_down, ApplyOptions};
use baton_engine::plan::plan_down;
use baton_engine::runtime::Runtime;

use crate::cli::DownArgs;
use crate::context::{now_ms, Context};
use crate::journal::StoreJournal;
use crate::progress::Progress;

pub async fn run(ctx: &Context, args: DownArgs) -> Result<u8> {
    let (project, name) = ctx.project_or_name()?;
    let store = ctx.store()?;
    let _lock = store.lock_project(&name)?;
    let docker = ctx.docker().await?;
    // Declared first, so a running daemon stops restarting what is being removed.
    store.set_desired(
        &baton_state::Desired {
            project: name.clone(),
            active: false,
            stopped_services: vec![],
        },
        now_ms(),
    )?;
    let observed = docker.observe(&name).await?;
    let plan = plan_down(&name, &observed, args.volumes);
    if plan.is_empty() {
        eprintln!("project {name}: nothing to remove");
        return Ok(crate::exit::OK);
    }
    let journal = StoreJournal {
        store: &store,
        project: &name,
        revision: None,
    };
    let progress = Progress::new(ctx.global.json);
    let started = std::time::Instant::now();
    let result = apply_down(
        &docker,
        project.as_ref(),
        &plan.actions,
        &journal,
        &progress,
        &ApplyOptions {
            parallelism: ctx.global.parallel,
            ..Default::default()
        },
    )
    .await;
    progress.finish();
    super::up::record(&store, &docker, &name).await;
    let outcome = match &result {
        Ok(r) => format!("{} step(s) done in {:.1?}", r.done, started.elapsed()),
        Err(e) => format!("failed: {e}"),
    };
    let _ = store.event(&name, "down", &name, &outcome, now_ms());
    result?;
    let _ = std::fs::remove_dir_all(ctx.state_dir().join("files").join(&name));
    if ctx.global.json {
        crate::output::json(&plan)?;
    } else {
        eprintln!("project {name}: removed, {outcome}");
    }
    Ok(crate::exit::OK)
}
