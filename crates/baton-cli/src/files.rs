//! Configs and secrets as host files: `file:` sources are used where they are; `content:`
//! and `environment:` sources are written, mode 0600, where `resolve::file_sources` says
//! (under the state directory), so the daemon finds them too.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use baton_engine::resolve::{file_sources, FileSources};
use baton_spec::Project;

pub fn materialize(project: &Project, state_dir: &Path) -> Result<FileSources> {
    let sources = file_sources(project, &state_dir.join("files"));
    for (kind, objects) in [("config", &project.configs), ("secret", &project.secrets)] {
        for (name, obj) in objects {
            if obj.file.is_some() {
                continue;
            }
            let Some(path) = sources.get(&format!("{kind}:{name}")) else {
                continue;
            };
            let content = match (&obj.content, &obj.environment) {
                (Some(c), _) => c.clone(),
                (None, Some(var)) => std::env::var(var)
                    .map_err(|_| anyhow!("{kind} {name}: environment variable {var} is not set"))?,
                (None, None) => continue,
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            write_private(path, content.as_bytes())
                .with_context(|| format!("cannot write {kind} {name}"))?;
        }
    }
    Ok(sources)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
